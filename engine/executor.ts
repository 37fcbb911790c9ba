// Runs one action: a fresh sandbox, the source copied and patched, dependency wheels linked in by name, the rule's
// steps spawned each in its own process group with exactly the declared env, and the outputs stored in the CAS.
// Nothing is stored unless every step succeeded; a step's end is told apart: interrupted, timed out, OOM, failed.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyPatch, checkPatchPaths, PatchError } from '../rules/patches.js';
import type { ActionContext, ActionOutput, ActionPlan, DepOutputs, ExecOptions, Toolchain } from '../rules/rule.js';
import { copyTree, SourceError, type TreeEntry } from '../rules/source-path.js';
import type { ResolvedSource } from '../rules/sources.js';
import type { ActionResult, LocalStore, StoredOutput } from '../cache/local-store.js';
import type { FailureReason } from './events.js';
import { processGroups, type RunningGroup } from './process-group.js';
import { redact, Redactor, type Secret } from './redact.js';
import type { Sandboxes } from './sandbox.js';
import type { Grant } from './scheduler.js';

/** A fixed, machine-independent base env: builds see no variable the user did not declare. */
const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** 1980-01-01, the earliest time a zip (wheel) can hold, so rebuilt wheels come out byte-identical. */
const SOURCE_DATE_EPOCH = '315532800';

export class ActionFailure extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
  ) {
    super(message);
  }
}

export interface ActionInput {
  label: string;
  key: string;
  plan: ActionPlan;
  record: unknown;
  /** The package's source: a folder's tree as hashed, a resolved remote source, or null when it has none. */
  source: { root: string; entries: TreeEntry[] } | ResolvedSource | null;
  /** Patches in order: the name shown to users and the file to read. */
  patches: { name: string; file: string }[];
  env: Record<string, string>;
  /** `pass_env` variables wg's environment sets, with their values. */
  passEnv: Record<string, string>;
  /** `secret_env` variables: passed to every step, redacted from the log and from failure messages. */
  secrets: Secret[];
  toolchain: Toolchain | null;
  /** Dependency results, transitive ones included, dependencies first. */
  deps: { label: string; result: ActionResult }[];
  /** MAX_JOBS of the build: its cpu slots (divided by NVCC_THREADS), lowered after an out-of-memory failure. */
  maxJobs: number;
  /** NVCC_THREADS, when the target declares `nvcc_threads`; else 0. */
  nvccThreads: number;
  /** Kill the action after this long; 0 for never. */
  timeoutMs: number;
}

export interface ExecutorOptions {
  store: LocalStore;
  /** Where the action's sandbox comes from (same filesystem as the CAS, so outputs move in cheaply). */
  sandboxes: Sandboxes;
  logPath: string;
  signal: AbortSignal;
  /** Called with the process group id of each spawned step, and again with null when it ended. */
  onProcessGroup?: (pgid: number, alive: boolean) => void;
  /** Filled in as the action runs: the highest peak memory of its steps' process groups, in bytes. */
  usage?: { peakBytes: number };
  /** Append to the log (a retry keeps the failed attempt's log above its own). */
  appendLog?: boolean;
  /**
   * Called just before the result is stored: a message when an input the key was read from changed while the
   * action ran (engine/input-check.ts). The result is then discarded: it may be of content the key does not name.
   */
  verifyInputs?: () => string | null;
}

/** Lines that mean a compiler or linker of the build was killed for memory even though the step exited normally. */
const OOM_IN_LOG = /(?:^|[^\w])(Killed)(?:$|[^\w])|cicc died due to signal 9|ptxas died due to signal 9|Error 137\b/m;
/** How much of a failed step's output is searched for OOM_IN_LOG. */
const OOM_SCAN_BYTES = 64 * 1024;

/** `2s`, `90s`, `30m`, `5h`, as a timeout is written in BUILD.yaml. */
export function formatDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${Number((ms / 1000).toFixed(1))}s`;
}

function stepEnv(input: ActionInput, grant: Grant, sandbox: string): Record<string, string> {
  const env: Record<string, string> = {
    PATH: input.toolchain?.paths.cudaHome ? `${path.join(input.toolchain.paths.cudaHome, 'bin')}:${BASE_PATH}` : BASE_PATH,
    HOME: path.join(sandbox, 'home'),
    TMPDIR: path.join(sandbox, 'tmp'),
    LANG: 'C.UTF-8',
    SOURCE_DATE_EPOCH,
    MAX_JOBS: String(input.maxJobs),
    WG_LABEL: input.label,
  };
  if (input.nvccThreads > 0) env['NVCC_THREADS'] = String(input.nvccThreads);
  if (input.toolchain?.paths.cudaHome) env['CUDA_HOME'] = input.toolchain.paths.cudaHome;
  // Builds that declare no GPU must not grab one by accident: an empty list hides every device.
  env['CUDA_VISIBLE_DEVICES'] = grant.gpus.join(',');
  Object.assign(env, input.env, input.passEnv);
  for (const s of input.secrets) env[s.name] = s.value;
  return env;
}

export async function executeAction(input: ActionInput, grant: Grant, options: ExecutorOptions): Promise<ActionResult> {
  const started = Date.now();
  const sandbox = options.sandboxes.acquire(input.label, input.source !== null && !('materialize' in input.source));
  const logFd = openLog(options.logPath, options.appendLog ? APPEND : TRUNCATE_APPEND);
  // Every byte that reaches the log passes a redaction of the secrets (rules and sources log through here too).
  const secrets = input.secrets.filter((s) => s.value !== '');
  // Closed before the log is stored: from then on it is a CAS blob, and a write would corrupt it.
  let logOpen = true;
  const log = (line: string): void => {
    if (!logOpen) return;
    const text = line.endsWith('\n') ? line : `${line}\n`;
    fs.writeSync(logFd, secrets.length > 0 ? redact(text, secrets) : text);
  };
  let succeeded = false;
  // A result discarded because its inputs changed holds nothing worth inspecting: its sandbox goes too.
  let discarded = false;
  // The timeout covers the whole action; it stops the step running when it fires, and every later one.
  const timer: StepTimer = { timedOut: false, current: null, timeoutMs: input.timeoutMs };
  const timeout =
    input.timeoutMs > 0
      ? setTimeout(() => {
          timer.timedOut = true;
          timer.current?.terminate();
        }, input.timeoutMs)
      : undefined;
  try {
    log(`# ${input.label}  key ${input.key}`);
    log(`# MAX_JOBS=${input.maxJobs}${input.nvccThreads > 0 ? ` NVCC_THREADS=${input.nvccThreads}` : ''}`);
    const env = stepEnv(input, grant, sandbox);

    let sourceDir: string | null = null;
    if (input.source) {
      sourceDir = path.join(sandbox, 'src');
      if ('materialize' in input.source) {
        log(`# source: ${input.source.describe}`);
        try {
          await input.source.materialize(sourceDir, { log, signal: options.signal });
        } catch (e) {
          if (options.signal.aborted) throw new ActionFailure('interrupted', 'interrupted');
          throw new ActionFailure('source-error', (e as Error).message);
        }
      } else {
        try {
          await copyTree(input.source.root, input.source.entries, sourceDir, () => options.sandboxes.spareFile());
        } catch (e) {
          throw new ActionFailure('source-error', `cannot copy the source: ${(e as Error).message}`);
        }
      }
      // The whole set is checked before the first patch touches the tree: a bad patch late in the list must not
      // leave a half-patched tree behind (analysis checked them too, but a file can change while the build runs).
      try {
        for (const p of input.patches) checkPatchPaths(p.name, fs.readFileSync(p.file, 'utf8'));
      } catch (e) {
        if (e instanceof PatchError) throw new ActionFailure('patch-failed', e.message);
        throw new ActionFailure('patch-failed', `cannot read a patch: ${(e as Error).message}`);
      }
      for (const p of input.patches) {
        try {
          await applyPatch(p.name, p.file, sourceDir, log);
        } catch (e) {
          if (e instanceof PatchError) throw new ActionFailure('patch-failed', e.message);
          throw e;
        }
      }
    }

    const deps: DepOutputs[] = [];
    for (const dep of input.deps) {
      const wheels: string[] = [];
      const files: string[] = [];
      const name = dep.label.replace(/[^A-Za-z0-9_.-]+/g, '_');
      const folder = dep.result.outputs.length > 0 ? options.sandboxes.depFolder(sandbox, name) : '';
      for (const out of dep.result.outputs) {
        const dest = path.join(folder, out.path);
        // A spare folder renamed in, or one just made: what it holds is linked without looking first.
        await options.store.materialize(out.digest, dest, out.mode, true);
        (out.kind === 'wheel' ? wheels : files).push(dest);
      }
      deps.push({ label: dep.label, wheels, files });
    }

    const outDir = path.join(sandbox, 'out');
    const ctx: ActionContext = {
      label: input.label,
      sandbox,
      sourceDir,
      outDir,
      env,
      toolchain: input.toolchain,
      deps,
      signal: options.signal,
      log,
      exec: (argv, opts) => runStep(argv, opts, env, logFd, options, timer, secrets),
    };
    let outputs: ActionOutput[];
    try {
      outputs = await input.plan.execute(ctx);
    } catch (e) {
      if (e instanceof ActionFailure) throw e;
      throw new ActionFailure('setup-failed', (e as Error).message);
    }
    if (options.signal.aborted) throw new ActionFailure('interrupted', 'interrupted');
    if (timer.timedOut) throw new ActionFailure('timed-out', `timed out after ${formatDuration(input.timeoutMs)}`);

    const stored: StoredOutput[] = [];
    for (const out of outputs) {
      const file = path.join(outDir, out.path);
      let mode: number;
      try {
        mode = fs.statSync(file).mode & 0o777;
      } catch {
        throw new ActionFailure('missing-output', `declared output ${out.path} was not produced`);
      }
      // The sandbox is about to go: its outputs become blobs by link, not by copy.
      const blob = await options.store.adoptBlob(file);
      stored.push({ path: out.path, kind: out.kind, digest: blob.digest, size: blob.size, mode });
    }
    log(`# done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    const changed = options.verifyInputs?.() ?? null;
    if (changed !== null) {
      discarded = true;
      throw new ActionFailure('inputs-changed', changed);
    }
    logOpen = false;
    fs.closeSync(logFd);
    // The log in wg-out/logs and its blob become one file (when both are on one file system).
    const logBlob = await options.store.adoptBlob(options.logPath);
    const result: ActionResult = {
      key: input.key,
      label: input.label,
      record: input.record,
      outputs: stored,
      log: logBlob,
      durationMs: Date.now() - started,
      createdAt: new Date().toISOString(),
    };
    await options.store.putResult(result);
    succeeded = true;
    return result;
  } catch (e) {
    const caught = e instanceof ActionFailure ? e : new ActionFailure('setup-failed', (e as Error).message);
    // The message goes to the terminal, --json and the report: a rule that quoted a secret must not leak it there.
    const failure = secrets.length > 0 ? new ActionFailure(caught.reason, redact(caught.message, secrets)) : caught;
    log(`# FAILED: ${failure.message}`);
    if (!discarded) log(`# sandbox kept for inspection: ${sandbox}`);
    throw failure;
  } finally {
    if (timeout) clearTimeout(timeout);
    if (logOpen) fs.closeSync(logFd);
    if (succeeded) options.sandboxes.release(sandbox);
    else if (discarded) options.sandboxes.discard(sandbox);
  }
}

/**
 * Flags of the log: always O_APPEND, because a step spawned by the spawn helper writes to a second open file of it
 * (spawn-helper.ts), and only appending keeps the two from writing over each other. Readable too: a failed step's
 * output is searched for signs of the OOM killer.
 */
const APPEND = fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_APPEND;
const TRUNCATE_APPEND = APPEND | fs.constants.O_TRUNC;

/**
 * Opens the log, making its folder only when it is missing (a build opens a thousand logs in one folder). On the
 * main thread: a trip through the thread pool wakes a thread that then takes the main thread's core (~0.4 ms per
 * action in a profile of a cold 1000-target build), and creating the file costs ~0.1 ms now that a build frees no
 * inodes as it goes (ext4 without a journal made each new inode scan past the recently freed ones: 0.5-1 ms).
 */
function openLog(file: string, flags: number): number {
  try {
    return fs.openSync(file, flags);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    fs.mkdirSync(path.dirname(file), { recursive: true });
    return fs.openSync(file, flags);
  }
}

/** The action's timeout as its steps see it: whether it fired, and the step it must stop. */
interface StepTimer {
  timedOut: boolean;
  current: RunningGroup | null;
  timeoutMs: number;
}

async function runStep(
  argv: string[],
  opts: ExecOptions,
  env: Record<string, string>,
  logFd: number,
  options: ExecutorOptions,
  timer: StepTimer,
  secrets: Secret[],
): Promise<void> {
  const cmd = argv[0];
  if (cmd === undefined) throw new ActionFailure('setup-failed', `${opts.step}: empty command`);
  if (options.signal.aborted) throw new ActionFailure('interrupted', `${opts.step}: interrupted`);
  if (timer.timedOut) throw new ActionFailure('timed-out', `timed out after ${formatDuration(timer.timeoutMs)}`);
  const shown = `$ ${argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')}\n`;
  fs.writeSync(logFd, secrets.length > 0 ? redact(shown, secrets) : shown);
  const stepStart = fs.fstatSync(logFd).size;
  // With secrets, the step's output passes a redactor on its way to the log (one per stream, so a value split
  // between two writes of one stream is still caught); without, the step writes to the log directly.
  const redactors = secrets.length > 0 ? { stdout: new Redactor(secrets, (b) => fs.writeSync(logFd, b)), stderr: new Redactor(secrets, (b) => fs.writeSync(logFd, b)) } : null;
  let group: RunningGroup;
  try {
    group = await processGroups.spawn(argv, {
      cwd: opts.cwd,
      env: { ...env, ...(opts.env ?? {}) },
      outFd: logFd,
      ...(redactors ? { onOutput: (chunk: Buffer, stream: 'stdout' | 'stderr') => redactors[stream].write(chunk) } : {}),
    });
  } catch (e) {
    throw new ActionFailure('setup-failed', `${opts.step}: cannot run ${cmd}: ${(e as Error).message}`);
  }
  const onAbort = (): void => group.terminate();
  options.signal.addEventListener('abort', onAbort, { once: true });
  timer.current = group;
  // Either may have come while the step was being spawned.
  if (options.signal.aborted || timer.timedOut) group.terminate();
  if (group.pgid > 0) options.onProcessGroup?.(group.pgid, true);
  let exit;
  try {
    exit = await group.finished;
  } catch (e) {
    throw new ActionFailure('setup-failed', `${opts.step}: cannot run ${cmd}: ${(e as Error).message}`);
  } finally {
    redactors?.stdout.end();
    redactors?.stderr.end();
    options.signal.removeEventListener('abort', onAbort);
    timer.current = null;
    if (group.pgid > 0) options.onProcessGroup?.(group.pgid, false);
  }
  if (options.usage) options.usage.peakBytes = Math.max(options.usage.peakBytes, exit.peakBytes);
  if (options.signal.aborted) throw new ActionFailure('interrupted', `${opts.step}: interrupted`);
  if (exit.lost) throw new ActionFailure('setup-failed', `${opts.step}: ${exit.lost} (killed process group ${exit.pgid})`);
  if (timer.timedOut) {
    throw new ActionFailure('timed-out', `timed out after ${formatDuration(timer.timeoutMs)} (killed process group ${exit.pgid})`);
  }
  if (exit.code === 0) return;
  // SIGKILL that wg did not send is the kernel's OOM killer (or a user's kill -9, which a retry also survives).
  if (exit.signal === 'SIGKILL') throw new ActionFailure('out-of-memory', `${opts.step} was killed by SIGKILL (probably out of memory)`);
  if (exit.signal) throw new ActionFailure('killed', `${opts.step} was killed by ${exit.signal}`);
  if (exit.code === 137) {
    throw new ActionFailure('out-of-memory', `${opts.step} failed: ${cmd} exited with code 137 (killed, probably out of memory)`);
  }
  const said = OOM_IN_LOG.exec(stepOutput(logFd, stepStart));
  if (said) {
    throw new ActionFailure(
      'out-of-memory',
      `${opts.step} failed: ${cmd} exited with code ${exit.code}; its log says "${said[1] ?? said[0]}" (probably out of memory)`,
    );
  }
  throw new ActionFailure('exit-non-zero', `${opts.step} failed: ${cmd} exited with code ${exit.code}`);
}

/** The last OOM_SCAN_BYTES a step wrote to the log. */
function stepOutput(logFd: number, from: number): string {
  const end = fs.fstatSync(logFd).size;
  const start = Math.max(from, end - OOM_SCAN_BYTES);
  if (end <= start) return '';
  const buf = Buffer.alloc(end - start);
  fs.readSync(logFd, buf, 0, buf.length, start);
  return buf.toString('utf8');
}
