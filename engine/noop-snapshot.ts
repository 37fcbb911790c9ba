// The no-op snapshot: after a build in which every target ended built or cached, the stats of every input and
// output are written to the cache folder. The next `wg build` with the same arguments stats the same paths and, if
// none changed, prints the same result without loading BUILD.yaml, the cache index or any npm module (ninja's
// approach: the check costs little more than starting Node and stat-ing the inputs). Outputs deleted from wg-out
// are linked back from their CAS blobs on the way, when the blobs are untouched: restoring a thousand targets
// then costs a thousand links, not a full build. This module imports only Node built-ins, because it runs before
// the rest of wg is loaded.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { hashFileSync } from '../cache/file-hash.js';
import type { StatTuple } from './inputs.js';
import { removeFile } from './remove-file.js';
import { applyOutputs, applyTargets, dropDelta, readDelta, type SnapshotDelta } from './snapshot-delta.js';
import { linkMany, STAT_FIELDS, statMany, unmovedMany } from './fs-batch.js';

export const SNAPSHOT_VERSION = 7;
/** A file changed less than this before it was read might change again within the same timestamp tick. */
const RACY_WINDOW_NS = 2_000_000_000n;

export interface SnapshotArgs {
  root: string;
  cacheDir: string;
  patterns: string[];
}

export interface Snapshot {
  v: number;
  /** What argsId hashes: compared as it is by the check, which then needs no hashing. */
  args: string;
  /** Ties the companion files (plan, outputs, --json document, delta) to these arguments. */
  argsId: string;
  /** Random per written snapshot: ties it to its outputs file. */
  build: string;
  envNames: string[];
  envHash: string;
  files: [string, StatTuple | null][];
  /**
   * Files that changed within the racy window before the build read them, with the digest the build used: the
   * same stat does not vouch for them (they may have changed again within the same timestamp tick), so the check
   * reads them again (git's answer to racily clean entries). Each with the ctime its stat had, so the next
   * snapshot can tell whether it still is racy without finding its entry.
   */
  digests: [string, string, string][];
  dirs: [string, StatTuple | null][];
  /** The racy check's bound when this snapshot was written: ctimes after it were racy (writeSnapshot). */
  racyBound: string;
  /**
   * The folders of wg-out holding the outputs and logs, with their stat after the build: removing, renaming or
   * replacing an output changes its folder's stat, at one stat per folder instead of one per file.
   */
  outputDirs: [string, StatTuple | null][];
  /** What the full path printed on stderr for a no-op, with `{seconds}` where the time goes. */
  lines: string[];
}

/**
 * An output or log in wg-out: its path, size, mtime and inode, then the CAS blob it is, with the blob's size, mtime
 * and inode (no ctime: every link moves it). Numbers as a number `Stats` has them, the mtime as Node's millisecond
 * double, which JSON writes so that it reads back the same: restoring a thousand targets parses two thousand of
 * these, and as decimal strings in nested lists each made a dozen objects (~8.4 ms to read at 1000 targets,
 * garbage collection included), where this makes about five (~4.1 ms).
 */
export type OutputEntry = [path: string, size: number, mtimeMs: number, ino: number, blob: string, blobSize: number, blobMtimeMs: number, blobIno: number];

/** Every output and log in wg-out. In a file of its own, read only when something in wg-out changed: a no-op never pays for parsing it. */
export type SnapshotOutputs = OutputEntry[];

function outputsPath(file: string): string {
  return file.replace(/\.json$/, '.outputs.json');
}

/** The --json document of a no-op, also in a file of its own: most of the snapshot's bytes, and rarely asked for. */
function reportPath(file: string): string {
  return file.replace(/\.json$/, '.report.json');
}

/**
 * node:crypto, loaded when first needed: loading it took ~6 ms of a no-op answer (the module loads every cipher,
 * key and certificate class with it), which now hashes nothing unless a racy input or a set env value asks for it.
 */
function crypto(): typeof import('node:crypto') {
  return process.getBuiltinModule('node:crypto');
}

/**
 * In the cache, not in wg-out: deleting wg-out must leave what is needed to restore it. One per workspace, named by
 * an FNV-1a hash of the root: a name, not a key (the snapshot's `args` say whose it is, and another workspace's
 * is refused), so the check need not load node:crypto to find it.
 */
export function snapshotPath(cacheDir: string, root: string): string {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(root)) h = BigInt.asUintN(64, (h ^ BigInt(byte)) * 0x100000001b3n);
  return path.join(cacheDir, 'snapshots', `${h.toString(16).padStart(16, '0')}.json`);
}

export function newBuildId(): string {
  return crypto().randomBytes(8).toString('hex');
}

/** The arguments a snapshot answers for, as one string (no secrets: a folder, the cache's folder, patterns). */
export function argsKey(args: SnapshotArgs): string {
  return JSON.stringify({ v: SNAPSHOT_VERSION, root: args.root, cacheDir: args.cacheDir, patterns: [...args.patterns].sort() });
}

export function argsId(args: SnapshotArgs): string {
  return crypto().createHash('sha256').update(argsKey(args)).digest('hex');
}

/**
 * What the watched env variables hold, as a hash: their values may be secrets. `unset` when none is set (the
 * usual case, and no sha256 hex): then there is nothing to hide, and nothing to load node:crypto for.
 */
export function envHash(names: string[]): string {
  const values = names.map((n) => [n, process.env[n] ?? null]);
  if (values.every(([, v]) => v === null)) return 'unset';
  return crypto().createHash('sha256').update(JSON.stringify(values)).digest('hex');
}

function current(p: string): StatTuple | null {
  try {
    const st = fs.statSync(p, { bigint: true });
    return [String(st.size), String(st.mtimeNs), String(st.ctimeNs), String(st.ino)];
  } catch {
    return null;
  }
}

/**
 * Size, mtime and inode agree: the file is the one recorded (outputs are blob links, whose ctime any link moves).
 * Compared on a number `Stats`: restoring a thousand targets checks two thousand files.
 */
function sameFile(st: fs.Stats | undefined, size: number, mtimeMs: number, ino: number): boolean {
  return st !== undefined && st.size === size && st.mtimeMs === mtimeMs && st.ino === ino;
}

/** What an output entry records of a file: size, mtime and inode, as sameFile compares them; null if unreadable. */
export function fingerprint(p: string): [size: number, mtimeMs: number, ino: number] | null {
  try {
    const st = fs.statSync(p);
    return [st.size, st.mtimeMs, st.ino];
  } catch {
    return null;
  }
}

/** Removes the snapshot: called before any full build, so only a completed build can leave one behind. */
export function dropSnapshot(cacheDir: string, root: string): void {
  removeFile(snapshotPath(cacheDir, root));
}

/**
 * Writes the snapshot unless an input is racy (changed within the window before the build read it) and its digest
 * is unknown: such a file could change again without its stat changing, so the next run must check it the slow
 * way. A racy file whose digest `digestOf` knows is recorded with it, and checked by content. `companions` writes
 * the outputs list, --json document and plan (in full, or as a delta) first: a snapshot is never there without
 * them (older ones are refused by the argsId and build id they carry).
 * Returns why no snapshot was written, or null.
 */
export function writeSnapshot(
  snapshot: Snapshot,
  args: SnapshotArgs,
  readStartNs: bigint,
  digestOf: (file: string) => string | undefined,
  companions: (file: string) => void,
  since?: RacyCandidates,
): string | null {
  const after = String(readStartNs - RACY_WINDOW_NS);
  const racy = (st: StatTuple | null): boolean => st !== null && laterThan(st[2], after);
  // With a bound that moved back (a clock set back), or none recorded, every entry is looked at.
  const only = since !== undefined && /^[0-9]+$/.test(since.bound) && !laterThan(since.bound, after) ? since : null;
  for (const [p, st] of only?.dirs ?? snapshot.dirs) if (racy(st)) return `${p} changed just before the build`;
  snapshot.digests = only ? only.carried.filter(([, , ctime]) => typeof ctime === 'string' && laterThan(ctime, after)) : [];
  snapshot.racyBound = after;
  for (const [p, st] of only?.files ?? snapshot.files) {
    if (!racy(st)) continue;
    const digest = digestOf(p);
    if (digest === undefined) return `${p} changed just before the build`;
    snapshot.digests.push([p, digest, st![2]]);
  }
  const file = snapshotPath(args.cacheDir, args.root);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  companions(file);
  replaceFile(file, JSON.stringify(snapshot));
  return null;
}

/**
 * The only entries of a new snapshot that can be racy, when it is the last snapshot (written against the racy bound
 * `bound`) with a few entries changed: an entry unchanged since was not racy then, or was recorded with its digest
 * and ctime, and against a later bound it can only be less racy. So the changed entries, and the unchanged ones
 * racy then (`carried`, kept while their ctime is still racy), are all there is to look at, not the thousands of
 * others (~1.5 ms of an edit's build at 1000 targets).
 */
export interface RacyCandidates {
  bound: string;
  files: [string, StatTuple | null][];
  dirs: [string, StatTuple | null][];
  carried: [string, string, string][];
}

/**
 * Whether the time `ns` is after `bound`, both decimal nanoseconds as String(bigint) writes them: compared as digits,
 * not as a BigInt made of each of the two thousand times an edit's snapshot checks (~1 ms of it).
 */
export function laterThan(ns: string, bound: string): boolean {
  const negative = ns.startsWith('-') || bound.startsWith('-');
  if (negative) return BigInt(ns) > BigInt(bound);
  return ns.length !== bound.length ? ns.length > bound.length : ns > bound;
}

/** The full outputs list and --json document of `snapshot`; any delta left from an earlier snapshot goes. */
export function writeFullCompanions(file: string, snapshot: Snapshot, outputs: SnapshotOutputs, report: unknown): void {
  replaceFile(outputsPath(file), JSON.stringify({ id: snapshot.argsId, build: snapshot.build, outputs }));
  replaceFile(reportPath(file), JSON.stringify({ id: snapshot.argsId, build: snapshot.build, report }));
  dropDelta(file);
}

function replaceFile(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/**
 * Puts back the outputs missing from the changed folders of wg-out, by linking their blobs, and returns false
 * (leaving the rest to the full path) at the first thing it cannot vouch for: a file there that is not the one
 * recorded, or a blob whose fingerprint moved (it may have been damaged; the full path re-hashes it).
 */
function restoreOutputs(snapshot: Snapshot, file: string, changed: Set<string>): boolean {
  const outputs = snapshotOutputs(file, snapshot);
  if (outputs === null) return false;
  // Folders this pass made are known to be empty: their files need no lstat to be known missing.
  const state = new Map<string, 'made' | 'existed'>();
  const missing: OutputEntry[] = [];
  // Indexed loops, no destructuring, path.dirname only for an odd path: run once per output in a Node just
  // started, these lines are interpreted, and each of those cost a microsecond or more per output.
  for (let i = 0; i < outputs.length; i++) {
    const entry = outputs[i]!;
    const dest = entry[0];
    const slash = dest.lastIndexOf('/');
    const dir = slash > 0 && slash < dest.length - 1 ? dest.slice(0, slash) : path.dirname(dest);
    if (!changed.has(dir)) continue;
    let known = state.get(dir);
    if (known === undefined) {
      // mkdir -p names the first folder it made, and nothing when the folder was already there.
      known = fs.mkdirSync(dir, { recursive: true }) !== undefined ? 'made' : 'existed';
      state.set(dir, known);
    }
    if (known === 'existed') {
      const st = fs.lstatSync(dest, { throwIfNoEntry: false });
      if (st !== undefined) {
        if (!sameFile(st, entry[1], entry[2], entry[3])) return false;
        continue;
      }
    }
    missing.push(entry);
  }
  // The blobs' stats in one call (engine/fs-batch.ts): a thousand targets' restore stats two thousand.
  const blobs = new Array<string>(missing.length);
  for (let i = 0; i < missing.length; i++) blobs[i] = missing[i]![4];
  const stats = statMany(blobs);
  const dests = new Array<string>(missing.length);
  for (let i = 0; i < missing.length; i++) {
    const entry = missing[i]!;
    const at = i * STAT_FIELDS;
    if (stats[at]! < 0 || stats[at] !== entry[5] || stats[at + 1] !== entry[6] || stats[at + 3] !== entry[7]) return false;
    dests[i] = entry[0];
  }
  // A link that fails (another file system, which the full path copies across; a file that appeared meanwhile)
  // leaves the rest to the full path.
  return linkMany(blobs, dests) === -1;
}

/** What the snapshot check found: nothing changed (outputs restored if need be), or which inputs changed. */
export type SnapshotCheck =
  | { kind: 'noop'; snapshot: Snapshot }
  | {
      kind: 'changed';
      snapshot: Snapshot;
      file: string;
      files: string[];
      dirs: string[];
      /** Where each changed file and folder is in the snapshot's lists. */
      fileAt: ReadonlyMap<string, number>;
      dirAt: ReadonlyMap<string, number>;
    };

function digestMoved(p: string, digest: string): boolean {
  try {
    return hashFileSync(p, true).digest !== digest;
  } catch {
    return true;
  }
}

/**
 * Compares every recorded input with the file system. Null when the snapshot cannot answer (none, other
 * arguments or env, outputs that cannot be restored while inputs changed): the full path decides.
 */
export function checkSnapshot(args: SnapshotArgs): SnapshotCheck | null {
  // Before any input is looked at: racy entries found unchanged are settled against it.
  const checkStartNs = BigInt(Date.now()) * 1_000_000n;
  const file = snapshotPath(args.cacheDir, args.root);
  let snapshot: Snapshot;
  try {
    snapshot = JSON.parse(fs.readFileSync(file, 'utf8')) as Snapshot;
  } catch {
    return null;
  }
  if (snapshot.v !== SNAPSHOT_VERSION || snapshot.args !== argsKey(args)) return null;
  if (snapshot.envHash !== envHash(snapshot.envNames)) return null;
  // A list damaged into something else would check nothing and answer a no-op.
  if (![snapshot.files, snapshot.digests, snapshot.dirs, snapshot.outputDirs].every(Array.isArray)) return null;
  const recorded = snapshot.files;
  const { dirs: recordedDirs, outputDirs } = snapshot;
  // Each list in one call: the addon's, when it is there (engine/fs-batch.ts).
  const filesHeld = unmovedMany(recorded);
  const fileAt = new Map<string, number>();
  for (let i = 0; i < recorded.length; i++) if (!filesHeld[i]) fileAt.set(recorded[i]![0], i);
  for (const [p, digest] of snapshot.digests) {
    if (!fileAt.has(p) && digestMoved(p, digest)) fileAt.set(p, recorded.findIndex(([q]) => q === p));
  }
  const files = [...fileAt.keys()];
  const dirAt = new Map<string, number>();
  const dirsHeld = unmovedMany(recordedDirs);
  for (let i = 0; i < recordedDirs.length; i++) if (!dirsHeld[i]) dirAt.set(recordedDirs[i]![0], i);
  const dirs = [...dirAt.keys()];
  const changed = new Set<string>();
  const outputsHeld = unmovedMany(outputDirs);
  for (let i = 0; i < outputDirs.length; i++) {
    const [p, st] = outputDirs[i]!;
    if (st === null || !outputsHeld[i]) changed.add(p);
  }
  if (files.length + dirs.length > 0) {
    // What a damaged snapshot names is no path at all: the full path answers (and writes a good snapshot).
    if (!files.every((p) => typeof p === 'string') || !dirs.every((p) => typeof p === 'string')) return null;
    return changed.size === 0 ? { kind: 'changed', snapshot, file, files, dirs, fileAt, dirAt } : null;
  }
  const settledSome = settleRacy(snapshot, checkStartNs);
  if (changed.size === 0) {
    if (settledSome) replaceFile(file, JSON.stringify(snapshot));
    return { kind: 'noop', snapshot };
  }
  if (!restoreOutputs(snapshot, file, changed)) return null;
  snapshot.outputDirs = snapshot.outputDirs.map(([p, st]) => [p, changed.has(p) ? current(p) : st]);
  if (snapshot.outputDirs.some(([, st]) => st === null)) return null;
  replaceFile(file, JSON.stringify(snapshot));
  return { kind: 'noop', snapshot };
}

/**
 * Drops the racy entries that are racy no more: this check found each unchanged (its stat as recorded, its content
 * its digest), and its ctime is now further back than the racy window, so a change from now on would show in its
 * stat. Without this every no-op after an edit's build hashed the edited file again, and loaded node:crypto to do it
 * (~4-8 ms of the answer), until another build wrote a snapshot. Git's index refresh does the same for its racily
 * clean entries. The bound moves with them, forward only (a clock set back leaves the snapshot as it is): the
 * entries not listed are then still no later than it, as the incremental path's write expects (RacyCandidates).
 */
function settleRacy(snapshot: Snapshot, checkStartNs: bigint): boolean {
  if (snapshot.digests.length === 0) return false;
  const bound = String(checkStartNs - RACY_WINDOW_NS);
  if (!/^[0-9]+$/.test(snapshot.racyBound) || !laterThan(bound, snapshot.racyBound)) return false;
  const still = snapshot.digests.filter(([, , ctime]) => typeof ctime !== 'string' || laterThan(ctime, bound));
  if (still.length === snapshot.digests.length) return false;
  snapshot.digests = still;
  snapshot.racyBound = bound;
  return true;
}

/**
 * The stored outputs list of `snapshot`, with the delta that completes it applied, or null when it is missing or
 * belongs to another snapshot.
 */
export function snapshotOutputs(file: string, snapshot: Snapshot): SnapshotOutputs | null {
  const stored = companion<SnapshotOutputs>(outputsPath(file), 'outputs', file, snapshot);
  return stored && (stored.delta ? applyOutputs(stored.value, stored.delta) : stored.value);
}

/** The --json document stored with `snapshot`, or null when it is not there (the caller takes the full path). */
export function snapshotReport(args: SnapshotArgs, snapshot: Snapshot): unknown {
  const file = snapshotPath(args.cacheDir, args.root);
  const stored = companion<{ targets: { label: string }[] }>(reportPath(file), 'report', file, snapshot);
  return stored && (stored.delta ? { ...stored.value, targets: applyTargets(stored.value.targets, stored.delta) } : stored.value);
}

/** A companion file's `field` as of `snapshot`: written with it, or written earlier and completed by a delta. */
function companion<T>(at: string, field: string, file: string, snapshot: Snapshot): { value: T; delta: SnapshotDelta | null } | null {
  let stored: { id: string; build: string } & Record<string, unknown>;
  try {
    stored = JSON.parse(fs.readFileSync(at, 'utf8')) as typeof stored;
  } catch {
    return null;
  }
  if (stored.id !== snapshot.argsId) return null;
  if (stored.build === snapshot.build) return { value: stored[field] as T, delta: null };
  const delta = readDelta(file, snapshot.argsId, snapshot.build);
  return delta !== null && delta.base === stored.build ? { value: stored[field] as T, delta } : null;
}
