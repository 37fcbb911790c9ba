// The local cache in front of a remote one (DESIGN §5, Turborepo's multiplexer): lookups try local first, then the
// remote; a remote hit is verified blob by blob (sha256 while streaming to a temp file), checked against the
// trusted keys, and written into the local cache before it is used. Results built here are uploaded CAS first, AC
// last. A remote that fails or refuses is one warning and is turned off for the rest of the run.
// Loaded only when a remote cache is configured (build.ts imports it dynamically).

import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { ProtoError } from './action-result-proto.js';
import type { ActionResult, LocalStore, Lookup } from './local-store.js';
import { RemoteError, RemoteHttp } from './remote-http.js';
import { acValue, fingerprintInput, locate, manifestBytes, parseManifest, sha256, toActionResult, type Blob, type Manifest } from './remote-entry.js';
import { checkSignature, parseSignatureBlob, signEntry, type SigningKey, type TrustedKey } from './signing.js';

export interface RemoteOptions {
  /** May carry user:password (sent as Basic auth, never shown). */
  url: URL;
  /** Extra request headers (Authorization: Bearer …, API keys); values are never shown. */
  headers: Record<string, string>;
  upload: boolean;
  /** Idle timeout of a request; connecting gets at most 5 s of it. */
  timeoutMs: number;
  signingKey: SigningKey | null;
  /** null: signatures are not checked. Otherwise only entries signed by one of these keys are used. */
  trustedKeys: TrustedKey[] | null;
}

/** What the remote did in this run, for the summary line. */
export interface RemoteStats {
  url: string;
  hits: number;
  misses: number;
  downloadedBytes: number;
  uploads: number;
  uploadedBytes: number;
  /** The remote was turned off after an error. */
  disabled: boolean;
}

const AC_MAX = 16 << 20;
const MANIFEST_MAX = 64 << 20;
const SIGNATURE_MAX = 64 << 10;
const LOOKUP_CONCURRENCY = 8;
const UPLOAD_CONCURRENCY = 4;
const ATTEMPTS = 3;
const CONNECT_TIMEOUT_MS = 5000;

/** An entry that cannot be used; the message says why (after `remote entry <key>: `). */
class EntryMiss extends Error {}

export class TieredCache {
  private readonly http: RemoteHttp;
  private readonly uploads = new PQueue({ concurrency: UPLOAD_CONCURRENCY });
  /** Blobs that failed verification in this run: an upload re-sends them instead of trusting HEAD. */
  private readonly bad = new Set<string>();
  private readsOff = false;
  private writesOff = false;
  private closing = false;
  private readonly stats: RemoteStats;

  constructor(
    private readonly store: LocalStore,
    private readonly options: RemoteOptions,
    private readonly warn: (message: string) => void,
  ) {
    this.http = new RemoteHttp({
      url: options.url,
      headers: options.headers,
      connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, options.timeoutMs),
      idleTimeoutMs: options.timeoutMs,
      attempts: ATTEMPTS,
    });
    this.stats = { url: this.http.display, hits: 0, misses: 0, downloadedBytes: 0, uploads: 0, uploadedBytes: 0, disabled: false };
  }

  /**
   * Looks every key up, local first. A local entry that failed verification is warned about here and then looked
   * for on the remote. `probe` (dry runs) checks that a remote entry is usable without downloading its outputs,
   * and stores nothing.
   */
  async lookupMany(keys: string[], mode: 'fetch' | 'probe' = 'fetch'): Promise<Map<string, Lookup>> {
    const out = new Map<string, Lookup>();
    const misses: string[] = [];
    for (const key of keys) {
      const found = this.store.lookup(key);
      if ('hit' in found) {
        out.set(key, found);
        continue;
      }
      if (found.miss === 'corrupt') this.warn(found.warning);
      out.set(key, { miss: 'absent' });
      misses.push(key);
    }
    const queue = new PQueue({ concurrency: LOOKUP_CONCURRENCY });
    for (const key of misses) {
      void queue.add(async () => {
        const hit = await this.fetch(key, mode);
        if (hit) out.set(key, { hit });
      });
    }
    await queue.onIdle();
    return out;
  }

  private async fetch(key: string, mode: 'fetch' | 'probe'): Promise<ActionResult | null> {
    if (this.readsOff) return null;
    const temps: string[] = [];
    try {
      const ac = await this.http.getBytes('ac', key, AC_MAX);
      if (!ac.found) {
        this.stats.misses++;
        return null;
      }
      if (ac.tooLarge) throw new EntryMiss(`its action result is larger than ${AC_MAX >> 20} MiB`);
      let where: ReturnType<typeof locate>;
      try {
        where = locate(ac.bytes);
      } catch (e) {
        if (e instanceof ProtoError) throw new EntryMiss(e.message);
        throw e;
      }
      if (!where.manifest) throw new EntryMiss('it was not written by wg (no .wg/manifest.json output)');
      const manifestRaw = await this.smallBlob(where.manifest, MANIFEST_MAX);
      const manifest = parseManifest(manifestRaw, key);
      if (typeof manifest === 'string') throw new EntryMiss(manifest);
      if (this.options.trustedKeys) await this.checkTrust(manifest, where.manifest, where.signature);

      const blobs = new Map<string, Blob>();
      for (const b of [...manifest.outputs, manifest.log]) blobs.set(b.digest, { digest: b.digest, size: b.size });
      if (mode === 'probe') {
        for (const b of blobs.values()) {
          if (!this.store.hasBlob(b.digest, b.size) && !(await this.http.head('cas', b.digest))) throw new EntryMiss(`blob ${b.digest} is missing`);
        }
        this.stats.hits++;
        return toActionResult(manifest);
      }
      // Every blob is downloaded and verified before any of them enters the local cache.
      const fetched: { blob: Blob; file: string }[] = [];
      let bytes = 0;
      for (const b of blobs.values()) {
        if (this.store.hasBlob(b.digest, b.size)) continue;
        const file = join(this.store.dir, 'tmp', `remote-${process.pid}-${randomBytes(8).toString('hex')}`);
        temps.push(file);
        const got = await this.http.getToFile('cas', b.digest, file, b.size);
        if (!got.found) throw new EntryMiss(`blob ${b.digest} is missing`);
        if (got.digest !== b.digest || got.size !== b.size) {
          this.bad.add(b.digest);
          const actual = got.digest === null ? `more than ${b.size} bytes` : `sha256 ${got.digest} (${got.size} bytes)`;
          throw new EntryMiss(`blob ${b.digest} failed verification: expected sha256 ${b.digest} (${b.size} bytes), got ${actual}`);
        }
        fetched.push({ blob: b, file });
        bytes += b.size;
      }
      for (const { blob, file } of fetched) {
        const stored = await this.store.putBlob(file);
        // putBlob hashes again while copying: a file changed under us since the check is not stored as a hit.
        if (stored.digest !== blob.digest) throw new EntryMiss(`blob ${blob.digest} changed on disk after it was verified`);
      }
      const result = toActionResult(manifest);
      await this.store.putResult(result);
      this.stats.hits++;
      this.stats.downloadedBytes += bytes;
      return result;
    } catch (e) {
      if (e instanceof EntryMiss) {
        this.stats.misses++;
        this.warn(`remote entry ${key.slice(0, 12)}: ${e.message}; building locally`);
        return null;
      }
      if (e instanceof RemoteError) {
        this.turnOff(e, 'read');
        return null;
      }
      // Storing the download locally failed (a full disk…): the remote hit is lost, the build is not.
      this.stats.misses++;
      this.warn(`remote entry ${key.slice(0, 12)}: cannot store it in the local cache (${(e as Error).message}); building locally`);
      return null;
    } finally {
      for (const f of temps) rmSync(f, { force: true });
    }
  }

  /** A small CAS blob, verified against its digest. */
  private async smallBlob(b: Blob, max: number): Promise<Buffer> {
    const got = await this.http.getBytes('cas', b.digest, Math.min(max, b.size));
    if (!got.found) throw new EntryMiss(`blob ${b.digest} is missing`);
    const actual = got.tooLarge ? null : sha256(got.bytes);
    if (actual !== b.digest || got.bytes.length !== b.size) {
      this.bad.add(b.digest);
      const what = actual === null ? `more than ${b.size} bytes` : `sha256 ${actual} (${got.bytes.length} bytes)`;
      throw new EntryMiss(`blob ${b.digest} failed verification: expected sha256 ${b.digest} (${b.size} bytes), got ${what}`);
    }
    return got.bytes;
  }

  private async checkTrust(manifest: Manifest, manifestBlob: Blob, signature: Blob | null): Promise<void> {
    if (!signature) throw new EntryMiss('signature missing');
    const sig = parseSignatureBlob(await this.smallBlob(signature, SIGNATURE_MAX));
    if (!sig) throw new EntryMiss('bad signature');
    const check = checkSignature(fingerprintInput(manifest, manifestBlob), sig, this.options.trustedKeys ?? []);
    if (check.ok) return;
    throw new EntryMiss(check.reason === 'untrusted' ? `signature by ${check.key} not trusted` : 'bad signature');
  }

  /** Queues the upload of a result built in this run (when uploading is on). */
  upload(result: ActionResult): void {
    if (!this.options.upload || this.writesOff) return;
    void this.uploads.add(() => this.uploadOne(result));
  }

  private async uploadOne(result: ActionResult): Promise<void> {
    if (this.writesOff) return;
    try {
      const manifest = manifestBytes(result);
      const manifestBlob = { digest: sha256(manifest), size: manifest.length };
      let signature: Buffer | null = null;
      if (this.options.signingKey) {
        signature = Buffer.from(JSON.stringify(signEntry(fingerprintInput(result, manifestBlob), this.options.signingKey)));
      }
      const signatureBlob = signature ? { digest: sha256(signature), size: signature.length } : null;

      const files = new Map<string, Blob>();
      for (const b of [...result.outputs, result.log]) files.set(b.digest, { digest: b.digest, size: b.size });
      for (const b of files.values()) {
        if (!(await this.needsUpload(b.digest))) continue;
        await this.http.putFile('cas', b.digest, this.store.blobPath(b.digest), b.size);
        this.stats.uploadedBytes += b.size;
      }
      const small: [Blob, Buffer][] = [[manifestBlob, manifest]];
      if (signature && signatureBlob) small.push([signatureBlob, signature]);
      for (const [blob, bytes] of small) {
        if (!(await this.needsUpload(blob.digest))) continue;
        await this.http.putBytes('cas', blob.digest, bytes);
        this.stats.uploadedBytes += bytes.length;
      }
      // Last, so no reader ever finds an entry whose blobs are not all there yet.
      await this.http.putBytes('ac', result.key, acValue(result, manifestBlob, signatureBlob));
      this.stats.uploads++;
    } catch (e) {
      if (e instanceof RemoteError) return this.turnOff(e, 'write');
      throw e;
    }
  }

  private async needsUpload(digest: string): Promise<boolean> {
    return this.bad.has(digest) || !(await this.http.head('cas', digest));
  }

  private turnOff(e: RemoteError, during: 'read' | 'write'): void {
    if (this.closing || this.readsOff) return;
    this.readsOff = true;
    this.writesOff = true;
    this.stats.disabled = true;
    const url = this.http.display;
    if (during === 'write') {
      const verb = e.refused ? 'refused an upload' : 'failed an upload';
      this.warn(`remote cache ${url} ${verb} (${e.message}); no more uploads in this run`);
    } else {
      this.warn(`remote cache ${url} is unavailable (${e.message}); building locally without it for the rest of this run`);
    }
    // In-flight requests would each wait out their own timeout; the run must not.
    this.http.close();
  }

  /** Waits for queued uploads (or drops them when `abort`), closes connections, and says what happened. */
  async finish(abort = false): Promise<RemoteStats> {
    if (abort) {
      this.closing = true;
      this.uploads.clear();
      this.http.close();
    }
    await this.uploads.onIdle();
    this.closing = true;
    this.http.close();
    return { ...this.stats };
  }
}
