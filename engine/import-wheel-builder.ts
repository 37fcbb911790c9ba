// `wg import wheel-builder config.yaml`: turns a Docker-per-(python, cuda, torch) wheel builder's config (build_target
// with python/cuda/pytorch versions; projects with name, repo_url, repo_ref, build_command, dependencies) into an
// equivalent BUILD.yaml: one toolchain and variant for the build target, one python_wheel package per project.

import * as fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { buildYamlText, ImportError, type ImportResult, type Notes } from './import-output.js';

export interface WheelBuilderOptions {
  /** The interpreter of the build target; default `python<X.Y>` found on PATH. */
  python: string | null;
  /** A CUDA toolkit folder (holding bin/nvcc) for the toolchain; none by default. */
  cudaHome: string | null;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/;

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null;
}

/** `12.4` → `124`, `2.6.0` → `2.6`: the short forms variant names use. */
function short(version: string, parts: number): string {
  return version.split('.').slice(0, parts).join('.');
}

export function importWheelBuilder(file: string, options: WheelBuilderOptions): ImportResult {
  let config: unknown;
  try {
    config = parseYaml(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ImportError(`${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!config || typeof config !== 'object' || Array.isArray(config)) throw new ImportError(`${file}: expected a map with "build_target" and "projects"`);
  const c = config as Record<string, unknown>;
  const target = (c['build_target'] ?? {}) as Record<string, unknown>;
  // The builder's README spells them python_version/cuda_version/pytorch_version; short forms are accepted too.
  const python = str(target['python_version'] ?? target['python']);
  const cuda = str(target['cuda_version'] ?? target['cuda']);
  const torch = str(target['pytorch_version'] ?? target['pytorch']);
  if (!python) throw new ImportError(`${file}: build_target has no python_version`);
  if (!Array.isArray(c['projects']) || c['projects'].length === 0) throw new ImportError(`${file}: "projects" must be a non-empty list`);

  const warnings: string[] = [];
  const notes: Notes = new Map();
  const note = (p: (string | number)[], text: string): void => {
    const id = p.join('\u0000');
    notes.set(id, { path: p, lines: [...(notes.get(id)?.lines ?? []), text] });
  };
  const pyTag = `py${python.replace('.', '')}`;
  const variant = [pyTag, cuda ? `cu${short(cuda, 2).replace('.', '')}` : 'cpu', ...(torch ? [`torch${short(torch, 2)}`] : [])].join('-');
  const toolchain: Record<string, unknown> = { python: options.python ?? `python${short(python, 2)}` };
  if (options.cudaHome) toolchain['cuda_home'] = options.cudaHome;
  const env: Record<string, string> = {};
  if (cuda) env['CUDA_VERSION'] = cuda;
  if (torch) env['TORCH_VERSION'] = torch;
  const doc: Record<string, unknown> = {
    toolchains: { [pyTag]: toolchain },
    variants: {
      [variant]: { toolchain: pyTag, ...(Object.keys(env).length > 0 ? { env } : {}), system_site_packages: true },
    },
    packages: {},
  };
  note(['toolchains'], `The builder ran inside a pytorch image (python ${python}${cuda ? `, CUDA ${cuda}` : ''}${torch ? `, torch ${torch}` : ''}); here the toolchain is an interpreter with torch installed${options.cudaHome ? '' : ' (add cuda_home: for nvcc)'}.`);
  note(['variants', variant], 'torch comes from the toolchain (system_site_packages); wg probes its version, CUDA and C++ ABI into every key.');
  for (const key of ['apt_packages', 'pip_packages']) {
    const list = c[key];
    if (Array.isArray(list) && list.length > 0) note(['toolchains'], `${key} from the config (${list.join(', ')}): install them into the toolchain's environment.`);
  }

  const projects = c['projects'] as unknown[];
  const names = new Map<string, string>();
  projects.forEach((p, i) => {
    const name = str((p as Record<string, unknown> | null)?.['name']);
    if (!name) throw new ImportError(`${file}: projects[${i}] has no name`);
    // Package names are what deps refer to: the project name, made a valid wg name.
    names.set(name.toLowerCase(), name.replace(/[^A-Za-z0-9_.+-]+/g, '-').replace(/^[^A-Za-z0-9]+/, ''));
  });
  const packages = doc['packages'] as Record<string, unknown>;
  projects.forEach((raw, i) => {
    const p = raw as Record<string, unknown>;
    const name = names.get(str(p['name'])!.toLowerCase())!;
    if (!NAME.test(name)) throw new ImportError(`${file}: projects[${i}]: "${String(p['name'])}" cannot be made a package name`);
    const url = str(p['repo_url']);
    if (!url) throw new ImportError(`${file}: project "${name}" has no repo_url`);
    const pkg: Record<string, unknown> = { rule: 'python_wheel', source: { git: url, ref: str(p['repo_ref']) ?? 'HEAD' } };
    const at = ['packages', name];
    const command = str(p['build_command']);
    // The builder collected wheels from dist/; wg takes them from $WG_WHEEL_DIR.
    if (command) pkg['build'] = `(${command}) && mv dist/*.whl "$WG_WHEEL_DIR"/`;
    const deps: string[] = [];
    for (const d of Array.isArray(p['dependencies']) ? p['dependencies'] : []) {
      const dep = String(d);
      const depName = /^[A-Za-z0-9][A-Za-z0-9._-]*/.exec(dep)?.[0] ?? dep;
      const local = names.get(depName.toLowerCase());
      if (local && local !== name) deps.push(local);
      else note(at, `dependency ${dep} came from pip inside the image: install it into the toolchain (wg installs nothing from an index)`);
    }
    if (deps.length > 0) pkg['deps'] = deps;
    if (p['force_no_isolation'] !== undefined) note(at, 'force_no_isolation: wg always builds without build isolation');
    if (!str(p['repo_ref'])) warnings.push(`project "${name}" has no repo_ref: wg asks the remote for HEAD each build; pin a full commit sha`);
    packages[name] = pkg;
  });
  const header = [
    `Imported by \`wg import wheel-builder\` from ${file}.`,
    `Wheels land in wg-out/wheelhouse/${pyTag}/<cuXY>/<platform>/, like the builder's output/wheelhouse/py<VER>/cuda<VER>/<platform>/.`,
  ];
  return { text: buildYamlText(doc, header, notes), warnings };
}
