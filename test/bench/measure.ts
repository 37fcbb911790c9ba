// How the benchmarks time things: a command's wall time from spawn to exit, medians, and the floor every time is
// compared with (Node starting and stat-ing each input file and its folder, the least any correct "is anything
// stale?" check must do).

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

/** Wall time of one command in ms; its stdout is dropped, its stderr kept for the error if it fails. */
export function time(argv: string[], cwd: string, env: Record<string, string> = {}): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr.toString()}`);
  return ms;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** One run of the floor over `inputs`, whose list is kept in `listFile` (written on first use). */
export function floorOnce(inputs: string[], listFile: string, cwd: string): number {
  if (!fs.existsSync(listFile)) fs.writeFileSync(listFile, JSON.stringify(inputs));
  const script = `const fs=require('fs');for(const f of JSON.parse(fs.readFileSync(${JSON.stringify(listFile)},'utf8'))){fs.statSync(require('path').dirname(f));fs.statSync(f)}`;
  return time([process.execPath, '-e', script], cwd);
}
