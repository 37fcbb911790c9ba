// The set of files and folders a build's keys were computed from, each with the stat it had *before* it was
// read. The no-op snapshot compares these stats on the next run, and watch mode watches exactly these paths.
// Stats are taken before reading, so a file changed while it was hashed always looks changed later.

import * as fs from 'node:fs';

/** [size, mtimeNs, ctimeNs, ino] as decimal strings (bigint stat fields do not fit JSON numbers). */
export type StatTuple = [string, string, string, string];

export function statTuple(st: fs.BigIntStats): StatTuple {
  return [String(st.size), String(st.mtimeNs), String(st.ctimeNs), String(st.ino)];
}

export class InputSet {
  /** Absolute path → its stat when first seen, or null when it did not exist (its appearance must be noticed). */
  readonly files: Map<string, StatTuple | null>;
  /** Folders whose listing was read: adding or removing an entry changes their stat. */
  readonly dirs: Map<string, StatTuple | null>;
  /** Names of wg's own env variables whose values went into a key (pass_env). */
  readonly envNames: Set<string>;
  /** Set when an input cannot be checked by stat alone (a git branch, say): no snapshot may skip this build. */
  volatileReason: string | null = null;

  /**
   * `recorded`: inputs a no-op snapshot recorded, to start from (the incremental path). Given to the maps' own
   * constructors: a JavaScript loop setting the 3000 entries at 1000 targets took ~1 ms of an edit's build.
   */
  constructor(recorded?: {
    files: Iterable<readonly [string, StatTuple | null]>;
    dirs: Iterable<readonly [string, StatTuple | null]>;
    envNames: Iterable<string>;
  }) {
    this.files = new Map(recorded?.files);
    this.dirs = new Map(recorded?.dirs);
    this.envNames = new Set(recorded?.envNames);
  }

  private static take(p: string): StatTuple | null {
    try {
      return statTuple(fs.statSync(p, { bigint: true }));
    } catch {
      return null;
    }
  }

  /** Call before reading the file; `stat` is its bigint stat when the caller just took it. */
  addFile(abs: string, stat?: fs.BigIntStats): void {
    if (!this.files.has(abs)) this.files.set(abs, stat ? statTuple(stat) : InputSet.take(abs));
  }

  /** Call before listing the folder; `stat` is its stat when the caller took one (as a BigIntStats or a StatTuple). */
  addDir(abs: string, stat?: fs.BigIntStats | StatTuple): void {
    if (!this.dirs.has(abs)) this.dirs.set(abs, stat === undefined ? InputSet.take(abs) : Array.isArray(stat) ? stat : statTuple(stat));
  }

  markVolatile(reason: string): void {
    this.volatileReason ??= reason;
  }
}
