/**
 * Linux syscalls that Node's `fs` does not expose, called synchronously. The ones the daemon
 * makes per request (xattrs, renameat2, utimensat) go through the project's own small addon
 * (native/layerfs_sys.cc, build/Release/layerfs_sys.node) when it is built; everything else,
 * and those too when the addon is missing, through koffi FFI into glibc (`libc.so.6`).
 * x86_64 Linux only.
 *
 * Paths are `string` (encoded as UTF-8) or `Buffer` (raw bytes, for names
 * that are not valid UTF-8). Failures throw an Error shaped like Node's fs
 * errors: `code` ('ENOENT'), `errno` (-2), `syscall`, `path` (and `dest`).
 */
import koffi from 'koffi';
import { createRequire } from 'node:module';
import * as nodeFs from 'node:fs';
import os from 'node:os';
import * as nodePath from 'node:path';
import util from 'node:util';
import { ROOT } from '../root.ts';

export type PathArg = string | Buffer;

/** A point in time with nanosecond precision (struct timespec). */
export interface Timespec {
  sec: bigint;
  /** 0 ..= 999_999_999 */
  nsec: number;
}

export type TimeArg = Timespec | 'now' | 'omit';

export interface SysError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
}

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

export const MNT_FORCE = 1;
export const MNT_DETACH = 2;
export const MNT_EXPIRE = 4;
export const UMOUNT_NOFOLLOW = 8;

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const UTIME_NOW = (1 << 30) - 1;
const UTIME_OMIT = (1 << 30) - 2;
const NS_PER_SEC = 1_000_000_000n;
const STATFS_SIZE = 120; // sizeof(struct statfs) on x86_64

// ---------------------------------------------------------------------------
// libc bindings (created on first use)

interface Libc {
  mknod(path: Buffer, mode: number, dev: bigint): number;
  lgetxattr(path: Buffer, name: string, value: Buffer | null, size: number): number;
  llistxattr(path: Buffer, list: Buffer | null, size: number): number;
  lsetxattr(path: Buffer, name: string, value: Buffer, size: number, flags: number): number;
  lremovexattr(path: Buffer, name: string): number;
  renameat2(olddirfd: number, oldpath: Buffer, newdirfd: number, newpath: Buffer, flags: number): number;
  utimensat(dirfd: number, path: Buffer, times: Buffer, flags: number): number;
  umount2(target: Buffer, flags: number): number;
  statfs(path: Buffer, buf: Buffer): number;
  lseek(fd: number, offset: bigint, whence: number): bigint;
  fallocate(fd: number, mode: number, offset: bigint, len: bigint): number;
  copy_file_range(fdIn: number, offIn: BigInt64Array, fdOut: number, offOut: BigInt64Array, len: number, flags: number): bigint;
  flock(fd: number, op: number): number;
  syncfs(fd: number): number;
  strerror(errnum: number): string | null;
}

let libc: Libc | undefined;

function lib(): Libc {
  if (libc) return libc;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`layerfs sys: unsupported platform ${process.platform}/${process.arch} (need linux/x64)`);
  }
  const so = koffi.load('libc.so.6');
  // ssize_t == intptr_t on LP64; mode_t is 32-bit; dev_t is 64-bit.
  // mknod/mknodat are real exported symbols since glibc 2.33 (older glibc only had __xmknod).
  libc = {
    mknod: so.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
    lgetxattr: so.func('intptr_t lgetxattr(const char *path, const char *name, void *value, size_t size)'),
    llistxattr: so.func('intptr_t llistxattr(const char *path, void *list, size_t size)'),
    lsetxattr: so.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
    lremovexattr: so.func('int lremovexattr(const char *path, const char *name)'),
    renameat2: so.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)'),
    utimensat: so.func('int utimensat(int dirfd, const char *path, const void *times, int flags)'),
    umount2: so.func('int umount2(const char *target, int flags)'),
    statfs: so.func('int statfs(const char *path, void *buf)'),
    lseek: so.func('int64_t lseek(int fd, int64_t offset, int whence)'),
    fallocate: so.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)'),
    copy_file_range: so.func('int64_t copy_file_range(int fd_in, _Inout_ int64_t *off_in, int fd_out, _Inout_ int64_t *off_out, size_t len, unsigned int flags)'),
    flock: so.func('int flock(int fd, int op)'),
    syncfs: so.func('int syncfs(int fd)'),
    strerror: so.func('const char *strerror(int errnum)'),
  };
  return libc;
}

// ---------------------------------------------------------------------------
// the own addon (native/layerfs_sys.cc): same calls, no FFI conversions; failures come back as
// a negative errno

interface Fast {
  lgetxattr(path: PathArg, name: string): Buffer | number;
  llistxattr(path: PathArg): Buffer | number;
  lsetxattr(path: PathArg, name: string, value: Buffer, flags: number): number;
  lremovexattr(path: PathArg, name: string): number;
  renameat2(from: PathArg, to: PathArg, flags: number): number;
  utimensat(path: PathArg, asec: number, ansec: number, msec: number, mnsec: number, flags: number): number;
  copyFile(src: PathArg, dst: PathArg, skip1: string, skip2: string, uid: number, gid: number, mode: number,
    asec: number, ansec: number, msec: number, mnsec: number): number;
  /** Missing from an addon built before it was added. */
  fileattr?(path: PathArg, cmd: number, buf: Buffer): number;
  /** Missing from an addon built before it was added. */
  cgroupDeviceFilter?(dir: PathArg, rules: readonly DevRule[], info: { syscall?: string; log?: string }): number;
}

export const SYS_ADDON_PATH = nodePath.join(ROOT, 'build', 'Release', 'layerfs_sys.node');

let fastLib: Fast | null | undefined;

/** The own addon, or null when it is not built (then koffi serves every call). */
function fast(): Fast | null {
  if (fastLib !== undefined) return fastLib;
  if (process.env.LAYERFS_SYS === 'koffi') return (fastLib = null);
  try {
    fastLib = createRequire(import.meta.url)(SYS_ADDON_PATH) as Fast;
  } catch {
    fastLib = null;
  }
  return fastLib;
}

// Loaded with this module, not at the first call: a daemon opens nothing but its layers once it
// serves (test/hostile/strace.test.ts watches exactly that).
fast();

/** Which implementation serves the per-request calls: 'addon' or 'koffi'. */
export function sysBackend(): 'addon' | 'koffi' {
  return fast() ? 'addon' : 'koffi';
}

/** A path for the addon: checked like cPath (no NUL), not copied. */
function fastPath(p: PathArg, name = 'path'): PathArg {
  if (typeof p === 'string') {
    if (p.includes('\0')) throw invalidArg(name, p, 'must be a string or Buffer without null bytes');
  } else if (!Buffer.isBuffer(p) || p.includes(0)) {
    throw invalidArg(name, p, 'must be a string or Buffer without null bytes');
  }
  return p;
}

function failErrno(errno: number, syscall: string, path?: PathArg, dest?: PathArg): never {
  const err = sysError(errno, syscall, path, dest);
  Error.captureStackTrace(err, failErrno);
  throw err;
}

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
// errors

let errnoNames: Map<number, string> | undefined;

function errnoName(errno: number): string {
  const uv = util.getSystemErrorMap().get(-errno);
  if (uv) return uv[0]; // same name Node's own fs errors use (e.g. ENOTSUP for 95)
  if (!errnoNames) {
    errnoNames = new Map();
    for (const [name, num] of Object.entries(os.constants.errno)) {
      if (!errnoNames.has(num)) errnoNames.set(num, name);
    }
  }
  return errnoNames.get(errno) ?? `Unknown system error ${-errno}`;
}

function errnoMessage(errno: number): string {
  const uv = util.getSystemErrorMap().get(-errno);
  if (uv) return uv[1];
  const s = lib().strerror(errno);
  return s ? s.charAt(0).toLowerCase() + s.slice(1) : `unknown error ${errno}`;
}

function pathString(p: PathArg): string {
  return typeof p === 'string' ? p : p.toString('utf8');
}

function sysError(errno: number, syscall: string, path?: PathArg, dest?: PathArg): SysError {
  const code = errnoName(errno);
  let message = `${code}: ${errnoMessage(errno)}, ${syscall}`;
  if (path !== undefined) message += ` '${pathString(path)}'`;
  if (dest !== undefined) message += ` -> '${pathString(dest)}'`;
  const err = new Error(message) as SysError;
  err.errno = -errno;
  err.code = code;
  err.syscall = syscall;
  if (path !== undefined) err.path = pathString(path);
  if (dest !== undefined) err.dest = pathString(dest);
  Error.captureStackTrace(err, sysError);
  return err;
}

function fail(syscall: string, path?: PathArg, dest?: PathArg): never {
  const err = sysError(koffi.errno(), syscall, path, dest);
  Error.captureStackTrace(err, fail);
  throw err;
}

// ---------------------------------------------------------------------------
// argument conversion

function invalidArg(name: string, value: unknown, reason: string): TypeError {
  const err = new TypeError(`The argument '${name}' ${reason}. Received ${util.inspect(value)}`) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/** NUL-terminated copy of a path. */
function cPath(p: PathArg, name = 'path'): Buffer {
  let bytes: Buffer;
  if (typeof p === 'string') bytes = Buffer.from(p, 'utf8');
  else if (Buffer.isBuffer(p)) bytes = p;
  else throw invalidArg(name, p, 'must be a string or Buffer');
  if (bytes.includes(0)) throw invalidArg(name, p, 'must be a string or Buffer without null bytes');
  const out = Buffer.alloc(bytes.length + 1);
  bytes.copy(out);
  return out;
}

function cName(name: string): string {
  if (typeof name !== 'string' || name.includes('\0')) {
    throw invalidArg('name', name, 'must be a string without null bytes');
  }
  return name;
}

function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    const err = new RangeError(`The value of "${name}" is out of range. It must be an integer >= ${min} and <= ${max}. Received ${util.inspect(v)}`) as RangeError & { code: string };
    err.code = 'ERR_OUT_OF_RANGE';
    throw err;
  }
  return v;
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
// umount2

/** umount2(2). `flags`: MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW. */
export function umount2(target: PathArg, flags: number): void {
  if (lib().umount2(cPath(target, 'target'), flags) !== 0) fail('umount2', target);
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
// processes, namespaces, mounts and credentials (for the launcher, src/launcher/)
//
// Credentials, capabilities and prctl() settings are per thread in the kernel: call these from
// the thread that goes on to execve() (Node's main thread). glibc's setres[ug]id/setgroups
// apply to every thread of the process.

interface LibcProc {
  mount(source: Buffer | null, target: Buffer, fstype: Buffer | null, flags: bigint, data: Buffer | null): number;
  syscall(nr: number, ...args: unknown[]): bigint;
  sethostname(name: Buffer, len: number): number;
  unshare(flags: number): number;
  prctl(option: number, ...args: unknown[]): number;
  capget(hdr: Buffer, data: Buffer): number;
  capset(hdr: Buffer, data: Buffer): number;
  setgroups(n: number, groups: Buffer): number;
  setresuid(r: number, e: number, s: number): number;
  setresgid(r: number, e: number, s: number): number;
  setsid(): number;
  ioctl(fd: number, req: bigint, ...args: unknown[]): number;
  fcntl(fd: number, cmd: number, ...args: unknown[]): number;
  dup2(oldfd: number, newfd: number): number;
  close(fd: number): number;
  signal(sig: number, handler: bigint): bigint;
  sigprocmask(how: number, set: Buffer, old: null): number;
  socket(domain: number, type: number, protocol: number): number;
  execve(path: Buffer, argv: (string | null)[], envp: (string | null)[]): number;
}

let libcProc: LibcProc | undefined;

function procLib(): LibcProc {
  if (libcProc) return libcProc;
  lib(); // platform check
  const so = koffi.load('libc.so.6');
  libcProc = {
    mount: so.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)'),
    syscall: so.func('long syscall(long number, ...)'),
    sethostname: so.func('int sethostname(const char *name, size_t len)'),
    unshare: so.func('int unshare(int flags)'),
    prctl: so.func('int prctl(int option, ...)'),
    capget: so.func('int capget(void *hdr, void *data)'),
    capset: so.func('int capset(void *hdr, void *data)'),
    setgroups: so.func('int setgroups(size_t size, const void *list)'),
    setresuid: so.func('int setresuid(uint32_t r, uint32_t e, uint32_t s)'),
    setresgid: so.func('int setresgid(uint32_t r, uint32_t e, uint32_t s)'),
    setsid: so.func('int setsid()'),
    ioctl: so.func('int ioctl(int fd, unsigned long req, ...)'),
    fcntl: so.func('int fcntl(int fd, int cmd, ...)'),
    dup2: so.func('int dup2(int oldfd, int newfd)'),
    close: so.func('int close(int fd)'),
    signal: so.func('uintptr_t signal(int sig, uintptr_t handler)'),
    sigprocmask: so.func('int sigprocmask(int how, const void *set, void *old)'),
    socket: so.func('int socket(int domain, int type, int protocol)'),
    execve: so.func('int execve(const char *path, const char **argv, const char **envp)'),
  };
  return libcProc;
}

// mount(2) flags
export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_REMOUNT = 0x20;
export const MS_NOATIME = 0x400;
export const MS_BIND = 0x1000;
export const MS_MOVE = 0x2000;
export const MS_REC = 0x4000;
export const MS_PRIVATE = 0x40000;
export const MS_SLAVE = 0x80000;
export const MS_RELATIME = 0x200000;

// unshare(2) / clone(2) flags
export const CLONE_NEWNS = 0x20000;
export const CLONE_NEWCGROUP = 0x2000000;
export const CLONE_NEWUTS = 0x4000000;
export const CLONE_NEWIPC = 0x8000000;
export const CLONE_NEWUSER = 0x10000000;
export const CLONE_NEWPID = 0x20000000;
export const CLONE_NEWNET = 0x40000000;

const SYS_pivot_root = 155; // x86_64
const PR_SET_PDEATHSIG = 1;
const PR_CAPBSET_READ = 23;
const PR_CAPBSET_DROP = 24;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_GET_NO_NEW_PRIVS = 39;
const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_CLEAR_ALL = 4;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;

function nullablePath(p: PathArg | null | undefined, name: string): Buffer | null {
  return p === null || p === undefined ? null : cPath(p, name);
}

/** mount(2). `source`, `fstype` and `data` may be null (bind mounts, remounts, propagation changes). */
export function mount(source: PathArg | null, target: PathArg, fstype: string | null, flags: number, data: string | null = null): void {
  const r = procLib().mount(nullablePath(source, 'source'), cPath(target, 'target'), nullablePath(fstype, 'fstype'), BigInt(flags), nullablePath(data, 'data'));
  if (r !== 0) fail('mount', target);
}

/**
 * pivot_root(2) (glibc has no wrapper). `pivotRoot('.', '.')` after chdir(newRoot) stacks the old
 * root on top of the new one, to be detached with umount2('.', MNT_DETACH) — no directory for the
 * old root is needed inside the new one.
 */
export function pivotRoot(newRoot: PathArg, putOld: PathArg): void {
  const r = procLib().syscall(SYS_pivot_root, 'const char *', cPath(newRoot, 'newRoot'), 'const char *', cPath(putOld, 'putOld'));
  if (Number(r) !== 0) fail('pivot_root', newRoot, putOld);
}

/** sethostname(2), in the caller's UTS namespace. */
export function sethostname(name: string): void {
  const b = Buffer.from(name, 'utf8');
  if (procLib().sethostname(b, b.length) !== 0) fail('sethostname');
}

/** unshare(2) with CLONE_NEW* flags. */
export function unshare(flags: number): void {
  if (procLib().unshare(flags) !== 0) fail('unshare');
}

function prctl(option: number, a2: number | bigint = 0, a3: number | bigint = 0, a4: number | bigint = 0, a5: number | bigint = 0): number {
  const ul = 'unsigned long';
  const r = procLib().prctl(option, ul, BigInt(a2), ul, BigInt(a3), ul, BigInt(a4), ul, BigInt(a5));
  if (r < 0) fail('prctl');
  return r;
}

/** prctl(PR_SET_NO_NEW_PRIVS, 1): execve() never grants privileges again (setuid bits, file caps). */
export function setNoNewPrivs(): void {
  prctl(PR_SET_NO_NEW_PRIVS, 1);
}

export function getNoNewPrivs(): boolean {
  return prctl(PR_GET_NO_NEW_PRIVS) === 1;
}

/** prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` to us when our parent (thread) exits. */
export function setParentDeathSignal(sig: number): void {
  prctl(PR_SET_PDEATHSIG, sig);
}

/** Whether capability number `cap` is in the calling thread's bounding set. */
export function capBoundingHas(cap: number): boolean {
  return prctl(PR_CAPBSET_READ, cap) === 1;
}

/** Remove capability number `cap` from the calling thread's bounding set (needs CAP_SETPCAP). */
export function capBoundingDrop(cap: number): void {
  prctl(PR_CAPBSET_DROP, cap);
}

/** Empty the calling thread's ambient capability set. */
export function capAmbientClearAll(): void {
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);
}

/** Capability sets as bit masks (bit N = capability number N). */
export interface CapSets {
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
}

function capHeader(): Buffer {
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(LINUX_CAPABILITY_VERSION_3, 0);
  hdr.writeInt32LE(0, 4); // the calling thread
  return hdr;
}

/** capget(2) of the calling thread. */
export function capget(): CapSets {
  const data = Buffer.alloc(24); // struct __user_cap_data_struct[2]
  if (procLib().capget(capHeader(), data) !== 0) fail('capget');
  const join = (off: number): bigint => BigInt(data.readUInt32LE(off)) | (BigInt(data.readUInt32LE(off + 12)) << 32n);
  return { effective: join(0), permitted: join(4), inheritable: join(8) };
}

/** capset(2) of the calling thread. */
export function capset(sets: CapSets): void {
  const data = Buffer.alloc(24);
  const lo = (v: bigint): number => Number(v & 0xffff_ffffn);
  const hi = (v: bigint): number => Number((v >> 32n) & 0xffff_ffffn);
  data.writeUInt32LE(lo(sets.effective), 0);
  data.writeUInt32LE(lo(sets.permitted), 4);
  data.writeUInt32LE(lo(sets.inheritable), 8);
  data.writeUInt32LE(hi(sets.effective), 12);
  data.writeUInt32LE(hi(sets.permitted), 16);
  data.writeUInt32LE(hi(sets.inheritable), 20);
  if (procLib().capset(capHeader(), data) !== 0) fail('capset');
}

/** setgroups(2): the supplementary group list (every thread, through glibc). */
export function setgroups(gids: readonly number[]): void {
  const buf = Buffer.alloc(4 * gids.length);
  gids.forEach((g, i) => buf.writeUInt32LE(checkInt('gid', g, 0, 0xffff_fffe), 4 * i));
  if (procLib().setgroups(gids.length, buf) !== 0) fail('setgroups');
}

/** setresgid(2) with one gid for real, effective and saved. */
export function setresgid(gid: number): void {
  checkInt('gid', gid, 0, 0xffff_fffe);
  if (procLib().setresgid(gid, gid, gid) !== 0) fail('setresgid');
}

/** setresuid(2) with one uid for real, effective and saved. */
export function setresuid(uid: number): void {
  checkInt('uid', uid, 0, 0xffff_fffe);
  if (procLib().setresuid(uid, uid, uid) !== 0) fail('setresuid');
}

/** setsid(2); returns the new session id. */
export function setsid(): number {
  const r = procLib().setsid();
  if (r < 0) fail('setsid');
  return r;
}

const TIOCSCTTY = 0x540en;
const TIOCGWINSZ = 0x5413n;
const TIOCSWINSZ = 0x5414n;
const TIOCGPTN = 0x80045430n;
const TIOCSPTLCK = 0x40045431n;
const SIOCGIFFLAGS = 0x8913n;
const SIOCSIFFLAGS = 0x8914n;
const IFF_UP = 0x1;

function ioctlPtr(fd: number, req: bigint, arg: Buffer, name: string): void {
  if (procLib().ioctl(fd, req, 'void *', arg) !== 0) fail(name);
}

/** ioctl(TIOCSCTTY): make terminal `fd` the controlling terminal of the calling session leader. */
export function setControllingTerminal(fd: number): void {
  if (procLib().ioctl(fd, TIOCSCTTY, 'int', 0) !== 0) fail('ioctl(TIOCSCTTY)');
}

/** Unlock the slave of pseudo-terminal master `fd` (unlockpt) and return its number (ptsname). */
export function ptyUnlock(fd: number): number {
  const v = Buffer.alloc(4);
  ioctlPtr(fd, TIOCSPTLCK, v, 'ioctl(TIOCSPTLCK)');
  ioctlPtr(fd, TIOCGPTN, v, 'ioctl(TIOCGPTN)');
  return v.readUInt32LE(0);
}

export interface WinSize {
  rows: number;
  cols: number;
}

export function getWinSize(fd: number): WinSize {
  const ws = Buffer.alloc(8);
  ioctlPtr(fd, TIOCGWINSZ, ws, 'ioctl(TIOCGWINSZ)');
  return { rows: ws.readUInt16LE(0), cols: ws.readUInt16LE(2) };
}

export function setWinSize(fd: number, size: WinSize): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(size.rows, 0);
  ws.writeUInt16LE(size.cols, 2);
  ioctlPtr(fd, TIOCSWINSZ, ws, 'ioctl(TIOCSWINSZ)');
}

/** Set the IFF_UP flag of network interface `name` (e.g. 'lo') in the caller's network namespace. */
export function interfaceUp(name: string): void {
  const c = procLib();
  const sock = c.socket(2 /* AF_INET */, 2 /* SOCK_DGRAM */ | 0x80000 /* SOCK_CLOEXEC */, 0);
  if (sock < 0) fail('socket');
  try {
    const ifr = Buffer.alloc(40); // struct ifreq: char ifr_name[16]; union { short ifr_flags; ... }
    const n = Buffer.from(name, 'utf8');
    if (n.length >= 16 || n.includes(0)) throw invalidArg('name', name, 'must be an interface name (at most 15 bytes)');
    n.copy(ifr);
    ioctlPtr(sock, SIOCGIFFLAGS, ifr, 'ioctl(SIOCGIFFLAGS)');
    ifr.writeInt16LE(ifr.readInt16LE(16) | IFF_UP, 16);
    ioctlPtr(sock, SIOCSIFFLAGS, ifr, 'ioctl(SIOCSIFFLAGS)');
  } finally {
    c.close(sock);
  }
}

/** dup2(2). */
export function dup2(oldfd: number, newfd: number): void {
  if (procLib().dup2(oldfd, newfd) < 0) fail('dup2');
}

/** close(2) of a raw descriptor (one Node does not own); EBADF is ignored. */
export function closeFd(fd: number): void {
  if (procLib().close(fd) !== 0 && koffi.errno() !== os.constants.errno.EBADF) fail('close');
}

const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const FD_CLOEXEC = 1;
const O_NONBLOCK = 0o4000;

/** Clear O_NONBLOCK on `fd` (an open file description libuv may have made non-blocking). */
export function setBlocking(fd: number): void {
  const c = procLib();
  const fl = c.fcntl(fd, F_GETFL);
  if (fl < 0) fail('fcntl');
  if (fl & O_NONBLOCK && c.fcntl(fd, F_SETFL, 'int', fl & ~O_NONBLOCK) < 0) fail('fcntl');
}

/** Set or clear FD_CLOEXEC on `fd`. */
export function setCloexec(fd: number, on: boolean): void {
  const c = procLib();
  const fl = c.fcntl(fd, F_GETFD);
  if (fl < 0) fail('fcntl');
  if (c.fcntl(fd, F_SETFD, 'int', on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC) < 0) fail('fcntl');
}

/**
 * Put every signal back to its default disposition and unblock them all. execve() keeps ignored
 * signals ignored and the mask as it is, and Node ignores SIGPIPE (and libuv blocks nothing, but
 * be sure): a program started from Node by execve() should not inherit that.
 */
export function resetSignals(): void {
  const c = procLib();
  for (let sig = 1; sig <= 64; sig++) {
    if (sig === 9 || sig === 19 || sig === 32 || sig === 33) continue; // SIGKILL, SIGSTOP, glibc-internal
    c.signal(sig, 0n); // SIG_DFL; EINVAL for the few that cannot be changed is fine
  }
  const empty = Buffer.alloc(128); // sigset_t
  if (c.sigprocmask(2 /* SIG_SETMASK */, empty, null) !== 0) fail('sigprocmask');
}

/**
 * execve(2): replace this process with `path`. Returns only by throwing. Descriptors without
 * FD_CLOEXEC stay open in the new program; Node's own are close-on-exec.
 */
export function execve(path: PathArg, argv: readonly string[], env: readonly string[]): never {
  for (const s of [...argv, ...env]) if (s.includes('\0')) throw invalidArg('argv/env', s, 'must not contain null bytes');
  procLib().execve(cPath(path), [...argv, null], [...env, null]);
  fail('execve', path);
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

// ---------------------------------------------------------------------------
// the cgroup v2 device controller (for the launcher; own addon only)

/** Bits of DevRule.access (the kernel's BPF_DEVCG_ACC_*). */
export const BPF_DEVCG_ACC_MKNOD = 1;
export const BPF_DEVCG_ACC_READ = 2;
export const BPF_DEVCG_ACC_WRITE = 4;

/** The most rules cgroupDeviceFilter takes (the program stays a few hundred instructions). */
export const DEVICE_FILTER_MAX_RULES = 64;

/** One allow rule of a device filter. */
export interface DevRule {
  /** 'c' character, 'b' block, 'a' either. */
  type: 'c' | 'b' | 'a';
  /** -1: any. */
  major: number;
  /** -1: any. */
  minor: number;
  /** BPF_DEVCG_ACC_* bits granted (1..7). */
  access: number;
}

export interface DeviceFilterError extends SysError {
  /** The kernel verifier's message when it refused the program (bpf(BPF_PROG_LOAD)). */
  verifierLog?: string;
}

let addonAny: Fast | null | undefined;

/** The own addon even under LAYERFS_SYS=koffi (which only routes the calls koffi can also make). */
function fullAddon(): Fast | null {
  if (addonAny !== undefined) return addonAny;
  addonAny = fast();
  if (!addonAny) {
    try {
      addonAny = createRequire(import.meta.url)(SYS_ADDON_PATH) as Fast;
    } catch {
      addonAny = null;
    }
  }
  return addonAny;
}

/**
 * Attach to cgroup v2 directory `dir` an eBPF device program (BPF_PROG_TYPE_CGROUP_DEVICE,
 * attach type BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI) that allows a device open or mknod by the
 * cgroup's tasks only when one of `rules` grants it; everything else fails with EPERM. The
 * program lives as long as the cgroup (or until detached). Needs CAP_SYS_ADMIN (or CAP_BPF and
 * CAP_NET_ADMIN) and the own addon (no koffi fallback). Throws a SysError (`syscall`:
 * 'bpf(BPF_PROG_LOAD)', 'open' or 'bpf(BPF_PROG_ATTACH)'); for a refused program, its
 * `verifierLog` and message carry the verifier's words.
 */
export function cgroupDeviceFilter(dir: PathArg, rules: readonly DevRule[]): void {
  if (!Array.isArray(rules)) throw invalidArg('rules', rules, 'must be an array');
  if (rules.length > DEVICE_FILTER_MAX_RULES) {
    const err = new RangeError(`cgroupDeviceFilter: ${rules.length} device rules, at most ${DEVICE_FILTER_MAX_RULES} are supported`) as RangeError & { code: string };
    err.code = 'ERR_OUT_OF_RANGE';
    throw err;
  }
  const checked = rules.map((r, i): DevRule => {
    if (typeof r !== 'object' || r === null || (r.type !== 'c' && r.type !== 'b' && r.type !== 'a')) {
      throw invalidArg(`rules[${i}]`, r, "must be { type: 'c' | 'b' | 'a', major, minor, access }");
    }
    return {
      type: r.type,
      major: checkInt(`rules[${i}].major`, r.major, -1, 0x7fff_ffff),
      minor: checkInt(`rules[${i}].minor`, r.minor, -1, 0x7fff_ffff),
      access: checkInt(`rules[${i}].access`, r.access, 1, 7),
    };
  });
  const f = fullAddon();
  if (!f?.cgroupDeviceFilter) {
    throw new Error(`cgroupDeviceFilter: needs the layerfs_sys addon with cgroupDeviceFilter (${SYS_ADDON_PATH}); build it with \`npm run install\``);
  }
  const info: { syscall?: string; log?: string } = {};
  const r = f.cgroupDeviceFilter(fastPath(dir, 'dir'), checked, info);
  if (r === 0) return;
  const err = sysError(-r, info.syscall ?? 'cgroupDeviceFilter', dir) as DeviceFilterError;
  if (info.log !== undefined) {
    err.verifierLog = info.log;
    err.message += `: verifier: ${info.log}`;
  }
  Error.captureStackTrace(err, cgroupDeviceFilter);
  throw err;
}
