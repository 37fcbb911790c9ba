// The built-in rule kinds, by name. Plugins add theirs next to these (engine/plugins.ts).

import { commandRule } from './command.js';
import { pythonWheelRule } from './python-wheel.js';
import type { Rule } from './rule.js';
import { wheelFolderRule } from './wheel-folder.js';

export function builtinRules(): Map<string, Rule> {
  return new Map<string, Rule>([
    [pythonWheelRule.kind, pythonWheelRule as unknown as Rule],
    [commandRule.kind, commandRule as unknown as Rule],
    [wheelFolderRule.kind, wheelFolderRule as unknown as Rule],
  ]);
}
