// The demo workspace end to end: real `wg` processes, real Python builds (Debian's python3, offline), real nvcc.
// What a user sees: the wheelhouse layout, installable wheels, exactly the right targets rebuilt after an edit,
// nothing rebuilt after irrelevant changes, corrupt cache blobs rebuilt (never served), failed builds cached never.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseDocument, isMap, isScalar, type YAMLMap } from 'yaml';
import { SYSTEM_PYTHON, TempWorkspace, sh, statuses, withStatus, type BuildJson } from './rig.js';

const PACKAGES = ['fastmath', 'greet', 'vecstats'] as const;
const VARIANTS = ['cpu', 'cuda'] as const;
const ALL = PACKAGES.flatMap((p) => VARIANTS.map((v) => `//${p}:${v}`)).sort();

function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** `{label: status}` for every demo target set to `status`, except the `overrides`. */
function expectAll(status: string, overrides: Record<string, string> = {}): Record<string, string> {
  return Object.fromEntries(ALL.map((l) => [l, overrides[l] ?? status]));
}

function keysOf(result: BuildJson): Record<string, string> {
  return Object.fromEntries(result.targets.map((t) => [t.label, t.key]));
}

function target(result: BuildJson, label: string) {
  const t = result.targets.find((x) => x.label === label);
  assert.ok(t, `${label} is not in the build report`);
  return t;
}

/** Every file under `dir`, as relative path → sha256. */
function treeShas(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of (fs.readdirSync(dir, { recursive: true }) as string[]).sort()) {
    const abs = path.join(dir, rel);
    if (fs.statSync(abs).isFile()) out[rel] = sha256File(abs);
  }
  return out;
}

/** Every regular file under `dir` (recursive), relative; [] when `dir` does not exist. */
function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((rel) => fs.statSync(path.join(dir, rel)).isFile()).sort();
}

/** `cu130` for nvcc 13.0: the accelerator folder of the cuda variant's wheels. */
async function cudaTagFromNvcc(): Promise<string> {
  const out = await sh('nvcc', ['--version']);
  const m = /release (\d+)\.(\d+)/.exec(out);
  assert.ok(m, `cannot read the CUDA release from nvcc --version:\n${out}`);
  return `cu${m[1]}${m[2]}`;
}

/** The `warning: …` lines of wg's stderr. */
function warnings(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('warning: '));
}

const temps: string[] = [];
const workspaces: TempWorkspace[] = [];
function demoWorkspace(): TempWorkspace {
  const ws = TempWorkspace.demo();
  workspaces.push(ws);
  return ws;
}

describe('the demo workspace', () => {
  let base: TempWorkspace;
  let first: BuildJson & { stderr: string };
  let firstShas: Record<string, string>;
  let cudaTag: string;

  before(async () => {
    cudaTag = await cudaTagFromNvcc();
    base = demoWorkspace();
    first = await base.build();
    firstShas = treeShas(base.path('wg-out/wheelhouse'));
  });

  after(() => {
    for (const ws of workspaces) ws.remove();
    for (const d of temps) fs.rmSync(d, { recursive: true, force: true });
  });

  test('builds every target into the wheelhouse, then takes all of them from the cache', async () => {
    assert.deepEqual(statuses(first), expectAll('built'));
    assert.equal(first.ok, true);

    const wheelhouse = base.path('wg-out/wheelhouse/py311');
    const dirs = { cpu: path.join(wheelhouse, 'cpu', 'linux_x86_64'), cuda: path.join(wheelhouse, cudaTag, 'linux_x86_64') };
    for (const variant of VARIANTS) {
      const expected: string[] = [];
      for (const pkg of PACKAGES) {
        const t = target(first, `//${pkg}:${variant}`);
        assert.equal(t.wheels.length, 1, `${t.label} wheels: ${JSON.stringify(t.wheels)}`);
        const wheel = t.wheels[0]!;
        assert.equal(path.dirname(wheel), dirs[variant], `${t.label}'s wheel is in the wrong folder`);
        assert.match(path.basename(wheel), new RegExp(`^wg_demo_${pkg}-1\\.0\\.0-.*\\.whl$`));
        expected.push(path.basename(wheel));
      }
      assert.deepEqual(fs.readdirSync(dirs[variant]).sort(), expected.sort(), `files in ${dirs[variant]}`);
    }
    assert.deepEqual(fs.readdirSync(wheelhouse).sort(), ['cpu', cudaTag].sort());

    const logs = base.path('wg-out/logs');
    assert.deepEqual(fs.readdirSync(logs).sort(), ALL.map((l) => l.replace(/^\/\/(.*):(.*)$/, '$1.$2.log')).sort());
    for (const t of first.targets) {
      assert.equal(t.log, path.join(logs, t.label.replace(/^\/\/(.*):(.*)$/, '$1.$2.log')));
      assert.ok(fs.readFileSync(t.log!, 'utf8').startsWith(`# ${t.label}  key ${t.key}\n`), `${t.log} is not ${t.label}'s log`);
    }

    const shasBefore = treeShas(base.path('wg-out/wheelhouse'));
    assert.deepEqual(shasBefore, firstShas);
    assert.equal(Object.keys(shasBefore).length, 6);
    const second = await base.build();
    assert.deepEqual(statuses(second), expectAll('cached'));
    assert.deepEqual(keysOf(second), keysOf(first));
    assert.deepEqual(treeShas(base.path('wg-out/wheelhouse')), shasBefore);
    assert.match(second.stderr, /^wg: 6 targets: 6 cached, 0 to build$/m);
  });

  test('the cpu wheels install with pip and work; the cuda fastmath wheel has the cuda backend', async () => {
    assert.equal(first.ok, true, 'the demo build failed');
    const wheel = (label: string): string => target(first, label).wheels[0]!;
    const venvDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-demo-venv-'));
    temps.push(venvDir);
    const venv = path.join(venvDir, 'venv');
    const py = path.join(venv, 'bin', 'python');
    const env = { PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INDEX: '1', PIP_NO_CACHE_DIR: '1', PYTHONDONTWRITEBYTECODE: '1' };
    await sh(SYSTEM_PYTHON, ['-m', 'venv', venv]);
    await sh(py, ['-m', 'pip', 'install', '--no-index', '--no-deps', ...['greet', 'fastmath', 'vecstats'].map((p) => wheel(`//${p}:cpu`))], { env });

    // Run outside the workspace so only the installed wheels can be imported.
    const probe = async (): Promise<Record<string, unknown>> => {
      const code =
        'import json, fastmath, vecstats, greet; print(json.dumps({"dot": fastmath.dot([1, 2], [3, 4]), "patch_level": fastmath.patch_level(), ' +
        '"backend": fastmath.backend(), "norm": vecstats.norm([3, 4]), "hello": greet.hello("x"), ' +
        '"files": [m.__file__ for m in (fastmath, vecstats, greet)]}))';
      const out = await sh(py, ['-c', code], { cwd: venvDir, env });
      return JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
    };
    const cpu = await probe();
    const files = cpu['files'] as string[];
    delete cpu['files'];
    assert.deepEqual(cpu, { dot: 11.0, patch_level: 1, backend: 'cpu', norm: 5.0, hello: 'hello, x' });
    for (const f of files) assert.ok(f.startsWith(path.join(venv, 'lib') + path.sep), `${f} is not installed in the venv`);

    await sh(py, ['-m', 'pip', 'install', '--no-index', '--no-deps', '--force-reinstall', wheel('//fastmath:cuda')], { env });
    const cuda = await probe();
    delete cuda['files'];
    assert.deepEqual(cuda, { dot: 11.0, patch_level: 1, backend: 'cuda', norm: 5.0, hello: 'hello, x' });

    for (const label of ['//fastmath:cpu', '//fastmath:cuda']) {
      const out = await sh(SYSTEM_PYTHON, ['-c', 'import json, sys, zipfile; print(json.dumps(zipfile.ZipFile(sys.argv[1]).namelist()))', wheel(label)]);
      const names = JSON.parse(out.trim()) as string[];
      assert.ok(names.includes('fastmath/include/fastmath.h'), `${label}'s wheel has no fastmath/include/fastmath.h: ${names.join(' ')}`);
      assert.equal(names.filter((n) => /^wg_demo_fastmath-1\.0\.0\.dist-info\/RECORD$/.test(n)).length, 1, `${label}'s wheel has no RECORD: ${names.join(' ')}`);
    }
  });

  test('editing a variant-only patch rebuilds that variant; editing the shared patch rebuilds both', async () => {
    const ws = demoWorkspace();
    const patch2 = (note: string): string =>
      [
        'fastmath: a note in the file header (cpu variant only).',
        '',
        '--- a/src/_core.c',
        '+++ b/src/_core.c',
        '@@ -1,4 +1,4 @@',
        '-/* fastmath._core: dot products in C, plus (when built with FASTMATH_CUDA=1) a CUDA object. */',
        `+/* fastmath._core: dot products in C, plus (when built with FASTMATH_CUDA=1) a CUDA object. ${note} */`,
        ' #define PY_SSIZE_T_CLEAN',
        ' #include <Python.h>',
        ' ',
        '',
      ].join('\n');
    ws.write('patches/fastmath/0002-x.patch', patch2('0002: version 1'));
    const shared = '      - patches/fastmath/0001-dot-bias.patch\n';
    const yaml = ws.read('BUILD.yaml');
    assert.ok(yaml.includes(shared));
    ws.write(
      'BUILD.yaml',
      yaml.replace(shared, `${shared}    variants:\n      cpu:\n        patches: [patches/fastmath/0002-x.patch]\n      cuda: {}\n`),
    );

    const r1 = await ws.build();
    assert.deepEqual(statuses(r1), expectAll('built'));
    const applied = (label: string): boolean =>
      fs.readFileSync(target(r1, label).log!, 'utf8').includes('$ patch -p1 < patches/fastmath/0002-x.patch\n');
    assert.equal(applied('//fastmath:cpu'), true, '0002 was not applied in the cpu variant');
    assert.equal(applied('//fastmath:cuda'), false, '0002 was applied in the cuda variant');

    // Same size as before: only the bytes change.
    ws.write('patches/fastmath/0002-x.patch', patch2('0002: version 2'));
    const r2 = await ws.build();
    assert.deepEqual(withStatus(r2, 'built'), ['//fastmath:cpu', '//vecstats:cpu']);
    assert.deepEqual(statuses(r2), expectAll('cached', { '//fastmath:cpu': 'built', '//vecstats:cpu': 'built' }));
    for (const label of ALL) {
      const changed = label === '//fastmath:cpu' || label === '//vecstats:cpu';
      assert.equal(target(r2, label).key !== target(r1, label).key, changed, `${label}: key changed?`);
    }

    const p1 = ws.read('patches/fastmath/0001-dot-bias.patch');
    const before1 = 'checked upstream, the bias stays zero';
    assert.ok(p1.includes(before1));
    ws.write('patches/fastmath/0001-dot-bias.patch', p1.replace(before1, 'checked upstream; the bias stays zero'));
    const r3 = await ws.build();
    const rebuilt = ['//fastmath:cpu', '//fastmath:cuda', '//vecstats:cpu', '//vecstats:cuda'];
    assert.deepEqual(withStatus(r3, 'built'), rebuilt);
    assert.deepEqual(statuses(r3), expectAll('built', { '//greet:cpu': 'cached', '//greet:cuda': 'cached' }));
    for (const label of rebuilt) assert.notEqual(target(r3, label).key, target(r2, label).key, label);
  });

  test('a touch, a reordered and commented BUILD.yaml, and a moved workspace rebuild nothing', async () => {
    const ws = demoWorkspace();
    const r0 = await ws.build();
    assert.deepEqual(statuses(r0), expectAll('built'));
    const keys = keysOf(r0);

    const core = ws.path('examples/fastmath/src/_core.c');
    const later = Date.now() / 1000 + 10;
    fs.utimesSync(core, later, later);
    assert.ok(Math.abs(fs.statSync(core).mtimeMs / 1000 - later) < 1);
    const r1 = await ws.build();
    assert.deepEqual(statuses(r1), expectAll('cached'), 'after a touch');
    assert.deepEqual(keysOf(r1), keys);

    const text = ws.read('BUILD.yaml');
    const doc = parseDocument(text);
    const packages = doc.get('packages') as YAMLMap;
    assert.ok(isMap(packages));
    packages.items.reverse();
    const greet = packages.get('greet') as YAMLMap;
    const ruleAt = greet.items.findIndex((p) => isScalar(p.key) && p.key.value === 'rule');
    const sourceAt = greet.items.findIndex((p) => isScalar(p.key) && p.key.value === 'source');
    assert.ok(ruleAt >= 0 && sourceAt >= 0);
    [greet.items[ruleAt], greet.items[sourceAt]] = [greet.items[sourceAt]!, greet.items[ruleAt]!];
    doc.commentBefore = ' Reordered by demo.test.ts: packages reversed, greet has source before rule.';
    greet.commentBefore = ' a comment on greet';
    const reordered = String(doc);
    assert.deepEqual(parseDocument(reordered).toJS(), parseDocument(text).toJS(), 'the edit must not change what BUILD.yaml says');
    const js = parseDocument(reordered).toJS() as { packages: Record<string, Record<string, unknown>> };
    assert.deepEqual(Object.keys(js.packages), ['vecstats', 'fastmath', 'greet'], reordered);
    assert.deepEqual(Object.keys(js.packages['greet']!).slice(0, 2), ['source', 'rule'], reordered);
    ws.write('BUILD.yaml', reordered);
    const r2 = await ws.build();
    assert.deepEqual(statuses(r2), expectAll('cached'), `after reordering BUILD.yaml to:\n${reordered}`);
    assert.deepEqual(keysOf(r2), keys);

    const oldDir = ws.dir;
    ws.moveTo('moved');
    assert.equal(fs.existsSync(oldDir), false);
    const r3 = await ws.build();
    assert.deepEqual(statuses(r3), expectAll('cached'), 'after moving the workspace');
    assert.deepEqual(keysOf(r3), keys);
    for (const t of r3.targets) for (const w of t.wheels) assert.ok(w.startsWith(ws.dir + path.sep), w);
  });

  test('a corrupted or truncated cache blob is rebuilt, not served', async () => {
    const ws = demoWorkspace();
    const r0 = await ws.build(['//greet:cpu']);
    assert.deepEqual(statuses(r0), { '//greet:cpu': 'built' });
    const { key } = target(r0, '//greet:cpu');
    const wheel = target(r0, '//greet:cpu').wheels[0]!;
    const digest = sha256File(wheel);
    const blob = path.join(ws.cacheDir, 'cas', digest.slice(0, 2), digest);
    assert.equal(sha256File(blob), digest);
    const size = fs.statSync(blob).size;

    const damages: [string, (fd: number) => void][] = [
      [
        'bytes flipped',
        (fd) => {
          const buf = Buffer.alloc(16);
          const at = Math.floor(size / 2);
          fs.readSync(fd, buf, 0, buf.length, at);
          for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! ^ 0xff;
          fs.writeSync(fd, buf, 0, buf.length, at);
        },
      ],
      ['truncated', (fd) => fs.ftruncateSync(fd, size - 100)],
    ];
    for (const [what, damage] of damages) {
      fs.chmodSync(blob, 0o644);
      const fd = fs.openSync(blob, 'r+');
      try {
        damage(fd);
      } finally {
        fs.closeSync(fd);
      }
      const bad = sha256File(blob);
      assert.notEqual(bad, digest);
      assert.equal(fs.statSync(blob).size, what === 'truncated' ? size - 100 : size);
      fs.rmSync(ws.path('wg-out'), { recursive: true, force: true });

      const r = await ws.build(['//greet:cpu']);
      assert.deepEqual(statuses(r), { '//greet:cpu': 'built' }, what);
      assert.equal(target(r, '//greet:cpu').key, key);
      assert.deepEqual(
        warnings(r.stderr),
        [`warning: cache entry ${key.slice(0, 12)} (${blob}) failed verification: expected sha256 ${digest} got ${bad}; rebuilding`],
        what,
      );
      assert.equal(sha256File(target(r, '//greet:cpu').wheels[0]!), digest, what);
      assert.equal(sha256File(blob), digest, `${what}: the CAS holds the good blob again`);
    }
  });

  test('a failing build stores nothing', async () => {
    const ws = demoWorkspace();
    const yaml = ws.read('BUILD.yaml');
    const goodTest = /^    test: python -c "import greet; .*$/m.exec(yaml)?.[0];
    assert.ok(goodTest, 'greet has no smoke test in BUILD.yaml');
    ws.write('BUILD.yaml', yaml.replace(goodTest, '    test: python -c "raise SystemExit(3)"'));

    for (let attempt = 1; attempt <= 2; attempt++) {
      const r = await ws.build(['//greet:cpu'], { expectCode: 1 });
      assert.equal(r.ok, false);
      assert.deepEqual(statuses(r), { '//greet:cpu': 'failed' }, `attempt ${attempt}`);
      const t = target(r, '//greet:cpu');
      assert.equal(t.error, 'smoke test failed: sh exited with code 3');
      assert.equal(t.log, ws.path('wg-out/logs/greet.cpu.log'));
      assert.match(fs.readFileSync(t.log!, 'utf8'), /^# FAILED: smoke test failed: sh exited with code 3$/m);
      const lines = r.stderr.split('\n');
      assert.ok(lines.some((l) => /^\[\d\d:\d\d:\d\d\] FAILED \/\/greet:cpu: smoke test failed: sh exited with code 3$/.test(l)), r.stderr);
      assert.ok(lines.includes('  full log: wg-out/logs/greet.cpu.log'), r.stderr);
      assert.deepEqual(filesUnder(path.join(ws.cacheDir, 'cas')), [], `attempt ${attempt}: a failed build stored blobs`);
    }

    ws.write('BUILD.yaml', yaml);
    const ok = await ws.build(['//greet:cpu']);
    assert.deepEqual(statuses(ok), { '//greet:cpu': 'built' });
    assert.equal(filesUnder(path.join(ws.cacheDir, 'cas')).length, 2, 'the wheel and the log');

    // A good wheel in the wheelhouse is taken away when the target's next build fails: the wheelhouse only
    // offers what the current BUILD.yaml produces.
    const wheel = target(ok, '//greet:cpu').wheels[0]!;
    assert.ok(fs.existsSync(wheel));
    ws.write('BUILD.yaml', yaml.replace(goodTest, '    test: python -c "raise SystemExit(4)"'));
    await ws.build(['//greet:cpu'], { expectCode: 1 });
    assert.equal(fs.existsSync(wheel), false, 'the stale wheel is still in the wheelhouse');
    ws.write('BUILD.yaml', yaml);
    const again = await ws.build(['//greet:cpu']);
    assert.deepEqual(statuses(again), { '//greet:cpu': 'cached' });
    assert.ok(fs.existsSync(wheel));
  });
});
