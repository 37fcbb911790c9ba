// A cache of checked BUILD.yaml files: parsing and checking a thousand-package BUILD.yaml costs a few hundred
// milliseconds, most of a build that has little to do. The checked workspace is stored by the sha256 of
// everything loading depends on and reused while those bytes are unchanged. Only mistake-free files are kept.
//
// An entry is `<kind byte><u32 LE body length><body><spans>`. The body is the workspace as JSON (kind `J`):
// JSON.parse built a 10,000-package workspace in a quarter of the time v8.deserialize took. A workspace JSON cannot
// carry exactly (a -0 in a field, say) is stored v8-serialized instead (kind `V`). The spans, four
// fifths of the bytes, follow the body and are read only when a diagnostic needs one; a file js-yaml read has none
// stored (engine/yaml-quick.ts), and they are taken from `yaml` if one is needed.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import type { Rule } from '../rules/rule.js';
import { BUILD_FILE, loadWorkspace, loadWorkspaceQuickly, type PackageDecl, type Workspace } from './load.js';
import { readAt } from './read-at.js';
import { SpanIndex } from './schema.js';

/** Bumped whenever the shape of Workspace or of an entry changes, so old entries are never read into a new shape. */
const FORMAT = 'wg-parse-3';

const HEADER_BYTES = 5;
const JSON_BODY = 0x4a; // 'J'
const V8_BODY = 0x56; // 'V'

function cacheKey(root: string, text: string, rules: ReadonlyMap<string, Rule>): string {
  const h = createHash('sha256');
  h.update(FORMAT).update('\0').update(root).update('\0').update(text).update('\0');
  // Rule schemas decide what a package may say; a bare interpreter name is looked up on PATH.
  for (const [kind, rule] of rules) h.update(`${kind}:${rule.version}:${Object.keys(rule.attrs).join(',')}\0`);
  h.update(process.env['PATH'] ?? '');
  return h.digest('hex');
}

type Entries<V> = [string, V][];
type PlainPackage = Omit<PackageDecl, 'variants' | 'versions'> & {
  variants: Entries<NonNullable<PackageDecl['variants']> extends Map<string, infer V> ? V : never> | null;
  versions: Entries<PackageDecl['versions'] extends Map<string, infer V> ? V : never>;
};
/** The workspace without its spans, its Maps and Sets as arrays: what the JSON body holds. */
interface PlainWorkspace {
  root: string;
  /** null when the only text is BUILD.yaml's, which the key was made from and every read already has. */
  texts: Entries<string> | null;
  toolchains: Entries<Workspace['toolchains'] extends Map<string, infer V> ? V : never>;
  variants: Entries<Workspace['variants'] extends Map<string, infer V> ? V : never>;
  packages: Entries<PlainPackage>;
  groups: Entries<string[]>;
  rejected: string[];
  remoteCache?: Workspace['remoteCache'];
  diagnostics: Workspace['diagnostics'];
}

function toPlain(ws: Workspace, text: string): PlainWorkspace {
  return {
    root: ws.root,
    texts: ws.texts.size === 1 && ws.texts.get(BUILD_FILE) === text ? null : [...ws.texts],
    toolchains: [...ws.toolchains],
    variants: [...ws.variants],
    // Spread keeps each field where it was, so a restored package has the same property order as a parsed one.
    packages: [...ws.packages].map(([name, p]) => [name, { ...p, variants: p.variants && [...p.variants], versions: [...p.versions] }]),
    groups: [...ws.groups],
    rejected: [...ws.rejected],
    ...(ws.remoteCache !== undefined ? { remoteCache: ws.remoteCache } : {}),
    diagnostics: ws.diagnostics,
  };
}

function fromPlain(plain: PlainWorkspace, text: string, spans: SpanIndex): Workspace {
  const packages = new Map<string, PackageDecl>();
  for (const [name, p] of plain.packages) {
    const pkg = p as unknown as PackageDecl;
    pkg.variants = p.variants && new Map(p.variants);
    pkg.versions = new Map(p.versions);
    packages.set(name, pkg);
  }
  return {
    root: plain.root,
    texts: new Map(plain.texts ?? [[BUILD_FILE, text]]),
    spans,
    toolchains: new Map(plain.toolchains),
    variants: new Map(plain.variants),
    packages,
    groups: new Map(plain.groups),
    rejected: new Set(plain.rejected),
    ...(plain.remoteCache !== undefined ? { remoteCache: plain.remoteCache } : {}),
    diagnostics: plain.diagnostics,
  };
}

/**
 * Whether JSON.parse(JSON.stringify(v)) is v again: finite numbers other than -0, no undefined, no holes, and only
 * plain objects and arrays. One walk: comparing a parsed copy with the workspace took longer than the copy.
 */
function jsonExact(v: unknown): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0);
    case 'object': {
      if (v === null) return true;
      if (Array.isArray(v)) {
        if (Object.getPrototypeOf(v) !== Array.prototype) return false;
        for (let i = 0; i < v.length; i++) if (!(i in v) || !jsonExact(v[i])) return false;
        return true;
      }
      if (Object.getPrototypeOf(v) !== Object.prototype || Object.getOwnPropertySymbols(v).length > 0) return false;
      const names = Object.getOwnPropertyNames(v);
      if (names.length !== Object.keys(v).length) return false; // a non-enumerable property JSON would drop
      for (const name of names) if (!jsonExact((v as Record<string, unknown>)[name])) return false;
      return true;
    }
    default:
      return false; // undefined, bigint, symbol, function
  }
}

/** The entry's body: JSON when that restores exactly the same workspace, else v8-serialized. */
function encodeBody(ws: Workspace, text: string): { kind: number; body: Buffer } {
  const plain = toPlain(ws, text);
  if (jsonExact(plain)) return { kind: JSON_BODY, body: Buffer.from(JSON.stringify(plain)) };
  const { spans: _spans, ...rest } = ws;
  return { kind: V8_BODY, body: v8.serialize(rest) };
}

/** The entry's workspace, its spans still on disk; throws if the entry is absent or unreadable. */
function readEntry(file: string, root: string, rules: ReadonlyMap<string, Rule>, text: string): Workspace {
  const fd = fs.openSync(file, 'r');
  let kind: number;
  let body: Buffer;
  try {
    const header = readAt(fd, 0, HEADER_BYTES);
    kind = header[0]!;
    body = readAt(fd, HEADER_BYTES, header.readUInt32LE(1));
  } finally {
    fs.closeSync(fd);
  }
  const spansAt = HEADER_BYTES + body.length;
  const spans = SpanIndex.lazy(() => {
    try {
      const blob = fs.readFileSync(file).subarray(spansAt);
      // None stored: the workspace was read by js-yaml, without them (loadWorkspaceQuickly).
      if (blob.length > 0) return SpanIndex.restore(v8.deserialize(blob) as ReturnType<SpanIndex['dump']>);
    } catch {
      // Removed since (or replaced by an entry of the same text, whose spans are the same): check the text again.
    }
    return loadWorkspace(root, rules, text).spans;
  });
  if (kind === JSON_BODY) return fromPlain(JSON.parse(body.toString('utf8')) as PlainWorkspace, text, spans);
  if (kind === V8_BODY) return { ...(v8.deserialize(body) as Omit<Workspace, 'spans'>), spans };
  throw new Error(`parse cache entry of unknown kind ${kind}`);
}

/** loadWorkspace, answered from `<cacheDir>/parse/` when the same bytes were checked before. */
export function loadWorkspaceCached(root: string, rules: ReadonlyMap<string, Rule>, cacheDir: string): Workspace {
  let text: string;
  try {
    text = fs.readFileSync(path.join(root, BUILD_FILE), 'utf8');
  } catch {
    return loadWorkspace(root, rules); // it reports the unreadable file
  }
  const file = path.join(cacheDir, 'parse', `${cacheKey(root, text, rules)}.bin`);
  try {
    return readEntry(file, root, rules, text);
  } catch {
    // Absent or unreadable: parse.
  }
  const { ws, exactSpans } = loadWorkspaceQuickly(root, rules, text);
  if (ws.diagnostics.length === 0) {
    try {
      const { kind, body } = encodeBody(ws, text);
      const header = Buffer.alloc(HEADER_BYTES);
      header[0] = kind;
      header.writeUInt32LE(body.length, 1);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      // Spans taken from `yaml` now would cost the parse the quick read spared: stored only when already there.
      fs.writeFileSync(tmp, Buffer.concat([header, body, exactSpans ? v8.serialize(ws.spans.dump()) : Buffer.alloc(0)]));
      fs.renameSync(tmp, file);
    } catch {
      // A cache that cannot be written only costs the next run a parse.
    }
  }
  return ws;
}
