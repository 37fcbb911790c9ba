// `wg query deps|rdeps|targets`: exact answers for a small graph in all three output formats, from BUILD.yaml alone.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { TempWorkspace } from './rig.js';

// base ← mid ← app → //tool:cpu (from both variants); base ← other. tool is built in cpu only.
const BUILD = `variants:
  cpu: {}
  gpu: {}
packages:
  base: {rule: command, cmd: "true"}
  mid: {rule: command, cmd: "true", deps: [base]}
  app: {rule: command, cmd: "true", deps: [mid, "//tool:cpu"]}
  tool: {rule: command, cmd: "true", variants: [cpu]}
  other: {rule: command, cmd: "true", deps: [base]}
`;

describe('wg query', () => {
  let ws: TempWorkspace;
  before(() => {
    ws = TempWorkspace.create({ 'BUILD.yaml': BUILD });
  });
  after(() => ws.remove());

  const query = async (args: string[]): Promise<string> => {
    const r = await ws.run(['query', ...args]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    return r.stdout;
  };

  it('deps: everything the targets depend on, transitively, across variants', async () => {
    assert.equal(await query(['deps', '//app:gpu']), '//base:gpu\n//mid:gpu\n//tool:cpu\n');
    // A selected target is in the answer when another selected target depends on it.
    assert.equal(await query(['deps', '//app:cpu', '//mid:cpu']), '//base:cpu\n//mid:cpu\n//tool:cpu\n');
    assert.equal(await query(['deps', '//base']), '');
  });

  it('rdeps: everything in the workspace that depends on them', async () => {
    assert.equal(await query(['rdeps', '//base:cpu']), '//app:cpu\n//mid:cpu\n//other:cpu\n');
    assert.equal(await query(['rdeps', '//tool:cpu']), '//app:cpu\n//app:gpu\n');
  });

  it('targets: what a pattern names', async () => {
    assert.equal(await query(['targets', '//app']), '//app:cpu\n//app:gpu\n');
    assert.equal(await query(['targets', '//...:gpu']), '//app:gpu\n//base:gpu\n//mid:gpu\n//other:gpu\n');
  });

  it('--output json gives each target its package, variant, rule and direct deps', async () => {
    assert.equal(
      await query(['deps', '//app:gpu', '--output', 'json']),
      `${JSON.stringify(
        {
          targets: [
            { label: '//base:gpu', package: 'base', variant: 'gpu', rule: 'command', deps: [] },
            { label: '//mid:gpu', package: 'mid', variant: 'gpu', rule: 'command', deps: ['//base:gpu'] },
            { label: '//tool:cpu', package: 'tool', variant: 'cpu', rule: 'command', deps: [] },
          ],
        },
        null,
        2,
      )}\n`,
    );
  });

  it('--output dot draws the answer with its edges, from dependent to dependency', async () => {
    assert.equal(
      await query(['rdeps', '//base:cpu', '--output', 'dot']),
      `digraph wg {
  "//app:cpu";
  "//mid:cpu";
  "//other:cpu";
  "//app:cpu" -> "//mid:cpu";
}
`,
    );
    assert.equal(
      await query(['targets', '//...:cpu', '--output', 'dot']),
      `digraph wg {
  "//app:cpu";
  "//base:cpu";
  "//mid:cpu";
  "//other:cpu";
  "//tool:cpu";
  "//app:cpu" -> "//mid:cpu";
  "//app:cpu" -> "//tool:cpu";
  "//mid:cpu" -> "//base:cpu";
  "//other:cpu" -> "//base:cpu";
}
`,
    );
  });

  it('reports an unknown target like wg build does, with exit code 2', async () => {
    const r = await ws.run(['query', 'deps', '//nope']);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `wg: error: unknown target '//nope': no package "nope"\n`);
  });
});
