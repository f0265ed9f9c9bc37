import { closeSync, constants as fsc, ftruncateSync, type BigIntStats } from 'node:fs';
import * as sys from '../sys/index.ts';
import * as b from './bytes.ts';
import { chmodSync, lchownSync, lstatSync, openSync, readlinkSync } from './bytes.ts';
import { fsErr } from './errors.ts';
import {
  PROT_ANY, PROT_FLAGS, PROT_IMMUTABLE, FS_XFLAG_APPEND, FS_XFLAG_IMMUTABLE, protXflags, realFlags, realFsxattr,
  setRealFlags, setRealFsxattr, xflagsProt, type Fsxattr,
} from './fileattr.ts';
import { checkPath } from './layer.ts';
import type { Entry } from './lookup.ts';
import type { Stack } from './stack.ts';

/**
 * An object's own attributes through the union (the kernel's fs/overlayfs/inode.c): getattr
 * and its inode numbers, readlink, access, the setattr family (truncate, chmod, chown,
 * utimens), xattrs, and the inode flags of lsattr/chattr (the rules of those: ./fileattr.ts).
 *
 * Guarantees: reading answers from the layer that serves the object, attributes always read
 * fresh (never from the Resolver's cache); a change copies the object up first and is then
 * made on the upper copy only; a refused change copies nothing up — the type, EROFS and
 * protection-flag checks come before the copy-up, in the VFS's order; overlay-private xattrs
 * are neither shown nor settable.
 *
 * Across an await: each change awaits its copy-up, and only that. The entry checked before it
 * may be stale afterwards (the copy is a new object); the change is made on the upper path
 * whatever it was. Callers: hold the object still across the call as the VFS does (the inode
 * lock for setattr and setxattr), so no rename or removal of it lands between the copy-up
 * and the change.
 */

/** Attributes of a union object, with 64-bit numbers and nanosecond times. */
export interface Attr {
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blksize: number;
  blocks: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export type TimeArg = sys.TimeArg;

/**
 * Stable inode numbers. When every layer lives on one filesystem, the real inode number of the
 * object that serves a path is already unique across the union, so it is used as it is (hard
 * links keep sharing a number, and a rename keeps it). When the layers span filesystems, the
 * layer's position is folded into the high bits so numbers from different filesystems cannot
 * collide.
 */
export class InodeMapper {
  private readonly sameFs: boolean;
  constructor(layerDevs: bigint[]) {
    this.sameFs = new Set(layerDevs).size <= 1;
  }

  ino(layerIndex: number, st: BigIntStats): bigint {
    if (this.sameFs) return st.ino;
    return (BigInt(layerIndex + 1) << 48n) ^ st.ino;
  }
}

export function toAttr(st: BigIntStats, ino: bigint): Attr {
  return {
    ino,
    mode: Number(st.mode),
    nlink: Number(st.nlink),
    uid: Number(st.uid),
    gid: Number(st.gid),
    rdev: Number(st.rdev),
    size: Number(st.size),
    blksize: Number(st.blksize),
    blocks: Number(st.blocks),
    atimeNs: st.atimeNs,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
  };
}

// ---------------------------------------------------------------- reading

export function getattr(s: Stack, path: string): Attr {
  const a = lookupAttr(s, path);
  if (!a) throw fsErr('ENOENT');
  return a;
}

/** The attributes of path, or null when the union has nothing there (a lookup's answer). */
export function lookupAttr(s: Stack, path: string): Attr | null {
  const [e, st] = s.resolver.findFresh(checkPath(path));
  return e && attrOf(s, e, st);
}

/** Attributes of an entry; `fresh`: the entry's lstat, when the lookup has just read it. */
function attrOf(s: Stack, e: Entry, fresh: BigIntStats | null = null): Attr {
  const st = fresh ?? lstatSync(s.layers[e.layer].path(e.path), { bigint: true });
  const a = toAttr(st, s.inodes.ino(e.layer, st));
  // As the kernel does: a merged directory reports one link (tools then don't assume
  // that nlink-2 counts its subdirectories).
  if (e.type === 'dir' && e.dirLayers.length > 1) a.nlink = 1;
  return a;
}

export function readlink(s: Stack, path: string): Buffer {
  const e = s.resolver.get(checkPath(path));
  if (e.type !== 'symlink') throw fsErr('EINVAL');
  return readlinkSync(s.layers[e.layer].path(path));
}

export function access(s: Stack, path: string, mode: number): void {
  const e = s.resolver.get(checkPath(path));
  if ((mode & fsc.W_OK) && s.readonly) throw fsErr('EROFS');
  if (mode & fsc.W_OK) s.prot.guard(e, PROT_IMMUTABLE);
}

export function getxattr(s: Stack, path: string, name: string): Buffer {
  const e = s.resolver.get(checkPath(path));
  if (s.wf.isPrivateXattr(name)) throw fsErr('EOPNOTSUPP');
  const v = b.lgetxattr(s.layers[e.layer].path(path), name);
  if (v === null) throw fsErr('ENODATA');
  return v;
}

export function listxattr(s: Stack, path: string): string[] {
  const e = s.resolver.get(checkPath(path));
  return b.llistxattr(s.layers[e.layer].path(path)).filter((n) => !s.wf.isPrivateXattr(n));
}

// ---------------------------------------------------------------- changes (each awaits its copy-up)

export async function truncate(s: Stack, path: string, size: number): Promise<void> {
  // Refused operations must not copy up: check the type first, as the VFS does.
  const e = s.resolver.get(checkPath(path));
  if (e.type === 'dir') throw fsErr('EISDIR');
  if (e.type !== 'file') throw fsErr('EINVAL');
  s.writable();
  s.prot.guard(e, PROT_ANY);
  await s.copyUp(path);
  const fd = openSync(s.upperPath(path), fsc.O_WRONLY | fsc.O_NOFOLLOW);
  try {
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
}

export async function chmod(s: Stack, path: string, mode: number): Promise<void> {
  const e = s.resolver.get(checkPath(path));
  if (e.type === 'symlink') throw fsErr('EOPNOTSUPP');
  s.writable();
  s.prot.guard(e, PROT_ANY);
  // A copy made for this chmod is made with the new mode.
  if (!(await s.copyup!.ensureWithMode(path, mode))) chmodSync(s.upperPath(path), mode & 0o7777);
}

export async function chown(s: Stack, path: string, uid: number, gid: number): Promise<void> {
  const e = s.resolver.get(checkPath(path));
  s.writable();
  s.prot.guard(e, PROT_ANY);
  await s.copyUp(path);
  lchownSync(s.upperPath(path), uid, gid);
}

export async function utimens(s: Stack, path: string, atime: TimeArg, mtime: TimeArg): Promise<void> {
  // notify_change: "now" for both (touch) is refused on an immutable object, any other
  // times (given, or "now" for one of them) on an append-only one too.
  const e = s.resolver.get(checkPath(path));
  s.writable();
  if (atime === 'now' && mtime === 'now') s.prot.guard(e, PROT_IMMUTABLE);
  else if (atime !== 'omit' || mtime !== 'omit') s.prot.guard(e, PROT_ANY);
  await s.copyUp(path);
  b.utimensat(s.upperPath(path), atime, mtime, { nofollow: true });
}

export async function setxattr(s: Stack, path: string, name: string, value: Buffer, flags: number): Promise<void> {
  checkPath(path);
  if (s.wf.isPrivateXattr(name)) throw fsErr('EOPNOTSUPP');
  const e = s.resolver.get(path);
  s.writable();
  s.prot.guard(e, PROT_ANY);
  await s.copyUp(path);
  b.lsetxattr(s.upperPath(path), name, value, flags);
}

export async function removexattr(s: Stack, path: string, name: string): Promise<void> {
  checkPath(path);
  if (s.wf.isPrivateXattr(name)) throw fsErr('EOPNOTSUPP');
  const e = s.resolver.get(path);
  s.writable();
  s.prot.guard(e, PROT_ANY);
  // Nothing to remove means nothing to copy up.
  if (b.lgetxattr(s.layers[e.layer].path(path), name) === null) throw fsErr('ENODATA');
  await s.copyUp(path);
  b.lremovexattr(s.upperPath(path), name);
}

// ---------------------------------------------------------------- inode flags (./fileattr.ts)

/** FS_IOC_GETFLAGS: the flags of the object in the layer that serves it, with its protection flags. */
export function getFlags(s: Stack, path: string): number {
  const e = flagsEntry(s, path);
  return realFlags(s.layers[e.layer].path(path)) | s.prot.of(e);
}

/**
 * FS_IOC_SETFLAGS: copy up; the protection flags go into the upper object's protattr, the
 * rest onto the upper object. (The caller's right to change them — owner, and
 * CAP_LINUX_IMMUTABLE for the protection flags — is the kernel's to check: the VFS does it
 * before a FUSE request is sent.)
 */
export async function setFlags(s: Stack, path: string, flags: number): Promise<void> {
  checkPath(path);
  s.writable();
  flagsEntry(s, path);
  const up = await s.copyUp(path);
  const abs = s.upperPath(path);
  s.prot.set(up, abs, flags);
  setRealFlags(abs, flags & ~PROT_FLAGS);
}

/** FS_IOC_FSGETXATTR: getFlags in the struct fsxattr form. */
export function getFsxattr(s: Stack, path: string): Fsxattr {
  const e = flagsEntry(s, path);
  const x = realFsxattr(s.layers[e.layer].path(path));
  x.xflags |= protXflags(s.prot.of(e));
  return x;
}

/** FS_IOC_FSSETXATTR: setFlags in the struct fsxattr form. */
export async function setFsxattr(s: Stack, path: string, x: Fsxattr): Promise<void> {
  checkPath(path);
  s.writable();
  flagsEntry(s, path);
  const up = await s.copyUp(path);
  const abs = s.upperPath(path);
  s.prot.set(up, abs, xflagsProt(x.xflags));
  setRealFsxattr(abs, { ...x, xflags: x.xflags & ~(FS_XFLAG_APPEND | FS_XFLAG_IMMUTABLE) });
}

/** Symlinks and special files have no inode flags through overlayfs: ENOTTY, nothing copied up. */
function flagsEntry(s: Stack, path: string): Entry {
  const e = s.resolver.get(checkPath(path));
  if (e.type !== 'file' && e.type !== 'dir') throw fsErr('ENOTTY');
  return e;
}
