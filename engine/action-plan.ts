// How a configured target becomes its rule's action plan: the one call that both the full build and the
// incremental path make, so a target planned either way runs the same action.

import type { ActionPlan, Toolchain } from '../rules/rule.js';
import type { ConfiguredTarget } from './analyze.js';

export function planAction(target: ConfiguredTarget, hasSource: boolean, toolchain: Toolchain | null): ActionPlan {
  return target.rule.plan({
    label: target.label,
    package: target.package.name,
    variant: target.variant.name,
    attrs: target.package.attrs,
    test: target.package.test,
    hasSource,
    toolchain,
    systemSitePackages: target.systemSitePackages,
  });
}
