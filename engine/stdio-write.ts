// wg's answers on stdout and stderr, written straight to file descriptors 1 and 2. The first use of process.stderr
// (or stdout) builds a stream for it, which for a pipe loads node:net and node:stream: ~6 ms of a no-op answer
// (timed against 0.4 ms for the write itself), ~2.5 ms of an edit's build, where child_process has loaded them. A
// write to a descriptor is done when it returns, so a command that wrote only this way may exit at once (settled()).

import * as fs from 'node:fs';

/** Per descriptor, set once a write straight to it failed: from then on everything goes through the stream. */
const viaStream = { 1: false, 2: false };

function streamOf(fd: 1 | 2): NodeJS.WriteStream {
  return fd === 1 ? process.stdout : process.stderr;
}

/**
 * What one write leaves (a pipe its maker left non-blocking and full: EAGAIN; a reader gone: EPIPE) goes to the
 * stream, which waits for the pipe or reports the error as it always did, and so does every later write to that
 * descriptor, after it: the order never changes.
 */
function write(fd: 1 | 2, text: string): void {
  if (viaStream[fd]) {
    streamOf(fd).write(text);
    return;
  }
  const bytes = Buffer.from(text, 'utf8');
  let done = 0;
  try {
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done);
  } catch {
    viaStream[fd] = true;
    streamOf(fd).write(bytes.subarray(done));
  }
}

export function writeStdout(text: string): void {
  write(1, text);
}

export function writeStderr(text: string): void {
  write(2, text);
}

/**
 * Nothing written here is still on its way: exiting now loses nothing. False once a stream took over a descriptor
 * and holds bytes (a full non-blocking pipe makes its writes asynchronous).
 */
export function settled(): boolean {
  return (!viaStream[1] || process.stdout.writableLength === 0) && (!viaStream[2] || process.stderr.writableLength === 0);
}
