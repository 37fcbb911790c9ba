// The no-op snapshot: after a build in which every target ended built or cached, the stats of every input and
// output are written to wg-out. The next `wg build` with the same arguments stats the same paths and, if none
// changed, prints the same result without loading BUILD.yaml, the cache index or any npm module (ninja's
// approach: the check costs little more than starting Node and stat-ing the inputs). This module imports only
// Node built-ins, because it runs before the rest of wg is loaded.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StatTuple } from './inputs.js';

export const SNAPSHOT_VERSION = 2;
/** A file changed less than this before it was read might change again within the same timestamp tick. */
const RACY_WINDOW_NS = 2_000_000_000n;

export interface SnapshotArgs {
  root: string;
  cacheDir: string;
  patterns: string[];
}

export interface Snapshot {
  v: number;
  argsId: string;
  envNames: string[];
  envHash: string;
  files: [string, StatTuple | null][];
  dirs: [string, StatTuple | null][];
  /**
   * The folders of wg-out holding the outputs and logs, with their stat after the build: removing, renaming or
   * replacing an output changes its folder's stat, at one stat per folder instead of one per file.
   */
  outputDirs: [string, StatTuple | null][];
  /** What the full path printed on stderr for a no-op, with `{seconds}` where the time goes. */
  lines: string[];
  /** The --json document of a no-op. */
  json: unknown;
}

export function snapshotPath(root: string): string {
  return path.join(root, 'wg-out', '.wg-noop-snapshot.json');
}

export function argsId(args: SnapshotArgs): string {
  return createHash('sha256')
    .update(JSON.stringify({ v: SNAPSHOT_VERSION, root: args.root, cacheDir: args.cacheDir, patterns: [...args.patterns].sort() }))
    .digest('hex');
}

export function envHash(names: string[]): string {
  return createHash('sha256')
    .update(JSON.stringify(names.map((n) => [n, process.env[n] ?? null])))
    .digest('hex');
}

function current(p: string): StatTuple | null {
  try {
    const st = fs.statSync(p, { bigint: true });
    return [String(st.size), String(st.mtimeNs), String(st.ctimeNs), String(st.ino)];
  } catch {
    return null;
  }
}

function same(a: StatTuple | null, b: StatTuple | null): boolean {
  if (a === null || b === null) return a === b;
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

/** Removes the snapshot: called before any full build, so only a completed build can leave one behind. */
export function dropSnapshot(root: string): void {
  fs.rmSync(snapshotPath(root), { force: true });
}

/**
 * Writes the snapshot unless an input is racy (changed within the window before the build read it): such a
 * file could change again without its stat changing, so the next run must check it the slow way.
 * Returns why no snapshot was written, or null.
 */
export function writeSnapshot(snapshot: Snapshot, root: string, readStartNs: bigint): string | null {
  for (const [p, st] of [...snapshot.files, ...snapshot.dirs]) {
    if (st !== null && BigInt(st[2]) + RACY_WINDOW_NS > readStartNs) return `${p} changed just before the build`;
  }
  const file = snapshotPath(root);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(tmp, JSON.stringify(snapshot));
  fs.renameSync(tmp, file);
  return null;
}

/** The stored no-op result if nothing it depends on changed since it was written, else null. */
export function checkSnapshot(args: SnapshotArgs): Snapshot | null {
  let snapshot: Snapshot;
  try {
    snapshot = JSON.parse(fs.readFileSync(snapshotPath(args.root), 'utf8')) as Snapshot;
  } catch {
    return null;
  }
  if (snapshot.v !== SNAPSHOT_VERSION || snapshot.argsId !== argsId(args)) return null;
  if (snapshot.envHash !== envHash(snapshot.envNames)) return null;
  for (const [p, st] of snapshot.files) if (!same(current(p), st)) return null;
  for (const [p, st] of snapshot.dirs) if (!same(current(p), st)) return null;
  for (const [p, st] of snapshot.outputDirs) if (st === null || !same(current(p), st)) return null;
  return snapshot;
}
