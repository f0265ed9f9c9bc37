import { fsErr, type Attr, type TimeArg } from '../union/index.ts';
import { joinPath } from '../union/index.ts';
import type { LowLevelAdapter } from './ll-adapter.ts';
import { SetAttr, type LowLevelOps, type Request, type SetattrArgs } from './lowlevel.ts';

/**
 * The namespace requests: lookup, forget, getattr, setattr, readlink, mknod, mkdir, symlink,
 * link, unlink, rmdir, rename, each translated into UnionFs calls on the adapter's inode table.
 */

const RENAME_EXCHANGE = 2;

export function nameOps(ad: LowLevelAdapter): LowLevelOps {
  const fs = ad.fs;
  const t = ad.table;
  return {
    lookup: (r, parent, name) =>
      ad.run(r, () => {
        const p = ad.node(parent);
        const dir = t.path(p);
        if (dir === null) throw fsErr('ENOENT');
        p.childLookups = (p.childLookups ?? 0) + 1;
        const path = joinPath(dir, name);
        const attr = fs.lookupAttr(path);
        if (attr) ad.replyEntry(r, p, name, path, attr);
        else if (ad.t > 0) r.negative(ad.t);
        else throw fsErr('ENOENT');
      }),

    forget: (nodeid, nlookup) => t.forget(nodeid, nlookup),

    getattr: (r, ino, fh) =>
      ad.run(r, () => {
        const n = ad.node(ino);
        const p = t.path(n);
        const h = ad.anyFh(n, fh);
        if (p !== null) {
          try {
            ad.replyAttr(r, n, fs.getattr(p));
            return;
          } catch (e) {
            if (h === null || (e as { code?: string }).code !== 'ENOENT') throw e;
          }
        }
        // Unlinked but open (fstat after unlink comes without a handle): the handle still knows the file.
        if (h === null) throw fsErr('ENOENT');
        ad.replyAttr(r, n, fs.fgetattr(h));
      }),

    setattr: (r, ino, a, fh) => ad.run(r, () => setattr(ad, r, ino, a, fh)),

    readlink: (r, ino) => ad.run(r, () => void r.readlink(fs.readlink(ad.pathOf(ino)))),

    mknod: (r, parent, name, mode, rdev) =>
      ad.run(r, () => makeNode(ad, r, parent, name, (p) => fs.mknod(p, mode, rdev, ad.attrs.owner(r)))),

    mkdir: (r, parent, name, mode) =>
      ad.run(r, () => makeNode(ad, r, parent, name, (p) => fs.mkdir(p, mode, ad.attrs.owner(r)))),

    symlink: (r, parent, name, target) =>
      ad.run(r, () => makeNode(ad, r, parent, name, (p) => fs.symlink(target, p, ad.attrs.owner(r)))),

    link: (r, ino, newparent, newname) =>
      ad.run(r, async () => {
        const src = ad.node(ino);
        const np = ad.node(newparent);
        const sp = t.path(src);
        const dp = t.path(np);
        if (sp === null || dp === null) throw fsErr('ENOENT');
        const dst = joinPath(dp, newname);
        await ad.copyUps.watching([src, np], () => fs.link(sp, dst));
        const attr = fs.getattr(dst);
        // One more name of the source's object (in the upper now): the source's node, so the
        // kernel has one inode for both names.
        t.alias(src, np, newname);
        if (r.entry(ad.entry(src, attr)) === 0) src.lookups++;
      }),

    unlink: (r, parent, name) => ad.run(r, () => remove(ad, r, parent, name, false)),
    rmdir: (r, parent, name) => ad.run(r, () => remove(ad, r, parent, name, true)),

    rename: (r, parent, name, newparent, newname, flags) =>
      ad.run(r, async () => {
        const p = ad.node(parent);
        const np = ad.node(newparent);
        const sp = t.path(p);
        const dp = t.path(np);
        if (sp === null || dp === null) throw fsErr('ENOENT');
        const src = joinPath(sp, name);
        const dst = joinPath(dp, newname);
        // RENAME_EXCHANGE copies the destination up too.
        const starts = flags & RENAME_EXCHANGE ? [t.child(p, name), t.child(np, newname), np] : [t.child(p, name), np];
        await ad.copyUps.watching(starts, () => fs.rename(src, dst, flags));
        if (flags & RENAME_EXCHANGE) t.exchange(p, name, np, newname);
        else t.rename(p, name, np, newname);
        r.ok();
      }),
  };
}

async function setattr(ad: LowLevelAdapter, r: Request, ino: number, a: SetattrArgs, fh: number | null): Promise<void> {
  const fs = ad.fs;
  const n = ad.node(ino);
  const p = ad.table.path(n);
  const set = a.toSet;
  const h = p === null ? ad.anyFh(n, fh) : fh;
  await ad.copyUps.watching([n], async () => {
    if (set & SetAttr.SIZE) {
      let done = false;
      if (h !== null) {
        try {
          fs.ftruncate(h, a.size);
          done = true;
        } catch (e) {
          if (p === null || (e as { code?: string }).code !== 'EBADF') throw e;
        }
      }
      if (!done) {
        if (p === null) throw fsErr('ENOENT');
        await fs.truncate(p, a.size);
      }
    }
    const rest = SetAttr.UID | SetAttr.GID | SetAttr.MODE | SetAttr.ATIME | SetAttr.MTIME;
    if ((set & rest) && p === null) throw fsErr('ENOENT');
    // Owner before mode: chown clears set-id bits, a mode given with it must stick.
    if (set & (SetAttr.UID | SetAttr.GID)) {
      const uid = set & SetAttr.UID ? ad.attrs.uidToDisk(a.uid) : -1;
      const gid = set & SetAttr.GID ? ad.attrs.gidToDisk(a.gid) : -1;
      await fs.chown(p!, uid, gid);
    }
    if (set & SetAttr.MODE) await fs.chmod(p!, a.mode);
    if (p !== null) await ad.attrs.updateOverride(n, p, a);
    if (set & (SetAttr.ATIME | SetAttr.MTIME)) {
      const at: TimeArg = set & SetAttr.ATIME ? (set & SetAttr.ATIME_NOW ? 'now' : a.atime) : 'omit';
      const mt: TimeArg = set & SetAttr.MTIME ? (set & SetAttr.MTIME_NOW ? 'now' : a.mtime) : 'omit';
      await fs.utimens(p!, at, mt);
    }
  }, n);
  let attr: Attr;
  try {
    if (p !== null) attr = fs.getattr(p);
    else if (h !== null) attr = fs.fgetattr(h);
    else throw fsErr('ENOENT');
  } catch (e) {
    ad.session?.notifyInvalInode(n.id, -1, 0); // no attributes in the answer after all
    throw e;
  }
  ad.replyAttr(r, n, attr);
}

/** mknod, mkdir, symlink: `make` creates the object at its union path. */
async function makeNode(ad: LowLevelAdapter, r: Request, parent: number, name: string, make: (path: string) => Promise<void>): Promise<void> {
  const pn = ad.node(parent);
  const dir = ad.table.path(pn);
  if (dir === null) throw fsErr('ENOENT');
  const path = joinPath(dir, name);
  await ad.copyUps.watching([pn], () => make(path));
  ad.replyEntry(r, pn, name, path, ad.fs.getattr(path));
}

async function remove(ad: LowLevelAdapter, r: Request, parent: number, name: string, dir: boolean): Promise<void> {
  const pn = ad.node(parent);
  const d = ad.table.path(pn);
  if (d === null) throw fsErr('ENOENT');
  const path = joinPath(d, name);
  await ad.copyUps.watching([pn], () => (dir ? ad.fs.rmdir(path) : ad.fs.unlink(path)));
  ad.table.unlinkName(pn, name);
  r.ok();
}
