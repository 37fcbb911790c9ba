// The `wg` command line. Exit codes: 0 success, 1 a build failed, 2 a mistake in BUILD.yaml or on the command
// line (nothing ran), 130 interrupted.

import { Command, InvalidArgumentError, Option } from 'commander';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runBuild, UsageError } from './build.js';
import { DiagnosticError, renderDiagnostic, sortDiagnostics } from './diagnostics.js';
import { BUILD_FILE, parseQuantity } from './load.js';
import { LineReporter } from './report.js';

export function defaultCacheDir(): string {
  if (process.env['WG_CACHE_DIR']) return path.resolve(process.env['WG_CACHE_DIR']);
  const base = process.env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache');
  return path.join(base, 'wg');
}

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
}

async function buildCommand(patterns: string[], flags: BuildFlags): Promise<number> {
  const cwd = process.cwd();
  const root = findWorkspace(flags.workspace ?? cwd);
  const reporter = new LineReporter((line) => process.stderr.write(`${line}\n`), cwd);
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write('wg: interrupted; stopping running actions (press Ctrl-C again to force)\n');
      controller.abort();
    } else process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const report = await runBuild(
      {
        root,
        patterns: patterns.length > 0 ? patterns : ['//...'],
        cacheDir: flags.cacheDir ? path.resolve(flags.cacheDir) : defaultCacheDir(),
        dryRun: flags.dryRun ?? false,
        keepGoing: flags.keepGoing ?? false,
        limits: { cpus: flags.jobs ?? os.availableParallelism(), memory: flags.memory ?? 0, gpus: flags.gpus ?? [] },
      },
      reporter.onEvent,
      controller.signal,
    );
    reporter.summary(report, flags.dryRun ?? false);
    if (flags.json) process.stdout.write(`${JSON.stringify({ ok: report.ok, durationMs: report.durationMs, targets: report.targets }, null, 2)}\n`);
    if (report.interrupted) return 130;
    return report.ok ? 0 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function reportError(e: unknown, root: string | null): number {
  if (e instanceof DiagnosticError) {
    let texts = new Map<string, string>();
    try {
      if (root) texts = new Map([[BUILD_FILE, fs.readFileSync(path.join(root, BUILD_FILE), 'utf8')]]);
    } catch {
      /* the diagnostic itself says the file cannot be read */
    }
    const list = sortDiagnostics(e.diagnostics);
    for (const d of list) process.stderr.write(`${renderDiagnostic(d, texts)}\n`);
    const errors = list.filter((d) => d.severity === 'error').length;
    process.stderr.write(`wg: ${errors} error${errors === 1 ? '' : 's'} in ${BUILD_FILE}; nothing was built\n`);
    return 2;
  }
  if (e instanceof UsageError) {
    process.stderr.write(`wg: error: ${e.message.split('\n').join('\nwg: error: ')}\n`);
    return 2;
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
    .addOption(new Option('--gpus <n|ids>', 'GPU slots: a count (--gpus 2) or device ids (--gpus 0,3)').argParser(parseGpus))
    .addOption(new Option('--memory <size>', 'memory shared by running builds, e.g. 16G (default: unlimited)').argParser(parseMemory))
    .option('-k, --keep-going', 'after a failure, go on building everything that does not depend on it')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  wg build                      build every target of the workspace\n' +
        '  wg build //fastmath:cuda      one package in one variant\n' +
        '  wg build //...:cpu -j 8       every package in the cpu variant, 8 CPU slots\n' +
        '  wg build --gpus 0,3 //...     two GPU slots, devices 0 and 3\n' +
        '  wg build --dry-run --json     keys and cache status, nothing runs\n' +
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

  return program;
}

await makeProgram().parseAsync(process.argv);
