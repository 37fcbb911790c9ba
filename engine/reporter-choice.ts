// Which face a build shows: the live terminal view for a person at a terminal, plain timestamped lines for
// everything else (CI, pipes, files). Both the full build and the incremental path ask here.

import * as fs from 'node:fs';
import { LineReporter, type Reporter } from './report.js';
import { writeLine, writeLineSoon } from './stderr-lines.js';
import { TtyReporter } from './tty-reporter.js';

/**
 * Whether stderr is a terminal. Asked of process.stderr only when file descriptor 2 is a character device: building
 * that stream for a pipe loads node:net and node:stream, which a build writing plain lines never needs
 * (engine/stderr-lines.ts writes them to the descriptor).
 */
function stderrIsTerminal(): boolean {
  try {
    if (!fs.fstatSync(2).isCharacterDevice()) return false;
  } catch {
    return false;
  }
  return process.stderr.isTTY === true;
}

/** The live terminal view needs a terminal and a person: CI services set CI (most of them to `true`). */
function liveView(): boolean {
  const ci = process.env['CI'];
  return (ci === undefined || ci === '' || ci === 'false' || ci === '0') && stderrIsTerminal();
}

export function makeReporter(cwd: string): Reporter {
  if (!liveView()) return new LineReporter(writeLine, cwd, writeLineSoon);
  return new TtyReporter(
    {
      write: (text) => process.stderr.write(text),
      columns: () => process.stderr.columns || 80,
      rows: () => process.stderr.rows || 24,
      color: !process.env['NO_COLOR'],
    },
    cwd,
  );
}

