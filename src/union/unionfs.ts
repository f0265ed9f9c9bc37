import { closeSync, fchmodSync, fchownSync, fstatSync, ftruncateSync, writeSync, type BigIntStats } from 'node:fs';
import * as b from './bytes.ts';
import {
  chmodSync, fromText, lchownSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readlinkSync, rmSync,
  rmdirSync, symlinkSync, unlinkSync,
} from './bytes.ts';
import { read as readCb, write as writeCb, fsync as fsyncCb, fdatasync as fdatasyncCb } from 'node:fs';
import { constants as fsc } from 'node:fs';
import { promisify } from 'node:util';
import * as sys from '../sys/index.ts';
import { CopyUp, removeTree, restoreTimes } from './copyup.ts';
import { FsError, fsErr, isCode } from './errors.ts';
import {
  PROT_ANY, PROT_APPEND, PROT_FLAGS, PROT_IMMUTABLE, ProtFlags, FS_XFLAG_APPEND, FS_XFLAG_IMMUTABLE, protXflags, realFlags,
  realFsxattr, setRealFlags, setRealFsxattr, xflagsProt, type Fsxattr,
} from './fileattr.ts';
import { InodeMapper } from './inode.ts';
import { Layer, baseName, checkPath, isWithin, joinPath, parentOf } from './layer.ts';
import { Resolver, type Entry } from './lookup.ts';
import { mergedReaddir, type DirItem } from './readdir.ts';
import { WhiteoutFormat, isOciName, isWhiteoutStat, makeWhiteout } from './whiteout.ts';
import type { TraceSink } from './events.ts';

/** Writes up to this size are made synchronously (see write). */
const SMALL_WRITE = 128 * 1024;
const pread = promisify(readCb);
const pwrite = promisify(writeCb);
const pfsync = promisify(fsyncCb);
const pfdatasync = promisify(fdatasyncCb);

export interface UnionOptions {
  /** Top-most first. */
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  readonly?: boolean;
  /** user.overlay.* instead of trusted.overlay.* (kernel option `userxattr`). */
  userxattr?: boolean;
  /** Skip fsync to the upper (kernel option `volatile`). */
  volatile?: boolean;
  lookupCacheSize?: number;
  /**
   * How often (ms) the index of a lower directory is checked against the directory, so that a
   * lower changed underneath the mount shows (default 1000; 0: at every lookup).
   */
  lowerRecheckMs?: number;
}

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

/** Credentials for new objects; undefined means the daemon's own. */
export interface Owner {
  uid: number;
  gid: number;
}

export type TimeArg = sys.Timespec | 'now' | 'omit';

interface OpenFile {
  /** Union path; follows renames; '' once the name was removed. */
  path: string;
  fd: number;
  /** Whether fd is on the upper. */
  upper: boolean;
  /** Earlier fds of this handle (before a copy-up), closed at release. */
  retired: number[];
}

const O_ACCMODE = 3;
const FALLOC_FL_KEEP_SIZE = 1;
const O_LARGEFILE = 0o100000; // x86_64
const O_CLOEXEC = 0o2000000;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const WORK_SUBDIR = 'work';

/**
 * The union filesystem: the POSIX operations on union paths, composed from lookup, readdir,
 * copy-up and whiteouts. It works on plain directories and knows nothing of FUSE.
 * Errors are thrown as objects with an errno `code` ('ENOENT', 'EXDEV', ...).
 */
export class UnionFs {
  readonly layers: Layer[];
  readonly upper?: Layer;
  readonly resolver: Resolver;
  readonly wf: WhiteoutFormat;
  readonly readonly: boolean;
  readonly volatile: boolean;
  private readonly copyup?: CopyUp;
  /** Append-only and immutable as overlayfs keeps them (./fileattr.ts); enforced here. */
  private readonly prot: ProtFlags;
  private readonly inodes: InodeMapper;
  private readonly files = new Map<number, OpenFile>();
  private nextFh = 1;
  readonly workTmp?: string;
  /** Set while someone traces the union (setTrace, ./events.ts); every hook checks it first. */
  private trace?: TraceSink;

  constructor(opts: UnionOptions) {
    if (opts.lowerdirs.length === 0) throw new Error('at least one lower layer is needed');
    const layers: Layer[] = [];
    if (opts.upperdir) {
      if (!opts.workdir) throw new Error('upperdir needs workdir');
      layers.push(new Layer(opts.upperdir, 0, true));
    }
    for (const d of opts.lowerdirs) layers.push(new Layer(d, layers.length, false));
    this.layers = layers;
    this.upper = opts.upperdir ? layers[0] : undefined;
    this.readonly = !!opts.readonly || !this.upper;
    this.volatile = !!opts.volatile;
    this.wf = new WhiteoutFormat(!!opts.userxattr);
    this.resolver = new Resolver(layers, this.wf, opts.lookupCacheSize, opts.lowerRecheckMs);
    this.prot = new ProtFlags(layers, this.wf);
    this.inodes = new InodeMapper(layers.map((l) => lstatSync(l.root, { bigint: true }).dev));
    if (this.upper && opts.workdir) {
      this.workTmp = fromText(opts.workdir) + '/' + WORK_SUBDIR;
      this.copyup = new CopyUp(layers, this.upper, this.resolver, this.wf, this.workTmp);
      this.copyup.copyExtra = (e, tmp) => this.prot.copyUp(e, tmp);
    }
  }

  /**
   * Prepare the work directory: whatever a crashed daemon left in it (half-copied files,
   * directories on their way out) is removed, as the kernel does at mount time.
   */
  prepareWorkdir(): void {
    if (!this.workTmp) return;
    rmSync(this.workTmp, { recursive: true, force: true });
    mkdirSync(this.workTmp, 0o700);
  }

  /**
   * Start (a function) or stop (undefined) reporting the union's decisions: lookups, copy-ups,
   * whiteouts, opaque directories, EXDEV renames (./events.ts). Costs nothing while stopped.
   */
  setTrace(sink: TraceSink | undefined): void {
    this.trace = sink;
    this.resolver.trace = sink;
    if (this.copyup) this.copyup.onCopyUp = sink && ((c) => sink({ ev: 'copyup', ...c }));
  }

  // ---------------------------------------------------------------- reading

  lookup(path: string): Entry | null {
    return this.resolver.find(checkPath(path));
  }

  getattr(path: string): Attr {
    const a = this.lookupAttr(path);
    if (!a) throw fsErr('ENOENT');
    return a;
  }

  /** The attributes of path, or null when the union has nothing there (a lookup's answer). */
  lookupAttr(path: string): Attr | null {
    const [e, st] = this.resolver.findFresh(checkPath(path));
    return e && this.attrOf(e, st);
  }

  /** Attributes of an entry; `fresh`: the entry's lstat, when the lookup has just read it. */
  private attrOf(e: Entry, fresh: BigIntStats | null = null): Attr {
    const st = fresh ?? lstatSync(this.layers[e.layer].path(e.path), { bigint: true });
    const a = toAttr(st, this.inodes.ino(e.layer, st));
    // As the kernel does: a merged directory reports one link (tools then don't assume
    // that nlink-2 counts its subdirectories).
    if (e.type === 'dir' && e.dirLayers.length > 1) a.nlink = 1;
    return a;
  }

  fgetattr(fh: number): Attr {
    const f = this.file(fh);
    const st = fstatSync(f.fd, { bigint: true });
    const e = this.resolver.find(f.path);
    return toAttr(st, e ? this.inodes.ino(e.layer, st) : st.ino);
  }

  readdir(path: string): DirItem[] {
    const e = this.resolver.get(checkPath(path));
    if (e.type !== 'dir') throw fsErr('ENOTDIR');
    return mergedReaddir(this.layers, e, this.wf);
  }

  /** The inode number getattr would report for a listed entry (one lstat, no lookup). */
  direntIno(dir: string, item: DirItem): bigint {
    try {
      const st = lstatSync(this.layers[item.layer].path(joinPath(dir, item.name)), { bigint: true });
      return this.inodes.ino(item.layer, st);
    } catch {
      return 0n;
    }
  }

  readlink(path: string): Buffer {
    const e = this.resolver.get(checkPath(path));
    if (e.type !== 'symlink') throw fsErr('EINVAL');
    return readlinkSync(this.layers[e.layer].path(path));
  }

  access(path: string, mode: number): void {
    const e = this.resolver.get(checkPath(path));
    if ((mode & fsc.W_OK) && this.readonly) throw fsErr('EROFS');
    if (mode & fsc.W_OK) this.prot.guard(e, PROT_IMMUTABLE);
  }

  statfs(): sys.StatFs {
    return b.statfs((this.upper ?? this.layers[0]).root);
  }

  getxattr(path: string, name: string): Buffer {
    const e = this.resolver.get(checkPath(path));
    if (this.wf.isPrivateXattr(name)) throw fsErr('EOPNOTSUPP');
    const v = b.lgetxattr(this.layers[e.layer].path(path), name);
    if (v === null) throw fsErr('ENODATA');
    return v;
  }

  listxattr(path: string): string[] {
    const e = this.resolver.get(checkPath(path));
    return b.llistxattr(this.layers[e.layer].path(path)).filter((n) => !this.wf.isPrivateXattr(n));
  }

  // ---------------------------------------------------------------- files

  /** Open an existing object; returns a handle for read/write/release. */
  async open(path: string, flags: number): Promise<number> {
    checkPath(path);
    const writing = (flags & O_ACCMODE) !== fsc.O_RDONLY || (flags & fsc.O_TRUNC) !== 0;
    let e = this.resolver.get(path);
    if (e.type === 'dir' && writing) throw fsErr('EISDIR');
    // Layers are opened O_NOFOLLOW; refuse a symlink before copying it up for nothing.
    if (e.type === 'symlink') throw fsErr('ELOOP');
    // Special files are the kernel's business (it never sends their open to FUSE); a device
    // node in an untrusted layer is never opened by the daemon.
    if (e.type === 'other') throw fsErr('EPERM');
    if (writing) {
      this.writable();
      // As may_open refuses it: no writing an immutable file; an append-only one only appended
      // to, never truncated.
      const prot = this.prot.of(e);
      if (prot & PROT_IMMUTABLE) throw fsErr('EPERM');
      if ((prot & PROT_APPEND) && (((flags & O_ACCMODE) !== fsc.O_RDONLY && !(flags & fsc.O_APPEND)) || (flags & fsc.O_TRUNC))) {
        throw fsErr('EPERM');
      }
      e = await this.copyUp(path);
    }
    const fd = openSync(this.layers[e.layer].path(path), openFlags(flags), 0);
    return this.addFile({ path, fd, upper: this.layers[e.layer].isUpper, retired: [] });
  }

  /** Create and open a new regular file (O_EXCL semantics are the kernel's business). */
  async create(path: string, mode: number, flags: number, owner?: Owner): Promise<number> {
    checkPath(path);
    const existing = this.resolver.find(path);
    if (existing) {
      if (flags & fsc.O_EXCL) throw fsErr('EEXIST');
      return this.open(path, flags);
    }
    // One open makes the file and serves as the handle: owner and mode are set through it, and
    // only when they differ from what the kernel gave the new file (the daemon's ids and umask).
    const perm = mode & 0o7777;
    let fd = -1;
    try {
      await this.createIn(path, (abs) => {
        fd = openSync(abs, fsc.O_CREAT | fsc.O_EXCL | fsc.O_RDWR | fsc.O_NOFOLLOW, perm);
      }, owner, false, false, { fd: () => fd, perm });
    } catch (e) {
      if (fd >= 0) closeSync(fd);
      throw e;
    }
    // A handle with flags beyond its access mode (O_SYNC, O_DSYNC, O_NOATIME, ...) is opened
    // as asked. The file was just made, empty: no O_TRUNC (ext4 takes a truncate to size 0 as
    // a "replace via truncate" and flushes the file's data at its close, 40 µs per file).
    const want = openFlags(flags & ~(fsc.O_CREAT | fsc.O_EXCL | fsc.O_TRUNC));
    if ((want & ~(O_ACCMODE | fsc.O_NOFOLLOW | O_LARGEFILE | O_CLOEXEC)) !== 0) {
      const again = openSync(this.upperPath(path), want, 0);
      closeSync(fd);
      fd = again;
    }
    return this.addFile({ path, fd, upper: true, retired: [] });
  }

  async read(fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const { bytesRead } = await pread(this.readFd(fh), buf, 0, len, pos);
    return bytesRead;
  }

  /**
   * The descriptor a read of handle `fh` reads from now, for callers that move the bytes
   * themselves (the FUSE adapter splices them). Valid until the handle's next call.
   */
  readFd(fh: number): number {
    const f = this.file(fh);
    // A file opened while it was in a lower and copied up since reads the upper copy from
    // now on, as the kernel's overlay files do.
    if (!f.upper) this.followCopyUp(f);
    return f.fd;
  }

  async write(fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const f = this.file(fh);
    if (!f.upper) throw fsErr('EBADF');
    // A small write lands in the page cache at once: doing it here costs less than the trip
    // through libuv's thread pool and back.
    if (len <= SMALL_WRITE) return writeSync(f.fd, buf, 0, len, pos);
    const { bytesWritten } = await pwrite(f.fd, buf, 0, len, pos);
    return bytesWritten;
  }

  async fsync(fh: number, datasync: boolean): Promise<void> {
    const f = this.file(fh);
    if (this.volatile || !f.upper) return;
    if (datasync) await pfdatasync(f.fd);
    else await pfsync(f.fd);
  }

  release(fh: number): void {
    const f = this.files.get(fh);
    if (!f) return;
    this.files.delete(fh);
    closeSync(f.fd);
    for (const old of f.retired) closeSync(old);
  }

  /** fallocate(2) on an open file; only an upper file can change. */
  fallocate(fh: number, mode: number, off: number, len: number): void {
    const f = this.file(fh);
    if (!f.upper) throw fsErr('EBADF');
    // vfs_fallocate: nothing on an immutable file; an append-only one may only grow.
    const prot = this.handleProt(f);
    if ((prot & PROT_IMMUTABLE) || ((prot & PROT_APPEND) && (mode & ~FALLOC_FL_KEEP_SIZE))) throw fsErr('EPERM');
    sys.fallocate(f.fd, mode, off, len);
  }

  /** lseek(2) with SEEK_DATA / SEEK_HOLE, answered from the file that serves the handle. */
  lseek(fh: number, off: number, whence: number): number {
    const f = this.file(fh);
    if (!f.upper) this.followCopyUp(f);
    const r = sys.lseek(f.fd, off, whence);
    if (r === null) throw fsErr('ENXIO');
    return Number(r);
  }

  /** copy_file_range(2) between two open files: the kernel copies (or reflinks) in the layers. */
  copyFileRange(fhIn: number, offIn: number, fhOut: number, offOut: number, len: number, flags: number): number {
    const src = this.file(fhIn);
    if (!src.upper) this.followCopyUp(src);
    const dst = this.file(fhOut);
    if (!dst.upper) throw fsErr('EBADF');
    if (this.handleProt(dst) & PROT_IMMUTABLE) throw fsErr('EPERM');
    return sys.copyFileRange(src.fd, offIn, dst.fd, offOut, len, flags);
  }

  ftruncate(fh: number, size: number): void {
    const f = this.file(fh);
    if (!f.upper) throw fsErr('EBADF');
    // do_ftruncate refuses an append-only file; an immutable one opened before it became so is
    // truncated (the VFS checks nothing more through an open file).
    if (this.handleProt(f) & PROT_APPEND) throw fsErr('EPERM');
    ftruncateSync(f.fd, size);
  }

  openCount(): number {
    return this.files.size;
  }

  /**
   * The descriptor of an open handle whose file is in the upper layer (null: in a lower, or
   * not open): a file the kernel may read and write directly (FUSE passthrough), since it is
   * the one the union will use for this handle from now on. A lower file is not: a copy-up
   * moves a handle open on it to the upper copy (see read()).
   */
  upperFd(fh: number): number | null {
    const f = this.files.get(fh);
    return f && f.upper ? f.fd : null;
  }

  private addFile(f: OpenFile): number {
    const fh = this.nextFh++;
    this.files.set(fh, f);
    return fh;
  }

  private file(fh: number): OpenFile {
    const f = this.files.get(fh);
    if (!f) throw fsErr('EBADF');
    return f;
  }

  /** The protection flags of an open handle's object, while its name still leads to it. */
  private handleProt(f: OpenFile): number {
    if (!f.path) return 0;
    try {
      const e = this.resolver.find(f.path);
      return e ? this.prot.of(e) : 0;
    } catch {
      return 0; // its name no longer resolves (ENOTDIR)
    }
  }

  /** Open handles below a path that was removed no longer follow a name. */
  private detachHandles(path: string): void {
    for (const f of this.files.values()) if (f.path && isWithin(f.path, path)) f.path = '';
  }

  private followCopyUp(f: OpenFile): void {
    if (!f.path) return;
    const e = this.resolver.find(f.path);
    if (!e || !this.layers[e.layer].isUpper || e.type !== 'file') return;
    const fd = openSync(this.upperPath(f.path), fsc.O_RDONLY | fsc.O_NOFOLLOW);
    // Reads on the old fd may still be in flight: it is closed at release, not now.
    f.retired.push(f.fd);
    f.fd = fd;
    f.upper = true;
  }

  // ---------------------------------------------------------------- metadata changes

  async truncate(path: string, size: number): Promise<void> {
    // Refused operations must not copy up: check the type first, as the VFS does.
    const e = this.resolver.get(checkPath(path));
    if (e.type === 'dir') throw fsErr('EISDIR');
    if (e.type !== 'file') throw fsErr('EINVAL');
    this.writable();
    this.prot.guard(e, PROT_ANY);
    await this.copyUp(path);
    const fd = openSync(this.upperPath(path), fsc.O_WRONLY | fsc.O_NOFOLLOW);
    try {
      ftruncateSync(fd, size);
    } finally {
      closeSync(fd);
    }
  }

  async chmod(path: string, mode: number): Promise<void> {
    const e = this.resolver.get(checkPath(path));
    if (e.type === 'symlink') throw fsErr('EOPNOTSUPP');
    this.writable();
    this.prot.guard(e, PROT_ANY);
    // A copy made for this chmod is made with the new mode.
    if (!(await this.copyup!.ensureWithMode(path, mode))) chmodSync(this.upperPath(path), mode & 0o7777);
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    const e = this.resolver.get(checkPath(path));
    this.writable();
    this.prot.guard(e, PROT_ANY);
    await this.copyUp(path);
    lchownSync(this.upperPath(path), uid, gid);
  }

  async utimens(path: string, atime: TimeArg, mtime: TimeArg): Promise<void> {
    // notify_change: "now" for both (touch) is refused on an immutable object, any other
    // times (given, or "now" for one of them) on an append-only one too.
    const e = this.resolver.get(checkPath(path));
    this.writable();
    if (atime === 'now' && mtime === 'now') this.prot.guard(e, PROT_IMMUTABLE);
    else if (atime !== 'omit' || mtime !== 'omit') this.prot.guard(e, PROT_ANY);
    await this.copyUp(path);
    b.utimensat(this.upperPath(path), atime, mtime, { nofollow: true });
  }

  async setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    checkPath(path);
    if (this.wf.isPrivateXattr(name)) throw fsErr('EOPNOTSUPP');
    const e = this.resolver.get(path);
    this.writable();
    this.prot.guard(e, PROT_ANY);
    await this.copyUp(path);
    b.lsetxattr(this.upperPath(path), name, value, flags);
  }

  async removexattr(path: string, name: string): Promise<void> {
    checkPath(path);
    if (this.wf.isPrivateXattr(name)) throw fsErr('EOPNOTSUPP');
    const e = this.resolver.get(path);
    this.writable();
    this.prot.guard(e, PROT_ANY);
    // Nothing to remove means nothing to copy up.
    if (b.lgetxattr(this.layers[e.layer].path(path), name) === null) throw fsErr('ENODATA');
    await this.copyUp(path);
    b.lremovexattr(this.upperPath(path), name);
  }

  // ---------------------------------------------------------------- inode flags (./fileattr.ts)

  /** FS_IOC_GETFLAGS: the flags of the object in the layer that serves it, with its protection flags. */
  getFlags(path: string): number {
    const e = this.flagsEntry(path);
    return realFlags(this.layers[e.layer].path(path)) | this.prot.of(e);
  }

  /**
   * FS_IOC_SETFLAGS: copy up; the protection flags go into the upper object's protattr, the
   * rest onto the upper object. (The caller's right to change them — owner, and
   * CAP_LINUX_IMMUTABLE for the protection flags — is the kernel's to check: the VFS does it
   * before a FUSE request is sent.)
   */
  async setFlags(path: string, flags: number): Promise<void> {
    checkPath(path);
    this.writable();
    this.flagsEntry(path);
    const up = await this.copyUp(path);
    const abs = this.upperPath(path);
    this.prot.set(up, abs, flags);
    setRealFlags(abs, flags & ~PROT_FLAGS);
  }

  /** FS_IOC_FSGETXATTR: getFlags in the struct fsxattr form. */
  getFsxattr(path: string): Fsxattr {
    const e = this.flagsEntry(path);
    const x = realFsxattr(this.layers[e.layer].path(path));
    x.xflags |= protXflags(this.prot.of(e));
    return x;
  }

  /** FS_IOC_FSSETXATTR: setFlags in the struct fsxattr form. */
  async setFsxattr(path: string, x: Fsxattr): Promise<void> {
    checkPath(path);
    this.writable();
    this.flagsEntry(path);
    const up = await this.copyUp(path);
    const abs = this.upperPath(path);
    this.prot.set(up, abs, xflagsProt(x.xflags));
    setRealFsxattr(abs, { ...x, xflags: x.xflags & ~(FS_XFLAG_APPEND | FS_XFLAG_IMMUTABLE) });
  }

  /** Symlinks and special files have no inode flags through overlayfs: ENOTTY, nothing copied up. */
  private flagsEntry(path: string): Entry {
    const e = this.resolver.get(checkPath(path));
    if (e.type !== 'file' && e.type !== 'dir') throw fsErr('ENOTTY');
    return e;
  }

  // ---------------------------------------------------------------- namespace changes

  async mkdir(path: string, mode: number, owner?: Owner): Promise<void> {
    checkPath(path);
    if (this.resolver.find(path)) throw fsErr('EEXIST');
    await this.createIn(path, (abs) => {
      mkdirSync(abs, mode & 0o7777);
      chmodSync(abs, mode & 0o7777);
    }, owner, true);
  }

  async symlink(target: string | Buffer, path: string, owner?: Owner): Promise<void> {
    checkPath(path);
    if (this.resolver.find(path)) throw fsErr('EEXIST');
    await this.createIn(path, (abs) => symlinkSync(target, abs), owner);
  }

  async mknod(path: string, mode: number, rdev: number, owner?: Owner): Promise<void> {
    checkPath(path);
    if (this.resolver.find(path)) throw fsErr('EEXIST');
    // A 0/0 character device is how whiteouts are written; through the union it is refused,
    // as the kernel refuses it.
    if ((mode & fsc.S_IFMT) === fsc.S_IFCHR && rdev === 0) throw fsErr('EPERM');
    await this.createIn(path, (abs) => {
      b.mknod(abs, mode, rdev);
      chmodSync(abs, mode & 0o7777);
    }, owner);
  }

  async link(src: string, dst: string): Promise<void> {
    checkPath(src);
    checkPath(dst);
    const e = this.resolver.get(src);
    if (e.type === 'dir') throw fsErr('EPERM');
    if (this.resolver.find(dst)) throw fsErr('EEXIST');
    // vfs_link: the new name's directory must take entries (createIn checks it too, after the
    // copy-up this must not make), and the object must be neither append-only nor immutable.
    this.writable();
    this.guardCreate(dst);
    this.prot.guard(e, PROT_ANY);
    await this.copyUp(src);
    const srcAbs = this.upperPath(src);
    await this.createIn(dst, (abs) => linkSync(srcAbs, abs), undefined, false, true);
    this.resolver.invalidate(src);
  }

  async unlink(path: string): Promise<void> {
    checkPath(path);
    this.writable();
    const e = this.resolver.get(path);
    this.guardDelete(e);
    if (e.type === 'dir') throw fsErr('EISDIR');
    await this.removeEntry(e);
  }

  async rmdir(path: string): Promise<void> {
    checkPath(path);
    this.writable();
    if (path === '/') throw fsErr('EBUSY');
    const e = this.resolver.get(path);
    this.guardDelete(e);
    if (e.type !== 'dir') throw fsErr('ENOTDIR');
    if (mergedReaddir(this.layers, e, this.wf).length > 0) throw fsErr('ENOTEMPTY');
    await this.removeEntry(e);
  }

  /**
   * rename(2). Files (and special files, symlinks) are copied up and renamed in the upper; a
   * whiteout is left at the source when a lower still has it. Directories that a lower
   * contributes to (lower-only or merged) give EXDEV, as the kernel does with redirect_dir=off;
   * `mv` then copies. A directory that lives only in the upper is renamed; it is made opaque
   * when it moves into a merged directory, so the lower entries at its new name stay hidden.
   */
  async rename(src: string, dst: string, flags = 0): Promise<void> {
    checkPath(src);
    checkPath(dst);
    this.writable();
    if (flags & ~(sys.RENAME_NOREPLACE | sys.RENAME_EXCHANGE)) throw fsErr('EINVAL');
    if ((flags & sys.RENAME_NOREPLACE) && (flags & sys.RENAME_EXCHANGE)) throw fsErr('EINVAL');
    if (src === '/' || dst === '/') throw fsErr('EBUSY');
    if (flags & sys.RENAME_EXCHANGE) return this.exchange(src, dst);
    // As in createIn: a `.wh.*` name in the upper would vanish from the union.
    if (isOciName(baseName(dst))) throw fsErr('EINVAL', '.wh.* names are reserved for whiteouts');
    const se = this.resolver.get(src);
    if (se.type === 'dir' && isWithin(dst, src) && dst !== src) throw fsErr('EINVAL');
    const dparent = this.resolver.get(parentOf(dst));
    if (dparent.type !== 'dir') throw fsErr('ENOTDIR');
    const de = this.resolver.find(dst);
    if (de && (flags & sys.RENAME_NOREPLACE)) throw fsErr('EEXIST');
    if (src === dst) return;
    // vfs_rename: the source is deleted from its directory, the target (if any) from its own,
    // or the new name created there.
    this.guardDelete(se);
    if (de) this.guardDelete(de);
    else this.guardCreate(dst);
    if (de) {
      if (se.type === 'dir' && de.type !== 'dir') throw fsErr('ENOTDIR');
      if (se.type !== 'dir' && de.type === 'dir') throw fsErr('EISDIR');
    }
    // EXDEV before ENOTEMPTY, in the kernel's order: a lower/merged dir is refused whatever
    // stands at the destination (the type checks above are the VFS's, which come first).
    if (se.type === 'dir' && this.resolver.isMergedOrLower(se)) throw this.exdev(src, dst);
    if (de && de.type === 'dir' && mergedReaddir(this.layers, de, this.wf).length > 0) throw fsErr('ENOTEMPTY');
    const up = this.upper!;
    const ready = await this.copyUp(src);
    await this.copyup!.ensureDir(parentOf(dst));
    const srcAbs = up.path(src);
    const dstAbs = up.path(dst);
    const srcNeedsWhiteout = this.resolver.lowerHas(parentOf(src), baseName(src));
    if (ready.type === 'dir') {
      const dstParentMerged = this.resolver.isMergedOrLower(this.resolver.get(parentOf(dst)));
      if (dstParentMerged && !this.wf.isOpaqueDir(srcAbs, false)) {
        this.wf.setOpaque(srcAbs);
        if (this.trace) this.trace({ ev: 'opaque', path: dst, op: 'rename' });
      }
    }
    // An (only apparently empty) directory holding whiteouts at the destination is swapped
    // for an empty opaque one first; that changes nothing the union shows.
    const dst0 = lstatOrNull(dstAbs);
    if (dst0?.isDirectory() && readdirSync(dstAbs).length > 0) this.replaceWithEmptyDir(dstAbs);
    if (dst0 && isWhiteoutStat(dst0) && ready.type === 'dir') {
      // rename(2) cannot put a directory over a whiteout, and removing the whiteout first
      // would let the lower object show for a moment (and for good after a crash). Exchange
      // the two instead: the whiteout lands at the source name, where it is wanted when a
      // lower has that name, and harmless until it is removed when none has.
      sys.renameat2(srcAbs, dstAbs, sys.RENAME_EXCHANGE);
      if (!srcNeedsWhiteout) unlinkSync(srcAbs);
    } else if (srcNeedsWhiteout) {
      try {
        b.renameat2(srcAbs, dstAbs, sys.RENAME_WHITEOUT);
      } catch (err) {
        if (!isCode(err, 'EINVAL', 'EPERM')) throw err;
        b.renameat2(srcAbs, dstAbs, 0);
        makeWhiteout(srcAbs);
      }
    } else {
      b.renameat2(srcAbs, dstAbs, 0);
    }
    if (this.trace) this.traceRename(src, dst, !!dst0 && isWhiteoutStat(dst0), srcNeedsWhiteout);
    this.resolver.invalidateTree(src);
    this.resolver.invalidateTree(dst);
    this.detachHandles(dst); // whatever was at dst is gone
    for (const f of this.files.values()) {
      if (isWithin(f.path, src)) f.path = dst + f.path.slice(src.length);
    }
  }

  /**
   * renameat2(RENAME_EXCHANGE): both names stay, so no whiteout is needed. As in the kernel
   * with redirect_dir=off, a directory that a lower contributes to cannot move (EXDEV); an
   * upper-only directory that moves into a merged directory is made opaque.
   */
  private async exchange(src: string, dst: string): Promise<void> {
    const se = this.resolver.get(src);
    const de = this.resolver.get(dst);
    if (src === dst) return;
    if ((se.type === 'dir' && isWithin(dst, src)) || (de.type === 'dir' && isWithin(src, dst))) throw fsErr('EINVAL');
    this.guardDelete(se);
    this.guardDelete(de);
    if (se.type === 'dir' && this.resolver.isMergedOrLower(se)) throw this.exdev(src, dst);
    if (de.type === 'dir' && this.resolver.isMergedOrLower(de)) throw this.exdev(dst, src);
    const up = this.upper!;
    const sUp = await this.copyUp(src);
    const dUp = await this.copyUp(dst);
    const srcAbs = up.path(src);
    const dstAbs = up.path(dst);
    const mergedParent = (p: string) => this.resolver.isMergedOrLower(this.resolver.get(parentOf(p)));
    if (sUp.type === 'dir' && mergedParent(dst) && !this.wf.isOpaqueDir(srcAbs, false)) this.wf.setOpaque(srcAbs);
    if (dUp.type === 'dir' && mergedParent(src) && !this.wf.isOpaqueDir(dstAbs, false)) this.wf.setOpaque(dstAbs);
    b.renameat2(srcAbs, dstAbs, sys.RENAME_EXCHANGE);
    this.resolver.invalidateTree(src);
    this.resolver.invalidateTree(dst);
    for (const f of this.files.values()) {
      if (isWithin(f.path, src)) f.path = dst + f.path.slice(src.length);
      else if (isWithin(f.path, dst)) f.path = src + f.path.slice(dst.length);
    }
  }

  // ---------------------------------------------------------------- helpers

  private writable(): void {
    if (this.readonly) throw fsErr('EROFS');
  }

  /** may_create: no new name in an immutable directory (an append-only one takes them). */
  private guardCreate(path: string): void {
    const parent = this.resolver.find(parentOf(path));
    if (parent) this.prot.guard(parent, PROT_IMMUTABLE);
  }

  /**
   * may_delete: no name removed from an append-only or immutable directory, and no
   * append-only or immutable object removed (or renamed) at all.
   */
  private guardDelete(e: Entry): void {
    const parent = this.resolver.find(parentOf(e.path));
    if (parent) this.prot.guard(parent, PROT_ANY);
    this.prot.guard(e, PROT_ANY);
  }

  private upperPath(path: string): string {
    return this.upper!.path(path);
  }

  private async copyUp(path: string): Promise<Entry> {
    this.writable();
    return this.copyup!.ensure(path);
  }

  /**
   * Create a new object at `path` in the upper with `make(absPath)`. Parents are copied up
   * first. Where the upper holds a whiteout for the name, the object is assembled in the work
   * directory and swapped in, so the name is never without either; a directory made over a
   * whiteout is opaque, so nothing of the lowers shows through it again.
   */
  private async createIn(
    path: string,
    make: (abs: string) => void,
    owner?: Owner,
    isDir = false,
    keepOwner = false,
    opened?: { fd: () => number; perm: number },
  ): Promise<string> {
    this.writable();
    if (isOciName(baseName(path))) throw fsErr('EINVAL', '.wh.* names are reserved for whiteouts');
    const parent = parentOf(path);
    this.guardCreate(path);
    await this.copyup!.ensureDir(parent);
    const abs = this.upperPath(path);
    const parentAbs = this.upperPath(parent);
    if (!this.resolver.upperWhiteout(path)) {
      make(abs);
      if (opened) this.setOwnerFd(opened.fd(), opened.perm, parentAbs, owner);
      else if (!keepOwner) this.setOwner(abs, parentAbs, owner, isDir);
    } else {
      const tmp = this.copyup!.tmpName();
      try {
        make(tmp);
        if (opened) this.setOwnerFd(opened.fd(), opened.perm, parentAbs, owner);
        else if (!keepOwner) this.setOwner(tmp, parentAbs, owner, isDir);
        if (isDir) {
          this.wf.setOpaque(tmp);
          b.renameat2(tmp, abs, sys.RENAME_EXCHANGE);
        } else {
          b.renameat2(tmp, abs, 0);
        }
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
      if (this.trace) this.traceCreate(path, isDir);
    }
    this.resolver.invalidate(path);
    return abs;
  }

  /** New objects belong to the caller; a set-gid parent passes its group on, as on any fs. */
  private setOwner(abs: string, parentAbs: string, owner: Owner | undefined, isDir: boolean): void {
    const pst = lstatSync(parentAbs);
    const sgid = (pst.mode & S_ISGID) !== 0;
    if (!owner && !sgid) return;
    const uid = owner ? owner.uid : -1;
    const gid = sgid ? pst.gid : owner ? owner.gid : -1;
    const st = lstatSync(abs);
    lchownSync(abs, uid, gid);
    if (isDir && sgid) chmodSync(abs, (st.mode & 0o7777) | S_ISGID);
    else if (!st.isSymbolicLink() && (st.mode & (S_ISUID | S_ISGID))) chmodSync(abs, st.mode & 0o7777);
  }

  /**
   * setOwner for a regular file just made through the open `fd`, whose mode must become
   * `perm`: one fstat, and fchown/fchmod only where the kernel's choice (the daemon's ids, its
   * umask, a set-gid parent's group) differs from the caller's.
   */
  private setOwnerFd(fd: number, perm: number, parentAbs: string, owner: Owner | undefined): void {
    const st = fstatSync(fd);
    let uid = st.uid;
    let gid = st.gid;
    if (owner) {
      uid = owner.uid;
      // The kernel gave the file the daemon's group, or the parent's when it is set-gid.
      if (owner.gid !== st.gid && (lstatSync(parentAbs).mode & S_ISGID) === 0) gid = owner.gid;
    }
    const chowned = uid !== st.uid || gid !== st.gid;
    if (chowned) fchownSync(fd, uid, gid);
    // chown drops set-uid/set-gid bits: put them back.
    if ((st.mode & 0o7777) !== perm || (chowned && (perm & (S_ISUID | S_ISGID)) !== 0)) fchmodSync(fd, perm);
  }

  /** Remove an object (already checked: a non-directory, or an empty merged directory). */
  private async removeEntry(e: Entry): Promise<void> {
    const parent = parentOf(e.path);
    const name = baseName(e.path);
    const needWhiteout = this.resolver.lowerHas(parent, name);
    const inUpper = this.layers[e.layer].isUpper;
    if (needWhiteout) await this.copyup!.ensureDir(parent);
    const abs = this.upperPath(e.path);
    if (inUpper && !needWhiteout) {
      if (e.type === 'dir') {
        if (readdirSync(abs).length > 0) this.moveToWorkAndRemove(abs);
        else rmdirSync(abs);
      } else {
        unlinkSync(abs);
      }
    } else if (inUpper) {
      // Swap the object for a whiteout in one step, then dispose of it in the work dir.
      const tmp = this.copyup!.tmpName();
      makeWhiteout(tmp);
      if (e.type === 'dir') {
        b.renameat2(tmp, abs, sys.RENAME_EXCHANGE);
        removeTree(tmp);
      } else {
        b.renameat2(tmp, abs, 0);
      }
    } else {
      const tmp = this.copyup!.tmpName();
      makeWhiteout(tmp);
      b.renameat2(tmp, abs, sys.RENAME_NOREPLACE);
    }
    this.resolver.invalidateTree(e.path);
    if (this.trace && needWhiteout) this.trace({ ev: 'whiteout', path: e.path, op: e.type === 'dir' ? 'rmdir' : 'unlink' });
    this.detachHandles(e.path);
  }

  // ---------------------------------------------------------------- trace events (only called while tracing)

  private exdev(path: string, to: string): Error {
    if (this.trace) this.trace({ ev: 'exdev', path, to });
    return fsErr('EXDEV');
  }

  /** A new object took the place of a whiteout in the upper (createIn). */
  private traceCreate(path: string, isDir: boolean): void {
    this.trace?.({ ev: 'whiteout-removed', path, op: isDir ? 'mkdir' : 'create' });
    if (isDir) this.trace?.({ ev: 'opaque', path, op: 'mkdir' });
  }

  private traceRename(src: string, dst: string, dstWasWhiteout: boolean, srcWhiteout: boolean): void {
    if (dstWasWhiteout) this.trace?.({ ev: 'whiteout-removed', path: dst, op: 'rename' });
    if (srcWhiteout) this.trace?.({ ev: 'whiteout', path: src, op: 'rename' });
  }

  private moveToWorkAndRemove(abs: string): void {
    const tmp = this.copyup!.tmpName();
    b.renameat2(abs, tmp, 0);
    removeTree(tmp);
  }

  /** Swap a directory for an empty opaque copy of itself (keeping its mode, owner, times). */
  private replaceWithEmptyDir(abs: string): void {
    const st = lstatSync(abs, { bigint: true });
    const tmp = this.copyup!.tmpName();
    mkdirSync(tmp, 0o700);
    lchownSync(tmp, Number(st.uid), Number(st.gid));
    chmodSync(tmp, Number(st.mode) & 0o7777);
    this.wf.setOpaque(tmp);
    b.renameat2(tmp, abs, sys.RENAME_EXCHANGE);
    removeTree(tmp);
    restoreTimes(abs, st);
  }
}

function lstatOrNull(p: string): BigIntStats | null {
  try {
    return lstatSync(p, { bigint: true });
  } catch (e) {
    if (isCode(e, 'ENOENT')) return null;
    throw e;
  }
}

function openFlags(flags: number): number {
  // Never follow a symlink in a layer; append positions come from the kernel's offsets.
  return (flags & ~(fsc.O_APPEND | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOCTTY | (fsc.O_DIRECT ?? 0))) | fsc.O_NOFOLLOW;
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

export { FsError };
