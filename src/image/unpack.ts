// Unpacking one image layer (a tar stream, maybe gzip-compressed) into a directory, faithfully
// and safely.
//
// Faithful: owners (numeric ids), modes (with setuid/setgid/sticky), times (mtime and atime,
// to the millisecond node-tar gives), symlinks, hard links, character and block devices,
// FIFOs, and extended attributes from PAX `SCHILY.xattr.NAME` records. OCI whiteouts
// (`.wh.NAME`, `.wh..wh..opq`) are kept as they are: layerfs reads them natively in lower
// layers (src/union/whiteout.ts), so a stored layer is exactly the tarball's content and can
// be packed again unchanged. Overlay-private xattrs (`trusted.overlay.*`, `user.overlay.*`)
// are dropped with a warning: in an image only `.wh.` entries may delete or make opaque.
//
// Safe: the layer is untrusted. An entry is refused, failing the whole layer, when
//   - its path is absolute (other than the root itself, `/` or `./`) or has a `..` component;
//   - a directory on its way is a symlink (planted by an earlier entry) or not a directory;
//   - it is a symlink whose relative target climbs above the layer's root (`../../etc`).
//     Absolute targets are allowed: they mean the container's root, images are full of them
//     (`/bin/sh -> /bin/busybox`), and nothing here ever follows a symlink;
//   - it is a hard link whose target is absolute, has `..`, goes through a symlink, is a
//     directory, or does not exist (yet) in this layer;
//   - it has a type that is not a file system object (sparse, multi-volume, ...).
// Every object is created with no-follow calls (O_EXCL|O_NOFOLLOW, lchown, lsetxattr,
// utimensat(AT_SYMLINK_NOFOLLOW)); an existing object at an entry's path is removed first
// (tar semantics: a later entry replaces an earlier one), except that a directory entry over a
// directory only updates its metadata.
//
// Known limits of the tar library (node-tar 7): PAX records reach us as UTF-8 text, so an
// xattr value that is not valid UTF-8 cannot be restored; such xattrs are skipped with a
// warning naming the entry. Names that are not valid UTF-8 are likewise read as UTF-8.

import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import * as sys from '../sys/index.ts';
import { HashTap, ImageError, layerCompression } from './oci.ts';
import { isCode } from '../errcode.ts';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, S_IFCHR, S_IFBLK, S_IFIFO } = fs.constants;

export interface UnpackResult {
  /** sha256 of the blob as read (compressed). */
  digest: string;
  /** Bytes of the blob. */
  blobSize: number;
  /** sha256 of the uncompressed tar stream: the layer's DiffID. */
  diffID: string;
  /** Bytes of the uncompressed tar stream. */
  tarSize: number;
  /** Bytes of file data written. */
  dataSize: number;
  entries: number;
  warnings: string[];
}

export interface UnpackOptions {
  /** The layer's media type, when known; else the compression is recognised by its magic bytes. */
  mediaType?: string;
  /** Called with the number of blob bytes read, for progress. */
  onBytes?: (n: number) => void;
  /** Names the layer in messages (e.g. its digest). */
  label: string;
}

interface Meta {
  mode: number;
  uid: number;
  gid: number;
  atime: sys.TimeArg;
  mtime: sys.TimeArg;
  xattrs: Map<string, Buffer>;
}

/** Thrown for a refused or broken entry. */
export class LayerError extends ImageError {}

function timeOf(d: Date | undefined): sys.TimeArg {
  if (!d || Number.isNaN(d.getTime())) return 'omit';
  const ms = BigInt(Math.round(d.getTime()));
  let sec = ms / 1000n;
  let rem = ms % 1000n;
  if (rem < 0n) {
    rem += 1000n;
    sec -= 1n;
  }
  return { sec, nsec: Number(rem) * 1_000_000 };
}

/**
 * The components of an entry's path, relative to the layer root ([] for the root itself).
 * Throws for absolute paths and `..`.
 */
export function entryParts(raw: string, what = 'path'): string[] {
  if (raw === '/' || /^(\.\/*)+$/.test(raw) || raw === '') return [];
  if (raw.startsWith('/')) throw new Error(`absolute ${what} '${raw}' is not allowed in a layer`);
  const parts = raw.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw new Error(`${what} '${raw}' has a '..' component`);
  return parts;
}

/** Does a relative symlink target, seen from the link's directory, climb above the root? */
export function symlinkEscapes(linkParts: string[], target: string): boolean {
  if (target.startsWith('/')) return false; // resolved in the container's root
  const at = linkParts.slice(0, -1);
  for (const c of target.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (at.length === 0) return true;
      at.pop();
    } else at.push(c);
  }
  return false;
}

const XATTR_KEY = 'SCHILY.xattr.';

/**
 * SCHILY.xattr.* records of PAX extended headers (node-tar hands us their text). Returns null
 * when a record's length does not match its bytes: the header held bytes that are not UTF-8.
 */
export function paxXattrs(texts: string[]): Map<string, Buffer> | null {
  const out = new Map<string, Buffer>();
  for (const text of texts) {
    if (!/^[0-9]+ /.test(text)) continue; // a GNU long name, not PAX records
    if (text.includes('\uFFFD')) return null;
    const buf = Buffer.from(text, 'utf8');
    let pos = 0;
    while (pos < buf.length) {
      const sp = buf.indexOf(0x20, pos);
      if (sp < 0) break;
      const len = Number(buf.subarray(pos, sp).toString('latin1'));
      if (!Number.isSafeInteger(len) || len <= sp - pos + 1 || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) return null;
      const body = buf.subarray(sp + 1, pos + len - 1);
      const eq = body.indexOf(0x3d);
      if (eq > 0) {
        const key = body.subarray(0, eq).toString('utf8');
        if (key.startsWith(XATTR_KEY)) out.set(key.slice(XATTR_KEY.length), Buffer.from(body.subarray(eq + 1)));
      }
      pos += len;
    }
  }
  return out;
}

function isOverlayPrivate(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');
}

/** The sniffed compression of a blob file from its first bytes. */
function sniff(file: string): 'gzip' | 'zstd' | 'none' {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(4);
    const n = fs.readSync(fd, b, 0, 4, 0);
    if (n >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (n >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    return 'none';
  } finally {
    fs.closeSync(fd);
  }
}

class Unpacker {
  private readonly knownDirs = new Set<string>(['']);
  private readonly dirMeta = new Map<string, Meta>();
  private pendingMeta: string[] = [];
  failure: Error | null = null;
  entries = 0;
  dataSize = 0;
  readonly warnings: string[] = [];

  constructor(
    private readonly root: string,
    private readonly label: string,
  ) {}

  private abs(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }

  private refuse(raw: string, why: string): never {
    throw new LayerError(`layer ${this.label}: entry '${raw}': ${why}`);
  }

  private warn(raw: string, why: string): void {
    if (this.warnings.length < 50) this.warnings.push(`layer ${this.label}: entry '${raw}': ${why}`);
  }

  onMeta(text: string): void {
    this.pendingMeta.push(text);
  }

  onEntry(entry: ReadEntry): void {
    const metas = this.pendingMeta;
    this.pendingMeta = [];
    if (this.failure) {
      entry.resume();
      return;
    }
    try {
      this.entries++;
      this.handle(entry, metas);
    } catch (e) {
      this.failure = e instanceof LayerError ? e : new LayerError(`layer ${this.label}: entry '${entry.path}': ${(e as Error).message}`);
      entry.resume();
    }
  }

  /** Make sure every directory above `parts` is a real directory (creating missing ones). */
  private parents(raw: string, parts: string[]): void {
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (this.knownDirs.has(rel)) continue;
      const abs = this.abs(rel);
      let st: fs.Stats | null = null;
      try {
        st = fs.lstatSync(abs);
      } catch (e) {
        if (!isCode(e, 'ENOENT')) throw e;
      }
      if (st === null) {
        fs.mkdirSync(abs, { mode: 0o755 });
        fs.chmodSync(abs, 0o755); // the umask may have taken bits away
      } else if (st.isSymbolicLink()) {
        this.refuse(raw, `'${rel}' is a symlink: an entry may not be written through a symlink`);
      } else if (!st.isDirectory()) {
        this.refuse(raw, `'${rel}' is not a directory`);
      }
      this.knownDirs.add(rel);
    }
  }

  /** Remove whatever is at rel (for an entry that replaces it). */
  private clear(rel: string, keepDir: boolean): 'dir' | 'none' {
    const abs = this.abs(rel);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch (e) {
      if (isCode(e, 'ENOENT')) return 'none';
      throw e;
    }
    if (st.isDirectory()) {
      if (keepDir) return 'dir';
      fs.rmSync(abs, { recursive: true, force: true });
      for (const set of [this.knownDirs, this.dirMeta]) {
        for (const k of [...set.keys()]) if (k === rel || k.startsWith(rel + '/')) set.delete(k);
      }
      return 'none';
    }
    fs.unlinkSync(abs);
    return 'none';
  }

  private metaOf(entry: ReadEntry, raw: string, metas: string[], defMode: number): Meta {
    let xattrs = new Map<string, Buffer>();
    if (metas.length > 0 && entry.extended) {
      const x = paxXattrs(metas);
      if (x === null) this.warn(raw, 'extended attributes not restored: its PAX header is not valid UTF-8 (binary values are not supported)');
      else xattrs = x;
    }
    for (const name of [...xattrs.keys()]) {
      if (isOverlayPrivate(name)) {
        xattrs.delete(name);
        this.warn(raw, `overlay-private xattr '${name}' dropped (only .wh. entries mark whiteouts in an image)`);
      }
    }
    const mtime = timeOf(entry.mtime);
    return {
      mode: typeof entry.mode === 'number' ? entry.mode & 0o7777 : defMode,
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      mtime,
      atime: entry.atime ? timeOf(entry.atime) : mtime,
      xattrs,
    };
  }

  private setXattrs(raw: string, abs: string, x: Map<string, Buffer>): void {
    for (const [name, value] of x) {
      try {
        sys.lsetxattr(abs, name, value);
      } catch (e) {
        if (!isCode(e, 'ENOTSUP', 'EOPNOTSUPP', 'EPERM')) throw e;
        this.warn(raw, `xattr '${name}' not restored (${(e as NodeJS.ErrnoException).code})`);
      }
    }
  }

  /** Owner, mode, xattrs and times of a non-directory, in the order that keeps them all. */
  private finish(raw: string, abs: string, m: Meta, isLink: boolean): void {
    fs.lchownSync(abs, m.uid, m.gid);
    if (!isLink) fs.chmodSync(abs, m.mode); // after chown, which clears setuid/setgid
    this.setXattrs(raw, abs, m.xattrs); // after chown, which clears security.capability
    if (m.mtime !== 'omit') sys.utimensat(abs, m.atime, m.mtime, { nofollow: true });
  }

  private handle(entry: ReadEntry, metas: string[]): void {
    const raw = entry.path;
    let parts: string[];
    try {
      parts = entryParts(raw);
    } catch (e) {
      this.refuse(raw, (e as Error).message);
    }
    // PAX sparse files (GNU.sparse.*) would be written with their sparse map as content.
    if (entry.extended && metas.some((m) => /(^|\n)[0-9]+ GNU\.sparse\./.test(m))) this.refuse(raw, 'sparse files (GNU.sparse PAX records) are not supported');
    const rel = parts.join('/');
    const abs = this.abs(rel);
    const type = entry.type;
    if (rel === '') {
      if (type !== 'Directory' && type !== 'GNUDumpDir') this.refuse(raw, `the layer's root must be a directory, not a ${type}`);
      this.dirMeta.set('', this.metaOf(entry, raw, metas, 0o755));
      entry.resume();
      return;
    }
    this.parents(raw, parts);
    switch (type) {
      case 'Directory':
      case 'GNUDumpDir': {
        const m = this.metaOf(entry, raw, metas, 0o755);
        if (this.clear(rel, true) === 'none') fs.mkdirSync(abs, { mode: 0o700 });
        this.knownDirs.add(rel);
        this.dirMeta.set(rel, m);
        entry.resume();
        return;
      }
      case 'File':
      case 'OldFile':
      case 'ContiguousFile': {
        const m = this.metaOf(entry, raw, metas, 0o644);
        this.clear(rel, false);
        const fd = fs.openSync(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
        let closed = false;
        const close = (): void => {
          if (!closed) {
            closed = true;
            fs.closeSync(fd);
          }
        };
        entry.on('data', (chunk: Buffer) => {
          if (this.failure) return;
          try {
            let off = 0;
            while (off < chunk.length) off += fs.writeSync(fd, chunk, off);
            this.dataSize += chunk.length;
          } catch (e) {
            close();
            this.failure = new LayerError(`layer ${this.label}: entry '${raw}': ${(e as Error).message}`);
          }
        });
        entry.on('end', () => {
          if (this.failure) return close();
          try {
            fs.fchownSync(fd, m.uid, m.gid);
            fs.fchmodSync(fd, m.mode);
            close();
            this.setXattrs(raw, abs, m.xattrs);
            if (m.mtime !== 'omit') sys.utimensat(abs, m.atime, m.mtime, { nofollow: true });
          } catch (e) {
            close();
            this.failure = new LayerError(`layer ${this.label}: entry '${raw}': ${(e as Error).message}`);
          }
        });
        return;
      }
      case 'SymbolicLink': {
        const target = entry.linkpath ?? '';
        if (target === '') this.refuse(raw, 'symlink with an empty target');
        if (symlinkEscapes(parts, target)) this.refuse(raw, `symlink target '${target}' points out of the layer`);
        const m = this.metaOf(entry, raw, metas, 0o777);
        this.clear(rel, false);
        fs.symlinkSync(target, abs);
        this.finish(raw, abs, m, true);
        entry.resume();
        return;
      }
      case 'Link': {
        const linkpath = entry.linkpath ?? '';
        let tparts: string[];
        try {
          tparts = entryParts(linkpath, 'hard link target');
        } catch (e) {
          this.refuse(raw, `${(e as Error).message}: a hard link must point into the layer`);
        }
        if (tparts.length === 0) this.refuse(raw, 'hard link to the layer root');
        const trel = tparts.join('/');
        for (let i = 1; i < tparts.length; i++) {
          const p = tparts.slice(0, i).join('/');
          if (this.knownDirs.has(p)) continue;
          let st: fs.Stats;
          try {
            st = fs.lstatSync(this.abs(p));
          } catch {
            this.refuse(raw, `hard link target '${linkpath}' does not exist in the layer`);
          }
          if (st.isSymbolicLink()) this.refuse(raw, `hard link target '${linkpath}' goes through the symlink '${p}'`);
          if (!st.isDirectory()) this.refuse(raw, `hard link target '${linkpath}': '${p}' is not a directory`);
        }
        let tst: fs.Stats;
        try {
          tst = fs.lstatSync(this.abs(trel));
        } catch {
          this.refuse(raw, `hard link target '${linkpath}' does not exist in the layer (yet)`);
        }
        if (tst.isDirectory()) this.refuse(raw, `hard link target '${linkpath}' is a directory`);
        if (trel === rel) {
          entry.resume();
          return;
        }
        this.clear(rel, false);
        fs.linkSync(this.abs(trel), abs);
        entry.resume();
        return;
      }
      case 'CharacterDevice':
      case 'BlockDevice':
      case 'FIFO': {
        const m = this.metaOf(entry, raw, metas, 0o644);
        this.clear(rel, false);
        const kind = type === 'CharacterDevice' ? S_IFCHR : type === 'BlockDevice' ? S_IFBLK : S_IFIFO;
        const dev = type === 'FIFO' ? 0n : sys.makedev(entry.header.devmaj ?? 0, entry.header.devmin ?? 0);
        sys.mknod(abs, kind | 0o600, dev);
        this.finish(raw, abs, m, false);
        entry.resume();
        return;
      }
      default:
        this.refuse(raw, `unsupported entry type '${type}'`);
    }
  }

  /** Directory metadata last (creating entries inside changes a directory's times), deepest first. */
  finishDirs(): void {
    const dirs = [...this.dirMeta.keys()].sort((a, b) => (b === '' ? -1 : b.split('/').length) - (a === '' ? -1 : a.split('/').length));
    for (const rel of dirs) {
      const m = this.dirMeta.get(rel)!;
      const abs = this.abs(rel);
      fs.lchownSync(abs, m.uid, m.gid);
      fs.chmodSync(abs, m.mode);
      this.setXattrs(rel || '/', abs, m.xattrs);
      if (m.mtime !== 'omit') sys.utimensat(abs, m.atime, m.mtime, { nofollow: true });
    }
  }
}

/** The DiffID of a layer blob (sha256 of its uncompressed tar), without unpacking it. */
export async function layerDiffID(blobFile: string, mediaType: string | undefined, label: string): Promise<string> {
  let compression = layerCompression(mediaType);
  const sniffed = sniff(blobFile);
  if (compression === null || compression === 'none') compression = sniffed;
  if (compression === 'zstd') throw new ImageError(`layer ${label}: zstd-compressed layers are not supported (Node 20 has no zstd); re-compress it with gzip`);
  const tap = new HashTap();
  const sink = async (source: AsyncIterable<Buffer>): Promise<void> => {
    for await (const _ of source) {
      /* hashed by the tap */
    }
  };
  try {
    if (compression === 'gzip') await pipeline(fs.createReadStream(blobFile), zlib.createGunzip(), tap, sink);
    else await pipeline(fs.createReadStream(blobFile), tap, sink);
  } catch (e) {
    throw new LayerError(`layer ${label}: corrupt gzip data (${(e as Error).message})`);
  }
  return tap.digest();
}

/**
 * Unpack the layer blob at `blobFile` into `dest` (created here; must not exist). Computes the
 * blob's digest and the DiffID on the way; the caller compares them with what the manifest and
 * config say, and throws `dest` away on any error.
 */
export async function unpackLayer(blobFile: string, dest: string, opts: UnpackOptions): Promise<UnpackResult> {
  let compression = layerCompression(opts.mediaType);
  const sniffed = sniff(blobFile);
  if (compression === null || compression === 'none') compression = sniffed === 'gzip' ? 'gzip' : sniffed === 'zstd' ? 'zstd' : 'none';
  if (compression === 'zstd') throw new ImageError(`layer ${opts.label}: zstd-compressed layers are not supported (Node 20 has no zstd); re-compress it with gzip`);
  if (compression === 'gzip' && sniffed !== 'gzip') throw new ImageError(`layer ${opts.label}: declared as gzip-compressed but is not gzip data`);

  fs.mkdirSync(dest, { mode: 0o755 });
  const u = new Unpacker(dest, opts.label);
  const parser = new Parser({ strict: false, brotli: false, zstd: false });
  let allZero = true;
  parser.on('meta', (text: string) => u.onMeta(text));
  parser.on('entry', (e: ReadEntry) => u.onEntry(e));
  // Missing end-of-archive blocks are accepted (as Go's archive/tar does), and so is a last
  // entry that lacks only the zero padding after its data: umoci 0.4.7 writes layers like that.
  // A stream that ends inside an entry's data or inside a header is refused.
  let paddingOnly = false;
  parser.on('warn', (code: string, message: string, data: { entry?: ReadEntry }) => {
    if (code === 'TAR_BAD_ARCHIVE' && /Unrecognized archive format/.test(message) && u.entries === 0 && allZero) return; // an empty layer
    const have = /only ([0-9]+) available/.exec(message);
    if (code === 'TAR_BAD_ARCHIVE' && have && data?.entry && Number(have[1]) >= data.entry.remain) {
      paddingOnly = true;
      return;
    }
    u.failure ??= new LayerError(`layer ${opts.label}: not a valid tar stream (${message})`);
  });
  // node-tar skips entry types it does not know (sparse files, volume labels, ...) and meta
  // headers over its size limit: either would silently change what the layer holds.
  parser.on('ignoredEntry', (e: ReadEntry) => {
    u.failure ??= new LayerError(`layer ${opts.label}: entry '${e.path}': unsupported entry type '${e.type}'${e.meta ? ' (too large)' : ''}`);
  });
  parser.on('error', (e: Error) => {
    u.failure ??= new LayerError(`layer ${opts.label}: not a valid tar stream (${e.message})`);
  });
  const ended = new Promise<void>((resolve) => parser.on('end', () => resolve()));

  const blobTap = new HashTap(opts.onBytes);
  const tarTap = new HashTap();
  const sink = async (source: AsyncIterable<Buffer>): Promise<void> => {
    for await (const chunk of source) {
      if (u.failure) throw u.failure;
      if (allZero && u.entries === 0) allZero = !chunk.some((b) => b !== 0);
      if (!parser.write(chunk)) await Promise.race([once(parser, 'drain'), ended]);
      if (u.failure) throw u.failure;
    }
    parser.end();
    await ended;
    if (u.failure) throw u.failure;
    if (tarTap.bytes % 512 !== 0 && !paddingOnly) throw new LayerError(`layer ${opts.label}: not a valid tar stream (it ends inside a header)`);
  };
  const src = fs.createReadStream(blobFile, { highWaterMark: 1 << 20 });
  try {
    if (compression === 'gzip') await pipeline(src, blobTap, zlib.createGunzip(), tarTap, sink);
    else await pipeline(src, blobTap, tarTap, sink);
  } catch (e) {
    if (u.failure) throw u.failure; // what stopped the sink (the pipeline may report the abort it caused instead)
    if (e instanceof ImageError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code.startsWith('Z_')) throw new LayerError(`layer ${opts.label}: corrupt gzip data (${(e as Error).message})`);
    throw new LayerError(`layer ${opts.label}: ${(e as Error).message}`);
  }
  u.finishDirs();
  return {
    digest: blobTap.digest(),
    blobSize: blobTap.bytes,
    diffID: tarTap.digest(),
    tarSize: tarTap.bytes,
    dataSize: u.dataSize,
    entries: u.entries,
    warnings: u.warnings,
  };
}
