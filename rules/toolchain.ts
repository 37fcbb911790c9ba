// Toolchain probing: ask an interpreter (and an optional nvcc) what it is, once, and remember the answer until the
// interpreter or its installed packages change.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Toolchain, ToolchainFacts } from './rule.js';

export interface ToolchainDecl {
  name: string;
  python: string;
  cudaHome: string | null;
}

/** A small persistent key/value store (backed by LMDB elsewhere; a Map in tests). */
export interface ProbeCache {
  get(id: string): unknown;
  put(id: string, value: unknown): void;
}

export class ToolchainError extends Error {
  override name = 'ToolchainError';
}

/** A probed toolchain, plus what the caller may want to warn about. */
export interface ProbedToolchain extends Toolchain {
  /** Every path whose stat the probe cache trusts: a change to any of them means the facts may have changed. */
  watched: string[];
  /** Why `import torch` failed although torch is installed (`ImportError: libcudart.so.12: …`); else null. */
  torchError: string | null;
}

// Bump when the probe script or the cache entry shape changes, so stale entries are never read back.
const CACHE_VERSION = 1;

// Directory timestamps come from a coarse clock (a jiffy on Linux, 1-2 s on some file systems), so a change made
// within the same tick as the one before the probe leaves the stat unchanged. An entry whose watched paths changed
// this close to the probe is stored but not trusted: the next call probes again.
const RACY_WINDOW_MS = 2000;

const PROBE_TIMEOUT_MS = 300_000;
const NVCC_TIMEOUT_MS = 60_000;

// What the interpreter sees: no PYTHONPATH/PYTHONHOME or user site from the caller, so the facts are the
// toolchain's own. `-I` drops user site and PYTHON* variables but keeps site-packages (unlike `-S`); `-B` keeps
// the probe from writing bytecode, which could create `site-packages/__pycache__` and so change the very
// directory stats the cache is keyed on.
const PROBE_ENV: Record<string, string> = { PATH: '/usr/local/bin:/usr/bin:/bin' };
const PROBE_FLAGS = ['-I', '-B'];

// Runs under any CPython/PyPy >= 3.8; prints exactly one JSON object on the original stdout.
const PROBE_SCRIPT = String.raw`
import json, os, sys

# torch and friends may print at import time, even from C; keep the real stdout for the JSON alone.
_out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)

import importlib, importlib.util, platform, site, sysconfig
try:
    import importlib.metadata as _md
except ImportError:
    _md = None


def _norm(s):
    return s.replace("-", "_").replace(".", "_")


impl = sys.implementation.name
major, minor = sys.version_info[0], sys.version_info[1]
short = {"cpython": "cp", "pypy": "pp", "ironpython": "ip", "jython": "jy"}.get(impl, impl)
nodot = sysconfig.get_config_var("py_version_nodot") or "%d%d" % (major, minor)
tag = "%s%s" % (short, nodot)


def _abi():
    # Mirrors packaging.tags: cp311, cp313t, cp313td; other implementations take it from EXT_SUFFIX.
    if impl == "cpython":
        threading = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
        debug_var = sysconfig.get_config_var("Py_DEBUG")
        debug = "d" if debug_var or (debug_var is None and hasattr(sys, "gettotalrefcount")) else ""
        return "cp%d%d%s%s" % (major, minor, threading, debug)
    parts = (sysconfig.get_config_var("EXT_SUFFIX") or "").split(".")
    soabi = parts[1] if len(parts) >= 3 else ""
    if soabi.startswith("cpython"):
        return _norm("cp" + soabi.split("-")[1])
    if soabi.startswith("pypy"):
        return _norm("-".join(soabi.split("-")[:2]))
    if soabi.startswith("graalpy"):
        return _norm("-".join(soabi.split("-")[:3]))
    return _norm(soabi) if soabi else "none"


candidates = []
try:
    candidates.extend(site.getsitepackages())
except AttributeError:
    pass  # old virtualenv site.py
sc_paths = sysconfig.get_paths()
candidates.extend([sc_paths.get("purelib"), sc_paths.get("platlib")])
watch = []
for c in candidates:
    if c:
        c = os.path.abspath(c)
        if c not in watch:
            watch.append(c)
first_index = {}
for i, p in enumerate(sys.path):
    first_index.setdefault(os.path.abspath(p) if p else p, i)
site_dirs = sorted([c for c in watch if os.path.isdir(c)], key=lambda c: first_index.get(c, len(sys.path)))
if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
    watch.append(os.path.join(sys.prefix, "pyvenv.cfg"))


def _version(name):
    if _md is None:
        return None
    try:
        v = _md.version(name)
    except Exception:
        return None
    return v if isinstance(v, str) else None


def _module_path(name):
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return os.path.abspath(locations[0])
    if spec.origin and os.path.isfile(spec.origin):
        return os.path.abspath(spec.origin)
    return None


def _metadata_path(name):
    if _md is None:
        return None
    try:
        dist = _md.distribution(name)
    except Exception:
        return None
    p = getattr(dist, "_path", None)
    if p is not None and os.path.exists(str(p)):
        return os.path.abspath(str(p))
    return None


tool_paths = []
for module, dist_name in (("pip", "pip"), ("setuptools", "setuptools"), ("pkg_resources", None),
                          ("_distutils_hack", None), ("wheel", "wheel")):
    for p in (_module_path(module), _metadata_path(dist_name) if dist_name else None):
        if p and p not in tool_paths:
            tool_paths.append(p)
hack = _module_path("_distutils_hack")
if hack:
    # setuptools' own .pth installs the distutils shim at startup, as in a venv where setuptools is installed.
    pth = os.path.join(os.path.dirname(hack), "distutils-precedence.pth")
    if os.path.isfile(pth):
        tool_paths.append(pth)

torch_info = None
torch_error = None
try:
    has_torch = importlib.util.find_spec("torch") is not None
except Exception as e:
    has_torch = False
    torch_error = "%s: %s" % (type(e).__name__, e)
if has_torch:
    try:
        import torch
        version_mod = importlib.import_module("torch.version")
        c_mod = importlib.import_module("torch._C")
        cuda = getattr(version_mod, "cuda", None)
        abi_flag = getattr(c_mod, "_GLIBCXX_USE_CXX11_ABI", None)
        torch_info = {
            "version": str(torch.__version__),
            "cuda": None if cuda is None else str(cuda),
            "cxx11abi": None if abi_flag is None else bool(abi_flag),
        }
    except BaseException as e:
        torch_error = "%s: %s" % (type(e).__name__, e)

json.dump({
    "version": platform.python_version(),
    "implementation": impl,
    "tag": tag,
    "abi": _abi(),
    "platform": _norm(sysconfig.get_platform()),
    "executable": sys.executable or None,
    "siteDirs": site_dirs,
    "watch": watch,
    "buildTools": {"pip": _version("pip"), "setuptools": _version("setuptools"), "wheel": _version("wheel")},
    "buildToolPaths": tool_paths,
    "torch": torch_info,
    "torchError": torch_error,
}, _out)
_out.write("\n")
_out.flush()
`;

/** What the probe script prints. */
interface ProbeReport {
  version: string;
  implementation: string;
  tag: string;
  abi: string;
  platform: string;
  executable: string | null;
  siteDirs: string[];
  watch: string[];
  buildTools: ToolchainFacts['buildTools'];
  buildToolPaths: string[];
  torch: ToolchainFacts['torch'];
  torchError: string | null;
}

/** The cache entry: plain JSON so any store can keep it. */
interface CacheEntry {
  v: number;
  /** Stats of `[realpath(python), ...watch]`, one `path\tstat` line each. */
  fingerprint: string;
  /** Something watched changed too close to the probe to trust the stat; see RACY_WINDOW_MS. */
  racy: boolean;
  watch: string[];
  facts: ToolchainFacts;
  siteDirs: string[];
  seed: { id: string; links: string[] };
  torchError: string | null;
}

export async function probeToolchain(
  decl: ToolchainDecl,
  cache: ProbeCache,
  seedRoot: string,
): Promise<ProbedToolchain> {
  const fail = (what: string): ToolchainError => new ToolchainError(`toolchain "${decl.name}": ${what}`);

  if (!path.isAbsolute(decl.python)) throw fail(`python ${decl.python} is not an absolute path`);
  checkExecutable(decl.python, 'python', fail);
  const pythonReal = fs.realpathSync(decl.python);

  let nvcc: string | null = null;
  if (decl.cudaHome !== null) {
    nvcc = path.join(decl.cudaHome, 'bin', 'nvcc');
    if (statOrNull(nvcc) === null) throw fail(`no nvcc at ${nvcc}`);
    checkExecutable(nvcc, 'nvcc', fail);
  }

  const id = `probe:v${CACHE_VERSION}:${decl.python}:${decl.cudaHome ?? ''}`;
  const cached = asCacheEntry(cache.get(id));
  if (cached !== null && !cached.racy && fingerprint([pythonReal, ...cached.watch]).text === cached.fingerprint) {
    return toolchainFrom(decl, cached, seedRoot);
  }

  const started = Date.now();
  const [report, nvccVersion] = await Promise.all([
    runProbe(decl.python, fail),
    nvcc === null ? Promise.resolve(null) : runNvcc(nvcc, fail),
  ]);

  const watch: string[] = [];
  const addWatch = (p: string): void => {
    if (!watch.includes(p)) watch.push(p);
  };
  // A wrapper script or a venv symlink points elsewhere; the binary that actually runs is what changes on upgrade.
  if (report.executable !== null) {
    const exe = realpathOrNull(report.executable);
    if (exe !== null && exe !== pythonReal) addWatch(exe);
  }
  // Missing candidates are watched too: `pip install` into a not-yet-existing site dir creates it.
  for (const p of report.watch) addWatch(p);
  if (nvcc !== null) addWatch(nvcc);

  // Stat after the probe, and distrust anything changed since shortly before it started: a change that raced
  // the probe then costs one more probe instead of a wrong torch version in every key.
  const stamp = fingerprint([pythonReal, ...watch]);
  const racy = stamp.newestChangeMs >= started - RACY_WINDOW_MS;

  const facts: ToolchainFacts = {
    python: {
      version: report.version,
      implementation: report.implementation,
      tag: report.tag,
      abi: report.abi,
      platform: report.platform,
    },
    buildTools: report.buildTools,
    torch: report.torch,
    cuda: nvccVersion === null ? null : { nvcc: nvccVersion },
  };
  const seedId = createHash('sha256')
    .update(
      JSON.stringify({
        python: realpathOrNull(report.executable ?? decl.python) ?? pythonReal,
        versions: report.buildTools,
        links: report.buildToolPaths,
      }),
    )
    .digest('hex');
  const entry: CacheEntry = {
    v: CACHE_VERSION,
    fingerprint: stamp.text,
    racy,
    watch,
    facts,
    siteDirs: report.siteDirs,
    seed: { id: seedId, links: report.buildToolPaths },
    torchError: report.torchError,
  };
  cache.put(id, entry);
  return toolchainFrom(decl, entry, seedRoot);
}

function toolchainFrom(decl: ToolchainDecl, entry: CacheEntry, seedRoot: string): ProbedToolchain {
  return {
    name: decl.name,
    facts: entry.facts,
    paths: {
      python: decl.python,
      cudaHome: decl.cudaHome,
      siteDirs: [...entry.siteDirs],
      buildToolDirs: [ensureSeed(seedRoot, entry.seed.id, entry.seed.links)],
    },
    torchError: entry.torchError,
    watched: [decl.python, ...entry.watch],
  };
}

function checkExecutable(file: string, what: string, fail: (what: string) => ToolchainError): void {
  const st = statOrNull(file);
  if (st === null) throw fail(`${what} ${file} does not exist`);
  let executable = st.isFile();
  if (executable) {
    try {
      fs.accessSync(file, fs.constants.X_OK);
    } catch {
      executable = false;
    }
  }
  if (!executable) throw fail(`${what} ${file} is not executable`);
}

function statOrNull(file: string): fs.Stats | null {
  try {
    return fs.statSync(file, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}

function realpathOrNull(file: string): string | null {
  try {
    return fs.realpathSync(file);
  } catch {
    return null;
  }
}

/** Identity and change times of each path (following symlinks); never file contents, so it stays cheap. */
function fingerprint(paths: string[]): { text: string; newestChangeMs: number } {
  let newestChangeMs = -Infinity;
  const lines = paths.map((p) => {
    let state: string;
    try {
      const st = fs.statSync(p, { bigint: true, throwIfNoEntry: false });
      if (st === undefined) {
        state = 'absent';
      } else {
        state = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
        newestChangeMs = Math.max(newestChangeMs, Number(st.mtimeMs), Number(st.ctimeMs));
      }
    } catch (err) {
      state = `error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}`;
    }
    return `${p}\t${state}`;
  });
  return { text: lines.join('\n'), newestChangeMs };
}

interface ProcessResult {
  stdout: string;
  stderr: string;
  /** Null when the process ran and exited 0. */
  failure: string | null;
}

function run(file: string, args: string[], timeoutMs: number): Promise<ProcessResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        env: PROBE_ENV,
        cwd: '/',
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        let failure: string | null = null;
        if (error !== null) {
          const e = error as Error & { code?: unknown; signal?: unknown; killed?: boolean };
          if (e.killed === true && e.signal === 'SIGKILL') failure = `timed out after ${timeoutMs / 1000} s`;
          else if (typeof e.code === 'number') failure = `exited with status ${e.code}`;
          else if (typeof e.signal === 'string') failure = `was killed by ${e.signal}`;
          else failure = e.message;
        }
        resolve({ stdout, stderr, failure });
      },
    );
  });
}

function tail(text: string, lines = 20): string {
  const all = text.trimEnd().split('\n');
  const kept = all.slice(-lines).join('\n');
  return kept.length > 4000 ? kept.slice(-4000) : kept;
}

async function runProbe(python: string, fail: (what: string) => ToolchainError): Promise<ProbeReport> {
  const result = await run(python, [...PROBE_FLAGS, '-c', PROBE_SCRIPT], PROBE_TIMEOUT_MS);
  const stderrTail = tail(result.stderr);
  const withStderr = (what: string): ToolchainError => fail(stderrTail === '' ? what : `${what}:\n${stderrTail}`);
  if (result.failure !== null) throw withStderr(`probing ${python} failed: it ${result.failure}`);
  const lastLine = result.stdout.trimEnd().split('\n').pop() ?? '';
  let parsed: unknown;
  try {
    parsed = JSON.parse(lastLine);
  } catch {
    throw withStderr(`probing ${python} failed: it printed no probe result`);
  }
  const report = asProbeReport(parsed);
  if (report === null) throw withStderr(`probing ${python} failed: unexpected probe result ${lastLine.slice(0, 200)}`);
  return report;
}

async function runNvcc(nvcc: string, fail: (what: string) => ToolchainError): Promise<string> {
  const result = await run(nvcc, ['--version'], NVCC_TIMEOUT_MS);
  if (result.failure !== null) {
    const stderrTail = tail(result.stderr);
    throw fail(`${nvcc} --version ${result.failure}${stderrTail === '' ? '' : `:\n${stderrTail}`}`);
  }
  const version = parseNvccVersion(result.stdout);
  if (version === null) throw fail(`cannot find "release X.Y, VX.Y.Z" in the output of ${nvcc} --version`);
  return version;
}

/** `Cuda compilation tools, release 12.4, V12.4.131` → `12.4.131`. */
function parseNvccVersion(output: string): string | null {
  const match = /release\s+\d+\.\d+,\s*V(\d+\.\d+\.\d+)/.exec(output);
  return match?.[1] ?? null;
}

/**
 * The folder of links to the interpreter's own pip/setuptools/wheel, named by what it links to, so a build venv
 * made `--without-pip` can use them through one `site.addsitedir` line instead of installing them each time.
 */
function ensureSeed(seedRoot: string, id: string, links: string[]): string {
  const dir = path.join(seedRoot, id);
  if (statOrNull(dir)?.isDirectory() === true) return dir;
  fs.mkdirSync(seedRoot, { recursive: true });
  // Built aside and renamed in, so a reader never sees a half-made folder.
  const temp = fs.mkdtempSync(path.join(seedRoot, `.tmp-${id.slice(0, 16)}-`));
  try {
    // mkdtemp makes it private; the build venvs that read it are ordinary readers.
    fs.chmodSync(temp, 0o755);
    const names = new Set<string>();
    for (const target of links) {
      const name = path.basename(target);
      if (names.has(name)) continue;
      names.add(name);
      fs.symlinkSync(target, path.join(temp, name));
    }
    try {
      fs.renameSync(temp, dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Another process made the same folder first; its content is the same by construction.
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || statOrNull(dir)?.isDirectory() !== true) throw err;
    }
  } finally {
    fs.rmSync(temp, { recursive: true, force: true });
  }
  return dir;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isString(value: unknown): value is string {
  return typeof value === 'string';
}

function isStringOrNull(value: unknown): value is string | null {
  return value === null || typeof value === 'string';
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every(isString);
}

function asBuildTools(value: unknown): ToolchainFacts['buildTools'] | null {
  if (!isRecord(value)) return null;
  const { pip, setuptools, wheel } = value;
  if (!isStringOrNull(pip) || !isStringOrNull(setuptools) || !isStringOrNull(wheel)) return null;
  return { pip, setuptools, wheel };
}

function asTorch(value: unknown): ToolchainFacts['torch'] | undefined {
  if (value === null) return null;
  if (!isRecord(value)) return undefined;
  const { version, cuda, cxx11abi } = value;
  if (!isString(version) || !isStringOrNull(cuda) || !(cxx11abi === null || typeof cxx11abi === 'boolean')) {
    return undefined;
  }
  return { version, cuda, cxx11abi };
}

function asProbeReport(value: unknown): ProbeReport | null {
  if (!isRecord(value)) return null;
  const { version, implementation, tag, abi, platform, executable, siteDirs, watch, buildToolPaths, torchError } =
    value;
  const buildTools = asBuildTools(value['buildTools']);
  const torch = asTorch(value['torch']);
  if (
    !isString(version) ||
    !isString(implementation) ||
    !isString(tag) ||
    !isString(abi) ||
    !isString(platform) ||
    !isStringOrNull(executable) ||
    !isStringArray(siteDirs) ||
    !isStringArray(watch) ||
    !isStringArray(buildToolPaths) ||
    !isStringOrNull(torchError) ||
    buildTools === null ||
    torch === undefined
  ) {
    return null;
  }
  return {
    version,
    implementation,
    tag,
    abi,
    platform,
    executable,
    siteDirs,
    watch,
    buildTools,
    buildToolPaths,
    torch,
    torchError,
  };
}

// The store outlives this code, so anything read back is checked; a malformed entry is just a miss.
function asCacheEntry(value: unknown): CacheEntry | null {
  if (!isRecord(value) || value['v'] !== CACHE_VERSION) return null;
  const { fingerprint: stamp, racy, watch, facts, siteDirs, seed, torchError } = value;
  if (!isString(stamp) || typeof racy !== 'boolean' || !isStringArray(watch) || !isStringArray(siteDirs)) return null;
  if (!isStringOrNull(torchError) || !isRecord(seed) || !isString(seed['id']) || !isStringArray(seed['links'])) {
    return null;
  }
  if (!isRecord(facts) || !isRecord(facts['python'])) return null;
  const py = facts['python'];
  const buildTools = asBuildTools(facts['buildTools']);
  const torch = asTorch(facts['torch']);
  const cuda = facts['cuda'];
  const nvcc = isRecord(cuda) ? cuda['nvcc'] : undefined;
  if (
    !isString(py['version']) ||
    !isString(py['implementation']) ||
    !isString(py['tag']) ||
    !isString(py['abi']) ||
    !isString(py['platform']) ||
    buildTools === null ||
    torch === undefined ||
    !(cuda === null || isString(nvcc))
  ) {
    return null;
  }
  return {
    v: CACHE_VERSION,
    fingerprint: stamp,
    racy,
    watch,
    facts: {
      python: {
        version: py['version'],
        implementation: py['implementation'],
        tag: py['tag'],
        abi: py['abi'],
        platform: py['platform'],
      },
      buildTools,
      torch,
      cuda: isString(nvcc) ? { nvcc } : null,
    },
    siteDirs,
    seed: { id: seed['id'], links: seed['links'] },
    torchError,
  };
}
