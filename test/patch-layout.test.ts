// Patches in fromager's layout: `patches/<pkg>/`, `patches/<pkg>-<version>/` and their `<variant>/` subfolders,
// applied in one file-name order (read back from each target's log), a listed patch applied once, discovered
// patches in the key, the other-version warning, and patches that escape the tree refused before anything changes.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { TempWorkspace, statuses, withStatus, type BuildJson } from './rig.js';

/** A patch that creates `name` (so patches never conflict and each one's effect is a file of its own). */
function creates(name: string): string {
  return `--- /dev/null\n+++ b/${name}\n@@ -0,0 +1 @@\n+${name}\n`;
}

/** The patches a target's log says were applied, in order. */
function applied(result: BuildJson, label: string): string[] {
  const t = result.targets.find((x) => x.label === label);
  assert.ok(t?.log, `${label} has no log`);
  return fs
    .readFileSync(t.log, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('$ patch -p1 < '))
    .map((l) => l.slice('$ patch -p1 < '.length));
}

function keys(result: BuildJson): Record<string, string> {
  return Object.fromEntries(result.targets.map((t) => [t.label, t.key]));
}

const workspaces: TempWorkspace[] = [];
after(() => {
  for (const ws of workspaces) ws.remove();
});

function layoutWorkspace(version: string): TempWorkspace {
  const ws = TempWorkspace.create({
    'src/file.txt': 'source\n',
    'BUILD.yaml': `variants:
  cpu: {}
  gpu: {}
packages:
  lib:
    rule: command
    source: src
    version: "${version}"
    patches: [patches/lib/0003-listed.patch]
    cmd: ls > ../list && mv ../list files.txt
    outs: [files.txt]
`,
    'patches/lib/0001-a.patch': creates('a'),
    'patches/lib/0003-listed.patch': creates('listed'),
    'patches/lib/0005-same.patch': creates('same-unversioned'),
    'patches/lib/gpu/0002-g.patch': creates('g'),
    'patches/lib-1.0/0002-b.patch': creates('b'),
    'patches/lib-1.0/0005-same.patch': creates('same-versioned'),
    'patches/lib-1.0/gpu/0004-v.patch': creates('v'),
    'patches/lib-1.0/README.md': 'not a patch\n',
    'patches/lib-2.0/0001-old.patch': creates('old'),
  });
  workspaces.push(ws);
  return ws;
}

describe('patch folders', () => {
  test('unversioned, versioned and variant folders interleave by file name; a listed patch applies once, where listed', async () => {
    const ws = layoutWorkspace('1.0');
    const r = await ws.build();
    assert.deepEqual(applied(r, '//lib:cpu'), [
      'patches/lib/0001-a.patch',
      'patches/lib-1.0/0002-b.patch',
      'patches/lib/0005-same.patch',
      'patches/lib-1.0/0005-same.patch',
      'patches/lib/0003-listed.patch',
    ]);
    assert.deepEqual(applied(r, '//lib:gpu'), [
      'patches/lib/0001-a.patch',
      'patches/lib-1.0/0002-b.patch',
      'patches/lib/gpu/0002-g.patch',
      'patches/lib-1.0/gpu/0004-v.patch',
      'patches/lib/0005-same.patch',
      'patches/lib-1.0/0005-same.patch',
      'patches/lib/0003-listed.patch',
    ]);
    assert.equal(ws.read('wg-out/out/lib.gpu.files.txt'), 'a\nb\nfile.txt\ng\nlisted\nsame-unversioned\nsame-versioned\nv\n');
    // patches/lib-2.0/ is for another version, but lib-1.0/ matches: no warning.
    assert.deepEqual(r.stderr.split('\n').filter((l) => l.startsWith('warning:')), []);
  });

  test('a discovered patch is in the key like a listed one: a new file in a folder rebuilds exactly the targets it applies to', async () => {
    const ws = layoutWorkspace('1.0.0');
    const r0 = await ws.build(['--dry-run']);
    ws.write('patches/lib/gpu/0009-new.patch', creates('new'));
    const r1 = await ws.build(['--dry-run']);
    assert.equal(keys(r1)['//lib:cpu'], keys(r0)['//lib:cpu']);
    assert.notEqual(keys(r1)['//lib:gpu'], keys(r0)['//lib:gpu']);
    ws.write('patches/lib-1.0/0002-b.patch', creates('b2'));
    const r2 = await ws.build(['--dry-run']);
    assert.notEqual(keys(r2)['//lib:cpu'], keys(r1)['//lib:cpu']);
    assert.notEqual(keys(r2)['//lib:gpu'], keys(r1)['//lib:gpu']);
    // 1.0.0 is the same release as 1.0: the versioned folder applies.
    const built = await ws.build(['//lib:cpu']);
    assert.deepEqual(applied(built, '//lib:cpu').slice(0, 2), ['patches/lib/0001-a.patch', 'patches/lib-1.0/0002-b.patch']);
  });

  test('patch folders only for other versions, or for no variant, are warned about and not applied', async () => {
    const ws = layoutWorkspace('1.1');
    ws.write('patches/lib/gpux/0001-x.patch', creates('x'));
    const r = await ws.build(['//lib:cpu']);
    assert.deepEqual(
      r.stderr.split('\n').filter((l) => l.startsWith('warning:')),
      [
        'warning: patches/lib/gpux/ is not a variant; its patches are not applied (did you mean "gpu"?)',
        'warning: patches/lib-1.0/ exists but lib is version 1.1; its patches are not applied',
        'warning: patches/lib-2.0/ exists but lib is version 1.1; its patches are not applied',
      ],
    );
    assert.deepEqual(applied(r, '//lib:cpu'), ['patches/lib/0001-a.patch', 'patches/lib/0005-same.patch', 'patches/lib/0003-listed.patch']);
  });
});

describe('patches that escape the source tree', () => {
  const evil = `escapes\n\n--- a/../../sentinel\n+++ b/../../sentinel\n@@ -1 +1 @@\n-untouched\n+pwned\n`;

  test('a discovered patch is refused before anything runs, pointing at its line', async () => {
    const ws = layoutWorkspace('1.0');
    ws.write('patches/lib/0004-evil.patch', evil);
    const sentinel = path.join(ws.dir, '..', 'sentinel');
    fs.writeFileSync(sentinel, 'untouched\n');
    const r = await ws.run(['build']);
    assert.equal(
      r.stderr,
      `patches/lib/0004-evil.patch:3:7: error: path '../../sentinel' escapes the source tree; refusing to apply patches/lib/0004-evil.patch
 3 | --- a/../../sentinel
   |       ~~~~~~~~~~~~~~
patches/lib/0004-evil.patch:4:7: error: path '../../sentinel' escapes the source tree; refusing to apply patches/lib/0004-evil.patch
 4 | +++ b/../../sentinel
   |       ~~~~~~~~~~~~~~
wg: 2 errors in patches/lib/0004-evil.patch; nothing was built
`,
    );
    assert.equal(r.code, 2);
    assert.equal(fs.readFileSync(sentinel, 'utf8'), 'untouched\n');
    assert.equal(fs.existsSync(ws.path('wg-out')), false);
  });

  test('the executor checks the whole set before the first patch applies (a patch swapped while the build runs)', async () => {
    const ws = layoutWorkspace('1.0');
    // `swap` runs first and replaces a benign, discovered patch of lib with an escaping one.
    ws.write('evil.patch', evil);
    ws.write('patches/lib/0006-late.patch', creates('late'));
    const yaml = ws.read('BUILD.yaml').replace('    outs: [files.txt]\n', '    outs: [files.txt]\n    deps: [swap]\n');
    ws.write(
      'BUILD.yaml',
      yaml +
        `  swap:\n    rule: command\n    cmd: cp "$EVIL" "$LATE"\n    env: {EVIL: ${JSON.stringify(ws.path('evil.patch'))}, LATE: ${JSON.stringify(ws.path('patches/lib/0006-late.patch'))}}\n`,
    );
    const r = await ws.build(['//lib:cpu'], { expectCode: 1 });
    assert.deepEqual(statuses(r), { '//swap:cpu': 'built', '//lib:cpu': 'failed' });
    const lib = r.targets.find((t) => t.label === '//lib:cpu')!;
    assert.equal(lib.error, "patches/lib/0006-late.patch:3: path '../../sentinel' escapes the source tree; refusing to apply");
    assert.deepEqual(applied(r, '//lib:cpu'), [], 'a patch was applied before the set was checked');
    assert.deepEqual(withStatus(r, 'failed'), ['//lib:cpu']);
  });
});
