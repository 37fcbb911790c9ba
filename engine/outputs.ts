// Where results land for users: wheels in `wg-out/wheelhouse/<python tag>/<cpu or cuXY>/<platform>/`, other
// outputs in `wg-out/out/` named `<package>.<variant>.<path>`, one log per target in `wg-out/logs/` named the same
// way. Files are hard links to the read-only CAS blobs, so restoring a cached target costs a link, not a copy.
// The layout is flat on purpose: on ext4 making a folder costs 0.3-1 ms (a new inode), a link 0.02 ms, so one
// folder per target would make restoring a thousand targets' outputs ten times slower than linking them.

import * as path from 'node:path';
import type { ToolchainFacts } from '../rules/rule.js';
import type { StoredOutput } from '../cache/local-store.js';
import { splitLabel, type Label } from './label.js';

export const OUT_DIR = 'wg-out';

/** `cu130` from nvcc 13.0.x, else `cu124` from torch's CUDA 12.4, else `cpu`. */
export function acceleratorTag(facts: ToolchainFacts | null): string {
  const version = facts?.cuda?.nvcc ?? facts?.torch?.cuda ?? null;
  if (!version) return 'cpu';
  const [major, minor] = version.split('.');
  return `cu${major}${minor ?? '0'}`;
}

export function wheelhouseDir(wgOut: string, facts: ToolchainFacts | null): string {
  if (!facts) return path.join(wgOut, 'wheelhouse', 'any', 'cpu', 'any');
  const [major, minor] = facts.python.version.split('.');
  return path.join(wgOut, 'wheelhouse', `py${major}${minor}`, acceleratorTag(facts), facts.python.platform);
}

/**
 * The name a target's file has in `wg-out/out/` (`file` is an output's path) or `wg-out/logs/` (`file` is `log`).
 * Names may hold dots, so two targets can be given one name: engine/wg-out-clash.ts finds them at analysis.
 */
export function flatName(pkg: string, variant: string, file: string): string {
  return `${pkg}.${variant}.${file}`;
}

export function outputPath(wgOut: string, label: Label, facts: ToolchainFacts | null, out: StoredOutput): string {
  if (out.kind === 'wheel') return path.join(wheelhouseDir(wgOut, facts), path.basename(out.path));
  const { package: pkg, variant } = splitLabel(label);
  return path.join(wgOut, 'out', flatName(pkg, variant, out.path));
}

export function logPath(wgOut: string, label: Label): string {
  const { package: pkg, variant } = splitLabel(label);
  return path.join(wgOut, 'logs', flatName(pkg, variant, 'log'));
}
