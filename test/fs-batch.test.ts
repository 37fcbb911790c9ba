// The native batch calls (engine/native/fs-batch.c through engine/fs-batch.ts): that they were built, that the
// no-op check uses them, that their numbers are fs.statSync's to the last bit for every kind of path, so that a
// snapshot written by either way is checked alike by the other, and that links fail where fs.linkSync's do.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { StatTuple } from '../engine/inputs.js';
import { linkMany, loadNativeFs, STAT_FIELDS, statMany, unmovedMany, type RecordedStat } from '../engine/fs-batch.js';
import { REPO, statuses, TempWorkspace, type BuildJson } from './rig.js';

const DIST = path.join(REPO, 'dist');
const dirs: string[] = [];
const workspaces: TempWorkspace[] = [];
after(() => {
  dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
  workspaces.forEach((w) => w.remove());
});

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-fs-batch-'));
  dirs.push(d);
  return d;
}

/** The addon, which `npm run bundle` must have built on this machine (a C compiler is part of .ci/run). */
function native(): NonNullable<ReturnType<typeof loadNativeFs>> {
  const n = loadNativeFs(DIST);
  assert.ok(n, `${path.join(DIST, 'fs-batch.node')} did not load: scripts/native.mjs should have compiled it`);
  return n;
}

/** The numbers of path `i`, as a plain list. */
function row(v: Float64Array, i: number): number[] {
  return [...v.subarray(i * STAT_FIELDS, (i + 1) * STAT_FIELDS)];
}

describe('native batch file-system calls', () => {
  test('agrees with fs.statSync on files, folders, links, missing and malformed paths', () => {
    const d = tempDir();
    fs.writeFileSync(path.join(d, 'file'), 'twelve bytes');
    fs.mkdirSync(path.join(d, 'folder'));
    fs.symlinkSync('file', path.join(d, 'link'));
    fs.symlinkSync('nowhere', path.join(d, 'dangling'));
    fs.symlinkSync('loop', path.join(d, 'loop'));
    fs.writeFileSync(path.join(d, 'é ☃ 𝄞'), 'unicode name');
    const paths = [
      path.join(d, 'file'),
      path.join(d, 'folder'),
      path.join(d, 'link'),
      path.join(d, 'dangling'),
      path.join(d, 'loop'),
      path.join(d, 'missing'),
      path.join(d, 'file', 'under-a-file'),
      path.join(d, 'é ☃ 𝄞'),
      `${path.join(d, 'file')}\0tail`,
      path.join(d, 'x'.repeat(5000)),
      '',
      42,
      null,
    ] as unknown as string[];
    const fast = statMany(paths, native());
    const slow = statMany(paths, null);
    assert.deepEqual([...fast], [...slow]);
    const st = fs.statSync(path.join(d, 'file'));
    assert.deepEqual(row(fast, 0), [12, st.mtimeMs, st.ctimeMs, st.ino]);
    // The link is followed, as fs.statSync does.
    assert.deepEqual(row(fast, 2), row(fast, 0));
    assert.equal(row(fast, 7)[0], 12);
    // Missing, dangling, looping, under a file, a NUL inside, too long, empty, not a string: no numbers.
    for (const i of [3, 4, 5, 6, 8, 9, 10, 11, 12]) assert.deepEqual(row(fast, i), [-1, 0, 0, 0], `path ${i}`);
    // Called with something else than a list, as no caller in wg does.
    assert.throws(() => native().statMany('a path' as unknown as string[]), { name: 'TypeError', message: 'statMany: expected an array of paths' });
    assert.throws(() => native().unmovedMany({} as unknown as []), { name: 'TypeError', message: 'unmovedMany: expected an array of entries' });
  });

  test('times agree with Node\'s to the last bit, nanoseconds and times before 1970 included', () => {
    const d = tempDir();
    // Random times to the nanosecond, set by Python (Node's utimes takes seconds as a double, which rounds them).
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    const times = Array.from({ length: 300 }, (_, i) => {
      const sec = i < 10 ? -next() % 10 ** 8 : next() * 2;
      return `${sec}${String(next() % 10 ** 9).padStart(9, '0')}`;
    });
    const files = times.map((_, i) => path.join(d, `f${i}`));
    files.forEach((f) => fs.writeFileSync(f, ''));
    const script = 'import os, sys\nfor f, t in zip(sys.argv[1::2], sys.argv[2::2]):\n    os.utime(f, ns=(int(t), int(t)))\n';
    const r = spawnSync('python3', ['-c', script, ...files.flatMap((f, i) => [f, times[i]!])], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const fast = statMany(files, native());
    files.forEach((f, i) => {
      const st = fs.statSync(f, { bigint: true });
      assert.equal(String(st.mtimeNs), String(BigInt(times[i]!)), `${f} took the time set`);
      const number = fs.statSync(f);
      assert.deepEqual(row(fast, i), [0, number.mtimeMs, number.ctimeMs, number.ino], `${f} at ${times[i]} ns`);
    });
  });

  test('whether recorded stats still hold: the addon and JavaScript agree, and the addon alone sees a change under a microsecond', () => {
    const d = tempDir();
    const at = (name: string): string => path.join(d, name);
    const tuple = (p: string): StatTuple => {
      const st = fs.statSync(p, { bigint: true });
      return [String(st.size), String(st.mtimeNs), String(st.ctimeNs), String(st.ino)];
    };
    for (const name of ['same', 'grown', 'touched', 'replaced', 'appeared', 'sub-µs']) fs.writeFileSync(at(name), 'bytes');
    fs.mkdirSync(at('folder'));
    const recorded = new Map<string, StatTuple | null>(['same', 'grown', 'touched', 'replaced', 'sub-µs', 'folder'].map((n) => [n, tuple(at(n))]));
    recorded.set('appeared', null);
    fs.appendFileSync(at('grown'), '+');
    const old = fs.statSync(at('touched'));
    fs.utimesSync(at('touched'), old.atime, new Date(old.mtimeMs + 5));
    fs.rmSync(at('replaced'));
    fs.writeFileSync(at('replaced'), 'bytes');
    fs.utimesSync(at('replaced'), old.atime, old.mtime);
    const [size, mtimeNs, ctimeNs, ino] = recorded.get('sub-µs')!;
    const entries: RecordedStat[] = [
      ...[...recorded].map(([n, t]): RecordedStat => [at(n), t]),
      [at('never'), null],
      [at('gone'), ['5', '1000000000', '1000000000', '7']],
      [at('same'), ['five', mtimeNs, ctimeNs, ino]],
      [at('same'), ['-5', mtimeNs, ctimeNs, ino]],
      [`${at('same')}\0`, null],
      [42 as unknown as string, null],
      [at('sub-µs'), [size, String(BigInt(mtimeNs) + 1n), ctimeNs, ino]],
    ];
    const fast = unmovedMany(entries, native());
    const slow = unmovedMany(entries, null);
    const names = entries.map(([p]) => (typeof p === 'string' ? path.basename(p) : String(p)));
    assert.deepEqual(
      Object.fromEntries(names.map((n, i) => [`${i} ${n}`, fast[i]])),
      {
        '0 same': true,
        '1 grown': false,
        '2 touched': false,
        '3 replaced': false,
        '4 sub-µs': true,
        '5 folder': true,
        '6 appeared': false,
        '7 never': true,
        '8 gone': false,
        '9 same': false,
        '10 same': false,
        '11 same\0': true,
        '12 42': true,
        '13 sub-µs': false,
      },
    );
    // One nanosecond is below what a millisecond double holds at this date: only the addon sees it.
    assert.deepEqual(slow, [...fast.slice(0, 13), true]);
  });

  test('links: made on a thread per folder, and the first that fails is the one fs.linkSync fails first', () => {
    const run = (using: ReturnType<typeof loadNativeFs>): { failed: number; made: string[] } => {
      const d = tempDir();
      for (const folder of ['blobs', 'out', 'logs']) fs.mkdirSync(path.join(d, folder));
      const from: string[] = [];
      const to: string[] = [];
      for (let i = 0; i < 40; i++) {
        from.push(path.join(d, 'blobs', `b${i}`));
        fs.writeFileSync(from[i]!, `blob ${i}`);
        to.push(path.join(d, i % 2 ? 'logs' : 'out', `t${i}`));
      }
      // Taken already (EEXIST) in one folder, a missing blob for the other: the first of the two in order wins.
      fs.writeFileSync(to[31]!, 'taken');
      fs.rmSync(from[24]!);
      const failed = linkMany(from, to, using);
      const made = to.filter((t, i) => fs.existsSync(t) && fs.statSync(t).ino === fs.statSync(from[i]!, { throwIfNoEntry: false })?.ino);
      return { failed, made: made.map((t) => path.relative(d, t)) };
    };
    const fast = run(native());
    const slow = run(null);
    assert.equal(fast.failed, 24);
    assert.equal(slow.failed, 24);
    // Everything before the first failure is linked either way; what comes after it may be, by the addon.
    const before = Array.from({ length: 24 }, (_, i) => path.join(i % 2 ? 'logs' : 'out', `t${i}`));
    assert.deepEqual(slow.made, before);
    assert.deepEqual(fast.made.slice(0, 24), before);
    assert.ok(!fast.made.includes(path.join('logs', 't31')));
    // Nothing to link, and malformed calls.
    assert.equal(linkMany([], [], native()), -1);
    assert.equal(linkMany([42 as unknown as string], ['/nowhere'], native()), 0);
    assert.throws(() => native().linkMany(['a'], []), { name: 'TypeError', message: 'linkMany: expected two arrays of paths of one length' });
  });

  test('the no-op check stats through the addon, and WG_NO_NATIVE_FS=1 checks alike in JavaScript', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': 'variants:\n  cpu: {}\npackages:\n  a:\n    rule: command\n    source: src/a\n    cmd: cat in.txt > out.txt\n    outs: [out.txt]\n',
      'src/a/in.txt': 'a\n',
    });
    workspaces.push(ws);
    // Outside the workspace: a file added there would be a change. Whether the addon is mapped when wg exits.
    const probe = path.join(tempDir(), 'maps-probe.cjs');
    fs.writeFileSync(probe, "process.on('exit', () => process.stderr.write(`addon mapped: ${require('fs').readFileSync('/proc/self/maps', 'utf8').includes('/fs-batch.node')}\\n`));\n");
    const probed = { NODE_OPTIONS: `--require ${probe}` };
    const noNative = { ...probed, WG_NO_NATIVE_FS: '1' };
    await sleep(2100); // past the racy window of the files just written
    assert.deepEqual(statuses(await ws.build()), { '//a:cpu': 'built' });
    type Json = BuildJson & { snapshot?: boolean; stderr: string };
    for (const [env, mapped] of [
      [probed, true],
      [noNative, false],
    ] as const) {
      const noop = (await ws.build([], { env })) as Json;
      assert.equal(noop.snapshot, true);
      assert.match(noop.stderr, new RegExp(`^addon mapped: ${mapped}$`, 'm'));
      // Same size, another mtime: rebuilt, and its snapshot written.
      ws.write('src/a/in.txt', mapped ? 'b\n' : 'c\n');
      await sleep(2100);
      const edit = (await ws.build([], { env })) as Json;
      assert.deepEqual(statuses(edit), { '//a:cpu': 'built' });
      assert.match(edit.stderr, new RegExp(`^addon mapped: ${mapped}$`, 'm'));
      assert.equal(ws.read('wg-out/out/a.cpu.out.txt'), mapped ? 'b\n' : 'c\n');
    }
  });
});
