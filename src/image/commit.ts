// `layerfs commit UPPER`: an upper directory as a new OCI layer (gzip-compressed tar, see
// pack.ts) on top of an image's layers (`--from IMAGE`) or alone, stored as a new image.
// `layerfs image export NAME DIR`: an image of the store as an OCI image layout.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import {
  ANNOTATION_REF_NAME,
  checkConfig,
  HashTap,
  hostPlatform,
  ImageError,
  MT_CONFIG,
  MT_LAYER_GZIP,
  MT_MANIFEST,
  parseJson,
  type Descriptor,
  type ImageConfig,
  type Index,
  type Manifest,
} from './oci.ts';
import { packUpper } from './pack.ts';
import { Progress } from './progress.ts';
import { normalizeName, type ImageRecord, type LayerInfo, type Store } from './store.ts';
import { unpackLayer } from './unpack.ts';

export interface CommitOptions {
  name?: string;
  from?: string;
  message?: string;
  userxattr: boolean;
}

export interface CommitResult {
  record: ImageRecord;
  layer: LayerInfo;
  warnings: string[];
}

function upperDir(p: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new ImageError(`upper '${p}' does not exist`);
  }
  if (!st.isDirectory()) throw new ImageError(`upper '${p}' is not a directory`);
  return fs.realpathSync(p);
}

export async function commitUpper(store: Store, upperArg: string, opts: CommitOptions): Promise<CommitResult> {
  const upper = upperDir(upperArg);
  let name: string | null = null;
  if (opts.name !== undefined) {
    name = normalizeName(opts.name);
    if (name === null) throw new ImageError(`bad image name '${opts.name}' (expected [REGISTRY/]REPO[:TAG], lowercase)`);
  }
  let base: ImageRecord | null = null;
  if (opts.from !== undefined) {
    base = store.find(opts.from);
    if (!base) throw new ImageError(`no image '${opts.from}' in the store (see 'layerfs image ls')`);
  }
  const lock = await store.lock();
  try {
    const stage = lock.stage('commit');
    const warnings: string[] = [];
    const blob = path.join(stage, 'layer.tar.gz');
    const tarTap = new HashTap();
    const blobTap = new HashTap();
    await pipeline(
      Readable.from(packUpper(upper, { userxattr: opts.userxattr, warn: (m) => warnings.push(m) })),
      tarTap,
      zlib.createGzip(),
      blobTap,
      fs.createWriteStream(blob, { flags: 'wx', mode: 0o600 }),
    );
    const diffID = tarTap.digest();
    const digest = blobTap.digest();
    const size = blobTap.bytes;

    // The stored layer is made from the tarball itself (not copied from the upper), so that it
    // is exactly what the blob says, through the same checks as an imported layer.
    let info = store.layerInfo(diffID);
    let layerStage: string | null = null;
    if (!info) {
      layerStage = path.join(stage, 'layer');
      fs.mkdirSync(layerStage, { mode: 0o700 });
      const bar = new Progress(`committing ${upper}`, size);
      const res = await unpackLayer(blob, path.join(layerStage, 'root'), { mediaType: MT_LAYER_GZIP, label: diffID, onBytes: (n) => bar.add(n) });
      bar.end();
      if (res.diffID !== diffID || res.digest !== digest) throw new ImageError('internal: the packed layer reads back differently');
      warnings.push(...res.warnings);
      info = { diffID, tarSize: res.tarSize, dataSize: res.dataSize, entries: res.entries };
    }

    const now = new Date().toISOString();
    let config: ImageConfig;
    if (base) {
      config = checkConfig(parseJson(store.readBlob(base.configDigest), 'base config'), `config of ${base.name}`);
    } else {
      config = { ...hostPlatform(), config: {}, rootfs: { type: 'layers', diff_ids: [] }, history: [] };
    }
    const newConfig: ImageConfig = {
      ...config,
      created: now,
      rootfs: { type: 'layers', diff_ids: [...config.rootfs.diff_ids, diffID] },
      history: [...(config.history ?? []), { created: now, created_by: `layerfs commit${base ? ` --from ${base.name}` : ''}`, ...(opts.message ? { comment: opts.message } : {}) }],
    };
    const configBytes = Buffer.from(JSON.stringify(newConfig));
    const configDigest = lock.putBlobBytes(configBytes, stage);
    const layers = [...(base?.layers ?? []), { digest, diffID, mediaType: MT_LAYER_GZIP, size }];
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MT_MANIFEST,
      config: { mediaType: MT_CONFIG, digest: configDigest, size: configBytes.length },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    };
    const manifestDigest = lock.putBlobBytes(Buffer.from(JSON.stringify(manifest)), stage);
    lock.putBlobFile(blob, digest);
    if (layerStage) lock.putLayer(layerStage, info);
    const finalName = name ?? `commit-${configDigest.slice(7, 19)}:latest`;
    const record: ImageRecord = {
      name: finalName,
      manifestDigest,
      configDigest,
      layers,
      source: `commit ${upper}${base ? ` --from ${base.name}` : ''}`,
      stored: now,
    };
    if (lock.writeImage(record)) lock.gc();
    return { record, layer: info, warnings };
  } finally {
    lock.release();
  }
}

/** Copy a blob out of the store, checking it on the way (a damaged store must not export silently). */
async function copyBlob(store: Store, desc: Descriptor, blobsDir: string): Promise<void> {
  const tap = new HashTap();
  const to = path.join(blobsDir, desc.digest.slice(7));
  if (fs.existsSync(to)) return;
  await pipeline(fs.createReadStream(store.blobPath(desc.digest)), tap, fs.createWriteStream(to, { flags: 'wx', mode: 0o644 }));
  if (tap.digest() !== desc.digest) throw new ImageError(`the store's blob ${desc.digest} is damaged (its content has digest ${tap.digest()})`);
}

/**
 * Write an image as an OCI image layout in `dir` (which must not exist, or be empty), tagged
 * with the image's tag. Built beside it and renamed into place: on error nothing is left.
 */
export async function exportImage(store: Store, ref: string, dirArg: string): Promise<{ name: string; dir: string; tag: string }> {
  const rec = store.find(ref);
  if (!rec) throw new ImageError(`no image '${ref}' in the store (see 'layerfs image ls')`);
  const dir = path.resolve(dirArg);
  try {
    const st = fs.lstatSync(dir);
    if (!st.isDirectory()) throw new ImageError(`'${dirArg}' exists and is not a directory`);
    if (fs.readdirSync(dir).length > 0) throw new ImageError(`'${dirArg}' exists and is not empty`);
  } catch (e) {
    if (e instanceof ImageError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const parent = path.dirname(dir);
  if (!fs.existsSync(parent)) throw new ImageError(`the parent directory of '${dirArg}' does not exist`);
  const tmp = fs.mkdtempSync(path.join(parent, `.${path.basename(dir)}.layerfs-export-`));
  try {
    const blobs = path.join(tmp, 'blobs', 'sha256');
    fs.mkdirSync(blobs, { recursive: true });
    const manifestBytes = store.readBlob(rec.manifestDigest);
    const manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest;
    for (const d of [manifest.config, ...manifest.layers]) await copyBlob(store, d, blobs);
    await copyBlob(store, { mediaType: MT_MANIFEST, digest: rec.manifestDigest, size: manifestBytes.length }, blobs);
    const tag = rec.name.slice(rec.name.lastIndexOf(':') + 1);
    const index: Index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: MT_MANIFEST, digest: rec.manifestDigest, size: manifestBytes.length, annotations: { [ANNOTATION_REF_NAME]: tag } }],
    };
    fs.writeFileSync(path.join(tmp, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    fs.writeFileSync(path.join(tmp, 'index.json'), JSON.stringify(index));
    fs.chmodSync(tmp, 0o755);
    fs.renameSync(tmp, dir); // rename(2) replaces an empty directory
    return { name: rec.name, dir, tag };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
