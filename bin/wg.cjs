#!/usr/bin/env node
// The compiled CLI lives in dist/ (built by `npm install`'s prepare step); this shim keeps `bin` stable.
// CommonJS on purpose: a `wg build` with nothing to do is answered from the no-op snapshot before the rest of wg
// is loaded, and starting Node's ESM loader alone costs about 10 ms, a tenth of that whole answer. When only
// source files or patches changed, the incremental path rebuilds what they touch: its own bundle, lmdb and msgpackr
// included (resolving their packages one by one cost more than running them). Otherwise the whole CLI runs, as one
// bundle too: resolving and linking some eighty modules one by one cost about a tenth of a full-path build. Both
// bundles load through V8's code cache (engine/code-cache.ts), which took about 60 ms off a one-target dry run; the CLI
// keeps msgpackr's native string extractor outside its bundle and loads it: it took two fifths off decoding 10,000
// msgpack records (the stat cache's tree records were then msgpack; action results still are).
'use strict';
const path = require('node:path');
const { runFastNoop, cacheDirOf, requireCached, settled } = require('../dist/fast-noop.cjs');

// Once nothing is left to run, exit rather than return: Node's return tears down V8's heap and the environment,
// ~4 ms of an edit's build (and this process has nothing to free that the kernel does not).
const exitWhenIdle = () => process.once('beforeExit', () => process.exit());

const full = (cacheDir) => {
  const cli = requireCached(path.join(__dirname, '../dist/wg.cjs'), cacheDir);
  // Once the command is over, so the cache holds what it compiled (a process.exit skips it: a later run writes it).
  process.once('beforeExit', () => cli.save());
  exitWhenIdle();
  // Code run through vm.Script cannot import() on Node 20 (engine/module-import.ts): plugins come through this one.
  cli.exports.main(process.argv, (url) => import(url));
};
const fast = runFastNoop(process.argv.slice(2));
if (fast === false) full(cacheDirOf(process.argv.slice(2)));
// Answered: exit at once. Waiting for the event loop to go idle first runs every compile job V8 has queued in the
// background (Node drains them, 4-7 ms after a no-op's last line), for code about to be thrown away; an exit drops
// the queued ones and waits only for those running (0.98x and 0.99x of a no-op's wall time in 30 and 40 pairs).
else if (fast === true) settled() ? process.exit() : exitWhenIdle();
else {
  const incremental = requireCached(path.join(__dirname, '../dist/incremental.cjs'), fast.args.cacheDir);
  incremental.exports
    .runIncremental(fast)
    .then(
      (code) => {
        incremental.save();
        if (code === null) full(fast.args.cacheDir);
        else {
          process.exitCode = code;
          exitWhenIdle();
        }
      },
      (e) => {
        // Past its checks it may have changed wg-out: retrying down the full path would hide the bug.
        incremental.exports.flushLines();
        process.stderr.write(`wg: internal error in the incremental path (WG_NO_INCREMENTAL=1 turns it off):\n${e && e.stack ? e.stack : e}\n`);
        process.exitCode = 1;
      },
    );
}
