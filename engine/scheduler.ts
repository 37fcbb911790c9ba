// Resource-aware dispatch: an action starts when its dependencies succeeded and its cpu slots, memory and GPUs are
// free, highest priority (longest remaining critical path) first. p-queue's one concurrency counter cannot express
// "2 cpus + 1 GPU + 8 GiB", so admission is decided here and p-queue only bounds plain I/O work elsewhere.

import type { Label } from './label.js';
import type { Resources } from './load.js';

export interface Limits {
  cpus: number;
  /** Bytes; 0 means unlimited. */
  memory: number;
  /** Device ids of the GPU slots. */
  gpus: number[];
}

export interface Grant {
  cpus: number;
  memory: number;
  gpus: number[];
}

export interface Job {
  label: Label;
  deps: Label[];
  /** What the job holds while it runs: cpu slots, memory (bytes) and GPU devices. */
  resources: Pick<Resources, 'cpus' | 'memory' | 'gpus'>;
  /** Higher runs first among ready jobs (wg gives the remaining critical path in milliseconds). */
  priority: number;
}

/**
 * `priority`: highest priority first, then the order jobs became ready. `fifo`: only the order jobs became ready
 * (then the order of `jobs`), ignoring priorities: the baseline the scheduling benchmark compares with.
 */
export type ScheduleOrder = 'priority' | 'fifo';

export type JobOutcome = 'ok' | 'failed';

export interface ScheduleResult {
  outcomes: Map<Label, JobOutcome | 'skipped'>;
  /** For skipped jobs: the failed dependency that blocked them, or null when the build stopped early. */
  blockedBy: Map<Label, Label | null>;
}

/** What a job would be granted on an idle machine: demands above the limits are clamped so the job can run alone. */
export function clampToLimits(resources: Job['resources'], limits: Limits): Job['resources'] {
  return {
    cpus: Math.min(resources.cpus, limits.cpus),
    memory: limits.memory > 0 ? Math.min(resources.memory, limits.memory) : resources.memory,
    gpus: resources.gpus,
  };
}

export async function schedule(
  jobs: Job[],
  limits: Limits,
  keepGoing: boolean,
  run: (job: Job, grant: Grant) => Promise<JobOutcome>,
  stopSignal: AbortSignal,
  order: ScheduleOrder = 'priority',
): Promise<ScheduleResult> {
  const byLabel = new Map(jobs.map((j) => [j.label, j]));
  const outcomes = new Map<Label, JobOutcome | 'skipped'>();
  const blockedBy = new Map<Label, Label | null>();
  const waiting = new Set(jobs.map((j) => j.label));
  let freeCpus = limits.cpus;
  let freeMemory = limits.memory;
  const freeGpus = [...limits.gpus];
  let running = 0;
  let stopped = false;
  /** When each job became ready, in sequence: FIFO order, and the tie-break of equal priorities. */
  const readySeq = new Map<Label, number>();
  // Readiness is kept incrementally (unfinished dependencies per job, dependents per job) and the ready jobs in
  // dispatch order, so each finished job costs work in proportion to its dependents, not to the whole graph:
  // a 10,000-target build would otherwise rescan every waiting job after every action.
  const unfinished = new Map<Label, number>();
  const dependents = new Map<Label, Label[]>();
  for (const job of jobs) {
    const inside = [...new Set(job.deps)].filter((d) => byLabel.has(d));
    unfinished.set(job.label, inside.length);
    for (const d of inside) dependents.set(d, [...(dependents.get(d) ?? []), job.label]);
  }
  const ready: Job[] = [];
  const before = (a: Job, b: Job): boolean => {
    const sa = readySeq.get(a.label)!;
    const sb = readySeq.get(b.label)!;
    return order === 'fifo' ? sa < sb : a.priority > b.priority || (a.priority === b.priority && sa < sb);
  };
  const makeReady = (job: Job): void => {
    readySeq.set(job.label, readySeq.size);
    let lo = 0;
    let hi = ready.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(ready[mid]!, job)) lo = mid + 1;
      else hi = mid;
    }
    ready.splice(lo, 0, job);
  };
  for (const job of jobs) if (unfinished.get(job.label) === 0) makeReady(job);

  return new Promise((resolve) => {
    const finishIfDone = (): void => {
      if (running > 0) return;
      for (const label of waiting) {
        outcomes.set(label, 'skipped');
        if (!blockedBy.has(label)) blockedBy.set(label, null);
      }
      waiting.clear();
      resolve({ outcomes, blockedBy });
    };

    /** Marks everything that depends on `failed` (directly or not) as skipped, blamed on the failed job. */
    const skipDependents = (failed: Label): void => {
      const queue = [failed];
      while (queue.length > 0) {
        const from = queue.pop()!;
        for (const label of dependents.get(from) ?? []) {
          if (!waiting.has(label)) continue;
          waiting.delete(label);
          outcomes.set(label, 'skipped');
          blockedBy.set(label, blockedBy.get(from) ?? (outcomes.get(from) === 'failed' ? from : failed));
          queue.push(label);
        }
      }
    };

    const pump = (): void => {
      if (stopSignal.aborted) stopped = true;
      if (!stopped) {
        for (let i = 0; i < ready.length && freeCpus > 0; ) {
          const job = ready[i]!;
          const want = clampToLimits(job.resources, limits);
          const memoryFits = limits.memory === 0 || want.memory <= freeMemory;
          if (want.cpus > freeCpus || !memoryFits || want.gpus > freeGpus.length) {
            i++;
            continue;
          }
          ready.splice(i, 1);
          const grant: Grant = { cpus: want.cpus, memory: want.memory, gpus: freeGpus.splice(0, want.gpus) };
          freeCpus -= grant.cpus;
          if (limits.memory > 0) freeMemory -= grant.memory;
          waiting.delete(job.label);
          running++;
          void run(job, grant)
            .catch((): JobOutcome => 'failed')
            .then((outcome) => {
              running--;
              freeCpus += grant.cpus;
              if (limits.memory > 0) freeMemory += grant.memory;
              freeGpus.push(...grant.gpus);
              freeGpus.sort((a, b) => a - b);
              outcomes.set(job.label, outcome);
              if (outcome === 'failed') {
                skipDependents(job.label);
                for (let k = ready.length - 1; k >= 0; k--) if (!waiting.has(ready[k]!.label)) ready.splice(k, 1);
                if (!keepGoing) stopped = true;
              } else {
                for (const d of dependents.get(job.label) ?? []) {
                  const left = unfinished.get(d)! - 1;
                  unfinished.set(d, left);
                  if (left === 0 && waiting.has(d)) makeReady(byLabel.get(d)!);
                }
              }
              pump();
            });
        }
      }
      finishIfDone();
    };
    stopSignal.addEventListener('abort', () => pump(), { once: true });
    pump();
  });
}
