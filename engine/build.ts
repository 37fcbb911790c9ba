// `wg build`: load → analyze → probe toolchains → key every selected target → look each key up → run only the
// stale ones under resource limits → materialize every result into wg-out. Mistakes are reported before any
// action runs; a failed action stores nothing.

import * as fs from 'node:fs';
import * as path from 'node:path';
import PQueue from 'p-queue';
import { LocalStore, type ActionResult } from '../cache/local-store.js';
import { builtinRules } from '../rules/registry.js';
import type { Rule, Toolchain } from '../rules/rule.js';
import { listTree, SourceError, treeDigest, type TreeEntry } from '../rules/source-path.js';
import { probeToolchain, ToolchainError } from '../rules/toolchain.js';
import { analyze, selectTargets, type ConfiguredTarget } from './analyze.js';
import { DiagnosticError, type Diagnostic } from './diagnostics.js';
import type { BuildEvent, Listener, TargetStatus } from './events.js';
import { ActionFailure, executeAction } from './executor.js';
import { actionKey, KEY_FORMAT, type ActionKey, type KeyRecord } from './key.js';
import type { Label } from './label.js';
import { loadWorkspace, type Workspace } from './load.js';
import { logPath, OUT_DIR, outputPath } from './outputs.js';
import { schedule, type Grant, type Job, type Limits } from './scheduler.js';

export interface BuildOptions {
  root: string;
  patterns: string[];
  cacheDir: string;
  dryRun: boolean;
  keepGoing: boolean;
  limits: Limits;
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
}

export interface BuildReport {
  targets: TargetReport[];
  ok: boolean;
  interrupted: boolean;
  durationMs: number;
}

const RESTORE_CONCURRENCY = 32;

/** Selection mistakes on the command line (as opposed to BUILD.yaml): exit code 2, no source position. */
export class UsageError extends Error {}

interface Planned {
  target: ConfiguredTarget;
  key: ActionKey;
  record: KeyRecord;
  source: { root: string; entries: TreeEntry[] } | null;
  plan: ReturnType<Rule['plan']>;
  toolchain: Toolchain | null;
}

export async function runBuild(options: BuildOptions, emit: Listener, signal: AbortSignal): Promise<BuildReport> {
  const started = Date.now();
  const rules = builtinRules();
  const ws = loadWorkspace(options.root, rules);
  const { analysis, diagnostics } = analyze(ws, rules);
  if (diagnostics.length > 0) throw new DiagnosticError(diagnostics);
  const selection = selectTargets(options.patterns, analysis, ws);
  if (selection.errors.length > 0) throw new UsageError(selection.errors.join('\n'));
  const order = analysis.graph.closure(selection.labels);

  const gpuErrors = order
    .map((l) => analysis.targets.get(l)!)
    .filter((t) => t.resources.gpus > options.limits.gpus.length)
    .map(
      (t) =>
        `${t.label} needs ${t.resources.gpus} GPU${t.resources.gpus > 1 ? 's' : ''}, but there ${options.limits.gpus.length === 1 ? 'is' : 'are'} ${options.limits.gpus.length} GPU slot${options.limits.gpus.length === 1 ? '' : 's'} (declare them with --gpus N or --gpus 0,3)`,
    );
  if (gpuErrors.length > 0) throw new UsageError(gpuErrors.join('\n'));

  const store = LocalStore.open(options.cacheDir);
  try {
    const toolchains = await probeToolchains(ws, order.map((l) => analysis.targets.get(l)!), store, options.cacheDir);
    const planned = planTargets(ws, order, analysis.targets, toolchains, store);
    const wgOut = path.join(options.root, OUT_DIR);

    const results = new Map<Label, ActionResult>();
    const reports = new Map<Label, TargetReport>();
    const report = (p: Planned, status: TargetReport['status'], extra: Partial<TargetReport> = {}): TargetReport => {
      const r: TargetReport = { label: p.target.label, key: p.key, status, wheels: [], files: [], log: null, durationMs: null, error: null, ...extra };
      reports.set(p.target.label, r);
      return r;
    };
    const stale: Planned[] = [];
    for (const p of planned.values()) {
      const found = store.lookup(p.key);
      if ('hit' in found) results.set(p.target.label, found.hit);
      else {
        if (found.miss === 'corrupt') emit({ type: 'warning', message: found.warning });
        stale.push(p);
      }
    }
    if (options.dryRun) {
      emit({ type: 'plan', total: planned.size, toBuild: stale.length, cached: planned.size - stale.length });
      for (const p of planned.values()) {
        const cached = results.has(p.target.label);
        report(p, cached ? 'cached' : 'would-build');
      }
      return { targets: order.map((l) => reports.get(l)!), ok: true, interrupted: false, durationMs: Date.now() - started };
    }

    // What each label last put into this workspace's wg-out, so a rebuild that fails can take the stale files away:
    // the wheelhouse must never offer a wheel that the current BUILD.yaml does not produce.
    const history = store.kv('history');
    const historyId = (label: Label): string => `outputs:${options.root}:${label}`;
    const remember = (p: Planned, files: { wheels: string[]; files: string[] }): void => {
      history.put(historyId(p.target.label), { key: p.key, files: [...files.wheels, ...files.files] });
    };
    const forgetOutputs = (label: Label): void => {
      const last = history.get(historyId(label)) as { files?: unknown } | undefined;
      if (!last || !Array.isArray(last.files)) return;
      for (const f of last.files) {
        if (typeof f !== 'string' || !f.startsWith(wgOut + path.sep)) continue;
        const owner = materialized.get(f);
        if (owner === undefined || owner === label) fs.rmSync(f, { force: true });
      }
    };
    const materialized = new Map<string, Label>();
    const materialize = async (p: Planned, result: ActionResult): Promise<{ wheels: string[]; files: string[]; log: string }> => {
      const out = { wheels: [] as string[], files: [] as string[], log: logPath(wgOut, p.target.label) };
      for (const o of result.outputs) {
        const dest = outputPath(wgOut, p.target.label, p.toolchain?.facts ?? null, o);
        const previous = materialized.get(dest);
        if (previous !== undefined && previous !== p.target.label) {
          emit({ type: 'warning', message: `${p.target.label} and ${previous} both produce ${path.relative(options.root, dest)}; the later one wins` });
        }
        materialized.set(dest, p.target.label);
        await store.materialize(o.digest, dest, o.mode);
        (o.kind === 'wheel' ? out.wheels : out.files).push(dest);
      }
      return out;
    };

    // Restoring cached results is pure file-system work (link, rename); a bounded queue overlaps the syscalls
    // without opening thousands of files at once.
    const restore = new PQueue({ concurrency: RESTORE_CONCURRENCY });
    for (const p of planned.values()) {
      const hit = results.get(p.target.label);
      if (!hit) continue;
      void restore.add(async () => {
        try {
          const files = await materialize(p, hit);
          await store.materialize(hit.log.digest, files.log, 0o444);
          remember(p, files);
          report(p, 'cached', files);
          emit({ type: 'cached', label: p.target.label, key: p.key });
        } catch (e) {
          // A blob damaged between lookup and restore (or a wg-out folder we cannot write into for this file)
          // makes the hit unusable; building it again is always correct.
          emit({ type: 'warning', message: `cannot restore the cached result of ${p.target.label} (${(e as Error).message}); rebuilding` });
          results.delete(p.target.label);
          stale.push(p);
        }
      });
    }
    await restore.onIdle();
    emit({ type: 'plan', total: planned.size, toBuild: stale.length, cached: planned.size - stale.length });

    const jobs: Job[] = stale.map((p) => ({
      label: p.target.label,
      deps: p.target.deps,
      resources: p.target.resources,
      priority: analysis.graph.transitiveDependents(p.target.label).size,
    }));
    const run = async (job: Job, grant: Grant): Promise<'ok' | 'failed'> => {
      const p = planned.get(job.label)!;
      emit({ type: 'started', label: job.label, key: p.key, mnemonic: p.plan.mnemonic, gpus: grant.gpus });
      const log = logPath(wgOut, job.label);
      if (fs.existsSync(log)) fs.rmSync(log, { force: true });
      forgetOutputs(job.label);
      const t0 = Date.now();
      try {
        const deps = analysis.graph.closure(p.target.deps).map((l) => ({ label: l as string, result: results.get(l)! }));
        const result = await executeAction(
          {
            label: job.label,
            key: p.key,
            plan: p.plan,
            record: p.record,
            source: p.source,
            patches: p.target.patches.map((name) => ({ name, file: path.resolve(options.root, name) })),
            env: p.target.env,
            toolchain: p.toolchain,
            deps,
          },
          grant,
          { store, sandboxRoot: path.join(options.cacheDir, 'sandbox'), logPath: log, signal },
        );
        results.set(job.label, result);
        const files = await materialize(p, result);
        remember(p, files);
        report(p, 'built', { ...files, durationMs: Date.now() - t0 });
        emit({ type: 'built', label: job.label, key: p.key, durationMs: Date.now() - t0 });
        return 'ok';
      } catch (e) {
        const failure = e instanceof ActionFailure ? e : new ActionFailure('setup-failed', (e as Error).message);
        report(p, 'failed', { log, error: failure.message, durationMs: Date.now() - t0 });
        emit({ type: 'failed', label: job.label, key: p.key, reason: failure.reason, message: failure.message, logPath: log, logTail: tail(log, 20) });
        return 'failed';
      }
    };
    const outcome = await schedule(jobs, options.limits, options.keepGoing, run, signal);
    for (const [label, status] of outcome.outcomes) {
      if (status !== 'skipped') continue;
      const p = planned.get(label)!;
      const blocker = outcome.blockedBy.get(label) ?? null;
      const because = signal.aborted ? 'interrupted' : blocker ? `dependency ${blocker} failed` : 'the build stopped after a failure';
      report(p, 'skipped', { error: because });
      emit({ type: 'skipped', label, key: p.key, because });
    }
    const targets = order.map((l) => reports.get(l)!);
    return {
      targets,
      ok: targets.every((t) => t.status === 'built' || t.status === 'cached'),
      interrupted: signal.aborted,
      durationMs: Date.now() - started,
    };
  } finally {
    await store.close();
  }
}

function tail(file: string, lines: number): string[] {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines);
  } catch {
    return [];
  }
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

function planTargets(
  ws: Workspace,
  order: Label[],
  targets: Map<Label, ConfiguredTarget>,
  toolchains: Map<string, Toolchain>,
  store: LocalStore,
): Map<Label, Planned> {
  const planned = new Map<Label, Planned>();
  const trees = new Map<string, { root: string; entries: TreeEntry[]; digest: string }>();
  const diagnostics: Diagnostic[] = [];
  for (const label of order) {
    const target = targets.get(label)!;
    const pkg = target.package;
    let source: { root: string; entries: TreeEntry[]; digest: string } | null = null;
    if (pkg.source !== null) {
      const root = path.resolve(ws.root, pkg.source);
      source = trees.get(root) ?? null;
      if (!source) {
        try {
          const entries = listTree(root, (f) => store.fileDigest(f));
          source = { root, entries, digest: treeDigest(entries) };
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
    const plan = target.rule.plan({
      label,
      package: pkg.name,
      variant: target.variant.name,
      attrs: pkg.attrs,
      test: pkg.test,
      hasSource: source !== null,
      toolchain,
      systemSitePackages: target.systemSitePackages,
    });
    // A dependency missing here failed its own planning; that diagnostic stops the build before keys matter.
    const depKeys = target.deps.map((d) => (planned.get(d)?.key ?? 'unplanned') as string).sort();
    const record: KeyRecord = {
      format: KEY_FORMAT,
      rule: { kind: target.rule.kind, version: target.rule.version },
      attrs: plan.keyAttrs,
      source: source ? { kind: 'path', tree: source.digest } : null,
      patches: target.patches.map((p) => ({ path: p, digest: store.fileDigest(path.resolve(ws.root, p)) })),
      env: target.env,
      toolchain: toolchain?.facts ?? null,
      systemSitePackages: target.systemSitePackages,
      deps: depKeys,
    };
    planned.set(label, {
      target,
      key: actionKey(record),
      record,
      source: source ? { root: source.root, entries: source.entries } : null,
      plan,
      toolchain,
    });
  }
  if (diagnostics.length > 0) throw new DiagnosticError(diagnostics);
  return planned;
}

export type { BuildEvent };
