// Build customisation on python_wheel: config settings reach the PEP 517 backend, build requirements (wg-built
// wheels and a wheel_folder) are installed for the build only, pyproject overrides rewrite [build-system].requires,
// local_version retags the wheel into one pip installs, and every mistake in these attributes is reported at load.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import yazl from 'yazl';

import { overridePyproject } from '../rules/pyproject-overrides.js';
import { readZip, retagWheel } from '../rules/wheel-retag.js';
import { sh, statuses, SYSTEM_PYTHON, TempWorkspace } from './rig.js';
import { installTorch as standInTorch } from './stand-in-torch.js';


const installTorch = (siteDir: string, version: string): void => standInTorch(siteDir, version, { cuda: '12.4', cxx11abi: false });

/** A minimal pure-Python wheel written by hand, as a vendor would ship one. */
async function makeWheel(dir: string, name: string, version: string, module: string): Promise<string> {
  const info = `${name}-${version}.dist-info`;
  const files: [string, string][] = [
    [`${name}.py`, module],
    [`${info}/METADATA`, `Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\n`],
    [`${info}/WHEEL`, 'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n'],
  ];
  const hash = (s: string): string => `sha256=${createHash('sha256').update(s).digest('base64url')}`;
  const record = files.map(([p, c]) => `${p},${hash(c)},${Buffer.byteLength(c)}\n`).join('') + `${info}/RECORD,,\n`;
  const zip = new yazl.ZipFile();
  for (const [p, c] of [...files, [`${info}/RECORD`, record] as [string, string]]) zip.addBuffer(Buffer.from(c), p);
  zip.end();
  const file = path.join(dir, `${name}-${version}-py3-none-any.whl`);
  fs.mkdirSync(dir, { recursive: true });
  await new Promise<void>((resolve, reject) => zip.outputStream.pipe(fs.createWriteStream(file)).on('close', resolve).on('error', reject));
  return file;
}

describe('pyproject overrides', () => {
  it('rewrites only [build-system].requires, keeping comments and layout', () => {
    const text = `# top comment
[project]
name = "demo"  # the name
dependencies = ["numpy==1.0"]

[build-system]
# why these
requires = [
    "setuptools>=61",   # backend
    "Cmake>=3.18",
    "numpy<2; python_version<'3.9'",
    "numpy==2.0.2; python_version>='3.9'",
]
build-backend = "setuptools.build_meta"

[tool.x]
requires = ["untouched"]
`;
    const out = overridePyproject(text, { remove: ['cmake'], replace: ['numpy>=2.1'], auto: ['wheel', 'setuptools'] });
    assert.equal(
      out,
      `# top comment
[project]
name = "demo"  # the name
dependencies = ["numpy==1.0"]

[build-system]
# why these
requires = [
    "setuptools>=61",
    "numpy>=2.1",
    "wheel",
]
build-backend = "setuptools.build_meta"

[tool.x]
requires = ["untouched"]
`,
    );
    // Nothing to change: the very same text.
    assert.equal(overridePyproject(out, { remove: ['not-there'], replace: [], auto: ['Wheel'] }), out);
  });

  it('adds the table or the file when the project has none, and names a TOML mistake', () => {
    assert.equal(overridePyproject('[project]\nname = "x"\n', { remove: [], replace: [], auto: ['setuptools'] }), '[project]\nname = "x"\n\n[build-system]\nrequires = ["setuptools"]\n');
    assert.equal(
      overridePyproject(null, { remove: [], replace: [], auto: ['setuptools', 'wheel'] }),
      '[build-system]\nrequires = ["setuptools", "wheel"]\nbuild-backend = "setuptools.build_meta:__legacy__"\n',
    );
    assert.equal(overridePyproject('[build-system]\nbuild-backend = "b"\n', { remove: [], replace: ['x'], auto: [] }), '[build-system]\nrequires = ["x"]\nbuild-backend = "b"\n');
    assert.throws(() => overridePyproject('[build-system\n', { remove: ['x'], replace: [], auto: [] }), /^Error: pyproject.toml is not valid TOML \(line 1, column 14\)/);
  });
});

describe('python_wheel customisation', () => {
  it('passes config_settings to the backend, installs build requirements for the build only, and overrides build requires', async () => {
    const build = (extra: string, settings = ''): string => `toolchains:
  py:
    python: ${SYSTEM_PYTHON}
variants:
  cpu:
    toolchain: py
packages:
  helper:
    rule: python_wheel
    source: helper
  vendored:
    rule: wheel_folder
    source: vendor
  app:
    rule: python_wheel
    source: app
    build_requires: [helper, //vendored:cpu]
    config_settings:
      mode: fast
      level: 3
${settings}    test: python -c "import app, importlib.util as u; assert app.BUILT_WITH == (42, 7), app.BUILT_WITH; assert u.find_spec('helper_dep') is None and u.find_spec('vendored_dep') is None"
${extra}`;
    const ws = TempWorkspace.create({
      'BUILD.yaml': build('', '      flag: [a, b]\n'),
      'helper/setup.py': 'from setuptools import setup\nsetup(name="helper-dep", version="1.0", py_modules=["helper_dep"])\n',
      'helper/helper_dep.py': 'VALUE = 42\n',
      // An in-tree backend: it records the config settings it gets into the wheel, and needs both build
      // requirements importable while it runs.
      'app/pyproject.toml': `[build-system]
requires = ["setuptools", "wheel>=999", "not-a-real-dep", "helper-dep"]  # kept as a comment
build-backend = "backend"
backend-path = ["."]
`,
      'app/backend.py': `import json
from setuptools import build_meta as _b
from setuptools.build_meta import *  # noqa

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open("app_settings.json", "w") as f:
        json.dump(config_settings, f, sort_keys=True)
    return _b.build_wheel(wheel_directory, None, metadata_directory)
`,
      'app/setup.py': `import helper_dep, vendored_dep
from setuptools import setup
with open("app.py", "w") as f:
    f.write("BUILT_WITH = (%d, %d)\\n" % (helper_dep.VALUE, vendored_dep.VALUE))
setup(name="app", version="1.0", py_modules=["app"], data_files=[("share/app", ["app_settings.json"])])
`,
    });
    try {
      await makeWheel(ws.path('vendor'), 'vendored_dep', '2.0', 'VALUE = 7\n');
      const listed = await ws.build(['//app:cpu'], { expectCode: 1 });
      assert.deepEqual(statuses(listed), { '//helper:cpu': 'built', '//vendored:cpu': 'built', '//app:cpu': 'failed' });
      assert.equal(
        listed.targets.find((t) => t.label === '//app:cpu')!.error,
        '//app:cpu: config_settings flag has several values, which needs pip 23.1 or later; toolchain "py" has pip 23.0.1',
      );

      ws.write('BUILD.yaml', build(''));
      const failed = await ws.build(['//app:cpu'], { expectCode: 1 });
      assert.deepEqual(statuses(failed), { '//helper:cpu': 'cached', '//vendored:cpu': 'cached', '//app:cpu': 'failed' });
      assert.equal(
        failed.targets.find((t) => t.label === '//app:cpu')!.error,
        '//app:cpu: build requirements not in the build venv: wheel>=999 (found wheel 0.38.4), not-a-real-dep (not installed); ' +
          'add their wheels with build_requires, or change them with remove_build_requires / replace_build_requires',
      );

      ws.write('BUILD.yaml', build('    remove_build_requires: [Not_A_Real_Dep]\n    replace_build_requires: ["wheel"]\n'));
      const ok = await ws.build(['//app:cpu']);
      assert.deepEqual(statuses(ok), { '//helper:cpu': 'cached', '//vendored:cpu': 'cached', '//app:cpu': 'built' });
      const wheel = ok.targets.find((t) => t.label === '//app:cpu')!.wheels[0]!;
      const entries = await readZip(wheel);
      const settings = entries.find((e) => e.name.endsWith('share/app/app_settings.json'))!;
      assert.deepEqual(JSON.parse(settings.data.toString()), { level: '3', mode: 'fast' });
      const log = fs.readFileSync(ok.targets.find((t) => t.label === '//app:cpu')!.log!, 'utf8');
      assert.match(log, /requires = \["setuptools", "wheel", "helper-dep"\]  # kept as a comment/);
      assert.match(log, /--config-settings mode=fast --config-settings level=3 /);
    } finally {
      ws.remove();
    }
  });

  it('retags wheels with local_version into a valid wheel that pip installs', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `toolchains:
  torch-env:
    python: ../venv/bin/python
  plain:
    python: ${SYSTEM_PYTHON}
variants:
  cu:
    toolchain: torch-env
  cpu:
    toolchain: plain
packages:
  tiny:
    rule: python_wheel
    source: tiny
    local_version: "cu{cuda}torch{torch}cxx11abi{cxx11abi}"
    test: python -c "import tiny, importlib.metadata as m; assert m.version('tiny') == '0.1+cu124torch2.4cxx11abifalse'"
`,
      'tiny/setup.py': 'from setuptools import setup\nsetup(name="tiny", version="0.1", packages=["tiny"], package_data={"tiny": ["data/*.txt"]})\n',
      'tiny/tiny/__init__.py': 'def hello():\n    return "hello"\n',
      'tiny/tiny/data/a,b.txt': 'comma in the name\n',
    });
    try {
      const venv = path.join(ws.dir, '..', 'venv');
      await sh(SYSTEM_PYTHON, ['-m', 'venv', '--system-site-packages', '--without-pip', venv]);
      installTorch(path.join(venv, 'lib', 'python3.11', 'site-packages'), '2.4.0+cu124');

      const r = await ws.build(['-k'], { expectCode: 1 });
      assert.deepEqual(statuses(r), { '//tiny:cu': 'built', '//tiny:cpu': 'failed' });
      assert.equal(
        r.targets.find((t) => t.label === '//tiny:cpu')!.error,
        '//tiny:cpu: local_version "cu{cuda}torch{torch}cxx11abi{cxx11abi}": {cuda} needs CUDA, but toolchain "plain" has neither an nvcc nor a CUDA torch; ' +
          '{torch} needs torch, but toolchain "plain" has none (import torch fails); {cxx11abi} needs torch, but toolchain "plain" has none (import torch fails)',
      );
      const wheel = r.targets.find((t) => t.label === '//tiny:cu')!.wheels[0]!;
      assert.equal(path.basename(wheel), 'tiny-0.1+cu124torch2.4cxx11abifalse-py3-none-any.whl');

      const entries = await readZip(wheel);
      const info = 'tiny-0.1+cu124torch2.4cxx11abifalse.dist-info/';
      assert.deepEqual(entries.filter((e) => e.name.includes('.dist-info/')).map((e) => e.name).sort(), [
        `${info}METADATA`, `${info}RECORD`, `${info}WHEEL`, `${info}top_level.txt`,
      ]);
      assert.match(entries.find((e) => e.name === `${info}METADATA`)!.data.toString(), /^Version: 0\.1\+cu124torch2\.4cxx11abifalse$/m);
      // RECORD lists every other entry once, with its real digest and size; RECORD itself last, unhashed.
      const record = entries.find((e) => e.name === `${info}RECORD`)!.data.toString().trimEnd().split('\n');
      assert.equal(record.at(-1), `${info}RECORD,,`);
      assert.equal(record.length, entries.length);
      for (const e of entries.filter((x) => x.name !== `${info}RECORD`)) {
        const name = e.name.includes(',') ? `"${e.name}"` : e.name;
        assert.ok(record.includes(`${name},sha256=${createHash('sha256').update(e.data).digest('base64url')},${e.data.length}`), `RECORD entry of ${e.name}`);
      }

      const target = path.join(ws.dir, '..', 'install-venv');
      await sh(SYSTEM_PYTHON, ['-m', 'venv', '--system-site-packages', '--without-pip', target]);
      await sh(path.join(target, 'bin', 'python'), ['-m', 'pip', 'install', '--no-index', '--no-deps', '--disable-pip-version-check', wheel]);
      const show = await sh(path.join(target, 'bin', 'python'), ['-m', 'pip', 'show', 'tiny']);
      assert.match(show, /^Version: 0\.1\+cu124torch2\.4cxx11abifalse$/m);
      assert.equal((await sh(path.join(target, 'bin', 'python'), ['-c', 'import tiny; print(tiny.hello())'])).trim(), 'hello');

      // The same wheel retagged twice, a second apart, gives the same bytes.
      const a = await retagWheel(wheel, 'x1', fs.mkdtempSync(path.join(ws.dir, '..', 'a-')));
      await new Promise((res) => setTimeout(res, 1100));
      const b = await retagWheel(wheel, 'x1', fs.mkdtempSync(path.join(ws.dir, '..', 'b-')));
      assert.equal(path.basename(a), 'tiny-0.1+cu124torch2.4cxx11abifalse.x1-py3-none-any.whl');
      assert.ok(fs.readFileSync(a).equals(fs.readFileSync(b)));
    } finally {
      ws.remove();
    }
  });

  it('reports mistakes in the customisation attributes at load, with positions', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `toolchains:
  py:
    python: ${SYSTEM_PYTHON}
variants:
  cpu:
    toolchain: py
packages:
  a:
    rule: python_wheel
    source: a
    build: ./build.sh
    config_settings: {x: "1"}
    local_version: "cu{cuda}-{torhc}"
    replace_build_requires: ["numpy>=2", ">=1.0"]
    build_requires: [nope]
  b:
    rule: python_wheel
    source: a
    local_version: "cu{cuda}+x"
`,
      'a/setup.py': '',
    });
    try {
      const r = await ws.run(['build', '--dry-run']);
      assert.equal(r.code, 2);
      assert.equal(
        r.stderr,
        `BUILD.yaml:12:22: error: package "a": config_settings are passed to pip wheel, so they cannot go with a custom "build" command (pass them in the command)
 12 |     config_settings: {x: "1"}
    |                      ~~~~~~~~
BUILD.yaml:13:20: error: package "a": unknown placeholder {torhc} in local_version; known: {python}, {cuda}, {cuda_major}, {torch}, {torch_full}, {cxx11abi}, {variant}
 13 |     local_version: "cu{cuda}-{torhc}"
    |                    ~~~~~~~~~~~~~~~~~~
BUILD.yaml:14:42: error: package "a": ">=1.0" is not a requirement (it must start with a project name)
 14 |     replace_build_requires: ["numpy>=2", ">=1.0"]
    |                                          ~~~~~~~
BUILD.yaml:15:22: error: package "a" depends on unknown package "nope"
 15 |     build_requires: [nope]
    |                      ~~~~
BUILD.yaml:19:20: error: package "b": local_version "cu{cuda}+x" is not a valid local version (letters and digits, separated by ".", "-" or "_")
 19 |     local_version: "cu{cuda}+x"
    |                    ~~~~~~~~~~~~
wg: 5 errors in BUILD.yaml; nothing was built
`,
      );
    } finally {
      ws.remove();
    }
  });
});
