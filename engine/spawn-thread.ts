// Spawning off the main thread. libuv's spawn forks wg and waits until the child has exec'd: on this machine 2-6 ms
// during which wg's one JavaScript thread does nothing, while on a build of small actions that thread is what every
// running action waits for. A worker thread does the spawn (the fork copies the same process) and reports the pid
// and, later, how the child ended.
//
// The thread takes some 50 ms of CPU to start (and a build that ends while it starts waits for it at exit), so it
// is started by the ninth spawn and used once it is up: until then, and for an edit loop's build of one or two
// actions, spawns stay on the main thread.

import type { Worker } from 'node:worker_threads';

export interface Started {
  pid: number;
  /** The child's start time (clock ticks since boot), read before it can have been reaped; as readProcStat's. */
  startTime: number | null;
  /** How the child ended (its group may live on). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface Pending {
  started: (pid: number, startTime: number | null) => void;
  failed: (e: Error) => void;
  exited: (r: { code: number | null; signal: NodeJS.Signals | null }) => void;
  pid: number | null;
}

type Reply =
  | { id: number; pid: number; startTime: number | null }
  | { id: number; error: string }
  | { id: number; code: number | null; signal: NodeJS.Signals | null };

// Imports are dynamic: eval'd code is a module or a script as the main program is.
const SOURCE = `(async () => {
const { parentPort } = await import('node:worker_threads');
const { spawn } = await import('node:child_process');
const fs = await import('node:fs');
parentPort.on('message', (m) => {
  let child;
  try {
    child = spawn(m.cmd, m.args, { cwd: m.cwd, env: m.env, stdio: ['ignore', m.outFd, m.outFd], detached: true });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: e.message });
    return;
  }
  if (child.pid === undefined) {
    child.once('error', (e) => parentPort.postMessage({ id: m.id, error: e.message }));
    return;
  }
  // Before this thread's event loop can reap the child. Field 22 of /proc/PID/stat, as readProcStat reads it.
  let startTime = null;
  try {
    const text = fs.readFileSync('/proc/' + child.pid + '/stat', 'utf8');
    const t = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
    if (Number.isFinite(t)) startTime = t;
  } catch {}
  parentPort.postMessage({ id: m.id, pid: child.pid, startTime });
  child.once('exit', (code, signal) => parentPort.postMessage({ id: m.id, code, signal }));
});
})();
`;

/** Spawns made on the main thread before the thread is started. */
const SPAWNS_BEFORE_THREAD = 8;

class SpawnThread {
  private worker: Worker | null = null;
  private online = false;
  private broken = false;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();

  private asked = 0;

  /** Whether spawns can go to the thread now; the ninth call starts it. */
  ready(): boolean {
    if (this.broken) return false;
    if (this.worker === null && ++this.asked > SPAWNS_BEFORE_THREAD) this.start();
    return this.online;
  }

  private start(): void {
    try {
      // Loaded here, not imported: node:worker_threads takes ~6 ms to load, and most runs never start the thread.
      const { Worker } = process.getBuiltinModule('node:worker_threads');
      const w = new Worker(SOURCE, { eval: true });
      w.once('online', () => (this.online = true));
      w.on('message', (m: Reply) => this.reply(m));
      w.once('error', () => this.fail());
      w.once('exit', () => this.fail());
      // Idle, the thread must not keep wg alive. After the listeners: adding one refs the thread again.
      w.unref();
      this.worker = w;
    } catch {
      this.broken = true;
    }
  }

  private reply(m: Reply): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if ('pid' in m) {
      p.pid = m.pid;
      p.started(m.pid, m.startTime);
    } else if ('error' in m) {
      this.pending.delete(m.id);
      p.failed(new Error(m.error));
      this.settle();
    } else {
      this.pending.delete(m.id);
      p.exited({ code: m.code, signal: m.signal });
      this.settle();
    }
  }

  private settle(): void {
    if (this.pending.size === 0) this.worker?.unref();
  }

  /**
   * A thread that ended cannot say how its children ended: their steps fail (their groups are still killed and
   * waited for by the caller), and later spawns stay on the main thread.
   */
  private fail(): void {
    this.broken = true;
    this.online = false;
    const lost = [...this.pending.values()];
    this.pending.clear();
    for (const p of lost) {
      const e = new Error('the spawning thread ended');
      if (p.pid === null) p.failed(e);
      else p.exited({ code: null, signal: null });
    }
  }

  /** Spawns `cmd` as the leader of a new session, its output to `outFd`; rejects when it cannot start. */
  spawn(cmd: string, args: string[], options: { cwd: string; env: Record<string, string>; outFd: number }): Promise<Started> {
    const id = this.nextId++;
    return new Promise<Started>((resolve, reject) => {
      let exited!: Pending['exited'];
      const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => (exited = r));
      this.pending.set(id, { started: (pid, startTime) => resolve({ pid, startTime, exited: exit }), failed: reject, exited, pid: null });
      this.worker!.ref();
      this.worker!.postMessage({ id, cmd, args, cwd: options.cwd, env: options.env, outFd: options.outFd });
    });
  }
}

export const spawnThread = new SpawnThread();
