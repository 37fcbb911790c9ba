#!/usr/bin/env node
// The compiled CLI lives in dist/ (built by `npm install`'s prepare step); this shim keeps `bin` stable.
// A `wg build` with nothing to do is answered from the no-op snapshot before the rest of wg is even loaded.
import { runFastNoop } from '../dist/engine/fast-noop.js';

if (!runFastNoop(process.argv.slice(2))) await import('../dist/engine/cli.js');
