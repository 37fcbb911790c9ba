// How one local action result is laid out on a remote cache. The AC value (an ActionResult protobuf) lists every
// blob as an output file so that servers which check AC → CAS consistency (bazel-remote) see them all:
//   out/<path>            each output (wheel or file), is_executable from its mode
//   .wg/manifest.json     wg's own manifest: label, key record, outputs with kind and mode, log, duration
//   .wg/signature         the uploader's ed25519 signature blob, when it signs
//   stdout_digest         the build log
// Readers take everything from the manifest (whose digest they verify) and use the AC value only to find it, since
// servers may re-encode AC values.

import { createHash } from 'node:crypto';
import { decodeActionResult, encodeActionResult, type Digest } from './action-result-proto.js';
import type { ActionResult, StoredOutput } from './local-store.js';
import type { FingerprintInput } from './signing.js';

export const MANIFEST_PATH = '.wg/manifest.json';
export const SIGNATURE_PATH = '.wg/signature';
const OUTPUT_PREFIX = 'out/';
const MANIFEST_FORMAT = 'wg-remote-manifest-1';
const HEX64 = /^[0-9a-f]{64}$/;

/** The manifest blob: what LocalStore's ActionResult holds, so a download can be stored as a local hit. */
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  key: string;
  label: string;
  record: unknown;
  outputs: StoredOutput[];
  log: { digest: string; size: number };
  durationMs: number;
  createdAt: string;
}

export interface Blob {
  digest: string;
  size: number;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function manifestBytes(result: ActionResult): Buffer {
  const m: Manifest = {
    format: MANIFEST_FORMAT,
    key: result.key,
    label: result.label,
    record: result.record,
    outputs: result.outputs.map((o) => ({ path: o.path, kind: o.kind, digest: o.digest, size: o.size, mode: o.mode })),
    log: { digest: result.log.digest, size: result.log.size },
    durationMs: result.durationMs,
    createdAt: result.createdAt,
  };
  return Buffer.from(JSON.stringify(m));
}

export function fingerprintInput(m: Pick<Manifest, 'key' | 'outputs' | 'log'>, manifest: Blob): FingerprintInput {
  return { key: m.key, manifest, log: m.log, outputs: m.outputs };
}

export function acValue(result: ActionResult, manifest: Blob, signature: Blob | null): Uint8Array {
  const d = (b: Blob): Digest => ({ hash: b.digest, sizeBytes: b.size });
  return encodeActionResult({
    outputFiles: [
      ...result.outputs.map((o) => ({ path: OUTPUT_PREFIX + o.path, digest: d(o), isExecutable: (o.mode & 0o111) !== 0 })),
      { path: MANIFEST_PATH, digest: d(manifest), isExecutable: false },
      ...(signature ? [{ path: SIGNATURE_PATH, digest: d(signature), isExecutable: false }] : []),
    ],
    exitCode: 0,
    stdoutDigest: d(result.log),
    stderrDigest: null,
    worker: 'wg',
  });
}

/** Where an AC value says the manifest and signature are; throws ProtoError for bytes that are no ActionResult. */
export function locate(ac: Uint8Array): { manifest: Blob | null; signature: Blob | null } {
  const m = decodeActionResult(ac);
  const find = (path: string): Blob | null => {
    const f = m.outputFiles.find((o) => o.path === path);
    return f ? { digest: f.digest.hash, size: f.digest.sizeBytes } : null;
  };
  return { manifest: find(MANIFEST_PATH), signature: find(SIGNATURE_PATH) };
}

function isSafeRelative(p: unknown): p is string {
  return typeof p === 'string' && p !== '' && !p.includes('\0') && !p.startsWith('/') && !p.split('/').includes('..');
}

function isBlob(v: unknown): v is Blob {
  const b = v as Partial<Blob> | null;
  return typeof b?.digest === 'string' && HEX64.test(b.digest) && Number.isSafeInteger(b.size) && (b.size as number) >= 0;
}

/**
 * Checks a downloaded manifest (its digest already verified) field by field: it comes from a server and its paths
 * decide where files land in wg-out/. Returns the problem as a message, or the manifest.
 */
export function parseManifest(bytes: Buffer, key: string): Manifest | string {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch {
    return 'its manifest is not JSON';
  }
  const m = v as Partial<Manifest> | null;
  if (m?.format !== MANIFEST_FORMAT) return `its manifest is not in format ${MANIFEST_FORMAT}`;
  if (m.key !== key) return 'its manifest is for another action key';
  if (typeof m.label !== 'string' || typeof m.createdAt !== 'string' || typeof m.durationMs !== 'number') return 'its manifest lacks label, createdAt or durationMs';
  if (!isBlob(m.log)) return 'its manifest has no valid log digest';
  if (!Array.isArray(m.outputs)) return 'its manifest has no outputs list';
  for (const o of m.outputs as unknown[]) {
    const out = o as Partial<StoredOutput> | null;
    if (!isSafeRelative(out?.path)) return `its manifest names an unsafe output path ${JSON.stringify(out?.path)}`;
    if (out.kind !== 'wheel' && out.kind !== 'file') return `its manifest gives output ${JSON.stringify(out.path)} an unknown kind`;
    if (!Number.isInteger(out.mode) || (out.mode as number) < 0 || (out.mode as number) > 0o777) return `its manifest gives output ${JSON.stringify(out.path)} an invalid mode`;
    if (!isBlob(out)) return `its manifest gives output ${JSON.stringify(out.path)} an invalid digest`;
  }
  return m as Manifest;
}

/** The manifest as a local ActionResult (what LocalStore.putResult stores). */
export function toActionResult(m: Manifest): ActionResult {
  return {
    key: m.key,
    label: m.label,
    record: m.record,
    outputs: m.outputs.map((o) => ({ path: o.path, kind: o.kind, digest: o.digest, size: o.size, mode: o.mode })),
    log: { digest: m.log.digest, size: m.log.size },
    durationMs: m.durationMs,
    createdAt: m.createdAt,
  };
}
