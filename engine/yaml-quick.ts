// BUILD.yaml read by js-yaml into the `yaml` package's own nodes, for the loader to check. The `yaml` parser (a
// CST of generators, then a composer) took ~400 ms for the 130 KB BUILD.yaml of a thousand packages on a cold run
// and ~150 ms warm; js-yaml reads the same file in ~90 ms cold. The loader's checks are written against yaml's
// nodes, and its diagnostics against their source ranges, so this reader builds the same nodes without ranges: a
// file that reads without a single diagnostic needs none, and its spans are taken later, from a real `yaml` parse,
// if something asks for one (engine/load.ts, loadWorkspaceQuickly). Anything it cannot turn into exactly the nodes
// `yaml` would make (anchors, aliases, tags, a list item or map entry js-yaml makes no node for, a file js-yaml
// refuses) answers null, and the caller parses with `yaml`.

import { FAILSAFE_SCHEMA, load, type State } from 'js-yaml';
import { Document, Pair, Scalar, YAMLMap, YAMLSeq, isScalar, type Node } from 'yaml';

/** What js-yaml's state also holds at a node's close: its tag and anchor (not in @types/js-yaml). */
interface NodeState extends State {
  tag: string | null;
  anchor: string | null;
}

interface Frame {
  /** The node's first character in js-yaml's input. */
  start: number;
  children: (Node | null)[];
}

/** Skips what may come between a node's opening event and its first character: blanks, line breaks, comments. */
function contentStart(input: string, from: number): number {
  let i = from;
  while (i < input.length) {
    const c = input.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
    else if (c === 0x23 /* # */ && (i === 0 || /\s/.test(input[i - 1]!))) {
      while (i < input.length && input[i] !== '\n') i++;
    } else break;
  }
  return i;
}

const STYLES: Record<string, Scalar.Type> = { '"': 'QUOTE_DOUBLE', "'": 'QUOTE_SINGLE', '|': 'BLOCK_LITERAL', '>': 'BLOCK_FOLDED' };

/**
 * A plain scalar as `yaml` composes it: the first of the core schema's default tags whose test matches its text
 * resolves it (`3.10` becomes 3.1, `0x1F` 31 with format HEX), and its text is kept as `source`.
 */
function plainScalar(text: string, tags: Document['schema']['tags']): Scalar | null {
  const tag = tags.find((t) => t.default === true && 'test' in t && t.test?.test(text));
  let scalar: Scalar;
  if (tag === undefined || !('resolve' in tag)) scalar = new Scalar(text);
  else {
    let failed = false;
    const value = (tag.resolve as (s: string, onError: () => void, options: object) => unknown)(text, () => (failed = true), {});
    if (failed) return null;
    scalar = isScalar(value) ? (value as Scalar) : new Scalar(value);
    if ('format' in tag && tag.format) scalar.format = tag.format;
  }
  scalar.source = text;
  scalar.type = 'PLAIN';
  return scalar;
}

/** Whether a line of `text` has more than `max` characters: by indexOf, where the regex took ~11 ms on 130 KB. */
function hasLineLongerThan(text: string, max: number): boolean {
  let start = 0;
  for (;;) {
    const end = text.indexOf('\n', start);
    if ((end < 0 ? text.length : end) - start > max) return true;
    if (end < 0) return false;
    start = end + 1;
  }
}

/** `text` as a Document of `yaml` nodes without ranges, or null when only `yaml` itself can say what it holds. */
export function quickDocument(text: string): Document | null {
  // What `yaml` refuses and js-yaml reads: an implicit key longer than 1024 characters (a line that long is rare),
  // and a comment right after a quote or a flow collection's end (as is anything else quoted like that).
  if (hasLineLongerThan(text, 1024) || /["'\]}]#/.test(text)) return null;
  const doc = new Document();
  const tags = doc.schema.tags;
  const stack: Frame[] = [];
  let root: Node | null = null;
  let refused = false;
  /** The array or object js-yaml made for each collection node. */
  const madeOf = new WeakMap<Node, unknown>();
  // A collection in block context (`- [x]`) is also first tried as a mapping's key: that try reads all of it, and
  // js-yaml keeps what it read as the node's value. Then the node's only child is the node itself.
  const passedThrough = (frame: Frame, state: NodeState): boolean => {
    const only = frame.children.length === 1 ? frame.children[0] : null;
    return only !== null && only !== undefined && madeOf.get(only) === state.result;
  };

  const close = (frame: Frame, state: NodeState): Node | null | undefined => {
    const input = state.input;
    const first = input[frame.start] ?? '';
    // Tags, anchors and aliases carry meaning these nodes do not keep.
    if (first === '!' || first === '&' || first === '*' || (state.tag !== null && state.tag !== '?' && state.tag !== '!') || state.anchor !== null) return undefined;
    switch (state.kind) {
      // A scalar or an empty node in block context was first tried as a mapping's key, which opened and closed a
      // node of its own: its children are those tries, not content.
      case null:
      case undefined:
        return plainScalar('', tags) ?? undefined;
      case 'scalar': {
        if (typeof state.result !== 'string') return undefined;
        const style = STYLES[first];
        if (style === undefined) return plainScalar(state.result, tags) ?? undefined;
        const scalar = new Scalar(state.result);
        scalar.source = state.result;
        scalar.type = style;
        return scalar;
      }
      case 'sequence': {
        if (passedThrough(frame, state)) return frame.children[0];
        if (!Array.isArray(state.result) || frame.children.length !== state.result.length) return undefined;
        const seq = new YAMLSeq();
        seq.items = frame.children;
        if (first === '[') seq.flow = true;
        madeOf.set(seq, state.result);
        return seq;
      }
      case 'mapping': {
        if (passedThrough(frame, state)) return frame.children[0];
        const pairs = frame.children.length / 2;
        if (!Number.isInteger(pairs) || Object.keys(state.result as object).length !== pairs) return undefined;
        const map = new YAMLMap();
        for (let i = 0; i < frame.children.length; i += 2) {
          const key = frame.children[i];
          if (!isScalar(key)) return undefined;
          map.items.push(new Pair(key, frame.children[i + 1]));
        }
        if (first === '{') map.flow = true;
        madeOf.set(map, state.result);
        return map;
      }
      default:
        return undefined;
    }
  };

  try {
    load(text, {
      schema: FAILSAFE_SCHEMA,
      onWarning: () => (refused = true),
      listener(event, s) {
        if (refused) return;
        const state = s as NodeState;
        if (event === 'open') {
          stack.push({ start: contentStart(state.input, state.position), children: [] });
          return;
        }
        const frame = stack.pop();
        const node = frame && close(frame, state);
        if (node === undefined) {
          refused = true;
          return;
        }
        const parent = stack[stack.length - 1];
        if (parent) parent.children.push(node);
        else root = node;
      },
    });
  } catch {
    return null; // js-yaml refuses it: `yaml` says why, with positions
  }
  if (refused || stack.length > 0) return null;
  doc.contents = root;
  return doc;
}
