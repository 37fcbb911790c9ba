// Spawning from a small helper process. libuv's spawn forks: the kernel copies the page tables of every mapping of
// the forking process, the parent then takes a write fault on each page it touches until the child has exec'd,
// and the child tears the copy down again in exec. For wg (150 MB resident) that came to 4-5 ms of CPU per
// step, and from a worker thread it stalls the main thread as well (a fork holds the mm lock its page faults
// wait for). The helper is a bare Node of a few dozen MB that only spawns: wg sends it a step over an IPC channel,
// it replies with the pid and later with how the child ended.
//
// Started by the ninth spawn and used once it is up, so an edit loop's build of one or two actions never starts
// it. A step's output must reach wg's log, which the helper opens again through /proc/<wg>/fd/<fd>: the log is
// opened with O_APPEND by wg, so both open files write at its end. A helper that ends (killed, or cannot reopen
// a log) is not used again: later steps are spawned by wg itself.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';

export interface Started {
  pid: number;
  /** The child's start time (clock ticks since boot), read before it can have been reaped; as readProcStat's. */
  startTime: number | null;
  /** How the child ended (its group may live on); `lost` when the helper ended first and nobody can tell. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; lost?: string }>;
}

interface Pending {
  started: (pid: number, startTime: number | null) => void;
  failed: (e: Error) => void;
  exited: (r: { code: number | null; signal: NodeJS.Signals | null; lost?: string }) => void;
  pid: number | null;
}

type Reply =
  /** Sent once, when the helper listens. */
  | { ready: true }
  | { id: number; pid: number; startTime: number | null }
  /** `helper`: the helper could not do its part (reopen the log); the step can still be spawned by wg. */
  | { id: number; error: string; helper: boolean }
  | { id: number; code: number | null; signal: NodeJS.Signals | null };

/** Why a step whose exit the helper took with it fails. */
export const HELPER_LOST = 'the spawn helper ended while it ran';
/** Why a step fails whose start the helper did not live to report. */
const HELPER_LOST_UNSTARTED = 'the spawn helper ended before it said whether the command started';

// A script, not a module: `node -e` starts fastest so. Checks its parent before each spawn: a message wg sent
// just before it was SIGKILLed must not start a step that no ledger will list.
const SOURCE = `'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const parent = process.ppid;
process.on('disconnect', () => process.exit(0));
process.on('message', (m) => {
  if (process.ppid !== parent) process.exit(0);
  let out = 'ignore';
  try {
    if (m.outFd !== null) out = fs.openSync('/proc/' + parent + '/fd/' + m.outFd, 'a');
  } catch (e) {
    process.send({ id: m.id, error: e.message, helper: true });
    return;
  }
  let child;
  try {
    child = spawn(m.cmd, m.args, { cwd: m.cwd, env: m.env, stdio: ['ignore', out, out], detached: true });
  } catch (e) {
    if (out !== 'ignore') fs.closeSync(out);
    process.send({ id: m.id, error: e.message, helper: false });
    return;
  }
  if (out !== 'ignore') fs.closeSync(out);
  if (child.pid === undefined) {
    child.once('error', (e) => process.send({ id: m.id, error: e.message, helper: false }));
    return;
  }
  // Before this process's event loop can reap the child. Field 22 of /proc/PID/stat, as readProcStat reads it.
  let startTime = null;
  try {
    const text = fs.readFileSync('/proc/' + child.pid + '/stat', 'utf8');
    const t = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
    if (Number.isFinite(t)) startTime = t;
  } catch {}
  process.send({ id: m.id, pid: child.pid, startTime });
  child.once('exit', (code, signal) => process.send({ id: m.id, code, signal }));
});
process.send({ ready: true });
`;

/** Spawns made by wg itself before the helper is started. */
const SPAWNS_BEFORE_HELPER = 8;

class SpawnHelper {
  private child: ChildProcess | null = null;
  private online = false;
  private broken = false;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private asked = 0;

  /** Whether spawns can go to the helper now; the ninth call starts it. */
  ready(): boolean {
    if (this.broken) return false;
    if (this.child === null && ++this.asked > SPAWNS_BEFORE_HELPER) this.start();
    return this.online;
  }

  /**
   * Starts the helper now when a build has more actions to run than wg spawns by itself: it takes 0.1-0.3 s to
   * start on a busy machine, and every step spawned meanwhile forks wg (its first nine included, started by the
   * ninth spawn: ~0.4 s of a cold thousand-action build's main thread).
   */
  expect(actions: number): void {
    if (!this.broken && this.child === null && actions > SPAWNS_BEFORE_HELPER) this.start();
  }

  private start(): void {
    try {
      // Its own session: a Ctrl-C at the terminal is wg's to handle, and must not take the helper (and with it
      // the exits of running steps) away first. None of wg's output streams: `wg build | tee` must end with wg,
      // not with the helper (its failures reach wg as the steps it lost).
      const c = spawn(process.execPath, ['-e', SOURCE], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], detached: true });
      c.on('message', (m: Reply) => this.reply(m));
      c.once('error', () => this.fail());
      c.once('exit', () => this.fail());
      this.child = c;
      this.settle();
    } catch {
      this.broken = true;
    }
  }

  private reply(m: Reply): void {
    if ('ready' in m) {
      this.online = !this.broken;
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if ('pid' in m) {
      p.pid = m.pid;
      p.started(m.pid, m.startTime);
    } else if ('error' in m) {
      this.pending.delete(m.id);
      if (m.helper) {
        // This system will not let the helper reopen wg's files: wg spawns for itself from now on.
        this.broken = true;
        this.online = false;
      }
      p.failed(Object.assign(new Error(m.error), { helper: m.helper }));
      this.settle();
    } else {
      this.pending.delete(m.id);
      p.exited({ code: m.code, signal: m.signal });
      this.settle();
    }
  }

  /** Idle, the helper must not keep wg alive (it ends by itself when wg does: its channel closes). */
  private settle(): void {
    if (this.pending.size > 0) return;
    this.child?.unref();
    this.child?.channel?.unref();
  }

  /**
   * A helper that ended cannot say how its children ended: their steps fail (their groups are still killed and
   * waited for by the caller), and later spawns are wg's own.
   */
  private fail(): void {
    this.broken = true;
    this.online = false;
    const lost = [...this.pending.values()];
    this.pending.clear();
    for (const p of lost) {
      // Not spawned again by wg: the helper may have started it before it ended (and then nobody knows its group:
      // the one step a helper killed in that instant runs on unrecorded, as a step wg is SIGKILLed in the instant
      // between spawning it and writing its ledger line does).
      if (p.pid === null) p.failed(new Error(HELPER_LOST_UNSTARTED));
      else p.exited({ code: null, signal: null, lost: HELPER_LOST });
    }
  }

  /** Whether the helper is up, without counting a spawn towards starting it. */
  get up(): boolean {
    return this.online && !this.broken;
  }

  /**
   * Spawns `cmd` as the leader of a new session, its output appended to `outFd` (or dropped: null); rejects when
   * it cannot start. A rejection with `helper: true` says the helper failed, not the command: the caller spawns
   * it itself.
   */
  spawn(cmd: string, args: string[], options: { cwd: string; env: Record<string, string>; outFd: number | null }): Promise<Started> {
    const id = this.nextId++;
    return new Promise<Started>((resolve, reject) => {
      let exited!: Pending['exited'];
      const exit = new Promise<Awaited<Started['exited']>>((r) => (exited = r));
      this.pending.set(id, { started: (pid, startTime) => resolve({ pid, startTime, exited: exit }), failed: reject, exited, pid: null });
      const c = this.child!;
      c.ref();
      c.channel?.ref();
      c.send({ id, cmd, args, cwd: options.cwd, env: options.env, outFd: options.outFd }, (e) => {
        // The helper is gone and its exit not yet seen: the same as its exit.
        if (e) this.fail();
      });
    });
  }
}

export const spawnHelper = new SpawnHelper();

/**
 * Runs a command of wg's own (the cache's `sync`) to its end, output dropped, through the helper once it is up:
 * a build flushes its cache a few times a second. Rejects when it cannot run or exits non-zero.
 */
export async function runCommand(cmd: string, args: string[]): Promise<void> {
  if (!spawnHelper.up) {
    await promisify(execFile)(cmd, args);
    return;
  }
  const started = await spawnHelper.spawn(cmd, args, { cwd: process.cwd(), env: process.env as Record<string, string>, outFd: null });
  const exit = await started.exited;
  if (exit.lost) throw new Error(`${cmd}: ${exit.lost}`);
  if (exit.code !== 0) throw new Error(`${cmd} ${exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`}`);
}
