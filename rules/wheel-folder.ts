// The `wheel_folder` rule: a folder of wheels wg did not build (a vendor's torch, an internal package), offered to
// other targets as their outputs. With no package index reachable, this is how a prebuilt wheel becomes a build
// requirement or a dependency; the folder's content digest is the target's source identity, so it is in every key.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ActionContext, ActionOutput, Rule, TargetInfo } from './rule.js';

export const wheelFolderRule: Rule<Record<string, never>> = {
  kind: 'wheel_folder',
  version: 1,
  doc: 'Offers the *.whl files of its source folder as its outputs.',
  needsToolchain: false,
  attrs: {},

  plan(target: TargetInfo<Record<string, never>>) {
    return {
      mnemonic: 'Wheels',
      keyAttrs: {},
      async execute(ctx: ActionContext): Promise<ActionOutput[]> {
        if (!ctx.sourceDir) throw new Error(`${target.label}: wheel_folder needs a source folder`);
        const wheels = fs.readdirSync(ctx.sourceDir).filter((f) => f.endsWith('.whl')).sort();
        if (wheels.length === 0) throw new Error(`${target.label}: no *.whl file in the source folder`);
        for (const w of wheels) fs.copyFileSync(path.join(ctx.sourceDir, w), path.join(ctx.outDir, w));
        return wheels.map((w) => ({ path: w, kind: 'wheel' as const }));
      },
    };
  },
};
