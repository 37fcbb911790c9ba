// Where results land for users: wheels in `wg-out/wheelhouse/<python tag>/<cpu or cuXY>/<platform>/`, other
// outputs in `wg-out/out/<package>/<variant>/`, one log per target in `wg-out/logs/`. Files are hard links to
// the read-only CAS blobs, so restoring a cached target costs a link, not a copy.

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

export function outputPath(wgOut: string, label: Label, facts: ToolchainFacts | null, out: StoredOutput): string {
  if (out.kind === 'wheel') return path.join(wheelhouseDir(wgOut, facts), path.basename(out.path));
  const { package: pkg, variant } = splitLabel(label);
  return path.join(wgOut, 'out', pkg, variant, out.path);
}

export function logPath(wgOut: string, label: Label): string {
  const { package: pkg, variant } = splitLabel(label);
  return path.join(wgOut, 'logs', `${pkg}.${variant}.log`);
}
