// Env of a build: env files (fromager's syntax, `$NAME` expansion, exact diagnostics), the precedence of every env
// source, pass_env (values in the key), undeclared variables kept out, and secret_env: reaching the action but
// never the key, the cache (LMDB and CAS), wg-out, wg's stdout/stderr or --json.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { expandEnvFile, parseEnvFile } from '../engine/env-file.js';
import { Redactor, redact } from '../engine/redact.js';
import { TempWorkspace, statuses } from './rig.js';

function parse(text: string | Uint8Array) {
  return parseEnvFile('envs/p.env', typeof text === 'string' ? Buffer.from(text, 'utf8') : text);
}

/** The file's values expanded against `declared`, or its rendered diagnostics (`L:C message`). */
function values(text: string | Uint8Array, declared: Record<string, string> = {}): Record<string, string> | string[] {
  const p = parse(text);
  const e = p.diagnostics.length > 0 ? { env: {}, diagnostics: p.diagnostics } : expandEnvFile(p.env, declared);
  if (e.diagnostics.length > 0) return e.diagnostics.map((d) => `${d.at!.line}:${d.at!.col}-${d.at!.endCol} ${d.message}`);
  return e.env;
}

describe('env file syntax', () => {
  test('whitespace is trimmed, quotes and inner spaces kept, comments and blank lines skipped', () => {
    assert.deepEqual(values('  A =  1 2  \n\n# X=no\n   # also no\nB="x  y"\nC=\'z\'\nD=a=b\nE=\n'), {
      A: '1 2',
      B: '"x  y"',
      C: "'z'",
      D: 'a=b',
      E: '',
    });
  });

  test('$NAME and ${NAME} come from earlier lines first, then the declared env; a later line wins', () => {
    assert.deepEqual(values('A=one\nB=$A-${A}x\nA=two\nC=$A/$D/${D}\n', { A: 'declared', D: 'dd' }), {
      A: 'two',
      B: 'one-onex',
      C: 'two/dd/dd',
    });
    // A line sees the declared value of its own name until it sets it (CFLAGS=$CFLAGS -O3).
    assert.deepEqual(values('CFLAGS=$CFLAGS -O3\n', { CFLAGS: '-g' }), { CFLAGS: '-g -O3' });
  });

  test('${NAME:-default} for a missing name, $$ for a literal dollar; an unknown name is an error', () => {
    assert.deepEqual(values('A=${NOPE:-fallback}\nB=${NOPE:-}\nC=$$ORIGIN/lib\nD=${A:-unused}\n'), {
      A: 'fallback',
      B: '',
      C: '$ORIGIN/lib',
      D: 'fallback',
    });
    assert.deepEqual(values('A=x\nB=-Wl,$ORIGIN ${TORCH_CUDA_ARCH_LIST}\n'), [
      '2:7-14 "ORIGIN" is not defined: an env file sees its own earlier lines and the env declared before it (write ${ORIGIN:-} for an empty default, $$ for a literal "$")',
      '2:15-38 "TORCH_CUDA_ARCH_LIST" is not defined: an env file sees its own earlier lines and the env declared before it (write ${TORCH_CUDA_ARCH_LIST:-} for an empty default, $$ for a literal "$")',
    ]);
  });

  test('a byte-order mark and CRLF line ends give the same values as a plain LF file', () => {
    const lf = values('A=1\nB=$A 2\n');
    assert.deepEqual(values('\uFEFFA=1\r\nB=$A 2\r\n'), lf);
    assert.deepEqual(lf, { A: '1', B: '1 2' });
  });

  test('every bad line is reported with its column', () => {
    assert.deepEqual(values('not a line\n1X=2\n=3\nD=${B\nE=$1\nF=${A B}\nG=a\rb\nH=\0\n'), [
      '1:1-11 expected NAME=value, got "not a line"',
      '2:1-3 "1X" is not a valid env variable name (letters, digits and "_", not starting with a digit)',
      '3:1-2 a variable name must come before "="',
      '4:3-5 unterminated "${": no closing "}" on this line',
      '5:3-4 "$" must start $NAME, ${NAME} or ${NAME:-default}; write $$ for a literal "$"',
      '6:3-9 "${A B}" must name a variable: ${NAME} or ${NAME:-default}',
      '7:4-5 a carriage return inside a line (only CRLF line ends are allowed)',
      '8:3-4 a NUL character (env values cannot hold one)',
    ]);
    assert.deepEqual(values(Buffer.from([0x41, 0x3d, 0x31, 0x0a, 0x42, 0x3d, 0xff, 0x0a])), ['2:3-4 not UTF-8 text']);
  });
});

describe('redaction', () => {
  const secrets = [
    { name: 'T', value: 'hunter2' },
    { name: 'LONG', value: 'hunter2-and-more' },
  ];

  test('a value split across writes at every position is still redacted', () => {
    const text = 'a hunter2 b hunter2-and-more c hunter c';
    const expected = 'a [secret T] b [secret LONG] c hunter c';
    assert.equal(redact(text, secrets), expected);
    for (let cut = 0; cut <= text.length; cut++) {
      for (let cut2 = cut; cut2 <= text.length; cut2 += 3) {
        const out: Buffer[] = [];
        const r = new Redactor(secrets, (b) => out.push(b));
        r.write(text.slice(0, cut));
        r.write(text.slice(cut, cut2));
        r.write(text.slice(cut2));
        r.end();
        assert.equal(Buffer.concat(out).toString(), expected, `cut at ${cut}, ${cut2}`);
      }
    }
  });

  test('a prefix of a secret at the end of the stream is written as it is', () => {
    assert.equal(redact('ends with hunt', secrets), 'ends with hunt');
  });
});

const workspaces: TempWorkspace[] = [];
after(() => {
  for (const ws of workspaces) ws.remove();
});
function workspace(files: Record<string, string>): TempWorkspace {
  const ws = TempWorkspace.create(files);
  workspaces.push(ws);
  return ws;
}

/** A command target in variant `cpu` that records the named variables it sees (or `-` when unset) in seen.txt. */
function recorder(names: string[], extra = ''): string {
  const cmd = `printf '%s\\n' ${names.map((n) => `"${n}=\${${n}-unset}"`).join(' ')} > seen.txt`;
  return `  lib:\n    rule: command\n    source: src\n    cmd: ${JSON.stringify(cmd)}\n    outs: [seen.txt]\n${extra}`;
}

function seen(ws: TempWorkspace): Record<string, string> {
  const text = ws.read('wg-out/out/lib.cpu.seen.txt');
  return Object.fromEntries(
    text
      .trimEnd()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

describe('env sources of a build', () => {
  test('precedence: variant env < package env < envs/<pkg>.env < versions < envs/<variant>/<pkg>.env < variants override', async () => {
    // Each layer sets its own variable and overrides every earlier one's `W*` variables; CHAIN grows in order.
    const ws = workspace({
      'src/f.txt': 'x\n',
      'BUILD.yaml':
        'variants:\n  cpu:\n    env: {W1: variant, W2: variant, W3: variant, W4: variant, W5: variant, W6: variant, CHAIN: v}\n' +
        'packages:\n' +
        recorder(
          ['W1', 'W2', 'W3', 'W4', 'W5', 'W6', 'CHAIN', 'Q', 'UNDECLARED'],
          '    version: "2.0"\n' +
            '    env: {W2: package, W3: package, W4: package, W5: package, W6: package, CHAIN: p}\n' +
            '    versions: {"2.0": {env: {W4: version, W5: version, W6: version}}, ">=3": {env: {W4: wrong}}}\n' +
            '    variants: {cpu: {env: {W6: override}}}\n',
        ),
      'envs/lib.env': 'W3=file\nW4=file\nW5=file\nW6=file\nCHAIN=${CHAIN}+file\nQ="a  b"\n',
      'envs/cpu/lib.env': 'W5=variant-file\nW6=variant-file\nCHAIN=$CHAIN+variant-file\n',
    });
    await ws.build([], { env: { UNDECLARED: 'leaked' } });
    assert.deepEqual(seen(ws), {
      W1: 'variant',
      W2: 'package',
      W3: 'file',
      W4: 'version',
      W5: 'variant-file',
      W6: 'override',
      CHAIN: 'p+file+variant-file',
      Q: '"a  b"',
      UNDECLARED: 'unset',
    });
  });

  test('env file mistakes are reported with the file, line, column and excerpt before anything runs', async () => {
    const ws = workspace({
      'src/f.txt': 'x\n',
      'BUILD.yaml': 'variants:\n  cpu: {}\npackages:\n' + recorder(['A']),
      'envs/lib.env': '\uFEFFA=1\r\nB = ${A\r\n',
      'envs/cpu/lib.env': 'C=$NOPE\n',
    });
    const r = await ws.run(['build']);
    assert.equal(
      r.stderr,
      `envs/cpu/lib.env:1:3: error: "NOPE" is not defined: an env file sees its own earlier lines and the env declared before it (write \${NOPE:-} for an empty default, $$ for a literal "$")
 1 | C=$NOPE
   |   ~~~~~
envs/lib.env:2:5: error: unterminated "\${": no closing "}" on this line
 2 | B = \${A
   |     ~~
wg: 2 errors in envs/cpu/lib.env, envs/lib.env; nothing was built
`,
    );
    assert.equal(r.code, 2);
    assert.equal(fs.existsSync(ws.path('wg-out')), false);
  });

  test('env files nobody reads are warned about', async () => {
    const ws = workspace({
      'src/f.txt': 'x\n',
      'BUILD.yaml': 'variants:\n  cpu: {}\npackages:\n' + recorder(['A']),
      'envs/libb.env': 'A=1\n',
      'envs/cpx/lib.env': 'A=1\n',
    });
    const r = await ws.build(['--dry-run']);
    assert.deepEqual(
      r.stderr.split('\n').filter((l) => l.startsWith('warning:')),
      [
        'warning: envs/cpx/ is not a variant; its env files are not used (did you mean "cpu"?)',
        'warning: envs/libb.env names no package; it is not used (did you mean "lib"?)',
      ],
    );
  });

  test('pass_env values and declared values are in the key; undeclared variables are not', async () => {
    const ws = workspace({
      'src/f.txt': 'x\n',
      'BUILD.yaml': 'variants:\n  cpu: {}\npackages:\n' + recorder(['PASSED', 'DECLARED', 'UNDECLARED'], '    env: {DECLARED: one}\n    pass_env: [PASSED]\n'),
    });
    const base = await ws.build([], { env: { PASSED: 'p1', UNDECLARED: 'u1' } });
    assert.deepEqual(seen(ws), { PASSED: 'p1', DECLARED: 'one', UNDECLARED: 'unset' });
    const key = base.targets[0]!.key;

    const other = await ws.build([], { env: { PASSED: 'p1', UNDECLARED: 'u2' } });
    assert.deepEqual(statuses(other), { '//lib:cpu': 'cached' }, 'an undeclared variable changed the key');

    const passed = await ws.build([], { env: { PASSED: 'p2' } });
    assert.deepEqual(statuses(passed), { '//lib:cpu': 'built' });
    assert.notEqual(passed.targets[0]!.key, key);
    assert.equal(seen(ws)['PASSED'], 'p2');

    const unset = await ws.build(['--dry-run']);
    assert.deepEqual(statuses(unset), { '//lib:cpu': 'would-build' }, 'an unset pass_env variable must be a key of its own');

    ws.write('envs/lib.env', 'DECLARED=two\n');
    const declared = await ws.build(['--dry-run'], { env: { PASSED: 'p2' } });
    assert.deepEqual(statuses(declared), { '//lib:cpu': 'would-build' }, 'an env file value did not change the key');
  });

  test('pass_env and secret_env mistakes', async () => {
    const ws = workspace({
      'src/f.txt': 'x\n',
      'BUILD.yaml':
        'variants:\n  cpu: {}\npackages:\n' +
        recorder(['A'], '    env: {A: declared}\n    pass_env: [A, PATH, SHARED]\n    secret_env: [SHARED, WG_X]\n'),
    });
    const r = await ws.run(['build']);
    assert.equal(
      r.stderr,
      `BUILD.yaml:10:16: error: "A" of //lib:cpu is both declared in env and listed in pass_env
 10 |     pass_env: [A, PATH, SHARED]
    |                ^
BUILD.yaml:10:19: error: "PATH" in pass_env of //lib:cpu is set by wg itself
 10 |     pass_env: [A, PATH, SHARED]
    |                   ~~~~
BUILD.yaml:11:18: error: "SHARED" of //lib:cpu is listed in both pass_env and secret_env
 11 |     secret_env: [SHARED, WG_X]
    |                  ~~~~~~
BUILD.yaml:11:26: error: "WG_X" in secret_env of //lib:cpu is set by wg itself
 11 |     secret_env: [SHARED, WG_X]
    |                          ~~~~
wg: 4 errors in BUILD.yaml; nothing was built
`,
    );
    assert.equal(r.code, 2);
  });
});

/** Every file under `dir` whose bytes contain `needle`, relative to `dir`. */
function filesContaining(dir: string, needle: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const bytes = Buffer.from(needle);
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((rel) => {
      const abs = path.join(dir, rel);
      const st = fs.lstatSync(abs);
      return st.isFile() && fs.readFileSync(abs).includes(bytes);
    })
    .sort();
}

describe('secret_env', () => {
  const SECRET = `s3cr3t-${process.pid}-${Date.now()}`;
  // What the action writes: the secret in base64, so the test sees that it arrived without storing it as it is.
  const encoded = `${Buffer.from(SECRET).toString('base64')}\n`;
  const yaml =
    'variants:\n  cpu:\n    secret_env: [TOKEN]\npackages:\n' +
    '  lib:\n    rule: command\n    source: src\n' +
    // The secret goes to stdout, to stderr, and (in two writes 0.2s apart) split across chunks of one stream.
    `    cmd: 'echo "token=$TOKEN"; sleep 0.1; echo "err $TOKEN" >&2; sleep 0.1; printf %s "\${TOKEN%????}"; sleep 0.2; printf "%s\\n" "\${TOKEN#\${TOKEN%????}}"; printf %s "$TOKEN" | base64 > seen.txt; test -z "$FAIL"'\n` +
    '    outs: [seen.txt]\n    pass_env: [FAIL]\n';

  test('reaches the action but not the key, the cache, wg-out, the output of wg or --json; changing it rebuilds nothing', async () => {
    const ws = workspace({ 'src/f.txt': 'x\n', 'BUILD.yaml': yaml });
    const r1 = await ws.run(['build', '--json'], { env: { TOKEN: SECRET } });
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(ws.read('wg-out/out/lib.cpu.seen.txt'), encoded, 'the action did not see the secret');
    assert.equal(
      ws.read('wg-out/logs/lib.cpu.log').split('\n').slice(3, 6).join('\n'),
      'token=[secret TOKEN]\nerr [secret TOKEN]\n[secret TOKEN]',
    );
    const key = (JSON.parse(r1.stdout) as { targets: { key: string }[] }).targets[0]!.key;

    // A failed build: its log tail is printed, its message goes to --json.
    const r2 = await ws.run(['build', '--json'], { env: { TOKEN: SECRET, FAIL: '1' } });
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /\| token=\[secret TOKEN\]/);

    for (const [where, text] of [
      ['stdout', r1.stdout + r2.stdout],
      ['stderr', r1.stderr + r2.stderr],
    ]) {
      assert.equal(text!.includes(SECRET), false, `the secret is in wg's ${where}`);
    }
    assert.deepEqual(filesContaining(ws.cacheDir, SECRET), [], 'the secret is in the cache');
    assert.deepEqual(filesContaining(ws.path('wg-out'), SECRET), [], 'the secret is in wg-out');
    assert.equal(fs.readFileSync(ws.path('wg-out/logs/lib.cpu.log'), 'utf8').includes('[secret TOKEN]'), true);

    // Another value: same key, nothing rebuilt.
    const r3 = await ws.build([], { env: { TOKEN: 'another-value' } });
    assert.deepEqual(statuses(r3), { '//lib:cpu': 'cached' });
    assert.equal(r3.targets[0]!.key, key);
  });

  test('a secret missing from the environment stops the build before anything runs (a dry run needs none)', async () => {
    const ws = workspace({ 'src/f.txt': 'x\n', 'BUILD.yaml': yaml });
    // The rig passes wg this test's environment, which has no TOKEN.
    assert.equal(process.env['TOKEN'], undefined);
    const r = await ws.run(['build']);
    assert.equal(
      r.stderr,
      `BUILD.yaml:3:18: error: secret "TOKEN" of //lib:cpu is not set in wg's environment
 3 |     secret_env: [TOKEN]
   |                  ~~~~~
wg: 1 error in BUILD.yaml; nothing was built
`,
    );
    assert.equal(r.code, 2);
    assert.equal(fs.existsSync(ws.path('wg-out')), false);
    const dry = await ws.build(['--dry-run']);
    assert.deepEqual(statuses(dry), { '//lib:cpu': 'would-build' });
  });
});
