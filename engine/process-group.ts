// Process groups of action steps: each step leads a new group (setsid) so its whole tree is signalled at once, and
// is over only when that group is gone. One /proc sampler takes every live group's peak memory; every live group
// is in the ledger (ledger.ts) for the next wg, should this one be SIGKILLed.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import type { Ledger } from './ledger.js';
import { spawnHelper, type Started } from './spawn-helper.js';

/** How long a group gets between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 2000;
/** How often the memory of live groups is sampled. */
const SAMPLE_MS = 100;
/** How often a dying group is checked for members. */
const POLL_MS = 25;
/** After SIGKILL a process can still sit in uninterruptible sleep (a hung NFS read); give up waiting after this. */
const KILL_WAIT_MS = 30_000;

/** One line of /proc/PID/stat, the fields wg needs. */
export interface ProcStat {
  pid: number;
  /** R, S, D, Z (zombie), T, X (dead)… */
  state: string;
  pgrp: number;
  /** Clock ticks since boot: with the pid, names a process uniquely (pids are reused). */
  startTime: number;
  /** Resident pages. */
  rssPages: number;
}

export function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const f = text.slice(close + 2).split(' ');
  // After the name: state is field 3, pgrp 5, starttime 22, rss 24 (proc(5)).
  const pgrp = Number(f[2]);
  const startTime = Number(f[19]);
  const rssPages = Number(f[21]);
  if (!Number.isFinite(pgrp) || !Number.isFinite(startTime)) return null;
  return { pid, state: f[0] ?? '?', pgrp, startTime, rssPages: Number.isFinite(rssPages) ? rssPages : 0 };
}

/** Every process on the machine (that /proc shows us). */
export function listProcesses(): ProcStat[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const out: ProcStat[] = [];
  for (const name of names) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    const s = readProcStat(Number(name));
    if (s) out.push(s);
  }
  return out;
}

/** Live (not zombie) members of process group `pgid`. */
export function groupMembers(pgid: number, processes: ProcStat[] = listProcesses()): ProcStat[] {
  return processes.filter((p) => p.pgrp === pgid && p.state !== 'Z' && p.state !== 'X');
}

/** Whether group `pgid` still has a live member. Zombies do not count: nobody may be left to reap them. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  return groupMembers(pgid).length > 0;
}

/** Sends `signal` to group `pgid`; false when the group has no process at all (not even a zombie) to take it. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  // ESRCH is the usual answer after a step (its group ended with it), and the error's stack trace was most of
  // what it cost: ~28 µs an action in a profile of a cold build.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Polls until group `pgid` has no live member or `ms` passed; true when it is gone. */
export async function waitGroupGone(pgid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (!groupAlive(pgid)) return true;
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

let pageSizeCache: number | null = null;

/** Bytes per page, from this process's own VmRSS (kB) and resident pages; 4096 when they cannot be compared. */
function pageSize(): number {
  if (pageSizeCache !== null) return pageSizeCache;
  pageSizeCache = 4096;
  try {
    const kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1]);
    const pages = readProcStat(process.pid)?.rssPages ?? 0;
    if (kb > 0 && pages > 0) pageSizeCache = 2 ** Math.round(Math.log2((kb * 1024) / pages));
  } catch {
    /* keep the common page size */
  }
  return pageSizeCache;
}

export interface StepExit {
  pgid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Whether wg sent the group SIGTERM (an interrupt or a timeout) before the leader ended. */
  terminated: boolean;
  /** Peak of the group's summed resident memory while it ran, in bytes (0 if it ended before the first sample). */
  peakBytes: number;
  /** Set when nobody could see how the leader ended (the spawn helper ended first): why. */
  lost?: string;
}

export interface SpawnOptions {
  cwd: string;
  env: Record<string, string>;
  /** stdout and stderr go to this file descriptor. */
  outFd: number;
  /**
   * Instead of `outFd`: stdout and stderr are piped to this function (each stream in order), so secrets can be
   * redacted before the log sees them; `finished` then also waits for both pipes to drain.
   */
  onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
}

/** After its group is gone, how long a step's pipes may stay open (held by a process that left the group). */
const PIPE_DRAIN_MS = 2000;

/** A spawned step: its group id, how to stop it, and its end (after the whole group is gone). */
export interface RunningGroup {
  pgid: number;
  /** SIGTERM to the group now, SIGKILL after the grace period; idempotent. */
  terminate(): void;
  /** Resolves when the leader ended and no member of the group is left. */
  finished: Promise<StepExit>;
}

interface LiveGroup {
  peakBytes: number;
  startedAt: number;
}

/** Every action group this wg process has running: sampled together, killed together on a forced exit. */
export class ProcessGroups {
  private readonly live = new Map<number, LiveGroup>();
  private sampler: NodeJS.Timeout | null = null;
  private ledger: Ledger | null = null;
  private exitHook = false;

  setLedger(ledger: Ledger | null): void {
    this.ledger = ledger;
  }

  get size(): number {
    return this.live.size;
  }

  /** SIGKILL to every live group at once, synchronously: for a forced exit, which cannot wait. */
  killAllNow(): void {
    for (const pgid of this.live.keys()) signalGroup(pgid, 'SIGKILL');
  }

  /**
   * Spawns `argv` as the leader of a new process group; rejects (now, or through `finished`) if it cannot start.
   * By the spawn helper when it can be (spawn-helper.ts); a step whose output is piped through `onOutput` is
   * spawned here, where its pipes are read.
   */
  async spawn(argv: string[], options: SpawnOptions): Promise<RunningGroup> {
    const [cmd, ...args] = argv;
    if (cmd === undefined) throw new Error('empty command');
    if (!this.exitHook) {
      // Whatever ends wg (an uncaught error, process.exit) must not leave builds running unowned.
      process.once('exit', () => this.killAllNow());
      this.exitHook = true;
    }
    let pgid: number;
    let startTime: number | null;
    let exited: Started['exited'];
    let drained: Promise<unknown> = Promise.resolve();
    let child: ChildProcess | null = null;
    let started: Started | null = null;
    if (!options.onOutput && spawnHelper.ready()) {
      try {
        started = await spawnHelper.spawn(cmd, args, { cwd: options.cwd, env: options.env, outFd: options.outFd });
      } catch (e) {
        // The helper's own failure: the step is spawned here instead. The command's failure is the step's.
        if (!(e as { helper?: boolean }).helper) throw e;
      }
    }
    if (started) {
      ({ pid: pgid, startTime, exited } = started);
    } else {
      const out = options.onOutput ? 'pipe' : options.outFd;
      const c = spawn(cmd, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', out, out], detached: true });
      const onOutput = options.onOutput;
      if (onOutput) {
        drained = Promise.all(
          (['stdout', 'stderr'] as const).map(
            (name) =>
              new Promise<void>((done) => {
                const stream = c[name];
                if (!stream) return done();
                stream.on('data', (chunk: Buffer) => onOutput(chunk, name));
                stream.once('close', () => done());
                stream.once('error', () => done());
              }),
          ),
        );
      }
      if (c.pid === undefined) {
        // spawn failed (ENOENT, EACCES); the error event says why.
        await new Promise((_, reject) => c.once('error', reject));
      }
      pgid = c.pid!;
      // Read before the child can have been reaped (that happens on a later turn of the event loop).
      startTime = readProcStat(pgid)?.startTime ?? null;
      exited = new Promise((resolve) => c.once('exit', (code, signal) => resolve({ code, signal })));
      child = c;
    }
    const group: LiveGroup = { peakBytes: 0, startedAt: Date.now() };
    this.live.set(pgid, group);
    this.ledger?.add(pgid, startTime);
    this.startSampler();

    let terminatedAt: number | null = null;
    let killTimer: NodeJS.Timeout | undefined;
    const terminate = (): void => {
      if (terminatedAt !== null) return;
      terminatedAt = Date.now();
      signalGroup(pgid, 'SIGTERM');
      killTimer = setTimeout(() => signalGroup(pgid, 'SIGKILL'), KILL_GRACE_MS);
    };

    const finished = exited.then(async ({ code, signal, lost }): Promise<StepExit> => {
      let gone = false;
      if (terminatedAt !== null) {
        // Members get the rest of their grace period to end on SIGTERM; then the timer's SIGKILL.
        gone = await waitGroupGone(pgid, Math.max(0, terminatedAt + KILL_GRACE_MS - Date.now()));
        if (!gone) signalGroup(pgid, 'SIGKILL');
      } else {
        // The step is over: anything it left running in its group (a daemon, a `&` job) goes now. Usually there is
        // nothing left to signal, which says the group is gone without the wait's own check (each costs a thrown
        // error, ~0.1 ms per step in a profile of a cold build).
        gone = !signalGroup(pgid, 'SIGKILL');
      }
      gone = gone || (await waitGroupGone(pgid, KILL_WAIT_MS));
      if (killTimer) clearTimeout(killTimer);
      // The group is gone, so only a process that left it (setsid) can still hold a pipe: wait briefly, then cut.
      let cut: NodeJS.Timeout | undefined;
      await Promise.race([drained, new Promise<void>((r) => (cut = setTimeout(r, PIPE_DRAIN_MS)))]);
      clearTimeout(cut);
      child?.stdout?.destroy();
      child?.stderr?.destroy();
      this.release(pgid, gone);
      return { pgid, code, signal, terminated: terminatedAt !== null, peakBytes: group.peakBytes, ...(lost ? { lost } : {}) };
    });
    return { pgid, terminate, finished };
  }

  private release(pgid: number, gone: boolean): void {
    this.live.delete(pgid);
    // A group that would not die stays in the ledger, so the next wg tries again.
    if (gone) this.ledger?.remove(pgid);
    if (this.live.size === 0 && this.sampler) {
      clearInterval(this.sampler);
      this.sampler = null;
    }
  }

  private startSampler(): void {
    if (this.sampler) return;
    this.sampler = setInterval(() => this.sample(), SAMPLE_MS);
    this.sampler.unref();
  }

  /**
   * One pass over /proc: each live group's members' resident pages summed. Skipped while every live group is
   * younger than one sampling period: a pass reads every process's stat file, and on a build of small actions it
   * would mostly catch steps about to end, whose peak a fixed-period sample misses anyway.
   */
  private sample(): void {
    const now = Date.now();
    let old = false;
    for (const g of this.live.values()) if (now - g.startedAt >= SAMPLE_MS) old = true;
    if (!old) return;
    const sums = new Map<number, number>();
    for (const p of listProcesses()) {
      if (this.live.has(p.pgrp)) sums.set(p.pgrp, (sums.get(p.pgrp) ?? 0) + p.rssPages);
    }
    const page = pageSize();
    for (const [pgid, pages] of sums) {
      const g = this.live.get(pgid)!;
      g.peakBytes = Math.max(g.peakBytes, pages * page);
    }
  }
}

/** The process's one registry: process groups belong to the process, whatever build spawned them. */
export const processGroups = new ProcessGroups();
