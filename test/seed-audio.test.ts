// examples/seed-audio cannot build here (no GitHub, no CUDA), but everything before building must work offline:
// its sources are pinned to full commit shas, so `wg query` and `wg build --dry-run` resolve without the network.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';

import { REPO, TempWorkspace } from './rig.js';

const EXAMPLE = path.join(REPO, 'examples', 'seed-audio');
const VARIANTS = ['py311-cu121-torch2.4', 'py311-cu124-torch2.4'];
const PACKAGES = ['causal-conv1d', 'fairseq', 'laion-clap', 'mamba', 'torchcodec'];

describe('examples/seed-audio', () => {
  it('pins every upstream repository to a full commit sha', () => {
    const doc = parse(fs.readFileSync(path.join(EXAMPLE, 'BUILD.yaml'), 'utf8')) as {
      packages: Record<string, { version?: string; source: { git: string; ref: string } }>;
    };
    // CLAP 1.1.5: the upstream commit whose pyproject.toml declares that version.
    assert.deepEqual(doc.packages['laion-clap'], { ...doc.packages['laion-clap'], version: '1.1.5', source: { git: 'https://github.com/LAION-AI/CLAP.git', ref: 'f14f288e5c9d2c7b7177b63512d0ba84f3ebf322' } });
    assert.deepEqual(
      Object.entries(doc.packages).map(([name, p]) => [name, p.source.git, /^[0-9a-f]{40}$/.test(p.source.ref)]),
      [
        ['laion-clap', 'https://github.com/LAION-AI/CLAP.git', true],
        ['fairseq', 'https://github.com/facebookresearch/fairseq.git', true],
        ['causal-conv1d', 'https://github.com/Dao-AILab/causal-conv1d.git', true],
        ['mamba', 'https://github.com/state-spaces/mamba.git', true],
        ['torchcodec', 'https://github.com/pytorch/torchcodec.git', true],
      ],
    );
  });

  it('wg query and wg build --dry-run work offline, one key per package and variant', async () => {
    const ws = TempWorkspace.create();
    try {
      fs.cpSync(EXAMPLE, ws.dir, { recursive: true });
      const dry = await ws.build(['--dry-run']);
      assert.deepEqual(
        dry.targets.map((t) => [t.label, t.status]).sort(),
        PACKAGES.flatMap((p) => VARIANTS.map((v) => [`//${p}:${v}`, 'would-build'])).sort(),
      );
      assert.equal(new Set(dry.targets.map((t) => t.key)).size, PACKAGES.length * VARIANTS.length);
      // mamba comes after causal-conv1d in each variant.
      const order = dry.targets.map((t) => t.label);
      for (const v of VARIANTS) assert.ok(order.indexOf(`//causal-conv1d:${v}`) < order.indexOf(`//mamba:${v}`));

      const deps = await ws.run(['query', 'deps', '//mamba:py311-cu124-torch2.4']);
      assert.equal(deps.code, 0, deps.stderr);
      assert.equal(deps.stdout, '//causal-conv1d:py311-cu124-torch2.4\n');
      const rdeps = await ws.run(['query', 'rdeps', '//causal-conv1d']);
      assert.equal(rdeps.code, 0, rdeps.stderr);
      assert.equal(rdeps.stdout, '//mamba:py311-cu121-torch2.4\n//mamba:py311-cu124-torch2.4\n');
    } finally {
      ws.remove();
    }
  });
});
