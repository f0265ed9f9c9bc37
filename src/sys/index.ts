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
 *
 * This module is the whole public surface; the parts:
 *   libc.ts           the koffi tables of glibc and the own addon (loaded with this module)
 *   errors.ts         errors shaped like Node's, argument checks and conversions
 *   files.ts          file syscalls: mknod, xattrs, renameat2, utimensat, copy-up, inode flags,
 *                     statfs, lseek, fallocate, copy_file_range, flock, syncfs
 *   process.ts        process syscalls: mount, umount2, pivot_root, unshare, capabilities,
 *                     credentials, prctl, terminals, descriptors, signals, execve
 *   device-filter.ts  the cgroup v2 device program
 */
export { SYS_ADDON_PATH, sysBackend, type PathArg } from './libc.ts';
export type { SysError } from './errors.ts';
export * from './files.ts';
export * from './process.ts';
export * from './device-filter.ts';
