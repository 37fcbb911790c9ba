// Bundles what `tsc` wrote to dist/ into the files bin/wg.cjs loads (`npm run bundle`):
//   dist/fast-noop.cjs    the no-op answer, loaded by every `wg build`, and the loader of the other two bundles
//                         through V8's code cache
//   dist/incremental.cjs  the incremental path, lmdb and msgpackr included
//   dist/wg.cjs           the full CLI, lmdb and msgpackr included
// Each is one file because resolving and linking modules one by one cost more than running them; the last two are
// loaded through V8's code cache (engine/code-cache.ts), which is the only way to load them: they are written as the
// function a CommonJS module is wrapped in.

import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const common = { bundle: true, platform: 'node', target: 'node20', logLevel: 'warning', absWorkingDir: root };

/**
 * esbuild turns each `import * as fs from 'node:fs'` of a CommonJS bundle into a fresh namespace object whose
 * every property is a getter: 41 of them in the incremental bundle, ~6 ms of its ~37 ms load. An ES module's
 * namespace is one object however many modules import it, so one per module (and mode) is also the faithful
 * form. The helper's text is esbuild's; if it changes, this fails rather than leaving the bundle unpatched.
 */
function shareNamespaces(file) {
  const helper = /^var __toESM = \(mod, isNodeMode, (target\d*)\) =>/gm;
  const text = fs.readFileSync(file, 'utf8');
  const found = [...text.matchAll(helper)];
  if (found.length !== 1) throw new Error(`${file}: esbuild's __toESM helper not found once; update scripts/bundle.mjs`);
  const shared =
    'var __toESMShared = [new WeakMap(), new WeakMap()];\n' +
    'var __toESM = (mod, isNodeMode) => {\n' +
    '  if (mod == null || typeof mod !== "object" && typeof mod !== "function") return __toESMOne(mod, isNodeMode);\n' +
    '  const seen = __toESMShared[isNodeMode ? 1 : 0];\n' +
    '  let ns = seen.get(mod);\n' +
    '  if (ns === undefined) seen.set(mod, (ns = __toESMOne(mod, isNodeMode)));\n' +
    '  return ns;\n' +
    '};\n' +
    `var __toESMOne = (mod, isNodeMode, ${found[0][1]}) =>`;
  fs.writeFileSync(file, text.replace(helper, shared));
}

/**
 * The two bundles loaded through V8's code cache are written as the function Node's CommonJS loader would wrap them
 * in: engine/code-cache.ts compiles the file's text as it is. Wrapped at load time, the half-megabyte text was a
 * second string of its size, and V8 flattened the two into a third, garbage that brought on a mark-compact
 * (~10-20 ms) in most edits' builds.
 *
 * They are also written in ASCII, which code-cache.ts decodes as latin1, a copy, where UTF-8 decoding took ~2 ms of
 * an edit's build. esbuild writes code in ASCII (its default charset) but keeps comments as they are, so what other
 * characters are left are in comments, where a \u escape changes nothing.
 */
function wrapAsFunction(file) {
  const text = fs.readFileSync(file, 'utf8').replace(/[^\x00-\x7f]/gu, (c) => `\\u{${c.codePointAt(0).toString(16)}}`);
  fs.writeFileSync(file, `(function (exports, require, module, __filename, __dirname) {${text}\n});\n`);
}

/**
 * lmdb's native addon is found once, here, instead of by node-gyp-build on every run (engine/lmdb-addon.ts): its
 * answer goes beside the bundles, and lmdb's import of node-gyp-build becomes an import of the loader that reads it.
 */
const nodeRequire = createRequire(path.join(root, 'package.json'));
// Where lmdb-url.ts will find it: the nearest node_modules, else Node's resolver (lmdb's main is in its dist/).
const nearest = path.join(root, 'node_modules', 'lmdb');
const lmdbDir = fs.existsSync(path.join(nearest, 'package.json')) ? nearest : path.resolve(path.dirname(nodeRequire.resolve('lmdb')), '..');
/** Writes where node-gyp-build finds the addon of the package in `addonDir`, for a bundle whose loader checks `dir`. */
function noteAddon(note, dir, addonDir) {
  const file = nodeRequire('node-gyp-build-optional-packages').resolve(addonDir);
  const answer = { dir, abi: process.versions.modules, platform: process.platform, arch: process.arch, file };
  fs.writeFileSync(path.join(dist, note), `${JSON.stringify(answer)}\n`);
}
noteAddon('lmdb-addon.json', lmdbDir, lmdbDir);
/**
 * msgpackr's native string extractor, likewise (engine/extractor-addon.ts): noted for the folder the CLI bundle is
 * in, since the bundle's `require('msgpackr-extract')` is resolved from there.
 */
noteAddon('extractor-addon.json', dist, path.dirname(createRequire(path.join(dist, 'wg.cjs')).resolve('msgpackr-extract')));
const extractorAddon = {
  name: 'extractor-addon',
  setup(b) {
    b.onResolve({ filter: /^msgpackr-extract$/ }, (args) =>
      path.basename(args.importer) === 'node-index.js' && path.basename(path.dirname(args.importer)) === 'msgpackr'
        ? { path: path.join(dist, 'engine', 'extractor-addon.js') }
        : undefined,
    );
  },
};

const lmdbAddon = {
  name: 'lmdb-addon',
  setup(b) {
    b.onResolve({ filter: /^node-gyp-build-optional-packages$/ }, (args) =>
      path.basename(args.importer) === 'native.js' && path.basename(path.dirname(args.importer)) === 'lmdb'
        ? { path: path.join(dist, 'engine', 'lmdb-addon.js') }
        : undefined,
    );
  },
};

await build({
  ...common,
  stdin: { contents: "export * from './fast-noop.js';\nexport { requireCached } from './code-cache.js';\n", resolveDir: path.join(dist, 'engine'), loader: 'js' },
  format: 'cjs',
  outfile: 'dist/fast-noop.cjs',
});
shareNamespaces(path.join(dist, 'fast-noop.cjs'));

await build({
  ...common,
  entryPoints: ['dist/engine/incremental.js'],
  format: 'cjs',
  outfile: 'dist/incremental.cjs',
  // lmdb's ES sources find their native addon from import.meta.url: engine/lmdb-url.ts says where lmdb is. The
  // incremental path leaves out msgpackr's native extractor: loading it costs an edit more than it saves.
  define: { 'import.meta.url': 'wgLmdbUrl', 'process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED': '"true"' },
  inject: ['dist/engine/lmdb-url.js'],
  plugins: [lmdbAddon],
});
shareNamespaces(path.join(dist, 'incremental.cjs'));
wrapAsFunction(path.join(dist, 'incremental.cjs'));

await build({
  ...common,
  entryPoints: ['dist/engine/cli.js'],
  format: 'cjs',
  outfile: 'dist/wg.cjs',
  // msgpackr's native string extractor stays a package of its own and is loaded (through engine/extractor-addon.ts):
  // it took two fifths off decoding 10,000 msgpack records.
  external: ['msgpackr-extract'],
  define: { 'import.meta.url': 'wgLmdbUrl' },
  inject: ['dist/engine/lmdb-url.js'],
  plugins: [lmdbAddon, extractorAddon],
});
shareNamespaces(path.join(dist, 'wg.cjs'));
wrapAsFunction(path.join(dist, 'wg.cjs'));
