// Every mistake in BUILD.yaml or on the command line is reported before anything runs, as
// `BUILD.yaml:LINE:COL: error: message`, the source line and a marker under the exact bytes, with exit code 2.
// Each workspace also holds a valid `command` target that would touch a sentinel file outside the workspace if it
// ran; after every case the sentinel must still be missing.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import { TempWorkspace } from './rig.js';

/** A valid target appended after the case's own packages (so it never shifts the line numbers above it). */
function sentinelPackage(sentinel: string): string {
  return `  zz-sentinel:\n    rule: command\n    cmd: [touch, ${JSON.stringify(sentinel)}]\n`;
}

/**
 * Writes `yaml` (which must end inside `packages:`) plus the sentinel target, runs `wg build ARGS`, and checks the
 * whole stderr, the exit code 2, an empty stdout and that nothing ran.
 */
async function expectMistakes(yaml: string, expected: string, args: string[] = [], files: Record<string, string> = {}): Promise<void> {
  const ws = TempWorkspace.create(files);
  const sentinel = path.join(ws.dir, '..', 'sentinel');
  try {
    ws.write('BUILD.yaml', yaml + sentinelPackage(sentinel));
    const r = await ws.run(['build', ...args]);
    assert.equal(r.stderr, expected);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.equal(fs.existsSync(sentinel), false, 'an action ran although BUILD.yaml has mistakes');
  } finally {
    ws.remove();
  }
}

describe('BUILD.yaml mistakes', () => {
  it('a YAML syntax error points at the bracket that is never closed', async () => {
    await expectMistakes(
      `variants:
  cpu: {}
packages:
  a:
    rule: command
    cmd: [echo, hi
`,
      `BUILD.yaml:6:10: error: YAML: "[" is not closed before line 7 (a flow sequence must end with "]", and lines it continues on must be indented further than its key)
 6 |     cmd: [echo, hi
   |          ^
wg: 1 error in BUILD.yaml; nothing was built
`,
    );
  });

  it('a tab used as indentation', async () => {
    await expectMistakes(
      'variants:\n  cpu: {}\npackages:\n  a:\n    rule: command\n\tcmd: echo\n',
      `BUILD.yaml:6:1: error: YAML: Tabs are not allowed as indentation
 6 | \tcmd: echo
   | ^
wg: 1 error in BUILD.yaml; nothing was built
`,
    );
  });

  it('a duplicate key is reported at the second one, naming the line of the first', async () => {
    await expectMistakes(
      `variants:
  cpu: {}
packages:
  a:
    rule: command
    cmd: echo one
    cmd: echo two
`,
      `BUILD.yaml:7:5: error: duplicate key "cmd" (first at line 6)
 7 |     cmd: echo two
   |     ~~~
wg: 1 error in BUILD.yaml; nothing was built
`,
    );
  });

  it('an unknown package field suggests the known one', async () => {
    await expectMistakes(
      `# A comment, so the mistake lands on line 12.
toolchains:
  py:
    python: /usr/bin/python3
variants:
  cpu: {}
packages:
  b:
    rule: command
    cmd: echo b
  a:
    dep: [b]
    rule: command
    cmd: echo a
`,
      `BUILD.yaml:12:5: error: unknown field "dep" in package "a" (did you mean "deps"?)
 12 |     dep: [b]
    |     ~~~
wg: 1 error in BUILD.yaml; nothing was built
`,
    );
  });

  it('an unknown top-level field', async () => {
    await expectMistakes(
      `toolchain:
  py:
    python: /usr/bin/python3
options:
  fast: true
variants:
  cpu: {}
packages:
`,
      `BUILD.yaml:1:1: error: unknown field "toolchain" in BUILD.yaml (did you mean "toolchains"?)
 1 | toolchain:
   | ~~~~~~~~~
BUILD.yaml:4:1: error: unknown field "options" in BUILD.yaml
 4 | options:
   | ~~~~~~~
wg: 2 errors in BUILD.yaml; nothing was built
`,
    );
  });

  it('an unknown rule suggests the known one and lists them all', async () => {
    await expectMistakes(
      `variants:
  cpu: {}
packages:
  a:
    rule: python_whl
    source: src
`,
      `BUILD.yaml:5:11: error: unknown rule "python_whl" in package "a" (did you mean "python_wheel"?); known rules: python_wheel, command, wheel_folder
 5 |     rule: python_whl
   |           ~~~~~~~~~~
wg: 1 error in BUILD.yaml; nothing was built
`,
      [],
      { 'src/setup.py': '' },
    );
  });

  it('wrong types: a string for resources.cpus, a boolean for a command', async () => {
    await expectMistakes(
      `variants:
  cpu: {}
packages:
  a:
    rule: command
    cmd: echo
    resources:
      cpus: "four"
  b:
    rule: command
    cmd: true
`,
      `BUILD.yaml:8:13: error: "cpus" of package "a" must be an integer ≥ 1, got a string
 8 |       cpus: "four"
   |             ~~~~~~
BUILD.yaml:11:10: error: "cmd" of package "b" must be a command string or a list of arguments, got a boolean
 11 |     cmd: true
    |          ~~~~
wg: 2 errors in BUILD.yaml; nothing was built
`,
    );
  });

  it('a bad env variable name', async () => {
    await expectMistakes(
      `variants:
  cpu:
    env:
      CUDA-ARCH: "8.0"
packages:
  a:
    rule: command
    cmd: echo
    env:
      OK_NAME: "1"
      2FAST: "1"
`,
      `BUILD.yaml:4:7: error: "CUDA-ARCH" in "env" of variant "cpu" is not a valid env variable name (letters, digits and "_", not starting with a digit)
 4 |       CUDA-ARCH: "8.0"
   |       ~~~~~~~~~
BUILD.yaml:11:7: error: "2FAST" in "env" of package "a" is not a valid env variable name (letters, digits and "_", not starting with a digit)
 11 |       2FAST: "1"
    |       ~~~~~
wg: 2 errors in BUILD.yaml; nothing was built
`,
    );
  });

  it("unknown variant names in a package's variants, list and map forms", async () => {
    await expectMistakes(
      `variants:
  cpu: {}
  cuda124: {}
packages:
  a:
    rule: command
    cmd: echo
    variants: [cpu, cdua124]
  b:
    rule: command
    cmd: echo
    variants:
      cuda124: {}
      cpux:
        env: {X: "1"}
`,
      `BUILD.yaml:8:21: error: package "a" names unknown variant "cdua124" (did you mean "cuda124"?)
 8 |     variants: [cpu, cdua124]
   |                     ~~~~~~~
BUILD.yaml:14:7: error: package "b" names unknown variant "cpux" (did you mean "cpu"?)
 14 |       cpux:
    |       ~~~~
wg: 2 errors in BUILD.yaml; nothing was built
`,
    );
  });

  it('a variant using an unknown toolchain', async () => {
    await expectMistakes(
      `toolchains:
  py311:
    python: /usr/bin/python3
variants:
  cpu:
    toolchain: py31
packages:
`,
      `BUILD.yaml:6:16: error: variant "cpu" uses unknown toolchain "py31" (did you mean "py311"?)
 6 |     toolchain: py31
   |                ~~~~
wg: 1 error in BUILD.yaml; nothing was built
`,
    );
  });

  it('dependencies: an unknown package, an unknown variant in a label, a package not built in that variant', async () => {
    // Each package is built in two variants: a mistake that does not depend on the variant is reported once.
    await expectMistakes(
      `variants:
  cpu: {}
  cuda: {}
packages:
  fastmath:
    rule: command
    cmd: echo
    variants: [cpu]
  a:
    rule: command
    cmd: echo
    deps: [fastmat]
  b:
    rule: command
    cmd: echo
    deps: ["//fastmath:cpy"]
  c:
    rule: command
    cmd: echo
    deps: [fastmath]
`,
      `BUILD.yaml:12:12: error: package "a" depends on unknown package "fastmat" (did you mean "fastmath"?)
 12 |     deps: [fastmat]
    |            ~~~~~~~
BUILD.yaml:16:12: error: package "b" depends on //fastmath:cpy, but there is no variant "cpy" (did you mean "cpu"?)
 16 |     deps: ["//fastmath:cpy"]
    |            ~~~~~~~~~~~~~~~~
BUILD.yaml:20:12: error: //c:cuda depends on //fastmath:cuda, but package "fastmath" is not built in variant "cuda"
 20 |     deps: [fastmath]
    |            ~~~~~~~~
wg: 3 errors in BUILD.yaml; nothing was built
`,
    );
  });

  it('a missing source folder and a missing patch file', async () => {
    await expectMistakes(
      `variants:
  cpu: {}
packages:
  a:
    rule: command
    cmd: echo
    source: examples/a
    patches:
      - patches/a/0001-present.patch
      - patches/a/0002-missing.patch
`,
      `BUILD.yaml:7:13: error: source folder "examples/a" of package "a" does not exist
 7 |     source: examples/a
   |             ~~~~~~~~~~
BUILD.yaml:10:9: error: patch "patches/a/0002-missing.patch" of package "a" does not exist
 10 |       - patches/a/0002-missing.patch
    |         ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
wg: 2 errors in BUILD.yaml; nothing was built
`,
      [],
      { 'patches/a/0001-present.patch': '' },
    );
  });

  it('a dependency cycle prints the whole path and each edge with its position', async () => {
    await expectMistakes(
      `variants:
  cpu: {}
packages:
  a:
    rule: command
    cmd: echo
    deps: [b]
  b:
    rule: command
    cmd: echo
    deps: [c]
  c:
    rule: command
    cmd: echo
    deps: [a]
`,
      `BUILD.yaml:7:12: error: dependency cycle: //a:cpu -> //b:cpu -> //c:cpu -> //a:cpu
 7 |     deps: [b]
   |            ^
  BUILD.yaml:7:12: //a:cpu depends on //b:cpu
  BUILD.yaml:11:12: //b:cpu depends on //c:cpu
  BUILD.yaml:15:12: //c:cpu depends on //a:cpu
wg: 1 error in BUILD.yaml; nothing was built
`,
    );
  });

  it('two targets whose dotted names give them one file in wg-out are refused, once per pair, at both', async () => {
    // //a.b:c and //a:b.c would share their log and their output; //p:x's y.txt and //p:x.y's txt are p.x.y.txt.
    // zope.interface holds a dot too but clashes with nothing, and is not reported.
    await expectMistakes(
      `variants:
  c: {}
  b.c: {}
  x: {}
  x.y: {}
packages:
  a.b:
    rule: command
    cmd: echo
    outs: [out.txt]
    variants: [c]
  zope.interface:
    rule: command
    cmd: echo
    outs: [out.txt]
    variants: [c]
  a:
    rule: command
    cmd: echo
    outs: [out.txt]
    variants: [b.c]
  p:
    rule: command
    cmd: echo
    outs: [y.txt, txt]
    variants: [x, x.y]
`,
      `BUILD.yaml:17:3: error: //a:b.c and //a.b:c would both write wg-out/logs/a.b.c.log (and 1 more file): wg-out names a target's files "<package>.<variant>.<file>", and the dots in these names make theirs the same; rename a package or a variant
 17 |   a:
    |   ^
  BUILD.yaml:7:3: the log of //a.b:c
  BUILD.yaml:17:3: the log of //a:b.c
BUILD.yaml:25:19: error: //p:x.y and //p:x would both write wg-out/out/p.x.y.txt: wg-out names a target's files "<package>.<variant>.<file>", and the dots in these names make theirs the same; rename a package or a variant
 25 |     outs: [y.txt, txt]
    |                   ~~~
  BUILD.yaml:25:12: output "y.txt" of //p:x
  BUILD.yaml:25:19: output "txt" of //p:x.y
wg: 2 errors in BUILD.yaml; nothing was built
`,
    );
  });

  it('one file with many mistakes reports all of them, sorted by line, in one run', async () => {
    // Load-time and analysis-time mistakes interleave by line; entries with a mistake of their own (variant "cpu",
    // packages "b", "d") still have their references checked; "a" (unknown rule) is known, so "c" may name it.
    await expectMistakes(
      `toolchains:
  py:
    python: /usr/bin/python3
variants:
  cpu:
    toolchain: pyy
    resources:
      cpus: 0
  cuda:
    toolchain: py
    env:
      BAD-NAME: "1"
packages:
  c:
    rule: command
    cmd: echo
    deps: [a, fastmat, "//b:cpx"]
  a:
    rule: comand
    cmd: echo
  b:
    rule: command
    cmd: echo
    dep: [c]
    variants: [cpu, cdua]
    cmd: echo again
  d:
    rule: command
    cmd: false
    deps: [e]
  e:
    rule: command
    cmd: echo
    deps: [d, b]
    source: missing
    patches: [patches/e/fix.patch]
  fastmath:
    rule: command
    cmd: echo
`,
      `BUILD.yaml:6:16: error: variant "cpu" uses unknown toolchain "pyy" (did you mean "py"?)
 6 |     toolchain: pyy
   |                ~~~
BUILD.yaml:8:13: error: "cpus" of variant "cpu" must be an integer ≥ 1, got 0
 8 |       cpus: 0
   |             ^
BUILD.yaml:12:7: error: "BAD-NAME" in "env" of variant "cuda" is not a valid env variable name (letters, digits and "_", not starting with a digit)
 12 |       BAD-NAME: "1"
    |       ~~~~~~~~
BUILD.yaml:17:15: error: package "c" depends on unknown package "fastmat" (did you mean "fastmath"?)
 17 |     deps: [a, fastmat, "//b:cpx"]
    |               ~~~~~~~
BUILD.yaml:17:24: error: package "c" depends on //b:cpx, but there is no variant "cpx" (did you mean "cpu"?)
 17 |     deps: [a, fastmat, "//b:cpx"]
    |                        ~~~~~~~~~
BUILD.yaml:19:11: error: unknown rule "comand" in package "a" (did you mean "command"?); known rules: python_wheel, command, wheel_folder
 19 |     rule: comand
    |           ~~~~~~
BUILD.yaml:24:5: error: unknown field "dep" in package "b" (did you mean "deps"?)
 24 |     dep: [c]
    |     ~~~
BUILD.yaml:25:21: error: package "b" names unknown variant "cdua" (did you mean "cuda"?)
 25 |     variants: [cpu, cdua]
    |                     ~~~~
BUILD.yaml:26:5: error: duplicate key "cmd" (first at line 23)
 26 |     cmd: echo again
    |     ~~~
BUILD.yaml:29:10: error: "cmd" of package "d" must be a command string or a list of arguments, got a boolean
 29 |     cmd: false
    |          ~~~~~
BUILD.yaml:30:12: error: dependency cycle: //d:cpu -> //e:cpu -> //d:cpu (also in variant "cuda")
 30 |     deps: [e]
    |            ^
  BUILD.yaml:30:12: //d:cpu depends on //e:cpu
  BUILD.yaml:34:12: //e:cpu depends on //d:cpu
BUILD.yaml:34:15: error: //e:cuda depends on //b:cuda, but package "b" is not built in variant "cuda"
 34 |     deps: [d, b]
    |               ^
BUILD.yaml:35:13: error: source folder "missing" of package "e" does not exist
 35 |     source: missing
    |             ~~~~~~~
BUILD.yaml:36:15: error: patch "patches/e/fix.patch" of package "e" does not exist
 36 |     patches: [patches/e/fix.patch]
    |               ~~~~~~~~~~~~~~~~~~~
wg: 14 errors in BUILD.yaml; nothing was built
`,
    );
  });
});

describe('command-line label mistakes', () => {
  const yaml = `variants:
  cpu: {}
  cuda: {}
packages:
  fastmath:
    rule: command
    cmd: echo
`;

  it('an unknown package suggests the whole label', async () => {
    await expectMistakes(yaml, `wg: error: unknown target '//fastmat:cpu': no package "fastmat" (did you mean '//fastmath:cpu'?)\n`, ['//fastmat:cpu']);
  });

  it('an unknown variant suggests the whole label', async () => {
    await expectMistakes(yaml, `wg: error: unknown target '//fastmath:cdua': no variant "cdua" (did you mean '//fastmath:cuda'?)\n`, ['//fastmath:cdua']);
  });

  it('a package pattern suggests the package', async () => {
    await expectMistakes(yaml, `wg: error: unknown target '//fastmth': no package "fastmth" (did you mean '//fastmath'?)\n`, ['//fastmth']);
  });

  it('a pattern without // suggests the one with it; every bad pattern is reported', async () => {
    await expectMistakes(
      yaml,
      `wg: error: "fastmath:cpu" is not a target pattern: write //package:variant, //package, //... or //...:variant (did you mean '//fastmath:cpu'?)
wg: error: "nothing" is not a target pattern: write //package:variant, //package, //... or //...:variant
`,
      ['fastmath:cpu', 'nothing'],
    );
  });

  it('a mistake found after BUILD.yaml was parsed from the parse cache points at the same bytes', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': 'variants:\n  cpu: {}\npackages:\n  a:\n    rule: command\n    source: src/a\n    cmd: "true"\n',
      'src/a/f': 'x\n',
    });
    try {
      assert.equal((await ws.run(['build'])).code, 0);
      assert.equal(fs.readdirSync(path.join(ws.cacheDir, 'parse')).length, 1);
      fs.rmSync(ws.path('src/a'), { recursive: true });
      const r = await ws.run(['build']);
      assert.equal(
        r.stderr,
        `BUILD.yaml:6:13: error: source folder "src/a" of package "a" does not exist
 6 |     source: src/a
   |             ~~~~~
wg: 1 error in BUILD.yaml; nothing was built
`,
      );
      assert.equal(r.code, 2);
    } finally {
      ws.remove();
    }
  });

  it('a bad flag value or an unknown command is exit 2 too, with the reason and where to find usage', async () => {
    const ws = TempWorkspace.create({ 'BUILD.yaml': yaml });
    try {
      const bad = await ws.run(['build', '-j', 'x']);
      assert.equal(bad.stderr, "error: option '-j, --jobs <n>' argument 'x' is invalid. expected a whole number ≥ 1\n(run wg --help for usage)\n");
      assert.equal(bad.code, 2);
      const unknown = await ws.run(['frob']);
      assert.equal(unknown.stderr, "error: unknown command 'frob'\n(run wg --help for usage)\n");
      assert.equal(unknown.code, 2);
      assert.equal((await ws.run(['build', '--help'])).code, 0);
    } finally {
      ws.remove();
    }
  });
});

describe('mistakes found by probing or running', () => {
  it("a toolchain whose python does not exist points at the python value", async () => {
    await expectMistakes(
      `toolchains:
  py:
    python: /opt/no-such-python/bin/python3
variants:
  cpu:
    toolchain: py
packages:
  x:
    rule: python_wheel
    source: src
`,
      `BUILD.yaml:3:13: error: toolchain "py": python /opt/no-such-python/bin/python3 does not exist
 3 |     python: /opt/no-such-python/bin/python3
   |             ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
wg: 1 error in BUILD.yaml; nothing was built
`,
      [],
      { 'src/setup.py': 'raise SystemExit(1)\n' },
    );
  });

  const wheelWorkspace = (patch: string): TempWorkspace =>
    TempWorkspace.create({
      'BUILD.yaml': `toolchains:
  py:
    python: /usr/bin/python3
variants:
  cpu:
    toolchain: py
packages:
  x:
    rule: python_wheel
    source: src
    patches:
      - patches/x/0001.patch
`,
      'src/setup.py': 'from setuptools import setup\nsetup(name="xpkg", version="1.0", py_modules=["xmod"])\n',
      'src/xmod.py': 'VALUE = 1\nNAME = "x"\n',
      'patches/x/0001.patch': patch,
    });

  it('a patch that does not apply fails the target, naming the patch, the file and the hunk', async () => {
    const ws = wheelWorkspace(`--- a/xmod.py
+++ b/xmod.py
@@ -1,2 +1,2 @@
-VALUE = 2
+VALUE = 3
 NAME = "x"
`);
    try {
      const r = await ws.run(['build', '--json']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^\[\d\d:\d\d:\d\d\] FAILED \/\/x:cpu: patch patches\/x\/0001\.patch does not apply: xmod\.py: Hunk #1 FAILED at 1$/m);
      const json = JSON.parse(r.stdout) as { targets: { label: string; status: string; error: string | null }[] };
      assert.deepEqual(
        json.targets.map((t) => [t.label, t.status, t.error]),
        [['//x:cpu', 'failed', 'patch patches/x/0001.patch does not apply: xmod.py: Hunk #1 FAILED at 1']],
      );
    } finally {
      ws.remove();
    }
  });

  it('a patch naming a path outside the source tree is refused before anything changes', async () => {
    // From the sandbox's source copy, four `..` reach the folder holding the workspace and the cache.
    const ws = wheelWorkspace(`--- a/xmod.py
+++ b/xmod.py
@@ -1,2 +1,2 @@
-VALUE = 1
+VALUE = 3
 NAME = "x"
--- a/../../../../victim.txt
+++ b/../../../../victim.txt
@@ -1 +1 @@
-original
+changed by a patch
`);
    const victims = [path.join(ws.dir, '..', 'victim.txt'), path.join(ws.cacheDir, 'victim.txt'), path.join(ws.cacheDir, 'sandbox', 'victim.txt')];
    try {
      for (const v of victims) {
        fs.mkdirSync(path.dirname(v), { recursive: true });
        fs.writeFileSync(v, 'original\n');
      }
      const r = await ws.run(['build', '--json']);
      // Found while analysing (engine/configure.ts), so nothing runs: no sandbox, no `patch`, not even a log.
      assert.equal(
        r.stderr,
        `patches/x/0001.patch:7:7: error: path '../../../../victim.txt' escapes the source tree; refusing to apply patches/x/0001.patch
 7 | --- a/../../../../victim.txt
   |       ~~~~~~~~~~~~~~~~~~~~~~
patches/x/0001.patch:8:7: error: path '../../../../victim.txt' escapes the source tree; refusing to apply patches/x/0001.patch
 8 | +++ b/../../../../victim.txt
   |       ~~~~~~~~~~~~~~~~~~~~~~
wg: 2 errors in patches/x/0001.patch; nothing was built
`,
      );
      assert.equal(r.code, 2);
      assert.equal(fs.existsSync(ws.path('wg-out')), false);
      for (const v of victims) assert.equal(fs.readFileSync(v, 'utf8'), 'original\n', v);
    } finally {
      ws.remove();
    }
  });
});
