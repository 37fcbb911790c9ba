// Hostile sources through the real `wg`: archives that try to write outside the extraction root (zip-slip in a tar
// and a zip, an absolute name, a symlink or hardlink that escapes, a file written through an escaping symlink,
// FIFOs and devices) and git refs that try to become options or shell commands. Each is refused with its exact
// message, and a sentinel file outside the root keeps its bytes.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { sh, SYSTEM_PYTHON, TempWorkspace } from './rig.js';

/** One raw ustar header block (node-tar's own writer refuses the names these tests need). */
function header(name: string, type: string, size: number, linkname = '', mode = 0o644): Buffer {
  const h = Buffer.alloc(512);
  const field = (text: string, offset: number, length: number): void => {
    assert.ok(Buffer.byteLength(text) <= length, `${text} does not fit ${length} bytes`);
    h.write(text, offset, length, 'utf8');
  };
  const octal = (n: number, length: number): string => `${n.toString(8).padStart(length - 1, '0')}\0`;
  field(name, 0, 100);
  field(octal(mode, 8), 100, 8);
  field(octal(0, 8), 108, 8);
  field(octal(0, 8), 116, 8);
  field(octal(size, 12), 124, 12);
  field(octal(0, 12), 136, 12);
  field('        ', 148, 8);
  field(type, 156, 1);
  field(linkname, 157, 100);
  field('ustar\0', 257, 6);
  field('00', 263, 2);
  let sum = 0;
  for (const b of h) sum += b;
  field(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return h;
}

interface TarEntry {
  name: string;
  /** ustar type flag: 0 file, 1 hardlink, 2 symlink, 3 char device, 5 folder, 6 FIFO. */
  type?: string;
  body?: string;
  link?: string;
}

function tarOf(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    blocks.push(header(e.name, e.type ?? '0', body.length, e.link ?? ''));
    if (body.length > 0) blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const sha256 = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test('hostile archives are refused before any byte lands outside the extraction root', async () => {
  const ws = TempWorkspace.create();
  try {
    const base = path.dirname(ws.cacheDir);
    const sentinel = path.join(base, 'sentinel.txt');
    fs.writeFileSync(sentinel, 'original\n');
    // From any sandbox under the cache, this many `..` reach `/`; the rest of the name walks down to the sentinel.
    const slip = `${'../'.repeat(16)}${sentinel.slice(1)}`;
    const archives = path.join(base, 'archives');
    fs.mkdirSync(archives);
    const cases: [string, Buffer, string][] = [
      ['tar-slip', gzipSync(tarOf([{ name: 'ok.txt', body: 'fine' }, { name: slip, body: 'evil\n' }])), `entry "${slip}" leaves the extraction root ("..")`],
      ['tar-absolute', tarOf([{ name: sentinel, body: 'evil\n' }]), `entry "${sentinel}" is an absolute path`],
      [
        'tar-symlink-then-write',
        tarOf([
          { name: 'escape', type: '2', link: '../../../../../../../../../../../..' },
          { name: `escape${path.dirname(sentinel)}/sentinel.txt`, body: 'evil\n' },
        ]),
        'symlink "escape" -> "../../../../../../../../../../../.." points outside the extraction root',
      ],
      [
        // Inside-looking at first: `up` is the root itself, so `up/..` is above it.
        'tar-symlink-chain',
        tarOf([
          { name: 'up', type: '2', link: '.' },
          { name: 'a/out', type: '2', link: '../up/..' },
        ]),
        'symlink "a/out" -> "../up/.." points outside the extraction root',
      ],
      ['tar-hardlink', tarOf([{ name: 'hl', type: '1', link: slip }]), `hardlink "hl" -> "${slip}" leaves the extraction root ("..")`],
      ['tar-hardlink-absolute', tarOf([{ name: 'hl', type: '1', link: sentinel }]), `hardlink "hl" -> "${sentinel}" is an absolute path`],
      ['tar-fifo', tarOf([{ name: 'pipe', type: '6' }]), 'entry "pipe" is a FIFO; only files, folders and links are extracted'],
      ['tar-device', tarOf([{ name: 'null', type: '3' }]), 'entry "null" is a character device; only files, folders and links are extracted'],
    ];
    for (const [name, bytes] of cases) fs.writeFileSync(path.join(archives, name), bytes);
    const zipScript =
      'import sys, zipfile\n' +
      'z = zipfile.ZipFile(sys.argv[1], "w")\n' +
      'z.writestr("ok.txt", "fine")\n' +
      'z.writestr(sys.argv[2], "evil\\n")\n' +
      'link = zipfile.ZipInfo("link")\n' +
      'link.create_system = 3\n' +
      'link.external_attr = 0o120777 << 16\n' +
      'z.writestr(link, sys.argv[3]) if len(sys.argv) > 3 else None\n' +
      'z.close()\n';
    await sh(SYSTEM_PYTHON, ['-c', zipScript, path.join(archives, 'zip-slip'), slip]);
    await sh(SYSTEM_PYTHON, ['-c', zipScript, path.join(archives, 'zip-symlink'), 'fine.txt', '/etc']);
    cases.push(['zip-slip', Buffer.alloc(0), `entry "${slip}" leaves the extraction root ("..")`]);
    cases.push(['zip-symlink', Buffer.alloc(0), 'symlink "link" -> "/etc" points to an absolute path']);

    let yaml = 'variants:\n  cpu: {}\npackages:\n';
    for (const [name] of cases) {
      const file = path.join(archives, name);
      yaml += `  ${name}:\n    rule: command\n    source: {url: "file://${file}", sha256: ${sha256(file)}}\n    cmd: "touch ran; ls -la > out.txt"\n    outs: [out.txt]\n`;
    }
    ws.write('BUILD.yaml', yaml);
    const r = await ws.build(['--keep-going'], { expectCode: 1 });
    const errors = Object.fromEntries(r.targets.map((t) => [t.label.slice(2, -4), t.error]));
    assert.deepEqual(errors, Object.fromEntries(cases.map(([name, , message]) => [name, `url file://${path.join(archives, name)}: ${message}`])));
    assert.equal(fs.readFileSync(sentinel, 'utf8'), 'original\n');
    // Nothing of any archive was written: each sandbox's src/ is empty or absent, and no command ran.
    for (const sandbox of fs.readdirSync(path.join(ws.cacheDir, 'sandbox'))) {
      const src = path.join(ws.cacheDir, 'sandbox', sandbox, 'src');
      assert.deepEqual(fs.existsSync(src) ? fs.readdirSync(src) : [], [], sandbox);
    }
    assert.deepEqual(fs.readdirSync(base).sort(), ['archives', 'cache', 'sentinel.txt', 'ws']);
  } finally {
    ws.remove();
  }
});

test('hostile git refs and URLs are refused before git runs (a logging `git` wrapper stays silent)', async () => {
  const ws = TempWorkspace.create();
  try {
    const base = path.dirname(ws.cacheDir);
    const realGit = execFileSync('sh', ['-c', 'command -v git']).toString().trim();
    const bin = path.join(base, 'bin');
    const log = path.join(base, 'git-calls.log');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'git'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec '${realGit}' "$@"\n`, { mode: 0o755 });
    const repo = path.join(base, 'repo');
    fs.mkdirSync(repo);
    execFileSync(realGit, ['init', '-q', repo]);
    const pwned = path.join(base, 'pwned');
    const victim = path.join(base, 'x');
    fs.writeFileSync(victim, 'keep me\n');
    const pkg = (name: string, source: string): string =>
      `  ${name}:\n    rule: command\n    source: ${source}\n    cmd: "true"\n`;
    ws.write(
      'BUILD.yaml',
      'variants:\n  cpu: {}\npackages:\n' +
        pkg('a', `{git: "file://${repo}", ref: "--upload-pack=touch ${pwned}"}`) +
        pkg('b', `{git: "file://${repo}", ref: "main;rm -rf ${victim}"}`) +
        pkg('c', `{git: "file://${repo}", ref: "main\\tx"}`) +
        pkg('d', `{git: "file://${repo}", ref: "v1/../../x"}`) +
        pkg('e', `{git: "--upload-pack=touch ${pwned}", ref: main}`) +
        pkg('f', `{git: "ext::sh -c touch% ${pwned}", ref: main}`),
    );
    const r = await ws.run(['build'], { env: { PATH: `${bin}:${process.env['PATH'] ?? ''}` } });
    assert.equal(r.code, 2);
    const col = (prefix: string): number => 13 + prefix.length;
    const refAt = 13 + `{git: "file://${repo}", ref: `.length;
    assert.deepEqual(
      r.stderr.split('\n').filter((l) => l.startsWith('BUILD.yaml:')),
      [
        `BUILD.yaml:6:${refAt}: error: ref "--upload-pack=touch ${pwned}" of package "a" starts with "-", which git would read as an option`,
        `BUILD.yaml:10:${refAt}: error: ref "main;rm -rf ${victim}" of package "b" contains ";", which is not allowed in a ref (letters, digits and "._/+@,=-" are)`,
        `BUILD.yaml:14:${refAt}: error: ref "main\\tx" of package "c" contains "\\t", which is not allowed in a ref (letters, digits and "._/+@,=-" are)`,
        `BUILD.yaml:18:${refAt}: error: ref "v1/../../x" of package "d" contains "..", which is not allowed in a ref`,
        `BUILD.yaml:22:${col('{git: ')}: error: git URL "--upload-pack=touch ${pwned}" of package "e" starts with "-", which git would read as an option`,
        `BUILD.yaml:26:${col('{git: ')}: error: git URL "ext::sh -c touch% ${pwned}" of package "f" contains whitespace or control characters`,
      ],
    );
    assert.ok(!fs.existsSync(log), 'git ran');
    assert.ok(!fs.existsSync(pwned));
    assert.equal(fs.readFileSync(victim, 'utf8'), 'keep me\n');
  } finally {
    ws.remove();
  }
});

test('a git commit whose tree has a symlink leaving it is refused', async () => {
  const ws = TempWorkspace.create();
  try {
    const repo = path.join(path.dirname(ws.cacheDir), 'repo');
    fs.mkdirSync(repo);
    const git = (...args: string[]): string =>
      execFileSync('git', ['-c', 'user.email=wg@example.com', '-c', 'user.name=wg', ...args], { cwd: repo }).toString().trim();
    git('init', '-q', '-b', 'main');
    fs.writeFileSync(path.join(repo, 'hello.txt'), 'hi\n');
    fs.symlinkSync('/etc', path.join(repo, 'evil'));
    git('add', '-A');
    git('commit', '-q', '-m', 'escape');
    const commit = git('rev-parse', 'HEAD');
    ws.write('BUILD.yaml', `variants:\n  cpu: {}\npackages:\n  g:\n    rule: command\n    source: {git: "file://${repo}", ref: main}\n    cmd: "ls evil/ > out.txt"\n    outs: [out.txt]\n`);
    const r = await ws.build([], { expectCode: 1 });
    assert.equal(r.targets[0]!.error, `git file://${repo} at ${commit}: evil resolves outside the source tree (/etc)`);
    assert.ok(!fs.existsSync(ws.path('wg-out/out/g.cpu.out.txt')));
  } finally {
    ws.remove();
  }
});
