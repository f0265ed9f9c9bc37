// Inode flags through the union (lsattr / chattr), on plain directories: src/union/fileattr.ts.
// Kernel overlayfs (>= 5.16) is the reference: get answers from the object that serves the
// path; set copies up, keeps append-only and immutable in `<prefix>protattr` on the upper
// object (never on its real inode) and the rest on the upper object; the union then enforces
// the two protection flags itself. (Run as root: setting flags on the layers' objects needs it.)

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import type { UnionFs } from '../../src/union/unionfs.ts';
import {
  O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, S_IFIFO, dir, env, fifo, file, guard, ls, lstatOrNull, names, readAll, symlink,
  writeAt, type Env,
} from './_helpers.ts';

const FS_SYNC_FL = 0x8;
const FS_IMMUTABLE_FL = 0x10;
const FS_APPEND_FL = 0x20;
const FS_NODUMP_FL = 0x40;
const FS_NOATIME_FL = 0x80;
const FS_XFLAG_IMMUTABLE = 0x8;
const FS_XFLAG_APPEND = 0x10;
const PROTATTR = 'trusted.overlay.protattr';
const { O_APPEND, W_OK } = fs.constants;
const FALLOC_FL_KEEP_SIZE = 0x1;
const FALLOC_FL_PUNCH_HOLE = 0x2;

/** The real inode flags of a layer object. */
function realFlags(abs: string): number {
  const b = Buffer.alloc(4);
  sys.fileattr(abs, sys.FS_IOC_GETFLAGS, b);
  return b.readInt32LE(0);
}

function setRealFlags(abs: string, flags: number): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(flags);
  sys.fileattr(abs, sys.FS_IOC_SETFLAGS, b);
}

function protattr(abs: string, name = PROTATTR): string | null {
  return sys.lgetxattr(abs, name)?.toString('latin1') ?? null;
}

/** The error code of a call, or 'ok'. */
async function code(f: () => unknown): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

/** Open, then release at once (a refused open throws). */
async function openClose(u: UnionFs, p: string, flags: number): Promise<void> {
  u.release(await u.open(p, flags));
}

/** A lower with a file, a directory with a child, a symlink and a fifo; an upper with a file. */
function fixture(t: ExecutionContext): Env {
  const e = env(t);
  const L = e.lowers[0]!;
  file(L, 'f', 'lower f\n');
  file(L, 'd/c', 'c\n');
  file(L, 'm/a', 'a\n');
  symlink(L, 'sl', 'f');
  fifo(L, 'p');
  file(e.upper, 'g', 'upper g\n');
  file(e.upper, 'm/b', 'b\n');
  return e;
}

test('getFlags: the flags of the object in the layer that serves it; symlinks and special files: ENOTTY', async (t) => {
  const e = fixture(t);
  const u = e.union();
  const L = e.lowers[0]!;
  const unchanged = guard(t, L, e.upper);
  t.is(u.getFlags('/f'), realFlags(path.join(L, 'f')));
  t.is(u.getFlags('/g'), realFlags(path.join(e.upper, 'g')));
  t.is(u.getFlags('/d'), realFlags(path.join(L, 'd')));
  t.is(u.getFlags('/m'), realFlags(path.join(e.upper, 'm'))); // merged: the upper's directory
  t.is(u.getFlags('/'), realFlags(e.upper));
  t.deepEqual(u.getFsxattr('/f').xflags, 0);
  for (const p of ['/sl', '/p']) {
    t.is(await code(() => u.getFlags(p)), 'ENOTTY', p);
    t.is(await code(() => u.setFlags(p, FS_NOATIME_FL)), 'ENOTTY', p);
  }
  t.is(await code(() => u.getFlags('/nothere')), 'ENOENT');
  unchanged(); // neither read nor refused set copied anything up
});

test('setFlags copies the object up and sets the flags on the upper copy; the lower is untouched', async (t) => {
  const e = fixture(t);
  const L = e.lowers[0]!;
  const u = e.union();
  const lower = guard(t, L);
  const before = u.getFlags('/f');
  await u.setFlags('/f', before | FS_NOATIME_FL);
  t.is(realFlags(path.join(e.upper, 'f')), before | FS_NOATIME_FL);
  t.is(u.getFlags('/f'), before | FS_NOATIME_FL);
  t.is(await readAll(u, '/f'), 'lower f\n');
  t.is(protattr(path.join(e.upper, 'f')), null);
  // A lower directory: only the directory comes up, not its children.
  await u.setFlags('/d', u.getFlags('/d') | FS_NODUMP_FL);
  t.true((realFlags(path.join(e.upper, 'd')) & FS_NODUMP_FL) !== 0);
  t.deepEqual(ls(path.join(e.upper, 'd')), []);
  t.deepEqual(names(u, '/d'), ['c']);
  // Clearing it again works on the upper copy.
  await u.setFlags('/f', before);
  t.is(realFlags(path.join(e.upper, 'f')), before);
  lower();
});

test('immutable and append-only are kept in trusted.overlay.protattr, never on the upper inode', async (t) => {
  const e = fixture(t);
  const u = e.union();
  const g = path.join(e.upper, 'g');
  const base = u.getFlags('/g');
  await u.setFlags('/g', base | FS_IMMUTABLE_FL);
  t.is(protattr(g), 'i');
  t.is(realFlags(g) & (FS_IMMUTABLE_FL | FS_APPEND_FL), 0);
  t.is(u.getFlags('/g'), base | FS_IMMUTABLE_FL);
  await u.setFlags('/g', base | FS_IMMUTABLE_FL | FS_APPEND_FL | FS_NODUMP_FL);
  t.is(protattr(g), 'ai'); // the kernel's order
  t.is(realFlags(g), base | FS_NODUMP_FL);
  t.is(u.getFsxattr('/g').xflags & (FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND), FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND);
  // The xattr is overlay-private: not listed, not readable through the union.
  t.false(u.listxattr('/g').includes(PROTATTR));
  t.is(await code(() => u.getxattr('/g', PROTATTR)), 'EOPNOTSUPP');
  // Both cleared: the xattr goes.
  await u.setFlags('/g', base);
  t.is(protattr(g), null);
  t.is(u.getFlags('/g'), base);
  // The struct fsxattr form, on a lower file (copied up).
  const x = u.getFsxattr('/f');
  await u.setFsxattr('/f', { ...x, xflags: x.xflags | FS_XFLAG_APPEND });
  t.is(protattr(path.join(e.upper, 'f')), 'a');
  t.is(u.getFlags('/f') & FS_APPEND_FL, FS_APPEND_FL);
  await u.setFsxattr('/f', x);
  t.is(protattr(path.join(e.upper, 'f')), null);
});

test('an immutable object: every change is refused with EPERM, reads are not', async (t) => {
  const e = fixture(t);
  const u = e.union();
  file(e.upper, 'other', 'other\n');
  sys.lsetxattr(path.join(e.upper, 'g'), 'user.k', 'v');
  const base = u.getFlags('/g');
  const fh = await u.open('/g', O_WRONLY); // opened before: still writes (as through the kernel)
  await u.setFlags('/g', base | FS_IMMUTABLE_FL);
  const refused: [string, () => unknown][] = [
    ['open O_WRONLY', () => openClose(u, '/g', O_WRONLY)],
    ['open O_RDWR|O_APPEND', () => openClose(u, '/g', O_RDWR | O_APPEND)],
    ['open O_RDONLY|O_TRUNC', () => openClose(u, '/g', O_RDONLY | O_TRUNC)],
    ['create over it', async () => u.release(await u.create('/g', 0o644, O_WRONLY | O_CREAT))],
    ['truncate', () => u.truncate('/g', 0)],
    ['chmod', () => u.chmod('/g', 0o600)],
    ['chown', () => u.chown('/g', 1, 1)],
    ['utimens', () => u.utimens('/g', { sec: 1n, nsec: 0 }, { sec: 1n, nsec: 0 })],
    ['utimens now', () => u.utimens('/g', 'now', 'now')],
    ['utimens now, omit', () => u.utimens('/g', 'now', 'omit')],
    ['setxattr', () => u.setxattr('/g', 'user.x', Buffer.from('1'), 0)],
    ['removexattr', () => u.removexattr('/g', 'user.k')],
    ['unlink', () => u.unlink('/g')],
    ['rename', () => u.rename('/g', '/g2')],
    ['rename over it', () => u.rename('/other', '/g')],
    ['exchange', () => u.rename('/other', '/g', sys.RENAME_EXCHANGE)],
    ['link', () => u.link('/g', '/g3')],
    ['access W_OK', () => u.access('/g', W_OK)],
    ['fallocate', () => u.fallocate(fh, FALLOC_FL_KEEP_SIZE, 0, 10)],
  ];
  for (const [what, f] of refused) t.is(await code(f), 'EPERM', what);
  t.is(await readAll(u, '/g'), 'upper g\n');
  t.is(await u.write(fh, Buffer.from('U'), 1, 0), 1);
  u.ftruncate(fh, 7); // the VFS checks nothing more through an open file
  u.release(fh);
  t.deepEqual(ls(e.upper), ['g', 'm', 'other']);
  t.is(fs.readFileSync(path.join(e.upper, 'g'), 'utf8'), 'Upper g');
  // Cleared: all of it works again.
  await u.setFlags('/g', base);
  await writeAt(u, '/g', 'again');
  await u.chmod('/g', 0o600);
  await u.unlink('/g');
  t.deepEqual(ls(e.upper), ['m', 'other']);
});

test('an append-only file is only appended to', async (t) => {
  const e = fixture(t);
  const u = e.union();
  const base = u.getFlags('/g');
  await u.setFlags('/g', base | FS_APPEND_FL);
  const fh = await u.open('/g', O_WRONLY | O_APPEND);
  t.is(await u.write(fh, Buffer.from('more\n'), 5, 8), 5);
  t.is(await code(() => u.ftruncate(fh, 0)), 'EPERM');
  t.is(await code(() => u.fallocate(fh, FALLOC_FL_KEEP_SIZE, 0, 4096)), 'ok');
  t.is(await code(() => u.fallocate(fh, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1)), 'EPERM');
  u.release(fh);
  const refused: [string, () => unknown][] = [
    ['open O_WRONLY', () => openClose(u, '/g', O_WRONLY)],
    ['open O_RDWR', () => openClose(u, '/g', O_RDWR)],
    ['open O_WRONLY|O_APPEND|O_TRUNC', () => openClose(u, '/g', O_WRONLY | O_APPEND | O_TRUNC)],
    ['truncate', () => u.truncate('/g', 0)],
    ['chmod', () => u.chmod('/g', 0o600)],
    ['utimens', () => u.utimens('/g', { sec: 1n, nsec: 0 }, 'omit')],
    ['utimens omit, now', () => u.utimens('/g', 'omit', 'now')],
    ['setxattr', () => u.setxattr('/g', 'user.x', Buffer.from('1'), 0)],
    ['unlink', () => u.unlink('/g')],
    ['rename', () => u.rename('/g', '/g2')],
    ['link', () => u.link('/g', '/g3')],
  ];
  for (const [what, f] of refused) t.is(await code(f), 'EPERM', what);
  t.is(await code(() => openClose(u, '/g', O_RDWR | O_APPEND)), 'ok');
  t.is(await code(() => u.utimens('/g', 'now', 'now')), 'ok', 'touch is not refused on an append-only file');
  t.is(await code(() => u.access('/g', W_OK)), 'ok');
  t.is(await readAll(u, '/g'), 'upper g\nmore\n');
});

test('directories: append-only takes new names and keeps its old ones, immutable takes none', async (t) => {
  const e = fixture(t);
  const u = e.union();
  dir(e.upper, 'ad');
  file(e.upper, 'ad/y', 'y');
  dir(e.upper, 'ad/sub');
  file(e.upper, 'q', 'q');
  file(e.upper, 'q2', 'q2');
  await u.setFlags('/ad', u.getFlags('/ad') | FS_APPEND_FL);
  t.is(await code(async () => u.release(await u.create('/ad/new', 0o644, O_WRONLY | O_CREAT))), 'ok');
  t.is(await code(() => u.mkdir('/ad/nd', 0o755)), 'ok');
  t.is(await code(() => u.symlink('x', '/ad/sl')), 'ok');
  t.is(await code(() => u.rename('/q', '/ad/q')), 'ok', 'a new name by rename');
  t.is(await code(() => u.link('/q2', '/ad/q2')), 'ok');
  t.is(await code(() => writeAt(u, '/ad/y', 'Y')), 'ok', 'its files are not protected');
  for (const [what, f] of [
    ['unlink', () => u.unlink('/ad/y')],
    ['rmdir', () => u.rmdir('/ad/sub')],
    ['rename out', () => u.rename('/ad/new', '/new')],
    ['rename within', () => u.rename('/ad/y', '/ad/y2')],
    ['rename over', () => u.rename('/g', '/ad/y')],
  ] as [string, () => unknown][]) t.is(await code(f), 'EPERM', what);
  t.deepEqual(names(u, '/ad'), ['nd', 'new', 'q', 'q2', 'sl', 'sub', 'y']);

  // Immutable, on a lower directory (copied up for it): no new name, none removed, but its
  // children still change (a lower child is copied up into it).
  await u.setFlags('/d', u.getFlags('/d') | FS_IMMUTABLE_FL);
  t.is(protattr(path.join(e.upper, 'd')), 'i');
  for (const [what, f] of [
    ['create', async () => u.release(await u.create('/d/new', 0o644, O_WRONLY | O_CREAT))],
    ['mkdir', () => u.mkdir('/d/nd', 0o755)],
    ['mknod', () => u.mknod('/d/p', S_IFIFO | 0o644, 0)],
    ['symlink', () => u.symlink('x', '/d/sl')],
    ['link', () => u.link('/g', '/d/g')],
    ['rename in', () => u.rename('/g', '/d/g')],
    ['unlink', () => u.unlink('/d/c')],
    ['rename out', () => u.rename('/d/c', '/c')],
    ['rmdir itself', () => u.rmdir('/d')],
    ['chmod itself', () => u.chmod('/d', 0o700)],
  ] as [string, () => unknown][]) t.is(await code(f), 'EPERM', what);
  await writeAt(u, '/d/c', 'C');
  t.is(fs.readFileSync(path.join(e.upper, 'd/c'), 'utf8'), 'C\n');
  t.deepEqual(names(u, '/d'), ['c']);
});

test('a lower object whose real inode is immutable or append-only is protected, and copy-up keeps its flags', async (t) => {
  const e = env(t);
  const L = e.lowers[0]!;
  file(L, 'li', 'li\n');
  file(L, 'la', 'la\n');
  file(L, 'lA', 'lA\n');
  file(L, 'ld/x', 'x\n');
  file(L, 'id/z', 'z\n');
  const set = (rel: string, flags: number) => setRealFlags(path.join(L, rel), realFlags(path.join(L, rel)) | flags);
  set('li', FS_IMMUTABLE_FL);
  set('la', FS_APPEND_FL);
  set('lA', FS_NOATIME_FL | FS_SYNC_FL);
  set('ld', FS_APPEND_FL);
  set('id', FS_IMMUTABLE_FL);
  try {
    const u = e.union();
    const lower = guard(t, L);
    t.is(u.getFlags('/li') & FS_IMMUTABLE_FL, FS_IMMUTABLE_FL);
    t.is(await code(() => openClose(u, '/li', O_WRONLY)), 'EPERM');
    t.is(await code(() => u.unlink('/li')), 'EPERM');
    t.is(await code(() => u.chmod('/li', 0o600)), 'EPERM');
    t.is(lstatOrNull(path.join(e.upper, 'li')), null, 'nothing copied up for a refused change');
    // Append-only: appending copies up, and the copy stays append-only (protattr).
    await writeAt(u, '/la', '+', 3, O_WRONLY | O_APPEND);
    t.is(protattr(path.join(e.upper, 'la')), 'a');
    t.is(realFlags(path.join(e.upper, 'la')) & FS_APPEND_FL, 0);
    t.is(await code(() => u.truncate('/la', 0)), 'EPERM');
    // noatime and sync go onto the copy itself.
    await u.chmod('/lA', 0o600);
    t.is(realFlags(path.join(e.upper, 'lA')) & (FS_NOATIME_FL | FS_SYNC_FL), FS_NOATIME_FL | FS_SYNC_FL);
    // A directory copied up as the parent of a new name keeps its flags too.
    await u.release(await u.create('/ld/new', 0o644, O_WRONLY | O_CREAT));
    t.is(protattr(path.join(e.upper, 'ld')), 'a');
    t.is(await code(() => u.unlink('/ld/x')), 'EPERM');
    t.is(await code(() => u.unlink('/ld/new')), 'EPERM');
    // ...and as the parent of a copied-up child (the child of an immutable directory changes).
    await writeAt(u, '/id/z', 'Z');
    t.is(protattr(path.join(e.upper, 'id')), 'i');
    t.is(await code(() => u.mkdir('/id/nd', 0o755)), 'EPERM');
    lower();
  } finally {
    for (const rel of ['li', 'la', 'ld', 'id']) setRealFlags(path.join(L, rel), realFlags(path.join(L, rel)) & ~(FS_IMMUTABLE_FL | FS_APPEND_FL));
  }
});

test('protattr found in the upper is honoured (the kernel wrote it); a malformed one is ignored', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'x', 'x');
  file(e.upper, 'k', 'k');
  file(e.upper, 'bad', 'bad');
  sys.lsetxattr(path.join(e.upper, 'k'), PROTATTR, 'ai');
  sys.lsetxattr(path.join(e.upper, 'bad'), PROTATTR, 'iz');
  const u = e.union();
  t.is(u.getFlags('/k') & (FS_APPEND_FL | FS_IMMUTABLE_FL), FS_APPEND_FL | FS_IMMUTABLE_FL);
  t.is(await code(() => u.unlink('/k')), 'EPERM');
  t.is(u.getFlags('/bad') & (FS_APPEND_FL | FS_IMMUTABLE_FL), 0);
  t.is(await code(() => u.unlink('/bad')), 'ok');
});

test('a change of flags reaches every name of an upper hard link', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'x', 'x');
  file(e.upper, 'a', 'a');
  const u = e.union();
  await u.link('/a', '/b');
  await u.chmod('/b', 0o640); // /b's protection flags are now known (none)
  await u.setFlags('/a', u.getFlags('/a') | FS_IMMUTABLE_FL);
  t.is(await code(() => u.chmod('/b', 0o600)), 'EPERM');
  t.is(u.getFlags('/b') & FS_IMMUTABLE_FL, FS_IMMUTABLE_FL);
});

test('userxattr: the protection flags go into user.overlay.protattr', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'f', 'f');
  const u = e.union({ userxattr: true });
  await u.setFlags('/f', u.getFlags('/f') | FS_IMMUTABLE_FL);
  t.is(protattr(path.join(e.upper, 'f'), 'user.overlay.protattr'), 'i');
  t.is(protattr(path.join(e.upper, 'f')), null);
  t.false(u.listxattr('/f').includes('user.overlay.protattr'));
  t.is(await code(() => u.unlink('/f')), 'EPERM');
});

test('a read-only union reads flags and refuses to set them (EROFS)', async (t) => {
  const e = env(t, 2);
  file(e.lowers[0]!, 'f', 'f');
  file(e.lowers[1]!, 'g', 'g');
  const u = e.union({ readonly: true });
  t.is(u.getFlags('/f'), realFlags(path.join(e.lowers[0]!, 'f')));
  t.is(await code(() => u.setFlags('/f', FS_NOATIME_FL)), 'EROFS');
  t.is(await code(() => u.setFsxattr('/g', { xflags: 0, extsize: 0, nextents: 0, projid: 0, cowextsize: 0 })), 'EROFS');
});
