// The build's event stream: the terminal lines, the JSON document and the summary are all views of these events.

import type { Label } from './label.js';

/** Why a target did not produce a result. */
export type FailureReason = 'exit-non-zero' | 'killed' | 'patch-failed' | 'source-error' | 'missing-output' | 'setup-failed' | 'interrupted';

export type BuildEvent =
  | { type: 'plan'; total: number; toBuild: number; cached: number }
  | { type: 'cached'; label: Label; key: string }
  | { type: 'started'; label: Label; key: string; mnemonic: string; gpus: number[] }
  | { type: 'built'; label: Label; key: string; durationMs: number }
  | { type: 'failed'; label: Label; key: string; reason: FailureReason; message: string; logPath: string; logTail: string[] }
  | { type: 'skipped'; label: Label; key: string; because: string }
  | { type: 'warning'; message: string };

export type TargetStatus = 'built' | 'cached' | 'failed' | 'skipped';

export type Listener = (event: BuildEvent) => void;

export function unreachable(x: never): never {
  throw new Error(`unreachable: ${JSON.stringify(x)}`);
}
