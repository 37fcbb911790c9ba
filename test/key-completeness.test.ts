// The key-completeness matrix: every input kind that can change an output flips the action keys of exactly the
// targets it reaches (and their dependents), and nothing else does. Keys come from `wg build --dry-run --json`, so
// nothing is built. Toolchain facts are changed with stand-ins at the narrowest edge: a torch laid out as pip would,
// an nvcc script that prints a version, and an interpreter whose `platform.python_version()` says 3.12.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { sh, SYSTEM_PYTHON, TempWorkspace, type BuildJson } from './rig.js';
import { installTorch as standInTorch } from './stand-in-torch.js';

// Longer than the window in which the toolchain prober distrusts fresh stats (RACY_WINDOW_MS, 2 s).
const SETTLE_MS = 2200;

function writeFile(file: string, text: string, mode?: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  if (mode !== undefined) fs.chmodSync(file, mode);
}

const installTorch = (siteDir: string, version: string): void => standInTorch(siteDir, version, { cuda: '12.4' });

function installNvcc(cudaHome: string, release: string): void {
  writeFile(path.join(cudaHome, 'bin', 'nvcc'), `#!/bin/sh\necho "Cuda compilation tools, release ${release.split('.').slice(0, 2).join('.')}, V${release}"\n`, 0o755);
}

const PLUGIN = `export default {
  name: 'text-files',
  setup(api) {
    api.registerRule({
      kind: 'text_file', version: 1, doc: 'writes a text file', needsToolchain: false,
      attrs: { text: { schema: { type: 'string' }, required: true, doc: 'the text' } },
      plan(target) {
        return { mnemonic: 'Text', keyAttrs: { text: target.attrs.text }, async execute() { return []; } };
      },
    });
  },
};
`;

const buildYaml = (o: { commit: string; patches: string; envA: string; t2: string; otherBuild: string; reorder?: boolean; comment?: boolean }): string => `plugins: [plugins/text.mjs]
toolchains:
  t1:
    python: ../venv-a/bin/python
    cuda_home: ../cuda-a
  t2:
    python: ${o.t2}
variants:
  v1:
    toolchain: t1
  v2:
    toolchain: t2
packages:
${o.comment ? '  # a comment changes nothing\n' : ''}  base:
    rule: python_wheel
    source: src/base
    patches: ${o.patches}
    env: ${o.reorder ? `{B: "x", A: "${o.envA}"}` : `{A: "${o.envA}", B: "x"}`}
    secret_env: [TOKEN]
  app:
    rule: python_wheel
    source: src/app
    deps: [base]
    build_requires: [vendor]
  vendor:
    rule: wheel_folder
    source: vendor
  other:
    rule: python_wheel
    source: src/other
    build: ${o.otherBuild}
  gitpkg:
    rule: python_wheel
    source: {git: "file://${'${REPO}'}", ref: ${o.commit}}
  note:
    rule: text_file
    text: hello
`;

const PACKAGES = ['app', 'base', 'gitpkg', 'note', 'other', 'vendor'];
const both = (...pkgs: string[]): string[] => pkgs.flatMap((p) => [`//${p}:v1`, `//${p}:v2`]).sort();
/** The targets of a variant whose rule has a toolchain (wheel_folder and the plugin's rule have none). */
const toolchainTargets = (v: string): string[] => ['app', 'base', 'gitpkg', 'other'].map((p) => `//${p}:${v}`);

describe('key completeness', () => {
  it('each input kind flips exactly the targets it reaches; irrelevant changes flip none', async () => {
    const ws = TempWorkspace.create();
    try {
      const base = path.dirname(ws.dir);
      const repo = path.join(base, 'repo');
      const git = (...args: string[]): Promise<string> => sh('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args], { cwd: repo });
      fs.mkdirSync(repo);
      await git('init', '-q');
      writeFile(path.join(repo, 'setup.py'), 'from setuptools import setup\nsetup(name="gitpkg", version="1")\n');
      await git('add', '.');
      await git('commit', '-q', '-m', 'one');
      const commit1 = (await git('rev-parse', 'HEAD')).trim();
      writeFile(path.join(repo, 'setup.py'), 'from setuptools import setup\nsetup(name="gitpkg", version="2")\n');
      await git('commit', '-q', '-am', 'two');
      const commit2 = (await git('rev-parse', 'HEAD')).trim();

      for (const v of ['venv-a', 'venv-b', 'venv-c']) await sh(SYSTEM_PYTHON, ['-m', 'venv', '--system-site-packages', '--without-pip', path.join(base, v)]);
      const siteA = path.join(base, 'venv-a', 'lib', 'python3.11', 'site-packages');
      installTorch(siteA, '2.4.0');
      installNvcc(path.join(base, 'cuda-a'), '12.4.131');
      // A .pth line runs at startup even under -I: this interpreter reports another Python version.
      writeFile(path.join(base, 'venv-c', 'lib', 'python3.11', 'site-packages', 'zz_other_python.pth'), 'import platform; platform.python_version = lambda: "3.12.7"\n');

      let cfg = { commit: commit1, patches: '[fixes/a.patch, fixes/b.patch]', envA: '1', t2: '../venv-b/bin/python', otherBuild: 'echo one', reorder: false, comment: false };
      const writeYaml = (): void => ws.write('BUILD.yaml', buildYaml(cfg).replace('${REPO}', repo));
      writeYaml();
      ws.write('plugins/text.mjs', PLUGIN);
      for (const p of ['base', 'app', 'other']) ws.write(`src/${p}/setup.py`, `from setuptools import setup\nsetup(name="${p}", version="1")\n`);
      ws.write('fixes/a.patch', '--- a/setup.py\n+++ b/setup.py\n@@ -1 +1 @@\n-from setuptools import setup\n+from setuptools import setup  # a\n');
      ws.write('fixes/b.patch', '--- a/setup.py\n+++ b/setup.py\n@@ -1 +1 @@\n-from setuptools import setup  # a\n+from setuptools import setup  # b\n');
      ws.write('envs/base.env', 'FROM_FILE=1\n');
      ws.write('vendor/dep-1.0-py3-none-any.whl', 'wheel bytes 1');

      const dry = async (env: Record<string, string> = {}): Promise<Record<string, string>> => {
        const r: BuildJson = await ws.build(['--dry-run'], { env: { TOKEN: 'secret-1', ...env } });
        return Object.fromEntries(r.targets.map((t) => [t.label, t.key]));
      };
      let last = await dry();
      assert.deepEqual(Object.keys(last).sort(), both(...PACKAGES));
      // Variant names are not in keys: the two rules without a toolchain build the same thing in both variants.
      assert.equal(last['//vendor:v1'], last['//vendor:v2']);
      assert.equal(last['//note:v1'], last['//note:v2']);
      assert.equal(new Set(Object.values(last)).size, PACKAGES.length * 2 - 2);
      const check = async (what: string, expected: string[], env: Record<string, string> = {}): Promise<void> => {
        const now = await dry(env);
        const flipped = Object.keys(now).filter((l) => now[l] !== last[l]).sort();
        assert.deepEqual(flipped, [...expected].sort(), `${what}: flipped ${flipped.join(', ') || 'nothing'}`);
        last = now;
      };

      // Inputs of the output.
      cfg = { ...cfg, commit: commit2 };
      writeYaml();
      await check('source commit', both('gitpkg'));
      ws.write('fixes/a.patch', ws.read('fixes/a.patch').replace('# a', '# A').replace('@@ -1 +1 @@', '@@ -1 +1 @@'));
      ws.write('fixes/b.patch', ws.read('fixes/b.patch').replace('# a\n+', '# A\n+'));
      await check('patch bytes', both('base', 'app'));
      cfg = { ...cfg, patches: '[fixes/b.patch, fixes/a.patch]' };
      writeYaml();
      await check('patch order', both('base', 'app'));
      cfg = { ...cfg, envA: '2' };
      writeYaml();
      await check('env value', both('base', 'app'));
      ws.write('envs/base.env', 'FROM_FILE=2\n');
      await check('env file', both('base', 'app'));
      await check('secret value', [], { TOKEN: 'secret-2' });
      cfg = { ...cfg, t2: '../venv-c/bin/python' };
      writeYaml();
      await check('python version', toolchainTargets('v2'));
      installTorch(siteA, '2.4.1');
      await sleep(SETTLE_MS);
      await check('torch version', toolchainTargets('v1'));
      installNvcc(path.join(base, 'cuda-a'), '12.1.105');
      await sleep(SETTLE_MS);
      await check('CUDA version', toolchainTargets('v1'));
      ws.write('vendor/dep-1.0-py3-none-any.whl', 'wheel bytes 2');
      await check('dependency wheel', both('vendor', 'app'));
      cfg = { ...cfg, otherBuild: 'echo two' };
      writeYaml();
      await check('build command', both('other'));
      ws.write('plugins/text.mjs', `${PLUGIN}// changed\n`);
      await check('plugin file', both('note'));

      // Not inputs of the output.
      const future = new Date(Date.now() + 60_000);
      fs.utimesSync(ws.path('src/base/setup.py'), future, future);
      fs.utimesSync(ws.path('fixes/a.patch'), future, future);
      await check('touch', []);
      cfg = { ...cfg, comment: true };
      writeYaml();
      await check('a comment', []);
      cfg = { ...cfg, reorder: true };
      writeYaml();
      await check('a reordered map', []);
      ws.moveTo('moved');
      await check('the workspace path', []);
      await check('HOME', [], { HOME: path.join(base, 'other-home') });
      await check('an undeclared env var', [], { CFLAGS: '-O0', TORCH_CUDA_ARCH_LIST: '7.0' });
    } finally {
      ws.remove();
    }
  });
});
