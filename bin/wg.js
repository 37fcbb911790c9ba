#!/usr/bin/env node
// The compiled CLI lives in dist/ (built by `npm install`'s prepare step); this shim keeps `bin` stable.
import '../dist/engine/cli.js';
