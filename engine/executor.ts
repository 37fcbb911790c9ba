// Runs one action: a fresh sandbox, the source copied and patched, dependency wheels linked in by name, the rule's
// steps spawned each in its own process group with exactly the declared env, and the outputs stored in the CAS.
// Nothing is stored unless every step succeeded.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyPatch, PatchError } from '../rules/patches.js';
import type { ActionContext, ActionOutput, ActionPlan, DepOutputs, ExecOptions, Toolchain } from '../rules/rule.js';
import { copyTree, SourceError, type TreeEntry } from '../rules/source-path.js';
import type { ActionResult, LocalStore, StoredOutput } from '../cache/local-store.js';
import type { FailureReason } from './events.js';
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
  /** The package's source tree as hashed, or null when the package has none. */
  source: { root: string; entries: TreeEntry[] } | null;
  /** Patches in order: the name shown to users and the file to read. */
  patches: { name: string; file: string }[];
  env: Record<string, string>;
  toolchain: Toolchain | null;
  /** Dependency results, transitive ones included, dependencies first. */
  deps: { label: string; result: ActionResult }[];
}

export interface ExecutorOptions {
  store: LocalStore;
  /** Where sandboxes are made (same filesystem as the CAS, so outputs move in cheaply). */
  sandboxRoot: string;
  logPath: string;
  signal: AbortSignal;
  /** Called with the process group id of each spawned step, and again with null when it ended. */
  onProcessGroup?: (pgid: number, alive: boolean) => void;
}

function stepEnv(input: ActionInput, grant: Grant, sandbox: string): Record<string, string> {
  const env: Record<string, string> = {
    PATH: input.toolchain?.paths.cudaHome ? `${path.join(input.toolchain.paths.cudaHome, 'bin')}:${BASE_PATH}` : BASE_PATH,
    HOME: path.join(sandbox, 'home'),
    TMPDIR: path.join(sandbox, 'tmp'),
    LANG: 'C.UTF-8',
    SOURCE_DATE_EPOCH,
    MAX_JOBS: String(grant.cpus),
    WG_LABEL: input.label,
  };
  if (input.toolchain?.paths.cudaHome) env['CUDA_HOME'] = input.toolchain.paths.cudaHome;
  // Builds that declare no GPU must not grab one by accident: an empty list hides every device.
  env['CUDA_VISIBLE_DEVICES'] = grant.gpus.join(',');
  Object.assign(env, input.env);
  return env;
}

export async function executeAction(input: ActionInput, grant: Grant, options: ExecutorOptions): Promise<ActionResult> {
  const started = Date.now();
  fs.mkdirSync(options.sandboxRoot, { recursive: true });
  const sandbox = fs.mkdtempSync(path.join(options.sandboxRoot, `${input.label.replace(/[^A-Za-z0-9_.-]+/g, '_')}-`));
  for (const d of ['home', 'tmp', 'out', 'deps']) fs.mkdirSync(path.join(sandbox, d));
  fs.mkdirSync(path.dirname(options.logPath), { recursive: true });
  const logFd = fs.openSync(options.logPath, 'w');
  const log = (line: string): void => {
    fs.writeSync(logFd, line.endsWith('\n') ? line : `${line}\n`);
  };
  let succeeded = false;
  try {
    log(`# ${input.label}  key ${input.key}`);
    const env = stepEnv(input, grant, sandbox);

    let sourceDir: string | null = null;
    if (input.source) {
      sourceDir = path.join(sandbox, 'src');
      try {
        copyTree(input.source.root, input.source.entries, sourceDir);
      } catch (e) {
        throw new ActionFailure('source-error', `cannot copy the source: ${(e as Error).message}`);
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
      for (const out of dep.result.outputs) {
        const dest = path.join(sandbox, 'deps', dep.label.replace(/[^A-Za-z0-9_.-]+/g, '_'), out.path);
        await options.store.materialize(out.digest, dest, out.mode);
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
      exec: (argv, opts) => runStep(argv, opts, env, logFd, options),
    };
    let outputs: ActionOutput[];
    try {
      outputs = await input.plan.execute(ctx);
    } catch (e) {
      if (e instanceof ActionFailure) throw e;
      throw new ActionFailure('setup-failed', (e as Error).message);
    }
    if (options.signal.aborted) throw new ActionFailure('interrupted', 'interrupted');

    const stored: StoredOutput[] = [];
    for (const out of outputs) {
      const file = path.join(outDir, out.path);
      if (!fs.existsSync(file)) throw new ActionFailure('missing-output', `declared output ${out.path} was not produced`);
      const mode = fs.statSync(file).mode & 0o777;
      const blob = await options.store.putBlob(file);
      stored.push({ path: out.path, kind: out.kind, digest: blob.digest, size: blob.size, mode });
    }
    log(`# done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    fs.fsyncSync(logFd);
    const logBlob = await options.store.putBlob(options.logPath);
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
    const failure = e instanceof ActionFailure ? e : new ActionFailure('setup-failed', (e as Error).message);
    log(`# FAILED: ${failure.message}`);
    log(`# sandbox kept for inspection: ${sandbox}`);
    throw failure;
  } finally {
    fs.closeSync(logFd);
    if (succeeded) fs.rmSync(sandbox, { recursive: true, force: true });
  }
}

/** How long a process group gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2000;

function runStep(argv: string[], opts: ExecOptions, env: Record<string, string>, logFd: number, options: ExecutorOptions): Promise<void> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new ActionFailure('setup-failed', `${opts.step}: empty command`));
  fs.writeSync(logFd, `$ ${argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')}\n`);
  return new Promise((resolve, reject) => {
    if (options.signal.aborted) return reject(new ActionFailure('interrupted', 'interrupted'));
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...env, ...(opts.env ?? {}) },
      stdio: ['ignore', logFd, logFd],
      detached: true,
    });
    const pgid = child.pid;
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      if (pgid === undefined) return;
      try {
        process.kill(-pgid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      killTimer = setTimeout(() => {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }, KILL_GRACE_MS);
    };
    if (pgid !== undefined) options.onProcessGroup?.(pgid, true);
    options.signal.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e) => {
      options.signal.removeEventListener('abort', onAbort);
      reject(new ActionFailure('setup-failed', `${opts.step}: cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, sig) => {
      options.signal.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
      // Grandchildren that outlive the step would keep running after its result is stored: reap the group.
      if (pgid !== undefined) {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          /* the group is empty, as it should be */
        }
        options.onProcessGroup?.(pgid, false);
      }
      if (options.signal.aborted) return reject(new ActionFailure('interrupted', `${opts.step}: interrupted`));
      if (code === 0) return resolve();
      if (sig) return reject(new ActionFailure('killed', `${opts.step} was killed by ${sig}`));
      reject(new ActionFailure('exit-non-zero', `${opts.step} failed: ${cmd} exited with code ${code}`));
    });
  });
}
