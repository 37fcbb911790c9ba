// The rule API: the only module rule kinds import. A rule is an attribute schema plus a pure `plan` that turns a
// configured target into one action; the action's `execute` runs processes only through the context it is given,
// so the engine keeps control of env, process groups, logs and cancellation.

import type { Schema } from '../engine/schema.js';

/** What a toolchain is, as probed: facts only, never paths, because these go into the key record. */
export interface ToolchainFacts {
  python: {
    /** Full interpreter version, `3.11.2`. */
    version: string;
    /** `cpython`, `pypy`. */
    implementation: string;
    /** Interpreter tag as in wheel names, `cp311`. */
    tag: string;
    /** ABI tag, `cp311` (or `cp313t` for free-threaded builds). */
    abi: string;
    /** Platform tag, `linux_x86_64`. */
    platform: string;
  };
  /** Versions of the build front- and back-ends the build venv sees; they shape the wheel. */
  buildTools: { pip: string | null; setuptools: string | null; wheel: string | null };
  /** Present when `import torch` works in the toolchain's interpreter. */
  torch: { version: string; cuda: string | null; cxx11abi: boolean | null } | null;
  /** Present when the toolchain declares a CUDA home with an nvcc. */
  cuda: { nvcc: string } | null;
}

/** Where a toolchain lives on this machine: used to run things, never hashed. */
export interface ToolchainPaths {
  /** The interpreter as declared (a venv's python stays a venv's python). */
  python: string;
  cudaHome: string | null;
  /** The interpreter's site-packages folders, in sys.path order. */
  siteDirs: string[];
  /** Folders holding just pip, setuptools and wheel (and their dist-info), for isolated build venvs. */
  buildToolDirs: string[];
}

export interface Toolchain {
  name: string;
  facts: ToolchainFacts;
  paths: ToolchainPaths;
}

/** A dependency's built outputs, as the dependent's action sees them. */
export interface DepOutputs {
  label: string;
  /** Absolute paths of the dependency's wheels, linked into the sandbox. */
  wheels: string[];
  files: string[];
}

export interface ExecOptions {
  /** A short name for the step, shown in logs and errors: `build`, `smoke test`. */
  step: string;
  cwd: string;
  /** Added on top of the action's env (PATH, HOME and such are the context's to decide). */
  env?: Record<string, string>;
}

/** What an action may do while it runs; everything it spawns is logged, grouped and killable by the engine. */
export interface ActionContext {
  label: string;
  /** A fresh, empty folder of this action's own. */
  sandbox: string;
  /** The package's source, copied into the sandbox and patched; null when the package has no source. */
  sourceDir: string | null;
  /** Where the action leaves its outputs. */
  outDir: string;
  /** The declared env of the target, resolved, plus resource env (MAX_JOBS, CUDA_VISIBLE_DEVICES). */
  env: Record<string, string>;
  toolchain: Toolchain | null;
  /** Outputs of every dependency, transitive ones included, dependencies first. */
  deps: DepOutputs[];
  exec(argv: string[], options: ExecOptions): Promise<void>;
  log(line: string): void;
  signal: AbortSignal;
}

export interface ActionOutput {
  /** Path relative to `outDir`. */
  path: string;
  kind: 'wheel' | 'file';
}

export interface ActionPlan {
  /** One word naming the kind of work, `PyWheel`. */
  mnemonic: string;
  /**
   * Every rule attribute that shapes the output, as plain JSON. It goes into the key record verbatim, so it must
   * be deterministic and hold no machine paths.
   */
  keyAttrs: Record<string, unknown>;
  execute(ctx: ActionContext): Promise<ActionOutput[]>;
}

/** A configured target as a rule sees it. */
export interface TargetInfo<Attrs> {
  label: string;
  package: string;
  variant: string;
  attrs: Attrs;
  /** The smoke test command, if the package declares one. */
  test: string[] | null;
  hasSource: boolean;
  toolchain: Toolchain | null;
  /** Build the venv with the toolchain's own site-packages visible (to see torch). */
  systemSitePackages: boolean;
}

/** A rule attribute: its schema (checked at load time with positions) and what it means. */
export interface AttrSpec {
  schema: Schema;
  required?: boolean;
  doc: string;
  /**
   * The attribute is a list of target references (`pkg`, `//pkg`, `//pkg:variant`), resolved like `deps`: each one
   * is a dependency of the target (in the graph, cycle-checked, its key in the record) and its outputs are in
   * `ctx.deps`. The rule decides what they are for (e.g. build requirements installed only for the build).
   */
  refs?: boolean;
}

/** A mistake in a package's attributes that the schema cannot express (two attributes that conflict). */
export interface AttrProblem {
  /** The attribute, and optionally a path inside its value (a list index, a map key), where the mistake is. */
  attr: string;
  path?: (string | number)[];
  message: string;
}

export interface Rule<Attrs = Record<string, unknown>> {
  kind: string;
  /** Bumped whenever the rule's implementation changes what it produces; part of every key record. */
  version: number;
  doc: string;
  /** The rule's own attributes, checked at load time with positions. */
  attrs: Record<string, AttrSpec>;
  /** Whether targets of this rule need a toolchain (a Python interpreter). */
  needsToolchain: boolean;
  /**
   * Which dependencies' outputs an action sees in `ctx.deps`: `transitive` (the default) for wheels, which pip
   * installs with everything they depend on; `direct` for rules that only read what they name, like Bazel's
   * genrule. Linking a whole closure into every sandbox costs a link per output, quadratic on a deep graph.
   */
  deps?: 'direct' | 'transitive';
  /** Checks what the schema cannot, at load time; each problem is reported at the attribute's position. */
  check?(attrs: Attrs): AttrProblem[];
  /**
   * The paths of the `file` outputs a target declares, and the attribute listing them: what wg-out/out/ will hold
   * of it, known before anything runs (engine/wg-out-clash.ts). Rules whose outputs are all wheels have none; a
   * rule with file outputs that leaves it out is not checked at analysis, only warned about as the build links them.
   */
  fileOutputs?: { attr: string; paths(attrs: Attrs): readonly unknown[] };
  plan(target: TargetInfo<Attrs>): ActionPlan;
}
