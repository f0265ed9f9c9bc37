// `layerfs image import oci:DIR[:TAG]`: reading an OCI image layout (src/image/importer.ts
// imports what this prepares). The layout is held by directory descriptors and every file is
// opened below them, so no path component can lead out of it; index, manifest and config are
// read bounded and checked against their descriptors; an index is followed to the host's
// platform; every layer blob is a regular file of its declared size before any is read.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { isCode } from '../errcode.ts';
import {
  ANNOTATION_REF_NAME,
  checkConfig,
  checkIndex,
  checkManifest,
  digestHex,
  hostPlatform,
  ImageError,
  isLayerMediaType,
  MT_DOCKER_LIST,
  MT_DOCKER_MANIFEST,
  MT_INDEX,
  MT_LAYER,
  MT_LAYER_GZIP,
  MT_MANIFEST,
  parseJson,
  type Descriptor,
} from './oci.ts';
import {
  kindOf,
  largerThanDeclared,
  MAX_JSON,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_RDONLY,
  ociManifest,
  openRegular,
  readDoc,
  shorterThanDeclared,
  statSource,
  verifyBytes,
  type LayerSource,
  type OpenFile,
  type Prepared,
} from './import-read.ts';
import { normalizeName } from './store.ts';

function platformOf(desc: Descriptor): string {
  return desc.platform ? `${desc.platform.os}/${desc.platform.architecture}` : '?';
}

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

export function prepareOci(src: { dir: string; tag?: string }, text: string): Prepared {
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
