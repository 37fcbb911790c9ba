// Patch discovery in fromager's layout: `patches/<pkg>/`, `patches/<pkg>-<version>/` and a `<variant>/` subfolder
// of either. Says which files apply to one package in one variant, in which order, and warns about folders that
// look meant for it but are skipped (another version, a misspelt variant).

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as pep440 from '@renovatebot/pep440';
import { didYouMean } from '../engine/diagnostics.js';

export const PATCHES_DIR = 'patches';

export interface PatchQuery {
  /** The workspace root. */
  root: string;
  package: string;
  /** The package's version, or null when it declares none (then only unversioned folders apply). */
  version: string | null;
  variant: string;
  /** Every package name: `patches/<a>-<b>/` belongs to package `a-b` when there is one, not to `a` version `b`. */
  packages: ReadonlySet<string>;
  /** Every variant name, to tell a variant subfolder from a misspelt one. */
  variants: ReadonlySet<string>;
  /**
   * The names in `patches/` (null: there is none), listed once by the caller for every package
   * (`listPatchFolders`): a 10,000-target workspace otherwise pays a failed stat and readdir per target.
   */
  folders: readonly string[] | null;
  /**
   * Workspace-relative paths that a `patches:` list of the package names (in any variant or version). They are
   * never discovered: the list says where, and in which variants, they apply.
   */
  listed: ReadonlySet<string>;
}

export interface DiscoveredPatches {
  /** Workspace-relative paths (`patches/fastmath/0001-x.patch`), in application order. */
  patches: string[];
  /** Folders that hold patches for this package but are not applied, each with why. */
  warnings: string[];
}

/** Two versions name the same release, ignoring a local part (`2.0+cu124` is `2.0`, `2.0.0` is `2.0`). */
export function sameVersion(a: string, b: string): boolean {
  const pa = pep440.explain(a);
  const pb = pep440.explain(b);
  if (!pa || !pb) return a === b;
  return pep440.eq(pa.public, pb.public);
}

function patchFiles(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => n.endsWith('.patch') && !n.startsWith('.') && isFile(path.join(dir, n)));
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The patches found for `q.package` in `q.variant`. Like fromager, every applicable file is applied in one sequence
 * sorted by file name, whichever of the four folders it sits in, so `0002-b.patch` in `patches/pkg-1.0/` runs
 * between `0001-a.patch` and `0003-c.patch` of `patches/pkg/`. When the same file name is in several folders, all
 * apply, in the order `patches/<pkg>/`, `patches/<pkg>/<variant>/`, `patches/<pkg>-<version>/`,
 * `patches/<pkg>-<version>/<variant>/` (the less specific first). Names sort by UTF-16 code units, so the order
 * does not depend on the locale.
 */
export function discoverPatches(q: PatchQuery): DiscoveredPatches {
  const entries = q.folders;
  if (entries === null) return { patches: [], warnings: [] };
  const base = path.join(q.root, PATCHES_DIR);
  const warnings: string[] = [];
  const found: { name: string; rel: string; rank: number }[] = [];
  const rel = (...parts: string[]): string => [PATCHES_DIR, ...parts].join('/');

  /** Adds a folder's patches and its `<variant>/` subfolder's; warns about subfolders that name no variant. */
  const scan = (folder: string, rank: number): void => {
    const dir = path.join(base, folder);
    for (const name of patchFiles(dir)) found.push({ name, rel: rel(folder, name), rank });
    for (const name of patchFiles(path.join(dir, q.variant))) found.push({ name, rel: rel(folder, q.variant, name), rank: rank + 1 });
    let subs: string[] = [];
    try {
      subs = fs.readdirSync(dir).filter((s) => isDir(path.join(dir, s)));
    } catch {
      /* no folder: nothing to warn about */
    }
    for (const sub of subs.sort(byCodeUnits)) {
      if (q.variants.has(sub) || patchFiles(path.join(dir, sub)).length === 0) continue;
      warnings.push(`${rel(folder, sub)}/ is not a variant; its patches are not applied${didYouMean(sub, q.variants)}`);
    }
  };

  if (entries.includes(q.package) && isDir(path.join(base, q.package))) scan(q.package, 0);

  const prefix = `${q.package}-`;
  const others: string[] = [];
  for (const folder of [...entries].sort(byCodeUnits)) {
    if (!folder.startsWith(prefix) || q.packages.has(folder) || !isDir(path.join(base, folder))) continue;
    const version = folder.slice(prefix.length);
    if (!pep440.valid(version)) continue;
    if (q.version !== null && sameVersion(version, q.version)) scan(folder, 2);
    else if (patchFiles(path.join(base, folder)).length > 0 || hasVariantPatches(path.join(base, folder))) others.push(folder);
  }
  // Patch folders for other versions are normal while several versions are maintained; they are worth a word
  // only when nothing matches this version, which is how a version bump silently drops every patch (fromager#254).
  if (!found.some((f) => f.rank >= 2)) {
    for (const folder of others) {
      const why = q.version === null ? `${q.package} declares no version` : `${q.package} is version ${q.version}`;
      warnings.push(`${rel(folder)}/ exists but ${why}; its patches are not applied`);
    }
  }

  const patches = found
    .filter((f) => !q.listed.has(f.rel))
    .sort((a, b) => byCodeUnits(a.name, b.name) || a.rank - b.rank)
    .map((f) => f.rel);
  return { patches, warnings };
}

/** The names in the workspace's `patches/` folder, or null when it has none. */
export function listPatchFolders(root: string): string[] | null {
  try {
    return fs.readdirSync(path.join(root, PATCHES_DIR));
  } catch {
    return null;
  }
}

function hasVariantPatches(dir: string): boolean {
  try {
    return fs.readdirSync(dir).some((s) => patchFiles(path.join(dir, s)).length > 0);
  } catch {
    return false;
  }
}

