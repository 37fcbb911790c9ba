// Where the local cache lives by default. Its own module because the no-op fast path needs it before anything
// else of wg is loaded.

import * as os from 'node:os';
import * as path from 'node:path';

export function defaultCacheDir(): string {
  if (process.env['WG_CACHE_DIR']) return path.resolve(process.env['WG_CACHE_DIR']);
  const base = process.env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache');
  return path.join(base, 'wg');
}

/**
 * The cache a command line names with --cache-dir (the last one counts, as for the CLI), else the default: known
 * before the CLI parses anything.
 */
export function cacheDirOf(argv: string[]): string {
  let named = '';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') break;
    if (arg === '--cache-dir' && i + 1 < argv.length) named = argv[++i]!;
    else if (arg.startsWith('--cache-dir=')) named = arg.slice('--cache-dir='.length);
  }
  return cacheDirNamed(named);
}

/** The cache a `--cache-dir` value names; an empty one (or none) means the default, as it does to the CLI. */
export function cacheDirNamed(value: string | null | undefined): string {
  return value ? path.resolve(value) : defaultCacheDir();
}
