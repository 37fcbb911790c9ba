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

    const skipDependents = (failed: Label): void => {
      let changed = true;
      while (changed) {
        changed = false;
        for (const label of waiting) {
          const job = byLabel.get(label)!;
          const bad = job.deps.find((d) => outcomes.get(d) === 'failed' || outcomes.get(d) === 'skipped');
          if (bad !== undefined) {
            waiting.delete(label);
            outcomes.set(label, 'skipped');
            blockedBy.set(label, blockedBy.get(bad) ?? (outcomes.get(bad) === 'failed' ? bad : failed));
            changed = true;
          }
        }
      }
    };

    const pump = (): void => {
      if (stopSignal.aborted) stopped = true;
      if (!stopped) {
        const ready = [...waiting]
          .map((l) => byLabel.get(l)!)
          .filter((j) => j.deps.every((d) => outcomes.get(d) === 'ok' || !byLabel.has(d)));
        for (const j of ready) if (!readySeq.has(j.label)) readySeq.set(j.label, readySeq.size);
        const seq = (j: Job): number => readySeq.get(j.label)!;
        ready.sort(order === 'fifo' ? (a, b) => seq(a) - seq(b) : (a, b) => b.priority - a.priority || seq(a) - seq(b));
        for (const job of ready) {
          const want = clampToLimits(job.resources, limits);
          const memoryFits = limits.memory === 0 || want.memory <= freeMemory;
          if (want.cpus > freeCpus || !memoryFits || want.gpus > freeGpus.length) continue;
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
                if (!keepGoing) stopped = true;
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
