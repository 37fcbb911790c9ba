// What earlier builds taught about each target: its duration, its process tree's peak memory, and the MAX_JOBS it
// was lowered to after running out of memory. Kept in the cache's `history` table per workspace and label (not per
// action key: a changed target's next build is the one that needs it), written once per build in one transaction.

import type { Kv } from '../cache/local-store.js';
import type { Label } from './label.js';

/** What one target's last successful build measured. */
export interface TargetHistory {
  durationMs: number;
  /** Peak resident memory of the action's process groups summed, in bytes; 0 when never measured. */
  peakBytes: number;
  /** MAX_JOBS lowered after an out-of-memory failure; absent while none happened. */
  maxJobs?: number;
}

/** The running mean of the durations of one rule kind: the estimate for targets never built before. */
interface RuleMean {
  count: number;
  meanMs: number;
}

/** The estimate for a target when neither it nor any target of its rule kind was ever built. */
export const DEFAULT_ESTIMATE_MS = 10_000;
/** The mean forgets slowly: after this many builds each new one weighs 1/MEAN_WINDOW. */
const MEAN_WINDOW = 100;

export class History {
  private readonly pending = new Map<string, unknown>();

  constructor(
    private readonly kv: Kv,
    /** The workspace root: two workspaces may both have a `//a:cpu` that are nothing alike. */
    private readonly root: string,
  ) {}

  private targetId(label: Label): string {
    return `stats:${this.root}:${label}`;
  }

  private get<T>(id: string): T | undefined {
    return (this.pending.has(id) ? this.pending.get(id) : this.kv.get(id)) as T | undefined;
  }

  target(label: Label): TargetHistory | undefined {
    const h = this.get<Partial<TargetHistory>>(this.targetId(label));
    if (!h || typeof h !== 'object') return undefined;
    return {
      durationMs: typeof h.durationMs === 'number' ? h.durationMs : 0,
      peakBytes: typeof h.peakBytes === 'number' ? h.peakBytes : 0,
      ...(typeof h.maxJobs === 'number' && h.maxJobs >= 1 ? { maxJobs: Math.floor(h.maxJobs) } : {}),
    };
  }

  /** The remembered duration, else the mean of the rule kind's known durations, else a constant. */
  estimateMs(label: Label, ruleKind: string): { ms: number; known: boolean } {
    const h = this.target(label);
    if (h && h.durationMs > 0) return { ms: h.durationMs, known: true };
    const mean = this.get<RuleMean>(`rule-mean:${ruleKind}`);
    if (mean && typeof mean.meanMs === 'number' && mean.meanMs > 0) return { ms: mean.meanMs, known: false };
    return { ms: DEFAULT_ESTIMATE_MS, known: false };
  }

  /** After a successful build: its duration and peak memory; a lowered MAX_JOBS stays remembered. */
  recordBuild(label: Label, ruleKind: string, durationMs: number, peakBytes: number): void {
    const previous = this.target(label);
    const next: TargetHistory = { durationMs, peakBytes, ...(previous?.maxJobs !== undefined ? { maxJobs: previous.maxJobs } : {}) };
    this.pending.set(this.targetId(label), next);
    const id = `rule-mean:${ruleKind}`;
    const mean = this.get<RuleMean>(id);
    const count = Math.min((mean?.count ?? 0) + 1, MEAN_WINDOW);
    const meanMs = mean && mean.meanMs > 0 ? mean.meanMs + (durationMs - mean.meanMs) / count : durationMs;
    this.pending.set(id, { count, meanMs });
  }

  /** After an out-of-memory failure: the next build of this target starts with at most `maxJobs`. */
  lowerMaxJobs(label: Label, maxJobs: number): void {
    const previous = this.target(label);
    this.pending.set(this.targetId(label), {
      durationMs: previous?.durationMs ?? 0,
      peakBytes: previous?.peakBytes ?? 0,
      maxJobs: Math.max(1, Math.min(maxJobs, previous?.maxJobs ?? Infinity)),
    } satisfies TargetHistory);
  }

  /** Writes everything recorded in this build in one transaction. */
  flush(): void {
    if (this.pending.size === 0) return;
    this.kv.putMany([...this.pending]);
    this.pending.clear();
  }
}
