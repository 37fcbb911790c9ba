// Plugins: ES modules named in BUILD.yaml's `plugins` list that `export default { name, setup(api) }`. Through the
// api a plugin adds rule kinds (checked like the built-in ones) and post-build hooks. They are loaded before the
// packages are checked, since a custom rule's attributes are checked by its schema; a plugin that cannot be loaded
// is a diagnostic at its entry in BUILD.yaml.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { builtinRules } from '../rules/registry.js';
import type { Rule } from '../rules/rule.js';
import type { Diagnostic, Span } from './diagnostics.js';
import { BUILD_FILE, commonPackageFieldNames } from './load.js';
import { spanOf } from './schema.js';
import { importModule } from './module-import.js';

/**
 * What a post-build hook is told about one target built in this run. Targets taken from the cache are not passed:
 * their hooks ran when they were built (fromager's post_build works the same way), and a no-op build runs nothing.
 */
export interface PostBuildInfo {
  label: string;
  package: string;
  variant: string;
  /** Absolute paths of the target's wheels in wg-out (read-only hard links to the cache: do not modify them). */
  wheels: string[];
  /** Absolute paths of its other outputs in wg-out. */
  files: string[];
}

export type PostBuildHook = (info: PostBuildInfo) => void | Promise<void>;

/** The whole API a plugin's `setup` gets. */
export interface PluginApi {
  /** Runs `fn` after the build for every target built in it; a hook that throws makes `wg build` exit 1. */
  onPostBuild(fn: PostBuildHook): void;
  /** Adds a rule kind, with the same shape as the built-in ones (rules/rule.ts). */
  registerRule(rule: Rule): void;
}

export interface Plugin {
  name: string;
  setup(api: PluginApi): void | Promise<void>;
}

export interface LoadedPlugin {
  /** As written in BUILD.yaml (workspace-relative). */
  path: string;
  name: string;
  /** sha256 of the module file: in the key of every target of the plugin's rules. */
  digest: string;
}

export interface Plugins {
  /** Built-in rules plus the plugins' own. */
  rules: Map<string, Rule>;
  /** The plugin that registered a rule kind (absent for built-in rules). */
  ruleOrigin: Map<string, LoadedPlugin>;
  hooks: { plugin: LoadedPlugin; fn: PostBuildHook }[];
  /** Plugins that could not be loaded, at their BUILD.yaml entries. */
  diagnostics: Diagnostic[];
  /** Absolute paths of the plugin modules read: inputs of the build like BUILD.yaml itself. */
  files: string[];
}

/** A plugin whose setup has not finished by then is reported, instead of `wg` hanging before it says anything. */
const SETUP_TIMEOUT_MS = 30_000;
const RULE_KIND = /^[a-z][a-z0-9_]*$/;

/** The `plugins` entries of the workspace's BUILD.yaml with their spans; a malformed list is left to load.ts. */
function pluginEntries(root: string): { path: string; at: Span }[] {
  let text: string;
  try {
    text = fs.readFileSync(path.join(root, BUILD_FILE), 'utf8');
  } catch {
    return [];
  }
  // Most workspaces have no plugins: skip the second parse of a large BUILD.yaml when no top-level key says so.
  if (!/^plugins\s*:/m.test(text)) return [];
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0 || !isMap(doc.contents)) return [];
  const node = doc.contents.items.find((p) => isScalar(p.key) && p.key.value === 'plugins')?.value as Node | null | undefined;
  if (!node || !isSeq(node)) return [];
  return node.items.flatMap((item) =>
    isScalar(item) && typeof item.value === 'string' ? [{ path: item.value, at: spanOf(item as Node, { file: BUILD_FILE, lines }) }] : [],
  );
}

/** Why a registered rule cannot be used, or null when it has every part of the rule API. */
function ruleProblem(rule: unknown, known: Map<string, Rule>, origin: Map<string, LoadedPlugin>): string | null {
  if (typeof rule !== 'object' || rule === null) return 'registerRule needs a rule object';
  const r = rule as Partial<Rule>;
  if (typeof r.kind !== 'string' || !RULE_KIND.test(r.kind)) return `registerRule: "kind" must be a name of lowercase letters, digits and "_" (got ${JSON.stringify(r.kind)})`;
  if (known.has(r.kind)) {
    const by = origin.get(r.kind);
    return `registerRule: rule "${r.kind}" already exists (${by ? `from plugin "${by.name}"` : 'built in'})`;
  }
  const missing = [
    typeof r.version === 'number' && Number.isInteger(r.version) ? null : '"version" (an integer)',
    typeof r.doc === 'string' ? null : '"doc" (a string)',
    typeof r.needsToolchain === 'boolean' ? null : '"needsToolchain" (true or false)',
    typeof r.attrs === 'object' && r.attrs !== null ? null : '"attrs" (a map of attribute specs)',
    typeof r.plan === 'function' ? null : '"plan" (a function)',
  ].filter((m): m is string => m !== null);
  if (missing.length > 0) return `registerRule: rule "${r.kind}" needs ${missing.join(', ')}`;
  const outs = r.fileOutputs as { attr?: unknown; paths?: unknown } | null | undefined;
  if (outs !== undefined && (typeof outs !== 'object' || outs === null || typeof outs.attr !== 'string' || typeof outs.paths !== 'function')) {
    return `registerRule: "fileOutputs" of rule "${r.kind}" must be { attr: the attribute's name, paths(attrs): a list }`;
  }
  const common = new Set(commonPackageFieldNames());
  for (const [attr, spec] of Object.entries(r.attrs!)) {
    if (common.has(attr)) return `registerRule: rule "${r.kind}" declares attribute "${attr}", which every package already has`;
    const s = spec as { schema?: { type?: unknown }; doc?: unknown } | null;
    if (!s || typeof s.schema !== 'object' || typeof s.schema.type !== 'string' || typeof s.doc !== 'string') {
      return `registerRule: attribute "${attr}" of rule "${r.kind}" needs a "schema" (with a "type") and a "doc"`;
    }
  }
  return null;
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Loads the workspace's plugins (each once, in order) and returns the rules and hooks they add. */
export async function loadPlugins(root: string): Promise<Plugins> {
  const rules = builtinRules();
  const out: Plugins = { rules, ruleOrigin: new Map(), hooks: [], diagnostics: [], files: [] };
  const seen = new Set<string>();
  for (const entry of pluginEntries(root)) {
    const error = (message: string): void => {
      out.diagnostics.push({ severity: 'error', message: `plugin "${entry.path}": ${message}`, at: entry.at });
    };
    const file = path.resolve(root, entry.path);
    if (path.isAbsolute(entry.path) || !file.startsWith(root + path.sep)) {
      error('must be a path inside the workspace, relative to it');
      continue;
    }
    if (seen.has(file)) {
      error('is listed twice');
      continue;
    }
    seen.add(file);
    out.files.push(file);
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch (e) {
      error(`cannot read it: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
      continue;
    }
    let mod: { default?: unknown };
    try {
      mod = (await importModule(pathToFileURL(file).href)) as { default?: unknown };
    } catch (e) {
      error(`cannot load it: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    const plugin = mod.default as Partial<Plugin> | undefined;
    if (plugin === undefined) {
      error('has no default export; it must `export default { name, setup(api) { … } }`');
      continue;
    }
    if (typeof plugin !== 'object' || plugin === null || typeof plugin.name !== 'string' || plugin.name === '' || typeof plugin.setup !== 'function') {
      error('its default export must be an object with a "name" (a string) and a "setup" function');
      continue;
    }
    const loaded: LoadedPlugin = { path: entry.path, name: plugin.name, digest: createHash('sha256').update(bytes).digest('hex') };
    // What setup registers is kept only if setup finishes without a mistake: a half-set-up plugin adds nothing.
    const newRules: Rule[] = [];
    const newHooks: PostBuildHook[] = [];
    const problems: string[] = [];
    const api: PluginApi = {
      onPostBuild(fn) {
        if (typeof fn !== 'function') problems.push('onPostBuild needs a function');
        else newHooks.push(fn);
      },
      registerRule(rule) {
        const known = new Map([...rules, ...newRules.map((r) => [r.kind, r] as const)]);
        const problem = ruleProblem(rule, known, out.ruleOrigin);
        if (problem) problems.push(problem);
        else newRules.push(rule);
      },
    };
    try {
      await withTimeout(Promise.resolve(plugin.setup(api)), SETUP_TIMEOUT_MS, `did not finish within ${SETUP_TIMEOUT_MS / 1000} s`);
    } catch (e) {
      error(`setup failed: ${(e as Error)?.message ?? String(e)}`);
      continue;
    }
    if (problems.length > 0) {
      for (const p of problems) error(p);
      continue;
    }
    for (const r of newRules) {
      rules.set(r.kind, r);
      out.ruleOrigin.set(r.kind, loaded);
    }
    for (const fn of newHooks) out.hooks.push({ plugin: loaded, fn });
  }
  return out;
}

/** Built-in rules only: for callers that must stay synchronous and workspaces without plugins. */
export function withoutPlugins(): Plugins {
  return { rules: builtinRules(), ruleOrigin: new Map(), hooks: [], diagnostics: [], files: [] };
}

/**
 * Runs every post-build hook for every target, in order, one at a time (a publishing hook should not race itself).
 * Returns one message per failed call; a hook's failure does not stop the other hooks.
 */
export async function runPostBuildHooks(plugins: Plugins, targets: PostBuildInfo[]): Promise<{ label: string; message: string }[]> {
  const failures: { label: string; message: string }[] = [];
  for (const info of targets) {
    for (const { plugin, fn } of plugins.hooks) {
      try {
        await fn({ ...info, wheels: [...info.wheels], files: [...info.files] });
      } catch (e) {
        failures.push({ label: info.label, message: `post_build hook of plugin "${plugin.name}" (${plugin.path}) failed for ${info.label}: ${(e as Error)?.message ?? String(e)}` });
      }
    }
  }
  return failures;
}
