import {
  closeSync, constants as fsc, fdatasync as fdatasyncCb, fstatSync, fsync as fsyncCb, ftruncateSync, read as readCb,
  write as writeCb, writeSync,
} from 'node:fs';
import { promisify } from 'node:util';
import * as sys from '../sys/index.ts';
import { openSync } from './bytes.ts';
import { fsErr } from './errors.ts';
import { PROT_APPEND, PROT_IMMUTABLE } from './fileattr.ts';
import { toAttr, type Attr } from './inode.ts';
import { checkPath, isWithin } from './layer.ts';
import type { Stack } from './stack.ts';

/**
 * Open files (the kernel's fs/overlayfs/file.c): a handle is a descriptor on the layer object
 * that served its path when it was opened, and the path it follows.
 *
 * Guarantees:
 *  - opening for writing (or O_TRUNC) copies the object up first and opens the upper copy; a
 *    refused open (a directory, a symlink, a special file, EROFS, the protection flags) copies
 *    nothing up;
 *  - a handle opened on a lower file reads the upper copy once one is made (read, readFd,
 *    lseek, copyFileRange), as the kernel's overlay files do; its earlier descriptor stays open
 *    until release, since reads on it may still be in flight;
 *  - only a handle on an upper file changes anything (EBADF otherwise): the union never writes
 *    a lower;
 *  - a handle follows its path through renames (dir.ts calls moved()/swapped()) and keeps its
 *    file, without a path, when the name is removed (detach()).
 *
 * Across an await: open awaits the copy-up (the entry it checked may be stale after it; it
 * opens the entry the copy-up returned); read, a large write and fsync await their I/O, during
 * which other handles may open, follow a copy-up or be released. Callers: do not release a
 * handle while a call on it is in flight (the kernel never does: a request holds its file).
 */

/** Writes up to this size are made synchronously (see write). */
const SMALL_WRITE = 128 * 1024;
const pread = promisify(readCb);
const pwrite = promisify(writeCb);
const pfsync = promisify(fsyncCb);
const pfdatasync = promisify(fdatasyncCb);

export const O_ACCMODE = 3;
const FALLOC_FL_KEEP_SIZE = 1;
export const O_LARGEFILE = 0o100000; // x86_64
export const O_CLOEXEC = 0o2000000;

interface OpenFile {
  /** Union path; follows renames; '' once the name was removed. */
  path: string;
  fd: number;
  /** Whether fd is on the upper. */
  upper: boolean;
  /** Earlier fds of this handle (before a copy-up), closed at release. */
  retired: number[];
}

/** The table of open handles (a Stack's `files`). */
export class OpenFiles {
  private readonly files = new Map<number, OpenFile>();
  private nextFh = 1;

  add(f: OpenFile): number {
    const fh = this.nextFh++;
    this.files.set(fh, f);
    return fh;
  }

  /** The handle's file; EBADF when there is no such handle. */
  get(fh: number): OpenFile {
    const f = this.files.get(fh);
    if (!f) throw fsErr('EBADF');
    return f;
  }

  find(fh: number): OpenFile | undefined {
    return this.files.get(fh);
  }

  delete(fh: number): void {
    this.files.delete(fh);
  }

  get size(): number {
    return this.files.size;
  }

  /** Open handles below a path that was removed no longer follow a name. */
  detach(path: string): void {
    for (const f of this.files.values()) if (f.path && isWithin(f.path, path)) f.path = '';
  }

  /** The tree at src was renamed to dst: its handles follow. */
  moved(src: string, dst: string): void {
    for (const f of this.files.values()) {
      if (isWithin(f.path, src)) f.path = dst + f.path.slice(src.length);
    }
  }

  /** The trees at a and b were exchanged: their handles follow. */
  swapped(a: string, b: string): void {
    for (const f of this.files.values()) {
      if (isWithin(f.path, a)) f.path = b + f.path.slice(a.length);
      else if (isWithin(f.path, b)) f.path = a + f.path.slice(b.length);
    }
  }
}

/** Open an existing object; returns a handle for read/write/release. Awaits a copy-up. */
export async function open(s: Stack, path: string, flags: number): Promise<number> {
  checkPath(path);
  const writing = (flags & O_ACCMODE) !== fsc.O_RDONLY || (flags & fsc.O_TRUNC) !== 0;
  let e = s.resolver.get(path);
  if (e.type === 'dir' && writing) throw fsErr('EISDIR');
  // Layers are opened O_NOFOLLOW; refuse a symlink before copying it up for nothing.
  if (e.type === 'symlink') throw fsErr('ELOOP');
  // Special files are the kernel's business (it never sends their open to FUSE); a device
  // node in an untrusted layer is never opened by the daemon.
  if (e.type === 'other') throw fsErr('EPERM');
  if (writing) {
    s.writable();
    // As may_open refuses it: no writing an immutable file; an append-only one only appended
    // to, never truncated.
    const prot = s.prot.of(e);
    if (prot & PROT_IMMUTABLE) throw fsErr('EPERM');
    if ((prot & PROT_APPEND) && (((flags & O_ACCMODE) !== fsc.O_RDONLY && !(flags & fsc.O_APPEND)) || (flags & fsc.O_TRUNC))) {
      throw fsErr('EPERM');
    }
    e = await s.copyUp(path);
  }
  const fd = openSync(s.layers[e.layer].path(path), openFlags(flags), 0);
  return s.files.add({ path, fd, upper: s.layers[e.layer].isUpper, retired: [] });
}

export async function read(s: Stack, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
  const { bytesRead } = await pread(readFd(s, fh), buf, 0, len, pos);
  return bytesRead;
}

/**
 * The descriptor a read of handle `fh` reads from now, for callers that move the bytes
 * themselves (the FUSE adapter splices them). Valid until the handle's next call.
 */
export function readFd(s: Stack, fh: number): number {
  const f = s.files.get(fh);
  // A file opened while it was in a lower and copied up since reads the upper copy from
  // now on, as the kernel's overlay files do.
  if (!f.upper) followCopyUp(s, f);
  return f.fd;
}

export async function write(s: Stack, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
  const f = s.files.get(fh);
  if (!f.upper) throw fsErr('EBADF');
  // A small write lands in the page cache at once: doing it here costs less than the trip
  // through libuv's thread pool and back.
  if (len <= SMALL_WRITE) return writeSync(f.fd, buf, 0, len, pos);
  const { bytesWritten } = await pwrite(f.fd, buf, 0, len, pos);
  return bytesWritten;
}

export async function fsync(s: Stack, fh: number, datasync: boolean): Promise<void> {
  const f = s.files.get(fh);
  if (s.volatile || !f.upper) return;
  if (datasync) await pfdatasync(f.fd);
  else await pfsync(f.fd);
}

export function release(s: Stack, fh: number): void {
  const f = s.files.find(fh);
  if (!f) return;
  s.files.delete(fh);
  closeSync(f.fd);
  for (const old of f.retired) closeSync(old);
}

/** The attributes of the file an open handle serves (fstat after unlink). */
export function fgetattr(s: Stack, fh: number): Attr {
  const f = s.files.get(fh);
  const st = fstatSync(f.fd, { bigint: true });
  const e = s.resolver.find(f.path);
  return toAttr(st, e ? s.inodes.ino(e.layer, st) : st.ino);
}

/** fallocate(2) on an open file; only an upper file can change. */
export function fallocate(s: Stack, fh: number, mode: number, off: number, len: number): void {
  const f = s.files.get(fh);
  if (!f.upper) throw fsErr('EBADF');
  // vfs_fallocate: nothing on an immutable file; an append-only one may only grow.
  const prot = handleProt(s, f);
  if ((prot & PROT_IMMUTABLE) || ((prot & PROT_APPEND) && (mode & ~FALLOC_FL_KEEP_SIZE))) throw fsErr('EPERM');
  sys.fallocate(f.fd, mode, off, len);
}

/** lseek(2) with SEEK_DATA / SEEK_HOLE, answered from the file that serves the handle. */
export function lseek(s: Stack, fh: number, off: number, whence: number): number {
  const f = s.files.get(fh);
  if (!f.upper) followCopyUp(s, f);
  const r = sys.lseek(f.fd, off, whence);
  if (r === null) throw fsErr('ENXIO');
  return Number(r);
}

/** copy_file_range(2) between two open files: the kernel copies (or reflinks) in the layers. */
export function copyFileRange(s: Stack, fhIn: number, offIn: number, fhOut: number, offOut: number, len: number, flags: number): number {
  const src = s.files.get(fhIn);
  if (!src.upper) followCopyUp(s, src);
  const dst = s.files.get(fhOut);
  if (!dst.upper) throw fsErr('EBADF');
  if (handleProt(s, dst) & PROT_IMMUTABLE) throw fsErr('EPERM');
  return sys.copyFileRange(src.fd, offIn, dst.fd, offOut, len, flags);
}

export function ftruncate(s: Stack, fh: number, size: number): void {
  const f = s.files.get(fh);
  if (!f.upper) throw fsErr('EBADF');
  // do_ftruncate refuses an append-only file; an immutable one opened before it became so is
  // truncated (the VFS checks nothing more through an open file).
  if (handleProt(s, f) & PROT_APPEND) throw fsErr('EPERM');
  ftruncateSync(f.fd, size);
}

/**
 * The descriptor of an open handle whose file is in the upper layer (null: in a lower, or
 * not open): a file the kernel may read and write directly (FUSE passthrough), since it is
 * the one the union will use for this handle from now on. A lower file is not: a copy-up
 * moves a handle open on it to the upper copy (see readFd()).
 */
export function upperFd(s: Stack, fh: number): number | null {
  const f = s.files.find(fh);
  return f && f.upper ? f.fd : null;
}

/** The protection flags of an open handle's object, while its name still leads to it. */
function handleProt(s: Stack, f: OpenFile): number {
  if (!f.path) return 0;
  try {
    const e = s.resolver.find(f.path);
    return e ? s.prot.of(e) : 0;
  } catch {
    return 0; // its name no longer resolves (ENOTDIR)
  }
}

function followCopyUp(s: Stack, f: OpenFile): void {
  if (!f.path) return;
  const e = s.resolver.find(f.path);
  if (!e || !s.layers[e.layer].isUpper || e.type !== 'file') return;
  const fd = openSync(s.upperPath(f.path), fsc.O_RDONLY | fsc.O_NOFOLLOW);
  // Reads on the old fd may still be in flight: it is closed at release, not now.
  f.retired.push(f.fd);
  f.fd = fd;
  f.upper = true;
}

/** open(2) flags for a layer's file: never follow a symlink; append positions come from the kernel's offsets. */
export function openFlags(flags: number): number {
  return (flags & ~(fsc.O_APPEND | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOCTTY | (fsc.O_DIRECT ?? 0))) | fsc.O_NOFOLLOW;
}
