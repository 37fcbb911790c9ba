// `wg watch` through the real binary on a temp workspace of `command` targets: real edits of sources, patches,
// env files and BUILD.yaml rebuild exactly the affected targets; a same-bytes save rebuilds nothing; a BUILD.yaml
// error is printed and watching goes on; an edit while a target builds is not cached under the stale key (also in a
// plain `wg build`); Ctrl-C stops the running build, leaves no process behind and exits 130.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';

import { statuses, TempWorkspace, WG_BIN, type BuildJson } from './rig.js';
import { markedProcesses, until } from './processes.js';

/** How long one build (start to watching again) may take before a wait fails. */
const BUILD_MS = 30_000;
/** How long a build that should not come is waited for. */
const QUIET_MS = 1500;

const SUMMARY = /^wg: (?:interrupted: )?\d+ built, \d+ cached, \d+ failed, \d+ skipped in /;
const WATCHING = /^wg watch: watching \d+ inputs?/;

/** One build of a watch session: the lines from its `wg watch:` line through the next `watching` line. */
interface Cycle {
  /** The `wg watch: …; building` line. */
  why: string;
  built: string[];
  /** `FAILED …` lines, without their time stamp. */
  failed: string[];
  summary: string | null;
  lines: string[];
  /** Index of its `watching` line: where the next wait starts. */
  end: number;
}

/** `wg watch ARGS` in the background, its stderr kept line by line. */
class WatchProcess {
  readonly lines: string[] = [];
  private readonly child: ChildProcess;
  private readonly exit: Promise<number | null>;

  constructor(ws: TempWorkspace, args: string[]) {
    this.child = spawn(process.execPath, [WG_BIN, 'watch', ...args], {
      cwd: ws.dir,
      env: { ...process.env, WG_CACHE_DIR: ws.cacheDir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    createInterface({ input: this.child.stderr! }).on('line', (l) => this.lines.push(l));
    // A watch that outlives its test must not outlive the test run.
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 300_000);
    this.exit = new Promise((resolve) =>
      this.child.on('close', (code) => {
        clearTimeout(timer);
        resolve(code);
      }),
    );
  }

  private seen(): string {
    return `\n--- wg watch said so far:\n${this.lines.join('\n')}`;
  }

  /** Index of the first line at or after `from` matching `re`; fails naming `what` when none comes within `ms`. */
  async waitFor(re: RegExp, from: number, what: string, ms = BUILD_MS): Promise<number> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.lines.findIndex((l, n) => n >= from && re.test(l));
      if (i >= 0) return i;
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${this.seen()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The next build after line `from`, once wg is watching again. */
  async cycle(from: number, what: string): Promise<Cycle> {
    const start = await this.waitFor(/^wg watch: (?:building|change in )/, from, `a build to start (${what})`);
    const end = await this.waitFor(WATCHING, start + 1, `the build to end and wg to watch again (${what})`);
    const lines = this.lines.slice(start, end + 1);
    return {
      why: lines[0]!,
      built: lines.flatMap((l) => /^\[\d\d:\d\d:\d\d\] built (\S+) in /.exec(l)?.[1] ?? []).sort(),
      failed: lines.flatMap((l) => /^\[\d\d:\d\d:\d\d\] (FAILED .*)$/.exec(l)?.[1] ?? []),
      summary: lines.find((l) => SUMMARY.test(l)) ?? null,
      lines,
      end,
    };
  }

  /** Asserts that no build starts after line `from` within `ms`. */
  async noBuild(from: number, ms: number, what: string): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    const started = this.lines.slice(from).find((l) => /^wg watch: (?:building|change in )/.test(l));
    assert.equal(started, undefined, `${what} started a build${this.seen()}`);
  }

  /** SIGINT, then the exit code and how long the exit took. */
  async interrupt(): Promise<{ code: number | null; ms: number }> {
    const t0 = Date.now();
    this.child.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([this.exit, new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), 10_000)))]);
    clearTimeout(timer);
    if (code === 'late') {
      this.child.kill('SIGKILL');
      throw new Error(`wg watch did not exit within 10 s of SIGINT${this.seen()}`);
    }
    return { code, ms: Date.now() - t0 };
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** Pids of processes whose environment holds WG_RUN_MARKER=marker. */

const PATCH = (to: string): string => `--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-hello\n+${to}\n`;

const BUILD_YAML = `variants:
  cpu: {}
packages:
  a:
    rule: command
    source: src/a
    cmd: "cat a.txt > out.txt"
    outs: [out.txt]
  b:
    rule: command
    source: src/b
    cmd: "echo $GREETING > out.txt; cat b.txt >> out.txt"
    outs: [out.txt]
  c:
    rule: command
    deps: [a]
    cmd: 'for f in $WG_DEP_FILES; do cat "$f"; done > out.txt'
    outs: [out.txt]
`;

describe('wg watch', () => {
  let ws: TempWorkspace;
  let wg: WatchProcess;
  /** Where the next wait starts: the `watching` line of the last build. */
  let at = 0;
  const out = (pkg: string): string => ws.read(`wg-out/out/${pkg}.cpu.out.txt`);

  before(async () => {
    ws = TempWorkspace.create({
      'BUILD.yaml': BUILD_YAML,
      'src/a/a.txt': 'hello\n',
      'src/b/b.txt': 'bee\n',
      'envs/b.env': 'GREETING=hi\n',
      // Found by the patch layout (patches/<pkg>/), not listed in BUILD.yaml.
      'patches/a/0001-patch.patch': PATCH('hello patched'),
    });
    wg = new WatchProcess(ws, []);
    const first = await wg.cycle(0, 'the first build');
    assert.equal(first.why, 'wg watch: building //...');
    assert.deepEqual(first.built, ['//a:cpu', '//b:cpu', '//c:cpu'], first.lines.join('\n'));
    assert.equal(out('c'), 'hello patched\n');
    at = first.end;
  });

  after(() => {
    wg.kill();
    ws.remove();
  });

  it('a source edit rebuilds the target and its dependents; the others are cached', async () => {
    ws.write('src/a/a.txt', 'hello\nworld\n');
    const c = await wg.cycle(at, 'the source edit');
    assert.equal(c.why, 'wg watch: change in src/a/a.txt; building');
    assert.deepEqual(c.built, ['//a:cpu', '//c:cpu'], c.lines.join('\n'));
    assert.match(c.summary ?? '', /^wg: 2 built, 1 cached, 0 failed, 0 skipped in /);
    assert.equal(out('c'), 'hello patched\nworld\n');
    at = c.end;
  });

  it('a file added to, removed from and added again to a source folder rebuilds that target each time', async () => {
    ws.write('src/b/extra.txt', 'extra\n');
    const added = await wg.cycle(at, 'the new source file');
    assert.equal(added.why, 'wg watch: change in src/b/extra.txt; building');
    assert.deepEqual(added.built, ['//b:cpu'], added.lines.join('\n'));
    fs.rmSync(ws.path('src/b/extra.txt'));
    const removed = await wg.cycle(added.end, 'the removed source file');
    assert.equal(removed.why, 'wg watch: change in src/b/extra.txt; building');
    // Back to the tree of the first build: its result is in the cache.
    assert.deepEqual(removed.built, [], removed.lines.join('\n'));
    assert.match(removed.summary ?? '', /^wg: 0 built, 3 cached, /);
    ws.write('src/b/extra.txt', 'extra, again\n');
    const again = await wg.cycle(removed.end, 'the source file created again');
    assert.equal(again.why, 'wg watch: change in src/b/extra.txt; building');
    assert.deepEqual(again.built, ['//b:cpu'], again.lines.join('\n'));
    at = again.end;
  });

  it('a patch edit rebuilds the patched target and its dependents', async () => {
    ws.write('patches/a/0001-patch.patch', PATCH('hello patched twice'));
    const c = await wg.cycle(at, 'the patch edit');
    assert.equal(c.why, 'wg watch: change in patches/a/0001-patch.patch; building');
    assert.deepEqual(c.built, ['//a:cpu', '//c:cpu'], c.lines.join('\n'));
    assert.equal(out('a'), 'hello patched twice\nworld\n');
    at = c.end;
  });

  it('an env file edit rebuilds the package it applies to', async () => {
    ws.write('envs/b.env', 'GREETING=hello there\n');
    const c = await wg.cycle(at, 'the env file edit');
    assert.equal(c.why, 'wg watch: change in envs/b.env; building');
    assert.deepEqual(c.built, ['//b:cpu'], c.lines.join('\n'));
    assert.equal(out('b'), 'hello there\nbee\n');
    at = c.end;
  });

  it('a BUILD.yaml edit rebuilds the target whose command changed', async () => {
    ws.write('BUILD.yaml', BUILD_YAML.replace('cat b.txt >> out.txt', 'cat b.txt b.txt >> out.txt'));
    const c = await wg.cycle(at, 'the BUILD.yaml edit');
    assert.equal(c.why, 'wg watch: change in BUILD.yaml; building');
    assert.deepEqual(c.built, ['//b:cpu'], c.lines.join('\n'));
    assert.equal(out('b'), 'hello there\nbee\nbee\n');
    at = c.end;
  });

  it('saving the same bytes (in place or by rename) builds nothing; a real change after it still builds', async () => {
    ws.write('src/a/a.txt', ws.read('src/a/a.txt'));
    // An editor's atomic save: a temporary file in the same folder, renamed over the original.
    fs.writeFileSync(ws.path('src/b/.b.txt.tmp'), ws.read('src/b/b.txt'));
    fs.renameSync(ws.path('src/b/.b.txt.tmp'), ws.path('src/b/b.txt'));
    ws.write('BUILD.yaml', ws.read('BUILD.yaml'));
    await wg.noBuild(at + 1, QUIET_MS, 'rewriting src/a/a.txt, src/b/b.txt and BUILD.yaml with their own bytes');
    ws.write('src/b/b.txt', 'bee 2\n');
    const c = await wg.cycle(at, 'the edit after the same-bytes saves');
    assert.equal(c.why, 'wg watch: change in src/b/b.txt; building');
    assert.deepEqual(c.built, ['//b:cpu'], c.lines.join('\n'));
    at = c.end;
  });

  it('a BUILD.yaml syntax error is printed and watching goes on; fixing it builds again', async () => {
    const good = ws.read('BUILD.yaml');
    // The last line of BUILD.yaml is c's `outs: [out.txt]`: its list is left open.
    ws.write('BUILD.yaml', good.replace(/outs: \[out\.txt\]\n$/, 'outs: [out.txt\n'));
    const broken = await wg.cycle(at, 'the broken BUILD.yaml');
    assert.equal(broken.why, 'wg watch: change in BUILD.yaml; building');
    assert.ok(broken.lines.includes('BUILD.yaml:18:11: error: YAML: "[" is not closed before the end of the file (a flow sequence must end with "]", and lines it continues on must be indented further than its key)'), broken.lines.join('\n'));
    assert.ok(broken.lines.includes('wg: 1 error in BUILD.yaml; nothing was built'), broken.lines.join('\n'));
    assert.match(broken.lines.at(-1)!, /^wg watch: watching \d+ inputs; fix the error to build again \(Ctrl-C to stop\)$/);
    // A source edit while BUILD.yaml is broken: the previous inputs are still watched.
    ws.write('src/a/a.txt', 'hello\nagain\n');
    const still = await wg.cycle(broken.end, 'the source edit while BUILD.yaml is broken');
    assert.ok(still.lines.includes('wg: 1 error in BUILD.yaml; nothing was built'), still.lines.join('\n'));
    ws.write('BUILD.yaml', good);
    const fixed = await wg.cycle(still.end, 'the fixed BUILD.yaml');
    assert.equal(fixed.why, 'wg watch: change in BUILD.yaml; building');
    assert.deepEqual(fixed.built, ['//a:cpu', '//c:cpu'], fixed.lines.join('\n'));
    assert.equal(out('c'), 'hello patched twice\nagain\n');
    at = fixed.end;
  });

  it('a package added to BUILD.yaml is built and its source watched from then on', async () => {
    ws.write('src/d/d.txt', 'dee\n');
    ws.write('BUILD.yaml', `${ws.read('BUILD.yaml')}  d:\n    rule: command\n    source: src/d\n    cmd: "cat d.txt > out.txt"\n    outs: [out.txt]\n`);
    const added = await wg.cycle(at, 'the new package');
    assert.deepEqual(added.built, ['//d:cpu'], added.lines.join('\n'));
    ws.write('src/d/d.txt', 'dee 2\n');
    const edited = await wg.cycle(added.end, 'the edit of the new source');
    assert.equal(edited.why, 'wg watch: change in src/d/d.txt; building');
    assert.deepEqual(edited.built, ['//d:cpu'], edited.lines.join('\n'));
    at = edited.end;
  });

  it('Ctrl-C while watching exits 130 at once', async () => {
    const { code, ms } = await wg.interrupt();
    assert.equal(code, 130, wg.lines.join('\n'));
    assert.ok(ms < 3000, `wg watch took ${ms} ms to exit`);
    assert.equal(wg.lines.at(-1), 'wg watch: stopped');
  });
});

/** A target whose command says it started and then waits for the test to release it. */
function slowWorkspace(marker: string): { ws: TempWorkspace; started: string; release: string } {
  const ws = TempWorkspace.create({ 'src/s/s.txt': 'old\n', 'src/q/q.txt': 'quick\n' });
  const started = ws.path('../started');
  const release = ws.path('../release');
  ws.write(
    'BUILD.yaml',
    `variants:
  cpu: {}
packages:
  slow:
    rule: command
    source: src/s
    cmd: 'touch "$STARTED"; while [ ! -e "$RELEASE" ]; do sleep 0.05; done; cat s.txt > out.txt'
    outs: [out.txt]
    env: {STARTED: "${started}", RELEASE: "${release}", WG_RUN_MARKER: "${marker}"}
  quick:
    rule: command
    source: src/q
    cmd: "cat q.txt > out.txt"
    outs: [out.txt]
`,
  );
  return { ws, started, release };
}

describe('an edit while a target builds', () => {
  it('wg watch: the result is not cached under the stale key and a follow-up build builds the new content', async () => {
    const marker = randomUUID();
    const { ws, started, release } = slowWorkspace(marker);
    const wg = new WatchProcess(ws, []);
    try {
      await until('//slow:cpu to start', BUILD_MS, () => fs.existsSync(started));
      ws.write('src/s/s.txt', 'new\n');
      fs.writeFileSync(release, '');
      const first = await wg.cycle(0, 'the first build');
      assert.deepEqual(first.built, ['//quick:cpu'], first.lines.join('\n'));
      assert.deepEqual(first.failed, ['FAILED //slow:cpu: sources changed while //slow:cpu was building (src/s/s.txt); not cached'], first.lines.join('\n'));
      assert.match(first.summary ?? '', /^wg: 1 built, 0 cached, 1 failed, 0 skipped in /);
      const next = await wg.cycle(first.end, 'the follow-up build');
      assert.equal(next.why, 'wg watch: change in src/s/s.txt; building');
      assert.deepEqual(next.built, ['//slow:cpu'], next.lines.join('\n'));
      assert.equal(ws.read('wg-out/out/slow.cpu.out.txt'), 'new\n');
      // No third build: the follow-up read what is there now.
      await wg.noBuild(next.end + 1, 500, 'the follow-up build');

      // Ctrl-C during a build: its process group is stopped, nothing survives, exit 130.
      fs.rmSync(started);
      fs.rmSync(release);
      ws.write('src/s/s.txt', 'newer\n');
      await until('//slow:cpu to start again', BUILD_MS, () => fs.existsSync(started));
      const { code, ms } = await wg.interrupt();
      assert.equal(code, 130, wg.lines.join('\n'));
      assert.ok(ms < 5000, `wg watch took ${ms} ms to exit`);
      assert.deepEqual(markedProcesses(marker), [], 'processes of the interrupted build outlived wg watch');
      assert.ok(wg.lines.includes('wg: interrupted; stopping running actions (press Ctrl-C again to force)'), wg.lines.join('\n'));
      assert.ok(wg.lines.some((l) => /^\[\d\d:\d\d:\d\d\] interrupted \/\/slow:cpu$/.test(l)), wg.lines.join('\n'));

      // The first build's result is under no key: with the old content back, the target would build.
      ws.write('src/s/s.txt', 'old\n');
      fs.writeFileSync(release, '');
      const dry = await ws.build(['--dry-run', '//slow']);
      assert.deepEqual(statuses(dry), { '//slow:cpu': 'would-build' });
    } finally {
      wg.kill();
      for (const pid of markedProcesses(marker)) process.kill(pid, 'SIGKILL');
      ws.remove();
    }
  });

  it('wg build: the target fails with the changed files named, exit 1, nothing stored or materialized', async () => {
    const marker = randomUUID();
    const { ws, started, release } = slowWorkspace(marker);
    try {
      const running = ws.run(['build', '--json', '//slow']);
      await until('//slow:cpu to start', BUILD_MS, () => fs.existsSync(started));
      ws.write('src/s/s.txt', 'new\n');
      fs.writeFileSync(release, '');
      const r = await running;
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^\[\d\d:\d\d:\d\d\] FAILED \/\/slow:cpu: sources changed while \/\/slow:cpu was building \(src\/s\/s\.txt\); not cached$/m);
      assert.match(r.stderr, /^wg: 0 built, 0 cached, 1 failed, 0 skipped in /m);
      const result = JSON.parse(r.stdout) as BuildJson;
      assert.deepEqual(statuses(result), { '//slow:cpu': 'failed' });
      assert.equal(result.targets[0]!.error, 'sources changed while //slow:cpu was building (src/s/s.txt); not cached');
      assert.equal(fs.existsSync(ws.path('wg-out/out/slow.cpu.out.txt')), false, 'the discarded result was materialized');
      assert.deepEqual(fs.readdirSync(path.join(ws.cacheDir, 'sandbox')), [], 'the discarded sandbox was kept');
      // Neither the old key (old content back) nor the new one has an entry.
      ws.write('src/s/s.txt', 'old\n');
      assert.deepEqual(statuses(await ws.build(['--dry-run', '//slow'])), { '//slow:cpu': 'would-build' });
      ws.write('src/s/s.txt', 'new\n');
      assert.deepEqual(statuses(await ws.build(['--dry-run', '//slow'])), { '//slow:cpu': 'would-build' });
      // Built again undisturbed, it is stored.
      const again = await ws.build(['//slow']);
      assert.deepEqual(statuses(again), { '//slow:cpu': 'built' });
      assert.equal(ws.read('wg-out/out/slow.cpu.out.txt'), 'new\n');
    } finally {
      for (const pid of markedProcesses(marker)) process.kill(pid, 'SIGKILL');
      ws.remove();
    }
  });
});
