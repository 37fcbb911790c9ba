// The `python_wheel` rule: builds a wheel from a (patched) source tree in a fresh venv made from the toolchain's
// interpreter, with dependency wheels and build requirements installed, then optionally retags it with a local
// version and installs it into a clean venv to run the smoke test.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { overridePyproject, PyprojectError, requirementName, type BuildRequiresOverrides } from './pyproject-overrides.js';
import type { ActionContext, ActionOutput, AttrProblem, Rule, TargetInfo, Toolchain, ToolchainFacts } from './rule.js';
import { normalizeLocalVersion, retagWheel } from './wheel-retag.js';

interface Attrs {
  build?: string | string[];
  build_dir?: string;
  config_settings?: Record<string, string | string[]>;
  build_requires?: string[];
  remove_build_requires?: string[];
  replace_build_requires?: string[];
  auto_build_requires?: string[];
  local_version?: string;
}

/** pip settings that keep every install offline and free of per-user state. */
const PIP_ENV = { PIP_NO_INDEX: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_CACHE_DIR: '1', PIP_NO_INPUT: '1' };

function sitePackagesOf(venv: string, toolchain: Toolchain): string {
  const [major, minor] = toolchain.facts.python.version.split('.');
  const threaded = toolchain.facts.python.abi.endsWith('t') ? 't' : '';
  return path.join(venv, 'lib', `python${major}.${minor}${threaded}`, 'site-packages');
}

/**
 * Makes a venv without pip (seconds faster than ensurepip) and lets it see the toolchain's pip, setuptools and
 * wheel through a `.pth` file, plus the toolchain's own site-packages when asked (a venv made from a venv's
 * interpreter would otherwise see the base interpreter's packages, not the venv's torch).
 */
async function makeVenv(ctx: ActionContext, toolchain: Toolchain, venv: string, withSite: boolean): Promise<{ python: string; toolsPth: string }> {
  await ctx.exec([toolchain.paths.python, '-m', 'venv', '--without-pip', venv], { step: 'create venv', cwd: ctx.sandbox });
  const site = sitePackagesOf(venv, toolchain);
  const line = (dir: string): string => `import site; site.addsitedir(${JSON.stringify(dir)})\n`;
  const toolsPth = path.join(site, '_wg_build_tools.pth');
  fs.writeFileSync(toolsPth, toolchain.paths.buildToolDirs.map(line).join(''));
  if (withSite) fs.writeFileSync(path.join(site, '_wg_toolchain_site.pth'), toolchain.paths.siteDirs.map(line).join(''));
  return { python: path.join(venv, 'bin', 'python'), toolsPth };
}

function venvEnv(ctx: ActionContext, venv: string): Record<string, string> {
  return { ...PIP_ENV, VIRTUAL_ENV: venv, PATH: `${path.join(venv, 'bin')}:${ctx.env['PATH'] ?? ''}` };
}

async function installWheels(ctx: ActionContext, python: string, venv: string, wheels: string[], step: string): Promise<void> {
  if (wheels.length === 0) return;
  await ctx.exec([python, '-m', 'pip', 'install', '--no-index', '--no-deps', ...wheels], {
    step,
    cwd: ctx.sandbox,
    env: venvEnv(ctx, venv),
  });
}

/** The placeholders a `local_version` template may use, with how each is spelled in the result. */
export const LOCAL_VERSION_PLACEHOLDERS: Record<string, string> = {
  python: 'the Python version without the dot: 311',
  cuda: "the CUDA version without the dot: 124 (nvcc's, else torch's CUDA)",
  cuda_major: 'the CUDA major version: 12',
  torch: 'torch major.minor: 2.4',
  torch_full: 'the full torch version without its local part: 2.4.0',
  cxx11abi: "torch's C++11 ABI flag: TRUE or FALSE",
  variant: 'the variant name',
};

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** What each placeholder stands for in this target, or why it cannot be filled. */
function placeholderValue(name: string, facts: ToolchainFacts | null, variant: string, toolchain: string): string | { error: string } {
  const noTorch = { error: `{${name}} needs torch, but toolchain "${toolchain}" has none (import torch fails)` };
  const cuda = facts?.cuda?.nvcc ?? facts?.torch?.cuda ?? null;
  const [major, minor] = (cuda ?? '').split('.');
  switch (name) {
    case 'python':
      return facts ? facts.python.version.split('.').slice(0, 2).join('') : { error: '{python} needs a toolchain' };
    case 'cuda':
      return cuda ? `${major}${minor ?? '0'}` : { error: `{cuda} needs CUDA, but toolchain "${toolchain}" has neither an nvcc nor a CUDA torch` };
    case 'cuda_major':
      return cuda ? major! : { error: `{cuda_major} needs CUDA, but toolchain "${toolchain}" has neither an nvcc nor a CUDA torch` };
    case 'torch':
      return facts?.torch ? facts.torch.version.split('+')[0]!.split('.').slice(0, 2).join('.') : noTorch;
    case 'torch_full':
      return facts?.torch ? facts.torch.version.split('+')[0]! : noTorch;
    case 'cxx11abi':
      if (!facts?.torch) return noTorch;
      return facts.torch.cxx11abi === null ? { error: `{cxx11abi}: torch in toolchain "${toolchain}" does not say its C++ ABI` } : facts.torch.cxx11abi ? 'TRUE' : 'FALSE';
    case 'variant':
      return variant;
    default:
      return { error: `unknown placeholder {${name}}` };
  }
}

/** Renders a local_version template; the result is normalized (`+cu124torch2.4`, lowercase, without the `+`). */
export function renderLocalVersion(template: string, facts: ToolchainFacts | null, variant: string, toolchain: string): { ok: true; value: string } | { ok: false; error: string } {
  const errors: string[] = [];
  const text = template.replace(PLACEHOLDER, (_, name: string) => {
    const v = placeholderValue(name, facts, variant, toolchain);
    if (typeof v === 'string') return v;
    errors.push(v.error);
    return '';
  });
  if (errors.length > 0) return { ok: false, error: `local_version "${template}": ${errors.join('; ')}` };
  const normalized = normalizeLocalVersion(text);
  return normalized.ok ? normalized : { ok: false, error: `local_version "${template}" gives "${text}", which ${normalized.error}` };
}

/** Whether a dotted version is at least major.minor. */
function atLeast(version: string | null, [major, minor]: [number, number]): boolean {
  const [a = 0, b = 0] = (version ?? '0').split('.').map((x) => parseInt(x, 10));
  return a > major || (a === major && b >= minor);
}

/** `pkg`, `//pkg` or `//pkg:variant` as the label the engine resolves it to in `variant`. */
function refLabel(ref: string, variant: string): string {
  const body = ref.startsWith('//') ? ref.slice(2) : ref;
  return body.includes(':') ? `//${body}` : `//${body}:${variant}`;
}

// Runs in the build venv: which `[build-system].requires` entries (markers evaluated) are not installed there. With
// --no-build-isolation pip checks none of them, and a missing one shows up as an obscure backend import error.
const CHECK_REQUIRES = String.raw`
import json, sys
from importlib import metadata
try:
    import tomllib
except ImportError:
    from pip._vendor import tomli as tomllib
from pip._vendor.packaging.requirements import Requirement
try:
    with open(sys.argv[1], "rb") as f:
        data = tomllib.load(f)
except FileNotFoundError:
    data = {}
missing = []
for text in data.get("build-system", {}).get("requires", []):
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        found = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        missing.append("%s (not installed)" % text)
        continue
    if req.specifier and not req.specifier.contains(found, prereleases=True):
        missing.append("%s (found %s %s)" % (text, req.name, found))
with open(sys.argv[2], "w") as f:
    json.dump(missing, f)
`;

const requirementList = (doc: string): { schema: { type: 'list'; of: { type: 'string' } }; doc: string } => ({ schema: { type: 'list', of: { type: 'string' } }, doc });

export const pythonWheelRule: Rule<Attrs> = {
  kind: 'python_wheel',
  // 2: build requirements are checked before the build; local_version retags.
  version: 2,
  doc: 'Builds a Python wheel with pip (PEP 517, no build isolation) or a custom command, and smoke-tests it.',
  needsToolchain: true,
  attrs: {
    build: {
      schema: {
        type: 'union',
        doc: 'a command string or a list of arguments',
        options: [{ type: 'string' }, { type: 'list', of: { type: 'string' } }],
      },
      doc: 'custom build command run in the source folder; it must leave wheels in $WG_WHEEL_DIR',
    },
    build_dir: { schema: { type: 'string' }, doc: 'the folder inside the source that holds the Python project' },
    config_settings: {
      schema: {
        type: 'dict',
        values: { type: 'union', doc: 'a string or a list of strings', options: [{ type: 'scalar' }, { type: 'list', of: { type: 'scalar' } }] },
      },
      doc: 'PEP 517 config settings, passed to pip wheel as --config-settings KEY=VALUE (a list repeats the key)',
    },
    build_requires: {
      ...requirementList('packages (or labels) whose wheels are installed into the build venv only: wheels wg builds, or a wheel_folder package'),
      refs: true,
    },
    remove_build_requires: requirementList('project names removed from [build-system].requires of the sandboxed pyproject.toml'),
    replace_build_requires: requirementList('requirements that replace every [build-system].requires entry of the same name (added if none)'),
    auto_build_requires: requirementList('requirements added to [build-system].requires when no entry of the same name is there'),
    local_version: {
      schema: { type: 'string' },
      doc: `a local version template that retags the wheel, e.g. "cu{cuda}torch{torch}"; placeholders: ${Object.keys(LOCAL_VERSION_PLACEHOLDERS).map((p) => `{${p}}`).join(', ')}`,
    },
  },

  check(attrs: Attrs): AttrProblem[] {
    const problems: AttrProblem[] = [];
    if (attrs.build !== undefined && attrs.config_settings !== undefined) {
      problems.push({ attr: 'config_settings', message: 'config_settings are passed to pip wheel, so they cannot go with a custom "build" command (pass them in the command)' });
    }
    for (const attr of ['replace_build_requires', 'auto_build_requires'] as const) {
      (attrs[attr] ?? []).forEach((req, i) => {
        try {
          requirementName(req);
        } catch (e) {
          problems.push({ attr, path: [i], message: (e as Error).message });
        }
      });
    }
    if (attrs.local_version !== undefined) {
      const t = attrs.local_version;
      const unknown = [...t.matchAll(PLACEHOLDER)].map((m) => m[1]!).filter((n) => !Object.hasOwn(LOCAL_VERSION_PLACEHOLDERS, n));
      if (unknown.length > 0) {
        problems.push({
          attr: 'local_version',
          message: `unknown placeholder${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `{${n}}`).join(', ')} in local_version; known: ${Object.keys(LOCAL_VERSION_PLACEHOLDERS).map((n) => `{${n}}`).join(', ')}`,
        });
      } else {
        const sample = normalizeLocalVersion(t.replace(PLACEHOLDER, '0'));
        if (!sample.ok) problems.push({ attr: 'local_version', message: `local_version "${t}" ${sample.error}` });
      }
    }
    return problems;
  },

  plan(target: TargetInfo<Attrs>) {
    const a = target.attrs;
    const build = a.build === undefined ? null : typeof a.build === 'string' ? ['sh', '-c', a.build] : a.build;
    const buildDir = a.build_dir ?? '.';
    const configSettings = Object.entries(a.config_settings ?? {}).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => `${k}=${x}`));
    const overrides: BuildRequiresOverrides = { remove: a.remove_build_requires ?? [], replace: a.replace_build_requires ?? [], auto: a.auto_build_requires ?? [] };
    const hasOverrides = overrides.remove.length + overrides.replace.length + overrides.auto.length > 0;
    const buildOnly = new Set((a.build_requires ?? []).map((r) => refLabel(r, target.variant)));
    const localTemplate = a.local_version ?? null;
    return {
      mnemonic: 'PyWheel',
      // Build requirements are in the record through their dependency keys; here only what the rule does with them.
      keyAttrs: {
        build,
        buildDir,
        test: target.test,
        ...(configSettings.length > 0 ? { configSettings } : {}),
        ...(buildOnly.size > 0 ? { buildRequires: [...buildOnly].sort() } : {}),
        ...(hasOverrides ? { pyprojectOverrides: overrides } : {}),
        // The variant's name is not in the record, so a template that spells it carries it in.
        ...(localTemplate !== null ? { localVersion: localTemplate, ...(localTemplate.includes('{variant}') ? { variant: target.variant } : {}) } : {}),
      },
      async execute(ctx: ActionContext): Promise<ActionOutput[]> {
        const toolchain = ctx.toolchain;
        if (!toolchain) throw new Error(`${target.label}: python_wheel needs a toolchain`);
        if (!ctx.sourceDir) throw new Error(`${target.label}: python_wheel needs a source`);
        const projectDir = path.resolve(ctx.sourceDir, buildDir);
        if (projectDir !== ctx.sourceDir && !projectDir.startsWith(ctx.sourceDir + path.sep)) throw new Error(`${target.label}: build_dir leaves the source tree`);
        // Rendered before anything runs: a template the toolchain cannot fill fails in a second, not after the build.
        const local = localTemplate === null ? null : renderLocalVersion(localTemplate, toolchain.facts, target.variant, toolchain.name);
        if (local && !local.ok) throw new Error(`${target.label}: ${local.error}`);
        const listed = Object.entries(a.config_settings ?? {}).filter(([, v]) => Array.isArray(v)).map(([k]) => k);
        if (listed.length > 0 && !atLeast(toolchain.facts.buildTools.pip, [23, 1])) {
          // Older pips keep only the last value of a repeated key: the build would silently get less than declared.
          throw new Error(`${target.label}: config_settings ${listed.join(', ')} ${listed.length > 1 ? 'have' : 'has'} several values, which needs pip 23.1 or later; toolchain "${toolchain.name}" has pip ${toolchain.facts.buildTools.pip ?? '(none)'}`);
        }
        const depWheels = ctx.deps.flatMap((d) => d.wheels);
        const runtimeWheels = ctx.deps.filter((d) => !buildOnly.has(d.label)).flatMap((d) => d.wheels);

        if (hasOverrides) {
          const file = path.join(projectDir, 'pyproject.toml');
          const before = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
          try {
            const after = overridePyproject(before, overrides);
            if (after !== before) {
              fs.writeFileSync(file, after);
              ctx.log(`# pyproject.toml [build-system].requires overridden:\n${after}`);
            }
          } catch (e) {
            if (e instanceof PyprojectError) throw new Error(`${target.label}: ${e.message}`);
            throw e;
          }
        }

        const buildVenv = path.join(ctx.sandbox, 'venv');
        const b = await makeVenv(ctx, toolchain, buildVenv, target.systemSitePackages);
        await installWheels(ctx, b.python, buildVenv, depWheels, 'install dependency wheels');
        const rawDir = path.join(ctx.sandbox, 'built');
        fs.mkdirSync(rawDir);
        if (!build) {
          const report = path.join(ctx.sandbox, 'missing-build-requires.json');
          const script = path.join(ctx.sandbox, 'check_build_requires.py');
          fs.writeFileSync(script, CHECK_REQUIRES);
          await ctx.exec([b.python, script, path.join(projectDir, 'pyproject.toml'), report], {
            step: 'check build requirements',
            cwd: projectDir,
            env: venvEnv(ctx, buildVenv),
          });
          const missing = JSON.parse(fs.readFileSync(report, 'utf8')) as string[];
          if (missing.length > 0) {
            throw new Error(
              `${target.label}: build requirements not in the build venv: ${missing.join(', ')}; ` +
                'add their wheels with build_requires, or change them with remove_build_requires / replace_build_requires',
            );
          }
        }
        const settings = configSettings.flatMap((s) => ['--config-settings', s]);
        const argv = build ?? [b.python, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', ...settings, '-w', rawDir, '.'];
        await ctx.exec(argv, { step: 'build', cwd: projectDir, env: { ...venvEnv(ctx, buildVenv), WG_WHEEL_DIR: rawDir } });
        const built = fs.readdirSync(rawDir).filter((f) => f.endsWith('.whl')).sort();
        if (built.length === 0) throw new Error(`${target.label}: the build produced no wheel`);
        const wheels: string[] = [];
        for (const w of built) {
          if (local) {
            const dest = await retagWheel(path.join(rawDir, w), local.value, ctx.outDir);
            ctx.log(`# retagged ${w} -> ${path.basename(dest)}`);
            wheels.push(path.basename(dest));
          } else {
            fs.renameSync(path.join(rawDir, w), path.join(ctx.outDir, w));
            wheels.push(w);
          }
        }

        if (target.test) {
          const testVenv = path.join(ctx.sandbox, 'test-venv');
          const t = await makeVenv(ctx, toolchain, testVenv, target.systemSitePackages);
          // Build requirements are not run-time dependencies: the smoke test sees only `deps` and the wheel.
          await installWheels(ctx, t.python, testVenv, [...runtimeWheels, ...wheels.map((w) => path.join(ctx.outDir, w))], 'install for smoke test');
          // The smoke test runs where only the installed wheels are importable: no pip, no source tree.
          fs.rmSync(t.toolsPth);
          const cwd = path.join(ctx.sandbox, 'smoke');
          fs.mkdirSync(cwd);
          await ctx.exec(target.test, { step: 'smoke test', cwd, env: venvEnv(ctx, testVenv) });
        }
        return wheels.map((w) => ({ path: w, kind: 'wheel' as const }));
      },
    };
  },
};
