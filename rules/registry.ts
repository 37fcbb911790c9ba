// The built-in rule kinds, by name. Plugins (a later addition) register theirs next to these.

import { commandRule } from './command.js';
import { pythonWheelRule } from './python-wheel.js';
import type { Rule } from './rule.js';

export function builtinRules(): Map<string, Rule> {
  return new Map<string, Rule>([
    [pythonWheelRule.kind, pythonWheelRule as unknown as Rule],
    [commandRule.kind, commandRule as unknown as Rule],
  ]);
}
