import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import { loadWorkspace, type Workspace } from '../engine/load.js';
import { loadWorkspaceCached } from '../engine/parse-cache.js';
import { withoutPlugins } from '../engine/plugins.js';
import { TempWorkspace } from './rig.js';

const rules = withoutPlugins().rules;

const BUILD = `variants:
  cpu: {}
  gpu:
    env: {CUDA: "12"}
packages:
  a:
    rule: command
    source: src/a
    cmd: [cp, f, out]
    outs: [out]
    versions:
      "1.0": {env: {OLD: "1"}}
    variants:
      gpu: {env: {FAST: "1"}}
  b:
    rule: command
    source: src/a
    deps: [a]
    cmd: "true"
    resources: {gpus: RESOURCE}
`;

function entries(ws: TempWorkspace): string[] {
  const dir = path.join(ws.cacheDir, 'parse');
  return fs.existsSync(dir) ? fs.readdirSync(dir).map((n) => path.join(dir, n)) : [];
}

/**
 * An entry as its header and JSON body (bytes) and its spans (values, null when none are stored): v8.serialize
 * writes a string as one or two bytes a character as V8 happens to hold it, so the same spans need not serialize to
 * the same bytes twice.
 */
function entryParts(entry: Buffer): { head: Buffer; spans: unknown } {
  const end = 5 + entry.readUInt32LE(1);
  return { head: entry.subarray(0, end), spans: entry.length > end ? v8.deserialize(entry.subarray(end)) : null };
}

/** The workspace without its spans (compared on their own, through the lookups diagnostics make). */
function withoutSpans(w: Workspace): Omit<Workspace, 'spans'> {
  const { spans: _spans, ...rest } = w;
  return rest;
}

const SPAN_PATHS = [['packages', 'b', 'deps', 0], ['packages', 'a', 'versions', '1.0'], ['variants', 'gpu', 'env', 'CUDA'], ['packages', 'b', 'resources', 'gpus']];

function assertSameSpans(cached: Workspace, parsed: Workspace): void {
  for (const p of SPAN_PATHS) {
    assert.deepEqual(cached.spans.value(p), parsed.spans.value(p), p.join('/'));
    assert.deepEqual(cached.spans.key(p), parsed.spans.key(p), p.join('/'));
  }
}

function withWorkspace(gpus: string, body: (ws: TempWorkspace) => void): void {
  const ws = TempWorkspace.create({ 'BUILD.yaml': BUILD.replace('RESOURCE', gpus), 'src/a/f': 'x\n' });
  try {
    body(ws);
  } finally {
    ws.remove();
  }
}

describe('parse cache', () => {
  it('a cached workspace is the parsed one, Maps, Sets and spans included', () => {
    withWorkspace('1', (ws) => {
      const first = loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      const [entry] = entries(ws);
      assert.ok(entry);
      assert.equal(fs.readFileSync(entry).subarray(0, 1).toString(), 'J');
      const cached = loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      assert.notEqual(cached, first);
      const parsed = loadWorkspace(ws.dir, rules);
      assert.deepEqual(withoutSpans(cached), withoutSpans(parsed));
      assert.ok(cached.packages.get('a')!.versions instanceof Map);
      assertSameSpans(cached, parsed);
      assert.deepEqual(entries(ws), [entry]);
    });
  });

  it('a file js-yaml reads is stored without spans; asked for, they are the ones `yaml` gives', () => {
    withWorkspace('1', (ws) => {
      const quick = loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      const [entry] = entries(ws);
      assert.ok(entry);
      assert.equal(entryParts(fs.readFileSync(entry)).spans, null);
      const parsed = loadWorkspace(ws.dir, rules);
      assert.deepEqual(withoutSpans(quick), withoutSpans(parsed));
      assertSameSpans(quick, parsed);
      assertSameSpans(loadWorkspaceCached(ws.dir, rules, ws.cacheDir), parsed);
    });
  });

  it('a file only `yaml` reads (an anchor) is stored with its spans', () => {
    withWorkspace('&n 1', (ws) => {
      loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      const [entry] = entries(ws);
      assert.ok(entry);
      const parsed = loadWorkspace(ws.dir, rules);
      assert.deepEqual(entryParts(fs.readFileSync(entry)).spans, parsed.spans.dump());
      assertSameSpans(loadWorkspaceCached(ws.dir, rules, ws.cacheDir), parsed);
    });
  });

  it('a workspace JSON would change (-0 becomes 0) is stored v8-serialized and restored exactly', () => {
    withWorkspace('-0', (ws) => {
      loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      const [entry] = entries(ws);
      assert.ok(entry);
      assert.equal(fs.readFileSync(entry).subarray(0, 1).toString(), 'V');
      const cached = loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      assert.ok(Object.is(cached.packages.get('b')!.resources.gpus, -0));
      const parsed = loadWorkspace(ws.dir, rules);
      assert.deepEqual(withoutSpans(cached), withoutSpans(parsed));
      assertSameSpans(cached, parsed);
    });
  });

  it('spans asked for after the entry was removed come from checking the same text again', () => {
    withWorkspace('1', (ws) => {
      loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      const cached = loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      const parsed = loadWorkspace(ws.dir, rules);
      for (const e of entries(ws)) fs.rmSync(e);
      // Not the BUILD.yaml on disk, which may have changed since: the text the workspace was loaded from.
      ws.write('BUILD.yaml', '# edited\n' + ws.read('BUILD.yaml'));
      assertSameSpans(cached, parsed);
    });
  });

  it('a truncated entry is parsed again and rewritten whole', () => {
    withWorkspace('1', (ws) => {
      loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      const [entry] = entries(ws);
      assert.ok(entry);
      const whole = fs.readFileSync(entry);
      fs.truncateSync(entry, 100);
      const reparsed = loadWorkspaceCached(ws.dir, rules, ws.cacheDir);
      assert.deepEqual(withoutSpans(reparsed), withoutSpans(loadWorkspace(ws.dir, rules)));
      assert.deepEqual(entryParts(fs.readFileSync(entry)), entryParts(whole));
    });
  });
});
