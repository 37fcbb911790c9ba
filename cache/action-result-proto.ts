// The subset of REAPI's `build.bazel.remote.execution.v2.ActionResult` that wg stores as a remote AC value, in
// protobuf wire format, so servers that validate AC entries (bazel-remote) accept them and can check that every
// CAS blob they point at exists. Field numbers are those of remote_execution.proto (remote-anchors §2.3).

import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

/** `Digest { string hash = 1; int64 size_bytes = 2; }`: a lowercase sha256 hex and a byte count. */
export interface Digest {
  hash: string;
  sizeBytes: number;
}

/** `OutputFile { string path = 1; Digest digest = 2; bool is_executable = 4; }` */
export interface OutputFile {
  /** Relative to the action's working directory; never absolute, never empty, no `..`. */
  path: string;
  digest: Digest;
  isExecutable: boolean;
}

/**
 * `ActionResult { repeated OutputFile output_files = 2; int32 exit_code = 4; Digest stdout_digest = 6;
 * Digest stderr_digest = 8; ExecutedActionMetadata execution_metadata = 9 { string worker = 1; } }`.
 * Other fields are skipped on decode: a server may add them (bazel-remote fills in `worker`).
 */
export interface ActionResultMessage {
  outputFiles: OutputFile[];
  exitCode: number;
  stdoutDigest: Digest | null;
  stderrDigest: Digest | null;
  worker: string;
}

/** A remote AC value that is not an ActionResult wg can use. */
export class ProtoError extends Error {}

const HEX64 = /^[0-9a-f]{64}$/;

function writeDigest(w: BinaryWriter, field: number, d: Digest): void {
  w.tag(field, WireType.LengthDelimited).fork();
  w.tag(1, WireType.LengthDelimited).string(d.hash);
  // proto3 leaves default values out; the empty blob has size 0.
  if (d.sizeBytes !== 0) w.tag(2, WireType.Varint).int64(d.sizeBytes);
  w.join();
}

export function encodeActionResult(m: ActionResultMessage): Uint8Array {
  const w = new BinaryWriter();
  for (const f of m.outputFiles) {
    w.tag(2, WireType.LengthDelimited).fork();
    w.tag(1, WireType.LengthDelimited).string(f.path);
    writeDigest(w, 2, f.digest);
    if (f.isExecutable) w.tag(4, WireType.Varint).bool(true);
    w.join();
  }
  if (m.exitCode !== 0) w.tag(4, WireType.Varint).int32(m.exitCode);
  if (m.stdoutDigest) writeDigest(w, 6, m.stdoutDigest);
  if (m.stderrDigest) writeDigest(w, 8, m.stderrDigest);
  if (m.worker !== '') {
    w.tag(9, WireType.LengthDelimited).fork();
    w.tag(1, WireType.LengthDelimited).string(m.worker);
    w.join();
  }
  return w.finish();
}

/** The end offset of the nested message starting at the reader's position. */
function nestedEnd(r: BinaryReader): number {
  const end = r.uint32() + r.pos;
  if (end > r.len) throw new ProtoError('not a protobuf ActionResult (a field runs past the end)');
  return end;
}

function checkEnd(r: BinaryReader, end: number): void {
  if (r.pos !== end) throw new ProtoError('not a protobuf ActionResult (a field overruns its message)');
}

function readDigest(r: BinaryReader): Digest {
  const end = nestedEnd(r);
  let hash = '';
  let size = 0n;
  while (r.pos < end) {
    const [field, type] = r.tag();
    if (field === 1 && type === WireType.LengthDelimited) hash = r.string();
    else if (field === 2 && type === WireType.Varint) size = BigInt(r.int64());
    else r.skip(type, field);
  }
  checkEnd(r, end);
  if (!HEX64.test(hash)) throw new ProtoError(`digest hash ${JSON.stringify(hash.slice(0, 80))} is not a lowercase sha256 hex`);
  if (size < 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtoError(`digest size ${size} is out of range`);
  return { hash, sizeBytes: Number(size) };
}

function readOutputFile(r: BinaryReader): OutputFile {
  const end = nestedEnd(r);
  let path = '';
  let digest: Digest | null = null;
  let isExecutable = false;
  while (r.pos < end) {
    const [field, type] = r.tag();
    if (field === 1 && type === WireType.LengthDelimited) path = r.string(true);
    else if (field === 2 && type === WireType.LengthDelimited) digest = readDigest(r);
    else if (field === 4 && type === WireType.Varint) isExecutable = r.bool();
    else r.skip(type, field);
  }
  checkEnd(r, end);
  if (path === '' || path.startsWith('/') || path.split('/').includes('..')) throw new ProtoError(`output path ${JSON.stringify(path)} is not a relative path inside the action`);
  if (!digest) throw new ProtoError(`output ${JSON.stringify(path)} has no digest`);
  return { path, digest, isExecutable };
}

function readWorker(r: BinaryReader): string {
  const end = nestedEnd(r);
  let worker = '';
  while (r.pos < end) {
    const [field, type] = r.tag();
    if (field === 1 && type === WireType.LengthDelimited) worker = r.string();
    else r.skip(type, field);
  }
  checkEnd(r, end);
  return worker;
}

/** Decodes an AC value; throws ProtoError when the bytes are not a well-formed ActionResult. */
export function decodeActionResult(bytes: Uint8Array): ActionResultMessage {
  const m: ActionResultMessage = { outputFiles: [], exitCode: 0, stdoutDigest: null, stderrDigest: null, worker: '' };
  const r = new BinaryReader(bytes);
  try {
    while (r.pos < r.len) {
      const [field, type] = r.tag();
      if (field === 2 && type === WireType.LengthDelimited) m.outputFiles.push(readOutputFile(r));
      else if (field === 4 && type === WireType.Varint) m.exitCode = r.int32();
      else if (field === 6 && type === WireType.LengthDelimited) m.stdoutDigest = readDigest(r);
      else if (field === 8 && type === WireType.LengthDelimited) m.stderrDigest = readDigest(r);
      else if (field === 9 && type === WireType.LengthDelimited) m.worker = readWorker(r);
      else r.skip(type, field);
    }
  } catch (e) {
    if (e instanceof ProtoError) throw e;
    throw new ProtoError(`not a protobuf ActionResult (${(e as Error).message})`);
  }
  if (r.pos !== r.len) throw new ProtoError('not a protobuf ActionResult (a field runs past the end)');
  return m;
}
