// The ledger of live action process groups: one small file per group in the cache folder, written when a step is
// spawned and removed when its group is gone. A wg that is SIGKILLed cannot clean up after itself (Node has no
// PR_SET_PDEATHSIG), so the next wg that opens the same cache reaps the groups whose owner is dead.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Listener } from './events.js';
import { groupMembers, listProcesses, processGroups, readProcStat, signalGroup, waitGroupGone } from './process-group.js';

interface Entry {
  pgid: number;
  /** The leader's start time (clock ticks since boot), to tell it from a later process that got the same pid. */
  startTime: number | null;
  /** The wg process that spawned it, and its start time, to tell a dead owner from a live concurrent wg. */
  owner: { pid: number; startTime: number | null };
  /** Start times count from boot: an entry from before a reboot names nothing. */
  bootId: string;
}

/** How long reaped groups get to die after SIGKILL before wg goes on. */
const REAP_WAIT_MS = 5000;

function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

export class Ledger {
  private readonly self: Entry['owner'];
  private readonly boot = bootId();

  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.self = { pid: process.pid, startTime: readProcStat(process.pid)?.startTime ?? null };
  }

  private file(pgid: number): string {
    return path.join(this.dir, `${pgid}.json`);
  }

  add(pgid: number, startTime: number | null): void {
    const entry: Entry = { pgid, startTime, owner: this.self, bootId: this.boot };
    try {
      fs.writeFileSync(this.file(pgid), JSON.stringify(entry));
    } catch {
      /* a ledger that cannot be written costs only the cleanup after a crash */
    }
  }

  remove(pgid: number): void {
    fs.rmSync(this.file(pgid), { force: true });
  }

  /**
   * Kills (SIGKILL) the groups of entries whose owning wg is dead and waits for them to be gone; returns how many
   * groups still had live members. Entries of live wg processes sharing this cache are left alone.
   */
  async reapOrphans(): Promise<number> {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir).filter((n) => /^\d+\.json$/.test(n));
    } catch {
      return 0;
    }
    if (names.length === 0) return 0;
    const entries: Entry[] = [];
    for (const name of names) {
      try {
        entries.push(JSON.parse(fs.readFileSync(path.join(this.dir, name), 'utf8')) as Entry);
      } catch {
        fs.rmSync(path.join(this.dir, name), { force: true });
      }
    }
    const alive = (who: { pid: number; startTime: number | null }): boolean => {
      const s = readProcStat(who.pid);
      return s !== null && s.state !== 'Z' && (who.startTime === null || s.startTime === who.startTime);
    };
    const processes = listProcesses();
    const reaped: number[] = [];
    for (const e of entries) {
      // Owners are told apart by start time too: with pid_max at 32768 a dead wg's pid is soon someone else's.
      if (e.bootId === this.boot && alive(e.owner)) continue;
      if (e.bootId === this.boot && this.isOurs(e, processes)) {
        signalGroup(e.pgid, 'SIGKILL');
        reaped.push(e.pgid);
      } else {
        this.remove(e.pgid);
      }
    }
    for (const pgid of reaped) {
      if (await waitGroupGone(pgid, REAP_WAIT_MS)) this.remove(pgid);
    }
    return reaped.length;
  }

  /**
   * Whether group `e.pgid` is still the one the entry recorded. With the leader alive, its start time decides.
   * With the leader gone, members left in the group keep its number from being reused (Linux allocates no pid
   * that is still a group id), so members that started no earlier than the leader are its descendants.
   */
  private isOurs(e: Entry, processes: ReturnType<typeof listProcesses>): boolean {
    const members = groupMembers(e.pgid, processes);
    if (members.length === 0) return false;
    const leader = members.find((m) => m.pid === e.pgid);
    if (leader) return e.startTime !== null && leader.startTime === e.startTime;
    return e.startTime !== null && members.every((m) => m.startTime >= e.startTime!);
  }
}

/**
 * Records this run's process groups in the cache's ledger, after killing the groups a SIGKILLed wg left running:
 * they would compete with this build for CPUs, memory and GPUs.
 */
export async function openLedger(cacheDir: string, emit: Listener): Promise<void> {
  const ledger = new Ledger(path.join(cacheDir, 'process-groups'));
  processGroups.setLedger(ledger);
  const reaped = await ledger.reapOrphans();
  if (reaped > 0) {
    emit({ type: 'warning', message: `reaped ${reaped} orphaned action process group${reaped === 1 ? '' : 's'} from a previous run` });
  }
}
