// Views of the build's event stream for people: one plain line per event (stable in CI logs), the tail of a failed
// target's log with the path of the full log, and the closing summary.

import * as path from 'node:path';
import type { BuildReport } from './build.js';
import { unreachable, type BuildEvent } from './events.js';

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

export class LineReporter {
  private done = 0;
  private toBuild = 0;

  constructor(
    private readonly write: (line: string) => void,
    private readonly cwd: string,
  ) {}

  private rel(p: string): string {
    const r = path.relative(this.cwd, p);
    return r.startsWith('..') ? p : r;
  }

  readonly onEvent = (e: BuildEvent): void => {
    switch (e.type) {
      case 'plan':
        this.toBuild = e.toBuild;
        this.write(`wg: ${e.total} target${e.total === 1 ? '' : 's'}: ${e.cached} cached, ${e.toBuild} to build`);
        return;
      case 'cached':
        return;
      case 'started':
        this.write(`[${this.done}/${this.toBuild}] building ${e.label}${e.gpus.length > 0 ? ` on GPU ${e.gpus.join(',')}` : ''}`);
        return;
      case 'built':
        this.done++;
        this.write(`[${this.done}/${this.toBuild}] built ${e.label} in ${seconds(e.durationMs)}`);
        return;
      case 'failed':
        this.done++;
        this.write(`FAILED ${e.label}: ${e.message}`);
        for (const line of e.logTail) this.write(`  | ${line}`);
        this.write(`  full log: ${this.rel(e.logPath)}`);
        return;
      case 'skipped':
        this.write(`skipped ${e.label}: ${e.because}`);
        return;
      case 'warning':
        this.write(`warning: ${e.message}`);
        return;
      default:
        unreachable(e);
    }
  };

  summary(report: BuildReport, dryRun: boolean): void {
    const count = (s: string): number => report.targets.filter((t) => t.status === s).length;
    if (dryRun) {
      for (const t of report.targets) this.write(`${t.status === 'cached' ? 'cached     ' : 'would build'} ${t.label}  ${t.key.slice(0, 12)}`);
    }
    const parts = [`${count('built')} built`, `${count('cached')} cached`, `${count('failed')} failed`, `${count('skipped')} skipped`];
    if (dryRun) parts.splice(0, 1, `${count('would-build')} would build`);
    this.write(`wg: ${report.interrupted ? 'interrupted: ' : ''}${parts.join(', ')} in ${seconds(report.durationMs)}`);
  }
}
