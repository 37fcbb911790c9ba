// Resource-aware dispatch of ready actions: an action starts only when its dependencies succeeded and its cpu
// slots, memory and GPU devices are free. p-queue's single concurrency counter cannot express "2 cpus + 1 GPU +
// 8 GiB", so admission is decided here and p-queue is left to bound plain I/O work elsewhere.

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
  resources: Resources;
  /** Higher runs first among ready jobs. */
  priority: number;
}

export type JobOutcome = 'ok' | 'failed';

export interface ScheduleResult {
  outcomes: Map<Label, JobOutcome | 'skipped'>;
  /** For skipped jobs: the failed dependency that blocked them, or null when the build stopped early. */
  blockedBy: Map<Label, Label | null>;
}

/** What a job would be granted on an idle machine: demands above the limits are clamped so the job can run alone. */
export function clampToLimits(resources: Resources, limits: Limits): Resources {
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
          .filter((j) => j.deps.every((d) => outcomes.get(d) === 'ok' || !byLabel.has(d)))
          .sort((a, b) => b.priority - a.priority || (a.label < b.label ? -1 : 1));
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
