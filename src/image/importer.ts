// `layerfs image import SOURCE`: an OCI image layout (`oci:DIR[:TAG]`) or a docker-archive
// tarball (`docker-archive:FILE[:REF]`, what `docker save`, `podman save` and skopeo write)
// into the store.
//
// Every blob is checked against its digest: the manifest and config by sha256, each layer blob
// by sha256 against the manifest's digest (docker-archive: against its `<hex>.tar` /
// `blobs/sha256/<hex>` name when it has one) and, after decompression, against the config's
// `rootfs.diff_ids`. All of it happens in the store's tmp/ before anything is moved into
// place: on any error nothing is stored.
//
// The source is untrusted and reading it is bounded:
//   - a blob with a descriptor (OCI: index, manifest, config, layer) is read at most up to its
//     declared size + 1 byte: a blob that is larger (or shorter) than declared fails, naming
//     the blob, before the rest is read; a regular file's size is compared with the declared
//     one before anything is read at all;
//   - a JSON document (oci-layout, index.json, an index, a manifest, a config, docker-archive's
//     manifest.json) is at most MAX_JSON bytes, declared size or not;
//   - what is read is a regular file inside the source: OCI `oci-layout`, `index.json` and
//     `blobs/sha256/<hex>` are lstat'ed, then opened with O_NOFOLLOW|O_NONBLOCK (a FIFO never
//     blocks, a device is never opened) and fstat'ed; `blobs` and `blobs/sha256` must be real
//     directories, opened without following a symlink, and the blobs are opened below those
//     descriptors (through /proc/self/fd), so that no path component can lead out of the
//     layout, not even one swapped while we read. A docker-archive must be a regular file; of
//     its members, only regular files (and symlinks to other members, as `docker save` writes
//     them) are used, each extracted to at most the size its tar header gives.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import {
  ANNOTATION_REF_NAME,
  checkConfig,
  checkIndex,
  checkManifest,
  digestHex,
  HashTap,
  hashFile,
  hostPlatform,
  ImageError,
  isLayerMediaType,
  MT_CONFIG,
  MT_DOCKER_LIST,
  MT_DOCKER_MANIFEST,
  MT_INDEX,
  MT_LAYER,
  MT_LAYER_GZIP,
  MT_MANIFEST,
  parseJson,
  sha256,
  type Descriptor,
  type ImageConfig,
  type Manifest,
} from './oci.ts';
import { Progress } from './progress.ts';
import { normalizeName, type ImageRecord, type Store, type StoreLock, type StoredLayer } from './store.ts';
import { layerDiffID, unpackLayer } from './unpack.ts';

export type Source = { transport: 'oci'; dir: string; tag?: string } | { transport: 'docker-archive'; file: string; ref?: string };

/** skopeo's transport syntax: `oci:DIR[:TAG]`, `docker-archive:FILE[:REF]` (the first ':' after the path splits). */
export function parseSource(s: string): Source {
  const m = /^([a-z-]+):(.*)$/.exec(s);
  if (!m) throw new ImageError(`'${s}' is not TRANSPORT:PATH (supported: oci:DIR[:TAG], docker-archive:FILE)`);
  const [, transport, rest] = m;
  const colon = rest.indexOf(':');
  const p = colon < 0 ? rest : rest.slice(0, colon);
  const ref = colon < 0 ? undefined : rest.slice(colon + 1);
  if (p === '') throw new ImageError(`'${s}': missing path after '${transport}:'`);
  if (transport === 'oci') {
    if (ref === '') throw new ImageError(`'${s}': empty tag`);
    return { transport, dir: p, tag: ref };
  }
  if (transport === 'docker-archive') {
    if (ref === '') throw new ImageError(`'${s}': empty reference`);
    return { transport, file: p, ref };
  }
  throw new ImageError(`unsupported transport '${transport}' (supported: oci:DIR[:TAG], docker-archive:FILE)`);
}

export interface ImportResult {
  record: ImageRecord;
  layers: number;
  newLayers: number;
  replaced: ImageRecord | null;
  warnings: string[];
}

/** A layer to bring in: how to open its blob (a regular file), its descriptor, and expected DiffID. */
interface LayerSource {
  open: () => OpenFile;
  desc: Descriptor;
  diffID: string;
}

interface Prepared {
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

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

function isCode(e: unknown, ...codes: string[]): boolean {
  return codes.includes((e as NodeJS.ErrnoException)?.code ?? '');
}

/** What a file system object is, for messages ('a symlink', 'a FIFO', ...). */
function kindOf(st: fs.Stats): string {
  if (st.isSymbolicLink()) return 'a symlink';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isFile()) return 'a regular file';
  return 'not a regular file';
}

function largerThanDeclared(what: string, declared: number, actual?: number): ImageError {
  return new ImageError(`${what}: blob is larger than its declared size of ${declared} bytes${actual !== undefined ? ` (it has ${actual})` : ''}`);
}

function shorterThanDeclared(what: string, declared: number, actual: number): ImageError {
  return new ImageError(`${what}: blob is shorter than its declared size of ${declared} bytes (it has ${actual})`);
}

/** A regular file, open for reading. */
interface OpenFile {
  fd: number;
  size: number;
}

/**
 * Open `p`, which must be a regular file: lstat'ed first (a FIFO, a device, a directory or a
 * symlink is refused without being opened), opened with O_NOFOLLOW|O_NONBLOCK (nothing swapped
 * in meanwhile can make us block or follow a link) and fstat'ed (it is still that file).
 * `follow`: the last component may be a symlink (a path the user gave).
 */
function openRegular(p: string, what: string, follow = false): OpenFile {
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
function readDoc(f: OpenFile, what: string, declared?: number): Buffer {
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
function verifyBytes(data: Buffer, desc: Descriptor, what: string): void {
  if (data.length !== desc.size) throw new ImageError(`${what}: size mismatch: expected ${desc.size} bytes, got ${data.length}`);
  const got = sha256(data);
  if (got !== desc.digest) throw new ImageError(`${what}: digest mismatch: expected ${desc.digest}, got ${got}`);
}

function platformOf(desc: Descriptor): string {
  return desc.platform ? `${desc.platform.os}/${desc.platform.architecture}` : '?';
}

/** stat() of an import source, or one line saying it does not exist. */
function statSource(p: string, text: string): fs.Stats {
  try {
    return fs.statSync(p);
  } catch {
    throw new ImageError(`${text}: ${p} does not exist`);
  }
}

// ---------------------------------------------------------------------------
// OCI image layout

/**
 * An OCI image layout, held by descriptors: its directory (the path the user gave, symlinks
 * followed) and, once needed, `blobs/sha256`, reached without following a symlink. Files are
 * opened below these descriptors through /proc/self/fd/N/NAME, in which only the last
 * component is looked up (with O_NOFOLLOW): nothing can lead out of the layout.
 */
class OciLayout {
  private shaFd: number | undefined;

  private constructor(
    readonly dir: string,
    private readonly fd: number,
    private readonly text: string,
  ) {}

  static open(dir: string, text: string): OciLayout {
    let fd: number;
    try {
      fd = fs.openSync(dir, O_RDONLY | O_DIRECTORY);
    } catch (e) {
      if (isCode(e, 'ENOENT')) throw new ImageError(`${text}: ${dir} does not exist`);
      if (isCode(e, 'ENOTDIR')) throw new ImageError(`${text}: ${dir} is not a directory`);
      throw e;
    }
    if (!fs.existsSync(`/proc/self/fd/${fd}`)) {
      fs.closeSync(fd);
      throw new ImageError(`${text}: /proc is not mounted (needed to read the layout safely)`);
    }
    return new OciLayout(dir, fd, text);
  }

  private static at(dirFd: number, name: string): string {
    return `/proc/self/fd/${dirFd}/${name}`;
  }

  /** A directory below dirFd that must be a real directory (not a symlink). */
  private subdir(dirFd: number, name: string, shown: string): number {
    const p = OciLayout.at(dirFd, name);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch (e) {
      if (isCode(e, 'ENOENT')) throw new ImageError(`${this.text}: ${shown} is missing from ${this.dir}`);
      throw e;
    }
    if (!st.isDirectory()) throw new ImageError(`${this.text}: ${shown} in ${this.dir} is ${kindOf(st)}, not a directory inside the layout`);
    let fd: number;
    try {
      fd = fs.openSync(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    } catch (e) {
      if (isCode(e, 'ELOOP', 'ENOTDIR', 'ENOENT')) throw new ImageError(`${this.text}: ${shown} in ${this.dir} was replaced while it was opened`);
      throw e;
    }
    const now = fs.fstatSync(fd);
    if (now.ino !== st.ino || now.dev !== st.dev) {
      fs.closeSync(fd);
      throw new ImageError(`${this.text}: ${shown} in ${this.dir} was replaced while it was opened`);
    }
    return fd;
  }

  private blobsDir(): number {
    if (this.shaFd === undefined) {
      const blobs = this.subdir(this.fd, 'blobs', 'blobs');
      try {
        this.shaFd = this.subdir(blobs, 'sha256', 'blobs/sha256');
      } finally {
        fs.closeSync(blobs);
      }
    }
    return this.shaFd;
  }

  has(name: string): boolean {
    try {
      fs.lstatSync(OciLayout.at(this.fd, name));
      return true;
    } catch {
      return false;
    }
  }

  /** A regular file at the top of the layout (`oci-layout`, `index.json`). */
  file(name: string, what: string): OpenFile {
    return openRegular(OciLayout.at(this.fd, name), what);
  }

  /** lstat() of a blob (no symlink followed), or null when there is none. */
  statBlob(digest: string): fs.Stats | null {
    try {
      return fs.lstatSync(OciLayout.at(this.blobsDir(), digestHex(digest)));
    } catch (e) {
      if (isCode(e, 'ENOENT')) return null;
      throw e;
    }
  }

  /** A blob, which must be a regular file in blobs/sha256. */
  blob(digest: string, what: string): OpenFile {
    return openRegular(OciLayout.at(this.blobsDir(), digestHex(digest)), what);
  }

  close(): void {
    if (this.shaFd !== undefined) fs.closeSync(this.shaFd);
    this.shaFd = undefined;
    fs.closeSync(this.fd);
  }
}

function prepareOci(src: { dir: string; tag?: string }, text: string): Prepared {
  const dir = path.resolve(src.dir);
  const st = statSource(dir, text);
  if (!st.isDirectory()) throw new ImageError(`${text}: ${dir} is not a directory`);
  const layout = OciLayout.open(dir, text);
  try {
    return { ...readOci(layout, src, text), close: () => layout.close() };
  } catch (e) {
    layout.close();
    throw e;
  }
}

function readOci(layout: OciLayout, src: { dir: string; tag?: string }, text: string): Omit<Prepared, 'close'> {
  const dir = layout.dir;
  if (!layout.has('oci-layout')) throw new ImageError(`${text}: ${dir} is not an OCI image layout (no oci-layout file)`);
  const layoutDoc = parseJson(readDoc(layout.file('oci-layout', `${text}: oci-layout`), `${text}: oci-layout`), `${text}: oci-layout`) as { imageLayoutVersion?: string };
  if (typeof layoutDoc?.imageLayoutVersion !== 'string' || !/^1\./.test(layoutDoc.imageLayoutVersion)) {
    throw new ImageError(`${text}: unsupported image layout version ${JSON.stringify(layoutDoc?.imageLayoutVersion)}`);
  }
  const readBlob = (desc: Descriptor, what: string): Buffer => {
    const label = `${text}: ${what} ${desc.digest}`;
    if (desc.size > MAX_JSON) throw new ImageError(`${label}: declared size of ${desc.size} bytes is over the limit of ${MAX_JSON} bytes for a JSON document`);
    if (layout.statBlob(desc.digest) === null) throw new ImageError(`${text}: ${what} blob ${desc.digest} is missing`);
    const data = readDoc(layout.blob(desc.digest, label), label, desc.size);
    verifyBytes(data, desc, label);
    return data;
  };
  const index = checkIndex(parseJson(readDoc(layout.file('index.json', `${text}: index.json`), `${text}: index.json`), `${text}: index.json`), `${text}: index.json`);
  let candidates = index.manifests;
  if (src.tag !== undefined) {
    candidates = candidates.filter((d) => d.annotations?.[ANNOTATION_REF_NAME] === src.tag);
    if (candidates.length === 0) {
      const tags = index.manifests.map((d) => d.annotations?.[ANNOTATION_REF_NAME]).filter(Boolean);
      throw new ImageError(`${text}: no image tagged '${src.tag}' in ${dir}${tags.length ? ` (tags: ${tags.join(', ')})` : ''}`);
    }
  }
  if (candidates.length === 0) throw new ImageError(`${text}: ${dir} holds no image`);
  if (candidates.length > 1) {
    const tags = candidates.map((d) => d.annotations?.[ANNOTATION_REF_NAME] ?? d.digest.slice(0, 19));
    throw new ImageError(`${text}: ${dir} holds ${candidates.length} images (${tags.join(', ')}); name one: oci:${src.dir}:TAG`);
  }
  let desc = candidates[0];
  const tag = src.tag ?? desc.annotations?.[ANNOTATION_REF_NAME];
  // An index (multi-platform image): the host's platform.
  for (let depth = 0; desc.mediaType === MT_INDEX || desc.mediaType === MT_DOCKER_LIST; depth++) {
    if (depth > 4) throw new ImageError(`${text}: image indexes nested too deep`);
    const sub = checkIndex(parseJson(readBlob(desc, 'index'), `${text}: index ${desc.digest}`), `${text}: index ${desc.digest}`);
    const want = hostPlatform();
    const match = sub.manifests.find((d) => d.platform?.os === want.os && d.platform?.architecture === want.architecture);
    if (!match) throw new ImageError(`${text}: no image for ${want.os}/${want.architecture} (has: ${sub.manifests.map(platformOf).join(', ')})`);
    desc = match;
  }
  if (desc.mediaType !== MT_MANIFEST && desc.mediaType !== MT_DOCKER_MANIFEST) throw new ImageError(`${text}: unsupported manifest media type '${desc.mediaType}'`);
  const manifestBytes = readBlob(desc, 'manifest');
  const manifest = checkManifest(parseJson(manifestBytes, `${text}: manifest`), `${text}: manifest ${desc.digest}`);
  const configBytes = readBlob(manifest.config, 'config');
  const config = checkConfig(parseJson(configBytes, `${text}: config`), `${text}: config ${manifest.config.digest}`);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new ImageError(`${text}: the manifest has ${manifest.layers.length} layers but the config ${config.rootfs.diff_ids.length} diff_ids`);
  }
  manifest.layers.forEach((l, i) => {
    if (!isLayerMediaType(l.mediaType)) throw new ImageError(`${text}: layer ${i + 1} has an unsupported media type '${l.mediaType}'`);
  });
  // Every layer blob is a regular file of the declared size before any is read: a lie fails
  // here, without reading (copyVerified reads at most the declared size + 1 byte all the same).
  const n = manifest.layers.length;
  const layers: LayerSource[] = manifest.layers.map((l, i) => {
    const what = `${text}: layer ${i + 1}/${n} (${l.digest})`;
    const bst = layout.statBlob(l.digest);
    if (bst === null) throw new ImageError(`${what}: blob ${l.digest} is missing`);
    if (!bst.isFile()) throw new ImageError(`${what}: blob is ${kindOf(bst)}, not a regular file`);
    if (bst.size > l.size) throw largerThanDeclared(what, l.size, bst.size);
    if (bst.size < l.size) throw shorterThanDeclared(what, l.size, bst.size);
    return { open: () => layout.blob(l.digest, `${what}: blob`), desc: l, diffID: config.rootfs.diff_ids[i] };
  });
  // An OCI manifest is stored as it is (its digest stays the same on export); a docker one is
  // rewritten with OCI media types.
  const oci = desc.mediaType === MT_MANIFEST && (manifest.mediaType === undefined || manifest.mediaType === MT_MANIFEST);
  const outBytes = oci ? manifestBytes : ociManifest(manifest.config, manifest.layers.map((l) => ({ ...l, mediaType: l.mediaType.endsWith('gzip') ? MT_LAYER_GZIP : MT_LAYER })));
  const defName = tag && normalizeName(tag) !== null && tag.includes('/') ? tag : `${path.basename(dir).toLowerCase().replace(/[^a-z0-9._-]+/g, '-')}:${tag ?? 'latest'}`;
  return { name: defName, source: `oci:${dir}${tag ? `:${tag}` : ''}`, manifestBytes: outBytes, configBytes, layers };
}

function ociManifest(config: Descriptor, layers: Descriptor[], annotations?: Record<string, string>): Buffer {
  const m: Manifest = {
    schemaVersion: 2,
    mediaType: MT_MANIFEST,
    config: { mediaType: MT_CONFIG, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    ...(annotations ? { annotations } : {}),
  };
  return Buffer.from(JSON.stringify(m));
}

// ---------------------------------------------------------------------------
// docker-archive

interface ArchiveIndex {
  /** Regular files: member path → extracted file. */
  files: Map<string, string>;
  /** Symlinks: member path → the member path they point to. */
  links: Map<string, string>;
  /** Other members (hard links, devices, FIFOs, directories): member path → tar type. */
  others: Map<string, string>;
}

/**
 * Extract the regular files of a docker-archive (an open regular file, read up to the size it
 * had when opened; the descriptor is closed here) into `dir` (under numbered names), indexed
 * by member path. Each member gets at most the bytes its header declares; manifest.json at
 * most MAX_JSON. A member that appears twice is what its last entry says (tar semantics).
 */
async function readArchive(archive: OpenFile, dir: string, text: string, progress: Progress): Promise<ArchiveIndex> {
  // The stream owns the descriptor from here (autoClose): destroyed on every way out.
  const input = fs.createReadStream('', { fd: archive.fd, start: 0, end: Math.max(archive.size - 1, 0), highWaterMark: 1 << 20 });
  try {
    return await extract(input, dir, text, progress);
  } finally {
    input.destroy();
  }
}

async function extract(input: fs.ReadStream, dir: string, text: string, progress: Progress): Promise<ArchiveIndex> {
  const idx: ArchiveIndex = { files: new Map(), links: new Map(), others: new Map() };
  const norm = (p: string): string => path.posix.normalize(p.replace(/^\.?\/+/, '')).replace(/\/+$/, '');
  let n = 0;
  let failure: Error | null = null;
  const failed = (): Error | null => failure; // (set by the callbacks)
  const fail = (err: Error): void => {
    failure ??= err;
    input.destroy(failure);
  };
  const parser = new Parser({ strict: true });
  parser.on('entry', (e: ReadEntry) => {
    const p = norm(e.path);
    if (failure || p.startsWith('..')) {
      e.resume();
      return;
    }
    idx.files.delete(p);
    idx.links.delete(p);
    idx.others.delete(p);
    if (e.type === 'SymbolicLink' && e.linkpath) {
      idx.links.set(p, path.posix.normalize(path.posix.join(path.posix.dirname(p), e.linkpath)));
      e.resume();
      return;
    }
    if (e.type !== 'File' && e.type !== 'OldFile' && e.type !== 'ContiguousFile') {
      idx.others.set(p, e.type);
      e.resume();
      return;
    }
    const declared = e.size ?? 0;
    if (p === 'manifest.json' && declared > MAX_JSON) {
      fail(new ImageError(`${text}: manifest.json is larger than the limit of ${MAX_JSON} bytes for a JSON document (its header says ${declared})`));
      e.resume();
      return;
    }
    const out = path.join(dir, String(n++));
    const fd = fs.openSync(out, 'wx', 0o600);
    idx.files.set(p, out);
    let written = 0;
    e.on('data', (c: Buffer) => {
      try {
        if (failure) return;
        written += c.length;
        if (written > declared) throw new ImageError(`${text}: member '${p}' has more data than its tar header declares (${declared} bytes)`);
        fs.writeSync(fd, c);
      } catch (err) {
        fail(err as Error);
      }
    });
    e.on('end', () => fs.closeSync(fd));
  });
  const errored = new Promise<never>((_, reject) =>
    parser.on('error', (e: Error) => {
      input.destroy();
      reject(new ImageError(`${text}: not a valid tar archive (${e.message})`));
    }),
  );
  errored.catch(() => {}); // (raced below; not an unhandled rejection when the pipeline failed first)
  const ended = new Promise<void>((resolve) => parser.on('end', () => resolve()));
  const tap = new HashTap((k) => progress.add(k));
  try {
    await Promise.race([
      errored,
      pipeline(input, tap, async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          if (!parser.write(chunk)) await Promise.race([new Promise((r) => parser.once('drain', r)), ended, errored]);
        }
        parser.end();
        await Promise.race([ended, errored]);
      }),
    ]);
  } catch (e) {
    if (!failed()) throw e;
  }
  const f = failed();
  if (f) throw f instanceof ImageError ? f : new ImageError(`${text}: cannot extract: ${f.message}`);
  return idx;
}

/** The extracted file of a member that must be a regular file (following in-archive symlinks). */
function archiveFile(idx: ArchiveIndex, member: string, text: string): string {
  let p = path.posix.normalize(member.replace(/^\.?\/+/, ''));
  for (let hops = 0; hops < 8; hops++) {
    const f = idx.files.get(p);
    if (f) return f;
    const other = idx.others.get(p);
    if (other) throw new ImageError(`${text}: '${member}' is a ${other} entry in the archive, not a regular file`);
    const l = idx.links.get(p);
    if (!l) break;
    p = l;
  }
  throw new ImageError(`${text}: '${member}' is missing from the archive`);
}

/** The digest a docker-archive member's name promises (`<hex>.tar`, `<hex>.json`, `blobs/sha256/<hex>`), if any. */
function digestInName(member: string): string | null {
  const m = /(?:^|\/)(?:blobs\/sha256\/([a-f0-9]{64})|([a-f0-9]{64})\.(?:tar|json))$/.exec(member);
  return m ? `sha256:${m[1] ?? m[2]}` : null;
}

async function prepareDockerArchive(src: { file: string; ref?: string }, text: string, stage: string): Promise<Prepared> {
  const file = path.resolve(src.file);
  statSource(file, text);
  // The archive must be a regular file (a FIFO or a device would never end); the path the user
  // gave may be a symlink to one.
  const archive = openRegular(file, `${text}: ${file}`, true);
  const dir = path.join(stage, 'archive');
  try {
    fs.mkdirSync(dir);
  } catch (e) {
    fs.closeSync(archive.fd);
    throw e;
  }
  const progress = new Progress(`importing ${text}`, archive.size);
  progress.step('reading the archive');
  let idx: ArchiveIndex;
  try {
    idx = await readArchive(archive, dir, text, progress);
  } finally {
    progress.end();
  }
  if (!idx.files.has('manifest.json')) {
    const t = idx.links.has('manifest.json') ? 'SymbolicLink' : idx.others.get('manifest.json');
    if (t) throw new ImageError(`${text}: 'manifest.json' is a ${t} entry in the archive, not a regular file`);
    throw new ImageError(`${text}: not a docker-archive (no manifest.json)`);
  }
  const list = parseJson(readDoc(openRegular(idx.files.get('manifest.json')!, `${text}: manifest.json`), `${text}: manifest.json`), `${text}: manifest.json`);
  type Item = { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
  if (!Array.isArray(list) || list.length === 0) throw new ImageError(`${text}: manifest.json lists no image`);
  let items = list as Item[];
  if (src.ref !== undefined) {
    const want = normalizeName(src.ref);
    items = items.filter((it) => Array.isArray(it.RepoTags) && it.RepoTags.some((t) => t === src.ref || (want !== null && normalizeName(String(t)) === want)));
    if (items.length === 0) throw new ImageError(`${text}: no image '${src.ref}' in the archive`);
  }
  if (items.length > 1) throw new ImageError(`${text}: the archive holds ${items.length} images; name one: docker-archive:${src.file}:REPO:TAG`);
  const it = items[0];
  if (typeof it.Config !== 'string' || !Array.isArray(it.Layers) || !it.Layers.every((l) => typeof l === 'string')) {
    throw new ImageError(`${text}: manifest.json: bad entry (needs Config and Layers)`);
  }
  const configFile = archiveFile(idx, it.Config, text);
  const configBytes = readDoc(openRegular(configFile, `${text}: config ${it.Config}`), `${text}: config ${it.Config}`);
  const configDigest = sha256(configBytes);
  const promised = digestInName(it.Config);
  if (promised && promised !== configDigest) throw new ImageError(`${text}: config ${it.Config}: digest mismatch: expected ${promised}, got ${configDigest}`);
  const config: ImageConfig = checkConfig(parseJson(configBytes, `${text}: config`), `${text}: config ${it.Config}`);
  const members = it.Layers as string[];
  if (config.rootfs.diff_ids.length !== members.length) {
    throw new ImageError(`${text}: manifest.json lists ${members.length} layers but the config has ${config.rootfs.diff_ids.length} diff_ids`);
  }
  // Layer blobs: their digest is only known by hashing (docker-archive has no descriptors).
  const layers: LayerSource[] = [];
  for (const [i, m] of members.entries()) {
    const f = archiveFile(idx, m, text);
    const { digest, size } = await hashFile(f);
    const want = digestInName(m);
    if (want && want !== digest) throw new ImageError(`${text}: layer ${m}: digest mismatch: expected ${want}, got ${digest}`);
    const head = Buffer.alloc(2);
    const fd = fs.openSync(f, 'r');
    fs.readSync(fd, head, 0, 2, 0);
    fs.closeSync(fd);
    const gz = head[0] === 0x1f && head[1] === 0x8b;
    layers.push({ open: () => openRegular(f, `${text}: layer ${m}`), desc: { mediaType: gz ? MT_LAYER_GZIP : MT_LAYER, digest, size }, diffID: config.rootfs.diff_ids[i] });
  }
  const manifestBytes = ociManifest({ mediaType: MT_CONFIG, digest: configDigest, size: configBytes.length }, layers.map((l) => l.desc));
  const tags = Array.isArray(it.RepoTags) ? it.RepoTags.filter((t): t is string => typeof t === 'string' && normalizeName(t) !== null) : [];
  const name = tags[0] ?? `${path.basename(file).replace(/\.(tar|tar\.gz|tgz)$/, '').toLowerCase().replace(/[^a-z0-9._-]+/g, '-')}:latest`;
  return { name, source: `docker-archive:${file}${src.ref ? `:${src.ref}` : ''}`, manifestBytes, configBytes, layers, close: () => {} };
}

// ---------------------------------------------------------------------------

/**
 * Copy a blob into the staging area, checking its size and digest on the way: at most its
 * declared size + 1 byte is read (one more tells that it is larger than declared).
 */
async function copyVerified(open: () => OpenFile, to: string, desc: Descriptor, what: string, progress: Progress): Promise<void> {
  const { fd } = open();
  const tap = new HashTap((n) => progress.add(n));
  await pipeline(fs.createReadStream('', { fd, start: 0, end: desc.size, highWaterMark: 1 << 20 }), tap, fs.createWriteStream(to, { flags: 'wx', mode: 0o600 }));
  if (tap.bytes > desc.size) throw largerThanDeclared(what, desc.size);
  if (tap.bytes < desc.size) throw shorterThanDeclared(what, desc.size, tap.bytes);
  const got = tap.digest();
  if (got !== desc.digest) throw new ImageError(`${what}: digest mismatch: expected ${desc.digest}, got ${got}`);
}

/**
 * Bring the layers in under the lock: verify, unpack the ones the store lacks into staging,
 * then move blobs and layers into place and write the image record.
 */
export async function importImage(store: Store, sourceText: string, opts: { name?: string; onWait?: () => void } = {}): Promise<ImportResult> {
  const source = parseSource(sourceText);
  let name: string | null = null;
  if (opts.name !== undefined) {
    name = normalizeName(opts.name);
    if (name === null) throw new ImageError(`bad image name '${opts.name}' (expected [REGISTRY/]REPO[:TAG], lowercase)`);
  }
  const lock: StoreLock = await store.lock(opts.onWait);
  let bar: Progress | undefined;
  let prep: Prepared | undefined;
  try {
    const stage = lock.stage('import');
    prep = source.transport === 'oci' ? prepareOci(source, sourceText) : await prepareDockerArchive(source, sourceText, stage);
    const finalName = name ?? normalizeName(prep.name);
    if (finalName === null) throw new ImageError(`cannot make an image name from '${prep.name}'; give one with --name`);

    // Progress: every blob is copied (and checked), the layers the store lacks are unpacked too.
    const missing = new Set(prep.layers.filter((l) => !store.hasLayer(l.diffID)).map((l) => l.diffID));
    const total = prep.layers.reduce((s, l) => s + l.desc.size, 0) + prep.layers.filter((l, i, all) => missing.has(l.diffID) && all.findIndex((o) => o.diffID === l.diffID) === i).reduce((s, l) => s + l.desc.size, 0);
    bar = new Progress(`importing ${finalName}`, total);
    const warnings: string[] = [];
    const staged: { dir: string; info: { diffID: string; tarSize: number; dataSize: number; entries: number } }[] = [];
    const blobs: { file: string; digest: string }[] = [];
    const seen = new Set<string>();
    let newLayers = 0;
    for (const [i, l] of prep.layers.entries()) {
      const what = `${sourceText}: layer ${i + 1}/${prep.layers.length} (${l.desc.digest})`;
      bar.step(`layer ${i + 1}/${prep.layers.length}, copying`, l.desc.size);
      const copy = path.join(stage, `blob-${i}`);
      await copyVerified(l.open, copy, l.desc, what, bar);
      blobs.push({ file: copy, digest: l.desc.digest });
      if (store.hasLayer(l.diffID) || seen.has(l.diffID)) {
        // Stored already: still, this blob must be that layer (runs use the stored one, an
        // export this blob).
        const diffID = await layerDiffID(copy, l.desc.mediaType, `${i + 1}/${prep.layers.length} (${l.desc.digest})`);
        if (diffID !== l.diffID) throw new ImageError(`${what}: uncompressed content has digest ${diffID}, but the config's diff_id is ${l.diffID}`);
        continue;
      }
      seen.add(l.diffID);
      const dir = path.join(stage, `layer-${i}`);
      fs.mkdirSync(dir, { mode: 0o700 });
      bar.step(`layer ${i + 1}/${prep.layers.length}, unpacking`, l.desc.size);
      const res = await unpackLayer(copy, path.join(dir, 'root'), {
        mediaType: l.desc.mediaType,
        label: `${i + 1}/${prep.layers.length} (${l.desc.digest})`,
        onBytes: (n) => bar!.add(n),
      });
      if (res.digest !== l.desc.digest) throw new ImageError(`${what}: digest mismatch: expected ${l.desc.digest}, got ${res.digest} (changed while reading?)`);
      if (res.diffID !== l.diffID) throw new ImageError(`${what}: uncompressed content has digest ${res.diffID}, but the config's diff_id is ${l.diffID}`);
      warnings.push(...res.warnings);
      staged.push({ dir, info: { diffID: res.diffID, tarSize: res.tarSize, dataSize: res.dataSize, entries: res.entries } });
      newLayers++;
    }
    bar.end();

    // Everything checked: into place. Blobs and layers first, the record last, so that a crash
    // in between leaves only unreferenced (complete) objects, which the next `image rm` deletes.
    for (const b of blobs) lock.putBlobFile(b.file, b.digest);
    for (const s of staged) lock.putLayer(s.dir, s.info);
    const configDigest = lock.putBlobBytes(prep.configBytes, stage);
    const manifestDigest = lock.putBlobBytes(prep.manifestBytes, stage);
    const layers: StoredLayer[] = prep.layers.map((l) => ({ digest: l.desc.digest, diffID: l.diffID, mediaType: l.desc.mediaType, size: l.desc.size }));
    const record: ImageRecord = { name: finalName, manifestDigest, configDigest, layers, source: prep.source, stored: new Date().toISOString() };
    const replaced = lock.writeImage(record);
    if (replaced) lock.gc();
    return { record, layers: layers.length, newLayers, replaced, warnings };
  } finally {
    prep?.close();
    bar?.end();
    lock.release();
  }
}
