// The plan a successful build leaves beside its no-op snapshot: every target's configuration, key record, source
// tree and result. With it the incremental path re-keys and rebuilds just what a changed source file or patch
// touches, without loading BUILD.yaml or planning the thousand targets that did not change. Each target is
// serialized on its own, so a run deserializes only the targets it touches.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { deserialize, serialize } from 'node:v8';
import type { ActionResult } from '../cache/local-store.js';
import { builtinRules } from '../rules/registry.js';
import type { Rule, Toolchain } from '../rules/rule.js';
import type { TreeEntry } from '../rules/source-path.js';
import { planAction } from './action-plan.js';
import { readAt } from './read-at.js';
import { readDelta, type SnapshotDelta } from './snapshot-delta.js';
import type { ConfiguredTarget } from './analyze.js';
import type { Planned, TargetReport } from './build.js';
import type { ActionKey, KeyRecord } from './key.js';
import type { Label } from './label.js';

const PLAN_VERSION = 3;

/** One target as stored: its rule by kind (the rule itself is code). */
export interface StoredTarget {
  target: Omit<ConfiguredTarget, 'rule'> & { rule: string };
  key: string;
  record: KeyRecord;
  source: { root: string; entries: TreeEntry[] } | null;
  /** A git, URL or index source: the incremental path leaves such targets to the full path, which fetches. */
  remoteSource: boolean;
  toolchain: Toolchain | null;
  /** The result without its key record, which is `record`: a third of the bytes of a small target. */
  result: Omit<ActionResult, 'record'>;
  /** Its report as a no-op shows it (what the snapshot's --json document holds for it). */
  report: TargetReport;
}

interface PlanFile {
  v: number;
  /** The snapshot this plan belongs to (its argsId and build id). */
  id: string;
  build: string;
  /** Labels, dependencies first. */
  labels: string[];
  /** Each label's action key. */
  keys: string[];
  /** Each label's direct dependencies, as indices into `labels`. */
  deps: number[][];
  /** Each folder source's root with the targets built from it. */
  sourceRoots: [string, number[]][];
  /** Each patch file (absolute) with the targets it applies to. */
  patches: [string, number[]][];
  /** Each target's serialized entry as [start, end) in the bytes after the header. */
  offsets: number[];
}

/**
 * The file is a 4-byte header length, the serialized PlanFile, then every entry's bytes back to back: an edit's
 * build reads the header and the few entries it touches (~20 KB of ~1.9 MB at 1000 targets), writing it is one
 * concatenation.
 */
interface Loaded {
  plan: PlanFile;
  /** The plan file, open: entries are read from the file that the header was, even if a build replaces it. */
  fd: number;
  /** Where the entries start in the file. */
  bodyStart: number;
  /** The delta that completes the plan (engine/snapshot-delta.ts), when incremental builds changed it since. */
  delta: SnapshotDelta | null;
}

/** A target's stored form and its key. */
export interface PlanEntry {
  bytes: Uint8Array;
  key: string;
}

export function planPath(snapshotFile: string): string {
  return snapshotFile.replace(/\.json$/, '.plan.v8');
}

/** The stored form of a planned target; null when it cannot be stored (a plugin's rule: its code is not ours to reload). */
export function storeTarget(p: Planned, result: ActionResult, report: TargetReport): PlanEntry | null {
  if (p.record.rule.plugin !== undefined || !builtinRules().has(p.target.rule.kind)) return null;
  const stored: StoredTarget = {
    target: { ...p.target, rule: p.target.rule.kind },
    key: p.key,
    record: p.record,
    source: p.source,
    remoteSource: p.remoteSource !== null,
    toolchain: p.toolchain,
    result: { key: result.key, label: result.label, outputs: result.outputs, log: result.log, durationMs: result.durationMs, createdAt: result.createdAt },
    report,
  };
  return { bytes: serialize(stored), key: p.key };
}

/** What a plan is written from: the planned targets of a full build, or a stored plan with a few changed. */
export interface PlanSource {
  depsOf(label: string): readonly string[];
  /** The target's stored form and key; null when it cannot be stored. */
  entry(label: string): PlanEntry | null;
  /** Its folder source's root ('' for none) and its patch files, absolute. */
  sourceOf(label: string): { root: string; patches: string[] };
}

/** Writes the plan of `labels` (dependencies first). Returns false, writing nothing, when a target cannot be stored. */
export function writePlan(file: string, id: string, build: string, labels: string[], source: PlanSource): boolean {
  const index = new Map(labels.map((l, i) => [l, i]));
  const entries: Uint8Array[] = [];
  const keys: string[] = [];
  const roots = new Map<string, number[]>();
  const patches = new Map<string, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const e = source.entry(labels[i]!);
    if (e === null) return false;
    entries.push(e.bytes);
    keys.push(e.key);
    const { root, patches: own } = source.sourceOf(labels[i]!);
    if (root !== '') roots.set(root, [...(roots.get(root) ?? []), i]);
    for (const p of own) patches.set(p, [...(patches.get(p) ?? []), i]);
  }
  const offsets: number[] = [0];
  for (const e of entries) offsets.push(offsets[offsets.length - 1]! + e.length);
  const plan: PlanFile = {
    v: PLAN_VERSION,
    id,
    build,
    labels,
    keys,
    deps: labels.map((l) => source.depsOf(l).map((d) => index.get(d)!)),
    sourceRoots: [...roots],
    patches: [...patches],
    offsets,
  };
  const tmp = `${file}.${process.pid}.tmp`;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const header = serialize(plan);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length);
  fs.writeFileSync(tmp, Buffer.concat([length, header, ...entries]));
  fs.renameSync(tmp, file);
  return true;
}

/** Label lookups a plan answers by scanning its labels before it makes an index of them. */
const SCANNED_LOOKUPS = 16;

/** A stored plan: its header read at once, each target read and deserialized when asked for. */
export class StoredPlan {
  /**
   * Made at the SCANNED_LOOKUPS-th lookup: an edit's build asks for a handful of labels, which a native scan of the
   * list answers in microseconds, while making the map took a pass of cold JavaScript over every label (~0.5 ms
   * at 1000).
   */
  private index: Map<string, number> | null = null;
  private lookups = 0;
  private readonly cache = new Map<number, StoredTarget>();
  private readonly rules = builtinRules();
  private sources: { root: string; patches: string[] }[] | null = null;

  private readonly plan: PlanFile;
  private readonly fd: number;
  private readonly bodyStart: number;
  /** Every entry, read at once when every one is asked for (a full rewrite). */
  private body: Buffer | null = null;
  readonly delta: SnapshotDelta | null;
  /** The delta's entries, by index: replaced since the plan was written. */
  readonly replaced = new Map<number, PlanEntry>();

  private constructor({ plan, fd, bodyStart, delta }: Loaded) {
    this.plan = plan;
    this.fd = fd;
    this.bodyStart = bodyStart;
    this.delta = delta;
    for (const [i, key, bytes] of delta?.plan ?? []) this.replaced.set(i, { key, bytes: Buffer.from(bytes, 'base64') });
  }

  /** The plan of snapshot (`id`, `build`), completed by its delta when it was written by an earlier build. */
  static read(snapshotFile: string, id: string, build: string): StoredPlan | null {
    let fd: number;
    try {
      fd = fs.openSync(planPath(snapshotFile), 'r');
    } catch {
      return null;
    }
    try {
      const length = readAt(fd, 0, 4).readUInt32LE(0);
      const plan = deserialize(readAt(fd, 4, length)) as PlanFile;
      // A file cut short (or grown) is not the one its header describes: its entries are not read at all.
      const whole = 4 + length + plan.offsets[plan.offsets.length - 1]! === fs.fstatSync(fd).size;
      if (whole && plan.v === PLAN_VERSION && plan.id === id) {
        const delta = plan.build === build ? null : readDelta(snapshotFile, id, build);
        if (plan.build === build || (delta !== null && delta.base === plan.build)) return new StoredPlan({ plan, fd, bodyStart: 4 + length, delta });
      }
    } catch {
      // A damaged or half-written plan: the full path plans again.
    }
    fs.closeSync(fd);
    return null;
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /** The build id the plan file itself was written with: the base of any delta. */
  get base(): string {
    return this.plan.build;
  }

  get labels(): readonly string[] {
    return this.plan.labels;
  }

  get sourceRoots(): readonly [string, number[]][] {
    return this.plan.sourceRoots;
  }

  indexOf(label: string): number | undefined {
    if (this.index === null && ++this.lookups < SCANNED_LOOKUPS) {
      const i = this.plan.labels.indexOf(label);
      return i < 0 ? undefined : i;
    }
    this.index ??= new Map(this.plan.labels.map((l, i) => [l, i]));
    return this.index.get(label);
  }

  depsOf(i: number): readonly number[] {
    return this.plan.deps[i]!;
  }

  /** The targets a patch file applies to, or undefined when it is not a patch of this plan. */
  patchTargets(abs: string): readonly number[] | undefined {
    return this.plan.patches.find(([p]) => p === abs)?.[1];
  }

  stored(i: number): StoredTarget {
    let t = this.cache.get(i);
    if (t === undefined) {
      t = deserialize(this.bytesOf(i)) as StoredTarget;
      this.cache.set(i, t);
    }
    return t;
  }

  /** The result target i ended with in the last build. */
  result(i: number): ActionResult {
    const s = this.stored(i);
    return { ...s.result, record: s.record };
  }

  /** Target i's folder source root ('' for none) and patch files, from the plan's own indexes. */
  sourceOf(i: number): { root: string; patches: string[] } {
    if (this.sources === null) {
      this.sources = this.plan.labels.map(() => ({ root: '', patches: [] as string[] }));
      for (const [root, targets] of this.plan.sourceRoots) for (const t of targets) this.sources[t]!.root = root;
      for (const [file, targets] of this.plan.patches) for (const t of targets) this.sources[t]!.patches.push(file);
    }
    return this.sources[i]!;
  }

  /** The stored form of target i: what an unchanged target writes back. Asked for every target, so read at once. */
  entry(i: number): PlanEntry {
    const replaced = this.replaced.get(i);
    if (replaced) return replaced;
    const { offsets } = this.plan;
    this.body ??= readAt(this.fd, this.bodyStart, offsets[offsets.length - 1]!);
    return { bytes: this.body.subarray(offsets[i]!, offsets[i + 1]!), key: this.plan.keys[i]! };
  }

  private bytesOf(i: number): Uint8Array {
    const replaced = this.replaced.get(i);
    if (replaced) return replaced.bytes;
    const { offsets } = this.plan;
    if (this.body) return this.body.subarray(offsets[i]!, offsets[i + 1]!);
    return readAt(this.fd, this.bodyStart + offsets[i]!, offsets[i + 1]! - offsets[i]!);
  }

  key(i: number): string {
    return this.replaced.get(i)?.key ?? this.plan.keys[i]!;
  }

  /** Target i as the build engine plans it; its rule comes from the built-in registry. */
  planned(i: number): Planned {
    const s = this.stored(i);
    const rule = this.rules.get(s.target.rule) as Rule;
    const target: ConfiguredTarget = { ...s.target, rule, label: s.target.label as Label };
    return {
      target,
      key: s.key as ActionKey,
      record: s.record,
      source: s.source,
      remoteSource: null,
      plan: planAction(target, s.source !== null || s.remoteSource, s.toolchain),
      toolchain: s.toolchain,
    };
  }
}
