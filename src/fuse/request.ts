import { constants as osc } from 'node:os';
import { ERANGE, REPLY_IGNORED, opName, type Addon, type Handle } from './addon.ts';
import type { LowLevelSession } from './session.ts';
import type { Dirent, EntryParam, OpenOptions, Stat, StatfsReply, U64 } from './types.ts';
import { EntryRec, checkBytes, openFlags, packDirents, putEntry, putStat, scratch, scratchDv } from './wire.ts';

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
    return opName(this.op);
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

  none(): number {
    return this.send((a, h) => a.replyNone(h, this.id));
  }

  /** lookup/mknod/mkdir/symlink/link. 0 = the kernel took it (the lookup count went up). */
  entry(e: EntryParam): number {
    putEntry(scratchDv, 0, e);
    return this.send((a, h) => a.replyEntry(h, this.id, scratch));
  }

  /** A negative lookup the kernel may cache for `timeout` seconds. */
  negative(timeout: number): number {
    scratch.fill(0);
    scratchDv.setFloat64(EntryRec.entryTimeout, timeout, true);
    return this.send((a, h) => a.replyEntry(h, this.id, scratch));
  }

  create(e: EntryParam, fh: number, o?: OpenOptions): number {
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
