// Labels and target patterns: `//pkg:variant` names one target; `//pkg`, `//pkg:*`, `//...` and `//...:variant`
// select many. Only this module builds a Label, so a Label value is always well-formed.

export type Label = string & { readonly __brand: 'Label' };

const PART = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/;

export function makeLabel(pkg: string, variant: string): Label {
  return `//${pkg}:${variant}` as Label;
}

export function splitLabel(label: Label): { package: string; variant: string } {
  const colon = label.indexOf(':');
  return { package: label.slice(2, colon), variant: label.slice(colon + 1) };
}

export interface Pattern {
  /** A package name, or '...' for every package. */
  package: string;
  /** A variant name, or '*' for every variant the package is built in. */
  variant: string;
  text: string;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

export function parsePattern(text: string): Parsed<Pattern> {
  if (!text.startsWith('//')) {
    return { ok: false, error: `"${text}" is not a target pattern: write //package:variant, //package, //... or //...:variant` };
  }
  const body = text.slice(2);
  const colon = body.indexOf(':');
  const pkg = colon < 0 ? body : body.slice(0, colon);
  const variant = colon < 0 ? '*' : body.slice(colon + 1);
  if (pkg !== '...' && !PART.test(pkg)) return { ok: false, error: `"${text}": "${pkg}" is not a package name` };
  if (variant !== '*' && !PART.test(variant)) return { ok: false, error: `"${text}": "${variant}" is not a variant name` };
  return { ok: true, value: { package: pkg, variant, text } };
}

/** A dependency as written in `deps`: `fastmath` (same variant), `//fastmath` (same) or `//fastmath:cpu`. */
export interface DepRef {
  package: string;
  /** null: the dependent's own variant. */
  variant: string | null;
}

export function parseDepRef(text: string): Parsed<DepRef> {
  if (!text.startsWith('//')) {
    return PART.test(text)
      ? { ok: true, value: { package: text, variant: null } }
      : { ok: false, error: `"${text}" is neither a package name nor a label like //package:variant` };
  }
  const parsed = parsePattern(text);
  if (!parsed.ok) return parsed;
  if (parsed.value.package === '...') return { ok: false, error: `a dependency names one package, not "${text}"` };
  return { ok: true, value: { package: parsed.value.package, variant: parsed.value.variant === '*' ? null : parsed.value.variant } };
}
