import { constants as fsc, type BigIntStats, type Stats } from 'node:fs';
import * as sys from './bytes.ts';
import { lstatOrNull } from './bytes.ts';
import { isCode } from './errors.ts';

/**
 * Whiteouts and opaque directories, in both on-disk formats.
 *
 * Kernel format (read in every layer, written in the upper): a whiteout is a character device
 * 0/0; an opaque directory carries the xattr `<prefix>opaque` = "y", where the prefix is
 * `trusted.overlay.` (default) or `user.overlay.` (the `userxattr` option, for rootless use).
 *
 * OCI image format (read in lowers only, as image layers ship it): a whiteout for NAME is an
 * entry `.wh.NAME` beside it; an opaque directory contains `.wh..wh..opq`. Names starting with
 * `.wh.` are never shown through the mount.
 *
 * Only the formats live here (what a whiteout or an opaque mark is, how to read and write one);
 * when one is written is the rule of dir.ts. Nothing here awaits.
 */
export const OCI_PREFIX = '.wh.';
export const OCI_OPAQUE = '.wh..wh..opq';

export class WhiteoutFormat {
  readonly prefix: string;
  /** The name prefixes of overlay-private xattrs (never copied up, never shown). */
  readonly privatePrefixes: readonly [string, string];
  readonly opaqueXattr: string;
  constructor(userxattr: boolean) {
    this.prefix = userxattr ? 'user.overlay.' : 'trusted.overlay.';
    this.opaqueXattr = this.prefix + 'opaque';
    this.privatePrefixes = ['trusted.overlay.', this.prefix];
  }

  /** Overlay-private xattrs are hidden from users, as the kernel hides them. */
  isPrivateXattr(name: string): boolean {
    return name.startsWith(this.privatePrefixes[0]) || name.startsWith(this.privatePrefixes[1]);
  }

  isOpaqueDir(absDir: string, allowOci: boolean): boolean {
    let v: Buffer | null = null;
    try {
      v = sys.lgetxattr(absDir, this.opaqueXattr);
    } catch (e) {
      // A lower on a filesystem without xattrs (ramfs, vfat...) simply has no opaque dirs.
      if (!isCode(e, 'ENOTSUP', 'EOPNOTSUPP')) throw e;
    }
    if (v !== null && v.length === 1 && v[0] === 0x79 /* y */) return true;
    return allowOci && lstatOrNull(absDir + '/' + OCI_OPAQUE) !== null;
  }

  setOpaque(absDir: string): void {
    sys.lsetxattr(absDir, this.opaqueXattr, Buffer.from('y'));
  }

  /**
   * Kernel 6.8+ "xattr whiteouts", read in lowers: an empty regular file carrying
   * `<prefix>whiteout` is a whiteout. Lookup honours one wherever it is; a listing looks for
   * them only in directories marked `<prefix>opaque` = "x" (which is not opaque), as the
   * kernel does, so unmarked ones are listed but cannot be looked up there too.
   */
  isXwhiteout(abs: string, st: Stats | BigIntStats): boolean {
    if (!st.isFile() || Number(st.size) !== 0) return false;
    try {
      return sys.lgetxattr(abs, this.prefix + 'whiteout') !== null;
    } catch (e) {
      if (isCode(e, 'ENOTSUP', 'EOPNOTSUPP', 'ENOENT')) return false;
      throw e;
    }
  }

  /** Is this (lower) directory marked as holding xattr whiteouts (`<prefix>opaque` = "x")? */
  hasXwhiteouts(absDir: string): boolean {
    try {
      const v = sys.lgetxattr(absDir, this.opaqueXattr);
      return v !== null && v.length === 1 && v[0] === 0x78 /* x */;
    } catch (e) {
      if (isCode(e, 'ENOTSUP', 'EOPNOTSUPP', 'ENOENT', 'ENOTDIR')) return false;
      throw e;
    }
  }
}

export function isWhiteoutStat(st: Stats | BigIntStats): boolean {
  return st.isCharacterDevice() && Number(st.rdev) === 0;
}

export function isOciName(name: string): boolean {
  return name.startsWith(OCI_PREFIX);
}

/** Is there an OCI whiteout for `name` in the real directory absDir? */
export function hasOciWhiteout(absDir: string, name: string): boolean {
  return lstatOrNull(absDir + '/' + OCI_PREFIX + name) !== null;
}

/** Create a kernel-format whiteout (char device 0/0) at absPath. */
export function makeWhiteout(absPath: string): void {
  sys.mknod(absPath, fsc.S_IFCHR, 0);
}
