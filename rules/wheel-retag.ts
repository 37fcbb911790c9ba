// Retags a built wheel with a PEP 440 local version (`+cu124torch2.4`): a new file name, the `.dist-info` (and
// `.data`) folder renamed, `Version:` in METADATA updated and RECORD rewritten with every entry's sha256 and size.
// Entries are written with a fixed timestamp so the same input wheel always gives the same bytes.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
// yauzl and yazl (with zlib and streams) are loaded when a wheel is retagged: an edit loop's build never does.
import type yauzl from 'yauzl';

export class RetagError extends Error {}

/** PEP 440 local version label after normalization: alphanumerics separated by single dots. */
const LOCAL = /^[a-z0-9]+(\.[a-z0-9]+)*$/;

/**
 * The local version label as PEP 440 normalizes it (lowercase; `-` and `_` become `.`), or why the text cannot be
 * one (a phrase to follow the text in a message).
 */
export function normalizeLocalVersion(text: string): { ok: true; value: string } | { ok: false; error: string } {
  const value = text.replace(/^\+/, '').toLowerCase().replace(/[-_]/g, '.');
  if (!LOCAL.test(value)) {
    return { ok: false, error: 'is not a valid local version (letters and digits, separated by ".", "-" or "_")' };
  }
  return { ok: true, value };
}

/** The parts of a wheel file name (PEP 427): `{dist}-{version}(-{build})?-{python}-{abi}-{platform}.whl`. */
export function parseWheelName(file: string): { dist: string; version: string; tags: string[] } {
  const base = path.basename(file);
  const parts = base.replace(/\.whl$/, '').split('-');
  if (!base.endsWith('.whl') || (parts.length !== 5 && parts.length !== 6)) throw new RetagError(`${base} is not a wheel file name`);
  return { dist: parts[0]!, version: parts[1]!, tags: parts.slice(2) };
}

/** urlsafe base64 of the sha256, without padding, as RECORD wants it. */
export function recordHash(data: Buffer): string {
  return `sha256=${createHash('sha256').update(data).digest('base64url')}`;
}

export interface ZipEntry {
  name: string;
  data: Buffer;
  /** Unix mode bits from the entry's external attributes, or null when the zip did not record any. */
  mode: number | null;
}

/** Every file entry of a zip (wheel), in order, with its bytes. */
export async function readZip(file: string): Promise<ZipEntry[]> {
  const { default: yauzl } = await import('yauzl');
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, strictFileNames: true, validateEntrySizes: true }, (err, zip) => {
      if (err || !zip) return reject(new RetagError(`cannot read ${path.basename(file)}: ${err?.message ?? 'no zip'}`));
      const entries: ZipEntry[] = [];
      zip.on('error', (e: Error) => reject(new RetagError(`cannot read ${path.basename(file)}: ${e.message}`)));
      zip.on('end', () => resolve(entries));
      zip.on('entry', (entry: yauzl.Entry) => {
        if (entry.fileName.endsWith('/')) return zip.readEntry();
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) return reject(new RetagError(`cannot read ${entry.fileName} in ${path.basename(file)}: ${e?.message}`));
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('error', (se: Error) => reject(new RetagError(`cannot read ${entry.fileName}: ${se.message}`)));
          stream.on('end', () => {
            const mode = (entry.externalFileAttributes >>> 16) & 0xffff;
            entries.push({ name: entry.fileName, data: Buffer.concat(chunks), mode: mode === 0 ? null : mode });
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}

/**
 * Local components of this date are 1980-01-01 00:00:00 in every time zone: zip (DOS) timestamps are local time,
 * and yazl reads a Date's local fields, so this is what makes the bytes independent of the machine's TZ.
 */
function fixedZipTime(): Date {
  return new Date(1980, 0, 1, 0, 0, 0);
}

/**
 * Writes a retagged copy of `wheelFile` into `outDir` and returns its path. The version gets `+local` (or
 * `.local` appended when it already has a local part). `local` must already be normalized.
 */
export async function retagWheel(wheelFile: string, local: string, outDir: string): Promise<string> {
  const { dist, version, tags } = parseWheelName(wheelFile);
  const newVersion = version.includes('+') ? `${version}.${local}` : `${version}+${local}`;
  const oldInfo = `${dist}-${version}.dist-info/`;
  const newInfo = `${dist}-${newVersion}.dist-info/`;
  const oldData = `${dist}-${version}.data/`;
  const newData = `${dist}-${newVersion}.data/`;

  const entries = await readZip(wheelFile);
  if (!entries.some((e) => e.name === `${oldInfo}METADATA`)) {
    throw new RetagError(`${path.basename(wheelFile)} has no ${oldInfo}METADATA`);
  }
  const rename = (name: string): string =>
    name.startsWith(oldInfo) ? newInfo + name.slice(oldInfo.length) : name.startsWith(oldData) ? newData + name.slice(oldData.length) : name;

  const out: ZipEntry[] = [];
  for (const e of entries) {
    const name = rename(e.name);
    // Signatures over the old RECORD would not match the new one; RECORD itself is rewritten below.
    if (name === `${newInfo}RECORD` || name === `${newInfo}RECORD.jws` || name === `${newInfo}RECORD.p7s`) continue;
    let data = e.data;
    if (name === `${newInfo}METADATA`) {
      const text = data.toString('utf8');
      if (!/^Version:.*$/m.test(text)) throw new RetagError(`${path.basename(wheelFile)}: METADATA has no Version field`);
      data = Buffer.from(text.replace(/^Version:.*$/m, `Version: ${newVersion}`), 'utf8');
    }
    out.push({ name, data, mode: e.mode });
  }
  const record = out.map((e) => `${csvField(e.name)},${recordHash(e.data)},${e.data.length}\n`).join('') + `${newInfo}RECORD,,\n`;
  out.push({ name: `${newInfo}RECORD`, data: Buffer.from(record, 'utf8'), mode: 0o100644 });

  const dest = path.join(outDir, `${[dist, newVersion, ...tags].join('-')}.whl`);
  const { default: yazl } = await import('yazl');
  const zip = new yazl.ZipFile();
  const mtime = fixedZipTime();
  for (const e of out) zip.addBuffer(e.data, e.name, { mtime, mode: e.mode ?? 0o100644, forceDosTimestamp: true, compress: true });
  zip.end();
  await new Promise<void>((resolve, reject) => {
    const stream = fs.createWriteStream(dest);
    stream.on('error', reject);
    stream.on('close', () => resolve());
    zip.outputStream.on('error', reject).pipe(stream);
  });
  return dest;
}

/** RECORD is CSV: a path holding a comma or a quote is quoted. */
function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
