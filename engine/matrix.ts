// Matrix variants: a `variants:` entry with `matrix:` axes expands, at load time, into ordinary variants (one per
// combination not excluded, named by a template, with per-axis-value settings), and the package-side matching
// of variant keys (names, matrix group names, `*` wildcards) used by `variants:` lists and overrides.

import { isMap, isScalar, isSeq, type Node, type Pair } from 'yaml';
import { didYouMean, type Span } from './diagnostics.js';
import { check, spanOf, type CheckContext, type Field, type Schema } from './schema.js';

const AXIS = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The fields a matrix entry has on top of a variant's (whose string values may hold `{axis}` templates). */
export function matrixFields(variantRecord: Schema): Record<string, Field> {
  return {
    matrix: {
      schema: {
        type: 'dict',
        values: { type: 'list', of: { type: 'scalar' } },
        keyPattern: AXIS,
        keyDoc: 'an axis name (letters, digits and "_")',
      },
      required: true,
      doc: 'axes and their values, such as python: ["3.10", "3.11"]',
    },
    exclude: {
      schema: { type: 'list', of: { type: 'dict', values: { type: 'scalar' } } },
      doc: 'combinations left out, each a map of axis to value ({python: "3.10", cuda: "12.4"})',
    },
    name: { schema: { type: 'string' }, required: true, doc: 'the name of each generated variant, a template such as py{python}-cu{cuda}' },
    when: {
      schema: { type: 'dict', values: { type: 'dict', values: variantRecord } },
      doc: 'variant settings per axis value: when: {python: {"3.11": {toolchain: py311}}}',
    },
  };
}

/** Whether a `variants:` entry is a matrix (a map with a `matrix` field). */
export function isMatrixEntry(node: Node | null): boolean {
  return node !== null && isMap(node) && node.items.some((p) => isScalar(p.key) && p.key.value === 'matrix');
}

/**
 * A scalar as written: YAML reads `3.10` as the number 3.1, but an axis value `3.10` means Python 3.10. Plain
 * scalars keep their source text; quoted ones their value.
 */
export function scalarText(node: Node): string {
  if (isScalar(node)) {
    if (node.type === 'PLAIN' && typeof node.source === 'string') return node.source;
    return String(node.value);
  }
  return '';
}

export interface GeneratedVariant {
  name: string;
  /** The axis values of this combination, by axis name. */
  axes: Record<string, string>;
  /** The variant's checked fields (toolchain, env, resources…), templates filled in. */
  raw: Record<string, unknown>;
}

type TemplatePart = string | { axis: string; at: number };

/** `py{python}-cu{cuda}` → parts; `{{` and `}}` are literal braces. Null with the offset of an unclosed `{`. */
function parseTemplate(s: string): { parts: TemplatePart[] } | { unclosed: number } {
  const parts: TemplatePart[] = [];
  let text = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if ((c === '{' || c === '}') && s[i + 1] === c) {
      text += c;
      i++;
    } else if (c === '{') {
      const close = s.indexOf('}', i);
      if (close < 0) return { unclosed: i };
      if (text) parts.push(text);
      text = '';
      parts.push({ axis: s.slice(i + 1, close), at: i });
      i = close;
    } else text += c;
  }
  if (text) parts.push(text);
  return { parts };
}

function fill(parts: TemplatePart[], combo: Record<string, string>): string {
  return parts.map((p) => (typeof p === 'string' ? p : (combo[p.axis] ?? ''))).join('');
}

function pairOf(node: Node | null, key: string): Pair<unknown, unknown> | undefined {
  return node && isMap(node) ? node.items.find((p) => isScalar(p.key) && String(p.key.value) === key) : undefined;
}

function valueOf(node: Node | null, key: string): Node | null {
  return (pairOf(node, key)?.value as Node | null | undefined) ?? null;
}

/**
 * Expands the matrix entry `group` into variants. Every mistake is a diagnostic pointing into BUILD.yaml: an
 * unknown axis in a template, an exclude or `when` naming a value the axis lacks, two axes' settings that
 * disagree, a generated name that is invalid or not unique (`taken` holds the names in use, each with a phrase
 * saying who has it: `variant "cpu" is declared at line 2`). Returns [] when the entry itself is broken.
 */
export function expandMatrix(
  group: string,
  node: Node,
  variantFields: Record<string, Field>,
  ctx: CheckContext,
  text: string,
  namePattern: { test(s: string): boolean; doc: string },
  taken: Map<string, string>,
): GeneratedVariant[] {
  const owner = `matrix "${group}"`;
  const base = ['variants', group];
  const variantRecord: Schema = { type: 'record', fields: variantFields };
  const checked = check(node, { type: 'record', fields: { ...variantFields, ...matrixFields(variantRecord) } }, base, ctx, owner, owner) as
    | Record<string, unknown>
    | undefined;
  // A broken field does not stop the other checks (every mistake is reported at once), only the expansion.
  const raw = checked ?? {};
  if (!valueOf(node, 'matrix') || !isMap(valueOf(node, 'matrix'))) return [];
  const errorsBefore = checked ? ctx.diagnostics.length : -1;
  const error = (message: string, at: Span | undefined): void => {
    if (ctx.diagnostics.some((d) => d.message === message && d.at?.line === at?.line && d.at?.col === at?.col)) return;
    ctx.diagnostics.push({ severity: 'error', message, ...(at ? { at } : {}) });
  };
  const span = (n: Node): Span => spanOf(n, ctx);

  // Axes, in declaration order, each with its values as written.
  const axes = new Map<string, string[]>();
  const matrixNode = valueOf(node, 'matrix')!;
  for (const pair of isMap(matrixNode) ? matrixNode.items : []) {
    const axis = String((pair.key as { value: unknown }).value);
    const values: string[] = [];
    const seq = pair.value as Node;
    for (const item of isSeq(seq) ? (seq.items as Node[]) : []) {
      const v = scalarText(item);
      if (values.includes(v)) error(`${owner}: axis "${axis}" lists "${v}" twice`, span(item));
      else values.push(v);
    }
    if (values.length === 0) error(`${owner}: axis "${axis}" has no values`, span(pair.key as Node));
    axes.set(axis, values);
  }
  const axisNames = [...axes.keys()];
  const knownAxis = (axis: string, at: Span): boolean => {
    if (axes.has(axis)) return true;
    error(`${owner} has no axis "${axis}"${didYouMean(axis, axisNames)}; its axes: ${axisNames.join(', ')}`, at);
    return false;
  };
  const knownValue = (axis: string, value: string, at: Span, what: string): boolean => {
    const values = axes.get(axis)!;
    if (values.includes(value)) return true;
    error(`${what} names ${axis} "${value}", which axis "${axis}" does not have${didYouMean(value, values)}; its values: ${values.join(', ')}`, at);
    return false;
  };

  // Templates: the name, and every templated string (toolchain, env values) of the entry and of its `when` settings.
  const template = (n: Node | null): TemplatePart[] | null => {
    if (!n || !isScalar(n) || typeof n.value !== 'string') return null;
    const s = n.value;
    const parsed = parseTemplate(s);
    const at = (offset: number, length: number): Span => {
      const whole = span(n);
      // Point at the `{axis}` itself when the scalar sits on one line and its source shows the value verbatim.
      const [start] = n.range ?? [0];
      const quote = n.type === 'QUOTE_DOUBLE' || n.type === 'QUOTE_SINGLE' ? 1 : 0;
      if (whole.line !== whole.endLine || text.slice(start + quote, start + quote + s.length) !== s) return whole;
      return { ...whole, col: whole.col + quote + offset, endLine: whole.line, endCol: whole.col + quote + offset + length };
    };
    if ('unclosed' in parsed) {
      error(`"{" is not closed in "${s}" (write "{{" for a literal "{")`, at(parsed.unclosed, 1));
      return null;
    }
    let ok = true;
    for (const p of parsed.parts) {
      if (typeof p !== 'string' && !knownAxis(p.axis, at(p.at, p.axis.length + 2))) ok = false;
    }
    return ok ? parsed.parts : null;
  };
  const nameNode = valueOf(node, 'name');
  const nameParts = template(nameNode);

  /** The templated strings of a variant-shaped map node, by field (`toolchain`, `env.NAME`). */
  const templatesOf = (n: Node | null): Map<string, TemplatePart[]> => {
    const out = new Map<string, TemplatePart[]>();
    const t = template(valueOf(n, 'toolchain'));
    if (t) out.set('toolchain', t);
    const env = valueOf(n, 'env');
    for (const pair of env && isMap(env) ? env.items : []) {
      const parts = template(pair.value as Node | null);
      if (parts) out.set(`env.${String((pair.key as { value: unknown }).value)}`, parts);
    }
    return out;
  };
  const baseTemplates = templatesOf(node);

  // Per-axis-value settings, checked as variant records.
  interface When {
    axis: string;
    value: string;
    raw: Record<string, unknown>;
    node: Node;
    templates: Map<string, TemplatePart[]>;
  }
  const whens = new Map<string, When>();
  const whenNode = valueOf(node, 'when');
  for (const axisPair of whenNode && isMap(whenNode) ? whenNode.items : []) {
    const axisNode = axisPair.key as Node;
    const axis = scalarText(axisNode);
    if (!knownAxis(axis, span(axisNode))) continue;
    const valuesNode = axisPair.value as Node | null;
    for (const pair of valuesNode && isMap(valuesNode) ? valuesNode.items : []) {
      const valueNode = pair.key as Node;
      const value = scalarText(valueNode);
      if (!knownValue(axis, value, span(valueNode), `"when" of ${owner}`)) continue;
      const scratch: CheckContext = { ...ctx, diagnostics: [] };
      const settings = check(pair.value as Node | null, variantRecord, [...base, 'when', axis, value], scratch, `"${value}"`, owner) as
        | Record<string, unknown>
        | undefined;
      if (settings) whens.set(`${axis}\u0000${value}`, { axis, value, raw: settings, node: pair.value as Node, templates: templatesOf(pair.value as Node) });
    }
  }

  // Excludes: partial combinations; a combination matching every axis of one entry is left out.
  const excludes: Record<string, string>[] = [];
  const excludeNode = valueOf(node, 'exclude');
  for (const entry of excludeNode && isSeq(excludeNode) ? (excludeNode.items as Node[]) : []) {
    if (!isMap(entry)) continue;
    if (entry.items.length === 0) error(`each "exclude" entry of ${owner} must name at least one axis`, span(entry));
    const ex: Record<string, string> = {};
    let ok = entry.items.length > 0;
    for (const pair of entry.items) {
      const axisNode = pair.key as Node;
      const axis = scalarText(axisNode);
      if (!knownAxis(axis, span(axisNode))) {
        ok = false;
        continue;
      }
      const valueNode = pair.value as Node;
      const value = scalarText(valueNode);
      if (!knownValue(axis, value, span(valueNode), `"exclude" of ${owner}`)) ok = false;
      ex[axis] = value;
    }
    if (ok) excludes.push(ex);
  }
  if (errorsBefore < 0 || ctx.diagnostics.length > errorsBefore || nameParts === null || nameNode === null) return [];

  // Every combination, axes in declaration order, the last axis varying fastest.
  let combos: Record<string, string>[] = [{}];
  for (const [axis, values] of axes) combos = combos.flatMap((c) => values.map((v) => ({ ...c, [axis]: v })));
  combos = combos.filter((c) => !excludes.some((ex) => Object.entries(ex).every(([a, v]) => c[a] === v)));
  const matrixKeyAt = ctx.spans.keyOnly([...base, 'matrix']);
  if (combos.length === 0) {
    error(`${owner} expands to no variants: every combination is excluded`, matrixKeyAt);
    return [];
  }

  const groupKeyAt = ctx.spans.keyOnly(base);
  const out: GeneratedVariant[] = [];
  const generatedBy = new Map<string, Record<string, string>>();
  const describe = (c: Record<string, string>): string => Object.entries(c).map(([a, v]) => `${a}=${v}`).join(', ');
  for (const combo of combos) {
    const name = fill(nameParts, combo);
    const nameAt = span(nameNode);
    if (!namePattern.test(name)) {
      error(`${owner} generates the variant name "${name}" (${describe(combo)}), which is not ${namePattern.doc}`, nameAt);
      continue;
    }
    const twin = generatedBy.get(name);
    if (twin) {
      error(`${owner} generates the variant name "${name}" twice (${describe(twin)} and ${describe(combo)}); the name template must tell them apart`, nameAt);
      continue;
    }
    const other = taken.get(name);
    if (other) {
      error(`${owner} generates the variant name "${name}" (${describe(combo)}), but ${other}`, nameAt);
      continue;
    }
    generatedBy.set(name, combo);

    // The entry's own fields, then each axis value's `when` settings; two axes setting one thing differently
    // is a mistake (whichever won would depend on the order of the axes in the file).
    const variant: Record<string, unknown> = {};
    for (const f of Object.keys(variantFields)) if (raw[f] !== undefined) variant[f] = structuredClone(raw[f]);
    const templates = new Map(baseTemplates);
    const setBy = new Map<string, When>();
    let toolchainAt = raw['toolchain'] !== undefined ? ctx.spans.value([...base, 'toolchain']) : undefined;
    const claim = (field: string, value: unknown, w: When, at: Span): boolean => {
      const prior = setBy.get(field);
      if (prior && JSON.stringify(valueAt(prior.raw, field)) !== JSON.stringify(value)) {
        const dot = field.indexOf('.');
        const what = dot < 0 ? `"${field}"` : `${field.slice(0, dot)} "${field.slice(dot + 1)}"`;
        error(`${owner}: ${what} is set both for ${prior.axis}=${prior.value} and for ${w.axis}=${w.value} (in variant "${name}"); set it in one place`, at);
        return false;
      }
      setBy.set(field, w);
      return true;
    };
    for (const axis of axisNames) {
      const w = whens.get(`${axis}\u0000${combo[axis]}`);
      if (!w) continue;
      for (const [field, value] of Object.entries(w.raw)) {
        const fieldAt = ctx.spans.keyOnly([...base, 'when', axis, w.value, field]) ?? span(w.node);
        if (field === 'env' || field === 'resources') {
          const into = (variant[field] ?? {}) as Record<string, unknown>;
          for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
            if (!claim(`${field}.${k}`, v, w, fieldAt)) continue;
            into[k] = v;
            if (field === 'env') {
              const t = w.templates.get(`env.${k}`);
              if (t) templates.set(`env.${k}`, t);
              else templates.delete(`env.${k}`);
            }
          }
          variant[field] = into;
        } else if (field === 'pass_env' || field === 'secret_env') {
          variant[field] = [...new Set([...((variant[field] as string[] | undefined) ?? []), ...(value as string[])])];
        } else {
          if (!claim(field, value, w, fieldAt)) continue;
          variant[field] = value;
          if (field === 'toolchain') {
            const t = w.templates.get('toolchain');
            if (t) templates.set('toolchain', t);
            else templates.delete('toolchain');
          }
        }
      }
      if (w.raw['toolchain'] !== undefined) toolchainAt = ctx.spans.value([...base, 'when', axis, w.value, 'toolchain']) ?? toolchainAt;
    }
    for (const [field, parts] of templates) {
      if (field === 'toolchain') variant['toolchain'] = fill(parts, combo);
      else ((variant['env'] ??= {}) as Record<string, string>)[field.slice('env.'.length)] = fill(parts, combo);
    }

    if (groupKeyAt) {
      ctx.spans.setKey(['variants', name], groupKeyAt);
      ctx.spans.setValue(['variants', name], groupKeyAt);
    }
    if (toolchainAt) ctx.spans.setValue(['variants', name, 'toolchain'], toolchainAt);
    for (const list of ['pass_env', 'secret_env']) {
      ((raw[list] as string[] | undefined) ?? []).forEach((_, i) => {
        const at = ctx.spans.value([...base, list, i]);
        if (at) ctx.spans.setValue(['variants', name, list, i], at);
      });
    }
    out.push({ name, axes: combo, raw: variant });
  }
  return out;
}

function valueAt(raw: Record<string, unknown>, field: string): unknown {
  const dot = field.indexOf('.');
  if (dot < 0) return raw[field];
  return (raw[field.slice(0, dot)] as Record<string, unknown> | undefined)?.[field.slice(dot + 1)];
}

/** How a package names variants in its `variants:` list or map. */
export type VariantKeyKind = 'name' | 'group' | 'wildcard';

export function variantKeyKind(key: string, groups: ReadonlyMap<string, readonly string[]>): VariantKeyKind {
  if (key.includes('*')) return 'wildcard';
  return groups.has(key) ? 'group' : 'name';
}

/** `py3.11-*` → a test; `*` stands for any run of characters, everything else is literal. */
export function wildcard(pattern: string): (name: string) => boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return (name) => re.test(name);
}

export interface VariantKeyMatch {
  /** Each matched variant (in `variants` order) with the keys that apply to it, least specific first. */
  matched: Map<string, string[]>;
  /** Keys that match no variant. */
  unmatched: string[];
  /** A variant matched by two keys of the same kind (two wildcards): which one's settings win is unclear. */
  clashes: { variant: string; keys: string[] }[];
}

/**
 * Which variants a package's keys select, and in which order their overrides apply: a matrix group name first,
 * then a wildcard, then the exact variant name, so the most specific key wins whatever the order in the file.
 */
export function matchVariantKeys(keys: readonly string[], variants: readonly string[], groups: ReadonlyMap<string, readonly string[]>): VariantKeyMatch {
  const rank: Record<VariantKeyKind, number> = { group: 0, wildcard: 1, name: 2 };
  const hits = new Map<string, { key: string; kind: VariantKeyKind }[]>();
  const unmatched: string[] = [];
  for (const key of keys) {
    const kind = variantKeyKind(key, groups);
    const test = kind === 'wildcard' ? wildcard(key) : kind === 'group' ? (v: string) => groups.get(key)!.includes(v) : (v: string) => v === key;
    const found = variants.filter(test);
    if (found.length === 0) unmatched.push(key);
    for (const v of found) hits.set(v, [...(hits.get(v) ?? []), { key, kind }]);
  }
  const matched = new Map<string, string[]>();
  const clashes: VariantKeyMatch['clashes'] = [];
  for (const v of variants) {
    const list = hits.get(v);
    if (!list) continue;
    const wild = list.filter((h) => h.kind === 'wildcard').map((h) => h.key);
    if (wild.length > 1) clashes.push({ variant: v, keys: wild });
    matched.set(v, [...list].sort((a, b) => rank[a.kind] - rank[b.kind]).map((h) => h.key));
  }
  return { matched, unmatched, clashes };
}
