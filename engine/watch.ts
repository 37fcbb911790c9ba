// `wg watch`: builds the selected targets, then watches exactly the files and folders their keys were computed
// from (the build's InputSet) and builds again, after a short quiet time, when one of them really changed. The
// cache makes every unaffected target `cached`, so "build again" rebuilds only what the change affects.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import xxhash from 'xxhash-wasm';
import { runBuild, type BuildOptions, type BuildReport } from './build.js';
import { statTuple, InputSet, type StatTuple } from './inputs.js';
import { dropSnapshot } from './noop-snapshot.js';
import { processGroups } from './process-group.js';
import { describeRemoteStats } from './remote-config.js';
import type { Reporter } from './report.js';

export interface WatchOptions {
  build: Omit<BuildOptions, 'dryRun' | 'inputs'>;
  /** Quiet time after the last change before a build starts, so an editor's save (or `git checkout`) is one build. */
  debounceMs?: number;
}

export interface WatchIo {
  /** A fresh view for each build: counts, the live block and the summary are per build. */
  reporter(): Reporter;
  /** Prints a line of wg watch's own. */
  note(line: string): void;
  /** Prints what `wg build` prints for a mistake in BUILD.yaml, a bad pattern or an unreachable source; throws anything else. */
  reportError(e: unknown): void;
}

const DEFAULT_DEBOUNCE_MS = 150;
/** How many changed paths a "change in …" line names before it says "and N more". */
const SHOWN_PATHS = 3;
/** Files are hashed in chunks, so a multi-GB wheel of a `wheel_folder` source never sits in memory whole. */
const CHUNK_BYTES = 1 << 20;

type Hasher = Awaited<ReturnType<typeof xxhash>>;

/** What a watched file was when it was last looked at; `fp` null when it did not exist. */
interface FileState {
  stat: StatTuple | null;
  fp: string | null;
}

/** How a path was reported: `forced` means it is known to have changed since the build read it. */
type Kind = 'changed' | 'added' | 'forced';
const KIND_RANK: Record<Kind, number> = { changed: 0, added: 1, forced: 2 };

function statOrNull(abs: string): StatTuple | null {
  try {
    return statTuple(fs.statSync(abs, { bigint: true }));
  } catch {
    return null;
  }
}

function sameStat(a: StatTuple | null, b: StatTuple | null): boolean {
  if (a === null || b === null) return a === b;
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

/**
 * A fast local fingerprint of the content (xxhash64; it never leaves the machine, so no sha256 is needed): the bytes
 * of a file, the sorted names of a folder (the toolchain's site-packages are inputs as folders), null when absent.
 */
function fingerprint(h: Hasher, abs: string): string | null {
  let fd: number;
  try {
    if (fs.statSync(abs).isDirectory()) return `dir:${h.h64ToString(fs.readdirSync(abs).sort().join('\0'))}`;
    fd = fs.openSync(abs, 'r');
  } catch {
    return null;
  }
  try {
    const state = h.create64();
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, CHUNK_BYTES, null);
      if (n === 0) break;
      state.update(buf.subarray(0, n));
    }
    return `file:${state.digest().toString(16)}`;
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/** Paths reported by the watcher, handed out once none came for the debounce time. */
class Changes {
  private readonly pending = new Map<string, Kind>();
  private timer: NodeJS.Timeout | null = null;
  private quiet = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly debounceMs: number,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener('abort', () => this.wake?.(), { once: true });
  }

  note(p: string, kind: Kind): void {
    const before = this.pending.get(p);
    if (before === undefined || KIND_RANK[kind] > KIND_RANK[before]) this.pending.set(p, kind);
    this.quiet = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.quiet = true;
      this.wake?.();
    }, this.debounceMs);
  }

  /** Waits for reported paths and a quiet time after them; null once the signal aborted. */
  async take(): Promise<Map<string, Kind> | null> {
    while (!this.signal.aborted && !(this.quiet && this.pending.size > 0)) {
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
    if (this.signal.aborted) return null;
    const taken = new Map(this.pending);
    this.pending.clear();
    this.quiet = false;
    return taken;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** The watched inputs and what each was like when the build read it. */
class Inputs {
  files = new Map<string, FileState>();
  /** Folders whose listing a key depends on, and whether each exists. */
  dirs = new Map<string, boolean>();
  private watchers: FSWatcher[] = [];
  private readonly watched = new Set<string>();

  constructor(
    private readonly hasher: Hasher,
    private readonly changes: Changes,
    private readonly warn: (message: string) => void,
  ) {}

  get size(): number {
    return this.files.size + this.dirs.size;
  }

  /**
   * Takes the inputs of the build that just ended: replaces the watched set after a build that got as far as a
   * report, adds to it after one that failed early (the previous inputs stay watched until BUILD.yaml is fixed).
   * Every input whose stat differs from the one taken before the build read it changed while the build ran: it is
   * reported as `forced`, so a follow-up build comes, whatever its content is now.
   */
  async update(inputs: InputSet, replace: boolean): Promise<void> {
    const files = replace ? new Map<string, FileState>() : new Map(this.files);
    const dirs = replace ? new Map<string, boolean>() : new Map(this.dirs);
    for (const abs of inputs.files.keys()) files.set(abs, this.files.get(abs) ?? { stat: null, fp: null });
    for (const abs of inputs.dirs.keys()) dirs.set(abs, this.dirs.get(abs) ?? false);
    // The watcher first, the stats after: a change in between is seen by both, none is seen by neither.
    await this.watch([...files.keys(), ...dirs.keys()]);
    for (const [abs, before] of inputs.files) {
      const now = statOrNull(abs);
      if (!sameStat(now, before)) this.changes.note(abs, 'forced');
      const known = files.get(abs)!;
      files.set(abs, { stat: now, fp: known.stat !== null && sameStat(known.stat, now) ? known.fp : fingerprint(this.hasher, abs) });
    }
    for (const [abs, before] of inputs.dirs) {
      const now = statOrNull(abs);
      if (!sameStat(now, before)) this.changes.note(abs, 'forced');
      dirs.set(abs, now !== null);
    }
    this.files = files;
    this.dirs = dirs;
  }

  /**
   * The reported paths that really changed: a file whose bytes differ from the fingerprint taken when the build
   * read it (an editor saving the same bytes changes nothing), a folder that appeared or went, a new entry in a
   * watched folder that still exists (an editor's temporary file is gone by then). Fingerprints move on to the
   * current content, so the same change is not reported twice.
   */
  changed(taken: Map<string, Kind>): string[] {
    const out = new Set<string>();
    for (const [reported, reportedKind] of taken) {
      // An entry of a folder that is an input as a whole (a toolchain's site-packages): the folder's listing changed.
      const whole = !this.files.has(reported) && !this.dirs.has(reported) && this.files.has(path.dirname(reported));
      const p = whole ? path.dirname(reported) : reported;
      const kind: Kind = whole ? 'changed' : reportedKind;
      const file = this.files.get(p);
      if (file) {
        const now = statOrNull(p);
        if (kind !== 'forced' && now !== null && sameStat(now, file.stat)) continue;
        const fp = fingerprint(this.hasher, p);
        if (kind === 'forced' || fp !== file.fp) out.add(p);
        this.files.set(p, { stat: now, fp });
        continue;
      }
      const dir = this.dirs.get(p);
      if (dir !== undefined) {
        const exists = fs.existsSync(p);
        if (kind === 'forced' || exists !== dir) out.add(p);
        this.dirs.set(p, exists);
        continue;
      }
      if (kind === 'forced' || (kind === 'added' && this.dirs.has(path.dirname(p)) && fs.existsSync(p))) out.add(p);
    }
    return [...out].sort();
  }

  private async watch(paths: string[]): Promise<void> {
    const wanted = new Set(paths);
    const added = paths.filter((p) => !this.watched.has(p));
    const removed = [...this.watched].some((p) => !wanted.has(p));
    this.watched.clear();
    for (const p of paths) this.watched.add(p);
    if (this.watchers.length > 0 && !removed) {
      // chokidar's add() gives no sign of when the new paths are watched, so an edit made right after the build
      // that added them (a new package's first source edit) could go unseen: they get a watcher of their own,
      // awaited like the first.
      if (added.length > 0) this.watchers.push(await this.start(added));
      return;
    }
    // A set that shrank gets new watchers rather than chokidar's unwatch(), which keeps ignoring the path for good:
    // a file deleted (no longer an input) and created again in a watched folder would never be seen.
    const old = this.watchers;
    this.watchers = [await this.start(paths)];
    await Promise.all(old.map((w) => w.close()));
  }

  private async start(paths: string[]): Promise<FSWatcher> {
    // depth 0: a watched folder reports its own entries; its subfolders are inputs (and watched) in their own right,
    // while folders no key reads (wg-out, __pycache__) are never descended into.
    const watcher = watch(paths, { ignoreInitial: true, depth: 0, persistent: true });
    watcher.on('all', (event, p) => this.changes.note(p, event === 'add' || event === 'addDir' ? 'added' : 'changed'));
    watcher.on('error', (e) => this.warn(`wg watch: warning: ${(e as Error).message}`));
    if (paths.length > 0) await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    return watcher;
  }

  async close(): Promise<void> {
    const old = this.watchers;
    this.watchers = [];
    await Promise.all(old.map((w) => w.close()));
  }
}

/** `a, b, c and 2 more`, workspace-relative where the path is inside the workspace. */
function describePaths(paths: string[], root: string): string {
  const shown = paths.map((p) => {
    const r = path.relative(root, p);
    return r === '' ? '.' : r.startsWith('..') || path.isAbsolute(r) ? p : r;
  });
  return shown.slice(0, SHOWN_PATHS).join(', ') + (shown.length > SHOWN_PATHS ? ` and ${shown.length - SHOWN_PATHS} more` : '');
}

/** Builds, watches and builds again until `signal` aborts; the build running then is stopped like `wg build`'s. */
export async function runWatch(options: WatchOptions, io: WatchIo, signal: AbortSignal): Promise<void> {
  const root = options.build.root;
  const changes = new Changes(options.debounceMs ?? DEFAULT_DEBOUNCE_MS, signal);
  const inputs = new Inputs(await xxhash(), changes, io.note);
  let reporter: Reporter | null = null;
  signal.addEventListener(
    'abort',
    () => {
      if (reporter) reporter.note('wg: interrupted; stopping running actions (press Ctrl-C again to force)');
    },
    { once: true },
  );
  try {
    let why = `wg watch: building ${options.build.patterns.join(' ')}`;
    for (;;) {
      io.note(why);
      // wg-out changes under a snapshot that a later `wg build` would trust; only `wg build` writes one.
      dropSnapshot(options.build.cacheDir, root);
      const noted = new InputSet();
      let report: BuildReport | null = null;
      reporter = io.reporter();
      try {
        report = await runBuild({ ...options.build, dryRun: false, inputs: noted }, reporter.onEvent, signal);
        if (report.remote) reporter.note(describeRemoteStats(report.remote));
        reporter.summary(report, false);
      } catch (e) {
        io.reportError(e);
      } finally {
        reporter = null;
      }
      if (signal.aborted) return;
      await inputs.update(noted, report !== null);
      io.note(`wg watch: watching ${inputs.size} input${inputs.size === 1 ? '' : 's'}${report === null ? '; fix the error to build again' : ''} (Ctrl-C to stop)`);
      let changed: string[] = [];
      while (changed.length === 0) {
        const taken = await changes.take();
        if (taken === null) return;
        changed = inputs.changed(taken);
      }
      why = `wg watch: change in ${describePaths(changed, root)}; building`;
    }
  } finally {
    changes.close();
    await inputs.close();
    io.note('wg watch: stopped');
  }
}

/** The `wg watch` command: Ctrl-C (or SIGTERM) stops the running build, closes the watcher and exits 130. */
export async function watchCommand(options: WatchOptions, io: WatchIo): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts === 1) controller.abort();
    else {
      // Forced: no grace period, but no survivors either (SIGKILL cannot be ignored); the ledger covers the rest.
      processGroups.killAllNow();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await runWatch(options, io, controller.signal);
    return 130;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
