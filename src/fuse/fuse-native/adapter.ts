import { createRequire } from 'node:module';
import { constants as fsc } from 'node:fs';
import type FuseClass from 'fuse-native';
import { fromText as b, fsErr, toErrno, toText, type Attr, type TimeArg, type UnionFs } from '../../union/index.ts';
import { log } from '../../log.ts';
import type { BaseMountOptions } from '../options.ts';

/**
 * The FUSE adapter on fuse-native (libfuse 2, high-level path API), kept aside from the
 * low-level binding (src/fuse/lowlevel.ts) that serves mounts by default: `-o backend=fuse-native`
 * selects it (docs/semantics.md lists its defects). It translates each request into a UnionFs
 * call and the result or error back. Nothing of the union rules lives here.
 *
 * fuse-native specifics handled here: every callback is called with a number (a callback with
 * null/undefined aborts the process); paths cross as text (UTF-8; the core takes byte strings,
 * src/union/bytes.ts, so they are converted here); times cross in milliseconds; its utimens passes the
 * atime twice (a known defect of the binding, listed in the README); caller credentials are
 * not available, so new objects belong to the daemon's user.
 */
const require = createRequire(import.meta.url);

/** fuse-native takes the options every backend takes, no more. */
export type NativeMountOptions = BaseMountOptions;

type Cb = (...args: unknown[]) => void;

/** fuse-native's UTIME_NOW / UTIME_OMIT arrive as this many milliseconds (tv_sec 0, tv_nsec ~2^30). */
const UTIME_SPECIAL_MS = 1073;

function msToTime(ms: number): TimeArg {
  if (ms === UTIME_SPECIAL_MS) return 'now';
  const sec = Math.floor(ms / 1000);
  return { sec: BigInt(sec), nsec: (ms - sec * 1000) * 1e6 };
}

function toStat(a: Attr): Record<string, number> {
  return {
    mode: a.mode,
    uid: a.uid,
    gid: a.gid,
    size: a.size,
    dev: 0,
    nlink: a.nlink,
    ino: Number(a.ino & 0xffffffffn),
    rdev: a.rdev,
    blksize: a.blksize,
    blocks: a.blocks,
    atime: Number(a.atimeNs / 1_000_000n),
    mtime: Number(a.mtimeNs / 1_000_000n),
    ctime: Number(a.ctimeNs / 1_000_000n),
  };
}

const typeMode: Record<string, number> = {
  dir: fsc.S_IFDIR, file: fsc.S_IFREG, symlink: fsc.S_IFLNK, fifo: fsc.S_IFIFO,
  chr: fsc.S_IFCHR, blk: fsc.S_IFBLK, sock: fsc.S_IFSOCK, other: 0,
};

function id32(n: number): number {
  return n === 0xffffffff ? -1 : n;
}

/** Run f and answer cb with 0 and the mapped results, or with the negative errno. */
function answer<T>(name: string, cb: Cb, f: () => T | Promise<T>, ok: (v: T) => unknown[] = () => [0]): void {
  const fail = (e: unknown) => {
    const n = toErrno(e);
    if (n === -5) log(`${name}: ${(e as Error)?.stack ?? e}`);
    cb(n);
  };
  // The mapping of a result may call into the core too (readdir stats the directory): a throw
  // there must become an errno as well, not an uncaught exception that ends the daemon.
  const reply = (v: T) => {
    let args: unknown[];
    try {
      args = ok(v);
    } catch (e) {
      fail(e);
      return;
    }
    cb(...args);
  };
  let r: T | Promise<T>;
  try {
    r = f();
  } catch (e) {
    fail(e);
    return;
  }
  if (r instanceof Promise) r.then(reply, fail);
  else reply(r);
}

export function makeOps(fs: UnionFs): Record<string, (...args: any[]) => void> {
  const noCreds = undefined;
  return {
    init: (cb: Cb) => cb(0),
    access: (p: string, mode: number, cb: Cb) => answer('access', cb, () => fs.access(b(p), mode)),
    statfs: (_p: string, cb: Cb) =>
      answer('statfs', cb, () => fs.statfs(), (s) => [0, {
        bsize: Number(s.bsize), frsize: Number(s.frsize), blocks: Number(s.blocks), bfree: Number(s.bfree),
        bavail: Number(s.bavail), files: Number(s.files), ffree: Number(s.ffree), favail: Number(s.ffree),
        fsid: Number(s.fsid & 0xffffffffn), flag: 0, namemax: Number(s.namelen),
      }]),
    getattr: (p: string, cb: Cb) => answer('getattr', cb, () => fs.getattr(b(p)), (a) => [0, toStat(a)]),
    fgetattr: (_p: string, fd: number, cb: Cb) => answer('fgetattr', cb, () => fs.fgetattr(fd), (a) => [0, toStat(a)]),
    flush: (_p: string, _fd: number, cb: Cb) => cb(0),
    fsync: (_p: string, datasync: number, fd: number, cb: Cb) => answer('fsync', cb, () => fs.fsync(fd, !!datasync)),
    fsyncdir: (_p: string, _d: number, _fd: number, cb: Cb) => cb(0),
    opendir: (p: string, _flags: number, cb: Cb) =>
      answer('opendir', cb, () => {
        const e = fs.lookup(b(p));
        if (!e) throw fsErr('ENOENT');
        if (e.type !== 'dir') throw fsErr('ENOTDIR');
      }, () => [0, 0]),
    releasedir: (_p: string, _fd: number, cb: Cb) => cb(0),
    readdir: (p: string, cb: Cb) =>
      answer('readdir', cb, () => fs.readdir(b(p)), (items) => {
        const names = ['.', '..'];
        const self = Number(fs.getattr(b(p)).ino & 0xffffffffn) || 1;
        const stats: Record<string, number>[] = [{ mode: fsc.S_IFDIR, ino: self }, { mode: fsc.S_IFDIR, ino: 1 }];
        for (const it of items) {
          names.push(toText(it.name));
          // With use_ino, libfuse takes d_ino from here, and 0 would make readdir(3) skip the name.
          stats.push({ mode: typeMode[it.type] ?? 0, ino: Number(fs.direntIno(b(p), it) & 0xffffffffn) || 1 });
        }
        return [0, names, stats];
      }),
    truncate: (p: string, size: number, cb: Cb) => answer('truncate', cb, () => fs.truncate(b(p), size)),
    ftruncate: (_p: string, fd: number, size: number, cb: Cb) => answer('ftruncate', cb, () => fs.ftruncate(fd, size)),
    // fuse-native hands over the atime twice: the mtime is lost (known binding defect).
    utimens: (p: string, atime: number, mtime: number, cb: Cb) =>
      answer('utimens', cb, () => fs.utimens(b(p), msToTime(atime), msToTime(mtime))),
    readlink: (p: string, cb: Cb) => answer('readlink', cb, () => fs.readlink(b(p)), (t) => [0, t.toString()]),
    chown: (p: string, uid: number, gid: number, cb: Cb) => answer('chown', cb, () => fs.chown(b(p), id32(uid), id32(gid))),
    chmod: (p: string, mode: number, cb: Cb) => answer('chmod', cb, () => fs.chmod(b(p), mode)),
    mknod: (p: string, mode: number, dev: number, cb: Cb) => answer('mknod', cb, () => fs.mknod(b(p), mode, dev, noCreds)),
    setxattr: (p: string, name: string, value: Buffer, _pos: number, flags: number, cb: Cb) =>
      answer('setxattr', cb, () => fs.setxattr(b(p), name, Buffer.from(value), flags)),
    getxattr: (p: string, name: string, _pos: number, cb: Cb) => answer('getxattr', cb, () => fs.getxattr(b(p), name), (v) => [0, v]),
    listxattr: (p: string, cb: Cb) => answer('listxattr', cb, () => fs.listxattr(b(p)), (l) => [0, l]),
    removexattr: (p: string, name: string, cb: Cb) => answer('removexattr', cb, () => fs.removexattr(b(p), name)),
    open: (p: string, flags: number, cb: Cb) => answer('open', cb, () => fs.open(b(p), flags), (fd) => [0, fd]),
    create: (p: string, mode: number, cb: Cb) =>
      answer('create', cb, () => fs.create(b(p), mode, fsc.O_RDWR, noCreds), (fd) => [0, fd]),
    read: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      answer('read', cb, () => fs.read(fd, buf, len, pos), (n) => [n]),
    write: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      answer('write', cb, () => fs.write(fd, buf, len, pos), (n) => [n]),
    release: (_p: string, fd: number, cb: Cb) => answer('release', cb, () => fs.release(fd)),
    unlink: (p: string, cb: Cb) => answer('unlink', cb, () => fs.unlink(b(p))),
    rename: (src: string, dst: string, cb: Cb) => answer('rename', cb, () => fs.rename(b(src), b(dst))),
    link: (src: string, dst: string, cb: Cb) => answer('link', cb, () => fs.link(b(src), b(dst))),
    symlink: (target: string, p: string, cb: Cb) => answer('symlink', cb, () => fs.symlink(Buffer.from(target, 'utf8'), b(p), noCreds)),
    mkdir: (p: string, mode: number, cb: Cb) => answer('mkdir', cb, () => fs.mkdir(b(p), mode, noCreds)),
    rmdir: (p: string, cb: Cb) => answer('rmdir', cb, () => fs.rmdir(b(p))),
  };
}

/** Mount through fuse-native; resolves once the kernel has started talking to us. */
export function mountNative(fs: UnionFs, o: NativeMountOptions): Promise<void> {
  const Fuse = require('fuse-native') as typeof FuseClass;
  // fuse-native joins its option list unescaped, so options it has no name for ride along
  // in the fsname value: big writes (else 4 KiB pieces), our inode numbers, mount flags.
  const extra = ['big_writes', 'max_write=131072', 'use_ino', 'attr_timeout=0', o.readonly ? 'ro' : 'rw', ...o.extra];
  // (fuse-native drops an entryTimeout of 0 too.)
  if (o.cacheTimeout === 0) extra.push('entry_timeout=0', 'negative_timeout=0');
  const fuse = new Fuse(o.mountpoint, makeOps(fs), {
    fsname: [o.fsname.replace(/,/g, '_'), ...extra].join(','),
    subtype: 'layerfs',
    allowOther: o.allowOther,
    defaultPermissions: o.allowOther,
    // libfuse 2's path API gives each name of a hard link its own kernel inode and offers no
    // cache invalidation, so attributes and page cache are not kept across opens: a change
    // through one name (or a copy-up behind another) would otherwise stay invisible.
    kernelCache: false,
    entryTimeout: o.cacheTimeout,
    // (attr_timeout=0 rides in `extra`: fuse-native drops a 0 here.)
    // Copy-up of a large file can take longer than fuse-native's 15 s default.
    timeout: false,
    debug: o.debug,
  });
  return new Promise((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
}
