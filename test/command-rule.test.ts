// The `command` rule: what its action sees of its dependencies, and where its outputs land.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { statuses, TempWorkspace } from './rig.js';

const BUILD_YAML = `variants:
  cpu: {}
packages:
  base:
    rule: command
    cmd: echo base > base.txt
    outs: [base.txt]
  mid:
    rule: command
    deps: [base]
    cmd: mkdir -p gen && cat $WG_DEP_FILES > gen/mid.txt && echo mid >> gen/mid.txt
    outs: [gen/mid.txt]
  top:
    rule: command
    deps: [mid]
    cmd: 'for f in $WG_DEP_FILES; do basename "$f"; cat "$f"; done > top.txt'
    outs: [top.txt]
`;

describe('command rule', () => {
  const ws = TempWorkspace.create({ 'BUILD.yaml': BUILD_YAML });
  after(() => ws.remove());

  test('$WG_DEP_FILES lists the outputs of direct deps only, and outputs land flat in wg-out/out', async () => {
    const r = await ws.build();
    assert.deepEqual(statuses(r), { '//base:cpu': 'built', '//mid:cpu': 'built', '//top:cpu': 'built' });
    // top names mid, not base: base's output reaches it only through what mid made of it.
    assert.equal(ws.read('wg-out/out/top.cpu.top.txt'), 'mid.txt\nbase\nmid\n');
    assert.equal(ws.read('wg-out/out/mid.cpu.gen/mid.txt'), 'base\nmid\n');
    assert.deepEqual(
      r.targets.map((t) => [t.label, t.files.map((f) => f.slice(ws.path('wg-out').length + 1))]),
      [
        ['//base:cpu', ['out/base.cpu.base.txt']],
        ['//mid:cpu', ['out/mid.cpu.gen/mid.txt']],
        ['//top:cpu', ['out/top.cpu.top.txt']],
      ],
    );
  });
});
