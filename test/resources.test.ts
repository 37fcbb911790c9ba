// Resources through the real `wg` binary with fast `command` targets: GPU slots counted by a stand-in nvidia-smi,
// the memory limit (declared and learned peaks), MAX_JOBS / NVCC_THREADS, the out-of-memory retry with its
// remembered MAX_JOBS, and the critical-path order. Actions record what they saw and when they ran into a file
// outside the workspace, and the tests assert on those records, never on wall time.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import { parseCgroupLimit, parseNvidiaSmi } from '../engine/machine.js';
import { maxConcurrent, overlaps, readIntervals, recordingWorkspace, sleeper, type Interval } from './intervals.js';
import { statuses, TempWorkspace } from './rig.js';

/** The most GPU devices in use at one moment (each interval records its CUDA_VISIBLE_DEVICES). */
const maxDevicesInUse = (intervals: Interval[]): number => maxConcurrent(intervals, (i) => (i.info === '' ? 0 : i.info.split(',').length));

/** A folder holding a stand-in `nvidia-smi` that logs its arguments to `calls` and prints `output` (or fails). */
function fakeNvidiaSmi(ws: TempWorkspace, output: string | null): { bin: string; calls: string } {
  const bin = path.join(ws.dir, '..', 'fake-bin');
  const calls = path.join(ws.dir, '..', 'nvidia-smi-calls');
  fs.mkdirSync(bin, { recursive: true });
  const body =
    output === null
      ? 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver." >&2\nexit 9\n'
      : `cat <<'EOF'\n${output}EOF\n`;
  fs.writeFileSync(path.join(bin, 'nvidia-smi'), `#!/bin/sh\necho "$*" >> ${JSON.stringify(calls)}\n${body}`, { mode: 0o755 });
  return { bin, calls };
}

const TWO_GPUS = 'index, name, memory.total [MiB]\n0, NVIDIA A100-SXM4-80GB, 81920 MiB\n1, NVIDIA A100-SXM4-80GB, 81920 MiB\n';

describe('GPUs from nvidia-smi', () => {
  const gpuYaml =
    'variants:\n  gpu:\n    resources:\n      gpus: 1\npackages:\n' +
    sleeper('g1', 0.4, '${CUDA_VISIBLE_DEVICES}') +
    sleeper('g2', 0.4, '${CUDA_VISIBLE_DEVICES}') +
    sleeper('g3', 0.4, '${CUDA_VISIBLE_DEVICES}') +
    sleeper('g4', 0.4, '${CUDA_VISIBLE_DEVICES}') +
    sleeper('both', 0.4, '${CUDA_VISIBLE_DEVICES}', '    resources:\n      gpus: 2\n');

  it('without --gpus, the devices nvidia-smi lists are the slots: never oversubscribed, never shared', async () => {
    const { ws, rec } = recordingWorkspace(gpuYaml);
    try {
      const smi = fakeNvidiaSmi(ws, TWO_GPUS);
      const result = await ws.build(['-j', '8'], { env: { PATH: `${smi.bin}:${process.env['PATH']}` } });
      assert.deepEqual(Object.values(statuses(result)), ['built', 'built', 'built', 'built', 'built']);
      assert.equal(fs.readFileSync(smi.calls, 'utf8'), '--query-gpu=index,name,memory.total --format=csv\n');
      const runs = readIntervals(rec);
      assert.equal(runs.length, 5);
      for (const r of runs) assert.match(r.info, r.name === 'both' ? /^0,1$/ : /^[01]$/, `${r.name} saw CUDA_VISIBLE_DEVICES=${r.info}`);
      // Two devices and eight CPU slots: the GPUs are the only limit, and both are used at once.
      assert.equal(maxDevicesInUse(runs), 2);
      for (const a of runs) {
        for (const b of runs) {
          if (a === b || !overlaps(a, b)) continue;
          const shared = a.info.split(',').filter((d) => b.info.split(',').includes(d));
          assert.deepEqual(shared, [], `${a.name} and ${b.name} ran together on GPU ${shared.join(',')}`);
        }
      }
    } finally {
      ws.remove();
    }
  });

  it('a failing nvidia-smi means no GPU slots; targets without GPUs never ask it', async () => {
    const { ws, rec } = recordingWorkspace(gpuYaml + sleeper('cpuonly', 0, '', '    resources:\n      gpus: 0\n'));
    try {
      const smi = fakeNvidiaSmi(ws, null);
      const env = { PATH: `${smi.bin}:${process.env['PATH']}` };
      const r = await ws.run(['build', '//g1:gpu'], { env });
      assert.equal(r.stderr, 'wg: error: //g1:gpu needs 1 GPU, but there are 0 GPU slots (declare them with --gpus N or --gpus 0,3)\n');
      assert.equal(r.code, 2);
      assert.equal(fs.readFileSync(smi.calls, 'utf8').split('\n').length - 1, 1);
      await ws.build(['//cpuonly:gpu'], { env });
      assert.equal(fs.readFileSync(smi.calls, 'utf8').split('\n').length - 1, 1, 'nvidia-smi ran for a build that needs no GPU');
      assert.deepEqual(readIntervals(rec).map((i) => i.name), ['cpuonly']);
    } finally {
      ws.remove();
    }
  });
});

describe('memory', () => {
  it('two 2 GiB actions under --memory 3G never overlap (and do under 5G)', async () => {
    const yaml =
      'variants:\n  cpu: {}\npackages:\n' +
      sleeper('m1', 0.8, '', '    resources:\n      memory: 2G\n') +
      sleeper('m2', 0.8, '', '    resources:\n      memory: 2G\n');
    const { ws, rec } = recordingWorkspace(yaml);
    try {
      await ws.build(['-j', '4', '--memory', '3G']);
      const [a, b] = readIntervals(rec);
      assert.ok(a && b);
      assert.equal(overlaps(a, b), false, 'two 2 GiB actions ran together under --memory 3G');

      fs.rmSync(rec);
      ws.write('BUILD.yaml', ws.read('BUILD.yaml').replace('cpu: {}', 'cpu: {env: {SALT: "2"}}'));
      await ws.build(['-j', '4', '--memory', '5G']);
      const [c, d] = readIntervals(rec);
      assert.ok(c && d);
      assert.equal(overlaps(c, d), true, 'the two actions did not run together under --memory 5G');
    } finally {
      ws.remove();
    }
  });

  it("a remembered peak (the whole process tree's) schedules the next build even when nothing is declared", async () => {
    // Each action's child process (not the shell itself) holds 300 MiB for a moment; nothing declares memory.
    const hog = (name: string): string => {
      const cmd = `s=$(date +%s%N); python3 -c 'import time; b = b"x" * (300 << 20); time.sleep(1)'; e=$(date +%s%N); echo "${name} $s $e []" >> "$REC"`;
      return `  ${name}:\n    rule: command\n    cmd: ${JSON.stringify(cmd)}\n    env:\n      REC: REC_PATH\n`;
    };
    const { ws, rec } = recordingWorkspace('variants:\n  cpu: {}\npackages:\n' + hog('h1') + hog('h2'));
    try {
      await ws.build(['-j', '4', '--memory', '500M']);
      const [a, b] = readIntervals(rec);
      assert.ok(a && b);
      assert.equal(overlaps(a, b), true, 'with nothing declared or learned, both should run at once');

      fs.rmSync(rec);
      ws.write('BUILD.yaml', ws.read('BUILD.yaml').replace('cpu: {}', 'cpu: {env: {SALT: "2"}}'));
      await ws.build(['-j', '4', '--memory', '500M']);
      const [c, d] = readIntervals(rec);
      assert.ok(c && d);
      assert.equal(overlaps(c, d), false, 'two actions that peaked at 300 MiB each ran together under --memory 500M');
    } finally {
      ws.remove();
    }
  });
});

describe('MAX_JOBS and NVCC_THREADS', () => {
  it('MAX_JOBS is the cpu slots divided by nvcc_threads; NVCC_THREADS only when declared', async () => {
    const yaml =
      'variants:\n  cpu: {}\npackages:\n' +
      sleeper('nvcc', 0, '$MAX_JOBS ${NVCC_THREADS-unset}', '    resources:\n      cpus: 4\n      nvcc_threads: 2\n') +
      sleeper('plain', 0, '$MAX_JOBS ${NVCC_THREADS-unset}', '    resources:\n      cpus: 3\n') +
      sleeper('clamped', 0, '$MAX_JOBS ${NVCC_THREADS-unset}', '    resources:\n      cpus: 16\n');
    const { ws, rec } = recordingWorkspace(yaml);
    try {
      await ws.build(['-j', '8']);
      const seen = Object.fromEntries(readIntervals(rec).map((i) => [i.name, i.info]));
      assert.deepEqual(seen, { nvcc: '2 2', plain: '3 unset', clamped: '8 unset' });
    } finally {
      ws.remove();
    }
  });
});

describe('out-of-memory retry', () => {
  // Each action appends the MAX_JOBS of every attempt to a file of its own, then fails like a build out of memory.
  const attempt = (name: string, fail: string, cpus: number): string =>
    `  ${name}:\n    rule: command\n    cmd: ${JSON.stringify(`echo "$MAX_JOBS" >> "$RUNS/${name}"; ${fail}; echo done`)}\n` +
    `    env: {RUNS: RUNS_PATH}\n    resources: {cpus: ${cpus}}\n`;
  const yaml =
    'variants:\n  cpu:\n    env: {VERSION: "1"}\npackages:\n' +
    attempt('exits137', 'if [ "$MAX_JOBS" -gt 1 ]; then exit 137; fi', 2) +
    attempt('cicc', 'if [ "$MAX_JOBS" -gt 2 ]; then echo "nvcc error   : cicc died due to signal 9 (Kill signal)"; exit 1; fi', 4) +
    attempt('always', 'exit 137', 4);

  it('retries once with half the MAX_JOBS, remembers the lower value, and the next build starts with it', async () => {
    const ws = TempWorkspace.create();
    const runs = path.join(ws.dir, '..', 'runs');
    const attempts = (name: string): string[] => fs.readFileSync(path.join(runs, name), 'utf8').trimEnd().split('\n');
    try {
      fs.mkdirSync(runs);
      ws.write('BUILD.yaml', yaml.replaceAll('RUNS_PATH', JSON.stringify(runs)));
      const first = await ws.build(['-j', '8', '--keep-going'], { expectCode: 1 });
      assert.deepEqual(statuses(first), { '//always:cpu': 'failed', '//cicc:cpu': 'built', '//exits137:cpu': 'built' });
      assert.deepEqual(attempts('exits137'), ['2', '1']);
      assert.deepEqual(attempts('cicc'), ['4', '2']);
      assert.deepEqual(attempts('always'), ['4', '2'], 'retried more than once');
      assert.match(
        first.stderr,
        /^\[\d\d:\d\d:\d\d\] retrying \/\/exits137:cpu with MAX_JOBS=1 \(was 2\): command failed: sh exited with code 137 \(killed, probably out of memory\)$/m,
      );
      assert.match(
        first.stderr,
        /^\[\d\d:\d\d:\d\d\] retrying \/\/cicc:cpu with MAX_JOBS=2 \(was 4\): command failed: sh exited with code 1; its log says "cicc died due to signal 9" \(probably out of memory\)$/m,
      );
      assert.equal(first.targets.find((t) => t.label === '//always:cpu')!.error, 'command failed: sh exited with code 137 (killed, probably out of memory)');
      // The log keeps both attempts.
      assert.equal(fs.readFileSync(ws.path('wg-out/logs/exits137.cpu.log'), 'utf8').match(/^# \/\/exits137:cpu {2}key /gm)?.length, 2);

      // A changed version of each target starts with the MAX_JOBS it was lowered to; `always` (lowered twice, to
      // 1) has nothing left to halve and is not retried.
      for (const name of ['exits137', 'cicc', 'always']) fs.rmSync(path.join(runs, name));
      ws.write('BUILD.yaml', ws.read('BUILD.yaml').replace('VERSION: "1"', 'VERSION: "2"'));
      const second = await ws.build(['-j', '8', '--keep-going'], { expectCode: 1 });
      assert.deepEqual(statuses(second), { '//always:cpu': 'failed', '//cicc:cpu': 'built', '//exits137:cpu': 'built' });
      assert.deepEqual(attempts('exits137'), ['1']);
      assert.deepEqual(attempts('cicc'), ['2']);
      assert.deepEqual(attempts('always'), ['1']);
      assert.doesNotMatch(second.stderr, /retrying/);
    } finally {
      ws.remove();
    }
  });
});

describe('priority', () => {
  // d1 → d2 is the longest chain once durations are known (0.8 s), then c (0.5 s), d2 (0.4 s), a (0.1 s).
  const yaml =
    'variants:\n  cpu:\n    env: {SALT: "1"}\npackages:\n' +
    sleeper('a', 0.1, '') +
    sleeper('c', 0.5, '') +
    sleeper('d1', 0.4, '') +
    sleeper('d2', 0.4, '', '    deps: [d1]\n');
  const order = (rec: string): string[] => readIntervals(rec).map((i) => i.name);

  it('with -j 1 the longest remaining critical path goes first, by durations remembered from the last build', async () => {
    const { ws, rec } = recordingWorkspace(yaml);
    const salt = (n: number): void => ws.write('BUILD.yaml', ws.read('BUILD.yaml').replace(/SALT: "\d+"/, `SALT: "${n}"`));
    try {
      // Never built: every target is estimated alike, so the two-target chain goes first, then the order of readiness.
      await ws.build(['-j', '1']);
      assert.deepEqual(order(rec), ['d1', 'a', 'c', 'd2']);

      fs.rmSync(rec);
      salt(2);
      await ws.build(['-j', '1'], { env: { WG_SCHEDULE_ORDER: 'fifo' } });
      assert.deepEqual(order(rec), ['a', 'c', 'd1', 'd2']);

      fs.rmSync(rec);
      salt(3);
      await ws.build(['-j', '1']);
      assert.deepEqual(order(rec), ['d1', 'c', 'd2', 'a']);
    } finally {
      ws.remove();
    }
  });
});

describe('machine limits (parsers)', () => {
  it('reads nvidia-smi CSV: header skipped, names with commas kept, anything else ignored', () => {
    assert.deepEqual(parseNvidiaSmi(TWO_GPUS + '3, Tesla V100, PCIe, 16384 MiB\n'), [
      { index: 0, name: 'NVIDIA A100-SXM4-80GB', memory: 81920 * 2 ** 20 },
      { index: 1, name: 'NVIDIA A100-SXM4-80GB', memory: 81920 * 2 ** 20 },
      { index: 3, name: 'Tesla V100, PCIe', memory: 16384 * 2 ** 20 },
    ]);
    assert.deepEqual(parseNvidiaSmi('No devices were found\n'), []);
  });

  it('reads cgroup limits: "max" and the v1 "unlimited" value are no limit', () => {
    assert.equal(parseCgroupLimit('3221225472\n'), 3221225472);
    assert.equal(parseCgroupLimit('max\n'), null);
    assert.equal(parseCgroupLimit('9223372036854771712\n'), null);
    assert.equal(parseCgroupLimit(null), null);
  });
});
