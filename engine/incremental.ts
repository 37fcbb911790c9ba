// The incremental path of `wg build`: the no-op snapshot found changed inputs, and every one of them is a file of a
// folder source or a patch. The stored plan of the last build gives each target's key record; only the targets a
// changed file touches, and their dependents, get new keys, and only those are looked up and built, through the
// same TargetRunner as the full build. Nothing else is loaded: no BUILD.yaml, no analysis, no planning of the
// targets that did not change (ninja's answer to an edit loop, with content keys instead of mtimes).
//
// It declines (returns null, having changed nothing) whenever it cannot vouch for the answer: BUILD.yaml, an env
// file, a plugin or a toolchain changed; a file appeared or disappeared; a touched target has a remote source or
// needs a secret that is not set. The full path then decides, as it always may.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { hashFileSync } from '../cache/file-hash.js';
import { LocalStore } from '../cache/local-store.js';
import { skipped, treeDigest, type TreeEntry } from '../rules/source-path.js';
import type { BuildReport, Planned, TargetReport } from './build.js';
import type { BuildEvent } from './events.js';
import type { IncrementalRequest } from './fast-noop.js';
import { History } from './history.js';
import { InputSet, statTuple, type StatTuple } from './inputs.js';
import { onInterrupt } from './interrupts.js';
import { actionKey, type ActionKey, type KeyRecord } from './key.js';
import type { Label } from './label.js';
import { LastBuilds } from './last-build.js';
import { openLedger } from './ledger.js';
import { detectCores, detectGpus, detectMemory } from './machine.js';
import { asCached, recordDelta, recordNoop } from './noop-record.js';
import { dropSnapshot, snapshotOutputs, snapshotReport, type OutputEntry } from './noop-snapshot.js';
import { makeReporter } from './reporter-choice.js';
import { schedule } from './scheduler.js';
import { writeStdout } from './stdio-write.js';
import { storeTarget, StoredPlan, type PlanEntry } from './stored-plan.js';
import { TargetRunner } from './target-runner.js';

/** Targets a delta may hold however small the plan: a handful of edits in a row never rewrites it. */
const MIN_DELTA = 16;

/** What the changed files do to the stored plan: new source trees, new patch digests, the stats taken before reading. */
interface Changes {
  /** By root: the tree with the changed files' digests, its digest, and the targets whose source it is. */
  trees: Map<string, { entries: TreeEntry[]; digest: string | null; targets: number[] }>;
  patches: Map<string, string>;
  stats: Map<string, StatTuple>;
  digests: Map<string, string>;
  dirStats: Map<string, StatTuple | null>;
}

function toPosix(rel: string): string {
  return rel.split(path.sep).join('/');
}

/**
 * The source roots `abs` is in (or is), with their targets: its own path and each folder above it, looked up. A
 * filter of every root was a thousand turns of cold JavaScript per changed file at 1000 targets (~1 ms).
 */
function rootsOf(roots: ReadonlyMap<string, number[]>, abs: string): [string, number[]][] {
  const out: [string, number[]][] = [];
  for (let p = abs; ; p = path.dirname(p)) {
    const targets = roots.get(p);
    if (targets !== undefined) out.push([p, targets]);
    if (path.dirname(p) === p) return out;
  }
}

/**
 * Reads what changed. Null when something changed that the stored plan cannot account for. A folder may change
 * without its listing changing (an editor saving through a temporary file and a rename); any other folder change
 * declines.
 */
function readChanges(req: IncrementalRequest, plan: StoredPlan): Changes | null {
  const out: Changes = { trees: new Map(), patches: new Map(), stats: new Map(), digests: new Map(), dirStats: new Map() };
  const roots = new Map(plan.sourceRoots);
  const tree = (root: string, targets: number[]): TreeEntry[] => {
    let t = out.trees.get(root);
    if (t === undefined) {
      t = { entries: [...plan.stored(targets[0]!).source!.entries], digest: null, targets };
      out.trees.set(root, t);
    }
    return t.entries;
  };
  for (const dir of req.check.dirs) {
    const owners = rootsOf(roots, dir);
    if (owners.length === 0) return null;
    let st: fs.BigIntStats | undefined;
    let names: string[];
    try {
      st = fs.statSync(dir, { bigint: true });
      names = fs.readdirSync(dir);
    } catch {
      return null;
    }
    out.dirStats.set(dir, statTuple(st));
    for (const [root, targets] of owners) {
      const rel = dir === root ? '' : `${toPosix(path.relative(root, dir))}/`;
      const expected = new Set<string>();
      for (const e of plan.stored(targets[0]!).source!.entries) if (e.path.startsWith(rel)) expected.add(e.path.slice(rel.length).split('/')[0]!);
      const listed = names.filter((n) => !skipped(n, rel === ''));
      if (listed.length !== expected.size || listed.some((n) => !expected.has(n))) return null;
    }
  }
  for (const file of req.check.files) {
    const st = fs.lstatSync(file, { bigint: true, throwIfNoEntry: false });
    if (!st?.isFile()) return null;
    const h = hashFileSync(file, true);
    // Changed while it was read: the full path reads it again, under its own checks.
    if (!h.stable) return null;
    let owned = false;
    for (const [root, targets] of rootsOf(roots, file)) {
      const entries = tree(root, targets);
      const rel = toPosix(path.relative(root, file));
      const i = entries.findIndex((e) => e.path === rel);
      if (i < 0 || entries[i]!.type !== 'file') return null;
      entries[i] = { ...entries[i]!, content: h.digest, executable: (h.stat.mode & 0o111n) !== 0n };
      owned = true;
    }
    if (plan.patchTargets(file) !== undefined) {
      out.patches.set(file, h.digest);
      owned = true;
    }
    if (!owned) return null;
    out.stats.set(file, statTuple(h.stat));
    out.digests.set(file, h.digest);
  }
  for (const t of out.trees.values()) t.digest = treeDigest(t.entries);
  return out;
}

/** The targets whose keys the changes move, with their new keys, dependencies first; null to decline. */
function rekey(req: IncrementalRequest, plan: StoredPlan, changes: Changes): Map<number, Planned> | null {
  const touched = new Set<number>();
  for (const tree of changes.trees.values()) for (const t of tree.targets) touched.add(t);
  for (const file of changes.patches.keys()) for (const t of plan.patchTargets(file)!) touched.add(t);
  const moved = new Map<number, Planned>();
  // Dependencies come first in the plan, so nothing before the first touched target can move: an edit of a leaf
  // looks at one target, not all of them (~1 ms at 1000).
  let first = plan.labels.length;
  for (const t of touched) first = Math.min(first, t);
  for (let i = first; i < plan.labels.length; i++) {
    const deps = plan.depsOf(i);
    if (!touched.has(i) && !deps.some((d) => moved.has(d))) continue;
    const s = plan.stored(i);
    if (s.remoteSource) return null;
    if (s.target.secretEnv.some((n) => process.env[n] === undefined)) return null;
    const tree = s.source ? changes.trees.get(s.source.root) : undefined;
    const record: KeyRecord = {
      ...s.record,
      source: tree ? { kind: 'path', tree: tree.digest! } : s.record.source,
      patches: s.record.patches.map((p) => {
        const digest = changes.patches.get(path.resolve(req.args.root, p.path));
        return digest === undefined ? p : { digest, path: p.path };
      }),
      deps: deps.map((d) => moved.get(d)?.key ?? plan.key(d)).sort(),
    };
    const key = actionKey(record);
    if (key === s.key) continue;
    const base = plan.planned(i);
    moved.set(i, { ...base, key: key as ActionKey, record, source: tree && s.source ? { root: s.source.root, entries: tree.entries } : base.source });
  }
  return moved;
}

// bin/wg.cjs prints an internal error after the step lines that wait (engine/stderr-lines.ts), not before them.
export { flushLines } from './stderr-lines.js';

/** Runs the build if it can; the exit code, or null (nothing done) for the full path. */
export async function runIncremental(req: IncrementalRequest): Promise<number | null> {
  const { snapshot } = req.check;
  const startedMs = Date.now() - Number(process.hrtime.bigint() - req.started) / 1e6;
  // Wall-clock time before any changed input is read, for the new snapshot's racy check.
  const readStartNs = BigInt(Date.now()) * 1_000_000n;
  const plan = StoredPlan.read(req.check.file, snapshot.argsId, snapshot.build);
  if (!plan) return null;
  try {
    return await buildIncremental(req, plan, readStartNs, startedMs);
  } finally {
    plan.close();
  }
}

/** The incremental build itself, on the plan read. */
async function buildIncremental(req: IncrementalRequest, plan: StoredPlan, readStartNs: bigint, startedMs: number): Promise<number | null> {
  const { args, check } = req;
  const { snapshot } = check;
  const changes = readChanges(req, plan);
  if (!changes) return null;
  const moved = rekey(req, plan, changes);
  if (!moved) return null;
  // Every target's report only when a --json document must list them all: the summary counts the unmoved ones.
  const storedTargets = (): TargetReport[] | null => {
    const stored = snapshotReport(args, snapshot) as { targets: TargetReport[] } | null;
    return stored && stored.targets.length === plan.labels.length ? stored.targets : null;
  };
  const everyTarget = req.json ? storedTargets() : undefined;
  if (everyTarget === null) return null;
  const gpus = [...moved.values()].some((p) => p.target.resources.gpus > 0) ? detectGpus().map((g) => g.index) : [];
  if ([...moved.values()].some((p) => p.target.resources.gpus > gpus.length)) return null;

  const cwd = process.cwd();
  const reporter = makeReporter(cwd);
  let warned = false;
  const emit = (e: BuildEvent): void => {
    if (e.type === 'warning') warned = true;
    reporter.onEvent(e);
  };
  const interrupts = onInterrupt(reporter);
  dropSnapshot(args.cacheDir, args.root);
  // The snapshot's inputs with the changed stats put in (every changed file and folder is one of them).
  const inputs = new InputSet(snapshot);
  for (const [f, st] of changes.stats) inputs.files.set(f, st);
  for (const [d, st] of changes.dirStats) inputs.dirs.set(d, st);

  const byLabel = new Map<Label, Planned>();
  for (const p of moved.values()) byLabel.set(p.target.label, p);
  const planned = {
    get: (label: Label): Planned | undefined => {
      let p = byLabel.get(label);
      const i = plan.indexOf(label);
      if (p === undefined && i !== undefined) byLabel.set(label, (p = plan.planned(i)));
      return p;
    },
  };
  const store = LocalStore.open(args.cacheDir);
  try {
    const blobs = new Map<string, string>();
    const learned = new History(store.kv('history'), args.root);
    const runner = new TargetRunner({
      root: args.root,
      cacheDir: args.cacheDir,
      store,
      signal: interrupts.signal,
      emit,
      planned,
      closure: (labels) => closure(plan, labels),
      inputs,
      learned,
      lastBuilds: new LastBuilds(store.kv('records'), args.root),
      remote: null,
      blobs,
    });
    // The results of unchanged targets that a moved target sees come from the plan, as the full build's lookups would.
    for (const p of moved.values()) {
      for (const d of p.target.rule.deps === 'direct' ? p.target.deps : closure(plan, p.target.deps)) {
        const i = plan.indexOf(d)!;
        if (!moved.has(i)) runner.results.set(d, plan.result(i));
      }
    }
    const stale: Planned[] = [];
    for (const p of moved.values()) {
      const found = store.lookup(p.key);
      if ('hit' in found && (await runner.restore(p, found.hit))) continue;
      if ('miss' in found && found.miss === 'corrupt') emit({ type: 'warning', message: found.warning });
      stale.push(p);
    }
    const total = plan.labels.length;
    emit({ type: 'plan', total, toBuild: stale.length, cached: total - stale.length });
    if (stale.length > 0) await openLedger(args.cacheDir, emit);
    store.expectActions(stale.length);
    const limits = { cpus: req.jobs ?? detectCores(), memory: detectMemory(), gpus };
    const outcome = await schedule(
      stale.map((p) => runner.job(p, 0)),
      limits,
      req.keepGoing,
      runner.run,
      interrupts.signal,
      'priority',
    );
    runner.flush();
    for (const [label, status] of outcome.outcomes) {
      if (status !== 'skipped') continue;
      const blocker = outcome.blockedBy.get(label) ?? null;
      const because = interrupts.signal.aborted ? 'interrupted' : blocker ? `dependency ${blocker} failed` : 'the build stopped after a failure';
      runner.report(planned.get(label)!, 'skipped', { error: because });
      emit({ type: 'skipped', label, key: planned.get(label)!.key, because });
    }
    const targets = [...moved].map(([i, p]) => runner.reports.get(p.target.label) ?? plan.stored(i).report);
    const report: BuildReport = {
      targets,
      unlisted: plan.labels.length - targets.length,
      ok: targets.every((t) => t.status === 'built' || t.status === 'cached'),
      interrupted: interrupts.signal.aborted,
      durationMs: Date.now() - startedMs,
      inputs,
      readStartNs,
      warned,
      blobs,
      planned: byLabel,
      results: runner.results,
      root: args.root,
      plugins: false,
    };
    // The blobs' fsyncs run while the snapshot is written; close waits for them and the index commit. A failure
    // shows there, where the batch is tried again. One turn of the event loop first, so that lmdb commits the
    // build's history and records now, on its own thread, rather than when the snapshot is written.
    store.flush().catch(() => undefined);
    await new Promise((resolve) => setImmediate(resolve));
    reporter.summary(report, false);
    // `incremental: true` tells scripts (and tests) that only what the changed files touch was looked at.
    if (everyTarget) {
      const all = everyTarget.map((t) => runner.reports.get(t.label as Label) ?? t);
      writeStdout(`${JSON.stringify({ ok: report.ok, durationMs: report.durationMs, targets: all, incremental: true }, null, 2)}\n`);
    }
    recordIncremental(req, plan, moved, changes, report, () => everyTarget ?? storedTargets(), cwd);
    if (report.interrupted) return 130;
    return report.ok ? 0 : 1;
  } finally {
    interrupts.dispose();
    await store.close();
  }
}

/** The labels and everything they depend on, dependencies first, from the plan's dependency lists. */
function closure(plan: StoredPlan, labels: Label[]): Label[] {
  const seen = new Set<number>();
  const visit = (i: number): void => {
    if (seen.has(i)) return;
    seen.add(i);
    for (const d of plan.depsOf(i)) visit(d);
  };
  for (const l of labels) visit(plan.indexOf(l)!);
  return [...seen].sort((a, b) => a - b).map((i) => plan.labels[i] as Label);
}

/**
 * Leaves the next snapshot and plan: the stored plan with the moved targets replaced. While few targets have moved
 * since the plan was last written in full, what changed goes into a delta beside it (engine/snapshot-delta.ts);
 * past a tenth of the plan, everything is written again.
 */
function recordIncremental(
  req: IncrementalRequest,
  plan: StoredPlan,
  moved: Map<number, Planned>,
  changes: Changes,
  report: BuildReport,
  storedTargets: () => TargetReport[] | null,
  cwd: string,
): void {
  if (!report.ok || report.interrupted || report.warned) return;
  const racy = new Map(req.check.snapshot.digests.map(([p, digest]) => [p, digest]));
  const digestOf = (f: string): string | undefined => changes.digests.get(f) ?? racy.get(f);
  const entries = new Map<number, PlanEntry>();
  const reports = new Map(report.targets.map((t) => [t.label, t]));
  for (const [i, p] of moved) {
    const result = report.results.get(p.target.label);
    const entry = result ? storeTarget(p, result, asCached(reports.get(p.target.label)!)) : null;
    if (entry === null) return;
    entries.set(i, entry);
  }
  const replaced = new Set([...plan.replaced.keys(), ...entries.keys()]);
  if (replaced.size <= Math.max(MIN_DELTA, plan.labels.length / 10)) {
    recordDelta(report, req.args, {
      previous: req.check.snapshot,
      delta: plan.delta,
      base: plan.base,
      before: new Map([...moved.keys()].map((i) => [plan.labels[i]!, plan.stored(i).report])),
      plan: entries,
      digestOf,
      changed: changes.stats,
      changedDirs: changes.dirStats,
      fileAt: req.check.fileAt,
      dirAt: req.check.dirAt,
    });
    return;
  }
  const all = storedTargets();
  if (all === null) return; // no snapshot: the next build takes the full path
  const full: BuildReport = { ...report, targets: all.map((t) => reports.get(t.label) ?? t), unlisted: 0 };
  // Unchanged targets' outputs are where the last snapshot left them: the output folders' stats vouched for them.
  const rebuilt = new Set(report.blobs.keys());
  const outputs = new Map<string, OutputEntry>();
  for (const entry of snapshotOutputs(req.check.file, req.check.snapshot) ?? []) if (!rebuilt.has(entry[0])) outputs.set(entry[0], entry);
  recordNoop(full, req.args, cwd, {
    outputs,
    digestOf,
    plan: {
      depsOf: (l) => plan.depsOf(plan.indexOf(l)!).map((d) => plan.labels[d]!),
      entry: (l) => {
        const i = plan.indexOf(l)!;
        return entries.get(i) ?? plan.entry(i);
      },
      sourceOf: (l) => plan.sourceOf(plan.indexOf(l)!),
    },
  });
}
