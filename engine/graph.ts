// The target graph: an edge runs from a target to each target it depends on. Owns the questions asked of the
// graph's shape: cycles (with their full path), the closure of a selection, and dependency order.
//
// Targets are numbered as they are added, and each one's dependencies and dependents are lists of numbers. Not
// graphology: it keeps each node's neighbours as object properties keyed by label, and ten thousand distinct keys
// cost V8 a hidden-class transition each (adding the edges of a 10,000-target workspace was a tenth of its
// analysis). Not maps of sets of labels either: two sets per target, and a label lookup per step of every walk,
// made building the graph, checking it for cycles and ordering it ~50 ms of a 10,000-target analysis.

import { sortCodeUnits, sortCodeUnitsBy } from './code-unit-sort.js';
import type { Label } from './label.js';

/** The neighbours of a target that has none yet, shared: a list of its own is made at its first edge. Never added to. */
const NONE: readonly number[] = [];

/**
 * A dependency list up to this long is scanned for a repeated edge; a longer one gets a set beside it: scanning, a
 * target with thousands of dependencies (a wheelhouse of every package) took time in their square to add.
 */
const SCAN_MAX = 32;

export class TargetGraph {
  /** Each target's number: its position in `labels`, `out` and `in`. */
  private readonly ids = new Map<Label, number>();
  private readonly labels: Label[] = [];
  /** Each target's dependencies, in the order they were added. */
  private readonly out: (readonly number[])[] = [];
  /** Each target's dependents, in the order they were added. */
  private readonly in: (readonly number[])[] = [];

  addTarget(label: Label): void {
    if (!this.ids.has(label)) this.add(label);
  }

  private add(label: Label): number {
    const id = this.labels.length;
    this.ids.set(label, id);
    this.labels.push(label);
    this.out.push(NONE);
    this.in.push(NONE);
    return id;
  }

  addDependency(from: Label, to: Label): void {
    const f = this.ids.get(from) ?? this.add(from);
    const t = this.ids.get(to) ?? this.add(to);
    if (this.dependsOn(f, t)) return;
    if (this.out[f] === NONE) this.out[f] = [];
    if (this.in[t] === NONE) this.in[t] = [];
    (this.out[f] as number[]).push(t);
    (this.in[t] as number[]).push(f);
    this.longLists.get(f)?.add(t);
  }

  /** The dependencies of targets with more than SCAN_MAX of them, as sets. */
  private readonly longLists = new Map<number, Set<number>>();

  private dependsOn(f: number, t: number): boolean {
    const deps = this.out[f]!;
    if (deps.length <= SCAN_MAX) return deps.includes(t);
    let set = this.longLists.get(f);
    if (set === undefined) this.longLists.set(f, (set = new Set(deps)));
    return set.has(t);
  }

  dependencies(label: Label): Label[] {
    return this.out[this.idOf(label)]!.map((i) => this.labels[i]!);
  }

  dependents(label: Label): Label[] {
    return this.in[this.idOf(label)]!.map((i) => this.labels[i]!);
  }

  private idOf(label: Label): number {
    const id = this.ids.get(label);
    if (id === undefined) throw new Error(`the target graph has no target ${label}`);
    return id;
  }

  /**
   * Every elementary cycle reachable by depth-first search, each once, as a path whose last element repeats the
   * first (`a → b → a`). Rotated to start at its smallest label, so the report does not depend on map order.
   */
  cycles(): Label[][] {
    if (this.acyclic()) return [];
    const state = new Map<string, 'active' | 'done'>();
    const stack: Label[] = [];
    const found = new Map<string, Label[]>();
    const visit = (node: Label): void => {
      state.set(node, 'active');
      stack.push(node);
      for (const next of sortCodeUnits(this.dependencies(node))) {
        const s = state.get(next);
        if (s === 'active') {
          const cycle = stack.slice(stack.indexOf(next));
          let min = 0;
          cycle.forEach((l, i) => {
            if (l < cycle[min]!) min = i;
          });
          const rotated = [...cycle.slice(min), ...cycle.slice(0, min)];
          found.set(rotated.join(' '), [...rotated, rotated[0]!]);
        } else if (s === undefined) {
          visit(next);
        }
      }
      stack.pop();
      state.set(node, 'done');
    };
    for (const node of [...this.labels].sort()) if (!state.has(node)) visit(node);
    return [...found.values()];
  }

  /**
   * Whether peeling off every target whose dependencies are all peeled off reaches them all (Kahn's algorithm): no
   * sort, no recursion, a counter per target. The search above, which sorts every target's dependencies, ran on
   * every analysis to report nothing; it was a tenth of a 10,000-target one.
   */
  private acyclic(): boolean {
    const n = this.labels.length;
    const waiting = new Int32Array(n);
    const ready: number[] = [];
    for (let i = 0; i < n; i++) {
      waiting[i] = this.out[i]!.length;
      if (waiting[i] === 0) ready.push(i);
    }
    let peeled = 0;
    for (let id = ready.pop(); id !== undefined; id = ready.pop()) {
      peeled++;
      for (const dependent of this.in[id]!) if (--waiting[dependent]! === 0) ready.push(dependent);
    }
    return peeled === n;
  }

  /** The roots and everything they depend on, dependencies before dependents (the graph must be acyclic). */
  closure(roots: Iterable<Label>): Label[] {
    const order: Label[] = [];
    const seen = new Uint8Array(this.labels.length);
    const visit = (id: number): void => {
      if (seen[id] === 1) return;
      seen[id] = 1;
      const deps = this.out[id]!;
      if (deps.length === 1) visit(deps[0]!);
      else if (deps.length > 1) for (const dep of sortCodeUnitsBy(deps.slice(), (i) => this.labels[i]!)) visit(dep);
      order.push(this.labels[id]!);
    };
    for (const root of [...roots].sort()) visit(this.idOf(root));
    return order;
  }

  /** Every target that depends on `label`, directly or not. */
  transitiveDependents(label: Label): Set<Label> {
    const out = new Set<Label>();
    const queue = [label];
    while (queue.length > 0) {
      for (const parent of this.dependents(queue.pop()!)) {
        if (!out.has(parent)) {
          out.add(parent);
          queue.push(parent);
        }
      }
    }
    return out;
  }
}
