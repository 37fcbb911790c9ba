// The test rig: a temporary workspace (written from strings or copied from the demo) with its own cache folder,
// driven through the real `wg` binary in a child process, exactly as a user runs it.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/). */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const WG_BIN = path.join(REPO, 'bin', 'wg.cjs');
export const SYSTEM_PYTHON = '/usr/bin/python3';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface TargetJson {
  label: string;
  key: string;
  status: 'built' | 'cached' | 'failed' | 'skipped' | 'interrupted' | 'would-build';
  wheels: string[];
  files: string[];
  log: string | null;
  error: string | null;
}

export interface BuildJson {
  ok: boolean;
  targets: TargetJson[];
}

export class TempWorkspace {
  private constructor(
    /** The workspace folder (holds BUILD.yaml). */
    public dir: string,
    /** The cache folder, outside the workspace so the workspace can be moved without losing the cache. */
    readonly cacheDir: string,
    private readonly base: string,
  ) {}

  /** An empty workspace; `files` maps relative paths to contents. */
  static create(files: Record<string, string> = {}): TempWorkspace {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-test-'));
    const ws = new TempWorkspace(path.join(base, 'ws'), path.join(base, 'cache'), base);
    fs.mkdirSync(ws.dir);
    for (const [rel, content] of Object.entries(files)) ws.write(rel, content);
    return ws;
  }

  /** A copy of the repository's demo workspace (BUILD.yaml, examples/, patches/). */
  static demo(): TempWorkspace {
    const ws = TempWorkspace.create();
    for (const entry of ['BUILD.yaml', 'examples', 'patches']) {
      fs.cpSync(path.join(REPO, entry), path.join(ws.dir, entry), {
        recursive: true,
        filter: (src) => !/(__pycache__|\.egg-info|[/\\]build$)/.test(src),
      });
    }
    return ws;
  }

  path(rel: string): string {
    return path.join(this.dir, rel);
  }

  write(rel: string, content: string): void {
    fs.mkdirSync(path.dirname(this.path(rel)), { recursive: true });
    fs.writeFileSync(this.path(rel), content);
  }

  read(rel: string): string {
    return fs.readFileSync(this.path(rel), 'utf8');
  }

  /** Moves the whole workspace to another folder (the cache stays where it is). */
  moveTo(name: string): void {
    const dest = path.join(this.base, name);
    fs.renameSync(this.dir, dest);
    this.dir = dest;
  }

  /** Runs `wg ARGS` in the workspace with this workspace's cache. */
  run(args: string[], options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [WG_BIN, ...args], {
        cwd: options.cwd ?? this.dir,
        env: { ...process.env, WG_CACHE_DIR: this.cacheDir, ...(options.env ?? {}) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 600_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** `wg build --json ARGS`; fails the test with wg's stderr when wg's exit code is not `expectCode`. */
  async build(args: string[] = [], options: { env?: Record<string, string>; expectCode?: number } = {}): Promise<BuildJson & { stderr: string }> {
    const r = await this.run(['build', '--json', ...args], options);
    const expected = options.expectCode ?? 0;
    if (r.code !== expected) throw new Error(`wg build ${args.join(' ')} exited ${r.code}, expected ${expected}\n${r.stderr}`);
    return { ...(JSON.parse(r.stdout) as BuildJson), stderr: r.stderr };
  }

  remove(): void {
    fs.rmSync(this.base, { recursive: true, force: true });
  }
}

/** label → status, for compact assertions. */
export function statuses(result: BuildJson): Record<string, string> {
  return Object.fromEntries(result.targets.map((t) => [t.label, t.status]));
}

/** The labels with a given status, sorted. */
export function withStatus(result: BuildJson, status: TargetJson['status']): string[] {
  return result.targets.filter((t) => t.status === status).map((t) => t.label).sort();
}

/** Runs a command to completion (no shell) and returns its output; throws on a non-zero exit. */
export function sh(cmd: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: { ...process.env, ...(options.env ?? {}) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}\n${out}`))));
  });
}
