// Safe extraction of hostile archives (.tar, .tar.gz, .tar.bz2, .zip): the whole entry list is read and checked
// first, and only then is anything written, so no byte can land outside the extraction root. node-tar and yauzl
// only parse; every path, link and entry type is judged here, and every file is written here.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import yauzl from 'yauzl';

/** A refused or unreadable archive; the message names the entry and what is wrong with it. */
export class ArchiveError extends Error {}

export type ArchiveFormat = 'tar' | 'tar.gz' | 'tar.bz2' | 'zip';

/** One entry as the archive states it, before any judgement. */
export interface RawEntry {
  /** The name exactly as stored. */
  name: string;
  /** `file`, `dir`, `symlink`, `hardlink`, or what a refused entry is (`a FIFO`, `a character device`…). */
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | { refused: string };
  /** Permission bits as stored; only the executable bit survives extraction. */
  mode: number;
  /** The target of a link, as stored. */
  linkpath?: string;
}

/** An entry that passed every check: its path inside the root (components already stripped) and what to make. */
export interface PlannedEntry {
  /** Index in the archive's entry list, so the writing pass can match entries to the plan. */
  index: number;
  /** Relative, `/`-separated, no `.`/`..`/empty components, after strip_components. */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  executable: boolean;
  /** Symlinks: the link text (relative, resolves inside the root). Hardlinks: the planned path of the file. */
  linkpath?: string;
}

/** Symlink hops followed while resolving one link inside the archive, as the kernel's own limit. */
const MAX_LINK_HOPS = 40;
/** A symlink stored in a zip is its target as file data; anything longer is not a path. */
const MAX_ZIP_LINK_BYTES = 4096;

/** Tells the format from the first bytes (a URL's extension can lie or be missing). */
export async function detectFormat(file: string): Promise<ArchiveFormat> {
  const fd = await fs.promises.open(file, 'r');
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await fd.read(head, 0, 512, 0);
    if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'tar.gz';
    if (bytesRead >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') return 'tar.bz2';
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0x04034b50) return 'zip';
    // An empty zip is only its end-of-central-directory record.
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0x06054b50) return 'zip';
    if (bytesRead >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
  } finally {
    await fd.close();
  }
  throw new ArchiveError('not a .tar, .tar.gz, .tar.bz2 or .zip archive');
}

/** Splits an entry name into components, refusing names that could leave the root. */
function components(name: string, what: string): string[] {
  if (name.includes('\0')) throw new ArchiveError(`${what} "${name}" contains a NUL byte`);
  if (name.startsWith('/')) throw new ArchiveError(`${what} "${name}" is an absolute path`);
  const parts = name.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw new ArchiveError(`${what} "${name}" leaves the extraction root ("..")`);
  return parts;
}

/**
 * Resolves `parts` from the root inside the archive's final tree, following its symlinks as the kernel would, and
 * returns the resolved components, or 'outside' when any step climbs above the root, or 'loop'.
 */
function resolveInTree(parts: string[], links: ReadonlyMap<string, string>): string[] | 'outside' | 'loop' {
  const out: string[] = [];
  const queue = [...parts];
  let hops = 0;
  while (queue.length > 0) {
    const c = queue.shift()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) return 'outside';
      out.pop();
      continue;
    }
    out.push(c);
    const link = links.get(out.join('/'));
    if (link === undefined) continue;
    if (++hops > MAX_LINK_HOPS) return 'loop';
    if (link.startsWith('/')) return 'outside';
    out.pop();
    queue.unshift(...link.split('/'));
  }
  return out;
}

/**
 * Checks the complete entry list and returns what to write. Refuses absolute names, `..`, entries under a symlink
 * or a file, duplicates, links that resolve outside the root (through any chain of the archive's own symlinks),
 * hardlinks to anything but a file of the archive, and every entry that is not a file, folder or link.
 */
export function planExtraction(entries: readonly RawEntry[], stripComponents: number): PlannedEntry[] {
  const planned: PlannedEntry[] = [];
  const byPath = new Map<string, PlannedEntry>();
  entries.forEach((e, index) => {
    if (typeof e.type === 'object') throw new ArchiveError(`entry "${e.name}" is ${e.type.refused}; only files, folders and links are extracted`);
    const kind = e.type === 'symlink' ? 'symlink' : e.type === 'hardlink' ? 'hardlink' : 'entry';
    const parts = components(e.name, kind);
    const stripped = parts.slice(stripComponents);
    if (stripped.length === 0) {
      if (e.type === 'dir' || stripComponents > 0) return;
      throw new ArchiveError(`entry "${e.name}" has no name`);
    }
    const rel = stripped.join('/');
    let linkpath: string | undefined;
    if (e.type === 'symlink') {
      const target = e.linkpath ?? '';
      if (target === '') throw new ArchiveError(`symlink "${e.name}" has an empty target`);
      if (target.startsWith('/')) throw new ArchiveError(`symlink "${e.name}" -> "${target}" points to an absolute path`);
      if (target.includes('\0')) throw new ArchiveError(`symlink "${e.name}" contains a NUL byte in its target`);
      linkpath = target;
    } else if (e.type === 'hardlink') {
      const target = components(e.linkpath ?? '', `hardlink "${e.name}" ->`).slice(stripComponents);
      linkpath = target.join('/');
    }
    const existing = byPath.get(rel);
    if (existing) {
      if (existing.type === 'dir' && e.type === 'dir') return;
      throw new ArchiveError(`entry "${e.name}" appears twice in the archive`);
    }
    const entry: PlannedEntry = { index, path: rel, type: e.type, executable: (e.mode & 0o111) !== 0, ...(linkpath !== undefined ? { linkpath } : {}) };
    byPath.set(rel, entry);
    planned.push(entry);
  });

  const links = new Map(planned.filter((p) => p.type === 'symlink').map((p) => [p.path, p.linkpath!]));
  for (const p of planned) {
    const name = entries[p.index]!.name;
    // Nothing may be written through a symlink or below a file, whatever order the archive lists them in.
    const parts = p.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = byPath.get(parts.slice(0, i).join('/'));
      if (prefix && prefix.type !== 'dir') {
        const what = prefix.type === 'symlink' ? 'symlink' : 'file';
        throw new ArchiveError(`entry "${name}" lies under the ${what} "${entries[prefix.index]!.name}"`);
      }
    }
    if (p.type === 'symlink') {
      const resolved = resolveInTree([...parts.slice(0, -1), ...p.linkpath!.split('/')], links);
      if (resolved === 'outside') throw new ArchiveError(`symlink "${name}" -> "${p.linkpath}" points outside the extraction root`);
      if (resolved === 'loop') throw new ArchiveError(`symlink "${name}" -> "${p.linkpath}" is part of a symlink loop`);
    } else if (p.type === 'hardlink') {
      const target = byPath.get(p.linkpath!);
      if (!target || target.type !== 'file' || target.index > p.index) {
        throw new ArchiveError(`hardlink "${name}" -> "${entries[p.index]!.linkpath}" does not name a file earlier in the archive`);
      }
    }
  }
  return planned;
}

function tarType(entry: ReadEntry): RawEntry['type'] {
  switch (entry.type) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      return 'file';
    case 'Directory':
      return 'dir';
    case 'SymbolicLink':
      return 'symlink';
    case 'Link':
      return 'hardlink';
    case 'CharacterDevice':
      return { refused: 'a character device' };
    case 'BlockDevice':
      return { refused: 'a block device' };
    case 'FIFO':
      return { refused: 'a FIFO' };
    default:
      return { refused: `of the unsupported tar type "${entry.type}"` };
  }
}

/** A readable stream of the uncompressed tar; bzip2 goes through the system's `bzip2 -dc` (node has no bzip2). */
function tarStream(file: string, format: ArchiveFormat): { stream: Readable; done: Promise<void> } {
  if (format !== 'tar.bz2') return { stream: fs.createReadStream(file), done: Promise.resolve() };
  const child = spawn('bzip2', ['-dc', '--', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (e) => reject(new ArchiveError(`cannot run bzip2: ${e.message}`)));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new ArchiveError(`bzip2 failed: ${stderr.trim() || `exit code ${code}`}`))));
  });
  // When parsing fails first, bzip2 dies of the closed pipe; that rejection is expected and must not go unhandled.
  done.catch(() => undefined);
  return { stream: child.stdout, done };
}

/** Streams the tar once, handing each entry to `onEntry` (which must consume or resume it), in archive order. */
async function walkTar(file: string, format: ArchiveFormat, onEntry: (entry: ReadEntry, index: number) => Promise<void> | void): Promise<void> {
  const { stream, done } = tarStream(file, format);
  let index = 0;
  const pending: Promise<void>[] = [];
  const parser = new Parser({
    // Checksum failures and truncation are errors, not entries silently skipped.
    strict: true,
    // Source archives legitimately compress far better than tar's default bomb guard assumes (text, zeros).
    maxDecompressionRatio: 100_000,
    onReadEntry: (entry: ReadEntry) => {
      // Entries arrive one at a time (the next only after this one's data ended) and stay paused until consumed.
      const i = index++;
      const done = Promise.resolve().then(() => onEntry(entry, i));
      done.catch(() => entry.resume());
      pending.push(done);
    },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      parser.on('error', reject);
      parser.on('end', resolve);
      stream.on('error', reject);
      stream.pipe(parser as unknown as NodeJS.WritableStream);
    });
    await Promise.all(pending);
    await done;
  } catch (e) {
    stream.destroy();
    await Promise.allSettled(pending);
    throw e instanceof ArchiveError ? e : new ArchiveError(`cannot read the archive: ${(e as Error).message}`);
  }
}

async function listTar(file: string, format: ArchiveFormat): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  await walkTar(file, format, (entry) => {
    out.push({ name: entry.path, type: tarType(entry), mode: entry.mode ?? 0o644, ...(entry.linkpath !== undefined ? { linkpath: entry.linkpath } : {}) });
    entry.resume();
  });
  return out;
}

function zipType(entry: yauzl.Entry, name: string): RawEntry['type'] {
  const unix = entry.versionMadeBy >> 8 === 3;
  const mode = unix ? entry.externalFileAttributes >>> 16 : 0;
  switch (mode & 0o170000) {
    case 0o120000:
      return 'symlink';
    case 0o040000:
      return 'dir';
    case 0o010000:
      return { refused: 'a FIFO' };
    case 0o020000:
      return { refused: 'a character device' };
    case 0o060000:
      return { refused: 'a block device' };
    case 0o140000:
      return { refused: 'a socket' };
    default:
      return name.endsWith('/') ? 'dir' : 'file';
  }
}

async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      stream.destroy();
      throw new ArchiveError(`a symlink target longer than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Opens the zip without yauzl's own name checks or decoding: names are decoded and judged here. */
async function openZip(file: string): Promise<yauzl.ZipFile> {
  try {
    return await yauzl.openPromise(file, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true, autoClose: false });
  } catch (e) {
    throw new ArchiveError(`cannot read the archive: ${(e as Error).message}`);
  }
}

function zipName(entry: yauzl.Entry): string {
  return yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, false);
}

async function walkZip(file: string, onEntry: (zip: yauzl.ZipFile, entry: yauzl.Entry, name: string, index: number) => Promise<void>): Promise<void> {
  const zip = await openZip(file);
  try {
    let index = 0;
    for await (const entry of zip.eachEntry()) await onEntry(zip, entry, zipName(entry), index++);
  } catch (e) {
    throw e instanceof ArchiveError ? e : new ArchiveError(`cannot read the archive: ${(e as Error).message}`);
  } finally {
    zip.close();
  }
}

async function listZip(file: string): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  await walkZip(file, async (zip, entry, name) => {
    const type = zipType(entry, name);
    const mode = entry.versionMadeBy >> 8 === 3 ? (entry.externalFileAttributes >>> 16) & 0o7777 : 0o644;
    let linkpath: string | undefined;
    if (type === 'symlink') linkpath = (await readAll(await zip.openReadStreamPromise(entry), MAX_ZIP_LINK_BYTES)).toString('utf8');
    out.push({ name, type, mode, ...(linkpath !== undefined ? { linkpath } : {}) });
  });
  return out;
}

/** Every entry of the archive, as stored. */
export async function listArchive(file: string, format?: ArchiveFormat): Promise<RawEntry[]> {
  const f = format ?? (await detectFormat(file));
  return f === 'zip' ? listZip(file) : listTar(file, f);
}

async function writeFile(dest: string, p: PlannedEntry, data: Readable): Promise<void> {
  const to = path.join(dest, p.path);
  await fs.promises.mkdir(path.dirname(to), { recursive: true });
  // `wx` is O_CREAT|O_EXCL: it never follows a symlink and never overwrites (none exist yet: links come last).
  await pipeline(data, fs.createWriteStream(to, { flags: 'wx', mode: p.executable ? 0o755 : 0o644 }));
}

/**
 * Extracts `file` into `dest` (created; it must not exist or be empty). Pass one lists and checks every entry;
 * pass two writes folders and files, then hardlinks (as copies, so patching one never changes the other), then
 * symlinks last, so no write can ever go through a link. Throws ArchiveError naming the first refused entry.
 */
export async function extractArchive(file: string, dest: string, options: { stripComponents?: number; signal?: AbortSignal } = {}): Promise<void> {
  const format = await detectFormat(file);
  const entries = await listArchive(file, format);
  const plan = planExtraction(entries, options.stripComponents ?? 0);
  const byIndex = new Map(plan.map((p) => [p.index, p]));
  await fs.promises.mkdir(dest, { recursive: true });
  if ((await fs.promises.readdir(dest)).length > 0) throw new ArchiveError(`cannot extract into ${dest}: it is not empty`);

  const check = (index: number, name: string): PlannedEntry | undefined => {
    if (options.signal?.aborted) throw new ArchiveError('interrupted');
    if (entries[index]?.name !== name) throw new ArchiveError('the archive changed while it was being extracted');
    return byIndex.get(index);
  };
  if (format === 'zip') {
    await walkZip(file, async (zip, entry, name, index) => {
      const p = check(index, name);
      if (!p) return;
      if (p.type === 'dir') await fs.promises.mkdir(path.join(dest, p.path), { recursive: true });
      else if (p.type === 'file') await writeFile(dest, p, await zip.openReadStreamPromise(entry));
    });
  } else {
    await walkTar(file, format, async (entry, index) => {
      const p = check(index, entry.path);
      if (p?.type === 'file') return writeFile(dest, p, entry as unknown as Readable);
      entry.resume();
      if (p?.type === 'dir') await fs.promises.mkdir(path.join(dest, p.path), { recursive: true });
    });
  }
  for (const p of plan.filter((e) => e.type === 'hardlink')) {
    const to = path.join(dest, p.path);
    await fs.promises.mkdir(path.dirname(to), { recursive: true });
    await fs.promises.copyFile(path.join(dest, p.linkpath!), to, fs.constants.COPYFILE_EXCL);
  }
  for (const p of plan.filter((e) => e.type === 'symlink')) {
    const to = path.join(dest, p.path);
    await fs.promises.mkdir(path.dirname(to), { recursive: true });
    await fs.promises.symlink(p.linkpath!, to);
  }
}

