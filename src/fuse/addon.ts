import { createRequire } from 'node:module';
import { constants as osc } from 'node:os';
import { join as joinPath } from 'node:path';
import { ROOT } from '../root.ts';
import type { SessionStats, U64 } from './types.ts';

/**
 * The layerfs_fuse addon (native/layerfs_fuse.cc and native/fuse/, built to
 * build/Release/layerfs_fuse.node by node-gyp): loading it, the typed surface of its functions,
 * and the constants both sides share (native/fuse/wire.h; test/fuse/wire.test.ts holds them to
 * it). How requests and replies cross: ./lowlevel.ts.
 */

const require = createRequire(import.meta.url);
export const ADDON_PATH = joinPath(ROOT, 'build', 'Release', 'layerfs_fuse.node');

// ------------------------------------------------------------------------------------------
// the addon

/** A session inside the addon (an External). */
export type Handle = object & { readonly __brand?: 'layerfs_fuse session' };

export interface Addon {
  FUSE_VERSION: number;
  mount(mountpoint: string, args: string[], config: NativeConfig, dispatch: Dispatch): Handle;
  stop(h: Handle): void;
  drain(h: Handle): number;
  destroy(h: Handle): number;
  stats(h: Handle): SessionStats;
  replyErr(h: Handle, id: number, errno: number): number | null;
  replyNone(h: Handle, id: number): number | null;
  replyEntry(h: Handle, id: number, rec: Uint8Array): number | null;
  replyCreate(h: Handle, id: number, rec: Uint8Array, fh: U64, flags: number, backing?: number): number | null;
  replyAttr(h: Handle, id: number, rec: Uint8Array, timeout: number): number | null;
  replyOpen(h: Handle, id: number, fh: U64, flags: number, backing?: number): number | null;
  backingOpen(h: Handle, fd: number): number;
  backingClose(h: Handle, id: number): number;
  replyBuf(h: Handle, id: number, data: Uint8Array | null, length?: number): number | null;
  replyFd(h: Handle, id: number, fd: number, size: number, off: number): number | null;
  replyReadlink(h: Handle, id: number, target: Uint8Array | string): number | null;
  replyWrite(h: Handle, id: number, count: number): number | null;
  replyXattr(h: Handle, id: number, size: number): number | null;
  replyLseek(h: Handle, id: number, off: U64): number | null;
  replyStatfs(h: Handle, id: number, ...v: U64[]): number | null;
  replyIoctl(h: Handle, id: number, result: number, data: Uint8Array | null): number | null;
  replyDirents(h: Handle, id: number, packed: Uint8Array, plus: boolean, size: number): number | null;
  notifyInvalInode(h: Handle, ino: U64, off: U64, len: U64): number;
  notifyInvalEntry(h: Handle, parent: U64, name: string): number;
  notifyDelete(h: Handle, parent: U64, child: U64, name: string): number;
  recycle(payload: Uint8Array): boolean;
  wire(): AddonWire;
}

/**
 * The addon's side of the wire constants below (native/fuse/wire.h, reported by wire.cc from
 * offsetof/sizeof): test/fuse/wire.test.ts compares the two.
 */
export interface AddonWire {
  ops: Record<string, number>;
  records: Record<'stat' | 'entry' | 'dirent', { bytes: number; fields: Record<string, { offset: number; size: number; type: string }> }>;
  openFlags: Record<string, number>;
  /** Where the kernel's dirent and direntplus put the name (what {@link direntSize} assumes). */
  kernelDirent: { name: number; plusName: number };
  /** Cap, SetAttr and IoctlFlags as this libfuse's headers define them. */
  libfuse: Record<'Cap' | 'SetAttr' | 'IoctlFlags', Record<string, number>>;
}

export interface NativeConfig {
  /** Op codes that have a handler. */
  ops: number[];
  writebackCache: boolean;
  passthrough: boolean;
  threaded: boolean;
  maxWrite: number;
  maxReadahead: number;
  /** The max_read= mount option given to libfuse (0: none). */
  maxRead: number;
  maxBackground: number;
  congestionThreshold: number;
  spinUs: number;
}

/**
 * How the addon hands a request to JS (native/fuse/deliver.cc): the op, the request id, the
 * node id, the caller's credentials, then up to twelve op-specific values in slots `s1`…`s12`
 * (FORGET: s1 = nlookup; INIT: s1 = ConnInfo; EXIT: s1 = status). Which value sits in which
 * slot is named once, per op, in the session's dispatch (./session.ts).
 */
export type Dispatch = (op: number, id: number, ino: number, uid: number, gid: number, pid: number, umask: number,
  s1?: any, s2?: any, s3?: any, s4?: any, s5?: any, s6?: any, s7?: any, s8?: any, s9?: any, s10?: any, s11?: any, s12?: any) => void;

let addon: Addon | undefined;

/** Load the addon (throws with a build hint when it is missing). */
export function loadAddon(): Addon {
  if (addon) return addon;
  try {
    addon = require(ADDON_PATH) as Addon;
  } catch (e) {
    const err = new Error(`cannot load the layerfs FUSE addon ${ADDON_PATH} (build it with 'node-gyp rebuild'): ${(e as Error).message}`);
    (err as { code?: string }).code = 'ENOADDON';
    throw err;
  }
  return addon;
}

// ------------------------------------------------------------------------------------------
// constants

/** Operation codes (native/fuse/wire.h `LAYERFS_OPS`; test/fuse/wire.test.ts holds them to it). */
export const Op = {
  INIT: 1, EXIT: 2, LOOKUP: 3, FORGET: 4, GETATTR: 5, SETATTR: 6, READLINK: 7, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, SYMLINK: 12, RENAME: 13, LINK: 14, OPEN: 15, READ: 16, WRITE: 17, FLUSH: 18,
  RELEASE: 19, FSYNC: 20, OPENDIR: 21, READDIR: 22, RELEASEDIR: 23, FSYNCDIR: 24, STATFS: 25,
  SETXATTR: 26, GETXATTR: 27, LISTXATTR: 28, REMOVEXATTR: 29, ACCESS: 30, CREATE: 31, FALLOCATE: 32,
  READDIRPLUS: 33, COPY_FILE_RANGE: 34, LSEEK: 35, IOCTL: 36,
} as const;


const OP_NAMES: string[] = [];
for (const [k, v] of Object.entries(Op)) OP_NAMES[v] = k.toLowerCase();

/** The lower-case name of an op code ('lookup'), for messages. */
export function opName(op: number): string {
  return OP_NAMES[op] ?? `op${op}`;
}

/** setattr `toSet` bits (FUSE_SET_ATTR_*). */
export const SetAttr = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5,
  ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8, FORCE: 1 << 9, CTIME: 1 << 10, KILL_SUID: 1 << 11,
  KILL_SGID: 1 << 12, FILE: 1 << 13, KILL_PRIV: 1 << 14, OPEN: 1 << 15, TIMES_SET: 1 << 16, TOUCH: 1 << 17,
} as const;

/** FUSE_CAP_* bits, as reported in {@link ConnInfo}. */
export const Cap = {
  ASYNC_READ: 1 << 0, POSIX_LOCKS: 1 << 1, ATOMIC_O_TRUNC: 1 << 3, EXPORT_SUPPORT: 1 << 4,
  DONT_MASK: 1 << 6, SPLICE_WRITE: 1 << 7, SPLICE_MOVE: 1 << 8, SPLICE_READ: 1 << 9,
  FLOCK_LOCKS: 1 << 10, IOCTL_DIR: 1 << 11, AUTO_INVAL_DATA: 1 << 12, READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14, ASYNC_DIO: 1 << 15, WRITEBACK_CACHE: 1 << 16, NO_OPEN_SUPPORT: 1 << 17,
  PARALLEL_DIROPS: 1 << 18, POSIX_ACL: 1 << 19, HANDLE_KILLPRIV: 1 << 20, CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24, EXPLICIT_INVAL_DATA: 1 << 25, EXPIRE_ONLY: 1 << 26,
} as const;


/** FUSE_IOCTL_* bits of an ioctl request's `flags`. */
export const IoctlFlags = { COMPAT: 1 << 0, UNRESTRICTED: 1 << 1, RETRY: 1 << 2, BIT32: 1 << 3, DIR: 1 << 4, COMPAT_X32: 1 << 5 } as const;

/**
 * How requests reach the JS thread unless a mount says otherwise. 'inline' measured better on
 * every workload but single-stream writes, where the two are level (bench/probes/backends.ts): one
 * thread wake-up less per request. LAYERFS_FUSE_DISPATCH=thread|inline overrides it.
 */
export const DEFAULT_DISPATCH: 'thread' | 'inline' = process.env.LAYERFS_FUSE_DISPATCH === 'thread' ? 'thread' : 'inline';

/** What a second answer to a request returns (it is not sent). */
export const REPLY_IGNORED = -osc.errno.EALREADY;

const errno = osc.errno as Record<string, number>;
export const EIO = errno.EIO!;
export const ENOENT = errno.ENOENT!;
export const ERANGE = errno.ERANGE!;
export const ENOSYS = errno.ENOSYS!;
