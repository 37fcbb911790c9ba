// User-facing diagnostics: every mistake in a BUILD.yaml is collected with the exact bytes it points at, and all of
// them are rendered together (`BUILD.yaml:12:5: error: …`, the line, a squiggle) before any action runs.

import damerauLevenshtein from 'damerau-levenshtein';

/** A range in one source file; lines and columns are 1-based, `end` is exclusive. */
export interface Span {
  file: string;
  line: number;
  col: number;
  endLine: number;
  endCol: number;
}

export interface Note {
  message: string;
  at?: Span;
}

export interface Diagnostic {
  severity: 'error' | 'warning';
  message: string;
  at?: Span;
  notes?: Note[];
}

/** The text of every file a diagnostic may point into, by the name used in spans. */
export type SourceTexts = ReadonlyMap<string, string>;

/** Thrown when diagnostics were collected and the command must stop (exit code 2). */
export class DiagnosticError extends Error {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map((d) => d.message).join('\n'));
  }
}

export function formatSpan(at: Span): string {
  return `${at.file}:${at.line}:${at.col}`;
}

/**
 * `did you mean "deps"?` when a name is a small edit away from a known one, else ''. Ties go to the first known.
 * Damerau–Levenshtein counts a swap of neighbouring letters as one edit, so `cdua` suggests `cuda`, not `cpu`.
 */
export function didYouMean(name: string, known: Iterable<string>, quote = '"'): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const dist = damerauLevenshtein(name, candidate).steps;
    if (dist < bestDistance) {
      best = candidate;
      bestDistance = dist;
    }
  }
  if (best === undefined) return '';
  const limit = Math.max(2, Math.floor(name.length / 3));
  return bestDistance <= limit ? ` (did you mean ${quote}${best}${quote}?)` : '';
}

function excerpt(at: Span, texts: SourceTexts): string {
  const text = texts.get(at.file);
  if (text === undefined) return '';
  const lines = text.split(/\r?\n/);
  const line = lines[at.line - 1];
  if (line === undefined) return '';
  const gutter = String(at.line);
  const pad = ' '.repeat(gutter.length);
  const width = at.endLine === at.line ? Math.max(1, at.endCol - at.col) : Math.max(1, line.length - at.col + 1);
  const marker = ' '.repeat(at.col - 1) + (width === 1 ? '^' : '~'.repeat(width));
  return `\n ${gutter} | ${line}\n ${pad} | ${marker}`;
}

export function renderDiagnostic(d: Diagnostic, texts: SourceTexts): string {
  const where = d.at ? `${formatSpan(d.at)}: ` : '';
  let out = `${where}${d.severity}: ${d.message}`;
  if (d.at) out += excerpt(d.at, texts);
  for (const note of d.notes ?? []) {
    out += `\n  ${note.at ? `${formatSpan(note.at)}: ` : ''}${note.message}`;
  }
  return out;
}

/** Orders diagnostics by file and position, so output reads top to bottom whatever order checks ran in. */
export function sortDiagnostics(list: Diagnostic[]): Diagnostic[] {
  return [...list].sort((a, b) => {
    if (!a.at || !b.at) return a.at ? -1 : b.at ? 1 : 0;
    return a.at.file.localeCompare(b.at.file) || a.at.line - b.at.line || a.at.col - b.at.col;
  });
}
