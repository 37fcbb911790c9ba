// The CommonJS bundles (dist/incremental.cjs, dist/wg.cjs) hold lmdb's ES sources, which find their native addon
// relative to their own `import.meta.url`: a bundle defines it as `wgLmdbUrl`, the URL of a file in lmdb's folder.
// Asking Node's resolver for lmdb reads its package exports, whose first use loads Node's ES resolution internals,
// ~3 ms of an edit's build. The package folder is found here as Node's lookup finds it, through each node_modules
// folder from the bundle's up; the resolver is asked only when that finds nothing (a global folder, NODE_PATH).
//
// Runs only inside a CommonJS bundle, where `__dirname` and `__filename` are the bundle's.

import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

declare const __dirname: string;
declare const __filename: string;

function lmdbFile(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', 'lmdb', 'package.json');
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) return createRequire(__filename).resolve('lmdb');
  }
}

export const wgLmdbUrl = pathToFileURL(lmdbFile()).href;
