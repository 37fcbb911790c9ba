// Local folder sources: the content identity of a source tree (for the key record) and its copy into a sandbox.
// Symlinks are kept as links but may not point outside the tree, so a source can never pull in files from
// elsewhere on the machine (a `lib -> ~/.ssh` link is refused, not hashed).

import { hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sortCodeUnits } from '../engine/code-unit-sort.js';

/** Names skipped at any depth: VCS metadata and Python's own caches, which never shape a build. */
const SKIPPED_ANYWHERE = new Set(['.git', '.hg', '.svn', '__pycache__', '.eggs', '.tox', '.mypy_cache', '.pytest_cache', '.venv', 'wg-out']);
/** Names skipped at the root only: build leftovers of a previous in-place build. */
const SKIPPED_AT_ROOT = new Set(['build', 'dist']);

export class SourceError extends Error {}

export interface TreeEntry {
  /** Path relative to the tree root, `/`-separated. */
  path: string;
  type: 'file' | 'symlink';
  executable: boolean;
  /** The file's content digest, or the symlink's text. */
  content: string;
}

/** Whether listTree leaves `name` out of a tree (at the root, or at any depth). */
export function skipped(name: string, atRoot: boolean): boolean {
  return SKIPPED_ANYWHERE.has(name) || name.endsWith('.egg-info') || name.endsWith('.pyc') || (atRoot && SKIPPED_AT_ROOT.has(name));
}

/** Told about each folder before it is listed and each file before it is read (the no-op snapshot's inputs). */
export interface TreeObserver {
  /** `stat` is the folder's bigint stat, taken before it is listed. */
  dir(abs: string, stat: fs.BigIntStats): void;
  /** `stat` is the file's bigint lstat, taken before it is read. */
  file(abs: string, stat: fs.BigIntStats): void;
}

/**
 * Lists the tree in a stable order, refusing symlinks that leave it and anything that is not a file or folder.
 * Each entry is stat-ed once; that stat goes to the observer and to `fileDigest` (the stat cache's check).
 */
export function listTree(
  root: string,
  fileDigest: (abs: string, stat: fs.BigIntStats) => string,
  observe?: TreeObserver,
  /** The folder's names, given its stat just taken (a cache may answer without reading the folder). */
  listDir: (abs: string, stat: fs.BigIntStats) => string[] = (abs) => fs.readdirSync(abs),
  /** The root's bigint stat when the caller already took one (before anything in the tree was read). */
  rootStat?: fs.BigIntStats,
): TreeEntry[] {
  const entries: TreeEntry[] = [];
  // Resolved only when a symlink needs checking: a realpath per source tree is a quarter of a 10k-target listing.
  let realRoot: string | null = null;
  // `dir` is normalized and a listed name is one path segment, so an entry's path is a concatenation: the same
  // string path.join would make, without normalizing it again for every file.
  const walk = (rel: string, dir: string): void => {
    const st = rel === '' && rootStat ? rootStat : fs.statSync(dir, { bigint: true });
    observe?.dir(dir, st);
    const names = sortCodeUnits([...listDir(dir, st)]);
    const prefix = dir.endsWith(path.sep) ? dir : dir + path.sep;
    for (const name of names) {
      if (skipped(name, rel === '')) continue;
      const relPath = rel === '' ? name : `${rel}/${name}`;
      const abs = prefix + name;
      const st = fs.lstatSync(abs, { bigint: true });
      if (st.isDirectory()) {
        walk(relPath, abs);
      } else if (st.isFile()) {
        observe?.file(abs, st);
        entries.push({ path: relPath, type: 'file', executable: (st.mode & 0o111n) !== 0n, content: fileDigest(abs, st) });
      } else if (st.isSymbolicLink()) {
        const target = fs.readlinkSync(abs);
        let resolved: string;
        try {
          resolved = fs.realpathSync(abs);
        } catch {
          throw new SourceError(`${relPath} in ${root} is a broken symlink (-> ${target})`);
        }
        realRoot ??= fs.realpathSync(root);
        if (resolved !== realRoot && !resolved.startsWith(realRoot + path.sep)) {
          throw new SourceError(`${relPath} in ${root} resolves outside the source tree (${resolved})`);
        }
        entries.push({ path: relPath, type: 'symlink', executable: false, content: target });
      } else {
        throw new SourceError(`${relPath} in ${root} is neither a file, a folder nor a symlink`);
      }
    }
  };
  walk('', path.join(root, ''));
  return entries;
}

export function treeDigest(entries: TreeEntry[]): string {
  // One string and a one-shot hash: the same bytes as one update per entry, at half the cost of a Hash object.
  let text = '';
  for (const e of entries) text += `${e.type} ${e.executable ? 'x' : '-'} ${e.content} ${e.path}\n`;
  return hash('sha256', text);
}

/**
 * The copy is always a new file, in an empty folder. Said so, libuv neither stats nor truncates it: ext4 takes a
 * truncation to zero as a file being replaced (auto_da_alloc) and flushes it when it is closed, which made each
 * copy's close ~0.3 ms instead of ~0.02.
 */
const NEW_FILE = fs.constants.COPYFILE_EXCL;

/** How many files of a source tree are copied at once. */
const COPY_CONCURRENCY = 8;
/**
 * A tree of at most this many entries is copied synchronously. Each step on the thread pool wakes a thread and is
 * woken back: for a one-file tree (mkdir, copy, chmod) that came to ~0.6-1.3 ms of wall and ~0.4-0.7 ms of CPU
 * against ~0.2-0.35 ms and ~0.2 ms done in place (1000 sequential copies with a log opened each, on a busy 2-core
 * machine), and a cold build of a thousand small actions does little else on its main thread.
 */
const SYNC_COPY_MAX = 4;

/**
 * Copies exactly the listed entries (what was hashed is what gets built). A larger tree asynchronously: creating a
 * file costs up to a millisecond on ext4, which on the main thread is taken from every other running action.
 */
export async function copyTree(
  root: string,
  entries: TreeEntry[],
  dest: string,
  /** An empty file to rename into place instead of making one, when there is one (engine/sandbox.ts). */
  spareFile: () => string | undefined = () => undefined,
): Promise<void> {
  if (entries.length <= SYNC_COPY_MAX) return copyTreeSync(root, entries, dest, spareFile);
  // Read here, not imported: an edit's build copies small trees synchronously, and loading node:fs/promises cost it
  // ~1 ms.
  const fsp = fs.promises;
  await fsp.mkdir(dest, { recursive: true });
  // Each folder once, parents first: a recursive mkdir of an existing folder still costs a failed mkdir and a stat.
  const made = new Set([dest]);
  for (const e of entries) {
    const dir = path.dirname(path.join(dest, e.path));
    if (made.has(dir)) continue;
    await fsp.mkdir(dir, { recursive: true });
    made.add(dir);
  }
  let next = 0;
  const copier = async (): Promise<void> => {
    while (next < entries.length) {
      const e = entries[next++]!;
      const to = path.join(dest, e.path);
      if (e.type === 'symlink') await fsp.symlink(e.content, to);
      else {
        await fsp.copyFile(path.join(root, e.path), to, NEW_FILE);
        await fsp.chmod(to, e.executable ? 0o755 : 0o644);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(COPY_CONCURRENCY, entries.length) }, copier));
}

/** As copyTree does it, in the same order: every folder before any file or symlink. */
function copyTreeSync(root: string, entries: TreeEntry[], dest: string, spareFile: () => string | undefined): void {
  // A reused sandbox keeps its emptied src/: one access, where a recursive mkdir costs a failed mkdir and a stat.
  if (!fs.existsSync(dest)) fs.mkdirSync(dest, { recursive: true });
  for (const e of entries) if (e.path.includes('/')) fs.mkdirSync(path.dirname(path.join(dest, e.path)), { recursive: true });
  for (const e of entries) {
    const to = path.join(dest, e.path);
    const mode = e.executable ? 0o755 : 0o644;
    if (e.type === 'symlink') fs.symlinkSync(e.content, to);
    else if (!copyIntoSpare(path.join(root, e.path), to, mode, spareFile)) {
      fs.copyFileSync(path.join(root, e.path), to, NEW_FILE);
      fs.chmodSync(to, mode);
    }
  }
}

/** Read and written through this: the copies it serves are made one at a time, on the main thread. */
const COPY_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * Copies `from` to `to` through an empty spare file renamed there; false when there is none. Creating a file on
 * ext4 without a journal costs a scan past every inode freed in the last seconds (~0.5 ms per file in a cold build
 * of a thousand actions, which free their source copies as they go); a rename and a write do not. Written through
 * a buffer: copyFile would truncate the file, and a truncation to zero makes ext4 flush it when it is closed.
 */
function copyIntoSpare(from: string, to: string, mode: number, spareFile: () => string | undefined): boolean {
  const spare = spareFile();
  if (spare === undefined) return false;
  try {
    fs.renameSync(spare, to);
  } catch {
    return false;
  }
  const out = fs.openSync(to, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
  try {
    // Written to or linked since it was emptied (a process an action left behind, outside its group): not reused.
    const st = fs.fstatSync(out);
    if (!st.isFile() || st.size !== 0 || st.nlink !== 1) {
      fs.unlinkSync(to);
      return false;
    }
    const src = fs.openSync(from, 'r');
    try {
      for (let n; (n = fs.readSync(src, COPY_BUFFER, 0, COPY_BUFFER.length, null)) > 0; ) {
        for (let done = 0; done < n; ) done += fs.writeSync(out, COPY_BUFFER, done, n - done);
      }
    } finally {
      fs.closeSync(src);
    }
    fs.fchmodSync(out, mode);
  } finally {
    fs.closeSync(out);
  }
  return true;
}
