import type { Timespec } from '../sys/index.ts';
import type { Request } from './request.ts';

/**
 * The types of the low-level binding's surface: what handlers get (LowLevelOps, SetattrArgs),
 * what replies take (Stat, EntryParam, OpenOptions, StatfsReply, Dirent), what a session is
 * mounted with and reports (SessionOptions, ConnInfo, SessionStats, ExitInfo).
 */

export type U64 = number | bigint;

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

/** A fuse_entry_param: what lookup, mknod, mkdir, symlink, link and create answer. */
export interface EntryParam {
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
  entry: EntryParam;
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


/** How a session is mounted ({@link LowLevelSession.mount}). */
export interface SessionOptions {
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
