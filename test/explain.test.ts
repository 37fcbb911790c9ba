// `wg explain`: the exact words for each kind of input that moves a key, through the real binary (one build, then
// one edit at a time, explained and undone), torch upgraded in a toolchain's venv, and the record diff's wording
// for inputs a test machine cannot flip (Python and nvcc versions, git and url sources, rule versions).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { diffRecords } from '../engine/explain.js';
import { KEY_FORMAT, type KeyRecord } from '../engine/key.js';
import type { ToolchainFacts } from '../rules/rule.js';
import { sh, SYSTEM_PYTHON, TempWorkspace, WG_BIN } from './rig.js';
import { installTorch as standInTorch } from './stand-in-torch.js';

const BUILD = `variants:
  cpu:
    env: {TORCH_CUDA_ARCH_LIST: "8.0"}
packages:
  dep: {rule: command, cmd: "echo d > d.out", outs: [d.out]}
  p:
    rule: command
    source: src
    patches: [fixes/0001-a.patch, fixes/0002-b.patch]
    env: {X: "1"}
    cmd: "cat a.txt b.txt > p.out"
    outs: [p.out]
    deps: [dep]
`;

const patch = (file: string, from: string, to: string): string =>
  `--- a/${file}\n+++ b/${file}\n@@ -1 +1 @@\n-${from}\n+${to}\n`;

async function explainOut(ws: TempWorkspace, args: string[]): Promise<string> {
  const r = await ws.run(['explain', ...args]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  return r.stdout;
}

describe('wg explain, end to end', () => {
  it('names each changed input of a target in exact words', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': BUILD,
      'src/a.txt': 'a\n',
      'src/b.txt': 'b\n',
      'src/c.txt': 'c\n',
      'fixes/0001-a.patch': patch('a.txt', 'a', 'A'),
      'fixes/0002-b.patch': patch('b.txt', 'b', 'B'),
      'fixes/0003-c.patch': patch('c.txt', 'c', 'C'),
    });
    try {
      assert.equal(await explainOut(ws, ['//p:cpu']), '//p:cpu has never been built\n');

      const built = await ws.build();
      const key = (label: string): string => built.targets.find((t) => t.label === label)!.key.slice(0, 12);
      assert.equal(await explainOut(ws, ['//p:cpu']), `//p:cpu is cached (key ${key('//p:cpu')})\n`);
      assert.equal(
        await explainOut(ws, ['//...']),
        `//dep:cpu is cached (key ${key('//dep:cpu')})\n//p:cpu is cached (key ${key('//p:cpu')})\n`,
      );

      /** Applies `edit`, explains `label`, undoes the edit, and compares the change lines exactly. */
      const check = async (what: string, edit: () => void, undo: () => void, expected: string[], label = '//p:cpu'): Promise<void> => {
        edit();
        let out: string;
        try {
          out = await explainOut(ws, [label]);
        } finally {
          undo();
        }
        const m = /^(\S+) would be rebuilt \(key ([0-9a-f]{12}) → ([0-9a-f]{12})\):\n/.exec(out);
        assert.ok(m, `${what}: ${out}`);
        assert.equal(m[1], label, what);
        assert.equal(m[2], key(label), `${what}: the old key is the one of the last build`);
        assert.notEqual(m[3], m[2], what);
        assert.deepEqual(out.slice(m[0].length).split('\n').slice(0, -1), expected.map((l) => `  ${l}`), what);
      };
      const yaml = (from: string, to: string): [() => void, () => void] => {
        assert.ok(BUILD.includes(from), from);
        return [() => ws.write('BUILD.yaml', BUILD.replace(from, to)), () => ws.write('BUILD.yaml', BUILD)];
      };
      const file = (rel: string, content: string | null): [() => void, () => void] => {
        const before = fs.existsSync(ws.path(rel)) ? ws.read(rel) : null;
        const put = (c: string | null): void => (c === null ? fs.rmSync(ws.path(rel)) : ws.write(rel, c));
        return [() => put(content), () => put(before)];
      };

      await check('patch changed', ...file('fixes/0001-a.patch', patch('a.txt', 'a', 'AA')), ['patch fixes/0001-a.patch changed']);
      await check('patch added', ...yaml('0002-b.patch]', '0002-b.patch, fixes/0003-c.patch]'), ['patch fixes/0003-c.patch added']);
      await check('patch removed', ...yaml('fixes/0001-a.patch, ', ''), ['patch fixes/0001-a.patch removed']);
      await check('patches reordered', ...yaml('[fixes/0001-a.patch, fixes/0002-b.patch]', '[fixes/0002-b.patch, fixes/0001-a.patch]'), [
        'patches reordered',
      ]);
      await check('env changed', ...yaml('TORCH_CUDA_ARCH_LIST: "8.0"', 'TORCH_CUDA_ARCH_LIST: "8.0;9.0"'), [
        'env TORCH_CUDA_ARCH_LIST "8.0" → "8.0;9.0"',
        // The variant's env reaches the dependency too, so its key moved as well.
        'dependency //dep:cpu changed',
      ]);
      await check('env added', ...yaml('{X: "1"}', '{X: "1", Y: "2"}'), ['env Y added']);
      await check('env removed', ...yaml('env: {X: "1"}', 'env: {}'), ['env X removed']);
      await check('build command changed', ...yaml('cat a.txt b.txt > p.out', 'cat b.txt a.txt > p.out'), ['build command changed']);
      await check('dependency changed', ...yaml('echo d > d.out', 'echo dd > d.out'), ['dependency //dep:cpu changed']);
      await check('the dependency itself', ...yaml('echo d > d.out', 'echo dd > d.out'), ['build command changed'], '//dep:cpu');

      const [change, unchange] = file('src/b.txt', 'b, longer\n');
      const [add, unadd] = file('src/d.txt', 'd\n');
      const [remove, unremove] = file('src/c.txt', null);
      await check(
        'source files',
        () => (change(), add(), remove()),
        () => (unchange(), unadd(), unremove()),
        ['source file b.txt changed', 'source file c.txt removed', 'source file d.txt added'],
      );
      await check(
        'several inputs at once, in the record order',
        () => (ws.write('BUILD.yaml', BUILD.replace('{X: "1"}', '{X: "2"}')), change()),
        () => (ws.write('BUILD.yaml', BUILD), unchange()),
        ['source file b.txt changed', 'env X "1" → "2"'],
      );

      // Every edit was undone: the target is cached again, and explain wrote nothing that changes that.
      assert.equal(await explainOut(ws, ['//p:cpu']), `//p:cpu is cached (key ${key('//p:cpu')})\n`);

      // A rebuild moves the pointer: after building the change, the target is cached under its new key.
      ws.write('BUILD.yaml', BUILD.replace('{X: "1"}', '{X: "3"}'));
      const rebuilt = await ws.build(['//p:cpu']);
      assert.equal(await explainOut(ws, ['//p:cpu']), `//p:cpu is cached (key ${rebuilt.targets.find((t) => t.label === '//p:cpu')!.key.slice(0, 12)})\n`);
      ws.write('BUILD.yaml', BUILD);
      const back = JSON.parse(await explainOut(ws, ['--json', '//p:cpu'])) as { targets: { status: string; changes?: string[] }[] };
      // The original key is still in the cache, so it is cached, whatever the last build was.
      assert.equal(back.targets[0]!.status, 'cached');
      ws.write('BUILD.yaml', BUILD.replace('{X: "1"}', '{X: "4"}'));
      const json = JSON.parse(await explainOut(ws, ['--json', '//p:cpu'])) as { targets: { status: string; changes: string[] }[] };
      assert.deepEqual(json.targets.map((t) => [t.status, t.changes]), [['changed', ['env X "3" → "4"']]]);

      const bad = await ws.run(['explain', '//nope:cpu']);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^wg: error: unknown target '\/\/nope:cpu'/);
    } finally {
      ws.remove();
    }
  });

  it('says which torch version a toolchain moved from and to', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `toolchains:
  torch-env:
    python: ../venv/bin/python
variants:
  with-torch:
    toolchain: torch-env
packages:
  tiny:
    rule: python_wheel
    source: tiny
`,
      'tiny/setup.py': 'from setuptools import setup\nsetup(name="tiny", version="0.1", py_modules=["tiny"])\n',
      'tiny/tiny.py': 'X = 1\n',
    });
    try {
      const venv = path.join(ws.dir, '..', 'venv');
      await sh(SYSTEM_PYTHON, ['-m', 'venv', '--system-site-packages', '--without-pip', venv]);
      const site = path.join(venv, 'lib', 'python3.11', 'site-packages');
      installTorch(site, '2.4.0');
      await ws.build();
      installTorch(site, '2.4.1');
      // Longer than the window in which the toolchain prober distrusts fresh directory stats.
      await sleep(2200);
      const out = await explainOut(ws, ['//tiny:with-torch']);
      assert.match(out, /^\/\/tiny:with-torch would be rebuilt \(key [0-9a-f]{12} → [0-9a-f]{12}\):\n {2}torch 2\.4\.0 → 2\.4\.1\n$/);
    } finally {
      ws.remove();
    }
  });
});

const installTorch = (siteDir: string, version: string): void => standInTorch(siteDir, version);

describe('the words of a record diff (inputs a test machine cannot flip)', () => {
  const facts = (python: string, nvcc: string | null, torch: string | null): ToolchainFacts => ({
    python: { version: python, implementation: 'cpython', tag: 'cp311', abi: 'cp311', platform: 'linux_x86_64' },
    buildTools: { pip: '23.0', setuptools: '66.1', wheel: '0.38' },
    torch: torch === null ? null : { version: torch, cuda: '12.4', cxx11abi: false },
    cuda: nvcc === null ? null : { nvcc },
  });
  const record = (over: Partial<KeyRecord> = {}): KeyRecord => ({
    format: KEY_FORMAT,
    rule: { kind: 'python_wheel', version: 1 },
    attrs: { build: null, buildDir: '.', test: null },
    source: { kind: 'path', tree: 'a'.repeat(64) },
    patches: [],
    env: {},
    toolchain: facts('3.11.2', '12.4.131', '2.4.0'),
    systemSitePackages: false,
    deps: [],
    ...over,
  });
  const diff = (a: KeyRecord, b: KeyRecord): string[] => diffRecords(a, b, { oldDeps: [], newDeps: [], oldFiles: undefined, newFiles: undefined });

  it('toolchain facts', () => {
    assert.deepEqual(diff(record(), record({ toolchain: facts('3.11.4', '12.6.20', '2.4.1') })), [
      'python 3.11.2 → 3.11.4',
      'torch 2.4.0 → 2.4.1',
      'nvcc 12.4.131 → 12.6.20',
    ]);
    assert.deepEqual(diff(record(), record({ toolchain: facts('3.11.2', null, null) })), ['torch 2.4.0 → none', 'nvcc 12.4.131 → none']);
  });

  it('sources: a folder without its file list, git commits, url digests, a change of kind', () => {
    assert.deepEqual(diff(record(), record({ source: { kind: 'path', tree: 'b'.repeat(64) } })), ['source changed']);
    const git = (commit: string): KeyRecord['source'] => ({ kind: 'git', url: 'https://example.com/m.git', commit, submodules: false });
    assert.deepEqual(diff(record({ source: git('1a2b3c4'.padEnd(40, '0')) }), record({ source: git('5d6e7f8'.padEnd(40, '1')) })), [
      'source commit 1a2b3c4 → 5d6e7f8',
    ]);
    const url = (sha256: string): KeyRecord['source'] => ({ kind: 'url', sha256, strip: 1 });
    assert.deepEqual(diff(record({ source: url('c'.repeat(64)) }), record({ source: url('d'.repeat(64)) })), [
      `source sha256 ${'c'.repeat(12)} → ${'d'.repeat(12)}`,
    ]);
    assert.deepEqual(diff(record(), record({ source: git('5d6e7f8'.padEnd(40, '1')) })), ['source folder → git commit 5d6e7f8']);
  });

  it('rule version, build settings and fields it does not know', () => {
    assert.deepEqual(diff(record(), record({ rule: { kind: 'python_wheel', version: 2 } })), ['rule python_wheel version 1 → 2']);
    assert.deepEqual(diff(record(), record({ attrs: { build: null, buildDir: 'python', test: null } })), ['build_dir "." → "python"']);
    assert.deepEqual(diff(record(), record({ systemSitePackages: true })), ['system_site_packages false → true']);
    assert.deepEqual(diff(record(), { ...record(), future: 1 } as KeyRecord), ['future changed']);
  });
});

// What explain compares with is committed while the build runs, a batch every 128 targets (engine/target-runner.ts):
// a wg killed later still leaves the record of what it built before. 130 quick targets, then one that waits.
const QUICK = Array.from({ length: 130 }, (_, i) => `q${String(i).padStart(3, '0')}`);
const killedYaml = (q000: string): string => `variants:
  cpu: {}
packages:
${QUICK.map((q) => `  ${q}:\n    rule: command\n    cmd: ${q === 'q000' ? q000 : `echo ${q} > o.txt`}\n    outs: [o.txt]\n`).join('')}  wait:
    rule: command
    deps: [${QUICK.join(', ')}]
    cmd: 'while [ ! -e "$GO" ]; do sleep 0.05; done; touch o.txt'
    pass_env: [GO]
    outs: [o.txt]
`;

describe('explain after a killed build', () => {
  it('remembers the targets a SIGKILLed build finished long enough before its end', async () => {
    const ws = TempWorkspace.create({ 'BUILD.yaml': killedYaml('echo q000 > o.txt') });
    const go = ws.path('go');
    try {
      const child = spawn(process.execPath, [WG_BIN, 'build', '-j', '2'], {
        cwd: ws.dir,
        env: { ...process.env, WG_CACHE_DIR: ws.cacheDir, GO: go },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const closed = new Promise((resolve) => child.on('close', resolve));
      let stderr = '';
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (stderr.includes('building //wait:cpu')) resolve();
        });
        child.on('close', () => reject(new Error(`wg ended before //wait:cpu started:\n${stderr}`)));
      });
      child.kill('SIGKILL');
      await closed;
      fs.writeFileSync(go, '');
      fs.writeFileSync(ws.path('BUILD.yaml'), killedYaml('echo changed > o.txt'));
      const r = await ws.run(['explain', '//q000:cpu']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^\/\/q000:cpu would be rebuilt \(key [0-9a-f]{12} → [0-9a-f]{12}\):\n/);
    } finally {
      fs.writeFileSync(go, '');
      ws.remove();
    }
  });
});
