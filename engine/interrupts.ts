// Ctrl-C during a build: the first one stops running actions gracefully (their process groups get SIGTERM, then
// SIGKILL), the second kills everything at once and exits 130.

import { processGroups } from './process-group.js';
import type { Reporter } from './report.js';

export function onInterrupt(reporter: Reporter): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts === 1) {
      reporter.note('wg: interrupted; stopping running actions (press Ctrl-C again to force)');
      controller.abort();
    } else {
      // Forced: no grace period, but no survivors either (SIGKILL cannot be ignored); the ledger covers the rest.
      processGroups.killAllNow();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
