import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMap, isScalar, isSeq, parseDocument, type Node } from 'yaml';
import { quickDocument } from '../engine/yaml-quick.js';

const REPO = path.resolve(import.meta.dirname, '../..');

/** Where two node trees first differ in what the loader reads (kind, value, style, source, format, order), or null. */
function difference(a: Node | null, b: Node | null, at = '$'): string | null {
  if (a === null || b === null) return a === b ? null : `${at}: ${a === null ? 'null' : 'a node'} vs ${b === null ? 'null' : 'a node'}`;
  if (isScalar(a) !== isScalar(b) || isMap(a) !== isMap(b) || isSeq(a) !== isSeq(b)) return `${at}: ${a.constructor.name} vs ${b.constructor.name}`;
  if (isScalar(a) && isScalar(b)) {
    for (const f of ['value', 'type', 'source', 'format', 'tag'] as const) {
      if (!Object.is(a[f], b[f])) return `${at}: ${f} ${JSON.stringify(a[f])} vs ${JSON.stringify(b[f])}`;
    }
    return null;
  }
  if ((isMap(a) || isSeq(a)) && (isMap(b) || isSeq(b))) {
    if (Boolean(a.flow) !== Boolean(b.flow)) return `${at}: flow ${a.flow} vs ${b.flow}`;
    if (a.items.length !== b.items.length) return `${at}: ${a.items.length} vs ${b.items.length} items`;
    for (let i = 0; i < a.items.length; i++) {
      const x = a.items[i] as unknown;
      const y = b.items[i] as unknown;
      const d = isMap(a)
        ? difference((x as { key: Node }).key, (y as { key: Node }).key, `${at}.<key ${i}>`) ??
          difference((x as { value: Node | null }).value, (y as { value: Node | null }).value, `${at}.<value ${i}>`)
        : difference(x as Node | null, y as Node | null, `${at}[${i}]`);
      if (d) return d;
    }
    return null;
  }
  return `${at}: not a scalar, map or list`;
}

/** 'same' when js-yaml's nodes are yaml's, 'refused' when the quick reader declines; anything else is a defect. */
function compare(text: string): string {
  const quick = quickDocument(text);
  const exact = parseDocument(text, { uniqueKeys: false });
  if (quick === null) return 'refused';
  if (exact.errors.length > 0) return `read, though yaml says: ${exact.errors[0]!.message}`;
  return difference(quick.contents as Node | null, exact.contents as Node | null) ?? 'same';
}

const SAME: Record<string, string> = {
  'core schema numbers, nulls and booleans': 'a: 3.10\nb: 0x1F\nc: 0o17\nd: 1_000\ne: .inf\nf: -.INF\ng: .nan\nh: 1e3\ni: +12\nj: 012\nk: 1.\nl: 0b101\nm: ~\nn: Null\no: TRUE\np: yes\nq: on\nr: 2024-01-01\n',
  'quoted scalars and their escapes': 'a: "x\\ty\\u00e9"\nb: \'it\'\'s\'\nc: "multi\n  line"\nd: \'\'\ne: ""\nf: "\\x41\\N\\_\\L\\P\\e\\0"\n',
  'block scalars, chomped and indented': 's: |\n  one\n  two\n\nt: >\n  folded\n  text\n\n  para\nu: |-\n  strip\nv: |+\n  keep\n\nw: >2\n   indented\n',
  'block scalars in a list': 'a:\n  - |\n    x\n  - >-\n    y\n',
  'multi-line plain scalars and comments': 'a: this is\n  a long\n  plain\nb: x # comment\nc: "q" # c\n# top\nd: # c\n  # inner\n  e: 1 # x\n',
  'flow and block collections': 'a: [1, "2", three]\nb: {k: v, n: 1}\nc: []\nd: {}\ne:\n  - [x]\n  - - y\n    - z\nf: [ ]\ng:\n  - {h: 1}\n  - [[i]]\n',
  'empty values': 'a:\nb: ~\nc: null\nd: [a, ]\n',
  'characters that are not indicators here': 'a: x#y\nb: "z #"\nc: [a#b, c]\nd: b:c\ne: http://x.y/z\nf: 50%\ng: ?x\nh: x?\ni: x!\nj: x&y\nk: a * b\nl: -1\n',
  'keys a number would repeat as text': '1: a\n1.0: b\n',
  'an explicit key after a directive': '%YAML 1.2\n---\n? a\n: b\n',
  'a BOM': '\uFEFFa: 1\n',
  'CRLF line ends': 'a: 1\r\nb:\r\n  - x\r\n',
  'a tab after a colon': 'a:\t1\n',
  'trailing blanks and unicode': 'a: 1   \nb: x  \nключ: значение\nemoji: "😀"\n',
  'a merge key without an anchor is a plain key': '<<: 1\na: 2\n',
  'a bare document': '',
  'a scalar document': 'just text\n',
};

const REFUSED: Record<string, string> = {
  'an anchor and alias': 'a: &x 1\nb: *x\n',
  'a tag': 'a: !!str 1\n',
  'a custom tag': 'a: !custom x\n',
  'a merge key': 'base: &b {x: 1}\nd:\n  <<: *b\n',
  'a repeated key': 'a: 1\na: 2\n',
  'a list item with nothing in it': 'e:\n  -\n  - z\n',
  'a key over 1024 characters (yaml refuses it)': `${'a'.repeat(1030)}: 1\n`,
  'two documents': '---\na: 1\n---\nb: 2\n',
  'an unclosed flow list': 'a: [1, 2\nb: 3\n',
  'a bad escape': 'a: "\\q"\n',
  'a comment right after a flow list (yaml refuses it)': 'a: [b]#c\n',
  'a reserved character': 'a: @x\n',
};

describe('quick YAML reading (js-yaml into yaml nodes)', () => {
  for (const [what, text] of Object.entries(SAME)) {
    it(`reads ${what} into the nodes yaml makes`, () => assert.equal(compare(text), 'same'));
  }
  for (const [what, text] of Object.entries(REFUSED)) {
    it(`leaves ${what} to yaml`, () => assert.equal(compare(text), 'refused'));
  }

  it("reads the demo workspace's and the example's BUILD.yaml", () => {
    for (const file of ['BUILD.yaml', 'examples/seed-audio/BUILD.yaml']) assert.equal(compare(fs.readFileSync(path.join(REPO, file), 'utf8')), 'same', file);
  });

  it('never reads a damaged BUILD.yaml differently from yaml, nor one yaml refuses (3000 seeded mutations)', () => {
    const seeds = [
      fs.readFileSync(path.join(REPO, 'BUILD.yaml'), 'utf8'),
      'variants:\n  cpu: {}\n  cu124:\n    env: {CUDA: "12.4", N: 4}\npackages:\n  a:\n    rule: command\n    cmd: [sh, -c, "echo hi && ls *"]\n' +
        '    outs: [out.txt]\n    deps: [b]\n  b:\n    rule: python_wheel\n    source: {git: "file:///x", ref: v1.0}\n    script: |\n' +
        '      make\n      make install\n    versions:\n      2.10: {env: {X: y}}\n      ">=2,<3": {}\n',
    ];
    const pieces = [':', ': ', '-', '- ', ' ', '  ', '\t', '[', ']', '{', '}', ',', '"', "'", '#', ' #', '\n', '\n  ', '|', '>', '?', '!', '&', '*', '%', '@', '`', '0x1', '1.', '~', '\\', '...', '---'];
    let state = 7;
    const rand = (n: number): number => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return Math.floor((state / 2147483648) * n);
    };
    const seen = new Map<string, number>();
    for (let n = 0; n < 3000; n++) {
      let text = seeds[rand(seeds.length)]!;
      for (let edits = 1 + rand(3); edits > 0; edits--) {
        const at = rand(text.length);
        const kind = rand(10);
        if (kind < 5) text = text.slice(0, at) + pieces[rand(pieces.length)] + text.slice(at);
        else if (kind < 8) text = text.slice(0, at) + text.slice(at + 1 + rand(3));
        else {
          const from = rand(text.length);
          text = text.slice(0, at) + text.slice(from, from + 5) + text.slice(at);
        }
      }
      const result = compare(text);
      if (result !== 'same' && result !== 'refused') assert.fail(`${JSON.stringify(text)}: ${result}`);
      seen.set(result, (seen.get(result) ?? 0) + 1);
    }
    // Both outcomes happen: the mutations neither all break the file nor all leave it readable.
    assert.ok((seen.get('same') ?? 0) > 500 && (seen.get('refused') ?? 0) > 500, JSON.stringify([...seen]));
  });
});
