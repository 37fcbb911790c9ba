// The ledger of live action process groups, in the cache folder: each wg run appends to one journal of its own,
// a line when a step's group is spawned and a line when the group is gone. A wg that is SIGKILLed cannot clean up
// after itself (Node has no PR_SET_PDEATHSIG), so the next wg that opens the same cache replays the journals whose
// owner is dead and reaps the groups still listed there.
//
// One journal per run, not one file per group: on ext4 creating and removing a file costs 0.3-1 ms, an appended
// line a few microseconds, and a build of small actions spawned a group every few milliseconds.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Listener } from './events.js';
import { groupMembers, listProcesses, processGroups, readProcStat, signalGroup, waitGroupGone } from './process-group.js';
import { removeFile } from './remove-file.js';

interface Owner {
  pid: number;
  startTime: number | null;
}

interface Entry {
  pgid: number;
  /** The leader's start time (clock ticks since boot), to tell it from a later process that got the same pid. */
  startTime: number | null;
  /** The wg process that spawned it, and its start time, to tell a dead owner from a live concurrent wg. */
  owner: Owner;
  /** Start times count from boot: an entry from before a reboot names nothing. */
  bootId: string;
}

/** A journal's first line: whose it is. Then `+PGID STARTTIME` per spawned group and `-PGID` per group gone. */
interface Header {
  owner: Owner;
  bootId: string;
}

/** How long reaped groups get to die after SIGKILL before wg goes on. */
const REAP_WAIT_MS = 5000;
/** A journal this long is rewritten with only its live groups (by temp file and rename, so a crash loses none). */
const COMPACT_BYTES = 64 * 1024;
const JOURNAL_RE = /^(\d+)-(\d+)\.groups$/;
/** The one-file-per-group ledger of earlier wg versions: still read, so their orphans are reaped too. */
const OLD_ENTRY_RE = /^\d+\.json$/;

function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** The groups a journal still lists, in the order they were spawned; null when it has no readable header. */
function replay(text: string): { header: Header; live: Map<number, number | null> } | null {
  const lines = text.split('\n');
  let header: Header;
  try {
    header = JSON.parse(lines[0] ?? '') as Header;
  } catch {
    return null;
  }
  if (typeof header?.owner?.pid !== 'number') return null;
  const live = new Map<number, number | null>();
  // A line cut short by a crash is skipped: the spawn it would have recorded had not returned yet.
  for (const line of lines.slice(1)) {
    const m = /^([+-])(\d+)(?: (\d+|null))?$/.exec(line);
    if (!m) continue;
    if (m[1] === '+') live.set(Number(m[2]), m[3] === undefined || m[3] === 'null' ? null : Number(m[3]));
    else live.delete(Number(m[2]));
  }
  return { header, live };
}

/**
 * This process's journal in one ledger folder. Shared by every Ledger of the process (watch mode opens one per
 * build), so one file holds every group the process has running.
 */
class Journal {
  /** Opened at the first spawn: a build that runs nothing writes nothing. */
  private fd: number | null = null;
  private size = 0;
  readonly live = new Map<number, number | null>();

  constructor(
    readonly file: string,
    private readonly header: string,
  ) {}

  add(pgid: number, startTime: number | null): void {
    this.live.set(pgid, startTime);
    this.append(`+${pgid} ${startTime}\n`);
  }

  remove(pgid: number): void {
    this.live.delete(pgid);
    this.append(`-${pgid}\n`);
  }

  private append(line: string): void {
    try {
      if (this.fd === null) {
        this.fd = fs.openSync(this.file, 'a');
        this.size = fs.fstatSync(this.fd).size;
        if (this.size === 0) this.write(this.header);
        // Whatever ends wg without a crash leaves nothing to reap: the journal goes with it.
        process.once('exit', () => this.close());
      }
      if (this.size > COMPACT_BYTES) this.compact();
      this.write(line);
    } catch {
      /* a ledger that cannot be written costs only the cleanup after a crash */
    }
  }

  private write(text: string): void {
    this.size += fs.writeSync(this.fd!, text);
  }

  private compact(): void {
    const tmp = `${this.file}.tmp`;
    const text = this.header + [...this.live].map(([pgid, start]) => `+${pgid} ${start}\n`).join('');
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, this.file);
    fs.closeSync(this.fd!);
    this.fd = fs.openSync(this.file, 'a');
    this.size = Buffer.byteLength(text);
  }

  private close(): void {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
    // Groups that would not die stay listed for the next wg to try again.
    if (this.live.size === 0) removeFile(this.file);
  }
}

const journals = new Map<string, Journal>();

export class Ledger {
  private readonly self: Owner;
  private readonly boot = bootId();
  private readonly journal: Journal;

  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.self = { pid: process.pid, startTime: readProcStat(process.pid)?.startTime ?? null };
    // Named by pid and start time: a dead wg's journal never has the name of a live one's.
    const file = path.join(dir, `${process.pid}-${this.self.startTime ?? 0}.groups`);
    const header: Header = { owner: this.self, bootId: this.boot };
    this.journal = journals.get(file) ?? new Journal(file, `${JSON.stringify(header)}\n`);
    journals.set(file, this.journal);
  }

  add(pgid: number, startTime: number | null): void {
    this.journal.add(pgid, startTime);
  }

  remove(pgid: number): void {
    this.journal.remove(pgid);
  }

  /**
   * Kills (SIGKILL) the groups listed by journals whose owning wg is dead and waits for them to be gone; returns how
   * many groups still had live members. Journals of live wg processes sharing this cache are left alone.
   */
  async reapOrphans(): Promise<number> {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return 0;
    }
    const alive = (who: Owner): boolean => {
      const s = readProcStat(who.pid);
      return s !== null && s.state !== 'Z' && (who.startTime === null || s.startTime === who.startTime);
    };
    // Owners are told apart by start time too: with pid_max at 32768 a dead wg's pid is soon someone else's.
    const orphaned = (owner: Owner, boot: string): boolean => !(boot === this.boot && alive(owner));
    const dead: { file: string; header: Header; live: Map<number, number | null> }[] = [];
    const oldEntries: { file: string; entry: Entry }[] = [];
    for (const name of names) {
      const file = path.join(this.dir, name);
      let text: string;
      try {
        if (!JOURNAL_RE.test(name) && !OLD_ENTRY_RE.test(name)) continue;
        text = fs.readFileSync(file, 'utf8');
      } catch {
        continue;
      }
      const named = JOURNAL_RE.exec(name);
      if (named) {
        // The owner is read from the name, which exists before the header is written.
        const owner = { pid: Number(named[1]), startTime: Number(named[2]) };
        if (file === this.journal.file || (owner.startTime > 0 && alive(owner))) continue;
        const j = replay(text);
        if (j === null) removeFile(file);
        else if (orphaned(j.header.owner, j.header.bootId)) dead.push({ file, ...j });
        continue;
      }
      try {
        const entry = JSON.parse(text) as Entry;
        if (orphaned(entry.owner, entry.bootId)) oldEntries.push({ file, entry });
      } catch {
        removeFile(file);
      }
    }
    if (dead.length === 0 && oldEntries.length === 0) return 0;
    const processes = listProcesses();
    const reaped: number[] = [];
    const reap = (e: { pgid: number; startTime: number | null; bootId: string }): boolean => {
      if (e.bootId !== this.boot || !this.isOurs(e, processes)) return false;
      signalGroup(e.pgid, 'SIGKILL');
      reaped.push(e.pgid);
      return true;
    };
    const mayStay = new Map<string, number[]>();
    for (const j of dead) {
      mayStay.set(
        j.file,
        [...j.live].filter(([pgid, startTime]) => reap({ pgid, startTime, bootId: j.header.bootId })).map(([pgid]) => pgid),
      );
    }
    for (const o of oldEntries) mayStay.set(o.file, reap(o.entry) ? [o.entry.pgid] : []);
    const gone = new Set<number>();
    for (const pgid of reaped) if (await waitGroupGone(pgid, REAP_WAIT_MS)) gone.add(pgid);
    for (const j of dead) {
      // A group that would not die stays listed, so the next wg tries again.
      const left = mayStay.get(j.file)!.filter((pgid) => !gone.has(pgid));
      if (left.length === 0) removeFile(j.file);
      else fs.writeFileSync(j.file, JSON.stringify(j.header) + '\n' + left.map((pgid) => `+${pgid} ${j.live.get(pgid)}\n`).join(''));
    }
    for (const o of oldEntries) if (mayStay.get(o.file)!.every((pgid) => gone.has(pgid))) removeFile(o.file);
    return reaped.length;
  }

  /**
   * Whether group `e.pgid` is still the one the entry recorded. With the leader alive, its start time decides.
   * With the leader gone, members left in the group keep its number from being reused (Linux allocates no pid
   * that is still a group id), so members that started no earlier than the leader are its descendants.
   */
  private isOurs(e: { pgid: number; startTime: number | null }, processes: ReturnType<typeof listProcesses>): boolean {
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
