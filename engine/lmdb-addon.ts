// Loads lmdb's native addon for the CommonJS bundles. lmdb asks node-gyp-build-optional-packages, which on every
// run reads lmdb's package.json, lists the candidate folders, resolves the platform package, reads /usr/bin/ldd to
// tell glibc from musl and ranks the prebuilds it finds: ~3 ms of an edit's build. scripts/bundle.mjs asks it once,
// when the bundles are made, and writes its answer beside them (dist/lmdb-addon.json) with what that answer
// depends on; a run whose Node ABI, platform or lmdb folder differs, or whose addon will not load, asks again.
//
// Runs only inside a CommonJS bundle, where `__dirname` is the bundle's folder and `require` is Node's.

import * as fs from 'node:fs';
import * as path from 'node:path';

declare const __dirname: string;

/** What scripts/bundle.mjs found, and for which Node and lmdb. */
export interface KnownAddon {
  dir: string;
  abi: string;
  platform: string;
  arch: string;
  file: string;
}

/**
 * The addon file scripts/bundle.mjs noted in `<bundle folder>/<note>` for `dir`, if it was noted for this Node ABI,
 * platform and architecture; null otherwise (engine/extractor-addon.ts asks for msgpackr's string extractor).
 */
export function notedAddon(note: string, dir: string): string | null {
  try {
    const k = JSON.parse(fs.readFileSync(path.join(__dirname, note), 'utf8')) as KnownAddon;
    const same = path.resolve(k.dir) === path.resolve(dir) && k.abi === process.versions.modules && k.platform === process.platform && k.arch === process.arch;
    return same ? k.file : null;
  } catch {
    return null;
  }
}

export default function loadAddon(dir: string): unknown {
  const file = notedAddon('lmdb-addon.json', dir);
  if (file !== null) {
    try {
      return require(file);
    } catch {
      /* moved or rebuilt since: asked below */
    }
  }
  return (require('node-gyp-build-optional-packages') as (dir: string) => unknown)(dir);
}
