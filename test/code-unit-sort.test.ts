// Sorting in UTF-16 code-unit order without Array.prototype.sort's work array (engine/code-unit-sort.ts): the same
// order as the default sort, for short lists (insertion sort) and long ones, by the strings or by a key.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sortCodeUnits, sortCodeUnitsBy } from '../engine/code-unit-sort.js';

// Upper case before lower, '-' before letters, and a character past the BMP (two code units) before 'ｚ'.
const words = ['b', 'a', 'B', 'a-b', 'ab', '😀', 'ｚ', '', 'aa', 'A'];

test('strings sort as the default sort does, short lists and long ones', () => {
  assert.deepEqual(sortCodeUnits([...words]), [...words].sort());
  const long = Array.from({ length: 40 }, (_, i) => `${words[i % words.length]}${(i * 7) % 13}`);
  assert.deepEqual(sortCodeUnits([...long]), [...long].sort());
});

test('items sort by their key as their keys sort, short lists and long ones', () => {
  const items = words.map((w, i) => ({ w, i }));
  assert.deepEqual(sortCodeUnitsBy([...items], (x) => x.w).map((x) => x.w), [...words].sort());
  const long = Array.from({ length: 40 }, (_, i) => ({ w: `${words[i % words.length]}${(i * 7) % 13}` }));
  assert.deepEqual(sortCodeUnitsBy([...long], (x) => x.w).map((x) => x.w), long.map((x) => x.w).sort());
});
