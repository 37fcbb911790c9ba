import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open as openLmdb } from 'lmdb';
import { LocalStore, type ActionResult } from '../cache/local-store.js';
import { StatCache, type ListingEntry, type StatEntry, type TreeRecord } from '../cache/stat-cache.js';

// Seconds since the epoch; whole seconds so utimes can restore an mtime exactly.
const ROUND_TIME = 1_700_000_000;
const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

function tempDir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'wg-local-store-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function openWithEntry(t: Parameters<typeof tempDir>[0]) {
  const root = tempDir(t);
  const store = LocalStore.open(join(root, 'cache'));
  t.after(() => store.close());
  const wheelBytes = randomBytes(200_000);
  const logBytes = Buffer.from('building wheel...\nok\n');
  const wheel = join(root, 'pkg-1.0-py3-none-any.whl');
  const log = join(root, 'build.log');
  writeFileSync(wheel, wheelBytes);
  writeFileSync(log, logBytes);
  const w = await store.putBlob(wheel);
  const l = await store.putBlob(log);
  const key = sha256('some key record');
  const result: ActionResult = {
    key,
    label: '//pkg:pkg',
    record: { v: 1, rule: 'py_wheel', env: { CC: 'gcc' }, patches: [], nested: [1, null, 'x'] },
    outputs: [{ path: 'pkg-1.0-py3-none-any.whl', kind: 'wheel', digest: w.digest, size: w.size, mode: 0o644 }],
    log: l,
    durationMs: 1234,
    createdAt: new Date(0).toISOString(),
  };
  await store.putResult(result);
  return { root, store, key, result, wheelBytes, wheelDigest: w.digest, logDigest: l.digest };
}

test('put/lookup round trip', async (t) => {
  const { store, key, result, wheelBytes, wheelDigest } = await openWithEntry(t);
  assert.equal(wheelDigest, sha256(wheelBytes));
  assert.equal(store.blobPath(wheelDigest), join(store.dir, 'cas', wheelDigest.slice(0, 2), wheelDigest));
  const st = statSync(store.blobPath(wheelDigest));
  assert.equal(st.mode & 0o777, 0o444);
  assert.equal(st.size, wheelBytes.length);
  assert.deepEqual(store.lookup(key), { hit: result });
  assert.deepEqual(store.lookup(sha256('other')), { miss: 'absent' });
  assert.deepEqual(readdirSync(join(store.dir, 'tmp')), []);
});

test('putting the same content twice keeps one blob', async (t) => {
  const root = tempDir(t);
  const store = LocalStore.open(join(root, 'cache'));
  t.after(() => store.close());
  const a = join(root, 'a');
  const b = join(root, 'b');
  writeFileSync(a, 'same bytes');
  writeFileSync(b, 'same bytes');
  const [ra, rb] = await Promise.all([store.putBlob(a), store.putBlob(b)]);
  assert.deepEqual(ra, rb);
  assert.deepEqual(readdirSync(join(store.dir, 'cas', ra.digest.slice(0, 2))), [ra.digest]);
  assert.equal(readFileSync(store.blobPath(ra.digest), 'utf8'), 'same bytes');
  assert.deepEqual(readdirSync(join(store.dir, 'tmp')), []);
});

test('a blob with bytes flipped in place is quarantined and its entry dropped', async (t) => {
  const { store, key, wheelBytes, wheelDigest } = await openWithEntry(t);
  const p = store.blobPath(wheelDigest);
  // A whole-second mtime can be restored exactly (utimes with a Date drops sub-millisecond digits); the
  // lookup re-records the blob's fingerprint with it, so afterwards only ctime can reveal the change.
  utimesSync(p, ROUND_TIME, ROUND_TIME);
  assert.ok('hit' in store.lookup(key));
  chmodSync(p, 0o644);
  const flipped = Buffer.from(wheelBytes);
  for (const i of [10, 1000, 150_000]) flipped[i] = (flipped[i] ?? 0) ^ 0xff;
  const fd = openSync(p, 'r+');
  writeSync(fd, flipped, 0, flipped.length, 0);
  closeSync(fd);
  chmodSync(p, 0o444);
  utimesSync(p, ROUND_TIME, ROUND_TIME);
  assert.equal(statSync(p, { bigint: true }).mtimeNs, BigInt(ROUND_TIME) * 1_000_000_000n);

  const r = store.lookup(key);
  assert.deepEqual(r, {
    miss: 'corrupt',
    warning: `cache entry ${key.slice(0, 12)} (${p}) failed verification: expected sha256 ${wheelDigest} got ${sha256(flipped)}; rebuilding`,
  });
  assert.equal(existsSync(p), false);
  const q = readdirSync(join(store.dir, 'quarantine'));
  assert.equal(q.length, 1);
  assert.ok(q[0]?.startsWith(wheelDigest));
  assert.deepEqual(store.lookup(key), { miss: 'absent' });
});

test('a truncated blob is a corrupt miss', async (t) => {
  const { store, key, wheelDigest } = await openWithEntry(t);
  const p = store.blobPath(wheelDigest);
  truncateSync(p, 0);
  const r = store.lookup(key);
  assert.deepEqual(r, {
    miss: 'corrupt',
    warning: `cache entry ${key.slice(0, 12)} (${p}) failed verification: expected sha256 ${wheelDigest} got ${sha256('')}; rebuilding`,
  });
  assert.deepEqual(store.lookup(key), { miss: 'absent' });
});

test('a deleted blob is reported missing', async (t) => {
  const { store, key, logDigest } = await openWithEntry(t);
  const p = store.blobPath(logDigest);
  unlinkSync(p);
  assert.deepEqual(store.lookup(key), {
    miss: 'corrupt',
    warning: `cache entry ${key.slice(0, 12)} (${p}) is missing; rebuilding`,
  });
  assert.deepEqual(store.lookup(key), { miss: 'absent' });
});

test('a touched blob is still a hit, and a re-put after corruption heals the blob', async (t) => {
  const { root, store, key, result, wheelBytes, wheelDigest } = await openWithEntry(t);
  const p = store.blobPath(wheelDigest);
  const later = new Date(Date.now() + 60_000);
  utimesSync(p, later, later);
  assert.deepEqual(store.lookup(key), { hit: result });
  assert.deepEqual(store.lookup(key), { hit: result });

  truncateSync(p, 5);
  const again = join(root, 'again.whl');
  writeFileSync(again, wheelBytes);
  assert.deepEqual(await store.putBlob(again), { digest: wheelDigest, size: wheelBytes.length });
  assert.ok(readFileSync(p).equals(wheelBytes));
  assert.deepEqual(store.lookup(key), { hit: result });
});

test('fileDigest hashes content and notices a change even when mtime is restored', async (t) => {
  const root = tempDir(t);
  const store = LocalStore.open(join(root, 'cache'));
  t.after(() => store.close());
  const f = join(root, 'setup.py');
  writeFileSync(f, 'print("a")\n');
  utimesSync(f, ROUND_TIME, ROUND_TIME);
  const d1 = store.fileDigest(f);
  assert.equal(d1, sha256('print("a")\n'));
  assert.equal(store.fileDigest(f), d1);
  assert.equal(store.fileDigest(f), d1);

  await new Promise((r) => setTimeout(r, 20));
  writeFileSync(f, 'print("b")\n'); // same size
  utimesSync(f, ROUND_TIME, ROUND_TIME);
  assert.equal(statSync(f, { bigint: true }).mtimeNs, BigInt(ROUND_TIME) * 1_000_000_000n);
  assert.equal(store.fileDigest(f), sha256('print("b")\n'));
  assert.throws(() => store.fileDigest('relative/path.py'), /absolute/);
});

test('stat cache: a path longer than an LMDB key, in few code units but many bytes, is kept under its hash', async (t) => {
  const root = tempDir(t);
  const env = openLmdb(join(root, 'db'), {});
  t.after(() => env.close());
  const open = (): StatCache =>
    new StatCache(
      env.openDB<StatEntry, string>({ name: 'stat' }),
      env.openDB<ListingEntry, string>({ name: 'listings' }),
      env.openDB<TreeRecord, string>({ name: 'trees' }),
      0,
    );
  // Each name is 81 code units but 241 UTF-8 bytes: the path is over LMDB's key limit only when counted in bytes.
  let dir = root;
  for (let i = 0; i < 9; i++) dir = join(dir, '中'.repeat(80) + String(i));
  mkdirSync(dir, { recursive: true });
  const f = join(dir, 'mod.py');
  writeFileSync(f, 'x = 1\n');
  assert.ok(f.length < 1024 && Buffer.byteLength(f) > 2000);
  const sc = open();
  assert.equal(sc.fileDigest(f), sha256('x = 1\n'));
  assert.deepEqual(sc.listDir(dir, statSync(dir, { bigint: true })), ['mod.py']);
  await sc.save();
  const next = open();
  assert.equal(next.fileDigest(f), sha256('x = 1\n'));
  assert.equal(next.hashes, 0);
});

test('stat cache: an unchanged file is not re-read; a freshly written one is re-read once (racy)', async (t) => {
  const root = tempDir(t);
  const env = openLmdb(join(root, 'db'), {});
  t.after(() => env.close());
  const db = env.openDB<StatEntry, string>({ name: 'stat' });
  const listings = env.openDB<ListingEntry, string>({ name: 'listings' });
  const f = join(root, 'mod.py');
  writeFileSync(f, 'x = 1\n');
  utimesSync(f, ROUND_TIME, ROUND_TIME);

  // With no racy window, the first hash is trusted straight away.
  const sc = new StatCache(db, listings, env.openDB<TreeRecord, string>({ name: 'trees' }), 0);
  const d1 = sc.fileDigest(f);
  assert.equal(sc.hashes, 1);
  assert.equal(sc.fileDigest(f), d1);
  assert.equal(sc.fileDigest(f), d1);
  assert.equal(sc.hashes, 1);

  await new Promise((r) => setTimeout(r, 20));
  writeFileSync(f, 'x = 2\n'); // same size, same mtime below: only ctime differs
  utimesSync(f, ROUND_TIME, ROUND_TIME);
  assert.equal(sc.fileDigest(f), sha256('x = 2\n'));
  assert.equal(sc.hashes, 2);
  assert.equal(sc.fileDigest(f), sha256('x = 2\n'));
  assert.equal(sc.hashes, 2);

  // Default window: a file modified just now is hashed again on its next use, since a same-tick rewrite
  // would be invisible to its stat.
  const racy = new StatCache(db, listings, env.openDB<TreeRecord, string>({ name: 'trees' }));
  writeFileSync(f, 'x = 3\n');
  assert.equal(racy.fileDigest(f), sha256('x = 3\n'));
  assert.equal(racy.fileDigest(f), sha256('x = 3\n'));
  assert.equal(racy.hashes, 2);
});

test('stat cache: a folder listing is reused while the folder stat holds, read again once an entry comes or goes', async (t) => {
  const root = tempDir(t);
  const env = openLmdb(join(root, 'db'), {});
  t.after(() => env.close());
  const sc = new StatCache(
    env.openDB<StatEntry, string>({ name: 'stat' }),
    env.openDB<ListingEntry, string>({ name: 'listings' }),
    env.openDB<TreeRecord, string>({ name: 'trees' }),
    0,
  );
  const dir = join(root, 'src');
  mkdirSync(dir);
  writeFileSync(join(dir, 'a.py'), '');
  const list = (): string[] => [...sc.listDir(dir, statSync(dir, { bigint: true }))].sort();
  assert.deepEqual(list(), ['a.py']);
  // Proof that the answer is the cached one: a stat taken before a change, passed with the changed folder.
  const before = statSync(dir, { bigint: true });
  writeFileSync(join(dir, 'b.py'), '');
  assert.deepEqual([...sc.listDir(dir, before)], ['a.py']);
  assert.deepEqual(list(), ['a.py', 'b.py']);
  renameSync(join(dir, 'a.py'), join(dir, 'c.py'));
  assert.deepEqual(list(), ['b.py', 'c.py']);
  rmSync(join(dir, 'b.py'));
  assert.deepEqual(list(), ['c.py']);

  // With the default window, a folder changed just now is listed again next time, whatever its stat says.
  const racy = new StatCache(
    env.openDB<StatEntry, string>({ name: 'stat' }),
    env.openDB<ListingEntry, string>({ name: 'listings2' }),
    env.openDB<TreeRecord, string>({ name: 'trees' }),
  );
  const now = statSync(dir, { bigint: true });
  assert.deepEqual([...racy.listDir(dir, now)], ['c.py']);
  writeFileSync(join(dir, 'd.py'), '');
  assert.deepEqual([...racy.listDir(dir, now)].sort(), ['c.py', 'd.py']);
});

test('materialize hard-links the blob and re-links after the dest is deleted', async (t) => {
  const { root, store, key, result, wheelBytes, wheelDigest } = await openWithEntry(t);
  const dest = join(root, 'wg-out', 'wheelhouse', 'py311', 'pkg-1.0-py3-none-any.whl');
  await store.materialize(wheelDigest, dest, 0o644);
  const blobIno = statSync(store.blobPath(wheelDigest)).ino;
  assert.equal(statSync(dest).ino, blobIno);
  assert.ok(readFileSync(dest).equals(wheelBytes));

  await store.materialize(wheelDigest, dest, 0o644); // already linked: no-op
  assert.equal(statSync(dest).ino, blobIno);

  unlinkSync(dest);
  await store.materialize(wheelDigest, dest, 0o644);
  assert.equal(statSync(dest).ino, blobIno);

  rmSync(dest);
  writeFileSync(dest, 'stale wheel');
  await store.materialize(wheelDigest, dest, 0o644);
  assert.equal(statSync(dest).ino, blobIno);
  assert.deepEqual(readdirSync(join(root, 'wg-out', 'wheelhouse', 'py311')), ['pkg-1.0-py3-none-any.whl']);

  assert.deepEqual(store.lookup(key), { hit: result });
});

test('a second process sharing the cache dir sees the entries', async (t) => {
  const { store, key, result } = await openWithEntry(t);
  store.kv('history').put('//pkg:pkg', { durationMs: 1234 });
  // Results are group-committed: other processes see them once this one flushes (at latest when it closes).
  await store.flush();
  const mod = fileURLToPath(new URL('../cache/local-store.js', import.meta.url));
  const script = `
    const { LocalStore } = await import(${JSON.stringify(mod)});
    const s = LocalStore.open(process.argv[1]);
    const r = s.lookup(process.argv[2]);
    const h = s.kv('history').get('//pkg:pkg');
    s.kv('probes').put('python3.11', { abi: 'cp311' });
    await s.close();
    process.stdout.write(JSON.stringify({ r, h }));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script, store.dir, key], { encoding: 'utf8' });
  const parsed = JSON.parse(out) as { r: unknown; h: unknown };
  assert.deepEqual(parsed.r, { hit: result });
  assert.deepEqual(parsed.h, { durationMs: 1234 });
  await new Promise((r) => setImmediate(r)); // lmdb-js renews its read snapshot on a new event turn
  assert.deepEqual(store.kv('probes').get('python3.11'), { abi: 'cp311' });
});

test('putMany is seen by gets at once and is on disk after close', async (t) => {
  const root = tempDir(t);
  const a = LocalStore.open(join(root, 'cache'));
  a.kv('history').putMany([
    ['one', { durationMs: 1 }],
    ['two', { durationMs: 2 }],
  ]);
  // Before any commit: from the overlay.
  assert.deepEqual(a.kv('history').get('one'), { durationMs: 1 });
  a.kv('history').putMany([['one', { durationMs: 3 }]]);
  assert.deepEqual(a.kv('history').get('one'), { durationMs: 3 });
  await a.close();
  const mod = fileURLToPath(new URL('../cache/local-store.js', import.meta.url));
  const script = `
    const { LocalStore } = await import(${JSON.stringify(mod)});
    const s = LocalStore.open(process.argv[1]);
    process.stdout.write(JSON.stringify([s.kv('history').get('one'), s.kv('history').get('two')]));
    await s.close();
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script, join(root, 'cache')], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), [{ durationMs: 3 }, { durationMs: 2 }]);
});

test('opening twice in one process shares the handle', async (t) => {
  const root = tempDir(t);
  const a = LocalStore.open(join(root, 'cache'));
  const b = LocalStore.open(join(root, 'cache', '.'));
  assert.equal(a, b);
  a.kv('records').put('k', [1, 2]);
  await a.close();
  assert.deepEqual(b.kv('records').get('k'), [1, 2]); // still open: one user left
  await b.close();
  const c = LocalStore.open(join(root, 'cache'));
  assert.deepEqual(c.kv('records').get('k'), [1, 2]);
  await c.close();
});

test('leftover tmp files are swept at open, but not those a live writer may own', async (t) => {
  const root = tempDir(t);
  const dir = join(root, 'cache');
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const host = sha256(hostname()).slice(0, 8);
  const deadPid = spawnSync(process.execPath, ['-e', '0']).pid;
  assert.ok(deadPid);
  const hourAgo = new Date(Date.now() - 2 * 3600_000);
  writeFileSync(join(tmp, `${host}-${deadPid}-0123abcd`), 'half a wheel'); // crashed writer on this host
  writeFileSync(join(tmp, 'junk'), 'x');
  utimesSync(join(tmp, 'junk'), hourAgo, hourAgo); // abandoned long ago
  writeFileSync(join(tmp, `${host}-${process.pid}-0123abcd`), 'in progress'); // live writer
  writeFileSync(join(tmp, `ffffffff-${deadPid}-0123abcd`), 'in progress'); // another host/container: age decides

  const store = LocalStore.open(dir);
  t.after(() => store.close());
  assert.deepEqual(readdirSync(tmp).sort(), [`${host}-${process.pid}-0123abcd`, `ffffffff-${deadPid}-0123abcd`].sort());
});

test('two processes storing the same and different blobs concurrently', async (t) => {
  const root = tempDir(t);
  const dir = join(root, 'cache');
  const shared = join(root, 'shared.whl');
  writeFileSync(shared, randomBytes(3 << 20));
  const mod = fileURLToPath(new URL('../cache/local-store.js', import.meta.url));
  const script = `
    const { writeFileSync } = await import('node:fs');
    const { LocalStore } = await import(${JSON.stringify(mod)});
    const [dir, shared, me] = process.argv.slice(1);
    const s = LocalStore.open(dir);
    const keys = [];
    for (let i = 0; i < 10; i++) {
      const own = dir + '/../' + me + '-' + i + '.log';
      writeFileSync(own, me + ' log ' + i);
      const [w, l] = await Promise.all([s.putBlob(shared), s.putBlob(own)]);
      const key = me.padEnd(60, '0') + String(i).padStart(4, '0');
      await s.putResult({ key, label: '//p:' + me, record: { i }, outputs: [{ path: 'x.whl', kind: 'wheel', mode: 420, ...w }],
        log: l, durationMs: i, createdAt: 'now' });
      keys.push(key);
    }
    await s.close();
    process.stdout.write(JSON.stringify(keys));
  `;
  const run = (me: string) =>
    new Promise<string[]>((res, rej) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, dir, shared, me]);
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.on('exit', (code) => (code === 0 ? res(JSON.parse(out) as string[]) : rej(new Error(`child ${me} exited ${code}: ${err}`))));
    });
  const [ka, kb] = await Promise.all([run('aa'), run('bb')]);
  const store = LocalStore.open(dir);
  t.after(() => store.close());
  const sharedDigest = sha256(readFileSync(shared));
  for (const key of [...ka, ...kb]) {
    const r = store.lookup(key);
    assert.ok('hit' in r, JSON.stringify(r));
    assert.equal(r.hit.outputs[0]?.digest, sharedDigest);
  }
  const blobs = readdirSync(join(dir, 'cas')).flatMap((s) => readdirSync(join(dir, 'cas', s)));
  assert.equal(blobs.length, 21);
  assert.equal(blobs.filter((b) => b === sharedDigest).length, 1);
  assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
});

test('adopt links a file with one name into the CAS, and copies one that has another name elsewhere', async (t) => {
  const root = tempDir(t);
  const store = LocalStore.open(join(root, 'cache'));
  t.after(() => store.close());
  const mine = join(root, 'out.txt');
  writeFileSync(mine, 'built\n');
  const a = await store.adoptBlob(mine);
  assert.equal(a.digest, sha256('built\n'));
  // The file is the blob now: same inode, read-only.
  assert.equal(statSync(store.blobPath(a.digest)).ino, statSync(mine).ino);
  assert.equal(statSync(mine).mode & 0o777, 0o444);

  // An output the action hard-linked to a file outside its sandbox: that file must not become a read-only blob.
  const outside = join(root, 'user-file.txt');
  writeFileSync(outside, 'user data\n');
  const modeBefore = statSync(outside).mode;
  const linked = join(root, 'linked-out.txt');
  linkSync(outside, linked);
  const b = await store.adoptBlob(linked);
  assert.equal(readFileSync(store.blobPath(b.digest), 'utf8'), 'user data\n');
  assert.notEqual(statSync(store.blobPath(b.digest)).ino, statSync(outside).ino);
  assert.equal(statSync(outside).mode, modeBefore);
});

test('adopt into a taken name keeps an intact blob as it is and replaces a damaged one', async (t) => {
  const root = tempDir(t);
  const store = LocalStore.open(join(root, 'cache'));
  t.after(() => store.close());
  const first = join(root, 'first.txt');
  writeFileSync(first, 'same output\n');
  const a = await store.adoptBlob(first);
  const blob = store.blobPath(a.digest);
  const inode = statSync(blob).ino;

  // A dependent rebuilt with the output it had: the blob is kept (same inode), the new copy left to its sandbox.
  const again = join(root, 'again.txt');
  writeFileSync(again, 'same output\n');
  assert.deepEqual(await store.adoptBlob(again), a);
  assert.equal(statSync(blob).ino, inode);
  assert.notEqual(statSync(again).ino, inode);

  // Written through a link since (its fingerprint moved): replaced by the new copy, whose bytes are the digest's.
  chmodSync(blob, 0o644);
  writeFileSync(blob, 'SAME OUTPUT\n');
  const third = join(root, 'third.txt');
  writeFileSync(third, 'same output\n');
  assert.deepEqual(await store.adoptBlob(third), a);
  assert.equal(readFileSync(blob, 'utf8'), 'same output\n');
  assert.notEqual(statSync(blob).ino, inode);
});

test('adopt copies a symlink output without touching what it points at, and links a file too large for one read', async (t) => {
  const root = tempDir(t);
  const store = LocalStore.open(join(root, 'cache'));
  t.after(() => store.close());
  const target = join(root, 'target.txt');
  writeFileSync(target, 'pointed at\n');
  const modeBefore = statSync(target).mode;
  const link = join(root, 'link.txt');
  symlinkSync(target, link);
  const a = await store.adoptBlob(link);
  assert.equal(a.digest, sha256('pointed at\n'));
  assert.notEqual(statSync(store.blobPath(a.digest)).ino, statSync(target).ino);
  assert.equal(statSync(target).mode, modeBefore);
  assert.equal(lstatSync(link).isSymbolicLink(), true);

  // Past the 1 MiB read of small files: hashed on the thread pool by path, then adopted all the same.
  const big = join(root, 'big.bin');
  const bytes = randomBytes((1 << 20) + 4097);
  writeFileSync(big, bytes);
  const b = await store.adoptBlob(big);
  assert.deepEqual(b, { digest: createHash('sha256').update(bytes).digest('hex'), size: bytes.length });
  assert.equal(statSync(store.blobPath(b.digest)).ino, statSync(big).ino);
  assert.equal(statSync(big).mode & 0o777, 0o444);
});

/**
 * The durability calls a child storing `n` blobs and one result makes, from strace: which paths it fsynced, in
 * what order against the index's commits, and whether it ran `sync -f`. `actions`: what the store is told to expect
 * before the blobs are made (LocalStore.expectActions). A marker file is fsynced after the blobs are made and before
 * the flush; `marker` is its line in the trace, so a test can tell which fsyncs came before it.
 */
function traceDurability(
  t: Parameters<typeof tempDir>[0],
  n: number,
  actions?: number,
): { root: string; blobs: string[]; events: { path: string; start: number; end: number; call: string }[]; execs: string[]; marker: number } {
  const root = tempDir(t);
  const mod = fileURLToPath(new URL('../cache/local-store.js', import.meta.url));
  const script = `
    const { LocalStore } = await import(${JSON.stringify(mod)});
    const { writeFileSync, mkdirSync, openSync, fsyncSync, closeSync } = await import('node:fs');
    const [dir, n, actions] = [process.argv[1], Number(process.argv[2]), process.argv[3]];
    const s = LocalStore.open(dir + '/cache');
    if (actions !== '') s.expectActions(Number(actions));
    mkdirSync(dir + '/files');
    const outputs = [];
    for (let i = 0; i < n; i++) {
      writeFileSync(dir + '/files/f' + i, 'blob ' + i + '\\n');
      const b = await s.adoptBlob(dir + '/files/f' + i);
      outputs.push({ path: 'f' + i, kind: 'file', digest: b.digest, size: b.size, mode: 0o644 });
    }
    await new Promise((r) => setTimeout(r, 200));
    writeFileSync(dir + '/marker', '');
    const marker = openSync(dir + '/marker', 'r');
    fsyncSync(marker);
    closeSync(marker);
    await s.putResult({ key: 'a'.repeat(64), label: '//p:v', record: {}, outputs: outputs.slice(1), log: outputs[0], durationMs: 1, createdAt: '' });
    await s.close();
    process.stdout.write(JSON.stringify(outputs.map((o) => o.digest)));
  `;
  const out = join(root, 'strace.txt');
  const r = spawnSync(
    'strace',
    ['-f', '-y', '-qq', '-e', 'trace=fsync,fdatasync,syncfs,execve', '-o', out, process.execPath, '--input-type=module', '-e', script, root, String(n), actions === undefined ? '' : String(actions)],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  const blobs = (JSON.parse(r.stdout) as string[]).map((d) => join(root, 'cache', 'cas', d.slice(0, 2), d));
  // strace -f pads the pid to a width, and splits a call another thread interrupts into "<unfinished ...>" and
  // "<... resumed>" lines.
  const events: { path: string; start: number; end: number; call: string }[] = [];
  const open = new Map<string, (typeof events)[number]>();
  const execs: string[] = [];
  readFileSync(out, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const call = /^(\d+) +(fsync|fdatasync|syncfs)\(\d+<([^>]*)>/.exec(line);
      if (call) {
        const e = { call: call[2]!, path: call[3]!, start: i, end: line.includes('<unfinished') ? Infinity : i };
        events.push(e);
        if (e.end === Infinity) open.set(call[1]!, e);
        return;
      }
      const resumed = /^(\d+) +<\.\.\. \w+ resumed>/.exec(line);
      if (resumed && open.has(resumed[1]!)) {
        open.get(resumed[1]!)!.end = i;
        open.delete(resumed[1]!);
      }
      // Each folder of PATH tried counts once.
      const exec = /^\d+ +execve\("([^"]+)", \[(.*?)\]/.exec(line);
      const run = exec && `${exec[1]!.split('/').pop()} ${exec[2]}`;
      if (run && !execs.includes(run)) execs.push(run);
    });
  const marker = events.findIndex((e) => e.path === join(root, 'marker'));
  assert.ok(marker >= 0, 'the marker was fsynced');
  const markerLine = events[marker]!.start;
  events.splice(marker, 1);
  return { root, blobs, events, execs, marker: markerLine };
}

/** false where ptrace is refused (some containers); strace missing is a failure, since .ci/run installs it. */
function stracePermitted(): boolean {
  const r = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', 'true']);
  assert.ok(!r.error, `strace: ${r.error?.message}`);
  return r.status === 0;
}

test('the few blobs of a small flush are fsynced one by one, with their folders, before the index commit names them', async (t) => {
  if (!stracePermitted()) return t.skip('strace cannot trace here (no ptrace)');
  const { root, blobs, events, execs } = traceDurability(t, 2);
  const cas = join(root, 'cache', 'cas');
  const fsynced = events.filter((e) => e.call === 'fsync').map((e) => e.path);
  assert.deepEqual(new Set(fsynced), new Set([...blobs, ...blobs.map((b) => join(b, '..')), cas]));
  assert.deepEqual(
    execs.filter((e) => e.startsWith('sync ')),
    [],
  );
  assert.equal(events.filter((e) => e.call === 'syncfs').length, 0);
  // The index commit that names the blobs comes after every blob is durable: the last fdatasync of data.mdb
  // starts after the last fsync returned.
  const lastFsyncEnd = Math.max(...events.filter((e) => e.call === 'fsync').map((e) => e.end));
  const commits = events.filter((e) => e.call === 'fdatasync' && e.path.endsWith('data.mdb'));
  assert.ok(commits.at(-1)!.start > lastFsyncEnd, JSON.stringify(events));
});

test("an edit's build fsyncs its few blobs as they are made, not when it flushes; a bigger build leaves them to the flush", async (t) => {
  if (!stracePermitted()) return t.skip('strace cannot trace here (no ptrace)');
  const beforeMarker = (actions: number): { early: Set<string>; expected: Set<string> } => {
    const { root, blobs, events, marker } = traceDurability(t, 2, actions);
    return {
      early: new Set(events.filter((e) => e.call === 'fsync' && e.end < marker).map((e) => e.path)),
      expected: new Set([...blobs, ...blobs.map((b) => join(b, '..')), join(root, 'cache', 'cas')]),
    };
  };
  const few = beforeMarker(1);
  assert.deepEqual(few.early, few.expected);
  assert.deepEqual(beforeMarker(100).early, new Set());
});

test('a flush of many blobs makes them durable with one sync -f of the cache, not an fsync each', async (t) => {
  if (!stracePermitted()) return t.skip('strace cannot trace here (no ptrace)');
  const { root, events, execs } = traceDurability(t, 12);
  assert.deepEqual(
    execs.filter((e) => e.startsWith('sync ')),
    [`sync "sync", "-f", "${join(root, 'cache')}"`],
  );
  assert.equal(events.filter((e) => e.call === 'syncfs').length, 1);
  assert.deepEqual(
    events.filter((e) => e.call === 'fsync'),
    [],
  );
});
