// Where the local cache lives by default. Its own module because the no-op fast path needs it before anything
// else of wg is loaded.

import * as os from 'node:os';
import * as path from 'node:path';

export function defaultCacheDir(): string {
  if (process.env['WG_CACHE_DIR']) return path.resolve(process.env['WG_CACHE_DIR']);
  const base = process.env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache');
  return path.join(base, 'wg');
}

/** The cache a command line names with --cache-dir, else the default: known before the CLI parses anything. */
export function cacheDirOf(argv: string[]): string {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') break;
    if (arg === '--cache-dir' && argv[i + 1] !== undefined) return path.resolve(argv[i + 1]!);
    if (arg.startsWith('--cache-dir=')) return path.resolve(arg.slice('--cache-dir='.length));
  }
  return defaultCacheDir();
}
