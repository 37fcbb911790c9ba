// The embedded local cache (DESIGN §5): an LMDB index (action cache, blob records, stat cache, small kv
// tables) in dir/index plus the content-addressed blobs in dir/cas.
//
// The index is a cache of the CAS, never the reverse: an action-cache entry is committed only after every blob
// it names is durable, and every hit re-checks those blobs, so a lost or stale index entry costs a rebuild,
// never a wrong output.

import { execFile } from 'node:child_process';
import { mkdirSync, realpathSync, type BigIntStats } from 'node:fs';
import { promisify } from 'node:util';
import { join, resolve } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { Cas, type BlobRecord } from './cas.js';
import { StatCache, boundedKey, type ListingEntry, type StatEntry, type TreeRecord } from './stat-cache.js';

export interface StoredOutput {
  path: string;
  kind: 'wheel' | 'file';
  digest: string;
  size: number;
  mode: number;
}

export interface ActionResult {
  key: string;
  label: string;
  record: unknown; // the key record, kept for `wg explain`
  outputs: StoredOutput[];
  log: { digest: string; size: number };
  durationMs: number;
  createdAt: string;
}

export type Lookup = { hit: ActionResult } | { miss: 'absent' } | { miss: 'corrupt'; warning: string };

export type KvName = 'probes' | 'history' | 'records';

export interface Kv {
  get(id: string): unknown;
  put(id: string, value: unknown): void;
  /**
   * Many puts, written with the store's next asynchronous commit and durable at its close: a build's history,
   * records and outputs were three synchronous commits, an fdatasync each. This process's gets see them at once.
   */
  putMany(entries: [string, unknown][]): void;
}

/** Runs a command to its end; rejects when it cannot run or exits non-zero. */
export type CommandRunner = (cmd: string, args: string[]) => Promise<void>;

const execRun: CommandRunner = async (cmd, args) => {
  await promisify(execFile)(cmd, args);
};
/**
 * Up to this many new blobs are fsynced one by one (file and folder) rather than with one `syncfs`: an edit's build
 * makes two or three, fsynced all at once; past a handful, one `syncfs` costs less than a flush of each.
 */
const FSYNC_EACH_MAX = 8;
/** How long finished results wait to be committed together. */
const GROUP_COMMIT_MS = 250;

// Virtual address space only: LMDB does not grow the file to this size, and lmdb-js enlarges the map itself
// when it fills.
const MAP_SIZE = 256 * 1024 * 1024;
/**
 * Where msgpackr keeps the record shapes of a database, once, instead of in every value: decoding a value then
 * skips redefining its shape, which was a third of reading 10,000 stat-cache entries.
 */
const SHARED_STRUCTURES = Symbol.for('wg.structures');

// LMDB must not be opened twice in one process (closing one handle drops the other's fcntl locks), so handles
// are shared per real directory and closed when the last user closes.
const openStores = new Map<string, { store: LocalStore; refs: number }>();

function isActionResult(v: unknown): v is ActionResult {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Partial<ActionResult>;
  return (
    typeof r.key === 'string' &&
    Array.isArray(r.outputs) &&
    r.outputs.every((o: unknown) => {
      const out = o as Partial<StoredOutput> | null;
      return typeof out?.digest === 'string' && typeof out.size === 'number';
    }) &&
    typeof r.log?.digest === 'string' &&
    typeof r.log.size === 'number'
  );
}

export class LocalStore {
  readonly dir: string;
  private readonly realDir: string;
  private readonly root: RootDatabase;
  private readonly ac: Database<ActionResult, string>;
  private readonly cas: Cas;
  private readonly stats: StatCache;
  private readonly kvs: Record<KvName, Kv>;
  /** Results put but not yet committed (see putResult). */
  private readonly pending = new Map<string, ActionResult>();
  private flushTimer: NodeJS.Timeout | null = null;
  private statsSaved: Promise<void> = Promise.resolve();
  /** How `sync` is run; a build replaces it (engine/spawn-helper.ts) so the flush does not fork all of wg. */
  private run: CommandRunner = execRun;

  private constructor(dir: string, realDir: string) {
    this.dir = dir;
    this.realDir = realDir;
    this.root = open(join(dir, 'index'), { maxDbs: 16, mapSize: MAP_SIZE });
    this.ac = this.root.openDB<ActionResult, string>({ name: 'ac', sharedStructuresKey: SHARED_STRUCTURES });
    this.cas = new Cas(dir, this.root.openDB<BlobRecord, string>({ name: 'blobs', sharedStructuresKey: SHARED_STRUCTURES }));
    this.cas.deferDurability = true;
    this.stats = new StatCache(
      this.root.openDB<StatEntry, string>({ name: 'stat', sharedStructuresKey: SHARED_STRUCTURES }),
      this.root.openDB<ListingEntry, string>({ name: 'listings', sharedStructuresKey: SHARED_STRUCTURES }),
      // Its own name: the `trees` of earlier versions held msgpack records, which a string read would not recognize.
      this.root.openDB<TreeRecord, string>({ name: 'tree-strings', encoding: 'string' }),
    );
    const kv = (name: KvName): Kv => {
      const db = this.root.openDB<unknown, string>({ name });
      // What putMany wrote and lmdb has not committed yet: an asynchronous put is not visible to gets until then.
      const uncommitted = new Map<string, unknown>();
      return {
        get: (id) => {
          const key = boundedKey(id);
          return uncommitted.size > 0 && uncommitted.has(key) ? uncommitted.get(key) : db.get(key);
        },
        // putSync so a get right after a put sees it; these values are small and rare.
        put: (id, value) => {
          const key = boundedKey(id);
          uncommitted.delete(key);
          db.putSync(key, value);
        },
        putMany: (entries) => {
          for (const [id, value] of entries) {
            const key = boundedKey(id);
            uncommitted.set(key, value);
            // What these tables hold is advice (durations, last keys, output names): a failed write loses it as
            // a crash before the commit would, and the build goes on.
            void db.put(key, value).then(
              () => uncommitted.get(key) === value && uncommitted.delete(key),
              () => undefined,
            );
          }
        },
      };
    };
    this.kvs = { probes: kv('probes'), history: kv('history'), records: kv('records') };
  }

  /** `run`, when given, runs the flush's `sync` (for every user of this handle, which is shared per folder). */
  static open(dir: string, run?: CommandRunner): LocalStore {
    const abs = resolve(dir);
    for (const sub of ['index', 'cas', 'tmp']) mkdirSync(join(abs, sub), { recursive: true });
    const real = realpathSync(abs);
    const shared = openStores.get(real);
    if (shared) {
      shared.refs++;
      if (run) shared.store.run = run;
      return shared.store;
    }
    const store = new LocalStore(abs, real);
    if (run) store.run = run;
    openStores.set(real, { store, refs: 1 });
    store.cas.sweepTmp();
    return store;
  }

  lookup(key: string): Lookup {
    const short = key.slice(0, 12);
    let entry: unknown;
    try {
      entry = (this.pending.size > 0 ? this.pending.get(key) : undefined) ?? this.ac.get(key);
    } catch {
      entry = null; // undecodable: handled as malformed below
    }
    if (entry === undefined) return { miss: 'absent' };
    if (!isActionResult(entry)) {
      this.pending.delete(key);
      this.ac.removeSync(key);
      return { miss: 'corrupt', warning: `cache entry ${short} has a malformed index record; rebuilding` };
    }
    const blobs = [...entry.outputs.map((o) => ({ digest: o.digest, size: o.size })), entry.log];
    for (const { digest, size } of blobs) {
      let path: string;
      try {
        path = this.cas.path(digest);
      } catch {
        this.pending.delete(key);
        this.ac.removeSync(key);
        return { miss: 'corrupt', warning: `cache entry ${short} names an invalid digest ${JSON.stringify(digest)}; rebuilding` };
      }
      const check = this.cas.verifySync(digest, size);
      if (check.ok) continue;
      this.pending.delete(key);
      this.ac.removeSync(key);
      if (check.missing) {
        this.cas.forgetSync(digest);
        return { miss: 'corrupt', warning: `cache entry ${short} (${path}) is missing; rebuilding` };
      }
      if (check.actualDigest === digest) {
        // The blob is right and the entry's size is wrong: drop the entry, keep the blob.
        return {
          miss: 'corrupt',
          warning: `cache entry ${short} (${path}) failed verification: expected ${size} bytes got ${check.actualSize}; rebuilding`,
        };
      }
      this.cas.quarantineSync(digest);
      return {
        miss: 'corrupt',
        warning: `cache entry ${short} (${path}) failed verification: expected sha256 ${digest} got ${check.actualDigest}; rebuilding`,
      };
    }
    return { hit: entry };
  }

  putBlob(file: string): Promise<{ digest: string; size: number }> {
    return this.cas.put(file);
  }

  /** Like putBlob, for a file wg wrote and will not write again: linked into the CAS when it can be. */
  adoptBlob(file: string): Promise<{ digest: string; size: number }> {
    return this.cas.adopt(file);
  }

  /**
   * Group commit (ccache and Bazel fsync every blob; a thousand small actions then wait on a thousand fsyncs): the
   * entry is visible to this process at once, and becomes durable with the others at the next flush, which first
   * makes every blob durable (one `sync -f` of the cache's file system, or an fsync each when they are few) and
   * only then commits the index entries. A crash before the flush loses those entries (a cache miss), never points
   * an entry at a lost blob.
   */
  async putResult(result: ActionResult): Promise<void> {
    this.pending.set(result.key, result);
    this.flushTimer ??= setTimeout(() => void this.flush(), GROUP_COMMIT_MS);
  }

  /**
   * Makes every pending result durable: blobs first, then the index entries in one transaction. Flushes run one
   * after another, so one started early (an edit's build starts it before writing its snapshot) and the one at
   * close never commit the same batch twice.
   */
  flush(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    // With none running, the batch starts now, not when the chain's promise settles: that waits for the caller's
    // next await, and an edit's build writes its snapshot before it awaits, which the fsyncs should overlap. A
    // failed flush left its batch pending: the next one tries it again.
    const started = this.flushesRunning === 0 ? this.flushBatch() : this.flushing.catch(() => undefined).then(() => this.flushBatch());
    this.flushesRunning++;
    this.flushing = started.finally(() => this.flushesRunning--);
    return this.flushing;
  }

  /**
   * Tells the store a build of `actions` actions is about to run: when their blobs will be few enough to fsync one by
   * one, each is fsynced as soon as it is made (Cas.fsyncEarly). 40 alternating pairs of one-leaf edits at 1000
   * targets, with and without: 0.969x of the wall, 0.939x of the CPU.
   */
  expectActions(actions: number): void {
    // An action makes a log and at least one output.
    if (actions * 2 <= FSYNC_EACH_MAX) this.cas.fsyncEarly(FSYNC_EACH_MAX);
  }

  private flushing: Promise<void> = Promise.resolve();
  private flushesRunning = 0;

  private async flushBatch(): Promise<void> {
    if (this.pending.size === 0 && !this.cas.hasPendingRecords) return;
    const batch = [...this.pending.values()];
    const records = this.cas.heldRecords();
    if (records.length <= FSYNC_EACH_MAX) {
      await this.cas.syncBlobs(records.map(([digest]) => digest));
    } else {
      try {
        await this.run('sync', ['-f', this.dir]);
      } catch {
        await this.run('sync', []); // coreutils without -f (or another sync): the whole machine, still correct
      }
    }
    // Blob fingerprints join the entries' transaction: a blob is trusted unread only once it is durable.
    this.cas.commitRecords(records);
    for (const r of batch) void this.ac.put(r.key, r);
    // The put promises resolve on commit; with lmdb-js's default overlappingSync, durability comes at `flushed`.
    await this.ac.flushed;
    for (const r of batch) if (this.pending.get(r.key) === r) this.pending.delete(r.key);
  }

  blobPath(digest: string): string {
    return this.cas.path(digest);
  }

  /** true when the CAS holds this blob intact (checked like a hit's blobs; a remote download can then skip it). */
  hasBlob(digest: string, size: number): boolean {
    return this.cas.verifySync(digest, size).ok;
  }

  materialize(digest: string, dest: string, mode: number, fresh = false): Promise<void> {
    return this.cas.materialize(digest, dest, mode, fresh);
  }

  fileDigest(absPath: string, stat?: BigIntStats): string {
    return this.stats.fileDigest(absPath, stat);
  }

  /** The stat cache itself, for a walk that uses more of it than one file or folder (engine/source-tree.ts). */
  get statCache(): StatCache {
    return this.stats;
  }

  listDir(absDir: string, stat: BigIntStats): string[] {
    return this.stats.listDir(absDir, stat);
  }

  /** Starts storing the stat-cache entries made so far (one transaction); `close` waits for it. */
  saveStatEntries(): void {
    this.statsSaved = Promise.all([this.statsSaved, this.stats.save()]).then(() => undefined);
  }

  kv(name: KvName): Kv {
    return this.kvs[name];
  }

  async close(): Promise<void> {
    const shared = openStores.get(this.realDir);
    if (shared?.store !== this) return; // already closed
    if (--shared.refs > 0) return;
    openStores.delete(this.realDir);
    await this.flush();
    this.saveStatEntries();
    await this.statsSaved;
    await this.root.flushed;
    await this.root.close();
  }
}
