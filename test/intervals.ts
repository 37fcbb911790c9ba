// Actions that record when they ran: a `command` target appends `NAME START END [INFO]` (nanoseconds) to a file
// outside the workspace, so tests assert on recorded intervals (overlap, devices, MAX_JOBS), never on wall time.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from './rig.js';

export interface Interval {
  name: string;
  /** Microseconds. */
  start: number;
  end: number;
  /** What the action printed after its times: `$CUDA_VISIBLE_DEVICES`, `$MAX_JOBS`… */
  info: string;
}

/**
 * A `command` package that sleeps `seconds` and appends `NAME START END [INFO]` to `$REC`; `info` is shell text
 * expanded by the action, `extra` more YAML for the package, indented by four spaces.
 */
export function sleeper(name: string, seconds: number, info: string, extra = ''): string {
  const cmd = `s=$(date +%s%N); sleep ${seconds}; e=$(date +%s%N); echo "${name} $s $e [${info}]" >> "$REC"`;
  return `  ${name}:\n    rule: command\n    cmd: ${JSON.stringify(cmd)}\n    env:\n      REC: REC_PATH\n${extra}`;
}

/** A workspace whose BUILD.yaml says `REC_PATH` where the record file goes; returns it with that file's path. */
export function recordingWorkspace(yaml: string): { ws: TempWorkspace; rec: string } {
  const ws = TempWorkspace.create();
  const rec = path.join(ws.dir, '..', 'record.txt');
  ws.write('BUILD.yaml', yaml.replaceAll('REC_PATH', JSON.stringify(rec)));
  return { ws, rec };
}

export function readIntervals(rec: string): Interval[] {
  if (!fs.existsSync(rec)) return [];
  return fs
    .readFileSync(rec, 'utf8')
    .trimEnd()
    .split('\n')
    .map((line) => {
      const m = /^(\S+) (\d+) (\d+) \[(.*)\]$/.exec(line);
      assert.ok(m, `unexpected record line ${JSON.stringify(line)}`);
      return { name: m[1]!, start: Number(BigInt(m[2]!) / 1000n), end: Number(BigInt(m[3]!) / 1000n), info: m[4]! };
    });
}

export function overlaps(a: Interval, b: Interval): boolean {
  return a.start < b.end && b.start < a.end;
}

/**
 * The largest total `weight` of intervals running at one moment (an end at the same instant as a start does not
 * overlap): with the default weight, how many ran at once.
 */
export function maxConcurrent(intervals: Interval[], weight: (i: Interval) => number = () => 1): number {
  const events = intervals.flatMap((i) => [
    { t: i.start, d: weight(i) },
    { t: i.end, d: -weight(i) },
  ]);
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let now = 0;
  let max = 0;
  for (const e of events) {
    now += e.d;
    max = Math.max(max, now);
  }
  return max;
}
