// Namespace changes: create, mkdir, symlink, mknod, link, unlink, rmdir, rename.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import {
  GID, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, S_IFCHR, S_IFIFO, UID, assertWorkEmpty, dir, env, file,
  guard, isOpaque, isWhiteout, ls, lstatOrNull, names, readAll, symlink, whiteout, writeAt,
} from './_helpers.ts';

// ------------------------------------------------------------------ creating

test('create in a lower-only directory copies the parents up and makes the file in the upper', async (t) => {
  const e = env(t);
  dir(e.lowers[0]!, 'a', { mode: 0o750, uid: UID, gid: GID });
  file(e.lowers[0]!, 'a/b/old', 'old');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  const fd = await u.create('/a/b/new', 0o640, O_RDWR | O_CREAT, { uid: 7, gid: 8 });
  await u.write(fd, Buffer.from('hello'), 5, 0);
  u.release(fd);
  const st = fs.lstatSync(path.join(e.upper, 'a/b/new'));
  t.true(st.isFile());
  t.is(st.mode & 0o7777, 0o640);
  t.is(st.uid, 7);
  t.is(st.gid, 8);
  t.is(fs.readFileSync(path.join(e.upper, 'a/b/new'), 'utf8'), 'hello');
  const a = fs.lstatSync(path.join(e.upper, 'a'));
  t.is(a.mode & 0o7777, 0o750, 'parent copied up with its metadata');
  t.is(a.uid, UID);
  t.deepEqual(ls(path.join(e.upper, 'a/b')), ['new']);
  t.deepEqual(names(u, '/a/b'), ['new', 'old']);
  await t.throwsAsync(u.create('/a/b/new', 0o600, O_RDWR | O_CREAT | O_EXCL), { code: 'EEXIST' });
  await t.throwsAsync(u.create('/a/b/old', 0o600, O_RDWR | O_CREAT | O_EXCL), { code: 'EEXIST' });
  // Without O_EXCL an existing file is opened (and copied up when opened for write).
  const fd2 = await u.create('/a/b/old', 0o600, O_RDONLY | O_CREAT);
  u.release(fd2);
  t.is(lstatOrNull(path.join(e.upper, 'a/b/old')), null);
  const fd3 = await u.create('/a/b/old', 0o600, O_WRONLY | O_CREAT | O_TRUNC);
  u.release(fd3);
  t.is(fs.readFileSync(path.join(e.upper, 'a/b/old'), 'utf8'), '');
  assertWorkEmpty(t, e);
  check();
});

test('mkdir, symlink, mknod (fifo) and link in lower-only directories', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'src/f', 'linked', { uid: UID });
  dir(e.lowers[0]!, 'm/n');
  dir(e.lowers[0]!, 's/t');
  dir(e.lowers[0]!, 'p/q');
  dir(e.lowers[0]!, 'l/k');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.mkdir('/m/n/dir', 0o711, { uid: 3, gid: 4 });
  await u.symlink('../some/where', '/s/t/link');
  await u.mknod('/p/q/fifo', S_IFIFO | 0o620, 0);
  await u.link('/src/f', '/l/k/hard');
  const d = fs.lstatSync(path.join(e.upper, 'm/n/dir'));
  t.true(d.isDirectory());
  t.is(d.mode & 0o7777, 0o711);
  t.is(d.uid, 3);
  t.false(isOpaque(path.join(e.upper, 'm/n/dir')), 'nothing to hide: not opaque');
  t.is(fs.readlinkSync(path.join(e.upper, 's/t/link')), '../some/where');
  t.is(u.readlink('/s/t/link').toString(), '../some/where');
  const p = fs.lstatSync(path.join(e.upper, 'p/q/fifo'));
  t.true(p.isFIFO());
  t.is(p.mode & 0o7777, 0o620);
  const h = fs.lstatSync(path.join(e.upper, 'l/k/hard'));
  t.is(h.ino, fs.lstatSync(path.join(e.upper, 'src/f')).ino, 'the link shares the copied-up inode');
  t.is(h.uid, UID, 'a hard link keeps the owner of its inode');
  t.is(u.getattr('/l/k/hard').nlink, 2);
  t.is(u.getattr('/src/f').nlink, 2);
  t.is(await readAll(u, '/l/k/hard'), 'linked');
  await writeAt(u, '/l/k/hard', 'LINKED');
  t.is(await readAll(u, '/src/f'), 'LINKED');
  for (const [p2, st] of [['m/n', 'dir'], ['s/t', 'link'], ['p/q', 'fifo'], ['l/k', 'hard']] as const) {
    t.deepEqual(ls(path.join(e.upper, p2)), [st]);
  }
  assertWorkEmpty(t, e);
  check();
});

test('creating over an existing name gives EEXIST, wherever the name lives', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'low');
  dir(e.lowers[0]!, 'lowdir');
  file(e.upper, 'up');
  const u = e.union();
  for (const p of ['/low', '/lowdir', '/up']) {
    await t.throwsAsync(u.mkdir(p, 0o755), { code: 'EEXIST' }, p);
    await t.throwsAsync(u.symlink('x', p), { code: 'EEXIST' }, p);
    await t.throwsAsync(u.mknod(p, S_IFIFO | 0o644, 0), { code: 'EEXIST' }, p);
    await t.throwsAsync(u.link('/up', p), { code: 'EEXIST' }, p);
  }
  await t.throwsAsync(u.link('/lowdir', '/x'), { code: 'EPERM' });
  await t.throwsAsync(u.link('/missing', '/x'), { code: 'ENOENT' });
  await t.throwsAsync(u.mkdir('/missing/x', 0o755), { code: 'ENOENT' });
  await t.throwsAsync(u.mkdir('/low/x', 0o755), { code: 'ENOTDIR' });
  t.deepEqual(ls(e.upper), ['up']);
});

test('a new object in a set-gid directory takes the directory group', async (t) => {
  const e = env(t);
  dir(e.lowers[0]!, 'sg', { mode: 0o2775, uid: UID, gid: GID });
  const u = e.union();
  await u.mkdir('/sg/d', 0o755, { uid: 1, gid: 2 });
  const fd = await u.create('/sg/f', 0o644, O_RDWR | O_CREAT, { uid: 1, gid: 2 });
  u.release(fd);
  const d = fs.lstatSync(path.join(e.upper, 'sg/d'));
  t.is(d.gid, GID);
  t.is(d.uid, 1);
  t.is(d.mode & 0o2000, 0o2000, 'directories inherit set-gid');
  t.is(fs.lstatSync(path.join(e.upper, 'sg/f')).gid, GID);
});

test('mknod of a character device 0/0 (a whiteout) is refused with EPERM; other devices are made', async (t) => {
  const e = env(t);
  dir(e.lowers[0]!, 'd');
  const u = e.union();
  await t.throwsAsync(u.mknod('/d/wh', S_IFCHR | 0o600, 0), { code: 'EPERM' });
  t.is(u.lookup('/d/wh'), null);
  await u.mknod('/d/null', S_IFCHR | 0o666, Number(sys.makedev(1, 3)));
  const st = fs.lstatSync(path.join(e.upper, 'd/null'));
  t.true(st.isCharacterDevice());
  t.is(st.rdev, Number(sys.makedev(1, 3)));
  t.deepEqual(ls(path.join(e.upper, 'd')), ['null']);
});

test('names starting with .wh. cannot be created (EINVAL)', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'f');
  file(e.upper, 'u');
  const u = e.union();
  await t.throwsAsync(u.create('/.wh.x', 0o644, O_RDWR | O_CREAT), { code: 'EINVAL' });
  await t.throwsAsync(u.create('/.wh..wh..opq', 0o644, O_RDWR | O_CREAT), { code: 'EINVAL' });
  await t.throwsAsync(u.mkdir('/.wh.d', 0o755), { code: 'EINVAL' });
  await t.throwsAsync(u.symlink('t', '/.wh.s'), { code: 'EINVAL' });
  await t.throwsAsync(u.mknod('/.wh.p', S_IFIFO | 0o644, 0), { code: 'EINVAL' });
  await t.throwsAsync(u.link('/u', '/.wh.l'), { code: 'EINVAL' });
  await t.throwsAsync(u.rename('/u', '/.wh.r'), { code: 'EINVAL' });
  await t.throwsAsync(u.rename('/f', '/.wh.f'), { code: 'EINVAL' });
  t.deepEqual(ls(e.upper), ['u']);
  t.deepEqual(names(u, '/'), ['f', 'u']);
});

// ------------------------------------------------------------------ removing

test('unlink of a lower file leaves a whiteout (char 0/0) in the upper', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'd/f', 'x');
  file(e.lowers[0]!, 'd/g', 'y');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.unlink('/d/f');
  t.true(isWhiteout(path.join(e.upper, 'd/f')));
  t.is(u.lookup('/d/f'), null);
  t.deepEqual(names(u, '/d'), ['g']);
  await t.throwsAsync(u.unlink('/d/f'), { code: 'ENOENT' });
  assertWorkEmpty(t, e);
  check();
});

test('unlink of an upper-only file removes it without a whiteout', async (t) => {
  const e = env(t);
  file(e.upper, 'd/f', 'x');
  file(e.lowers[0]!, 'd/other');
  const u = e.union();
  await u.unlink('/d/f');
  t.deepEqual(ls(path.join(e.upper, 'd')), []);
  t.deepEqual(names(u, '/d'), ['other']);
});

test('unlink of an upper file that shadows a lower one leaves a whiteout', async (t) => {
  const e = env(t, 2);
  file(e.upper, 'f', 'upper');
  file(e.lowers[1]!, 'f', 'lower1');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.unlink('/f');
  t.true(isWhiteout(path.join(e.upper, 'f')));
  t.is(u.lookup('/f'), null);
  assertWorkEmpty(t, e);
  check();
});

test('unlink of a file hidden below a lower whiteout needs no whiteout of its own', async (t) => {
  const e = env(t, 2);
  file(e.upper, 'f', 'new');
  whiteout(e.lowers[0]!, 'f');
  file(e.lowers[1]!, 'f', 'old');
  const u = e.union();
  await u.unlink('/f');
  t.deepEqual(ls(e.upper), []);
  t.is(u.lookup('/f'), null);
});

test('unlink then re-create: a plain regular file replaces the whiteout, without lower content', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'f', 'lower content', { mode: 0o600, uid: UID });
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.unlink('/f');
  const fd = await u.create('/f', 0o644, O_RDWR | O_CREAT);
  u.release(fd);
  const st = fs.lstatSync(path.join(e.upper, 'f'));
  t.true(st.isFile());
  t.is(st.size, 0);
  t.is(st.mode & 0o7777, 0o644);
  t.is(st.uid, 0);
  t.is(await readAll(u, '/f'), '');
  await u.unlink('/f');
  t.true(isWhiteout(path.join(e.upper, 'f')), 'the lower file still needs hiding');
  await u.symlink('t', '/f');
  t.true(fs.lstatSync(path.join(e.upper, 'f')).isSymbolicLink());
  await u.unlink('/f');
  await u.mknod('/f', S_IFIFO | 0o600, 0);
  t.true(fs.lstatSync(path.join(e.upper, 'f')).isFIFO());
  await u.unlink('/f');
  file(e.upper, 'other', 'o');
  await u.link('/other', '/f');
  t.is(fs.lstatSync(path.join(e.upper, 'f')).ino, fs.lstatSync(path.join(e.upper, 'other')).ino);
  assertWorkEmpty(t, e);
  check();
});

test('mkdir over a whiteout makes an opaque directory; the old lower contents stay hidden', async (t) => {
  const e = env(t, 2);
  file(e.lowers[0]!, 'd/a', 'a');
  file(e.lowers[1]!, 'd/b', 'b');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.unlink('/d/a');
  await u.unlink('/d/b');
  await u.rmdir('/d');
  t.true(isWhiteout(path.join(e.upper, 'd')));
  await u.mkdir('/d', 0o705);
  const st = fs.lstatSync(path.join(e.upper, 'd'));
  t.true(st.isDirectory());
  t.is(st.mode & 0o7777, 0o705);
  t.true(isOpaque(path.join(e.upper, 'd')));
  t.deepEqual(ls(path.join(e.upper, 'd')), []);
  t.deepEqual(names(u, '/d'), []);
  t.is(u.lookup('/d/a'), null);
  t.is(u.lookup('/d/b'), null);
  t.false(u.listxattr('/d').some((n) => n.startsWith('trusted.overlay.')));
  await u.mkdir('/d/a', 0o755);
  t.false(isOpaque(path.join(e.upper, 'd/a')), 'an opaque parent needs no opaque children');
  assertWorkEmpty(t, e);
  check();
});

test('rmdir of a lower directory leaves a whiteout; a non-empty one gives ENOTEMPTY', async (t) => {
  const e = env(t);
  dir(e.lowers[0]!, 'p/empty');
  file(e.lowers[0]!, 'p/full/x');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await t.throwsAsync(u.rmdir('/p/full'), { code: 'ENOTEMPTY' });
  await u.rmdir('/p/empty');
  t.true(isWhiteout(path.join(e.upper, 'p/empty')));
  t.deepEqual(names(u, '/p'), ['full']);
  await t.throwsAsync(u.rmdir('/p/full/x'), { code: 'ENOTDIR' });
  await t.throwsAsync(u.unlink('/p/full'), { code: 'EISDIR' });
  await t.throwsAsync(u.rmdir('/'), { code: 'EBUSY' });
  await t.throwsAsync(u.rmdir('/p/empty'), { code: 'ENOENT' });
  assertWorkEmpty(t, e);
  check();
});

test('rmdir of a merged directory: ENOTEMPTY while entries show; after deleting them all, a whiteout', async (t) => {
  const e = env(t, 2);
  file(e.upper, 'd/u', 'u');
  file(e.lowers[0]!, 'd/a', 'a');
  dir(e.lowers[1]!, 'd/sub');
  file(e.lowers[1]!, 'd/sub/deep');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await t.throwsAsync(u.rmdir('/d'), { code: 'ENOTEMPTY' });
  await u.unlink('/d/u');
  await u.unlink('/d/a');
  await t.throwsAsync(u.rmdir('/d'), { code: 'ENOTEMPTY' });
  await t.throwsAsync(u.rmdir('/d/sub'), { code: 'ENOTEMPTY' });
  await u.unlink('/d/sub/deep');
  await u.rmdir('/d/sub');
  t.deepEqual(ls(path.join(e.upper, 'd')), ['a', 'sub'], 'only whiteouts are left in the upper dir');
  t.deepEqual(u.readdir('/d'), []);
  await u.rmdir('/d');
  t.true(isWhiteout(path.join(e.upper, 'd')), 'the merged directory is replaced by a whiteout');
  t.is(u.lookup('/d'), null);
  t.deepEqual(names(u, '/'), []);
  assertWorkEmpty(t, e);
  check();
});

test('rmdir of an upper-only directory removes it without a whiteout', async (t) => {
  const e = env(t);
  dir(e.upper, 'p/d');
  file(e.lowers[0]!, 'p/x');
  const u = e.union();
  await u.rmdir('/p/d');
  t.deepEqual(ls(path.join(e.upper, 'p')), []);
  t.deepEqual(names(u, '/p'), ['x']);
});

// ------------------------------------------------------------------ rename

test('rename of an upper-only file moves it; nothing is left at the source', async (t) => {
  const e = env(t);
  file(e.upper, 'a', 'A');
  dir(e.lowers[0]!, 'd');
  const u = e.union();
  await u.rename('/a', '/d/b');
  t.deepEqual(ls(e.upper), ['d']);
  t.deepEqual(ls(path.join(e.upper, 'd')), ['b']);
  t.is(await readAll(u, '/d/b'), 'A');
  t.is(u.lookup('/a'), null);
  await u.rename('/d/b', '/d/b'); // onto itself: nothing happens
  t.is(await readAll(u, '/d/b'), 'A');
  await t.throwsAsync(u.rename('/d/b', '/d/b', sys.RENAME_NOREPLACE), { code: 'EEXIST' }, 'as renameat2(2) answers');
});

test('rename of a lower file: whiteout at the source, a copy at the destination', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'd/f', 'data', { mode: 0o640, uid: UID, gid: GID });
  dir(e.lowers[0]!, 'other');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.rename('/d/f', '/other/g');
  t.true(isWhiteout(path.join(e.upper, 'd/f')));
  const st = fs.lstatSync(path.join(e.upper, 'other/g'));
  t.true(st.isFile());
  t.is(st.uid, UID);
  t.is(st.mode & 0o7777, 0o640);
  t.is(await readAll(u, '/other/g'), 'data');
  t.is(u.lookup('/d/f'), null);
  t.deepEqual(names(u, '/d'), []);
  t.deepEqual(names(u, '/other'), ['g']);
  assertWorkEmpty(t, e);
  check();
});

test('rename over an existing target replaces it (lower or upper target)', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'src1', 'one');
  file(e.lowers[0]!, 'dst1', 'lower target');
  file(e.upper, 'src2', 'two');
  file(e.upper, 'dst2', 'upper target');
  file(e.lowers[0]!, 'dst2', 'below the upper target');
  symlink(e.lowers[0]!, 'sym', 'x');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.rename('/src1', '/dst1');
  t.is(await readAll(u, '/dst1'), 'one');
  t.true(isWhiteout(path.join(e.upper, 'src1')));
  await u.rename('/src2', '/dst2');
  t.is(await readAll(u, '/dst2'), 'two');
  t.is(lstatOrNull(path.join(e.upper, 'src2')), null, 'upper-only source: no whiteout');
  await u.rename('/sym', '/dst1');
  t.is(u.readlink('/dst1').toString(), 'x');
  t.true(isWhiteout(path.join(e.upper, 'sym')));
  t.deepEqual(names(u, '/'), ['dst1', 'dst2']);
  await t.throwsAsync(u.rename('/dst1', '/dst2', sys.RENAME_NOREPLACE), { code: 'EEXIST' });
  await t.throwsAsync(u.rename('/dst1', '/dst2', sys.RENAME_EXCHANGE | sys.RENAME_NOREPLACE), { code: 'EINVAL' });
  await t.throwsAsync(u.rename('/dst1', '/missing', sys.RENAME_EXCHANGE), { code: 'ENOENT' });
  await t.throwsAsync(u.rename('/missing', '/x'), { code: 'ENOENT' });
  await t.throwsAsync(u.rename('/dst1', '/missing/x'), { code: 'ENOENT' });
  assertWorkEmpty(t, e);
  check();
});

test('RENAME_EXCHANGE: both names stay (no whiteouts); lower dirs give EXDEV; an upper dir moved into a merged dir turns opaque', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'a', 'lower a');
  dir(e.lowers[0]!, 'ld/x');
  dir(e.lowers[0]!, 'm/below');
  file(e.upper, 'u', 'upper u');
  file(e.upper, 'v', 'upper v');
  dir(e.upper, 'ud');
  file(e.upper, 'ud/inside', 'in');
  dir(e.upper, 'm');
  file(e.upper, 'm/f', 'file in merged m');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  const fh = await u.open('/u', O_RDONLY);
  await u.rename('/u', '/v', sys.RENAME_EXCHANGE);
  t.is(await readAll(u, '/u'), 'upper v');
  t.is(await readAll(u, '/v'), 'upper u');
  // Lower file with upper file: the lower one is copied up, and no whiteout is left.
  await u.rename('/a', '/u', sys.RENAME_EXCHANGE);
  t.is(await readAll(u, '/u'), 'lower a');
  t.is(await readAll(u, '/a'), 'upper v');
  t.false(isWhiteout(path.join(e.upper, 'a')));
  t.is(fs.readFileSync(path.join(e.upper, 'a'), 'utf8'), 'upper v');
  // A directory a lower has cannot move.
  await t.throwsAsync(u.rename('/ld', '/v', sys.RENAME_EXCHANGE), { code: 'EXDEV' });
  await t.throwsAsync(u.rename('/v', '/ld', sys.RENAME_EXCHANGE), { code: 'EXDEV' });
  // An upper-only dir swapped into the merged dir m hides what a lower has at its new name.
  await u.rename('/ud', '/m/f', sys.RENAME_EXCHANGE);
  t.true(isOpaque(path.join(e.upper, 'm/f')));
  t.deepEqual(names(u, '/m/f'), ['inside']);
  t.is(await readAll(u, '/ud'), 'file in merged m');
  await t.throwsAsync(u.rename('/m', '/m/f/inside', sys.RENAME_EXCHANGE), { code: 'EINVAL' });
  await t.throwsAsync(u.rename('/m/f', '/m/f/inside', sys.RENAME_EXCHANGE), { code: 'EINVAL' });
  // An open handle follows its object to the new name.
  await u.rename('/v', '/ud', sys.RENAME_EXCHANGE);
  const b = Buffer.alloc(16);
  t.is(b.toString('utf8', 0, await u.read(fh, b, 16, 0)), 'upper u');
  u.release(fh);
  assertWorkEmpty(t, e);
  check();
});

test('rename checks types: file over dir EISDIR, dir over file ENOTDIR, over a non-empty dir ENOTEMPTY, into itself EINVAL', async (t) => {
  const e = env(t);
  file(e.upper, 'f');
  dir(e.upper, 'd1');
  file(e.upper, 'd2/x');
  dir(e.lowers[0]!, 'ld');
  file(e.lowers[0]!, 'ld2/y');
  const u = e.union();
  await t.throwsAsync(u.rename('/f', '/d1'), { code: 'EISDIR' });
  await t.throwsAsync(u.rename('/d1', '/f'), { code: 'ENOTDIR' });
  await t.throwsAsync(u.rename('/d1', '/d2'), { code: 'ENOTEMPTY' });
  await t.throwsAsync(u.rename('/d1', '/ld2'), { code: 'ENOTEMPTY' });
  await t.throwsAsync(u.rename('/d1', '/d1/sub'), { code: 'EINVAL' });
  await t.throwsAsync(u.rename('/f', '/f/x'), { code: 'ENOTDIR' });
  await t.throwsAsync(u.rename('/', '/x'), { code: 'EBUSY' });
  t.deepEqual(ls(e.upper), ['d1', 'd2', 'f']);
});

test('rename of a lower or merged directory gives EXDEV', async (t) => {
  const e = env(t, 2);
  file(e.lowers[0]!, 'low/x');
  file(e.lowers[0]!, 'merged/x');
  file(e.upper, 'merged/y');
  dir(e.lowers[0]!, 'twolowers');
  dir(e.lowers[1]!, 'twolowers');
  dir(e.lowers[1]!, 'emptylow');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  for (const p of ['/low', '/merged', '/twolowers', '/emptylow']) {
    await t.throwsAsync(u.rename(p, '/new'), { code: 'EXDEV' }, p);
  }
  t.deepEqual(ls(e.upper), ['merged']);
  t.is(u.lookup('/new'), null);
  check();
});

test('rename of an upper-only directory moves it; into a merged directory it becomes opaque', async (t) => {
  const e = env(t);
  file(e.upper, 'up/child', 'c');
  file(e.upper, 'up2/child', 'c2');
  dir(e.upper, 'uponly');
  file(e.upper, 'merged/u');
  file(e.lowers[0]!, 'merged/l');
  file(e.lowers[0]!, 'merged/target/hidden', 'lower stuff');
  whiteout(e.upper, 'merged/target');
  file(e.lowers[0]!, 'merged/x/hidden', 'lower stuff');
  whiteout(e.upper, 'merged/x');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  // Within upper-only space: a plain move, not opaque.
  await u.rename('/up', '/uponly/moved');
  t.deepEqual(ls(path.join(e.upper, 'uponly/moved')), ['child']);
  t.false(isOpaque(path.join(e.upper, 'uponly/moved')));
  t.is(lstatOrNull(path.join(e.upper, 'up')), null);
  t.is(await readAll(u, '/uponly/moved/child'), 'c');
  // Into a merged directory, over a whiteout of a lower directory: opaque, nothing below shows.
  await u.rename('/up2', '/merged/target');
  t.true(isOpaque(path.join(e.upper, 'merged/target')));
  t.deepEqual(names(u, '/merged/target'), ['child']);
  t.is(u.lookup('/merged/target/hidden'), null);
  t.deepEqual(names(u, '/merged'), ['l', 'target', 'u']);
  // And under a new name in the merged dir: opaque too (as the kernel does).
  await u.rename('/merged/target', '/merged/other');
  t.true(isOpaque(path.join(e.upper, 'merged/other')));
  t.is(u.lookup('/merged/target'), null);
  t.true(isWhiteout(path.join(e.upper, 'merged/target')), 'the lower directory must stay hidden');
  t.deepEqual(names(u, '/merged'), ['l', 'other', 'u']);
  // Over a whiteout the directory is exchanged with it (never a moment without either): the
  // whiteout goes away when no lower has the source name, and stays when one does.
  await u.rename('/merged/other', '/merged/target');
  t.is(lstatOrNull(path.join(e.upper, 'merged/other')), null, 'no whiteout where no lower has the name');
  t.true(isOpaque(path.join(e.upper, 'merged/target')));
  await u.rename('/merged/target', '/merged/x');
  t.true(isWhiteout(path.join(e.upper, 'merged/target')), 'the lower target stays hidden');
  t.true(isOpaque(path.join(e.upper, 'merged/x')));
  t.deepEqual(names(u, '/merged/x'), ['child']);
  t.deepEqual(names(u, '/merged'), ['l', 'u', 'x']);
  t.is(lstatOrNull(path.join(e.upper, 'up2')), null);
  assertWorkEmpty(t, e);
  check();
});

test('rename of an upper-only directory over an empty merged directory', async (t) => {
  const e = env(t);
  file(e.upper, 'src/child', 'c');
  dir(e.upper, 'dst');
  whiteout(e.upper, 'dst/gone');
  file(e.lowers[0]!, 'dst/gone', 'lower');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  t.deepEqual(u.readdir('/dst'), []);
  await u.rename('/src', '/dst');
  t.deepEqual(names(u, '/dst'), ['child']);
  t.is(u.lookup('/dst/gone'), null, 'the lower entry stays hidden');
  t.deepEqual(ls(path.join(e.upper, 'dst')), ['child']);
  t.true(isOpaque(path.join(e.upper, 'dst')));
  t.is(lstatOrNull(path.join(e.upper, 'src')), null);
  assertWorkEmpty(t, e);
  check();
});

// ------------------------------------------------------------------ read-only

for (const kind of ['no upper', 'readonly option'] as const) {
  test(`a read-only union (${kind}) refuses every write with EROFS`, async (t) => {
    const e = env(t);
    file(e.lowers[0]!, 'f', 'x', { xattrs: { 'user.a': '1' } });
    dir(e.lowers[0]!, 'd');
    dir(e.lowers[0]!, 'e');
    file(e.lowers[0]!, 'd/g');
    const check = guard(t, ...e.lowers, e.upper);
    const u = kind === 'no upper' ? e.union({ upperdir: undefined, workdir: undefined }) : e.union({ readonly: true });
    t.true(u.readonly);
    const ro = { code: 'EROFS' };
    await t.throwsAsync(u.open('/f', O_WRONLY), ro);
    await t.throwsAsync(u.open('/f', O_RDWR), ro);
    await t.throwsAsync(u.open('/f', O_RDONLY | O_TRUNC), ro);
    await t.throwsAsync(u.create('/new', 0o644, O_RDWR | O_CREAT), ro);
    await t.throwsAsync(u.create('/f', 0o644, O_WRONLY | O_CREAT), ro);
    await t.throwsAsync(u.mkdir('/newdir', 0o755), ro);
    await t.throwsAsync(u.symlink('x', '/newlink'), ro);
    await t.throwsAsync(u.mknod('/newfifo', S_IFIFO | 0o644, 0), ro);
    await t.throwsAsync(u.link('/f', '/newlink'), ro);
    await t.throwsAsync(u.unlink('/f'), ro);
    await t.throwsAsync(u.rmdir('/e'), ro);
    await t.throwsAsync(u.rename('/f', '/g'), ro);
    await t.throwsAsync(u.truncate('/f', 0), ro);
    await t.throwsAsync(u.chmod('/f', 0o600), ro);
    await t.throwsAsync(u.chown('/f', 1, 1), ro);
    await t.throwsAsync(u.utimens('/f', 'now', 'now'), ro);
    await t.throwsAsync(u.setxattr('/f', 'user.b', Buffer.from('2'), 0), ro);
    await t.throwsAsync(u.removexattr('/f', 'user.a'), ro);
    t.throws(() => u.access('/f', fs.constants.W_OK), ro);
    // Reading works.
    u.access('/f', fs.constants.R_OK);
    t.is(await readAll(u, '/f'), 'x');
    t.deepEqual(names(u, '/'), ['d', 'e', 'f']);
    const fd = await u.create('/f', 0o644, O_RDONLY | O_CREAT);
    u.release(fd);
    check();
  });
}

// ------------------------------------------------------------------ names that are not UTF-8

/** root/a/b... as bytes: each component a byte array or an ASCII string. */
function rawPath(root: string, ...parts: (number[] | string)[]): Buffer {
  return Buffer.concat([Buffer.from(root), ...parts.flatMap((p) => [Buffer.from('/'), Buffer.from(p as never)])]);
}

function whiteoutAt(p: Buffer): boolean {
  try {
    const st = fs.lstatSync(p, { bigint: true });
    return st.isCharacterDevice() && st.rdev === 0n;
  } catch {
    return false;
  }
}

test('byte-string names: names that are not valid UTF-8 are looked up, listed, created, renamed, removed as their bytes', async (t) => {
  const e = env(t);
  const cafe = [0x63, 0x61, 0x66, 0xe9]; // "caf\xe9": latin1, not UTF-8
  fs.writeFileSync(rawPath(e.lowers[0]!, [0xff]), 'ff');
  fs.mkdirSync(rawPath(e.lowers[0]!, cafe));
  fs.writeFileSync(rawPath(e.lowers[0]!, cafe, 'x'), 'x');
  fs.writeFileSync(rawPath(e.lowers[0]!, [0xc3, 0xa9]), 'utf-8 e-acute'); // valid UTF-8 "é"
  const check = guard(t, ...e.lowers);
  const u = e.union();
  // Union paths are byte strings: one char per byte.
  t.deepEqual(names(u, '/'), ['caf\xe9', '\xc3\xa9', '\xff'].sort());
  t.is(await readAll(u, '/\xff'), 'ff');
  t.is(await readAll(u, '/\xc3\xa9'), 'utf-8 e-acute');
  t.deepEqual(names(u, '/caf\xe9'), ['x']);
  const fh = await u.create('/new\xfe', 0o644, O_RDWR | O_CREAT);
  u.release(fh);
  t.true(fs.existsSync(rawPath(e.upper, [0x6e, 0x65, 0x77, 0xfe])), 'created under its bytes in the upper');
  await u.rename('/caf\xe9/x', '/caf\xe9/\xef\xbf');
  t.true(whiteoutAt(rawPath(e.upper, cafe, 'x')), 'whiteout in the copied-up parent');
  t.true(fs.existsSync(rawPath(e.upper, cafe, [0xef, 0xbf])));
  t.deepEqual(names(u, '/caf\xe9'), ['\xef\xbf']);
  await u.setxattr('/\xff', 'user.k', Buffer.from('v'), 0);
  t.is(u.getxattr('/\xff', 'user.k').toString(), 'v');
  t.is(sys.lgetxattr(rawPath(e.upper, [0xff]), 'user.k')?.toString(), 'v', 'copied up under its bytes');
  await u.unlink('/\xff');
  t.true(whiteoutAt(rawPath(e.upper, [0xff])));
  t.deepEqual(names(u, '/'), ['caf\xe9', 'new\xfe', '\xc3\xa9'].sort());
  // A string with a char above 0xff is no byte string, so no path.
  t.throws(() => u.getattr('/\u0100'), { code: 'EINVAL' });
  assertWorkEmpty(t, e);
  check();
});
