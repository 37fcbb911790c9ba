// Hashing a file synchronously, and the stat fingerprint that says whether it changed. On its own so that the
// no-op check, which re-reads racily edited files, loads this and nothing of the CAS.

import { closeSync, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import type { Hash } from 'node:crypto';

export const CHUNK = 1 << 20;

// Reused by the synchronous hashers only: nothing can interleave with a synchronous loop. Allocated on first use:
// a no-op check usually hashes nothing.
let syncBuf: Buffer | undefined;

/**
 * A stat fingerprint: if it is unchanged, the bytes are assumed unchanged. Nanosecond fields are compared as
 * strings because mtimeMs is a lossy double and inode numbers can exceed 2^53.
 *
 * Source files (withDev, the stat cache) are fingerprinted with ctime, which tools that restore mtime cannot set
 * back. Blobs are not: every hard link wg-out makes or drops changes a blob's ctime, and counting that as a change
 * would re-hash every restored wheel on the next lookup. Blobs are read-only and written only by wg, so size,
 * inode and mtime catch an accidental write; remote blobs are always verified by digest anyway.
 */
export function statFingerprint(st: BigIntStats, withDev = false): string {
  // Joined, not a template string: a template makes a rope of nine pieces, which every comparison of the
  // fingerprint (a tree record's replay compares 10,000 of them) first copies into a flat string.
  return withDev ? [st.size, st.ino, st.mtimeNs, st.ctimeNs, st.dev].join(':') : [st.size, st.ino, st.mtimeNs].join(':');
}

export interface SyncHash {
  digest: string;
  size: number;
  /** fingerprint taken before reading (includes dev) */
  fp: string;
  stat: BigIntStats;
  /** false when the file's stat changed while it was read: the digest may describe a torn read */
  stable: boolean;
}

/** sha256 of a file, synchronously, in fixed-size chunks (never the whole file in memory). */
export function hashFileSync(path: string, withDev = false): SyncHash {
  const fd = openSync(path, 'r');
  try {
    const before = fstatSync(fd, { bigint: true });
    // Read up to the size the stat gave: a file that grew or shrank meanwhile has another stat afterwards.
    const { digest, size } = hashOpenFileSync(fd, Number(before.size));
    const after = fstatSync(fd, { bigint: true });
    const fp = statFingerprint(before, withDev);
    return {
      digest,
      size,
      fp,
      stat: before,
      stable: fp === statFingerprint(after, withDev) && BigInt(size) === before.size,
    };
  } finally {
    closeSync(fd);
  }
}

/**
 * sha256 of the open file `fd`, read from where it stands, whose stat said it holds `expected` bytes: reading stops
 * there, without the read that would find its end (a cold build hashes two small files per action, and each syscall
 * costs ~10 µs here). A file that grew or shrank meanwhile is caught by the caller's stat afterwards.
 */
export function hashOpenFileSync(fd: number, expected: number): { digest: string; size: number } {
  const crypto = process.getBuiltinModule('node:crypto');
  // One read and a one-shot hash for a file that fits the buffer: a Hash object per file cost ~13 µs in a profile
  // of a cold build, two files an action. A size of 0 is read to its end: files of /proc say 0 and hold bytes.
  if (expected > 0 && expected <= CHUNK) {
    syncBuf ??= Buffer.allocUnsafe(CHUNK);
    let size = 0;
    while (size < expected) {
      const n = readSync(fd, syncBuf, size, expected - size, null);
      if (n === 0) break;
      size += n;
    }
    return { digest: crypto.hash('sha256', syncBuf.subarray(0, size), 'hex'), size };
  }
  const { hash, size } = readAll(fd, expected > 0 ? expected : -1);
  return { digest: hash.digest('hex'), size };
}

/** Reads `fd` into a sha256 until its end, or until `stopAt` bytes when that is not negative. */
function readAll(fd: number, stopAt: number): { hash: Hash; size: number } {
  // Loaded on first use: the no-op check imports this module and usually hashes nothing (node:crypto took ~6 ms).
  const hash = process.getBuiltinModule('node:crypto').createHash('sha256');
  let size = 0;
  while (stopAt < 0 || size < stopAt) {
    syncBuf ??= Buffer.allocUnsafe(CHUNK);
    const n = readSync(fd, syncBuf, 0, CHUNK, null);
    if (n === 0) break;
    hash.update(syncBuf.subarray(0, n));
    size += n;
  }
  return { hash, size };
}
