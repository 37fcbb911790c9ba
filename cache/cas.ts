// Content-addressed blob folder: dir/cas/<2 hex>/<sha256>, written through dir/tmp.
//
// The write protocol (reliability-anchors §0 rule 1) is: stream to a temp file on the same filesystem while
// hashing, check the size, chmod 0444, fsync, rename to the digest name, fsync the directory. Only then may the
// caller commit an index entry that names the blob, so an index entry never points at a half-written file.
// Blobs are never trusted just because their name looks right (rule 3): an unrecorded or changed blob is
// re-hashed before it is used.

import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants as fsConstants,
  copyFileSync,
  fchmodSync,
  fstatSync,
  fsync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  promises as fsp,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  type BigIntStats,
} from 'node:fs';
// fs.promises, read where it is used: an edit's build stores its few small blobs synchronously, and loading
// node:fs/promises with this module cost it ~1 ms.
import type { FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Database } from 'lmdb';
import { CHUNK, hashFileSync, hashOpenFileSync, statFingerprint, type SyncHash } from './file-hash.js';

/** What the `blobs` db remembers about a committed blob, so an unchanged blob is trusted without a re-read. */
export interface BlobRecord {
  fp: string;
  size: number;
}

export type BlobCheck =
  | { ok: true }
  | { ok: false; missing: true }
  | { ok: false; missing: false; actualDigest: string; actualSize: number };

// A temp file that has not been written to for this long belongs to nobody, whatever its name says: a
// 1 GiB copy in progress bumps its mtime on every chunk.
const TMP_STALE_MS = 60 * 60 * 1000;
const DIGEST_RE = /^[0-9a-f]{64}$/;
// Temp names carry the host and pid so a second wg sharing the cache never sweeps a file another live process
// is still writing. The host tag matters for containers sharing one cache volume: their pids are not ours. Made on
// first use: an edit's build usually writes no temp file, and a first hash costs it ~1 ms.
let hostTagMemo: string | undefined;
function hostTag(): string {
  return (hostTagMemo ??= createHash('sha256').update(hostname()).digest('hex').slice(0, 8));
}
const TMP_RE = /^([0-9a-f]{8})-(\d+)-[0-9a-f]+$/;

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

async function hashFile(path: string): Promise<{ digest: string; size: number }> {
  const fh = await fsp.open(path, 'r');
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(CHUNK);
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
    return { digest: hash.digest('hex'), size };
  } finally {
    await fh.close();
  }
}

/**
 * fsync on the thread pool, the file opened here first: opened through fs/promises, the fsync would be asked for
 * only once the open's callback ran, and an edit's build keeps the main thread busy writing its snapshot while its
 * blobs' fsyncs should run (the flush it started early then waited for all of its fsyncs at close, ~4 ms).
 * `folder`: some file systems refuse fsync on a directory, and there is nothing better to do there.
 */
function fsyncNow(path: string, folder: boolean): Promise<void> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise((resolve, reject) => {
    fsync(fd, (synced) => {
      let e: unknown = synced;
      try {
        closeSync(fd);
      } catch (closed) {
        e ??= closed; // a network file system may report a failed write only here
      }
      if (e && !(folder && hasCode(e, 'EINVAL', 'EISDIR', 'EPERM', 'EBADF'))) reject(e);
      else resolve();
    });
  });
}

function fsyncFile(path: string): Promise<void> {
  return fsyncNow(path, false);
}

/** fsync of a blob or its folder; gone since it was stored (quarantined, deleted) leaves nothing to make durable. */
async function fsyncIfPresent(path: string, folder: boolean): Promise<void> {
  try {
    await fsyncNow(path, folder);
  } catch (e) {
    if (!hasCode(e, 'ENOENT')) throw e;
  }
}

// Without this a crash after rename can leave the directory entry unwritten even though the file was fsynced.
function fsyncDir(dir: string): Promise<void> {
  return fsyncNow(dir, true);
}

function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } catch (e) {
    if (!hasCode(e, 'EINVAL', 'EISDIR', 'EPERM', 'EBADF')) throw e;
  } finally {
    closeSync(fd);
  }
}

function hasCode(e: unknown, ...codes: string[]): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && codes.includes(code);
}

function randomHex(): string {
  return randomBytes(8).toString('hex');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return hasCode(e, 'EPERM'); // exists, owned by someone else
  }
}

export class Cas {
  readonly casDir: string;
  readonly tmpDir: string;
  readonly quarantineDir: string;

  /**
   * Group commit: blobs are not fsynced one by one; the owner makes them durable together (one `syncfs` of the
   * cache's file system) before it commits index entries that name them, and their fingerprints with those
   * (heldRecords, commitRecords). Set by LocalStore, which does exactly that.
   */
  deferDurability = false;

  constructor(
    root: string,
    private readonly blobs: Database<BlobRecord, string>,
  ) {
    this.casDir = join(root, 'cas');
    this.tmpDir = join(root, 'tmp');
    this.quarantineDir = join(root, 'quarantine');
  }

  path(digest: string): string {
    // The digest comes from index records and, later, from remote caches: never let it name a path elsewhere.
    if (!isDigest(digest)) throw new Error(`not a lowercase sha256 hex digest: ${JSON.stringify(digest)}`);
    return join(this.casDir, digest.slice(0, 2), digest);
  }

  /**
   * Removes temp files left by crashed writers. A file is left alone while the process that named it may
   * still be writing it (same host, pid alive, recently written).
   */
  sweepTmp(now = Date.now()): string[] {
    const removed: string[] = [];
    let names: string[];
    try {
      names = readdirSync(this.tmpDir);
    } catch (e) {
      if (hasCode(e, 'ENOENT')) return removed;
      throw e;
    }
    for (const name of names) {
      const p = join(this.tmpDir, name);
      let mtimeMs: number;
      try {
        mtimeMs = lstatSync(p).mtimeMs;
      } catch {
        continue; // its writer renamed it away meanwhile
      }
      const m = TMP_RE.exec(name);
      const ownerGone = m !== null && m[1] === hostTag() && !pidAlive(Number(m[2]));
      if (ownerGone || now - mtimeMs > TMP_STALE_MS) {
        rmSync(p, { recursive: true, force: true });
        removed.push(name);
      }
    }
    return removed;
  }

  /** Streams `file` into the CAS. Resolves once the blob is durable and recorded. */
  async put(file: string): Promise<{ digest: string; size: number }> {
    mkdirSync(this.tmpDir, { recursive: true });
    const tmp = join(this.tmpDir, `${hostTag()}-${process.pid}-${randomHex()}`);
    const src = await fsp.open(file, 'r');
    let out: FileHandle | undefined;
    try {
      const before = await src.stat({ bigint: true });
      out = await fsp.open(tmp, 'wx', 0o600);
      const hash = createHash('sha256');
      const buf = Buffer.allocUnsafe(CHUNK);
      let size = 0;
      for (;;) {
        const { bytesRead } = await src.read(buf, 0, CHUNK, null);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        let off = 0;
        while (off < bytesRead) {
          const { bytesWritten } = await out.write(buf, off, bytesRead - off, size + off);
          off += bytesWritten;
        }
        size += bytesRead;
      }
      const after = await src.stat({ bigint: true });
      if (BigInt(size) !== before.size || statFingerprint(before) !== statFingerprint(after)) {
        throw new Error(`${file} changed while it was being stored in the cache`);
      }
      const written = await out.stat();
      if (written.size !== size) {
        throw new Error(`short write storing ${file} in the cache (${tmp}): ${written.size} of ${size} bytes`);
      }
      // chmod before fsync so the read-only mode is as durable as the bytes. Read-only because blobs are
      // hard-linked into wg-out/, and a tool writing through such a link must not corrupt the cache.
      await out.chmod(0o444);
      if (!this.deferDurability) await out.sync();
      await out.close();
      out = undefined;

      const digest = hash.digest('hex');
      await this.install(tmp, digest, size);
      return { digest, size };
    } finally {
      if (out) await out.close().catch(() => {});
      await src.close();
      await fsp.rm(tmp, { force: true });
    }
  }

  /**
   * Stores a file wg itself just wrote (an action's output in its sandbox, a log) by hard-linking it into the CAS
   * instead of copying it. On ext4 a new inode costs 0.3-1 ms and a link 0.02 ms, and two copies per action were
   * most of the engine's cost on a build of small actions. Only a regular file with no other name is adopted: a
   * file an action hard-linked to something outside its sandbox is copied, so making the blob read-only (and
   * keeping it) never touches that other file. A late writer (a daemon the action left behind) changes the blob's
   * size or mtime, which its fingerprint records, so the next use re-hashes it and quarantines it.
   *
   * The file is linked straight to its digest's name: it is complete and read-only before it gets that name, so
   * no temp name is needed. Its bytes are as durable as a renamed temp file's would be (both wait for the group
   * commit when durability is deferred), and a name whose blob was lost in a crash has no record: it is re-hashed
   * before use, and replaced.
   */
  async adopt(file: string): Promise<{ digest: string; size: number }> {
    // Through one descriptor: open, stat, read, chmod and stat again. By path, that was ten syscalls with the link
    // (a stat and a chmod per name lookup), and here each costs ~10 µs. A small file is read synchronously (four hops
    // to the thread pool cost more than the read), a large one on the thread pool. O_NOFOLLOW leaves a symlink to
    // put(), O_NONBLOCK keeps a FIFO from blocking the open.
    let fd: number;
    try {
      fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    } catch (e) {
      if (hasCode(e, 'ELOOP')) return this.put(file);
      throw e;
    }
    let digest: string;
    let size: number;
    let fp: string;
    try {
      const before = fstatSync(fd, { bigint: true });
      if (!before.isFile() || before.nlink !== 1n) return this.put(file);
      ({ digest, size } = before.size <= BigInt(CHUNK) ? hashOpenFileSync(fd, Number(before.size)) : await hashFile(file));
      fchmodSync(fd, 0o444);
      // chmod moves only ctime, which the fingerprint leaves out.
      fp = statFingerprint(before);
      if (BigInt(size) !== before.size || fp !== statFingerprint(fstatSync(fd, { bigint: true }))) {
        throw new Error(`${file} changed while it was being stored in the cache`);
      }
    } finally {
      closeSync(fd);
    }
    if (!this.deferDurability) await fsyncFile(file);
    const final = this.path(digest);
    this.makeShard(dirname(final));
    try {
      linkSync(file, final);
    } catch (e) {
      if (hasCode(e, 'EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS')) return this.put(file);
      if (!hasCode(e, 'EEXIST')) throw e;
      // Taken: by an intact blob (kept, our file dropped) or by a damaged one, replaced through a temp name. The
      // intact one, known by the fingerprint recorded for it, is the usual case in an edit's build (a dependent
      // rebuilt with the output it had), and is told here without the temp link, the promise-based install (five
      // trips to the thread pool) and node:fs/promises, whose first use loads readline and rimraf (~1.5-2 ms).
      const taken = lstatSync(final, { bigint: true, throwIfNoEntry: false });
      if (taken !== undefined && this.matchesRecord(digest, size, taken)) return { digest, size };
      const tmp = join(this.tmpDir, `${hostTag()}-${process.pid}-${randomHex()}`);
      mkdirSync(this.tmpDir, { recursive: true });
      linkSync(file, tmp);
      try {
        await this.install(tmp, digest, size);
      } finally {
        await fsp.rm(tmp, { force: true });
      }
      return { digest, size };
    }
    if (!this.deferDurability) await fsyncDir(dirname(final));
    // A link changes neither size, inode nor mtime: the fingerprint taken before is the blob's.
    if (this.deferDurability) this.record(digest, { fp, size });
    else await this.blobs.put(digest, { fp, size });
    return { digest, size };
  }

  /** Shard folders known to exist: made once per process, not stat-ed per blob. */
  private readonly shards = new Set<string>();

  private makeShard(shard: string): void {
    if (this.shards.has(shard)) return;
    if (mkdirSync(shard, { recursive: true }) !== undefined && !this.deferDurability) fsyncDirSync(this.casDir);
    this.shards.add(shard);
  }

  /**
   * Records a blob's fingerprint when durability is deferred: held here (and read from here) until the owner has
   * made the blobs durable, then written with the index entries that name them (commitRecords).
   */
  private record(digest: string, rec: BlobRecord): void {
    this.pendingRecords.set(digest, rec);
    if (this.earlyLeft <= 0 || this.early.has(digest)) return;
    this.earlyLeft--;
    const synced = this.fsyncBlob(digest);
    synced.catch(() => undefined); // awaited, and its failure seen, by syncBlobs
    this.early.set(digest, synced);
  }

  /**
   * Fsyncs the next `count` blobs recorded at once, on the thread pool, rather than when the owner flushes: an edit's
   * build makes two or three, whose fsyncs then run while it stores the result and writes its snapshot instead of
   * holding up the index commit at close. For a build of few actions; a bigger one's flush syncs the whole file
   * system once.
   */
  fsyncEarly(count: number): void {
    this.earlyLeft = count;
  }

  private earlyLeft = 0;
  private readonly early = new Map<string, Promise<void>>();

  private readonly pendingRecords = new Map<string, BlobRecord>();

  private recorded(digest: string): BlobRecord | undefined {
    return this.pendingRecords.get(digest) ?? this.blobs.get(digest);
  }

  /** The fingerprints held now: the owner writes them (commitRecords) once it has made their blobs durable. */
  heldRecords(): [string, BlobRecord][] {
    return [...this.pendingRecords];
  }

  commitRecords(records: [string, BlobRecord][]): void {
    for (const [digest, rec] of records) {
      this.early.delete(digest); // made durable some other way (syncfs)
      void this.blobs.put(digest, rec).catch(() => undefined);
      if (this.pendingRecords.get(digest) === rec) this.pendingRecords.delete(digest);
    }
  }

  get hasPendingRecords(): boolean {
    return this.pendingRecords.size > 0;
  }

  /**
   * Makes these blobs durable one by one: each file and its shard folder fsynced, all at once on the thread pool
   * (those fsyncEarly started are awaited, not asked for again). For the few blobs of an edit's build this replaces the whole file system's `syncfs`, which a spawned `sync`
   * does by forking all of wg, and it runs while the main thread goes on.
   */
  async syncBlobs(digests: string[]): Promise<void> {
    await Promise.all(
      digests.map((d) => {
        const early = this.early.get(d);
        // Taken once: should it have failed, the owner's next flush fsyncs the blob again.
        this.early.delete(d);
        return early ?? this.fsyncBlob(d);
      }),
    );
  }

  /** One blob made durable: its bytes, its name in its shard, and the shard's name (which the blob may have made). */
  private fsyncBlob(digest: string): Promise<void> {
    const file = this.path(digest);
    return Promise.all([fsyncIfPresent(file, false), fsyncIfPresent(dirname(file), true), fsyncIfPresent(this.casDir, true)]).then(() => undefined);
  }

  /**
   * Moves a complete, read-only temp file (durable unless deferred) to its digest's name and records its
   * fingerprint. A valid blob already there is kept and the temp file dropped.
   */
  private async install(tmp: string, digest: string, size: number): Promise<void> {
    const final = this.path(digest);
    const shard = dirname(final);
    if ((await fsp.mkdir(shard, { recursive: true })) !== undefined && !this.deferDurability) await fsyncDir(this.casDir);
    if (await this.existingIsValid(digest, size, final)) {
      await fsp.rm(tmp, { force: true });
    } else {
      // Atomic replace: readers see either the old (possibly corrupt, about to be re-verified) blob or ours.
      await fsp.rename(tmp, final);
      if (!this.deferDurability) await fsyncDir(shard);
    }
    // Stat after the rename: the blob may be the one that was already there.
    const st = await fsp.stat(final, { bigint: true });
    if (this.deferDurability) this.record(digest, { fp: statFingerprint(st), size });
    else await this.blobs.put(digest, { fp: statFingerprint(st), size });
  }

  /** `st` (an lstat) is of a file with the fingerprint and size recorded for `digest`: the blob is intact. */
  private matchesRecord(digest: string, size: number, st: BigIntStats): boolean {
    const rec = this.recorded(digest);
    return st.isFile() && rec !== undefined && rec.fp === statFingerprint(st) && rec.size === size;
  }

  private async existingIsValid(digest: string, size: number, final: string): Promise<boolean> {
    let st: BigIntStats;
    try {
      st = await fsp.lstat(final, { bigint: true });
    } catch (e) {
      if (hasCode(e, 'ENOENT')) return false;
      throw e;
    }
    if (!st.isFile()) return false;
    if (this.matchesRecord(digest, size, st)) return true;
    const h = await hashFile(final);
    return h.digest === digest && h.size === size;
  }

  /**
   * Checks a blob against its digest, cheaply when its stat fingerprint is the recorded one, by re-hashing
   * otherwise. A re-hash that matches refreshes the record (e.g. after a `touch`).
   */
  verifySync(digest: string, expectedSize?: number, stat?: BigIntStats): BlobCheck {
    const p = this.path(digest);
    let st: BigIntStats;
    try {
      st = stat ?? statSync(p, { bigint: true });
    } catch (e) {
      if (hasCode(e, 'ENOENT', 'ENOTDIR')) return { ok: false, missing: true };
      throw e;
    }
    const sizeOk = expectedSize === undefined || st.size === BigInt(expectedSize);
    const rec = this.recorded(digest);
    if (sizeOk && rec && rec.fp === statFingerprint(st)) return { ok: true };
    let h: SyncHash;
    try {
      h = hashFileSync(p);
    } catch (e) {
      if (hasCode(e, 'ENOENT')) return { ok: false, missing: true };
      throw e;
    }
    if (h.digest === digest && (expectedSize === undefined || h.size === expectedSize)) {
      // Batched and unawaited, like the stat cache: a lost fingerprint only costs one more re-hash.
      if (h.stable) void this.blobs.put(digest, { fp: h.fp, size: h.size }).catch(() => undefined);
      return { ok: true };
    }
    return { ok: false, missing: false, actualDigest: h.digest, actualSize: h.size };
  }

  /** Moves a bad blob out of the CAS (kept for inspection) and forgets its record. */
  quarantineSync(digest: string): string | undefined {
    const p = this.path(digest);
    mkdirSync(this.quarantineDir, { recursive: true });
    const dest = join(this.quarantineDir, `${digest}.${Date.now()}-${randomHex().slice(0, 8)}`);
    this.pendingRecords.delete(digest);
    this.blobs.removeSync(digest);
    try {
      renameSync(p, dest);
      return dest;
    } catch (e) {
      if (hasCode(e, 'ENOENT')) return undefined; // another process got there first
      throw e;
    }
  }

  forgetSync(digest: string): void {
    this.pendingRecords.delete(digest);
    this.blobs.removeSync(digest);
  }

  /** Folders this process has already made under wg-out: a thousand restores need one mkdir each, not three. */
  private readonly madeDirs = new Set<string>();

  /**
   * Makes `dest` the blob's bytes, by hard link where possible. A new name appears atomically (a link, or temp +
   * rename when replacing), so a reader of wg-out/ never sees a half-copied wheel. Synchronous on purpose: these
   * are a handful of metadata syscalls per file, and a restore of a thousand outputs spends more time hopping to
   * libuv's thread pool and back than in the kernel.
   */
  async materialize(digest: string, dest: string, mode: number, fresh = false): Promise<void> {
    this.materializeSync(digest, dest, mode, fresh);
  }

  /**
   * `fresh`: dest's folder was just made for it (a dependency's folder in a sandbox), so dest is not looked for and
   * its folder not made: the link finds out, and only a link that fails so takes the general way. That is three
   * syscalls of five per file, and a cold build links two dependencies' outputs per action.
   */
  materializeSync(digest: string, dest: string, mode: number, fresh = false): void {
    const src = this.path(digest);
    // Already the blob itself (a hard link from an earlier build): nothing to write, and nothing to verify
    // beyond what the lookup that produced this digest already checked. This is the whole cost of a no-op.
    // One stat of the blob serves both checks (a cold build materializes about three blobs per action).
    const s = statSync(src, { bigint: true, throwIfNoEntry: false });
    if (fresh && s) {
      const check = this.verifySync(digest, undefined, s);
      if (check.ok) {
        try {
          linkSync(src, dest);
          return;
        } catch {
          /* its folder is not there after all, the name is taken, or no link can be made: the general way */
        }
      }
    }
    const d = lstatSync(dest, { bigint: true, throwIfNoEntry: false });
    if (s && d && d.ino === s.ino && d.dev === s.dev) return;
    const check = s ? this.verifySync(digest, undefined, s) : ({ ok: false, missing: true } as const);
    if (!check.ok) {
      if (check.missing) throw new Error(`cache blob ${src} is missing`);
      this.quarantineSync(digest);
      throw new Error(`cache blob ${src} failed verification: expected sha256 ${digest} got ${check.actualDigest}`);
    }
    const dir = dirname(dest);
    if (!this.madeDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      this.madeDirs.add(dir);
    }
    // Linking changes only the blob's ctime, which blob fingerprints leave out, so nothing needs re-recording.
    if (!d) {
      try {
        linkSync(src, dest);
        return;
      } catch (e) {
        if (!hasCode(e, 'EEXIST', 'EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS')) throw e;
      }
    }
    const tmp = join(dir, `.${basename(dest)}.wg-${randomHex().slice(0, 8)}`);
    try {
      try {
        linkSync(src, tmp);
      } catch (e) {
        if (!hasCode(e, 'EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS')) throw e;
        copyFileSync(src, tmp);
        chmodSync(tmp, mode);
      }
      renameSync(tmp, dest);
    } finally {
      // rename(a, b) is a no-op that leaves `a` in place when both already name the same inode.
      rmSync(tmp, { force: true });
    }
  }
}
