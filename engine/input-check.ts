// The check that an action's result still belongs to its key: after the action ran and before its result is
// stored, the source files and patches its key was computed from are stat-ed again and compared with the stats
// taken before they were read (engine/inputs.ts). A file edited while the action ran may have been copied into the
// sandbox old or new, so such a result is never stored under the key of the old content.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Planned } from './build.js';
import { statTuple, type InputSet, type StatTuple } from './inputs.js';

/** One file a key was read from: the path users see and its stat from before the read (null: it did not exist). */
interface KeyedFile {
  abs: string;
  shown: string;
  stat: StatTuple | null;
}

/** How many changed files a message names before it says "and N more". */
const SHOWN_FILES = 3;

function sameStat(a: StatTuple | null, b: StatTuple | null): boolean {
  if (a === null || b === null) return a === b;
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

function statNow(abs: string): StatTuple | null {
  try {
    return statTuple(fs.statSync(abs, { bigint: true }));
  } catch {
    return null;
  }
}

/**
 * What the key of `p` was read from, among the files its action reads while it runs: the files of a folder source
 * (the sandbox copy reads them again) and its patches. Remote sources are fetched by content digest, BUILD.yaml and
 * env files only shape values the action receives from memory, so neither can make the result differ from the key.
 */
function keyedFiles(p: Planned, inputs: InputSet, root: string): KeyedFile[] {
  const out: KeyedFile[] = [];
  const add = (abs: string): void => {
    // Every file a key was read from was noted before the read; one that was not is no input of this build.
    if (!inputs.files.has(abs)) return;
    const r = path.relative(root, abs);
    out.push({ abs, shown: r.startsWith('..') || path.isAbsolute(r) ? abs : r.split(path.sep).join('/'), stat: inputs.files.get(abs)! });
  };
  if (p.source) for (const e of p.source.entries) if (e.type === 'file') add(path.join(p.source.root, e.path));
  for (const name of p.target.patches) add(path.resolve(root, name));
  return out;
}

/**
 * A check to run just before the action's result is stored: null when every file its key was read from has the
 * stat it had before it was read, else the failure message naming the changed files. Stats only, no hashing: the
 * check costs one stat per file of the target's source.
 */
export function inputCheck(p: Planned, inputs: InputSet, root: string): () => string | null {
  const files = keyedFiles(p, inputs, root);
  return () => {
    const changed = files.filter((f) => !sameStat(f.stat, statNow(f.abs))).map((f) => f.shown);
    if (changed.length === 0) return null;
    const named = changed.slice(0, SHOWN_FILES).join(', ') + (changed.length > SHOWN_FILES ? ` and ${changed.length - SHOWN_FILES} more` : '');
    return `sources changed while ${p.target.label} was building (${named}); not cached`;
  };
}
