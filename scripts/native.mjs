// Compiles wg's one native addon, engine/native/fs-batch.c, into dist/fs-batch.node (`npm run bundle` runs this
// first). It is Node-API, so one build serves every Node version from 12.17 on; the headers come from the
// node-api-headers package (devDependency), else from the system's Node. Without a C compiler wg still works: it
// says so here, and engine/fs-batch.ts makes the same calls in JavaScript.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'engine', 'native', 'fs-batch.c');
const out = path.join(root, 'dist', 'fs-batch.node');

function headers() {
  try {
    return path.join(path.dirname(createRequire(path.join(root, 'package.json')).resolve('node-api-headers/package.json')), 'include');
  } catch {
    return ['/usr/include/node', '/usr/local/include/node'].find((d) => fs.existsSync(path.join(d, 'node_api.h'))) ?? null;
  }
}

function compile() {
  const include = headers();
  if (include === null) return 'no Node-API headers (node-api-headers is not installed, and there is no /usr/include/node)';
  const cc = process.env.CC || 'cc';
  const tmp = `${out}.${process.pid}.tmp`;
  // macOS links an addon's Node-API symbols at load time only when told to.
  const args = ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-shared', '-fPIC', '-pthread', '-I', include, '-o', tmp, source];
  if (process.platform === 'darwin') args.push('-undefined', 'dynamic_lookup');
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.error) return `${cc} could not be run (${r.error.message})`;
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    return `${cc} failed:\n${r.stderr.trim()}`;
  }
  if (r.stderr.trim() !== '') process.stderr.write(r.stderr);
  fs.renameSync(tmp, out);
  return null;
}

fs.mkdirSync(path.dirname(out), { recursive: true });
const failed = process.platform === 'win32' ? 'not built on Windows' : compile();
if (failed !== null) {
  // A stale addon would answer for a source it was not built from.
  fs.rmSync(out, { force: true });
  process.stderr.write(`wg: engine/native/fs-batch.c was not compiled: ${failed}\nwg: the no-op check will stat inputs and restore outputs in JavaScript, which is slower.\n`);
}
