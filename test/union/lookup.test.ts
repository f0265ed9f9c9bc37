// Lookup rules and getattr: which layer serves a union path.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { InodeMapper } from '../../src/union/inode.ts';
import { checkPath } from '../../src/union/layer.ts';
import {
  GID, O_RDONLY, UID, dir, env, file, fifo, names, ns, ociOpaque, ociWhiteout, opaque, readAll, symlink, whiteout,
} from './_helpers.ts';

test('upper shadows lower: content and attributes come from the upper', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'f', 'lower', { mode: 0o600, uid: UID, gid: GID });
  file(e.upper, 'f', 'upper!', { mode: 0o640, timeNs: ns(1_000_000, 5) });
  const u = e.union();
  const ent = u.lookup('/f');
  t.is(ent?.layer, 0);
  t.is(ent?.type, 'file');
  t.is(await readAll(u, '/f'), 'upper!');
  const a = u.getattr('/f');
  const st = fs.lstatSync(path.join(e.upper, 'f'), { bigint: true });
  t.is(a.mode, fs.constants.S_IFREG | 0o640);
  t.is(a.uid, 0);
  t.is(a.size, 6);
  t.is(a.ino, st.ino);
  t.is(a.mtimeNs, ns(1_000_000, 5));
});

test('a higher lower shadows a lower one', async (t) => {
  const e = env(t, 2);
  file(e.lowers[0]!, 'f', 'top');
  file(e.lowers[1]!, 'f', 'bottom');
  file(e.lowers[1]!, 'g', 'only-bottom');
  const u = e.union();
  t.is(u.lookup('/f')?.layer, 1);
  t.is(await readAll(u, '/f'), 'top');
  t.is(u.lookup('/g')?.layer, 2);
  t.is(await readAll(u, '/g'), 'only-bottom');
});

test('a file in a higher layer hides a directory below it (and what is in it)', (t) => {
  const e = env(t, 2);
  file(e.upper, 'a', 'file in upper');
  file(e.lowers[0]!, 'a/x', 'in lower dir');
  file(e.lowers[0]!, 'b', 'file in lower0');
  file(e.lowers[1]!, 'b/y', 'in lower1 dir');
  const u = e.union();
  t.is(u.lookup('/a')?.type, 'file');
  t.is(u.lookup('/b')?.type, 'file');
  t.is(u.lookup('/b')?.layer, 1);
  t.throws(() => u.lookup('/a/x'), { code: 'ENOTDIR' });
  t.throws(() => u.getattr('/b/y'), { code: 'ENOTDIR' });
  t.throws(() => u.readdir('/b'), { code: 'ENOTDIR' });
  t.deepEqual(names(u, '/'), ['a', 'b']);
});

test('a directory hides a non-directory below it, and the merge stops there', (t) => {
  const e = env(t, 2);
  file(e.upper, 'd/u', 'u');
  file(e.lowers[0]!, 'd', 'file in lower0');
  file(e.lowers[1]!, 'd/l1', 'below the file');
  dir(e.lowers[0]!, 'e');
  file(e.lowers[0]!, 'e/l0');
  symlink(e.lowers[1]!, 'e', 'elsewhere');
  const u = e.union();
  const d = u.lookup('/d');
  t.is(d?.type, 'dir');
  t.deepEqual(d?.dirLayers, [0]);
  t.deepEqual(names(u, '/d'), ['u']);
  t.is(u.lookup('/d/l1'), null);
  const ed = u.lookup('/e');
  t.is(ed?.type, 'dir');
  t.deepEqual(ed?.dirLayers, [1]);
  t.deepEqual(names(u, '/e'), ['l0']);
});

test('kernel-format whiteouts in the upper hide files and whole directories', (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'f', 'x');
  file(e.lowers[0]!, 'd/sub/deep', 'x');
  file(e.lowers[0]!, 'keep', 'x');
  whiteout(e.upper, 'f');
  whiteout(e.upper, 'd');
  const u = e.union();
  t.is(u.lookup('/f'), null);
  t.is(u.lookup('/d'), null);
  t.is(u.lookup('/d/sub/deep'), null);
  t.throws(() => u.getattr('/f'), { code: 'ENOENT' });
  t.throws(() => u.getattr('/d/sub'), { code: 'ENOENT' });
  t.deepEqual(names(u, '/'), ['keep']);
});

test('kernel-format whiteouts in a lower hide the layers below it', (t) => {
  const e = env(t, 2);
  whiteout(e.lowers[0]!, 'f');
  whiteout(e.lowers[0]!, 'd/gone');
  file(e.lowers[0]!, 'd/here');
  file(e.lowers[1]!, 'f');
  file(e.lowers[1]!, 'd/gone/x');
  const u = e.union();
  t.is(u.lookup('/f'), null);
  t.is(u.lookup('/d/gone'), null);
  t.is(u.lookup('/d/gone/x'), null);
  t.deepEqual(names(u, '/d'), ['here']);
});

test('OCI-format whiteouts in a lower hide files and whole directories below', (t) => {
  const e = env(t, 2);
  ociWhiteout(e.lowers[0]!, 'f');
  ociWhiteout(e.lowers[0]!, 'd');
  file(e.lowers[0]!, 'keep');
  file(e.lowers[1]!, 'f', 'hidden');
  file(e.lowers[1]!, 'd/x', 'hidden');
  file(e.lowers[1]!, 'other', 'shown');
  const u = e.union();
  t.is(u.lookup('/f'), null);
  t.is(u.lookup('/d'), null);
  t.is(u.lookup('/d/x'), null);
  t.deepEqual(names(u, '/'), ['keep', 'other']);
});

test('a whiteout in a lower beneath an upper directory ends the merge', (t) => {
  const e = env(t, 2);
  file(e.upper, 'd/u');
  whiteout(e.lowers[0]!, 'd');
  file(e.lowers[1]!, 'd/l1');
  ociWhiteout(e.lowers[0]!, 'o');
  file(e.upper, 'o/u');
  file(e.lowers[1]!, 'o/l1');
  const u = e.union();
  t.deepEqual(u.lookup('/d')?.dirLayers, [0]);
  t.deepEqual(names(u, '/d'), ['u']);
  t.is(u.lookup('/d/l1'), null);
  t.deepEqual(u.lookup('/o')?.dirLayers, [0]);
  t.deepEqual(names(u, '/o'), ['u']);
});

test('an opaque upper directory (kernel xattr) stops the merge', (t) => {
  const e = env(t);
  opaque(e.upper, 'd');
  file(e.upper, 'd/a');
  file(e.lowers[0]!, 'd/b');
  file(e.lowers[0]!, 'd/sub/c');
  const u = e.union();
  t.deepEqual(u.lookup('/d')?.dirLayers, [0]);
  t.is(u.lookup('/d/b'), null);
  t.is(u.lookup('/d/sub/c'), null);
  t.deepEqual(names(u, '/d'), ['a']);
});

test('opaque directories in a lower, kernel and OCI format, stop the merge', (t) => {
  const e = env(t, 2);
  opaque(e.lowers[0]!, 'k');
  file(e.lowers[0]!, 'k/top');
  file(e.lowers[1]!, 'k/below');
  ociOpaque(e.lowers[0]!, 'o');
  file(e.lowers[0]!, 'o/top');
  file(e.lowers[1]!, 'o/below');
  file(e.upper, 'o/up');
  const u = e.union();
  t.deepEqual(u.lookup('/k')?.dirLayers, [1]);
  t.is(u.lookup('/k/below'), null);
  t.deepEqual(names(u, '/k'), ['top']);
  t.deepEqual(u.lookup('/o')?.dirLayers, [0, 1]);
  t.is(u.lookup('/o/below'), null);
  t.is(u.lookup('/o/.wh..wh..opq'), null);
  t.deepEqual(names(u, '/o'), ['top', 'up']);
});

test('three lowers and the upper merge, top-most wins per name', async (t) => {
  const e = env(t, 3);
  file(e.upper, 'd/u', 'u');
  file(e.lowers[0]!, 'd/a', 'a0');
  file(e.lowers[0]!, 'd/same', 'from lower0');
  file(e.lowers[1]!, 'd/b', 'b1');
  file(e.lowers[1]!, 'd/same', 'from lower1');
  file(e.lowers[1]!, 'd/sub/one', '1');
  file(e.lowers[2]!, 'd/c', 'c2');
  file(e.lowers[2]!, 'd/same', 'from lower2');
  file(e.lowers[2]!, 'd/sub/two', '2');
  const u = e.union();
  t.deepEqual(u.lookup('/d')?.dirLayers, [0, 1, 2, 3]);
  t.deepEqual(names(u, '/d'), ['a', 'b', 'c', 'same', 'sub', 'u']);
  t.is(await readAll(u, '/d/same'), 'from lower0');
  t.is(await readAll(u, '/d/c'), 'c2');
  t.deepEqual(u.lookup('/d/sub')?.dirLayers, [2, 3]);
  t.deepEqual(names(u, '/d/sub'), ['one', 'two']);
});

test('.wh.* names are never visible, whatever layer holds them', (t) => {
  const e = env(t);
  file(e.upper, '.wh.up', 'not a marker in the upper, but never shown');
  file(e.lowers[0]!, '.wh..wh..opq');
  file(e.lowers[0]!, '.wh.gone');
  dir(e.lowers[0]!, '.wh.dir');
  file(e.lowers[0]!, 'f');
  const u = e.union();
  for (const p of ['/.wh.up', '/.wh..wh..opq', '/.wh.gone', '/.wh.dir']) {
    t.is(u.lookup(p), null, p);
    t.throws(() => u.getattr(p), { code: 'ENOENT' }, p);
  }
  t.deepEqual(names(u, '/'), ['f']);
});

test('walking through a non-directory gives ENOTDIR; a missing parent gives ENOENT', (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'f');
  symlink(e.lowers[0]!, 'l', 'd');
  dir(e.lowers[0]!, 'd');
  fifo(e.upper, 'p');
  const u = e.union();
  t.throws(() => u.lookup('/f/x'), { code: 'ENOTDIR' });
  t.throws(() => u.getattr('/f/x/y'), { code: 'ENOTDIR' });
  t.throws(() => u.getattr('/l/x'), { code: 'ENOTDIR' });
  t.throws(() => u.getattr('/p/x'), { code: 'ENOTDIR' });
  t.is(u.lookup('/missing/x'), null);
  t.throws(() => u.getattr('/missing/x'), { code: 'ENOENT' });
  t.throws(() => u.getattr('/d/missing'), { code: 'ENOENT' });
});

test('getattr reports the attributes of the serving layer', (t) => {
  const e = env(t, 2);
  file(e.lowers[0]!, 'f', 'hello', { mode: 0o4750, uid: UID, gid: GID, timeNs: ns(1_600_000_000, 123_456_789) });
  file(e.lowers[1]!, 'f', 'longer content below');
  symlink(e.lowers[1]!, 'l', 'some/target', { uid: UID, gid: GID });
  fifo(e.lowers[1]!, 'p', { mode: 0o600 });
  const u = e.union();
  const a = u.getattr('/f');
  const st = fs.lstatSync(path.join(e.lowers[0]!, 'f'), { bigint: true });
  t.is(a.mode, fs.constants.S_IFREG | 0o4750);
  t.is(a.uid, UID);
  t.is(a.gid, GID);
  t.is(a.size, 5);
  t.is(a.nlink, 1);
  t.is(a.ino, st.ino);
  t.is(a.mtimeNs, ns(1_600_000_000, 123_456_789));
  t.is(a.ctimeNs, st.ctimeNs);
  const l = u.getattr('/l');
  t.is(l.mode & fs.constants.S_IFMT, fs.constants.S_IFLNK);
  t.is(l.size, 'some/target'.length);
  t.is(l.uid, UID);
  t.is(u.readlink('/l').toString(), 'some/target');
  t.throws(() => u.readlink('/f'), { code: 'EINVAL' });
  t.is(u.getattr('/p').mode, fs.constants.S_IFIFO | 0o600);
});

test('merged directories report nlink 1; unmerged ones their real count', (t) => {
  const e = env(t, 2);
  dir(e.upper, 'merged/s1');
  dir(e.lowers[0]!, 'merged/s2');
  dir(e.lowers[0]!, 'lowers/s1');
  dir(e.lowers[1]!, 'lowers/s2');
  dir(e.upper, 'uponly/s1');
  dir(e.upper, 'uponly/s2');
  dir(e.lowers[1]!, 'lowonly/s1');
  opaque(e.upper, 'opq');
  dir(e.upper, 'opq/s1');
  dir(e.lowers[0]!, 'opq/s2');
  const u = e.union();
  t.is(u.getattr('/merged').nlink, 1);
  t.is(u.getattr('/lowers').nlink, 1);
  t.is(u.getattr('/').nlink, 1);
  t.is(u.getattr('/uponly').nlink, 4);
  t.is(u.getattr('/lowonly').nlink, 3);
  t.is(u.getattr('/opq').nlink, 3);
  t.is(u.getattr('/merged').mode & 0o7777, fs.lstatSync(path.join(e.upper, 'merged')).mode & 0o7777);
});

test('checkPath rejects ., .., empty components and relative paths', (t) => {
  t.is(checkPath('/'), '/');
  t.is(checkPath('/a/b'), '/a/b');
  t.is(checkPath('/...'), '/...');
  t.is(checkPath('/.a/..b'), '/.a/..b');
  for (const bad of ['', 'a', 'a/b', '//', '/a//b', '/a/', '/.', '/..', '/a/.', '/a/..', '/a/../b', '/./a', '/a\0b']) {
    t.throws(() => checkPath(bad), { code: 'EINVAL' }, JSON.stringify(bad));
  }
  t.throws(() => checkPath('/' + 'x'.repeat(256)), { code: 'ENAMETOOLONG' });
});

test('every operation validates its path', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'f');
  const u = e.union();
  const bad = '/f/..';
  t.throws(() => u.lookup(bad), { code: 'EINVAL' });
  t.throws(() => u.getattr('/../etc'), { code: 'EINVAL' });
  t.throws(() => u.readdir('/./'), { code: 'EINVAL' });
  t.throws(() => u.readlink('//f'), { code: 'EINVAL' });
  t.throws(() => u.getxattr(bad, 'user.x'), { code: 'EINVAL' });
  t.throws(() => u.listxattr(bad), { code: 'EINVAL' });
  await t.throwsAsync(u.open('/../f', O_RDONLY), { code: 'EINVAL' });
  await t.throwsAsync(u.create('/a/../g', 0o644, 0), { code: 'EINVAL' });
  await t.throwsAsync(u.mkdir('/x/.', 0o755), { code: 'EINVAL' });
  await t.throwsAsync(u.symlink('t', '/x/../y'), { code: 'EINVAL' });
  await t.throwsAsync(u.mknod('/..', fs.constants.S_IFIFO | 0o644, 0), { code: 'EINVAL' });
  await t.throwsAsync(u.link('/f', '/../g'), { code: 'EINVAL' });
  await t.throwsAsync(u.unlink('/./f'), { code: 'EINVAL' });
  await t.throwsAsync(u.rmdir('/..'), { code: 'EINVAL' });
  await t.throwsAsync(u.rename('/f', '/../f'), { code: 'EINVAL' });
  await t.throwsAsync(u.rename('/../f', '/g'), { code: 'EINVAL' });
  await t.throwsAsync(u.truncate('/../f', 0), { code: 'EINVAL' });
  await t.throwsAsync(u.chmod('/../f', 0o777), { code: 'EINVAL' });
  await t.throwsAsync(u.chown('/../f', 0, 0), { code: 'EINVAL' });
  await t.throwsAsync(u.utimens('/../f', 'now', 'now'), { code: 'EINVAL' });
  await t.throwsAsync(u.setxattr('/../f', 'user.x', Buffer.from('v'), 0), { code: 'EINVAL' });
  await t.throwsAsync(u.removexattr('/../f', 'user.x'), { code: 'EINVAL' });
  t.deepEqual(fs.readdirSync(e.upper), []);
});

test('userxattr: opaque directories are marked and read with user.overlay.opaque', async (t) => {
  const e = env(t);
  dir(e.upper, 'k');
  sys.lsetxattr(path.join(e.upper, 'k'), 'trusted.overlay.opaque', 'y'); // not the marker under userxattr
  file(e.lowers[0]!, 'k/l');
  dir(e.upper, 'o');
  sys.lsetxattr(path.join(e.upper, 'o'), 'user.overlay.opaque', 'y');
  file(e.lowers[0]!, 'o/l');
  file(e.lowers[0]!, 'w/x');
  const u = e.union({ userxattr: true });
  t.deepEqual(names(u, '/k'), ['l']);
  t.deepEqual(names(u, '/o'), []);
  t.deepEqual(u.listxattr('/o'), []);
  t.throws(() => u.getxattr('/o', 'user.overlay.opaque'), { code: 'EOPNOTSUPP' });
  await u.unlink('/w/x');
  await u.rmdir('/w');
  await u.mkdir('/w', 0o755);
  t.is(sys.lgetxattr(path.join(e.upper, 'w'), 'user.overlay.opaque')?.toString(), 'y');
  t.is(sys.lgetxattr(path.join(e.upper, 'w'), 'trusted.overlay.opaque'), null);
  t.deepEqual(names(u, '/w'), []);
});

test('inode numbers: the serving object’s own on one filesystem, kept by rename, shared by hard links', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'l', 'x');
  file(e.upper, 'a', 'a');
  const u = e.union();
  t.is(u.getattr('/l').ino, BigInt(fs.lstatSync(path.join(e.lowers[0]!, 'l')).ino));
  const ino = u.getattr('/a').ino;
  await u.rename('/a', '/b');
  t.is(u.getattr('/b').ino, ino);
  await u.link('/b', '/c');
  t.is(u.getattr('/c').ino, ino);
  // Layers on different filesystems: the layer index goes into the high bits.
  const m = new InodeMapper([1n, 2n]);
  const st = fs.lstatSync(path.join(e.upper, 'b'), { bigint: true });
  t.not(m.ino(0, st), m.ino(1, st));
  t.is(new InodeMapper([5n, 5n]).ino(1, st), st.ino);
});

test('a lower on a filesystem without xattr support (ramfs) merges normally', async (t) => {
  const e = env(t);
  try {
    execFileSync('mount', ['-t', 'ramfs', 'layerfs-test', e.lowers[0]!], { stdio: 'ignore' });
  } catch {
    t.pass('cannot mount ramfs here: skipped');
    return;
  }
  t.teardown(() => sys.umount2(e.lowers[0]!, sys.MNT_DETACH)); // teardowns run last-in first-out
  file(e.lowers[0]!, 'd/f', 'on ramfs');
  file(e.upper, 'd/u', 'up');
  const u = e.union();
  t.deepEqual(names(u, '/d'), ['f', 'u']);
  t.is(await readAll(u, '/d/f'), 'on ramfs');
  await u.chmod('/d/f', 0o600);
  t.is(fs.readFileSync(path.join(e.upper, 'd/f'), 'utf8'), 'on ramfs');
  await u.unlink('/d/f');
  await u.unlink('/d/u');
  await u.rmdir('/d');
  await u.mkdir('/d', 0o755);
  t.deepEqual(names(u, '/d'), []);
});

// ------------------------------------------------------------------ the lower directory index

test('index: a name in the bottom of 128 layers, whiteouts and opaque dirs in between, all as without it', (t) => {
  const e = env(t, 128);
  const L = e.lowers;
  dir(L[0]!, 'd');
  for (let i = 0; i < 128; i++) file(L[i]!, `d/x${i}`, String(i));
  file(L[127]!, 'd/bottom', 'b');
  file(L[127]!, 'd/hidden-oci', 'h');
  ociWhiteout(L[60]!, 'd/hidden-oci');
  file(L[127]!, 'd/hidden-kernel', 'h');
  whiteout(L[90]!, 'd/hidden-kernel');
  // a name beside its own OCI whiteout in one layer: the name wins in that layer, hides below
  file(L[10]!, 'd/both', 'top');
  ociWhiteout(L[10]!, 'd/both');
  file(L[20]!, 'd/both', 'below');
  // a directory merged through layers 5..127, made opaque in 40
  for (let i = 5; i < 128; i++) file(L[i]!, `d/sub/f${i}`, '');
  ociOpaque(L[40]!, 'd/sub');
  const u = e.union();
  t.is(u.lookup('/d/bottom')?.layer, 128);
  t.is(u.lookup('/d/x77')?.layer, 78);
  t.is(u.lookup('/d/hidden-oci'), null);
  t.is(u.lookup('/d/hidden-kernel'), null);
  t.is(u.lookup('/d/both')?.layer, 11);
  t.is(u.lookup('/d/nothing'), null);
  const sub = u.lookup('/d/sub');
  t.deepEqual(sub?.dirLayers, Array.from({ length: 36 }, (_, i) => i + 6));
  t.is(u.lookup('/d/sub/f41'), null);
  t.is(u.lookup('/d/sub/f40')?.layer, 41);
  t.deepEqual(names(u, '/d/sub'), Array.from({ length: 36 }, (_, i) => `f${i + 5}`).sort());
});

test('index: the upper is never indexed, so names created, removed and re-created through the union are seen at once', async (t) => {
  const e = env(t, 2);
  file(e.lowers[1]!, 'd/a', 'lower');
  const u = e.union();
  t.is(u.lookup('/d/a')?.layer, 2); // the lower listing of /d is indexed now
  t.is(u.lookup('/d/new'), null);
  await u.unlink('/d/a');
  t.is(u.lookup('/d/a'), null);
  const fh = await u.create('/d/a', 0o644, O_RDONLY);
  await u.release(fh);
  t.is(u.lookup('/d/a')?.layer, 0);
});

test('index: a lower name removed underneath a live union is skipped, not served stale', (t) => {
  const e = env(t, 2);
  file(e.lowers[0]!, 'd/f', 'top');
  file(e.lowers[1]!, 'd/f', 'bottom');
  file(e.lowers[1]!, 'd/g', 'g');
  const u = e.union();
  t.is(u.lookup('/d/g')?.layer, 2); // indexes /d
  fs.rmSync(path.join(e.lowers[0]!, 'd/f'));
  t.is(u.lookup('/d/f')?.layer, 2);
  fs.rmSync(path.join(e.lowers[1]!, 'd/f'));
  u.resolver.invalidate('/d/f');
  t.is(u.lookup('/d/f'), null);
});
