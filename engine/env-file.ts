// Env files (`envs/<pkg>.env`, `envs/<variant>/<pkg>.env`, fromager's syntax) parsed with positions, `$NAME`
// expansion, and the one place that fixes the precedence of every env source of a target (`resolveEnv`).

import type { Diagnostic, Span } from './diagnostics.js';

export const ENVS_DIR = 'envs';

const NAME_START = /[A-Za-z_]/;
const NAME_CHAR = /[A-Za-z0-9_]/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** One piece of a value: literal text, or a `$NAME` / `${NAME}` / `${NAME:-default}` reference. */
export type Segment = { kind: 'text'; text: string } | { kind: 'var'; name: string; fallback: string | null; at: Span };

export interface EnvAssignment {
  name: string;
  value: Segment[];
  /** The whole `NAME=value` line, for messages. */
  at: Span;
}

/** A parsed env file: its assignments in file order. Expansion happens later, once the declared env is known. */
export interface EnvFile {
  /** Workspace-relative path, as diagnostics name it (`envs/fastmath.env`). */
  file: string;
  assignments: EnvAssignment[];
}

/**
 * Parses an env file. The syntax is fromager's: one `NAME=value` a line, whitespace around the name and the value
 * trimmed, quotes kept as part of the value (`A="x y"` sets A to `"x y"`), blank lines and lines starting with `#`
 * ignored. `$NAME`, `${NAME}` and `${NAME:-default}` are references (expanded by `expandEnvFile`), `$$` is a literal
 * `$`. A leading byte-order mark is dropped and CRLF line ends count as LF, so a file checked out on Windows gives
 * the same values (and keys) as on Linux. Every mistake is a diagnostic at its line and column.
 */
export function parseEnvFile(file: string, bytes: Uint8Array): { env: EnvFile; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const env: EnvFile = { file, assignments: [] };
  let text: string;
  try {
    // The BOM is dropped below, not by the decoder, so dropping it is visibly this module's decision.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    const loose = new TextDecoder('utf-8').decode(bytes);
    const before = loose.slice(0, Math.max(0, loose.indexOf('\uFFFD')));
    const line = before.split('\n').length;
    const col = before.length - before.lastIndexOf('\n');
    diagnostics.push({ severity: 'error', message: 'not UTF-8 text', at: { file, line, col, endLine: line, endCol: col + 1 } });
    return { env, diagnostics };
  }
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const lineNo = i + 1;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const span = (from: number, to: number): Span => ({ file, line: lineNo, col: from + 1, endLine: lineNo, endCol: Math.max(to, from + 1) + 1 });
    const error = (message: string, from: number, to: number): void => {
      diagnostics.push({ severity: 'error', message, at: span(from, to) });
    };
    const cr = line.indexOf('\r');
    if (cr >= 0) return error('a carriage return inside a line (only CRLF line ends are allowed)', cr, cr + 1);
    const nul = line.indexOf('\0');
    if (nul >= 0) return error('a NUL character (env values cannot hold one)', nul, nul + 1);
    const start = line.search(/[^ \t]/);
    if (start < 0 || line[start] === '#') return;
    const end = line.trimEnd().length;
    const eq = line.indexOf('=');
    if (eq < 0) return error(`expected NAME=value, got "${line.slice(start, end)}"`, start, end);
    const name = line.slice(start, eq).trimEnd();
    if (!ENV_NAME.test(name)) {
      return error(
        name === ''
          ? 'a variable name must come before "="'
          : `"${name}" is not a valid env variable name (letters, digits and "_", not starting with a digit)`,
        start,
        Math.max(start + name.length, start + 1),
      );
    }
    let valueStart = eq + 1;
    while (valueStart < end && (line[valueStart] === ' ' || line[valueStart] === '\t')) valueStart++;
    const value = parseValue(line, valueStart, end, span, error);
    if (value) env.assignments.push({ name, value, at: span(start, end) });
  });
  return { env, diagnostics };
}

function parseValue(
  line: string,
  from: number,
  to: number,
  span: (from: number, to: number) => Span,
  error: (message: string, from: number, to: number) => void,
): Segment[] | null {
  const out: Segment[] = [];
  let text = '';
  const flush = (): void => {
    if (text) out.push({ kind: 'text', text });
    text = '';
  };
  let i = from;
  while (i < to) {
    const c = line[i]!;
    if (c !== '$') {
      text += c;
      i++;
      continue;
    }
    const next = line[i + 1];
    if (next === '$') {
      text += '$';
      i += 2;
    } else if (next === '{') {
      const close = line.indexOf('}', i + 2);
      if (close < 0 || close >= to) {
        error('unterminated "${": no closing "}" on this line', i, i + 2);
        return null;
      }
      const inner = line.slice(i + 2, close);
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s.exec(inner);
      if (!m) {
        error(`"\${${inner}}" must name a variable: \${NAME} or \${NAME:-default}`, i, close + 1);
        return null;
      }
      flush();
      out.push({ kind: 'var', name: m[1]!, fallback: m[2] ?? null, at: span(i, close + 1) });
      i = close + 1;
    } else if (next !== undefined && i + 1 < to && NAME_START.test(next)) {
      let j = i + 2;
      while (j < to && NAME_CHAR.test(line[j]!)) j++;
      flush();
      out.push({ kind: 'var', name: line.slice(i + 1, j), fallback: null, at: span(i, j) });
      i = j;
    } else {
      error('"$" must start $NAME, ${NAME} or ${NAME:-default}; write $$ for a literal "$"', i, i + 1);
      return null;
    }
  }
  flush();
  return out;
}

/**
 * Expands an env file's references: a name is looked up in the file's earlier lines first, then in `declared` (the
 * env resolved from every source of lower precedence, see `resolveEnv`), then its `:-default` is used. An unknown
 * name without a default is an error, not an empty string: a misspelt `${TORCH_CUDA_ARCH_LIST}` must not build a
 * wheel for no GPU at all. Returns only the file's own assignments (a later line for the same name wins).
 */
export function expandEnvFile(file: EnvFile, declared: Readonly<Record<string, string>>): { env: Record<string, string>; diagnostics: Diagnostic[] } {
  const env: Record<string, string> = {};
  const diagnostics: Diagnostic[] = [];
  for (const a of file.assignments) {
    let value = '';
    let ok = true;
    for (const s of a.value) {
      if (s.kind === 'text') {
        value += s.text;
        continue;
      }
      const found = Object.hasOwn(env, s.name) ? env[s.name] : Object.hasOwn(declared, s.name) ? declared[s.name] : (s.fallback ?? undefined);
      if (found === undefined) {
        ok = false;
        diagnostics.push({
          severity: 'error',
          message:
            `"${s.name}" is not defined: an env file sees its own earlier lines and the env declared before it ` +
            `(write \${${s.name}:-} for an empty default, $$ for a literal "$")`,
          at: s.at,
        });
        continue;
      }
      value += found;
    }
    if (ok) env[a.name] = value;
  }
  return { env, diagnostics };
}

/**
 * Every env source of one target (a package in a variant), named by where it comes from. `resolveEnv` is the only
 * place that decides their precedence.
 */
export interface EnvSources {
  /** `variants.<variant>.env`: every package built in the variant. */
  variant: Record<string, string>;
  /** `packages.<pkg>.env`: the package in every variant. */
  package: Record<string, string>;
  /** `envs/<pkg>.env`: the package in every variant. */
  packageFile: EnvFile | null;
  /** `packages.<pkg>.versions.<version>.env`: the package while its version matches. */
  version: Record<string, string>;
  /** `envs/<variant>/<pkg>.env`: the package in this variant. */
  variantFile: EnvFile | null;
  /** `packages.<pkg>.variants.<name|group|wildcard>.env`: the package in this variant, as BUILD.yaml says. */
  override: Record<string, string>;
}

function setsAny(layer: Record<string, string>): boolean {
  for (const name in layer) if (Object.hasOwn(layer, name)) return true;
  return false;
}

/**
 * The resolved declared env of a target. Sources apply from the least to the most specific, later ones winning:
 *
 *   variant env < package env < envs/<pkg>.env < package `versions` override
 *     < envs/<variant>/<pkg>.env < package `variants` override
 *
 * Why this order: what names fewer targets wins (a variant's env is shared by every package, an override names
 * one target). Each env file expands its `$NAME`s against everything before it, so a file can build on the
 * BUILD.yaml values it refines (`CFLAGS=$CFLAGS -O3`). The package's `variants:` override comes last because it is
 * the one line of BUILD.yaml that speaks about exactly this target; nothing after it can surprise its reader.
 */
export function resolveEnv(s: EnvSources): { env: Record<string, string>; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  let env: Record<string, string> = { ...s.variant, ...s.package };
  const file = (f: EnvFile | null): void => {
    if (!f) return;
    const r = expandEnvFile(f, env);
    diagnostics.push(...r.diagnostics);
    env = { ...env, ...r.env };
  };
  file(s.packageFile);
  // A copy per layer only for a layer that sets something: most targets have no overrides at all.
  if (setsAny(s.version)) env = { ...env, ...s.version };
  file(s.variantFile);
  if (setsAny(s.override)) env = { ...env, ...s.override };
  return { env, diagnostics };
}
