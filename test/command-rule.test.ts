// The `command` rule: what its action sees of its dependencies, and where its outputs land.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
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

// Sandboxes of successful actions are emptied and reused (engine/sandbox.ts): each action must still find a fresh
// one. The first action litters every corner it can reach and makes its folders read-only; the second, run after
// it (-j 1), lists what it finds.
const LITTER_YAML = `variants:
  cpu: {}
packages:
  litter:
    rule: command
    cmd: >-
      touch "$HOME/h" "$TMPDIR/t" ../top "$WG_OUT_DIR/o" && mkdir -p ../junk/j ../deps/d/e "$HOME/.cache/x" && touch ../deps/d/e/f &&
      ln -s /etc ../link && rm -rf ../tmp && echo tmp > ../tmp && chmod 500 "$HOME" .. && touch out.txt
    outs: [out.txt]
  look:
    rule: command
    deps: [litter]
    cmd: 'cd .. && ls -A . home tmp out deps > work/seen.txt && stat -c %a . home tmp out deps >> work/seen.txt'
    outs: [seen.txt]
`;

describe('sandbox reuse', () => {
  const ws = TempWorkspace.create({ 'BUILD.yaml': LITTER_YAML });
  after(() => ws.remove());

  test("an action sees nothing of an earlier action's sandbox, and a build leaves no sandbox behind", async () => {
    const r = await ws.build(['-j', '1']);
    assert.deepEqual(statuses(r), { '//litter:cpu': 'built', '//look:cpu': 'built' });
    const mode = (0o777 & ~process.umask()).toString(8);
    assert.equal(
      ws.read('wg-out/out/look.cpu.seen.txt'),
      `.:\ndeps\nhome\nout\ntmp\nwork\n\ndeps:\n_litter_cpu\n\nhome:\n\nout:\n\ntmp:\n700\n${mode}\n${mode}\n${mode}\n${mode}\n`,
    );
    assert.deepEqual(fs.readdirSync(path.join(ws.cacheDir, 'sandbox')), []);
  });
});
