import { constants as fsc } from 'node:fs';
import { fsErr, joinPath, packFsxattr, unpackFsxattr, type Attr } from '../union/index.ts';
import { FSXATTR_SIZE, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR, FS_IOC_GETFLAGS, FS_IOC_SETFLAGS } from '../sys/index.ts';
import type { LowLevelAdapter } from './ll-adapter.ts';
import type { LowLevelOps } from './lowlevel.ts';

/**
 * The requests on open files and on attributes beyond the stat: open, create, read, write,
 * release, fsync, statfs, the xattrs, access, fallocate, lseek, copy_file_range, ioctl. Reads
 * and writes of upper files usually never come here: passthrough (./passthrough.ts).
 */

const O_ACCMODE = 3;

export function fileOps(ad: LowLevelAdapter): LowLevelOps {
  const fs = ad.fs;
  const t = ad.table;
  return {
    open: (r, ino, flags) =>
      ad.run(r, async () => {
        const n = ad.node(ino);
        const p = t.path(n);
        if (p === null) throw fsErr('ENOENT');
        let f = flags;
        // With the writeback cache the kernel may read through a write-only handle.
        if (ad.o.writebackCache && (f & O_ACCMODE) === fsc.O_WRONLY) f = (f & ~O_ACCMODE) | fsc.O_RDWR;
        const writing = (f & O_ACCMODE) !== fsc.O_RDONLY || (f & fsc.O_TRUNC) !== 0;
        const fh = writing ? await ad.copyUps.watching([n], () => fs.open(p, f)) : await fs.open(p, f);
        const backing = ad.pt.backingFor(n, fh);
        // -ENOENT: the open was interrupted; no release will come for it.
        // (The kernel refuses keep_cache with passthrough: there is no page cache of ours then.)
        if (r.open(fh, { keepCache: ad.keepCache && !backing, backing }) === 0) {
          ad.pt.opened(n, fh, backing);
        } else {
          if (backing) ad.pt.dropBacking(n);
          fs.release(fh);
        }
      }),

    create: (r, parent, name, mode, flags) =>
      ad.run(r, async () => {
        const pn = ad.node(parent);
        const dir = t.path(pn);
        if (dir === null) throw fsErr('ENOENT');
        const path = joinPath(dir, name);
        let f = flags;
        if (ad.o.writebackCache && (f & O_ACCMODE) === fsc.O_WRONLY) f = (f & ~O_ACCMODE) | fsc.O_RDWR;
        const fh = await ad.copyUps.watching([pn], () => fs.create(path, mode, f, ad.attrs.owner(r)));
        let attr: Attr;
        try {
          attr = fs.getattr(path);
        } catch (e) {
          fs.release(fh);
          throw e;
        }
        const { node, created } = ad.nodeFor(pn, name, path, attr);
        const backing = ad.pt.backingFor(node, fh);
        if (r.create(ad.entry(node, attr), fh, { keepCache: ad.keepCache && !backing, backing }) === 0) {
          node.lookups++;
          ad.pt.opened(node, fh, backing);
        } else {
          if (backing) ad.pt.dropBacking(node);
          fs.release(fh);
          if (created) t.dropIfUnused(node);
        }
      }),

    // The bytes go from the file to the kernel by splice, not through JS memory.
    read: (r, _ino, fh, size, off) => ad.run(r, () => void r.fd(fs.readFd(fh), size, off)),

    write: (r, _ino, fh, data, off) =>
      ad.run(r, async () => {
        try {
          r.write(await fs.write(fh, data, data.length, off));
        } finally {
          r.session.recycle(data); // the next request is read into this memory
        }
      }),

    release: (r, _ino, fh) =>
      ad.run(r, () => {
        ad.pt.released(fh);
        fs.release(fh);
        r.ok();
      }),

    fsync: (r, _ino, fh, datasync) =>
      ad.run(r, async () => {
        await fs.fsync(fh, datasync);
        r.ok();
      }),

    statfs: (r) =>
      ad.run(r, () => {
        const s = fs.statfs();
        r.statfs({
          bsize: s.bsize, frsize: s.frsize || s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
          files: s.files, ffree: s.ffree, favail: s.ffree, fsid: s.fsid, flag: 0, namemax: s.namelen,
        });
      }),

    setxattr: (r, ino, name, value, flags) =>
      ad.run(r, async () => {
        const n = ad.node(ino);
        const p = t.path(n);
        if (p === null) throw fsErr('ENOENT');
        await ad.copyUps.watching([n], () => fs.setxattr(p, name, value, flags));
        r.ok();
      }),

    getxattr: (r, ino, name, size) =>
      ad.run(r, () => {
        // The override (xattr_permissions=2) is the storage's own record: it shows as the
        // owner and mode, not as an xattr (so it does not travel into a committed layer).
        if (ad.attrs.hides(name)) throw fsErr('ENODATA');
        r.xattr(fs.getxattr(ad.pathOf(ino), name), size);
      }),

    listxattr: (r, ino, size) =>
      ad.run(r, () => {
        let names = fs.listxattr(ad.pathOf(ino));
        if (ad.attrs.overrideStat) names = names.filter((x) => !ad.attrs.hides(x));
        r.xattr(Buffer.from(names.map((x) => x + '\0').join(''), 'utf8'), size);
      }),

    removexattr: (r, ino, name) =>
      ad.run(r, async () => {
        const n = ad.node(ino);
        const p = t.path(n);
        if (p === null) throw fsErr('ENOENT');
        await ad.copyUps.watching([n], () => fs.removexattr(p, name));
        r.ok();
      }),

    access: (r, ino, mask) =>
      ad.run(r, () => {
        fs.access(ad.pathOf(ino), mask);
        r.ok();
      }),

    fallocate: (r, _ino, fh, mode, off, len) =>
      ad.run(r, () => {
        fs.fallocate(fh, mode, off, len);
        r.ok();
      }),

    lseek: (r, _ino, fh, off, whence) => ad.run(r, () => void r.lseek(fs.lseek(fh, off, whence))),

    copyFileRange: (r, _inoIn, fhIn, offIn, _inoOut, fhOut, offOut, len, flags) =>
      ad.run(r, () => void r.write(fs.copyFileRange(fhIn, offIn, fhOut, offOut, len, flags))),

    // lsattr/chattr: the kernel opens the object (a handle of its own, read-only) and sends
    // the inode-flags ioctls; the union answers them by path (src/union/fileattr.ts). Any
    // other command: ENOTTY.
    ioctl: (r, ino, cmd, _fh, _flags, input, outSize) =>
      ad.run(r, async () => {
        const get = cmd === FS_IOC_GETFLAGS || cmd === FS_IOC_FSGETXATTR;
        const xattr = cmd === FS_IOC_FSGETXATTR || cmd === FS_IOC_FSSETXATTR;
        if (!get && !xattr && cmd !== FS_IOC_SETFLAGS) throw fsErr('ENOTTY');
        const size = xattr ? FSXATTR_SIZE : 4;
        if ((get ? outSize : input.length) < size) throw fsErr('EINVAL');
        const n = ad.node(ino);
        const p = t.path(n);
        if (p === null) throw fsErr('ENOENT');
        if (get) {
          const out = Buffer.alloc(size);
          if (xattr) packFsxattr(fs.getFsxattr(p), out);
          else out.writeInt32LE(fs.getFlags(p) | 0, 0);
          r.ioctl(0, out);
          return;
        }
        await ad.copyUps.watching([n], () => (xattr ? fs.setFsxattr(p, unpackFsxattr(input)) : fs.setFlags(p, input.readInt32LE(0))));
        ad.session?.notifyInvalInode(n.id, -1, 0); // its ctime moved
        r.ioctl(0);
      }),
  };
}
