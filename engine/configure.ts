// What one target (a package in a variant) gets from every env and patch source: BUILD.yaml env, env files,
// `versions` and `variants` overrides (names, matrix groups, wildcards), discovered patch folders, pass_env and
// secret_env. Analysis calls it; every mistake it finds is reported before anything runs.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as pep440 from '@renovatebot/pep440';
import { discoverPatches, listPatchFolders, sameVersion } from '../rules/patch-layout.js';
import { patchTargets } from '../rules/patches.js';
import { didYouMean, type Diagnostic, type Span } from './diagnostics.js';
import { ENVS_DIR, parseEnvFile, resolveEnv, type EnvFile } from './env-file.js';
import type { PackageDecl, VariantDecl, VariantOverride, Workspace } from './load.js';
import { matchVariantKeys, variantKeyKind } from './matrix.js';

/** Names wg sets in every step itself: a build cannot take them from wg's environment. */
const SET_BY_WG = new Set(['PATH', 'HOME', 'TMPDIR', 'LANG', 'SOURCE_DATE_EPOCH', 'MAX_JOBS', 'NVCC_THREADS', 'CUDA_VISIBLE_DEVICES', 'CUDA_HOME']);

export interface TargetConfig {
  /** The resolved declared env (see env-file.ts resolveEnv for the precedence). */
  env: Record<string, string>;
  /** Workspace-relative patch paths in application order. */
  patches: string[];
  /** Variables passed from wg's environment; their values go into the key. */
  passEnv: string[];
  /** Variables passed from wg's environment; never in keys, results or logs. */
  secretEnv: string[];
}

type Report = (d: Diagnostic) => void;

/** The layers a target without overrides has: shared, and never written to (resolveEnv only reads its layers). */
const NO_OVERRIDES: readonly VariantOverride[] = [];
const NO_ENV: Record<string, string> = Object.freeze({}) as Record<string, string>;
/** What a target without patches or passed variables gets for each: shared, never written to. */
const NONE: string[] = [];

function norm(p: string): string {
  return path.posix.normalize(p.replaceAll('\\', '/'));
}

/** Env and patch configuration of a workspace's targets; one per analysis (it caches file reads). */
export class Configurer {
  private readonly envFiles = new Map<string, EnvFile | null>();
  /** Whether `envs/` exists, and the names in `patches/`: looked up once per run, not once per target. */
  private envsFolder: boolean | undefined;
  private patchFolders: string[] | null | undefined;
  private readonly patchTexts = new Map<string, string | null>();
  private readonly packageNames: ReadonlySet<string>;
  private readonly variantNames: ReadonlySet<string>;
  /** Per package with a `variants:` field: the variants it is built in, each with its override keys in application order. */
  private readonly selections = new Map<string, Map<string, string[]>>();
  /** Per package whose `versions:` has an entry matching its version: that entry. */
  private readonly versionOverride = new Map<string, VariantOverride>();
  /**
   * What variantsOf answers for every package without a `variants:` field, made once: a map (and a list of the
   * variants) per package was 2 MB of a 10,000-target analysis. Read only, like every answer of variantsOf.
   */
  private everyVariant: Map<string, string[]> | undefined;

  constructor(
    private readonly ws: Workspace,
    private readonly error: Report,
    private readonly warn: (message: string) => void,
  ) {
    this.packageNames = new Set(ws.packages.keys());
    this.variantNames = new Set(ws.variants.keys());
  }

  private span(p: (string | number)[]): Span | undefined {
    return this.ws.spans.value(p);
  }

  private fail(message: string, at: Span | undefined): void {
    this.error({ severity: 'error', message, ...(at ? { at } : {}) });
  }

  /**
   * The variants `pkg` is built in (all of them without a `variants:` field), each with the keys of its
   * `variants:` entry that apply, least specific first. Reports keys that match nothing and wildcard clashes.
   */
  variantsOf(pkg: PackageDecl): Map<string, string[]> {
    if (!pkg.variants) return (this.everyVariant ??= new Map([...this.ws.variants.keys()].map((v) => [v, []])));
    const cached = this.selections.get(pkg.name);
    if (cached) return cached;
    const all = [...this.ws.variants.keys()];
    const keys = [...pkg.variants.keys()];
    const keyAt = (key: string): Span | undefined =>
      this.ws.spans.keyOnly(['packages', pkg.name, 'variants', key]) ?? this.span(['packages', pkg.name, 'variants', keys.indexOf(key)]);
    const m = matchVariantKeys(keys, all, this.ws.groups);
    for (const key of m.unmatched) {
      if (variantKeyKind(key, this.ws.groups) === 'wildcard') {
        this.fail(`package "${pkg.name}": "${key}" matches no variant`, keyAt(key));
      } else if (!this.ws.rejected.has(`variants/${key}`)) {
        this.fail(`package "${pkg.name}" names unknown variant "${key}"${didYouMean(key, [...all, ...this.ws.groups.keys()])}`, keyAt(key));
      }
    }
    for (const c of m.clashes) {
      const withSettings = c.keys.filter((k) => {
        const o = pkg.variants!.get(k)!;
        return Object.keys(o.env).length > 0 || o.patches.length > 0;
      });
      if (withSettings.length < 2) continue;
      this.fail(
        `package "${pkg.name}": variant "${c.variant}" is matched by both "${withSettings[0]}" and "${withSettings[1]}"; ` +
          'which one\'s settings win would be unclear: give the variant an entry of its own or narrow a pattern',
        keyAt(withSettings[1]!),
      );
    }
    this.selections.set(pkg.name, m.matched);
    return m.matched;
  }

  /** Package-wide checks: version, `versions` keys, listed patches (existence and paths). Call once per package. */
  checkPackage(pkg: PackageDecl): void {
    const base = ['packages', pkg.name];
    if (pkg.version !== null && !pep440.valid(pkg.version)) {
      this.fail(`version "${pkg.version}" of package "${pkg.name}" is not a PEP 440 version (such as 1.0, 2.4.1 or 2.5.0rc1)`, this.span([...base, 'version']));
    } else if (pkg.version !== null && pkg.source?.kind === 'index' && !sameVersion(pkg.version, pkg.source.version)) {
      this.fail(`package "${pkg.name}" declares version ${pkg.version}, but its source is version ${pkg.source.version}`, this.span([...base, 'version']));
    }
    let match: { key: string; override: VariantOverride } | null = null;
    for (const [key, override] of pkg.versions) {
      const at = this.ws.spans.keyOnly([...base, 'versions', key]);
      const isVersion = pep440.valid(key) !== null;
      if (!isVersion && !pep440.validRange(key)) {
        this.fail(`"${key}" in "versions" of package "${pkg.name}" is not a version or a version range (such as 2.0 or ">=2.0,<3")`, at);
        continue;
      }
      if (pkg.version === null || !pep440.valid(pkg.version)) continue;
      const hit = isVersion ? sameVersion(key, pkg.version) : pep440.satisfies(pkg.version, key);
      if (!hit) continue;
      if (match) {
        this.fail(`"${match.key}" and "${key}" in "versions" of package "${pkg.name}" both match its version ${pkg.version}; keep one`, at);
        continue;
      }
      match = { key, override };
    }
    if (pkg.versions.size > 0 && pkg.version === null) {
      this.fail(`package "${pkg.name}" has "versions" overrides but no "version"`, this.ws.spans.keyOnly([...base, 'versions']));
    }
    if (match) this.versionOverride.set(pkg.name, match.override);

    const listed = (p: string, at: Span | undefined): void => {
      if (!fs.existsSync(path.resolve(this.ws.root, p))) this.fail(`patch "${p}" of package "${pkg.name}" does not exist`, at);
      else this.checkPatchText(p);
    };
    pkg.patches.forEach((p, i) => listed(p, this.span([...base, 'patches', i])));
    for (const [key, o] of pkg.versions) o.patches.forEach((p, i) => listed(p, this.span([...base, 'versions', key, 'patches', i])));
    for (const [key, o] of pkg.variants ?? []) o.patches.forEach((p, i) => listed(p, this.span([...base, 'variants', key, 'patches', i])));
  }

  /**
   * The env and patches of `pkg` in `variant` (a variant `variantsOf` returned). Most targets have no overrides, env
   * files, patch folders or passed variables: each layer is made only when it holds something (the lists, objects
   * and paths made for every target were 12 of the 155 MB a warm 10,000-target dry run allocated, now 4).
   */
  configure(pkg: PackageDecl, variant: VariantDecl): TargetConfig {
    const keys = this.variantsOf(pkg).get(variant.name);
    const overrides = keys === undefined || keys.length === 0 ? NO_OVERRIDES : keys.map((k) => pkg.variants!.get(k)!);
    const version = this.versionOverride.get(pkg.name) ?? null;

    // Without an envs/ folder there is nothing to read or remember (twice per target).
    this.envsFolder ??= fs.existsSync(path.join(this.ws.root, ENVS_DIR));
    const resolved = resolveEnv({
      variant: variant.env,
      package: pkg.env,
      packageFile: this.envsFolder ? this.envFile(`${ENVS_DIR}/${pkg.name}.env`) : null,
      version: version?.env ?? NO_ENV,
      variantFile: this.envsFolder ? this.envFile(`${ENVS_DIR}/${variant.name}/${pkg.name}.env`) : null,
      override: overrides.length === 0 ? NO_ENV : (Object.assign({}, ...overrides.map((o) => o.env)) as Record<string, string>),
    });
    for (const d of resolved.diagnostics) this.error(d);

    if (this.patchFolders === undefined) this.patchFolders = listPatchFolders(this.ws.root);
    // Without a patches/ folder nothing is discovered: the listed patches are not gathered to be told apart.
    let discovered: string[] = [];
    if (this.patchFolders !== null) {
      const listed = new Set<string>();
      for (const p of pkg.patches) listed.add(norm(p));
      for (const o of [...(pkg.variants?.values() ?? []), ...pkg.versions.values()]) for (const p of o.patches) listed.add(norm(p));
      const found = discoverPatches({
        root: this.ws.root,
        folders: this.patchFolders,
        package: pkg.name,
        version: pkg.version !== null && pep440.valid(pkg.version) ? pkg.version : null,
        variant: variant.name,
        packages: this.packageNames,
        variants: this.variantNames,
        listed,
      });
      for (const w of found.warnings) this.warn(w);
      for (const p of found.patches) this.checkPatchText(p);
      discovered = found.patches;
    }
    const patches = discovered.length + pkg.patches.length === 0 && !version && overrides.length === 0 ? NONE : [...discovered, ...pkg.patches];
    if (version) patches.push(...version.patches);
    for (const o of overrides) patches.push(...o.patches);

    // pass_env and secret_env: the variant's, then the package's (most targets have none: no sets made for them).
    if (variant.passEnv.length + pkg.passEnv.length + variant.secretEnv.length + pkg.secretEnv.length === 0) {
      return { env: resolved.env, patches, passEnv: NONE, secretEnv: NONE };
    }
    const label = `//${pkg.name}:${variant.name}`;
    const passEnv = variant.passEnv.length + pkg.passEnv.length === 0 ? [] : [...new Set([...variant.passEnv, ...pkg.passEnv])];
    const secretEnv = variant.secretEnv.length + pkg.secretEnv.length === 0 ? [] : [...new Set([...variant.secretEnv, ...pkg.secretEnv])];
    for (const [list, names] of [['pass_env', passEnv], ['secret_env', secretEnv]] as const) {
      for (const name of names) {
        const at = listSpan(this.ws, pkg, variant, list, name);
        if (SET_BY_WG.has(name) || name.startsWith('WG_')) this.fail(`"${name}" in ${list} of ${label} is set by wg itself`, at);
        else if (Object.hasOwn(resolved.env, name)) this.fail(`"${name}" of ${label} is both declared in env and listed in ${list}`, at);
        else if (list === 'secret_env' && passEnv.includes(name)) this.fail(`"${name}" of ${label} is listed in both pass_env and secret_env`, at);
      }
    }
    return { env: resolved.env, patches, passEnv: secretEnv.length === 0 ? passEnv : passEnv.filter((n) => !secretEnv.includes(n)), secretEnv };
  }

  /** Env files nobody reads (a misspelt package or variant folder): a warning each. Call once, after configure. */
  checkEnvFolder(): void {
    const dir = path.join(this.ws.root, ENVS_DIR);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.isFile() && e.name.endsWith('.env')) {
        const pkg = e.name.slice(0, -'.env'.length);
        if (!this.packageNames.has(pkg)) {
          this.warn(`${ENVS_DIR}/${e.name} names no package; it is not used${didYouMean(pkg, this.packageNames)}`);
        }
      } else if (e.isDirectory()) {
        const files = fs.readdirSync(path.join(dir, e.name)).filter((f) => f.endsWith('.env'));
        if (files.length === 0) continue;
        if (!this.variantNames.has(e.name)) {
          this.warn(`${ENVS_DIR}/${e.name}/ is not a variant; its env files are not used${didYouMean(e.name, this.variantNames)}`);
          continue;
        }
        for (const f of files.sort()) {
          const pkg = f.slice(0, -'.env'.length);
          if (!this.packageNames.has(pkg)) {
            this.warn(`${ENVS_DIR}/${e.name}/${f} names no package; it is not used${didYouMean(pkg, this.packageNames)}`);
          }
        }
      }
    }
  }

  /** A parsed env file, or null when there is none; parse errors are reported once. */
  private envFile(rel: string): EnvFile | null {
    if (this.envFiles.has(rel)) return this.envFiles.get(rel)!;
    let parsed: EnvFile | null = null;
    const file = path.join(this.ws.root, rel);
    if (fs.existsSync(file)) {
      let bytes: Buffer | null = null;
      try {
        bytes = fs.readFileSync(file);
      } catch (e) {
        this.fail(`cannot read ${rel}: ${(e as Error).message}`, undefined);
      }
      if (bytes) {
        const r = parseEnvFile(rel, bytes);
        for (const d of r.diagnostics) this.error(d);
        parsed = r.diagnostics.length === 0 ? r.env : null;
      }
    }
    this.envFiles.set(rel, parsed);
    return parsed;
  }

  /** Refuses a patch that names a path outside the tree, pointing at that line of the patch. Checked once a file. */
  private checkPatchText(rel: string): void {
    if (this.patchTexts.has(rel)) return;
    let text: string | null = null;
    try {
      text = fs.readFileSync(path.resolve(this.ws.root, rel), 'utf8');
    } catch {
      /* a missing listed patch is reported where it is listed */
    }
    this.patchTexts.set(rel, text);
    if (text === null) return;
    const lines = text.split(/\r?\n/);
    for (const t of patchTargets(text)) {
      if (!t.path.startsWith('/') && !t.path.split('/').includes('..')) continue;
      const line = lines[t.line - 1] ?? '';
      const col = Math.max(0, line.indexOf(t.path)) + 1;
      this.fail(`path '${t.path}' escapes the source tree; refusing to apply ${rel}`, {
        file: rel,
        line: t.line,
        col,
        endLine: t.line,
        endCol: col + t.path.length,
      });
    }
  }
}

/** Where `name` is listed in `list` (pass_env or secret_env) for a target: the package's entry, else the variant's. */
export function listSpan(ws: Workspace, pkg: PackageDecl, variant: VariantDecl, list: 'pass_env' | 'secret_env', name: string): Span | undefined {
  const own = list === 'pass_env' ? pkg.passEnv : pkg.secretEnv;
  const i = own.indexOf(name);
  if (i >= 0) return ws.spans.value(['packages', pkg.name, list, i]);
  const j = (list === 'pass_env' ? variant.passEnv : variant.secretEnv).indexOf(name);
  return ws.spans.value(['variants', variant.name, list, j]);
}

/**
 * A diagnostic for every secret a target needs that wg's environment lacks (one per name and place). Checked
 * before anything runs: a build that needs a token must not get halfway and fail inside `pip`.
 */
export function missingSecrets(ws: Workspace, targets: Iterable<{ label: string; package: PackageDecl; variant: VariantDecl; secretEnv: string[] }>, env: NodeJS.ProcessEnv): Diagnostic[] {
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  for (const t of targets) {
    for (const name of t.secretEnv) {
      if (env[name] !== undefined) continue;
      const at = listSpan(ws, t.package, t.variant, 'secret_env', name);
      const id = `${name}\0${at?.line}:${at?.col}`;
      if (seen.has(id)) continue;
      seen.add(id);
      out.push({ severity: 'error', message: `secret "${name}" of ${t.label} is not set in wg's environment`, ...(at ? { at } : {}) });
    }
  }
  return out;
}
