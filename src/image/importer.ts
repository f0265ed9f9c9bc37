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
//
// The parts: import-read.ts (the bounded reading both sources share), import-oci.ts (an OCI
// layout), import-archive.ts (a docker-archive); here the source syntax and the import itself.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { prepareDockerArchive } from './import-archive.ts';
import { prepareOci } from './import-oci.ts';
import { largerThanDeclared, shorterThanDeclared, type OpenFile, type Prepared } from './import-read.ts';
import { HashTap, ImageError, type Descriptor } from './oci.ts';
import { Progress } from './progress.ts';
import { normalizeName, type ImageRecord, type Store, type StoreLock, type StoredLayer } from './store.ts';
import { layerDiffID, unpackLayer } from './unpack.ts';

export { MAX_JSON } from './import-read.ts';

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
