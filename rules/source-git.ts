// Git sources (`{git, ref, submodules}`): refs and URLs are checked before git ever runs, a ref is resolved to its
// commit (a full 40-hex sha needs no network at all), objects live in one bare mirror per repository under
// `<cache>/sources/git/<sha256 of the URL>`, and a build gets a checkout of exactly that commit. Git always runs
// without a shell, with `--` (or `--end-of-options`) before positionals and with terminal prompts off.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { listTree, SourceError } from './source-path.js';
import { redactUrl, SourceNotFoundError, SourceUnavailableError } from './source-url.js';

export interface GitSource {
  url: string;
  ref: string;
  submodules: boolean;
}

export const FULL_SHA = /^[0-9a-f]{40}$/;
/** What a ref may be made of; everything else (shell metacharacters, whitespace, control bytes) is refused. */
const REF_CHARS = /^[A-Za-z0-9._/+@,=-]$/;

function show(c: string): string {
  return /[\x00-\x1f\x7f\s]/.test(c) ? JSON.stringify(c).slice(1, -1).replace(/^ $/, 'a space') : c;
}

/**
 * Why `ref` cannot be a branch, tag or commit, or null when it can. Stricter than `git check-ref-format`: it also
 * refuses anything a shell or git's option parser could read as more than a name.
 */
export function refProblem(ref: string): string | null {
  if (ref === '') return 'is empty';
  if (ref.startsWith('-')) return 'starts with "-", which git would read as an option';
  for (const c of ref) {
    if (!REF_CHARS.test(c)) return `contains "${show(c)}", which is not allowed in a ref (letters, digits and "._/+@,=-" are)`;
  }
  if (ref.includes('..')) return 'contains "..", which is not allowed in a ref';
  if (ref.includes('@{') || ref === '@') return 'is not a branch, tag or commit';
  if (ref.startsWith('/') || ref.endsWith('/') || ref.includes('//')) return 'has an empty path component';
  if (ref.endsWith('.') || ref.endsWith('.lock') || ref.split('/').some((c) => c.startsWith('.'))) return 'is not a valid ref name (see git check-ref-format)';
  return null;
}

const GIT_SCHEMES = new Set(['https:', 'http:', 'ssh:', 'git:', 'file:']);

/** Why `url` is not a repository URL wg will hand to git, or null. Transports such as `ext::` run commands. */
export function gitUrlProblem(url: string): string | null {
  if (url.startsWith('-')) return 'starts with "-", which git would read as an option';
  if (/[\x00-\x20\x7f]/.test(url)) return 'contains whitespace or control characters';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    let scheme: string;
    try {
      scheme = new URL(url).protocol;
    } catch {
      return 'is not a valid URL';
    }
    return GIT_SCHEMES.has(scheme) ? null : `uses "${scheme.slice(0, -1)}", but a git source is an https, http, ssh, git or file URL`;
  }
  // scp-like `git@github.com:org/repo.git`
  if (/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^:]/.test(url) && !url.includes('::')) return null;
  return 'is not an https, http, ssh, git or file URL (or user@host:path)';
}

/** The mirror of one repository; named by the URL without credentials, so a rotated token keeps the mirror. */
export function mirrorDir(cacheDir: string, url: string): string {
  return path.join(cacheDir, 'sources', 'git', createHash('sha256').update(redactUrl(url)).digest('hex'));
}

class GitFailed extends Error {
  constructor(
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(stderr);
  }
}

/**
 * Runs git with an argument vector (never a shell), prompts off, output captured. Credentials are cut out of stderr
 * before it can reach a message or a log, since git may echo a URL with its credentials.
 */
function git(args: string[], options: { cwd?: string; signal?: AbortSignal; url?: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, {
      cwd: options.cwd,
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GCM_INTERACTIVE: 'never' },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.signal ? { signal: options.signal } : {}),
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new GitFailed(null, (e as Error).message)));
    child.on('close', (code) => {
      if (code === 0) return resolve(out);
      let text = err.trim();
      if (options.url && options.url !== redactUrl(options.url)) text = text.split(options.url).join(redactUrl(options.url));
      text = text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/\s@]+@/gi, '$1');
      reject(new GitFailed(code, text));
    });
  });
}

/** The line of git's stderr that says what went wrong: its first `fatal:`/`error:` line (advice follows it). */
function gitReason(text: string): string {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return lines.find((l) => /^(fatal|error): /.test(l)) ?? lines.at(-1) ?? 'no output';
}

/**
 * The commit a ref names. A full 40-hex sha is its own answer (no git, no network: `--dry-run` works offline);
 * a branch or tag is asked of the remote with `git ls-remote` (tags first, as git's own lookup order).
 */
export async function resolveGitCommit(src: GitSource, signal?: AbortSignal): Promise<string> {
  if (FULL_SHA.test(src.ref)) return src.ref;
  const shown = redactUrl(src.url);
  let out: string;
  try {
    out = src.ref.startsWith('refs/')
      ? await git(['ls-remote', '--', src.url, src.ref, `${src.ref}^{}`], { url: src.url, ...(signal ? { signal } : {}) })
      : await git(['ls-remote', '--heads', '--tags', '--', src.url], { url: src.url, ...(signal ? { signal } : {}) });
  } catch (e) {
    const why = e instanceof GitFailed ? gitReason(e.stderr) : (e as Error).message;
    throw new SourceUnavailableError(`git ${shown}: cannot list its refs (git ls-remote failed: ${why})`);
  }
  const refs = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [sha, name] = line.split('\t');
    if (sha && name && FULL_SHA.test(sha)) refs.set(name, sha);
  }
  const candidates = src.ref.startsWith('refs/') ? [src.ref] : [`refs/tags/${src.ref}`, `refs/heads/${src.ref}`];
  for (const name of candidates) {
    // An annotated tag's own sha names the tag object; `^{}` is the commit it points at.
    const commit = refs.get(`${name}^{}`) ?? refs.get(name);
    if (commit) return commit;
  }
  const short = /^[0-9a-f]{4,39}$/.test(src.ref) ? '; an abbreviated commit cannot be resolved without fetching, so give all 40 hex digits' : '';
  const names = [...refs.keys()].filter((n) => !n.endsWith('^{}')).map((n) => n.replace(/^refs\/(heads|tags)\//, ''));
  throw new SourceNotFoundError('ref', `ref "${src.ref}" is not a branch or tag of ${shown}${short}${suggest(src.ref, names)}`);
}

function suggest(name: string, known: string[]): string {
  // A small local edit distance, to keep this file free of engine imports.
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean "${best}"?)` : '';
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** One fetch per mirror at a time in this process (two variants of a package build from the same repository). */
const mirrorLocks = new Map<string, Promise<unknown>>();

function withMirrorLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const prev = mirrorLocks.get(dir) ?? Promise.resolve();
  const next = prev.catch(() => undefined).then(fn);
  mirrorLocks.set(dir, next);
  return next;
}

async function hasCommit(mirror: string, commit: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await git([`--git-dir=${mirror}`, 'cat-file', '-e', '--end-of-options', `${commit}^{commit}`], signal ? { signal } : {});
    return true;
  } catch {
    return false;
  }
}

async function ensureMirror(dir: string, signal?: AbortSignal): Promise<void> {
  if (fs.existsSync(path.join(dir, 'HEAD'))) return;
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${randomBytes(6).toString('hex')}`;
  await git(['init', '--bare', '-q', '--', tmp], signal ? { signal } : {});
  try {
    fs.renameSync(tmp, dir);
  } catch {
    // Another wg made it first.
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Makes sure the mirror holds `commit`, fetching only when it does not: an unchanged branch or a known commit costs
 * no network at all here. The commit is pinned under refs/wg/ so `git gc` never drops it.
 */
export async function fetchCommit(src: GitSource, commit: string, cacheDir: string, io: { log: (line: string) => void; signal?: AbortSignal }): Promise<string> {
  const dir = mirrorDir(cacheDir, src.url);
  const shown = redactUrl(src.url);
  const opts = { url: src.url, ...(io.signal ? { signal: io.signal } : {}) };
  return withMirrorLock(dir, async () => {
    await ensureMirror(dir, io.signal);
    if (await hasCommit(dir, commit, io.signal)) {
      io.log(`# source: git ${shown} ${commit} (in the mirror)`);
      return dir;
    }
    io.log(`# source: fetching ${commit} from git ${shown}`);
    const errors: string[] = [];
    try {
      await git([`--git-dir=${dir}`, 'fetch', '-q', '--no-tags', '--', src.url, `+${commit}:refs/wg/${commit}`], opts);
    } catch (e) {
      // Servers that refuse unadvertised commits: take every branch and tag, then look again.
      errors.push(e instanceof GitFailed ? gitReason(e.stderr) : (e as Error).message);
      try {
        await git([`--git-dir=${dir}`, 'fetch', '-q', '--', src.url, '+refs/heads/*:refs/wg-remote/heads/*', '+refs/tags/*:refs/wg-remote/tags/*'], opts);
      } catch (e2) {
        errors.push(e2 instanceof GitFailed ? gitReason(e2.stderr) : (e2 as Error).message);
      }
    }
    if (!(await hasCommit(dir, commit, io.signal))) {
      throw new SourceUnavailableError(`git ${shown}: cannot fetch commit ${commit}${errors.length ? ` (${errors.join('; ')})` : ''}`);
    }
    await git([`--git-dir=${dir}`, 'update-ref', '--', `refs/wg/${commit}`, commit], io.signal ? { signal: io.signal } : {});
    return dir;
  });
}

/**
 * Checks `commit` out into `dest` (a fresh folder) from the mirror, with submodules when asked. The checkout's
 * origin is the declared URL without credentials, so relative submodule URLs resolve as upstream intends and no
 * cache path or secret is left in the sandbox. Symlinks leaving the tree are refused, as for folder sources.
 */
export async function materializeGit(src: GitSource, commit: string, cacheDir: string, dest: string, io: { log: (line: string) => void; signal?: AbortSignal }): Promise<void> {
  if (!FULL_SHA.test(commit)) throw new SourceError(`not a commit: ${commit}`);
  const mirror = await fetchCommit(src, commit, cacheDir, io);
  const shown = redactUrl(src.url);
  const run = async (args: string[], step: string): Promise<void> => {
    try {
      await git(args, { url: src.url, ...(io.signal ? { signal: io.signal } : {}) });
    } catch (e) {
      throw new SourceUnavailableError(`git ${shown}: ${step} failed: ${e instanceof GitFailed ? gitReason(e.stderr) : (e as Error).message}`);
    }
  };
  await run(['clone', '-q', '--shared', '--no-checkout', '--', mirror, dest], 'clone from the mirror');
  await run(['-C', dest, 'config', '--', 'remote.origin.url', shown], 'setting origin');
  await run(['-C', dest, 'update-ref', '--no-deref', '--', 'HEAD', commit], 'checkout');
  await run(['-C', dest, 'reset', '-q', '--hard'], 'checkout');
  if (src.submodules) {
    io.log('# source: updating submodules');
    // git refuses file:// submodules by default (CVE-2022-39253); a local superproject may use local submodules.
    const allowFile = src.url.startsWith('file://') ? ['-c', 'protocol.file.allow=always'] : [];
    await run(['-C', dest, ...allowFile, 'submodule', 'update', '--init', '--recursive', '-q'], 'submodule update');
  }
  try {
    listTree(dest, () => '');
  } catch (e) {
    if (e instanceof SourceError) throw new SourceError(`git ${shown} at ${commit}: ${e.message.split(` in ${dest}`).join('')}`);
    throw e;
  }
}
