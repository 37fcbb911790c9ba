// Package-index sources (`{index, name, version}`): the sdist `<name>-<version>.tar.gz` found through the PEP 503
// simple API (`GET <index>/<normalized-name>/`), trusted only through the `#sha256=` its link carries; downloaded and
// extracted like a URL source, without the sdist's top folder.

import { httpGet, redactUrl, SourceNotFoundError, SourceUnavailableError } from './source-url.js';

export interface IndexSource {
  index: string;
  name: string;
  version: string;
}

export interface ResolvedSdist {
  /** The file's absolute URL, without its fragment. */
  url: string;
  filename: string;
  sha256: string;
}

/** PEP 503 name normalization: lower case, runs of `-`, `_` and `.` become one `-`. */
export function normalizeName(name: string): string {
  return name.replace(/[-_.]+/g, '-').toLowerCase();
}

const PAGE_LIMIT = 32 * 1024 * 1024;
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (all, e: string) => {
    if (e.startsWith('#x') || e.startsWith('#X')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ENTITIES[e.toLowerCase()] ?? all;
  });
}

/** The `href`s of every anchor of a PEP 503 page (the spec's pages are nothing but anchors). */
export function anchorHrefs(html: string): string[] {
  const out: string[] = [];
  for (const m of html.matchAll(/<a\b([^>]*)>/gi)) {
    const attrs = m[1] ?? '';
    const href = /\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i.exec(attrs);
    const value = href?.[1] ?? href?.[2] ?? href?.[3];
    if (value !== undefined) out.push(decodeEntities(value));
  }
  return out;
}

/** `foo_bar-1.0.tar.gz` → `{name: 'foo-bar', version: '1.0'}` when it parses as an sdist name. */
function sdistParts(filename: string): { name: string; version: string } | null {
  if (!filename.endsWith('.tar.gz')) return null;
  const stem = filename.slice(0, -'.tar.gz'.length);
  const dash = stem.lastIndexOf('-');
  if (dash <= 0) return null;
  return { name: normalizeName(stem.slice(0, dash)), version: stem.slice(dash + 1) };
}

/** Finds the sdist of `name` `version` on the index and its declared sha256. */
export async function resolveSdist(src: IndexSource, signal?: AbortSignal): Promise<ResolvedSdist> {
  const shownIndex = redactUrl(src.index);
  const page = `${src.index.replace(/\/+$/, '')}/${normalizeName(src.name)}/`;
  const what = `index ${shownIndex}`;
  const res = await httpGet(page, signal, what);
  if (res.status === 404) {
    res.body.destroy();
    throw new SourceNotFoundError('name', `project "${src.name}" is not on the index ${shownIndex} (GET ${redactUrl(page)} answered 404)`);
  }
  if (res.status < 200 || res.status > 299) {
    res.body.destroy();
    throw new SourceUnavailableError(`${what}: GET ${redactUrl(page)} answered ${res.status}`);
  }
  let html = '';
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      html += chunk.toString('utf8');
      if (html.length > PAGE_LIMIT) throw new Error(`the page is larger than ${PAGE_LIMIT} bytes`);
    }
  } catch (e) {
    res.body.destroy();
    throw new SourceUnavailableError(`${what}: cannot read ${redactUrl(page)}: ${(e as Error).message}`);
  }

  const wantName = normalizeName(src.name);
  const versions: string[] = [];
  for (const href of anchorHrefs(html)) {
    let url: URL;
    try {
      url = new URL(href, page);
    } catch {
      continue;
    }
    const filename = decodeURIComponent(url.pathname.split('/').at(-1) ?? '');
    const parts = sdistParts(filename);
    if (!parts || parts.name !== wantName) continue;
    if (parts.version !== src.version) {
      versions.push(parts.version);
      continue;
    }
    const fragment = url.hash.slice(1);
    url.hash = '';
    const m = /(?:^|&)sha256=([0-9a-fA-F]{64})(?:&|$)/.exec(fragment);
    if (!m) {
      throw new SourceUnavailableError(`${what}: ${filename} has no #sha256= hash on ${redactUrl(page)}; wg only builds from verified downloads`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new SourceUnavailableError(`${what}: ${filename} links to a ${url.protocol.slice(0, -1)} URL; only http and https are followed`);
    }
    // The index's credentials go along only to the index's own host.
    const idx = new URL(src.index);
    if (url.host === idx.host && url.username === '' && (idx.username !== '' || idx.password !== '')) {
      url.username = idx.username;
      url.password = idx.password;
    }
    return { url: url.toString(), filename, sha256: m[1]!.toLowerCase() };
  }
  const listed = versions.length > 0 ? ` (sdists there: ${[...new Set(versions)].join(', ')})` : ' (it lists no sdist of it)';
  throw new SourceNotFoundError('version', `the index ${shownIndex} has no sdist of "${src.name}" version ${src.version}${listed}`);
}
