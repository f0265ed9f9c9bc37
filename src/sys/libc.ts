// The two ways into the kernel: koffi tables of glibc functions (`libc.so.6`), one for the file
// calls (files.ts) and one for the process calls (process.ts), each bound on first use; and the
// project's own addon (native/layerfs_sys.cc, build/Release/layerfs_sys.node), loaded with this
// module, which serves the per-request calls without FFI conversions when it is built.
// x86_64 Linux only.

import koffi from 'koffi';
import { createRequire } from 'node:module';
import * as nodePath from 'node:path';
import { ROOT } from '../root.ts';
import type { DevRule } from './device-filter.ts';

/**
 * Paths are `string` (encoded as UTF-8) or `Buffer` (raw bytes, for names that are not valid
 * UTF-8).
 */
export type PathArg = string | Buffer;

// ---------------------------------------------------------------------------
// libc bindings of the file calls (created on first use)

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

export function lib(): Libc {
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
// libc bindings of the process calls (created on first use)

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

export function procLib(): LibcProc {
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
export function fast(): Fast | null {
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

let addonAny: Fast | null | undefined;

/** The own addon even under LAYERFS_SYS=koffi (which only routes the calls koffi can also make). */
export function fullAddon(): Fast | null {
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
