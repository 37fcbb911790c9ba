// The code cache the incremental path's bundle is loaded through: V8's compiled code is reused only for the very
// bundle it was made from, and a cache that does not fit is replaced, never trusted.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-code-cache-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const bundle = path.join(dir, 'bundle.cjs');
const cacheDir = path.join(dir, 'cache');
const cacheFile = path.join(cacheDir, 'code', 'bundle.cjs.v8');

const codeCache = fileURLToPath(new URL('../engine/code-cache.js', import.meta.url));

/** One load in a process of its own: V8 ignores cachedData for a script its isolate has already compiled. */
function load(): { answer: number; fromCache: boolean } {
  const script =
    `import { requireCached } from ${JSON.stringify(codeCache)};` +
    `const m = requireCached(${JSON.stringify(bundle)}, ${JSON.stringify(cacheDir)});` +
    'const answer = m.exports.answer(); m.save(); console.log(JSON.stringify({ answer, fromCache: m.fromCache }));';
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { answer: number; fromCache: boolean };
}

/** A bundle as scripts/bundle.mjs writes one: the function Node's CommonJS loader would wrap the module in. */
const wrapped = (body: string): string => `(function (exports, require, module, __filename, __dirname) {${body}\n});\n`;

test('a bundle is compiled once, then loaded from the cache until it changes; a damaged cache is replaced', () => {
  fs.writeFileSync(bundle, wrapped("'use strict';\nconst path = require('node:path');\nexports.answer = () => path.basename('/x/41').length + 40;"));
  assert.deepEqual(load(), { answer: 42, fromCache: false });
  assert.ok(fs.existsSync(cacheFile));
  assert.deepEqual(load(), { answer: 42, fromCache: true });

  // Same length, other code: the stamp (size, mtime, inode) no longer matches, so V8 never sees the old cache.
  fs.rmSync(bundle);
  fs.writeFileSync(bundle, wrapped("'use strict';\nconst path = require('node:path');\nexports.answer = () => path.basename('/x/41').length + 41;"));
  assert.deepEqual(load(), { answer: 43, fromCache: false });
  assert.deepEqual(load(), { answer: 43, fromCache: true });

  // The stamp fits but the data is garbage: V8 rejects it, the bundle still runs, and the cache is written anew.
  const bytes = fs.readFileSync(cacheFile);
  const stampEnd = 2 + bytes.readUInt16LE(0);
  fs.writeFileSync(cacheFile, Buffer.concat([bytes.subarray(0, stampEnd), Buffer.alloc(bytes.length - stampEnd, 7)]));
  assert.deepEqual(load(), { answer: 43, fromCache: false });
  assert.deepEqual(load(), { answer: 43, fromCache: true });
});

test('a bundle in ASCII is read as latin1, any other as UTF-8; the bundles written by scripts/bundle.mjs are ASCII', () => {
  // A non-ASCII string read as latin1 would come out as mojibake: four characters, not one.
  fs.rmSync(bundle);
  fs.writeFileSync(bundle, wrapped("'use strict';\n// a \u2192 b\nexports.answer = () => '\u2192'.length + '\\u2192'.length + 40;"));
  assert.deepEqual(load(), { answer: 42, fromCache: false });
  fs.rmSync(bundle);
  fs.writeFileSync(bundle, wrapped("'use strict';\nexports.answer = () => '\\u2192'.length + 41;"));
  assert.deepEqual(load(), { answer: 42, fromCache: false });
  for (const name of ['incremental.cjs', 'wg.cjs']) {
    const text = fs.readFileSync(fileURLToPath(new URL(`../${name}`, import.meta.url)));
    assert.equal(text.findIndex((b) => b > 0x7f), -1, `${name} holds a byte that is not ASCII`);
  }
});

test('a file that is not a wrapped bundle is refused, not run as a module', () => {
  const plain = path.join(dir, 'plain.cjs');
  fs.writeFileSync(plain, "exports.answer = () => 42;\n");
  const script = `import { requireCached } from ${JSON.stringify(codeCache)}; requireCached(${JSON.stringify(plain)}, ${JSON.stringify(cacheDir)});`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, new RegExp(`Error: ${plain.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a bundle written by scripts/bundle\\.mjs \\(not a wrapped function\\)`));
});

test('the CLI keeps its code cache in the cache folder the command line names, else in the default one', () => {
  const wg = fileURLToPath(new URL('../../bin/wg.cjs', import.meta.url));
  const ws = path.join(dir, 'ws');
  fs.mkdirSync(path.join(ws, 'src'), { recursive: true });
  fs.writeFileSync(path.join(ws, 'BUILD.yaml'), 'variants:\n  cpu: {}\npackages:\n  a:\n    rule: command\n    source: src\n    cmd: "true"\n');
  const byEnv = path.join(dir, 'env-cache');
  const byFlag = path.join(dir, 'flag-cache');
  const run = (args: string[]): string => {
    const r = spawnSync(process.execPath, [wg, ...args], { cwd: ws, encoding: 'utf8', env: { ...process.env, WG_CACHE_DIR: byEnv } });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  assert.equal(run(['query', 'targets', '//...']), '//a:cpu\n');
  assert.deepEqual(fs.readdirSync(path.join(byEnv, 'code')), ['wg.cjs.v8']);
  const made = fs.statSync(path.join(byEnv, 'code', 'wg.cjs.v8'), { bigint: true }).mtimeNs;
  // Accepted by V8 the second time: not written again.
  assert.equal(run(['query', 'targets', '//...']), '//a:cpu\n');
  assert.equal(fs.statSync(path.join(byEnv, 'code', 'wg.cjs.v8'), { bigint: true }).mtimeNs, made);
  run(['build', '--dry-run', '--cache-dir', path.join(dir, 'first'), `--cache-dir=${byFlag}`]);
  assert.deepEqual(fs.readdirSync(path.join(byFlag, 'code')), ['wg.cjs.v8']);
  assert.equal(fs.existsSync(path.join(dir, 'first')), false);
});

test("a build that ran actions leaves a code cache the next run accepts (V8's flags are put back first)", () => {
  const wg = fileURLToPath(new URL('../../bin/wg.cjs', import.meta.url));
  const ws = path.join(dir, 'ws-actions');
  fs.mkdirSync(path.join(ws, 'src'), { recursive: true });
  fs.writeFileSync(path.join(ws, 'BUILD.yaml'), 'variants:\n  cpu: {}\npackages:\n  a:\n    rule: command\n    source: src\n    cmd: "true"\n');
  const cache = path.join(dir, 'actions-cache');
  const build = (content: string): void => {
    fs.writeFileSync(path.join(ws, 'src', 'in.txt'), content);
    // The full path each time: that is the one whose build raises V8's interrupt budget (engine/tiering.ts).
    const env = { ...process.env, WG_CACHE_DIR: cache, WG_NO_FAST_PATH: '1' };
    const r = spawnSync(process.execPath, [wg, 'build', '//...'], { cwd: ws, encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /wg: 1 built, 0 cached/);
  };
  const stamp = (): bigint => fs.statSync(path.join(cache, 'code', 'wg.cjs.v8'), { bigint: true }).mtimeNs;
  build('one\n');
  const made = stamp();
  build('two\n');
  assert.equal(stamp(), made, 'the code cache was rejected and written again');
});
