// The `python_wheel` rule: builds a wheel from a (patched) source tree in a fresh venv made from the toolchain's
// interpreter, with dependency wheels installed, then installs it into a clean venv and runs the smoke test.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ActionContext, ActionOutput, Rule, TargetInfo, Toolchain } from './rule.js';

interface Attrs {
  build?: string | string[];
  build_dir?: string;
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

export const pythonWheelRule: Rule<Attrs> = {
  kind: 'python_wheel',
  version: 1,
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
  },

  plan(target: TargetInfo<Attrs>) {
    const build = target.attrs.build === undefined ? null : typeof target.attrs.build === 'string' ? ['sh', '-c', target.attrs.build] : target.attrs.build;
    const buildDir = target.attrs.build_dir ?? '.';
    return {
      mnemonic: 'PyWheel',
      keyAttrs: { build, buildDir, test: target.test },
      async execute(ctx: ActionContext): Promise<ActionOutput[]> {
        const toolchain = ctx.toolchain;
        if (!toolchain) throw new Error(`${target.label}: python_wheel needs a toolchain`);
        if (!ctx.sourceDir) throw new Error(`${target.label}: python_wheel needs a source`);
        const projectDir = path.resolve(ctx.sourceDir, buildDir);
        if (!projectDir.startsWith(ctx.sourceDir)) throw new Error(`${target.label}: build_dir leaves the source tree`);
        const depWheels = ctx.deps.flatMap((d) => d.wheels);

        const buildVenv = path.join(ctx.sandbox, 'venv');
        const b = await makeVenv(ctx, toolchain, buildVenv, target.systemSitePackages);
        await installWheels(ctx, b.python, buildVenv, depWheels, 'install dependency wheels');
        const argv = build ?? [b.python, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-w', ctx.outDir, '.'];
        await ctx.exec(argv, { step: 'build', cwd: projectDir, env: { ...venvEnv(ctx, buildVenv), WG_WHEEL_DIR: ctx.outDir } });
        const wheels = fs.readdirSync(ctx.outDir).filter((f) => f.endsWith('.whl')).sort();
        if (wheels.length === 0) throw new Error(`${target.label}: the build produced no wheel`);

        if (target.test) {
          const testVenv = path.join(ctx.sandbox, 'test-venv');
          const t = await makeVenv(ctx, toolchain, testVenv, target.systemSitePackages);
          await installWheels(ctx, t.python, testVenv, [...depWheels, ...wheels.map((w) => path.join(ctx.outDir, w))], 'install for smoke test');
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
