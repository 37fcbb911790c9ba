// Who may vouch for a remote cache entry (Nix's model, remote-anchors §4): the uploader signs a canonical
// fingerprint of the entry (action key + manifest + output digests) with an ed25519 key; readers with
// `trusted_keys` accept only entries signed by one of them. The server stays untrusted: whoever can write to it
// without the private key can cause misses, never wrong hits.

import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/** A key's name in messages and in signature blobs: `ed25519:` + the first 16 hex of sha256(raw public key). */
export type KeyId = string;

export interface SigningKey {
  id: KeyId;
  privateKey: KeyObject;
}

export interface TrustedKey {
  id: KeyId;
  publicKey: KeyObject;
}

/** The signature blob stored in the remote CAS and named by the entry's AC value. */
export interface SignatureBlob {
  format: 'wg-signature-1';
  key: KeyId;
  /** base64 of the 64-byte ed25519 signature over `fingerprint(…)`. */
  signature: string;
}

/** What a fingerprint covers: everything a reader takes from the entry. */
export interface FingerprintInput {
  key: string;
  manifest: { digest: string; size: number };
  log: { digest: string; size: number };
  outputs: { path: string; kind: string; mode: number; digest: string; size: number }[];
}

export class KeyError extends Error {}

// An ed25519 SubjectPublicKeyInfo is this fixed DER prefix followed by the 32 raw key bytes.
const KEY_ID = /^ed25519:[0-9a-f]{16}$/;
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function rawPublicKey(pub: KeyObject): Buffer {
  const der = pub.export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - 32);
}

export function keyId(pub: KeyObject): KeyId {
  return `ed25519:${createHash('sha256').update(rawPublicKey(pub)).digest('hex').slice(0, 16)}`;
}

/** The inline form accepted in `trusted_keys`: `ed25519:` + base64 of the 32 raw public key bytes. */
export function publicKeyText(pub: KeyObject): string {
  return `ed25519:${rawPublicKey(pub).toString('base64')}`;
}

/** A private key from PEM text (`openssl genpkey -algorithm ed25519`). `what` names it in errors. */
export function parseSigningKey(pem: string, what: string): SigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new KeyError(`${what} is not a PEM private key (make one with: openssl genpkey -algorithm ed25519 -out ${what})`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new KeyError(`${what} is a ${privateKey.asymmetricKeyType ?? 'unknown'} key; remote cache signing needs an ed25519 key`);
  }
  return { id: keyId(createPublicKey(privateKey)), privateKey };
}

/**
 * A trusted public key: the inline `ed25519:BASE64` form, or PEM text (`openssl pkey -in KEY -pubout`). A PEM
 * private key is refused: it does not belong among things that are committed.
 */
export function parseTrustedKey(text: string, what: string): TrustedKey {
  const inline = /^ed25519:([A-Za-z0-9+/]{43}=)$/.exec(text.trim());
  let publicKey: KeyObject;
  if (inline) {
    publicKey = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, Buffer.from(inline[1]!, 'base64')]), format: 'der', type: 'spki' });
  } else {
    if (/PRIVATE KEY/.test(text)) throw new KeyError(`${what} holds a private key; trusted_keys takes public keys (openssl pkey -in KEY -pubout)`);
    try {
      publicKey = createPublicKey(text);
    } catch {
      throw new KeyError(`${what} is neither "ed25519:" followed by a base64 public key nor a PEM public key`);
    }
  }
  if (publicKey.asymmetricKeyType !== 'ed25519') throw new KeyError(`${what} is a ${publicKey.asymmetricKeyType ?? 'unknown'} key; only ed25519 keys are supported`);
  return { id: keyId(publicKey), publicKey };
}

/**
 * The signed message: one field a line, outputs sorted by path, paths JSON-quoted so no name can forge a line
 * break. Nothing from the AC value itself is in it, because servers may re-encode AC values (bazel-remote does).
 */
export function fingerprint(input: FingerprintInput): Buffer {
  const lines = [
    'wg-remote-entry-1',
    `key ${input.key}`,
    `manifest ${input.manifest.digest} ${input.manifest.size}`,
    `log ${input.log.digest} ${input.log.size}`,
    ...[...input.outputs]
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
      .map((o) => `out ${o.digest} ${o.size} ${o.mode.toString(8)} ${o.kind} ${JSON.stringify(o.path)}`),
  ];
  return Buffer.from(`${lines.join('\n')}\n`);
}

export function signEntry(input: FingerprintInput, key: SigningKey): SignatureBlob {
  return { format: 'wg-signature-1', key: key.id, signature: sign(null, fingerprint(input), key.privateKey).toString('base64') };
}

export type SignatureCheck = { ok: true; key: KeyId } | { ok: false; reason: 'untrusted' | 'bad'; key: KeyId };

export function checkSignature(input: FingerprintInput, blob: SignatureBlob, trusted: readonly TrustedKey[]): SignatureCheck {
  const key = trusted.find((k) => k.id === blob.key);
  if (!key) return { ok: false, reason: 'untrusted', key: blob.key };
  const sig = Buffer.from(blob.signature, 'base64');
  const good = sig.length === 64 && verify(null, fingerprint(input), key.publicKey, sig);
  return good ? { ok: true, key: key.id } : { ok: false, reason: 'bad', key: key.id };
}

/** Parses a signature blob's bytes; null when they are not one. */
export function parseSignatureBlob(bytes: Buffer): SignatureBlob | null {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch {
    return null;
  }
  const b = v as Partial<SignatureBlob> | null;
  // The key id is printed in warnings: it must not carry anything but the id (it comes from the server).
  if (b?.format !== 'wg-signature-1' || typeof b.key !== 'string' || !KEY_ID.test(b.key) || typeof b.signature !== 'string') return null;
  return { format: b.format, key: b.key, signature: b.signature };
}
