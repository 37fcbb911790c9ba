// Many paths stat-ed, compared with their recorded stats, or linked, in one call each, for the no-op snapshot's
// check and restore: through the native addon (engine/native/fs-batch.c, compiled by scripts/native.mjs into the
// bundles' folder) when it is there, else with fs.statSync and fs.linkSync. The addon answers the common cases (a
// file's numbers, no such file, a recorded stat that still holds or not); everything else it hands back, and
// fs.statSync answers it here, so the two ways agree on all but speed (and on times within a microsecond of each
// other, which only the addon tells apart).
//
// Runs inside the CommonJS bundles, where `__dirname` is their folder (dist/); elsewhere (tsc's ES modules) there
// is no `__dirname`, and it makes the calls in JavaScript unless given the folder.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StatTuple } from './inputs.js';

declare const __dirname: string | undefined;

/** Numbers per path: size, mtimeMs, ctimeMs, ino, as a number `fs.Stats` has them; size < 0 when there is none. */
export const STAT_FIELDS = 4;
/** The addon's size for a path it leaves to fs.statSync. */
const ASK_NODE = -2;

/** The addon's answers of unmovedMany. */
const MOVED = 0;
const UNMOVED = 1;

/** A path and its recorded stat, null when it was missing: an entry of a no-op snapshot. */
export type RecordedStat = readonly [path: string, recorded: StatTuple | null];

export interface NativeFs {
  statMany(paths: readonly string[]): Float64Array;
  unmovedMany(entries: readonly RecordedStat[]): Uint8Array;
  linkMany(from: readonly string[], to: readonly string[]): number;
}

/** The addon in `dir`, or null when it is missing, will not load, or WG_NO_NATIVE_FS=1 turns it off. */
export function loadNativeFs(dir: string | null): NativeFs | null {
  if (dir === null || process.env['WG_NO_NATIVE_FS'] === '1') return null;
  const module = { exports: {} as Partial<Record<keyof NativeFs, unknown>> };
  try {
    process.dlopen(module, path.join(dir, 'fs-batch.node'));
  } catch {
    return null;
  }
  const { statMany, unmovedMany, linkMany } = module.exports;
  return [statMany, unmovedMany, linkMany].every((f) => typeof f === 'function') ? (module.exports as NativeFs) : null;
}

let native: NativeFs | null | undefined;

function nativeBesideBundle(): NativeFs | null {
  return native === undefined ? (native = loadNativeFs(typeof __dirname === 'string' ? __dirname : null)) : native;
}

/**
 * Every path's size, mtimeMs, ctimeMs and ino, STAT_FIELDS numbers each, following symbolic links as fs.statSync
 * does; size -1 for a path that is missing or cannot be stat-ed (a no-op check counts both as gone). `using`
 * chooses the way (tests); by default, the addon beside the bundle.
 */
export function statMany(paths: readonly string[], using: NativeFs | null = nativeBesideBundle()): Float64Array {
  const v = using ? using.statMany(paths) : new Float64Array(paths.length * STAT_FIELDS).fill(ASK_NODE);
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

/**
 * For each entry, whether its path is still the file or folder recorded (a missing one is still missing). The
 * addon compares to the nanosecond; here, as a number `Stats` has them: at 1000 targets, 2000 BigIntStats and the
 * four strings made of each were a sixth of the check and most of its garbage. The times are then the doubles
 * Node computes from seconds and nanoseconds, so an unchanged file compares equal; they resolve ~0.25 µs, and a
 * file changed that close to its recorded time is racy, checked by content anyway.
 */
export function unmovedMany(entries: readonly RecordedStat[], using: NativeFs | null = nativeBesideBundle()): boolean[] {
  const answers = using ? using.unmovedMany(entries) : null;
  const out = new Array<boolean>(entries.length);
  for (let i = 0; i < entries.length; i++) {
    const answer = answers ? answers[i] : undefined;
    out[i] = answer === UNMOVED ? true : answer === MOVED ? false : unmovedHere(entries[i]!);
  }
  return out;
}

function unmovedHere([p, recorded]: RecordedStat): boolean {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(p, { throwIfNoEntry: false });
  } catch {
    st = undefined; // unreadable counts as gone
  }
  if (st === undefined || recorded === null) return st === undefined && recorded === null;
  return st.size === Number(recorded[0]) && st.mtimeMs === msOf(recorded[1]) && st.ino === Number(recorded[3]) && st.ctimeMs === msOf(recorded[2]);
}

/** Node's msFromTimeSpec (how a number `Stats` gets mtimeMs and ctimeMs), from the nanoseconds a StatTuple holds. */
function msOf(ns: string): number {
  const cut = ns.length - 9;
  return cut > 0 ? Number(ns.slice(0, cut)) * 1e3 + Number(ns.slice(cut)) / 1e6 : Number(ns) / 1e6;
}

/**
 * Hard-links each `from[i]` to `to[i]`, and returns the first i whose link failed (the links after it may or may
 * not have been made), or -1. The addon links into each destination folder on a thread of its own (a folder's
 * links take its lock in turn; two folders' run side by side): restoring a thousand targets makes two thousand.
 */
export function linkMany(from: readonly string[], to: readonly string[], using: NativeFs | null = nativeBesideBundle()): number {
  if (using) return using.linkMany(from, to);
  for (let i = 0; i < from.length; i++) {
    try {
      fs.linkSync(from[i]!, to[i]!);
    } catch {
      return i;
    }
  }
  return -1;
}
