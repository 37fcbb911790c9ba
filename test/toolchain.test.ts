// Toolchain probing against real interpreters: a fresh venv whose packages change under the cache, the system
// Python's pip/setuptools seeding a bare venv, and a real nvcc.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { probeToolchain, ToolchainError, type ProbeCache } from '../rules/toolchain.js';
import { installTorch as standInTorch } from './stand-in-torch.js';

const execFileP = promisify(execFile);
const SYSTEM_PYTHON = '/usr/bin/python3';
const CUDA_HOME = '/usr/local/cuda';
// Longer than the window in which the prober distrusts fresh directory stats (2 s).
const SETTLE_MS = 2200;

function mapCache(): ProbeCache & { map: Map<string, unknown> } {
  const map = new Map<string, unknown>();
  return { map, get: (id) => map.get(id), put: (id, value) => void map.set(id, value) };
}

function writeFile(file: string, text: string, mode?: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, mode === undefined ? undefined : { mode });
}

const installTorch = (siteDir: string, version: string, initBody?: string): void =>
  standInTorch(siteDir, version, { cuda: '12.4', cxx11abi: false, ...(initBody === undefined ? {} : { initBody }) });

let root: string;

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-toolchain-test-'));
});

after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('probeToolchain on a venv', () => {
  it('reads the facts, notices torch being installed and upgraded, and reuses them while nothing changes', async () => {
    const venv = path.join(root, 'venv');
    await execFileP(SYSTEM_PYTHON, ['-m', 'venv', '--without-pip', venv]);
    const siteDir = path.join(venv, 'lib', 'python3.11', 'site-packages');
    assert.ok(fs.existsSync(siteDir), `expected ${siteDir}`);

    // The declared python is a wrapper that counts how often the interpreter really runs.
    const counter = path.join(root, 'probe-count');
    const wrapper = path.join(root, 'wrapped', 'python');
    writeFile(
      wrapper,
      `#!/bin/sh\necho run >> '${counter}'\nexec '${path.join(venv, 'bin', 'python')}' "$@"\n`,
      0o755,
    );
    const runs = (): number => (fs.existsSync(counter) ? fs.readFileSync(counter, 'utf8').split('\n').length - 1 : 0);

    const cache = mapCache();
    const seedRoot = path.join(root, 'seeds');
    const decl = { name: 'venv311', python: wrapper, cudaHome: null };

    const bare = await probeToolchain(decl, cache, seedRoot);
    assert.equal(runs(), 1);
    assert.equal(bare.name, 'venv311');
    assert.match(bare.facts.python.version, /^3\.11\./);
    assert.equal(bare.facts.python.implementation, 'cpython');
    assert.equal(bare.facts.python.tag, 'cp311');
    assert.equal(bare.facts.python.abi, 'cp311');
    assert.equal(bare.facts.python.platform, 'linux_x86_64');
    assert.equal(bare.facts.torch, null);
    assert.equal(bare.facts.cuda, null);
    assert.deepEqual(bare.facts.buildTools, { pip: null, setuptools: null, wheel: null });
    assert.equal(bare.torchError, null);
    assert.equal(bare.paths.python, wrapper);
    assert.equal(bare.paths.cudaHome, null);
    assert.deepEqual(bare.paths.siteDirs, [siteDir]);
    assert.equal(bare.paths.buildToolDirs.length, 1);
    const seed = bare.paths.buildToolDirs[0]!;
    assert.equal(path.dirname(seed), seedRoot);
    assert.deepEqual(fs.readdirSync(seed), [], 'a venv without pip seeds nothing');
    assert.ok(!JSON.stringify(bare.facts).includes(root), 'facts hold no paths');
    assert.deepEqual([...cache.map.keys()], [`probe:v1:${wrapper}:`]);

    installTorch(siteDir, '2.4.0');
    const withTorch = await probeToolchain(decl, cache, seedRoot);
    assert.equal(runs(), 2);
    assert.deepEqual(withTorch.facts.torch, { version: '2.4.0', cuda: '12.4', cxx11abi: false });

    // Once the venv has been still for a moment, an unchanged venv is answered from the cache alone.
    await sleep(SETTLE_MS);
    const settled = await probeToolchain(decl, cache, seedRoot);
    const runsBefore = runs();
    const cached = await probeToolchain(decl, cache, seedRoot);
    assert.equal(runs(), runsBefore, 'an unchanged venv must not run the interpreter');
    assert.deepEqual(cached, settled);
    assert.equal(cached.facts.torch?.version, '2.4.0');

    // `pip install torch==2.4.1`: the old dist-info goes, a new one comes; only the folder's stat says so.
    installTorch(siteDir, '2.4.1');
    const upgraded = await probeToolchain(decl, cache, seedRoot);
    assert.equal(runs(), runsBefore + 1);
    assert.deepEqual(upgraded.facts.torch, { version: '2.4.1', cuda: '12.4', cxx11abi: false });

    installTorch(siteDir, '2.5.0', 'raise ImportError("libcudart.so.12: cannot open shared object file")\n');
    const broken = await probeToolchain(decl, cache, seedRoot);
    assert.equal(broken.facts.torch, null);
    assert.match(broken.torchError ?? '', /^ImportError: libcudart\.so\.12: cannot open shared object file/);
  });
});

describe('probeToolchain errors', () => {
  it('names the toolchain and the missing interpreter', async () => {
    const missing = path.join(root, 'nope', 'python3');
    await assert.rejects(
      probeToolchain({ name: 'py311', python: missing, cudaHome: null }, mapCache(), path.join(root, 'seeds')),
      (err: unknown) => {
        assert.ok(err instanceof ToolchainError);
        assert.equal(err.message, `toolchain "py311": python ${missing} does not exist`);
        return true;
      },
    );
  });

  it('refuses an interpreter that is not executable', async () => {
    const plain = path.join(root, 'plain', 'python3');
    writeFile(plain, '', 0o644);
    await assert.rejects(
      probeToolchain({ name: 'py311', python: plain, cudaHome: null }, mapCache(), path.join(root, 'seeds')),
      { name: 'ToolchainError', message: `toolchain "py311": python ${plain} is not executable` },
    );
  });

  it('reports a failing probe with the end of its stderr', async () => {
    const failing = path.join(root, 'failing', 'python3');
    writeFile(failing, '#!/bin/sh\necho "Fatal Python error: init_fs_encoding" >&2\nexit 3\n', 0o755);
    await assert.rejects(
      probeToolchain({ name: 'bad', python: failing, cudaHome: null }, mapCache(), path.join(root, 'seeds')),
      (err: unknown) => {
        assert.ok(err instanceof ToolchainError);
        assert.match(err.message, /^toolchain "bad": probing .* failed: it exited with status 3/);
        assert.match(err.message, /Fatal Python error: init_fs_encoding/);
        return true;
      },
    );
  });

  it('names the missing nvcc', async () => {
    const cudaHome = path.join(root, 'no-cuda');
    await assert.rejects(
      probeToolchain({ name: 'cu', python: SYSTEM_PYTHON, cudaHome }, mapCache(), path.join(root, 'seeds')),
      { message: `toolchain "cu": no nvcc at ${path.join(cudaHome, 'bin', 'nvcc')}` },
    );
  });
});

describe('probeToolchain with a CUDA home', () => {
  const nvcc = path.join(CUDA_HOME, 'bin', 'nvcc');
  it('reads the nvcc version', { skip: !fs.existsSync(nvcc) && `no ${nvcc}` }, async () => {
    const { stdout } = await execFileP(nvcc, ['--version']);
    const expected = /release \d+\.\d+, V(\d+\.\d+\.\d+)/.exec(stdout)?.[1];
    assert.ok(expected !== undefined, `unexpected nvcc output: ${stdout}`);
    const cache = mapCache();
    const decl = { name: 'cu', python: SYSTEM_PYTHON, cudaHome: CUDA_HOME };
    const tc = await probeToolchain(decl, cache, path.join(root, 'seeds'));
    assert.deepEqual(tc.facts.cuda, { nvcc: expected });
    assert.equal(tc.paths.cudaHome, CUDA_HOME);
    assert.deepEqual([...cache.map.keys()], [`probe:v1:${SYSTEM_PYTHON}:${CUDA_HOME}`]);
  });
});

describe('the build-tool seed folder', () => {
  it('gives a --without-pip venv the toolchain pip, setuptools and wheel', async (t) => {
    const seedRoot = path.join(root, 'seed-root');
    const tc = await probeToolchain({ name: 'sys', python: SYSTEM_PYTHON, cudaHome: null }, mapCache(), seedRoot);
    const { pip, setuptools, wheel } = tc.facts.buildTools;
    if (pip === null || setuptools === null || wheel === null) {
      t.skip(`${SYSTEM_PYTHON} lacks pip, setuptools or wheel`);
      return;
    }
    assert.equal(tc.paths.buildToolDirs.length, 1);
    const seed = tc.paths.buildToolDirs[0]!;
    assert.equal(path.dirname(seed), seedRoot);
    assert.match(path.basename(seed), /^[0-9a-f]{64}$/);
    const entries = fs.readdirSync(seed);
    for (const name of ['pip', 'setuptools', 'pkg_resources', '_distutils_hack', 'wheel']) {
      assert.ok(entries.includes(name), `${name} in ${entries.join(', ')}`);
    }
    assert.ok(entries.some((e) => e.startsWith(`pip-${pip}.`)), `pip metadata in ${entries.join(', ')}`);
    assert.deepEqual(
      fs.readdirSync(seedRoot).filter((e) => e.startsWith('.')),
      [],
      'no temp folder left behind',
    );

    const venv = path.join(root, 'seeded-venv');
    await execFileP(SYSTEM_PYTHON, ['-m', 'venv', '--without-pip', venv]);
    writeFile(
      path.join(venv, 'lib', 'python3.11', 'site-packages', 'wg-seed.pth'),
      `import site; site.addsitedir(${JSON.stringify(seed)})\n`,
    );
    const env = { PATH: '/usr/bin:/bin', HOME: root, PIP_NO_CACHE_DIR: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' };
    const python = path.join(venv, 'bin', 'python');
    const { stdout } = await execFileP(python, ['-m', 'pip', '--version'], { env });
    assert.ok(stdout.startsWith(`pip ${pip} from ${path.join(seed, 'pip')}`), stdout);

    const project = path.join(root, 'tinypkg');
    writeFile(path.join(project, 'tinypkg', '__init__.py'), 'X = 1\n');
    writeFile(
      path.join(project, 'setup.py'),
      'from setuptools import setup\nsetup(name="tinypkg", version="0.1", packages=["tinypkg"])\n',
    );
    const out = path.join(root, 'wheels');
    await execFileP(python, ['-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w', out, '.'], {
      env,
      cwd: project,
    });
    assert.deepEqual(fs.readdirSync(out), ['tinypkg-0.1-py3-none-any.whl']);

    // A cleaned seed root is refilled, also when the probe itself is answered from the cache.
    fs.rmSync(seedRoot, { recursive: true });
    const cache = mapCache();
    await probeToolchain({ name: 'sys', python: SYSTEM_PYTHON, cudaHome: null }, cache, seedRoot);
    fs.rmSync(seedRoot, { recursive: true });
    const again = await probeToolchain({ name: 'sys', python: SYSTEM_PYTHON, cudaHome: null }, cache, seedRoot);
    assert.deepEqual(again.paths.buildToolDirs, [seed]);
    assert.deepEqual(fs.readdirSync(seed).sort(), [...entries].sort());
  });
});
