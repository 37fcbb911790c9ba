// Loads a CommonJS bundle through V8's code cache, kept in wg's cache folder: compiling the incremental path's
// half-megabyte bundle (lmdb and msgpackr included) cost an edit loop ~10 ms on every run, the CLI's bundle several
// times that, and with the cache V8 deserializes the functions the last run compiled instead. Node 20 has no
// module.enableCompileCache (22.1+), hence vm.Script's cachedData. The cache is tied to the bundle's size, mtime and inode and to the Node version;
// V8 checks its own version and flags and rejects what does not fit, and a rejected cache is written anew.
//
// It is part of the no-op answer's bundle (scripts/bundle.mjs), which must not load node:vm: vm and module are
// taken when a bundle is loaded. A module of its own, it cost every edit ~1 ms to resolve, read and compile.

import { isAscii } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface CachedModule {
  exports: unknown;
  /** V8 took the compiled code from the cache. */
  fromCache: boolean;
  /** Writes the code cache if it was missing or rejected; after a run, so it holds what that run compiled. */
  save(): void;
}

/** How scripts/bundle.mjs starts a bundle: Module.wrap's opening. */
const WRAPPER = '(function (exports, require, module, __filename, __dirname) {';

function stampOf(file: string): string {
  const st = fs.statSync(file, { bigint: true });
  return `${st.size}:${st.mtimeNs}:${st.ino}:${process.version}`;
}

/** The cache's bytes when its stamp matches the bundle's, else undefined. Layout: stamp length (u16), stamp, data. */
function readCache(cacheFile: string, stamp: string): Buffer | undefined {
  try {
    const bytes = fs.readFileSync(cacheFile);
    const n = bytes.readUInt16LE(0);
    return bytes.toString('latin1', 2, 2 + n) === stamp ? bytes.subarray(2 + n) : undefined;
  } catch {
    return undefined;
  }
}

export function requireCached(file: string, cacheDir: string): CachedModule {
  const stamp = stampOf(file);
  const cacheFile = path.join(cacheDir, 'code', `${path.basename(file)}.v8`);
  const cachedData = readCache(cacheFile, stamp);
  // The bundle is already the function Module.wrap would make of it (scripts/bundle.mjs): its text is compiled as
  // it is read, with no second copy. Anything else would run in the global scope, so it is refused unrun.
  const notABundle = (): Error => new Error(`${file} is not a bundle written by scripts/bundle.mjs (not a wrapped function)`);
  // scripts/bundle.mjs writes the bundles in ASCII: decoded as latin1, a copy; as UTF-8, ~2 ms of an edit's build.
  const bytes = fs.readFileSync(file);
  const text = isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8');
  if (!text.startsWith(WRAPPER)) throw notABundle();
  const { Script } = process.getBuiltinModule('node:vm');
  const script = new Script(text, { filename: file, cachedData });
  const wrapped = script.runInThisContext() as unknown;
  if (typeof wrapped !== 'function') throw notABundle();
  const module = { exports: {} as unknown };
  (wrapped as (...args: unknown[]) => void)(module.exports, process.getBuiltinModule('node:module').createRequire(file), module, file, path.dirname(file));
  const fromCache = cachedData !== undefined && script.cachedDataRejected !== true;
  return {
    exports: module.exports,
    fromCache,
    save: () => {
      if (fromCache) return;
      try {
        const data = script.createCachedData();
        const header = Buffer.alloc(2);
        header.writeUInt16LE(Buffer.byteLength(stamp, 'latin1'));
        fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
        const tmp = `${cacheFile}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, Buffer.concat([header, Buffer.from(stamp, 'latin1'), data]));
        fs.renameSync(tmp, cacheFile);
      } catch {
        // A cache that cannot be written costs the next run its compile time, nothing else.
      }
    },
  };
}
