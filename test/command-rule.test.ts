// The `command` rule: what its action sees of its dependencies, and where its outputs land.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { copyTree, type TreeEntry } from '../rules/source-path.js';
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
// one. Every action in a chain lists what it finds, then litters every corner it can reach and makes its folders
// read-only. Twelve of them, so that later ones get sandboxes emptied by the janitor thread, not in place.
const LITTER = [
  'cd .. && ls -A . home tmp out deps > work/seen.txt && stat -c %a . home tmp out deps >> work/seen.txt && cd work',
  "find ../deps -mindepth 1 -printf '%P %m\\n' | LC_ALL=C sort >> seen.txt",
  'touch "$HOME/h" "$TMPDIR/t" ../top "$WG_OUT_DIR/o" && mkdir -p ../junk/j ../deps/d/e "$HOME/.cache/x" && touch ../deps/d/e/f',
  // The deps/<label> folders are emptied and reused too (as spares): littered and read-only, they must come back clean.
  'for d in ../deps/*/; do touch "$d/junk" && chmod 500 "$d"; done',
  'ln -s /etc ../link && rm -rf ../tmp && echo tmp > ../tmp && chmod 500 "$HOME" ..',
].join(' && ');
const CHAIN = Array.from({ length: 12 }, (_, i) => `s${String(i).padStart(2, '0')}`);
/** The first `n` of the chain. */
const litterYaml = (n: number): string => `variants:
  cpu: {}
packages:
${CHAIN.slice(0, n).map((name, i) => `  ${name}:\n    rule: command\n    cmd: ${JSON.stringify(LITTER)}\n    outs: [seen.txt]\n${i > 0 ? `    deps: [${CHAIN[i - 1]}]\n` : ''}`).join('')}`;
const LITTER_YAML = litterYaml(CHAIN.length);

/** What the i-th action of the chain lists in a fresh sandbox. */
function freshSeen(i: number): string {
  const mode = (0o777 & ~process.umask()).toString(8);
  const deps = i > 0 ? `_${CHAIN[i - 1]}_cpu\n` : '';
  const depFiles = i > 0 ? `_${CHAIN[i - 1]}_cpu ${mode}\n_${CHAIN[i - 1]}_cpu/seen.txt 444\n` : '';
  return `.:\ndeps\nhome\nout\ntmp\nwork\n\ndeps:\n${deps}\nhome:\n\nout:\n\ntmp:\n700\n${mode}\n${mode}\n${mode}\n${mode}\n${depFiles}`;
}

describe('sandbox reuse', () => {
  const ws = TempWorkspace.create({ 'BUILD.yaml': LITTER_YAML });
  after(() => ws.remove());

  test("an action sees nothing of an earlier action's sandbox, and a build leaves no sandbox behind", async () => {
    const r = await ws.build(['-j', '1']);
    assert.deepEqual(new Set(Object.values(statuses(r))), new Set(['built']));
    CHAIN.forEach((name, i) => assert.equal(ws.read(`wg-out/out/${name}.cpu.seen.txt`), freshSeen(i), name));
    assert.deepEqual(fs.readdirSync(path.join(ws.cacheDir, 'sandbox')), []);
  });

  test('a build keeps a few emptied sandboxes with spare dep folders, and the next build empties them again', async () => {
    // Three actions, emptied in place as an edit's are: what the janitor thread still holds when a build ends is
    // removed, not kept.
    const small = TempWorkspace.create({ 'BUILD.yaml': litterYaml(3) });
    try {
      await small.build(['-j', '1']);
      const keptRoot = path.join(small.cacheDir, 'sandbox-kept');
      const kept = fs.readdirSync(keptRoot);
      assert.ok(kept.length >= 1 && kept.length <= 4, `kept: ${kept.join(' ')}`);
      let spares = 0;
      for (const k of kept) {
        assert.deepEqual(fs.readdirSync(path.join(keptRoot, k)).sort(), ['deps', 'home', 'out', 'tmp'], k);
        for (const d of fs.readdirSync(path.join(keptRoot, k, 'deps'))) {
          assert.deepEqual(fs.readdirSync(path.join(keptRoot, k, 'deps', d)), [], `${k}/deps/${d}`);
          spares++;
        }
        // Whatever wrote here since (nothing of wg does) must not reach the next action.
        fs.writeFileSync(path.join(keptRoot, k, 'home', 'planted'), '');
        fs.mkdirSync(path.join(keptRoot, k, 'stray', 'deeper'), { recursive: true });
        fs.chmodSync(path.join(keptRoot, k, 'tmp'), 0o500);
      }
      assert.ok(spares >= 1 && spares <= 8, `${spares} spare folders kept`);
      small.write('BUILD.yaml', litterYaml(3).replace('  cpu: {}', '  cpu: {env: {AGAIN: "1"}}'));
      const r = await small.build(['-j', '1']);
      assert.deepEqual(statuses(r), { '//s00:cpu': 'built', '//s01:cpu': 'built', '//s02:cpu': 'built' });
      CHAIN.slice(0, 3).forEach((name, i) => assert.equal(small.read(`wg-out/out/${name}.cpu.seen.txt`), freshSeen(i), name));
      assert.deepEqual(fs.readdirSync(path.join(small.cacheDir, 'sandbox')), []);
      // Claimed, then kept again under another name.
      assert.ok(kept.some((k) => !fs.existsSync(path.join(keptRoot, k))), 'no kept sandbox was used');
      assert.ok(fs.readdirSync(keptRoot).length <= 4);
    } finally {
      small.remove();
    }
  });

  test('sandboxes still waiting for the janitor when a build ends are emptied to be kept, and none is left behind', async () => {
    // Eight emptied in place, then two that wait for a batch of four (engine/sandbox.ts): still waiting at the end.
    const ten = TempWorkspace.create({ 'BUILD.yaml': litterYaml(10) });
    try {
      const r = await ten.build(['-j', '1']);
      assert.deepEqual(new Set(Object.values(statuses(r))), new Set(['built']));
      CHAIN.slice(0, 10).forEach((name, i) => assert.equal(ten.read(`wg-out/out/${name}.cpu.seen.txt`), freshSeen(i), name));
      assert.deepEqual(fs.readdirSync(path.join(ten.cacheDir, 'sandbox')), []);
      // The two were emptied at the end, to be kept: the sandboxes the chain took were all in use till then.
      const keptRoot = path.join(ten.cacheDir, 'sandbox-kept');
      assert.equal(fs.readdirSync(keptRoot).length, 2);
      for (const k of fs.readdirSync(keptRoot)) {
        assert.deepEqual(fs.readdirSync(path.join(keptRoot, k)).sort(), ['deps', 'home', 'out', 'tmp'], k);
        for (const d of ['home', 'out', 'tmp']) assert.deepEqual(fs.readdirSync(path.join(keptRoot, k, d)), [], `${k}/${d}`);
      }
    } finally {
      ten.remove();
    }
  });

  test('a dep folder kept by an earlier build is emptied before it holds a dependency', async () => {
    // The listing names each folder's inode, to tell the kept folder from a new one.
    const two = TempWorkspace.create({
      'BUILD.yaml': `variants:\n  cpu: {}\npackages:\n  a:\n    rule: command\n    cmd: echo a > a.txt\n    outs: [a.txt]\n  b:\n    rule: command\n    deps: [a]\n    cmd: 'cd ../deps && find . -type d -printf "%p %i\\n" > ../work/ino.txt && find . -printf "%p %m\\n" | sort > ../work/b.txt'\n    outs: [b.txt, ino.txt]\n`,
    });
    try {
      await two.build(['-j', '1']);
      const fresh = two.read('wg-out/out/b.cpu.b.txt');
      const keptRoot = path.join(two.cacheDir, 'sandbox-kept');
      const [k] = fs.readdirSync(keptRoot);
      const [spare] = fs.readdirSync(path.join(keptRoot, k!, 'deps'));
      const folder = path.join(keptRoot, k!, 'deps', spare!);
      const ino = fs.statSync(folder).ino;
      fs.mkdirSync(path.join(folder, 'stray'));
      fs.writeFileSync(path.join(folder, 'planted'), '');
      fs.chmodSync(folder, 0o500);
      two.write('BUILD.yaml', two.read('BUILD.yaml').replace('  cpu: {}', '  cpu: {env: {AGAIN: "1"}}'));
      assert.deepEqual(statuses(await two.build(['-j', '1'])), { '//a:cpu': 'built', '//b:cpu': 'built' });
      assert.equal(two.read('wg-out/out/b.cpu.b.txt'), fresh);
      assert.match(two.read('wg-out/out/b.cpu.ino.txt'), new RegExp(`^./_a_cpu ${ino}$`, 'm'), 'the kept dep folder was not used');

      // A file where a kept sandbox should be is not one: removed, and a fresh sandbox made.
      for (const n of fs.readdirSync(keptRoot)) fs.rmSync(path.join(keptRoot, n), { recursive: true });
      fs.writeFileSync(path.join(keptRoot, 'junk00'), 'junk\n');
      two.write('BUILD.yaml', two.read('BUILD.yaml').replace('AGAIN: "1"', 'AGAIN: "2"'));
      assert.deepEqual(statuses(await two.build(['-j', '1'])), { '//a:cpu': 'built', '//b:cpu': 'built' });
      assert.equal(two.read('wg-out/out/b.cpu.b.txt'), fresh);
      assert.deepEqual(fs.readdirSync(path.join(two.cacheDir, 'sandbox')), []);
      assert.equal(fs.existsSync(path.join(keptRoot, 'junk00')), false);
    } finally {
      two.remove();
    }
  });
});

// Actions with a source and without, alternating, so each kind gets sandboxes the other used: one with a source
// must find in src/ its own files only, with the mode a new folder gets; one without must find no src/, even when
// an earlier action without a source made one.
const WITH_SOURCE = '{ ls -A; stat -c %a .; ls -A ..; } > "$TMPDIR/seen" && mkdir -p junk/j && touch junk/j/f litter && chmod 700 . && mv "$TMPDIR/seen" seen.txt';
const WITHOUT_SOURCE = 'ls -A .. > seen.txt && mkdir -p ../src/made && touch ../src/made/f';
const MIXED = Array.from({ length: 12 }, (_, i) => `m${String(i).padStart(2, '0')}`);
const MIXED_YAML = `variants:
  cpu: {}
packages:
${MIXED.map((name, i) => `  ${name}:\n    rule: command\n${i % 2 === 0 ? '    source: pkg\n' : ''}    cmd: ${JSON.stringify(i % 2 === 0 ? WITH_SOURCE : WITHOUT_SOURCE)}\n    outs: [seen.txt]\n${i > 0 ? `    deps: [${MIXED[i - 1]}]\n` : ''}`).join('')}`;

describe('sandbox reuse with sources', () => {
  const ws = TempWorkspace.create({ 'BUILD.yaml': MIXED_YAML, 'pkg/input.txt': 'in\n' });
  after(() => ws.remove());

  test('an action with a source finds only its own files in src/; one without finds no src/', async () => {
    const r = await ws.build(['-j', '1']);
    assert.deepEqual(new Set(Object.values(statuses(r))), new Set(['built']));
    const mode = (0o777 & ~process.umask()).toString(8);
    MIXED.forEach((name, i) => {
      const seen = ws.read(`wg-out/out/${name}.cpu.seen.txt`);
      if (i % 2 === 0) assert.equal(seen, `input.txt\n${mode}\ndeps\nhome\nout\nsrc\ntmp\n`, name);
      else assert.equal(seen, 'deps\nhome\nout\ntmp\nwork\n', name);
    });
    assert.deepEqual(fs.readdirSync(path.join(ws.cacheDir, 'sandbox')), []);
  });
});

// A small source tree is copied synchronously and a larger one on the thread pool (rules/source-path.ts,
// SYNC_COPY_MAX): both must give the same copy, modes normalized to 644 and 755, symlinks kept as links.
const SHOW_TREE = "find . -mindepth 1 -path ./seen.txt -prune -o -printf '%P %y %m %l\\n' | LC_ALL=C sort > seen.txt";
const TREE_YAML = `variants:
  cpu: {}
packages:
  small:
    rule: command
    source: small
    cmd: ${JSON.stringify(SHOW_TREE)}
    outs: [seen.txt]
  large:
    rule: command
    source: large
    cmd: ${JSON.stringify(SHOW_TREE)}
    outs: [seen.txt]
`;
const TREE = { 'run.sh': '#!/bin/sh\n', 'private.txt': 'p\n', 'd/e.txt': 'e\n' };

describe('source copies', () => {
  const extra = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`large/more/m${i}.txt`, `${i}\n`]));
  const ws = TempWorkspace.create({
    'BUILD.yaml': TREE_YAML,
    ...Object.fromEntries(Object.entries(TREE).flatMap(([p, text]) => [[`small/${p}`, text], [`large/${p}`, text]])),
    ...extra,
  });
  after(() => ws.remove());

  test('a small tree and a large one are copied alike: modes 644 and 755, symlinks as links', async () => {
    for (const tree of ['small', 'large']) {
      fs.chmodSync(ws.path(`${tree}/run.sh`), 0o775);
      fs.chmodSync(ws.path(`${tree}/private.txt`), 0o600);
      fs.symlinkSync('d/e.txt', ws.path(`${tree}/link`));
    }
    const r = await ws.build();
    assert.deepEqual(statuses(r), { '//small:cpu': 'built', '//large:cpu': 'built' });
    const mode = (0o777 & ~process.umask()).toString(8);
    const common = [`d d ${mode} `, 'd/e.txt f 644 ', 'link l 777 d/e.txt', 'private.txt f 644 ', 'run.sh f 755 '];
    const more = Array.from({ length: 6 }, (_, i) => `more/m${i}.txt f 644 `);
    assert.equal(ws.read('wg-out/out/small.cpu.seen.txt'), `${common.join('\n')}\n`);
    assert.equal(ws.read('wg-out/out/large.cpu.seen.txt'), `${[...common.slice(0, 3), `more d ${mode} `, ...more, ...common.slice(3)].join('\n')}\n`);
  });
});

// A source copy's file comes from the src/ of an emptied sandbox when there is one (engine/sandbox.ts, spare
// files): it must hold exactly the new content, shorter than the old one, and a file with a name outside the
// sandbox (here one the action hard-links elsewhere) must never be emptied and reused. Twelve actions, sources
// ever shorter, every other one linking its copy out; a chain, so the later ones take spare files.
const SPARE = Array.from({ length: 12 }, (_, i) => `f${String(i).padStart(2, '0')}`);
const spareText = (i: number): string => `${SPARE[i]} ${'x'.repeat(40 - 3 * i)}\n`;
const spareYaml = (linked: string): string => `variants:
  cpu: {}
packages:
${SPARE.map((name, i) => `  ${name}:\n    rule: command\n    source: ${name}\n    cmd: cat input.txt > seen.txt${i % 2 === 0 ? ` && ln input.txt ${linked}/${name}.txt` : ''}\n    outs: [seen.txt]\n${i > 0 ? `    deps: [${SPARE[i - 1]}]\n` : ''}`).join('')}`;

describe('source copies through spare files', () => {
  const ws = TempWorkspace.create({ 'linked/.keep': '', ...Object.fromEntries(SPARE.map((name, i) => [`${name}/input.txt`, spareText(i)])) });
  after(() => ws.remove());

  test('each copy holds its own content, and a copy linked outside the sandbox is left alone', async () => {
    ws.write('BUILD.yaml', spareYaml(ws.path('linked')));
    const r = await ws.build(['-j', '1']);
    assert.deepEqual(new Set(Object.values(statuses(r))), new Set(['built']));
    SPARE.forEach((name, i) => {
      assert.equal(ws.read(`wg-out/out/${name}.cpu.seen.txt`), spareText(i), name);
      if (i % 2 === 0) assert.equal(ws.read(`linked/${name}.txt`), spareText(i), name);
    });
    assert.deepEqual(fs.readdirSync(path.join(ws.cacheDir, 'sandbox')), []);
  });
});

test('a source copy into a spare file holds exactly the source; a spare written to since it was emptied is not used', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-spare-file-'));
  try {
    fs.mkdirSync(path.join(dir, 'root'));
    fs.writeFileSync(path.join(dir, 'root', 'input.txt'), 'abc\n');
    const entries: TreeEntry[] = [{ path: 'input.txt', type: 'file', content: 'unused here', executable: false }];
    const spare = (name: string, text: string): string => {
      fs.writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    const empty = spare('empty', '');
    const emptyIno = fs.statSync(empty).ino;
    await copyTree(path.join(dir, 'root'), entries, path.join(dir, 'a'), () => empty);
    assert.equal(fs.readFileSync(path.join(dir, 'a', 'input.txt'), 'utf8'), 'abc\n');
    assert.equal(fs.statSync(path.join(dir, 'a', 'input.txt')).ino, emptyIno);
    assert.equal(fs.statSync(path.join(dir, 'a', 'input.txt')).mode & 0o7777, 0o644);

    const written = spare('written', 'left behind by a late writer, longer than the source\n');
    await copyTree(path.join(dir, 'root'), entries, path.join(dir, 'b'), () => written);
    assert.equal(fs.readFileSync(path.join(dir, 'b', 'input.txt'), 'utf8'), 'abc\n');
    assert.equal(fs.existsSync(written), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
