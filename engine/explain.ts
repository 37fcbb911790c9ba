// `wg explain`: says in words what changed between the key record a target would be built with now (planned
// exactly as `wg build --dry-run` plans it) and the record of its last build in this workspace (last-build.ts).

import { LocalStore } from '../cache/local-store.js';
import { loadPlugins } from './plugins.js';
import { loadSelection, planSelection, type Planned } from './build.js';
import { canonicalJson, type KeyRecord } from './key.js';
import type { Label } from './label.js';
import { depsOf, fileMap, LastBuilds, type FileMap, type LastBuild } from './last-build.js';

/** How `wg explain` sums a target up; `changes` holds one line per change when the key moved. */
export type Explanation =
  | { label: Label; status: 'cached'; key: string }
  | { label: Label; status: 'never-built'; key: string }
  | { label: Label; status: 'evicted'; key: string }
  | { label: Label; status: 'changed'; key: string; lastKey: string; changes: string[] };

export function explanationLines(x: Explanation): string[] {
  const short = (k: string): string => k.slice(0, 12);
  switch (x.status) {
    case 'cached':
      return [`${x.label} is cached (key ${short(x.key)})`];
    case 'never-built':
      return [`${x.label} has never been built`];
    case 'evicted':
      return [`${x.label} was last built with its current key ${short(x.key)}, but the result is no longer in the cache`];
    case 'changed':
      return [`${x.label} would be rebuilt (key ${short(x.lastKey)} → ${short(x.key)}):`, ...x.changes.map((c) => `  ${c}`)];
  }
}

/** Plans the selected targets as `wg build --dry-run` would (running nothing) and explains each of them. */
export async function explainTargets(root: string, patterns: string[], cacheDir: string): Promise<{ explanations: Explanation[]; warnings: string[] }> {
  // With the plugins, as a build loads them: their rules and their files' digests are part of the keys.
  const selection = loadSelection(root, patterns, await loadPlugins(root));
  const store = LocalStore.open(cacheDir);
  try {
    const planned = await planSelection(selection, store, cacheDir);
    const last = new LastBuilds(store.kv('records'), root);
    const warnings: string[] = [];
    const explanations = [...selection.selected].sort().map((label) => {
      const p = planned.get(label)!;
      const found = store.lookup(p.key);
      if ('miss' in found && found.miss === 'corrupt') warnings.push(found.warning);
      return explain(p, planned, 'hit' in found, last);
    });
    return { explanations, warnings };
  } finally {
    await store.close();
  }
}

/** Explains one planned target: `cached` wins, then the comparison with its last build. */
export function explain(p: Planned, planned: ReadonlyMap<Label, Planned>, isCached: boolean, last: LastBuilds): Explanation {
  const label = p.target.label;
  if (isCached) return { label, status: 'cached', key: p.key };
  const before = last.get(label);
  if (!before) return { label, status: 'never-built', key: p.key };
  if (before.key === p.key) return { label, status: 'evicted', key: p.key };
  const oldFiles = last.files(label, (before.record.source as { tree?: unknown } | null)?.tree);
  const changes = diffRecords(before.record, p.record, {
    oldDeps: before.deps,
    newDeps: depsOf(p, planned),
    oldFiles,
    newFiles: p.source && 'entries' in p.source ? fileMap(p.source.entries) : undefined,
  });
  return { label, status: 'changed', key: p.key, lastKey: before.key, changes };
}

interface DiffContext {
  oldDeps: LastBuild['deps'];
  newDeps: LastBuild['deps'];
  oldFiles: FileMap | undefined;
  newFiles: FileMap | undefined;
}

const same = (a: unknown, b: unknown): boolean => canonicalJson(a ?? null) === canonicalJson(b ?? null);

/** A value as explain shows it in `a → b`. */
function shown(v: unknown): string {
  if (v === null || v === undefined) return 'none';
  return typeof v === 'string' ? v : canonicalJson(v);
}

/** How many changed source files are named before the rest are counted. */
const MAX_FILES = 10;

/**
 * One line per change between two key records, in the record's field order. Fields this module does not know
 * (a newer record format) are still reported, by name, so a key never moves without a line saying why.
 */
export function diffRecords(a: KeyRecord, b: KeyRecord, ctx: DiffContext): string[] {
  const out: string[] = [];
  const ra = a as unknown as Record<string, unknown>;
  const rb = b as unknown as Record<string, unknown>;
  const handled = new Set(['format', 'rule', 'attrs', 'source', 'patches', 'env', 'toolchain', 'systemSitePackages', 'deps']);

  if (!same(a.format, b.format)) out.push(`key format ${shown(a.format)} → ${shown(b.format)}`);
  if (a.rule?.kind !== b.rule?.kind) out.push(`rule ${shown(a.rule?.kind)} → ${shown(b.rule?.kind)}`);
  else if (a.rule?.version !== b.rule?.version) out.push(`rule ${b.rule.kind} version ${shown(a.rule?.version)} → ${shown(b.rule?.version)}`);

  out.push(...diffAttrs(a.attrs ?? {}, b.attrs ?? {}));
  out.push(...diffSource(a.source as unknown, b.source as unknown, ctx));
  out.push(...diffPatches(a.patches ?? [], b.patches ?? []));
  out.push(...diffEnv(a.env ?? {}, b.env ?? {}));
  out.push(...diffToolchain(a.toolchain, b.toolchain));
  if (!same(a.systemSitePackages, b.systemSitePackages)) {
    out.push(`system_site_packages ${shown(a.systemSitePackages)} → ${shown(b.systemSitePackages)}`);
  }
  out.push(...diffDeps(a.deps ?? [], b.deps ?? [], ctx));

  for (const field of [...new Set([...Object.keys(ra), ...Object.keys(rb)])].sort()) {
    if (!handled.has(field) && !same(ra[field], rb[field])) out.push(`${field} changed`);
  }
  if (out.length === 0) out.push('the key record changed in a way wg cannot name');
  return out;
}

/** Attribute names as users write them in BUILD.yaml; the build command is the one users ask about most. */
const ATTR_WORDS: Record<string, string> = { cmd: 'build command', build: 'build command', test: 'smoke test', outs: 'outputs' };

function diffAttrs(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (same(a[k], b[k])) continue;
    const words = ATTR_WORDS[k];
    if (words) out.push(`${words} changed`);
    else if (k === 'buildDir') out.push(`build_dir ${JSON.stringify(a[k] ?? null)} → ${JSON.stringify(b[k] ?? null)}`);
    else out.push(`attribute ${k} changed`);
  }
  return [...new Set(out)];
}

function sourceWords(s: Record<string, unknown> | null): string {
  if (s === null) return 'none';
  if (s['kind'] === 'path') return 'folder';
  if (s['kind'] === 'git' && typeof s['commit'] === 'string') return `git commit ${s['commit'].slice(0, 7)}`;
  if (s['kind'] === 'url' && typeof s['sha256'] === 'string') return `url sha256 ${s['sha256'].slice(0, 12)}`;
  if (s['kind'] === 'index') return `index ${shown(s['name'])} ${shown(s['version'])}`;
  return String(s['kind']);
}

function diffSource(a: unknown, b: unknown, ctx: DiffContext): string[] {
  if (same(a, b)) return [];
  const sa = (a ?? null) as Record<string, unknown> | null;
  const sb = (b ?? null) as Record<string, unknown> | null;
  if (sa === null || sb === null || sa['kind'] !== sb['kind']) return [`source ${sourceWords(sa)} → ${sourceWords(sb)}`];
  if (sa['kind'] === 'path') {
    if (!ctx.oldFiles || !ctx.newFiles) return ['source changed'];
    const lines: string[] = [];
    for (const f of [...new Set([...Object.keys(ctx.oldFiles), ...Object.keys(ctx.newFiles)])].sort()) {
      const before = ctx.oldFiles[f];
      const after = ctx.newFiles[f];
      if (before === after) continue;
      lines.push(before === undefined ? `source file ${f} added` : after === undefined ? `source file ${f} removed` : `source file ${f} changed`);
    }
    if (lines.length === 0) return ['source changed'];
    if (lines.length > MAX_FILES) return [...lines.slice(0, MAX_FILES), `source: ${lines.length - MAX_FILES} more files changed`];
    return lines;
  }
  // git, url, and whatever source kinds come later: one line per differing field, digests shortened.
  const lines: string[] = [];
  for (const k of [...new Set([...Object.keys(sa), ...Object.keys(sb)])].sort()) {
    if (same(sa[k], sb[k])) continue;
    const cut = k === 'commit' ? 7 : k === 'sha256' || k === 'tree' ? 12 : Infinity;
    const v = (x: unknown): string => (typeof x === 'string' && Number.isFinite(cut) ? x.slice(0, cut) : shown(x));
    lines.push(`source ${k} ${v(sa[k])} → ${v(sb[k])}`);
  }
  return lines.length > 0 ? lines : ['source changed'];
}

function diffPatches(a: KeyRecord['patches'], b: KeyRecord['patches']): string[] {
  const out: string[] = [];
  const before = new Map(a.map((p) => [p.path, p.digest]));
  const after = new Map(b.map((p) => [p.path, p.digest]));
  for (const p of b) {
    if (!before.has(p.path)) out.push(`patch ${p.path} added`);
    else if (before.get(p.path) !== p.digest) out.push(`patch ${p.path} changed`);
  }
  for (const p of a) if (!after.has(p.path)) out.push(`patch ${p.path} removed`);
  const keptBefore = a.filter((p) => after.has(p.path)).map((p) => p.path);
  const keptAfter = b.filter((p) => before.has(p.path)).map((p) => p.path);
  if (keptBefore.join('\n') !== keptAfter.join('\n')) out.push('patches reordered');
  return out;
}

function diffEnv(a: Record<string, string>, b: Record<string, string>): string[] {
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (!(k in a)) out.push(`env ${k} added`);
    else if (!(k in b)) out.push(`env ${k} removed`);
    else if (a[k] !== b[k]) out.push(`env ${k} ${JSON.stringify(a[k])} → ${JSON.stringify(b[k])}`);
  }
  return out;
}

/** Toolchain facts by their dotted path in the record, as users call them. */
const FACT_WORDS: Record<string, string> = {
  'python.version': 'python',
  'python.implementation': 'python implementation',
  'python.tag': 'python tag',
  'python.abi': 'python ABI',
  'python.platform': 'platform',
  'buildTools.pip': 'pip',
  'buildTools.setuptools': 'setuptools',
  'buildTools.wheel': 'wheel',
  'torch.version': 'torch',
  'torch.cuda': 'torch CUDA',
  'torch.cxx11abi': 'torch C++11 ABI',
  'cuda.nvcc': 'nvcc',
};
/** Facts shown first (in this order); the rest follow by path. */
const FACT_ORDER = Object.keys(FACT_WORDS);

function flatten(v: unknown, prefix: string, out: Map<string, unknown>): void {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) flatten(x, prefix === '' ? k : `${prefix}.${k}`, out);
  } else if (prefix !== '') out.set(prefix, v);
}

function diffToolchain(a: unknown, b: unknown): string[] {
  if (same(a, b)) return [];
  const fa = new Map<string, unknown>();
  const fb = new Map<string, unknown>();
  flatten(a ?? null, '', fa);
  flatten(b ?? null, '', fb);
  // A whole torch (or CUDA) appearing or going away is one line, not one per fact.
  const wholes = ['torch', 'cuda'];
  const out: string[] = [];
  const done = new Set<string>();
  const ra = (a ?? {}) as Record<string, unknown>;
  const rb = (b ?? {}) as Record<string, unknown>;
  for (const w of wholes) {
    const inA = ra[w] != null;
    const inB = rb[w] != null;
    if (inA === inB) continue;
    const version = (r: Record<string, unknown>): unknown => (r[w] as Record<string, unknown>)[w === 'torch' ? 'version' : 'nvcc'];
    out.push(`${FACT_WORDS[`${w}.${w === 'torch' ? 'version' : 'nvcc'}`]} ${inA ? shown(version(ra)) : 'none'} → ${inB ? shown(version(rb)) : 'none'}`);
    done.add(w);
  }
  const paths = [...new Set([...fa.keys(), ...fb.keys()])].filter((p) => !done.has(p.split('.')[0]!));
  paths.sort((x, y) => {
    const ix = FACT_ORDER.indexOf(x);
    const iy = FACT_ORDER.indexOf(y);
    if (ix >= 0 || iy >= 0) return (ix < 0 ? Infinity : ix) - (iy < 0 ? Infinity : iy);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  for (const p of paths) {
    if (same(fa.get(p), fb.get(p))) continue;
    out.push(`${FACT_WORDS[p] ?? `toolchain ${p}`} ${shown(fa.get(p))} → ${shown(fb.get(p))}`);
  }
  return out;
}

function diffDeps(a: string[], b: string[], ctx: DiffContext): string[] {
  const before = new Map(ctx.oldDeps.map((d) => [d.label, d.key]));
  const after = new Map(ctx.newDeps.map((d) => [d.label, d.key]));
  const out: string[] = [];
  for (const label of [...new Set([...before.keys(), ...after.keys()])].sort()) {
    if (!before.has(label)) out.push(`dependency ${label} added`);
    else if (!after.has(label)) out.push(`dependency ${label} removed`);
    else if (before.get(label) !== after.get(label)) out.push(`dependency ${label} changed`);
  }
  // Labels explain the keys; when they cannot (a record from an older wg), the keys themselves still tell.
  if (out.length === 0 && !same([...a].sort(), [...b].sort())) out.push('dependencies changed');
  return out;
}
