// wg-out is flat (engine/outputs.ts): a target's files there are named "<package>.<variant>.<file>". Package and
// variant names may hold dots (zope.interface, py3.11), so two targets can be given one name: //a.b:c and //a:b.c
// would both write wg-out/logs/a.b.c.log, and whichever finished last would silently replace the other's file (and
// the no-op snapshot would vouch for one of them). Found at analysis, before anything runs. When no name holds a dot
// nothing can clash (the first two dots of a name split it), so most workspaces are not looked at any further.

import type { ConfiguredTarget } from './analyze.js';
import type { Label } from './label.js';
import { flatName } from './outputs.js';

/** Where a target's file is declared: an entry of its rule's outputs attribute, or (its log) the package itself. */
export interface ClashSide {
  target: ConfiguredTarget;
  /** The declared output: its attribute, index there and path; null for the log. */
  entry: { attr: string; index: number; path: string } | null;
}

export interface Clash {
  /** The file's path under wg-out, as a user would look for it. */
  file: string;
  first: ClashSide;
  second: ClashSide;
}

/** Pairs of targets given the same file in wg-out/out/ or wg-out/logs/, in declaration order. */
export function wgOutClashes(targets: ReadonlyMap<Label, ConfiguredTarget>): Clash[] {
  let dotted = false;
  for (const t of targets.values()) dotted ||= t.package.name.includes('.') || t.variant.name.includes('.');
  if (!dotted) return [];
  const clashes: Clash[] = [];
  const owners = new Map<string, ClashSide>();
  const claim = (file: string, side: ClashSide): void => {
    const first = owners.get(file);
    if (first === undefined) owners.set(file, side);
    else if (first.target !== side.target) clashes.push({ file, first, second: side });
  };
  for (const target of targets.values()) {
    const pkg = target.package.name;
    const variant = target.variant.name;
    claim(`logs/${flatName(pkg, variant, 'log')}`, { target, entry: null });
    const declared = target.rule.fileOutputs;
    if (declared === undefined) continue;
    let paths: readonly unknown[];
    try {
      paths = declared.paths(target.package.attrs);
    } catch {
      continue; // a plugin rule's own mistake: its files are still checked as the build puts them in place
    }
    if (!Array.isArray(paths)) continue; // a mistake of its own, reported at load
    paths.forEach((p, index) => {
      if (typeof p === 'string') claim(`out/${flatName(pkg, variant, p)}`, { target, entry: { attr: declared.attr, index, path: p } });
    });
  }
  return clashes;
}
