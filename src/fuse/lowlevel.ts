import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osc } from 'node:os';
import { join as joinPath, resolve as resolvePath } from 'node:path';
import { log } from '../log.ts';
import { ROOT } from '../root.ts';

/**
 * The typed surface over layerfs' own libfuse3 low-level binding (native/layerfs_fuse.cc and
 * native/fuse/, built to build/Release/layerfs_fuse.node by node-gyp).
 *
 * Model: requests are read from /dev/fuse without blocking anyone and handed to the JS thread
 * in batches; the JS thread calls the handler of each with a {@link Request}. Two ways to
 * read ('dispatch'): 'inline' (default) — the JS thread's event loop watches /dev/fuse
 * (uv_poll) and reads everything there is, then dispatches the batch; 'thread' — a session
 * thread reads, queues, and wakes the JS thread (uv_async), which drains the whole queue.
 * No thread ever waits for JS. A handler answers through its Request, synchronously or later
 * (after awaiting), exactly once. Every request is answered:
 *
 *  - a handler that throws (synchronously, or by rejecting its promise) before answering gets
 *    EIO, and the error is logged;
 *  - a handler that returns (or whose promise resolves) without answering gets EIO, logged;
 *  - a second answer is ignored and logged (it returns {@link REPLY_IGNORED});
 *  - a reply with arguments of the wrong type throws a TypeError before anything is sent,
 *    so the request stays answerable (and the rules above then answer EIO);
 *  - whatever is still unanswered when the session ends is answered ENOTCONN.
 *
 * Nothing a handler does can take the mount down.
 *
 * Names: file names (lookup, create, rename, dirents, notifications...) are byte strings, one
 * char per byte (latin1), exactly the bytes the kernel passes, whether or not they are valid
 * UTF-8 (src/union/bytes.ts). Xattr names are text (UTF-8; one that is not valid UTF-8 is
 * refused by the addon).
 *
 * Numbers: node ids, file handles, sizes and offsets are Numbers (the addon refuses offsets
 * beyond 2^53: reads there give EOF, writes EFBIG). Inode numbers, device numbers and statfs
 * counts are 64-bit (bigint accepted everywhere a Number may not be exact). Times are
 * nanoseconds (bigint) in replies and {sec: bigint, nsec} in setattr.
 */

const require = createRequire(import.meta.url);
export const ADDON_PATH = joinPath(ROOT, 'build', 'Release', 'layerfs_fuse.node');

// ------------------------------------------------------------------------------------------
// the addon

type Handle = object & { readonly __brand?: 'layerfs_fuse session' };
type U64 = number | bigint;

interface Addon {
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

interface NativeConfig {
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

type Dispatch = (op: number, id: number, ino: number, uid: number, gid: number, pid: number, umask: number,
  a?: any, b?: any, c?: any, d?: any, e?: any, f?: any, g?: any, h?: any, i?: any, j?: any, k?: any, l?: any) => void;

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

/** The handler name of each request op. */
const HANDLER_OF: Record<number, keyof LowLevelOps> = {
  [Op.LOOKUP]: 'lookup', [Op.FORGET]: 'forget', [Op.GETATTR]: 'getattr', [Op.SETATTR]: 'setattr',
  [Op.READLINK]: 'readlink', [Op.MKNOD]: 'mknod', [Op.MKDIR]: 'mkdir', [Op.UNLINK]: 'unlink',
  [Op.RMDIR]: 'rmdir', [Op.SYMLINK]: 'symlink', [Op.RENAME]: 'rename', [Op.LINK]: 'link',
  [Op.OPEN]: 'open', [Op.READ]: 'read', [Op.WRITE]: 'write', [Op.FLUSH]: 'flush', [Op.RELEASE]: 'release',
  [Op.FSYNC]: 'fsync', [Op.OPENDIR]: 'opendir', [Op.READDIR]: 'readdir', [Op.RELEASEDIR]: 'releasedir',
  [Op.FSYNCDIR]: 'fsyncdir', [Op.STATFS]: 'statfs', [Op.SETXATTR]: 'setxattr', [Op.GETXATTR]: 'getxattr',
  [Op.LISTXATTR]: 'listxattr', [Op.REMOVEXATTR]: 'removexattr', [Op.ACCESS]: 'access', [Op.CREATE]: 'create',
  [Op.FALLOCATE]: 'fallocate', [Op.READDIRPLUS]: 'readdirplus', [Op.COPY_FILE_RANGE]: 'copyFileRange',
  [Op.LSEEK]: 'lseek', [Op.IOCTL]: 'ioctl',
};

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

/**
 * How requests reach the JS thread unless a mount says otherwise. 'inline' measured better on
 * every workload but single-stream writes, where the two are level (bench/backends.ts): one
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

// ------------------------------------------------------------------------------------------
// types

/** Attributes as the kernel gets them: 64-bit numbers, nanosecond times (UnionFs' Attr fits). */
export interface Stat {
  ino: bigint | number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number | bigint;
  size: number | bigint;
  blocks: number | bigint;
  blksize: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface Entry {
  /** The node id the kernel will use for this object (0: a negative entry). */
  nodeid: number;
  generation?: number;
  attr: Stat;
  /** Seconds the kernel may cache the name → node binding. */
  entryTimeout: number;
  /** Seconds the kernel may cache the attributes. */
  attrTimeout: number;
}

export interface OpenOptions {
  directIo?: boolean;
  keepCache?: boolean;
  nonseekable?: boolean;
  /** opendir only: let the kernel cache the listing. */
  cacheReaddir?: boolean;
  noflush?: boolean;
  /**
   * open/create: a backing id from {@link LowLevelSession.backingOpen}: the kernel reads and
   * writes that file itself (FOPEN_PASSTHROUGH), no read or write request reaches us.
   */
  backing?: number;
}

export interface StatfsReply {
  bsize: U64;
  frsize: U64;
  blocks: U64;
  bfree: U64;
  bavail: U64;
  files: U64;
  ffree: U64;
  favail?: U64;
  fsid?: U64;
  flag?: U64;
  namemax: U64;
}

export interface Dirent {
  /** A byte string. */
  name: string;
  /** The offset of the NEXT entry (what the kernel passes back to continue after this one). */
  off: number;
  /** readdir: st_ino and the type bits of st_mode are used. readdirplus: the full entry. */
  entry: Entry;
}

export interface Timespec {
  sec: bigint;
  nsec: number;
}

export interface SetattrArgs {
  /** FUSE_SET_ATTR_* bits ({@link SetAttr}). */
  toSet: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

export interface ConnInfo {
  protoMajor: number;
  protoMinor: number;
  capable: number;
  want: number;
  maxWrite: number;
  maxReadahead: number;
  maxBackground: number;
  congestionThreshold: number;
  /** FUSE_PASSTHROUGH negotiated: asked for (MountOptions.passthrough) and offered by the kernel. */
  passthrough: boolean;
}

export interface SessionStats {
  /** Requests handed to JS and not answered yet. */
  inflight: number;
  /** Requests queued by the session thread, not handed to JS yet. */
  queued: number;
  /** Requests handed to JS so far (FORGETs not counted). */
  requests: number;
  /** Records the session thread queued (requests, FORGETs, INIT/EXIT). */
  received: number;
  /** Wake-ups of the JS thread that delivered something. */
  wakeups: number;
  /** The largest number of records delivered in one wake-up. */
  maxBatch: number;
  forgets: number;
  destroyed: boolean;
  /** Batches found by spinning (MountOptions.spinUs) instead of an event-loop wake-up. */
  spinHits: number;
  /** Requests handed to JS, by op code ({@link Op}); codes never seen are absent. */
  byOp: Record<number, number>;
  /** Write payloads handed to JS whose memory is not released yet (process-wide). */
  payloadsLive: number;
  /** Receive buffers waiting in the pool (process-wide). */
  buffersPooled: number;
  /** Requests read into a recycled buffer (process-wide). */
  poolHits: number;
}

type R = void | Promise<void>;

/**
 * Request handlers. Each gets the {@link Request} to answer; a handler that is not given is
 * not registered with libfuse (the kernel then gets ENOSYS, or libfuse's default: opendir and
 * release succeed, forget is acknowledged). `forget` is a notification (nothing to answer).
 */
export interface LowLevelOps {
  lookup?(r: Request, parent: number, name: string): R;
  forget?(nodeid: number, nlookup: number): void;
  getattr?(r: Request, ino: number, fh: number | null): R;
  setattr?(r: Request, ino: number, attr: SetattrArgs, fh: number | null): R;
  readlink?(r: Request, ino: number): R;
  mknod?(r: Request, parent: number, name: string, mode: number, rdev: number): R;
  mkdir?(r: Request, parent: number, name: string, mode: number): R;
  unlink?(r: Request, parent: number, name: string): R;
  rmdir?(r: Request, parent: number, name: string): R;
  symlink?(r: Request, parent: number, name: string, target: Buffer): R;
  rename?(r: Request, parent: number, name: string, newparent: number, newname: string, flags: number): R;
  link?(r: Request, ino: number, newparent: number, newname: string): R;
  open?(r: Request, ino: number, flags: number): R;
  read?(r: Request, ino: number, fh: number, size: number, off: number, flags: number): R;
  /**
   * `data` is the request's payload, in place in the buffer libfuse read the request into (no
   * copy). Hand it back with {@link LowLevelSession.recycle} once consumed (else GC frees it).
   */
  write?(r: Request, ino: number, fh: number, data: Buffer, off: number, writepage: boolean, flags: number): R;
  flush?(r: Request, ino: number, fh: number, lockOwner: bigint): R;
  release?(r: Request, ino: number, fh: number, flags: number): R;
  fsync?(r: Request, ino: number, fh: number, datasync: boolean): R;
  opendir?(r: Request, ino: number, flags: number): R;
  readdir?(r: Request, ino: number, fh: number, size: number, off: number): R;
  readdirplus?(r: Request, ino: number, fh: number, size: number, off: number): R;
  releasedir?(r: Request, ino: number, fh: number): R;
  fsyncdir?(r: Request, ino: number, fh: number, datasync: boolean): R;
  statfs?(r: Request, ino: number): R;
  setxattr?(r: Request, ino: number, name: string, value: Buffer, flags: number): R;
  /** size 0: a size query (answer {@link Request.xattrSize}); too small for the value: ERANGE. */
  getxattr?(r: Request, ino: number, name: string, size: number): R;
  listxattr?(r: Request, ino: number, size: number): R;
  removexattr?(r: Request, ino: number, name: string): R;
  access?(r: Request, ino: number, mask: number): R;
  create?(r: Request, parent: number, name: string, mode: number, flags: number): R;
  fallocate?(r: Request, ino: number, fh: number, mode: number, off: number, len: number): R;
  copyFileRange?(r: Request, inoIn: number, fhIn: number, offIn: number, inoOut: number, fhOut: number,
    offOut: number, len: number, flags: number): R;
  lseek?(r: Request, ino: number, fh: number, off: number, whence: number): R;
  /**
   * A restricted ioctl on an open file (or, with {@link IoctlFlags.DIR}, directory) `fh`:
   * `input` holds the command's in data, `outSize` is how many bytes the caller takes back.
   * The kernel sends the inode-flags ioctls (FS_IOC_GETFLAGS/SETFLAGS, FS_IOC_FSGETXATTR/
   * FSSETXATTR) for lsattr/chattr this way, on a handle it opened for them. Answer with
   * {@link Request.ioctl}, or an error (ENOTTY: not a command this filesystem knows).
   * Registering it also takes ioctls on directories (FUSE_CAP_IOCTL_DIR).
   */
  ioctl?(r: Request, ino: number, cmd: number, fh: number | null, flags: number, input: Buffer, outSize: number): R;
}

/** FUSE_IOCTL_* bits of an ioctl request's `flags`. */
export const IoctlFlags = { COMPAT: 1 << 0, UNRESTRICTED: 1 << 1, RETRY: 1 << 2, BIT32: 1 << 3, DIR: 1 << 4, COMPAT_X32: 1 << 5 } as const;

export interface LowLevelMountOptions {
  mountpoint: string;
  /** The mount's source (fsname=). */
  fsname?: string;
  /** fuse.SUBTYPE in the mount table; default 'layerfs'. */
  subtype?: string;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  readonly?: boolean;
  /** More -o items for libfuse/the kernel: dev, nodev, suid, nosuid, exec, noexec, atime, noatime, sync, dirsync, context=... */
  options?: string[];
  /** libfuse's debug output on stderr. */
  debug?: boolean;
  /** FUSE_CAP_WRITEBACK_CACHE (off by default). */
  writebackCache?: boolean;
  /**
   * Ask for FUSE passthrough (Linux >= 6.9, root; not with the writeback cache). Whether the
   * kernel took it: {@link ConnInfo.passthrough}. Off by default.
   */
  passthrough?: boolean;
  /**
   * 'thread': a session thread reads /dev/fuse and wakes the JS thread (uv_async) per batch.
   * 'inline': the JS thread watches /dev/fuse itself (uv_poll) and reads what is there.
   */
  dispatch?: 'thread' | 'inline';
  /** Largest write request; default 1 MiB (the kernel may lower it). */
  maxWrite?: number;
  /**
   * Largest read request (the max_read mount option); default 512 KiB. {@link Request.fd}
   * splices a read's bytes through a pipe that must hold them plus three pages (libfuse's
   * sizing), and without CAP_SYS_RESOURCE a pipe grows only to /proc/sys/fs/pipe-max-size,
   * 1 MiB by default: a 1 MiB read would be copied through memory instead. A max_read= in
   * {@link options} wins.
   */
  maxRead?: number;
  maxReadahead?: number;
  /**
   * The mount's read-ahead in KiB (its bdi's read_ahead_kb; the kernel starts FUSE mounts at
   * 128). Larger read-ahead means larger read requests (up to max_pages, 1 MiB). Set through
   * sysfs after the mount (root only); 0 leaves it alone. Default 1024.
   */
  readAheadKb?: number;
  maxBackground?: number;
  congestionThreshold?: number;
  /**
   * Inline dispatch: after answering, keep reading /dev/fuse for this many microseconds
   * before sleeping in the event loop (see on_poll in native/fuse/session.cc). Trades a
   * little CPU right after requests for not paying a wake-up on the next one. Default 0.
   */
  spinUs?: number;
  /** How long to wait for FUSE_INIT; default 30 s. */
  initTimeoutMs?: number;
  /** Where handler mistakes are reported; default src/log.ts. */
  logger?: (msg: string) => void;
}

export interface ExitInfo {
  /** 'unmount': unmount() was called; 'external': the kernel ended the session (umount, abort); 'error'. */
  reason: 'unmount' | 'external' | 'error';
  /** The session thread's status (0, or a negative errno). */
  code: number;
  /** Requests answered ENOTCONN because they were still unanswered at the end. */
  abandoned: number;
}

// ------------------------------------------------------------------------------------------
// record encoding (layouts: native/fuse/wire.h; test/fuse/wire.test.ts holds these to it)

/** Stat record (little-endian): field offsets, and its size (BYTES). Times: seconds, nanoseconds. */
export const StatRec = {
  ino: 0, size: 8, blocks: 16, atimeSec: 24, mtimeSec: 32, ctimeSec: 40, atimeNsec: 48, mtimeNsec: 52,
  ctimeNsec: 56, mode: 60, nlink: 64, uid: 68, gid: 72, blksize: 76, rdev: 80, BYTES: 88,
} as const;

/** Entry record: a fuse_entry_param (timeouts in seconds, f64), its attributes a stat record. */
export const EntryRec = { nodeid: 0, generation: 8, entryTimeout: 16, attrTimeout: 24, attr: 32, BYTES: 120 } as const;

/** One packed dirent of replyDirents: this header, then the name's bytes (from `name`), padded to 8. */
export const DirentRec = { namelen: 0, off: 8, entry: 16, name: 136 } as const;

/** Open flags of replyOpen/replyCreate. */
export const OpenFlag = { DIRECT_IO: 1, KEEP_CACHE: 2, NONSEEKABLE: 4, CACHE_READDIR: 8, NOFLUSH: 16 } as const;
const NS = 1_000_000_000n;
const TWO32 = 4294967296;

function putU64(dv: DataView, off: number, v: U64): void {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > Number.MAX_SAFE_INTEGER) throw new TypeError(`not a u64: ${v}`);
    dv.setUint32(off, v >>> 0, true);
    dv.setUint32(off + 4, Math.floor(v / TWO32), true);
  } else if (typeof v === 'bigint') {
    dv.setBigUint64(off, v, true);
  } else {
    throw new TypeError(`not a u64: ${String(v)}`);
  }
}

function putU32(dv: DataView, off: number, v: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`not a u32: ${String(v)}`);
  dv.setUint32(off, v, true);
}

function putTime(dv: DataView, secOff: number, nsecOff: number, ns: bigint): void {
  if (typeof ns !== 'bigint') throw new TypeError(`time must be a bigint of nanoseconds: ${String(ns)}`);
  let sec = ns / NS;
  let nsec = ns - sec * NS;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS;
  }
  dv.setBigInt64(secOff, sec, true);
  dv.setUint32(nsecOff, Number(nsec), true);
}

function putStat(dv: DataView, o: number, st: Stat): void {
  if (st === null || typeof st !== 'object') throw new TypeError('attributes missing');
  putU64(dv, o + StatRec.ino, st.ino);
  putU64(dv, o + StatRec.size, st.size);
  putU64(dv, o + StatRec.blocks, st.blocks);
  putTime(dv, o + StatRec.atimeSec, o + StatRec.atimeNsec, st.atimeNs);
  putTime(dv, o + StatRec.mtimeSec, o + StatRec.mtimeNsec, st.mtimeNs);
  putTime(dv, o + StatRec.ctimeSec, o + StatRec.ctimeNsec, st.ctimeNs);
  putU32(dv, o + StatRec.mode, st.mode);
  putU32(dv, o + StatRec.nlink, st.nlink);
  putU32(dv, o + StatRec.uid, st.uid);
  putU32(dv, o + StatRec.gid, st.gid);
  putU32(dv, o + StatRec.blksize, st.blksize);
  putU64(dv, o + StatRec.rdev, st.rdev);
}

function putEntry(dv: DataView, o: number, e: Entry): void {
  if (e === null || typeof e !== 'object') throw new TypeError('entry missing');
  putU64(dv, o + EntryRec.nodeid, e.nodeid);
  putU64(dv, o + EntryRec.generation, e.generation ?? 0);
  if (typeof e.entryTimeout !== 'number' || typeof e.attrTimeout !== 'number') throw new TypeError('timeouts must be numbers');
  dv.setFloat64(o + EntryRec.entryTimeout, e.entryTimeout, true);
  dv.setFloat64(o + EntryRec.attrTimeout, e.attrTimeout, true);
  putStat(dv, o + EntryRec.attr, e.attr);
}

const scratch = new Uint8Array(EntryRec.BYTES);
const scratchDv = new DataView(scratch.buffer);

function openFlags(o?: OpenOptions): number {
  if (!o) return 0;
  return (o.directIo ? OpenFlag.DIRECT_IO : 0) | (o.keepCache ? OpenFlag.KEEP_CACHE : 0) | (o.nonseekable ? OpenFlag.NONSEEKABLE : 0) |
    (o.cacheReaddir ? OpenFlag.CACHE_READDIR : 0) | (o.noflush ? OpenFlag.NOFLUSH : 0);
}

/** Size of one entry in the kernel's readdir(plus) buffer (FUSE_DIRENT_ALIGN of name offset + name). */
export function direntSize(nameBytes: number, plus: boolean): number {
  return ((plus ? 152 : 24) + nameBytes + 7) & ~7;
}

/** Error number of a thrown error: a POSIX `code` ('ENOENT') or a numeric `errno`; EIO otherwise. */
export function errnoOf(e: unknown): number {
  const o = e as { code?: unknown; errno?: unknown } | null;
  if (o && typeof o.code === 'string' && o.code in errno) return errno[o.code]!;
  if (o && typeof o.errno === 'number' && o.errno !== 0) return Math.abs(o.errno);
  return EIO;
}

// ------------------------------------------------------------------------------------------
// requests

/** One request: the caller's credentials and the ways to answer it (exactly once). */
export class Request {
  private state: 0 | 1 = 0; // 1 = answered

  constructor(
    /** The session the request came in on. */
    readonly session: LowLevelSession,
    readonly id: number,
    readonly op: number,
    /** Caller's credentials (fuse_ctx). */
    readonly uid: number,
    readonly gid: number,
    readonly pid: number,
    readonly umask: number,
  ) {}

  get opName(): string {
    return OP_NAMES[this.op] ?? `op${this.op}`;
  }

  /** Whether an answer went out (or was attempted and the kernel refused it). */
  get answered(): boolean {
    return this.state === 1;
  }

  private send(f: (a: Addon, h: Handle) => number | null): number {
    if (this.state === 1) {
      this.session.report(`${this.opName}: second reply to request ${this.id} ignored\n${new Error('here').stack ?? ''}`);
      return REPLY_IGNORED;
    }
    const res = f(this.session.addon, this.session.handle);
    // A TypeError from the addon leaves the request open (nothing was sent).
    this.state = 1;
    this.session.answered();
    return res ?? -osc.errno.ENOTCONN;
  }

  /** Answer with an error (a positive or negative errno); 0 answers success. */
  err(e: number): number {
    return this.send((a, h) => a.replyErr(h, this.id, e));
  }

  /** Success for ops answered with a plain status (unlink, rename, release, fsync, ...). */
  ok(): number {
    return this.err(0);
  }

  /** Answer with the errno of a thrown error (code 'ENOENT' etc.; EIO when there is none). */
  error(e: unknown): number {
    return this.err(errnoOf(e));
  }

  none(): number {
    return this.send((a, h) => a.replyNone(h, this.id));
  }

  /** lookup/mknod/mkdir/symlink/link. 0 = the kernel took it (the lookup count went up). */
  entry(e: Entry): number {
    putEntry(scratchDv, 0, e);
    return this.send((a, h) => a.replyEntry(h, this.id, scratch));
  }

  /** A negative lookup the kernel may cache for `timeout` seconds. */
  negative(timeout: number): number {
    scratch.fill(0);
    scratchDv.setFloat64(EntryRec.entryTimeout, timeout, true);
    return this.send((a, h) => a.replyEntry(h, this.id, scratch));
  }

  create(e: Entry, fh: number, o?: OpenOptions): number {
    putEntry(scratchDv, 0, e);
    const fl = openFlags(o);
    return this.send((a, h) => a.replyCreate(h, this.id, scratch, fh, fl, o?.backing));
  }

  attr(st: Stat, timeout: number): number {
    putStat(scratchDv, 0, st);
    return this.send((a, h) => a.replyAttr(h, this.id, scratch, timeout));
  }

  /** open/opendir. A negative result (-ENOENT: the open was interrupted) means no release will come. */
  open(fh: number, o?: OpenOptions): number {
    const fl = openFlags(o);
    return this.send((a, h) => a.replyOpen(h, this.id, fh, fl, o?.backing));
  }

  /** read/getxattr/listxattr data: the bytes go to the kernel from this very memory. */
  buf(data: Uint8Array, length?: number): number {
    return this.send((a, h) => a.replyBuf(h, this.id, data, length));
  }

  /**
   * read: up to `size` bytes of the open file `fd` from `off`, moved to the kernel by splice
   * (no copy through our memory); fewer at its end. The answer is written from libuv's thread
   * pool (this thread does not wait for the file's pages), from a duplicate of `fd` taken now:
   * the caller may close or replace `fd` at once. 0: on its way.
   */
  fd(fd: number, size: number, off: number): number {
    return this.send((a, h) => a.replyFd(h, this.id, fd, size, off));
  }

  /** The target's bytes, or a byte string. */
  readlink(target: Buffer | string): number {
    if (typeof target === 'string') checkBytes(target, 'target');
    return this.send((a, h) => a.replyReadlink(h, this.id, target));
  }

  /** write/copy_file_range: bytes written. */
  write(count: number): number {
    return this.send((a, h) => a.replyWrite(h, this.id, count));
  }

  /** Answer to a getxattr/listxattr size query (request size 0). */
  xattrSize(size: number): number {
    return this.send((a, h) => a.replyXattr(h, this.id, size));
  }

  /**
   * The xattr size protocol in one call: `requested` is the size the caller asked for (the
   * handler's `size` argument); 0 → the value's size, too small → ERANGE, else the value.
   */
  xattr(value: Uint8Array, requested: number): number {
    if (requested === 0) return this.xattrSize(value.length);
    if (value.length > requested) return this.err(ERANGE);
    return this.buf(value);
  }

  lseek(off: U64): number {
    return this.send((a, h) => a.replyLseek(h, this.id, off));
  }

  /** ioctl: the result (>= 0, usually 0) and the out data (no more than the request's outSize). */
  ioctl(result: number, data: Uint8Array | null = null): number {
    return this.send((a, h) => a.replyIoctl(h, this.id, result, data));
  }

  statfs(s: StatfsReply): number {
    const v: U64[] = [s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail ?? s.ffree,
      s.fsid ?? 0, s.flag ?? 0, s.namemax];
    return this.send((a, h) => a.replyStatfs(h, this.id, ...v));
  }

  /**
   * readdir/readdirplus: as many of `list` as fit in `size` bytes go out (in order). Returns
   * how many were sent (for readdirplus, each sent entry with a nodeid counts as a lookup,
   * except '.' and '..'), or a negative errno when the kernel did not take the answer.
   */
  dirents(list: readonly Dirent[], plus: boolean, size: number): number {
    const packed = packDirents(list);
    return this.send((a, h) => a.replyDirents(h, this.id, packed, plus, size));
  }
}

/** A byte string (one char per byte), or a TypeError. */
function checkBytes(s: unknown, what: string): string {
  if (typeof s !== 'string' || NOT_BYTES.test(s)) throw new TypeError(`${what} must be a byte string (chars 0-255)`);
  return s;
}

const NOT_BYTES = /[^\x00-\xff]/;

function packDirents(list: readonly Dirent[]): Uint8Array {
  const names: Buffer[] = [];
  let total = 0;
  for (const d of list) {
    const nb = Buffer.from(checkBytes(d?.name, 'dirent name'), 'latin1');
    names.push(nb);
    total += DirentRec.name + ((nb.length + 7) & ~7);
  }
  const out = Buffer.alloc(total);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let pos = 0;
  for (let i = 0; i < list.length; i++) {
    const d = list[i]!;
    const nb = names[i]!;
    dv.setUint32(pos + DirentRec.namelen, nb.length, true);
    putU64(dv, pos + DirentRec.off, d.off);
    putEntry(dv, pos + DirentRec.entry, d.entry);
    nb.copy(out, pos + DirentRec.name);
    pos += DirentRec.name + ((nb.length + 7) & ~7);
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// sessions

const KNOWN_OPTIONS = new Set([
  'rw', 'ro', 'suid', 'nosuid', 'dev', 'nodev', 'exec', 'noexec', 'async', 'sync', 'atime', 'noatime',
  'dirsync', 'allow_other', 'default_permissions', 'auto_unmount',
]);
const KNOWN_PREFIXES = ['context=', 'fscontext=', 'defcontext=', 'rootcontext=', 'blksize=', 'max_read='];

/** Escape a -o value for libfuse's option parser (',' separates options; '\' escapes). */
function escapeOpt(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/,/g, '\\,');
}

/** A mounted low-level session. */
export class LowLevelSession {
  readonly addon: Addon;
  handle!: Handle;
  conn?: ConnInfo;
  /** Resolves once the session is over and everything is freed (whoever ended it). */
  readonly exited: Promise<ExitInfo>;
  private resolveExited!: (e: ExitInfo) => void;
  private pending = 0;
  private idleWaiter?: () => void;
  private closing?: Promise<void>;
  private initWaiter?: { resolve: () => void; reject: (e: Error) => void };
  private readonly log: (msg: string) => void;

  private constructor(private readonly ops: LowLevelOps, private readonly opts: LowLevelMountOptions) {
    this.addon = loadAddon();
    this.log = opts.logger ?? log;
    this.exited = new Promise((r) => (this.resolveExited = r));
  }

  /** Mount and resolve once the kernel's FUSE_INIT was processed (the mount serves). */
  static async mount(ops: LowLevelOps, opts: LowLevelMountOptions): Promise<LowLevelSession> {
    const s = new LowLevelSession(ops, opts);
    await s.start();
    return s;
  }

  /** The largest read request, from a max_read= among the options or {@link LowLevelMountOptions.maxRead}. */
  private maxRead(): number {
    const given = (this.opts.options ?? []).filter((x) => x.startsWith('max_read=')).pop();
    const n = given === undefined ? (this.opts.maxRead ?? 512 * 1024) : Number(given.slice('max_read='.length));
    if (!Number.isInteger(n) || n < 4096 || n > 0xffffffff) throw new TypeError(`max_read must be an integer from 4096, not ${given ?? n}`);
    return n;
  }

  private args(maxRead: number): string[] {
    const o = this.opts;
    const items: string[] = [`fsname=${escapeOpt(o.fsname ?? 'layerfs')}`, `subtype=${escapeOpt(o.subtype ?? 'layerfs')}`];
    if (o.allowOther) items.push('allow_other');
    if (o.defaultPermissions) items.push('default_permissions');
    items.push(o.readonly ? 'ro' : 'rw');
    for (const x of o.options ?? []) {
      if (x.startsWith('max_read=')) continue; // see maxRead()
      if (KNOWN_OPTIONS.has(x) || KNOWN_PREFIXES.some((p) => x.startsWith(p))) items.push(escapeOpt(x));
      else this.log(`mount option '${x}' is not supported by libfuse; ignored`);
    }
    items.push(`max_read=${maxRead}`);
    const args = ['-o', items.join(',')];
    if (o.debug) args.push('-d');
    return args;
  }

  private start(): Promise<void> {
    const ops: number[] = [];
    for (const [op, name] of Object.entries(HANDLER_OF)) if (typeof this.ops[name] === 'function') ops.push(Number(op));
    const config: NativeConfig = {
      ops,
      writebackCache: !!this.opts.writebackCache,
      passthrough: !!this.opts.passthrough && !this.opts.writebackCache,
      threaded: (this.opts.dispatch ?? DEFAULT_DISPATCH) === 'thread',
      maxWrite: this.opts.maxWrite ?? 1 << 20,
      maxReadahead: this.opts.maxReadahead ?? 0,
      maxRead: this.maxRead(),
      maxBackground: this.opts.maxBackground ?? 64,
      congestionThreshold: this.opts.congestionThreshold ?? 48,
      spinUs: this.opts.spinUs ?? 0,
    };
    const ready = new Promise<void>((resolve, reject) => (this.initWaiter = { resolve, reject }));
    this.handle = this.addon.mount(this.opts.mountpoint, this.args(config.maxRead), config, this.dispatch);
    const ms = this.opts.initTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((_r, reject) => {
      timer = setTimeout(() => reject(new Error(`no FUSE_INIT from the kernel within ${ms} ms`)), ms);
    });
    return Promise.race([ready, timeout]).then(
      () => {
        clearTimeout(timer);
        this.setReadAhead();
      },
      async (e) => {
        clearTimeout(timer);
        await this.shutdown('error', 0);
        throw e;
      },
    );
  }

  /**
   * Set read_ahead_kb of the mount's bdi. The device number comes from /proc/self/mountinfo:
   * stat()ing our own mount point from the thread that serves it would deadlock.
   */
  private setReadAhead(): void {
    const kb = this.opts.readAheadKb ?? 1024;
    if (!kb) return;
    try {
      const mnt = resolvePath(this.opts.mountpoint);
      let dev: string | undefined;
      for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
        const f = line.split(' ');
        const mp = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
        if (mp === mnt && line.includes(' - fuse')) dev = f[2];
      }
      if (!dev) throw new Error(`${mnt} not found in /proc/self/mountinfo`);
      writeFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, String(kb));
    } catch (e) {
      this.report(`cannot set read_ahead_kb of ${this.opts.mountpoint} (reads stay in 128 KiB requests): ${(e as Error).message}`);
    }
  }

  /** @internal */
  report(msg: string): void {
    try {
      this.log(msg);
    } catch {
      // a logger must not break request handling
    }
  }

  /** @internal a request was answered. */
  answered(): void {
    this.pending--;
    if (this.pending === 0 && this.idleWaiter) this.idleWaiter();
  }

  private dispatch: Dispatch = (op, id, ino, uid, gid, pid, umask, a, b, c, d, e, f, g, h, i, j, k, l) => {
    const ops = this.ops;
    if (op === Op.FORGET) {
      try {
        ops.forget?.(ino, a);
      } catch (err) {
        this.report(`forget handler threw: ${(err as Error)?.stack ?? err}`);
      }
      return;
    }
    if (op === Op.INIT) {
      this.conn = a as ConnInfo;
      this.initWaiter?.resolve();
      this.initWaiter = undefined;
      return;
    }
    if (op === Op.EXIT) {
      const code = a as number;
      this.initWaiter?.reject(new Error(`the FUSE session ended before FUSE_INIT (${code})`));
      this.initWaiter = undefined;
      void this.shutdown(code === 0 ? 'external' : 'error', code);
      return;
    }
    this.pending++;
    const r = new Request(this, id, op, uid, gid, pid, umask);
    let p: R;
    try {
      switch (op) {
        case Op.LOOKUP: p = ops.lookup!(r, ino, a); break;
        case Op.GETATTR: p = ops.getattr!(r, ino, a); break;
        case Op.SETATTR:
          p = ops.setattr!(r, ino, {
            toSet: a, mode: c, uid: d, gid: e, size: f,
            atime: { sec: g, nsec: h }, mtime: { sec: i, nsec: j }, ctime: { sec: k, nsec: l },
          }, b);
          break;
        case Op.READLINK: p = ops.readlink!(r, ino); break;
        case Op.MKNOD: p = ops.mknod!(r, ino, a, b, c); break;
        case Op.MKDIR: p = ops.mkdir!(r, ino, a, b); break;
        case Op.UNLINK: p = ops.unlink!(r, ino, a); break;
        case Op.RMDIR: p = ops.rmdir!(r, ino, a); break;
        case Op.SYMLINK: p = ops.symlink!(r, ino, a, b); break;
        case Op.RENAME: p = ops.rename!(r, ino, a, b, c, d); break;
        case Op.LINK: p = ops.link!(r, ino, a, b); break;
        case Op.OPEN: p = ops.open!(r, ino, a); break;
        case Op.READ: p = ops.read!(r, ino, a, b, c, d); break;
        case Op.WRITE: p = ops.write!(r, ino, a, Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength), c, d, e); break;
        case Op.FLUSH: p = ops.flush!(r, ino, a, b); break;
        case Op.RELEASE: p = ops.release!(r, ino, a, b); break;
        case Op.FSYNC: p = ops.fsync!(r, ino, a, b); break;
        case Op.OPENDIR: p = ops.opendir!(r, ino, a); break;
        case Op.READDIR: p = ops.readdir!(r, ino, a, b, c); break;
        case Op.READDIRPLUS: p = ops.readdirplus!(r, ino, a, b, c); break;
        case Op.RELEASEDIR: p = ops.releasedir!(r, ino, a); break;
        case Op.FSYNCDIR: p = ops.fsyncdir!(r, ino, a, b); break;
        case Op.STATFS: p = ops.statfs!(r, ino); break;
        case Op.SETXATTR: p = ops.setxattr!(r, ino, a, b, c); break;
        case Op.GETXATTR: p = ops.getxattr!(r, ino, a, b); break;
        case Op.LISTXATTR: p = ops.listxattr!(r, ino, a); break;
        case Op.REMOVEXATTR: p = ops.removexattr!(r, ino, a); break;
        case Op.ACCESS: p = ops.access!(r, ino, a); break;
        case Op.CREATE: p = ops.create!(r, ino, a, b, c); break;
        case Op.FALLOCATE: p = ops.fallocate!(r, ino, a, b, c, d); break;
        case Op.COPY_FILE_RANGE: p = ops.copyFileRange!(r, ino, a, b, c, d, e, f, g); break;
        case Op.LSEEK: p = ops.lseek!(r, ino, a, b, c); break;
        case Op.IOCTL: p = ops.ioctl!(r, ino, a, b, c, d, e); break;
        default:
          r.err(ENOSYS);
          return;
      }
    } catch (err) {
      this.failed(r, err);
      return;
    }
    if (p !== undefined && p !== null && typeof (p as Promise<void>).then === 'function') {
      (p as Promise<void>).then(() => this.settled(r), (err) => this.failed(r, err));
    } else {
      this.settled(r);
    }
  };

  private settled(r: Request): void {
    if (r.answered) return;
    this.report(`${r.opName}: handler finished without answering request ${r.id}; answering EIO`);
    this.answerEio(r);
  }

  private failed(r: Request, err: unknown): void {
    if (r.answered) {
      this.report(`${r.opName}: handler threw after answering: ${(err as Error)?.stack ?? err}`);
      return;
    }
    this.report(`${r.opName}: handler threw: ${(err as Error)?.stack ?? err}; answering EIO`);
    this.answerEio(r);
  }

  private answerEio(r: Request): void {
    try {
      r.err(EIO);
    } catch (e) {
      this.report(`cannot answer request ${r.id}: ${e}`);
    }
  }

  /** Requests handed to handlers and not answered yet. */
  get inflight(): number {
    return this.pending;
  }

  stats(): SessionStats {
    return this.addon.stats(this.handle);
  }

  /**
   * Give a write payload back once it is consumed: its memory becomes the receive buffer of a
   * later request instead of waiting for GC. Every view of it (this Buffer and any other)
   * becomes empty, so nothing can read it afterwards. False if it is not a live payload.
   */
  recycle(payload: Uint8Array): boolean {
    return this.addon.recycle(payload);
  }

  /**
   * Drop the kernel's cached attributes of `ino` (off < 0), or also its cached data from
   * `off` for `len` bytes (len 0: to the end). Never call the data form while a read of that
   * inode may be waiting for this process: the kernel would wait for the page lock the read
   * holds (deadlock). The attribute form takes no lock and is safe anywhere.
   */
  notifyInvalInode(ino: number, off = -1, len = 0): number {
    return this.addon.notifyInvalInode(this.handle, ino, off, len);
  }

  /**
   * Register the open file `fd` as a passthrough backing file: its id (> 0) for
   * {@link OpenOptions.backing}, or -errno (EOPNOTSUPP: passthrough was not negotiated; ELOOP:
   * the file is on a stacked filesystem). The id stays valid until backingClose.
   */
  backingOpen(fd: number): number {
    return this.addon.backingOpen(this.handle, fd);
  }

  backingClose(id: number): number {
    return this.addon.backingClose(this.handle, id);
  }

  /**
   * Drop the kernel's dentry `name` in directory `parent`. The kernel takes the directory's
   * lock: never call it while a request on that directory (lookup, create, unlink, rename...)
   * is waiting for this process — that deadlocks.
   */
  notifyInvalEntry(parent: number, name: string): number {
    return this.addon.notifyInvalEntry(this.handle, parent, checkBytes(name, 'name'));
  }

  /** Like notifyInvalEntry, and also tells the kernel `child` was deleted (same locking rule). */
  notifyDelete(parent: number, child: number, name: string): number {
    return this.addon.notifyDelete(this.handle, parent, child, checkBytes(name, 'name'));
  }

  /**
   * End the session: stop reading requests, let the ones already received finish (up to
   * `timeoutMs`), answer the rest ENOTCONN, then unmount (libfuse: close /dev/fuse, which
   * aborts the connection, and a lazy umount) and free everything. Idempotent.
   */
  unmount(opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.shutdown('unmount', 0, opts.timeoutMs);
  }

  private shutdown(reason: ExitInfo['reason'], code: number, timeoutMs = 10_000): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      const a = this.addon;
      a.stop(this.handle);
      a.drain(this.handle);
      if (this.pending > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, timeoutMs);
          this.idleWaiter = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.idleWaiter = undefined;
      }
      const abandoned = a.destroy(this.handle);
      if (abandoned > 0) this.report(`${abandoned} request(s) still unanswered at the end of the session: answered ENOTCONN`);
      this.resolveExited({ reason, code, abandoned });
    })();
    return this.closing;
  }
}

/** Mount a low-level FUSE filesystem served by `ops`. */
export function mountLowLevelSession(ops: LowLevelOps, opts: LowLevelMountOptions): Promise<LowLevelSession> {
  return LowLevelSession.mount(ops, opts);
}
