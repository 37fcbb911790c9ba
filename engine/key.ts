// The key record and the action key. Everything that can change an action's output is in the record; nothing
// else is (no absolute paths, no HOME, no mtimes). Only this module makes an ActionKey.

import { hash } from 'node:crypto';
import type { ToolchainFacts } from '../rules/rule.js';
import { sortCodeUnits } from './code-unit-sort.js';

/** Salt of the record's format: bumping it invalidates every key ever made. */
export const KEY_FORMAT = 'wg-key-1';

export type ActionKey = string & { readonly __brand: 'ActionKey' };

/** Where a target's source came from, as content, never as a location on this machine. Never holds credentials. */
export type SourceIdentity =
  | {
      kind: 'path';
      /** sha256 over every file's relative path, executable bit and content digest (and every symlink's text). */
      tree: string;
    }
  | {
      kind: 'git';
      /**
       * The repository URL with any `user:token@` removed. It stays in the key although the commit names the
       * content: relative submodule URLs resolve against it, and a SHA-1 commit id is only as trustworthy as the
       * repository that vouched for it. The cost is a rebuild when a repository moves.
       */
      url: string;
      /** The full commit sha the ref resolved to: a moved branch changes the key, an unchanged one does not. */
      commit: string;
      /** Whether submodules are checked out (their commits are fixed by `commit`). */
      submodules: boolean;
    }
  | {
      kind: 'url';
      /** The archive's verified sha256. The URL is left out: the same bytes from a mirror build the same thing. */
      sha256: string;
      /** Leading path components dropped on extraction (`strip_components`): it changes the tree. */
      strip: number;
    }
  | {
      kind: 'index';
      /** Name and version as declared, and the sdist's sha256 as the index's link states it (then verified). */
      name: string;
      version: string;
      sha256: string;
    };

/**
 * The one record hashed into an action key. Serialized canonically (keys sorted at every depth, no whitespace)
 * and hashed with sha256, so keys can be shared with a remote cache and cannot be forged by a local shortcut.
 */
export interface KeyRecord {
  /** The format salt, KEY_FORMAT. */
  format: string;
  /** The rule kind and its version: a new rule implementation may produce different outputs. */
  rule: {
    kind: string;
    version: number;
    /**
     * For a rule a plugin registered: the sha256 of the plugin's module file, since its code is the rule's
     * implementation (helper modules it imports are not followed). Absent for built-in rules.
     */
    plugin?: string;
  };
  /** The rule attributes that shape the output (build command, smoke test…), as the rule reports them. */
  attrs: Record<string, unknown>;
  /** The source's content identity; null for packages without a source. */
  source: SourceIdentity | null;
  /** Patches in application order: workspace-relative path (named in explain output) and content digest. */
  patches: { path: string; digest: string }[];
  /**
   * The fully resolved declared env: variant and package env, env files (after `$NAME` expansion), `versions` and
   * `variants` overrides. Undeclared variables never reach an action, so they are not here.
   */
  env: Record<string, string>;
  /**
   * `pass_env` variables with the values wg's environment gave them (null: unset, so the build did not get it).
   * Their values are in the key because they reach the build and may shape its output: a CI that passes another
   * TORCH_CUDA_ARCH_LIST must not be served the wheel built with the old one. Absent when the target passes none.
   */
  passEnv?: Record<string, string | null>;
  /**
   * `secret_env` names only, sorted; never their values. A key is shared (remote caches, logs), and even a hash of
   * a secret is an offline guessing oracle, so changing a secret's value changes no key: a secret must not shape
   * the output (a download token does not). Absent when the target has none.
   */
  secretEnv?: string[];
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

/**
 * Strings JSON.stringify leaves as they are between quotes: no quote, backslash or control character, and no
 * surrogate (a lone one is escaped; a paired one is left to JSON.stringify too rather than told apart here).
 */
const PLAIN_STRING = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

/** JSON.stringify of a string; most keys and values need no escape, and quoting them directly cost a third less. */
function jsonString(s: string): string {
  return PLAIN_STRING.test(s) ? `"${s}"` : JSON.stringify(s);
}

/**
 * Whether JSON.stringify(value) already is its canonical JSON: every object's keys come in code-unit order (as the
 * key records are written), no object has a toJSON or another prototype, and no value is one JSON.stringify drops or
 * writes as `null` where the canonical form leaves an empty array slot or the text `undefined`.
 */
function stringifiesCanonically(value: unknown): boolean {
  if (value === null) return true;
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return true;
    case 'object':
      break;
    default:
      return false;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
  if (Array.isArray(value)) {
    // An undefined element (or a hole) is not one either: JSON.stringify writes `null` there.
    for (let i = 0; i < value.length; i++) if (!stringifiesCanonically(value[i])) return false;
    return true;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    if (i > 0 && !(keys[i - 1]! < k)) return false;
    const v = obj[k];
    if (v !== undefined && !stringifiesCanonically(v)) return false;
  }
  return true;
}

/**
 * Keys sorted at every depth, no whitespace. A value already in that order goes to JSON.stringify, which writes one
 * flat string: building the text by appending made a string or rope node per append, 36 MB for the 10,000 key
 * records of a 10,000-target analysis (a sixth of all it allocated), where the records' JSON is 4 MB.
 */
export function canonicalJson(value: unknown): string {
  return stringifiesCanonically(value) ? JSON.stringify(value) : sortingJson(value);
}

/** The canonical JSON of any value: sorts every object's keys as it writes them. */
function sortingJson(value: unknown): string {
  // Loops and string appends rather than entries/filter/map: this runs for every target on every full-path build.
  if (typeof value === 'string') return jsonString(value);
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      // Like Array.join: an element with no JSON form (undefined) leaves an empty slot.
      out += sortingJson(value[i]) ?? '';
    }
    return `${out}]`;
  }
  const obj = value as Record<string, unknown>;
  // UTF-16 code-unit order: the same on every machine and locale.
  const keys = sortCodeUnits(Object.keys(obj));
  let out = '{';
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${jsonString(k)}:${sortingJson(v)}`;
  }
  return `${out}}`;
}

export function actionKey(record: KeyRecord): ActionKey {
  return hash('sha256', canonicalJson(record)) as ActionKey;
}
