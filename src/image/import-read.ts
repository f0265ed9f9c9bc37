// The bounded, checked reading shared by both import sources (src/image/importer.ts has the
// rules; import-oci.ts and import-archive.ts use these): a source file is opened only when it is
// a regular file (lstat, O_NOFOLLOW|O_NONBLOCK, fstat), a JSON document is read up to its
// declared size + 1 byte and never past MAX_JSON, and what is read is checked against its
// descriptor. Also what a prepared source hands to the import (Prepared, LayerSource).

import * as fs from 'node:fs';
import { isCode } from '../errcode.ts';
import { ImageError, MT_CONFIG, MT_MANIFEST, sha256, type Descriptor, type Manifest } from './oci.ts';

/** A layer to bring in: how to open its blob (a regular file), its descriptor, and expected DiffID. */
export interface LayerSource {
  open: () => OpenFile;
  desc: Descriptor;
  diffID: string;
}

export interface Prepared {
  name: string;
  source: string;
  manifestBytes: Buffer;
  configBytes: Buffer;
  layers: LayerSource[];
  /** Drops what the source holds open (the layout's directories). */
  close: () => void;
}

/**
 * Upper bound of any JSON document of an image (oci-layout, index.json, an index, a manifest,
 * a config, docker-archive's manifest.json and config): 4 MiB. That is the manifest limit
 * registries commonly enforce, and far above what real documents need (configs are a few kB, a
 * long build history some 100 kB). Such a document is read into memory before its digest can
 * be checked, so the bound holds even when nothing declares a size.
 */
export const MAX_JSON = 4 << 20;

export const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

/** What a file system object is, for messages ('a symlink', 'a FIFO', ...). */
export function kindOf(st: fs.Stats): string {
  if (st.isSymbolicLink()) return 'a symlink';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isFile()) return 'a regular file';
  return 'not a regular file';
}

export function largerThanDeclared(what: string, declared: number, actual?: number): ImageError {
  return new ImageError(`${what}: blob is larger than its declared size of ${declared} bytes${actual !== undefined ? ` (it has ${actual})` : ''}`);
}

export function shorterThanDeclared(what: string, declared: number, actual: number): ImageError {
  return new ImageError(`${what}: blob is shorter than its declared size of ${declared} bytes (it has ${actual})`);
}

/** A regular file, open for reading. */
export interface OpenFile {
  fd: number;
  size: number;
}

/**
 * Open `p`, which must be a regular file: lstat'ed first (a FIFO, a device, a directory or a
 * symlink is refused without being opened), opened with O_NOFOLLOW|O_NONBLOCK (nothing swapped
 * in meanwhile can make us block or follow a link) and fstat'ed (it is still that file).
 * `follow`: the last component may be a symlink (a path the user gave).
 */
export function openRegular(p: string, what: string, follow = false): OpenFile {
  let st: fs.Stats;
  try {
    st = follow ? fs.statSync(p) : fs.lstatSync(p);
  } catch (e) {
    if (isCode(e, 'ENOENT', 'ENOTDIR')) throw new ImageError(`${what} is missing`);
    throw e;
  }
  if (!st.isFile()) throw new ImageError(`${what} is ${kindOf(st)}, not a regular file`);
  let fd: number;
  try {
    fd = fs.openSync(p, O_RDONLY | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
  } catch (e) {
    if (isCode(e, 'ELOOP')) throw new ImageError(`${what} is a symlink, not a regular file`);
    if (isCode(e, 'ENOENT', 'ENOTDIR')) throw new ImageError(`${what} is missing`);
    throw e;
  }
  const now = fs.fstatSync(fd);
  if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev) {
    fs.closeSync(fd);
    throw new ImageError(`${what} was replaced while it was opened`);
  }
  return { fd, size: now.size };
}

/** Up to `limit` bytes of fd, from offset 0 (fewer at the end of the file). */
function readUpTo(fd: number, limit: number): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < limit) {
    const buf = Buffer.allocUnsafe(Math.min(limit - total, 1 << 20));
    const n = fs.readSync(fd, buf, 0, buf.length, total);
    if (n === 0) break;
    chunks.push(n === buf.length ? buf : buf.subarray(0, n));
    total += n;
  }
  return Buffer.concat(chunks, total);
}

/**
 * A JSON document from an open file (closed here): at most its declared size + 1 bytes are
 * read, and never more than MAX_JSON + 1.
 */
export function readDoc(f: OpenFile, what: string, declared?: number): Buffer {
  try {
    if (declared !== undefined) {
      if (declared > MAX_JSON) throw new ImageError(`${what}: declared size of ${declared} bytes is over the limit of ${MAX_JSON} bytes for a JSON document`);
      if (f.size > declared) throw largerThanDeclared(what, declared, f.size);
    } else if (f.size > MAX_JSON) throw new ImageError(`${what} is larger than the limit of ${MAX_JSON} bytes for a JSON document (it has ${f.size})`);
    const limit = declared ?? MAX_JSON;
    const data = readUpTo(f.fd, limit + 1);
    if (data.length > limit) {
      if (declared !== undefined) throw largerThanDeclared(what, declared);
      throw new ImageError(`${what} is larger than the limit of ${MAX_JSON} bytes for a JSON document`);
    }
    if (declared !== undefined && data.length < declared) throw shorterThanDeclared(what, declared, data.length);
    return data;
  } finally {
    fs.closeSync(f.fd);
  }
}

/** The digest of a document read by readDoc (which checked its size). */
export function verifyBytes(data: Buffer, desc: Descriptor, what: string): void {
  if (data.length !== desc.size) throw new ImageError(`${what}: size mismatch: expected ${desc.size} bytes, got ${data.length}`);
  const got = sha256(data);
  if (got !== desc.digest) throw new ImageError(`${what}: digest mismatch: expected ${desc.digest}, got ${got}`);
}

/** stat() of an import source, or one line saying it does not exist. */
export function statSource(p: string, text: string): fs.Stats {
  try {
    return fs.statSync(p);
  } catch {
    throw new ImageError(`${text}: ${p} does not exist`);
  }
}

/** An OCI manifest (stored as the image's manifest) for a config and layers. */
export function ociManifest(config: Descriptor, layers: Descriptor[], annotations?: Record<string, string>): Buffer {
  const m: Manifest = {
    schemaVersion: 2,
    mediaType: MT_MANIFEST,
    config: { mediaType: MT_CONFIG, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    ...(annotations ? { annotations } : {}),
  };
  return Buffer.from(JSON.stringify(m));
}
