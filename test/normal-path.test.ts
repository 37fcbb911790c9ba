// Unit tests of the shortcut past node:path for paths already normal: the same answer as node:path for every input.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { normalized, resolveIn } from '../engine/normal-path.js';

const roots = ['/ws', '/tmp/a b/ws', '/ws/', '/ws//x', '/ws/./x', '/ws/../x', '/', '//ws', '/ws/.hidden', '/ws/...', 'rel/ws', '', '/ws\\x', '/ws/x/..'];
const rels = ['src', 'src/t00001', 'src/', 'src//x', './src', 'src/.', 'src/..', '../src', '..', '.', '', '/abs', '.hidden/x', '...', 'a\\b', 'src/./x', 'é/ü'];

test('resolveIn is path.resolve', () => {
  for (const root of roots) for (const rel of rels) assert.equal(resolveIn(root, rel), path.resolve(root, rel), `${JSON.stringify(root)} ${JSON.stringify(rel)}`);
});

test('normalized is path.join(p, "")', () => {
  for (const p of [...roots, ...rels]) assert.equal(normalized(p), path.join(p, ''), JSON.stringify(p));
});
