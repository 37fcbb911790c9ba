// Loads a workspace's BUILD.yaml into checked declarations: toolchains, variants and packages, each value with
// its span. Every mistake in the file is collected; nothing is resolved across sections here (see analyze.ts).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import type { Rule } from '../rules/rule.js';
import { checkSource, type SourceDecl } from '../rules/sources.js';
import { DiagnosticError, didYouMean, type Diagnostic, type Span } from './diagnostics.js';
import { expandMatrix, isMatrixEntry, scalarText } from './matrix.js';
import { SpanIndex, check, spanOf, type CheckContext, type Field, type Schema } from './schema.js';
import { remoteCacheDecl, remoteCacheSchema, type RemoteCacheDecl } from './remote-config.js';
import { quickDocument } from './yaml-quick.js';

export const BUILD_FILE = 'BUILD.yaml';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/;
const NAME_DOC = 'a name of letters, digits, "_", ".", "+" or "-"';
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const QUANTITY = /^\d+(\.\d+)?\s*([KMGT]i?B?)?$/i;

const DURATION = /^\d+(\.\d+)?(s|m|h)$/;

export interface Resources {
  cpus: number;
  /** Bytes; 0 when not declared. */
  memory: number;
  gpus: number;
  /** Threads of each nvcc (NVCC_THREADS); MAX_JOBS becomes cpus / nvccThreads. 0 when not declared. */
  nvccThreads: number;
  /** The action is killed after this long (milliseconds); 0 when not declared. */
  timeoutMs: number;
}

export interface ToolchainDecl {
  name: string;
  /** Absolute path of the interpreter (a relative one is taken from the workspace root, a bare name from PATH). */
  python: string;
  cudaHome: string | null;
}

export interface VariantDecl {
  name: string;
  toolchain: string | null;
  env: Record<string, string>;
  resources: Partial<Resources>;
  systemSitePackages: boolean | null;
  /** Names whose values come from wg's own environment at build time (values in the key). */
  passEnv: string[];
  /** Names passed from wg's environment but kept out of keys, stored results and logs. */
  secretEnv: string[];
  /** The matrix entry that generated this variant, or null for a declared one. */
  group: string | null;
  /** The generated variant's axis values (`{python: "3.11", cuda: "12.4"}`); {} for a declared one. */
  axes: Record<string, string>;
}

/** What a package changes in one variant. */
export interface VariantOverride {
  env: Record<string, string>;
  patches: string[];
}

export interface PackageDecl {
  name: string;
  rule: string;
  /** Where the source comes from (a workspace-relative folder, git, a URL, an index), or null for none. */
  source: SourceDecl | null;
  deps: string[];
  patches: string[];
  env: Record<string, string>;
  /**
   * The variants the package is built in (null: all of them), with what changes in each. Keys are variant names,
   * matrix group names or `*` wildcards, resolved by analysis (engine/matrix.ts matchVariantKeys).
   */
  variants: Map<string, VariantOverride> | null;
  /** The package's version (`version:`, else an index source's), or null: selects `patches/<pkg>-<version>/`. */
  version: string | null;
  /** Overrides applied while the version matches: keys are versions (`2.0`) or PEP 440 ranges (`>=2.0,<3`). */
  versions: Map<string, VariantOverride>;
  passEnv: string[];
  secretEnv: string[];
  test: string[] | null;
  resources: Partial<Resources>;
  systemSitePackages: boolean | null;
  /** The rule's own attributes, checked against its schema. */
  attrs: Record<string, unknown>;
}

export interface Workspace {
  /** Absolute path of the folder holding BUILD.yaml. */
  root: string;
  /** File names as they appear in diagnostics, with their text. */
  texts: Map<string, string>;
  spans: SpanIndex;
  toolchains: Map<string, ToolchainDecl>;
  variants: Map<string, VariantDecl>;
  packages: Map<string, PackageDecl>;
  /** Matrix group names, each with the variants it generated (in order). */
  groups: Map<string, string[]>;
  /**
   * Names declared but rejected by a check (already reported): analysis must not report them again as unknown.
   * Keys are `toolchains/NAME`, `variants/NAME`, `packages/NAME`.
   */
  rejected: Set<string>;
  /** The `remote_cache` section, when there is one (engine/remote-config.ts merges it with flags and env). */
  remoteCache?: RemoteCacheDecl;
  /**
   * Mistakes found while loading; analysis adds its own, and all are printed together. An entry with a mistake keeps
   * its other valid fields (see `recover`) so its references are still checked: with any diagnostic, nothing runs.
   */
  diagnostics: Diagnostic[];
}

const envSchema: Schema = { type: 'dict', values: { type: 'scalar' }, keyPattern: ENV_NAME, keyDoc: 'a valid env variable name (letters, digits and "_", not starting with a digit)' };
const pathList: Schema = { type: 'list', of: { type: 'string' } };
const envNameList: Schema = { type: 'list', of: { type: 'string', pattern: ENV_NAME, patternDoc: 'a valid env variable name' } };
const resourcesSchema: Schema = {
  type: 'record',
  fields: {
    cpus: { schema: { type: 'int', min: 1 }, doc: 'CPU slots the build takes (MAX_JOBS is derived from it)' },
    memory: {
      schema: { type: 'union', doc: 'a size such as 2G or 512M', options: [{ type: 'string', pattern: QUANTITY, patternDoc: 'a size such as 2G or 512M' }] },
      doc: 'peak memory of the build',
    },
    gpus: { schema: { type: 'int', min: 0 }, doc: 'GPU devices the build holds' },
    nvcc_threads: { schema: { type: 'int', min: 1 }, doc: 'threads per nvcc (NVCC_THREADS); MAX_JOBS becomes cpus / nvcc_threads' },
    // A time limit is part of what a job asks the scheduler for (as in Slurm), so it sits with the resources.
    timeout: {
      schema: { type: 'string', pattern: DURATION, patternDoc: 'a duration such as 90s, 30m or 5h' },
      doc: 'the build is killed (SIGTERM, then SIGKILL) after this long',
    },
  },
};
const commandSchema: Schema = {
  type: 'union',
  doc: 'a command string or a list of arguments',
  options: [{ type: 'string' }, { type: 'list', of: { type: 'scalar' } }],
};

const toolchainSchema: Schema = {
  type: 'record',
  fields: {
    python: { schema: { type: 'string' }, required: true, doc: 'the Python interpreter' },
    cuda_home: { schema: { type: 'string' }, doc: 'a CUDA toolkit folder holding bin/nvcc' },
  },
};

const variantSchema: Schema = {
  type: 'record',
  fields: {
    toolchain: { schema: { type: 'string' }, doc: 'the toolchain the variant builds with' },
    env: { schema: envSchema, doc: 'env variables for every build in the variant' },
    resources: { schema: resourcesSchema, doc: 'resources of every build in the variant' },
    system_site_packages: { schema: { type: 'bool' }, doc: "let build venvs see the toolchain's packages (torch)" },
    pass_env: { schema: envNameList, doc: "variables passed from wg's environment (their values go into the key)" },
    secret_env: { schema: envNameList, doc: "variables passed from wg's environment, kept out of keys and logs" },
  },
};

const overrideSchema: Schema = {
  type: 'record',
  fields: {
    env: { schema: envSchema, doc: 'env added in this variant' },
    patches: { schema: pathList, doc: 'patches applied in this variant only, after the package patches' },
  },
};

/** Every field a `source:` map may hold; which of them go together is checked by rules/sources.ts. */
const versionString: Schema = { type: 'union', doc: 'a string (quote versions such as "1.0")', options: [{ type: 'string' }] };
const sourceFields: Record<string, Field> = {
  git: { schema: { type: 'string' }, doc: 'a git repository URL (https, ssh, git, file)' },
  ref: { schema: { type: 'union', doc: 'a string (quote refs that look like numbers)', options: [{ type: 'string' }] }, doc: 'a branch, tag or full commit sha' },
  submodules: { schema: { type: 'bool' }, doc: 'also check out submodules' },
  url: { schema: { type: 'string' }, doc: 'an archive URL (.tar.gz, .tgz, .tar.bz2, .zip; http, https or file)' },
  sha256: { schema: { type: 'string', pattern: /^[0-9a-fA-F]{64}$/, patternDoc: '64 hex digits' }, doc: "the archive's sha256" },
  strip_components: { schema: { type: 'int', min: 0 }, doc: 'leading path components dropped on extraction' },
  index: { schema: { type: 'string' }, doc: 'a PEP 503 simple index URL' },
  name: { schema: { type: 'string' }, doc: 'the project name on the index' },
  version: { schema: versionString, doc: 'the version whose sdist is built' },
};

const commonPackageFields: Record<string, Field> = {
  rule: { schema: { type: 'string' }, required: true, doc: 'the rule kind' },
  source: {
    schema: {
      type: 'union',
      doc: 'a folder path, or a map with "git", "url" or "index"',
      options: [{ type: 'string' }, { type: 'record', fields: sourceFields }],
    },
    doc: 'the source: a folder relative to the workspace, a git repository, an archive URL or a package index',
  },
  deps: { schema: { type: 'list', of: { type: 'string' } }, doc: 'packages (same variant) or labels this one needs' },
  patches: { schema: pathList, doc: 'patches applied in order with patch -p1' },
  env: { schema: envSchema, doc: 'env variables of the build' },
  variants: {
    schema: {
      type: 'union',
      doc: 'a list of variant names or a map of variant name to overrides',
      options: [
        { type: 'list', of: { type: 'string' } },
        { type: 'dict', values: { type: 'union', doc: 'a map of overrides', options: [overrideSchema] } },
      ],
    },
    doc: 'variants the package is built in (default: all)',
  },
  test: { schema: commandSchema, doc: 'smoke test run in a clean venv with the wheel installed' },
  resources: { schema: resourcesSchema, doc: 'resources of the build' },
  system_site_packages: { schema: { type: 'bool' }, doc: "let the build venv see the toolchain's packages" },
  version: { schema: versionString, doc: 'the version of the package: selects patches/<pkg>-<version>/ and "versions" overrides' },
  versions: {
    schema: { type: 'dict', values: overrideSchema },
    doc: 'overrides applied while the version matches: a version ("2.0") or a range (">=2.0,<3") to env and patches',
  },
  pass_env: { schema: envNameList, doc: "variables passed from wg's environment (their values go into the key)" },
  secret_env: { schema: envNameList, doc: "variables passed from wg's environment, kept out of keys and logs" },
};

/** The package fields every rule has; a rule's own attributes may not reuse these names (plugins are checked). */
export function commonPackageFieldNames(): string[] {
  return Object.keys(commonPackageFields);
}


export function parseQuantity(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?$/i.exec(text.trim());
  if (!m) return NaN;
  const power = ' KMGT'.indexOf((m[2] ?? '').toUpperCase() || ' ');
  return Math.round(Number(m[1]) * 1024 ** power);
}

function asCommand(v: unknown): string[] | null {
  if (v === undefined) return null;
  return typeof v === 'string' ? ['sh', '-c', v] : (v as string[]);
}

/** `90s`, `30m`, `5h` → milliseconds (NaN for anything else). */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)$/.exec(text.trim());
  if (!m) return NaN;
  return Math.round(Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h']);
}

function resourcesOf(v: unknown): Partial<Resources> {
  const r = (v ?? {}) as { cpus?: number; memory?: string; gpus?: number; nvcc_threads?: number; timeout?: string };
  const out: Partial<Resources> = {};
  if (r.cpus !== undefined) out.cpus = r.cpus;
  if (r.memory !== undefined) out.memory = parseQuantity(r.memory);
  if (r.gpus !== undefined) out.gpus = r.gpus;
  if (r.nvcc_threads !== undefined) out.nvccThreads = r.nvcc_threads;
  if (r.timeout !== undefined) out.timeoutMs = parseDuration(r.timeout);
  return out;
}

function resolvePython(python: string, root: string): string {
  if (path.isAbsolute(python)) return python;
  if (python.includes('/')) return path.resolve(root, python);
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, python);
    if (fs.existsSync(candidate)) return candidate;
  }
  return python;
}

/**
 * Each repeated map key, by its offset: reported at the second key, naming the first. Keys are compared by their
 * text, which finds every pair the parser's check (scalar values compared with ===) finds, and perhaps more.
 */
function duplicateKeys(doc: Document, file: string, lines: LineCounter): Map<number, { key: string; at: Span; first: Span }> {
  const duplicates = new Map<number, { key: string; at: Span; first: Span }>();
  for (const { key, node, first } of repeatedKeys(doc)) {
    if (node.range) duplicates.set(node.range[0], { key, at: spanOf(node, { file, lines }), first: spanOf(first, { file, lines }) });
  }
  return duplicates;
}

/** Each scalar key whose text an earlier key of the same map has, with that earlier key. */
function repeatedKeys(doc: Document): { key: string; node: Node; first: Node }[] {
  const repeated: { key: string; node: Node; first: Node }[] = [];
  // A walk of its own, in visit()'s order (a map's keys, then its pairs' subtrees): visit() took ~17 ms of a cold
  // 1000-package build's analysis, this ~2.
  const walk = (node: unknown): void => {
    if (isMap(node)) {
      const seen = new Map<string, Node>();
      for (const pair of node.items) {
        const keyNode = pair.key as Node | null;
        if (!keyNode || !isScalar(keyNode)) continue;
        const k = String(keyNode.value);
        const first = seen.get(k);
        if (first) repeated.push({ key: k, node: keyNode, first });
        else seen.set(k, keyNode);
      }
      for (const pair of node.items) {
        walk(pair.key);
        walk(pair.value);
      }
    } else if (isSeq(node)) for (const item of node.items) walk(item);
  };
  walk(doc.contents);
  return repeated;
}

/**
 * Reads and checks `<root>/BUILD.yaml`. Mistakes are collected in `diagnostics` of the result; only a file that
 * cannot be read or parsed as YAML throws DiagnosticError at once.
 */
/** `text`, when given, is BUILD.yaml's content as the caller already read it (the parse cache did, for its key). */
export function loadWorkspace(root: string, rules: ReadonlyMap<string, Rule>, given?: string): Workspace {
  const file = BUILD_FILE;
  const full = path.join(root, file);
  let text: string;
  if (given !== undefined) text = given;
  else {
    try {
      text = fs.readFileSync(full, 'utf8');
    } catch (e) {
      throw new DiagnosticError([{ severity: 'error', message: `cannot read ${full}: ${(e as Error).message}` }]);
    }
  }
  // The parser's own duplicate-key check compares each key with every earlier key of its map: for the 10,000
  // packages of one `packages:` map that was about a second. Duplicates are found in one pass instead; only a file
  // that has some is parsed again with the parser's check, whose errors decide where each one is reported.
  let lines = new LineCounter();
  let doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  let duplicates = duplicateKeys(doc, file, lines);
  if (duplicates.size > 0) {
    lines = new LineCounter();
    doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    duplicates = duplicateKeys(doc, file, lines);
  }
  return checkWorkspace(root, rules, text, doc, lines, duplicates);
}

/**
 * loadWorkspace for `text` as read, through js-yaml when it can read it (engine/yaml-quick.ts): for a file without a
 * mistake, the same workspace in a fraction of the time, whose spans come from `yaml` when first asked for.
 * Anything else (a mistake to report, a file only `yaml` reads) is loaded by loadWorkspace, positions and all.
 * `exactSpans` says which of the two it was.
 */
export function loadWorkspaceQuickly(root: string, rules: ReadonlyMap<string, Rule>, text: string): { ws: Workspace; exactSpans: boolean } {
  const doc = quickDocument(text);
  if (doc !== null && repeatedKeys(doc).length === 0) {
    try {
      const ws = checkWorkspace(root, rules, text, doc, new LineCounter(), new Map());
      if (ws.diagnostics.length === 0) return { ws: { ...ws, spans: SpanIndex.lazy(() => loadWorkspace(root, rules, text).spans) }, exactSpans: false };
    } catch {
      // A mistake: reported below, where it is
    }
  }
  return { ws: loadWorkspace(root, rules, text), exactSpans: true };
}

/** Checks the parsed BUILD.yaml `doc` of `text` into a workspace; syntax errors and `duplicates` are reported first. */
function checkWorkspace(
  root: string,
  rules: ReadonlyMap<string, Rule>,
  text: string,
  doc: Document,
  lines: LineCounter,
  duplicates: ReturnType<typeof duplicateKeys>,
): Workspace {
  const file = BUILD_FILE;
  const diagnostics: Diagnostic[] = [];
  const texts = new Map([[file, text]]);
  const spans = new SpanIndex();
  const ctx: CheckContext = { file, doc, lines, spans, diagnostics };

  // Positions come from the error's offsets (`linePos` is only filled in with prettyErrors). An error at the very
  // end of the file (an unclosed `[` or quote) is moved to just after the last character, so its line is shown.
  const contentEnd = text.trimEnd().length;
  const spanAt = (start: number, end: number): Span => {
    const from = Math.min(start, contentEnd);
    const a = lines.linePos(from);
    const b = lines.linePos(Math.max(from + 1, Math.min(end, contentEnd + 1)));
    return { file, line: a.line, col: a.col, endLine: b.line, endCol: b.col };
  };
  let syntaxErrors = 0;
  // After a syntax error the parser's guesses on the same line are noise (`\tcmd: echo` also yields "nested
  // mappings are not allowed"): keep the first error of each line.
  const linesWithErrors = new Set<number>();
  for (const err of doc.errors) {
    const errLine = lines.linePos(Math.min(err.pos[0], contentEnd)).line;
    if (err.code !== 'DUPLICATE_KEY' && linesWithErrors.has(errLine)) continue;
    linesWithErrors.add(errLine);
    const dup = err.code === 'DUPLICATE_KEY' ? duplicates.get(err.pos[0]) : undefined;
    if (dup) {
      diagnostics.push({ severity: 'error', message: `duplicate key "${dup.key}" (first at line ${dup.first.line})`, at: dup.at });
      continue;
    }
    syntaxErrors++;
    // The parser notices an unclosed `[`/`{` only where the next block line starts; point at the opener instead.
    const flow = /^Flow (sequence|map) in block collection must be sufficiently indented and end with a ([\]}])$/.exec(err.message);
    const opener = flow ? unclosedOpener(text, err.pos[0], flow[2] === ']' ? '[' : '{') : -1;
    if (flow && opener >= 0) {
      const next = Math.min(err.pos[0], contentEnd) === contentEnd ? 'the end of the file' : `line ${lines.linePos(err.pos[0]).line}`;
      diagnostics.push({
        severity: 'error',
        message: `YAML: "${text[opener]}" is not closed before ${next} (a flow ${flow[1]} must end with "${flow[2]}", and lines it continues on must be indented further than its key)`,
        at: spanAt(opener, opener + 1),
      });
      continue;
    }
    diagnostics.push({ severity: 'error', message: `YAML: ${err.message}`, at: spanAt(err.pos[0], err.pos[1]) });
  }
  // Only a syntax error stops here; after a duplicate key the document is still whole, so it is checked too.
  if (syntaxErrors > 0) throw new DiagnosticError(diagnostics);

  const ws: Workspace = { root, texts, spans, toolchains: new Map(), variants: new Map(), packages: new Map(), groups: new Map(), rejected: new Set(), diagnostics };
  const top = doc.contents as Node | null;
  if (!top || !isMap(top)) {
    diagnostics.push({
      severity: 'error',
      message: 'BUILD.yaml must be a map with "toolchains", "variants" and "packages"',
      ...(top ? { at: spanOf(top, ctx) } : {}),
    });
    throw new DiagnosticError(diagnostics);
  }

  // `plugins` is read (and its modules loaded) before this file is checked, by engine/plugins.ts; here only its shape.
  const sections = ['plugins', 'toolchains', 'variants', 'packages', 'remote_cache'];
  for (const pair of top.items) {
    const keyNode = pair.key as Node | null;
    const key = keyNode && isScalar(keyNode) ? String(keyNode.value) : '';
    if (!sections.includes(key)) {
      diagnostics.push({
        severity: 'error',
        message: `unknown field "${key}" in BUILD.yaml${didYouMean(key, sections)}`,
        ...(keyNode ? { at: spanOf(keyNode, ctx) } : {}),
      });
    } else if (keyNode) {
      spans.setKey([key], spanOf(keyNode, ctx));
    }
  }
  const sectionNode = (name: string): Node | null => {
    const pair = top.items.find((p) => isScalar(p.key) && p.key.value === name);
    return (pair?.value as Node | null) ?? null;
  };

  const pluginsNode = sectionNode('plugins');
  if (pluginsNode) check(pluginsNode, { type: 'list', of: { type: 'string' } }, ['plugins'], ctx, '"plugins"', 'the workspace');
  const remoteNode = sectionNode('remote_cache');
  const remoteRaw = remoteNode ? check(remoteNode, remoteCacheSchema, ['remote_cache'], ctx, '"remote_cache"', '"remote_cache"') : undefined;
  if (remoteRaw !== undefined) ws.remoteCache = remoteCacheDecl(remoteRaw as Record<string, unknown>);

  /** Checks each entry of a section on its own, so one broken variant does not hide the others. */
  const entries = (
    section: 'toolchains' | 'variants',
    ownerKind: string,
    schema: Schema,
    expand?: (name: string, node: Node | null) => [string, Record<string, unknown>][] | null,
  ): [string, Record<string, unknown>][] => {
    const node = sectionNode(section);
    if (!node) return [];
    if (!isMap(node)) {
      check(node, { type: 'dict', values: schema }, [section], ctx, `"${section}"`, 'the workspace');
      return [];
    }
    const out: [string, Record<string, unknown>][] = [];
    for (const pair of node.items) {
      const keyNode = pair.key as Node | null;
      if (!keyNode || !isScalar(keyNode)) continue;
      const name = String(keyNode.value);
      spans.setKey([section, name], spanOf(keyNode, ctx));
      if (!NAME.test(name)) {
        diagnostics.push({ severity: 'error', message: `${ownerKind} name "${name}" is not ${NAME_DOC}`, at: spanOf(keyNode, ctx) });
        continue;
      }
      const expanded = expand?.(name, pair.value as Node | null);
      if (expanded) {
        out.push(...expanded);
        continue;
      }
      const value =
        check(pair.value as Node | null, schema, [section, name], ctx, `${ownerKind} "${name}"`, `${ownerKind} "${name}"`) ??
        recover(pair.value as Node | null, schema, [section, name], ctx, section === 'toolchains' ? ['python'] : []);
      if (value !== undefined) out.push([name, value as Record<string, unknown>]);
    }
    return out;
  };

  for (const [name, raw] of entries('toolchains', 'toolchain', toolchainSchema)) {
    const python = raw['python'] as string;
    const cudaHome = raw['cuda_home'] as string | undefined;
    ws.toolchains.set(name, {
      name,
      python: resolvePython(python, root),
      cudaHome: cudaHome === undefined ? null : path.resolve(root, cudaHome),
    });
  }

  // Matrix entries expand here, in file order among the declared variants (engine/matrix.ts).
  const generated = new Map<string, { group: string; axes: Record<string, string> }>();
  const taken = new Map<string, string>();
  const variantsNode = sectionNode('variants');
  for (const pair of variantsNode && isMap(variantsNode) ? variantsNode.items : []) {
    if (!isScalar(pair.key)) continue;
    const name = String(pair.key.value);
    const line = spanOf(pair.key as Node, ctx).line;
    taken.set(name, isMatrixEntry(pair.value as Node | null) ? `that is the name of matrix "${name}"` : `variant "${name}" is declared at line ${line}`);
  }
  const expandVariants = (group: string, node: Node | null): [string, Record<string, unknown>][] | null => {
    if (!node || !isMatrixEntry(node)) return null;
    const variantFields = (variantSchema as Extract<Schema, { type: 'record' }>).fields;
    const list = expandMatrix(group, node, variantFields, ctx, text, { test: (n) => NAME.test(n), doc: NAME_DOC }, taken);
    ws.groups.set(group, list.map((g) => g.name));
    for (const g of list) {
      generated.set(g.name, { group, axes: g.axes });
      taken.set(g.name, `matrix "${group}" generates it too`);
    }
    return list.map((g) => [g.name, g.raw]);
  };
  for (const [name, raw] of entries('variants', 'variant', variantSchema, expandVariants)) {
    ws.variants.set(name, {
      name,
      toolchain: (raw['toolchain'] as string | undefined) ?? null,
      env: (raw['env'] as Record<string, string> | undefined) ?? {},
      resources: resourcesOf(raw['resources']),
      systemSitePackages: (raw['system_site_packages'] as boolean | undefined) ?? null,
      passEnv: (raw['pass_env'] as string[] | undefined) ?? [],
      secretEnv: (raw['secret_env'] as string[] | undefined) ?? [],
      group: generated.get(name)?.group ?? null,
      axes: generated.get(name)?.axes ?? {},
    });
  }

  const packagesNode = sectionNode('packages');
  if (packagesNode && isMap(packagesNode)) {
    for (const pair of packagesNode.items) {
      const keyNode = pair.key as Node | null;
      if (!keyNode || !isScalar(keyNode)) continue;
      const name = String(keyNode.value);
      spans.setKey(['packages', name], spanOf(keyNode, ctx));
      if (!NAME.test(name)) {
        diagnostics.push({ severity: 'error', message: `package name "${name}" is not ${NAME_DOC}`, at: spanOf(keyNode, ctx) });
        continue;
      }
      loadPackage(name, pair.value as Node | null, ctx, rules, ws);
    }
  } else if (packagesNode) {
    check(packagesNode, { type: 'dict', values: { type: 'scalar' } }, ['packages'], ctx, '"packages"', 'the workspace');
  } else {
    diagnostics.push({ severity: 'error', message: 'BUILD.yaml declares no "packages"', at: spanOf(top, ctx) });
  }

  // Names whose declaration failed its checks are still known to exist, so nothing else reports them as unknown.
  for (const section of ['toolchains', 'variants', 'packages'] as const) {
    const node = sectionNode(section);
    if (!node || !isMap(node)) continue;
    for (const pair of node.items) {
      const name = isScalar(pair.key) ? String(pair.key.value) : '';
      // A matrix group that expanded is known by its variants; one that failed is rejected like a broken variant.
      if (!ws[section].has(name) && !(section === 'variants' && (ws.groups.get(name)?.length ?? 0) > 0)) ws.rejected.add(`${section}/${name}`);
    }
  }
  return ws;
}

/**
 * The fields of an entry whose check failed (its mistakes already reported) that are fine on their own, so analysis
 * can still check the entry's references (deps, variants, toolchain, source, patches) and report their mistakes in
 * the same run. Such an entry is never built: a workspace with diagnostics stops before anything runs. Undefined
 * when the entry is not a map or lacks a field in `needed`.
 */
function recover(node: Node | null, schema: Schema, path_: (string | number)[], ctx: CheckContext, needed: string[]): Record<string, unknown> | undefined {
  if (schema.type !== 'record' || !node || !isMap(node)) return undefined;
  const scratch: CheckContext = { ...ctx, diagnostics: [] };
  const out: Record<string, unknown> = {};
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    const field = Object.hasOwn(schema.fields, key) ? schema.fields[key] : undefined;
    if (!field) continue;
    const v = check(pair.value as Node | null, field.schema, [...path_, key], scratch, `"${key}"`, '');
    if (v !== undefined) out[key] = v;
  }
  return needed.every((k) => out[k] !== undefined) ? out : undefined;
}

/** The offset of the last `open` bracket before `end` that is not closed before it (quotes and comments skipped), or -1. */
function unclosedOpener(text: string, end: number, open: '[' | '{'): number {
  const stack: number[] = [];
  let quote: string | null = null;
  for (let i = 0; i < end && i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) while (i < end && text[i] !== '\n') i++;
    else if (c === '[' || c === '{') stack.push(i);
    else if ((c === ']' || c === '}') && stack.length > 0) stack.pop();
  }
  const last = stack.at(-1);
  return last !== undefined && text[last] === open ? last : -1;
}

function loadPackage(name: string, node: Node | null, ctx: CheckContext, rules: ReadonlyMap<string, Rule>, ws: Workspace): void {
  const owner = `package "${name}"`;
  const path_ = ['packages', name];
  let rule: Rule | undefined;
  if (node && isMap(node)) {
    const rulePair = node.items.find((p) => isScalar(p.key) && p.key.value === 'rule');
    const ruleNode = rulePair?.value as Node | null | undefined;
    if (ruleNode && isScalar(ruleNode) && typeof ruleNode.value === 'string') {
      rule = rules.get(ruleNode.value);
      if (!rule) {
        ctx.diagnostics.push({
          severity: 'error',
          message: `unknown rule "${ruleNode.value}" in ${owner}${didYouMean(ruleNode.value, rules.keys())}; known rules: ${[...rules.keys()].join(', ')}`,
          at: spanOf(ruleNode, ctx),
        });
      }
    }
  }
  const fields: Record<string, Field> = { ...commonPackageFields };
  for (const [attr, spec] of Object.entries(rule?.attrs ?? {})) {
    fields[attr] = { schema: spec.schema, doc: spec.doc, ...(spec.required ? { required: true } : {}) };
  }
  if (!rule) {
    // Without a known rule its attributes are unknown too; check only the common fields, and let unknown ones pass.
    for (const pair of node && isMap(node) ? node.items : []) {
      const k = isScalar(pair.key) ? String(pair.key.value) : '';
      if (!fields[k]) fields[k] = { schema: { type: 'union', doc: 'anything', options: [{ type: 'scalar' }, { type: 'list', of: { type: 'scalar' } }, { type: 'dict', values: { type: 'scalar' } }] }, doc: '' };
    }
  }
  const schema: Schema = { type: 'record', fields };
  const raw = (check(node, schema, path_, ctx, owner, owner) ?? (rule ? recover(node, schema, path_, ctx, ['rule']) : undefined)) as
    | Record<string, unknown>
    | undefined;
  if (!raw || !rule) return;

  let variants: Map<string, VariantOverride> | null = null;
  const v = raw['variants'];
  if (Array.isArray(v)) {
    variants = new Map((v as string[]).map((n) => [n, { env: {}, patches: [] }]));
  } else if (v && typeof v === 'object') {
    variants = new Map(
      Object.entries(v as Record<string, { env?: Record<string, string>; patches?: string[] }>).map(([n, o]) => [
        n,
        { env: o.env ?? {}, patches: o.patches ?? [] },
      ]),
    );
  }
  // `versions` keys as written: YAML reads `2.10:` as the number 2.1.
  const versions = new Map<string, VariantOverride>();
  const versionsRaw = (raw['versions'] ?? {}) as Record<string, { env?: Record<string, string>; patches?: string[] }>;
  const versionsNode = node && isMap(node) ? (node.items.find((p) => isScalar(p.key) && p.key.value === 'versions')?.value as Node | null) : null;
  for (const pair of versionsNode && isMap(versionsNode) ? versionsNode.items : []) {
    if (!isScalar(pair.key)) continue;
    const parsedAs = String(pair.key.value);
    const o = versionsRaw[parsedAs];
    if (!o) continue;
    const written = scalarText(pair.key as Node);
    if (written !== parsedAs) {
      ctx.spans.setKey([...path_, 'versions', written], spanOf(pair.key as Node, ctx));
      (o.patches ?? []).forEach((_, i) => {
        const at = ctx.spans.value([...path_, 'versions', parsedAs, 'patches', i]);
        if (at) ctx.spans.setValue([...path_, 'versions', written, 'patches', i], at);
      });
    }
    versions.set(written, { env: o.env ?? {}, patches: o.patches ?? [] });
  }
  const source = checkedSource(raw['source'] as string | Record<string, unknown> | undefined, owner, path_, ctx);
  const attrs: Record<string, unknown> = {};
  for (const attr of Object.keys(rule.attrs)) if (raw[attr] !== undefined) attrs[attr] = raw[attr];
  for (const problem of rule.check?.(attrs) ?? []) {
    const at = ctx.spans.value([...path_, problem.attr, ...(problem.path ?? [])]);
    ctx.diagnostics.push({ severity: 'error', message: `${owner}: ${problem.message}`, ...(at ? { at } : {}) });
  }
  ws.packages.set(name, {
    name,
    rule: rule.kind,
    source,
    deps: (raw['deps'] as string[] | undefined) ?? [],
    patches: (raw['patches'] as string[] | undefined) ?? [],
    env: (raw['env'] as Record<string, string> | undefined) ?? {},
    variants,
    test: asCommand(raw['test']),
    resources: resourcesOf(raw['resources']),
    systemSitePackages: (raw['system_site_packages'] as boolean | undefined) ?? null,
    version: (raw['version'] as string | undefined) ?? (source?.kind === 'index' ? source.version : null),
    versions,
    passEnv: (raw['pass_env'] as string[] | undefined) ?? [],
    secretEnv: (raw['secret_env'] as string[] | undefined) ?? [],
    attrs,
  });
}

/** The package's source as a SourceDecl; mistakes in a `source:` map go to the diagnostics with their spans. */
function checkedSource(
  raw: string | Record<string, unknown> | undefined,
  owner: string,
  path_: (string | number)[],
  ctx: CheckContext,
): SourceDecl | null {
  if (raw === undefined) return null;
  const { decl, problems } = checkSource(raw, owner);
  for (const p of problems) {
    const where = p.field === null ? [...path_, 'source'] : [...path_, 'source', p.field];
    const at = p.atKey ? ctx.spans.key(where) : ctx.spans.value(where);
    ctx.diagnostics.push({ severity: 'error', message: p.message, ...(at ? { at } : {}) });
  }
  return decl;
}
