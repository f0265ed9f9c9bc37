import { constants as fsc } from 'node:fs';
import { fsErr, type Attr, type DirItem } from '../union/index.ts';
import type { Node } from './inodes.ts';
import { joinPath } from '../union/index.ts';
import type { LowLevelAdapter } from './ll-adapter.ts';
import { direntSize, type Dirent, type EntryParam, type LowLevelOps, type Request, type Stat } from './lowlevel.ts';

/** Directory handles: opendir, readdir, readdirplus, releasedir, fsyncdir. */

/** An open directory: its node, and the listing taken at offset 0. */
export interface DirHandle {
  node: Node;
  items: DirItem[] | null;
}

const typeMode: Record<string, number> = {
  dir: fsc.S_IFDIR, file: fsc.S_IFREG, symlink: fsc.S_IFLNK, fifo: fsc.S_IFIFO,
  chr: fsc.S_IFCHR, blk: fsc.S_IFBLK, sock: fsc.S_IFSOCK, other: 0,
};

const ZERO_ATTR: Stat = {
  ino: 0n, mode: 0, nlink: 0, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, blksize: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n,
};

export function dirOps(ad: LowLevelAdapter): LowLevelOps {
  const fs = ad.fs;
  const t = ad.table;
  return {
    opendir: (r, ino) =>
      ad.run(r, () => {
        const n = ad.node(ino);
        const p = t.path(n);
        if (p === null) throw fsErr('ENOENT');
        const e = fs.lookup(p);
        if (!e) throw fsErr('ENOENT');
        if (e.type !== 'dir') throw fsErr('ENOTDIR');
        const id = ad.nextDir++;
        ad.dirs.set(id, { node: n, items: null });
        // The kernel may keep listings: every change to a directory's entries goes through
        // it (and drops the cached listing), as for file data.
        const cache = ad.keepCache;
        if (r.open(id, { cacheReaddir: cache, keepCache: cache }) !== 0) ad.dirs.delete(id);
      }),

    readdir: (r, _ino, fh, size, off) => ad.run(r, () => readdir(ad, r, fh, size, off, false)),
    readdirplus: (r, _ino, fh, size, off) => ad.run(r, () => readdir(ad, r, fh, size, off, true)),

    releasedir: (r, _ino, fh) =>
      ad.run(r, () => {
        ad.dirs.delete(fh);
        r.ok();
      }),

    fsyncdir: (r) => void r.ok(),
  };
}

/**
 * readdir and readdirplus from a listing taken at offset 0 (and kept for the handle, so
 * that offsets stay stable while the directory is read). Offsets: '.' 0, '..' 1, then the
 * listing; each entry carries the offset of the next one. readdirplus entries count as
 * lookups once the kernel took them ('.' and '..' excepted).
 *
 * Attributes in readdirplus cost a union lookup per name (the lower directory index makes
 * that an lstat, which a plain entry's d_ino costs too), far less than the LOOKUP round trip
 * each saves when the names are then stat-ed: a cold `find | xargs stat` over 10k files went
 * from 1,265 to 338 ms. With readdirplus: 'adaptive' they are given only for a directory
 * whose names were looked up since its previous readdirplus, as the kernel's own
 * READDIRPLUS_AUTO advice does; otherwise the entries go without attributes (node id 0: the
 * kernel takes them as plain entries).
 */
function readdir(ad: LowLevelAdapter, r: Request, fh: number, size: number, off: number, askedPlus: boolean): void {
  const fs = ad.fs;
  const t = ad.table;
  const dh = ad.dirs.get(fh);
  if (!dh) throw fsErr('EBADF');
  const dir = t.path(dh.node);
  if (dir === null) {
    r.dirents([], askedPlus, size); // removed while open: nothing left to list
    return;
  }
  const plus = askedPlus && (ad.o.readdirplus !== 'adaptive' || (dh.node.childLookups ?? 0) > 0);
  if (ad.keepCache) dh.node.listed = true; // opendir asked the kernel to keep it
  if (askedPlus) dh.node.childLookups = 0;
  if (off === 0 || !dh.items) dh.items = fs.readdir(dir);
  const items = dh.items;
  const total = items.length + 2;
  const list: Dirent[] = [];
  const nodes: (Node | null)[] = [];
  const created: Node[] = [];
  let used = 0;
  for (let i = off; i < total; i++) {
    let name: string;
    let entry: EntryParam;
    let node: Node | null = null;
    if (i < 2) {
      name = i === 0 ? '.' : '..';
      const target = i === 0 || dir === '/' ? dir : dir.slice(0, dir.lastIndexOf('/')) || '/';
      let ino: bigint = 1n;
      try {
        ino = fs.getattr(target).ino;
      } catch {
        // keep 1
      }
      entry = { nodeid: 0, attr: { ...ZERO_ATTR, ino, mode: fsc.S_IFDIR }, entryTimeout: 0, attrTimeout: 0 };
    } else {
      const it = items[i - 2]!;
      name = it.name;
      if (plus) {
        let attr: Attr | null = null;
        try {
          attr = fs.getattr(joinPath(dir, name));
        } catch {
          attr = null; // gone since the listing: a plain entry
        }
        if (attr) {
          const got = ad.nodeFor(dh.node, name, joinPath(dir, name), attr);
          node = got.node;
          if (got.created) created.push(node);
          entry = ad.entry(node, attr);
        } else {
          entry = { nodeid: 0, attr: { ...ZERO_ATTR, ino: fs.direntIno(dir, it) || 1n, mode: typeMode[it.type] ?? 0 }, entryTimeout: 0, attrTimeout: 0 };
        }
      } else {
        // readdir(3) skips entries whose d_ino is 0.
        const ino = fs.direntIno(dir, it) || 1n;
        entry = { nodeid: 0, attr: { ...ZERO_ATTR, ino, mode: typeMode[it.type] ?? 0 }, entryTimeout: 0, attrTimeout: 0 };
      }
    }
    const sz = direntSize(name.length, askedPlus); // a byte string: one char per byte
    if (used + sz > size) {
      if (node && created.at(-1) === node) {
        created.pop();
        t.dropIfUnused(node);
      }
      break;
    }
    used += sz;
    list.push({ name, off: i + 1, entry });
    nodes.push(node);
  }
  const sent = r.dirents(list, askedPlus, size);
  if (plus && sent > 0) {
    for (let k = 0; k < sent; k++) {
      const n = nodes[k];
      if (n) n.lookups++;
    }
  }
  for (const n of created) t.dropIfUnused(n);
}
