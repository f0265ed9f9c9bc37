import * as sys from '../sys/index.ts';
import { lgetxattr, lremovexattr, lsetxattr, osPath } from './bytes.ts';
import { fsErr, isCode } from './errors.ts';
import type { Layer } from './layer.ts';
import type { Entry } from './lookup.ts';
import type { WhiteoutFormat } from './whiteout.ts';

/**
 * Inode flags through the union — what lsattr and chattr read and change (FS_IOC_GETFLAGS /
 * FS_IOC_SETFLAGS, and the FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR form) — as kernel overlayfs
 * has them since Linux 5.16 (fs/overlayfs/inode.c ovl_fileattr_get/ovl_fileattr_set, util.c
 * ovl_set_protattr/ovl_check_protattr):
 *
 *  - get: the flags of the object in the layer that serves it; an upper object adds the
 *    protection flags its `<prefix>protattr` xattr records;
 *  - set: the object is copied up first; the protection flags — append-only (FS_APPEND_FL) and
 *    immutable (FS_IMMUTABLE_FL) — go into `<prefix>protattr` on the upper object ("a", "i", in
 *    that order; the xattr is removed when both are cleared), never onto its real inode: an
 *    immutable upper directory could take no copied-up child, whiteout or private xattr, and
 *    the layer itself could no longer be removed. Every other flag is set on the upper object.
 *  - copy-up of a lower object whose real inode has flags: its protection flags go into the
 *    copy's protattr, its sync and noatime flags onto the copy (ovl_copy_fileattr).
 *  - The protection flags — protattr's on upper objects, the real inode's on lower ones — are
 *    then the union's to enforce (on an overlay inode the VFS does it; here nothing else
 *    would): the rules refuse with EPERM what the VFS refuses for them (ProtFlags.guard in
 *    inode.ts and handles.ts, guardCreate and guardDelete in dir.ts).
 *
 * Symlinks and special files have no inode flags through the union (ENOTTY, as overlayfs
 * answers, and nothing is copied up); a lower layer's filesystem without them answers what it
 * answers (ENOTTY, EOPNOTSUPP).
 */

export const FS_IMMUTABLE_FL = 0x10;
export const FS_APPEND_FL = 0x20;
/** The protection flags overlayfs keeps in `<prefix>protattr`. */
export const PROT_FLAGS = FS_APPEND_FL | FS_IMMUTABLE_FL;
/** The same two in struct fsxattr's fsx_xflags. */
export const FS_XFLAG_IMMUTABLE = 0x8;
export const FS_XFLAG_APPEND = 0x10;
export const FS_SYNC_FL = 0x8;
export const FS_NOATIME_FL = 0x80;
/** The flags copy-up carries onto the upper object itself (OVL_COPY_FS_FLAGS_MASK). */
export const COPY_FLAGS = FS_SYNC_FL | FS_NOATIME_FL;

/** What each refusal tests (the VFS's checks on an overlay inode that carries the flags). */
export const PROT_ANY = PROT_FLAGS;
export const PROT_IMMUTABLE = FS_IMMUTABLE_FL;
export const PROT_APPEND = FS_APPEND_FL;

/** struct fsxattr (FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR). */
export interface Fsxattr {
  xflags: number;
  extsize: number;
  nextents: number;
  projid: number;
  cowextsize: number;
}

export function packFsxattr(x: Fsxattr, out = Buffer.alloc(sys.FSXATTR_SIZE)): Buffer {
  out.fill(0);
  out.writeUInt32LE(x.xflags >>> 0, 0);
  out.writeUInt32LE(x.extsize >>> 0, 4);
  out.writeUInt32LE(x.nextents >>> 0, 8);
  out.writeUInt32LE(x.projid >>> 0, 12);
  out.writeUInt32LE(x.cowextsize >>> 0, 16);
  return out;
}

export function unpackFsxattr(b: Uint8Array): Fsxattr {
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return {
    xflags: v.readUInt32LE(0),
    extsize: v.readUInt32LE(4),
    nextents: v.readUInt32LE(8),
    projid: v.readUInt32LE(12),
    cowextsize: v.readUInt32LE(16),
  };
}

/** The protattr value for the protection flags among `flags` ('' when none). */
export function protattrValue(flags: number): string {
  return (flags & FS_APPEND_FL ? 'a' : '') + (flags & FS_IMMUTABLE_FL ? 'i' : '');
}

/**
 * The protection flags a protattr value records. As the kernel reads it: 'a' and 'i' only; a
 * value with anything else (or an empty one) is ignored as a whole.
 */
export function parseProtattr(v: Buffer | null): number {
  if (!v || v.length === 0) return 0;
  let flags = 0;
  for (const c of v) {
    if (c === 0x61 /* a */) flags |= FS_APPEND_FL;
    else if (c === 0x69 /* i */) flags |= FS_IMMUTABLE_FL;
    else return 0;
  }
  return flags;
}

/** The real inode flags of the layer object at `abs` (FS_IOC_GETFLAGS). */
export function realFlags(abs: string): number {
  const buf = Buffer.alloc(4);
  sys.fileattr(osPath(abs), sys.FS_IOC_GETFLAGS, buf);
  return buf.readInt32LE(0);
}

export function setRealFlags(abs: string, flags: number): void {
  const buf = Buffer.alloc(4);
  buf.writeInt32LE(flags | 0, 0);
  sys.fileattr(osPath(abs), sys.FS_IOC_SETFLAGS, buf);
}

export function realFsxattr(abs: string): Fsxattr {
  const buf = Buffer.alloc(sys.FSXATTR_SIZE);
  sys.fileattr(osPath(abs), sys.FS_IOC_FSGETXATTR, buf);
  return unpackFsxattr(buf);
}

export function setRealFsxattr(abs: string, x: Fsxattr): void {
  sys.fileattr(osPath(abs), sys.FS_IOC_FSSETXATTR, packFsxattr(x));
}

/** fsx_xflags' protection bits as FS_*_FL flags, and back. */
export function xflagsProt(xflags: number): number {
  return (xflags & FS_XFLAG_APPEND ? FS_APPEND_FL : 0) | (xflags & FS_XFLAG_IMMUTABLE ? FS_IMMUTABLE_FL : 0);
}

export function protXflags(flags: number): number {
  return (flags & FS_APPEND_FL ? FS_XFLAG_APPEND : 0) | (flags & FS_IMMUTABLE_FL ? FS_XFLAG_IMMUTABLE : 0);
}

/**
 * The protection flags of union objects, as the kernel has them in its overlay inode: for an
 * upper object, those its `<prefix>protattr` records (the kernel reads protattr from the upper
 * alone); for a lower one, those of its real inode — set on the lower's own filesystem, they
 * protect it through the union too, and copy-up carries them into protattr (`copyUp`).
 *
 * They are remembered per resolved entry: a cached entry is one path's object until the
 * resolver drops it (copy-up, rename and removal make new entries). A change of any object's
 * flags forgets them all (`changed`), so that the other names of an upper hard link see it
 * too; such changes are rare. The cost is one xattr read (upper) or one flags ioctl (lower)
 * the first time an entry is checked, which is where it is changed: a lower object is then
 * about to be copied up or whited out anyway.
 */
export class ProtFlags {
  private gen = 0;
  private readonly memo = new WeakMap<Entry, { gen: number; flags: number }>();
  readonly xattr: string;

  constructor(private readonly layers: readonly Layer[], wf: WhiteoutFormat) {
    this.xattr = wf.prefix + 'protattr';
  }

  /** The protection flags (FS_APPEND_FL, FS_IMMUTABLE_FL) of the object `e` resolves to. */
  of(e: Entry): number {
    return this.flags(e) & PROT_FLAGS;
  }

  /** EPERM when the object carries any of the flags in `mask`. */
  guard(e: Entry, mask: number): void {
    if (this.of(e) & mask) throw fsErr('EPERM');
  }

  /**
   * protattr's flags for an upper object; every real inode flag for a lower one (copy-up needs
   * more of them than the protection flags). 0 for symlinks and special files.
   */
  private flags(e: Entry): number {
    if (e.type !== 'file' && e.type !== 'dir') return 0;
    const m = this.memo.get(e);
    if (m && m.gen === this.gen) return m.flags;
    const layer = this.layers[e.layer]!;
    const abs = layer.path(e.path);
    let flags = 0;
    try {
      flags = layer.isUpper ? parseProtattr(lgetxattr(abs, this.xattr)) : realFlags(abs);
    } catch {
      // No xattrs on the upper's filesystem, no inode flags on the lower's (ENOTTY,
      // EOPNOTSUPP; ntfs-3g: EINVAL): nothing is protected there.
      flags = 0;
    }
    this.memo.set(e, { gen: this.gen, flags });
    return flags;
  }

  /**
   * Copy-up of the lower object `e` into `tmp` (before it takes its place), as
   * ovl_copy_fileattr does: its protection flags go into the copy's protattr (skipped when the
   * upper cannot hold xattrs), its sync and noatime flags onto the copy itself (skipped when the
   * upper has no inode flags).
   */
  copyUp(e: Entry, tmp: string): void {
    const f = this.flags(e);
    if (f & PROT_FLAGS) {
      try {
        lsetxattr(tmp, this.xattr, protattrValue(f));
      } catch (err) {
        if (!isCode(err, 'ENOTSUP', 'EOPNOTSUPP')) throw err;
      }
    }
    if (f & COPY_FLAGS) {
      let now: number;
      try {
        now = realFlags(tmp);
      } catch (err) {
        if (isCode(err, 'ENOTTY', 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP')) return;
        throw err;
      }
      setRealFlags(tmp, (now & ~COPY_FLAGS) | (f & COPY_FLAGS));
    }
  }

  /**
   * Record the protection flags among `flags` for the upper object `e` at `abs`, as
   * ovl_set_protattr does: set protattr when there are any (EPERM when the upper cannot hold
   * xattrs: the flags could not be kept), remove it when there are none and the object had
   * some. Whatever happens, remembered flags are forgotten.
   */
  set(e: Entry, abs: string, flags: number): void {
    const value = protattrValue(flags);
    try {
      if (value) {
        try {
          lsetxattr(abs, this.xattr, value);
        } catch (err) {
          if (isCode(err, 'ENOTSUP', 'EOPNOTSUPP')) throw fsErr('EPERM', 'the upper layer cannot hold the protection flags (no xattrs)');
          throw err;
        }
      } else if (this.of(e)) {
        try {
          lremovexattr(abs, this.xattr);
        } catch (err) {
          if (!isCode(err, 'ENOTSUP', 'EOPNOTSUPP', 'ENODATA')) throw err;
        }
      }
    } finally {
      this.changed();
    }
  }

  /** Some object's protattr changed: forget every remembered value. */
  changed(): void {
    this.gen++;
  }
}
