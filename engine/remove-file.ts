// Removing one file that may be missing, as an edit's build does a few times (the last snapshot, the target's old
// log and outputs). fs.rmSync would do it, but in Node 20 its first call loads the JavaScript rimraf (~0.9 ms,
// measured in a bare Node, then ~0.07 ms a call after an lstat) where an unlink is ~0.02 ms.

import * as fs from 'node:fs';

/** Unlinks `file`; a file already missing is no error, anything else (a folder: EISDIR) is thrown. */
export function removeFile(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
