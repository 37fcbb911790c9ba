// The benchmark's graph: N targets named t00000… in ten layers, each target past the first layer depending on two
// targets of the layer before, drawn by a seeded PRNG so that every run (and every tool timed on it) builds the
// same graph. test/bench/bench.ts times wg on it; test/bench/peer-bench.ts times wg and turbo on it.

const LAYERS = 10;
const FANIN = 2;

/** A small deterministic PRNG, so every run benchmarks the same graph (schedule-bench.ts draws its own with it). */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export interface DagNode {
  name: string;
  /** Names of its dependencies, each once, in the order drawn. */
  deps: string[];
}

export function layeredDag(n: number): DagNode[] {
  const rand = prng(n);
  const perLayer = Math.ceil(n / LAYERS);
  const names = Array.from({ length: n }, (_, i) => `t${String(i).padStart(5, '0')}`);
  return names.map((name, i) => {
    const layer = Math.floor(i / perLayer);
    const deps: string[] = [];
    if (layer > 0) {
      const lo = (layer - 1) * perLayer;
      for (let k = 0; k < FANIN; k++) deps.push(names[lo + Math.floor(rand() * perLayer)]!);
    }
    return { name, deps: [...new Set(deps)] };
  });
}

/** The graph as a wg workspace: each target copies its source's input.txt to out.txt (its folder is src/<name>). */
export function asBuildYaml(nodes: DagNode[]): string {
  const lines = ['variants:', '  default: {}', 'packages:'];
  for (const { name, deps } of nodes) {
    lines.push(`  ${name}:`, '    rule: command', `    source: src/${name}`, '    cmd: [cp, input.txt, out.txt]', '    outs: [out.txt]');
    if (deps.length > 0) lines.push(`    deps: [${deps.join(', ')}]`);
  }
  return `${lines.join('\n')}\n`;
}
