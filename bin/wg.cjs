#!/usr/bin/env node
// The compiled CLI lives in dist/ (built by `npm install`'s prepare step); this shim keeps `bin` stable.
// CommonJS on purpose: a `wg build` with nothing to do is answered from the no-op snapshot before the rest of wg
// is loaded, and starting Node's ESM loader alone costs about 10 ms, a tenth of that whole answer. When only
// source files or patches changed, the incremental path rebuilds what they touch: its own bundle, lmdb and msgpackr
// included (resolving their packages one by one cost more than running them), loaded through V8's code cache
// (engine/code-cache.ts). Otherwise the CLI is loaded as one bundled ES module: resolving and linking some eighty
// modules one by one cost about a tenth of a full-path build. lmdb and msgpackr are in that bundle too (their
// import.meta.url points at lmdb's own files); msgpackr's native string extractor is not, and is still loaded: it
// takes two fifths off decoding the 10,000 stat-cache records of a 10,000-target analysis.
'use strict';
const path = require('node:path');
const { runFastNoop } = require('../dist/fast-noop.cjs');

const full = () => import('../dist/wg.mjs');
const fast = runFastNoop(process.argv.slice(2));
if (fast === false) full();
else if (fast !== true) {
  // A bundle of its own: the no-op answer above must not load node:vm.
  const { requireCached } = require('../dist/code-cache.cjs');
  const incremental = requireCached(path.join(__dirname, '../dist/incremental.cjs'), fast.args.cacheDir);
  incremental.exports
    .runIncremental(fast)
    .then(
      (code) => {
        incremental.save();
        if (code === null) full();
        else process.exitCode = code;
      },
      (e) => {
        // Past its checks it may have changed wg-out: retrying down the full path would hide the bug.
        process.stderr.write(`wg: internal error in the incremental path (WG_NO_INCREMENTAL=1 turns it off):\n${e && e.stack ? e.stack : e}\n`);
        process.exitCode = 1;
      },
    );
}
