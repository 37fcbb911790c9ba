// Applies patches to a sandboxed source tree with `patch -p1`, in order. A patch is hostile input: every path it
// names is checked before `patch` runs, so a patch can never write outside the tree it is applied to.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

export class PatchError extends Error {}

/** The file paths a unified or git diff touches, after stripping one leading component as `-p1` does. */
export function patchTargets(text: string): { line: number; path: string }[] {
  const out: { line: number; path: string }[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    let m = /^(?:---|\+\+\+) (.+?)(?:\t.*)?$/.exec(line);
    if (m) {
      const raw = m[1]!.trim().replace(/^"(.*)"$/, '$1');
      if (raw === '/dev/null') return;
      const stripped = raw.includes('/') ? raw.slice(raw.indexOf('/') + 1) : raw;
      out.push({ line: i + 1, path: raw.startsWith('/') ? raw : stripped });
      return;
    }
    m = /^(?:rename|copy) (?:from|to) (.+)$/.exec(line);
    if (m) out.push({ line: i + 1, path: m[1]!.trim() });
  });
  return out;
}

/** Refuses absolute paths and any `..` component; `name` is how the patch is called in the message. */
export function checkPatchPaths(name: string, text: string): void {
  for (const t of patchTargets(text)) {
    const parts = t.path.split('/');
    if (t.path.startsWith('/') || parts.includes('..')) {
      throw new PatchError(`${name}:${t.line}: path '${t.path}' escapes the source tree; refusing to apply`);
    }
  }
}

/** Applies one patch; on failure the error names the patch, each file and each failed hunk. */
export async function applyPatch(name: string, patchFile: string, sourceDir: string, log: (s: string) => void): Promise<void> {
  const text = fs.readFileSync(patchFile, 'utf8');
  checkPatchPaths(name, text);
  const output = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
    const child = spawn('patch', ['-p1', '--batch', '--forward', '--no-backup-if-mismatch', '-r', '-', '-i', patchFile], {
      cwd: sourceDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    child.stdout.on('data', (d: Buffer) => (buf += d.toString()));
    child.stderr.on('data', (d: Buffer) => (buf += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, text: buf }));
  });
  log(`$ patch -p1 < ${name}\n${output.text}`);
  if (output.code === 0) return;
  const failures: string[] = [];
  let file = '';
  for (const line of output.text.split('\n')) {
    const f = /^patching file (.+)$/.exec(line);
    if (f) file = f[1]!.replace(/^'(.*)'$/, '$1');
    const h = /^(Hunk #\d+ FAILED at \d+.*?)\.?$/.exec(line);
    if (h) failures.push(`${file}: ${h[1]}`);
    const missing = /^(?:can't find file to patch|No file to patch).*/.exec(line);
    if (missing) failures.push(line.trim());
    const reversed = /^Reversed \(or previously applied\) patch detected!/.exec(line);
    if (reversed) failures.push(`${file}: patch already applied (reversed or previously applied)`);
  }
  throw new PatchError(`patch ${name} does not apply: ${failures.length > 0 ? failures.join('; ') : output.text.trim().split('\n').pop()}`);
}
