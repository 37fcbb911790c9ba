// Matrix variants: axes × values minus excludes, named by a template, with per-axis-value settings, expanding into
// ordinary variants; package overrides by exact name, matrix group and wildcard; per-version overrides; and every
// mistake as an exact BUILD.yaml:L:C diagnostic before anything runs.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, describe, test } from 'node:test';
import { TempWorkspace } from './rig.js';

const workspaces: TempWorkspace[] = [];
after(() => {
  for (const ws of workspaces) ws.remove();
});
function workspace(yaml: string): TempWorkspace {
  const ws = TempWorkspace.create({ 'BUILD.yaml': yaml, 'src/f.txt': 'x\n' });
  workspaces.push(ws);
  return ws;
}

const MATRIX = `toolchains:
  py3.10: {python: /usr/bin/python3}
  py3.11: {python: /usr/bin/python3}
variants:
  cpu: {}
  gpu:
    matrix:
      python: [3.10, 3.11]
      cuda: ["12.1", 12.4]
    exclude:
      - {python: 3.10, cuda: 12.4}
    name: py{python}-cu{cuda}
    toolchain: py{python}
    env: {CUDA_VERSION: "{cuda}", ARCH: "8.0", BRACES: "{{x}}"}
    when:
      cuda:
        12.4: {env: {ARCH: "9.0"}, resources: {cpus: 2}}
packages:
  lib:
    rule: command
    source: src
    version: "2.0.1"
    cmd: printf '%s\\n' "ARCH=$ARCH" "CUDA_VERSION=\${CUDA_VERSION-unset}" "BRACES=\${BRACES-unset}" "O=\${O-unset}" "V=\${V-unset}" "JOBS=$MAX_JOBS" > seen.txt
    outs: [seen.txt]
    versions:
      "2.0.1": {env: {V: exact}}
      ">=3": {env: {V: three}}
    variants:
      cpu: {}
      gpu: {env: {O: group}}
      "py3.11-*": {env: {O: wildcard}}
      py3.11-cu12.4: {env: {O: exact}}
`;

describe('matrix variants', () => {
  test('expand to the exact variant set, with templates, per-value settings and override precedence', async () => {
    const ws = workspace(MATRIX);
    const r = await ws.build(['-j', '2']);
    assert.deepEqual(
      r.targets.map((t) => t.label),
      ['//lib:cpu', '//lib:py3.10-cu12.1', '//lib:py3.11-cu12.1', '//lib:py3.11-cu12.4'],
    );
    const seen = (variant: string): string => ws.read(`wg-out/out/lib.${variant}.seen.txt`);
    assert.equal(seen('cpu'), 'ARCH=\nCUDA_VERSION=unset\nBRACES=unset\nO=unset\nV=exact\nJOBS=1\n');
    assert.equal(seen('py3.10-cu12.1'), 'ARCH=8.0\nCUDA_VERSION=12.1\nBRACES={x}\nO=group\nV=exact\nJOBS=1\n');
    assert.equal(seen('py3.11-cu12.1'), 'ARCH=8.0\nCUDA_VERSION=12.1\nBRACES={x}\nO=wildcard\nV=exact\nJOBS=1\n');
    assert.equal(seen('py3.11-cu12.4'), 'ARCH=9.0\nCUDA_VERSION=12.4\nBRACES={x}\nO=exact\nV=exact\nJOBS=2\n');
  });

  test('a matrix group name selects its variants in patterns', async () => {
    const ws = workspace(MATRIX);
    const r = await ws.build(['--dry-run', '//...:gpu']);
    assert.deepEqual(
      r.targets.map((t) => t.label),
      ['//lib:py3.10-cu12.1', '//lib:py3.11-cu12.1', '//lib:py3.11-cu12.4'],
    );
  });

  test('every mistake in a matrix is a BUILD.yaml diagnostic', async () => {
    const ws = workspace(`variants:
  cpu: {}
  gpu:
    matrix:
      python: [3.10, 3.11, 3.11]
      cuda: ["12.1", 12.4]
    exclude:
      - {python: 3.12, cuda: 12.4}
      - {pyton: 3.10}
    name: py{pyhton}-cu{cuda}
    env: {X: "{cuda"}
    when:
      cuda:
        "11.8": {env: {ARCH: "9.0"}}
  dup:
    matrix: {python: [3.10, 3.11], cuda: [1, 2]}
    name: d{python}
  none:
    matrix: {a: [1]}
    exclude: [{a: 1}]
    name: n{a}
  taken:
    matrix: {a: [1]}
    name: cpu
  conflict:
    matrix: {a: [1], b: [2]}
    name: c{a}{b}
    when:
      a: {1: {env: {Z: one}}}
      b: {2: {env: {Z: two}}}
packages:
  lib:
    rule: command
    cmd: "true"
    variants:
      "py9-*": {}
`);
    const r = await ws.run(['build']);
    assert.equal(
      r.stderr,
      `BUILD.yaml:5:28: error: matrix "gpu": axis "python" lists "3.11" twice
 5 |       python: [3.10, 3.11, 3.11]
   |                            ~~~~
BUILD.yaml:8:18: error: "exclude" of matrix "gpu" names python "3.12", which axis "python" does not have (did you mean "3.10"?); its values: 3.10, 3.11
 8 |       - {python: 3.12, cuda: 12.4}
   |                  ~~~~
BUILD.yaml:9:10: error: matrix "gpu" has no axis "pyton" (did you mean "python"?); its axes: python, cuda
 9 |       - {pyton: 3.10}
   |          ~~~~~
BUILD.yaml:10:13: error: matrix "gpu" has no axis "pyhton" (did you mean "python"?); its axes: python, cuda
 10 |     name: py{pyhton}-cu{cuda}
    |             ~~~~~~~~
BUILD.yaml:11:15: error: "{" is not closed in "{cuda" (write "{{" for a literal "{")
 11 |     env: {X: "{cuda"}
    |               ^
BUILD.yaml:14:9: error: "when" of matrix "gpu" names cuda "11.8", which axis "cuda" does not have (did you mean "12.1"?); its values: 12.1, 12.4
 14 |         "11.8": {env: {ARCH: "9.0"}}
    |         ~~~~~~
BUILD.yaml:17:11: error: matrix "dup" generates the variant name "d3.10" twice (python=3.10, cuda=1 and python=3.10, cuda=2); the name template must tell them apart
 17 |     name: d{python}
    |           ~~~~~~~~~
BUILD.yaml:17:11: error: matrix "dup" generates the variant name "d3.11" twice (python=3.11, cuda=1 and python=3.11, cuda=2); the name template must tell them apart
 17 |     name: d{python}
    |           ~~~~~~~~~
BUILD.yaml:19:5: error: matrix "none" expands to no variants: every combination is excluded
 19 |     matrix: {a: [1]}
    |     ~~~~~~
BUILD.yaml:24:11: error: matrix "taken" generates the variant name "cpu" (a=1), but variant "cpu" is declared at line 2
 24 |     name: cpu
    |           ~~~
BUILD.yaml:30:15: error: matrix "conflict": env "Z" is set both for a=1 and for b=2 (in variant "c12"); set it in one place
 30 |       b: {2: {env: {Z: two}}}
    |               ~~~
BUILD.yaml:36:7: error: package "lib": "py9-*" matches no variant
 36 |       "py9-*": {}
    |       ~~~~~~~
wg: 12 errors in BUILD.yaml; nothing was built
`,
    );
    assert.equal(r.code, 2);
    assert.equal(fs.existsSync(ws.path('wg-out')), false);
  });

  test('override and version mistakes', async () => {
    const ws = workspace(`variants:
  cpu: {}
  gpu:
    matrix: {python: [3.10, 3.11], cuda: [12.1, 12.4]}
    name: py{python}-cu{cuda}
packages:
  lib:
    rule: command
    cmd: "true"
    version: "2.0x"
    variants:
      gpux: {}
      "py3.11-*": {env: {A: one}}
      "*-cu12.4": {env: {A: two}}
  lib2:
    rule: command
    cmd: "true"
    versions: {"2.0": {env: {V: two}}}
  lib3:
    rule: command
    cmd: "true"
    version: "2.0"
    versions:
      "2.0": {env: {V: two}}
      ">=2,<3": {env: {V: range}}
      "not a version": {}
`);
    const r = await ws.run(['build']);
    assert.equal(
      r.stderr,
      `BUILD.yaml:10:14: error: version "2.0x" of package "lib" is not a PEP 440 version (such as 1.0, 2.4.1 or 2.5.0rc1)
 10 |     version: "2.0x"
    |              ~~~~~~
BUILD.yaml:12:7: error: package "lib" names unknown variant "gpux" (did you mean "gpu"?)
 12 |       gpux: {}
    |       ~~~~
BUILD.yaml:14:7: error: package "lib": variant "py3.11-cu12.4" is matched by both "py3.11-*" and "*-cu12.4"; which one's settings win would be unclear: give the variant an entry of its own or narrow a pattern
 14 |       "*-cu12.4": {env: {A: two}}
    |       ~~~~~~~~~~
BUILD.yaml:18:5: error: package "lib2" has "versions" overrides but no "version"
 18 |     versions: {"2.0": {env: {V: two}}}
    |     ~~~~~~~~
BUILD.yaml:25:7: error: "2.0" and ">=2,<3" in "versions" of package "lib3" both match its version 2.0; keep one
 25 |       ">=2,<3": {env: {V: range}}
    |       ~~~~~~~~
BUILD.yaml:26:7: error: "not a version" in "versions" of package "lib3" is not a version or a version range (such as 2.0 or ">=2.0,<3")
 26 |       "not a version": {}
    |       ~~~~~~~~~~~~~~~
wg: 6 errors in BUILD.yaml; nothing was built
`,
    );
    assert.equal(r.code, 2);
  });
});
