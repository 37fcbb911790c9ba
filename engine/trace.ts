// `wg build --profile FILE`: the event stream as a Chrome trace-event file (opens in Perfetto and
// chrome://tracing). One complete (`X`) event per action that ran, on a lane per CPU slot or, for actions holding
// GPUs, on the lane of their first GPU, each lane named by a `thread_name` metadata event.
//
// Slots are assigned here, from the order of `started` and finishing events, exactly as the scheduler counts
// them (an action holding n CPU slots occupies the n lowest free lanes and is drawn on the first), so the
// scheduler need not track slot numbers for the picture's sake.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { unreachable, type BuildEvent } from './events.js';
import type { Label } from './label.js';

const PID = 1;
/** GPU lanes sit after every CPU lane: tid = GPU_TID_BASE + device id. */
const GPU_TID_BASE = 10_000;

/** One entry of the Chrome trace-event format (the subset wg writes). */
export interface TraceEvent {
  name: string;
  ph: 'X' | 'M';
  pid: number;
  tid: number;
  /** Microseconds since the build started. */
  ts?: number;
  dur?: number;
  cat?: string;
  args?: Record<string, unknown>;
}

interface Open {
  startUs: number;
  cpuLanes: number[];
  tid: number;
  key: string;
  mnemonic: string;
  cpus: number;
  gpus: number[];
  retries: number;
}

export class TraceRecorder {
  private readonly t0 = performance.now();
  private readonly open = new Map<Label, Open>();
  private readonly busy = new Set<number>();
  private readonly lanes = new Map<number, string>();
  private readonly events: TraceEvent[] = [];

  private nowUs(): number {
    return Math.round((performance.now() - this.t0) * 1000);
  }

  private finish(label: Label, status: string, extra: Record<string, unknown> = {}): void {
    const o = this.open.get(label);
    if (!o) return;
    this.open.delete(label);
    for (const lane of o.cpuLanes) this.busy.delete(lane);
    const end = this.nowUs();
    this.events.push({
      name: label,
      cat: o.mnemonic,
      ph: 'X',
      pid: PID,
      tid: o.tid,
      ts: o.startUs,
      // Perfetto hides zero-length slices; a microsecond keeps a very fast action visible.
      dur: Math.max(end - o.startUs, 1),
      args: { label, key: o.key, status, cpus: o.cpus, gpus: o.gpus, ...(o.retries > 0 ? { retries: o.retries } : {}), ...extra },
    });
  }

  readonly onEvent = (e: BuildEvent): void => {
    switch (e.type) {
      case 'started': {
        const cpuLanes: number[] = [];
        for (let lane = 0; cpuLanes.length < Math.max(e.cpus, 1); lane++) if (!this.busy.has(lane)) cpuLanes.push(lane);
        for (const lane of cpuLanes) this.busy.add(lane);
        const gpu = e.gpus[0];
        const tid = gpu === undefined ? cpuLanes[0]! + 1 : GPU_TID_BASE + gpu;
        this.lanes.set(tid, gpu === undefined ? `cpu slot ${cpuLanes[0]}` : `GPU ${gpu}`);
        this.open.set(e.label, { startUs: this.nowUs(), cpuLanes, tid, key: e.key, mnemonic: e.mnemonic, cpus: e.cpus, gpus: e.gpus, retries: 0 });
        return;
      }
      case 'built':
        this.finish(e.label, 'built');
        return;
      case 'failed':
        this.finish(e.label, 'failed', { reason: e.reason, message: e.message });
        return;
      case 'interrupted':
        this.finish(e.label, 'interrupted');
        return;
      case 'retrying': {
        const o = this.open.get(e.label);
        if (o) o.retries++;
        return;
      }
      case 'plan':
      case 'cached':
      case 'skipped':
      case 'warning':
        return;
      default:
        unreachable(e);
    }
  };

  /** The trace document; actions still open (the build was cut short) end now, marked interrupted. */
  document(): { traceEvents: TraceEvent[]; displayTimeUnit: 'ms' } {
    for (const label of [...this.open.keys()]) this.finish(label, 'interrupted');
    const meta: TraceEvent[] = [{ name: 'process_name', ph: 'M', pid: PID, tid: 0, args: { name: 'wg build' } }];
    for (const [tid, name] of [...this.lanes].sort(([a], [b]) => a - b)) {
      meta.push({ name: 'thread_name', ph: 'M', pid: PID, tid, args: { name } });
      meta.push({ name: 'thread_sort_index', ph: 'M', pid: PID, tid, args: { sort_index: tid } });
    }
    return { traceEvents: [...meta, ...this.events], displayTimeUnit: 'ms' };
  }

  /** Writes the document next to `file` and renames it in place, so a reader never sees half a trace. */
  write(file: string): void {
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
    fs.writeFileSync(tmp, `${JSON.stringify(this.document())}\n`);
    fs.renameSync(tmp, file);
  }
}
