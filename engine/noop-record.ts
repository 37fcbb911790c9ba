// Turns a finished build into the no-op snapshot of engine/noop-snapshot.ts: what the next identical `wg build`
// would print if nothing changed, and every path whose stat says whether something did.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BuildReport, Planned } from './build.js';
import type { Label } from './label.js';
import { statTuple, type StatTuple } from './inputs.js';
import { argsId, blobStat, envHash, newBuildId, SNAPSHOT_VERSION, snapshotPath, writeSnapshot, type Snapshot, type SnapshotArgs, type SnapshotOutputs } from './noop-snapshot.js';
import { eventLines, summaryLines } from './report.js';
import { planPath, storeTarget, writePlan, type PlanSource } from './stored-plan.js';

/** Env variables that switch on work a no-op would skip (a remote cache to talk to): their values are part of it. */
const ALWAYS_WATCHED_ENV = ['WG_REMOTE_CACHE', 'WG_REMOTE_UPLOAD', 'WG_REMOTE_TOKEN'];

/**
 * Writes the snapshot when the build can be replayed: every target built or cached, nothing interrupted, no
 * warning that a replay would hide, no remote cache, and no input that a stat cannot vouch for (a branch).
 * Returns why it was not written, or null.
 */
export function recordNoop(
  report: BuildReport,
  args: SnapshotArgs,
  cwd: string,
  /** The incremental path's own answers: stored plan entries and digests it already has. */
  known: {
    plan?: PlanSource;
    digestOf?: (file: string) => string | undefined;
    /** Outputs the last snapshot recorded and nothing has touched since: their entries are reused, not stat-ed. */
    outputs?: ReadonlyMap<string, SnapshotOutputs[number]>;
  } = {},
): string | null {
  if (!report.ok || report.interrupted) return 'the build did not succeed';
  if (report.warned) return 'the build showed warnings';
  if (report.remote) return 'a remote cache is configured';
  if (report.inputs.volatileReason) return report.inputs.volatileReason;
  const n = report.targets.length;
  const cached = report.targets.map((t) => ({ ...t, status: 'cached' as const, durationMs: null, error: null }));
  const noop: BuildReport = { ...report, targets: cached, durationMs: 0 };
  const lines = [
    ...eventLines({ type: 'plan', total: n, toBuild: 0, cached: n }, cwd),
    ...summaryLines(noop, false, []).map((l) => l.replace(/ in 0\.0s$/, ' in {seconds}s')),
  ];
  const folders = new Set<string>();
  const outputs: SnapshotOutputs = [];
  for (const t of report.targets) {
    for (const f of [...t.wheels, ...t.files, ...(t.log ? [t.log] : [])]) {
      folders.add(path.dirname(f));
      const reused = known.outputs?.get(f);
      if (reused !== undefined) {
        outputs.push(reused);
        continue;
      }
      const st = fs.statSync(f, { bigint: true, throwIfNoEntry: false });
      if (!st) return `${f} is missing`;
      const blob = report.blobs.get(f);
      const fp = blob === undefined ? null : blobStat(blob);
      if (blob === undefined || fp === null) return `the cache holds no blob for ${f}`;
      outputs.push([f, statTuple(st), blob, fp]);
    }
  }
  const outputDirs = [...folders].sort().map((d): [string, StatTuple] => [d, statTuple(fs.statSync(d, { bigint: true }))]);
  const envNames = [...new Set([...report.inputs.envNames, ...ALWAYS_WATCHED_ENV])].sort();
  const snapshot: Snapshot = {
    v: SNAPSHOT_VERSION,
    argsId: argsId(args),
    build: newBuildId(),
    envNames,
    envHash: envHash(envNames),
    files: newestFirst([...report.inputs.files]),
    digests: [],
    dirs: newestFirst([...report.inputs.dirs]),
    outputDirs,
    lines,
  };
  const why = writeSnapshot(snapshot, outputs, { ok: true, durationMs: 0, targets: cached }, args, report.readStartNs, known.digestOf ?? digestsOf(report));
  // Plugins' hooks run only on the full path, so no plan is stored for them.
  if (why !== null || report.plugins) return why;
  const labels = report.targets.map((t) => t.label as string);
  const planned = (l: string): Planned => report.planned.get(l as Label)!;
  const plan: PlanSource = known.plan ?? {
    depsOf: (l) => planned(l).target.deps,
    entry: (l) => storeTarget(planned(l), report.results.get(l as Label)!),
    sourceOf: (l) => ({ root: planned(l).source?.root ?? '', patches: planned(l).target.patches.map((f) => path.resolve(args.root, f)) }),
  };
  // Without a plan the snapshot still answers no-ops; changed inputs then take the full path.
  writePlan(planPath(snapshotPath(args.cacheDir, args.root)), snapshot.argsId, snapshot.build, labels, plan);
  return null;
}

/** The digests the build's keys used for source files and patches, by absolute path. */
function digestsOf(report: BuildReport): (file: string) => string | undefined {
  let map: Map<string, string> | null = null;
  return (file) => {
    if (map === null) {
      map = new Map();
      for (const p of report.planned.values()) {
        if (p.source) for (const e of p.source.entries) if (e.type === 'file') map.set(path.join(p.source.root, e.path), e.content);
        for (const patch of p.record.patches) map.set(path.resolve(report.root, patch.path), patch.digest);
      }
    }
    return map.get(file);
  };
}

/**
 * The most recently modified first: in an edit loop the file edited last is the likeliest to change again, and a
 * check that meets it first falls through to the full path without stat-ing every other input on the way.
 */
function newestFirst(entries: [string, StatTuple | null][]): [string, StatTuple | null][] {
  const mtime = (st: StatTuple | null): bigint => (st === null ? -1n : BigInt(st[1]));
  return entries.sort((a, b) => {
    const d = mtime(b[1]) - mtime(a[1]);
    return d > 0n ? 1 : d < 0n ? -1 : 0;
  });
}
