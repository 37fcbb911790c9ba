// Checks a parsed YAML node against a declared schema and turns it into plain values, keeping the span of every
// value and map key so later phases (analysis, cycle checks) can point at the exact bytes of a mistake.

import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import { didYouMean, type Diagnostic, type Span } from './diagnostics.js';

export type Schema =
  | { type: 'string'; pattern?: RegExp; patternDoc?: string }
  | { type: 'int'; min?: number }
  | { type: 'bool' }
  /** A string, number or boolean, kept as its string form (env values: `MAX_JOBS: 4`). */
  | { type: 'scalar' }
  | { type: 'list'; of: Schema }
  /** A map whose keys the user names (packages, env variables). */
  | { type: 'dict'; values: Schema; keyPattern?: RegExp; keyDoc?: string; ownerKind?: string }
  /** A map with a fixed set of fields. */
  | { type: 'record'; fields: Record<string, Field> }
  /** One of several shapes, told apart by the node kind (scalar, list, map). */
  | { type: 'union'; options: Schema[]; doc: string };

export interface Field {
  schema: Schema;
  required?: boolean;
  doc: string;
}

export type Path = readonly (string | number)[];

/** Where each value (and each map key) of a checked document came from. */
export class SpanIndex {
  private readonly values = new Map<string, Span>();
  private readonly keys = new Map<string, Span>();
  /** Fills the maps on first use: most runs of a cached workspace never point at a byte of it. */
  private pending: (() => SpanIndex) | null = null;

  /** An index restored by `load` the first time a span is asked for. */
  static lazy(load: () => SpanIndex): SpanIndex {
    const index = new SpanIndex();
    index.pending = load;
    return index;
  }

  private ready(): void {
    if (!this.pending) return;
    const loaded = this.pending();
    this.pending = null;
    for (const [k, v] of loaded.values) this.values.set(k, v);
    for (const [k, v] of loaded.keys) this.keys.set(k, v);
  }

  /** The index as plain data (for the parse cache), and back. */
  dump(): { values: [string, Span][]; keys: [string, Span][] } {
    this.ready();
    return { values: [...this.values], keys: [...this.keys] };
  }
  static restore(data: { values: [string, Span][]; keys: [string, Span][] }): SpanIndex {
    const index = new SpanIndex();
    for (const [k, v] of data.values) index.values.set(k, v);
    for (const [k, v] of data.keys) index.keys.set(k, v);
    return index;
  }

  setValue(path: Path, span: Span): void {
    this.ready();
    this.values.set(pathId(path), span);
  }
  setKey(path: Path, span: Span): void {
    this.ready();
    this.keys.set(pathId(path), span);
  }
  /** The span of the value at `path`, or of the nearest enclosing value that has one. */
  value(path: Path): Span | undefined {
    this.ready();
    for (let n = path.length; n >= 0; n--) {
      const span = this.values.get(pathId(path.slice(0, n)));
      if (span) return span;
    }
    return undefined;
  }
  /** The span of the map key naming `path`, if that path is a map entry. */
  keyOnly(path: Path): Span | undefined {
    this.ready();
    return this.keys.get(pathId(path));
  }
  /** The span of the map key naming `path` (falls back to the value's span). */
  key(path: Path): Span | undefined {
    this.ready();
    return this.keys.get(pathId(path)) ?? this.value(path);
  }
}

function pathId(path: Path): string {
  return path.join('\u0000');
}

export interface CheckContext {
  file: string;
  doc: Document;
  lines: LineCounter;
  spans: SpanIndex;
  diagnostics: Diagnostic[];
}

export function spanOf(node: Node, ctx: Pick<CheckContext, 'file' | 'lines'>): Span {
  const [start, end] = node.range ?? [0, 0];
  const a = ctx.lines.linePos(start);
  const b = ctx.lines.linePos(Math.max(start, end));
  return { file: ctx.file, line: a.line, col: a.col, endLine: b.line, endCol: b.col };
}

function kindOf(node: Node | null): string {
  if (node === null) return 'nothing';
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    if (typeof v === 'string') return 'a string';
    if (typeof v === 'number') return 'a number';
    if (typeof v === 'boolean') return 'a boolean';
  }
  return 'a value';
}

export function describe(schema: Schema): string {
  switch (schema.type) {
    case 'string':
      return schema.patternDoc ?? 'a string';
    case 'int':
      return schema.min === undefined ? 'an integer' : `an integer ≥ ${schema.min}`;
    case 'bool':
      return 'true or false';
    case 'scalar':
      return 'a string, number or boolean';
    case 'list':
      return 'a list';
    case 'dict':
    case 'record':
      return 'a map';
    case 'union':
      return schema.doc;
  }
}

function shapeMatches(schema: Schema, node: Node | null): boolean {
  switch (schema.type) {
    case 'list':
      return node !== null && isSeq(node);
    case 'dict':
    case 'record':
      return node !== null && isMap(node);
    case 'union':
      return schema.options.some((o) => shapeMatches(o, node));
    default:
      return node !== null && isScalar(node);
  }
}

/** A scalar of the wrong kind (a boolean where a string goes) is reported against the whole union's doc. */
function scalarKindMatches(schema: Schema, node: Node | null): boolean {
  if (!node || !isScalar(node)) return true;
  const v = node.value;
  switch (schema.type) {
    case 'string':
      return typeof v === 'string';
    case 'int':
      return typeof v === 'number';
    case 'bool':
      return typeof v === 'boolean';
    default:
      return true;
  }
}

const MAX_ALIAS_DEPTH = 16;

function deref(node: Node | null, ctx: CheckContext): Node | null {
  let current = node;
  for (let i = 0; current !== null && isAlias(current); i++) {
    if (i >= MAX_ALIAS_DEPTH) return null;
    current = (current.resolve(ctx.doc) as Node | undefined) ?? null;
  }
  return current;
}

/**
 * Checks `node` against `schema`. Returns the plain value, or undefined after recording a diagnostic.
 * `name` is how the value is called in messages (`"deps"`), `owner` what it belongs to (`package "fastmath"`).
 */
export function check(
  rawNode: Node | null,
  schema: Schema,
  path: Path,
  ctx: CheckContext,
  name: string,
  owner: string,
): unknown {
  const node = deref(rawNode, ctx);
  const at = node ? spanOf(node, ctx) : rawNode ? spanOf(rawNode, ctx) : undefined;
  if (at) ctx.spans.setValue(path, at);
  const fail = (message: string): undefined => {
    ctx.diagnostics.push({ severity: 'error', message, ...(at ? { at } : {}) });
    return undefined;
  };
  const wrongType = (): undefined => fail(`${name} of ${owner} must be ${describe(schema)}, got ${kindOf(node)}`);

  switch (schema.type) {
    case 'string': {
      if (!node || !isScalar(node) || typeof node.value !== 'string') return wrongType();
      if (schema.pattern && !schema.pattern.test(node.value)) {
        return fail(`${name} of ${owner} must be ${describe(schema)}, got "${node.value}"`);
      }
      return node.value;
    }
    case 'int': {
      if (!node || !isScalar(node) || typeof node.value !== 'number' || !Number.isInteger(node.value)) {
        return wrongType();
      }
      if (schema.min !== undefined && node.value < schema.min) {
        return fail(`${name} of ${owner} must be ${describe(schema)}, got ${node.value}`);
      }
      return node.value;
    }
    case 'bool': {
      if (!node || !isScalar(node) || typeof node.value !== 'boolean') return wrongType();
      return node.value;
    }
    case 'scalar': {
      if (!node || !isScalar(node) || node.value === null || typeof node.value === 'object') return wrongType();
      return String(node.value);
    }
    case 'list': {
      if (!node || !isSeq(node)) return wrongType();
      const out: unknown[] = [];
      let ok = true;
      node.items.forEach((item, i) => {
        const v = check(item as Node | null, schema.of, [...path, i], ctx, `each entry of ${name}`, owner);
        if (v === undefined) ok = false;
        else out.push(v);
      });
      return ok ? out : undefined;
    }
    case 'dict': {
      if (!node || !isMap(node)) return wrongType();
      const out: Record<string, unknown> = {};
      let ok = true;
      for (const pair of node.items) {
        const keyNode = pair.key as Node | null;
        if (!keyNode || !isScalar(keyNode) || (typeof keyNode.value !== 'string' && typeof keyNode.value !== 'number')) {
          ctx.diagnostics.push({
            severity: 'error',
            message: `keys of ${name} of ${owner} must be names`,
            ...(keyNode ? { at: spanOf(keyNode, ctx) } : at ? { at } : {}),
          });
          ok = false;
          continue;
        }
        const key = String(keyNode.value);
        ctx.spans.setKey([...path, key], spanOf(keyNode, ctx));
        if (schema.keyPattern && !schema.keyPattern.test(key)) {
          ctx.diagnostics.push({
            severity: 'error',
            message: `"${key}" in ${name} of ${owner} is not ${schema.keyDoc ?? 'a valid name'}`,
            at: spanOf(keyNode, ctx),
          });
          ok = false;
          continue;
        }
        const valueOwner = schema.ownerKind ? `${schema.ownerKind} "${key}"` : owner;
        const v = check(pair.value as Node | null, schema.values, [...path, key], ctx, `"${key}"`, valueOwner);
        if (v === undefined) ok = false;
        else out[key] = v;
      }
      return ok ? out : undefined;
    }
    case 'record': {
      if (!node || !isMap(node)) return wrongType();
      const out: Record<string, unknown> = {};
      let ok = true;
      const seen = new Set<string>();
      for (const pair of node.items) {
        const keyNode = pair.key as Node | null;
        const key = keyNode && isScalar(keyNode) ? String(keyNode.value) : '';
        const keyAt = keyNode ? spanOf(keyNode, ctx) : at;
        const field = Object.hasOwn(schema.fields, key) ? schema.fields[key] : undefined;
        if (!field) {
          ctx.diagnostics.push({
            severity: 'error',
            message: `unknown field "${key}" in ${owner}${didYouMean(key, Object.keys(schema.fields))}`,
            ...(keyAt ? { at: keyAt } : {}),
          });
          ok = false;
          continue;
        }
        seen.add(key);
        if (keyAt) ctx.spans.setKey([...path, key], keyAt);
        const v = check(pair.value as Node | null, field.schema, [...path, key], ctx, `"${key}"`, owner);
        if (v === undefined) ok = false;
        else out[key] = v;
      }
      for (const [key, field] of Object.entries(schema.fields)) {
        if (field.required && !seen.has(key)) {
          ctx.diagnostics.push({
            severity: 'error',
            message: `${owner} is missing the required field "${key}"`,
            ...(ctx.spans.key(path) ? { at: ctx.spans.key(path)! } : at ? { at } : {}),
          });
          ok = false;
        }
      }
      return ok ? out : undefined;
    }
    case 'union': {
      const option = schema.options.find((o) => shapeMatches(o, node));
      if (!option || !scalarKindMatches(option, node)) return wrongType();
      return check(node, option, path, ctx, name, owner);
    }
  }
}
