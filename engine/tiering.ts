// How eagerly V8 optimizes wg's own code while a build runs its actions.
//
// V8 hands a function to TurboFan once it has run some 66 KB of bytecode since its last check (the "interrupt
// budget"). While actions run, the code per completed action (executor, target runner, msgpackr's encoders for the
// LMDB puts, the reporters) is lukewarm: each function runs once or twice per action. A cold 1000-action build
// compiled ~170 functions, ~100 of them after analysis, and TurboFan spent 1-1.5 s of CPU on them (perf: its
// threads were an eighth of the build's CPU, on a 2-core machine where every action competes for the cores). A
// budget four times larger leaves ~70 compiles and took ~15% off the build's CPU. Analysis is left with V8's
// default: its loops over 10,000 targets are hot, and running them unoptimized longer made a 10,000-target dry run
// ~25% slower.

import * as v8 from 'node:v8';

/** Node 20's default budget, in bytes of bytecode. */
const DEFAULT_INTERRUPT_BUDGET = 67_584;
const ACTION_PHASE_INTERRUPT_BUDGET = 4 * DEFAULT_INTERRUPT_BUDGET;

/** From now on, optimize only code that stays hot for longer (the rest of the process: the build's actions). */
export function optimizeOnlyHotCode(): void {
  // A budget of the user's own (node --interrupt-budget, NODE_OPTIONS) is theirs to keep, and put back below.
  if (`${process.execArgv.join(' ')} ${process.env['NODE_OPTIONS'] ?? ''}`.includes('interrupt-budget')) return;
  try {
    v8.setFlagsFromString(`--interrupt-budget=${ACTION_PHASE_INTERRUPT_BUDGET}`);
  } catch {
    return; // a V8 that does not take flags at run time: its default tiering
  }
  // V8 stamps a code cache with a hash of its flags and rejects one made under other flags: made with this budget,
  // bin/wg.cjs's cache of the CLI bundle (saved at beforeExit) was rejected, and written again, by every next run.
  // Put back before anything saves one.
  process.prependOnceListener('beforeExit', () => v8.setFlagsFromString(`--interrupt-budget=${DEFAULT_INTERRUPT_BUDGET}`));
}
