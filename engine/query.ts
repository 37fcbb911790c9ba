// `wg query deps|rdeps|targets PATTERN…`: questions about the target graph, answered from BUILD.yaml alone (no
// toolchain probe, no cache), as text (one label a line), JSON or Graphviz dot.

import type { Analysis } from './analyze.js';
import { loadPlugins } from './plugins.js';
import { loadSelection } from './build.js';
import type { Label } from './label.js';

export const QUERY_KINDS = ['deps', 'rdeps', 'targets'] as const;
export type QueryKind = (typeof QUERY_KINDS)[number];
export const QUERY_OUTPUTS = ['text', 'json', 'dot'] as const;
export type QueryOutput = (typeof QUERY_OUTPUTS)[number];

/**
 * deps: everything the selected targets depend on, transitively (a selected target is in it only when another
 * selected target depends on it); rdeps: every target of the workspace that depends on one of them, transitively;
 * targets: the selected targets themselves. Sorted.
 */
export function query(kind: QueryKind, selected: Label[], analysis: Analysis): Label[] {
  const out = new Set<Label>();
  switch (kind) {
    case 'deps':
      for (const l of analysis.graph.closure(selected.flatMap((s) => analysis.graph.dependencies(s)))) out.add(l);
      break;
    case 'rdeps':
      for (const s of selected) for (const l of analysis.graph.transitiveDependents(s)) out.add(l);
      break;
    case 'targets':
      for (const s of selected) out.add(s);
      break;
  }
  return [...out].sort();
}

export function renderQuery(labels: Label[], analysis: Analysis, output: QueryOutput): string {
  const deps = (l: Label): Label[] => [...analysis.targets.get(l)!.deps].sort();
  switch (output) {
    case 'text':
      return labels.map((l) => `${l}\n`).join('');
    case 'json': {
      const targets = labels.map((l) => {
        const t = analysis.targets.get(l)!;
        return { label: l, package: t.package.name, variant: t.variant.name, rule: t.rule.kind, deps: deps(l) };
      });
      return `${JSON.stringify({ targets }, null, 2)}\n`;
    }
    case 'dot': {
      // Edges point from a target to what it depends on, as in the graph; only edges inside the answer are drawn.
      const inside = new Set(labels);
      const lines = ['digraph wg {', ...labels.map((l) => `  "${l}";`)];
      for (const l of labels) for (const d of deps(l)) if (inside.has(d)) lines.push(`  "${l}" -> "${d}";`);
      lines.push('}');
      return `${lines.join('\n')}\n`;
    }
  }
}

/** Loads and checks the workspace (mistakes throw, as for `wg build`) and renders the answer. */
export async function runQuery(root: string, kind: QueryKind, patterns: string[], output: QueryOutput): Promise<string> {
  // Plugins may add rule kinds: without them their packages would be reported as unknown rules.
  const selection = loadSelection(root, patterns, await loadPlugins(root));
  return renderQuery(query(kind, selection.selected, selection.analysis), selection.analysis, output);
}
