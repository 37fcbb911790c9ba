// Turns a finished build into the no-op snapshot of engine/noop-snapshot.ts: what the next identical `wg build`
// would print if nothing changed, and every path whose stat says whether something did.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BuildReport, Planned, TargetReport } from './build.js';
import type { Label } from './label.js';
import { statTuple, type StatTuple } from './inputs.js';
import {
  argsId,
  argsKey,
  envHash,
  fingerprint,
  newBuildId,
  SNAPSHOT_VERSION,
  writeFullCompanions,
  writeSnapshot,
  type OutputEntry,
  type RacyCandidates,
  type Snapshot,
  type SnapshotArgs,
  type SnapshotOutputs,
} from './noop-snapshot.js';
import { eventLines, summaryLines } from './report.js';
import { writeDelta, type SnapshotDelta } from './snapshot-delta.js';
import { planPath, storeTarget, writePlan, type PlanEntry, type PlanSource } from './stored-plan.js';

/** Env variables that switch on work a no-op would skip (a remote cache to talk to): their values are part of it. */
const ALWAYS_WATCHED_ENV = ['WG_REMOTE_CACHE', 'WG_REMOTE_UPLOAD', 'WG_REMOTE_TOKEN'];

/** Why the build cannot be replayed by a no-op (null when it can). */
function notReplayable(report: BuildReport): string | null {
  if (!report.ok || report.interrupted) return 'the build did not succeed';
  if (report.warned) return 'the build showed warnings';
  if (report.remote) return 'a remote cache is configured';
  return report.inputs.volatileReason ?? null;
}

/** A target's report as a no-op shows it. */
export function asCached(t: TargetReport): TargetReport {
  return { ...t, status: 'cached', durationMs: null, error: null };
}

function filesOf(t: TargetReport): string[] {
  return [...t.wheels, ...t.files, ...(t.log ? [t.log] : [])];
}

/** The snapshot entry of an output the build just wrote or restored; a string says why there is none. */
function outputEntry(report: BuildReport, f: string): OutputEntry | string {
  const own = fingerprint(f);
  if (!own) return `${f} is missing`;
  const blob = report.blobs.get(f);
  const fp = blob === undefined ? null : fingerprint(blob);
  if (blob === undefined || fp === null) return `the cache holds no blob for ${f}`;
  return [f, ...own, blob, ...fp];
}

/** A snapshot's inputs: every file and folder read, with its stat from before the read. */
interface InputLists {
  files: [string, StatTuple | null][];
  dirs: [string, StatTuple | null][];
}

function newSnapshot(report: BuildReport, args: SnapshotArgs, lines: string[], folders: Iterable<string>, inputs: InputLists): Snapshot {
  const envNames = [...new Set([...report.inputs.envNames, ...ALWAYS_WATCHED_ENV])].sort();
  return {
    v: SNAPSHOT_VERSION,
    args: argsKey(args),
    argsId: argsId(args),
    build: newBuildId(),
    envNames,
    envHash: envHash(envNames),
    files: inputs.files,
    digests: [],
    dirs: inputs.dirs,
    racyBound: '',
    outputDirs: [...folders].sort().map((d): [string, StatTuple] => [d, statTuple(fs.statSync(d, { bigint: true }))]),
    lines,
  };
}

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
    outputs?: ReadonlyMap<string, OutputEntry>;
  } = {},
): string | null {
  const not = notReplayable(report);
  if (not !== null) return not;
  const n = report.targets.length;
  const cached = report.targets.map(asCached);
  const noop: BuildReport = { ...report, targets: cached, durationMs: 0 };
  const lines = [
    ...eventLines({ type: 'plan', total: n, toBuild: 0, cached: n }, cwd),
    ...summaryLines(noop, false, []).map((l) => l.replace(/ in 0\.0s$/, ' in {seconds}s')),
  ];
  const folders = new Set<string>();
  const outputs: SnapshotOutputs = [];
  for (const t of report.targets) {
    for (const f of filesOf(t)) {
      folders.add(path.dirname(f));
      const entry = known.outputs?.get(f) ?? outputEntry(report, f);
      if (typeof entry === 'string') return entry;
      outputs.push(entry);
    }
  }
  // In the order the build read them: the check stats every entry, so no order lets it stop sooner.
  const snapshot = newSnapshot(report, args, lines, folders, { files: [...report.inputs.files], dirs: [...report.inputs.dirs] });
  const labels = report.targets.map((t) => t.label as string);
  const planned = (l: string): Planned => report.planned.get(l as Label)!;
  const cachedOf = new Map(cached.map((t) => [t.label as string, t]));
  const plan: PlanSource = known.plan ?? {
    depsOf: (l) => planned(l).target.deps,
    entry: (l) => storeTarget(planned(l), report.results.get(l as Label)!, cachedOf.get(l)!),
    sourceOf: (l) => ({ root: planned(l).source?.root ?? '', patches: planned(l).target.patches.map((f) => path.resolve(args.root, f)) }),
  };
  return writeSnapshot(snapshot, args, report.readStartNs, known.digestOf ?? digestsOf(report), (file) => {
    writeFullCompanions(file, snapshot, outputs, { ok: true, durationMs: 0, targets: cached });
    // Plugins' hooks run only on the full path, so no plan is stored for them. Without a plan the snapshot still
    // answers no-ops; changed inputs then take the full path.
    if (!report.plugins) writePlan(planPath(file), snapshot.argsId, snapshot.build, labels, plan);
  });
}

/** What an incremental build knows when it records its snapshot as a delta (engine/snapshot-delta.ts). */
export interface DeltaSource {
  /** The snapshot the build started from. */
  previous: Snapshot;
  /** The delta that completed it, if any: its changes are carried over. */
  delta: SnapshotDelta | null;
  /** The build id of the full companion files. */
  base: string;
  /** The rebuilt or re-keyed targets' reports before this build (for the outputs they leave behind). */
  before: ReadonlyMap<string, TargetReport>;
  /** The re-keyed targets' plan entries, by index. */
  plan: Map<number, PlanEntry>;
  digestOf: (file: string) => string | undefined;
  /** The files this build read because they changed, with their new stats. */
  changed: ReadonlyMap<string, StatTuple>;
  /** The folders whose stat changed (their listing did not), with their new stats. */
  changedDirs: ReadonlyMap<string, StatTuple | null>;
  /** Where each changed file and folder is in the previous snapshot's lists. */
  fileAt: ReadonlyMap<string, number>;
  dirAt: ReadonlyMap<string, number>;
}

/**
 * Writes the snapshot of an incremental build whose targets are those of the snapshot it started from, with only
 * the re-keyed ones changed: the outputs list, --json document and plan get a delta instead of a rewrite.
 */
export function recordDelta(report: BuildReport, args: SnapshotArgs, source: DeltaSource): string | null {
  const not = notReplayable(report);
  if (not !== null) return not;
  const outputs = new Map(source.delta?.outputs ?? []);
  const targets = new Map(source.delta?.targets ?? []);
  const folders = new Set(source.previous.outputDirs.map(([d]) => d));
  for (const t of report.targets) {
    const old = source.before.get(t.label);
    if (old === undefined) continue;
    const now = filesOf(t);
    for (const f of filesOf(old)) if (!now.includes(f)) outputs.set(f, null);
    for (const f of now) {
      const entry = outputEntry(report, f);
      if (typeof entry === 'string') return entry;
      outputs.set(f, entry);
      folders.add(path.dirname(f));
    }
    targets.set(t.label, asCached(t));
  }
  const plan = new Map((source.delta?.plan ?? []).map(([i, key, bytes]) => [i, [i, key, bytes] as [number, string, string]]));
  for (const [i, e] of source.plan) plan.set(i, [i, e.key, Buffer.from(e.bytes).toString('base64')]);
  // The build's inputs are the last snapshot's lists, copied, with the changed entries replaced where the check
  // found them: made from the build's InputSet (a map of those same lists) they cost two thousand entries' copies,
  // sorts and racy checks at 1000 targets, each a turn of cold JavaScript. Only the changed entries, and the
  // unchanged ones racy last time, can be racy.
  const since: RacyCandidates = {
    bound: source.previous.racyBound,
    files: [],
    dirs: [],
    carried: source.previous.digests.filter(([p]) => !source.changed.has(p)),
  };
  const files = source.previous.files.slice();
  for (const [f, now] of source.changed) {
    const i = source.fileAt.get(f);
    if (i === undefined || files[i]?.[0] !== f) return `${f} is not where the last snapshot has it`;
    since.files.push((files[i] = [f, now]));
  }
  const dirs = source.previous.dirs.slice();
  for (const [d, now] of source.changedDirs) {
    const i = source.dirAt.get(d);
    if (i === undefined || dirs[i]?.[0] !== d) return `${d} is not where the last snapshot has it`;
    since.dirs.push((dirs[i] = [d, now]));
  }
  const snapshot = newSnapshot(report, args, source.previous.lines, folders, { files, dirs });
  return writeSnapshot(
    snapshot,
    args,
    report.readStartNs,
    source.digestOf,
    (file) => writeDelta(file, { id: snapshot.argsId, base: source.base, build: snapshot.build, outputs: [...outputs], targets: [...targets], plan: [...plan.values()] }),
    since,
  );
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

