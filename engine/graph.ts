// The target graph: an edge runs from a target to each target it depends on. Owns the questions asked of the
// graph's shape: cycles (with their full path), the closure of a selection, and dependency order.
//
// Two maps of insertion-ordered sets rather than graphology: graphology keeps each node's neighbours as object
// properties keyed by label, and ten thousand distinct keys cost V8 a hidden-class transition each; adding the edges
// of a 10,000-target workspace was a tenth of its whole analysis.

import { sortCodeUnits } from './code-unit-sort.js';
import type { Label } from './label.js';

/**
 * The neighbours of a target that has none yet, shared: a set of its own is made at its first edge. Two sets per
 * target were 20,000 of a 10,000-target analysis, a layer of them empty. Never added to.
 */
const NONE: ReadonlySet<Label> = new Set();

export class TargetGraph {
  /** Each target's dependencies, in the order they were added. */
  private readonly out = new Map<Label, ReadonlySet<Label>>();
  /** Each target's dependents, in the order they were added. */
  private readonly in = new Map<Label, ReadonlySet<Label>>();

  addTarget(label: Label): void {
    if (this.out.has(label)) return;
    this.out.set(label, NONE);
    this.in.set(label, NONE);
  }

  addDependency(from: Label, to: Label): void {
    // One lookup a side when both are known (as analysis adds them), not three.
    let deps = this.out.get(from);
    if (!deps) {
      this.addTarget(from);
      deps = NONE;
    }
    let dependents = this.in.get(to);
    if (!dependents) {
      this.addTarget(to);
      dependents = NONE;
    }
    if (deps === NONE) this.out.set(from, (deps = new Set()));
    if (dependents === NONE) this.in.set(to, (dependents = new Set()));
    (deps as Set<Label>).add(to);
    (dependents as Set<Label>).add(from);
  }

  dependencies(label: Label): Label[] {
    return [...TargetGraph.neighbours(this.out, label)];
  }

  dependents(label: Label): Label[] {
    return [...TargetGraph.neighbours(this.in, label)];
  }

  private static neighbours(edges: Map<Label, ReadonlySet<Label>>, label: Label): ReadonlySet<Label> {
    const found = edges.get(label);
    if (!found) throw new Error(`the target graph has no target ${label}`);
    return found;
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
    for (const node of [...this.out.keys()].sort()) if (!state.has(node)) visit(node);
    return [...found.values()];
  }

  /**
   * Whether peeling off every target whose dependencies are all peeled off reaches them all (Kahn's algorithm): no
   * sort, no recursion, a counter per target. The search above, which sorts every target's dependencies, ran on
   * every analysis to report nothing; it was a tenth of a 10,000-target one.
   */
  private acyclic(): boolean {
    const waiting = new Map<Label, number>();
    const ready: Label[] = [];
    for (const [label, deps] of this.out) {
      waiting.set(label, deps.size);
      if (deps.size === 0) ready.push(label);
    }
    let peeled = 0;
    for (let label = ready.pop(); label !== undefined; label = ready.pop()) {
      peeled++;
      for (const dependent of this.in.get(label)!) {
        const left = waiting.get(dependent)! - 1;
        waiting.set(dependent, left);
        if (left === 0) ready.push(dependent);
      }
    }
    return peeled === this.out.size;
  }

  /** The roots and everything they depend on, dependencies before dependents (the graph must be acyclic). */
  closure(roots: Iterable<Label>): Label[] {
    const order: Label[] = [];
    const seen = new Set<Label>();
    const visit = (node: Label): void => {
      if (seen.has(node)) return;
      seen.add(node);
      for (const dep of sortCodeUnits(this.dependencies(node))) visit(dep);
      order.push(node);
    };
    for (const root of [...roots].sort()) visit(root);
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
