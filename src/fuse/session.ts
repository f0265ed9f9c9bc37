import { writeFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { log } from '../log.ts';
import { readMountinfo } from '../mountinfo.ts';
import { DEFAULT_DISPATCH, EIO, ENOSYS, Op, loadAddon, type Addon, type Dispatch, type Handle, type NativeConfig } from './addon.ts';
import { Request } from './request.ts';
import type { ConnInfo, ExitInfo, LowLevelOps, SessionOptions, SessionStats } from './types.ts';
import { checkBytes } from './wire.ts';

type R = void | Promise<void>;

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

  private constructor(private readonly ops: LowLevelOps, private readonly opts: SessionOptions) {
    this.addon = loadAddon();
    this.log = opts.logger ?? log;
    this.exited = new Promise((r) => (this.resolveExited = r));
  }

  /** Mount and resolve once the kernel's FUSE_INIT was processed (the mount serves). */
  static async mount(ops: LowLevelOps, opts: SessionOptions): Promise<LowLevelSession> {
    const s = new LowLevelSession(ops, opts);
    await s.start();
    return s;
  }

  /** The largest read request, from a max_read= among the options or {@link SessionOptions.maxRead}. */
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
      const dev = readMountinfo().filter((m) => m.mountpoint === mnt && m.fstype.startsWith('fuse')).pop()?.dev;
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

  /**
   * The addon calls this for every record it read (see {@link Dispatch}): FORGET, INIT and
   * EXIT are the session's own; every other op becomes a {@link Request} and a call of its
   * handler, its slots named below in the order native/fuse/deliver.cc fills them.
   */
  private dispatch: Dispatch = (op, id, ino, uid, gid, pid, umask, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12) => {
    const ops = this.ops;
    if (op === Op.FORGET) {
      const nlookup: number = s1;
      try {
        ops.forget?.(ino, nlookup);
      } catch (err) {
        this.report(`forget handler threw: ${(err as Error)?.stack ?? err}`);
      }
      return;
    }
    if (op === Op.INIT) {
      this.conn = s1 as ConnInfo;
      this.initWaiter?.resolve();
      this.initWaiter = undefined;
      return;
    }
    if (op === Op.EXIT) {
      const code = s1 as number;
      this.initWaiter?.reject(new Error(`the FUSE session ended before FUSE_INIT (${code})`));
      this.initWaiter = undefined;
      void this.shutdown(code === 0 ? 'external' : 'error', code);
      return;
    }
    this.pending++;
    const r = new Request(this, id, op, uid, gid, pid, umask);
    let p: R;
    try {
      // `ino` is the node the request is about (the parent directory for name ops).
      switch (op) {
        case Op.LOOKUP: { const name = s1; p = ops.lookup!(r, ino, name); break; }
        case Op.GETATTR: { const fh = s1; p = ops.getattr!(r, ino, fh); break; }
        case Op.SETATTR: {
          const toSet = s1, fh = s2, mode = s3, uid = s4, gid = s5, size = s6;
          const atime = { sec: s7, nsec: s8 }, mtime = { sec: s9, nsec: s10 }, ctime = { sec: s11, nsec: s12 };
          p = ops.setattr!(r, ino, { toSet, mode, uid, gid, size, atime, mtime, ctime }, fh);
          break;
        }
        case Op.READLINK: p = ops.readlink!(r, ino); break;
        case Op.MKNOD: { const name = s1, mode = s2, rdev = s3; p = ops.mknod!(r, ino, name, mode, rdev); break; }
        case Op.MKDIR: { const name = s1, mode = s2; p = ops.mkdir!(r, ino, name, mode); break; }
        case Op.UNLINK: { const name = s1; p = ops.unlink!(r, ino, name); break; }
        case Op.RMDIR: { const name = s1; p = ops.rmdir!(r, ino, name); break; }
        case Op.SYMLINK: { const name = s1, target = s2; p = ops.symlink!(r, ino, name, target); break; }
        case Op.RENAME: {
          const name = s1, newparent = s2, newname = s3, flags = s4;
          p = ops.rename!(r, ino, name, newparent, newname, flags);
          break;
        }
        case Op.LINK: { const newparent = s1, newname = s2; p = ops.link!(r, ino, newparent, newname); break; }
        case Op.OPEN: { const flags = s1; p = ops.open!(r, ino, flags); break; }
        case Op.READ: { const fh = s1, size = s2, off = s3, flags = s4; p = ops.read!(r, ino, fh, size, off, flags); break; }
        case Op.WRITE: {
          const fh = s1, payload = s2, off = s3, writepage = s4, flags = s5;
          const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
          p = ops.write!(r, ino, fh, data, off, writepage, flags);
          break;
        }
        case Op.FLUSH: { const fh = s1, lockOwner = s2; p = ops.flush!(r, ino, fh, lockOwner); break; }
        case Op.RELEASE: { const fh = s1, flags = s2; p = ops.release!(r, ino, fh, flags); break; }
        case Op.FSYNC: { const fh = s1, datasync = s2; p = ops.fsync!(r, ino, fh, datasync); break; }
        case Op.OPENDIR: { const flags = s1; p = ops.opendir!(r, ino, flags); break; }
        case Op.READDIR: { const fh = s1, size = s2, off = s3; p = ops.readdir!(r, ino, fh, size, off); break; }
        case Op.READDIRPLUS: { const fh = s1, size = s2, off = s3; p = ops.readdirplus!(r, ino, fh, size, off); break; }
        case Op.RELEASEDIR: { const fh = s1; p = ops.releasedir!(r, ino, fh); break; }
        case Op.FSYNCDIR: { const fh = s1, datasync = s2; p = ops.fsyncdir!(r, ino, fh, datasync); break; }
        case Op.STATFS: p = ops.statfs!(r, ino); break;
        case Op.SETXATTR: { const name = s1, value = s2, flags = s3; p = ops.setxattr!(r, ino, name, value, flags); break; }
        case Op.GETXATTR: { const name = s1, size = s2; p = ops.getxattr!(r, ino, name, size); break; }
        case Op.LISTXATTR: { const size = s1; p = ops.listxattr!(r, ino, size); break; }
        case Op.REMOVEXATTR: { const name = s1; p = ops.removexattr!(r, ino, name); break; }
        case Op.ACCESS: { const mask = s1; p = ops.access!(r, ino, mask); break; }
        case Op.CREATE: { const name = s1, mode = s2, flags = s3; p = ops.create!(r, ino, name, mode, flags); break; }
        case Op.FALLOCATE: { const fh = s1, mode = s2, off = s3, len = s4; p = ops.fallocate!(r, ino, fh, mode, off, len); break; }
        case Op.COPY_FILE_RANGE: {
          const fhIn = s1, offIn = s2, inoOut = s3, fhOut = s4, offOut = s5, len = s6, flags = s7;
          p = ops.copyFileRange!(r, ino, fhIn, offIn, inoOut, fhOut, offOut, len, flags);
          break;
        }
        case Op.LSEEK: { const fh = s1, off = s2, whence = s3; p = ops.lseek!(r, ino, fh, off, whence); break; }
        case Op.IOCTL: {
          const cmd = s1, fh = s2, flags = s3, input = s4, outSize = s5;
          p = ops.ioctl!(r, ino, cmd, fh, flags, input, outSize);
          break;
        }
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
export function mountLowLevelSession(ops: LowLevelOps, opts: SessionOptions): Promise<LowLevelSession> {
  return LowLevelSession.mount(ops, opts);
}
