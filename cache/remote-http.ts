// A client for Bazel's HTTP remote cache protocol (remote-anchors §1): GET/HEAD/PUT {base}/ac/{sha256} and
// {base}/cas/{sha256}. Bodies stream both ways (a 1 GiB wheel is never held in memory), every PUT carries a
// Content-Length (no chunked bodies, no Expect: 100-continue), and requests have a connect and an idle timeout and a
// bounded number of retries. Credentials travel only in request headers and never appear in a message.

import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { pipeline } from 'node:stream/promises';

export type Area = 'ac' | 'cas';

export interface HttpOptions {
  /** The cache's base URL; user and password in it become a Basic Authorization header. */
  url: URL;
  /** Extra request headers (a bearer token, an API key); they win over the URL's credentials. */
  headers: Record<string, string>;
  connectTimeoutMs: number;
  /** A request fails when nothing moves on its connection for this long; a slow but steady transfer never does. */
  idleTimeoutMs: number;
  /** Tries per request for failures that may pass (connection reset or refused, 5xx, 408, 429). */
  attempts: number;
}

/** The remote as a whole failed this request: it refused it, errored, or did not answer in time. */
export class RemoteError extends Error {
  constructor(
    /** `GET ac/0123456789ab` */
    readonly op: string,
    readonly detail: string,
    /** true when the server answered with a refusal (401, 403, 404 on PUT…) rather than failing to answer. */
    readonly refused: boolean,
  ) {
    super(`${op}: ${detail}`);
  }
}

export type Download = { found: false } | { found: true; digest: string | null; size: number };
export type Bytes = { found: false } | { found: true; bytes: Buffer; tooLarge: boolean };

const HEX64 = /^[0-9a-f]{64}$/;
const BACKOFF_MS = 250;
const BACKOFF_FACTOR = 4;
const CHUNK = 1 << 20;

/** The URL as it may be shown: no user, password, query or fragment (any of them may hold a secret). */
export function displayUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}

/** A failed attempt; `retry` says whether another try may succeed. */
class AttemptError extends Error {
  constructor(
    readonly detail: string,
    readonly retry: boolean,
    readonly refused = false,
  ) {
    super(detail);
  }
}

function netDetail(e: unknown): { detail: string; retry: boolean } {
  const code = (e as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return { detail: 'connection refused', retry: true };
    case 'ECONNRESET':
      return { detail: 'connection reset', retry: true };
    case 'EPIPE':
      return { detail: 'connection closed while sending', retry: true };
    case 'ETIMEDOUT':
      return { detail: 'connection timed out', retry: true };
    case 'EAI_AGAIN':
      return { detail: 'host name lookup failed (temporarily)', retry: true };
    case 'ENOTFOUND':
      return { detail: 'host not found', retry: false };
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return { detail: 'host unreachable', retry: false };
    default:
      // Node's network messages name host and port, never the credentials (they are not part of what it dials).
      return { detail: (e as Error).message || String(code ?? 'error'), retry: false };
  }
}

function seconds(ms: number): string {
  return `${+(ms / 1000).toFixed(1)}s`;
}

function statusText(res: http.IncomingMessage): string {
  return `${res.statusCode} ${res.statusMessage ?? ''}`.trim();
}

type Body = { file: string; size: number } | { bytes: Uint8Array };

export class RemoteHttp {
  /** The base URL for messages. */
  readonly display: string;
  private readonly base: URL;
  private readonly headers: Record<string, string>;
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;
  private readonly active = new Set<http.ClientRequest>();
  private closed = false;

  constructor(private readonly options: HttpOptions) {
    const url = new URL(options.url.href);
    this.display = displayUrl(url);
    const headers: Record<string, string> = { Accept: '*/*', 'User-Agent': 'wg/0.1' };
    if (url.username !== '' || url.password !== '') {
      const user = decodeURIComponent(url.username);
      const pass = decodeURIComponent(url.password);
      headers['Authorization'] = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    }
    for (const [name, value] of Object.entries(options.headers)) {
      for (const k of Object.keys(headers)) if (k.toLowerCase() === name.toLowerCase()) delete headers[k];
      headers[name] = value;
    }
    this.headers = headers;
    url.username = '';
    url.password = '';
    url.search = '';
    url.hash = '';
    url.pathname = url.pathname.replace(/\/+$/, '');
    this.base = url;
    const secure = url.protocol === 'https:';
    this.agent = secure ? new https.Agent({ keepAlive: true, maxSockets: 16 }) : new http.Agent({ keepAlive: true, maxSockets: 16 });
    this.request = secure ? https.request : http.request;
  }

  private path(area: Area, hash: string): string {
    if (!HEX64.test(hash)) throw new Error(`not a lowercase sha256 hex: ${JSON.stringify(hash)}`);
    return `${this.base.pathname}/${area}/${hash}`;
  }

  /** true when the blob or entry exists. */
  async head(area: Area, hash: string): Promise<boolean> {
    return this.withRetries(`HEAD ${area}/${hash.slice(0, 12)}`, () =>
      this.attempt('HEAD', this.path(area, hash), null, async (res) => {
        res.resume();
        return res.statusCode === 200;
      }),
    );
  }

  /** A small body (AC values, manifests, signatures), read into memory up to `maxBytes`. */
  async getBytes(area: Area, hash: string, maxBytes: number): Promise<Bytes> {
    return this.withRetries(`GET ${area}/${hash.slice(0, 12)}`, () =>
      this.attempt('GET', this.path(area, hash), null, async (res): Promise<Bytes> => {
        if (res.statusCode !== 200) {
          res.resume();
          return { found: false };
        }
        const declared = Number(res.headers['content-length'] ?? NaN);
        if (declared > maxBytes) {
          res.destroy();
          return { found: true, bytes: Buffer.alloc(0), tooLarge: true };
        }
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of res as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > maxBytes) {
            res.destroy();
            return { found: true, bytes: Buffer.alloc(0), tooLarge: true };
          }
          chunks.push(chunk);
        }
        return { found: true, bytes: Buffer.concat(chunks), tooLarge: false };
      }),
    );
  }

  /**
   * Streams a blob into `dest` (created or truncated), hashing it on the way. A body longer than `maxSize` is cut
   * off at once and reported with a null digest: a server must not make wg write more than it expects.
   */
  async getToFile(area: Area, hash: string, dest: string, maxSize: number): Promise<Download> {
    return this.withRetries(`GET ${area}/${hash.slice(0, 12)}`, () =>
      this.attempt('GET', this.path(area, hash), null, async (res): Promise<Download> => {
        if (res.statusCode !== 200) {
          res.resume();
          return { found: false };
        }
        const declared = Number(res.headers['content-length'] ?? NaN);
        if (declared > maxSize) {
          res.destroy();
          return { found: true, digest: null, size: declared };
        }
        const sha = createHash('sha256');
        let size = 0;
        let over = false;
        // A second 'data' listener beside the pipe: it sees every chunk the file gets, with no extra stream stage.
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxSize) {
            over = true;
            res.destroy(new Error('longer than expected'));
          } else sha.update(chunk);
        });
        try {
          await pipeline(res, createWriteStream(dest, { highWaterMark: CHUNK }));
        } catch (e) {
          if (!over) throw e;
        }
        if (over) return { found: true, digest: null, size };
        return { found: true, digest: sha.digest('hex'), size };
      }),
    );
  }

  /**
   * Uploads a file. Retrying a PUT is safe here: a CAS key names its bytes and an AC value is a function of its
   * key, so a second copy of a request that did land changes nothing.
   */
  async putFile(area: Area, hash: string, file: string, size: number): Promise<void> {
    await this.put(area, hash, { file, size });
  }

  async putBytes(area: Area, hash: string, bytes: Uint8Array): Promise<void> {
    await this.put(area, hash, { bytes });
  }

  private put(area: Area, hash: string, body: Body): Promise<void> {
    return this.withRetries(`PUT ${area}/${hash.slice(0, 12)}`, () =>
      this.attempt('PUT', this.path(area, hash), body, async (res) => {
        res.resume();
      }),
    );
  }

  /** Aborts every request in flight and refuses new ones (the remote is off for the rest of the run). */
  close(): void {
    this.closed = true;
    for (const req of this.active) req.destroy();
    this.active.clear();
    this.agent.destroy();
  }

  private async withRetries<T>(op: string, run: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new RemoteError(op, 'remote cache turned off', false);
      try {
        return await run();
      } catch (e) {
        if (!(e instanceof AttemptError)) throw e;
        if (!e.retry || attempt >= this.options.attempts || this.closed) {
          const tries = attempt > 1 ? ` (${attempt} attempts)` : '';
          throw new RemoteError(op, `${e.detail}${tries}`, e.refused);
        }
        const delay = BACKOFF_MS * BACKOFF_FACTOR ** (attempt - 1) * (0.8 + 0.4 * Math.random());
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /**
   * One request. `onResponse` runs for hits and misses (200, 204, 404 on GET/HEAD; 2xx on PUT); any other status
   * is an AttemptError. A timeout is never retried: a server that stayed silent that long is unlikely to answer the
   * next try, and the run must not wait for it several times over.
   */
  private attempt<T>(method: 'GET' | 'HEAD' | 'PUT', path: string, body: Body | null, onResponse: (res: http.IncomingMessage) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const headers: Record<string, string> = { ...this.headers };
      if (body) {
        headers['Content-Length'] = String('file' in body ? body.size : body.bytes.length);
        headers['Content-Type'] = 'application/octet-stream';
      }
      const req = this.request({
        protocol: this.base.protocol,
        hostname: this.base.hostname.replace(/^\[|\]$/g, ''),
        port: this.base.port || undefined,
        path,
        method,
        headers,
        agent: this.agent,
      });
      this.active.add(req);
      let settled = false;
      const fail = (e: AttemptError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(connectTimer);
        req.destroy();
        reject(e);
      };
      const connectTimer = setTimeout(() => fail(new AttemptError(`no connection within ${seconds(this.options.connectTimeoutMs)}`, false)), this.options.connectTimeoutMs);
      req.on('socket', (socket) => {
        if (!socket.connecting) clearTimeout(connectTimer);
        else socket.once('connect', () => clearTimeout(connectTimer));
      });
      req.setTimeout(this.options.idleTimeoutMs, () => fail(new AttemptError(`no answer for ${seconds(this.options.idleTimeoutMs)}`, false)));
      req.on('error', (e) => {
        const { detail, retry } = netDetail(e);
        fail(new AttemptError(this.closed ? 'remote cache turned off' : detail, retry && !this.closed));
      });
      req.on('close', () => this.active.delete(req));
      req.on('response', (res) => {
        clearTimeout(connectTimer);
        const status = res.statusCode ?? 0;
        const ok = method === 'PUT' ? [200, 201, 202, 204].includes(status) : [200, 204, 404].includes(status);
        if (!ok) {
          res.resume();
          const retry = status === 408 || status === 429 || status >= 500;
          const refused = status >= 400 && status < 500 && !retry;
          return fail(new AttemptError(statusText(res), retry, refused));
        }
        onResponse(res).then(
          (v) => {
            if (settled) return;
            settled = true;
            resolve(v);
          },
          (e: unknown) => {
            const { detail, retry } = netDetail(e);
            fail(new AttemptError(this.closed ? 'remote cache turned off' : `${detail} while receiving`, retry || (e as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE'));
          },
        );
      });
      if (!body) req.end();
      else if ('bytes' in body) req.end(body.bytes);
      else {
        const src = createReadStream(body.file, { highWaterMark: CHUNK });
        src.on('error', (e) => fail(new AttemptError(`cannot read ${body.file}: ${e.message}`, false)));
        // pipe() leaves the source open when the request dies first.
        req.on('close', () => src.destroy());
        src.pipe(req);
      }
    });
  }
}
