// Stat cache: absolute path → sha256 of the file's content, trusted while the file's stat is unchanged, so a
// no-op build does not re-read every source file.
//
// The fingerprint is (size, mtime, ctime, ino, dev) at nanosecond resolution. ctime is there on purpose: tools
// that preserve mtime (cp -p, rsync, tar, `touch -r`) cannot set ctime back, so a content change with a
// restored mtime is still noticed.
//
// Racy files (git's "racily clean" problem): a write that lands in the same ctime tick as the write we hashed
// after would leave every field unchanged. So an entry hashed less than `racyWindowMs` after the file's ctime
// is marked racy and re-hashed on its next use; once a hash starts later than ctime + window, any later write
// must carry a later ctime. Remaining limit: this assumes the filesystem's timestamp granularity and the skew
// between its clock and ours are both below the window (2 s by default). A server-side clock that lags ours
// by more (some NFS setups), a system clock stepped backwards, or anything that rewrites ctime directly
// (debugfs, restoring a block-level snapshot) can still hide a same-size change from the cache.

import { createHash } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { readdirSync, statSync, type BigIntStats } from 'node:fs';
import type { Database } from 'lmdb';
import { hashFileSync, statFingerprint } from './file-hash.js';

export interface StatEntry {
  fp: string;
  digest: string;
  racy: boolean;
}

/** A folder's names, trusted while the folder's stat is unchanged: adding, removing or renaming an entry changes it. */
export interface ListingEntry {
  fp: string;
  names: string[];
  racy: boolean;
}

/**
 * One step of a folder tree's walk, in walk order: a folder as `[relPath, fp]` (the root is `''`), a file as
 * `[relPath, fp, digest]`. Every step's stat must still match for the record to be trusted.
 */
export type TreeStep = [string, string] | [string, string, string];

/**
 * A whole source tree as one string: the digest its steps add up to, then each step's fields, every field ended by
 * a NUL (which no path, fingerprint or digest contains), a folder's relative path prefixed `d` and a file's `f`:
 * `<digest>\0d<rel>\0<fp>\0f<rel>\0<fp>\0<content digest>\0…`. Not msgpack's arrays: a replay compares each
 * fingerprint in place and takes out only the paths and digests it keeps, where decoding the 10,000 records of a
 * 10,000-target analysis made some 100,000 strings and arrays first.
 */
export type TreeRecord = string & { readonly __brand: 'TreeRecord' };

export function encodeTree(steps: readonly TreeStep[], digest: string): TreeRecord {
  let out = `${digest}\0`;
  for (const step of steps) out += step.length === 2 ? `d${step[0]}\0${step[1]}\0` : `f${step[0]}\0${step[1]}\0${step[2]}\0`;
  return out as TreeRecord;
}

export const DEFAULT_RACY_WINDOW_MS = 2000;

// lmdb-js refuses keys over ~1978 bytes; absolute paths can reach PATH_MAX (4096).
const MAX_PLAIN_KEY_BYTES = 1024;

/** An LMDB key for an arbitrary string id; long ids are replaced by their sha256 (never colliding with short ones). */
export function boundedKey(id: string): string {
  // A UTF-16 code unit is at most three UTF-8 bytes: most ids are short enough not to be measured at all.
  if (id.length * 3 <= MAX_PLAIN_KEY_BYTES || Buffer.byteLength(id) <= MAX_PLAIN_KEY_BYTES) return id;
  return `\0sha256:${createHash('sha256').update(id).digest('hex')}`;
}

export class StatCache {
  /** Number of times a file was actually read and hashed (for tests and --stats). */
  hashes = 0;
  /** Entries made this run, which this process trusts before (and after) `save` stores them. */
  private readonly written = new Map<string, StatEntry | null>();

  private readonly listed = new Map<string, ListingEntry>();
  /**
   * Keys of `written` and `listed` not yet stored. They are stored together by `save`, not one write each: each
   * unawaited put wakes LMDB's write thread, and on a cold 10,000-folder walk those wake-ups (~120,000 futex calls)
   * took the CPU from the walk itself, whose folder reads then took ten times as long as without the writes.
   */
  private readonly unsavedFiles = new Set<string>();
  private readonly unsavedFolders = new Set<string>();
  private readonly madeTrees = new Map<string, TreeRecord>();
  private readonly unsavedTrees = new Set<string>();

  constructor(
    private readonly db: Database<StatEntry, string>,
    private readonly listings: Database<ListingEntry, string>,
    private readonly trees: Database<TreeRecord, string>,
    readonly racyWindowMs = DEFAULT_RACY_WINDOW_MS,
  ) {}

  /**
   * The record of the tree at `absRoot`, unchecked: the caller compares each step with the stat it takes now. One
   * lookup per tree instead of one per folder and one per file was a tenth of a 10,000-target analysis.
   */
  tree(absRoot: string): TreeRecord | undefined {
    const key = boundedKey(absRoot);
    const made = this.madeTrees.get(key);
    if (made) return made;
    try {
      const stored: unknown = this.trees.get(key);
      return typeof stored === 'string' ? (stored as TreeRecord) : undefined;
    } catch {
      return undefined; // undecodable: the tree is walked again and the record replaced
    }
  }

  /** Keeps a tree's record; the caller makes one only when no step was racy (see the top of this file). */
  setTree(absRoot: string, record: TreeRecord): void {
    const key = boundedKey(absRoot);
    this.madeTrees.set(key, record);
    this.unsavedTrees.add(key);
  }

  /**
   * The names in a folder whose bigint stat was just taken. A 10,000-target workspace has 10,000 source folders,
   * and reading each one cost more than looking its names up; the racy rule is the same as for files.
   */
  listDir(absDir: string, stat: BigIntStats): string[] {
    const key = boundedKey(absDir);
    const fp = statFingerprint(stat, true);
    const entry = this.listed.get(key) ?? this.listings.get(key);
    if (entry && !entry.racy && entry.fp === fp) return entry.names;
    const startedMs = Date.now();
    const names = readdirSync(absDir);
    const fresh = { fp, names, racy: Number(stat.ctimeNs / 1_000_000n) + this.racyWindowMs > startedMs };
    this.listed.set(key, fresh);
    this.unsavedFolders.add(key);
    return names;
  }

  /** `stat`, when given, is the file's bigint stat taken just now by the caller (a tree walk already has it). */
  fileDigest(absPath: string, stat?: BigIntStats): string {
    if (!isAbsolute(absPath)) throw new Error(`stat cache needs an absolute path, got ${absPath}`);
    const key = boundedKey(absPath);
    const st = stat ?? statSync(absPath, { bigint: true });
    const entry = this.written.has(key) ? this.written.get(key) : this.db.get(key);
    if (entry && !entry.racy && entry.fp === statFingerprint(st, true)) return entry.digest;

    const startedMs = Date.now();
    const h = hashFileSync(absPath, true);
    this.hashes++;
    if (h.stable) {
      const ctimeMs = Number(h.stat.ctimeNs / 1_000_000n);
      const fresh = { fp: h.fp, digest: h.digest, racy: ctimeMs + this.racyWindowMs > startedMs };
      this.written.set(key, fresh);
    } else {
      // Changed while being read: the digest may be of a torn read, so it must not be trusted later.
      this.written.set(key, null);
    }
    this.unsavedFiles.add(key);
    return h.digest;
  }

  /**
   * Stores the entries made since the last save in one asynchronous write transaction. Not a synchronous commit:
   * that is an fsync on the caller's time. A stat entry lost in a crash only costs one re-hash, so a failed or
   * unfinished save is ignored.
   */
  save(): Promise<void> {
    if (this.unsavedFiles.size + this.unsavedFolders.size + this.unsavedTrees.size === 0) return Promise.resolve();
    const files = [...this.unsavedFiles];
    const folders = [...this.unsavedFolders];
    const trees = [...this.unsavedTrees];
    this.unsavedFiles.clear();
    this.unsavedFolders.clear();
    this.unsavedTrees.clear();
    return this.db
      .transaction(() => {
        for (const key of files) {
          const entry = this.written.get(key);
          if (entry) this.db.putSync(key, entry);
          else this.db.removeSync(key);
        }
        for (const key of folders) this.listings.putSync(key, this.listed.get(key)!);
        for (const key of trees) this.trees.putSync(key, this.madeTrees.get(key)!);
      })
      .then(
        () => undefined,
        () => undefined,
      );
  }
}
