#!/usr/bin/env node
// The compiled CLI lives in dist/ (built by `npm install`'s prepare step); this shim keeps `bin` stable.
// A `wg build` with nothing to do is answered from the no-op snapshot before the rest of wg is even loaded.
// Otherwise the CLI is loaded as one bundled file: resolving and linking some eighty modules one by one cost
// about a tenth of a full-path build.
import { runFastNoop } from '../dist/engine/fast-noop.js';

if (!runFastNoop(process.argv.slice(2))) await import('../dist/wg.mjs');
