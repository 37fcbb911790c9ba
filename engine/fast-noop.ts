// The no-op fast path of `wg build`: understands just enough of the command line to find the workspace and the
// cache, asks the no-op snapshot whether anything changed, and if not prints the stored result. When some inputs
// changed it hands them to the incremental path (bin/wg.cjs loads it). Anything it does not understand (another
// command, --dry-run, --profile, a typo) goes to the full CLI, which owns every message.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { cacheDirNamed } from './cache-dir.js';
import { checkSnapshot, snapshotReport, type SnapshotArgs, type SnapshotCheck } from './noop-snapshot.js';
import { writeStderr, writeStdout } from './stdio-write.js';

// The shim (bin/wg.cjs) needs it before loading the CLI, whose code cache lives there; this bundle is loaded already.
export { cacheDirOf } from './cache-dir.js';
// And whether the no-op answer's writes are all out, so that it may exit at once.
export { settled } from './stdio-write.js';

const WITH_VALUE = new Set(['-C', '--workspace', '--cache-dir', '-j', '--jobs', '--gpus', '--memory']);
const BOOLEAN = new Set(['--json', '-k', '--keep-going']);

interface Parsed {
  workspace: string | null;
  cacheDir: string | null;
  json: boolean;
  keepGoing: boolean;
  jobs: number | null;
  /** --gpus or --memory: the incremental path leaves their parsing (and its messages) to the full CLI. */
  limitFlags: boolean;
  patterns: string[];
}

/** Inputs changed: what the incremental path needs to rebuild just what they touch. */
export interface IncrementalRequest {
  args: SnapshotArgs;
  check: Extract<SnapshotCheck, { kind: 'changed' }>;
  json: boolean;
  keepGoing: boolean;
  jobs: number | null;
  started: bigint;
}

function parse(argv: string[]): Parsed | null {
  if (argv[0] !== 'build') return null;
  const out: Parsed = { workspace: null, cacheDir: null, json: false, keepGoing: false, jobs: null, limitFlags: false, patterns: [] };
  for (let i = 1; i < argv.length; i++) {
    let arg = argv[i]!;
    let value: string | undefined;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    if (eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (WITH_VALUE.has(arg)) {
      value ??= argv[++i];
      if (value === undefined) return null;
      if (arg === '-C' || arg === '--workspace') out.workspace = value;
      else if (arg === '--cache-dir') out.cacheDir = value;
      // -j, --gpus and --memory do not change what a no-op prints; malformed values go to the full CLI.
      else if (!/^[\w.,]+$/.test(value)) return null;
      else if (arg === '-j' || arg === '--jobs') out.jobs = /^[1-9]\d*$/.test(value) ? Number(value) : NaN;
      else out.limitFlags = true;
    } else if (BOOLEAN.has(arg) && value === undefined) {
      if (arg === '--json') out.json = true;
      else out.keepGoing = true;
    } else if (arg.startsWith('-')) {
      return null;
    } else {
      out.patterns.push(arg);
    }
  }
  return out;
}

function findRoot(start: string): string | null {
  let dir = path.resolve(start);
  for (;;) {
    if (fs.existsSync(path.join(dir, 'BUILD.yaml'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

/**
 * True when the build was a no-op and its result has been printed; the changed inputs when the incremental path
 * may take the build; false for the full CLI.
 */
export function runFastNoop(argv: string[]): boolean | IncrementalRequest {
  const started = process.hrtime.bigint();
  const parsed = parse(argv);
  if (!parsed || process.env['WG_NO_FAST_PATH']) return false;
  const root = findRoot(parsed.workspace ?? process.cwd());
  if (!root) return false;
  const cacheDir = cacheDirNamed(parsed.cacheDir);
  const args = { root, cacheDir, patterns: parsed.patterns.length > 0 ? parsed.patterns : ['//...'] };
  let check: ReturnType<typeof checkSnapshot>;
  try {
    check = checkSnapshot(args);
  } catch {
    // A snapshot of another shape (damaged, or written by hand): the full path answers, and writes a good one.
    return false;
  }
  if (!check) return false;
  if (check.kind === 'changed') {
    if (parsed.limitFlags || Number.isNaN(parsed.jobs) || process.env['WG_NO_INCREMENTAL']) return false;
    return { args, check, json: parsed.json, keepGoing: parsed.keepGoing, jobs: parsed.jobs, started };
  }
  const snapshot = check.snapshot;
  const json = parsed.json ? snapshotReport(args, snapshot) : null;
  if (parsed.json && json === null) return false;
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  writeStderr(snapshot.lines.map((l) => `${l.replace('{seconds}', (ms / 1000).toFixed(1))}\n`).join(''));
  if (parsed.json) {
    // `snapshot: true` tells scripts (and tests) that nothing was loaded because nothing changed.
    writeStdout(`${JSON.stringify({ ...(json as object), durationMs: Math.round(ms), snapshot: true }, null, 2)}\n`);
  }
  return true;
}
