// Changing the torch version seen by a toolchain rebuilds the targets of that toolchain only. Two venvs made from
// the system Python are two toolchains; a stand-in torch (laid out as pip would) is installed into the first and
// then upgraded in place, so the interpreter's path stays the same and only what it imports changes.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { sh, statuses, SYSTEM_PYTHON, TempWorkspace, type BuildJson } from './rig.js';
import { installTorch as standInTorch } from './stand-in-torch.js';

// Longer than the window in which the toolchain prober distrusts fresh directory stats (RACY_WINDOW_MS, 2 s).
const SETTLE_MS = 2200;


const installTorch = (siteDir: string, version: string): void => standInTorch(siteDir, version);

/** The torch version the toolchain's interpreter imports, asked the same way the prober does. */
async function importedTorch(python: string): Promise<string> {
  return (await sh(python, ['-I', '-B', '-c', 'import torch, importlib.metadata as m; print(torch.__version__, m.version("torch"))'])).trim();
}

describe('toolchain facts in the action key', () => {
  it('changing the torch version seen by a toolchain rebuilds the targets of that toolchain only', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `toolchains:
  torch-env:
    python: ../venv-a/bin/python
  plain-env:
    python: ../venv-b/bin/python
variants:
  with-torch:
    toolchain: torch-env
  plain:
    toolchain: plain-env
packages:
  tiny:
    rule: python_wheel
    source: tiny
`,
      'tiny/setup.py': 'from setuptools import setup\nsetup(name="tiny", version="0.1", py_modules=["tiny"])\n',
      'tiny/tiny.py': 'def hello():\n    return "hello"\n',
    });
    try {
      const venvA = path.join(ws.dir, '..', 'venv-a');
      const venvB = path.join(ws.dir, '..', 'venv-b');
      // --system-site-packages: the system setuptools and wheel build the package; no pip install needed.
      for (const venv of [venvA, venvB]) await sh(SYSTEM_PYTHON, ['-m', 'venv', '--system-site-packages', '--without-pip', venv]);
      const siteA = path.join(venvA, 'lib', 'python3.11', 'site-packages');
      assert.ok(fs.existsSync(siteA), `expected ${siteA}`);
      installTorch(siteA, '2.4.0');
      assert.equal(await importedTorch(path.join(venvA, 'bin', 'python')), '2.4.0 2.4.0');

      const first = await ws.build();
      assert.deepEqual(statuses(first), { '//tiny:with-torch': 'built', '//tiny:plain': 'built' });
      const keys = (r: BuildJson): Record<string, string> => Object.fromEntries(r.targets.map((t) => [t.label, t.key]));
      const before = keys(first);
      assert.notEqual(before['//tiny:with-torch'], before['//tiny:plain']);
      for (const t of first.targets) assert.deepEqual(t.wheels.map((w) => path.basename(w)), ['tiny-0.1-py3-none-any.whl']);

      installTorch(siteA, '2.4.1');
      assert.equal(await importedTorch(path.join(venvA, 'bin', 'python')), '2.4.1 2.4.1');
      await sleep(SETTLE_MS);

      const dry = await ws.build(['--dry-run']);
      assert.deepEqual(statuses(dry), { '//tiny:with-torch': 'would-build', '//tiny:plain': 'cached' });

      const second = await ws.build();
      assert.deepEqual(statuses(second), { '//tiny:with-torch': 'built', '//tiny:plain': 'cached' });
      const after = keys(second);
      assert.notEqual(after['//tiny:with-torch'], before['//tiny:with-torch']);
      assert.equal(after['//tiny:plain'], before['//tiny:plain']);
      assert.deepEqual(keys(dry), after);
    } finally {
      ws.remove();
    }
  });
});
