// The build's event stream: the terminal lines, the JSON document and the summary are all views of these events.

import type { Label } from './label.js';

/** Why a target did not produce a result. */
export type FailureReason =
  | 'exit-non-zero'
  | 'killed'
  | 'patch-failed'
  | 'source-error'
  | 'missing-output'
  | 'setup-failed'
  | 'interrupted'
  /** Exit 137, SIGKILL not sent by wg, or a log saying `Killed` / `cicc died due to signal 9`. */
  | 'out-of-memory'
  /** The target's `timeout` passed; its process group was killed. */
  | 'timed-out'
  /** A source file or patch its key was read from changed while it ran: the result was discarded, not stored. */
  | 'inputs-changed';

export type BuildEvent =
  | { type: 'plan'; total: number; toBuild: number; cached: number }
  | { type: 'cached'; label: Label; key: string }
  | {
      type: 'started';
      label: Label;
      key: string;
      mnemonic: string;
      /** CPU slots and GPU devices granted. */
      cpus: number;
      gpus: number[];
      /** The target's direct dependencies (the summary's critical path follows them). */
      deps: Label[];
      /** The log being written; the terminal view shows its last line. */
      logPath: string;
    }
  | { type: 'built'; label: Label; key: string; durationMs: number }
  | { type: 'failed'; label: Label; key: string; reason: FailureReason; message: string; logPath: string; logTail: string[] }
  | { type: 'skipped'; label: Label; key: string; because: string }
  /** An out-of-memory failure, run again at once with MAX_JOBS lowered from `fromJobs` to `toJobs`. */
  | { type: 'retrying'; label: Label; key: string; reason: 'out-of-memory'; message: string; fromJobs: number; toJobs: number }
  /** A running target stopped by Ctrl-C or SIGTERM: its process groups were killed and nothing was stored. */
  | { type: 'interrupted'; label: Label; key: string }
  | { type: 'warning'; message: string };

export type TargetStatus = 'built' | 'cached' | 'failed' | 'skipped' | 'interrupted';

export type Listener = (event: BuildEvent) => void;

export function unreachable(x: never): never {
  throw new Error(`unreachable: ${JSON.stringify(x)}`);
}
