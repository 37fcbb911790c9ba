// What incremental builds changed in the no-op snapshot's companion files (the outputs list, the --json document
// and the plan), kept in one small file beside them instead of rewriting them: at a thousand targets those files
// are ~2.5 MB, and rewriting them cost an edit loop more than the action it rebuilt. A delta names the full files
// it applies to (their build id, `base`) and the snapshot it completes (`build`); a reader that finds any other
// pair ignores it, so a stale delta can never be applied to the wrong files. The full path rewrites everything
// and removes the delta; the incremental path does the same once the delta has grown past a tenth of the plan.
// JSON rather than v8's serializer: the no-op check reads it when restoring outputs, before node:v8 is loaded.

import * as fs from 'node:fs';
import type { OutputEntry } from './noop-snapshot.js';
import { removeFile } from './remove-file.js';

const DELTA_VERSION = 1;

export interface SnapshotDelta {
  v: number;
  /** The snapshot's argsId. */
  id: string;
  /** The build id of the full outputs list, --json document and plan this delta applies to. */
  base: string;
  /** The build id of the snapshot this delta completes. */
  build: string;
  /** Outputs added or replaced since `base` (an entry) or gone (null), by path. */
  outputs: [string, OutputEntry | null][];
  /** Targets' no-op reports (as `--json` shows them) replaced since `base`, by label. */
  targets: [string, unknown][];
  /** Plan entries replaced since `base`: target index, action key, the stored target (base64 of its bytes). */
  plan: [number, string, string][];
}

export function deltaPath(snapshotFile: string): string {
  return snapshotFile.replace(/\.json$/, '.delta.json');
}

/** The delta that completes snapshot (`id`, `build`), or null when there is none (the full files are current). */
export function readDelta(snapshotFile: string, id: string, build: string): SnapshotDelta | null {
  try {
    const delta = JSON.parse(fs.readFileSync(deltaPath(snapshotFile), 'utf8')) as SnapshotDelta;
    return delta.v === DELTA_VERSION && delta.id === id && delta.build === build ? delta : null;
  } catch {
    return null;
  }
}

/** Written before the snapshot it completes, by rename: a reader sees the old delta or the new one, whole. */
export function writeDelta(snapshotFile: string, delta: Omit<SnapshotDelta, 'v'>): void {
  const file = deltaPath(snapshotFile);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ v: DELTA_VERSION, ...delta }));
  fs.renameSync(tmp, file);
}

export function dropDelta(snapshotFile: string): void {
  removeFile(deltaPath(snapshotFile));
}

/** `outputs` (the full list of build `base`) with the delta's changes applied. */
export function applyOutputs(outputs: OutputEntry[], delta: SnapshotDelta): OutputEntry[] {
  const changed = new Map(delta.outputs);
  const out = outputs.filter((o) => !changed.has(o[0]));
  for (const entry of changed.values()) if (entry !== null) out.push(entry);
  return out;
}

/** The targets of a --json document with the delta's reports in place of the stored ones. */
export function applyTargets<T extends { label: string }>(targets: T[], delta: SnapshotDelta): T[] {
  const changed = new Map(delta.targets as [string, T][]);
  return targets.map((t) => changed.get(t.label) ?? t);
}
