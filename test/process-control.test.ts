// Process control through the real `wg` binary: Ctrl-C (SIGINT to wg) during builds that spawn grandchildren, a
// second Ctrl-C forcing the exit, a timeout on a build that ignores SIGTERM, and the ledger that lets the next wg
// reap what a SIGKILLed wg left running. Survivors are found by a marker in their environment (every action
// declares WG_RUN_MARKER=<uuid>), which no setsid or double fork can shed.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import { statuses, TempWorkspace, WG_BIN, type BuildJson } from './rig.js';
import { markedProcesses, until } from './processes.js';

/** Pids of processes whose environment holds WG_RUN_MARKER=marker (zombies have no environment to read). */

interface Started {
  child: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** `wg ARGS` started in the background, so the test can signal it. */
function start(ws: TempWorkspace, args: string[]): Started {
  const child = spawn(process.execPath, [WG_BIN, ...args], {
    cwd: ws.dir,
    env: { ...process.env, WG_CACHE_DIR: ws.cacheDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  return { child, done };
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** Packages whose command is `cmd`, each declaring the marker; `dependent` depends on the first. */
function workspace(marker: string, cmd: string, names: string[], extra = ''): TempWorkspace {
  const ws = TempWorkspace.create();
  const pkgs = names.map((n) => `  ${n}:\n    rule: command\n    cmd: ${JSON.stringify(cmd)}\n    env: {WG_RUN_MARKER: "${marker}"}\n`);
  ws.write('BUILD.yaml', `variants:\n  cpu: {}\npackages:\n${pkgs.join('')}${extra}`);
  return ws;
}

describe('Ctrl-C', () => {
  it('SIGINT kills every process group, grandchildren included, exits 130, and caches nothing', async () => {
    const marker = randomUUID();
    const ws = workspace(marker, 'sleep 1000 & sleep 1000', ['s1', 's2'], '  after:\n    rule: command\n    cmd: "true"\n    deps: [s1]\n');
    try {
      const wg = start(ws, ['build', '--json', '-j', '4']);
      // Each action is a shell with two sleeps (dash may exec the last one in place of itself): at least two each.
      await until('both actions to start', 20_000, () => markedProcesses(marker).length >= 4);
      wg.child.kill('SIGINT');
      const r = await wg.done;
      assert.equal(r.code, 130, r.stderr);
      assert.deepEqual(markedProcesses(marker), [], 'processes of the interrupted builds outlived wg');
      const result = JSON.parse(r.stdout) as BuildJson;
      assert.deepEqual(statuses(result), { '//after:cpu': 'skipped', '//s1:cpu': 'interrupted', '//s2:cpu': 'interrupted' });
      assert.match(r.stderr, /^wg: interrupted; stopping running actions \(press Ctrl-C again to force\)$/m);
      assert.match(r.stderr, /^\[\d\d:\d\d:\d\d\] interrupted \/\/s1:cpu$/m);
      assert.doesNotMatch(r.stderr, /FAILED/);
      const dry = await ws.build(['--dry-run']);
      assert.deepEqual(statuses(dry), { '//after:cpu': 'would-build', '//s1:cpu': 'would-build', '//s2:cpu': 'would-build' });
    } finally {
      killAll(markedProcesses(marker));
      ws.remove();
    }
  });

  it('a second SIGINT does not wait for a build that ignores SIGTERM, and still leaves nothing running', async () => {
    const marker = randomUUID();
    const ws = workspace(marker, "trap '' TERM; sleep 1000 & wait", ['stubborn']);
    try {
      const wg = start(ws, ['build']);
      await until('the action to start', 20_000, () => markedProcesses(marker).length >= 2);
      wg.child.kill('SIGINT');
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(markedProcesses(marker).length >= 2, 'the build should still be ignoring SIGTERM');
      const t0 = Date.now();
      wg.child.kill('SIGINT');
      const r = await wg.done;
      assert.equal(r.code, 130, r.stderr);
      assert.ok(Date.now() - t0 < 1500, `the forced exit took ${Date.now() - t0} ms`);
      // SIGKILL cannot be ignored; it is delivered within moments of wg's exit.
      await until('the killed processes to be gone', 2000, () => markedProcesses(marker).length === 0);
    } finally {
      killAll(markedProcesses(marker));
      ws.remove();
    }
  });
});

describe('timeout', () => {
  it('kills a build that ignores SIGTERM (TERM, grace, KILL), names its process group, caches nothing', async () => {
    const marker = randomUUID();
    const ws = TempWorkspace.create();
    const pidFile = path.join(ws.dir, '..', 'pid');
    try {
      ws.write(
        'BUILD.yaml',
        `variants:
  cpu: {}
packages:
  t:
    rule: command
    cmd: ${JSON.stringify(`echo $$ > ${JSON.stringify(pidFile)}; trap '' TERM; sleep 1000 & wait`)}
    env: {WG_RUN_MARKER: "${marker}"}
    resources: {timeout: 2s}
  user:
    rule: command
    cmd: "true"
    deps: [t]
  other:
    rule: command
    cmd: "true"
`,
      );
      const result = await ws.build(['--keep-going'], { expectCode: 1 });
      const pgid = Number(fs.readFileSync(pidFile, 'utf8'));
      assert.ok(pgid > 0);
      assert.deepEqual(statuses(result), { '//other:cpu': 'built', '//t:cpu': 'failed', '//user:cpu': 'skipped' });
      const t = result.targets.find((x) => x.label === '//t:cpu')!;
      assert.equal(t.error, `timed out after 2s (killed process group ${pgid})`);
      assert.match(result.stderr, new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\] FAILED //t:cpu timed out after 2s \\(killed process group ${pgid}\\)$`, 'm'));
      assert.equal(result.targets.find((x) => x.label === '//user:cpu')!.error, 'dependency //t:cpu failed');
      assert.deepEqual(markedProcesses(marker), [], 'the timed-out build outlived wg');
      const dry = await ws.build(['--dry-run']);
      assert.equal(statuses(dry)['//t:cpu'], 'would-build');
    } finally {
      killAll(markedProcesses(marker));
      ws.remove();
    }
  });

  it('a timeout that is not a duration is a BUILD.yaml mistake', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': 'variants:\n  cpu: {}\npackages:\n  t:\n    rule: command\n    cmd: "true"\n    resources: {timeout: 30}\n',
    });
    try {
      const r = await ws.run(['build']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^BUILD\.yaml:7:26: error: "timeout" of package "t" must be a duration such as 90s, 30m or 5h, got a number$/m);
    } finally {
      ws.remove();
    }
  });
});

describe('the ledger of process groups', () => {
  it("the next wg reaps the groups a SIGKILLed wg left running, with a warning", async () => {
    const marker = randomUUID();
    const ws = workspace(marker, 'sleep 1000 & sleep 1000', ['s1', 's2'], '  quick:\n    rule: command\n    cmd: "true"\n');
    try {
      const wg = start(ws, ['build', '//s1:cpu', '//s2:cpu', '-j', '4']);
      await until('both actions to start', 20_000, () => markedProcesses(marker).length >= 4);
      wg.child.kill('SIGKILL');
      await wg.done;
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(markedProcesses(marker).length >= 4, 'the orphans should have outlived the SIGKILLed wg');

      const next = await ws.build(['//quick:cpu']);
      assert.match(next.stderr, /^warning: reaped 2 orphaned action process groups from a previous run$/m);
      assert.deepEqual(markedProcesses(marker), [], 'orphans survived the next wg');
      const again = await ws.build(['//quick:cpu']);
      assert.doesNotMatch(again.stderr, /reaped/);
    } finally {
      killAll(markedProcesses(marker));
      ws.remove();
    }
  });
});

/** The parent pid of process `pid` (field 4 of /proc/PID/stat), or null when it is gone. */
function parentOf(pid: number): number | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** Whether process `pid` runs (a zombie, left for an init that may never reap it, does not). */
function alive(pid: number): boolean {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(text.slice(text.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/** The processes that spawned the marked steps, other than wg (`wgPid`): the spawn helper. */
function helpersOf(marker: string, wgPid: number): Set<number> {
  const marked = markedProcesses(marker);
  return new Set(marked.map(parentOf).filter((p): p is number => p !== null && p !== wgPid && p !== 1 && !marked.includes(p)));
}

/**
 * Nine quick targets, then `pause` (one second) after them: wg starts its spawn helper by the ninth spawn, so the
 * steps after `pause` are spawned by the helper, and are its children.
 */
function warmup(): string {
  const names = Array.from({ length: 9 }, (_, i) => `w${i + 1}`);
  const quick = names.map((n) => `  ${n}:\n    rule: command\n    cmd: "true"\n`).join('');
  return `${quick}  pause:\n    rule: command\n    cmd: "sleep 1"\n    deps: [${names.join(', ')}]\n`;
}

describe('the spawn helper', () => {
  it('a build of more than eight actions starts it before its ninth spawn', async () => {
    // A chain, -j 1: the first step waits long enough for the helper to be up, and the second must then be its child.
    const names = Array.from({ length: 10 }, (_, i) => `c${i}`);
    const ws = TempWorkspace.create();
    ws.write(
      'BUILD.yaml',
      `variants:\n  cpu: {}\npackages:\n` +
        names
          .map((n, i) => `  ${n}:\n    rule: command\n    cmd: ${JSON.stringify(i === 0 ? 'sleep 2; echo > parent.txt' : "tr '\\0' ' ' < /proc/$PPID/cmdline > parent.txt")}\n    outs: [parent.txt]\n${i > 0 ? `    deps: [${names[i - 1]}]\n` : ''}`)
          .join(''),
    );
    try {
      assert.deepEqual(new Set(Object.values(statuses(await ws.build(['-j', '1'])))), new Set(['built']));
      assert.match(ws.read('wg-out/out/c1.cpu.parent.txt'), / -e 'use strict';/);
    } finally {
      ws.remove();
    }
  });

  it('a helper killed while a step runs fails that step, kills its group, and later steps are spawned by wg', async () => {
    const marker = randomUUID();
    const ws = TempWorkspace.create();
    // `victim` kills its parent, the helper (once the helper has had time to report it started). It goes first (its dependent `tail` gives it the longer path), and
    // with -j 1 nothing else runs meanwhile; `later` starts after the helper is gone.
    ws.write(
      'BUILD.yaml',
      `variants:\n  cpu: {}\npackages:\n${warmup()}` +
        `  victim:\n    rule: command\n    cmd: "sleep 0.2; kill -9 $PPID; sleep 1000 & sleep 1000"\n    env: {WG_RUN_MARKER: "${marker}"}\n    deps: [pause]\n` +
        `  tail:\n    rule: command\n    cmd: "true"\n    deps: [victim]\n` +
        `  later:\n    rule: command\n    cmd: "true"\n    deps: [pause]\n`,
    );
    try {
      const result = await ws.build(['-j', '1', '-k'], { expectCode: 1 });
      const s = statuses(result);
      assert.equal(s['//victim:cpu'], 'failed');
      assert.equal(s['//tail:cpu'], 'skipped');
      assert.equal(s['//later:cpu'], 'built');
      assert.equal(s['//pause:cpu'], 'built');
      const victim = result.targets.find((t) => t.label === '//victim:cpu')!;
      assert.match(victim.error ?? '', /^command: the spawn helper ended while it ran \(killed process group \d+\)$/);
      assert.deepEqual(markedProcesses(marker), [], 'the step outlived its lost helper');
      // The cache's flushes (their `sync` ran through the helper until it ended) stored every result built.
      const again = statuses(await ws.build(['-j', '1', '-k', '//pause:cpu', '//later:cpu']));
      assert.deepEqual(again, { '//later:cpu': 'cached', '//pause:cpu': 'cached', ...Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`//w${i + 1}:cpu`, 'cached'])) });
    } finally {
      killAll(markedProcesses(marker));
      ws.remove();
    }
  });

  it('Ctrl-C at the terminal (SIGINT to the process group) stops steps the helper spawned; the helper ends with wg', async () => {
    const marker = randomUUID();
    const ws = TempWorkspace.create();
    const step = (n: string): string =>
      `  ${n}:\n    rule: command\n    cmd: "sleep 1000 & sleep 1000"\n    env: {WG_RUN_MARKER: "${marker}"}\n    deps: [pause]\n`;
    ws.write('BUILD.yaml', `variants:\n  cpu: {}\npackages:\n${warmup()}${step('s1')}${step('s2')}`);
    // A session of its own, as a shell gives a job: the signal goes to the whole group, wg and all it started.
    const child = spawn(process.execPath, [WG_BIN, 'build', '--json', '-j', '4'], {
      cwd: ws.dir,
      env: { ...process.env, WG_CACHE_DIR: ws.cacheDir },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      await until('both actions to start', 20_000, () => markedProcesses(marker).length >= 4);
      const helpers = helpersOf(marker, child.pid!);
      assert.ok(helpers.size >= 1, 'no step was spawned by the helper');
      process.kill(-child.pid!, 'SIGINT');
      const code = await done;
      assert.equal(code, 130, stderr);
      assert.deepEqual(markedProcesses(marker), [], 'processes of the interrupted builds outlived wg');
      const result = JSON.parse(stdout) as BuildJson;
      assert.equal(statuses(result)['//s1:cpu'], 'interrupted');
      assert.equal(statuses(result)['//s2:cpu'], 'interrupted');
      await until('the helper to end with wg', 5000, () => [...helpers].every((pid) => !alive(pid) || parentOf(pid) !== child.pid));
    } finally {
      killAll(markedProcesses(marker));
      if (child.exitCode === null) child.kill('SIGKILL');
      ws.remove();
    }
  });

  it('a SIGKILLed wg leaves its helper to end by itself, and the next wg reaps the steps the helper spawned', async () => {
    const marker = randomUUID();
    const ws = TempWorkspace.create();
    const step = (n: string): string =>
      `  ${n}:\n    rule: command\n    cmd: "sleep 1000 & sleep 1000"\n    env: {WG_RUN_MARKER: "${marker}"}\n    deps: [pause]\n`;
    ws.write('BUILD.yaml', `variants:\n  cpu: {}\npackages:\n${warmup()}${step('s1')}${step('s2')}  quick:\n    rule: command\n    cmd: "true"\n`);
    try {
      const wg = start(ws, ['build', '//s1:cpu', '//s2:cpu', '-j', '4']);
      await until('both actions to start', 20_000, () => markedProcesses(marker).length >= 4);
      const helpers = helpersOf(marker, wg.child.pid!);
      assert.ok(helpers.size >= 1, 'no step was spawned by the helper');
      wg.child.kill('SIGKILL');
      await wg.done;
      await until('the helper to end', 5000, () => [...helpers].every((pid) => !alive(pid)));
      assert.ok(markedProcesses(marker).length >= 4, 'the orphans should have outlived the SIGKILLed wg');

      const next = await ws.build(['//quick:cpu']);
      assert.match(next.stderr, /^warning: reaped 2 orphaned action process groups from a previous run$/m);
      assert.deepEqual(markedProcesses(marker), [], 'orphans survived the next wg');
    } finally {
      killAll(markedProcesses(marker));
      ws.remove();
    }
  });
});
