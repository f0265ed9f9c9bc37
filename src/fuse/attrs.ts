import { constants as fsc } from 'node:fs';
import type { Attr, Owner, UnionFs } from '../union/index.ts';
import { OVERRIDE_STAT_XATTR, formatOverrideStat, parseOverrideStat, type IdMap, type OverrideStat } from './idmap.ts';
import type { InodeTable, Node } from './inodes.ts';
import { SetAttr, type Request, type SetattrArgs } from './lowlevel.ts';

/**
 * Owners and modes at the mount's edge: what the mount shows (xattr_permissions=2's
 * `user.containers.override_stat`, then uidmapping=/gidmapping=), and the caller's ids shifted
 * back before they reach the layers. The union core sees disk ids only.
 */
export class AttrView {
  constructor(
    private readonly fs: UnionFs,
    private readonly table: InodeTable,
    readonly idmap: IdMap | undefined,
    /** xattr_permissions=2. */
    readonly overrideStat: boolean,
  ) {}

  /** The caller's ids on disk (owner of the objects it creates). */
  owner(r: Request): Owner {
    const m = this.idmap;
    return m ? { uid: m.uidToDisk(r.uid), gid: m.gidToDisk(r.gid) } : { uid: r.uid, gid: r.gid };
  }

  uidToDisk(uid: number): number {
    return this.idmap ? this.idmap.uidToDisk(uid) : uid;
  }

  gidToDisk(gid: number): number {
    return this.idmap ? this.idmap.gidToDisk(gid) : gid;
  }

  /** Attributes as the mount shows them: override_stat, then the id mapping. */
  shown(n: Node, attr: Attr): Attr {
    let a = attr;
    if (this.overrideStat) {
      const o = this.overrideOf(n);
      if (o) a = { ...a, uid: o.uid, gid: o.gid, mode: (a.mode & fsc.S_IFMT) | o.mode };
    }
    return this.idmap ? this.idmap.shown(a) : a;
  }

  overrideOf(n: Node): OverrideStat | null {
    const p = this.table.path(n);
    if (p === null) return null;
    try {
      return parseOverrideStat(this.fs.getxattr(p, OVERRIDE_STAT_XATTR).toString('latin1'));
    } catch {
      return null; // none (ENODATA), or no user xattrs here (symlinks)
    }
  }

  /** setattr's chmod/chown at path `p`: an object with an override gets it updated too. */
  async updateOverride(n: Node, p: string, a: SetattrArgs): Promise<void> {
    const set = a.toSet;
    if (!this.overrideStat || !(set & (SetAttr.UID | SetAttr.GID | SetAttr.MODE))) return;
    const o = this.overrideOf(n);
    if (!o) return;
    if (set & SetAttr.UID) o.uid = this.uidToDisk(a.uid);
    if (set & SetAttr.GID) o.gid = this.gidToDisk(a.gid);
    if (set & SetAttr.MODE) o.mode = a.mode & 0o7777;
    await this.fs.setxattr(p, OVERRIDE_STAT_XATTR, Buffer.from(formatOverrideStat(o)), 0);
  }

  /** Whether an xattr name is the override's own record, hidden from getxattr/listxattr. */
  hides(name: string): boolean {
    return this.overrideStat && name === OVERRIDE_STAT_XATTR;
  }
}
