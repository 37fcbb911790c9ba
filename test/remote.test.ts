// The shared remote cache through the real `wg` binary against a real nginx (WebDAV PUT, started by the test on
// 127.0.0.1 with its own prefix): upload from one workspace copy, cached builds in another; corrupt blobs caught;
// a stopped, failing, hanging or refusing server costs one warning and nothing else; signatures; credentials never
// shown. Most targets are fast `command` targets; one test shares a real wheel.

import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { decodeActionResult, encodeActionResult, ProtoError } from '../cache/action-result-proto.js';
import { checkSignature, parseSigningKey, parseTrustedKey, publicKeyText, signEntry } from '../cache/signing.js';
import { NginxCache, nginxAvailable } from './nginx-rig.js';
import { statuses, TempWorkspace, withStatus, type BuildJson, type RunResult } from './rig.js';

interface RemoteJson {
  url: string;
  hits: number;
  misses: number;
  uploads: number;
  disabled: boolean;
}
type Build = BuildJson & { stderr: string; remote?: RemoteJson };

// `gen`'s noise.bin is random, so a rebuilt output never equals the uploaded one: byte equality proves where a
// file came from. `use` reads gen's outputs and leaves an executable.
const TARGETS = `variants:
  v: {}
packages:
  gen:
    rule: command
    source: src
    cmd: "cat input.txt > gen.txt; head -c 300000 /dev/urandom > noise.bin"
    outs: [gen.txt, noise.bin]
  use:
    rule: command
    deps: [gen]
    cmd: 'cat $WG_DEP_FILES | sha256sum > use.txt; printf "#!/bin/sh\\necho hi\\n" > tool.sh; chmod 755 tool.sh'
    outs: [use.txt, tool.sh]
`;

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function nginx(writes: Parameters<typeof NginxCache.start>[0] = 'open'): Promise<NginxCache> {
  const n = await NginxCache.start(writes);
  cleanups.push(() => n.remove());
  return n;
}

/** A workspace with the two command targets; `remote` is the body of its remote_cache section (or none). */
function workspace(remote: string | null, files: Record<string, string> = {}, targets = TARGETS): TempWorkspace {
  const ws = TempWorkspace.create({ 'BUILD.yaml': targets + (remote ? `remote_cache:\n${remote}` : ''), 'src/input.txt': 'hello\n', ...files });
  cleanups.push(() => ws.remove());
  return ws;
}

async function build(ws: TempWorkspace, args: string[] = [], env: Record<string, string> = {}): Promise<Build> {
  return (await ws.build(args, { env })) as Build;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Every output file of a build, by its path inside wg-out, with its bytes. */
function outputs(ws: TempWorkspace, result: BuildJson): Map<string, Buffer> {
  const files = result.targets.flatMap((t) => [...t.files, ...t.wheels]);
  return new Map(files.map((f) => [path.relative(ws.dir, f), fs.readFileSync(f)]));
}

/** The output `name` of some target, in wg-out/out/ as `<package>.<variant>.<name>`. */
function fileOf(result: BuildJson, name: string): string {
  const f = result.targets.flatMap((t) => t.files).find((p) => path.basename(p).endsWith(`.${name}`));
  assert.ok(f, `no output ${name}`);
  return f;
}

function keyOf(result: BuildJson, label: string): string {
  return result.targets.find((t) => t.label === label)!.key;
}

/** Lines of stderr that are warnings. */
function warnings(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('warning: '));
}

/** Every file below `dir`, recursively. */
function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
}

/** The local CAS: every blob must be named by its own sha256. Returns the digests. */
function checkLocalCas(cacheDir: string): string[] {
  const blobs = walk(path.join(cacheDir, 'cas'));
  for (const b of blobs) assert.equal(sha256(fs.readFileSync(b)), path.basename(b), `local blob ${b} is not what its name says`);
  return blobs.map((b) => path.basename(b));
}

const SKIP = nginxAvailable() ? false : 'nginx with the DAV module is not installed (Debian package nginx)';

describe('remote cache (Bazel HTTP protocol, real nginx)', { skip: SKIP }, () => {
  it('a copy in another folder with an empty local cache builds nothing: every target comes from the remote, byte-identical', async () => {
    const n = await nginx();
    const a = workspace(`  url: ${n.url}\n`);
    const first = await build(a, ['--remote-upload']);
    assert.deepEqual(statuses(first), { '//gen:v': 'built', '//use:v': 'built' });
    assert.equal(first.remote?.uploads, 2);
    assert.match(first.stderr, new RegExp(`^wg: remote cache ${n.url}: 0 hits, 2 misses, 2 uploads \\(\\d+\\.\\d KiB\\)$`, 'm'));

    // The AC value is an ActionResult protobuf whose output files (and stdout, the log) all exist in the CAS.
    const genKey = keyOf(first, '//gen:v');
    const ac = decodeActionResult(fs.readFileSync(n.file('ac', genKey)));
    assert.deepEqual(ac.outputFiles.map((f) => f.path).sort(), ['.wg/manifest.json', 'out/gen.txt', 'out/noise.bin']);
    for (const d of [...ac.outputFiles.map((f) => f.digest), ac.stdoutDigest!]) {
      assert.equal(fs.statSync(n.file('cas', d.hash)).size, d.sizeBytes);
    }
    assert.equal(ac.outputFiles.find((f) => f.path === 'out/noise.bin')!.digest.hash, sha256(fs.readFileSync(fileOf(first, 'noise.bin'))));

    // CAS first, AC last; each blob asked for with HEAD before it is sent.
    const log = n.requests();
    for (const [i, q] of log.entries()) {
      if (q.method === 'PUT' && q.path.includes('/cas/')) {
        assert.ok(log.slice(0, i).some((h) => h.method === 'HEAD' && h.path === q.path && h.status === 404), `no HEAD before ${q.path}`);
      }
      if (q.method !== 'PUT' || !q.path.includes('/ac/')) continue;
      const entry = decodeActionResult(fs.readFileSync(n.file('ac', path.basename(q.path))));
      for (const d of [...entry.outputFiles.map((f) => f.digest), entry.stdoutDigest!]) {
        const stored = (h: (typeof log)[number]): boolean => h.path.endsWith(`/cas/${d.hash}`) && (h.method === 'PUT' || h.status === 200);
        assert.ok(log.slice(0, i).some(stored), `${q.path} was written before blob ${d.hash}`);
      }
    }

    const b = workspace(`  url: ${n.url}\n`);
    const dry = await build(b, ['--dry-run']);
    assert.deepEqual(statuses(dry), { '//gen:v': 'cached', '//use:v': 'cached' });
    assert.deepEqual(checkLocalCas(b.cacheDir), [], 'a dry run stores nothing');
    const off = await build(b, ['--dry-run', '--no-remote-cache']);
    assert.deepEqual(statuses(off), { '//gen:v': 'would-build', '//use:v': 'would-build' });
    assert.equal(off.remote, undefined);

    const second = await build(b);
    assert.deepEqual(statuses(second), { '//gen:v': 'cached', '//use:v': 'cached' });
    assert.equal(second.remote?.hits, 2);
    assert.deepEqual(outputs(b, second), outputs(a, first));
    const useAc = decodeActionResult(fs.readFileSync(n.file('ac', keyOf(first, '//use:v'))));
    assert.deepEqual(
      useAc.outputFiles.map((f) => [f.path, f.isExecutable]).sort(),
      [['.wg/manifest.json', false], ['out/tool.sh', true], ['out/use.txt', false]],
    );
    assert.equal(fs.statSync(fileOf(second, 'tool.sh')).mode, fs.statSync(fileOf(first, 'tool.sh')).mode);
    assert.equal(fs.readFileSync(second.targets[0]!.log!, 'utf8'), fs.readFileSync(first.targets[0]!.log!, 'utf8'));
    checkLocalCas(b.cacheDir);
    assert.deepEqual(fs.readdirSync(path.join(b.cacheDir, 'tmp')), []);
    assert.deepEqual(warnings(second.stderr), []);

    // Local first: a build whose results are all local asks the remote nothing.
    const asked = n.requests().length;
    assert.deepEqual(statuses(await build(b)), { '//gen:v': 'cached', '//use:v': 'cached' });
    assert.equal(n.requests().length, asked);

    // An entry whose blob the server lost (evicted) is a miss for that target only.
    const genTxt = sha256(fs.readFileSync(fileOf(first, 'gen.txt')));
    fs.rmSync(n.file('cas', genTxt));
    const c = await build(workspace(`  url: ${n.url}\n`));
    assert.deepEqual(statuses(c), { '//gen:v': 'built', '//use:v': 'cached' });
    assert.deepEqual(warnings(c.stderr), [`warning: remote entry ${genKey.slice(0, 12)}: blob ${genTxt} is missing; building locally`]);
  });

  it('a bit-flipped and a truncated blob on the server are caught; the targets build locally and the bad bytes never reach the local cache', async () => {
    const n = await nginx();
    const a = workspace(`  url: ${n.url}\n  upload: true\n`);
    const first = await build(a);
    const noise = fs.readFileSync(fileOf(first, 'noise.bin'));
    const use = fs.readFileSync(fileOf(first, 'use.txt'));
    const flipped = Buffer.from(noise);
    flipped[1000] = flipped[1000]! ^ 0x10;
    fs.writeFileSync(n.file('cas', sha256(noise)), flipped);
    const truncated = use.subarray(0, 20);
    fs.writeFileSync(n.file('cas', sha256(use)), truncated);

    const b = workspace(`  url: ${n.url}\n`);
    const second = await build(b);
    assert.deepEqual(statuses(second), { '//gen:v': 'built', '//use:v': 'built' });
    const genKey = keyOf(first, '//gen:v').slice(0, 12);
    const useKey = keyOf(first, '//use:v').slice(0, 12);
    assert.deepEqual(warnings(second.stderr).sort(), [
      `warning: remote entry ${genKey}: blob ${sha256(noise)} failed verification: expected sha256 ${sha256(noise)} (${noise.length} bytes), got sha256 ${sha256(flipped)} (${flipped.length} bytes); building locally`,
      `warning: remote entry ${useKey}: blob ${sha256(use)} failed verification: expected sha256 ${sha256(use)} (${use.length} bytes), got sha256 ${sha256(truncated)} (20 bytes); building locally`,
    ].sort());
    assert.notDeepEqual(fs.readFileSync(fileOf(second, 'noise.bin')), noise, 'gen was rebuilt, not restored');
    const local = checkLocalCas(b.cacheDir);
    assert.ok(!local.includes(sha256(flipped)) && !local.includes(sha256(truncated)));
    for (const f of walk(b.cacheDir)) {
      assert.ok(!fs.readFileSync(f).includes(flipped.subarray(900, 1100)), `${f} holds the flipped bytes`);
    }
    assert.deepEqual(fs.readdirSync(path.join(b.cacheDir, 'tmp')), []);
  });

  it('a download cut off halfway is tried again, and the entry is still used', async () => {
    const n = await nginx();
    const first = await build(workspace(`  url: ${n.url}\n  upload: true\n`));
    const noise = fs.readFileSync(fileOf(first, 'noise.bin'));
    let cuts = 0;
    // In front of nginx: the first GET of noise.bin's blob gets its headers and part of its body, then a reset.
    const proxy = http.createServer((req, res) => {
      const upstream = http.request({ host: '127.0.0.1', port: n.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode!, up.headers);
        if (req.method !== 'GET' || !req.url!.endsWith(sha256(noise)) || cuts++ > 0) return void up.pipe(res);
        let sent = 0;
        up.on('data', (chunk: Buffer) => {
          if (sent > 100_000) return void (res.destroy(), up.destroy());
          sent += chunk.length;
          res.write(chunk);
        });
      });
      req.pipe(upstream);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => proxy.close(r)));
    const url = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}/cache`;
    const second = await build(workspace(`  url: ${url}\n`));
    assert.equal(cuts, 2, 'the blob was asked for twice');
    assert.deepEqual(statuses(second), { '//gen:v': 'cached', '//use:v': 'cached' });
    assert.deepEqual(warnings(second.stderr), []);
    assert.deepEqual(fs.readFileSync(fileOf(second, 'noise.bin')), noise);
  });

  it('a stopped server is one warning and a green build', async () => {
    const n = await nginx();
    await n.stop();
    const ws = workspace(`  url: ${n.url}\n  upload: true\n`);
    const t0 = Date.now();
    const r = await build(ws);
    assert.deepEqual(statuses(r), { '//gen:v': 'built', '//use:v': 'built' });
    const w = warnings(r.stderr);
    assert.equal(w.length, 1, r.stderr);
    assert.match(
      w[0]!,
      new RegExp(`^warning: remote cache ${n.url} is unavailable \\(GET ac/[0-9a-f]{12}: connection refused \\(3 attempts\\)\\); building locally without it for the rest of this run$`),
    );
    assert.match(r.stderr, /^wg: remote cache .*: 0 hits, 0 misses, 0 uploads; turned off after an error$/m);
    assert.ok(Date.now() - t0 < 20_000);
  });

  it('a server that answers 503 is retried a bounded number of times, then one warning and a green build', async () => {
    let requests = 0;
    const srv = http.createServer((_, res) => {
      requests++;
      res.writeHead(503).end();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => srv.close(r)));
    const url = `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}/cache`;
    const r = await build(workspace(`  url: ${url}\n  upload: true\n`));
    assert.deepEqual(statuses(r), { '//gen:v': 'built', '//use:v': 'built' });
    const w = warnings(r.stderr);
    assert.equal(w.length, 1, r.stderr);
    assert.match(w[0]!, /is unavailable \(GET ac\/[0-9a-f]{12}: 503 Service Unavailable \(3 attempts\)\); building locally/);
    // Two lookups start together; each is tried at most three times, and nothing is sent after the remote is off.
    assert.ok(requests >= 3 && requests <= 6, `${requests} requests`);
  });

  it('a server that accepts connections and never answers costs one timeout, not one per request', async () => {
    const sockets = new Set<net.Socket>();
    const srv = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => srv.close(r));
    });
    const url = `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}/cache`;
    const ws = workspace(`  url: ${url}\n  upload: true\n  timeout: 1s\n`);
    const t0 = Date.now();
    const r = (await ws.run(['build', '--json'], { timeoutMs: 60_000 })) as RunResult;
    const elapsed = Date.now() - t0;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(statuses(JSON.parse(r.stdout) as BuildJson), { '//gen:v': 'built', '//use:v': 'built' });
    const w = warnings(r.stderr);
    assert.equal(w.length, 1, r.stderr);
    assert.match(w[0]!, new RegExp(`^warning: remote cache ${url} is unavailable \\(GET ac/[0-9a-f]{12}: no answer for 1s\\); building locally`));
    assert.ok(elapsed < 15_000, `took ${elapsed} ms`);
  });

  it('an upload refused with 403 is one warning and a green build, and nothing is written', async () => {
    const n = await nginx('deny');
    const r = await build(workspace(`  url: ${n.url}\n`), ['--remote-upload']);
    assert.deepEqual(statuses(r), { '//gen:v': 'built', '//use:v': 'built' });
    const w = warnings(r.stderr);
    assert.equal(w.length, 1, r.stderr);
    assert.match(w[0]!, new RegExp(`^warning: remote cache ${n.url} refused an upload \\(PUT cas/[0-9a-f]{12}: 403 Forbidden\\); no more uploads in this run$`));
    assert.equal(n.successfulWrites(), 0);
    assert.ok(n.requests().some((q) => q.method === 'PUT' && q.status === 403), 'an upload was attempted');
  });

  it('with trusted_keys, only entries signed by a trusted key are used', async () => {
    const n = await nginx();
    const keys = fs.mkdtempSync(path.join(path.dirname(n.prefix), 'wg-keys-'));
    cleanups.push(() => fs.rmSync(keys, { recursive: true, force: true }));
    const ci = generateKeyPairSync('ed25519');
    const other = generateKeyPairSync('ed25519');
    fs.writeFileSync(path.join(keys, 'ci.pem'), ci.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const pub = (k: KeyObject): string => k.export({ type: 'spki', format: 'pem' }).toString();
    const id = (k: KeyObject): string => `ed25519:${sha256(k.export({ type: 'spki', format: 'der' }).subarray(-32)).slice(0, 16)}`;
    const trusting = (k: KeyObject): TempWorkspace => workspace(`  url: ${n.url}\n  trusted_keys: [keys/trusted.pub]\n`, { 'keys/trusted.pub': pub(k) });

    const signed = await build(workspace(`  url: ${n.url}\n`), ['--remote-upload', '--remote-sign-key', path.join(keys, 'ci.pem')]);
    const gen = keyOf(signed, '//gen:v');
    const use = keyOf(signed, '//use:v');
    assert.deepEqual(statuses(await build(trusting(ci.publicKey))), { '//gen:v': 'cached', '//use:v': 'cached' });

    const untrusted = await build(trusting(other.publicKey));
    assert.deepEqual(withStatus(untrusted, 'built'), ['//gen:v', '//use:v']);
    assert.deepEqual(warnings(untrusted.stderr).sort(), [
      `warning: remote entry ${gen.slice(0, 12)}: signature by ${id(ci.publicKey)} not trusted; building locally`,
      `warning: remote entry ${use.slice(0, 12)}: signature by ${id(ci.publicKey)} not trusted; building locally`,
    ].sort());

    // Each entry's signature is valid, but for the other entry: swapping them must not pass.
    const acs = [gen, use].map((k) => decodeActionResult(fs.readFileSync(n.file('ac', k))));
    const sigs = acs.map((m) => m.outputFiles.find((f) => f.path === '.wg/signature')!);
    acs.forEach((m, i) => {
      m.outputFiles = m.outputFiles.map((f) => (f.path === '.wg/signature' ? sigs[1 - i]! : f));
      fs.writeFileSync(n.file('ac', [gen, use][i]!), encodeActionResult(m));
    });
    const swapped = await build(trusting(ci.publicKey));
    assert.deepEqual(withStatus(swapped, 'built'), ['//gen:v', '//use:v']);
    assert.deepEqual(warnings(swapped.stderr).sort(), [
      `warning: remote entry ${gen.slice(0, 12)}: bad signature; building locally`,
      `warning: remote entry ${use.slice(0, 12)}: bad signature; building locally`,
    ].sort());

    // An entry uploaded without a key is a miss for a reader that trusts keys, and a hit for one that does not.
    const unsignedTargets = TARGETS.replace('cat input.txt > gen.txt', 'cat input.txt input.txt > gen.txt');
    const unsigned = await build(workspace(`  url: ${n.url}\n`, {}, unsignedTargets), ['--remote-upload']);
    const strict = workspace(`  url: ${n.url}\n  trusted_keys: [keys/trusted.pub]\n`, { 'keys/trusted.pub': pub(ci.publicKey) }, unsignedTargets);
    const missing = await build(strict);
    assert.deepEqual(withStatus(missing, 'built'), ['//gen:v', '//use:v']);
    assert.deepEqual(warnings(missing.stderr).sort(), [
      `warning: remote entry ${keyOf(unsigned, '//gen:v').slice(0, 12)}: signature missing; building locally`,
      `warning: remote entry ${keyOf(unsigned, '//use:v').slice(0, 12)}: signature missing; building locally`,
    ].sort());
    assert.deepEqual(statuses(await build(workspace(`  url: ${n.url}\n`, {}, unsignedTargets))), { '//gen:v': 'cached', '//use:v': 'cached' });
  });

  it('credentials from the URL, the token variable and extra headers never appear in output, logs or the cache', async () => {
    const n = await nginx({ user: 'ci', password: 'pw-Z9xSECRET' });
    const secrets = ['pw-Z9xSECRET', 'pw-WRONGSECRET', 'tok-Q7SECRET', 'hdr-K3SECRET', Buffer.from('ci:pw-Z9xSECRET').toString('base64')];
    const base = new URL(n.url);
    const withAuth = (password: string): string => `http://ci:${password}@${base.host}${base.pathname}`;
    const seen: string[] = [];
    const a = workspace(null);
    const b = workspace(null);

    // A wrong password: the upload is refused (401) and the warning names the URL without its credentials.
    const refused = await a.run(['build', '--json', '--remote-upload', '--remote-header', 'X-Wg-Team=hdr-K3SECRET'], {
      env: { WG_REMOTE_CACHE: withAuth('pw-WRONGSECRET') },
    });
    seen.push(refused.stdout, refused.stderr);
    assert.equal(refused.code, 0, refused.stderr);
    assert.match(refused.stderr, new RegExp(`^warning: remote cache ${n.url} refused an upload \\(PUT cas/[0-9a-f]{12}: 401 Unauthorized\\); no more uploads in this run$`, 'm'));

    fs.rmSync(a.cacheDir, { recursive: true, force: true });
    const uploaded = await a.run(['build', '--json'], { env: { WG_REMOTE_CACHE: withAuth('pw-Z9xSECRET'), WG_REMOTE_UPLOAD: '1', WG_REMOTE_TOKEN: 'tok-Q7SECRET' } });
    seen.push(uploaded.stdout, uploaded.stderr);
    assert.equal((JSON.parse(uploaded.stdout) as Build).remote?.uploads, 2, uploaded.stderr);
    assert.ok(n.successfulWrites() > 0);

    const read = await b.run(['build', '--json', '--remote-cache', n.url, '--remote-header', 'X-Wg-Team=hdr-K3SECRET'], { env: { WG_REMOTE_TOKEN: 'tok-Q7SECRET' } });
    seen.push(read.stdout, read.stderr);
    assert.deepEqual(statuses(JSON.parse(read.stdout) as BuildJson), { '//gen:v': 'cached', '//use:v': 'cached' });

    for (const dir of [a.dir, a.cacheDir, b.dir, b.cacheDir]) for (const f of walk(dir)) seen.push(fs.readFileSync(f, 'latin1'));
    for (const secret of secrets) assert.ok(!seen.some((s) => s.includes(secret)), `${secret} leaked`);
  });

  it('mistakes in remote_cache are reported before anything runs, without showing credentials', async () => {
    const ws = workspace('  url: http://ci:pw-M1SECRET@127.0.0.1:9/cache\n  trusted_keys: [keys/nope.pub]\n  uplaod: true\n');
    const r = await ws.run(['build']);
    assert.equal(r.code, 2);
    assert.ok(!r.stderr.includes('pw-M1SECRET'), r.stderr);
    assert.match(r.stderr, /^BUILD\.yaml:\d+:3: error: unknown field "uplaod" in "remote_cache" \(did you mean "upload"\?\)$/m);
    fs.writeFileSync(ws.path('BUILD.yaml'), `${TARGETS}remote_cache:\n  url: http://ci:pw-M1SECRET@127.0.0.1:9/cache\n  trusted_keys: [keys/nope.pub]\n`);
    const r2 = await ws.run(['build']);
    assert.equal(r2.code, 2);
    assert.ok(!r2.stderr.includes('pw-M1SECRET'), r2.stderr);
    assert.match(
      r2.stderr,
      /^error: remote_cache\.url must not hold a user name or password \(BUILD\.yaml is committed\); put the URL with credentials in WG_REMOTE_CACHE or use token_env\n  BUILD\.yaml:15:8: the URL is not shown here$/m,
    );
    assert.match(r2.stderr, /^BUILD\.yaml:16:18: error: remote_cache\.trusted_keys: cannot read keys\/nope\.pub: ENOENT$/m);
    const r3 = await workspace(null).run(['build', '--remote-cache', 'ftp://cache.example/x']);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /^wg: error: --remote-cache must start with http:\/\/ or https:\/\/$/m);
  });

  it('a real wheel (the demo greet package) built in one copy is installed from the remote in another', async () => {
    const n = await nginx();
    const a = TempWorkspace.demo();
    const b = TempWorkspace.demo();
    cleanups.push(() => a.remove(), () => b.remove());
    const env = { WG_REMOTE_CACHE: n.url };
    const first = (await a.build(['//greet:cpu', '--remote-upload'], { env })) as Build;
    assert.deepEqual(statuses(first), { '//greet:cpu': 'built' });
    const second = (await b.build(['//greet:cpu'], { env })) as Build;
    assert.deepEqual(statuses(second), { '//greet:cpu': 'cached' });
    const [wa] = first.targets[0]!.wheels;
    const [wb] = second.targets[0]!.wheels;
    assert.ok(wa && wb && wa.endsWith('.whl'));
    assert.equal(path.relative(b.dir, wb), path.relative(a.dir, wa));
    assert.deepEqual(fs.readFileSync(wb), fs.readFileSync(wa));
  });
});

describe('ActionResult encoding and entry signatures (pure functions)', () => {
  const zeros = '0'.repeat(64);

  it('encodes REAPI field numbers: output_files = 2 { path = 1, digest = 2 { hash = 1, size_bytes = 2 } }', () => {
    const file1 = { path: 'a', digest: { hash: zeros, sizeBytes: 1 }, isExecutable: false };
    const bytes = encodeActionResult({ outputFiles: [file1], exitCode: 0, stdoutDigest: null, stderrDigest: null, worker: '' });
    const digest = Buffer.concat([Buffer.from([0x0a, 0x40]), Buffer.from(zeros), Buffer.from([0x10, 0x01])]);
    const file = Buffer.concat([Buffer.from([0x0a, 0x01, 0x61, 0x12, digest.length]), digest]);
    assert.deepEqual(Buffer.from(bytes), Buffer.concat([Buffer.from([0x12, file.length]), file]));
  });

  it('round-trips, skips fields it does not know, and rejects what is not an ActionResult', () => {
    const m = {
      outputFiles: [
        { path: 'out/x.whl', digest: { hash: zeros, sizeBytes: 3_000_000_000 }, isExecutable: false },
        { path: 'out/tool.sh', digest: { hash: 'f'.repeat(64), sizeBytes: 0 }, isExecutable: true },
      ],
      exitCode: 0,
      stdoutDigest: { hash: 'a'.repeat(64), sizeBytes: 12 },
      stderrDigest: null,
      worker: 'wg',
    };
    const bytes = encodeActionResult(m);
    assert.deepEqual(decodeActionResult(bytes), m);
    // field 12 (output_symlinks), as a server may add, is skipped
    assert.deepEqual(decodeActionResult(Buffer.concat([bytes, Buffer.from([0x62, 0x00])])), m);
    assert.throws(() => decodeActionResult(bytes.subarray(0, bytes.length - 5)), ProtoError);
    assert.throws(() => decodeActionResult(Buffer.from('<html>502 Bad Gateway</html>')), ProtoError);
    const absolute = encodeActionResult({ ...m, outputFiles: [{ ...m.outputFiles[0]!, path: '/etc/passwd' }] });
    assert.throws(() => decodeActionResult(absolute), /output path "\/etc\/passwd" is not a relative path inside the action/);
  });

  it('a signature verifies only for the entry it was made for, and only with a trusted key', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const key = parseSigningKey(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'ci.pem');
    const trusted = parseTrustedKey(publicKeyText(publicKey), 'inline');
    assert.equal(trusted.id, key.id);
    const entry = {
      key: zeros,
      manifest: { digest: 'a'.repeat(64), size: 10 },
      log: { digest: 'b'.repeat(64), size: 5 },
      outputs: [{ path: 'x.whl', kind: 'wheel', mode: 0o644, digest: 'c'.repeat(64), size: 7 }],
    };
    const sig = signEntry(entry, key);
    assert.deepEqual(checkSignature(entry, sig, [trusted]), { ok: true, key: key.id });
    assert.deepEqual(checkSignature({ ...entry, outputs: [{ ...entry.outputs[0]!, size: 8 }] }, sig, [trusted]), { ok: false, reason: 'bad', key: key.id });
    assert.deepEqual(checkSignature({ ...entry, key: 'd'.repeat(64) }, sig, [trusted]), { ok: false, reason: 'bad', key: key.id });
    assert.deepEqual(checkSignature(entry, sig, []), { ok: false, reason: 'untrusted', key: key.id });
    assert.throws(() => parseTrustedKey(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'keys/ci.pem'), /keys\/ci\.pem holds a private key/);
  });
});
