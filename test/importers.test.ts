// The importers: fixture configs written in fromager's and the CUDA wheel builder's documented formats become a
// BUILD.yaml that `wg build --dry-run` accepts offline (git sources pinned to full commit shas), with what has no
// equivalent left as comments; configs the importer cannot read are errors with exit 2.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';

import { REPO, statuses, TempWorkspace, type BuildJson } from './rig.js';

const FIXTURES = path.join(REPO, 'test', 'fixtures');
const keys = (r: BuildJson): Record<string, string> => Object.fromEntries(r.targets.map((t) => [t.label, t.key]));

describe('wg import', () => {
  it('fromager: settings, env files, patches and pins round-trip into a BUILD.yaml that --dry-run accepts', async () => {
    const ws = TempWorkspace.create();
    try {
      fs.cpSync(path.join(FIXTURES, 'fromager'), ws.dir, { recursive: true });
      const r = await ws.run(['import', 'fromager', '.', '-o', 'BUILD.yaml', '--python', '/usr/bin/python3']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      const text = ws.read('BUILD.yaml');
      assert.deepEqual(parse(text), {
        toolchains: { default: { python: '/usr/bin/python3' } },
        variants: { cpu: { toolchain: 'default' }, cuda: { toolchain: 'default' } },
        packages: {
          causal_conv1d: {
            rule: 'python_wheel',
            source: { git: 'https://github.com/Dao-AILab/causal-conv1d.git', ref: '02e84be1019ff75891c15aadf86b55d826cf065f' },
            env: { CAUSAL_CONV1D_FORCE_BUILD: 'TRUE' },
          },
          mamba_ssm: {
            rule: 'python_wheel',
            source: { git: 'https://github.com/state-spaces/mamba.git', ref: '009bec5ee37f586844a3fc89c040a9c1a9d8badf' },
            version: '1.1.3.post1',
            env: { MAMBA_FORCE_BUILD: 'TRUE', MAMBA_SKIP_CUDA_BUILD: 'FALSE' },
            config_settings: { '--build-option': ['--verbose'] },
            remove_build_requires: ['packaging'],
            replace_build_requires: ['setuptools>=61', 'torch'],
            variants: { cpu: {}, cuda: { env: { TORCH_CUDA_ARCH_LIST: '8.0;9.0' } } },
          },
        },
      });
      assert.match(text, /# variant cpu: pre_built wheels are not fetched by wg; put the wheel in a folder and declare a wheel_folder package for it\n/);
      assert.match(text, /# changelog: not needed, wg rebuilds when any input changes\n/);

      const dry = await ws.build(['--dry-run']);
      assert.deepEqual(statuses(dry), {
        '//causal_conv1d:cpu': 'would-build',
        '//causal_conv1d:cuda': 'would-build',
        '//mamba_ssm:cpu': 'would-build',
        '//mamba_ssm:cuda': 'would-build',
      });
      // The env files and variant patch folders came along: without them the cuda target is another build.
      fs.rmSync(ws.path('envs/cuda/causal_conv1d.env'));
      const withoutEnv = await ws.build(['--dry-run']);
      assert.notEqual(keys(withoutEnv)['//causal_conv1d:cuda'], keys(dry)['//causal_conv1d:cuda']);
      assert.equal(keys(withoutEnv)['//causal_conv1d:cpu'], keys(dry)['//causal_conv1d:cpu']);
      fs.rmSync(ws.path('patches/causal_conv1d/cuda'), { recursive: true });
      const withoutPatch = await ws.build(['--dry-run']);
      assert.notEqual(keys(withoutPatch)['//causal_conv1d:cuda'], keys(withoutEnv)['//causal_conv1d:cuda']);
    } finally {
      ws.remove();
    }
  });

  it('fromager: an unpinned package or a download URL says what to add; envs/ elsewhere is a warning', async () => {
    const ws = TempWorkspace.create({
      'overrides/requirements.txt': 'numpy\ntorch==2.4.0  # pinned\n',
      'overrides/settings/torch.yaml': 'download_source:\n  url: "https://example.invalid/pytorch-v${version}.tar.gz"\nresolver_dist:\n  sdist_server_url: https://mirror.invalid/simple/\n',
      'overrides/envs/torch.env': 'USE_CUDA=0\n',
    });
    try {
      const r = await ws.run(['import', 'fromager', 'overrides']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.stderr,
        'wg: warning: package "numpy": no version pinned in requirements.txt or constraints.txt, so it has no source; add one to BUILD.yaml\n' +
          'wg: warning: envs/ and patches/ are in overrides: copy them next to the BUILD.yaml (or write it into overrides)\n',
      );
      assert.deepEqual(parse(r.stdout).packages, {
        numpy: { rule: 'python_wheel' },
        torch: { rule: 'python_wheel', source: { index: 'https://mirror.invalid/simple/', name: 'torch', version: '2.4.0' }, version: '2.4.0' },
      });
      assert.match(r.stdout, /# fromager downloads https:\/\/example\.invalid\/pytorch-v2\.4\.0\.tar\.gz; wg verifies every download, so to use it write source: \{url: https:\/\/example\.invalid\/pytorch-v2\.4\.0\.tar\.gz, sha256: <its sha256>\}\n/);
    } finally {
      ws.remove();
    }
  });

  it('wheel-builder: build target and projects round-trip into a BUILD.yaml that --dry-run accepts', async () => {
    const ws = TempWorkspace.create();
    try {
      const r = await ws.run(['import', 'wheel-builder', path.join(FIXTURES, 'wheel-builder', 'config.yaml'), '-o', 'BUILD.yaml']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(parse(ws.read('BUILD.yaml')), {
        toolchains: { py311: { python: 'python3.11' } },
        variants: { 'py311-cu124-torch2.4': { toolchain: 'py311', env: { CUDA_VERSION: '12.4', TORCH_VERSION: '2.4.0' }, system_site_packages: true } },
        packages: {
          'causal-conv1d': {
            rule: 'python_wheel',
            source: { git: 'https://github.com/Dao-AILab/causal-conv1d.git', ref: '02e84be1019ff75891c15aadf86b55d826cf065f' },
            build: '(CAUSAL_CONV1D_FORCE_BUILD=TRUE python setup.py bdist_wheel) && mv dist/*.whl "$WG_WHEEL_DIR"/',
          },
          mamba: {
            rule: 'python_wheel',
            source: { git: 'https://github.com/state-spaces/mamba.git', ref: '009bec5ee37f586844a3fc89c040a9c1a9d8badf' },
            deps: ['causal-conv1d'],
          },
        },
      });
      assert.match(ws.read('BUILD.yaml'), /# dependency einops came from pip inside the image: install it into the toolchain \(wg installs nothing from an index\)\n/);
      const dry = await ws.build(['--dry-run']);
      assert.deepEqual(statuses(dry), { '//causal-conv1d:py311-cu124-torch2.4': 'would-build', '//mamba:py311-cu124-torch2.4': 'would-build' });
      const q = await ws.run(['query', 'deps', '//mamba']);
      assert.equal(q.code, 0, q.stderr);
      assert.match(q.stdout, /\/\/causal-conv1d:py311-cu124-torch2\.4/);
    } finally {
      ws.remove();
    }
  });

  it('a config it cannot read is an error naming the file, exit 2', async () => {
    const ws = TempWorkspace.create({ 'config.yaml': 'build_target:\n  python_version: "3.11"\nprojects: []\n', 'bad.yaml': 'projects: [\n' });
    try {
      const empty = await ws.run(['import', 'wheel-builder', 'config.yaml']);
      assert.deepEqual([empty.code, empty.stdout, empty.stderr], [2, '', 'wg: error: config.yaml: "projects" must be a non-empty list\n']);
      const bad = await ws.run(['import', 'wheel-builder', 'bad.yaml']);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^wg: error: bad\.yaml: /);
      const missing = await ws.run(['import', 'fromager', 'nowhere']);
      assert.deepEqual([missing.code, missing.stderr], [2, 'wg: error: nowhere is not a folder\n']);
    } finally {
      ws.remove();
    }
  });
});
