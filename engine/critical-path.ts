// The critical path of a finished build: the chain of built targets that determined its wall time. Recorded from
// the event stream (when each action started and ended, and what it waited for), so it is a view like the others.

import { unreachable, type BuildEvent } from './events.js';
import type { Label } from './label.js';

export interface CriticalStep {
  label: Label;
  durationMs: number;
}

interface Span {
  deps: Label[];
  startMs: number;
  endMs: number | null;
  durationMs: number | null;
}

export class Timeline {
  private readonly spans = new Map<Label, Span>();

  // Not performance.now(): the first use of the global `performance` loads perf_hooks, ~1.5 ms of an edit's build.
  constructor(private readonly now: () => number = () => Number(process.hrtime.bigint()) / 1e6) {}

  readonly onEvent = (e: BuildEvent): void => {
    switch (e.type) {
      case 'started':
        this.spans.set(e.label, { deps: e.deps, startMs: this.now(), endMs: null, durationMs: null });
        return;
      case 'built': {
        const span = this.spans.get(e.label);
        if (span) {
          span.endMs = this.now();
          span.durationMs = e.durationMs;
        }
        return;
      }
      case 'failed':
      case 'interrupted':
        // A failed action is not part of a chain of built targets; forgetting it keeps dependents' chains honest.
        this.spans.delete(e.label);
        return;
      case 'plan':
      case 'cached':
      case 'skipped':
      case 'retrying':
      case 'warning':
        return;
      default:
        unreachable(e);
    }
  };

  /**
   * Walks back from the built target that finished last, each time to the dependency built in this run that
   * finished last (the one its start waited for). Cached dependencies cost nothing, so a chain ends there.
   */
  criticalPath(): CriticalStep[] {
    const built = [...this.spans.entries()].filter(([, s]) => s.endMs !== null);
    if (built.length === 0) return [];
    let [label, span] = built.reduce((a, b) => (b[1].endMs! > a[1].endMs! ? b : a));
    const chain: CriticalStep[] = [];
    for (;;) {
      chain.push({ label, durationMs: span.durationMs! });
      let next: [Label, Span] | null = null;
      for (const dep of span.deps) {
        const d = this.spans.get(dep);
        if (d?.endMs == null) continue;
        if (next === null || d.endMs > next[1].endMs!) next = [dep, d];
      }
      if (next === null) break;
      [label, span] = next;
    }
    return chain.reverse();
  }
}
