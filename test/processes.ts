// Finding a build's processes for real: every action of a test carries `WG_RUN_MARKER=<uuid>` in its env, and
// /proc/*/environ shows which processes still carry it, even after setsid or a double fork.

import * as fs from 'node:fs';

export function markedProcesses(marker: string): number[] {
  const needle = Buffer.from(`WG_RUN_MARKER=${marker}\0`);
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/environ`).includes(needle)) out.push(Number(name));
    } catch {
      /* gone, or not ours */
    }
  }
  return out;
}

/** Waits until `ok()` holds, polling every 50 ms, for at most `ms`; fails naming `what`. */
export async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
