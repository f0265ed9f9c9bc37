// The local image store: content-addressed blobs, unpacked layers, and named images.
//
//   $LAYERFS_STORE (default /var/lib/layerfs)/
//     blobs/sha256/<hex>        manifests, configs and layer blobs, as imported or committed
//     layers/<hex of DiffID>/   one unpacked layer: root/ (a layerfs lower dir, OCI whiteouts
//                               kept as they are) and layer.json (sizes, entry count)
//     images/<name>.json        one image: its manifest and config digests and its layers
//     tmp/                      staging for writers; emptied whenever the lock is taken
//     lock                      flock(2)ed by every writer (import, commit, rm)
//     locks/<name>.lock         one per image name: flock(2)ed shared by each `layerfs run`
//                               of the image, exclusively by `image rm` of it
//
// A layer shared by several images is stored once (keyed by its DiffID, the digest of its
// uncompressed tar). Images reference layers and blobs; a layer or blob that no image
// references any more is deleted (refcounting by the image records themselves, so a crash can
// never leave a count that is wrong). Every write goes to tmp/ first and is renamed into place
// after syncfs, so a crash never leaves a half layer or blob under its final name: what is
// under layers/ and blobs/ is always complete.
//
// `layerfs run IMAGE` holds a shared flock on the image's lock file and on each layer
// directory it uses; `image rm` takes the image's lock file and the layers it would delete
// exclusively (non-blocking), so it refuses to remove an image a container runs, even when
// every layer of it stays (shared with another image), and never deletes a layer in use (also
// one of an image that was replaced under a running container).
//
// Races: a run takes the image lock, then checks that the lock file is still the one under
// that name and reads the record again: an `image rm` that got the lock first either still
// holds it (the run fails: "being removed") or has deleted the record and unlinked the lock
// file while holding it (the run sees that and fails). Once a run holds the lock, an rm cannot
// get it: the record stays as long as the run.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../sys/index.ts';
import { digestHex, ImageError, isDigest, sha256 } from './oci.ts';
import { isCode } from '../errcode.ts';

export const DEFAULT_STORE = '/var/lib/layerfs';

export interface StoredLayer {
  /** Digest of the blob (compressed or not, as stored). */
  digest: string;
  /** Digest of the uncompressed tar: names the unpacked layer. */
  diffID: string;
  mediaType: string;
  size: number;
}

export interface ImageRecord {
  name: string;
  manifestDigest: string;
  configDigest: string;
  /** Bottom-most first (manifest order). */
  layers: StoredLayer[];
  /** Where it came from: 'oci:DIR:TAG', 'docker-archive:FILE', 'commit UPPER'. */
  source: string;
  /** When it entered the store (ISO 8601). */
  stored: string;
}

export interface LayerInfo {
  diffID: string;
  /** Bytes of the uncompressed tar. */
  tarSize: number;
  /** Bytes of file data. */
  dataSize: number;
  entries: number;
}

const REPO_PART = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const HOST_PART = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
const NAME_RE = new RegExp(`^(?:${HOST_PART}(?:\\.${HOST_PART})*(?::[0-9]+)?/)?${REPO_PART}(?:/${REPO_PART})*$`);
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** `repo[:tag]` → `repo:tag` (tag 'latest' by default), or null when it is not a valid name. */
export function normalizeName(s: string): string | null {
  const slash = s.lastIndexOf('/');
  const colon = s.lastIndexOf(':');
  let repo = s;
  let tag = 'latest';
  if (colon > slash) {
    repo = s.slice(0, colon);
    tag = s.slice(colon + 1);
  }
  if (repo.length > 255 || !NAME_RE.test(repo) || !TAG_RE.test(tag)) return null;
  return `${repo}:${tag}`;
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function humanSize(n: number): string {
  if (n < 1000) return `${n}B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)}${units[i]}`;
}

export class Store {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /** The store of this process: $LAYERFS_STORE or /var/lib/layerfs. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): Store {
    return new Store(env.LAYERFS_STORE || DEFAULT_STORE);
  }

  get blobsDir(): string {
    return path.join(this.root, 'blobs', 'sha256');
  }
  get layersDir(): string {
    return path.join(this.root, 'layers');
  }
  get imagesDir(): string {
    return path.join(this.root, 'images');
  }
  get tmpDir(): string {
    return path.join(this.root, 'tmp');
  }
  get locksDir(): string {
    return path.join(this.root, 'locks');
  }
  /** The lock file of an image name (see holdImage). */
  imageLockFile(name: string): string {
    return path.join(this.locksDir, encodeURIComponent(name) + '.lock');
  }

  blobPath(digest: string): string {
    return path.join(this.blobsDir, digestHex(digest));
  }
  layerDir(diffID: string): string {
    return path.join(this.layersDir, digestHex(diffID));
  }
  /** The directory to use as a lower layer. */
  layerRoot(diffID: string): string {
    return path.join(this.layerDir(diffID), 'root');
  }
  private imageFile(name: string): string {
    return path.join(this.imagesDir, encodeURIComponent(name) + '.json');
  }

  hasBlob(digest: string): boolean {
    return fs.existsSync(this.blobPath(digest));
  }
  hasLayer(diffID: string): boolean {
    return fs.existsSync(path.join(this.layerDir(diffID), 'layer.json'));
  }

  readBlob(digest: string): Buffer {
    try {
      return fs.readFileSync(this.blobPath(digest));
    } catch (e) {
      if (isCode(e, 'ENOENT')) throw new ImageError(`the store at ${this.root} lacks blob ${digest} (damaged store?)`);
      throw e;
    }
  }

  layerInfo(diffID: string): LayerInfo | null {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.layerDir(diffID), 'layer.json'), 'utf8')) as LayerInfo;
    } catch {
      return null;
    }
  }

  // -------------------------------------------------------------------------
  // images (reading needs no lock: records are replaced atomically)

  images(): ImageRecord[] {
    let files: string[];
    try {
      files = fs.readdirSync(this.imagesDir);
    } catch (e) {
      if (isCode(e, 'ENOENT')) return [];
      throw e;
    }
    const out: ImageRecord[] = [];
    for (const f of files.sort()) {
      if (!f.endsWith('.json')) continue;
      try {
        out.push(JSON.parse(fs.readFileSync(path.join(this.imagesDir, f), 'utf8')) as ImageRecord);
      } catch {
        /* removed meanwhile, or not ours */
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** An image by name (`repo[:tag]`), or by the hex prefix (4+ digits) of its config digest (its ID). */
  find(ref: string): ImageRecord | null {
    const name = normalizeName(ref);
    if (name !== null) {
      try {
        return JSON.parse(fs.readFileSync(this.imageFile(name), 'utf8')) as ImageRecord;
      } catch (e) {
        if (!isCode(e, 'ENOENT', 'ENOTDIR')) throw e;
      }
    }
    const hex = ref.replace(/^sha256:/, '');
    if (/^[a-f0-9]{4,64}$/.test(hex)) {
      const hits = this.images().filter((r) => r.configDigest.slice(7).startsWith(hex));
      const ids = new Set(hits.map((r) => r.configDigest));
      if (ids.size === 1) return hits[0];
      if (ids.size > 1) throw new ImageError(`'${ref}' is the beginning of several image IDs; give more digits or a name`);
    }
    return null;
  }

  // -------------------------------------------------------------------------
  // writing: only under the lock

  /** Take the store's lock (waiting for other writers), create the layout, empty tmp/. */
  async lock(onWait?: () => void): Promise<StoreLock> {
    for (const d of [this.root, this.blobsDir, this.layersDir, this.imagesDir, this.tmpDir]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    const fd = fs.openSync(path.join(this.root, 'lock'), 'a', 0o600);
    try {
      if (!sys.flock(fd, sys.LOCK_EX | sys.LOCK_NB)) {
        onWait?.();
        while (!sys.flock(fd, sys.LOCK_EX | sys.LOCK_NB)) await new Promise((r) => setTimeout(r, 100));
      }
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    // Whatever is in tmp/ was left by a writer that died: nobody else holds the lock.
    for (const e of fs.readdirSync(this.tmpDir)) fs.rmSync(path.join(this.tmpDir, e), { recursive: true, force: true });
    return new StoreLock(this, fd);
  }
}

/** The store, locked for writing. Everything staged below `stage` is thrown away by release(). */
export class StoreLock {
  private stages: string[] = [];
  private released = false;

  constructor(
    readonly store: Store,
    private readonly fd: number,
  ) {}

  /** A fresh staging directory below tmp/ (same filesystem: renames into place are atomic). */
  stage(prefix: string): string {
    const d = path.join(this.store.tmpDir, `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(d, { mode: 0o700 });
    this.stages.push(d);
    return d;
  }

  /** Move a staged file into blobs/ under its digest (kept as is when already there). */
  putBlobFile(file: string, digest: string): void {
    const dest = this.store.blobPath(digest);
    if (fs.existsSync(dest)) {
      fs.rmSync(file, { force: true });
      return;
    }
    fs.chmodSync(file, 0o644);
    fsyncPath(file);
    fs.renameSync(file, dest);
  }

  /** Store bytes as a blob; returns the digest. */
  putBlobBytes(data: Buffer, stage: string): string {
    const digest = sha256(data);
    if (this.store.hasBlob(digest)) return digest;
    const tmp = path.join(stage, `blob-${digestHex(digest)}`);
    fs.writeFileSync(tmp, data, { mode: 0o644 });
    this.putBlobFile(tmp, digest);
    return digest;
  }

  /**
   * Move a staged layer (a directory holding root/) into layers/ under its DiffID, after
   * writing its layer.json and flushing the filesystem. Kept as is when already there.
   */
  putLayer(staged: string, info: LayerInfo): void {
    const dest = this.store.layerDir(info.diffID);
    if (this.store.hasLayer(info.diffID)) {
      fs.rmSync(staged, { recursive: true, force: true });
      return;
    }
    fs.writeFileSync(path.join(staged, 'layer.json'), JSON.stringify(info, null, 2) + '\n');
    fs.chmodSync(staged, 0o755);
    const fd = fs.openSync(staged, 'r');
    try {
      sys.syncfs(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (fs.existsSync(dest)) fs.rmSync(dest, { recursive: true, force: true }); // a leftover without layer.json
    fs.renameSync(staged, dest);
  }

  /** Write (or replace) an image record atomically. Returns the record it replaced. */
  writeImage(rec: ImageRecord): ImageRecord | null {
    const old = this.store.find(rec.name);
    const file = path.join(this.store.imagesDir, encodeURIComponent(rec.name) + '.json');
    const tmp = path.join(this.store.tmpDir, `image-${process.pid}-${randomBytes(4).toString('hex')}.json`);
    fs.writeFileSync(tmp, JSON.stringify(rec, null, 2) + '\n', { mode: 0o644 });
    fsyncPath(tmp);
    fs.renameSync(tmp, file);
    fsyncPath(this.store.imagesDir);
    return old && old.name === rec.name ? old : null;
  }

  /**
   * Remove an image. Its layers and blobs go too unless another image uses them. Refuses
   * (changing nothing) when a running container holds one of the layers to be deleted.
   */
  removeImage(rec: ImageRecord): { deleted: string[]; kept: string[] } {
    const others = this.store.images().filter((r) => r.name !== rec.name);
    const used = new Set(others.flatMap((r) => r.layers.map((l) => l.diffID)));
    const kept = [...new Set(rec.layers.map((l) => l.diffID))].filter((d) => used.has(d));
    const doomed = [...new Set(rec.layers.map((l) => l.diffID))].filter((d) => !used.has(d));
    const inUse = (): ImageError => new ImageError(`image '${rec.name}' is in use by a running container (layerfs run); stop it first`);
    // The image's own lock first: a run of it holds that one even when all its layers stay.
    const lockFile = this.store.imageLockFile(rec.name);
    fs.mkdirSync(this.store.locksDir, { recursive: true, mode: 0o700 });
    const imageFd = fs.openSync(lockFile, fs.constants.O_RDONLY | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
    try {
      if (!sys.flock(imageFd, sys.LOCK_EX | sys.LOCK_NB)) throw inUse();
      const held = this.holdLayers(doomed);
      if (held === null) throw inUse();
      try {
        fs.rmSync(path.join(this.store.imagesDir, encodeURIComponent(rec.name) + '.json'), { force: true });
        fsyncPath(this.store.imagesDir);
        // Unlinked while held: a run that opened it meanwhile sees that it is gone (holdImage).
        fs.rmSync(lockFile, { force: true });
        this.gc(new Set(doomed.map(digestHex)));
      } finally {
        for (const fd of held) fs.closeSync(fd);
      }
    } finally {
      fs.closeSync(imageFd);
    }
    return { deleted: doomed, kept };
  }

  /** Exclusive flocks on layer dirs (null when a container holds one). */
  private holdLayers(diffIDs: string[]): number[] | null {
    const fds: number[] = [];
    for (const d of diffIDs) {
      let fd: number;
      try {
        fd = fs.openSync(this.store.layerDir(d), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      } catch (e) {
        if (isCode(e, 'ENOENT')) continue;
        throw e;
      }
      fds.push(fd);
      if (!sys.flock(fd, sys.LOCK_EX | sys.LOCK_NB)) {
        for (const f of fds) fs.closeSync(f);
        return null;
      }
    }
    return fds;
  }

  /**
   * Delete layers and blobs that no image references (except layers a container holds).
   * `locked`: layers (hex) whose exclusive flock the caller already holds.
   */
  gc(locked: Set<string> = new Set()): { layers: number; blobs: number } {
    const recs = this.store.images();
    const layers = new Set(recs.flatMap((r) => r.layers.map((l) => digestHex(l.diffID))));
    const blobs = new Set(recs.flatMap((r) => [r.manifestDigest, r.configDigest, ...r.layers.map((l) => l.digest)].map(digestHex)));
    let nl = 0;
    let nb = 0;
    let trash: string | undefined;
    for (const hex of fs.readdirSync(this.store.layersDir)) {
      if (layers.has(hex)) continue;
      const dir = path.join(this.store.layersDir, hex);
      let fd: number;
      try {
        fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      } catch (e) {
        if (isCode(e, 'ENOENT')) continue;
        if (isCode(e, 'ENOTDIR')) {
          fs.rmSync(dir, { force: true });
          continue;
        }
        throw e;
      }
      try {
        if (!locked.has(hex) && !sys.flock(fd, sys.LOCK_EX | sys.LOCK_NB)) continue; // a container still runs on it
        // Renamed into tmp/ first: the layer leaves layers/ in one step, then is deleted.
        trash ??= this.stage('gc');
        fs.renameSync(dir, path.join(trash, hex));
        nl++;
      } finally {
        fs.closeSync(fd);
      }
    }
    if (trash !== undefined) fs.rmSync(trash, { recursive: true, force: true });
    for (const hex of fs.readdirSync(this.store.blobsDir)) {
      if (blobs.has(hex) || !isDigest(`sha256:${hex}`)) continue;
      fs.rmSync(path.join(this.store.blobsDir, hex), { force: true });
      nb++;
    }
    this.gcImageLocks(new Set(recs.map((r) => encodeURIComponent(r.name) + '.lock')));
    return { layers: nl, blobs: nb };
  }

  /**
   * Lock files of names that have no image (left by a run that lost a race with `image rm`):
   * unlinked while held exclusively, as rm does.
   */
  private gcImageLocks(live: Set<string>): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.store.locksDir);
    } catch (e) {
      if (isCode(e, 'ENOENT')) return;
      throw e;
    }
    for (const n of names) {
      if (live.has(n) || !n.endsWith('.lock')) continue;
      const p = path.join(this.store.locksDir, n);
      let fd: number;
      try {
        fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      } catch {
        continue;
      }
      try {
        if (sys.flock(fd, sys.LOCK_EX | sys.LOCK_NB)) fs.rmSync(p, { force: true });
      } finally {
        fs.closeSync(fd);
      }
    }
  }

  /** Drop every staging directory and the lock. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const d of this.stages) fs.rmSync(d, { recursive: true, force: true });
    fs.closeSync(this.fd);
  }
}

/** Is the file open at fd still the one at p (not unlinked or replaced)? */
function sameFile(fd: number, p: string): boolean {
  try {
    const a = fs.fstatSync(fd);
    const b = fs.lstatSync(p);
    return a.ino === b.ino && a.dev === b.dev;
  } catch (e) {
    if (isCode(e, 'ENOENT')) return false;
    throw e;
  }
}

/**
 * A run's hold on an image: a shared flock on its lock file (so that `image rm` of it
 * refuses), then on its layer dirs (so that no layer it uses is deleted, also when the image
 * is replaced meanwhile). Returns the record as read under the lock (the caller's may be
 * stale) and the descriptors: close them when the container is gone. They are close-on-exec;
 * the kernel drops the locks when we exit.
 */
export function holdImage(store: Store, rec: ImageRecord): { rec: ImageRecord; fds: number[] } {
  const fds: number[] = [];
  try {
    fds.push(lockImageShared(store, rec.name));
    const now = store.find(rec.name);
    if (!now || now.name !== rec.name) throw new ImageError(`image '${rec.name}' was removed meanwhile`);
    fds.push(...holdImageLayers(store, now));
    return { rec: now, fds };
  } catch (e) {
    for (const fd of fds) fs.closeSync(fd);
    throw e;
  }
}

function lockImageShared(store: Store, name: string): number {
  const file = store.imageLockFile(name);
  for (let attempt = 0; attempt < 5; attempt++) {
    fs.mkdirSync(store.locksDir, { recursive: true, mode: 0o700 });
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
    let ok = false;
    try {
      if (!sys.flock(fd, sys.LOCK_SH | sys.LOCK_NB)) throw new ImageError(`image '${name}' is being removed`);
      // An rm that held it has unlinked it (and deleted the record): lock the new one.
      ok = sameFile(fd, file);
    } finally {
      if (!ok) fs.closeSync(fd);
    }
    if (ok) return fd;
  }
  throw new ImageError(`image '${name}' is being removed`);
}

/**
 * Shared flocks on the layer dirs of an image for as long as a container runs on them (see
 * `image rm`). The descriptors are close-on-exec; the kernel drops the locks when we exit.
 */
export function holdImageLayers(store: Store, rec: ImageRecord): number[] {
  const fds: number[] = [];
  try {
    for (const l of rec.layers) {
      let fd: number;
      try {
        fd = fs.openSync(store.layerDir(l.diffID), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      } catch (e) {
        if (isCode(e, 'ENOENT')) throw new ImageError(`image '${rec.name}': layer ${l.diffID} is missing from the store (removed meanwhile?)`);
        throw e;
      }
      fds.push(fd);
      if (!sys.flock(fd, sys.LOCK_SH | sys.LOCK_NB)) throw new ImageError(`image '${rec.name}' is being removed`);
    }
  } catch (e) {
    for (const fd of fds) fs.closeSync(fd);
    throw e;
  }
  return fds;
}
