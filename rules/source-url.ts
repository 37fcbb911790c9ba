// URL sources (`{url, sha256, strip_components}`): archives downloaded over http(s) or read from file://, streamed to
// disk while hashed, verified against the declared sha256 and only then moved into `<cache>/sources/url/<sha256>`.
// Also the URL helpers every remote source shares: credential redaction and the two errors a remote can cause.

import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';

/**
 * A remote could not be asked (network down, server error, a broken index): not a mistake in BUILD.yaml, so wg
 * exits 1 with nothing run, and running it again later may work.
 */
export class SourceUnavailableError extends Error {}

/** The remote answered and the declared thing is not there (no such branch, project or version): exit 2. */
export class SourceNotFoundError extends Error {
  constructor(
    /** The field of the `source:` map that names what is missing (`ref`, `name`, `version`). */
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** The URL without `user:password@`, for keys, messages, logs and cache folder names. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username === '' && u.password === '') return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    // Not a WHATWG URL (scp-like git `user@host:path`): the user part names an account, never a secret.
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1');
  }
}

/** fetch() refuses URLs with credentials: they travel as a Basic authorization header instead. */
function requestOf(url: string): { url: string; headers: Record<string, string> } {
  const u = new URL(url);
  if (u.username === '' && u.password === '') return { url, headers: {} };
  const auth = Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64');
  u.username = '';
  u.password = '';
  return { url: u.toString(), headers: { authorization: `Basic ${auth}` } };
}

function causeOf(e: unknown): string {
  const err = e as Error & { cause?: { message?: string; code?: string } };
  return err.cause?.message ?? err.cause?.code ?? err.message;
}

/** GET over http(s) as a stream; a failure to connect or a non-2xx answer is a SourceUnavailableError. */
export async function httpGet(url: string, signal: AbortSignal | undefined, what: string): Promise<{ status: number; body: Readable }> {
  const req = requestOf(url);
  let res: Response;
  try {
    res = await fetch(req.url, { headers: req.headers, redirect: 'follow', ...(signal ? { signal } : {}) });
  } catch (e) {
    if (signal?.aborted) throw new SourceUnavailableError(`${what}: interrupted`);
    throw new SourceUnavailableError(`${what}: cannot fetch ${redactUrl(url)}: ${causeOf(e)}`);
  }
  if (!res.body) throw new SourceUnavailableError(`${what}: ${redactUrl(url)} answered ${res.status} with no body`);
  return { status: res.status, body: Readable.fromWeb(res.body as import('node:stream/web').ReadableStream) };
}

/** Where a verified archive lives, named by its sha256. */
export function archivePath(cacheDir: string, sha256: string): string {
  return path.join(cacheDir, 'sources', 'url', sha256);
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) h.update(chunk);
  return h.digest('hex');
}

/** One download per archive at a time in this process: two variants of a package share it. */
const inFlight = new Map<string, Promise<string>>();

/**
 * Makes sure `<cache>/sources/url/<sha256>` holds the bytes of `url` and returns its path. A cached copy is re-hashed
 * (a damaged one is replaced). The download streams to a temp file, hashing as it goes; on a mismatch the temp file is
 * removed and nothing is stored. Write order: temp → verify → fsync → rename → fsync folder.
 */
export function fetchArchive(url: string, sha256: string, cacheDir: string, io: { log: (line: string) => void; signal?: AbortSignal }): Promise<string> {
  const running = inFlight.get(sha256);
  if (running) return running;
  const p = download(url, sha256, cacheDir, io).finally(() => inFlight.delete(sha256));
  inFlight.set(sha256, p);
  return p;
}

async function download(url: string, sha256: string, cacheDir: string, io: { log: (line: string) => void; signal?: AbortSignal }): Promise<string> {
  const shown = redactUrl(url);
  const final = archivePath(cacheDir, sha256);
  if (fs.existsSync(final)) {
    if ((await sha256File(final)) === sha256) {
      io.log(`# source: ${shown} (sha256 ${sha256}, cached)`);
      return final;
    }
    io.log(`# source: the cached copy of ${shown} is damaged; downloading it again`);
    fs.rmSync(final, { force: true });
  }
  const dir = path.dirname(final);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.tmp-${randomBytes(8).toString('hex')}`);
  io.log(`# source: downloading ${shown}`);
  try {
    let body: Readable;
    const scheme = new URL(url).protocol;
    if (scheme === 'file:') {
      body = fs.createReadStream(fileURLToPath(url));
    } else {
      const res = await httpGet(url, io.signal, `url ${shown}`);
      if (res.status < 200 || res.status > 299) {
        res.body.destroy();
        throw new SourceUnavailableError(`url ${shown}: the server answered ${res.status}`);
      }
      body = res.body;
    }
    const h = createHash('sha256');
    const hasher = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        h.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(body, hasher, fs.createWriteStream(tmp, { flags: 'wx', mode: 0o444 }), ...(io.signal ? [{ signal: io.signal }] : []));
    } catch (e) {
      if (io.signal?.aborted) throw new SourceUnavailableError(`url ${shown}: interrupted`);
      throw new SourceUnavailableError(`url ${shown}: cannot download: ${causeOf(e)}`);
    }
    const got = h.digest('hex');
    if (got !== sha256) throw new SourceUnavailableError(`url ${shown}: expected sha256 ${sha256} got ${got}`);
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, final);
    const dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
    return final;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Downloads (or reuses) the archive and extracts it into `dest`, refusing any entry that could leave it. */
export async function materializeUrl(
  decl: { url: string; sha256: string; stripComponents: number },
  cacheDir: string,
  dest: string,
  io: { log: (line: string) => void; signal?: AbortSignal },
): Promise<void> {
  const archive = await fetchArchive(decl.url, decl.sha256, cacheDir, io);
  // Loaded when an archive is extracted: tar and yauzl, with zlib and assert, were ~5 ms of starting every build.
  const { ArchiveError, extractArchive } = await import('./archive.js');
  try {
    await extractArchive(archive, dest, { stripComponents: decl.stripComponents, ...(io.signal ? { signal: io.signal } : {}) });
  } catch (e) {
    if (e instanceof ArchiveError) throw new ArchiveError(`url ${redactUrl(decl.url)}: ${e.message}`);
    throw e;
  }
}
