// The incremental path's bundle carries lmdb's sources but not its native addon, which lmdb finds from the package
// folder the bundle locates (engine/lmdb-url.ts): through the node_modules folders above the bundle, else through
// Node's resolver (NODE_PATH, global folders). Which addon file that is, scripts/bundle.mjs wrote beside the bundles
// (engine/lmdb-addon.ts); a copy without that note, or with one that does not fit, asks node-gyp-build. The CLI
// bundle does the same for msgpackr's native string extractor (engine/extractor-addon.ts).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-incremental-bundle-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * Loads the bundle at `at` in a process of its own, as bin/wg.cjs loads it (through the code cache: the bundle is
 * the function a CommonJS module is wrapped in, scripts/bundle.mjs); the native modules it loaded, or the error.
 */
function loadBundle(at: string, env: Record<string, string> = {}): { status: number | null; addons: string[]; stderr: string } {
  const loader = path.join(repo, 'dist', 'fast-noop.cjs');
  const script = `require(${JSON.stringify(loader)}).requireCached(${JSON.stringify(at)}, ${JSON.stringify(path.join(dir, 'code'))}); console.log(JSON.stringify(Object.keys(require.cache).filter((k) => k.endsWith('.node'))));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, NODE_PATH: '', ...env } });
  return { status: r.status, addons: r.status === 0 ? (JSON.parse(r.stdout) as string[]) : [], stderr: r.stderr };
}

/** Loads a copy of the incremental bundle at `at` (loadBundle). */
function load(at: string, env: Record<string, string> = {}): ReturnType<typeof loadBundle> {
  fs.mkdirSync(path.dirname(at), { recursive: true });
  fs.copyFileSync(path.join(repo, 'dist', 'incremental.cjs'), at);
  return loadBundle(at, env);
}

test('the bundle finds lmdb in a node_modules folder above it', () => {
  const pkg = path.join(dir, 'installed');
  fs.mkdirSync(pkg);
  fs.symlinkSync(path.join(repo, 'node_modules'), path.join(pkg, 'node_modules'));
  const r = load(path.join(pkg, 'dist', 'incremental.cjs'));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.addons.length, 1, r.addons.join('\n'));
  assert.match(path.basename(r.addons[0]!), /^node\..*\.node$/);
  assert.ok(r.addons[0]!.startsWith(fs.realpathSync(path.join(repo, 'node_modules', '@lmdb'))), r.addons[0]);
});

test('with no node_modules folder above it, the bundle finds lmdb through NODE_PATH, and says so when it cannot', () => {
  const alone = path.join(dir, 'alone', 'incremental.cjs');
  const missing = load(alone);
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /Error: Cannot find module 'lmdb'/);
  const r = load(alone, { NODE_PATH: path.join(repo, 'node_modules') });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.addons.length, 1, r.addons.join('\n'));
});

test('the addon named beside the bundle is loaded when it fits; otherwise node-gyp-build finds it', () => {
  const pkg = path.join(dir, 'noted');
  fs.mkdirSync(path.join(pkg, 'dist'), { recursive: true });
  fs.symlinkSync(path.join(repo, 'node_modules'), path.join(pkg, 'node_modules'));
  const real = fs.realpathSync(path.join(repo, 'node_modules', '@lmdb'));
  const noted = JSON.parse(fs.readFileSync(path.join(repo, 'dist', 'lmdb-addon.json'), 'utf8')) as Record<string, string>;
  // A copy elsewhere, so that loading it is told apart from node-gyp-build's answer.
  const copy = path.join(dir, 'copy-of-lmdb.node');
  fs.copyFileSync(noted['file']!, copy);
  const note = (fields: Record<string, string>): void =>
    fs.writeFileSync(path.join(pkg, 'dist', 'lmdb-addon.json'), JSON.stringify({ ...noted, dir: path.join(pkg, 'node_modules', 'lmdb'), file: copy, ...fields }));
  const at = path.join(pkg, 'dist', 'incremental.cjs');

  note({});
  assert.deepEqual(load(at).addons, [copy]);
  for (const [what, misfit] of [
    ['another Node ABI', { abi: '1' }],
    ['another lmdb folder', { dir: path.join(dir, 'elsewhere', 'lmdb') }],
    ['a file that is gone', { file: path.join(dir, 'gone.node') }],
  ] as const) {
    note(misfit);
    const r = load(at);
    assert.equal(r.status, 0, `${what}: ${r.stderr}`);
    assert.equal(r.addons.length, 1, what);
    assert.ok(r.addons[0]!.startsWith(real), `${what}: ${r.addons[0]}`);
  }
});

test("the CLI bundle loads msgpackr's string extractor named beside it when it fits; otherwise msgpackr-extract finds it", () => {
  const pkg = path.join(dir, 'cli');
  fs.mkdirSync(path.join(pkg, 'dist'), { recursive: true });
  fs.symlinkSync(path.join(repo, 'node_modules'), path.join(pkg, 'node_modules'));
  const at = path.join(pkg, 'dist', 'wg.cjs');
  fs.copyFileSync(path.join(repo, 'dist', 'wg.cjs'), at);
  const noted = JSON.parse(fs.readFileSync(path.join(repo, 'dist', 'extractor-addon.json'), 'utf8')) as Record<string, string>;
  const copy = path.join(dir, 'copy-of-extractor.node');
  fs.copyFileSync(noted['file']!, copy);
  const note = (fields: Record<string, string>): void =>
    fs.writeFileSync(path.join(pkg, 'dist', 'extractor-addon.json'), JSON.stringify({ ...noted, dir: path.join(pkg, 'dist'), file: copy, ...fields }));
  const extractors = (): string[] => {
    const r = loadBundle(at);
    assert.equal(r.status, 0, r.stderr);
    return r.addons.filter((k) => !k.includes('lmdb'));
  };

  note({});
  assert.deepEqual(extractors(), [copy]);
  const real = fs.realpathSync(path.join(repo, 'node_modules', '@msgpackr-extract'));
  for (const [what, misfit] of [
    ['another Node ABI', { abi: '1' }],
    ['a bundle moved elsewhere', { dir: path.join(dir, 'elsewhere', 'dist') }],
    ['a file that is gone', { file: path.join(dir, 'gone.node') }],
  ] as const) {
    note(misfit);
    const found = extractors();
    assert.equal(found.length, 1, what);
    assert.ok(found[0]!.startsWith(real), `${what}: ${found[0]}`);
  }
});
