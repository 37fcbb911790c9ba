// Unit tests of the key record's canonical form: map order never matters, every value does.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { actionKey, canonicalJson, KEY_FORMAT, type KeyRecord } from '../engine/key.js';

function record(overrides: Partial<KeyRecord> = {}): KeyRecord {
  return {
    format: KEY_FORMAT,
    rule: { kind: 'python_wheel', version: 1 },
    attrs: { build: null, test: ['sh', '-c', 'python -c "import x"'] },
    source: { kind: 'path', tree: 'a'.repeat(64) },
    patches: [{ path: 'patches/x/0001.patch', digest: 'b'.repeat(64) }],
    env: { A: '1', B: '2' },
    toolchain: null,
    systemSitePackages: false,
    deps: [],
    ...overrides,
  };
}

test('canonical JSON sorts keys at every depth and keeps list order', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [2, 1], c: null } }), '{"a":{"c":null,"d":[2,1]},"b":1}');
  assert.equal(canonicalJson({ a: undefined, b: 'x' }), '{"b":"x"}');
});

test('canonical JSON of a value already in key order is the same as of one that is not', () => {
  // Values whose keys are already sorted are handed to JSON.stringify; what it would write differently must not be.
  const fn = (): number => 1;
  const withToJson = new (class {
    a = 1;
    toJSON(): string {
      return 'replaced';
    }
  })();
  const cases: [unknown, string][] = [
    [{ a: { c: null, d: [2, 1] }, b: 1 }, '{"a":{"c":null,"d":[2,1]},"b":1}'],
    [{ a: [1, undefined, 3] }, '{"a":[1,,3]}'],
    [[fn, Symbol('s')], '[,]'],
    [{ a: fn }, '{"a":undefined}'],
    [{ a: withToJson }, '{"a":{"a":1}}'],
    [{ a: new Date(0) }, '{"a":{}}'],
    [{ a: new Map([['k', 1]]) }, '{"a":{}}'],
    [{ a: Object('ab') as unknown, b: Object(1) as unknown }, '{"a":{"0":"a","1":"b"},"b":{}}'],
    [{ a: Object.assign([1], { toJSON: () => 'x' }) }, '{"a":[1]}'],
    [{ 10: 'x', 9: 'y' }, '{"10":"x","9":"y"}'],
  ];
  for (const [value, json] of cases) assert.equal(canonicalJson(value), json);
  assert.equal(canonicalJson(undefined), undefined);
  assert.equal(actionKey({ ...record(), deps: [] }), actionKey(Object.fromEntries(Object.entries(record()).sort(([a], [b]) => (a < b ? -1 : 1))) as unknown as KeyRecord));
});

test('canonical JSON writes every string, as a value or a key, exactly as JSON.stringify does', () => {
  const strings = ['', 'plain text', 'quote " in', 'back\\slash', 'tab\there', 'nul \u0000', 'unit \u001f sep', 'del \u007f', 'é ü 中', 'pair \ud83d\ude00', 'lone \ud800', 'lone \udfff low', 'line \u2028 sep', '</script>'];
  for (const s of strings) {
    assert.equal(canonicalJson(s), JSON.stringify(s));
    assert.equal(canonicalJson({ [s]: [s] }), `{${JSON.stringify(s)}:[${JSON.stringify(s)}]}`);
  }
});

test('the action key is a sha256 that ignores map order', () => {
  const k = actionKey(record());
  assert.match(k, /^[0-9a-f]{64}$/);
  assert.equal(actionKey(record({ env: { B: '2', A: '1' } })), k);
});

test('every field of the record changes the key', () => {
  const k = actionKey(record());
  const changed: Partial<KeyRecord>[] = [
    { format: 'wg-key-0' },
    { rule: { kind: 'python_wheel', version: 2 } },
    { attrs: { build: ['make'], test: null } },
    { source: { kind: 'path', tree: 'c'.repeat(64) } },
    { patches: [] },
    { env: { A: '1', B: '3' } },
    { systemSitePackages: true },
    { deps: ['d'.repeat(64)] },
    {
      toolchain: {
        python: { version: '3.11.2', implementation: 'cpython', tag: 'cp311', abi: 'cp311', platform: 'linux_x86_64' },
        buildTools: { pip: null, setuptools: null, wheel: null },
        torch: null,
        cuda: null,
      },
    },
  ];
  const keys = changed.map((c) => actionKey(record(c)));
  for (const other of keys) assert.notEqual(other, k);
  assert.equal(new Set(keys).size, keys.length);
});

test('patch order is part of the key', () => {
  const p1 = { path: 'p/1.patch', digest: '1'.repeat(64) };
  const p2 = { path: 'p/2.patch', digest: '2'.repeat(64) };
  assert.notEqual(actionKey(record({ patches: [p1, p2] })), actionKey(record({ patches: [p2, p1] })));
});
