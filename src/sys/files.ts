// File syscalls Node's `fs` lacks: mknod, xattrs (never following symlinks), renameat2,
// utimensat with nanoseconds, the one-call copy-up of a small file, inode flags, statfs, lseek
// with SEEK_DATA/SEEK_HOLE, fallocate, copy_file_range, flock and syncfs. The per-request ones
// (xattrs, renameat2, utimensat, copy-up, inode flags) go through the own addon when it is
// built, the rest (and those too without the addon) through koffi (libc.ts).

import koffi from 'koffi';
import * as nodeFs from 'node:fs';
import os from 'node:os';
import { cName, cPath, checkInt, fail, failErrno, fastPath, invalidArg, sysError } from './errors.ts';
import { fast, lib, procLib, type PathArg } from './libc.ts';

/** A point in time with nanosecond precision (struct timespec). */
export interface Timespec {
  sec: bigint;
  /** 0 ..= 999_999_999 */
  nsec: number;
}

export type TimeArg = Timespec | 'now' | 'omit';

export interface StatFs {
  type: bigint;
  bsize: bigint;
  blocks: bigint;
  bfree: bigint;
  bavail: bigint;
  files: bigint;
  ffree: bigint;
  /** f_fsid.__val[0] | f_fsid.__val[1] << 32 (same composition as glibc's statvfs f_fsid). */
  fsid: bigint;
  namelen: bigint;
  frsize: bigint;
  /** Raw f_flags (ST_* bits; includes ST_VALID = 0x20). */
  flags: bigint;
}

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const UTIME_NOW = (1 << 30) - 1;
const UTIME_OMIT = (1 << 30) - 2;
const NS_PER_SEC = 1_000_000_000n;
const STATFS_SIZE = 120; // sizeof(struct statfs) on x86_64

/** NUL-separated names (llistxattr's answer) as strings. */
function splitNames(buf: Buffer, got: number): string[] {
  const names: string[] = [];
  let start = 0;
  for (let i = 0; i < got; i++) {
    if (buf[i] === 0) {
      if (i > start) names.push(buf.toString('utf8', start, i));
      start = i + 1;
    }
  }
  return names;
}

// ---------------------------------------------------------------------------
// mknod

/** glibc's gnu_dev_makedev encoding of a device number. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(checkInt('major', major, 0, 0xffff_ffff));
  const mi = BigInt(checkInt('minor', minor, 0, 0xffff_ffff));
  return ((ma & 0xfffn) << 8n) | ((ma & 0xffff_f000n) << 32n) | (mi & 0xffn) | ((mi & 0xffff_ff00n) << 12n);
}

/** mknod(2). `mode` includes the file type bits (S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, S_IFREG). */
export function mknod(path: PathArg, mode: number, dev: number | bigint = 0): void {
  checkInt('mode', mode, 0, 0xffff_ffff);
  const d = BigInt(dev);
  if (d < 0n || d > 0xffff_ffff_ffff_ffffn) throw new RangeError(`dev out of range: ${d}`);
  if (lib().mknod(cPath(path), mode, d) !== 0) fail('mknod', path);
}

// ---------------------------------------------------------------------------
// xattrs (never follow symlinks)

/** Value of extended attribute `name`, or null if the file has no such attribute (ENODATA). */
export function lgetxattr(path: PathArg, name: string): Buffer | null {
  const f = fast();
  if (f) {
    const r = f.lgetxattr(fastPath(path), cName(name));
    if (typeof r !== 'number') return r;
    if (r === -os.constants.errno.ENODATA) return null;
    failErrno(-r, 'lgetxattr', path);
  }
  const c = lib();
  const p = cPath(path);
  const n = cName(name);
  for (;;) {
    const size = c.lgetxattr(p, n, null, 0);
    if (size < 0) break;
    if (size === 0) return Buffer.alloc(0);
    const buf = Buffer.alloc(size);
    const got = c.lgetxattr(p, n, buf, size);
    if (got >= 0) return got === size ? buf : buf.subarray(0, got);
    if (koffi.errno() !== os.constants.errno.ERANGE) break; // ERANGE: value grew meanwhile, retry
  }
  if (koffi.errno() === os.constants.errno.ENODATA) return null;
  fail('lgetxattr', path);
}

/** Names of all extended attributes of `path` (those visible to the caller). */
export function llistxattr(path: PathArg): string[] {
  const f = fast();
  if (f) {
    const r = f.llistxattr(fastPath(path));
    if (typeof r !== 'number') return splitNames(r, r.length);
    failErrno(-r, 'llistxattr', path);
  }
  const c = lib();
  const p = cPath(path);
  for (;;) {
    const size = c.llistxattr(p, null, 0);
    if (size < 0) break;
    if (size === 0) return [];
    const buf = Buffer.alloc(size);
    const got = c.llistxattr(p, buf, size);
    if (got >= 0) return splitNames(buf, got);
    if (koffi.errno() !== os.constants.errno.ERANGE) break;
  }
  fail('llistxattr', path);
}

/** Set extended attribute `name`. `flags`: 0, XATTR_CREATE or XATTR_REPLACE. Strings are stored as UTF-8. */
export function lsetxattr(path: PathArg, name: string, value: Buffer | string, flags = 0): void {
  const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (!Buffer.isBuffer(v)) throw invalidArg('value', value, 'must be a string or Buffer');
  const f = fast();
  if (f) {
    const r = f.lsetxattr(fastPath(path), cName(name), v, flags);
    if (r < 0) failErrno(-r, 'lsetxattr', path);
    return;
  }
  if (lib().lsetxattr(cPath(path), cName(name), v, v.length, flags) !== 0) fail('lsetxattr', path);
}

export function lremovexattr(path: PathArg, name: string): void {
  const f = fast();
  if (f) {
    const r = f.lremovexattr(fastPath(path), cName(name));
    if (r < 0) failErrno(-r, 'lremovexattr', path);
    return;
  }
  if (lib().lremovexattr(cPath(path), cName(name)) !== 0) fail('lremovexattr', path);
}

// ---------------------------------------------------------------------------
// renameat2

/** renameat2(2) relative to the cwd. `flags`: RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT. */
export function renameat2(oldPath: PathArg, newPath: PathArg, flags: number): void {
  const f = fast();
  if (f) {
    const r = f.renameat2(fastPath(oldPath, 'oldPath'), fastPath(newPath, 'newPath'), flags);
    if (r < 0) failErrno(-r, 'renameat2', oldPath, newPath);
    return;
  }
  const r = lib().renameat2(AT_FDCWD, cPath(oldPath, 'oldPath'), AT_FDCWD, cPath(newPath, 'newPath'), flags);
  if (r !== 0) fail('renameat2', oldPath, newPath);
}

// ---------------------------------------------------------------------------
// utimensat

/** Split a nanosecond count (e.g. lstat's bigint `mtimeNs`) into a Timespec; works for negative times too. */
export function timespecFromNs(ns: bigint): Timespec {
  let sec = ns / NS_PER_SEC; // truncates toward zero
  let nsec = ns % NS_PER_SEC;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS_PER_SEC;
  }
  return { sec, nsec: Number(nsec) };
}

/** [sec, nsec] for the addon; null when the seconds are beyond a Number's exact range. */
function fastTime(t: TimeArg, name: string): [number, number] | null {
  if (t === 'now') return [0, UTIME_NOW];
  if (t === 'omit') return [0, UTIME_OMIT];
  if (typeof t !== 'object' || t === null) throw invalidArg(name, t, "must be a Timespec, 'now' or 'omit'");
  checkInt(`${name}.nsec`, t.nsec, 0, 999_999_999);
  const sec = Number(t.sec);
  return Number.isSafeInteger(sec) ? [sec, t.nsec] : null;
}

function encodeTime(buf: Buffer, offset: number, t: TimeArg, name: string): void {
  if (t === 'now' || t === 'omit') {
    buf.writeBigInt64LE(0n, offset);
    buf.writeBigInt64LE(BigInt(t === 'now' ? UTIME_NOW : UTIME_OMIT), offset + 8);
    return;
  }
  if (typeof t !== 'object' || t === null) throw invalidArg(name, t, "must be a Timespec, 'now' or 'omit'");
  checkInt(`${name}.nsec`, t.nsec, 0, 999_999_999);
  buf.writeBigInt64LE(BigInt(t.sec), offset);
  buf.writeBigInt64LE(BigInt(t.nsec), offset + 8);
}

/**
 * Set access and modification times with nanosecond precision.
 * By default does not follow a final symlink (AT_SYMLINK_NOFOLLOW), so it works on symlinks themselves.
 */
export function utimensat(path: PathArg, atime: TimeArg, mtime: TimeArg, opts: { nofollow?: boolean } = {}): void {
  const f = fast();
  const a = f && fastTime(atime, 'atime');
  const m = a && fastTime(mtime, 'mtime');
  if (f && a && m) {
    const r = f.utimensat(fastPath(path), a[0], a[1], m[0], m[1], opts.nofollow === false ? 0 : AT_SYMLINK_NOFOLLOW);
    if (r < 0) failErrno(-r, 'utimensat', path);
    return;
  }
  const times = Buffer.alloc(32); // struct timespec[2], each { int64 tv_sec; long tv_nsec }
  encodeTime(times, 0, atime, 'atime');
  encodeTime(times, 16, mtime, 'mtime');
  const flags = opts.nofollow === false ? 0 : AT_SYMLINK_NOFOLLOW;
  if (lib().utimensat(AT_FDCWD, cPath(path), times, flags) !== 0) fail('utimensat', path);
}

// ---------------------------------------------------------------------------
// the copy-up of a small file in one call (own addon only)

/**
 * Copy a regular file's data, owner, xattrs (but those starting with `skip[0]` or `skip[1]`),
 * permission bits and times onto a new file `dst` (created exclusively; left behind on failure
 * for the caller to remove), through two descriptors in one call of the own addon. `src` is
 * opened O_NOFOLLOW. False when the addon is not built (the caller copies step by step).
 */
export function copyFileWithMeta(
  src: PathArg, dst: PathArg, skip: readonly [string, string],
  owner: { uid: number; gid: number }, mode: number, atime: Timespec, mtime: Timespec,
): boolean {
  const f = fast();
  const a = f && fastTime(atime, 'atime');
  const m = a && fastTime(mtime, 'mtime');
  if (!f || !a || !m) return false;
  checkInt('uid', owner.uid, 0, 0xffff_ffff);
  checkInt('gid', owner.gid, 0, 0xffff_ffff);
  const r = f.copyFile(fastPath(src, 'src'), fastPath(dst, 'dst'), cName(skip[0]), cName(skip[1]), owner.uid, owner.gid, mode, a[0], a[1], m[0], m[1]);
  if (r < 0) failErrno(-r, 'copyFile', src, dst);
  return true;
}

// ---------------------------------------------------------------------------
// inode flags (lsattr / chattr)

/** The inode-flags ioctls: flags as an int (FS_IOC_GETFLAGS, FS_IOC_SETFLAGS)... */
export const FS_IOC_GETFLAGS = 0x80086601;
export const FS_IOC_SETFLAGS = 0x40086602;
/** ...and as a struct fsxattr of FSXATTR_SIZE bytes (FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR). */
export const FS_IOC_FSGETXATTR = 0x801c581f;
export const FS_IOC_FSSETXATTR = 0x401c5820;
export const FSXATTR_SIZE = 28;

/**
 * An inode-flags ioctl on the object at `path`: `cmd` is one of the four FS_IOC_* above; `buf`
 * holds 4 bytes (the flags, an int) or FSXATTR_SIZE (struct fsxattr), and a get fills it. The
 * object is opened O_RDONLY|O_NONBLOCK|O_NOFOLLOW|O_NOCTTY: a symlink is not followed (ELOOP),
 * and anything but a regular file or a directory gets ENOTTY without an ioctl.
 */
export function fileattr(path: PathArg, cmd: number, buf: Buffer): void {
  const flags = cmd === FS_IOC_GETFLAGS || cmd === FS_IOC_SETFLAGS;
  if (!flags && cmd !== FS_IOC_FSGETXATTR && cmd !== FS_IOC_FSSETXATTR) throw invalidArg('cmd', cmd, 'must be an FS_IOC_* inode-flags ioctl');
  if (!Buffer.isBuffer(buf) || buf.length < (flags ? 4 : FSXATTR_SIZE)) throw invalidArg('buf', buf, `must be a Buffer of at least ${flags ? 4 : FSXATTR_SIZE} bytes`);
  const f = fast();
  if (f?.fileattr) {
    const r = f.fileattr(fastPath(path), cmd, buf);
    if (r < 0) failErrno(-r, 'ioctl', path);
    return;
  }
  const c = os.constants;
  const fd = nodeFs.openSync(cPath(path).subarray(0, -1), nodeFs.constants.O_RDONLY | nodeFs.constants.O_NONBLOCK | nodeFs.constants.O_NOFOLLOW | nodeFs.constants.O_NOCTTY);
  try {
    const st = nodeFs.fstatSync(fd);
    if (!st.isFile() && !st.isDirectory()) failErrno(c.errno.ENOTTY, 'ioctl', path);
    if (procLib().ioctl(fd, BigInt(cmd), 'void *', buf) !== 0) fail('ioctl', path);
  } finally {
    nodeFs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------
// statfs

/** statfs(2), with every field as bigint. */
export function statfs(path: PathArg): StatFs {
  // x86_64 struct statfs: 11 × 8-byte fields (f_fsid is int32[2]) then f_spare[4]; 120 bytes.
  const buf = Buffer.alloc(STATFS_SIZE);
  if (lib().statfs(cPath(path), buf) !== 0) fail('statfs', path);
  const u64 = (off: number): bigint => buf.readBigUInt64LE(off);
  return {
    type: u64(0),
    bsize: u64(8),
    blocks: u64(16),
    bfree: u64(24),
    bavail: u64(32),
    files: u64(40),
    ffree: u64(48),
    fsid: u64(56),
    namelen: u64(64),
    frsize: u64(72),
    flags: u64(80),
  };
}

export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/**
 * lseek(2) on a file descriptor, with SEEK_DATA / SEEK_HOLE for finding the holes of a sparse
 * file. Returns the new offset, or null for ENXIO (no data at or after `offset`).
 */
export function lseek(fd: number, offset: bigint | number, whence: number): bigint | null {
  const r = lib().lseek(fd, BigInt(offset), whence);
  if (r >= 0n) return BigInt(r);
  const errno = koffi.errno();
  if (errno === os.constants.errno.ENXIO) return null;
  throw sysError(errno, 'lseek');
}

/** fallocate(2): preallocate, punch holes, zero or collapse ranges of an open file. */
export function fallocate(fd: number, mode: number, offset: number, len: number): void {
  if (lib().fallocate(fd, mode, BigInt(offset), BigInt(len)) !== 0) throw sysError(koffi.errno(), 'fallocate');
}

/** copy_file_range(2) between explicit offsets (the descriptors' own offsets stay put). */
export function copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number, flags = 0): number {
  const r = lib().copy_file_range(fdIn, BigInt64Array.of(BigInt(offIn)), fdOut, BigInt64Array.of(BigInt(offOut)), len, flags);
  if (r < 0n) throw sysError(koffi.errno(), 'copy_file_range');
  return Number(r);
}

// ---------------------------------------------------------------------------
// advisory locks and syncfs (for the image store, src/image/)

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/**
 * flock(2) on an open descriptor (a file or a directory). With LOCK_NB, returns false when
 * another open file description holds a conflicting lock (EWOULDBLOCK) instead of waiting.
 * The kernel drops the lock when the last descriptor of that open file is closed, so a
 * process that dies never leaves it behind.
 */
export function flock(fd: number, op: number): boolean {
  if (lib().flock(fd, op) === 0) return true;
  const errno = koffi.errno();
  if (errno === os.constants.errno.EWOULDBLOCK && (op & LOCK_NB) !== 0) return false;
  throw sysError(errno, 'flock');
}

/** syncfs(2): write back everything of the filesystem that holds `fd`. */
export function syncfs(fd: number): void {
  if (lib().syncfs(fd) !== 0) fail('syncfs');
}
