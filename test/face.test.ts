// The build's face: plain timestamped lines in CI (exact, timestamps and durations masked), the live status block
// in a real terminal (tmux runs wg; its screen is read with capture-pane), the critical path in the summary, the
// dry run's estimates from history, and the --profile trace file.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';

import { REPO, TempWorkspace, WG_BIN } from './rig.js';

/** `[12:03:04] ` → `[T] `, `in 3.1s` → `in Ns`, sandbox paths → `SANDBOX`: what stays is what must not change. */
function mask(text: string): string {
  return text
    .replace(/^\[\d\d:\d\d:\d\d\] /gm, '[T] ')
    .replace(/\b\d+\.\ds\b/g, 'Ns')
    .replace(/key [0-9a-f]{64}/g, 'key KEY')
    .replace(/inspection: .*$/gm, 'inspection: SANDBOX');
}

describe('plain lines (CI, pipes)', () => {
  const moduleUrl = (name: string): string => JSON.stringify(pathToFileURL(path.join(REPO, 'dist', 'engine', name)).href);
  /**
   * An ES module's text that imports engine/stderr-lines.js and engine/stdio-write.js, counts the writes to stderr
   * in `writes` (those to file descriptor 2, and those through process.stderr, where a failed write sends the rest),
   * then runs `body`.
   */
  const countingWrites = (body: string): string => `import { writeLine, writeLineSoon } from ${moduleUrl('stderr-lines.js')};
import { settled } from ${moduleUrl('stdio-write.js')};
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
const writes = [];
const realWriteSync = fs.writeSync;
fs.writeSync = (fd, ...rest) => { if (fd === 2) writes.push('fd'); return realWriteSync(fd, ...rest); };
syncBuiltinESMExports();
const real = process.stderr.write.bind(process.stderr);
process.stderr.write = (text) => { writes.push('stream'); return real(text); };
${body}`;
  const withLines = (body: string) =>
    spawnSync(process.execPath, ['--input-type=module', '-e', countingWrites(body)], { encoding: 'utf8' });

  it('gathers step lines into one write, writes any other line at once after them, and writes what waits on the way out', () => {
    const gathered = withLines(`for (let i = 0; i < 100; i++) writeLineSoon('step ' + i);
writeLine('summary');
process.stdout.write(writes.join(','));
writeLineSoon('last');`);
    assert.equal(gathered.status, 0, gathered.stderr);
    assert.equal(gathered.stdout, 'fd');
    assert.equal(gathered.stderr, `${Array.from({ length: 100 }, (_, i) => `step ${i}\n`).join('')}summary\nlast\n`);

    const exited = withLines(`writeLineSoon('before exit'); process.exit(3);`);
    assert.equal(exited.status, 3);
    assert.equal(exited.stderr, 'before exit\n');

    // A line waits a moment, not until something else is written.
    const waited = withLines(`writeLineSoon('soon');
setTimeout(() => process.stdout.write(writes.join(',')), 300);`);
    assert.equal(waited.stdout, 'fd');
    assert.equal(waited.stderr, 'soon\n');
  });

  it('hands what a full non-blocking pipe does not take to process.stderr, whole and in order', () => {
    // Python makes the pipe: Node's spawn gives a child blocking stdio. It reads only once the child is stuck.
    const child = countingWrites(`writeLine('a'.repeat(300000));
writeLine('after');
writes.push(String(settled()));
process.on('exit', () => realWriteSync(1, writes.concat(String(settled())).join(',')));`);
    const python = `import os, subprocess, sys, time
r, w = os.pipe()
os.set_blocking(w, False)
p = subprocess.Popen([sys.argv[1], '--input-type=module', '-e', sys.argv[2]], stderr=w, stdout=subprocess.PIPE)
os.close(w)
time.sleep(0.5)
got = b''
while True:
    chunk = os.read(r, 65536)
    if not chunk:
        break
    got += chunk
out = p.stdout.read().decode()
print(p.wait(), out, len(got), got == b'a' * 300000 + b'\\nafter\\n')`;
    const r = spawnSync('python3', ['-c', python, process.execPath, child], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    // How much the first write takes is the pipe's size; the rest, and every line after, go through the stream,
    // which holds them (not settled: an exit now would lose them) until the reader drains the pipe.
    assert.match(r.stdout, /^0 (fd,)+stream,stream,false,true 300007 True\n$/);
  });

  it('prints one timestamped line per target event, the critical path and the counts', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `variants:
  cpu: {}
packages:
  c: {rule: command, cmd: "sleep 0.3; echo c > c.out", outs: [c.out]}
  b: {rule: command, cmd: "sleep 0.3; echo b > b.out", outs: [b.out], deps: [c]}
  a: {rule: command, cmd: "echo a > a.out", outs: [a.out], deps: [b]}
  bad: {rule: command, cmd: "echo one; echo two >&2; exit 3"}
`,
    });
    try {
      const r = await ws.run(['build', '//a:cpu'], { env: { CI: 'true' } });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /^\[\d\d:\d\d:\d\d\] built \/\/c:cpu in \d+\.\ds$/m);
      assert.equal(
        mask(r.stderr),
        `wg: 3 targets: 0 cached, 3 to build
[T] building //c:cpu
[T] built //c:cpu in Ns
[T] building //b:cpu
[T] built //b:cpu in Ns
[T] building //a:cpu
[T] built //a:cpu in Ns
wg: critical path Ns (3 targets):
  Ns  //c:cpu
  Ns  //b:cpu
  Ns  //a:cpu
wg: 3 built, 0 cached, 0 failed, 0 skipped in Ns
`,
      );

      const failed = await ws.run(['build', '//bad:cpu'], { env: { CI: 'true' } });
      assert.equal(failed.code, 1, failed.stderr);
      assert.equal(
        mask(failed.stderr),
        `wg: 1 target: 0 cached, 1 to build
[T] building //bad:cpu
[T] FAILED //bad:cpu: command failed: sh exited with code 3
  | # //bad:cpu  key KEY
  | # MAX_JOBS=1
  | $ sh -c 'echo one; echo two >&2; exit 3'
  | one
  | two
  | # FAILED: command failed: sh exited with code 3
  | # sandbox kept for inspection: SANDBOX
  full log: wg-out/logs/bad.cpu.log
wg: 0 built, 0 cached, 1 failed, 0 skipped in Ns
`,
      );
    } finally {
      ws.remove();
    }
  });

  it('the critical path follows the dependency that finished last, not the one declared first', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `variants:
  cpu: {}
packages:
  quick: {rule: command, cmd: "echo q > q.out", outs: [q.out]}
  long: {rule: command, cmd: "sleep 0.6; echo l > l.out", outs: [l.out]}
  top: {rule: command, cmd: "echo t > t.out", outs: [t.out], deps: [quick, long]}
`,
    });
    try {
      const r = await ws.run(['build', '-j', '2'], { env: { CI: 'true' } });
      assert.equal(r.code, 0, r.stderr);
      assert.match(mask(r.stderr), /^wg: critical path Ns \(2 targets\):\n  Ns  \/\/long:cpu\n  Ns  \/\/top:cpu\nwg: 3 built/m);
      const again = await ws.run(['build', '-j', '2'], { env: { CI: 'true' } });
      assert.equal(again.code, 0, again.stderr);
      assert.doesNotMatch(again.stderr, /critical path/, 'nothing was built, so there is no critical path');
    } finally {
      ws.remove();
    }
  });

  it('--dry-run lists what would build with the duration remembered from the last build, else ?', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `variants:
  cpu: {}
packages:
  old: {rule: command, cmd: "sleep 0.4; echo o > o.out", outs: [o.out]}
  same: {rule: command, cmd: "echo s > s.out", outs: [s.out]}
`,
    });
    try {
      const first = await ws.build();
      const took = first.targets.find((t) => t.label === '//old:cpu')!;
      ws.write('BUILD.yaml', ws.read('BUILD.yaml').replace('sleep 0.4;', 'sleep 0.5;') + '  new: {rule: command, cmd: "true"}\n');
      const r = await ws.run(['build', '--dry-run'], { env: { CI: 'true' } });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stderr.split('\n');
      const est = lines.find((l) => l.startsWith('would build //old:cpu'));
      assert.match(est ?? '', /^would build \/\/old:cpu  [0-9a-f]{12}  ~(\d+\.\d)s$/);
      const shown = /~(\d+\.\d)s$/.exec(est!)![1]!;
      const durationMs = (took as unknown as { durationMs: number }).durationMs;
      assert.ok(Math.abs(Number(shown) * 1000 - durationMs) <= 100, `${shown}s is not the remembered ${durationMs}ms`);
      assert.match(r.stderr, /^would build \/\/new:cpu  [0-9a-f]{12}  \?$/m);
      assert.match(r.stderr, /^cached      \/\/same:cpu  [0-9a-f]{12}$/m);
      assert.match(r.stderr, /^wg: estimated build time ~\d+\.\ds of work \(1 target never built before: \?\)$/m);
      const json = await ws.build(['--dry-run']);
      const old = json.targets.find((t) => t.label === '//old:cpu') as unknown as { estimateMs: number | null };
      assert.equal((old.estimateMs! / 1000).toFixed(1), shown);
      assert.equal((json.targets.find((t) => t.label === '//new:cpu') as unknown as { estimateMs: number | null }).estimateMs, null);
    } finally {
      ws.remove();
    }
  });
});

/** A tmux server of the test's own (its own socket), running one command in a window of a fixed size. */
class Tmux {
  constructor(private readonly socket: string) {}

  private tmux(args: string[]): string {
    const r = spawnSync('tmux', ['-S', this.socket, ...args], { encoding: 'utf8', env: { ...process.env, TERM: 'xterm' } });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  start(command: string, cols: number, rows: number): void {
    this.tmux(['new-session', '-d', '-x', String(cols), '-y', String(rows), command]);
  }

  /** The window's text as a person sees it, scrollback included, trailing blank lines dropped. */
  screen(): string {
    return this.tmux(['capture-pane', '-p', '-S', '-']).replace(/\n+$/, '\n');
  }

  async waitFor(what: string, test: (screen: string) => boolean, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let screen = '';
    while (Date.now() < deadline) {
      screen = this.screen();
      if (test(screen)) return screen;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}; the screen:\n${screen}`);
  }

  kill(): void {
    spawnSync('tmux', ['-S', this.socket, 'kill-server']);
  }
}

describe('the live status block (a real terminal)', () => {
  it('redraws one block in place with running actions, elapsed times and last log lines; finished targets scroll above', async () => {
    const ws = TempWorkspace.create();
    const gate = path.join(ws.dir, '..', 'gate');
    fs.mkdirSync(gate);
    // `slow` prints a line, waits for the test to open gate 1, prints another (with an escape sequence that would
    // move the cursor to the top of the window if it reached the terminal), waits for gate 2. Both loops are bounded.
    const wait = (n: number): string => `i=0; while [ ! -e "$GATE/${n}" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done`;
    ws.write(
      'BUILD.yaml',
      `variants:
  cpu: {}
packages:
  pre: {rule: command, cmd: "echo p > p.out", outs: [p.out]}
  fast: {rule: command, cmd: "echo compiling fast; echo f > f.out", outs: [f.out]}
  slow:
    rule: command
    env: {GATE: ${JSON.stringify(gate)}}
    cmd: 'echo "step 1: waiting"; ${wait(1)}; printf "step 2: \\033[H\\033[31mstill waiting\\n"; ${wait(2)}; echo s > s.out'
    outs: [s.out]
  top: {rule: command, cmd: "echo t > t.out", outs: [t.out], deps: [fast, slow]}
`,
    );
    const tmux = new Tmux(path.join(ws.dir, '..', 'tmux.sock'));
    try {
      await ws.build(['//pre:cpu']);
      const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
      tmux.start(
        `cd ${q(ws.dir)} && env -u CI WG_CACHE_DIR=${q(ws.cacheDir)} ${q(process.execPath)} ${q(WG_BIN)} build -j 2; echo "wg exited $?"; sleep 600`,
        100,
        30,
      );
      const runningLine = (screen: string): string | undefined => screen.split('\n').find((l) => l.startsWith('  //slow:cpu'));

      // Anchored: before its first log line the block shows the command, which itself contains "step 1: waiting".
      let screen = await tmux.waitFor('slow running and fast built', (s) => s.includes('built //fast:cpu') && /\ds {2}step 1: waiting$/.test(runningLine(s) ?? ''));
      const lines = screen.trimEnd().split('\n');
      assert.equal(lines[0], 'wg: 4 targets: 1 cached, 3 to build', screen);
      assert.match(lines[1]!, /^built \/\/fast:cpu in \d+\.\ds$/, screen);
      assert.match(lines[2]!, /^wg: 1\/3 done, 1 cached, 1 running \(\d+s\)$/, screen);
      assert.match(lines[3]!, /^ {2}\/\/slow:cpu {2} +\d+s {2}step 1: waiting$/, screen);
      assert.equal(lines.length, 4, screen);

      // The elapsed time moves without any event: the block is redrawn by itself, in place (still one header).
      screen = await tmux.waitFor('the elapsed time to reach 2s', (s) => /^ {2}\/\/slow:cpu +([2-9]|\d\d+)s /m.test(s));
      assert.equal(screen.split('\n').filter((l) => l.startsWith('wg: 1/3 done')).length, 1, screen);

      fs.writeFileSync(path.join(gate, '1'), '');
      screen = await tmux.waitFor('the new last log line', (s) => /step 2: still waiting$/.test(runningLine(s) ?? ''));
      assert.equal(screen.split('\n')[0], 'wg: 4 targets: 1 cached, 3 to build', `the log line cleared the screen:\n${screen}`);
      assert.match(runningLine(screen)!, /^ {2}\/\/slow:cpu {2} +\d+s {2}step 2: still waiting$/);

      fs.writeFileSync(path.join(gate, '2'), '');
      screen = await tmux.waitFor('wg to exit', (s) => s.includes('wg exited'));
      assert.match(
        screen,
        new RegExp(
          '^wg: 4 targets: 1 cached, 3 to build\n' +
            'built //fast:cpu in \\d+\\.\\ds\n' +
            'built //slow:cpu in \\d+\\.\\ds\n' +
            'built //top:cpu in \\d+\\.\\ds\n' +
            'wg: critical path \\d+\\.\\ds \\(2 targets\\):\n' +
            ' +\\d+\\.\\ds {2}//slow:cpu\n' +
            ' +\\d+\\.\\ds {2}//top:cpu\n' +
            'wg: 3 built, 1 cached, 0 failed, 0 skipped in \\d+\\.\\ds\n' +
            'wg exited 0\n$',
        ),
        'the block is gone and only the finished lines and the summary remain',
      );
    } finally {
      tmux.kill();
      ws.remove();
    }
  });
});

interface Trace {
  traceEvents: { name: string; ph: string; pid: number; tid: number; ts?: number; dur?: number; args?: Record<string, unknown> }[];
}

describe('--profile', () => {
  it('writes a Chrome trace: one X event per action, on CPU slot lanes or on GPU lanes named by device', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `variants:
  cpu: {}
packages:
  g1: {rule: command, cmd: "sleep 0.2; echo $CUDA_VISIBLE_DEVICES > g.out", outs: [g.out], resources: {gpus: 1}}
  g2: {rule: command, cmd: "sleep 0.2; echo $CUDA_VISIBLE_DEVICES > g.out", outs: [g.out], resources: {gpus: 1}}
  c1: {rule: command, cmd: "sleep 0.2; echo c > c.out", outs: [c.out]}
  c2: {rule: command, cmd: "sleep 0.2; echo c > c.out", outs: [c.out], deps: [c1]}
  broken: {rule: command, cmd: "exit 1"}
`,
    });
    try {
      const file = path.join(ws.dir, 'trace.json');
      const r = await ws.build(['--profile', file, '--gpus', '0,3', '-j', '2', '--keep-going'], { expectCode: 1 });
      const trace = JSON.parse(fs.readFileSync(file, 'utf8')) as Trace;
      const xs = trace.traceEvents.filter((e) => e.ph === 'X');
      assert.deepEqual(xs.map((e) => e.name).sort(), ['//broken:cpu', '//c1:cpu', '//c2:cpu', '//g1:cpu', '//g2:cpu']);
      const lane = new Map(trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => [e.tid, e.args!['name']]));
      const keys = new Map(r.targets.map((t) => [t.label, t.key]));
      for (const x of xs) {
        assert.ok(Number.isInteger(x.ts) && x.ts! >= 0 && Number.isInteger(x.dur) && x.dur! > 0, JSON.stringify(x));
        assert.equal(x.args!['label'], x.name);
        assert.equal(x.args!['key'], keys.get(x.name));
        assert.equal(x.args!['status'], x.name === '//broken:cpu' ? 'failed' : 'built');
        const gpus = x.args!['gpus'] as number[];
        if (x.name.startsWith('//g')) {
          assert.equal(gpus.length, 1);
          assert.equal(lane.get(x.tid), `GPU ${gpus[0]}`);
        } else {
          assert.deepEqual(gpus, []);
          assert.match(String(lane.get(x.tid)), /^cpu slot \d$/);
        }
      }
      // Every GPU lane is named by the device of the actions drawn on it, and only devices that were used have one.
      const used = new Set(xs.filter((x) => x.name.startsWith('//g')).map((x) => `GPU ${(x.args!['gpus'] as number[])[0]}`));
      assert.deepEqual([...lane.values()].filter((n) => String(n).startsWith('GPU')).sort(), [...used].sort());
      assert.ok([...used].every((n) => n === 'GPU 0' || n === 'GPU 3'), [...used].join());
      // c2 waited for c1: on the timeline it starts after c1 ends.
      const c1 = xs.find((x) => x.name === '//c1:cpu')!;
      const c2 = xs.find((x) => x.name === '//c2:cpu')!;
      assert.ok(c2.ts! >= c1.ts! + c1.dur!, 'c2 starts before c1 ended');
      // Two actions on the same lane never overlap.
      for (const a of xs) {
        for (const b of xs) {
          if (a === b || a.tid !== b.tid) continue;
          assert.ok(a.ts! + a.dur! <= b.ts! || b.ts! + b.dur! <= a.ts!, `${a.name} and ${b.name} overlap on lane ${a.tid}`);
        }
      }
    } finally {
      ws.remove();
    }
  });

  it('refuses a profile path whose folder does not exist before building anything', async () => {
    const ws = TempWorkspace.create({ 'BUILD.yaml': 'variants:\n  cpu: {}\npackages:\n  a: {rule: command, cmd: "true"}\n' });
    try {
      const r = await ws.run(['build', '--profile', 'no/such/trace.json']);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, `wg: error: --profile no/such/trace.json: folder ${path.join(ws.dir, 'no', 'such')} does not exist\n`);
      assert.equal(fs.existsSync(ws.path('wg-out')), false);
    } finally {
      ws.remove();
    }
  });
});
