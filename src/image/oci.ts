// OCI image format: digests, media types, and the JSON documents of an image (index, manifest,
// config), with the checks that untrusted input needs before anything uses it.
//
// Spec: https://github.com/opencontainers/image-spec (descriptor.md, manifest.md, config.md,
// image-layout.md, layer.md). Docker's schema 2 manifest and docker-archive's manifest.json
// are read too and turned into OCI documents.

import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';

export const MT_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MT_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MT_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const MT_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MT_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const MT_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const MT_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const MT_DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const MT_DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';

/** A broken or unsupported image: the message becomes the one line the user sees. */
export class ImageError extends Error {
  constructor(message: string) {
    super(message.replace(/[\r\n]+/g, ' '));
    this.name = 'ImageError';
  }
}

// ---------------------------------------------------------------------------
// digests

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(s: unknown): s is string {
  return typeof s === 'string' && DIGEST_RE.test(s);
}

/** The hex part of a sha256 digest (checked: it names files). */
export function digestHex(d: string): string {
  if (!isDigest(d)) throw new ImageError(`bad digest '${String(d).slice(0, 80)}' (only sha256 is supported)`);
  return d.slice('sha256:'.length);
}

export function sha256(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

/** A pass-through stream that hashes and counts what goes through it. */
export class HashTap extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly onBytes?: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
  digest(): string {
    return 'sha256:' + this.hash.digest('hex');
  }
}

/** sha256 of a file, streamed. */
export async function hashFile(file: string, onBytes?: (n: number) => void): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
    onBytes?.((chunk as Buffer).length);
  }
  return { digest: 'sha256:' + h.digest('hex'), size };
}

// ---------------------------------------------------------------------------
// documents

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

export interface Index {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface Manifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** The parts of an image's runtime configuration that `layerfs run` uses (and the rest, kept). */
export interface ContainerConfig {
  User?: string;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  [key: string]: unknown;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
  [key: string]: unknown;
}

export interface ImageConfig {
  created?: string;
  architecture: string;
  os: string;
  config?: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
  [key: string]: unknown;
}

export function parseJson(data: Buffer, what: string): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch (e) {
    throw new ImageError(`${what} is not valid JSON (${(e as Error).message})`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function checkDescriptor(v: unknown, what: string): Descriptor {
  if (!isObject(v)) throw new ImageError(`${what}: not a descriptor object`);
  if (typeof v.mediaType !== 'string') throw new ImageError(`${what}: missing mediaType`);
  if (!isDigest(v.digest)) throw new ImageError(`${what}: bad or unsupported digest '${String(v.digest).slice(0, 80)}' (only sha256 is supported)`);
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) throw new ImageError(`${what}: bad size`);
  return v as unknown as Descriptor;
}

export function checkIndex(v: unknown, what: string): Index {
  if (!isObject(v) || v.schemaVersion !== 2 || !Array.isArray(v.manifests)) throw new ImageError(`${what}: not an OCI image index`);
  v.manifests.forEach((d, i) => checkDescriptor(d, `${what}: manifests[${i}]`));
  return v as unknown as Index;
}

export function checkManifest(v: unknown, what: string): Manifest {
  if (!isObject(v) || v.schemaVersion !== 2 || !Array.isArray(v.layers)) throw new ImageError(`${what}: not an image manifest`);
  checkDescriptor(v.config, `${what}: config`);
  v.layers.forEach((d, i) => checkDescriptor(d, `${what}: layers[${i}]`));
  return v as unknown as Manifest;
}

const STRING_LIST = (v: unknown): boolean => v === undefined || v === null || (Array.isArray(v) && v.every((s) => typeof s === 'string'));

export function checkConfig(v: unknown, what: string): ImageConfig {
  if (!isObject(v)) throw new ImageError(`${what}: not an image configuration`);
  const rootfs = v.rootfs;
  if (!isObject(rootfs) || !Array.isArray(rootfs.diff_ids)) throw new ImageError(`${what}: missing rootfs.diff_ids`);
  rootfs.diff_ids.forEach((d, i) => {
    if (!isDigest(d)) throw new ImageError(`${what}: rootfs.diff_ids[${i}] is not a sha256 digest`);
  });
  const c = v.config;
  if (c !== undefined && c !== null) {
    if (!isObject(c)) throw new ImageError(`${what}: 'config' is not an object`);
    for (const k of ['Env', 'Entrypoint', 'Cmd']) if (!STRING_LIST(c[k])) throw new ImageError(`${what}: config.${k} is not a list of strings`);
    for (const k of ['User', 'WorkingDir']) if (c[k] !== undefined && typeof c[k] !== 'string') throw new ImageError(`${what}: config.${k} is not a string`);
  }
  return v as unknown as ImageConfig;
}

/** Compression of a layer blob, from its media type (null: look at its first bytes). */
export function layerCompression(mediaType: string | undefined): 'gzip' | 'none' | 'zstd' | null {
  if (mediaType === undefined) return null;
  if (/\.tar\+gzip$|\.tar\.gzip$|tar\.gzip$/.test(mediaType) || mediaType === MT_DOCKER_LAYER_GZIP) return 'gzip';
  if (/\+zstd$/.test(mediaType)) return 'zstd';
  if (/layer\.v1\.tar$|nondistributable\.v1\.tar$/.test(mediaType)) return 'none';
  return null;
}

/** Is this media type a layer we know how to unpack (any compression we may refuse later)? */
export function isLayerMediaType(mediaType: string): boolean {
  return /^application\/vnd\.(oci\.image\.layer\.(nondistributable\.)?v1\.tar(\+gzip|\+zstd)?|docker\.image\.rootfs\.(foreign\.)?diff\.tar(\.gzip)?)$/.test(mediaType);
}

/** The host's platform in OCI terms. */
export function hostPlatform(): { architecture: string; os: string } {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { architecture: arch[process.arch] ?? process.arch, os: 'linux' };
}
