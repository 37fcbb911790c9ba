// `wg build`: load → analyze → probe toolchains → key every selected target → look each key up → run only the
// stale ones under resource limits → materialize every result into wg-out. Mistakes are reported before any
// action runs; a failed action stores nothing.

import * as fs from 'node:fs';
import * as path from 'node:path';
import PQueue from 'p-queue';
import { LocalStore, type ActionResult } from '../cache/local-store.js';
import type { Rule, Toolchain } from '../rules/rule.js';
import { SourceError, type TreeEntry } from '../rules/source-path.js';
import { SourceNotFoundError, SourceUnavailableError } from '../rules/source-url.js';
import { isPinned, resolveSource, type ResolvedSource } from '../rules/sources.js';
import { probeToolchain, ToolchainError, type ProbedToolchain } from '../rules/toolchain.js';
import { analyze, selectTargets, type Analysis, type ConfiguredTarget } from './analyze.js';
import { missingSecrets } from './configure.js';
import { DiagnosticError, type Diagnostic } from './diagnostics.js';
import { LastBuilds } from './last-build.js';
import { History } from './history.js';
import type { BuildEvent, Listener, TargetStatus } from './events.js';
import { openLedger } from './ledger.js';
import { detectGpus } from './machine.js';
import { actionKey, KEY_FORMAT, type ActionKey, type KeyRecord } from './key.js';
import type { Label } from './label.js';
import { BUILD_FILE, loadWorkspace, type PackageDecl, type Workspace } from './load.js';
import { InputSet } from './inputs.js';
import { loadWorkspaceCached } from './parse-cache.js';
import { loadPlugins, runPostBuildHooks, withoutPlugins, type LoadedPlugin, type Plugins } from './plugins.js';
import { resolveRemote, type RemoteFlags } from './remote-config.js';
import type { RemoteStats, TieredCache } from '../cache/tiered-cache.js';
import { schedule, type Job, type Limits, type ScheduleOrder } from './scheduler.js';
import { optimizeOnlyHotCode } from './tiering.js';
import { runCommand, spawnHelper } from './spawn-helper.js';
import { TargetRunner, targetReport } from './target-runner.js';
import { planAction } from './action-plan.js';
import { sortCodeUnits } from './code-unit-sort.js';
import { sourceTree, type SourceObserver } from './source-tree.js';

export interface BuildOptions {
  root: string;
  patterns: string[];
  cacheDir: string;
  dryRun: boolean;
  keepGoing: boolean;
  /** GPU slots null: those nvidia-smi lists, asked only when a selected target needs a GPU. */
  limits: Omit<Limits, 'gpus'> & { gpus: number[] | null };
  /** Which ready action goes first; `fifo` exists for the scheduling benchmark's baseline. */
  scheduleOrder?: ScheduleOrder;
  /** Remote cache flags (BUILD.yaml's remote_cache and WG_REMOTE_* fill in the rest). */
  remote?: RemoteFlags;
  /** Where the build notes its inputs (a fresh set by default); watch mode passes its own, to see them after an error. */
  inputs?: InputSet;
}

export interface TargetReport {
  label: Label;
  key: string;
  status: TargetStatus | 'would-build';
  wheels: string[];
  files: string[];
  log: string | null;
  durationMs: number | null;
  error: string | null;
  /** With --dry-run, for targets that would build: the duration remembered from earlier builds, if any. */
  estimateMs?: number | null;
}

export interface BuildReport {
  targets: TargetReport[];
  /**
   * Selected targets left out of `targets`, all cached: an edit's incremental build lists the targets it looked at,
   * and reading the other thousand reports only to count them was a tenth of its own work.
   */
  unlisted?: number;
  ok: boolean;
  interrupted: boolean;
  durationMs: number;
  /** What the remote cache did, when one is configured. */
  remote?: RemoteStats;
  /** Every file and folder the keys were computed from, with its stat before it was read (none after a dry run, unless passed in). */
  inputs: InputSet;
  /** Wall-clock ns before the first input was read. */
  readStartNs: bigint;
  /** Whether any warning was shown (a no-op snapshot would not show it again). */
  warned: boolean;
  /** Each file put into wg-out (outputs and logs), with the CAS blob it came from: how a snapshot restores it. */
  blobs: Map<string, string>;
  /** Every selected target as planned, and the result each ended with: what the incremental path starts from. */
  planned: ReadonlyMap<Label, Planned>;
  results: ReadonlyMap<Label, ActionResult>;
  /** The workspace root the report's paths are in. */
  root: string;
  /** Whether plugins were loaded: their hooks run after a build, which the incremental path does not do. */
  plugins: boolean;
}

const RESTORE_CONCURRENCY = 32;

/** Selection mistakes on the command line (as opposed to BUILD.yaml): exit code 2, no source position. */
export class UsageError extends Error {}

/** A target with its action key computed, exactly as `wg build` (and `--dry-run`, `wg explain`) sees it. */
export interface Planned {
  target: ConfiguredTarget;
  key: ActionKey;
  record: KeyRecord;
  /** A folder source's tree as hashed (null for remote sources and packages without one). */
  source: { root: string; entries: TreeEntry[] } | null;
  /** A git, URL or index source, resolved: its identity is in `record`, and it puts that content in the sandbox. */
  remoteSource: ResolvedSource | null;
  plan: ReturnType<Rule['plan']>;
  toolchain: Toolchain | null;
}

/** The checked workspace and the targets the patterns select: what every command needs before it plans keys. */
export interface Selection {
  ws: Workspace;
  analysis: Analysis;
  /** The targets the patterns name, their dependencies not included. */
  selected: Label[];
  /** The selected targets and everything they depend on, dependencies first. */
  order: Label[];
  /** The rules (built-in and from plugins) the workspace was checked with, and the plugins' hooks. */
  plugins: Plugins;
  /** Analysis warnings (patch folders for another version, env files nobody reads), for the caller to show. */
  warnings: string[];
}

/**
 * Load → analyze → select; throws DiagnosticError (BUILD.yaml mistakes) or UsageError (bad patterns). `plugins`
 * comes from `await loadPlugins(root)`; without it only built-in rules are known (and plugin rules are unknown).
 */
export function loadSelection(root: string, patterns: string[], plugins: Plugins = withoutPlugins(), cacheDir?: string): Selection {
  const rules = plugins.rules;
  const ws = cacheDir ? loadWorkspaceCached(root, rules, cacheDir) : loadWorkspace(root, rules);
  const { analysis, diagnostics, warnings } = analyze(ws, rules);
  if (plugins.diagnostics.length + diagnostics.length > 0) throw new DiagnosticError([...plugins.diagnostics, ...diagnostics, ...warnings]);
  const selection = selectTargets(patterns, analysis, ws);
  if (selection.errors.length > 0) throw new UsageError(selection.errors.join('\n'));
  return { ws, analysis, selected: selection.labels, order: analysis.graph.closure(selection.labels), plugins, warnings: warnings.map((w) => w.message) };
}

/** Probes the toolchains and computes every key of `order`: the planning half of a build, which runs nothing. */
export async function planSelection(sel: Selection, store: LocalStore, cacheDir: string, inputs?: InputSet): Promise<Map<Label, Planned>> {
  const targets = sel.order.map((l) => sel.analysis.targets.get(l)!);
  const toolchains = await probeToolchains(sel.ws, targets, store, cacheDir);
  const remote = await resolveSources(sel.ws, targets, cacheDir);
  if (inputs) {
    for (const t of toolchains.values()) for (const p of (t as ProbedToolchain).watched) inputs.addFile(p);
    for (const t of targets) {
      for (const name of t.passEnv) inputs.envNames.add(name);
      const decl = t.package.source;
      if (decl && !isPinned(decl)) inputs.markVolatile(`the source of ${t.package.name} follows a branch or tag`);
      if (decl?.kind === 'index') inputs.markVolatile(`the source of ${t.package.name} comes from an index`);
    }
  }
  const planned = planTargets(sel.ws, targets, sel.analysis, toolchains, store, remote, sel.plugins.ruleOrigin, inputs);
  // Every source file and patch is hashed by now: their stat-cache entries are stored while the build goes on.
  store.saveStatEntries();
  return planned;
}

/**
 * Notes the workspace-level inputs of a build before they are read: BUILD.yaml, and the `envs/` and `patches/`
 * folders whose layout decides which env files and patches apply (a file added there must be noticed).
 */
function noteWorkspaceInputs(root: string, inputs: InputSet): void {
  inputs.addFile(path.join(root, BUILD_FILE));
  const walk = (dir: string): void => {
    inputs.addDir(dir);
    let names: fs.Dirent[];
    try {
      names = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const d of names) {
      const abs = path.join(dir, d.name);
      if (d.isDirectory()) walk(abs);
      else inputs.addFile(abs);
    }
  };
  walk(path.join(root, 'envs'));
  walk(path.join(root, 'patches'));
}

/** Sources resolved per build at most this many at a time (each may be a `git ls-remote` or an index request). */
const RESOLVE_CONCURRENCY = 8;

/**
 * Resolves the git, URL and index sources of the targets' packages, once per package, before anything runs. What a
 * remote says does not exist (a branch, a project, a version) is a BUILD.yaml diagnostic at the field that names it
 * (exit 2); a remote that cannot be asked is a SourceUnavailableError (exit 1): BUILD.yaml may be right, and the
 * same command may work once the network is back.
 */
async function resolveSources(ws: Workspace, targets: ConfiguredTarget[], cacheDir: string): Promise<Map<string, ResolvedSource>> {
  // Only packages with a remote source: a map of all of them was 10,000 entries made for nothing in a workspace of folders.
  const packages = new Map<string, PackageDecl>();
  for (const t of targets) if (t.package.source && t.package.source.kind !== 'path') packages.set(t.package.name, t.package);
  const out = new Map<string, ResolvedSource>();
  const diagnostics: Diagnostic[] = [];
  const unavailable: string[] = [];
  const queue = new PQueue({ concurrency: RESOLVE_CONCURRENCY });
  for (const pkg of packages.values()) {
    const decl = pkg.source;
    if (!decl || decl.kind === 'path') continue; // none is: this tells the type checker so
    void queue.add(async () => {
      try {
        out.set(pkg.name, await resolveSource(decl, cacheDir));
      } catch (e) {
        if (e instanceof SourceNotFoundError) {
          const at = ws.spans.value(['packages', pkg.name, 'source', e.field]);
          diagnostics.push({ severity: 'error', message: `source of package "${pkg.name}": ${e.message}`, ...(at ? { at } : {}) });
        } else if (e instanceof SourceUnavailableError) {
          unavailable.push(`source of package "${pkg.name}": ${e.message}`);
        } else throw e;
      }
    });
  }
  await queue.onIdle();
  if (diagnostics.length > 0) throw new DiagnosticError(diagnostics);
  if (unavailable.length > 0) throw new SourceUnavailableError(unavailable.sort().join('\n'));
  return out;
}

export async function runBuild(options: BuildOptions, emitEvent: Listener, signal: AbortSignal): Promise<BuildReport> {
  const started = Date.now();
  let warned = false;
  const blobs = new Map<string, string>();
  const emit: Listener = (e) => {
    if (e.type === 'warning') warned = true;
    emitEvent(e);
  };
  const inputs = options.inputs ?? new InputSet();
  // A dry run leaves no snapshot behind and nothing watches it: the 20,000 stats of a 10,000-target dry run noted
  // as inputs were work nobody read (unless the caller passed a set of its own).
  const noting = !options.dryRun || options.inputs !== undefined;
  // Wall-clock time (the clock file ctimes use) before any input is read, for the snapshot's racy check.
  const readStartNs = BigInt(Date.now()) * 1_000_000n;
  if (noting) noteWorkspaceInputs(options.root, inputs);
  const selection = loadSelection(options.root, options.patterns, await loadPlugins(options.root), options.cacheDir);
  if (noting) for (const f of selection.plugins.files) inputs.addFile(f);
  const { analysis, order } = selection;
  for (const message of selection.warnings) emit({ type: 'warning', message });
  if (!options.dryRun) {
    const missing = missingSecrets(selection.ws, order.map((l) => analysis.targets.get(l)!), process.env);
    if (missing.length > 0) throw new DiagnosticError(missing);
  }
  const needsGpu = order.some((l) => analysis.targets.get(l)!.resources.gpus > 0);
  const limits: Limits = { ...options.limits, gpus: options.limits.gpus ?? (needsGpu ? detectGpus().map((g) => g.index) : []) };

  const gpuErrors = order
    .map((l) => analysis.targets.get(l)!)
    .filter((t) => t.resources.gpus > limits.gpus.length)
    .map(
      (t) =>
        `${t.label} needs ${t.resources.gpus} GPU${t.resources.gpus > 1 ? 's' : ''}, but there ${limits.gpus.length === 1 ? 'is' : 'are'} ${limits.gpus.length} GPU slot${limits.gpus.length === 1 ? '' : 's'} (declare them with --gpus N or --gpus 0,3)`,
    );
  if (gpuErrors.length > 0) throw new UsageError(gpuErrors.join('\n'));
  const remoteConfig = await resolveRemote(selection.ws, options.remote ?? {}, process.env, process.cwd());
  if (remoteConfig.diagnostics.length > 0) throw new DiagnosticError(remoteConfig.diagnostics);
  if (remoteConfig.errors.length > 0) throw new UsageError(remoteConfig.errors.join('\n'));
  for (const message of remoteConfig.warnings) emit({ type: 'warning', message });

  const store = LocalStore.open(options.cacheDir, runCommand);
  let remote: TieredCache | null = null;
  try {
    const planned = await planSelection(selection, store, options.cacheDir, noting ? inputs : undefined);
    // Imported only when a remote cache is configured: a build without one never even loads the client.
    if (remoteConfig.options) {
      const { TieredCache } = await import('../cache/tiered-cache.js');
      remote = new TieredCache(store, remoteConfig.options, (message) => emit({ type: 'warning', message }));
    }
    const finish = (targets: TargetReport[], ok: boolean, results: ReadonlyMap<Label, ActionResult>, remoteStats?: RemoteStats): BuildReport => ({
      targets,
      ok,
      interrupted: signal.aborted,
      durationMs: Date.now() - started,
      ...(remoteStats ? { remote: remoteStats } : {}),
      inputs,
      readStartNs,
      warned,
      blobs,
      planned,
      results,
      root: options.root,
      plugins: selection.plugins.files.length > 0,
    });
    // What `wg explain` compares with: the record of each target's last build or restore in this workspace.
    const lastBuilds = new LastBuilds(store.kv('records'), options.root);

    const results = new Map<Label, ActionResult>();
    const stale: Planned[] = [];
    // With a remote: local first, then the remote, whose hits are verified and stored locally (probed on a dry run).
    const tiered = remote ? await remote.lookupMany([...planned.values()].map((p) => p.key), options.dryRun ? 'probe' : 'fetch') : null;
    for (const p of planned.values()) {
      const found = tiered?.get(p.key) ?? store.lookup(p.key);
      if ('hit' in found) results.set(p.target.label, found.hit);
      else {
        if (found.miss === 'corrupt') emit({ type: 'warning', message: found.warning });
        stale.push(p);
      }
    }
    if (options.dryRun) {
      emit({ type: 'plan', total: planned.size, toBuild: stale.length, cached: planned.size - stale.length });
      const history = new History(store.kv('history'), options.root);
      // `planned` holds the targets in `order`: the reports are listed as made, and the remembered durations are
      // read only for the targets that would build.
      const reports: TargetReport[] = [];
      for (const p of planned.values()) {
        if (results.has(p.target.label)) reports.push(targetReport(p, 'cached'));
        else reports.push(targetReport(p, 'would-build', { estimateMs: history.target(p.target.label)?.durationMs || null }));
      }
      const remoteStats = remote ? await remote.finish() : undefined;
      return finish(reports, true, results, remoteStats);
    }

    spawnHelper.expect(stale.length);
    await openLedger(options.cacheDir, emit);
    const learned = new History(store.kv('history'), options.root);
    const runner = new TargetRunner({
      root: options.root,
      cacheDir: options.cacheDir,
      store,
      signal,
      emit,
      planned,
      closure: (labels) => analysis.graph.closure(labels),
      inputs,
      learned,
      lastBuilds,
      remote,
      blobs,
    });

    // Restoring cached results is pure file-system work (link, rename); a bounded queue overlaps the syscalls
    // without opening thousands of files at once.
    const restore = new PQueue({ concurrency: RESTORE_CONCURRENCY });
    for (const p of planned.values()) {
      const hit = results.get(p.target.label);
      if (!hit) continue;
      void restore.add(async () => {
        if (!(await runner.restore(p, hit))) stale.push(p);
      });
    }
    await restore.onIdle();
    emit({ type: 'plan', total: planned.size, toBuild: stale.length, cached: planned.size - stale.length });
    store.expectActions(stale.length);

    const priorities = criticalPaths(stale, analysis, learned);
    const jobs: Job[] = stale.map((p) => runner.job(p, priorities.get(p.target.label)!));
    if (jobs.length > 0) optimizeOnlyHotCode();
    const outcome = await schedule(jobs, limits, options.keepGoing, runner.run, signal, options.scheduleOrder ?? 'priority');
    runner.flush();
    for (const [label, status] of outcome.outcomes) {
      if (status !== 'skipped') continue;
      const p = planned.get(label)!;
      const blocker = outcome.blockedBy.get(label) ?? null;
      const because = signal.aborted ? 'interrupted' : blocker ? `dependency ${blocker} failed` : 'the build stopped after a failure';
      runner.report(p, 'skipped', { error: because });
      emit({ type: 'skipped', label, key: p.key, because });
    }
    // Uploads still queued finish before the build does (an interrupted build drops them).
    const remoteStats = remote ? await remote.finish(signal.aborted) : undefined;
    const targets = order.map((l) => runner.reports.get(l)!);
    // Hooks do not change outputs, so they are not in any key; they run once the build is over, for what it built.
    const hookFailures = await runPostBuildHooks(
      selection.plugins,
      targets.flatMap((t) => {
        if (t.status !== 'built') return [];
        const target = analysis.targets.get(t.label)!;
        return [{ label: t.label, package: target.package.name, variant: target.variant.name, wheels: t.wheels, files: t.files }];
      }),
    );
    for (const f of hookFailures) {
      emit({ type: 'warning', message: f.message });
      const r = runner.reports.get(f.label as Label)!;
      r.error = r.error ? `${r.error}; ${f.message}` : f.message;
    }
    return finish(targets, hookFailures.length === 0 && targets.every((t) => t.status === 'built' || t.status === 'cached'), runner.results, remoteStats);
  } finally {
    if (remote) await remote.finish(true);
    await store.close();
  }
}

/**
 * Each stale target's remaining critical path: its estimated duration plus the longest chain of stale targets
 * that depend on it. Cached dependents cost nothing, so they end a chain.
 */
function criticalPaths(stale: Planned[], analysis: Analysis, history: History): Map<Label, number> {
  const staleSet = new Set(stale.map((p) => p.target.label));
  const byLabel = new Map(stale.map((p) => [p.target.label, p]));
  const memo = new Map<Label, number>();
  const visit = (label: Label): number => {
    const known = memo.get(label);
    if (known !== undefined) return known;
    let longest = 0;
    for (const d of analysis.graph.dependents(label)) if (staleSet.has(d)) longest = Math.max(longest, visit(d));
    const total = history.estimateMs(label, byLabel.get(label)!.target.rule.kind).ms + longest;
    memo.set(label, total);
    return total;
  };
  for (const label of staleSet) visit(label);
  return memo;
}

async function probeToolchains(ws: Workspace, targets: ConfiguredTarget[], store: LocalStore, cacheDir: string): Promise<Map<string, Toolchain>> {
  const names = new Set(targets.filter((t) => t.rule.needsToolchain && t.toolchain !== null).map((t) => t.toolchain!));
  const out = new Map<string, Toolchain>();
  const diagnostics: Diagnostic[] = [];
  await Promise.all(
    [...names].sort().map(async (name) => {
      try {
        out.set(name, await probeToolchain(ws.toolchains.get(name)!, store.kv('probes'), path.join(cacheDir, 'seeds')));
      } catch (e) {
        if (!(e instanceof ToolchainError)) throw e;
        const at = ws.spans.value(['toolchains', name, 'python']);
        diagnostics.push({ severity: 'error', message: e.message, ...(at ? { at } : {}) });
      }
    }),
  );
  if (diagnostics.length > 0) throw new DiagnosticError(diagnostics);
  return out;
}

/**
 * The empty list a key record holds for no dependencies or patches, shared and never written to. Made by taking an
 * element off so that V8 keeps it a list of objects, like the lists pushed to below: a new empty list is a list of
 * small integers (and one made by map() a list with holes), and records whose lists came in several kinds made V8
 * throw away and recompile planTargets and the key's JSON check, both optimized while the first targets, which have
 * no dependencies, were planned (three compiles each, now one).
 */
const NO_ITEMS: readonly unknown[] = (() => {
  const items: unknown[] = [null];
  items.pop();
  return items;
})();

/** Keys `order` (targets, dependencies first): each target's source tree, action plan and key record. */
function planTargets(
  ws: Workspace,
  order: ConfiguredTarget[],
  analysis: Analysis,
  toolchains: Map<string, Toolchain>,
  store: LocalStore,
  remote: ReadonlyMap<string, ResolvedSource> = new Map(),
  ruleOrigin: ReadonlyMap<string, LoadedPlugin> = new Map(),
  inputs?: InputSet,
): Map<Label, Planned> {
  const observe: SourceObserver | undefined = inputs ? { dir: (d, st) => inputs.addDir(d, st), file: (f, st) => inputs.addFile(f, st) } : undefined;
  const patchDigest = (abs: string): string => {
    inputs?.addFile(abs);
    return store.fileDigest(abs);
  };
  const planned = new Map<Label, Planned>();
  // A record's rule field, made once per rule and shared by the records of its targets (never written to).
  const ruleIds = new Map<Rule, KeyRecord['rule']>();
  const ruleIdentity = (rule: Rule): KeyRecord['rule'] => {
    let id = ruleIds.get(rule);
    if (!id) ruleIds.set(rule, (id = { kind: rule.kind, ...(ruleOrigin.has(rule.kind) ? { plugin: ruleOrigin.get(rule.kind)!.digest } : {}), version: rule.version }));
    return id;
  };
  const trees = new Map<string, { root: string; entries: TreeEntry[]; digest: string }>();
  const diagnostics: Diagnostic[] = [];
  for (const target of order) {
    const label = target.label;
    const pkg = target.package;
    let source: { root: string; entries: TreeEntry[]; digest: string } | null = null;
    // Most workspaces have no remote source: no lookup per target then.
    const remoteSource = remote.size === 0 ? undefined : remote.get(pkg.name);
    if (pkg.source?.kind === 'path') {
      const folder = analysis.sourceFolders.get(pkg.name);
      const root = folder?.root ?? path.resolve(ws.root, pkg.source.path);
      source = trees.get(root) ?? null;
      if (!source) {
        try {
          source = { root, ...sourceTree(root, store.statCache, observe, folder?.stat) };
          trees.set(root, source);
        } catch (e) {
          if (!(e instanceof SourceError)) throw e;
          const at = ws.spans.value(['packages', pkg.name, 'source']);
          diagnostics.push({ severity: 'error', message: `source of package "${pkg.name}": ${e.message}`, ...(at ? { at } : {}) });
          continue;
        }
      }
    }
    const toolchain = target.rule.needsToolchain && target.toolchain !== null ? toolchains.get(target.toolchain) ?? null : null;
    const plan = planAction(target, source !== null || remoteSource !== undefined, toolchain);
    // A dependency missing here failed its own planning; that diagnostic stops the build before keys matter.
    const depKeys: string[] = target.deps.length === 0 ? (NO_ITEMS as string[]) : [];
    for (const d of target.deps) depKeys.push(planned.get(d)?.key ?? 'unplanned');
    sortCodeUnits(depKeys);
    const patches: KeyRecord['patches'] = target.patches.length === 0 ? (NO_ITEMS as KeyRecord['patches']) : [];
    for (const p of target.patches) patches.push({ digest: patchDigest(path.resolve(ws.root, p)), path: p });
    // Fields in code-unit order, at every depth this function writes: canonicalJson then hands the record to
    // JSON.stringify as it is (engine/key.ts). Any order gives the same key.
    const record: KeyRecord = {
      attrs: plan.keyAttrs,
      deps: depKeys,
      env: target.env,
      format: KEY_FORMAT,
      ...(target.passEnv.length > 0 ? { passEnv: Object.fromEntries(target.passEnv.map((n) => [n, process.env[n] ?? null])) } : {}),
      patches,
      rule: ruleIdentity(target.rule),
      ...(target.secretEnv.length > 0 ? { secretEnv: [...target.secretEnv].sort() } : {}),
      source: remoteSource ? remoteSource.identity : source ? { kind: 'path', tree: source.digest } : null,
      systemSitePackages: target.systemSitePackages,
      toolchain: toolchain?.facts ?? null,
    };
    planned.set(label, {
      target,
      key: actionKey(record),
      record,
      source: source ? { root: source.root, entries: source.entries } : null,
      remoteSource: remoteSource ?? null,
      plan,
      toolchain,
    });
  }
  if (diagnostics.length > 0) throw new DiagnosticError(diagnostics);
  return planned;
}

export type { BuildEvent };
