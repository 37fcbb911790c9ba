// The no-op snapshot: a build with nothing to do is answered from the snapshot, outputs deleted from wg-out are
// linked back by it, and every other kind of change (a source, an added file, BUILD.yaml, an env file, a patch
// folder, a pass_env value, an output replaced by other bytes, a damaged blob, other arguments, a failed build)
// defeats it: the next build goes down the full path, or the incremental path for a source edit
// (test/incremental.test.ts).

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { laterThan } from '../engine/noop-snapshot.js';
import { statuses, TempWorkspace, type BuildJson } from './rig.js';

/** Files changed within 2 s of a build are "racy": checked by content next time, or (BUILD.yaml) left to the full path. */
const PAST_RACY_WINDOW_MS = 2100;

const BUILD_YAML = `variants:
  cpu: {}
packages:
  a:
    rule: command
    source: src/a
    cmd: cat in.txt > out.txt; echo "flag=$FLAG" >> out.txt
    outs: [out.txt]
    pass_env: [FLAG]
  b:
    rule: command
    source: src/b
    deps: [a]
    cmd: cat in.txt > out.txt
    outs: [out.txt]
`;

type Json = BuildJson & { snapshot?: boolean; stderr: string };

/** What a user's editor or script does to a read-only output: a new file under the old name. */
function replace(file: string, text: string): void {
  fs.rmSync(file);
  fs.writeFileSync(file, text);
}

/** The CAS blob a file in wg-out is a hard link of. */
function blobOf(cacheDir: string, file: string): string {
  const ino = fs.statSync(file).ino;
  const cas = path.join(cacheDir, 'cas');
  for (const shard of fs.readdirSync(cas)) {
    for (const name of fs.readdirSync(path.join(cas, shard))) {
      if (fs.statSync(path.join(cas, shard, name)).ino === ino) return path.join(cas, shard, name);
    }
  }
  throw new Error(`${file} is not a link of a blob`);
}

const workspaces: TempWorkspace[] = [];
after(() => workspaces.forEach((w) => w.remove()));

async function fresh(): Promise<TempWorkspace> {
  const ws = TempWorkspace.create({ 'BUILD.yaml': BUILD_YAML, 'src/a/in.txt': 'a\n', 'src/b/in.txt': 'b\n' });
  workspaces.push(ws);
  await sleep(PAST_RACY_WINDOW_MS);
  const first = (await ws.build()) as Json;
  assert.deepEqual(statuses(first), { '//a:cpu': 'built', '//b:cpu': 'built' });
  assert.equal(first.snapshot, undefined);
  return ws;
}

describe('no-op snapshot', () => {
  test('a build with nothing to do is answered from the snapshot, with the same words as the full path', async () => {
    const ws = await fresh();
    const fast = (await ws.build()) as Json;
    assert.equal(fast.snapshot, true);
    assert.deepEqual(statuses(fast), { '//a:cpu': 'cached', '//b:cpu': 'cached' });
    const slow = (await ws.build([], { env: { WG_NO_FAST_PATH: '1' } })) as Json;
    assert.equal(slow.snapshot, undefined);
    const mask = (s: string): string => s.replace(/in \d+\.\d+s/g, 'in Ns');
    assert.equal(mask(fast.stderr), mask(slow.stderr));
    assert.equal(mask(fast.stderr), 'wg: 2 targets: 2 cached, 0 to build\nwg: 0 built, 2 cached, 0 failed, 0 skipped in Ns\n');
    assert.deepEqual(
      fast.targets.map((t) => [t.label, t.key, t.wheels, t.files, t.log]),
      slow.targets.map((t) => [t.label, t.key, t.wheels, t.files, t.log]),
    );
  });

  test('every kind of change is noticed, and only real changes rebuild', async () => {
    const ws = await fresh();
    const cases: [string, () => void, Record<string, string>, Record<string, string>?][] = [
      ['touch of a source file', () => fs.utimesSync(ws.path('src/a/in.txt'), new Date(), new Date(Date.now() + 10_000)), { '//a:cpu': 'cached', '//b:cpu': 'cached' }],
      ['a file added to a source folder', () => ws.write('src/b/new.txt', 'new\n'), { '//a:cpu': 'cached', '//b:cpu': 'built' }],
      ['a comment in BUILD.yaml', () => ws.write('BUILD.yaml', `# a comment\n${BUILD_YAML}`), { '//a:cpu': 'cached', '//b:cpu': 'cached' }],
      ['an env file appears', () => ws.write('envs/a.env', 'EXTRA=1\n'), { '//a:cpu': 'built', '//b:cpu': 'built' }],
      ['a patch folder appears', () => ws.write('patches/b/0001-x.patch', '--- a/in.txt\n+++ b/in.txt\n@@ -1 +1 @@\n-b\n+B\n'), { '//a:cpu': 'cached', '//b:cpu': 'built' }],
      ['an output replaced by other bytes', () => replace(ws.path('wg-out/out/b.cpu.out.txt'), 'tampered\n'), { '//a:cpu': 'cached', '//b:cpu': 'cached' }],
      ['a pass_env value', () => undefined, { '//a:cpu': 'built', '//b:cpu': 'built' }, { FLAG: 'on' }],
    ];
    let env: Record<string, string> = {};
    for (const [what, change, expected, newEnv] of cases) {
      // Settle: the previous case's build may have been racy; this build writes a snapshot the change must defeat.
      await sleep(PAST_RACY_WINDOW_MS);
      const settled = (await ws.build([], { env })) as Json;
      const again = (await ws.build([], { env })) as Json;
      assert.equal(again.snapshot, true, `before "${what}": no snapshot was written (${settled.stderr})`);
      change();
      if (newEnv) env = newEnv;
      const r = (await ws.build([], { env })) as Json;
      assert.equal(r.snapshot, undefined, `${what}: answered from a stale snapshot`);
      assert.deepEqual(statuses(r), expected, what);
    }
    assert.equal(ws.read('wg-out/out/b.cpu.out.txt'), 'B\n');
    assert.equal(ws.read('wg-out/out/a.cpu.out.txt'), 'a\nflag=on\n');
  });

  test('outputs deleted from wg-out are linked back from their blobs by the snapshot, unless a blob moved', async () => {
    const ws = await fresh();
    fs.rmSync(ws.path('wg-out'), { recursive: true });
    const restored = (await ws.build()) as Json;
    assert.equal(restored.snapshot, true);
    assert.deepEqual(statuses(restored), { '//a:cpu': 'cached', '//b:cpu': 'cached' });
    assert.equal(ws.read('wg-out/out/a.cpu.out.txt'), 'a\nflag=\n');
    assert.equal(ws.read('wg-out/out/b.cpu.out.txt'), 'b\n');
    assert.match(ws.read('wg-out/logs/b.cpu.log'), /^# \/\/b:cpu {2}key [0-9a-f]{64}\n/);
    const blob = blobOf(ws.cacheDir, ws.path('wg-out/out/b.cpu.out.txt'));
    // The snapshot now describes the restored wg-out: the next build is a plain no-op.
    assert.equal(((await ws.build()) as Json).snapshot, true);

    // One output gone: only it comes back.
    fs.rmSync(ws.path('wg-out/out/b.cpu.out.txt'));
    assert.equal(((await ws.build()) as Json).snapshot, true);
    assert.equal(fs.statSync(ws.path('wg-out/out/b.cpu.out.txt')).ino, fs.statSync(blob).ino);

    // One output gone and another replaced by a file of its own (same bytes, another inode) beside it: the
    // snapshot cannot vouch for that one, and the full path puts the blob back.
    fs.rmSync(ws.path('wg-out/out/b.cpu.out.txt'));
    const aOut = ws.path('wg-out/out/a.cpu.out.txt');
    const aBytes = fs.readFileSync(aOut);
    fs.rmSync(aOut);
    fs.writeFileSync(aOut, aBytes);
    const replaced = (await ws.build()) as Json;
    assert.equal(replaced.snapshot, undefined);
    assert.equal(fs.statSync(aOut).ino, fs.statSync(blobOf(ws.cacheDir, aOut)).ino);
    assert.equal(((await ws.build()) as Json).snapshot, true);

    // A blob whose mtime moved may have been written through a link: the full path re-hashes it before use.
    fs.rmSync(ws.path('wg-out'), { recursive: true });
    fs.utimesSync(blob, new Date(), new Date(Date.now() + 5000));
    const checked = (await ws.build()) as Json;
    assert.equal(checked.snapshot, undefined);
    assert.deepEqual(statuses(checked), { '//a:cpu': 'cached', '//b:cpu': 'cached' });
    assert.equal(ws.read('wg-out/out/b.cpu.out.txt'), 'b\n');
  });

  test('the no-op answer loads node:crypto only to hash a watched env value that is set, and never node:vm', async () => {
    const ws = await fresh();
    // Outside the workspace: a file added there would be a change.
    const probe = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wg-probe-')), 'crypto-probe.cjs');
    fs.writeFileSync(
      probe,
      "process.on('exit', () => process.stderr.write(`crypto loaded: ${process.moduleLoadList.includes('NativeModule crypto')}, vm loaded: ${process.moduleLoadList.includes('NativeModule vm')}\\n`));\n",
    );
    const probed = { NODE_OPTIONS: `--require ${probe}` };
    const unset = await ws.build([], { env: probed });
    assert.equal((unset as Json).snapshot, true);
    assert.match(unset.stderr, /^crypto loaded: false, vm loaded: false$/m);
    // FLAG (pass_env of //a) set: its value is part of what the snapshot checks, as a hash.
    assert.deepEqual(statuses((await ws.build([], { env: { FLAG: 'on' } })) as Json), { '//a:cpu': 'built', '//b:cpu': 'built' });
    const set = await ws.build([], { env: { ...probed, FLAG: 'on' } });
    assert.equal((set as Json).snapshot, true);
    assert.match(set.stderr, /^crypto loaded: true, vm loaded: false$/m);
    fs.rmSync(path.dirname(probe), { recursive: true, force: true });
  });

  test('a snapshot damaged into another shape is refused, not trusted or thrown over: the full path answers', async () => {
    const ws = await fresh();
    assert.equal(((await ws.build()) as Json).snapshot, true);
    const dir = path.join(ws.cacheDir, 'snapshots');
    const [name] = fs.readdirSync(dir).filter((f) => /^[0-9a-f]{16}\.json$/.test(f));
    const file = path.join(dir, name!);
    const shapes: ((s: Record<string, unknown>) => void)[] = [
      (s) => (s['files'] = 7),
      (s) => (s['dirs'] = [[1, 2, 3]]),
      (s) => (s['outputDirs'] = null),
      (s) => (s['digests'] = {}),
    ];
    for (const damage of shapes) {
      const snapshot = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
      damage(snapshot);
      fs.writeFileSync(file, JSON.stringify(snapshot));
      const answered = (await ws.build()) as Json;
      assert.equal(answered.snapshot, undefined);
      assert.deepEqual(statuses(answered), { '//a:cpu': 'cached', '//b:cpu': 'cached' });
      assert.equal(((await ws.build()) as Json).snapshot, true);
    }
  });

  test('a file racy in the last snapshot stays checked by content in the next one, while it is still racy', async () => {
    const ws = await fresh();
    const dir = path.join(ws.cacheDir, 'snapshots');
    const racyFiles = (): string[] => {
      const [name] = fs.readdirSync(dir).filter((f) => /^[0-9a-f]{16}\.json$/.test(f));
      const snapshot = JSON.parse(fs.readFileSync(path.join(dir, name!), 'utf8')) as { digests: [string, string][] };
      return snapshot.digests.map(([p]) => path.relative(ws.dir, p)).sort();
    };
    ws.write('src/a/in.txt', 'A\n');
    assert.deepEqual(statuses((await ws.build()) as Json), { '//a:cpu': 'built', '//b:cpu': 'built' });
    assert.deepEqual(racyFiles(), ['src/a/in.txt']);
    // The edit of b's file only changes b; a's file, unchanged since but still within the window, keeps its digest.
    ws.write('src/b/in.txt', 'B\n');
    assert.deepEqual(statuses((await ws.build()) as Json), { '//a:cpu': 'cached', '//b:cpu': 'built' });
    assert.deepEqual(racyFiles(), ['src/a/in.txt', 'src/b/in.txt']);
    await sleep(PAST_RACY_WINDOW_MS);
    ws.write('src/b/in.txt', 'b\n');
    await sleep(PAST_RACY_WINDOW_MS);
    ws.write('src/a/in.txt', 'a\n');
    await ws.build();
    assert.deepEqual(racyFiles(), ['src/a/in.txt']);
  });

  test('a racy bound later than the build\'s own (a clock set back) makes the next snapshot check every entry', async () => {
    const ws = await fresh();
    const dir = path.join(ws.cacheDir, 'snapshots');
    const [name] = fs.readdirSync(dir).filter((f) => /^[0-9a-f]{16}\.json$/.test(f));
    const file = path.join(dir, name!);
    ws.write('src/a/in.txt', 'A\n');
    await ws.build();
    // a's file is racy and recorded with its digest. Without that digest, and with a bound from the future, the
    // next snapshot cannot tell a's file is racy from the changed entries alone: it must look at every entry,
    // find a's racy and digest-less, and write no snapshot.
    const snapshot = JSON.parse(fs.readFileSync(file, 'utf8')) as { digests: unknown[]; racyBound: string };
    assert.equal(snapshot.digests.length, 1);
    snapshot.digests = [];
    snapshot.racyBound = '9'.repeat(25);
    fs.writeFileSync(file, JSON.stringify(snapshot));
    ws.write('src/b/in.txt', 'B\n');
    assert.deepEqual(statuses((await ws.build()) as Json), { '//a:cpu': 'cached', '//b:cpu': 'built' });
    assert.equal(fs.existsSync(file), false);
    assert.equal(((await ws.build()) as Json).snapshot, undefined);
  });

  test('a no-op past the racy window settles the racy entries it found unchanged; an edit after still shows', async () => {
    const ws = await fresh();
    const [name] = fs.readdirSync(path.join(ws.cacheDir, 'snapshots')).filter((f) => /^[0-9a-f]{16}\.json$/.test(f));
    const file = path.join(ws.cacheDir, 'snapshots', name!);
    const snapshot = (): { digests: [string, string, string][]; racyBound: string } => JSON.parse(fs.readFileSync(file, 'utf8'));
    ws.write('src/a/in.txt', 'A\n');
    assert.deepEqual(statuses((await ws.build()) as Json), { '//a:cpu': 'built', '//b:cpu': 'built' });
    const racy = snapshot();
    assert.deepEqual(racy.digests.map(([p]) => path.relative(ws.dir, p)), ['src/a/in.txt']);
    // Past the window, the no-op reads a's file once more, finds it unchanged, and stops listing it, so that the
    // no-ops after it stat it only; the bound moves forward with it.
    await sleep(PAST_RACY_WINDOW_MS);
    assert.equal(((await ws.build()) as Json).snapshot, true);
    const settled = snapshot();
    assert.deepEqual(settled.digests, []);
    assert.equal(laterThan(settled.racyBound, racy.racyBound), true);
    assert.equal(((await ws.build()) as Json).snapshot, true);
    assert.deepEqual(snapshot(), settled);
    // Its content changed with its size and mtime kept: the ctime still moves, and the stat check sees it.
    const inFile = path.join(ws.dir, 'src/a/in.txt');
    const before = fs.statSync(inFile);
    fs.writeFileSync(inFile, 'Z\n');
    fs.utimesSync(inFile, before.atime, before.mtime);
    assert.deepEqual(statuses((await ws.build()) as Json), { '//a:cpu': 'built', '//b:cpu': 'built' });
  });

  test('the racy check compares times as digits: a longer one is later, an equal one is not, negative ones as numbers', () => {
    assert.equal(laterThan('1795290555020203917', '1795290555020203916'), true);
    assert.equal(laterThan('1795290555020203916', '1795290555020203917'), false);
    assert.equal(laterThan('1795290555020203917', '1795290555020203917'), false);
    assert.equal(laterThan('1000', '999'), true);
    assert.equal(laterThan('999', '1000'), false);
    assert.equal(laterThan('-5', '-10'), true);
    assert.equal(laterThan('-10', '3'), false);
  });

  test('other arguments, a racy input and a failed build never reuse a snapshot', async () => {
    const ws = await fresh();
    assert.equal(((await ws.build()) as Json).snapshot, true);
    // Other patterns or another cache are another question.
    assert.equal(((await ws.build(['//a:cpu'])) as Json).snapshot, undefined);
    assert.equal(((await ws.build(['--cache-dir', `${ws.cacheDir}-other`])) as Json).snapshot, undefined);

    // A source edited just before the build: a second edit within the same timestamp tick would not move its
    // stat, so the snapshot records it with the digest its key used, and the check reads that file again.
    ws.write('src/a/in.txt', 'A\n');
    const racy = (await ws.build()) as Json;
    assert.deepEqual(statuses(racy), { '//a:cpu': 'built', '//b:cpu': 'built' });
    assert.equal(((await ws.build()) as Json).snapshot, true);
    // BUILD.yaml has no digest in any key: edited just before the build, it leaves no snapshot behind, and the
    // next build checks the slow way and is then trusted.
    ws.write('BUILD.yaml', `${BUILD_YAML}\n`);
    assert.deepEqual(statuses((await ws.build()) as Json), { '//a:cpu': 'cached', '//b:cpu': 'cached' });
    assert.equal(((await ws.build()) as Json).snapshot, undefined);
    await sleep(PAST_RACY_WINDOW_MS);
    await ws.build();
    assert.equal(((await ws.build()) as Json).snapshot, true);

    // A failed build removes the snapshot, even when the failure is undone afterwards.
    ws.write('BUILD.yaml', BUILD_YAML.replace('cmd: cat in.txt > out.txt\n', 'cmd: exit 3\n'));
    await ws.build([], { expectCode: 1 });
    ws.write('BUILD.yaml', BUILD_YAML);
    await sleep(PAST_RACY_WINDOW_MS);
    const back = (await ws.build()) as Json;
    assert.equal(back.snapshot, undefined);
    assert.deepEqual(statuses(back), { '//a:cpu': 'cached', '//b:cpu': 'cached' });
  });
});
