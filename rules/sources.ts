// Where a package's source comes from: the declared shapes of `source:` (a folder, git, a URL, a package index),
// their checks, and resolution of a remote source into its content identity (for the key record) plus a function
// that puts exactly that content into a sandbox. Folder sources keep their own path (source-path.ts).

import type { SourceIdentity } from '../engine/key.js';
import { FULL_SHA, gitUrlProblem, materializeGit, refProblem, resolveGitCommit } from './source-git.js';
import { resolveSdist } from './source-index.js';
import { materializeUrl, redactUrl } from './source-url.js';

/** A checked `source:` value. URLs keep their credentials here: only what leaves this module is redacted. */
export type SourceDecl =
  | { kind: 'path'; path: string }
  | { kind: 'git'; url: string; ref: string; submodules: boolean }
  | { kind: 'url'; url: string; sha256: string; stripComponents: number }
  | { kind: 'index'; index: string; name: string; version: string };

export type RemoteSourceDecl = Exclude<SourceDecl, { kind: 'path' }>;

/** A problem with a declared source: `field` is the map key it is about (null: the whole value). */
export interface SourceProblem {
  field: string | null;
  /** Point at the key itself (a field that does not belong) rather than its value. */
  atKey?: boolean;
  message: string;
}

/** Every field a `source:` map may hold, with its type, as engine/load.ts checks them. */
export const SOURCE_FIELDS = ['git', 'ref', 'submodules', 'url', 'sha256', 'strip_components', 'index', 'name', 'version'] as const;

const KINDS = {
  git: { required: ['ref'], optional: ['submodules'] },
  url: { required: ['sha256'], optional: ['strip_components'] },
  index: { required: ['name', 'version'], optional: [] },
} as const;
type Kind = keyof typeof KINDS;

function fieldList(names: readonly string[]): string {
  const quoted = names.map((n) => `"${n}"`);
  return quoted.length <= 1 ? (quoted[0] ?? '') : `${quoted.slice(0, -1).join(', ')} and ${quoted.at(-1)}`;
}

/**
 * Checks a `source:` value whose field types the schema already checked: exactly one of `git`, `url` or `index`,
 * only the fields that kind takes, its required ones, a ref and URL that are safe to hand to git. `owner` is how
 * messages name the package (`package "fastmath"`).
 */
export function checkSource(raw: string | Record<string, unknown>, owner: string): { decl: SourceDecl | null; problems: SourceProblem[] } {
  if (typeof raw === 'string') return { decl: { kind: 'path', path: raw }, problems: [] };
  const problems: SourceProblem[] = [];
  const present = Object.keys(raw).filter((k) => raw[k] !== undefined);
  const kinds = present.filter((k): k is Kind => k in KINDS);
  if (kinds.length === 0) {
    problems.push({ field: null, message: `source of ${owner} must name one of "git", "url" or "index" (or be a folder path)` });
    return { decl: null, problems };
  }
  if (kinds.length > 1) {
    problems.push({ field: kinds[1]!, atKey: true, message: `source of ${owner} names both "${kinds[0]}" and "${kinds[1]}"; a source is one of "git", "url" or "index"` });
    return { decl: null, problems };
  }
  const kind = kinds[0]!;
  const spec = KINDS[kind];
  const allowed: readonly string[] = [...spec.required, ...spec.optional];
  for (const k of present) {
    if (k === kind || allowed.includes(k)) continue;
    problems.push({
      field: k,
      atKey: true,
      message: `"${k}" does not belong in a ${kind} source (${owner}); a ${kind} source takes ${fieldList([kind, ...allowed])}`,
    });
  }
  for (const k of spec.required) {
    if (raw[k] === undefined) {
      const why = k === 'sha256' ? ' (every download is verified; `sha256sum FILE` prints it)' : '';
      problems.push({ field: kind, message: `${kind} source of ${owner} is missing "${k}"${why}` });
    }
  }
  const str = (k: string): string => raw[k] as string;
  if (kind === 'git') {
    const urlProblem = gitUrlProblem(str('git'));
    if (urlProblem) problems.push({ field: 'git', message: `git URL "${redactUrl(str('git'))}" of ${owner} ${urlProblem}` });
    if (raw['ref'] !== undefined) {
      const p = refProblem(str('ref'));
      if (p) problems.push({ field: 'ref', message: `ref ${JSON.stringify(str('ref'))} of ${owner} ${p}` });
    }
  } else {
    const url = str(kind);
    const allowedSchemes = kind === 'url' ? ['http:', 'https:', 'file:'] : ['http:', 'https:'];
    let scheme: string | null = null;
    try {
      scheme = new URL(url).protocol;
    } catch {
      /* reported below */
    }
    if (scheme === null || !allowedSchemes.includes(scheme)) {
      const names = allowedSchemes.map((s) => s.slice(0, -1)).join(', ');
      problems.push({ field: kind, message: `${kind} "${redactUrl(url)}" of ${owner} is not an absolute ${names} URL` });
    }
  }
  if (problems.length > 0) return { decl: null, problems };
  switch (kind) {
    case 'git':
      return { decl: { kind, url: str('git'), ref: str('ref'), submodules: (raw['submodules'] as boolean | undefined) ?? false }, problems };
    case 'url':
      return { decl: { kind, url: str('url'), sha256: str('sha256').toLowerCase(), stripComponents: (raw['strip_components'] as number | undefined) ?? 0 }, problems };
    case 'index':
      return { decl: { kind, index: str('index'), name: str('name'), version: str('version') }, problems };
  }
}

/**
 * Whether the source's identity can be known without asking a remote: a folder, a URL with its sha256, a git commit
 * given in full. A branch, a tag or an index page can change under the same BUILD.yaml, so a build that skips
 * planning (a no-op snapshot) must re-resolve those.
 */
export function isPinned(decl: SourceDecl): boolean {
  return decl.kind === 'path' || decl.kind === 'url' || (decl.kind === 'git' && FULL_SHA.test(decl.ref));
}

/** How an executor puts a remote source into the sandbox. */
export interface SourceIo {
  log: (line: string) => void;
  signal?: AbortSignal;
}

/** A remote source resolved for one build: its key identity, and how to materialize exactly that content. */
export interface ResolvedSource {
  identity: SourceIdentity;
  /** One line for logs: what is built, without credentials. */
  describe: string;
  /** Writes the source tree into `dest` (which must not exist yet). Throws an Error with a user-facing message. */
  materialize(dest: string, io: SourceIo): Promise<void>;
}

/**
 * Resolves a remote source. Git refs other than full shas ask the remote (`git ls-remote`), index sources fetch the
 * project page; URL sources and full-sha git sources resolve without any network, so `--dry-run` works offline.
 * Throws SourceUnavailableError (the remote could not be asked) or SourceNotFoundError (it says no such thing).
 */
export async function resolveSource(decl: RemoteSourceDecl, cacheDir: string, signal?: AbortSignal): Promise<ResolvedSource> {
  switch (decl.kind) {
    case 'git': {
      const commit = await resolveGitCommit(decl, signal);
      const url = redactUrl(decl.url);
      return {
        identity: { kind: 'git', url, commit, submodules: decl.submodules },
        describe: `git ${url} ${FULL_SHA.test(decl.ref) ? commit : `${decl.ref} (${commit})`}`,
        materialize: (dest, io) => materializeGit(decl, commit, cacheDir, dest, io),
      };
    }
    case 'url':
      return {
        identity: { kind: 'url', sha256: decl.sha256, strip: decl.stripComponents },
        describe: `url ${redactUrl(decl.url)}`,
        materialize: (dest, io) => materializeUrl(decl, cacheDir, dest, io),
      };
    case 'index': {
      const sdist = await resolveSdist(decl, signal);
      return {
        identity: { kind: 'index', name: decl.name, version: decl.version, sha256: sdist.sha256 },
        describe: `index ${redactUrl(decl.index)} ${sdist.filename}`,
        // An sdist holds one top folder, `<name>-<version>/`: the project is what is inside it.
        materialize: (dest, io) => materializeUrl({ url: sdist.url, sha256: sdist.sha256, stripComponents: 1 }, cacheDir, dest, io),
      };
    }
  }
}
