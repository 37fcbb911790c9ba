// `npm run bench` (second part): how close wg's schedule comes to the best possible one. Synthetic DAGs of
// `command` targets that sleep for known durations, some holding GPUs, are built through the real `wg` binary twice
// in one run: first in FIFO order (WG_SCHEDULE_ORDER=fifo: the order targets became ready), which also teaches wg
// every duration, then, with every key changed, in wg's own order (longest remaining critical path first, from
// those remembered durations). Each makespan (first action start to last action end, as the actions recorded it)
// is reported as a ratio to the lower bound max(critical path, GPU time / GPU slots, CPU time / CPU slots).

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WG_BIN } from '../rig.js';
import { prng } from './layered-dag.js';

interface Node {
  name: string;
  seconds: number;
  cpus: number;
  gpus: number;
  deps: string[];
}

interface Scenario {
  title: string;
  nodes: Node[];
  cpuSlots: number;
  gpuSlots: number;
}

/** One long chain declared (and so readied) after many short independent targets: FIFO starts the chain last. */
function chainAndFan(): Scenario {
  const nodes: Node[] = [];
  for (let i = 1; i <= 12; i++) nodes.push({ name: `a${String(i).padStart(2, '0')}`, seconds: 0.5, cpus: 1, gpus: 0, deps: [] });
  for (let i = 1; i <= 5; i++) nodes.push({ name: `z${i}`, seconds: 1, cpus: 1, gpus: 0, deps: i > 1 ? [`z${i - 1}`] : [] });
  return { title: 'chain + fan (cpu)', nodes, cpuSlots: 2, gpuSlots: 0 };
}

/** CPU preparation steps feeding long GPU builds, next to short CPU-only targets: the GPUs are the bottleneck. */
function gpuPipeline(): Scenario {
  const nodes: Node[] = [];
  for (let i = 1; i <= 10; i++) nodes.push({ name: `lint${String(i).padStart(2, '0')}`, seconds: 0.4, cpus: 1, gpus: 0, deps: [] });
  for (let i = 1; i <= 4; i++) {
    nodes.push({ name: `prep${i}`, seconds: 0.3, cpus: 1, gpus: 0, deps: [] });
    nodes.push({ name: `kernel${i}`, seconds: 1.5, cpus: 1, gpus: 1, deps: [`prep${i}`] });
    nodes.push({ name: `test${i}`, seconds: 0.3, cpus: 1, gpus: 1, deps: [`kernel${i}`] });
  }
  return { title: 'gpu pipeline', nodes, cpuSlots: 4, gpuSlots: 2 };
}

/** A random layered DAG: durations 0.1–1.0 s, 1–2 cpus, a quarter of the targets holding a GPU. */
function randomLayered(seed: number, n: number, layers: number): Scenario {
  const rand = prng(seed);
  const perLayer = Math.ceil(n / layers);
  const nodes: Node[] = [];
  for (let i = 0; i < n; i++) {
    const layer = Math.floor(i / perLayer);
    const deps = new Set<string>();
    if (layer > 0) for (let k = 0; k < 2; k++) deps.add(`r${String((layer - 1) * perLayer + Math.floor(rand() * perLayer)).padStart(3, '0')}`);
    nodes.push({
      name: `r${String(i).padStart(3, '0')}`,
      seconds: Math.round((0.1 + rand() * 0.9) * 10) / 10,
      cpus: rand() < 0.3 ? 2 : 1,
      gpus: rand() < 0.25 ? 1 : 0,
      deps: [...deps],
    });
  }
  return { title: `random layered (seed ${seed})`, nodes, cpuSlots: 4, gpuSlots: 2 };
}

function lowerBound(s: Scenario): { bound: number; critical: number; gpu: number; cpu: number } {
  const byName = new Map(s.nodes.map((n) => [n.name, n]));
  const memo = new Map<string, number>();
  const finish = (n: Node): number => {
    const known = memo.get(n.name);
    if (known !== undefined) return known;
    const t = n.seconds + Math.max(0, ...n.deps.map((d) => finish(byName.get(d)!)));
    memo.set(n.name, t);
    return t;
  };
  const critical = Math.max(...s.nodes.map(finish));
  const gpu = s.gpuSlots > 0 ? s.nodes.reduce((sum, n) => sum + n.seconds * n.gpus, 0) / s.gpuSlots : 0;
  const cpu = s.nodes.reduce((sum, n) => sum + n.seconds * n.cpus, 0) / s.cpuSlots;
  return { bound: Math.max(critical, gpu, cpu), critical, gpu, cpu };
}

function write(s: Scenario, dir: string, rec: string, salt: number): void {
  const lines = ['variants:', '  bench:', `    env: {SALT: "${salt}"}`, 'packages:'];
  for (const n of s.nodes) {
    const cmd = `s=$(date +%s%N); sleep ${n.seconds}; e=$(date +%s%N); echo "${n.name} $s $e" >> "$REC"`;
    lines.push(`  ${n.name}:`, '    rule: command', `    cmd: ${JSON.stringify(cmd)}`, `    env: {REC: ${JSON.stringify(rec)}}`);
    lines.push(`    resources: {cpus: ${n.cpus}, gpus: ${n.gpus}}`);
    if (n.deps.length > 0) lines.push(`    deps: [${n.deps.join(', ')}]`);
  }
  fs.writeFileSync(path.join(dir, 'BUILD.yaml'), `${lines.join('\n')}\n`);
}

/** Builds every target in the given order; returns the makespan in seconds as the actions recorded it. */
function makespan(s: Scenario, dir: string, cacheDir: string, rec: string, salt: number, order: 'fifo' | 'wg'): number {
  write(s, dir, rec, salt);
  fs.rmSync(rec, { force: true });
  const env: Record<string, string> = { ...(process.env as Record<string, string>), WG_CACHE_DIR: cacheDir };
  if (order === 'fifo') env['WG_SCHEDULE_ORDER'] = 'fifo';
  else delete env['WG_SCHEDULE_ORDER'];
  const args = [WG_BIN, 'build', '//...', '-j', String(s.cpuSlots), '--gpus', String(s.gpuSlots)];
  const r = spawnSync(process.execPath, args, { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`wg build failed: ${r.stderr.toString()}`);
  const times = fs
    .readFileSync(rec, 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => l.split(' ').slice(1).map((t) => Number(BigInt(t) / 1000n) / 1000));
  if (times.length !== s.nodes.length) throw new Error(`${times.length} of ${s.nodes.length} targets ran`);
  return (Math.max(...times.map((t) => t[1]!)) - Math.min(...times.map((t) => t[0]!))) / 1000;
}

function main(): void {
  const scenarios = [chainAndFan(), gpuPipeline(), randomLayered(7, 40, 5)];
  const rows: string[][] = [];
  for (const s of scenarios) {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-schedule-bench-'));
    const dir = path.join(base, 'ws');
    fs.mkdirSync(dir);
    const rec = path.join(base, 'record.txt');
    const cacheDir = path.join(base, 'cache');
    try {
      const lb = lowerBound(s);
      // FIFO first: it knows nothing, and its build teaches wg the durations its own order then uses.
      const fifo = makespan(s, dir, cacheDir, rec, 1, 'fifo');
      const wg = makespan(s, dir, cacheDir, rec, 2, 'wg');
      const ratio = (x: number): string => `${x.toFixed(2)} s (${(x / lb.bound).toFixed(2)}×)`;
      rows.push([
        s.title,
        String(s.nodes.length),
        `${s.cpuSlots}/${s.gpuSlots}`,
        `${lb.bound.toFixed(2)} s (${lb.bound === lb.critical ? 'path' : lb.bound === lb.gpu ? 'gpu' : 'cpu'})`,
        ratio(fifo),
        ratio(wg),
      ]);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  }
  const widths = [26, 7, 9, 16, 18, 18];
  const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`\nwg schedule bench: makespan vs max(critical path, GPU time / GPU slots, CPU time / CPU slots), node ${process.version}`);
  console.log(fmt(['DAG', 'targets', 'cpu/gpu', 'lower bound', 'FIFO order', 'wg order']));
  for (const r of rows) console.log(fmt(r));
}

main();
