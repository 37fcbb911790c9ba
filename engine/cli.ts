// The `wg` command line. Exit codes: 0 success, 1 a build failed, 2 a mistake in BUILD.yaml or on the command
// line (nothing ran), 130 interrupted.

import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runBuild, UsageError } from './build.js';
import { SourceUnavailableError } from '../rules/source-url.js';
import { DiagnosticError, renderDiagnostic, sortDiagnostics } from './diagnostics.js';
import { BUILD_FILE, parseQuantity } from './load.js';
import { detectCores, detectMemory } from './machine.js';
import { explainTargets, explanationLines } from './explain.js';
import { QUERY_KINDS, QUERY_OUTPUTS, runQuery, type QueryKind, type QueryOutput } from './query.js';
import { importFromager } from './import-fromager.js';
import { ImportError, type ImportResult } from './import-output.js';
import { importWheelBuilder } from './import-wheel-builder.js';
import { describeRemoteStats } from './remote-config.js';
import { cacheDirNamed } from './cache-dir.js';
import { dropSnapshot } from './noop-snapshot.js';
import { recordNoop } from './noop-record.js';
import { TraceRecorder } from './trace.js';
import { makeReporter } from './reporter-choice.js';
import { flushLines, writeLine } from './stderr-lines.js';
import { onInterrupt } from './interrupts.js';
import { useImporter, type ModuleImporter } from './module-import.js';

function findWorkspace(start: string): string {
  let dir = path.resolve(start);
  for (;;) {
    if (fs.existsSync(path.join(dir, BUILD_FILE))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new UsageError(`no ${BUILD_FILE} in ${path.resolve(start)} or any folder above it`);
    dir = parent;
  }
}

function parseJobs(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number ≥ 1');
  return n;
}

/** `--gpus 2` declares two slots (devices 0 and 1); `--gpus 0,3` (or `--gpus 3,`) names the devices. */
export function parseGpus(v: string): number[] {
  if (/^\d+$/.test(v)) return Array.from({ length: Number(v) }, (_, i) => i);
  const ids = v.split(',').filter((s) => s !== '');
  if (ids.length === 0 || !ids.every((s) => /^\d+$/.test(s))) {
    throw new InvalidArgumentError('expected a count (--gpus 2) or device ids (--gpus 0,3)');
  }
  return [...new Set(ids.map(Number))];
}

function parseMemory(v: string): number {
  const n = parseQuantity(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a size such as 16G or 512M');
  return n;
}

interface BuildFlags {
  workspace?: string;
  cacheDir?: string;
  dryRun?: boolean;
  json?: boolean;
  jobs?: number;
  gpus?: number[];
  memory?: number;
  keepGoing?: boolean;
  remoteCache?: string | false;
  remoteUpload?: boolean;
  remoteSignKey?: string;
  remoteHeader?: string[];
  profile?: string;
}

/** The profile's folder must exist before anything runs, so a long build never ends in "cannot write". */
function profilePath(file: string): string {
  const abs = path.resolve(file);
  const dir = path.dirname(abs);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`--profile ${file}: folder ${dir} does not exist`);
  if (fs.existsSync(abs) && fs.statSync(abs).isDirectory()) throw new UsageError(`--profile ${file}: is a folder`);
  return abs;
}

async function buildCommand(patterns: string[], flags: BuildFlags): Promise<number> {
  const cwd = process.cwd();
  const root = findWorkspace(flags.workspace ?? cwd);
  const profile = flags.profile ? profilePath(flags.profile) : null;
  const reporter = makeReporter(cwd);
  const trace = profile ? new TraceRecorder() : null;
  const interrupts = onInterrupt(reporter);
  const snapshotArgs = { root, cacheDir: cacheDirNamed(flags.cacheDir), patterns: patterns.length > 0 ? patterns : ['//...'] };
  // Only a build that completes may leave a snapshot behind; a stale one must never outlive a build that ran.
  if (!flags.dryRun) dropSnapshot(snapshotArgs.cacheDir, root);
  try {
    const report = await runBuild(
      {
        root,
        patterns: snapshotArgs.patterns,
        cacheDir: snapshotArgs.cacheDir,
        dryRun: flags.dryRun ?? false,
        keepGoing: flags.keepGoing ?? false,
        limits: { cpus: flags.jobs ?? detectCores(), memory: flags.memory ?? detectMemory(), gpus: flags.gpus ?? null },
        scheduleOrder: process.env['WG_SCHEDULE_ORDER'] === 'fifo' ? 'fifo' : 'priority',
        remote: { url: flags.remoteCache, upload: flags.remoteUpload, signKey: flags.remoteSignKey, headers: flags.remoteHeader },
      },
      (e) => {
        reporter.onEvent(e);
        trace?.onEvent(e);
      },
      interrupts.signal,
    );
    if (report.remote) reporter.note(describeRemoteStats(report.remote));
    reporter.summary(report, flags.dryRun ?? false);
    if (trace && profile) trace.write(profile);
    if (flags.json) process.stdout.write(`${JSON.stringify({ ok: report.ok, durationMs: report.durationMs, targets: report.targets, ...(report.remote ? { remote: report.remote } : {}) }, null, 2)}\n`);
    if (!flags.dryRun) recordNoop(report, snapshotArgs, cwd);
    if (report.interrupted) return 130;
    return report.ok ? 0 : 1;
  } finally {
    interrupts.dispose();
  }
}

/** Prints an expected failure (BUILD.yaml diagnostics, a usage error, an unreachable source) and returns the exit code; throws anything else. */
export function reportError(e: unknown, root: string | null): number {
  // After the step lines of a build that got this far, not before them.
  flushLines();
  if (e instanceof DiagnosticError) {
    const list = sortDiagnostics(e.diagnostics);
    // Diagnostics point into BUILD.yaml, env files (envs/x.env) and patches: each file's text is read for its excerpt.
    const texts = new Map<string, string>();
    const files = new Set([BUILD_FILE, ...list.flatMap((d) => [d.at?.file, ...(d.notes ?? []).map((n) => n.at?.file)])]);
    for (const file of files) {
      if (!root || !file) continue;
      try {
        texts.set(file, fs.readFileSync(path.resolve(root, file), 'utf8').replace(/^\uFEFF/, ''));
      } catch {
        /* the diagnostic itself says the file cannot be read */
      }
    }
    for (const d of list) process.stderr.write(`${renderDiagnostic(d, texts)}\n`);
    const errors = list.filter((d) => d.severity === 'error');
    const where = [...new Set(errors.map((d) => d.at?.file ?? BUILD_FILE))];
    process.stderr.write(
      `wg: ${errors.length} error${errors.length === 1 ? '' : 's'} in ${where.length === 0 ? BUILD_FILE : where.join(', ')}; nothing was built\n`,
    );
    return 2;
  }
  if (e instanceof UsageError) {
    process.stderr.write(`wg: error: ${e.message.split('\n').join('\nwg: error: ')}\n`);
    return 2;
  }
  // A remote source that could not be asked is not a mistake in BUILD.yaml: exit 1, and nothing ran.
  if (e instanceof SourceUnavailableError) {
    process.stderr.write(`wg: error: ${e.message.split('\n').join('\nwg: error: ')}\nwg: nothing was built\n`);
    return 1;
  }
  throw e;
}

export function makeProgram(): Command {
  const program = new Command('wg')
    .description(
      'wheelgraph: builds Python wheels for every variant (Python × torch × CUDA) declared in BUILD.yaml,\n' +
        'running only the builds whose inputs changed, in parallel, under CPU, memory and GPU limits.',
    )
    .showHelpAfterError('(run wg --help for usage)')
    .version('0.1.0');

  program
    .command('build')
    .description('build targets, taking unchanged ones from the cache')
    .argument('[patterns...]', 'targets: //pkg:variant, //pkg (all its variants), //... (everything), //...:variant', [])
    .option('-C, --workspace <dir>', 'workspace folder (default: the nearest folder above with a BUILD.yaml)')
    .option('--cache-dir <dir>', 'local cache folder (default: $WG_CACHE_DIR, else $XDG_CACHE_HOME/wg or ~/.cache/wg)')
    .option('-n, --dry-run', 'compute action keys and say per target whether it is cached or would build; run nothing')
    .option('--json', 'print one JSON document on stdout: label, action key, status and wheel paths per target')
    .addOption(new Option('-j, --jobs <n>', 'CPU slots shared by running builds (default: the number of cores)').argParser(parseJobs))
    .addOption(new Option('--gpus <n|ids>', 'GPU slots: a count (--gpus 2) or device ids (--gpus 0,3) (default: the GPUs nvidia-smi lists)').argParser(parseGpus))
    .addOption(new Option('--memory <size>', 'memory shared by running builds, e.g. 16G (default: RAM, or the cgroup limit when lower)').argParser(parseMemory))
    .option('-k, --keep-going', 'after a failure, go on building everything that does not depend on it')
    .option('--remote-cache <url>', 'remote cache (Bazel HTTP protocol) to read from (default: $WG_REMOTE_CACHE, else remote_cache.url)')
    .option('--no-remote-cache', 'use no remote cache in this run')
    .option('--remote-upload', 'upload the results built here to the remote cache (default: $WG_REMOTE_UPLOAD, else remote_cache.upload)')
    .option('--no-remote-upload', 'only read from the remote cache')
    .option('--remote-sign-key <file>', 'ed25519 private key (PEM) that signs uploaded entries')
    .option('--remote-header <name=value>', 'extra header for remote cache requests (repeatable)', (v: string, all: string[] = []) => [...all, v])
    .option('--profile <file>', 'write a Chrome trace-event file of the build (open it in Perfetto or chrome://tracing)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  wg build                      build every target of the workspace\n' +
        '  wg build //fastmath:cuda      one package in one variant\n' +
        '  wg build //...:cpu -j 8       every package in the cpu variant, 8 CPU slots\n' +
        '  wg build --gpus 0,3 //...     two GPU slots, devices 0 and 3\n' +
        '  wg build --dry-run --json     keys and cache status, nothing runs\n' +
        '  wg build --profile trace.json a timeline of the build, one lane per slot\n' +
        '\nExit codes: 0 ok, 1 a build failed, 2 a mistake in BUILD.yaml or the arguments, 130 interrupted.',
    )
    .action(async (patterns: string[], flags: BuildFlags) => {
      let root: string | null = null;
      try {
        root = findWorkspace(flags.workspace ?? process.cwd());
        process.exitCode = await buildCommand(patterns, flags);
      } catch (e) {
        process.exitCode = reportError(e, root);
      }
    });

  program
    .command('watch')
    .description('build, then build again whenever an input of the targets changes (Ctrl-C stops)')
    .argument('[patterns...]', 'targets: //pkg:variant, //pkg (all its variants), //... (everything), //...:variant', [])
    .option('-C, --workspace <dir>', 'workspace folder (default: the nearest folder above with a BUILD.yaml)')
    .option('--cache-dir <dir>', 'local cache folder (default: $WG_CACHE_DIR, else $XDG_CACHE_HOME/wg or ~/.cache/wg)')
    .addOption(new Option('-j, --jobs <n>', 'CPU slots shared by running builds (default: the number of cores)').argParser(parseJobs))
    .addOption(new Option('--gpus <n|ids>', 'GPU slots: a count (--gpus 2) or device ids (--gpus 0,3) (default: the GPUs nvidia-smi lists)').argParser(parseGpus))
    .addOption(new Option('--memory <size>', 'memory shared by running builds, e.g. 16G (default: RAM, or the cgroup limit when lower)').argParser(parseMemory))
    .option('-k, --keep-going', 'after a failure, go on building everything that does not depend on it')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  wg watch //fastmath:cpu       rebuild fastmath whenever its sources, patches, env files or BUILD.yaml change\n' +
        '  wg watch -k //...             everything; a failure does not stop the other targets\n' +
        '\nExit code: 130 when stopped with Ctrl-C.',
    )
    .action(async (patterns: string[], flags: BuildFlags) => {
      let root: string | null = null;
      try {
        root = findWorkspace(flags.workspace ?? process.cwd());
        const cwd = process.cwd();
        const workspace = root;
        // Loaded only here: a plain build never pays for chokidar and the hasher.
        const { watchCommand } = await import('./watch.js');
        process.exitCode = await watchCommand(
          {
            build: {
              root,
              patterns: patterns.length > 0 ? patterns : ['//...'],
              cacheDir: cacheDirNamed(flags.cacheDir),
              keepGoing: flags.keepGoing ?? false,
              limits: { cpus: flags.jobs ?? detectCores(), memory: flags.memory ?? detectMemory(), gpus: flags.gpus ?? null },
            },
          },
          {
            reporter: () => makeReporter(cwd),
            note: writeLine,
            reportError: (e) => void reportError(e, workspace),
          },
        );
      } catch (e) {
        process.exitCode = reportError(e, root);
      }
    });

  program
    .command('explain')
    .description('say why targets would rebuild: what changed since their last build in this workspace')
    .argument('<patterns...>', 'targets: //pkg:variant, //pkg, //..., //...:variant')
    .option('-C, --workspace <dir>', 'workspace folder (default: the nearest folder above with a BUILD.yaml)')
    .option('--cache-dir <dir>', 'local cache folder (default: $WG_CACHE_DIR, else $XDG_CACHE_HOME/wg or ~/.cache/wg)')
    .option('--json', 'print one JSON document on stdout: status, keys and changes per target')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  wg explain //mamba:cu124      "patch patches/mamba/0002-fix.patch changed", "torch 2.4.0 → 2.4.1", …\n' +
        '  wg explain //...              every target: cached, never built, or what changed',
    )
    .action(async (patterns: string[], flags: { workspace?: string; cacheDir?: string; json?: boolean }) => {
      let root: string | null = null;
      try {
        root = findWorkspace(flags.workspace ?? process.cwd());
        const cacheDir = cacheDirNamed(flags.cacheDir);
        const { explanations, warnings } = await explainTargets(root, patterns, cacheDir);
        for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
        if (flags.json) process.stdout.write(`${JSON.stringify({ targets: explanations }, null, 2)}\n`);
        else process.stdout.write(explanations.flatMap(explanationLines).map((l) => `${l}\n`).join(''));
        process.exitCode = 0;
      } catch (e) {
        process.exitCode = reportError(e, root);
      }
    });

  program
    .command('query')
    .description('questions about the target graph, from BUILD.yaml alone')
    .addArgument(new Argument('<kind>', 'deps: what the targets depend on; rdeps: what depends on them; targets: the targets').choices(QUERY_KINDS))
    .argument('<patterns...>', 'targets: //pkg:variant, //pkg, //..., //...:variant')
    .addOption(new Option('--output <format>', 'text (one label a line), json or dot (Graphviz)').choices(QUERY_OUTPUTS).default('text'))
    .option('-C, --workspace <dir>', 'workspace folder (default: the nearest folder above with a BUILD.yaml)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  wg query deps //vecstats:cpu          everything //vecstats:cpu needs, transitively\n' +
        '  wg query rdeps //fastmath             everything that rebuilds when fastmath changes\n' +
        '  wg query targets //... --output dot | dot -Tsvg > graph.svg',
    )
    .action(async (kind: QueryKind, patterns: string[], flags: { output: QueryOutput; workspace?: string }) => {
      let root: string | null = null;
      try {
        root = findWorkspace(flags.workspace ?? process.cwd());
        process.stdout.write(await runQuery(root, kind, patterns, flags.output));
        process.exitCode = 0;
      } catch (e) {
        process.exitCode = reportError(e, root);
      }
    });

  const importer = program
    .command('import')
    .description('write a BUILD.yaml equivalent to another wheel builder\'s configuration (nothing is built)');
  const writeImport = (run: () => ImportResult, output: string | undefined): void => {
    try {
      const result = run();
      for (const w of result.warnings) process.stderr.write(`wg: warning: ${w}\n`);
      if (output) fs.writeFileSync(output, result.text);
      else process.stdout.write(result.text);
      process.exitCode = 0;
    } catch (e) {
      if (!(e instanceof ImportError)) throw e;
      process.stderr.write(`wg: error: ${e.message}\n`);
      process.exitCode = 2;
    }
  };
  importer
    .command('fromager')
    .description('from a fromager settings folder: settings.yaml, settings/<pkg>.yaml, envs/, patches/, requirements.txt, constraints.txt')
    .argument('<dir>', 'the settings folder (fromager\'s overrides/)')
    .option('-o, --output <file>', 'write the BUILD.yaml here (default: stdout)')
    .option('--python <path>', 'the interpreter the variants build with', 'python3')
    .action((dir: string, flags: { output?: string; python: string }) => {
      writeImport(() => importFromager(dir, { python: flags.python, outDir: flags.output ? path.dirname(path.resolve(flags.output)) : process.cwd() }), flags.output);
    });
  importer
    .command('wheel-builder')
    .description('from a Docker-per-(python, cuda, torch) wheel builder config.yaml: build_target and projects')
    .argument('<config>', 'the config.yaml')
    .option('-o, --output <file>', 'write the BUILD.yaml here (default: stdout)')
    .option('--python <path>', 'the interpreter of the build target (default: python<X.Y> on PATH)')
    .option('--cuda-home <dir>', 'a CUDA toolkit folder holding bin/nvcc')
    .action((config: string, flags: { output?: string; python?: string; cudaHome?: string }) => {
      writeImport(() => importWheelBuilder(config, { python: flags.python ?? null, cudaHome: flags.cudaHome ?? null }), flags.output);
    });

  return program;
}

// A mistake on the command line is exit 2, like one in BUILD.yaml; --help and --version stay 0.
const usageExit = (command: Command): void => {
  command.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  command.commands.forEach(usageExit);
};

/** Runs the command line `argv` (process.argv's shape); `importer` loads plugins (see module-import.ts). */
export async function main(argv: string[], importer?: ModuleImporter): Promise<void> {
  if (importer) useImporter(importer);
  const program = makeProgram();
  usageExit(program);
  await program.parseAsync(argv);
}
