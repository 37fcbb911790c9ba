// The per-workspace pointer label → the key, record and dependency labels of a target's last build (and its source
// file list), written when a target is built or restored from the cache: what `wg explain` compares with.

import type { Kv } from '../cache/local-store.js';
import type { TreeEntry } from '../rules/source-path.js';
import type { Planned } from './build.js';
import type { KeyRecord } from './key.js';
import type { Label } from './label.js';

/** What is remembered of a target's last build in a workspace. */
export interface LastBuild {
  key: string;
  record: KeyRecord;
  /** The record's `deps` are bare keys; their labels are kept here so a changed dependency can be named. */
  deps: { label: string; key: string }[];
}

/** A source tree's files as `path → digest` (`+x` marks executables, `-> ` symlinks), to name changed files. */
export type FileMap = Record<string, string>;

export function fileMap(entries: TreeEntry[]): FileMap {
  const out: FileMap = {};
  for (const e of entries) out[e.path] = e.type === 'symlink' ? `-> ${e.content}` : `${e.content}${e.executable ? ' +x' : ''}`;
  return out;
}

/** The planned targets by label: a map, or the incremental path's stored plan, read one entry at a time. */
export interface PlannedLookup {
  get(label: Label): Planned | undefined;
}

export function depsOf(p: Planned, planned: PlannedLookup): LastBuild['deps'] {
  return p.target.deps.map((d) => ({ label: d as string, key: planned.get(d)?.key ?? '' }));
}

/**
 * The label → last build pointers of one workspace. Writes are collected and committed in one transaction by
 * `flush`, and only for targets whose key moved, so a build that restores everything from the cache writes nothing.
 */
export class LastBuilds {
  private readonly pending = new Map<string, unknown>();

  constructor(
    private readonly kv: Kv,
    /** The workspace root: another workspace may have a `//a:cpu` that is nothing alike. */
    private readonly root: string,
  ) {}

  private id(label: string): string {
    return `last:${this.root}:${label}`;
  }

  private filesId(label: string): string {
    return `files:${this.root}:${label}`;
  }

  get(label: string): LastBuild | undefined {
    const v = (this.pending.get(this.id(label)) ?? this.kv.get(this.id(label))) as Partial<LastBuild> | undefined;
    if (!v || typeof v !== 'object' || typeof v.key !== 'string' || typeof v.record !== 'object' || v.record === null) return undefined;
    return { key: v.key, record: v.record, deps: Array.isArray(v.deps) ? v.deps : [] };
  }

  /** The source files of the last build, when its record's source tree matches them. */
  files(label: string, tree: unknown): FileMap | undefined {
    const v = (this.pending.get(this.filesId(label)) ?? this.kv.get(this.filesId(label))) as { tree?: unknown; files?: FileMap } | undefined;
    return v && v.tree === tree && typeof v.files === 'object' ? v.files : undefined;
  }

  /** Called when `p` was built or restored from the cache. */
  remember(p: Planned, planned: PlannedLookup): void {
    const label = p.target.label;
    if (this.get(label)?.key === p.key) return;
    this.pending.set(this.id(label), { key: p.key, record: p.record, deps: depsOf(p, planned) } satisfies LastBuild);
    const tree = (p.record.source as { tree?: unknown } | null)?.tree;
    if (p.source && 'entries' in p.source && typeof tree === 'string') this.pending.set(this.filesId(label), { tree, files: fileMap(p.source.entries) });
  }

  flush(): void {
    if (this.pending.size === 0) return;
    this.kv.putMany([...this.pending]);
    this.pending.clear();
  }
}
