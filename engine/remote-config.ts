// The remote cache's settings: the `remote_cache` section of BUILD.yaml, then the WG_REMOTE_* environment, then
// command-line flags, each winning over the one before. Reads the key files; talks to no server. Mistakes come
// back as values: BUILD.yaml ones as diagnostics (with positions), flag and environment ones as plain messages.
// Nothing here ever puts a URL's credentials or a header's value into a message.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RemoteOptions, RemoteStats } from '../cache/tiered-cache.js';
import type { Diagnostic } from './diagnostics.js';
import type { Schema } from './schema.js';
import type { Workspace } from './load.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
// The same spelling as a target's `resources.timeout` (load.ts).
const DURATION = /^(\d+(?:\.\d+)?)(s|m|h)$/;
const DEFAULT_TOKEN_ENV = 'WG_REMOTE_TOKEN';
const DEFAULT_TIMEOUT_MS = 20_000;

export const remoteCacheSchema: Schema = {
  type: 'record',
  fields: {
    url: { schema: { type: 'string' }, doc: "the cache's base URL: {url}/ac/… and {url}/cas/… (no credentials here)" },
    upload: { schema: { type: 'bool' }, doc: 'upload results built here (default false: read only)' },
    token_env: {
      schema: { type: 'string', pattern: ENV_NAME, patternDoc: 'an env variable name' },
      doc: `the env variable holding a bearer token (default ${DEFAULT_TOKEN_ENV})`,
    },
    headers: {
      schema: { type: 'dict', values: { type: 'scalar' }, keyPattern: HEADER_NAME, keyDoc: 'an HTTP header name' },
      doc: 'extra request headers; a value "$NAME" or "${NAME}" is taken from the environment',
    },
    trusted_keys: {
      schema: { type: 'list', of: { type: 'string' } },
      doc: 'ed25519 public keys (PEM files, workspace-relative, or "ed25519:BASE64"); only entries they signed are used',
    },
    sign_key: { schema: { type: 'string' }, doc: 'ed25519 private key (PEM file, workspace-relative) that signs uploads' },
    timeout: {
      schema: { type: 'string', pattern: DURATION, patternDoc: 'a duration such as 30s, 0.5s or 2m' },
      doc: 'how long a request may see no progress before the remote is given up for the run (default 20s)',
    },
  },
};

/** The section as written (null fields: not given). */
export interface RemoteCacheDecl {
  url: string | null;
  upload: boolean | null;
  tokenEnv: string | null;
  headers: Record<string, string>;
  trustedKeys: string[] | null;
  signKey: string | null;
  timeoutMs: number | null;
}

function parseTimeout(text: string): number {
  const m = DURATION.exec(text.trim());
  if (!m) return NaN;
  return Math.round(Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h']);
}

/** The checked section's plain value (see load.ts) as a declaration. */
export function remoteCacheDecl(raw: Record<string, unknown>): RemoteCacheDecl {
  return {
    url: (raw['url'] as string | undefined) ?? null,
    upload: (raw['upload'] as boolean | undefined) ?? null,
    tokenEnv: (raw['token_env'] as string | undefined) ?? null,
    headers: (raw['headers'] as Record<string, string> | undefined) ?? {},
    trustedKeys: (raw['trusted_keys'] as string[] | undefined) ?? null,
    signKey: (raw['sign_key'] as string | undefined) ?? null,
    timeoutMs: raw['timeout'] === undefined ? null : parseTimeout(raw['timeout'] as string),
  };
}

/** Command-line settings; undefined: not given. */
export interface RemoteFlags {
  /** A URL, or false for --no-remote-cache. */
  url?: string | false;
  upload?: boolean;
  /** Relative to the current folder. */
  signKey?: string;
  /** `Name=Value`, repeatable. */
  headers?: string[];
}

export interface RemoteResolution {
  /** null: no remote cache in this run. */
  options: RemoteOptions | null;
  warnings: string[];
  /** Mistakes in BUILD.yaml's remote_cache section. */
  diagnostics: Diagnostic[];
  /** Mistakes in flags or the environment. */
  errors: string[];
}

function hasCredentials(url: string): boolean {
  const u = new URL(url);
  return u.username !== '' || u.password !== '';
}

/** A URL's problem, in words that do not repeat the URL (it may hold a password). */
function urlProblem(text: string): string | null {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return 'is not a valid URL';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must start with http:// or https://';
  if (u.search !== '' || u.hash !== '') return 'must not have a query or fragment';
  return null;
}

export async function resolveRemote(ws: Workspace, flags: RemoteFlags, env: NodeJS.ProcessEnv, cwd: string): Promise<RemoteResolution> {
  const decl = ws.remoteCache ?? null;
  const out: RemoteResolution = { options: null, warnings: [], diagnostics: [], errors: [] };
  const at = (...p: (string | number)[]): Diagnostic['at'] => ws.spans.value(['remote_cache', ...p]);
  const diag = (message: string, span: Diagnostic['at']): void => {
    out.diagnostics.push({ severity: 'error', message, ...(span ? { at: span } : {}) });
  };

  // Which URL wins, and where it came from (for messages).
  let url: string | null = null;
  let urlFrom: 'flag' | 'env' | 'file' = 'file';
  if (flags.url === false) url = null;
  else if (flags.url !== undefined) [url, urlFrom] = [flags.url, 'flag'];
  else if (env['WG_REMOTE_CACHE']) [url, urlFrom] = [env['WG_REMOTE_CACHE'], 'env'];
  else url = decl?.url ?? null;

  if (decl?.url) {
    const problem = urlProblem(decl.url);
    if (problem) diag(`remote_cache.url ${problem}`, at('url'));
    else if (hasCredentials(decl.url)) {
      // Not pointed at: the excerpt would print the password.
      const span = at('url');
      out.diagnostics.push({
        severity: 'error',
        message: 'remote_cache.url must not hold a user name or password (BUILD.yaml is committed); put the URL with credentials in WG_REMOTE_CACHE or use token_env',
        ...(span ? { notes: [{ message: 'the URL is not shown here', at: { ...span, endLine: span.line, endCol: span.col } }] } : {}),
      });
    }
  }
  let timeoutMs = decl?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs > 0)) {
    diag('remote_cache.timeout must be more than 0', at('timeout'));
    timeoutMs = DEFAULT_TIMEOUT_MS;
  }

  // Authorization: the URL's user and password, else the bearer token; `headers` may set anything else.
  const headers: Record<string, string> = {};
  const tokenEnv = decl?.tokenEnv ?? DEFAULT_TOKEN_ENV;
  const token = env[tokenEnv];
  if (token && !(url !== null && urlProblem(url) === null && hasCredentials(url))) headers['Authorization'] = `Bearer ${token}`;
  for (const [name, value] of Object.entries(decl?.headers ?? {})) {
    const ref = /^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$/.exec(value);
    if (!ref) {
      headers[name] = value;
      continue;
    }
    const varName = (ref[1] ?? ref[2])!;
    const v = env[varName];
    if (v) headers[name] = v;
    else out.warnings.push(`remote cache header ${name}: $${varName} is not set; sending requests without it`);
  }
  for (const h of flags.headers ?? []) {
    const eq = h.indexOf('=');
    const name = eq > 0 ? h.slice(0, eq) : '';
    if (!HEADER_NAME.test(name)) {
      out.errors.push(`--remote-header takes NAME=VALUE with NAME an HTTP header name`);
      continue;
    }
    headers[name] = h.slice(eq + 1);
  }
  for (const v of Object.values(headers)) {
    if (/[\r\n\0]/.test(v)) out.errors.push('a remote cache header value holds a line break');
  }

  let upload = decl?.upload ?? false;
  const envUpload = env['WG_REMOTE_UPLOAD'];
  if (envUpload !== undefined && envUpload !== '') {
    if (/^(1|true|yes)$/i.test(envUpload)) upload = true;
    else if (/^(0|false|no)$/i.test(envUpload)) upload = false;
    else out.errors.push('WG_REMOTE_UPLOAD must be 1/true/yes or 0/false/no');
  }
  if (flags.upload !== undefined) upload = flags.upload;

  // Keys are loaded (and their mistakes reported) even when no URL is set, so a typo shows before CI needs it.
  let trustedKeys: RemoteOptions['trustedKeys'] = null;
  let signingKey: RemoteOptions['signingKey'] = null;
  const needKeys = (decl?.trustedKeys ?? null) !== null || Boolean(decl?.signKey) || flags.signKey !== undefined;
  // Like the client itself, the key handling is loaded only when it is used.
  const keys = needKeys ? await import('../cache/signing.js') : null;
  if (keys && decl?.trustedKeys) {
    trustedKeys = [];
    decl.trustedKeys.forEach((entry, i) => {
      const inline = entry.startsWith('ed25519:');
      const what = inline ? `trusted_keys entry ${i + 1}` : entry;
      try {
        const text = inline ? entry : fs.readFileSync(path.resolve(ws.root, entry), 'utf8');
        trustedKeys!.push(keys.parseTrustedKey(text, what));
      } catch (e) {
        const msg = e instanceof keys.KeyError ? e.message : `cannot read ${entry}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
        diag(`remote_cache.trusted_keys: ${msg}`, at('trusted_keys', i));
      }
    });
  }
  const signFile = flags.signKey !== undefined ? path.resolve(cwd, flags.signKey) : decl?.signKey ? path.resolve(ws.root, decl.signKey) : null;
  if (keys && signFile) {
    const shown = flags.signKey ?? decl?.signKey ?? signFile;
    try {
      signingKey = keys.parseSigningKey(fs.readFileSync(signFile, 'utf8'), shown);
    } catch (e) {
      const msg = e instanceof keys.KeyError ? e.message : `cannot read ${shown}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
      if (flags.signKey !== undefined) out.errors.push(`--remote-sign-key: ${msg}`);
      else diag(`remote_cache.sign_key: ${msg}`, at('sign_key'));
    }
  }

  if (url === null || url === '') return out;
  if (urlFrom !== 'file') {
    const problem = urlProblem(url);
    if (problem) {
      out.errors.push(`${urlFrom === 'flag' ? '--remote-cache' : 'WG_REMOTE_CACHE'} ${problem}`);
      return out;
    }
  }
  if (out.diagnostics.length > 0 || out.errors.length > 0) return out;
  out.options = { url: new URL(url), headers, upload, timeoutMs, signingKey, trustedKeys };
  return out;
}

function size(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/** The summary line: `wg: remote cache http://host/cache: 3 hits (12.0 MiB), 1 miss, 2 uploads (4.0 MiB)`. */
export function describeRemoteStats(s: RemoteStats): string {
  const plural = (n: number, word: string, many = `${word}s`): string => `${n} ${n === 1 ? word : many}`;
  const parts = [
    `${plural(s.hits, 'hit')}${s.hits > 0 ? ` (${size(s.downloadedBytes)} downloaded)` : ''}`,
    plural(s.misses, 'miss', 'misses'),
    `${plural(s.uploads, 'upload')}${s.uploads > 0 ? ` (${size(s.uploadedBytes)})` : ''}`,
  ];
  return `wg: remote cache ${s.url}: ${parts.join(', ')}${s.disabled ? '; turned off after an error' : ''}`;
}
