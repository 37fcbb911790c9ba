// Stats many paths at once for the no-op check: through the native addon (engine/native/stat-many.c, compiled by
// scripts/native.mjs into the bundles' folder) when it is there, else with fs.statSync. The addon answers the two
// common cases, a file's numbers or no such file; everything else it hands back, and fs.statSync answers it here,
// so the two ways agree by construction on all but speed.
//
// Runs inside the CommonJS bundles, where `__dirname` is their folder (dist/); elsewhere (tsc's ES modules) there
// is no `__dirname`, and it stats in JavaScript unless given the folder.

import * as fs from 'node:fs';
import * as path from 'node:path';

declare const __dirname: string | undefined;

/** Numbers per path: size, mtimeMs, ctimeMs, ino, as a number `fs.Stats` has them; size < 0 when there is none. */
export const STAT_FIELDS = 4;
/** The addon's size for a path it leaves to fs.statSync. */
const ASK_NODE = -2;

type NativeStatMany = (paths: readonly string[]) => Float64Array;

/** The addon in `dir`, or null when it is missing, will not load, or WG_NO_NATIVE_STAT=1 turns it off. */
export function loadNativeStat(dir: string | null): NativeStatMany | null {
  if (dir === null || process.env['WG_NO_NATIVE_STAT'] === '1') return null;
  const module = { exports: {} as { statMany?: unknown } };
  try {
    process.dlopen(module, path.join(dir, 'stat-many.node'));
  } catch {
    return null;
  }
  return typeof module.exports.statMany === 'function' ? (module.exports.statMany as NativeStatMany) : null;
}

let native: NativeStatMany | null | undefined;

/**
 * Every path's size, mtimeMs, ctimeMs and ino, STAT_FIELDS numbers each, following symbolic links as fs.statSync
 * does; size -1 for a path that is missing or cannot be stat-ed (a no-op check counts both as gone). `using`
 * chooses the way (tests); by default, the addon beside the bundle.
 */
export function statMany(paths: readonly string[], using?: NativeStatMany | null): Float64Array {
  if (using === undefined) using = native === undefined ? (native = loadNativeStat(typeof __dirname === 'string' ? __dirname : null)) : native;
  const v = using ? using(paths) : new Float64Array(paths.length * STAT_FIELDS).fill(ASK_NODE);
  for (let i = 0; i < paths.length; i++) {
    const at = i * STAT_FIELDS;
    if (v[at] !== ASK_NODE) continue;
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(paths[i]!, { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    v[at] = st ? st.size : -1;
    v[at + 1] = st ? st.mtimeMs : 0;
    v[at + 2] = st ? st.ctimeMs : 0;
    v[at + 3] = st ? st.ino : 0;
  }
  return v;
}
