// The folders actions run in. A sandbox holds home/, tmp/, out/ and deps/ when the action starts, nothing else.
//
// A fresh folder per action cost five new inodes (the folder and its four), 0.3-1 ms each on ext4, where a rename
// costs 0.02 ms: so the folder of an action that succeeded is emptied and renamed for the next one. Emptying is not
// assumed but done: everything in it is removed except the four folders, themselves emptied, so the next action
// finds exactly what a fresh sandbox holds. A failed action's folder is never reused: it stays for inspection.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

const FIXED = ['home', 'tmp', 'out', 'deps'];
const NAME_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** `label-XXXXXX`, as mkdtemp names them. */
function sandboxName(label: string): string {
  const suffix = [...randomBytes(6)].map((b) => NAME_CHARS[b % NAME_CHARS.length]).join('');
  return `${label.replace(/[^A-Za-z0-9_.-]+/g, '_')}-${suffix}`;
}

/**
 * Removes everything in `dir`, keeping `dir`. By hand rather than by fs.rmSync: the file type comes with the
 * listing, so each entry costs one unlink or rmdir and no lstat.
 */
function emptyDir(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      emptyDir(p);
      fs.rmdirSync(p);
    } else fs.unlinkSync(p);
  }
}

export class Sandboxes {
  /** Emptied folders, ready for the next action. */
  private readonly idle: string[] = [];
  /** The mode mkdir gives the four folders under this umask, which an emptied sandbox's get back. */
  private fixedMode: number | undefined;

  constructor(readonly root: string) {}

  /** A sandbox for `label`, named after it (the name failures print). */
  acquire(label: string): string {
    const reused = this.idle.pop();
    if (reused !== undefined) {
      const dir = path.join(this.root, sandboxName(label));
      try {
        // rename(2) onto an empty folder replaces it: the name is checked free first, and its random suffix makes
        // another process taking it meanwhile as unlikely as a mkdtemp collision.
        if (!fs.existsSync(dir)) {
          fs.renameSync(reused, dir);
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

  /** Takes back the sandbox of an action that succeeded: emptied for the next, or removed when it cannot be. */
  release(dir: string): void {
    try {
      // Modes first: an action may have made its folders read-only, which would also stop the emptying.
      fs.chmodSync(dir, 0o700);
      for (const d of FIXED) {
        try {
          fs.chmodSync(path.join(dir, d), this.fixedMode ?? 0o755);
        } catch {
          /* gone, or not a folder: replaced below */
        }
      }
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) {
          emptyDir(p);
          if (!FIXED.includes(e.name)) fs.rmdirSync(p);
        } else fs.unlinkSync(p);
      }
      // The action may have removed one of them.
      for (const d of FIXED) if (!fs.existsSync(path.join(dir, d))) fs.mkdirSync(path.join(dir, d));
      this.idle.push(dir);
    } catch {
      // Something in it resists removal (a read-only folder deeper down): it goes in the background, whatever it
      // takes, and the next action gets a fresh folder.
      void fs.promises.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Removes a sandbox nobody needs to inspect (a result discarded because its inputs changed). */
  discard(dir: string): void {
    void fs.promises.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }

  /** Removes the idle folders: a build leaves only the sandboxes of its failures behind. */
  close(): void {
    for (const dir of this.idle.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  }
}
