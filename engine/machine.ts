// What this machine offers builds: CPU cores, memory (the cgroup's limit when it is lower than RAM) and GPUs as
// `nvidia-smi` lists them. These are the defaults of `-j`, `--memory` and `--gpus`.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';

export interface Gpu {
  /** The device index, as CUDA_VISIBLE_DEVICES names it. */
  index: number;
  name: string;
  /** Bytes; 0 when nvidia-smi did not say. */
  memory: number;
}

/** Limits at or above this are how cgroups say "no limit" (v1 writes 2^63 rounded down to a page). */
const UNLIMITED = 2 ** 60;
/** A wedged driver can make nvidia-smi hang; a machine whose GPUs cannot be listed in this time has none for us. */
const NVIDIA_SMI_TIMEOUT_MS = 10_000;

export function detectCores(): number {
  return os.availableParallelism();
}

/** RAM, or the memory limit of the cgroup wg runs in (and of every cgroup above it) when that is lower. */
export function detectMemory(): number {
  let limit = os.totalmem();
  for (const file of cgroupMemoryLimitFiles()) {
    const n = parseCgroupLimit(readOrNull(file));
    if (n !== null && n < limit) limit = n;
  }
  return limit;
}

/** The cgroup v2 `memory.max` and v1 `memory.limit_in_bytes` files that bound this process, innermost first. */
function cgroupMemoryLimitFiles(): string[] {
  const files: string[] = [];
  for (const line of (readOrNull('/proc/self/cgroup') ?? '').split('\n')) {
    // `0::/path` is the v2 hierarchy; `N:memory:/path` (or `N:cpu,memory:/path`) the v1 memory controller.
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line);
    if (!m) continue;
    const [, controllers, cgPath] = m as unknown as [string, string, string];
    const base = controllers === '' ? '/sys/fs/cgroup' : controllers.split(',').includes('memory') ? '/sys/fs/cgroup/memory' : null;
    if (base === null) continue;
    const leaf = controllers === '' ? 'memory.max' : 'memory.limit_in_bytes';
    // Inside a cgroup namespace the path may not exist under /sys/fs/cgroup; the mount's own root then is ours.
    const parts = cgPath.split('/').filter((p) => p !== '');
    for (let n = parts.length; n >= 0; n--) files.push(`${base}/${[...parts.slice(0, n), leaf].join('/')}`);
  }
  return [...new Set(files)];
}

/** A cgroup limit file's value in bytes; null for "max", a missing file or anything unreadable. */
export function parseCgroupLimit(text: string | null): number | null {
  if (text === null) return null;
  const t = text.trim();
  if (!/^\d+$/.test(t)) return null;
  const n = Number(t);
  return n > 0 && n < UNLIMITED ? n : null;
}

/**
 * The GPUs `nvidia-smi` lists, restricted to those named in wg's own CUDA_VISIBLE_DEVICES when that is a list of
 * device indexes. A missing or failing nvidia-smi means no GPUs: a CPU-only machine is not a mistake.
 */
export function detectGpus(env: NodeJS.ProcessEnv = process.env): Gpu[] {
  const r = spawnSync('nvidia-smi', ['--query-gpu=index,name,memory.total', '--format=csv'], {
    encoding: 'utf8',
    timeout: NVIDIA_SMI_TIMEOUT_MS,
    stdio: ['ignore', 'pipe', 'ignore'],
    env,
  });
  if (r.error || r.status !== 0 || typeof r.stdout !== 'string') return [];
  const gpus = parseNvidiaSmi(r.stdout);
  const visible = env['CUDA_VISIBLE_DEVICES'];
  if (visible !== undefined && /^\s*\d+\s*(,\s*\d+\s*)*$/.test(visible)) {
    const allowed = new Set(visible.split(',').map((s) => Number(s.trim())));
    return gpus.filter((g) => allowed.has(g.index));
  }
  if (visible !== undefined && visible.trim() === '') return [];
  return gpus;
}

/** `index, name, memory.total [MiB]` CSV (a header line, then one line per device) → devices, by index. */
export function parseNvidiaSmi(csv: string): Gpu[] {
  const out: Gpu[] = [];
  for (const line of csv.split('\n').slice(1)) {
    const cols = line.split(',').map((c) => c.trim());
    if (cols.length < 2 || !/^\d+$/.test(cols[0]!)) continue;
    const mem = /^(\d+)\s*MiB$/i.exec(cols[cols.length - 1] ?? '');
    out.push({ index: Number(cols[0]), name: cols.slice(1, cols.length > 2 ? -1 : undefined).join(', '), memory: mem ? Number(mem[1]) * 1024 * 1024 : 0 });
  }
  const seen = new Set<number>();
  return out.filter((g) => !seen.has(g.index) && seen.add(g.index)).sort((a, b) => a.index - b.index);
}

function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}
