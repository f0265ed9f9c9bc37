import { closeSync, constants as fsc, fchmodSync, fchownSync, fstatSync, type BigIntStats } from 'node:fs';
import * as sys from '../sys/index.ts';
import * as b from './bytes.ts';
import {
  chmodSync, lchownSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, rmSync, rmdirSync, symlinkSync, unlinkSync,
} from './bytes.ts';
import { restoreTimes } from './copyup.ts';
import { fsErr, isCode } from './errors.ts';
import { PROT_ANY, PROT_IMMUTABLE } from './fileattr.ts';
import { O_ACCMODE, O_CLOEXEC, O_LARGEFILE, open, openFlags } from './handles.ts';
import { baseName, checkPath, isWithin, parentOf } from './layer.ts';
import type { Entry } from './lookup.ts';
import { mergedReaddir } from './readdir.ts';
import type { Stack } from './stack.ts';
import { isOciName, isWhiteoutStat, makeWhiteout } from './whiteout.ts';
import { removeTree } from './workdir.ts';

/**
 * The namespace rules (the kernel's fs/overlayfs/dir.c): creating, removing and renaming
 * names, with their whiteouts and opaque directories. Every change is made in the upper, its
 * parents copied up first (./copyup.ts).
 *
 *  - Create over a whiteout: a new object whose name the upper holds a whiteout for is made in
 *    the work directory and swapped in by one rename, so the name always has one or the other;
 *    a directory made there is opaque, so nothing of the lowers shows through it again.
 *  - Remove leaving a whiteout: when a lower still shows the name, the object is swapped for a
 *    whiteout by one rename; an upper directory on its way out is removed in the work directory.
 *  - Rename: the source is copied up and renamed in the upper, leaving a whiteout when a lower
 *    has the source name. A directory that a lower contributes to gives EXDEV (the kernel with
 *    redirect_dir=off; `mv` then copies); an upper-only directory moved into a merged one is
 *    made opaque. A destination directory that only looks empty (it holds whiteouts) is swapped
 *    for an empty opaque one first. RENAME_EXCHANGE needs no whiteout.
 *  - `.wh.*` names are reserved for whiteouts (EINVAL); the protection flags refuse what the VFS
 *    refuses (may_create, may_delete: EPERM).
 *
 * Guarantees: a refused operation changes nothing (every check, in the kernel's order, comes
 * before the first copy-up); a crash leaves each name either as it was or as it was to become.
 *
 * Across an await: an operation awaits only copy-ups (its parents', and its source's for link,
 * rename, exchange). Meanwhile other requests may copy up other objects (these names'
 * ancestors too: CopyUp shares one copy) and invalidate the Resolver's cache, so what a copy-up
 * changes is read again after it: whether a lower has the name, whether the destination's
 * parent is merged, what the upper holds at the destination. What the checks before the await
 * found (existence, type, emptiness, flags) must stay true: callers hold the names still, as
 * the VFS holds the parent directories' locks (for rename, lock_rename on both parents) across
 * the request; callers that bypass the kernel must not run two namespace operations on the same
 * names at once. Not excluded by those locks: a concurrent open for writing that copies up the
 * object an unlink is removing; the unlink then fails (EEXIST) rather than lose the copy.
 */

/** Credentials for new objects; undefined means the daemon's own. */
export interface Owner {
  uid: number;
  gid: number;
}

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;

// ---------------------------------------------------------------- create

/** Create and open a new regular file (O_EXCL semantics are the kernel's business). */
export async function create(s: Stack, path: string, mode: number, flags: number, owner?: Owner): Promise<number> {
  checkPath(path);
  const existing = s.resolver.find(path);
  if (existing) {
    if (flags & fsc.O_EXCL) throw fsErr('EEXIST');
    return open(s, path, flags);
  }
  // One open makes the file and serves as the handle: owner and mode are set through it, and
  // only when they differ from what the kernel gave the new file (the daemon's ids and umask).
  const perm = mode & 0o7777;
  let fd = -1;
  try {
    await createIn(s, path, (abs) => {
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
    const again = openSync(s.upperPath(path), want, 0);
    closeSync(fd);
    fd = again;
  }
  return s.files.add({ path, fd, upper: true, retired: [] });
}

export async function mkdir(s: Stack, path: string, mode: number, owner?: Owner): Promise<void> {
  checkPath(path);
  if (s.resolver.find(path)) throw fsErr('EEXIST');
  await createIn(s, path, (abs) => {
    mkdirSync(abs, mode & 0o7777);
    chmodSync(abs, mode & 0o7777);
  }, owner, true);
}

export async function symlink(s: Stack, target: string | Buffer, path: string, owner?: Owner): Promise<void> {
  checkPath(path);
  if (s.resolver.find(path)) throw fsErr('EEXIST');
  await createIn(s, path, (abs) => symlinkSync(target, abs), owner);
}

export async function mknod(s: Stack, path: string, mode: number, rdev: number, owner?: Owner): Promise<void> {
  checkPath(path);
  if (s.resolver.find(path)) throw fsErr('EEXIST');
  // A 0/0 character device is how whiteouts are written; through the union it is refused,
  // as the kernel refuses it.
  if ((mode & fsc.S_IFMT) === fsc.S_IFCHR && rdev === 0) throw fsErr('EPERM');
  await createIn(s, path, (abs) => {
    b.mknod(abs, mode, rdev);
    chmodSync(abs, mode & 0o7777);
  }, owner);
}

export async function link(s: Stack, src: string, dst: string): Promise<void> {
  checkPath(src);
  checkPath(dst);
  const e = s.resolver.get(src);
  if (e.type === 'dir') throw fsErr('EPERM');
  if (s.resolver.find(dst)) throw fsErr('EEXIST');
  // vfs_link: the new name's directory must take entries (createIn checks it too, after the
  // copy-up this must not make), and the object must be neither append-only nor immutable.
  s.writable();
  guardCreate(s, dst);
  s.prot.guard(e, PROT_ANY);
  await s.copyUp(src);
  const srcAbs = s.upperPath(src);
  await createIn(s, dst, (abs) => linkSync(srcAbs, abs), undefined, false, true);
  s.resolver.invalidate(src);
}

/**
 * Create a new object at `path` in the upper with `make(absPath)`. Parents are copied up
 * first. Where the upper holds a whiteout for the name, the object is assembled in the work
 * directory and swapped in, so the name is never without either; a directory made over a
 * whiteout is opaque, so nothing of the lowers shows through it again.
 */
async function createIn(
  s: Stack,
  path: string,
  make: (abs: string) => void,
  owner?: Owner,
  isDir = false,
  keepOwner = false,
  opened?: { fd: () => number; perm: number },
): Promise<string> {
  s.writable();
  if (isOciName(baseName(path))) throw fsErr('EINVAL', '.wh.* names are reserved for whiteouts');
  const parent = parentOf(path);
  guardCreate(s, path);
  await s.copyup!.ensureDir(parent);
  const abs = s.upperPath(path);
  const parentAbs = s.upperPath(parent);
  if (!s.resolver.upperWhiteout(path)) {
    make(abs);
    if (opened) setOwnerFd(opened.fd(), opened.perm, parentAbs, owner);
    else if (!keepOwner) setOwner(abs, parentAbs, owner, isDir);
  } else {
    const tmp = s.work!.tmpName();
    try {
      make(tmp);
      if (opened) setOwnerFd(opened.fd(), opened.perm, parentAbs, owner);
      else if (!keepOwner) setOwner(tmp, parentAbs, owner, isDir);
      if (isDir) {
        s.wf.setOpaque(tmp);
        b.renameat2(tmp, abs, sys.RENAME_EXCHANGE);
      } else {
        b.renameat2(tmp, abs, 0);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    if (s.trace) traceCreate(s, path, isDir);
  }
  s.resolver.invalidate(path);
  return abs;
}

/** New objects belong to the caller; a set-gid parent passes its group on, as on any fs. */
function setOwner(abs: string, parentAbs: string, owner: Owner | undefined, isDir: boolean): void {
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
function setOwnerFd(fd: number, perm: number, parentAbs: string, owner: Owner | undefined): void {
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

// ---------------------------------------------------------------- remove

export async function unlink(s: Stack, path: string): Promise<void> {
  checkPath(path);
  s.writable();
  const e = s.resolver.get(path);
  guardDelete(s, e);
  if (e.type === 'dir') throw fsErr('EISDIR');
  await removeEntry(s, e);
}

export async function rmdir(s: Stack, path: string): Promise<void> {
  checkPath(path);
  s.writable();
  if (path === '/') throw fsErr('EBUSY');
  const e = s.resolver.get(path);
  guardDelete(s, e);
  if (e.type !== 'dir') throw fsErr('ENOTDIR');
  if (mergedReaddir(s.layers, e, s.wf).length > 0) throw fsErr('ENOTEMPTY');
  await removeEntry(s, e);
}

/** Remove an object (already checked: a non-directory, or an empty merged directory). */
async function removeEntry(s: Stack, e: Entry): Promise<void> {
  const parent = parentOf(e.path);
  const name = baseName(e.path);
  const needWhiteout = s.resolver.lowerHas(parent, name);
  const inUpper = s.layers[e.layer].isUpper;
  if (needWhiteout) await s.copyup!.ensureDir(parent);
  const abs = s.upperPath(e.path);
  if (inUpper && !needWhiteout) {
    if (e.type === 'dir') {
      if (readdirSync(abs).length > 0) s.work!.moveAndRemove(abs);
      else rmdirSync(abs);
    } else {
      unlinkSync(abs);
    }
  } else if (inUpper) {
    // Swap the object for a whiteout in one step, then dispose of it in the work dir.
    const tmp = s.work!.tmpName();
    makeWhiteout(tmp);
    if (e.type === 'dir') {
      b.renameat2(tmp, abs, sys.RENAME_EXCHANGE);
      removeTree(tmp);
    } else {
      b.renameat2(tmp, abs, 0);
    }
  } else {
    const tmp = s.work!.tmpName();
    makeWhiteout(tmp);
    b.renameat2(tmp, abs, sys.RENAME_NOREPLACE);
  }
  s.resolver.invalidateTree(e.path);
  if (s.trace && needWhiteout) s.trace({ ev: 'whiteout', path: e.path, op: e.type === 'dir' ? 'rmdir' : 'unlink' });
  s.files.detach(e.path);
}

// ---------------------------------------------------------------- rename

/**
 * rename(2). Files (and special files, symlinks) are copied up and renamed in the upper; a
 * whiteout is left at the source when a lower still has it. Directories that a lower
 * contributes to (lower-only or merged) give EXDEV, as the kernel does with redirect_dir=off;
 * `mv` then copies. A directory that lives only in the upper is renamed; it is made opaque
 * when it moves into a merged directory, so the lower entries at its new name stay hidden.
 *
 * Awaits the source's copy-up, then the destination parent's. Checked before: the flags, both
 * names, the types, EXDEV, ENOTEMPTY; read after: whether a lower has the source name, whether
 * the destination's parent is merged, what the upper holds at the destination.
 */
export async function rename(s: Stack, src: string, dst: string, flags = 0): Promise<void> {
  checkPath(src);
  checkPath(dst);
  s.writable();
  if (flags & ~(sys.RENAME_NOREPLACE | sys.RENAME_EXCHANGE)) throw fsErr('EINVAL');
  if ((flags & sys.RENAME_NOREPLACE) && (flags & sys.RENAME_EXCHANGE)) throw fsErr('EINVAL');
  if (src === '/' || dst === '/') throw fsErr('EBUSY');
  if (flags & sys.RENAME_EXCHANGE) return exchange(s, src, dst);
  // As in createIn: a `.wh.*` name in the upper would vanish from the union.
  if (isOciName(baseName(dst))) throw fsErr('EINVAL', '.wh.* names are reserved for whiteouts');
  const se = s.resolver.get(src);
  if (se.type === 'dir' && isWithin(dst, src) && dst !== src) throw fsErr('EINVAL');
  const dparent = s.resolver.get(parentOf(dst));
  if (dparent.type !== 'dir') throw fsErr('ENOTDIR');
  const de = s.resolver.find(dst);
  if (de && (flags & sys.RENAME_NOREPLACE)) throw fsErr('EEXIST');
  if (src === dst) return;
  // vfs_rename: the source is deleted from its directory, the target (if any) from its own,
  // or the new name created there.
  guardDelete(s, se);
  if (de) guardDelete(s, de);
  else guardCreate(s, dst);
  if (de) {
    if (se.type === 'dir' && de.type !== 'dir') throw fsErr('ENOTDIR');
    if (se.type !== 'dir' && de.type === 'dir') throw fsErr('EISDIR');
  }
  // EXDEV before ENOTEMPTY, in the kernel's order: a lower/merged dir is refused whatever
  // stands at the destination (the type checks above are the VFS's, which come first).
  if (se.type === 'dir' && s.resolver.isMergedOrLower(se)) throw exdev(s, src, dst);
  if (de && de.type === 'dir' && mergedReaddir(s.layers, de, s.wf).length > 0) throw fsErr('ENOTEMPTY');
  const up = s.upper!;
  const ready = await s.copyUp(src);
  await s.copyup!.ensureDir(parentOf(dst));
  const srcAbs = up.path(src);
  const dstAbs = up.path(dst);
  const srcNeedsWhiteout = s.resolver.lowerHas(parentOf(src), baseName(src));
  if (ready.type === 'dir') {
    const dstParentMerged = s.resolver.isMergedOrLower(s.resolver.get(parentOf(dst)));
    if (dstParentMerged && !s.wf.isOpaqueDir(srcAbs, false)) {
      s.wf.setOpaque(srcAbs);
      if (s.trace) s.trace({ ev: 'opaque', path: dst, op: 'rename' });
    }
  }
  // An (only apparently empty) directory holding whiteouts at the destination is swapped
  // for an empty opaque one first; that changes nothing the union shows.
  const dst0 = lstatOrNull(dstAbs);
  if (dst0?.isDirectory() && readdirSync(dstAbs).length > 0) replaceWithEmptyDir(s, dstAbs);
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
  if (s.trace) traceRename(s, src, dst, !!dst0 && isWhiteoutStat(dst0), srcNeedsWhiteout);
  s.resolver.invalidateTree(src);
  s.resolver.invalidateTree(dst);
  s.files.detach(dst); // whatever was at dst is gone
  s.files.moved(src, dst);
}

/**
 * renameat2(RENAME_EXCHANGE): both names stay, so no whiteout is needed. As in the kernel
 * with redirect_dir=off, a directory that a lower contributes to cannot move (EXDEV); an
 * upper-only directory that moves into a merged directory is made opaque. Awaits the copy-ups
 * of both objects; whether each new parent is merged is read after them.
 */
async function exchange(s: Stack, src: string, dst: string): Promise<void> {
  const se = s.resolver.get(src);
  const de = s.resolver.get(dst);
  if (src === dst) return;
  if ((se.type === 'dir' && isWithin(dst, src)) || (de.type === 'dir' && isWithin(src, dst))) throw fsErr('EINVAL');
  guardDelete(s, se);
  guardDelete(s, de);
  if (se.type === 'dir' && s.resolver.isMergedOrLower(se)) throw exdev(s, src, dst);
  if (de.type === 'dir' && s.resolver.isMergedOrLower(de)) throw exdev(s, dst, src);
  const up = s.upper!;
  const sUp = await s.copyUp(src);
  const dUp = await s.copyUp(dst);
  const srcAbs = up.path(src);
  const dstAbs = up.path(dst);
  const mergedParent = (p: string) => s.resolver.isMergedOrLower(s.resolver.get(parentOf(p)));
  if (sUp.type === 'dir' && mergedParent(dst) && !s.wf.isOpaqueDir(srcAbs, false)) s.wf.setOpaque(srcAbs);
  if (dUp.type === 'dir' && mergedParent(src) && !s.wf.isOpaqueDir(dstAbs, false)) s.wf.setOpaque(dstAbs);
  b.renameat2(srcAbs, dstAbs, sys.RENAME_EXCHANGE);
  s.resolver.invalidateTree(src);
  s.resolver.invalidateTree(dst);
  s.files.swapped(src, dst);
}

/** Swap a directory for an empty opaque copy of itself (keeping its mode, owner, times). */
function replaceWithEmptyDir(s: Stack, abs: string): void {
  const st = lstatSync(abs, { bigint: true });
  const tmp = s.work!.tmpName();
  mkdirSync(tmp, 0o700);
  lchownSync(tmp, Number(st.uid), Number(st.gid));
  chmodSync(tmp, Number(st.mode) & 0o7777);
  s.wf.setOpaque(tmp);
  b.renameat2(tmp, abs, sys.RENAME_EXCHANGE);
  removeTree(tmp);
  restoreTimes(abs, st);
}

// ---------------------------------------------------------------- the VFS's checks (protection flags)

/** may_create: no new name in an immutable directory (an append-only one takes them). */
function guardCreate(s: Stack, path: string): void {
  const parent = s.resolver.find(parentOf(path));
  if (parent) s.prot.guard(parent, PROT_IMMUTABLE);
}

/**
 * may_delete: no name removed from an append-only or immutable directory, and no
 * append-only or immutable object removed (or renamed) at all.
 */
function guardDelete(s: Stack, e: Entry): void {
  const parent = s.resolver.find(parentOf(e.path));
  if (parent) s.prot.guard(parent, PROT_ANY);
  s.prot.guard(e, PROT_ANY);
}

// ---------------------------------------------------------------- trace events (only called while tracing)

function exdev(s: Stack, path: string, to: string): Error {
  if (s.trace) s.trace({ ev: 'exdev', path, to });
  return fsErr('EXDEV');
}

/** A new object took the place of a whiteout in the upper (createIn). */
function traceCreate(s: Stack, path: string, isDir: boolean): void {
  s.trace?.({ ev: 'whiteout-removed', path, op: isDir ? 'mkdir' : 'create' });
  if (isDir) s.trace?.({ ev: 'opaque', path, op: 'mkdir' });
}

function traceRename(s: Stack, src: string, dst: string, dstWasWhiteout: boolean, srcWhiteout: boolean): void {
  if (dstWasWhiteout) s.trace?.({ ev: 'whiteout-removed', path: dst, op: 'rename' });
  if (srcWhiteout) s.trace?.({ ev: 'whiteout', path: src, op: 'rename' });
}

function lstatOrNull(p: string): BigIntStats | null {
  try {
    return lstatSync(p, { bigint: true });
  } catch (e) {
    if (isCode(e, 'ENOENT')) return null;
    throw e;
  }
}
