// Git, URL and package-index sources through the real `wg`: real repositories made here and read over file://, real
// archives served by a loopback HTTP server, a PEP 503 index folder; a `git` wrapper on PATH logs every git call so
// the tests can say when wg asked a remote and when it did not.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sh, SYSTEM_PYTHON, TempWorkspace } from './rig.js';

const REAL_GIT = execFileSync('sh', ['-c', 'command -v git']).toString().trim();
const GIT_ID = ['-c', 'user.email=wg@example.com', '-c', 'user.name=wg', '-c', 'init.defaultBranch=main'];

function git(cwd: string, ...args: string[]): string {
  return execFileSync(REAL_GIT, [...GIT_ID, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
}

/** A repository with `files` committed on `main`; returns its folder. */
function makeRepo(dir: string, files: Record<string, string>): string {
  fs.mkdirSync(dir, { recursive: true });
  git(dir, 'init', '-q');
  commit(dir, files, 'first');
  return dir;
}

function commit(dir: string, files: Record<string, string>, message: string): string {
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', message);
  return git(dir, 'rev-parse', 'HEAD');
}

/** A `git` earlier on PATH that appends its argv to a log, then runs the real git. */
function gitWrapper(dir: string): { env: Record<string, string>; calls: () => string[]; clear: () => void } {
  const bin = path.join(dir, 'wrapped-bin');
  const log = path.join(dir, 'git-calls.log');
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(path.join(bin, 'git'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec '${REAL_GIT}' "$@"\n`, { mode: 0o755 });
  return {
    env: { PATH: `${bin}:${process.env['PATH'] ?? ''}` },
    calls: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) : []),
    clear: () => fs.rmSync(log, { force: true }),
  };
}

function commandPackage(name: string, source: string, cmd = 'cat hello.txt > out.txt'): string {
  return `  ${name}:\n    rule: command\n    source: ${source}\n    cmd: ${JSON.stringify(cmd)}\n    outs: [out.txt]\n`;
}

function buildYaml(packages: string): string {
  return `variants:\n  cpu: {}\npackages:\n${packages}`;
}

function outText(ws: TempWorkspace, pkg: string): string {
  return fs.readFileSync(ws.path(`wg-out/out/${pkg}.cpu.out.txt`), 'utf8');
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Serves `root` on 127.0.0.1 (a folder answers with its index.html) and counts requests per path. */
async function serve(root: string): Promise<{ url: string; hits: Map<string, number>; auth: string[]; close: () => Promise<void> }> {
  const hits = new Map<string, number>();
  const auth: string[] = [];
  const server = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    hits.set(p, (hits.get(p) ?? 0) + 1);
    if (req.headers.authorization) auth.push(req.headers.authorization);
    let file = path.join(root, p);
    if (!file.startsWith(root)) return void res.writeHead(403).end();
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!fs.existsSync(file)) return void res.writeHead(404).end('not found');
    res.writeHead(200);
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    auth,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('git sources', () => {
  test('a branch builds; the same commit is cached without fetching; a new commit rebuilds; a changed action reuses the mirror', async () => {
    const ws = TempWorkspace.create();
    try {
      const repo = makeRepo(path.join(ws.cacheDir, '..', 'repo'), { 'hello.txt': 'v1\n' });
      const wrap = gitWrapper(path.join(ws.cacheDir, '..'));
      ws.write('BUILD.yaml', buildYaml(commandPackage('g', `{git: "file://${repo}", ref: main}`)));

      let r = await ws.build([], { env: wrap.env });
      assert.deepEqual(r.targets.map((t) => t.status), ['built']);
      assert.equal(outText(ws, 'g'), 'v1\n');
      assert.ok(wrap.calls().some((c) => c.includes(' fetch ')), wrap.calls().join('\n'));

      wrap.clear();
      r = await ws.build([], { env: wrap.env });
      assert.deepEqual(r.targets.map((t) => t.status), ['cached']);
      // Resolving the branch asks the remote; nothing else runs.
      assert.deepEqual(wrap.calls(), [`ls-remote --heads --tags -- file://${repo}`]);

      commit(repo, { 'hello.txt': 'v2\n' }, 'second');
      r = await ws.build([], { env: wrap.env });
      assert.deepEqual(r.targets.map((t) => t.status), ['built']);
      assert.equal(outText(ws, 'g'), 'v2\n');

      // Same commit, different action: rebuilt from the mirror, no fetch.
      ws.write('BUILD.yaml', buildYaml(commandPackage('g', `{git: "file://${repo}", ref: main}`, 'cat hello.txt > out.txt; echo again >> out.txt')));
      wrap.clear();
      r = await ws.build([], { env: wrap.env });
      assert.deepEqual(r.targets.map((t) => t.status), ['built']);
      assert.equal(outText(ws, 'g'), 'v2\nagain\n');
      assert.ok(!wrap.calls().some((c) => c.includes(' fetch ')), wrap.calls().join('\n'));
      assert.ok(wrap.calls().some((c) => c.startsWith('clone -q --shared --no-checkout -- ')), wrap.calls().join('\n'));
    } finally {
      ws.remove();
    }
  });

  test('an annotated tag and a full commit sha build the right trees; a full sha never asks the remote', async () => {
    const ws = TempWorkspace.create();
    try {
      const repo = makeRepo(path.join(ws.cacheDir, '..', 'repo'), { 'hello.txt': 'tagged\n' });
      git(repo, 'tag', '-a', 'v1.0', '-m', 'release');
      const second = commit(repo, { 'hello.txt': 'pinned\n' }, 'second');
      commit(repo, { 'hello.txt': 'head\n' }, 'third');
      const wrap = gitWrapper(path.join(ws.cacheDir, '..'));
      ws.write(
        'BUILD.yaml',
        buildYaml(commandPackage('tagged', `{git: "file://${repo}", ref: v1.0}`) + commandPackage('pinned', `{git: "file://${repo}", ref: "${second}"}`)),
      );
      // Dry run on a cold cache: the full sha needs no git at all, the tag needs only ls-remote.
      let r = await ws.build(['--dry-run', '//pinned:cpu'], { env: wrap.env });
      assert.deepEqual(r.targets.map((t) => t.status), ['would-build']);
      assert.deepEqual(wrap.calls(), []);

      r = await ws.build([], { env: wrap.env });
      assert.deepEqual(r.targets.map((t) => [t.label, t.status]).sort(), [
        ['//pinned:cpu', 'built'],
        ['//tagged:cpu', 'built'],
      ]);
      assert.equal(outText(ws, 'tagged'), 'tagged\n');
      assert.equal(outText(ws, 'pinned'), 'pinned\n');

      // A rebuild of the pinned target with the mirror warm: no ls-remote, no fetch.
      ws.write('BUILD.yaml', buildYaml(commandPackage('pinned', `{git: "file://${repo}", ref: "${second}"}`, 'cat hello.txt > out.txt; echo 2 >> out.txt')));
      wrap.clear();
      r = await ws.build([], { env: wrap.env });
      assert.deepEqual(r.targets.map((t) => t.status), ['built']);
      const calls = wrap.calls();
      assert.ok(!calls.some((c) => c.startsWith('ls-remote') || c.includes(' fetch ')), calls.join('\n'));
    } finally {
      ws.remove();
    }
  });

  test('submodules are checked out when enabled', async () => {
    const ws = TempWorkspace.create();
    try {
      const base = path.join(ws.cacheDir, '..');
      const sub = makeRepo(path.join(base, 'sub'), { 's.txt': 'from the submodule\n' });
      const top = makeRepo(path.join(base, 'top'), { 'hello.txt': 'top\n' });
      git(top, '-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', `file://${sub}`, 'vendor/sub');
      git(top, 'commit', '-q', '-m', 'add submodule');
      ws.write(
        'BUILD.yaml',
        buildYaml(
          commandPackage('with', `{git: "file://${top}", ref: main, submodules: true}`, 'cat vendor/sub/s.txt > out.txt') +
            commandPackage('without', `{git: "file://${top}", ref: main}`, 'ls vendor/sub > out.txt'),
        ),
      );
      await ws.build();
      assert.equal(outText(ws, 'with'), 'from the submodule\n');
      assert.equal(outText(ws, 'without'), '');
    } finally {
      ws.remove();
    }
  });

  test('a missing branch is a BUILD.yaml mistake (exit 2); an unreachable repository is not (exit 1); nothing runs', async () => {
    const ws = TempWorkspace.create();
    try {
      const repo = makeRepo(path.join(ws.cacheDir, '..', 'repo'), { 'hello.txt': 'x\n' });
      ws.write('BUILD.yaml', buildYaml(commandPackage('g', `{git: "file://${repo}", ref: mian}`)));
      let r = await ws.run(['build']);
      assert.equal(r.code, 2);
      assert.equal(
        r.stderr.split('\n')[0],
        `BUILD.yaml:6:${13 + `{git: "file://${repo}", ref: `.length}: error: source of package "g": ref "mian" is not a branch or tag of file://${repo} (did you mean "main"?)`,
      );

      const gone = path.join(ws.cacheDir, '..', 'gone');
      ws.write('BUILD.yaml', buildYaml(commandPackage('g', `{git: "file://${gone}", ref: main}`)));
      r = await ws.run(['build']);
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr,
        `wg: error: source of package "g": git file://${gone}: cannot list its refs (git ls-remote failed: fatal: '${gone}' does not appear to be a git repository)\n` +
          'wg: nothing was built\n',
      );
      assert.ok(!fs.existsSync(ws.path('wg-out')));
    } finally {
      ws.remove();
    }
  });
});

describe('url sources', () => {
  let srv: Awaited<ReturnType<typeof serve>>;
  let files: string;
  before(async () => {
    files = fs.mkdtempSync(path.join(process.env['TMPDIR'] ?? '/tmp', 'wg-url-'));
    srv = await serve(files);
  });
  after(async () => {
    await srv.close();
    fs.rmSync(files, { recursive: true, force: true });
  });

  test('a .tar.gz (git archive, with its pax header), a .tar.bz2 and a .zip build; the download is cached', async () => {
    const ws = TempWorkspace.create();
    try {
      const repo = makeRepo(path.join(ws.cacheDir, '..', 'repo'), { 'hello.txt': 'from the tarball\n', 'bin/run.sh': '#!/bin/sh\n' });
      fs.chmodSync(path.join(repo, 'bin/run.sh'), 0o755);
      commit(repo, {}, 'executable');
      git(repo, 'archive', '--format=tar.gz', '--prefix=proj-1.0/', '-o', path.join(files, 'proj-1.0.tar.gz'), 'HEAD');
      const stage = path.join(ws.cacheDir, '..', 'stage');
      fs.mkdirSync(path.join(stage, 'proj'), { recursive: true });
      fs.writeFileSync(path.join(stage, 'proj', 'hello.txt'), 'from the bz2\n');
      await sh('tar', ['-C', stage, '-cjf', path.join(files, 'proj.tar.bz2'), 'proj']);
      await sh(SYSTEM_PYTHON, ['-c', "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1],'w'); z.writestr('hello.txt','from the zip\\n'); z.close()", path.join(files, 'p.zip')]);
      const src = (file: string, strip = 0): string =>
        `{url: "${srv.url}/${file}", sha256: ${sha256(path.join(files, file))}${strip ? `, strip_components: ${strip}` : ''}}`;
      ws.write(
        'BUILD.yaml',
        buildYaml(
          commandPackage('tgz', src('proj-1.0.tar.gz', 1), 'cat hello.txt > out.txt; test -x bin/run.sh') +
            commandPackage('bz2', src('proj.tar.bz2', 1)) +
            commandPackage('zip', src('p.zip')),
        ),
      );
      let r = await ws.build();
      assert.deepEqual(r.targets.map((t) => t.status), ['built', 'built', 'built']);
      assert.equal(outText(ws, 'tgz'), 'from the tarball\n');
      assert.equal(outText(ws, 'bz2'), 'from the bz2\n');
      assert.equal(outText(ws, 'zip'), 'from the zip\n');
      assert.equal(srv.hits.get('/proj-1.0.tar.gz'), 1);

      r = await ws.build();
      assert.deepEqual(r.targets.map((t) => t.status), ['cached', 'cached', 'cached']);
      // A rebuild of the same archive (the command changed) takes it from the source cache.
      ws.write('BUILD.yaml', buildYaml(commandPackage('tgz', src('proj-1.0.tar.gz', 1), 'cat hello.txt hello.txt > out.txt')));
      r = await ws.build();
      assert.deepEqual(r.targets.map((t) => t.status), ['built']);
      assert.equal(outText(ws, 'tgz'), 'from the tarball\nfrom the tarball\n');
      assert.equal(srv.hits.get('/proj-1.0.tar.gz'), 1);
    } finally {
      ws.remove();
    }
  });

  test('a wrong sha256 fails naming both digests and stores nothing; credentials in the URL are never printed', async () => {
    const ws = TempWorkspace.create();
    try {
      fs.writeFileSync(path.join(files, 'other.tar.gz'), 'not what was declared');
      const actual = sha256(path.join(files, 'other.tar.gz'));
      const declared = 'ab'.repeat(32);
      const withCreds = srv.url.replace('http://', 'http://builder:s3cret-token@');
      ws.write('BUILD.yaml', buildYaml(commandPackage('u', `{url: "${withCreds}/other.tar.gz", sha256: ${declared}}`)));
      const r = await ws.build([], { expectCode: 1 });
      assert.equal(r.targets[0]!.error, `url ${srv.url}/other.tar.gz: expected sha256 ${declared} got ${actual}`);
      assert.deepEqual(fs.readdirSync(path.join(ws.cacheDir, 'sources', 'url')), []);
      // The credentials went to the server, and nowhere else.
      assert.ok(srv.auth.includes(`Basic ${Buffer.from('builder:s3cret-token').toString('base64')}`));
      const log = fs.readFileSync(r.targets[0]!.log!, 'utf8');
      for (const text of [r.stderr, JSON.stringify(r), log]) assert.ok(!text.includes('s3cret'), text);
    } finally {
      ws.remove();
    }
  });

  test('--dry-run needs no download: an unreachable URL with a sha256 still gets its key', async () => {
    const ws = TempWorkspace.create();
    try {
      const src = `{url: "http://127.0.0.1:9/never.tar.gz", sha256: ${'cd'.repeat(32)}}`;
      ws.write('BUILD.yaml', buildYaml(commandPackage('u', src)));
      const r = await ws.build(['--dry-run']);
      assert.deepEqual(r.targets.map((t) => t.status), ['would-build']);
      assert.match(r.targets[0]!.key, /^[0-9a-f]{64}$/);
      // The URL is not in the key: the same bytes from a mirror are the same source.
      ws.write('BUILD.yaml', buildYaml(commandPackage('u', src.replace('127.0.0.1:9', 'mirror.invalid'))));
      const moved = await ws.build(['--dry-run']);
      assert.equal(moved.targets[0]!.key, r.targets[0]!.key);
    } finally {
      ws.remove();
    }
  });
});

describe('package index sources', () => {
  test('an sdist from a PEP 503 index builds a wheel with build_dir; an index without hashes is refused', async () => {
    const ws = TempWorkspace.create();
    const root = path.join(ws.cacheDir, '..', 'index');
    const srv = await serve(root);
    try {
      const stage = path.join(ws.cacheDir, '..', 'stage', 'demo_pkg-1.0');
      fs.mkdirSync(path.join(stage, 'python'), { recursive: true });
      fs.writeFileSync(path.join(stage, 'PKG-INFO'), 'Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n');
      fs.writeFileSync(path.join(stage, 'python', 'setup.py'), "from setuptools import setup\nsetup(name='demo-pkg', version='1.0', py_modules=['demo_pkg'])\n");
      fs.writeFileSync(path.join(stage, 'python', 'demo_pkg.py'), 'VALUE = 42\n');
      fs.mkdirSync(path.join(root, 'files'), { recursive: true });
      const sdist = path.join(root, 'files', 'demo_pkg-1.0.tar.gz');
      await sh('tar', ['-C', path.dirname(stage), '-czf', sdist, 'demo_pkg-1.0']);
      fs.mkdirSync(path.join(root, 'simple', 'demo-pkg'), { recursive: true });
      fs.writeFileSync(
        path.join(root, 'simple', 'demo-pkg', 'index.html'),
        '<!DOCTYPE html><html><body>\n' +
          '<a href="../../files/demo_pkg-0.9.tar.gz#sha256=' + '0'.repeat(64) + '">demo_pkg-0.9.tar.gz</a>\n' +
          `<a href="../../files/demo_pkg-1.0.tar.gz#sha256=${sha256(sdist)}">demo_pkg-1.0.tar.gz</a>\n` +
          '<a href="../../files/demo_pkg-1.1.tar.gz">demo_pkg-1.1.tar.gz</a>\n</body></html>\n',
      );
      const index = `${srv.url}/simple`;
      ws.write(
        'BUILD.yaml',
        `toolchains:\n  py:\n    python: ${SYSTEM_PYTHON}\nvariants:\n  cpu: {toolchain: py}\npackages:\n` +
          `  demo:\n    rule: python_wheel\n    source: {index: "${index}", name: Demo.Pkg, version: "1.0"}\n` +
          `    build_dir: python\n    test: python -c "import demo_pkg; assert demo_pkg.VALUE == 42"\n`,
      );
      const r = await ws.build();
      assert.equal(r.targets[0]!.status, 'built');
      assert.deepEqual(r.targets[0]!.wheels.map((w) => path.basename(w)), ['demo_pkg-1.0-py3-none-any.whl']);
      assert.equal(srv.hits.get('/simple/demo-pkg/'), 1);

      const noHash = ws.read('BUILD.yaml').replace('version: "1.0"', 'version: "1.1"').replace('rule: python_wheel', 'rule: command\n    cmd: "true"').replace(/    build_dir.*\n    test.*\n/, '');
      ws.write('BUILD.yaml', noHash);
      const bad = await ws.run(['build']);
      assert.equal(bad.code, 1);
      assert.equal(
        bad.stderr,
        `wg: error: source of package "demo": index ${index}: demo_pkg-1.1.tar.gz has no #sha256= hash on ${index}/demo-pkg/; wg only builds from verified downloads\n` +
          'wg: nothing was built\n',
      );

      ws.write('BUILD.yaml', noHash.replace('version: "1.1"', 'version: "2.0"'));
      const missing = await ws.run(['build']);
      assert.equal(missing.code, 2);
      assert.match(
        missing.stderr,
        new RegExp(`^BUILD\\.yaml:10:79: error: source of package "demo": the index ${index.replace(/[.]/g, '\\.')} has no sdist of "Demo.Pkg" version 2\\.0 \\(sdists there: 0\\.9, 1\\.0, 1\\.1\\)\n`),
      );
    } finally {
      await srv.close();
      ws.remove();
    }
  });
});

describe('source: diagnostics', () => {
  test('unknown fields, wrong combinations and missing fields are reported at their bytes, all at once', async () => {
    const ws = TempWorkspace.create();
    try {
      ws.write(
        'BUILD.yaml',
        buildYaml(
          commandPackage('a', '{git: "file:///x", reff: main}') +
            commandPackage('b', '{git: "file:///x", url: "http://h/x.tgz", ref: main}') +
            commandPackage('c', '{url: "http://h/x.tgz"}') +
            commandPackage('d', '{url: "http://h/x.tgz", sha256: abc}') +
            commandPackage('e', '{url: "http://h/x.tgz", sha256: ' + 'a'.repeat(64) + ', ref: main}') +
            commandPackage('f', '{git: "ext::sh%-c%touch%x", ref: main}') +
            commandPackage('g', '{index: "https://pypi.example/simple", name: x, version: 1.0}'),
        ),
      );
      const r = await ws.run(['build']);
      assert.equal(r.code, 2);
      const errors = r.stderr.split('\n').filter((l) => l.startsWith('BUILD.yaml:'));
      assert.deepEqual(errors, [
        'BUILD.yaml:6:32: error: unknown field "reff" in package "a" (did you mean "ref"?)',
        'BUILD.yaml:11:32: error: source of package "b" names both "git" and "url"; a source is one of "git", "url" or "index"',
        'BUILD.yaml:16:19: error: url source of package "c" is missing "sha256" (every download is verified; `sha256sum FILE` prints it)',
        'BUILD.yaml:21:45: error: "sha256" of package "d" must be 64 hex digits, got "abc"',
        'BUILD.yaml:26:111: error: "ref" does not belong in a url source (package "e"); a url source takes "url", "sha256" and "strip_components"',
        'BUILD.yaml:31:19: error: git URL "ext::sh%-c%touch%x" of package "f" is not an https, http, ssh, git or file URL (or user@host:path)',
        'BUILD.yaml:36:70: error: "version" of package "g" must be a string (quote versions such as "1.0"), got a number',
      ]);
      assert.ok(r.stderr.endsWith('wg: 7 errors in BUILD.yaml; nothing was built\n'), r.stderr);
    } finally {
      ws.remove();
    }
  });
});
