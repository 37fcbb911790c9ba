// A folder source's entries and digest, answered from one stat-cache record per tree while every folder and file
// in it still has the fingerprint it had when the tree was walked, and walked again (rules/source-path.ts)
// otherwise. Each folder and file is still stat-ed on every build; what the record saves is a lookup per folder
// and per file, the sort of every listing and the tree's hash.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { statFingerprint } from '../cache/file-hash.js';
import { encodeTree, type TreeRecord, type TreeStep } from '../cache/stat-cache.js';
import { listTree, treeDigest, type TreeEntry } from '../rules/source-path.js';
import type { StatTuple } from './inputs.js';
import { normalized } from './normal-path.js';

/** What the stat cache offers a tree walk (cache/stat-cache.ts StatCache). */
export interface TreeStore {
  readonly racyWindowMs: number;
  tree(absRoot: string): TreeRecord | undefined;
  setTree(absRoot: string, record: TreeRecord): void;
  fileDigest(abs: string, stat: fs.BigIntStats): string;
  listDir(abs: string, stat: fs.BigIntStats): string[];
}

export interface SourceTree {
  entries: TreeEntry[];
  digest: string;
}

/**
 * A source folder's stat as analysis keeps it until the tree is listed: the record check's fingerprint, from which
 * the input set's tuple is taken when a build notes its inputs. Ten thousand BigIntStats kept that long were half of
 * a 10,000-target analysis's heap; the tuples, made for every folder although a dry run notes nothing, a tenth.
 */
export interface RootStat {
  fp: string;
}

export function rootStatOf(st: fs.BigIntStats): RootStat {
  return { fp: statFingerprint(st, true) };
}

/** The input set's tuple of a stat whose fingerprint (statFingerprint with dev: size:ino:mtime:ctime:dev) is `fp`. */
function tupleOf(fp: string): StatTuple {
  const [size, ino, mtimeNs, ctimeNs] = fp.split(':') as [string, string, string, string];
  return [size, mtimeNs, ctimeNs, ino];
}

/** Told about each folder and file with the stat taken before it was listed or read (a folder's may be a tuple). */
export interface SourceObserver {
  dir(abs: string, stat: fs.BigIntStats | StatTuple): void;
  file(abs: string, stat: fs.BigIntStats): void;
}

const toNative = path.sep === '/' ? (rel: string): string => rel : (rel: string): string => rel.replaceAll('/', path.sep);

/**
 * Lists and hashes the tree at `root` like listTree and treeDigest. `rootStat` is the root's stat when the caller
 * already took one (a tree whose record no longer holds is walked from a stat of its own).
 */
export function sourceTree(root: string, store: TreeStore, observe?: SourceObserver, rootStat?: RootStat): SourceTree {
  const record = store.tree(root);
  let entries: TreeEntry[] | null = null;
  try {
    entries = record ? replay(root, record, observe, rootStat) : null;
  } catch {
    // A record this version cannot read: walked again and replaced.
  }
  if (entries) return { entries, digest: record!.slice(0, record!.indexOf('\0')) };
  return walk(root, store, observe);
}

/** The first character of a step: a folder's or a file's (cache/stat-cache.ts TreeRecord). */
const DIR_STEP = 'd'.charCodeAt(0);
const FILE_STEP = 'f'.charCodeAt(0);

/** Whether `record` holds `field` at `at`, ended by its NUL: a fingerprint compared without being taken out. */
function fieldIs(record: string, at: number, field: string): boolean {
  return record.startsWith(field, at) && record.charCodeAt(at + field.length) === 0;
}

/** The record's entries if every step's stat still matches; null at the first that does not. */
function replay(root: string, record: TreeRecord, observe: SourceObserver | undefined, rootStat: RootStat | undefined): TreeEntry[] | null {
  const dir = normalized(root);
  const prefix = dir.endsWith(path.sep) ? dir : dir + path.sep;
  const entries: TreeEntry[] = [];
  // Each step: its kind and relative path, its fingerprint and, for a file, its content digest, each ended by a NUL.
  let at = record.indexOf('\0') + 1;
  while (at < record.length) {
    const kind = record.charCodeAt(at);
    const fpAt = record.indexOf('\0', at) + 1;
    const endFp = fpAt === 0 ? -1 : record.indexOf('\0', fpAt);
    if (endFp < 0) return null;
    const rel = record.slice(at + 1, fpAt - 1);
    const abs = rel === '' ? dir : prefix + toNative(rel);
    if (kind === DIR_STEP && rel === '' && rootStat) {
      if (!fieldIs(record, fpAt, rootStat.fp)) return null;
      observe?.dir(abs, tupleOf(rootStat.fp));
      at = endFp + 1;
    } else if (kind === DIR_STEP) {
      const st = fs.statSync(abs, { bigint: true, throwIfNoEntry: false });
      if (!st?.isDirectory() || !fieldIs(record, fpAt, statFingerprint(st, true))) return null;
      observe?.dir(abs, st);
      at = endFp + 1;
    } else if (kind === FILE_STEP) {
      const endContent = record.indexOf('\0', endFp + 1);
      if (endContent < 0) return null;
      const st = fs.lstatSync(abs, { bigint: true, throwIfNoEntry: false });
      if (!st?.isFile() || !fieldIs(record, fpAt, statFingerprint(st, true))) return null;
      observe?.file(abs, st);
      // The mode is read from the stat just taken: a chmod changes ctime, so it also fails the check above.
      entries.push({ path: rel, type: 'file', executable: (st.mode & 0o111n) !== 0n, content: record.slice(endFp + 1, endContent) });
      at = endContent + 1;
    } else {
      return null;
    }
  }
  return entries;
}

/** listTree through the stat cache; keeps a record of the walk when nothing in it is racy and nothing is a symlink. */
function walk(root: string, store: TreeStore, observe: SourceObserver | undefined): SourceTree {
  const startedMs = Date.now();
  const dir = normalized(root);
  const prefix = dir.endsWith(path.sep) ? dir : dir + path.sep;
  // Folder steps are complete when stat-ed; a file step gets its digest from the entry listTree makes for it.
  const steps: (TreeStep | string)[] = [];
  let recordable = true;
  const racy = (st: fs.BigIntStats): boolean => Number(st.ctimeNs / 1_000_000n) + store.racyWindowMs > startedMs;
  const entries = listTree(
    root,
    (abs, st) => store.fileDigest(abs, st),
    {
      dir: (abs, st) => {
        observe?.dir(abs, st);
        if (racy(st)) recordable = false;
        steps.push([abs === dir ? '' : abs.slice(prefix.length).split(path.sep).join('/'), statFingerprint(st, true)]);
      },
      file: (abs, st) => {
        observe?.file(abs, st);
        if (racy(st)) recordable = false;
        steps.push(statFingerprint(st, true));
      },
    },
    (abs, st) => store.listDir(abs, st),
  );
  const digest = treeDigest(entries);
  if (recordable && entries.every((e) => e.type === 'file')) {
    let next = 0;
    const complete = steps.map((s): TreeStep => {
      if (typeof s !== 'string') return s;
      const e = entries[next++]!;
      return [e.path, s, e.content];
    });
    store.setTree(root, encodeTree(complete, digest));
  }
  return { entries, digest };
}
