// `layerfs image import SOURCE`: an OCI image layout (`oci:DIR[:TAG]`) or a docker-archive
// tarball (`docker-archive:FILE[:REF]`, what `docker save`, `podman save` and skopeo write)
// into the store.
//
// Every blob is checked against its digest: the manifest and config by sha256, each layer blob
// by sha256 against the manifest's digest (docker-archive: against its `<hex>.tar` /
// `blobs/sha256/<hex>` name when it has one) and, after decompression, against the config's
// `rootfs.diff_ids`. All of it happens in the store's tmp/ before anything is moved into
// place: on any error nothing is stored.

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

/** A layer to bring in: its blob (a file we may read), descriptor, and expected DiffID. */
interface LayerSource {
  file: string;
  desc: Descriptor;
  diffID: string;
}

interface Prepared {
  name: string;
  source: string;
  manifestBytes: Buffer;
  configBytes: Buffer;
  layers: LayerSource[];
}

function readLimited(file: string, what: string, max = 16 << 20): Buffer {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new ImageError(`${what} is missing`);
  }
  if (!st.isFile()) throw new ImageError(`${what} is not a file`);
  if (st.size > max) throw new ImageError(`${what} is too large (${st.size} bytes)`);
  return fs.readFileSync(file);
}

function verifyBytes(data: Buffer, desc: Descriptor, what: string): void {
  const got = sha256(data);
  if (got !== desc.digest) throw new ImageError(`${what}: digest mismatch: expected ${desc.digest}, got ${got}`);
  if (data.length !== desc.size) throw new ImageError(`${what}: size mismatch: expected ${desc.size} bytes, got ${data.length}`);
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

function prepareOci(src: { dir: string; tag?: string }, text: string): Prepared {
  const dir = path.resolve(src.dir);
  const st = statSource(dir, text);
  if (!st.isDirectory()) throw new ImageError(`${text}: ${dir} is not a directory`);
  const layoutFile = path.join(dir, 'oci-layout');
  if (!fs.existsSync(layoutFile)) throw new ImageError(`${text}: ${dir} is not an OCI image layout (no oci-layout file)`);
  const layout = parseJson(readLimited(layoutFile, 'oci-layout'), `${text}: oci-layout`) as { imageLayoutVersion?: string };
  if (typeof layout?.imageLayoutVersion !== 'string' || !/^1\./.test(layout.imageLayoutVersion)) {
    throw new ImageError(`${text}: unsupported image layout version ${JSON.stringify(layout?.imageLayoutVersion)}`);
  }
  const blob = (d: string): string => path.join(dir, 'blobs', 'sha256', digestHex(d));
  const readBlob = (desc: Descriptor, what: string): Buffer => {
    const data = readLimited(blob(desc.digest), `${text}: ${what} blob ${desc.digest}`);
    verifyBytes(data, desc, `${text}: ${what} ${desc.digest}`);
    return data;
  };
  const index = checkIndex(parseJson(readLimited(path.join(dir, 'index.json'), `${text}: index.json`), `${text}: index.json`), `${text}: index.json`);

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
  const layers = manifest.layers.map((l, i) => ({ file: blob(l.digest), desc: l, diffID: config.rootfs.diff_ids[i] }));
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
  files: Map<string, string>;
  links: Map<string, string>;
}

/** Extract the regular files of a docker-archive into `dir` (under numbered names), indexed by member path. */
async function readArchive(file: string, dir: string, text: string, progress: Progress): Promise<ArchiveIndex> {
  const idx: ArchiveIndex = { files: new Map(), links: new Map() };
  const norm = (p: string): string => path.posix.normalize(p.replace(/^\.?\/+/, '')).replace(/\/+$/, '');
  let n = 0;
  let failure: Error | null = null;
  const parser = new Parser({ strict: true });
  parser.on('entry', (e: ReadEntry) => {
    const p = norm(e.path);
    if (failure || p.startsWith('..')) {
      e.resume();
      return;
    }
    if (e.type === 'SymbolicLink' && e.linkpath) {
      idx.links.set(p, path.posix.normalize(path.posix.join(path.posix.dirname(p), e.linkpath)));
      e.resume();
      return;
    }
    if (e.type !== 'File' && e.type !== 'OldFile' && e.type !== 'ContiguousFile') {
      e.resume();
      return;
    }
    const out = path.join(dir, String(n++));
    const fd = fs.openSync(out, 'wx', 0o600);
    idx.files.set(p, out);
    e.on('data', (c: Buffer) => {
      try {
        if (!failure) fs.writeSync(fd, c);
      } catch (err) {
        failure = err as Error;
      }
    });
    e.on('end', () => fs.closeSync(fd));
  });
  const errored = new Promise<never>((_, reject) => parser.on('error', (e: Error) => reject(new ImageError(`${text}: not a valid tar archive (${e.message})`))));
  const ended = new Promise<void>((resolve) => parser.on('end', () => resolve()));
  const tap = new HashTap((k) => progress.add(k));
  await Promise.race([
    errored,
    pipeline(fs.createReadStream(file), tap, async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) {
        if (!parser.write(chunk)) await Promise.race([new Promise((r) => parser.once('drain', r)), ended, errored]);
      }
      parser.end();
      await Promise.race([ended, errored]);
    }),
  ]);
  if (failure) throw new ImageError(`${text}: cannot extract: ${(failure as Error).message}`);
  return idx;
}

function archiveFile(idx: ArchiveIndex, member: string, text: string): string {
  let p = path.posix.normalize(member.replace(/^\.?\/+/, ''));
  for (let hops = 0; hops < 8; hops++) {
    const f = idx.files.get(p);
    if (f) return f;
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
  const st = statSource(file, text);
  if (!st.isFile()) throw new ImageError(`${text}: ${file} is not a file`);
  const dir = path.join(stage, 'archive');
  fs.mkdirSync(dir);
  const progress = new Progress(`importing ${text}`, st.size);
  progress.step('reading the archive');
  let idx: ArchiveIndex;
  try {
    idx = await readArchive(file, dir, text, progress);
  } finally {
    progress.end();
  }
  if (!idx.files.has('manifest.json')) throw new ImageError(`${text}: not a docker-archive (no manifest.json)`);
  const list = parseJson(readLimited(idx.files.get('manifest.json')!, 'manifest.json'), `${text}: manifest.json`);
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
  const configBytes = readLimited(configFile, `${text}: config`);
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
    layers.push({ file: f, desc: { mediaType: gz ? MT_LAYER_GZIP : MT_LAYER, digest, size }, diffID: config.rootfs.diff_ids[i] });
  }
  const manifestBytes = ociManifest({ mediaType: MT_CONFIG, digest: configDigest, size: configBytes.length }, layers.map((l) => l.desc));
  const tags = Array.isArray(it.RepoTags) ? it.RepoTags.filter((t): t is string => typeof t === 'string' && normalizeName(t) !== null) : [];
  const name = tags[0] ?? `${path.basename(file).replace(/\.(tar|tar\.gz|tgz)$/, '').toLowerCase().replace(/[^a-z0-9._-]+/g, '-')}:latest`;
  return { name, source: `docker-archive:${file}${src.ref ? `:${src.ref}` : ''}`, manifestBytes, configBytes, layers };
}

// ---------------------------------------------------------------------------

/** Copy a blob into the staging area, checking its digest and size on the way. */
async function copyVerified(from: string, to: string, desc: Descriptor, what: string, progress: Progress): Promise<void> {
  const tap = new HashTap((n) => progress.add(n));
  try {
    await pipeline(fs.createReadStream(from, { highWaterMark: 1 << 20 }), tap, fs.createWriteStream(to, { flags: 'wx', mode: 0o600 }));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ImageError(`${what}: blob ${desc.digest} is missing`);
    throw e;
  }
  const got = tap.digest();
  if (got !== desc.digest) throw new ImageError(`${what}: digest mismatch: expected ${desc.digest}, got ${got}`);
  if (tap.bytes !== desc.size) throw new ImageError(`${what}: size mismatch: expected ${desc.size} bytes, got ${tap.bytes}`);
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
  try {
    const stage = lock.stage('import');
    const prep = source.transport === 'oci' ? prepareOci(source, sourceText) : await prepareDockerArchive(source, sourceText, stage);
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
      bar.step(`layer ${i + 1}/${prep.layers.length}`);
      const copy = path.join(stage, `blob-${i}`);
      await copyVerified(l.file, copy, l.desc, what, bar);
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
    bar?.end();
    lock.release();
  }
}
