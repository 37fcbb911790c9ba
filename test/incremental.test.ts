// The incremental path: when only source files or patches changed since the last snapshot, `wg build` re-keys and
// rebuilds just the targets they touch (and their dependents) from the stored plan, with keys identical to the full
// path's; anything else it cannot vouch for (BUILD.yaml, a new file) goes down the full path.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { statuses, TempWorkspace, type BuildJson } from './rig.js';

/** Files changed within 2 s of a build are "racy" (see noop-snapshot.ts). */
const PAST_RACY_WINDOW_MS = 2100;

const BUILD_YAML = `variants:
  cpu: {}
packages:
  a:
    rule: command
    source: src/a
    cmd: cat in.txt > out.txt
    outs: [out.txt]
  b:
    rule: command
    source: src/b
    deps: [a]
    cmd: cat in.txt > out.txt
    outs: [out.txt]
  c:
    rule: command
    source: src/c
    patches: [fixes/c.patch]
    cmd: cat in.txt > out.txt
    outs: [out.txt]
`;

const patch = (from: string, to: string): string => `--- a/in.txt\n+++ b/in.txt\n@@ -1 +1 @@\n-${from}\n+${to}\n`;

type Json = BuildJson & { snapshot?: boolean; incremental?: boolean; stderr: string };

const workspaces: TempWorkspace[] = [];
after(() => workspaces.forEach((w) => w.remove()));

async function fresh(): Promise<TempWorkspace> {
  const ws = TempWorkspace.create({
    'BUILD.yaml': BUILD_YAML,
    'src/a/in.txt': 'a\n',
    'src/b/in.txt': 'b\n',
    'src/c/in.txt': 'c\n',
    'fixes/c.patch': patch('c', 'c patched'),
  });
  workspaces.push(ws);
  await sleep(PAST_RACY_WINDOW_MS);
  assert.deepEqual(statuses(await ws.build()), { '//a:cpu': 'built', '//b:cpu': 'built', '//c:cpu': 'built' });
  return ws;
}

const out = (ws: TempWorkspace, pkg: string): string => ws.read(`wg-out/out/${pkg}.cpu.out.txt`);

/** The full path's verdict: every key the incremental path stored must be the one the full path computes. */
async function fullPathAgrees(ws: TempWorkspace): Promise<void> {
  const full = (await ws.build([], { env: { WG_NO_FAST_PATH: '1' } })) as Json;
  assert.deepEqual(statuses(full), { '//a:cpu': 'cached', '//b:cpu': 'cached', '//c:cpu': 'cached' });
}

describe('incremental path', () => {
  test('a source edit rebuilds its target and the dependents, with the keys the full path computes', async () => {
    const ws = await fresh();
    ws.write('src/b/in.txt', 'b2\n');
    const leaf = (await ws.build()) as Json;
    assert.equal(leaf.incremental, true);
    assert.deepEqual(statuses(leaf), { '//a:cpu': 'cached', '//b:cpu': 'built', '//c:cpu': 'cached' });
    assert.equal(out(ws, 'b'), 'b2\n');
    assert.match(leaf.stderr, /^wg: 3 targets: 2 cached, 1 to build\n/);
    assert.match(leaf.stderr, /\nwg: 1 built, 2 cached, 0 failed, 0 skipped in \d+\.\ds\n$/);

    ws.write('src/a/in.txt', 'a2\n');
    const dep = (await ws.build()) as Json;
    assert.equal(dep.incremental, true);
    assert.deepEqual(statuses(dep), { '//a:cpu': 'built', '//b:cpu': 'built', '//c:cpu': 'cached' });
    assert.equal(out(ws, 'a'), 'a2\n');

    // Edited back: the old key, whose result the cache still holds.
    ws.write('src/a/in.txt', 'a\n');
    const back = (await ws.build()) as Json;
    assert.equal(back.incremental, true);
    assert.deepEqual(statuses(back), { '//a:cpu': 'cached', '//b:cpu': 'cached', '//c:cpu': 'cached' });
    assert.equal(out(ws, 'a'), 'a\n');
    await fullPathAgrees(ws);
  });

  test('without --json, only the moved targets are looked at, and the snapshot left lists every target', async () => {
    const ws = await fresh();
    const before = (await ws.build()) as Json;
    ws.write('src/a/in.txt', 'a2\n');
    const r = await ws.run(['build']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\nwg: 2 built, 1 cached, 0 failed, 0 skipped in \d+\.\ds\n$/);
    assert.equal(out(ws, 'b'), 'b\n');
    await sleep(PAST_RACY_WINDOW_MS);
    await ws.run(['build']);
    const noop = (await ws.build()) as Json;
    assert.equal(noop.snapshot, true);
    // The same reports as before the edit but for the two new keys.
    const keyOf = (j: Json, label: string): string => j.targets.find((t) => t.label === label)!.key;
    assert.deepEqual(
      noop.targets.map((t) => ({ ...t, key: '' })),
      before.targets.map((t) => ({ ...t, key: '', status: 'cached', durationMs: null, error: null })),
    );
    assert.notEqual(keyOf(noop, '//a:cpu'), keyOf(before, '//a:cpu'));
    assert.equal(keyOf(noop, '//c:cpu'), keyOf(before, '//c:cpu'));
    await fullPathAgrees(ws);
  });

  test('a patch edit rebuilds the patched target', async () => {
    const ws = await fresh();
    assert.equal(out(ws, 'c'), 'c patched\n');
    ws.write('fixes/c.patch', patch('c', 'c patched twice'));
    const r = (await ws.build()) as Json;
    assert.equal(r.incremental, true);
    assert.deepEqual(statuses(r), { '//a:cpu': 'cached', '//b:cpu': 'cached', '//c:cpu': 'built' });
    assert.equal(out(ws, 'c'), 'c patched twice\n');
    await fullPathAgrees(ws);
  });

  test("an edit's build loads neither node:fs/promises nor Node 20's JavaScript rimraf, a dependent's unchanged output included", async () => {
    // //b's output does not change when //a's does: its blob is there already (cas.ts adopt, "taken").
    const ws = await fresh();
    // Outside the workspace: a file added there would be a change.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-probe-'));
    const probe = path.join(dir, 'modules-probe.cjs');
    fs.writeFileSync(
      probe,
      "process.on('exit', () => process.stderr.write(`loaded: ${['NativeModule internal/fs/promises', 'NativeModule internal/fs/rimraf'].filter((m) => process.moduleLoadList.includes(m)).join(', ') || 'neither'}\\n`));\n",
    );
    ws.write('src/a/in.txt', 'a edited\n');
    const r = (await ws.build([], { env: { NODE_OPTIONS: `--require ${probe}` } })) as Json;
    assert.equal(r.incremental, true);
    assert.deepEqual(statuses(r), { '//a:cpu': 'built', '//b:cpu': 'built', '//c:cpu': 'cached' });
    assert.match(r.stderr, /^loaded: neither$/m);
    // What the probe says of a process that does load them, so that "neither" above is not the probe failing.
    const control = spawnSync(process.execPath, ['--require', probe, '-e', "require('fs').rmSync('/nonexistent', { force: true }); require('fs').promises"], { encoding: 'utf8' });
    assert.equal(control.stderr, 'loaded: NativeModule internal/fs/promises, NativeModule internal/fs/rimraf\n');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the same bytes written again rebuild nothing, and the build after is a snapshot no-op', async () => {
    const ws = await fresh();
    ws.write('src/a/in.txt', 'a\n');
    const same = (await ws.build()) as Json;
    assert.equal(same.incremental, true);
    assert.deepEqual(statuses(same), { '//a:cpu': 'cached', '//b:cpu': 'cached', '//c:cpu': 'cached' });
    // The edit is racy (within 2 s), so the new snapshot checks that file by content, not by its stat alone.
    const again = (await ws.build()) as Json;
    assert.equal(again.snapshot, true);
  });

  test('an editor saving through a temporary file and a rename is still an edit of one file', async () => {
    const ws = await fresh();
    fs.writeFileSync(ws.path('src/b/in.txt.tmp'), 'b3\n');
    fs.renameSync(ws.path('src/b/in.txt.tmp'), ws.path('src/b/in.txt'));
    const r = (await ws.build()) as Json;
    assert.equal(r.incremental, true);
    assert.deepEqual(statuses(r), { '//a:cpu': 'cached', '//b:cpu': 'built', '//c:cpu': 'cached' });
    assert.equal(out(ws, 'b'), 'b3\n');
  });

  test('a new file, a removed file or a BUILD.yaml edit goes down the full path', async () => {
    const ws = await fresh();
    ws.write('src/a/extra.txt', 'x\n');
    const added = (await ws.build()) as Json;
    assert.equal(added.incremental, undefined);
    assert.deepEqual(statuses(added), { '//a:cpu': 'built', '//b:cpu': 'built', '//c:cpu': 'cached' });

    await sleep(PAST_RACY_WINDOW_MS);
    await ws.build();
    fs.rmSync(ws.path('src/a/extra.txt'));
    const removed = (await ws.build()) as Json;
    assert.equal(removed.incremental, undefined);
    assert.deepEqual(statuses(removed), { '//a:cpu': 'cached', '//b:cpu': 'cached', '//c:cpu': 'cached' });

    await sleep(PAST_RACY_WINDOW_MS);
    await ws.build();
    ws.write('BUILD.yaml', BUILD_YAML.replace('cat in.txt > out.txt\n    outs: [out.txt]\n  b:', 'cat in.txt in.txt > out.txt\n    outs: [out.txt]\n  b:'));
    const edited = (await ws.build()) as Json;
    assert.equal(edited.incremental, undefined);
    assert.deepEqual(statuses(edited), { '//a:cpu': 'built', '//b:cpu': 'built', '//c:cpu': 'cached' });
  });

  test('a plan cut short is not trusted: the edit goes down the full path, which writes a whole one', async () => {
    const ws = await fresh();
    const plans = path.join(ws.cacheDir, 'snapshots');
    const [plan] = fs.readdirSync(plans).filter((f) => f.endsWith('.plan.v8'));
    const file = path.join(plans, plan!);
    fs.truncateSync(file, fs.statSync(file).size - 10);
    ws.write('src/b/in.txt', 'b2\n');
    const cut = (await ws.build()) as Json;
    assert.equal(cut.incremental, undefined, cut.stderr);
    assert.deepEqual(statuses(cut), { '//a:cpu': 'cached', '//b:cpu': 'built', '//c:cpu': 'cached' });
    assert.equal(out(ws, 'b'), 'b2\n');

    await sleep(PAST_RACY_WINDOW_MS);
    await ws.build();
    ws.write('src/b/in.txt', 'b3\n');
    const next = (await ws.build()) as Json;
    assert.equal(next.incremental, true, next.stderr);
    assert.equal(out(ws, 'b'), 'b3\n');
  });

  test('an edit that breaks the build fails it with the full path words, and the fix builds', async () => {
    const ws = await fresh();
    ws.write('BUILD.yaml', BUILD_YAML.replace('cmd: cat in.txt > out.txt\n    outs: [out.txt]\n  b:', 'cmd: grep -q a in.txt && cat in.txt > out.txt\n    outs: [out.txt]\n  b:'));
    await sleep(PAST_RACY_WINDOW_MS);
    await ws.build();
    await ws.build(); // past the racy window: this one leaves the snapshot and plan
    ws.write('src/a/in.txt', 'z\n');
    const failed = await ws.run(['build']);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /^wg: 3 targets: 1 cached, 2 to build\n/);
    assert.match(failed.stderr, /\] FAILED \/\/a:cpu: command failed: sh exited with code 1\n/);
    assert.match(failed.stderr, /skipped \/\/b:cpu: dependency \/\/a:cpu failed\n/);
    assert.match(failed.stderr, /\nwg: 0 built, 1 cached, 1 failed, 1 skipped in \d+\.\ds\n$/);
    ws.write('src/a/in.txt', 'a fixed\n');
    const fixed = (await ws.build()) as Json;
    assert.deepEqual(statuses(fixed), { '//a:cpu': 'built', '//b:cpu': 'built', '//c:cpu': 'cached' });
    assert.equal(out(ws, 'a'), 'a fixed\n');
  });

  test('edits leave a small delta beside the snapshot until many targets moved; no-ops and restores read through it', async () => {
    // 20 targets sharing one patch: editing a source moves one target (a delta), editing the patch moves all 20,
    // past the 16 a delta may hold, so everything is written again and the delta goes.
    const names = Array.from({ length: 20 }, (_, i) => `p${String(i).padStart(2, '0')}`);
    const yaml = ['variants:', '  cpu: {}', 'packages:'];
    const files: Record<string, string> = { 'fixes/all.patch': patch('x', 'x patched') };
    for (const n of names) {
      yaml.push(`  ${n}:`, '    rule: command', `    source: src/${n}`, '    patches: [fixes/all.patch]', '    cmd: cat in.txt > out.txt', '    outs: [out.txt]');
      files[`src/${n}/in.txt`] = 'x\n';
    }
    const ws = TempWorkspace.create({ ...files, 'BUILD.yaml': `${yaml.join('\n')}\n` });
    workspaces.push(ws);
    await sleep(PAST_RACY_WINDOW_MS);
    await ws.build();
    const snapshots = path.join(ws.cacheDir, 'snapshots');
    const deltas = (): string[] => fs.readdirSync(snapshots).filter((f) => f.endsWith('.delta.json'));
    assert.deepEqual(deltas(), []);

    ws.write('src/p03/in.txt', 'x\ny\n');
    const one = (await ws.build()) as Json;
    assert.equal(one.incremental, true);
    assert.equal(one.targets.filter((t) => t.status === 'built').length, 1);
    assert.equal(deltas().length, 1);
    // A second edit carries the first one's changes over into its delta.
    ws.write('src/p05/in.txt', 'x\nw\n');
    const two = (await ws.build()) as Json;
    assert.equal(two.incremental, true);
    assert.deepEqual(two.targets.filter((t) => t.status === 'built').map((t) => t.label), ['//p05:cpu']);
    assert.equal(deltas().length, 1);

    // The no-op's --json document and a restore of the deleted wg-out come from the full files and the delta.
    await sleep(PAST_RACY_WINDOW_MS);
    const noop = (await ws.build()) as Json;
    assert.equal(noop.snapshot, true);
    assert.deepEqual(
      noop.targets.find((t) => t.label === '//p03:cpu'),
      { ...one.targets.find((t) => t.label === '//p03:cpu')!, status: 'cached', durationMs: null, error: null },
    );
    fs.rmSync(ws.path('wg-out'), { recursive: true });
    const restored = (await ws.build()) as Json;
    assert.equal(restored.snapshot, true);
    assert.equal(ws.read('wg-out/out/p03.cpu.out.txt'), 'x patched\ny\n');
    assert.equal(ws.read('wg-out/out/p04.cpu.out.txt'), 'x patched\n');
    assert.equal(ws.read('wg-out/out/p05.cpu.out.txt'), 'x patched\nw\n');

    ws.write('fixes/all.patch', patch('x', 'x patched again'));
    const all = (await ws.build()) as Json;
    assert.equal(all.incremental, true);
    assert.equal(all.targets.filter((t) => t.status === 'built').length, 20);
    assert.deepEqual(deltas(), []);
    ws.write('src/p03/in.txt', 'x\nz\n');
    const after = (await ws.build()) as Json;
    assert.equal(after.incremental, true);
    assert.equal(ws.read('wg-out/out/p03.cpu.out.txt'), 'x patched again\nz\n');
    const full = (await ws.build([], { env: { WG_NO_FAST_PATH: '1' } })) as Json;
    assert.ok(full.targets.every((t) => t.status === 'cached'));
  });
});

