// Redaction of secret values (`secret_env`) from everything wg stores or prints: a streaming writer for step
// output and logs (a secret split across two chunks is still caught) and a one-shot form for messages.

export interface Secret {
  name: string;
  value: string;
}

interface Needle {
  bytes: Buffer;
  replacement: Buffer;
}

/** What a secret's value becomes in logs and messages. */
export function secretMark(name: string): string {
  return `[secret ${name}]`;
}

function needles(secrets: readonly Secret[]): Needle[] {
  // Longest first, so a secret that contains another is replaced whole.
  return secrets
    .filter((s) => s.value !== '')
    .map((s) => ({ bytes: Buffer.from(s.value, 'utf8'), replacement: Buffer.from(secretMark(s.name), 'utf8') }))
    .sort((a, b) => b.bytes.length - a.bytes.length);
}

/**
 * Writes bytes to `sink` with every secret value replaced by `[secret NAME]`. Bytes that could be the start of a
 * secret are held back until the next write (or `end`) shows whether they are, so a value split across two chunks
 * of a child's output never reaches the sink. Works on bytes, so a chunk boundary inside a UTF-8 character is fine.
 */
export class Redactor {
  private readonly needles: Needle[];
  private readonly longest: number;
  private pending: Buffer = Buffer.alloc(0);

  constructor(
    secrets: readonly Secret[],
    private readonly sink: (bytes: Buffer) => void,
  ) {
    this.needles = needles(secrets);
    this.longest = this.needles[0]?.bytes.length ?? 0;
  }

  write(chunk: Buffer | string): void {
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    if (this.needles.length === 0) {
      if (data.length > 0) this.sink(data);
      return;
    }
    this.pending = this.scan(this.pending.length > 0 ? Buffer.concat([this.pending, data]) : data, false);
  }

  /** Flushes what was held back: the stream ended, so a partial value cannot become a secret any more. */
  end(): void {
    if (this.pending.length > 0) this.scan(this.pending, true);
    this.pending = Buffer.alloc(0);
  }

  /**
   * Writes `buf` redacted and returns the tail held back: from the first place where a secret may start but the
   * bytes end before it can be told (`hunter2-a` when both `hunter2` and `hunter2-and-more` are secrets).
   */
  private scan(buf: Buffer, final: boolean): Buffer {
    const out: Buffer[] = [];
    let i = 0;
    let held = buf.length;
    for (;;) {
      held = final ? buf.length : this.undecided(buf, i);
      let at = -1;
      let hit: Needle | undefined;
      for (const n of this.needles) {
        const j = buf.indexOf(n.bytes, i);
        if (j >= 0 && (at < 0 || j < at)) {
          at = j;
          hit = n;
        }
      }
      if (!hit || at >= held) break;
      out.push(buf.subarray(i, at), hit.replacement);
      i = at + hit.bytes.length;
    }
    out.push(buf.subarray(i, Math.max(i, held)));
    const bytes = Buffer.concat(out);
    if (bytes.length > 0) this.sink(bytes);
    return Buffer.from(buf.subarray(Math.max(i, held)));
  }

  /** The first offset ≥ `from` where the rest of `buf` is a proper prefix of some secret; `buf.length` if none. */
  private undecided(buf: Buffer, from: number): number {
    for (let j = Math.max(from, buf.length - this.longest + 1); j < buf.length; j++) {
      const tail = buf.subarray(j);
      if (this.needles.some((n) => n.bytes.length > tail.length && n.bytes.subarray(0, tail.length).equals(tail))) return j;
    }
    return buf.length;
  }
}

/** `text` with every secret value replaced by `[secret NAME]`. */
export function redact(text: string, secrets: readonly Secret[]): string {
  const parts: Buffer[] = [];
  const r = new Redactor(secrets, (b) => parts.push(b));
  r.write(text);
  r.end();
  return Buffer.concat(parts).toString('utf8');
}
