// wg's lines on stderr when it is not a terminal (CI, a pipe, a file): a cold build of a thousand actions printed
// two thousand step lines, a write each, and each write to a pipe wakes its reader (a CI runner, `tee`), which
// then takes a core from the build (~40 µs a write on an idle machine, ~125 µs in a profile of a cold 1000-target
// build). Step lines may wait up to WAIT_MS and go out together; any other line (the plan, a warning, a note, the
// summary, an error) is written at once, after what waited, so the order never changes. What waits is written on
// the way out (process 'exit'), which a build's Ctrl-C or SIGTERM also takes; a signal wg does not handle (SIGKILL,
// SIGHUP) loses at most the last 50 ms of step lines, whose builds the logs in wg-out/logs describe anyway.

import { writeStderr } from './stdio-write.js';

/** Long enough to gather a few hundred lines a second into tens of writes, short enough to read as live. */
const WAIT_MS = 50;

let waiting = '';
let timer: NodeJS.Timeout | null = null;
let hooked = false;

/** Writes everything that waits. */
export function flushLines(): void {
  if (timer !== null) {
    clearTimeout(timer);
    timer = null;
  }
  if (waiting === '') return;
  const text = waiting;
  waiting = '';
  writeStderr(text);
}

/** `line` now, after whatever waited. */
export function writeLine(line: string): void {
  waiting += `${line}\n`;
  flushLines();
}

/** `line` within WAIT_MS, with the lines that come meanwhile. */
export function writeLineSoon(line: string): void {
  waiting += `${line}\n`;
  if (!hooked) {
    hooked = true;
    // Written to the descriptor, synchronously, so this lands even on the way out.
    process.on('exit', flushLines);
  }
  if (timer === null) {
    timer = setTimeout(flushLines, WAIT_MS);
    // Waiting lines never keep wg alive: the exit hook writes them.
    timer.unref();
  }
}
