// Reading a part of a file by position: the stored plan and the parse cache keep a header in front of parts that a
// run reads only when it needs them (a plan's touched entries, a workspace's spans).

import * as fs from 'node:fs';

/** Exactly `length` bytes at `position` of `fd`; throws when the file ends first (a file cut short). */
export function readAt(fd: number, position: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let done = 0; done < length; ) {
    const n = fs.readSync(fd, out, done, length - done, position + done);
    if (n === 0) throw new Error(`the file ends before byte ${position + length}`);
    done += n;
  }
  return out;
}
