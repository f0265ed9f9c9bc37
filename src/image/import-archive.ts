// `layerfs image import docker-archive:FILE[:REF]`: reading a docker-archive tarball, what
// `docker save`, `podman save` and skopeo write (src/image/importer.ts imports what this
// prepares). The archive must be a regular file; its regular members (and symlinks to other
// members) are extracted into the store's staging area, each to at most the size its tar
// header gives; config and layers are checked against the digests their names promise, and an
// OCI manifest is made for them.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import { checkConfig, HashTap, hashFile, ImageError, MT_CONFIG, MT_LAYER, MT_LAYER_GZIP, parseJson, sha256, type ImageConfig } from './oci.ts';
import { MAX_JSON, ociManifest, openRegular, readDoc, statSource, type LayerSource, type OpenFile, type Prepared } from './import-read.ts';
import { Progress } from './progress.ts';
import { normalizeName } from './store.ts';

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

export async function prepareDockerArchive(src: { file: string; ref?: string }, text: string, stage: string): Promise<Prepared> {
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
