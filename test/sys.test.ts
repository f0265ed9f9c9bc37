// src/sys, the syscalls Node's fs lacks: mknod / makedev, xattrs.
// What these tests share: _sys.ts.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { lgetxattr, llistxattr, lremovexattr, lsetxattr, makedev, mknod, XATTR_CREATE, XATTR_REPLACE } from '../src/sys/index.ts';
import { S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, S_IFREG, tmpDir, expectSysError, mountTest, mountTmpfs } from './_sys.ts';

// --- mknod / makedev --------------------------------------------------------

test('makedev uses the glibc encoding', (t) => {
  t.is(makedev(0, 0), 0n);
  t.is(makedev(1, 3), 0x103n);
  t.is(makedev(8, 17), 0x811n);
  // major bits 12+ go to 44.., minor bits 8+ go to 20..
  t.is(makedev(0x12345, 0x6789a), 0x120006783459an);
  t.is(makedev(0xffffffff, 0xffffffff), 0xffffffffffffffffn);
  t.throws(() => makedev(-1, 0), { instanceOf: RangeError });
  const devNull = fs.statSync('/dev/null');
  if (devNull.isCharacterDevice()) t.is(BigInt(devNull.rdev), makedev(1, 3));
});

test('mknod creates a 0/0 character device (whiteout)', (t) => {
  const p = path.join(tmpDir(t), 'wh');
  mknod(p, S_IFCHR | 0o600, makedev(0, 0));
  const st = fs.lstatSync(p);
  t.true(st.isCharacterDevice());
  t.is(st.rdev, 0);
  t.is(st.mode & 0o7777, 0o600);
});

test('mknod creates char and block devices with the given numbers', (t) => {
  const dir = tmpDir(t);
  mknod(path.join(dir, 'null'), S_IFCHR | 0o600, makedev(1, 3));
  const c = fs.lstatSync(path.join(dir, 'null'));
  t.true(c.isCharacterDevice());
  t.is(c.rdev, 0x103);
  mknod(path.join(dir, 'blk'), S_IFBLK | 0o600, Number(makedev(259, 70000)));
  const b = fs.lstatSync(path.join(dir, 'blk'), { bigint: true });
  t.true(b.isBlockDevice());
  t.is(b.rdev, makedev(259, 70000));
});

test('mknod creates fifos, sockets and regular files', (t) => {
  const dir = tmpDir(t);
  mknod(path.join(dir, 'fifo'), S_IFIFO | 0o600, 0);
  mknod(path.join(dir, 'sock'), S_IFSOCK | 0o600, 0n);
  mknod(path.join(dir, 'reg'), S_IFREG | 0o600, 0);
  t.true(fs.lstatSync(path.join(dir, 'fifo')).isFIFO());
  t.true(fs.lstatSync(path.join(dir, 'sock')).isSocket());
  const reg = fs.lstatSync(path.join(dir, 'reg'));
  t.true(reg.isFile());
  t.is(reg.size, 0);
});

test('mknod accepts raw (non-UTF-8) Buffer paths', (t) => {
  const dir = tmpDir(t);
  const name = Buffer.from([0x66, 0xff, 0xfe, 0x80]);
  mknod(Buffer.concat([Buffer.from(dir + '/'), name]), S_IFIFO | 0o600, 0);
  const entries = fs.readdirSync(dir, { encoding: 'buffer' });
  t.is(entries.length, 1);
  t.deepEqual(entries[0], name);
});

test('mknod errors look like fs errors', (t) => {
  const dir = tmpDir(t);
  const p = path.join(dir, 'x');
  fs.writeFileSync(p, '');
  const err = expectSysError(t, () => mknod(p, S_IFIFO | 0o600, 0), 'EEXIST', 'mknod');
  t.is(err.errno, -17);
  t.is(err.path, p);
  t.is(err.message, `EEXIST: file already exists, mknod '${p}'`);
  t.true(err instanceof Error);
  const missing = path.join(dir, 'no', 'such');
  t.is(expectSysError(t, () => mknod(missing, S_IFIFO | 0o600, 0), 'ENOENT', 'mknod').errno, -2);
});

test('paths with NUL bytes are rejected before the syscall', (t) => {
  t.throws(() => mknod('/tmp/a\0b', S_IFIFO | 0o600, 0), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => lgetxattr('/tmp', 'user.a\0b'), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' });
});

// --- xattrs -----------------------------------------------------------------

test('trusted.overlay.opaque: set, get, list, remove', (t) => {
  const d = path.join(tmpDir(t), 'd');
  fs.mkdirSync(d);
  t.is(lgetxattr(d, 'trusted.overlay.opaque'), null);
  t.false(llistxattr(d).includes('trusted.overlay.opaque'));

  lsetxattr(d, 'trusted.overlay.opaque', 'y');
  t.deepEqual(lgetxattr(d, 'trusted.overlay.opaque'), Buffer.from('y'));
  t.true(llistxattr(d).includes('trusted.overlay.opaque'));

  lremovexattr(d, 'trusted.overlay.opaque');
  t.is(lgetxattr(d, 'trusted.overlay.opaque'), null);
  t.false(llistxattr(d).includes('trusted.overlay.opaque'));
  expectSysError(t, () => lremovexattr(d, 'trusted.overlay.opaque'), 'ENODATA', 'lremovexattr');
});

test('llistxattr lists every attribute, and [] when there are none', (t) => {
  const f = path.join(tmpDir(t), 'f');
  fs.writeFileSync(f, '');
  t.deepEqual(llistxattr(f), []);
  const names = Array.from({ length: 40 }, (_, i) => `user.attribute-with-a-rather-long-name-${i}`);
  for (const n of names) lsetxattr(f, n, n);
  lsetxattr(f, 'trusted.overlay.origin', Buffer.alloc(0));
  t.deepEqual(llistxattr(f).sort(), [...names, 'trusted.overlay.origin'].sort());
  for (const n of names) t.is(lgetxattr(f, n)?.toString(), n);
});

test('xattr values round-trip byte-exact (empty, binary, 3 KiB)', (t) => {
  const f = path.join(tmpDir(t), 'f');
  fs.writeFileSync(f, '');
  lsetxattr(f, 'trusted.empty', Buffer.alloc(0));
  const empty = lgetxattr(f, 'trusted.empty');
  t.true(Buffer.isBuffer(empty));
  t.is(empty?.length, 0);

  const bin = Buffer.from([0, 1, 0xff, 0, 0x80]);
  lsetxattr(f, 'trusted.bin', bin);
  t.deepEqual(lgetxattr(f, 'trusted.bin'), bin);

  // without the ea_inode feature ext4 keeps all of an inode's xattrs in one 4 KiB block
  const big = randomBytes(3 * 1024);
  lsetxattr(f, 'user.big', big);
  t.deepEqual(lgetxattr(f, 'user.big'), big);

  // shrink: the old length must not leak through
  lsetxattr(f, 'user.big', 'ab');
  t.deepEqual(lgetxattr(f, 'user.big'), Buffer.from('ab'));
});

mountTest('large xattr values (10 KiB .. 64 KiB) round-trip on tmpfs', (t) => {
  const f = path.join(mountTmpfs(t), 'f');
  fs.writeFileSync(f, '');
  const v10k = randomBytes(10 * 1024);
  lsetxattr(f, 'trusted.overlay.big', v10k);
  t.deepEqual(lgetxattr(f, 'trusted.overlay.big'), v10k);
  const vmax = randomBytes(65536); // XATTR_SIZE_MAX
  lsetxattr(f, 'trusted.overlay.max', vmax);
  t.deepEqual(lgetxattr(f, 'trusted.overlay.max'), vmax);
  expectSysError(t, () => lsetxattr(f, 'trusted.overlay.toobig', Buffer.alloc(65537)), 'E2BIG', 'lsetxattr');
  t.deepEqual(llistxattr(f).sort(), ['trusted.overlay.big', 'trusted.overlay.max']);
});

test('lsetxattr honours XATTR_CREATE and XATTR_REPLACE', (t) => {
  const f = path.join(tmpDir(t), 'f');
  fs.writeFileSync(f, '');
  expectSysError(t, () => lsetxattr(f, 'user.a', '1', XATTR_REPLACE), 'ENODATA', 'lsetxattr');
  lsetxattr(f, 'user.a', '1', XATTR_CREATE);
  expectSysError(t, () => lsetxattr(f, 'user.a', '2', XATTR_CREATE), 'EEXIST', 'lsetxattr');
  t.is(lgetxattr(f, 'user.a')?.toString(), '1');
  lsetxattr(f, 'user.a', '3', XATTR_REPLACE);
  t.is(lgetxattr(f, 'user.a')?.toString(), '3');
});

test('xattr calls act on the symlink itself, never its target', (t) => {
  const dir = tmpDir(t);
  const target = path.join(dir, 'target');
  const link = path.join(dir, 'link');
  fs.writeFileSync(target, '');
  fs.symlinkSync('target', link);

  // Linux forbids user.* xattrs on symlinks
  const err = expectSysError(t, () => lsetxattr(link, 'user.x', '1'), 'EPERM', 'lsetxattr');
  t.is(err.path, link);
  t.is(lgetxattr(target, 'user.x'), null);

  lsetxattr(link, 'trusted.overlay.redirect', '/elsewhere');
  t.is(lgetxattr(link, 'trusted.overlay.redirect')?.toString(), '/elsewhere');
  t.true(llistxattr(link).includes('trusted.overlay.redirect'));
  t.is(lgetxattr(target, 'trusted.overlay.redirect'), null);
  t.false(llistxattr(target).includes('trusted.overlay.redirect'));
  lremovexattr(link, 'trusted.overlay.redirect');
  t.is(lgetxattr(link, 'trusted.overlay.redirect'), null);
});

test('xattr functions on a missing path throw ENOENT with path', (t) => {
  const p = path.join(tmpDir(t), 'missing');
  const e1 = expectSysError(t, () => lgetxattr(p, 'user.a'), 'ENOENT', 'lgetxattr');
  t.is(e1.path, p);
  t.is(e1.message, `ENOENT: no such file or directory, lgetxattr '${p}'`);
  expectSysError(t, () => llistxattr(p), 'ENOENT', 'llistxattr');
  expectSysError(t, () => lsetxattr(p, 'user.a', ''), 'ENOENT', 'lsetxattr');
  expectSysError(t, () => lremovexattr(p, 'user.a'), 'ENOENT', 'lremovexattr');
});

test('xattrs work with raw Buffer paths', (t) => {
  const dir = tmpDir(t);
  const p = Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0xc3, 0x28])]); // invalid UTF-8
  mknod(p, S_IFREG | 0o600, 0);
  lsetxattr(p, 'trusted.overlay.opaque', 'y');
  t.deepEqual(lgetxattr(p, 'trusted.overlay.opaque'), Buffer.from('y'));
  t.deepEqual(llistxattr(p), ['trusted.overlay.opaque']);
});
