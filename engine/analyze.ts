// Analysis: turns checked declarations into configured targets (a package in a variant, with its env, patches,
// resources and dependencies resolved), builds the target graph and rejects cycles, all before anything runs.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Rule } from '../rules/rule.js';
import { didYouMean, type Diagnostic } from './diagnostics.js';
import { TargetGraph } from './graph.js';
import { makeLabel, parseDepRef, parsePattern, type Label } from './label.js';
import type { PackageDecl, Resources, VariantDecl, Workspace } from './load.js';

export interface ConfiguredTarget {
  label: Label;
  package: PackageDecl;
  variant: VariantDecl;
  rule: Rule;
  /** Toolchain name, or null for rules that need none and variants that declare none. */
  toolchain: string | null;
  /** Variant env, then package env, then the package's override for this variant; later wins. */
  env: Record<string, string>;
  /** Workspace-relative patch paths in application order. */
  patches: string[];
  deps: Label[];
  resources: Resources;
  systemSitePackages: boolean;
}

export interface Analysis {
  targets: Map<Label, ConfiguredTarget>;
  graph: TargetGraph;
}

export interface AnalysisResult {
  analysis: Analysis;
  diagnostics: Diagnostic[];
}

function variantsOf(pkg: PackageDecl, ws: Workspace): string[] {
  return pkg.variants ? [...pkg.variants.keys()].filter((v) => ws.variants.has(v)) : [...ws.variants.keys()];
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
  const graph = new TargetGraph();

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
    if (pkg.source !== null) {
      const src = path.resolve(ws.root, pkg.source);
      if (!fs.existsSync(src) || !fs.statSync(src).isDirectory()) {
        error(`source folder "${pkg.source}" of package "${pkg.name}" does not exist`, ws.spans.value(['packages', pkg.name, 'source']));
      }
    }
    const checkPatch = (p: string, at: Parameters<typeof error>[1]): void => {
      if (!fs.existsSync(path.resolve(ws.root, p))) error(`patch "${p}" of package "${pkg.name}" does not exist`, at);
    };
    pkg.patches.forEach((p, i) => checkPatch(p, ws.spans.value(['packages', pkg.name, 'patches', i])));
    for (const [name, override] of pkg.variants ?? []) {
      if (!ws.variants.has(name) && !ws.rejected.has(`variants/${name}`)) {
        error(
          `package "${pkg.name}" names unknown variant "${name}"${didYouMean(name, ws.variants.keys())}`,
          ws.spans.keyOnly(['packages', pkg.name, 'variants', name]) ??
            ws.spans.value(['packages', pkg.name, 'variants', [...pkg.variants!.keys()].indexOf(name)]),
        );
      }
      override.patches.forEach((p, i) => checkPatch(p, ws.spans.value(['packages', pkg.name, 'variants', name, 'patches', i])));
    }

    for (const variantName of variantsOf(pkg, ws)) {
      const variant = ws.variants.get(variantName)!;
      const label = makeLabel(pkg.name, variantName);
      if (rule.needsToolchain && variant.toolchain === null) {
        error(
          `${label}: rule ${rule.kind} needs a toolchain, but variant "${variantName}" declares none`,
          ws.spans.key(['variants', variantName]),
        );
      }
      const override = pkg.variants?.get(variantName);
      const resources: Resources = {
        cpus: pkg.resources.cpus ?? variant.resources.cpus ?? 1,
        memory: pkg.resources.memory ?? variant.resources.memory ?? 0,
        gpus: pkg.resources.gpus ?? variant.resources.gpus ?? 0,
      };
      targets.set(label, {
        label,
        package: pkg,
        variant,
        rule,
        toolchain: variant.toolchain,
        env: { ...variant.env, ...pkg.env, ...(override?.env ?? {}) },
        patches: [...pkg.patches, ...(override?.patches ?? [])],
        deps: [],
        resources,
        systemSitePackages: pkg.systemSitePackages ?? variant.systemSitePackages ?? false,
      });
      graph.addTarget(label);
    }
  }

  // Dependencies are resolved once all targets exist, so a dep may name a package declared further down.
  for (const target of targets.values()) {
    const pkg = target.package;
    pkg.deps.forEach((text, i) => {
      const at = ws.spans.value(['packages', pkg.name, 'deps', i]);
      const ref = parseDepRef(text);
      if (!ref.ok) return error(ref.error, at);
      const depPkg = ws.packages.get(ref.value.package);
      if (!depPkg && ws.rejected.has(`packages/${ref.value.package}`)) return;
      if (!depPkg) {
        return error(
          `package "${pkg.name}" depends on unknown package "${ref.value.package}"${didYouMean(ref.value.package, ws.packages.keys())}`,
          at,
        );
      }
      const variant = ref.value.variant ?? target.variant.name;
      if (ref.value.variant !== null && ws.rejected.has(`variants/${variant}`)) return;
      if (ref.value.variant !== null && !ws.variants.has(variant)) {
        return error(
          `package "${pkg.name}" depends on ${makeLabel(ref.value.package, variant)}, but there is no variant "${variant}"${didYouMean(variant, ws.variants.keys())}`,
          at,
        );
      }
      const depLabel = makeLabel(depPkg.name, variant);
      if (!targets.has(depLabel) && ws.rejected.has(`variants/${variant}`)) return;
      if (!targets.has(depLabel)) {
        return error(
          `${target.label} depends on ${depLabel}, but package "${depPkg.name}" is not built in variant "${variant}"`,
          at,
        );
      }
      if (!target.deps.includes(depLabel)) target.deps.push(depLabel);
      graph.addDependency(target.label, depLabel);
    });
  }

  // A package built in several variants forms the same cycle in each: report it once, at the same dep entries.
  const cycles = new Map<string, { cycle: Label[]; notes: NonNullable<Diagnostic['notes']>; variants: string[] }>();
  for (const cycle of graph.cycles()) {
    const notes = cycle.slice(0, -1).map((from, i) => {
      const to = cycle[i + 1]!;
      const pkg = targets.get(from)!.package;
      const idx = pkg.deps.findIndex((d) => {
        const ref = parseDepRef(d);
        return ref.ok && ref.value.package === targets.get(to)!.package.name;
      });
      const at = ws.spans.value(['packages', pkg.name, 'deps', idx]);
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

  return { analysis: { targets, graph }, diagnostics };
}

/** Expands patterns into the selected labels (their dependencies not included). */
export function selectTargets(patterns: string[], analysis: Analysis, ws: Workspace): { labels: Label[]; errors: string[] } {
  const labels = new Set<Label>();
  const errors: string[] = [];
  const all = [...analysis.targets.keys()];
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
    const suggestion = (): string => didYouMean(text, new Set(all.map(shapeOf)), "'");
    if (p.package !== '...' && !ws.packages.has(p.package)) {
      errors.push(`unknown target '${text}': no package "${p.package}"${suggestion()}`);
      continue;
    }
    if (p.variant !== '*' && !ws.variants.has(p.variant)) {
      errors.push(`unknown target '${text}': no variant "${p.variant}"${suggestion()}`);
      continue;
    }
    const matches = all.filter((l) => {
      const t = analysis.targets.get(l)!;
      return (p.package === '...' || t.package.name === p.package) && (p.variant === '*' || t.variant.name === p.variant);
    });
    if (matches.length === 0) {
      errors.push(`unknown target '${text}': package "${p.package}" is not built in variant "${p.variant}"`);
      continue;
    }
    for (const m of matches) labels.add(m);
  }
  return { labels: [...labels], errors };
}
