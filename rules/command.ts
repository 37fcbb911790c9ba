// The `command` rule: one command with declared outputs, for non-wheel steps (code generation, data files) and
// for benchmarks. It runs in the (patched) source copy; the declared outputs are collected from there.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ActionContext, ActionOutput, Rule, TargetInfo } from './rule.js';

interface Attrs {
  cmd: string | string[];
  outs?: string[];
}

export const commandRule: Rule<Attrs> = {
  kind: 'command',
  // 2: $WG_DEP_FILES lists the outputs of direct deps only.
  version: 2,
  doc: 'Runs one command and stores its declared output files.',
  needsToolchain: false,
  deps: 'direct',
  attrs: {
    cmd: {
      schema: {
        type: 'union',
        doc: 'a command string or a list of arguments',
        options: [{ type: 'string' }, { type: 'list', of: { type: 'string' } }],
      },
      required: true,
      doc: 'the command; the output files of the targets in `deps` are listed in $WG_DEP_FILES (one path a line)',
    },
    outs: {
      schema: { type: 'list', of: { type: 'string', pattern: /^(?!\/)(?!.*(?:^|\/)\.\.(?:\/|$)).+$/, patternDoc: 'a relative path inside the work folder' } },
      doc: 'files the command leaves, relative to its work folder',
    },
  },

  fileOutputs: { attr: 'outs', paths: (attrs) => attrs.outs ?? [] },

  plan(target: TargetInfo<Attrs>) {
    const cmd = typeof target.attrs.cmd === 'string' ? ['sh', '-c', target.attrs.cmd] : target.attrs.cmd;
    const outs = target.attrs.outs ?? [];
    return {
      mnemonic: 'Command',
      keyAttrs: { cmd, outs },
      async execute(ctx: ActionContext): Promise<ActionOutput[]> {
        const cwd = ctx.sourceDir ?? path.join(ctx.sandbox, 'work');
        // A copied source made its folder; a recursive mkdir of it would cost a failed mkdir and a stat.
        if (ctx.sourceDir === null || !fs.existsSync(cwd)) fs.mkdirSync(cwd, { recursive: true });
        const depFiles = ctx.deps.flatMap((d) => [...d.files, ...d.wheels]).join('\n');
        await ctx.exec(cmd, { step: 'command', cwd, env: { WG_DEP_FILES: depFiles, WG_OUT_DIR: ctx.outDir } });
        for (const out of outs) {
          const from = path.join(cwd, out);
          const to = path.join(ctx.outDir, out);
          try {
            fs.renameSync(from, to);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
            // Missing, or its folder in out/ is not there yet (out/ itself only when the action removed it).
            if (!fs.existsSync(from)) throw new Error(`declared output ${out} was not produced`);
            fs.mkdirSync(path.dirname(to), { recursive: true });
            fs.renameSync(from, to);
          }
        }
        return outs.map((p) => ({ path: p, kind: 'file' as const }));
      },
    };
  },
};
