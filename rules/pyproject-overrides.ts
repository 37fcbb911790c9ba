// fromager-style overrides of `[build-system].requires` in a source's pyproject.toml: remove requirements by name,
// replace every requirement of a name, add ones that are missing. The file is edited in place as text (comments
// and layout kept) and checked by parsing it again; only if that fails is it re-serialized whole.

import { parse, stringify, TomlError } from 'smol-toml';

export class PyprojectError extends Error {}

export interface BuildRequiresOverrides {
  /** Names (any spelling) whose requirements are dropped. */
  remove: string[];
  /** Requirements that take the place of every requirement of the same name (added when there is none). */
  replace: string[];
  /** Requirements added only when no requirement of the same name is left. */
  auto: string[];
}

/** The project name a requirement string starts with, canonicalized as PEP 503 says (`Foo_Bar` → `foo-bar`). */
export function requirementName(req: string): string {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(req);
  if (!m) throw new PyprojectError(`"${req}" is not a requirement (it must start with a project name)`);
  return canonicalName(m[1]!);
}

export function canonicalName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-');
}

/** The new requirement list: removals first, then replacements (in place of the first match), then additions. */
export function applyOverrides(requires: string[], o: BuildRequiresOverrides): string[] {
  const removed = new Set(o.remove.map(canonicalName));
  let out = requires.filter((r) => !removed.has(requirementName(r)));
  const groups = new Map<string, string[]>();
  for (const r of o.replace) groups.set(requirementName(r), [...(groups.get(requirementName(r)) ?? []), r]);
  for (const [name, reqs] of groups) {
    const at = out.findIndex((r) => requirementName(r) === name);
    const rest = out.filter((r) => requirementName(r) !== name);
    out = at < 0 ? [...rest, ...reqs] : [...rest.slice(0, at), ...reqs, ...rest.slice(at)];
  }
  for (const r of o.auto) if (!out.some((x) => requirementName(x) === requirementName(r))) out.push(r);
  return out;
}

/** `[build-system].requires` of a pyproject text, or [] when it declares none. */
export function buildRequires(text: string): string[] {
  const doc = parseToml(text);
  const bs = doc['build-system'];
  if (bs === undefined) return [];
  if (typeof bs !== 'object' || bs === null || Array.isArray(bs)) throw new PyprojectError('[build-system] is not a table');
  const req = (bs as Record<string, unknown>)['requires'];
  if (req === undefined) return [];
  if (!Array.isArray(req) || !req.every((r) => typeof r === 'string')) throw new PyprojectError('[build-system].requires is not a list of strings');
  return req as string[];
}

function parseToml(text: string): Record<string, unknown> {
  try {
    return parse(text) as Record<string, unknown>;
  } catch (e) {
    const where = e instanceof TomlError ? ` (line ${e.line}, column ${e.column})` : '';
    throw new PyprojectError(`pyproject.toml is not valid TOML${where}: ${(e as Error).message.split('\n')[0]}`);
  }
}

/**
 * The pyproject text with its build requirements overridden; `text` null means the source has no pyproject.toml
 * (one is written with just `[build-system]`, the backend pip would assume). Unchanged text when nothing changes.
 */
export function overridePyproject(text: string | null, o: BuildRequiresOverrides): string {
  const original = text ?? '';
  const before = buildRequires(original);
  const after = applyOverrides(before, o);
  if (text !== null && canonical(before) === canonical(after)) return text;
  const doc = parseToml(original);
  const expected = { ...doc, 'build-system': { ...((doc['build-system'] as Record<string, unknown> | undefined) ?? {}), requires: after } };
  if (text === null) {
    return `[build-system]\nrequires = ${formatArray(after, false)}\nbuild-backend = "setuptools.build_meta:__legacy__"\n`;
  }
  const edited = editInPlace(original, after);
  if (edited !== null) {
    try {
      if (canonical(parse(edited)) === canonical(expected)) return edited;
    } catch {
      /* fall through to a full rewrite */
    }
  }
  // Dotted keys, inline tables and such: correct but without comments.
  return stringify(expected);
}

/** JSON with keys sorted at every depth: two parsed documents mean the same when these are equal. */
function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object' || value instanceof Date) return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
}

function formatArray(items: string[], multiline: boolean, indent = '    '): string {
  if (items.length === 0) return '[]';
  const quoted = items.map((s) => JSON.stringify(s));
  return multiline ? `[\n${quoted.map((q) => `${indent}${q},`).join('\n')}\n]` : `[${quoted.join(', ')}]`;
}

/** Replaces the `requires` array of the `[build-system]` table in the text, or adds it; null when the layout is unusual. */
function editInPlace(text: string, items: string[]): string | null {
  const header = /^[ \t]*\[[ \t]*build-system[ \t]*\][ \t]*(#.*)?$/m.exec(text);
  if (!header) {
    const sep = text.length === 0 || text.endsWith('\n\n') ? '' : text.endsWith('\n') ? '\n' : '\n\n';
    return `${text}${sep}[build-system]\nrequires = ${formatArray(items, false)}\n`;
  }
  const bodyStart = header.index + header[0].length;
  const next = /^[ \t]*\[/m.exec(text.slice(bodyStart));
  const bodyEnd = next ? bodyStart + next.index : text.length;
  const body = text.slice(bodyStart, bodyEnd);
  const key = /^[ \t]*requires[ \t]*=[ \t]*/m.exec(body);
  if (!key) {
    const at = bodyStart + (text[bodyStart] === '\n' ? 1 : 0);
    const nl = text[bodyStart] === '\n' ? '' : '\n';
    return `${text.slice(0, at)}${nl}requires = ${formatArray(items, false)}\n${text.slice(at)}`;
  }
  const open = bodyStart + key.index + key[0].length;
  if (text[open] !== '[') return null;
  const close = matchingBracket(text, open);
  if (close < 0) return null;
  const old = text.slice(open, close + 1);
  const indent = /\n([ \t]+)\S/.exec(old)?.[1] ?? '    ';
  return text.slice(0, open) + formatArray(items, old.includes('\n'), indent) + text.slice(close + 1);
}

/** The index of the `]` closing the array that opens at `open`, skipping strings and comments; -1 if none. */
function matchingBracket(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i]!;
    if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '"' || c === "'") {
      const triple = text.startsWith(c.repeat(3), i);
      const quote = triple ? c.repeat(3) : c;
      i += quote.length;
      while (i < text.length && !text.startsWith(quote, i)) i += c === '"' && text[i] === '\\' ? 2 : 1;
      i += quote.length - 1;
    } else if (c === '[') depth++;
    else if (c === ']' && --depth === 0) return i;
  }
  return -1;
}
