// Analysis: turns checked declarations into configured targets (a package in a variant, with its env, patches,
// resources and dependencies resolved), builds the target graph and rejects cycles, all before anything runs.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Rule } from '../rules/rule.js';
import { didYouMean, type Diagnostic } from './diagnostics.js';
import { Configurer } from './configure.js';
import { TargetGraph } from './graph.js';
import { makeLabel, parseDepRef, parsePattern, type Label } from './label.js';
import { resolveIn } from './normal-path.js';
import { rootStatOf, type RootStat } from './source-tree.js';
import type { PackageDecl, Resources, VariantDecl, Workspace } from './load.js';
import { wgOutClashes, type Clash, type ClashSide } from './wg-out-clash.js';

export interface ConfiguredTarget {
  label: Label;
  package: PackageDecl;
  variant: VariantDecl;
  rule: Rule;
  /** Toolchain name, or null for rules that need none and variants that declare none. */
  toolchain: string | null;
  /** The resolved declared env: BUILD.yaml, env files and overrides, in the order engine/env-file.ts resolveEnv fixes. */
  env: Record<string, string>;
  /** Workspace-relative patch paths in application order: discovered folders, then the `patches:` lists. */
  patches: string[];
  /** Variables whose values come from wg's environment at build time (in the key). */
  passEnv: string[];
  /** Variables passed from wg's environment but kept out of the key, the stored result and the logs. */
  secretEnv: string[];
  deps: Label[];
  resources: Resources;
  systemSitePackages: boolean;
}

export interface Analysis {
  targets: Map<Label, ConfiguredTarget>;
  graph: TargetGraph;
  /**
   * By package name: its existing folder source (absolute path) and the stat taken to check that it exists.
   * Listing the tree starts from this stat rather than taking another: a second stat per package was a tenth of a
   * 10,000-target analysis, and a stat taken before the listing is all the no-op snapshot needs.
   */
  sourceFolders: Map<string, { root: string; stat: RootStat }>;
}

export interface AnalysisResult {
  analysis: Analysis;
  diagnostics: Diagnostic[];
  /** Things that build but are probably not what was meant (patch folders for another version): printed, never fatal. */
  warnings: Diagnostic[];
}

/** Analyzes what loaded; the result's diagnostics include the workspace's own load diagnostics. */
export function analyze(ws: Workspace, rules: ReadonlyMap<string, Rule>): AnalysisResult {
  const diagnostics: Diagnostic[] = [...ws.diagnostics];
  const error = (message: string, at: ReturnType<typeof ws.spans.value>, notes?: Diagnostic['notes']): void => {
    // A dep is resolved once per variant of its package; a mistake that does not depend on the variant is one error.
    const same = (d: Diagnostic): boolean =>
      d.message === message && d.at?.line === at?.line && d.at?.col === at?.col && d.at?.file === at?.file;
    if (diagnostics.some(same)) return;
    diagnostics.push({ severity: 'error', message, ...(at ? { at } : {}), ...(notes ? { notes } : {}) });
  };
  const targets = new Map<Label, ConfiguredTarget>();
  /** The targets of each package, by its name: how a dependency is found (see resolveRef). */
  const byPackage = new Map<string, ConfiguredTarget[]>();
  const graph = new TargetGraph();
  const sourceFolders = new Map<string, { root: string; stat: RootStat }>();
  const warnings: Diagnostic[] = [];
  const configurer = new Configurer(
    ws,
    (d) => error(d.message, d.at, d.notes),
    (message) => {
      if (!warnings.some((w) => w.message === message)) warnings.push({ severity: 'warning', message });
    },
  );

  for (const variant of ws.variants.values()) {
    if (variant.toolchain !== null && !ws.toolchains.has(variant.toolchain) && !ws.rejected.has(`toolchains/${variant.toolchain}`)) {
      error(
        `variant "${variant.name}" uses unknown toolchain "${variant.toolchain}"${didYouMean(variant.toolchain, ws.toolchains.keys())}`,
        ws.spans.value(['variants', variant.name, 'toolchain']),
      );
    }
  }

  for (const pkg of ws.packages.values()) {
    const rule = rules.get(pkg.rule)!;
    if (pkg.source?.kind === 'path') {
      const src = resolveIn(ws.root, pkg.source.path);
      const st = fs.statSync(src, { bigint: true, throwIfNoEntry: false });
      if (st?.isDirectory()) sourceFolders.set(pkg.name, { root: src, stat: rootStatOf(st) });
      else {
        error(`source folder "${pkg.source.path}" of package "${pkg.name}" does not exist`, ws.spans.value(['packages', pkg.name, 'source']));
      }
    }
    configurer.checkPackage(pkg);

    const built: ConfiguredTarget[] = [];
    byPackage.set(pkg.name, built);
    for (const variantName of configurer.variantsOf(pkg).keys()) {
      const variant = ws.variants.get(variantName)!;
      const label = makeLabel(pkg.name, variantName);
      if (rule.needsToolchain && variant.toolchain === null) {
        error(
          `${label}: rule ${rule.kind} needs a toolchain, but variant "${variantName}" declares none`,
          ws.spans.key(['variants', variantName]),
        );
      }
      const config = configurer.configure(pkg, variant);
      const resources: Resources = {
        cpus: pkg.resources.cpus ?? variant.resources.cpus ?? 1,
        memory: pkg.resources.memory ?? variant.resources.memory ?? 0,
        gpus: pkg.resources.gpus ?? variant.resources.gpus ?? 0,
        nvccThreads: pkg.resources.nvccThreads ?? variant.resources.nvccThreads ?? 0,
        timeoutMs: pkg.resources.timeoutMs ?? variant.resources.timeoutMs ?? 0,
      };
      const target: ConfiguredTarget = {
        label,
        package: pkg,
        variant,
        rule,
        toolchain: variant.toolchain,
        env: config.env,
        patches: config.patches,
        passEnv: config.passEnv,
        secretEnv: config.secretEnv,
        deps: [],
        resources,
        systemSitePackages: pkg.systemSitePackages ?? variant.systemSitePackages ?? false,
      };
      targets.set(label, target);
      built.push(target);
      graph.addTarget(label);
    }
  }

  const depend = (target: ConfiguredTarget, dep: ConfiguredTarget): void => {
    // The dependency's own label from here on, not an equal string made from the reference: every later lookup of
    // it (the graph's, planning's) finds its hash already computed and the same string at the entry.
    if (!target.deps.includes(dep.label)) target.deps.push(dep.label);
    graph.addDependency(target.label, dep.label);
  };
  /** Resolves one reference of `target`: `text` at `[field, index]` under its package in BUILD.yaml. */
  const resolveRef = (target: ConfiguredTarget, text: string, field: string, index: number): void => {
    const ref = parseDepRef(text);
    // Found by package name and variant, without making its label to look it up: 20,000 labels made and hashed
    // were 45 ms of a 10,000-target analysis. A reference not found so is looked at again below, for its mistake.
    if (ref.ok) {
      const variant = ref.value.variant ?? target.variant.name;
      const built = byPackage.get(ref.value.package);
      if (built !== undefined) {
        for (const dep of built) if (dep.variant.name === variant) return depend(target, dep);
      }
    }
    const pkg = target.package;
    // Looked up only for a mistake: a cached workspace restores its spans on first use (engine/parse-cache.ts).
    const at = (): ReturnType<typeof ws.spans.value> => ws.spans.value(['packages', pkg.name, field, index]);
    if (!ref.ok) return error(ref.error, at());
    const depPkg = ws.packages.get(ref.value.package);
    if (!depPkg && ws.rejected.has(`packages/${ref.value.package}`)) return;
    if (!depPkg) {
      return error(
        `package "${pkg.name}" depends on unknown package "${ref.value.package}"${didYouMean(ref.value.package, ws.packages.keys())}`,
        at(),
      );
    }
    const variant = ref.value.variant ?? target.variant.name;
    if (ref.value.variant !== null && ws.rejected.has(`variants/${variant}`)) return;
    if (ref.value.variant !== null && !ws.variants.has(variant)) {
      return error(
        `package "${pkg.name}" depends on ${makeLabel(ref.value.package, variant)}, but there is no variant "${variant}"${didYouMean(variant, ws.variants.keys())}`,
        at(),
      );
    }
    const depLabel = makeLabel(depPkg.name, variant);
    const dep = targets.get(depLabel);
    if (!dep && ws.rejected.has(`variants/${variant}`)) return;
    if (!dep) {
      return error(`${target.label} depends on ${depLabel}, but package "${depPkg.name}" is not built in variant "${variant}"`, at());
    }
    depend(target, dep);
  };

  // Dependencies are resolved once all targets exist, so a dep may name a package declared further down. In the
  // order dependencyRefs lists them, without making its list: an object and a path per reference were a tenth of
  // what a 10,000-target analysis allocated.
  const refAttrs = new Map<Rule, string[]>();
  for (const target of targets.values()) {
    const pkg = target.package;
    for (let i = 0; i < pkg.deps.length; i++) resolveRef(target, pkg.deps[i]!, 'deps', i);
    let attrs = refAttrs.get(target.rule);
    if (!attrs) refAttrs.set(target.rule, (attrs = Object.entries(target.rule.attrs).flatMap(([attr, spec]) => (spec.refs ? [attr] : []))));
    for (const attr of attrs) {
      const value = pkg.attrs[attr];
      if (!Array.isArray(value)) continue;
      value.forEach((text, i) => {
        if (typeof text === 'string') resolveRef(target, text, attr, i);
      });
    }
  }

  // A package built in several variants forms the same cycle in each: report it once, at the same dep entries.
  const cycles = new Map<string, { cycle: Label[]; notes: NonNullable<Diagnostic['notes']>; variants: string[] }>();
  for (const cycle of graph.cycles()) {
    const notes = cycle.slice(0, -1).map((from, i) => {
      const to = cycle[i + 1]!;
      const pkg = targets.get(from)!.package;
      const ref = dependencyRefs(pkg, targets.get(from)!.rule).find((r) => {
        const parsed = parseDepRef(r.text);
        return parsed.ok && parsed.value.package === targets.get(to)!.package.name;
      });
      const at = ws.spans.value(['packages', pkg.name, ...(ref?.path ?? ['deps'])]);
      return { message: `${from} depends on ${to}`, ...(at ? { at } : {}) };
    });
    const id = notes.map((n) => (n.at ? `${n.at.line}:${n.at.col}` : n.message)).join(' ');
    const same = cycles.get(id);
    if (same) same.variants.push(targets.get(cycle[0]!)!.variant.name);
    else cycles.set(id, { cycle, notes, variants: [] });
  }
  for (const { cycle, notes, variants } of cycles.values()) {
    const also = variants.length === 0 ? '' : ` (also in variant${variants.length > 1 ? 's' : ''} ${variants.map((v) => `"${v}"`).join(', ')})`;
    error(`dependency cycle: ${cycle.join(' -> ')}${also}`, notes[0]?.at, notes);
  }

  const declaredAt = (side: ClashSide): ReturnType<typeof ws.spans.value> => {
    const pkg = side.target.package.name;
    return side.entry ? ws.spans.value(['packages', pkg, side.entry.attr, side.entry.index]) : ws.spans.key(['packages', pkg]);
  };
  const whose = (side: ClashSide): string =>
    side.entry ? `output "${side.entry.path}" of ${side.target.label}` : `the log of ${side.target.label}`;
  // One error per pair of targets, at the first file they share: a package with many outputs would repeat it.
  const pairs = new Map<string, { first: Clash; more: number }>();
  for (const clash of wgOutClashes(targets)) {
    const id = `${clash.first.target.label} ${clash.second.target.label}`;
    const seen = pairs.get(id);
    if (seen) seen.more++;
    else pairs.set(id, { first: clash, more: 0 });
  }
  for (const { first: clash, more } of pairs.values()) {
    const notes = [clash.first, clash.second].map((side) => {
      const at = declaredAt(side);
      return { message: whose(side), ...(at ? { at } : {}) };
    });
    const also = more === 0 ? '' : ` (and ${more} more file${more > 1 ? 's' : ''})`;
    error(
      `${clash.second.target.label} and ${clash.first.target.label} would both write wg-out/${clash.file}${also}: wg-out names a ` +
        `target's files "<package>.<variant>.<file>", and the dots in these names make theirs the same; rename a package or a variant`,
      declaredAt(clash.second),
      notes,
    );
  }

  configurer.checkEnvFolder();
  return { analysis: { targets, graph, sourceFolders }, diagnostics, warnings };
}

/** Every target reference of a package: `deps`, then each attribute its rule marks `refs`, with its BUILD.yaml path. */
function dependencyRefs(pkg: PackageDecl, rule: Rule): { text: string; path: (string | number)[] }[] {
  const refs = pkg.deps.map((text, i) => ({ text, path: ['deps', i] as (string | number)[] }));
  for (const [attr, spec] of Object.entries(rule.attrs)) {
    const value = pkg.attrs[attr];
    if (!spec.refs || !Array.isArray(value)) continue;
    value.forEach((text, i) => {
      if (typeof text === 'string') refs.push({ text, path: [attr, i] });
    });
  }
  return refs;
}

/** Expands patterns into the selected labels (their dependencies not included). */
export function selectTargets(patterns: string[], analysis: Analysis, ws: Workspace): { labels: Label[]; errors: string[] } {
  const labels = new Set<Label>();
  const errors: string[] = [];
  for (const text of patterns) {
    const parsed = parsePattern(text);
    if (!parsed.ok) {
      // `wg build fastmath`: a package name without the `//`.
      const withSlashes = `//${text}`;
      const meant = !text.startsWith('/') && parsePattern(withSlashes).ok && ws.packages.has(text.split(':')[0]!);
      errors.push(`${parsed.error}${meant ? ` (did you mean '${withSlashes}'?)` : ''}`);
      continue;
    }
    const p = parsed.value;
    // Suggestions are whole labels of the same shape as what was typed (`//fastmath:cpu`, or `//fastmath`).
    const shapeOf = (l: Label): string => (p.variant === '*' && !text.includes(':') ? l.slice(0, l.indexOf(':')) : l);
    const suggestion = (): string => didYouMean(text, new Set([...analysis.targets.keys()].map(shapeOf)), "'");
    if (p.package !== '...' && !ws.packages.has(p.package)) {
      errors.push(`unknown target '${text}': no package "${p.package}"${suggestion()}`);
      continue;
    }
    // A matrix group name selects every variant it generated (`//...:gpu`).
    if (p.variant !== '*' && !ws.variants.has(p.variant) && !ws.groups.has(p.variant)) {
      errors.push(`unknown target '${text}': no variant "${p.variant}"${suggestion()}`);
      continue;
    }
    // The targets themselves, not their labels looked up one by one (10,000 lookups for `//...`).
    const matches: Label[] = [];
    for (const t of analysis.targets.values()) {
      if ((p.package === '...' || t.package.name === p.package) && (p.variant === '*' || t.variant.name === p.variant || t.variant.group === p.variant)) {
        matches.push(t.label);
      }
    }
    if (matches.length === 0) {
      errors.push(`unknown target '${text}': package "${p.package}" is not built in variant "${p.variant}"`);
      continue;
    }
    // One pattern selects each target once: a set to merge them is needed only for several.
    if (patterns.length === 1) return { labels: matches, errors };
    for (const m of matches) labels.add(m);
  }
  return { labels: [...labels], errors };
}
