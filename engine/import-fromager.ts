// `wg import fromager DIR`: turns a fromager settings folder (settings.yaml, settings/<pkg>.yaml, envs/, patches/,
// and the requirements.txt / constraints.txt next to them) into an equivalent BUILD.yaml. What has no equivalent
// (changelogs, pre_built, Python override plugins) is kept as a comment saying what to do instead.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { buildYamlText, ImportError, type ImportResult, type Notes } from './import-output.js';

/** fromager's canonical form for file names: lowercase, runs of `-_.` as `_` (flash-attn → flash_attn). */
export function fromagerName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '_');
}

interface Requirement {
  name: string;
  version: string | null;
  git: { url: string; ref: string } | null;
  line: string;
}

/** `name==1.0`, `name @ git+https://host/repo.git@ref` (comments, markers and options dropped). */
function parseRequirements(text: string, file: string): Requirement[] {
  const out: Requirement[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line || line.startsWith('-')) return;
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$/.exec(line.split(';')[0]!.trim());
    if (!m) throw new ImportError(`${file}:${i + 1}: cannot read requirement "${raw.trim()}"`);
    const rest = m[2]!.trim();
    const git = /^@\s*git\+(\S+?)(?:@([^@#\s]+))?(?:#.*)?$/.exec(rest);
    const pin = /^===?\s*([^\s,;]+)$/.exec(rest);
    out.push({ name: m[1]!, version: pin ? pin[1]! : null, git: git ? { url: git[1]!, ref: git[2] ?? 'HEAD' } : null, line });
  });
  return out;
}

type Settings = Record<string, unknown>;

function readYaml(file: string): Settings {
  let doc: unknown;
  try {
    doc = parseYaml(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ImportError(`${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ImportError(`${file}: expected a map of settings`);
  return doc as Settings;
}

const obj = (v: unknown): Settings => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Settings) : {});
const strList = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const envMap = (v: unknown): Record<string, string> => Object.fromEntries(Object.entries(obj(v)).map(([k, x]) => [k, String(x)]));

export interface FromagerOptions {
  /** The interpreter every variant builds with (fromager builds with the Python that runs it). */
  python: string;
  /** Where the BUILD.yaml goes: paths in it are written relative to this folder. */
  outDir: string;
}

/** The variant names a fromager tree uses: envs/<variant>/ folders and the packages' `variants:` keys. */
function variantNames(dir: string, packages: Map<string, Settings>): string[] {
  const names = new Set<string>();
  const envs = path.join(dir, 'envs');
  if (fs.existsSync(envs)) for (const e of fs.readdirSync(envs, { withFileTypes: true })) if (e.isDirectory()) names.add(e.name);
  for (const s of packages.values()) for (const v of Object.keys(obj(s['variants']))) names.add(v);
  if (names.size === 0) names.add('cpu');
  return [...names].sort();
}

export function importFromager(dir: string, options: FromagerOptions): ImportResult {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new ImportError(`${dir} is not a folder`);
  const warnings: string[] = [];
  const settings = new Map<string, Settings>();
  const globalFile = path.join(dir, 'settings.yaml');
  if (fs.existsSync(globalFile)) {
    const global = readYaml(globalFile);
    for (const [name, s] of Object.entries(obj(global['packages']))) settings.set(fromagerName(name), obj(s));
  }
  // Per-package files override the global file's entries, as in fromager.
  const perPackage = path.join(dir, 'settings');
  if (fs.existsSync(perPackage)) {
    for (const f of fs.readdirSync(perPackage).filter((f) => f.endsWith('.yaml')).sort()) {
      settings.set(fromagerName(f.slice(0, -'.yaml'.length)), readYaml(path.join(perPackage, f)));
    }
  }
  const reqs = new Map<string, Requirement>();
  for (const file of ['requirements.txt', 'constraints.txt']) {
    const p = path.join(dir, file);
    if (!fs.existsSync(p)) continue;
    for (const r of parseRequirements(fs.readFileSync(p, 'utf8'), file)) {
      const key = fromagerName(r.name);
      const prev = reqs.get(key);
      // A constraint pins what a requirement left open.
      reqs.set(key, { ...r, version: r.version ?? prev?.version ?? null, git: r.git ?? prev?.git ?? null });
    }
  }

  const variants = variantNames(dir, settings);
  const notes: Notes = new Map();
  const note = (p: (string | number)[], text: string): void => {
    const id = p.join('\u0000');
    notes.set(id, { path: p, lines: [...(notes.get(id)?.lines ?? []), text] });
  };
  const doc: Settings = {
    toolchains: { default: { python: options.python } },
    variants: Object.fromEntries(variants.map((v) => [v, { toolchain: 'default' }])),
    packages: {},
  };
  note(['toolchains'], "fromager builds with the Python that runs it: set the interpreter here (and cuda_home for CUDA variants)");
  const packages = doc['packages'] as Settings;
  for (const name of [...new Set([...settings.keys(), ...reqs.keys()])].sort()) {
    const s = settings.get(name) ?? {};
    const req = reqs.get(name) ?? null;
    const pkg: Settings = { rule: 'python_wheel' };
    const at = ['packages', name];
    const version = req?.version ?? null;
    const gitOptions = obj(s['git_options']);
    if (req?.git) {
      pkg['source'] = { git: req.git.url, ref: req.git.ref, ...(gitOptions['submodules'] === true ? { submodules: true } : {}) };
    } else if (version) {
      const dl = obj(s['download_source']);
      const index = (obj(s['resolver_dist'])['sdist_server_url'] as string | undefined) ?? 'https://pypi.org/simple';
      pkg['source'] = { index, name: req?.name ?? name, version };
      if (typeof dl['url'] === 'string') {
        const url = dl['url'].replaceAll('${version}', version).replaceAll('${canonicalized_name}', name);
        note(at, `fromager downloads ${url}; wg verifies every download, so to use it write source: {url: ${url}, sha256: <its sha256>}`);
      }
    } else {
      warnings.push(`package "${name}": no version pinned in requirements.txt or constraints.txt, so it has no source; add one to BUILD.yaml`);
      note(at, 'no pinned version or git URL was found: add a source (git + full commit sha, url + sha256, or index + version)');
    }
    if (version) pkg['version'] = version;
    if (typeof s['build_dir'] === 'string') pkg['build_dir'] = s['build_dir'];
    const env = envMap(s['env']);
    if (Object.keys(env).length > 0) pkg['env'] = env;
    const cs = obj(s['config_settings']);
    if (Object.keys(cs).length > 0) pkg['config_settings'] = Object.fromEntries(Object.entries(cs).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : String(v)]));
    const po = obj(s['project_override']);
    if (strList(po['remove_build_requires']).length > 0) pkg['remove_build_requires'] = strList(po['remove_build_requires']);
    if (strList(po['update_build_requires']).length > 0) pkg['replace_build_requires'] = strList(po['update_build_requires']);
    if (strList(po['requires_external']).length > 0) note(at, `requires_external (${strList(po['requires_external']).join(', ')}) has no wg equivalent`);
    const overrides: Settings = {};
    for (const [variant, raw] of Object.entries(obj(s['variants']))) {
      const v = obj(raw);
      const venv = envMap(v['env']);
      if (Object.keys(venv).length > 0) overrides[variant] = { env: venv };
      if (v['pre_built'] === true) {
        note(at, `variant ${variant}: pre_built wheels are not fetched by wg; put the wheel in a folder and declare a wheel_folder package for it`);
      }
    }
    if (Object.keys(overrides).length > 0) {
      // Every variant still builds the package; a variant without an override gets an empty one.
      pkg['variants'] = Object.fromEntries(variants.map((v) => [v, overrides[v] ?? {}]));
    }
    const bo = obj(s['build_options']);
    if (bo['exclusive_build'] === true || bo['cpu_cores_per_job'] !== undefined || bo['memory_per_job_gb'] !== undefined) {
      note(at, 'build_options: declare what one build needs with resources: {cpus: N, memory: 8G}; wg derives MAX_JOBS from cpus');
    }
    if (s['changelog'] !== undefined) note(at, 'changelog: not needed, wg rebuilds when any input changes');
    packages[name] = pkg;
  }
  const header = [
    `Imported by \`wg import fromager\` from ${dir}.`,
    'Env files (envs/<pkg>.env, envs/<variant>/<pkg>.env) and patches (patches/<pkg>[-<version>]/[<variant>/]*.patch)',
    'are read from the folder holding this file, in fromager\'s layout: keep envs/ and patches/ next to it.',
    "fromager passed its own environment to builds; wg passes only what is declared (add pass_env for the rest).",
  ];
  if (path.resolve(options.outDir) !== path.resolve(dir) && (fs.existsSync(path.join(dir, 'envs')) || fs.existsSync(path.join(dir, 'patches')))) {
    warnings.push(`envs/ and patches/ are in ${dir}: copy them next to the BUILD.yaml (or write it into ${dir})`);
  }
  return { text: buildYamlText(doc, header, notes), warnings };
}
