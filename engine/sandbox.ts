// The folders actions run in. A sandbox holds home/, tmp/, out/ and deps/ when the action starts, nothing else
// (the executor then copies the action's source into src/ and links each dependency's outputs into
// deps/<label>/).
//
// A fresh folder per action cost five new inodes (the folder and its four), 0.3-1 ms each on ext4, where a rename
// costs 0.02 ms: so the folder of an action that succeeded is emptied and renamed for the next one. Emptying is not
// assumed but done: everything in it is removed except the four folders, themselves emptied, so the next action
// finds exactly what a fresh sandbox holds. An emptied src/ is kept too, for the next action with a source to copy
// into (one inode less to make and to remove), and taken away from one without. A failed action's folder is never
// reused: it stays for inspection. The deps/<label> folders (one or two per action on a layered graph) are kept
// the same way: emptied, moved out of the sandbox to a spare name beside it, and renamed to the next action's
// deps/<label> instead of made. A build keeps a few emptied sandboxes for the next one, in a folder of their own,
// with spare folders in their deps/ (the next build empties a kept sandbox as any other, which moves them out as
// spares again): an edit loop's build runs an action or two, and making and removing its sandbox and dep folders
// was a dozen of those inodes.
//
// The files of src/ (the source copy) are kept the same way, as spare files: emptied (truncated) and moved out
// beside the sandboxes, for the next source copy to rename into place and write. This ext4 has no journal, and
// then every new inode is found by scanning past the inodes freed in the last seconds to minutes: a cold build that
// freed two source copies per action made each later file it or its actions created dearer, 0.5 ms and more. Only
// a file no other name links is kept (an output adopted into the CAS, a link an action made to a file elsewhere,
// must not be emptied); its mode is set anew by the copy, and as with a reused folder, an extended attribute an
// action set on it would carry over. Spare files are removed when the build ends, never kept for the next.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { removeFile } from './remove-file.js';

const FIXED = ['home', 'tmp', 'out', 'deps'];
/** Kept emptied when the action left it, but never made: only an action with a source gets it. */
const SOURCE = 'src';
const NAME_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Random bytes for names, drawn 64 names at a time: each draw cost ~28 µs, one per action. */
let namePool = Buffer.alloc(0);
let nameAt = 0;

/** Six random letters and digits, as mkdtemp makes them. */
function randomSuffix(): string {
  if (nameAt + 6 > namePool.length) {
    namePool = randomBytes(6 * 64);
    nameAt = 0;
  }
  let name = '';
  for (let i = 0; i < 6; i++) name += NAME_CHARS[namePool[nameAt++]! % NAME_CHARS.length];
  return name;
}

/** `label-XXXXXX`, as mkdtemp names them. */
function sandboxName(label: string): string {
  return `${label.replace(/[^A-Za-z0-9_.-]+/g, '_')}-${randomSuffix()}`;
}

/**
 * Empties a used sandbox in place: the four folders stay (emptied, their mode restored), and `kept` when it is
 * there; everything else goes; false when something resists. Each folder in deps/ is emptied too and moved out
 * to `${spareBase}-<n>`, beside the sandboxes, its path pushed to `spares` (as soon as it is there, so that even
 * a sandbox that then resists does not leave an untracked one behind); the files of `kept` become spare files the
 * same way, up to `spareFilesMax` in `spareFiles`. Self-contained (it uses only its
 * arguments) because the janitor thread runs its source. By hand rather than by fs.rmSync: the file type comes
 * with the listing, so each entry costs one unlink or rmdir and no lstat.
 */
function emptySandbox(
  fs: typeof import('node:fs'),
  dir: string,
  fixed: string[],
  kept: string,
  fixedMode: number,
  spareBase: string,
  spares: string[],
  spareFiles: string[],
  spareFilesMax: number,
): boolean {
  // A file of src/ that nothing else links (a source copy, not an output adopted into the CAS) is emptied and
  // moved out to `${spareBase}-f<n>`, for the next source copy to take instead of a new inode.
  const recycle = (p: string): boolean => {
    if (spareFiles.length >= spareFilesMax) return false;
    let fd;
    try {
      fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
    } catch {
      return false; // made read-only: removed instead
    }
    try {
      if (fs.fstatSync(fd).nlink !== 1) return false;
      fs.ftruncateSync(fd, 0);
    } finally {
      fs.closeSync(fd);
    }
    const spare = `${spareBase}-f${spareFiles.length}`;
    fs.renameSync(p, spare);
    spareFiles.push(spare);
    return true;
  };
  const emptyDir = (d: string, reuse: boolean): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory()) {
        emptyDir(p, reuse);
        fs.rmdirSync(p);
      } else if (!(reuse && e.isFile() && recycle(p))) fs.unlinkSync(p);
    }
  };
  try {
    // Modes first: an action may have made its folders read-only, which would also stop the emptying.
    fs.chmodSync(dir, 0o700);
    for (const d of [...fixed, kept]) {
      try {
        fs.chmodSync(`${dir}/${d}`, fixedMode);
      } catch {
        /* gone, or not a folder: replaced below */
      }
    }
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (!e.isDirectory()) fs.unlinkSync(p);
      else if (e.name === 'deps') {
        for (const dep of fs.readdirSync(p, { withFileTypes: true })) {
          const q = `${p}/${dep.name}`;
          if (!dep.isDirectory()) {
            fs.unlinkSync(q);
            continue;
          }
          fs.chmodSync(q, fixedMode);
          emptyDir(q, false);
          const spare = `${spareBase}-${spares.length}`;
          fs.renameSync(q, spare);
          spares.push(spare);
        }
      } else {
        emptyDir(p, e.name === kept);
        if (!fixed.includes(e.name) && e.name !== kept) fs.rmdirSync(p);
      }
    }
    // The action may have removed one of them.
    for (const d of fixed) if (!fs.existsSync(`${dir}/${d}`)) fs.mkdirSync(`${dir}/${d}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * The janitor thread: empties the sandboxes it is sent and says which it emptied (true) or could not (false), and
 * the spare folders it moved out of their deps/; on `close` it removes every folder it emptied or moved out that
 * is still there under that name (one taken for another action was renamed), and those it is given, and ends. Its imports are dynamic: eval'd code is a module or a script as the main program is.
 */
const JANITOR = `(async () => {
const { parentPort } = await import('node:worker_threads');
const fs = await import('node:fs');
const emptySandbox = ${emptySandbox.toString()};
const emptied = new Set();
parentPort.on('message', (m) => {
  if (m.close) {
    for (const dir of [...emptied, ...m.remove]) {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch {}
    }
    parentPort.close();
    return;
  }
  const spares = [];
  const files = [];
  const results = [];
  for (const { dir, spareBase } of m.batch) {
    const ok = emptySandbox(fs, dir, m.fixed, m.kept, m.fixedMode, spareBase, spares, files, m.spareFilesMax);
    if (ok) emptied.add(dir);
    else {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch {}
    }
    results.push({ dir, ok });
  }
  for (const spare of [...spares, ...files]) emptied.add(spare);
  parentPort.postMessage({ emptied: results, spares, files });
});
})();
`;

/**
 * Emptying takes an rmdir per folder an action made, 0.5 ms each on ext4: on the main thread that time is taken
 * from every other running action. A build that releases more sandboxes than this hands them to a janitor thread
 * (which costs some 50 ms to start).
 */
const EMPTY_IN_PLACE = 8;

/**
 * Sandboxes go to the janitor this many at a time: each message wakes its thread, which then takes a core from the
 * running actions (~0.3 ms a message in a profile of a cold 1000-target build, ~0.05 ms on an idle machine). The
 * cost is a few more sandboxes made early in a build, while the first batches fill.
 */
const JANITOR_BATCH = 4;

/**
 * At most this many spare files wait (the rest are removed): a small source's copy takes one per file, and a large
 * source must not leave thousands of them idle.
 */
const SPARE_FILES_MAX = 16;

/** At most this many sandboxes wait for the next build, holding at most this many spare folders between them. */
const KEPT_MAX = 4;
const KEPT_SPARES_MAX = 8;

export class Sandboxes {
  /** Emptied folders, ready for the next action. */
  private readonly idle: string[] = [];
  /** Emptied deps/<label> folders moved out of their sandboxes, ready to be the next deps/<label>. */
  private readonly spares: string[] = [];
  /** Emptied files of used src/ folders, moved out beside the sandboxes, ready to be the next source copies. */
  private readonly spareFiles: string[] = [];
  /** Names the spares of each emptied sandbox apart: `.spare-<pid>-<n>`, beside the sandboxes. */
  private emptiedCount = 0;
  /** The mode mkdir gives the four folders under this umask, which an emptied sandbox's get back. */
  private fixedMode: number | undefined;
  /** Whether a sandbox an earlier build kept was looked for yet. */
  private keptClaimed = false;

  constructor(
    readonly root: string,
    /** Where emptied sandboxes wait between builds; only what wg moved there is in it. */
    readonly keptRoot: string,
  ) {}

  /**
   * Makes one sandbox an earlier build (or a concurrent one) kept idle for this build: renamed beside the others
   * (the rename is the claim, so two builds never share one), then emptied as a used one is, since anything may
   * have written to it since; its deps/ holds the spare folders kept with it.
   */
  private claimKept(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.keptRoot);
      if (names.length > 0) fs.mkdirSync(this.root, { recursive: true });
    } catch {
      return;
    }
    for (const name of names) {
      const dir = path.join(this.root, `.kept-${process.pid}-${this.emptiedCount}`);
      try {
        fs.renameSync(path.join(this.keptRoot, name), dir);
      } catch {
        continue; // another build took it
      }
      try {
        this.fixedMode ??= fs.statSync(path.join(dir, FIXED[0]!)).mode & 0o7777;
      } catch {
        fs.rmSync(dir, { recursive: true, force: true }); // not a sandbox wg kept
        continue;
      }
      const spares: string[] = [];
      const spareBase = path.join(this.root, `.spare-${process.pid}-${this.emptiedCount++}`);
      const ok = emptySandbox(fs, dir, FIXED, SOURCE, this.fixedMode, spareBase, spares, this.spareFiles, SPARE_FILES_MAX);
      this.spares.push(...spares);
      if (ok) {
        this.idle.push(dir);
        return;
      }
      this.discard(dir);
    }
  }

  /**
   * Moves up to KEPT_MAX (counting those already there) of the idle sandboxes into the kept folder, with up to
   * KEPT_SPARES_MAX spare folders in their deps/, and returns what is left to remove.
   */
  private keepForNextBuild(idle: string[], spares: string[]): string[] {
    if (idle.length === 0) return spares;
    let kept: number;
    try {
      fs.mkdirSync(this.keptRoot, { recursive: true });
      kept = fs.readdirSync(this.keptRoot).length;
    } catch {
      return [...idle, ...spares];
    }
    const rest: string[] = [];
    let sparesLeft = KEPT_SPARES_MAX;
    for (const dir of idle) {
      if (kept >= KEPT_MAX) {
        rest.push(dir);
        continue;
      }
      for (; sparesLeft > 0 && spares.length > 0; sparesLeft--) {
        const spare = spares.pop()!;
        try {
          fs.renameSync(spare, path.join(dir, 'deps', String(sparesLeft)));
        } catch {
          rest.push(spare);
        }
      }
      try {
        fs.renameSync(dir, path.join(this.keptRoot, randomSuffix()));
        kept++;
      } catch {
        rest.push(dir); // the name is taken: removed, spares and all
      }
    }
    return [...rest, ...spares];
  }

  /**
   * A sandbox for `label`, named after it (the name failures print). `withSource`: the action copies a source into
   * src/, which may then already be there (empty); without, it is not.
   */
  acquire(label: string, withSource: boolean): string {
    if (!this.keptClaimed) {
      this.keptClaimed = true;
      this.claimKept();
    }
    const reused = this.idle.pop();
    if (reused !== undefined) {
      const dir = path.join(this.root, sandboxName(label));
      try {
        // rename(2) onto an empty folder replaces it: the name is checked free first, and its random suffix makes
        // another process taking it meanwhile as unlikely as a mkdtemp collision.
        if (!fs.existsSync(dir)) {
          fs.renameSync(reused, dir);
          if (!withSource) fs.rmSync(path.join(dir, SOURCE), { recursive: true, force: true });
          return dir;
        }
        this.idle.push(reused);
      } catch {
        /* gone meanwhile: a fresh one below */
      }
    }
    const prefix = path.join(this.root, `${label.replace(/[^A-Za-z0-9_.-]+/g, '_')}-`);
    let dir: string;
    try {
      dir = fs.mkdtempSync(prefix);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fs.mkdirSync(this.root, { recursive: true });
      dir = fs.mkdtempSync(prefix);
    }
    for (const d of FIXED) fs.mkdirSync(path.join(dir, d));
    this.fixedMode ??= fs.statSync(path.join(dir, FIXED[0]!)).mode & 0o7777;
    return dir;
  }

  /**
   * Makes `<sandbox>/deps/<name>`, an empty folder, by renaming a spare one when there is one (a rename, not a new
   * inode), and returns its path.
   */
  depFolder(sandbox: string, name: string): string {
    const dir = path.join(sandbox, 'deps', name);
    const spare = this.spares.pop();
    if (spare !== undefined) {
      try {
        fs.renameSync(spare, dir);
        return dir;
      } catch (e) {
        // Already made, for another label of the same folder name: both share it, as they did before spares.
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST') this.spares.push(spare);
      }
    }
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  }

  /**
   * An empty file beside the sandboxes, left by an earlier source copy, for the caller to rename into place and
   * write instead of creating a file; undefined when there is none. The file is the caller's from then on.
   */
  spareFile(): string | undefined {
    return this.spareFiles.pop();
  }

  /** Takes back the sandbox of an action that succeeded: emptied for the next, or removed when it cannot be. */
  release(dir: string): void {
    const fixedMode = this.fixedMode ?? 0o755;
    const spareBase = path.join(this.root, `.spare-${process.pid}-${this.emptiedCount++}`);
    if (this.released++ >= EMPTY_IN_PLACE && !this.closed) {
      const janitor = this.janitor();
      if (janitor) {
        this.handing.push({ dir, spareBase });
        if (this.handing.length < JANITOR_BATCH) return;
        this.inFlight++;
        janitor.ref();
        janitor.postMessage({
          batch: this.handing.splice(0),
          fixed: FIXED,
          kept: SOURCE,
          fixedMode,
          spareFilesMax: Math.max(0, SPARE_FILES_MAX - this.spareFiles.length),
        });
        return;
      }
    }
    const spares: string[] = [];
    const ok = emptySandbox(fs, dir, FIXED, SOURCE, fixedMode, spareBase, spares, this.spareFiles, SPARE_FILES_MAX);
    this.spares.push(...spares);
    if (ok) this.idle.push(dir);
    // Something in it resists removal (a read-only folder deeper down): it goes in the background, whatever it
    // takes, and the next action gets a fresh folder.
    else this.discard(dir);
  }

  private released = 0;
  /** Released sandboxes not yet handed to the janitor: handed JANITOR_BATCH at a time. */
  private readonly handing: { dir: string; spareBase: string }[] = [];
  private closed = false;
  private inFlight = 0;
  private worker: Worker | null | undefined;

  /** The janitor thread, started on first use; null when it cannot run (then sandboxes are emptied in place). */
  private janitor(): Worker | null {
    if (this.worker !== undefined) return this.worker;
    try {
      // Loaded here, not imported: node:worker_threads takes ~6 ms to load, and most builds never start the janitor.
      const { Worker } = process.getBuiltinModule('node:worker_threads');
      const w = new Worker(JANITOR, { eval: true });
      w.on('message', (m: { emptied: { dir: string; ok: boolean }[]; spares: string[]; files: string[] }) => {
        // Idle, the thread must not keep wg alive.
        if (--this.inFlight === 0 && !this.closed) w.unref();
        if (!this.closed) for (const e of m.emptied) if (e.ok) this.idle.push(e.dir);
        // After close, the thread removes them itself.
        if (!this.closed) {
          this.spares.push(...m.spares);
          this.spareFiles.push(...m.files);
        }
      });
      w.on('error', () => {
        // What it held is left on disk, as a crash would leave it; the rest is emptied in place.
        this.worker = null;
      });
      this.worker = w;
    } catch {
      this.worker = null;
    }
    return this.worker;
  }

  /** Removes a sandbox nobody needs to inspect (a result discarded because its inputs changed). */
  discard(dir: string): void {
    void fs.promises.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }

  /**
   * Keeps a few idle sandboxes and spare folders for the next build, and removes the rest: in the sandbox folder, a
   * build leaves only the sandboxes of its failures behind. Removed by the janitor when there is one (it is kept
   * alive until it has removed them): on the main thread, their ~40 ms would come after the last action, when
   * nothing else runs.
   */
  close(): void {
    this.closed = true;
    // Those still waiting for the janitor were never emptied: emptied here when the next build would otherwise find
    // fewer than it may keep (an edit's build of an action or two then makes no sandbox), removed with the rest if not.
    const waiting = this.handing.splice(0);
    while (this.idle.length < KEPT_MAX && waiting.length > 0) {
      const { dir, spareBase } = waiting.shift()!;
      const spares: string[] = [];
      const ok = emptySandbox(fs, dir, FIXED, SOURCE, this.fixedMode ?? 0o755, spareBase, spares, this.spareFiles, SPARE_FILES_MAX);
      this.spares.push(...spares);
      if (!ok) {
        waiting.push({ dir, spareBase });
        break;
      }
      this.idle.push(dir);
    }
    const idle = [...this.keepForNextBuild(this.idle.splice(0), this.spares.splice(0)), ...waiting.map((w) => w.dir)];
    const spareFiles = this.spareFiles.splice(0);
    if (this.worker) {
      this.worker.ref();
      this.worker.postMessage({ close: true, remove: [...idle, ...spareFiles] });
    } else {
      // An edit's build: its spare files (wg's own, moved out of src/) an unlink each, without loading rimraf.
      for (const file of spareFiles) removeFile(file);
      for (const dir of idle) fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}
