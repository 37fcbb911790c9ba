// `npm run bench`: synthetic workspaces of N `command` targets in a layered DAG, timed through the real `wg`
// binary. Every time is also reported as a ratio to the floor measured in the same run (paired run by run where
// repeated): starting Node and stat-ing the same input files, which is the least any correct "is anything stale?"
// check must do.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WG_BIN } from '../rig.js';
import { asBuildYaml, layeredDag } from './layered-dag.js';
import { floorOnce, median, time } from './measure.js';

const SIZES = (process.env['WG_BENCH_SIZES'] ?? '100,1000,10000').split(',').map(Number);
// Nine: with five, the median of a paired ratio moved by a tenth between runs on this machine (the one-leaf change
// at 1000 targets gave 1.42-1.64x in one session).
const REPEATS = Number(process.env['WG_BENCH_REPEATS'] ?? 9);
/** Sizes up to this one time REPEATS cold builds; a larger one takes minutes a build and times one. */
const COLD_ROUNDS_UP_TO = 1000;

interface Synthetic {
  dir: string;
  cacheDir: string;
  inputs: string[];
  /** A target nothing depends on: changing it rebuilds exactly one action. */
  leafInput: string;
  /**
   * A folder per target outside the workspace, where the spawn floor's commands write: written into the source
   * folders, their files would become inputs of every target that the floor itself never stats.
   */
  floorDirs: string[];
}

function generate(n: number): Synthetic {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), `wg-bench-${n}-`));
  const dir = path.join(base, 'ws');
  const inputs: string[] = [];
  const floorDirs: string[] = [];
  const dag = layeredDag(n);
  dag.forEach(({ name }, i) => {
    const input = path.join(dir, 'src', name, 'input.txt');
    fs.mkdirSync(path.dirname(input), { recursive: true });
    fs.writeFileSync(input, `${name}\n`);
    inputs.push(input);
    floorDirs.push(path.join(base, 'floor', name));
    fs.mkdirSync(floorDirs[i]!, { recursive: true });
  });
  fs.writeFileSync(path.join(dir, 'BUILD.yaml'), asBuildYaml(dag));
  return { dir, cacheDir: path.join(base, 'cache'), inputs, leafInput: inputs[inputs.length - 1]!, floorDirs };
}

/** One run of the floor: Node starting and stat-ing every input file and its folder. */
function floorOnceOf(s: Synthetic): number {
  return floorOnce(s.inputs, path.join(s.cacheDir, '..', 'inputs.json'), s.dir);
}

function floorMs(s: Synthetic): number {
  return median(Array.from({ length: REPEATS }, () => floorOnceOf(s)));
}

/**
 * Times `measure` REPEATS times, each run right after a run of the floor, and reports the median time and the
 * median of the per-pair ratios: this machine's speed drifts by a third within minutes, and a floor taken at
 * the start of a run would turn that drift into the ratios.
 */
function paired(s: Synthetic, measure: (i: number) => { ms: number; extraFloorMs?: number }): { ms: number; ratio: number } {
  const times: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    const floor = floorOnceOf(s);
    const m = measure(i);
    times.push(m.ms);
    ratios.push(m.ms / (floor + (m.extraFloorMs ?? 0)));
  }
  return { ms: median(times), ratio: median(ratios) };
}

/**
 * The floor of a cold build: a bare Node script spawning the same N commands in the same folders with the same
 * parallelism. What wg takes beyond it, divided by N, is its per-action overhead.
 */
function spawnFloorMs(s: Synthetic, jobs: number, round: number): number {
  const dirs = path.join(s.cacheDir, '..', 'dirs.json');
  fs.writeFileSync(dirs, JSON.stringify(s.inputs.map((f, i) => [f, s.floorDirs[i]])));
  // A new file each round, as each cold build's actions make one.
  const script =
    `const {spawn}=require('child_process');const d=JSON.parse(require('fs').readFileSync(${JSON.stringify(dirs)},'utf8'));` +
    `let i=0;const next=()=>{if(i>=d.length)return;const [f,c]=d[i++];spawn('cp',[f,'floor-${round}.txt'],{cwd:c}).on('close',next)};` +
    `for(let k=0;k<${jobs};k++)next();`;
  return time([process.execPath, '-e', script], s.dir);
}

/**
 * Writes back what the phase before made (10,000 new files, nine cold builds, nine restores of wg-out), so that the
 * kernel's flusher threads do not write it back, on one of this machine's two cores, during the next phase's timings.
 */
function settle(): void {
  spawnSync('sync');
}

/** Wall time and peak RSS (KiB) of one command, through /usr/bin/time when the machine has it. */
function timeWithRss(argv: string[], cwd: string, env: Record<string, string>): { ms: number; rssKiB: number | null } {
  if (!fs.existsSync('/usr/bin/time')) return { ms: time(argv, cwd, env), rssKiB: null };
  const out = path.join(os.tmpdir(), `wg-bench-rss-${process.pid}`);
  const ms = time(['/usr/bin/time', '-o', out, '-f', '%M', ...argv], cwd, env);
  const rssKiB = Number(fs.readFileSync(out, 'utf8').trim().split('\n').pop());
  fs.rmSync(out, { force: true });
  return { ms, rssKiB };
}

function main(): void {
  const rows: string[][] = [];
  const jobs = os.availableParallelism();
  for (const n of SIZES) {
    const s = generate(n);
    settle();
    const env = { WG_CACHE_DIR: s.cacheDir };
    const wg = (extra: Record<string, string> = {}): number =>
      time([process.execPath, WG_BIN, 'build', '//...', '-j', String(jobs)], s.dir, { ...env, ...extra });
    const floor = floorMs(s);
    const ratio = (ms: number): string => `${(ms / floor).toFixed(2)}×`;
    const row = (what: string, ms: number, vs = ratio(ms)): void => {
      rows.push([`${n}`, what, `${ms.toFixed(0)} ms`, vs]);
    };
    row('floor (node + stat inputs)', floor);

    const analysis = timeWithRss([process.execPath, WG_BIN, 'build', '//...', '--dry-run'], s.dir, env);
    row('analysis, cold (parse, graph, keys)', analysis.ms);
    if (analysis.rssKiB !== null) rows.push([`${n}`, 'analysis peak RSS', `${(analysis.rssKiB / 1024).toFixed(0)} MiB`, '']);

    // Analysis again, now that the stat cache knows every input and the parse cache holds BUILD.yaml: what a
    // changed BUILD.yaml costs in an edit loop. Before the cold build, so that the dry run's cache lookups are
    // misses and the time is analysis's (after a build, each hit's blobs would be checked as well). Unlike the
    // cold one it can be repeated, so it is, paired with a floor each: one sample of the 10,000-target analysis
    // took 1.09 s in a run of the eleventh session, and 0.84-0.97 s in four more taken by hand right after it.
    let warmRssKiB: number | null = null;
    const warm = paired(s, () => {
      const w = timeWithRss([process.execPath, WG_BIN, 'build', '//...', '--dry-run'], s.dir, env);
      if (w.rssKiB !== null) warmRssKiB = Math.max(warmRssKiB ?? 0, w.rssKiB);
      return { ms: w.ms };
    });
    rows.push([`${n}`, 'analysis, warm (parse, graph, keys)', `${warm.ms.toFixed(0)} ms`, `${warm.ratio.toFixed(2)}×`]);
    if (warmRssKiB !== null) rows.push([`${n}`, 'analysis peak RSS, warm (largest)', `${(warmRssKiB / 1024).toFixed(0)} MiB`, '']);

    // Cold builds paired with a spawn floor each, every build with a cache of its own (the last one's stays for what
    // follows): one sample moved the per-action figure by half. Earlier caches stay until the end, since files
    // removed just before a build make its new files dearer on this ext4 (see Benchmark in README.md).
    const rounds = n <= COLD_ROUNDS_UP_TO ? REPEATS : 1;
    const colds: number[] = [];
    const floors: number[] = [];
    const overheads: number[] = [];
    for (let r = 0; r < rounds; r++) {
      floors.push(spawnFloorMs(s, jobs, r));
      fs.rmSync(path.join(s.dir, 'wg-out'), { recursive: true, force: true });
      colds.push(wg(r === rounds - 1 ? {} : { WG_CACHE_DIR: `${s.cacheDir}-cold${r}` }));
      overheads.push((colds[r]! - floors[r]!) / n);
    }
    row('cold build', median(colds));
    rows.push([`${n}`, 'engine overhead per action', `${median(overheads).toFixed(1)} ms`, `(spawn floor ${median(floors).toFixed(0)} ms, ${rounds} pairs)`]);

    // Past the racy window, so the last build may write its no-op snapshot.
    settle();
    spawnSync('sleep', ['2.1']);
    wg();
    const pairedRow = (what: string, r: { ms: number; ratio: number }, suffix = ''): void => {
      rows.push([`${n}`, what, `${r.ms.toFixed(0)} ms`, `${r.ratio.toFixed(2)}×${suffix}`]);
    };
    pairedRow('no-op build (snapshot)', paired(s, () => ({ ms: wg() })));
    pairedRow('no-op build (full path)', paired(s, () => ({ ms: wg({ WG_NO_FAST_PATH: '1' }) })));
    pairedRow(
      'restore all outputs (wg-out deleted)',
      paired(s, () => {
        fs.rmSync(path.join(s.dir, 'wg-out'), { recursive: true, force: true });
        return { ms: wg() };
      }),
    );
    settle();
    pairedRow(
      'one-leaf change',
      paired(s, (i) => {
        fs.writeFileSync(s.leafInput, `changed ${i}\n`);
        const ms = wg();
        const leafFloor = s.floorDirs[s.floorDirs.length - 1]!;
        const one = time(['cp', s.leafInput, 'floor.txt'], leafFloor);
        return { ms, extraFloorMs: one };
      }),
      ' (floor + one action)',
    );
    fs.rmSync(path.dirname(s.dir), { recursive: true, force: true });
  }
  const widths = [6, 38, 12, 8];
  const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`wg bench on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, medians of ${REPEATS}`);
  console.log(fmt(['N', 'measure', 'time', 'vs floor']));
  for (const r of rows) console.log(fmt(r));
}

main();
