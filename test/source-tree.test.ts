import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, type BigIntStats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open as openLmdb, type RootDatabase } from 'lmdb';
import { hashFileSync } from '../cache/file-hash.js';
import { StatCache, type ListingEntry, type StatEntry, type TreeRecord } from '../cache/stat-cache.js';
import { rootStatOf, sourceTree, type TreeStore } from '../engine/source-tree.js';
import { statTuple } from '../engine/inputs.js';
import { listTree, SourceError, treeDigest } from '../rules/source-path.js';

const PAST = new Date('2020-01-01T00:00:00Z');

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'wg-tree-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openEnv(t: TestContext, dir: string): RootDatabase {
  const env = openLmdb(join(dir, 'db'), {});
  t.after(() => env.close());
  return env;
}

function statCache(env: RootDatabase, racyWindowMs?: number): StatCache {
  return new StatCache(
    env.openDB<StatEntry, string>({ name: 'stat' }),
    env.openDB<ListingEntry, string>({ name: 'listings' }),
    env.openDB<TreeRecord, string>({ name: 'trees' }),
    racyWindowMs,
  );
}

/** The stat cache, counting what a walk asks of it one file or folder at a time. */
function counting(sc: StatCache): { store: TreeStore; calls: { files: number; dirs: number } } {
  const calls = { files: 0, dirs: 0 };
  const store: TreeStore = {
    racyWindowMs: sc.racyWindowMs,
    tree: (root) => sc.tree(root),
    setTree: (root, record) => sc.setTree(root, record),
    fileDigest: (abs, st) => {
      calls.files++;
      return sc.fileDigest(abs, st);
    },
    listDir: (abs, st) => {
      calls.dirs++;
      return sc.listDir(abs, st);
    },
  };
  return { store, calls };
}

/** The tree as a walk with no cache at all sees it: every file read and hashed. */
function fresh(root: string): { entries: ReturnType<typeof listTree>; digest: string } {
  const entries = listTree(root, (abs) => hashFileSync(abs).digest);
  return { entries, digest: treeDigest(entries) };
}

/** A source tree of files dated in the past, with a subfolder. */
function makeTree(base: string): string {
  const root = join(base, 'src');
  mkdirSync(join(root, 'pkg'), { recursive: true });
  writeFileSync(join(root, 'setup.py'), 'setup()\n');
  writeFileSync(join(root, 'pkg', 'mod.py'), 'x = 1\n');
  for (const f of ['setup.py', 'pkg/mod.py', 'pkg', '.']) utimesSync(join(root, f), PAST, PAST);
  return root;
}

describe('source tree record', () => {
  it('a walked tree is answered from its record: no folder listed, no file looked up, the same entries and digest', (t) => {
    const base = tempDir(t);
    const root = makeTree(base);
    const { store, calls } = counting(statCache(openEnv(t, base), 0));
    const first = sourceTree(root, store);
    assert.deepEqual(first, fresh(root));
    assert.deepEqual(calls, { files: 2, dirs: 2 });
    const again = sourceTree(root, store);
    assert.deepEqual(again, fresh(root));
    assert.deepEqual(calls, { files: 2, dirs: 2 });
  });

  it('tells the observer every folder and file, with the stat it took, whether walked or answered from the record', (t) => {
    const base = tempDir(t);
    const root = makeTree(base);
    const { store } = counting(statCache(openEnv(t, base), 0));
    const seen = (): string[] => {
      const out: string[] = [];
      const note = (kind: string) => (abs: string, st: BigIntStats) => out.push(`${kind} ${abs} ${st.ino}`);
      sourceTree(root, store, { dir: note('dir'), file: note('file') });
      return out;
    };
    const walked = seen();
    assert.deepEqual(walked, [
      `dir ${root} ${statSync(root).ino}`,
      `dir ${join(root, 'pkg')} ${statSync(join(root, 'pkg')).ino}`,
      `file ${join(root, 'pkg', 'mod.py')} ${statSync(join(root, 'pkg', 'mod.py')).ino}`,
      `file ${join(root, 'setup.py')} ${statSync(join(root, 'setup.py')).ino}`,
    ]);
    assert.deepEqual(seen(), walked);
  });

  it("checks the root against the caller's stat, which the observer gets, and walks from a stat of its own when it fails", (t) => {
    const base = tempDir(t);
    const root = makeTree(base);
    const { store, calls } = counting(statCache(openEnv(t, base), 0));
    sourceTree(root, store);
    const roots: unknown[] = [];
    const observe = { dir: (abs: string, st: unknown) => abs === root && roots.push(st), file: () => undefined };
    const taken = statSync(root, { bigint: true });
    assert.deepEqual(sourceTree(root, store, observe, rootStatOf(taken)), fresh(root));
    assert.deepEqual(calls, { files: 2, dirs: 2 });
    assert.deepEqual(roots, [statTuple(taken)]);
    // A file added at the root: the caller's new stat no longer fits the record.
    writeFileSync(join(root, 'added.py'), '');
    assert.deepEqual(sourceTree(root, store, undefined, rootStatOf(statSync(root, { bigint: true }))), fresh(root));
    assert.deepEqual(calls, { files: 5, dirs: 4 });
  });

  it('survives the process: saved with the stat cache, read by the next one', async (t) => {
    const base = tempDir(t);
    const root = makeTree(base);
    const env = openEnv(t, base);
    const sc = statCache(env, 0);
    sourceTree(root, sc);
    await sc.save();
    const { store, calls } = counting(statCache(env, 0));
    assert.deepEqual(sourceTree(root, store), fresh(root));
    assert.deepEqual(calls, { files: 0, dirs: 0 });
  });

  const changes: [string, (root: string) => void][] = [
    ['a file edited (a new size)', (root) => writeFileSync(join(root, 'pkg', 'mod.py'), 'x = 10\n')],
    [
      'a file rewritten at the same size with its mtime put back',
      (root) => {
        writeFileSync(join(root, 'pkg', 'mod.py'), 'x = 2\n');
        utimesSync(join(root, 'pkg', 'mod.py'), PAST, PAST);
      },
    ],
    [
      'a file grown with its mtime put back',
      (root) => {
        writeFileSync(join(root, 'setup.py'), 'setup(name="x")\n');
        utimesSync(join(root, 'setup.py'), PAST, PAST);
      },
    ],
    ['a file added in a subfolder', (root) => writeFileSync(join(root, 'pkg', 'new.py'), 'y = 1\n')],
    ['a file removed', (root) => rmSync(join(root, 'pkg', 'mod.py'))],
    ['a file renamed', (root) => renameSync(join(root, 'setup.py'), join(root, 'setup2.py'))],
    ['a file made executable', (root) => chmodSync(join(root, 'setup.py'), 0o755)],
    [
      'a subfolder replaced by a file of the same name',
      (root) => {
        rmSync(join(root, 'pkg'), { recursive: true });
        writeFileSync(join(root, 'pkg'), 'now a file\n');
      },
    ],
  ];
  for (const [what, change] of changes) {
    it(`notices ${what}`, (t) => {
      const base = tempDir(t);
      const root = makeTree(base);
      const { store } = counting(statCache(openEnv(t, base), 0));
      const before = sourceTree(root, store);
      change(root);
      const after = sourceTree(root, store);
      assert.deepEqual(after, fresh(root));
      assert.notEqual(after.digest, before.digest);
    });
  }

  it('keeps no record of a tree changed within the racy window (a same-tick rewrite would not show in its stats)', (t) => {
    const base = tempDir(t);
    const root = makeTree(base);
    writeFileSync(join(root, 'pkg', 'mod.py'), 'x = 3\n');
    const sc = statCache(openEnv(t, base));
    const { store, calls } = counting(sc);
    sourceTree(root, store);
    assert.equal(sc.tree(root), undefined);
    assert.deepEqual(sourceTree(root, store), fresh(root));
    assert.deepEqual(calls, { files: 4, dirs: 4 });
  });

  it('keeps no record of a tree with a symlink, and refuses a link leaving the tree on every walk', (t) => {
    const base = tempDir(t);
    const root = makeTree(base);
    symlinkSync('setup.py', join(root, 'alias.py'));
    const sc = statCache(openEnv(t, base), 0);
    assert.deepEqual(sourceTree(root, sc), fresh(root));
    assert.equal(sc.tree(root), undefined);
    rmSync(join(root, 'alias.py'));
    symlinkSync(base, join(root, 'alias.py'));
    assert.throws(() => sourceTree(root, sc), (e: unknown) => e instanceof SourceError && e.message === `alias.py in ${root} resolves outside the source tree (${base})`);
  });
});
