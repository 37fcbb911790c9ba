// What the importers share: their error type and the writer that turns an imported workspace (plain data plus
// comments at chosen places) into BUILD.yaml text.

import { Document, isNode } from 'yaml';

/** A config the importer cannot read: the message names the file (and line) and what is wrong. */
export class ImportError extends Error {}

export interface ImportResult {
  /** The BUILD.yaml text. */
  text: string;
  /** Things the user must still do, printed on stderr. */
  warnings: string[];
}

/** Comments to write above the node at each path (`['packages', 'mamba']`), keyed by the path joined. */
export type Notes = Map<string, { path: (string | number)[]; lines: string[] }>;

export function buildYamlText(data: Record<string, unknown>, header: string[], notes: Notes): string {
  const doc = new Document(data);
  doc.commentBefore = header.map((l) => ` ${l}`).join('\n');
  for (const { path, lines } of notes.values()) {
    const node = doc.getIn(path, true);
    if (isNode(node)) node.commentBefore = lines.map((l) => ` ${l}`).join('\n');
  }
  return doc.toString({ lineWidth: 0 });
}
