// Views of the build's event stream for people. The plain view (CI, pipes, files): one timestamped line per
// target event, stable enough to grep; the tail of a failed target's log with the path of the full log; and the
// closing summary with the critical path, which the terminal view (tty-reporter.ts) shares.

import * as path from 'node:path';
import type { BuildReport } from './build.js';
import type { CriticalStep } from './critical-path.js';
import { Timeline } from './critical-path.js';
import { unreachable, type BuildEvent } from './events.js';

/** What `wg build` talks to: both views take every event and close with the summary. */
export interface Reporter {
  onEvent(e: BuildEvent): void;
  /** Prints a line that is not an event (an interrupt notice) without disturbing the view. */
  note(line: string): void;
  summary(report: BuildReport, dryRun: boolean): void;
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** `[12:03:04]`, local time: CI logs are read next to other timestamped logs of the same machine. */
export function clock(d: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `[${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}]`;
}

/** A path as the user typed it from where wg was started, when it is below that folder. */
export function relativeTo(cwd: string, p: string): string {
  const r = path.relative(cwd, p);
  return r.startsWith('..') || path.isAbsolute(r) ? p : r;
}

/** The lines that tell of one event: the first line is the event itself, the rest its details (a log tail). */
export function eventLines(e: BuildEvent, cwd: string): string[] {
  switch (e.type) {
    case 'built':
      return [`built ${e.label} in ${seconds(e.durationMs)}`];
    case 'failed':
      // The build itself went fine; its log says nothing about why the result was discarded.
      if (e.reason === 'inputs-changed') return [`FAILED ${e.label}: ${e.message}`];
      return [
        // A timeout's message reads on from the label: `FAILED //pkg:t timed out after 2s (killed process group 12345)`.
        e.reason === 'timed-out' ? `FAILED ${e.label} ${e.message}` : `FAILED ${e.label}: ${e.message}`,
        ...e.logTail.map((l) => `  | ${l}`),
        `  full log: ${relativeTo(cwd, e.logPath)}`,
      ];
    case 'retrying':
      return [`retrying ${e.label} with MAX_JOBS=${e.toJobs} (was ${e.fromJobs}): ${e.message}`];
    case 'interrupted':
      return [`interrupted ${e.label}`];
    case 'skipped':
      return [`skipped ${e.label}: ${e.because}`];
    case 'warning':
      return [`warning: ${e.message}`];
    case 'plan':
      return [`wg: ${e.total} target${e.total === 1 ? '' : 's'}: ${e.cached} cached, ${e.toBuild} to build`];
    case 'started':
      return [`building ${e.label}${e.gpus.length > 0 ? ` on GPU ${e.gpus.join(',')}` : ''}`];
    case 'cached':
      return [];
    default:
      return unreachable(e);
  }
}

/** The closing lines: the dry run's list, the critical path of what was built, and the counts. */
export function summaryLines(report: BuildReport, dryRun: boolean, critical: CriticalStep[]): string[] {
  const lines: string[] = [];
  // Tallied once: a dry run of 10,000 targets asks for eight counts.
  const tally = new Map<string, number>();
  for (const t of report.targets) tally.set(t.status, (tally.get(t.status) ?? 0) + 1);
  const count = (s: string): number => (tally.get(s) ?? 0) + (s === 'cached' ? (report.unlisted ?? 0) : 0);
  if (dryRun) {
    for (const t of report.targets) {
      if (t.status === 'cached') lines.push(`cached      ${t.label}  ${t.key.slice(0, 12)}`);
      else lines.push(`would build ${t.label}  ${t.key.slice(0, 12)}  ${t.estimateMs == null ? '?' : `~${seconds(t.estimateMs)}`}`);
    }
    const known = report.targets.filter((t) => t.status === 'would-build' && t.estimateMs != null);
    const unknown = count('would-build') - known.length;
    if (count('would-build') > 0) {
      const total = known.reduce((sum, t) => sum + t.estimateMs!, 0);
      lines.push(
        `wg: estimated build time ${known.length > 0 ? `~${seconds(total)}` : '?'} of work` +
          (unknown > 0 ? ` (${unknown} target${unknown === 1 ? '' : 's'} never built before: ?)` : ''),
      );
    }
  }
  if (critical.length > 0) {
    const total = critical.reduce((sum, s) => sum + s.durationMs, 0);
    const width = Math.max(...critical.map((s) => seconds(s.durationMs).length));
    lines.push(`wg: critical path ${seconds(total)} (${critical.length} target${critical.length === 1 ? '' : 's'}):`);
    for (const s of critical) lines.push(`  ${seconds(s.durationMs).padStart(width)}  ${s.label}`);
  }
  const parts = [`${count('built')} built`, `${count('cached')} cached`, `${count('failed')} failed`, `${count('skipped')} skipped`];
  if (dryRun) parts.splice(0, 1, `${count('would-build')} would build`);
  if (count('interrupted') > 0) parts.push(`${count('interrupted')} interrupted`);
  lines.push(`wg: ${report.interrupted ? 'interrupted: ' : ''}${parts.join(', ')} in ${seconds(report.durationMs)}`);
  return lines;
}

/** The plain view: every target event on its own timestamped line; nothing is ever redrawn. */
export class LineReporter implements Reporter {
  private readonly timeline = new Timeline();

  constructor(
    private readonly write: (line: string) => void,
    private readonly cwd: string,
    /** For the step lines of targets, which may wait a moment to go out with the next (engine/stderr-lines.ts). */
    private readonly writeStep: (line: string) => void = write,
    private readonly now: () => Date = () => new Date(),
  ) {}

  readonly onEvent = (e: BuildEvent): void => {
    this.timeline.onEvent(e);
    const lines = eventLines(e, this.cwd);
    switch (e.type) {
      // The opening count and warnings are not steps of a target: they stay unstamped, like the summary.
      case 'plan':
      case 'warning':
      case 'cached':
        for (const l of lines) this.write(l);
        return;
      case 'started':
      case 'built':
      case 'failed':
      case 'retrying':
      case 'interrupted':
      case 'skipped': {
        const stamp = clock(this.now());
        lines.forEach((l, i) => this.writeStep(i === 0 ? `${stamp} ${l}` : l));
        return;
      }
      default:
        unreachable(e);
    }
  };

  note(line: string): void {
    this.write(line);
  }

  summary(report: BuildReport, dryRun: boolean): void {
    // One write: a dry run of 10,000 targets is 10,000 lines, and a write each cost ~50 ms.
    const lines = summaryLines(report, dryRun, dryRun ? [] : this.timeline.criticalPath());
    if (lines.length > 0) this.write(lines.join('\n'));
  }
}
