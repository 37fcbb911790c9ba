// Scheduling through the real `wg` binary with fast `command` targets: GPU slots and CUDA_VISIBLE_DEVICES, CPU
// slots (-j), what a failure stops, what env reaches an action, and --dry-run. Actions record what they saw and
// when they ran into a file outside the workspace (its path comes through the target's declared env), and the
// tests assert on those recorded intervals, never on wall time.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import { maxConcurrent, overlaps, readIntervals, recordingWorkspace, sleeper, type Interval } from './intervals.js';
import { statuses, TempWorkspace, type BuildJson } from './rig.js';

/** A sleeper that records the devices it was given (`unset` when wg set no CUDA_VISIBLE_DEVICES). */
function gpuSleeper(name: string, seconds: number, extra = ''): string {
  return sleeper(name, seconds, '${CUDA_VISIBLE_DEVICES-unset}', extra);
}

const maxOverlap = (intervals: Interval[]): number => maxConcurrent(intervals);


describe('GPU slots', () => {
  const yaml =
    'variants:\n  gpu:\n    resources:\n      gpus: 1\n  cpu: {}\npackages:\n' +
    gpuSleeper('t1', 0.5, '    variants: [gpu]\n') +
    gpuSleeper('t2', 0.5, '    variants: [gpu]\n') +
    gpuSleeper('t3', 0.5, '    variants: [gpu]\n') +
    gpuSleeper('t4', 0.5, '    variants: [gpu]\n') +
    // The fifth asks for its GPU in its own resources, in a variant that has none.
    gpuSleeper('t5', 0.5, '    variants: [cpu]\n    resources:\n      gpus: 1\n') +
    gpuSleeper('nogpu', 0.1, '    variants: [cpu]\n');

  it('--gpus 2: at most two GPU actions at once, each on exactly one device, never sharing it', async () => {
    const { ws, rec } = recordingWorkspace(yaml);
    try {
      const result = await ws.build(['--gpus', '2', '-j', '8']);
      assert.deepEqual(Object.values(statuses(result)), ['built', 'built', 'built', 'built', 'built', 'built']);
      const all = readIntervals(rec);
      const gpu = all.filter((i) => i.name !== 'nogpu');
      assert.deepEqual(gpu.map((i) => i.name).sort(), ['t1', 't2', 't3', 't4', 't5']);
      for (const i of gpu) assert.ok(i.info === '0' || i.info === '1', `${i.name} saw CUDA_VISIBLE_DEVICES=${i.info}`);
      // Two slots, and with 8 CPU slots nothing else holds the actions back: exactly two run together.
      assert.equal(maxOverlap(gpu), 2);
      for (const a of gpu) {
        for (const b of gpu) {
          if (a !== b && overlaps(a, b)) assert.notEqual(a.info, b.info, `${a.name} and ${b.name} ran together on GPU ${a.info}`);
        }
      }
      // A target that declares no GPU sees an empty (not unset) list, which hides every device.
      assert.deepEqual(
        all.filter((i) => i.name === 'nogpu').map((i) => i.info),
        [''],
      );
    } finally {
      ws.remove();
    }
  });

  it('--gpus 0,3 hands out devices 0 and 3 only', async () => {
    const { ws, rec } = recordingWorkspace(yaml);
    try {
      await ws.build(['--gpus', '0,3', '-j', '8']);
      const gpu = readIntervals(rec).filter((i) => i.name !== 'nogpu');
      assert.equal(gpu.length, 5);
      assert.deepEqual([...new Set(gpu.map((i) => i.info))].sort(), ['0', '3']);
      for (const a of gpu) {
        for (const b of gpu) {
          if (a !== b && overlaps(a, b)) assert.notEqual(a.info, b.info, `${a.name} and ${b.name} ran together on GPU ${a.info}`);
        }
      }
    } finally {
      ws.remove();
    }
  });

  it('a target needing more GPUs than there are slots is refused before anything runs', async () => {
    const { ws, rec } = recordingWorkspace(
      'variants:\n  gpu:\n    resources:\n      gpus: 1\npackages:\n' + gpuSleeper('big', 0, '    resources:\n      gpus: 2\n') + gpuSleeper('small', 0),
    );
    try {
      const r = await ws.run(['build', '--gpus', '1']);
      assert.equal(r.stderr, 'wg: error: //big:gpu needs 2 GPUs, but there is 1 GPU slot (declare them with --gpus N or --gpus 0,3)\n');
      assert.equal(r.code, 2);
      assert.equal(fs.existsSync(rec), false, 'an action ran');
      const none = await ws.run(['build', '//small:gpu']);
      assert.equal(none.stderr, 'wg: error: //small:gpu needs 1 GPU, but there are 0 GPU slots (declare them with --gpus N or --gpus 0,3)\n');
      assert.equal(none.code, 2);
      assert.equal(fs.existsSync(rec), false, 'an action ran');
    } finally {
      ws.remove();
    }
  });
});

describe('CPU slots', () => {
  const yaml = 'variants:\n  cpu: {}\npackages:\n' + gpuSleeper('s1', 0.4) + gpuSleeper('s2', 0.4) + gpuSleeper('s3', 0.4);

  for (const [jobs, expected] of [
    [1, 1],
    [2, 2],
  ] as const) {
    it(`-j ${jobs}: at most ${expected} independent action${expected > 1 ? 's' : ''} at once`, async () => {
      const { ws, rec } = recordingWorkspace(yaml);
      try {
        await ws.build(['-j', String(jobs)]);
        const intervals = readIntervals(rec);
        assert.equal(intervals.length, 3);
        assert.equal(maxOverlap(intervals), expected);
      } finally {
        ws.remove();
      }
    });
  }
});

describe('failures', () => {
  // `a` fails; `c` and `d` depend on it; `b` is independent. With -j 1, `a` starts first: it has the most dependents.
  const files = (ws: TempWorkspace): string =>
    `variants:
  cpu: {}
packages:
  a:
    rule: command
    cmd: 'echo ran >> "$RUNS"/a; echo "a is broken" >&2; exit 3'
    env: {RUNS: ${JSON.stringify(path.join(ws.dir, '..'))}}
  b:
    rule: command
    cmd: 'echo ran >> "$RUNS"/b'
    env: {RUNS: ${JSON.stringify(path.join(ws.dir, '..'))}}
  c:
    rule: command
    cmd: 'true'
    deps: [a]
  d:
    rule: command
    cmd: 'true'
    deps: [c]
`;
  const runs = (ws: TempWorkspace, name: string): number => {
    const file = path.join(ws.dir, '..', name);
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').length - 1 : 0;
  };
  const errors = (result: BuildJson): Record<string, string | null> => Object.fromEntries(result.targets.map((t) => [t.label, t.error]));

  it('without --keep-going a failure stops new work; nothing failed is cached', async () => {
    const ws = TempWorkspace.create();
    try {
      ws.write('BUILD.yaml', files(ws));
      const first = await ws.build(['-j', '1'], { expectCode: 1 });
      assert.equal(first.ok, false);
      assert.deepEqual(statuses(first), { '//a:cpu': 'failed', '//b:cpu': 'skipped', '//c:cpu': 'skipped', '//d:cpu': 'skipped' });
      assert.deepEqual(errors(first), {
        '//a:cpu': 'command failed: sh exited with code 3',
        '//b:cpu': 'the build stopped after a failure',
        '//c:cpu': 'dependency //a:cpu failed',
        '//d:cpu': 'dependency //a:cpu failed',
      });
      assert.equal(runs(ws, 'a'), 1);
      assert.equal(runs(ws, 'b'), 0, 'b started after a had failed');
      assert.match(first.stderr, /^\[\d\d:\d\d:\d\d\] FAILED \/\/a:cpu: command failed: sh exited with code 3\n(?:  \| .*\n)*  \| a is broken\n/m);

      const again = await ws.build(['-j', '1'], { expectCode: 1 });
      assert.equal(statuses(again)['//a:cpu'], 'failed');
      assert.equal(runs(ws, 'a'), 2, 'the failed action was not run again');
    } finally {
      ws.remove();
    }
  });

  it('with --keep-going everything not depending on the failure is built; a rerun runs the failure again', async () => {
    const ws = TempWorkspace.create();
    try {
      ws.write('BUILD.yaml', files(ws));
      const first = await ws.build(['-j', '1', '--keep-going'], { expectCode: 1 });
      assert.deepEqual(statuses(first), { '//a:cpu': 'failed', '//b:cpu': 'built', '//c:cpu': 'skipped', '//d:cpu': 'skipped' });
      assert.deepEqual(errors(first), {
        '//a:cpu': 'command failed: sh exited with code 3',
        '//b:cpu': null,
        '//c:cpu': 'dependency //a:cpu failed',
        '//d:cpu': 'dependency //a:cpu failed',
      });
      assert.match(first.stderr, /^\[\d\d:\d\d:\d\d\] skipped \/\/c:cpu: dependency \/\/a:cpu failed$/m);
      assert.match(first.stderr, /^\[\d\d:\d\d:\d\d\] skipped \/\/d:cpu: dependency \/\/a:cpu failed$/m);

      const again = await ws.build(['-j', '1', '--keep-going'], { expectCode: 1 });
      assert.deepEqual(statuses(again), { '//a:cpu': 'failed', '//b:cpu': 'cached', '//c:cpu': 'skipped', '//d:cpu': 'skipped' });
      assert.equal(runs(ws, 'a'), 2);
      assert.equal(runs(ws, 'b'), 1);
    } finally {
      ws.remove();
    }
  });
});

describe('the env of an action', () => {
  it('holds declared variables only, and a HOME of its own', async () => {
    const { ws, rec } = recordingWorkspace(
      `variants:
  cpu:
    env:
      FROM_VARIANT: v
packages:
  probe:
    rule: command
    cmd: 'echo "FOO=\${FOO-unset} DECLARED=\${DECLARED-unset} FROM_VARIANT=\${FROM_VARIANT-unset} HOME=$HOME" > "$REC"'
    env:
      REC: REC_PATH
      DECLARED: "yes"
`,
    );
    const fakeHome = path.join(ws.dir, '..', 'user-home');
    try {
      fs.mkdirSync(fakeHome);
      await ws.build([], { env: { FOO: 'bar', DECLARED: 'from-the-caller', FROM_VARIANT: 'from-the-caller', HOME: fakeHome } });
      const m = /^FOO=(.*) DECLARED=(.*) FROM_VARIANT=(.*) HOME=(.*)$/.exec(fs.readFileSync(rec, 'utf8').trimEnd());
      assert.ok(m, fs.readFileSync(rec, 'utf8'));
      assert.deepEqual(m.slice(1, 4), ['unset', 'yes', 'v']);
      const home = m[4]!;
      assert.notEqual(home, '');
      assert.notEqual(home, fakeHome);
      assert.notEqual(home, os.homedir());
      assert.notEqual(home, process.env['HOME']);
    } finally {
      ws.remove();
    }
  });
});

describe('--dry-run --json', () => {
  it('says would-build, then cached after a build, with the keys of the real build, and runs nothing', async () => {
    const ws = TempWorkspace.create();
    const sentinel = path.join(ws.dir, '..', 'sentinel');
    try {
      ws.write(
        'BUILD.yaml',
        `variants:
  cpu: {}
  other:
    env: {FLAVOR: other}
packages:
  gen:
    rule: command
    cmd: [touch, ${JSON.stringify(sentinel)}]
  use:
    rule: command
    cmd: 'true'
    deps: [gen]
`,
      );
      const keysOf = (r: BuildJson): Record<string, string> => Object.fromEntries(r.targets.map((t) => [t.label, t.key]));
      const labels = ['//gen:cpu', '//gen:other', '//use:cpu', '//use:other'];

      const dry = await ws.build(['--dry-run']);
      assert.deepEqual(statuses(dry), Object.fromEntries(labels.map((l) => [l, 'would-build'])));
      assert.equal(fs.existsSync(sentinel), false, 'an action ran in a dry run');
      assert.equal(fs.existsSync(ws.path('wg-out')), false, 'a dry run wrote wg-out');
      for (const key of Object.values(keysOf(dry))) assert.match(key, /^[0-9a-f]{64}$/);
      assert.equal(new Set(Object.values(keysOf(dry))).size, 4);

      const real = await ws.build();
      assert.deepEqual(statuses(real), Object.fromEntries(labels.map((l) => [l, 'built'])));
      assert.deepEqual(keysOf(real), keysOf(dry));
      assert.equal(fs.existsSync(sentinel), true, 'the sentinel target did not run in the real build');
      fs.rmSync(sentinel);

      const after = await ws.build(['--dry-run']);
      assert.deepEqual(statuses(after), Object.fromEntries(labels.map((l) => [l, 'cached'])));
      assert.deepEqual(keysOf(after), keysOf(real));
      assert.equal(fs.existsSync(sentinel), false, 'an action ran in a dry run');
    } finally {
      ws.remove();
    }
  });
});
