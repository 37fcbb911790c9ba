// `npm run bench:peers`: wg and turbo on this machine, on the benchmark's graph (test/bench/layered-dag.ts, 1000
// `cp input.txt out.txt` tasks): a no-op, and restoring every output from the local cache after the outputs are
// deleted, each run paired with a floor run of its own as in bench.ts. The peer numbers were timed on
// another machine, where the floor was ~70 ms; this one's is 95-180 ms, so its absolute limits mean more there.
//
// Fair to turbo: its native binary is run, not the npm package's Node launcher (which starts a Node first), with
// --no-daemon (wg keeps no server either) and --output-logs=none (wg prints one summary); the workspace is a git
// repository, as turbo expects for hashing, and a task's inputs are its input.txt alone. turbo runs every task
// through the package manager (`npm run build`, a Node process each), so its cold build takes ~12 minutes here:
// it is run once, untimed, and only the phases that restore from its cache are timed.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { WG_BIN } from '../rig.js';
import { asBuildYaml, layeredDag, type DagNode } from './layered-dag.js';
import { floorOnce, median, time } from './measure.js';

const N = Number(process.env['WG_PEER_SIZE'] ?? 1000);
const REPEATS = Number(process.env['WG_BENCH_REPEATS'] ?? 9);
const TURBO_ENV = { TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1', TURBO_NO_UPDATE_NOTIFIER: '1' };

/** The platform binary the `turbo` package's launcher would exec, or null when it is not installed. */
function turboBinary(): string | null {
  const arch = process.arch === 'x64' ? '64' : process.arch;
  try {
    const manifest = createRequire(import.meta.url).resolve(`@turbo/${process.platform}-${arch}/package.json`);
    const bin = path.join(path.dirname(manifest), 'bin', 'turbo');
    return fs.existsSync(bin) ? bin : null;
  } catch {
    return null;
  }
}

/** The graph as an npm workspace for turbo: a package per task, linked by dependencies, in a git repository. */
function writeTurboWorkspace(dir: string, dag: DagNode[]): void {
  const json = (file: string, value: unknown): void => fs.writeFileSync(path.join(dir, file), `${JSON.stringify(value, null, 2)}\n`);
  fs.mkdirSync(dir, { recursive: true });
  json('package.json', { name: 'peer-bench', private: true, packageManager: 'npm@11.0.0', workspaces: ['src/*'] });
  json('turbo.json', { tasks: { build: { dependsOn: ['^build'], inputs: ['input.txt'], outputs: ['out.txt'] } } });
  const lock: { name: string; lockfileVersion: number; requires: boolean; packages: Record<string, unknown> } = {
    name: 'peer-bench',
    lockfileVersion: 3,
    requires: true,
    packages: { '': { name: 'peer-bench', workspaces: ['src/*'] } },
  };
  for (const { name, deps } of dag) {
    const dependencies = Object.fromEntries(deps.map((d) => [d, '*']));
    fs.mkdirSync(path.join(dir, 'src', name), { recursive: true });
    fs.writeFileSync(path.join(dir, 'src', name, 'input.txt'), `${name}\n`);
    json(`src/${name}/package.json`, { name, version: '1.0.0', scripts: { build: 'cp input.txt out.txt' }, dependencies });
    lock.packages[`src/${name}`] = { name, version: '1.0.0', dependencies };
    lock.packages[`node_modules/${name}`] = { resolved: `src/${name}`, link: true };
  }
  json('package-lock.json', lock);
  fs.writeFileSync(path.join(dir, '.gitignore'), '.turbo/\nout.txt\n');
  const git = (...args: string[]): void => {
    const r = spawnSync('git', ['-c', 'user.name=bench', '-c', 'user.email=bench@localhost', ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${r.stderr.toString()}`);
  };
  git('init', '-q');
  git('add', '-A');
  git('commit', '-qm', 'peer bench');
}

/** turbo's summary of a run: how many of the tasks came from its cache. */
function turboCached(turbo: string[], dir: string): string {
  const r = spawnSync(turbo[0]!, turbo.slice(1), { cwd: dir, env: { ...process.env, ...TURBO_ENV }, encoding: 'utf8' });
  return /Cached:\s+(\d+ cached, \d+ total)/.exec(r.stdout)?.[1] ?? `no summary (exit ${r.status}): ${r.stderr.slice(-300)}`;
}

function main(): void {
  const bin = turboBinary();
  if (bin === null) {
    console.error('peer bench: turbo is not installed (it is a devDependency: run npm install)');
    process.exit(1);
  }
  const jobs = os.availableParallelism();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), `wg-peer-${N}-`));
  const wgDir = path.join(base, 'wg');
  const turboDir = path.join(base, 'turbo');
  const cacheDir = path.join(base, 'wg-cache');
  const dag = layeredDag(N);
  const inputs = dag.map(({ name }) => path.join(wgDir, 'src', name, 'input.txt'));
  for (const [i, { name }] of dag.entries()) {
    fs.mkdirSync(path.dirname(inputs[i]!), { recursive: true });
    fs.writeFileSync(inputs[i]!, `${name}\n`);
  }
  fs.writeFileSync(path.join(wgDir, 'BUILD.yaml'), asBuildYaml(dag));
  writeTurboWorkspace(turboDir, dag);

  const turbo = [bin, 'run', 'build', `--concurrency=${jobs}`, '--no-daemon', '--output-logs=none'];
  const wg = (): number => time([process.execPath, WG_BIN, 'build', '//...', '-j', String(jobs)], wgDir, { WG_CACHE_DIR: cacheDir });
  const runTurbo = (): number => time(turbo, turboDir, TURBO_ENV);
  const floor = (): number => floorOnce(inputs, path.join(base, 'inputs.json'), wgDir);

  console.error(`peer bench: ${N} tasks; turbo's cold build runs \`npm run build\` for each (~12 minutes here)`);
  const turboCold = runTurbo();
  const wgCold = wg();
  // Past wg's racy window, so that the last build may write its no-op snapshot; then the kernel writes back.
  spawnSync('sleep', ['2.1']);
  wg();
  spawnSync('sync');

  const rows: string[][] = [];
  const phase = (what: string, before: { wg: () => void; turbo: () => void }): void => {
    const r = { wg: [] as number[], wgRatio: [] as number[], turbo: [] as number[], turboRatio: [] as number[], floor: [] as number[] };
    for (let i = 0; i < REPEATS; i++) {
      // Each tool right after a floor run of its own, in turns, so that neither always goes first.
      for (const tool of i % 2 === 0 ? (['wg', 'turbo'] as const) : (['turbo', 'wg'] as const)) {
        const f = floor();
        before[tool]();
        const ms = tool === 'wg' ? wg() : runTurbo();
        r.floor.push(f);
        r[tool].push(ms);
        r[tool === 'wg' ? 'wgRatio' : 'turboRatio'].push(ms / f);
      }
    }
    const cell = (ms: number[], ratio: number[]): string => `${median(ms).toFixed(0)} ms (${median(ratio).toFixed(2)}×)`;
    rows.push([what, cell(r.wg, r.wgRatio), cell(r.turbo, r.turboRatio), `${median(r.floor).toFixed(0)} ms`]);
  };
  const nothing = (): void => {};
  phase('no-op', { wg: nothing, turbo: nothing });
  phase('restore all outputs (deleted)', {
    wg: () => fs.rmSync(path.join(wgDir, 'wg-out'), { recursive: true, force: true }),
    turbo: () => {
      for (const { name } of dag) fs.rmSync(path.join(turboDir, 'src', name, 'out.txt'), { force: true });
    },
  });
  // Both restored what was deleted, from their caches: a phase that rebuilt would not be this comparison.
  const last = dag[dag.length - 1]!.name;
  const restored = fs.existsSync(path.join(wgDir, 'wg-out', 'out', `${last}.default.out.txt`)) && fs.existsSync(path.join(turboDir, 'src', last, 'out.txt'));
  const turboSummary = turboCached(turbo, turboDir);

  const widths = [32, 20, 20, 10];
  const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  const turboVersion = spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.trim();
  console.log(`peer bench on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, turbo ${turboVersion}, ${N} tasks, medians of ${REPEATS}`);
  console.log(fmt(['measure', 'wg (vs floor)', 'turbo (vs floor)', 'floor']));
  for (const r of rows) console.log(fmt(r));
  console.log(fmt(['cold build (one run)', `${(wgCold / 1000).toFixed(1)} s`, `${(turboCold / 1000).toFixed(1)} s`, '']));
  console.log(`outputs restored by both: ${restored ? 'yes' : 'NO'}; turbo's last run: ${turboSummary}`);
  fs.rmSync(base, { recursive: true, force: true });
  if (!restored || !/^(\d+) cached, \1 total$/.test(turboSummary)) process.exit(1);
}

main();
