// Loads msgpackr's native string extractor for the CLI bundle, which msgpackr asks for as `msgpackr-extract`. That
// package asks node-gyp-build-optional-packages on every run, which loads detect-libc, reads /usr/bin/ldd and ranks
// the prebuilds it finds: ~13 ms of CPU, against ~2 ms for loading the addon itself. scripts/bundle.mjs asks once,
// like it does for lmdb's addon (engine/lmdb-addon.ts), and notes the answer beside the bundle
// (dist/extractor-addon.json); a bundle moved to another folder, a run on another Node ABI or platform, or an addon
// that will not load asks `msgpackr-extract` again.
//
// Runs only inside the CLI bundle, where `__dirname` is the bundle's folder and `require` is Node's.

import { notedAddon } from './lmdb-addon.js';

declare const __dirname: string;

function load(): { extractStrings: unknown } {
  const file = notedAddon('extractor-addon.json', __dirname);
  if (file !== null) {
    try {
      return require(file) as { extractStrings: unknown };
    } catch {
      /* moved or rebuilt since: asked below */
    }
  }
  return require('msgpackr-extract') as { extractStrings: unknown };
}

/** What msgpackr takes from the addon (node-index.js); a missing addon throws here, which msgpackr expects. */
export const extractStrings = load().extractStrings;
