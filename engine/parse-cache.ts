// A cache of checked BUILD.yaml files: parsing and checking a thousand-package BUILD.yaml costs a few hundred
// milliseconds, most of a build that has little to do. The checked workspace is stored by the sha256 of
// everything loading depends on and reused while those bytes are unchanged. Only mistake-free files are kept.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import type { Rule } from '../rules/rule.js';
import { BUILD_FILE, loadWorkspace, type Workspace } from './load.js';
import { SpanIndex } from './schema.js';

/** Bumped whenever the shape of Workspace changes, so old entries are never read into a new shape. */
const FORMAT = 'wg-parse-2';

function cacheKey(root: string, text: string, rules: ReadonlyMap<string, Rule>): string {
  const h = createHash('sha256');
  h.update(FORMAT).update('\0').update(root).update('\0').update(text).update('\0');
  // Rule schemas decide what a package may say; a bare interpreter name is looked up on PATH.
  for (const [kind, rule] of rules) h.update(`${kind}:${rule.version}:${Object.keys(rule.attrs).join(',')}\0`);
  h.update(process.env['PATH'] ?? '');
  return h.digest('hex');
}

/** loadWorkspace, answered from `<cacheDir>/parse/` when the same bytes were checked before. */
export function loadWorkspaceCached(root: string, rules: ReadonlyMap<string, Rule>, cacheDir: string): Workspace {
  let text: string;
  try {
    text = fs.readFileSync(path.join(root, BUILD_FILE), 'utf8');
  } catch {
    return loadWorkspace(root, rules); // it reports the unreadable file
  }
  const file = path.join(cacheDir, 'parse', `${cacheKey(root, text, rules)}.bin`);
  try {
    // Spans are kept as their own serialized blob and decoded only if a diagnostic needs one.
    const stored = v8.deserialize(fs.readFileSync(file)) as Workspace & { spans: Buffer };
    const blob = stored.spans;
    return { ...stored, spans: SpanIndex.lazy(() => SpanIndex.restore(v8.deserialize(blob) as ReturnType<SpanIndex['dump']>)) };
  } catch {
    // Absent or unreadable: parse.
  }
  const ws = loadWorkspace(root, rules);
  if (ws.diagnostics.length === 0) {
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, v8.serialize({ ...ws, spans: v8.serialize(ws.spans.dump()) }));
      fs.renameSync(tmp, file);
    } catch {
      // A cache that cannot be written only costs the next run a parse.
    }
  }
  return ws;
}
