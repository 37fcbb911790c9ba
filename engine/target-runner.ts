// What happens to one planned target once its key is known: restored from a cache hit, or run under a grant (with
// the out-of-memory retry), then materialized into wg-out and remembered for `wg explain` and the next build.
// Shared by the full build and the incremental path, so both leave exactly the same traces behind.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ActionResult, LocalStore } from '../cache/local-store.js';
import type { TieredCache } from '../cache/tiered-cache.js';
import type { Planned, TargetReport } from './build.js';
import type { Listener } from './events.js';
import { ActionFailure, executeAction } from './executor.js';
import type { History } from './history.js';
import { inputCheck } from './input-check.js';
import type { InputSet } from './inputs.js';
import type { Label } from './label.js';
import type { LastBuilds, PlannedLookup } from './last-build.js';
import { logPath, OUT_DIR, outputPath } from './outputs.js';
import { removeFile } from './remove-file.js';
import { Sandboxes } from './sandbox.js';
import type { Grant, Job } from './scheduler.js';

export interface RunnerOptions {
  root: string;
  cacheDir: string;
  store: LocalStore;
  signal: AbortSignal;
  emit: Listener;
  planned: PlannedLookup;
  /** The given labels and everything they depend on, dependencies first. */
  closure: (labels: Label[]) => Label[];
  inputs: InputSet;
  learned: History;
  lastBuilds: LastBuilds;
  remote: TieredCache | null;
  /** Each file put into wg-out, with the CAS blob it came from (BuildReport.blobs). */
  blobs: Map<string, string>;
}

/**
 * Completed targets between two commits of what they left to remember. Committed all at the end, the records of a
 * cold 1000-target build (~4 LMDB entries a target) were 0.2-0.3 s of the main thread after the last action, with
 * the other core idle; in batches, all but the last one's cost falls while actions still run.
 */
const RECORD_EVERY = 128;

/** The wheels and files of a report that has none: shared, never written to (a report's lists are replaced, not pushed to). */
const NO_FILES: string[] = [];

/** A target's line in the build report: nothing in wg-out yet, unless `extra` says so. */
export function targetReport(p: Planned, status: TargetReport['status'], extra: Partial<TargetReport> = {}): TargetReport {
  return { label: p.target.label, key: p.key, status, wheels: NO_FILES, files: NO_FILES, log: null, durationMs: null, error: null, ...extra };
}

export class TargetRunner {
  readonly results = new Map<Label, ActionResult>();
  readonly reports = new Map<Label, TargetReport>();
  private readonly wgOut: string;
  private readonly sandboxes: Sandboxes;
  private readonly materialized = new Map<string, Label>();
  /** Written only when they changed, in one transaction a batch: a synchronous commit per cached target would dominate a quiet build. */
  private readonly outputsToRecord = new Map<string, unknown>();
  private sinceCommit = 0;

  constructor(private readonly o: RunnerOptions) {
    this.wgOut = path.join(o.root, OUT_DIR);
    this.sandboxes = new Sandboxes(path.join(o.cacheDir, 'sandbox'), path.join(o.cacheDir, 'sandbox-kept'));
  }

  report(p: Planned, status: TargetReport['status'], extra: Partial<TargetReport> = {}): TargetReport {
    const r = targetReport(p, status, extra);
    this.reports.set(p.target.label, r);
    return r;
  }

  // What each label last put into this workspace's wg-out, so a rebuild that fails can take the stale files away:
  // the wheelhouse must never offer a wheel that the current BUILD.yaml does not produce.
  private historyId(label: Label): string {
    return `outputs:${this.o.root}:${label}`;
  }

  private remember(p: Planned, files: { wheels: string[]; files: string[] }): void {
    const entry = { key: p.key, files: [...files.wheels, ...files.files] };
    const last = this.o.store.kv('history').get(this.historyId(p.target.label)) as { key?: unknown; files?: unknown } | undefined;
    if (last?.key === entry.key && JSON.stringify(last.files) === JSON.stringify(entry.files)) return;
    this.outputsToRecord.set(this.historyId(p.target.label), entry);
  }

  private forgetOutputs(label: Label): void {
    const last = this.o.store.kv('history').get(this.historyId(label)) as { files?: unknown } | undefined;
    if (!last || !Array.isArray(last.files)) return;
    for (const f of last.files) {
      if (typeof f !== 'string' || !f.startsWith(this.wgOut + path.sep)) continue;
      const owner = this.materialized.get(f);
      if (owner === undefined || owner === label) removeFile(f);
    }
  }

  private async materialize(p: Planned, result: ActionResult): Promise<{ wheels: string[]; files: string[]; log: string }> {
    const out = { wheels: [] as string[], files: [] as string[], log: logPath(this.wgOut, p.target.label) };
    for (const o of result.outputs) {
      const dest = outputPath(this.wgOut, p.target.label, p.toolchain?.facts ?? null, o);
      const previous = this.materialized.get(dest);
      if (previous !== undefined && previous !== p.target.label) {
        this.o.emit({ type: 'warning', message: `${p.target.label} and ${previous} both produce ${path.relative(this.o.root, dest)}; the later one wins` });
      }
      this.materialized.set(dest, p.target.label);
      await this.o.store.materialize(o.digest, dest, o.mode);
      this.o.blobs.set(dest, this.o.store.blobPath(o.digest));
      (o.kind === 'wheel' ? out.wheels : out.files).push(dest);
    }
    // The log is put in place by the executor (built) or by the caller (cached); either way it is this blob.
    this.o.blobs.set(out.log, this.o.store.blobPath(result.log.digest));
    return out;
  }

  /** Puts a cache hit in place; false (after a warning) when it cannot be, and the target must be built. */
  async restore(p: Planned, hit: ActionResult): Promise<boolean> {
    try {
      const files = await this.materialize(p, hit);
      await this.o.store.materialize(hit.log.digest, files.log, 0o444);
      this.results.set(p.target.label, hit);
      this.remember(p, files);
      this.o.lastBuilds.remember(p, this.o.planned);
      this.commitEvery();
      this.report(p, 'cached', files);
      this.o.emit({ type: 'cached', label: p.target.label, key: p.key });
      return true;
    } catch (e) {
      // A blob damaged between lookup and restore (or a wg-out folder we cannot write into for this file)
      // makes the hit unusable; building it again is always correct.
      this.o.emit({ type: 'warning', message: `cannot restore the cached result of ${p.target.label} (${(e as Error).message}); rebuilding` });
      this.results.delete(p.target.label);
      return false;
    }
  }

  /** The scheduler's job runner: builds the job's target and puts its outputs in place. */
  readonly run = async (job: Job, grant: Grant): Promise<'ok' | 'failed'> => {
    const { emit, store, learned, signal } = this.o;
    const p = this.o.planned.get(job.label)!;
    const log = logPath(this.wgOut, job.label);
    emit({ type: 'started', label: job.label, key: p.key, mnemonic: p.plan.mnemonic, cpus: grant.cpus, gpus: grant.gpus, deps: p.target.deps, logPath: log });
    removeFile(log);
    this.forgetOutputs(job.label);
    const t0 = Date.now();
    // Stats from before the key's inputs were read, compared again before the result is stored.
    const verifyInputs = inputCheck(p, this.o.inputs, this.o.root);
    try {
      const seen = p.target.rule.deps === 'direct' ? p.target.deps : this.o.closure(p.target.deps);
      const deps = seen.map((l) => ({ label: l as string, result: this.results.get(l)! }));
      const nvccThreads = p.target.resources.nvccThreads;
      const remembered = learned.target(job.label)?.maxJobs ?? Infinity;
      let maxJobs = Math.max(1, Math.min(remembered, Math.floor(grant.cpus / Math.max(1, nvccThreads))));
      let result: ActionResult;
      for (let attempt = 1; ; attempt++) {
        const usage = { peakBytes: 0 };
        const tAttempt = Date.now();
        try {
          result = await executeAction(
            {
              label: job.label,
              key: p.key,
              plan: p.plan,
              record: p.record,
              source: p.remoteSource ?? p.source,
              patches: p.target.patches.map((name) => ({ name, file: path.resolve(this.o.root, name) })),
              env: p.target.env,
              passEnv: passedValues(p.target.passEnv, process.env),
              secrets: p.target.secretEnv.map((name) => ({ name, value: process.env[name] ?? '' })),
              toolchain: p.toolchain,
              deps,
              maxJobs,
              nvccThreads,
              timeoutMs: p.target.resources.timeoutMs,
            },
            grant,
            { store, sandboxes: this.sandboxes, logPath: log, signal, usage, appendLog: attempt > 1, verifyInputs },
          );
          learned.recordBuild(job.label, p.target.rule.kind, Date.now() - tAttempt, usage.peakBytes);
          break;
        } catch (e) {
          if (!(e instanceof ActionFailure) || e.reason !== 'out-of-memory' || signal.aborted || maxJobs === 1) throw e;
          // Remembered even if the retry fails too: the next build starts lower still.
          const lower = Math.max(1, Math.floor(maxJobs / 2));
          learned.lowerMaxJobs(job.label, lower);
          if (attempt > 1) throw e;
          emit({ type: 'retrying', label: job.label, key: p.key, reason: 'out-of-memory', message: e.message, fromJobs: maxJobs, toJobs: lower });
          maxJobs = lower;
        }
      }
      this.results.set(job.label, result);
      this.o.remote?.upload(result);
      const files = await this.materialize(p, result);
      this.remember(p, files);
      this.o.lastBuilds.remember(p, this.o.planned);
      this.commitEvery();
      this.report(p, 'built', { ...files, durationMs: Date.now() - t0 });
      emit({ type: 'built', label: job.label, key: p.key, durationMs: Date.now() - t0 });
      return 'ok';
    } catch (e) {
      const failure = e instanceof ActionFailure ? e : new ActionFailure('setup-failed', (e as Error).message);
      if (failure.reason === 'interrupted') {
        this.report(p, 'interrupted', { log, error: 'interrupted', durationMs: Date.now() - t0 });
        emit({ type: 'interrupted', label: job.label, key: p.key });
        return 'failed';
      }
      this.report(p, 'failed', { log, error: failure.message, durationMs: Date.now() - t0 });
      emit({ type: 'failed', label: job.label, key: p.key, reason: failure.reason, message: failure.message, logPath: log, logTail: tail(log, 20) });
      return 'failed';
    }
  };

  /** The scheduler's job for a stale target: its declared resources, corrected by what earlier builds learned. */
  job(p: Planned, priority: number): Job {
    const declared = p.target.resources;
    const h = this.o.learned.target(p.target.label);
    return {
      label: p.target.label,
      deps: p.target.deps,
      resources: {
        // A MAX_JOBS lowered after running out of memory frees the cpu slots it no longer uses.
        cpus: h?.maxJobs !== undefined ? Math.min(declared.cpus, h.maxJobs * Math.max(1, declared.nvccThreads)) : declared.cpus,
        // What the build really took last time wins over a smaller declaration.
        memory: Math.max(declared.memory, h?.peakBytes ?? 0),
        gpus: declared.gpus,
      },
      priority,
    };
  }

  private commitEvery(): void {
    if (++this.sinceCommit < RECORD_EVERY) return;
    this.commit();
  }

  /** Commits what the targets left to remember so far, in one transaction per store. */
  private commit(): void {
    this.sinceCommit = 0;
    this.o.lastBuilds.flush();
    this.o.learned.flush();
    if (this.outputsToRecord.size > 0) this.o.store.kv('history').putMany([...this.outputsToRecord]);
    this.outputsToRecord.clear();
  }

  /** Commits what the targets left to remember; removes the idle sandboxes. */
  flush(): void {
    this.sandboxes.close();
    this.commit();
  }
}

/** The `pass_env` names that wg's environment sets, with their values (an unset one is not passed at all). */
function passedValues(names: readonly string[], env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) if (env[n] !== undefined) out[n] = env[n]!;
  return out;
}

function tail(file: string, lines: number): string[] {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines);
  } catch {
    return [];
  }
}
