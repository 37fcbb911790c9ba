// Where the local cache lives by default. Its own module because the no-op fast path needs it before anything
// else of wg is loaded.

import * as os from 'node:os';
import * as path from 'node:path';

export function defaultCacheDir(): string {
  if (process.env['WG_CACHE_DIR']) return path.resolve(process.env['WG_CACHE_DIR']);
  const base = process.env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache');
  return path.join(base, 'wg');
}
