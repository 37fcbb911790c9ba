// Unit tests of labels, patterns and dependency references, and of cycle paths in the target graph.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TargetGraph } from '../engine/graph.js';
import { makeLabel, parseDepRef, parsePattern, type Label } from '../engine/label.js';

test('patterns', () => {
  assert.deepEqual(parsePattern('//mamba:cuda124'), { ok: true, value: { package: 'mamba', variant: 'cuda124', text: '//mamba:cuda124' } });
  assert.deepEqual(parsePattern('//mamba'), { ok: true, value: { package: 'mamba', variant: '*', text: '//mamba' } });
  assert.deepEqual(parsePattern('//mamba:*'), { ok: true, value: { package: 'mamba', variant: '*', text: '//mamba:*' } });
  assert.deepEqual(parsePattern('//...'), { ok: true, value: { package: '...', variant: '*', text: '//...' } });
  assert.deepEqual(parsePattern('//...:cpu'), { ok: true, value: { package: '...', variant: 'cpu', text: '//...:cpu' } });
  assert.deepEqual(parsePattern('mamba:cpu'), {
    ok: false,
    error: '"mamba:cpu" is not a target pattern: write //package:variant, //package, //... or //...:variant',
  });
  assert.deepEqual(parsePattern('//ma mba'), { ok: false, error: '"//ma mba": "ma mba" is not a package name' });
});

test('dependency references', () => {
  assert.deepEqual(parseDepRef('fastmath'), { ok: true, value: { package: 'fastmath', variant: null } });
  assert.deepEqual(parseDepRef('//fastmath'), { ok: true, value: { package: 'fastmath', variant: null } });
  assert.deepEqual(parseDepRef('//fastmath:cpu'), { ok: true, value: { package: 'fastmath', variant: 'cpu' } });
  assert.deepEqual(parseDepRef('//...'), { ok: false, error: 'a dependency names one package, not "//..."' });
});

test('cycles are reported once each, rotated to their smallest label, closed', () => {
  const g = new TargetGraph();
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => makeLabel(n, 'cpu')) as [ReturnType<typeof makeLabel>, ReturnType<typeof makeLabel>, ReturnType<typeof makeLabel>, ReturnType<typeof makeLabel>];
  g.addDependency(b, c);
  g.addDependency(c, a);
  g.addDependency(a, b);
  g.addDependency(d, d);
  assert.deepEqual(g.cycles(), [
    ['//a:cpu', '//b:cpu', '//c:cpu', '//a:cpu'],
    ['//d:cpu', '//d:cpu'],
  ]);
});

test('a dependency added twice is one edge, for a target with a few dependencies and for one with many', () => {
  const g = new TargetGraph();
  const all = makeLabel('all', 'cpu');
  const few = makeLabel('few', 'cpu');
  const pkgs = Array.from({ length: 100 }, (_, i) => makeLabel(`p${i}`, 'cpu'));
  for (const p of [...pkgs, ...pkgs]) g.addDependency(all, p);
  for (const p of [...pkgs.slice(0, 3), ...pkgs.slice(0, 3)]) g.addDependency(few, p);
  assert.deepEqual(g.dependencies(all), pkgs);
  assert.deepEqual(g.dependencies(few), pkgs.slice(0, 3));
  assert.deepEqual(g.dependents(pkgs[0]!), [all, few]);
  assert.deepEqual(g.dependents(pkgs[99]!), [all]);
});

test('a cycle between acyclic parts is still found, and a graph without one has none', () => {
  const g = new TargetGraph();
  const [a, b, e, f, x] = ['a', 'b', 'e', 'f', 'x'].map((n) => makeLabel(n, 'cpu')) as [Label, Label, Label, Label, Label];
  // e -> a -> b -> a, b -> f: f has no dependencies, e depends on the cycle.
  g.addDependency(e, a);
  g.addDependency(a, b);
  g.addDependency(b, f);
  g.addTarget(x);
  g.addDependency(b, a);
  assert.deepEqual(g.cycles(), [['//a:cpu', '//b:cpu', '//a:cpu']]);
  const diamond = new TargetGraph();
  diamond.addDependency(e, a);
  diamond.addDependency(e, b);
  diamond.addDependency(a, f);
  diamond.addDependency(b, f);
  diamond.addTarget(x);
  assert.deepEqual(diamond.cycles(), []);
});

test('closure orders dependencies first', () => {
  const g = new TargetGraph();
  const [a, b, c] = ['a', 'b', 'c'].map((n) => makeLabel(n, 'cpu')) as [ReturnType<typeof makeLabel>, ReturnType<typeof makeLabel>, ReturnType<typeof makeLabel>];
  g.addDependency(a, b);
  g.addDependency(b, c);
  g.addDependency(a, c);
  assert.deepEqual(g.closure([a]), [c, b, a]);
  assert.deepEqual(g.closure([b]), [c, b]);
});
