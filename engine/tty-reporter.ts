// The terminal view of the event stream: one live status block at the bottom of the screen (done/total, cached,
// each running action with its elapsed time and the last line of its log), redrawn in place, with finished
// targets scrolling above it. Used when stderr is a terminal and CI is not set.
//
// The last log line is read from the end of the log file at each redraw rather than sent as events: build output
// goes from the child straight into the log file descriptor, never through wg, so a tail read costs a few small
// reads per redraw (at most REDRAW_MS apart, only while a terminal watches) whatever the build prints, while
// progress events would mean piping every byte of a chatty nvcc build through Node.

import * as fs from 'node:fs';
import type { BuildReport } from './build.js';
import { Timeline } from './critical-path.js';
import { unreachable, type BuildEvent } from './events.js';
import type { Label } from './label.js';
import { eventLines, summaryLines, type Reporter } from './report.js';

const REDRAW_MS = 250;
/** How much of a log's end is read to find its last line. */
const TAIL_BYTES = 4096;

export interface Terminal {
  write(text: string): void;
  /** Current size; read at each redraw so a resized window is honoured. */
  columns(): number;
  rows(): number;
  color: boolean;
}

/** ANSI sequences and other control characters: a build's output must never steer the user's terminal. */
// eslint-disable-next-line no-control-regex
const CONTROL = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/g;

export function printable(line: string): string {
  // A progress bar redraws with \r: what the terminal would show is the text after the last one.
  const shown = line.slice(line.lastIndexOf('\r') + 1);
  return shown.replace(/\t/g, ' ').replace(CONTROL, '');
}

/** The last non-empty line of a file, read from its end; '' when there is none (yet). */
export function lastLine(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = fs.fstatSync(fd).size;
    const length = Math.min(size, TAIL_BYTES);
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, size - length);
    const lines = buf.toString('utf8').split('\n');
    for (let i = lines.length - 1; i >= 0; i--) {
      const l = printable(lines[i]!).trim();
      if (l !== '') return l;
    }
    return '';
  } catch {
    return '';
  } finally {
    fs.closeSync(fd);
  }
}

function elapsed(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/**
 * Cuts a line to the terminal width, so no line wraps and the block's height stays what was counted. Every code
 * point from U+1100 on counts as two columns: too short for some scripts, never too long for wide ones.
 */
function fit(line: string, columns: number): string {
  const width = (c: string): number => (c.codePointAt(0)! >= 0x1100 ? 2 : 1);
  let used = 0;
  for (const c of line) used += width(c);
  if (used < columns) return line;
  let out = '';
  used = 0;
  for (const c of line) {
    if (used + width(c) > columns - 2) break;
    out += c;
    used += width(c);
  }
  return `${out}…`;
}

interface Running {
  label: Label;
  since: number;
  logPath: string;
}

export class TtyReporter implements Reporter {
  private readonly timeline = new Timeline();
  private readonly running = new Map<Label, Running>();
  private readonly started = Date.now();
  private total = 0;
  private done = 0;
  private cached = 0;
  private planned = false;
  /** Lines of the block currently on screen, below which the cursor sits. */
  private drawn = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly term: Terminal,
    private readonly cwd: string,
  ) {}

  private paint(code: string, text: string): string {
    return this.term.color ? `\x1b[${code}m${text}\x1b[0m` : text;
  }

  private block(): string[] {
    if (!this.planned) return [];
    const columns = Math.max(this.term.columns(), 20);
    const now = Date.now();
    const header =
      `wg: ${this.done}/${this.total} done, ${this.cached} cached` +
      (this.running.size > 0 ? `, ${this.running.size} running` : '') +
      ` (${elapsed(now - this.started)})`;
    const lines = [fit(header, columns)];
    // The block stays at least two rows short of the window: erasing it must never start at the top-left corner,
    // where some terminals (tmux, VTE) treat "clear to the end of the screen" as a whole-screen clear and push
    // the old screen into the scrollback.
    const room = Math.max(this.term.rows() - 3, 1);
    const shown = [...this.running.values()].slice(0, this.running.size > room ? room - 1 : room);
    const width = Math.max(0, ...shown.map((r) => r.label.length));
    for (const r of shown) {
      const head = `  ${r.label.padEnd(width)}  ${elapsed(now - r.since).padStart(5)}`;
      const tail = lastLine(r.logPath);
      const line = fit(tail === '' ? head : `${head}  ${tail}`, columns);
      lines.push(line.length > head.length ? head + this.paint('2', line.slice(head.length)) : line);
    }
    if (shown.length < this.running.size) lines.push(`  … and ${this.running.size - shown.length} more`);
    return lines;
  }

  /** Erases the block, prints `above` where it was, and draws the block again below: one write, no flicker. */
  private redraw(above: string[] = []): void {
    let out = this.drawn > 0 ? `\x1b[${this.drawn}A\r\x1b[J` : '';
    for (const l of above) out += `${l}\n`;
    const block = this.block();
    for (const l of block) out += `${l}\n`;
    this.drawn = block.length;
    this.term.write(out);
  }

  private start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.redraw(), REDRAW_MS);
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  readonly onEvent = (e: BuildEvent): void => {
    this.timeline.onEvent(e);
    switch (e.type) {
      case 'plan':
        this.total = e.toBuild;
        this.cached = e.cached;
        this.planned = true;
        this.redraw(eventLines(e, this.cwd));
        this.start();
        return;
      case 'cached':
        return;
      case 'started':
        this.running.set(e.label, { label: e.label, since: Date.now(), logPath: e.logPath });
        this.redraw();
        return;
      case 'built': {
        this.running.delete(e.label);
        this.done++;
        const [first, ...rest] = eventLines(e, this.cwd);
        this.redraw([this.paint('32', first!), ...rest]);
        return;
      }
      case 'failed': {
        this.running.delete(e.label);
        this.done++;
        const [first, ...rest] = eventLines(e, this.cwd);
        this.redraw([this.paint('31', first!), ...rest]);
        return;
      }
      case 'skipped':
        this.redraw(eventLines(e, this.cwd));
        return;
      case 'retrying':
        this.redraw(eventLines(e, this.cwd).map((l) => this.paint('33', l)));
        return;
      case 'interrupted':
        this.running.delete(e.label);
        this.redraw(eventLines(e, this.cwd));
        return;
      case 'warning':
        this.redraw(eventLines(e, this.cwd).map((l) => this.paint('33', l)));
        return;
      default:
        unreachable(e);
    }
  };

  note(line: string): void {
    this.redraw([line]);
  }

  summary(report: BuildReport, dryRun: boolean): void {
    this.stop();
    this.planned = false; // the block is gone for good; the summary takes its place
    this.redraw(summaryLines(report, dryRun, dryRun ? [] : this.timeline.criticalPath()));
  }
}
