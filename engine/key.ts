// The key record and the action key. Everything that can change an action's output is in the record; nothing
// else is (no absolute paths, no HOME, no mtimes). Only this module makes an ActionKey.

import { createHash } from 'node:crypto';
import type { ToolchainFacts } from '../rules/rule.js';

/** Salt of the record's format: bumping it invalidates every key ever made. */
export const KEY_FORMAT = 'wg-key-1';

export type ActionKey = string & { readonly __brand: 'ActionKey' };

/** Where a target's source came from, as content, never as a location on this machine. */
export type SourceIdentity = {
  kind: 'path';
  /** sha256 over every file's relative path, executable bit and content digest (and every symlink's text). */
  tree: string;
};

/**
 * The one record hashed into an action key. Serialized canonically (keys sorted at every depth, no whitespace)
 * and hashed with sha256, so keys can be shared with a remote cache and cannot be forged by a local shortcut.
 */
export interface KeyRecord {
  /** The format salt, KEY_FORMAT. */
  format: string;
  /** The rule kind and its version: a new rule implementation may produce different outputs. */
  rule: { kind: string; version: number };
  /** The rule attributes that shape the output (build command, smoke test…), as the rule reports them. */
  attrs: Record<string, unknown>;
  /** The source's content identity; null for packages without a source. */
  source: SourceIdentity | null;
  /** Patches in application order: workspace-relative path (named in explain output) and content digest. */
  patches: { path: string; digest: string }[];
  /** The fully resolved declared env. Undeclared variables never reach an action, so they are not here. */
  env: Record<string, string>;
  /** Probed toolchain facts (Python tags, torch, nvcc), never its paths; null for rules without a toolchain. */
  toolchain: ToolchainFacts | null;
  /** Whether the build venv sees the toolchain's own packages (torch and friends). */
  systemSitePackages: boolean;
  /**
   * The action keys of the direct dependencies, sorted: a changed dependency changes every dependent. Labels are
   * left out like the target's own variant name, so renaming a variant or a package rebuilds nothing.
   */
  deps: string[];
}

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

export function actionKey(record: KeyRecord): ActionKey {
  return createHash('sha256').update(canonicalJson(record)).digest('hex') as ActionKey;
}
