import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  lgetxattr,
  llistxattr,
  lremovexattr,
  lsetxattr,
  makedev,
  mknod,
  MNT_DETACH,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  RENAME_WHITEOUT,
  renameat2,
  statfs,
  sysBackend,
  copyFileWithMeta,
  timespecFromNs,
  umount2,
  UMOUNT_NOFOLLOW,
  utimensat,
  XATTR_CREATE,
  XATTR_REPLACE,
  type SysError,
} from '../src/sys/index.ts';

const { S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, S_IFREG } = fs.constants;
const TMPFS_MAGIC = 0x01021994n;
const ST_RDONLY = 1n;
const ST_VALID = 0x20n;

function tmpDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-sys-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function expectSysError(t: ExecutionContext, fn: () => unknown, code: string, syscall: string): SysError {
  const err = t.throws(fn) as SysError;
  t.is(err.code, code);
  t.is(err.errno, -(os.constants.errno as Record<string, number>)[code]!);
  t.is(err.syscall, syscall);
  t.true(err.message.startsWith(`${code}: `), err.message);
  t.true(err.message.includes(`, ${syscall} '`), err.message);
  return err;
}

/** Mounting a tmpfs needs CAP_SYS_ADMIN; probe once so those tests are skipped (not failed) elsewhere. */
const canMount = ((): boolean => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-sys-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'layerfs-probe', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
const mountTest = canMount ? test : test.skip;

function mountTmpfs(t: ExecutionContext, opts = 'size=1m'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-sys-mnt-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'layerfs-test', dir]);
  t.teardown(() => {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch {
      // already unmounted by the test
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

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

// --- renameat2 --------------------------------------------------------------

test('renameat2 RENAME_EXCHANGE swaps a file and a directory', (t) => {
  const dir = tmpDir(t);
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  fs.writeFileSync(a, 'file-a');
  fs.mkdirSync(b);
  fs.writeFileSync(path.join(b, 'inner'), 'inside');
  renameat2(a, b, RENAME_EXCHANGE);
  t.true(fs.lstatSync(a).isDirectory());
  t.is(fs.readFileSync(path.join(a, 'inner'), 'utf8'), 'inside');
  t.true(fs.lstatSync(b).isFile());
  t.is(fs.readFileSync(b, 'utf8'), 'file-a');
  // EXCHANGE needs both to exist
  expectSysError(t, () => renameat2(a, path.join(dir, 'none'), RENAME_EXCHANGE), 'ENOENT', 'renameat2');
});

test('renameat2 RENAME_NOREPLACE refuses to overwrite', (t) => {
  const dir = tmpDir(t);
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  fs.writeFileSync(a, 'A');
  fs.writeFileSync(b, 'B');
  const err = expectSysError(t, () => renameat2(a, b, RENAME_NOREPLACE), 'EEXIST', 'renameat2');
  t.is(err.path, a);
  t.is(err.dest, b);
  t.is(err.message, `EEXIST: file already exists, renameat2 '${a}' -> '${b}'`);
  t.is(fs.readFileSync(a, 'utf8'), 'A');
  t.is(fs.readFileSync(b, 'utf8'), 'B');

  const c = path.join(dir, 'c');
  renameat2(a, c, RENAME_NOREPLACE);
  t.false(fs.existsSync(a));
  t.is(fs.readFileSync(c, 'utf8'), 'A');
});

test('renameat2 RENAME_WHITEOUT leaves a 0/0 char device at the source', (t) => {
  const dir = tmpDir(t);
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  fs.writeFileSync(a, 'A');
  renameat2(a, b, RENAME_WHITEOUT);
  const wh = fs.lstatSync(a);
  t.true(wh.isCharacterDevice());
  t.is(wh.rdev, 0);
  t.is(fs.readFileSync(b, 'utf8'), 'A');
});

test('renameat2 with flags 0 is a plain rename; invalid flag combos are EINVAL', (t) => {
  const dir = tmpDir(t);
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  fs.writeFileSync(a, 'A');
  fs.writeFileSync(b, 'B');
  renameat2(a, b, 0);
  t.false(fs.existsSync(a));
  t.is(fs.readFileSync(b, 'utf8'), 'A');
  fs.writeFileSync(a, 'A2');
  expectSysError(t, () => renameat2(a, b, RENAME_NOREPLACE | RENAME_EXCHANGE), 'EINVAL', 'renameat2');
});

// --- utimensat --------------------------------------------------------------

test('timespecFromNs splits nanoseconds, flooring negative times', (t) => {
  t.deepEqual(timespecFromNs(0n), { sec: 0n, nsec: 0 });
  t.deepEqual(timespecFromNs(1_700_000_000_123_456_789n), { sec: 1_700_000_000n, nsec: 123_456_789 });
  t.deepEqual(timespecFromNs(-1n), { sec: -1n, nsec: 999_999_999 });
  t.deepEqual(timespecFromNs(-1_000_000_000n), { sec: -1n, nsec: 0 });
  t.deepEqual(timespecFromNs(-1_500_000_000n), { sec: -2n, nsec: 500_000_000 });
});

test('utimensat sets exact nanosecond atime and mtime on a file', (t) => {
  const f = path.join(tmpDir(t), 'f');
  fs.writeFileSync(f, 'x');
  utimensat(f, { sec: 1_600_000_000n, nsec: 987_654_321 }, { sec: 1_700_000_000n, nsec: 123_456_789 });
  const st = fs.lstatSync(f, { bigint: true });
  t.is(st.atimeNs, 1_600_000_000_987_654_321n);
  t.is(st.mtimeNs, 1_700_000_000_123_456_789n);
});

test('utimensat copies times from lstat bigint ns (copy-up), including pre-1970', (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, 'src');
  const dst = path.join(dir, 'dst');
  fs.writeFileSync(src, '');
  fs.writeFileSync(dst, '');
  utimensat(src, timespecFromNs(-1_500_000_001n), timespecFromNs(1_234_567_890_000_000_007n));
  const s = fs.lstatSync(src, { bigint: true });
  t.is(s.atimeNs, -1_500_000_001n);
  t.is(s.mtimeNs, 1_234_567_890_000_000_007n);
  utimensat(dst, timespecFromNs(s.atimeNs), timespecFromNs(s.mtimeNs));
  const d = fs.lstatSync(dst, { bigint: true });
  t.is(d.atimeNs, s.atimeNs);
  t.is(d.mtimeNs, s.mtimeNs);
});

test('utimensat on a symlink changes the link, not the target (nofollow default)', (t) => {
  const dir = tmpDir(t);
  const target = path.join(dir, 'target');
  const link = path.join(dir, 'link');
  fs.writeFileSync(target, '');
  fs.symlinkSync('target', link);
  utimensat(target, { sec: 1_000_000_000n, nsec: 1 }, { sec: 1_000_000_000n, nsec: 2 });

  utimensat(link, { sec: 1_700_000_000n, nsec: 111_111_111 }, { sec: 1_700_000_000n, nsec: 123_456_789 });
  const l = fs.lstatSync(link, { bigint: true });
  t.is(l.atimeNs, 1_700_000_000_111_111_111n);
  t.is(l.mtimeNs, 1_700_000_000_123_456_789n);
  const tg = fs.lstatSync(target, { bigint: true });
  t.is(tg.atimeNs, 1_000_000_000_000_000_001n);
  t.is(tg.mtimeNs, 1_000_000_000_000_000_002n);

  // nofollow: false goes through the link
  utimensat(link, 'omit', { sec: 5n, nsec: 5 }, { nofollow: false });
  t.is(fs.lstatSync(target, { bigint: true }).mtimeNs, 5_000_000_005n);
  t.is(fs.lstatSync(link, { bigint: true }).mtimeNs, 1_700_000_000_123_456_789n);
});

test("utimensat 'omit' leaves a time unchanged and 'now' uses the current time", (t) => {
  const f = path.join(tmpDir(t), 'f');
  fs.writeFileSync(f, '');
  utimensat(f, { sec: 100n, nsec: 1 }, { sec: 200n, nsec: 2 });

  utimensat(f, 'omit', { sec: 300n, nsec: 3 });
  let st = fs.lstatSync(f, { bigint: true });
  t.is(st.atimeNs, 100_000_000_001n);
  t.is(st.mtimeNs, 300_000_000_003n);

  utimensat(f, { sec: 400n, nsec: 4 }, 'omit');
  st = fs.lstatSync(f, { bigint: true });
  t.is(st.atimeNs, 400_000_000_004n);
  t.is(st.mtimeNs, 300_000_000_003n);

  const before = BigInt(Date.now() - 2000) * 1_000_000n;
  utimensat(f, 'omit', 'now');
  const after = BigInt(Date.now() + 2000) * 1_000_000n;
  st = fs.lstatSync(f, { bigint: true });
  t.is(st.atimeNs, 400_000_000_004n);
  t.true(st.mtimeNs >= before && st.mtimeNs <= after, `mtimeNs=${st.mtimeNs}`);
});

test('utimensat validates nsec and reports errors', (t) => {
  const dir = tmpDir(t);
  const f = path.join(dir, 'f');
  fs.writeFileSync(f, '');
  t.throws(() => utimensat(f, { sec: 0n, nsec: 1_000_000_000 }, 'omit'), { instanceOf: RangeError });
  t.throws(() => utimensat(f, 'omit', { sec: 0n, nsec: -1 }), { instanceOf: RangeError });
  t.throws(() => utimensat(f, 'omit', { sec: 0n, nsec: 0.5 }), { instanceOf: RangeError });
  const missing = path.join(dir, 'missing');
  const err = expectSysError(t, () => utimensat(missing, 'now', 'now'), 'ENOENT', 'utimensat');
  t.is(err.path, missing);
});

// --- statfs -----------------------------------------------------------------

test('statfs of the tmp dir matches fs.statfsSync and stat -f', (t) => {
  const dir = os.tmpdir();
  const s = statfs(dir);
  t.true(s.bsize > 0n);
  t.true(s.frsize > 0n);
  t.true(s.blocks > 0n);
  t.true(s.bfree <= s.blocks);
  t.true(s.bavail <= s.blocks);
  t.true(s.ffree <= s.files);
  t.true(s.namelen > 0n && s.namelen <= 4096n);
  t.true((s.flags & ST_VALID) !== 0n, `flags=${s.flags.toString(16)}`);
  t.is(s.flags & ST_RDONLY, 0n);

  const n = fs.statfsSync(dir, { bigint: true });
  t.is(s.type, n.type);
  t.is(s.bsize, n.bsize);
  t.is(s.blocks, n.blocks);
  t.is(s.files, n.files);

  // coreutils prints f_fsid as val[0] << 32 | val[1]; ours is val[0] | val[1] << 32 (glibc statvfs)
  let coreutils: string[] | undefined;
  try {
    coreutils = execFileSync('stat', ['-f', '-c', '%t %l %S %i', dir], { encoding: 'utf8' }).trim().split(' ');
  } catch {
    t.log('stat(1) unavailable; skipping coreutils comparison');
  }
  if (coreutils) {
    const [typeHex, namelen, fundamental, fsidHex] = coreutils as [string, string, string, string];
    t.is(s.type, BigInt('0x' + typeHex));
    t.is(s.namelen, BigInt(namelen));
    t.is(s.frsize, BigInt(fundamental));
    const f = BigInt('0x' + fsidHex);
    t.is(s.fsid, ((f & 0xffffffffn) << 32n) | (f >> 32n));
  }
});

test('statfs accepts Buffer paths and throws ENOENT', (t) => {
  const dir = tmpDir(t);
  t.is(statfs(Buffer.from(dir)).type, statfs(dir).type);
  const missing = path.join(dir, 'missing');
  t.is(expectSysError(t, () => statfs(missing), 'ENOENT', 'statfs').path, missing);
});

mountTest('statfs sees a read-only tmpfs mount', (t) => {
  const mnt = mountTmpfs(t, 'ro,size=1m');
  const s = statfs(mnt);
  t.is(s.type, TMPFS_MAGIC);
  t.is(s.flags & ST_RDONLY, ST_RDONLY);
  t.is(s.bsize, 4096n);
  t.is(s.blocks, 256n); // 1 MiB / 4 KiB
});

// --- umount2 ----------------------------------------------------------------

test('umount2 of a path that is not a mount point throws EINVAL', (t) => {
  const dir = tmpDir(t);
  const err = expectSysError(t, () => umount2(dir, 0), 'EINVAL', 'umount2');
  t.is(err.path, dir);
  t.is(err.message, `EINVAL: invalid argument, umount2 '${dir}'`);
  expectSysError(t, () => umount2(path.join(dir, 'missing'), MNT_DETACH), 'ENOENT', 'umount2');
});

mountTest('umount2 unmounts a tmpfs (plain and MNT_DETACH)', (t) => {
  const mnt = mountTmpfs(t);
  const parentType = statfs(path.dirname(mnt)).type;
  t.is(statfs(mnt).type, TMPFS_MAGIC);
  // trusted.* xattrs work on tmpfs too
  fs.mkdirSync(path.join(mnt, 'd'));
  lsetxattr(path.join(mnt, 'd'), 'trusted.overlay.opaque', 'y');
  t.deepEqual(lgetxattr(path.join(mnt, 'd'), 'trusted.overlay.opaque'), Buffer.from('y'));

  umount2(mnt, 0);
  t.is(statfs(mnt).type, parentType);
  t.false(fs.existsSync(path.join(mnt, 'd')));

  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'layerfs-test', mnt]);
  const fd = fs.openSync(path.join(mnt, 'busy'), 'w'); // busy: plain umount would fail with EBUSY
  t.teardown(() => fs.closeSync(fd));
  expectSysError(t, () => umount2(mnt, 0), 'EBUSY', 'umount2');
  umount2(mnt, MNT_DETACH);
  t.is(statfs(mnt).type, parentType);
});

mountTest('umount2 UMOUNT_NOFOLLOW does not follow a symlink to a mount point', (t) => {
  const mnt = mountTmpfs(t);
  const dir = tmpDir(t);
  const link = path.join(dir, 'link');
  fs.symlinkSync(mnt, link);
  expectSysError(t, () => umount2(link, UMOUNT_NOFOLLOW), 'EINVAL', 'umount2');
  t.is(statfs(mnt).type, TMPFS_MAGIC);
  umount2(link, 0); // without the flag the link is followed
  t.not(statfs(mnt).type, TMPFS_MAGIC);
});

// --- processes, namespaces, mounts, credentials (the launcher's syscalls) ---

import * as sysx from '../src/sys/index.ts';

test('capget / capBoundingHas / getNoNewPrivs describe this process', (t) => {
  const caps = sysx.capget();
  t.is(typeof caps.effective, 'bigint');
  t.is((caps.permitted & caps.effective) === caps.effective, true, 'effective is a subset of permitted');
  if (process.getuid?.() === 0) t.true(sysx.capBoundingHas(0), 'root has CAP_CHOWN in its bounding set');
  t.is((t.throws(() => sysx.capBoundingHas(63)) as SysError).code, 'EINVAL', 'beyond cap_last_cap');
  t.is(typeof sysx.getNoNewPrivs(), 'boolean');
});

test('setCloexec / setBlocking change descriptor flags', (t) => {
  const dir = tmpDir(t);
  const fd = fs.openSync(path.join(dir, 'f'), fs.constants.O_CREAT | fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  t.teardown(() => fs.closeSync(fd));
  const flags = (): string => fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').split('\n')[1];
  const octal = (): number => parseInt(flags().split(/\s+/)[1], 8);
  t.truthy(octal() & 0o4000);
  sysx.setBlocking(fd);
  t.falsy(octal() & 0o4000);
  sysx.setCloexec(fd, true);
  t.truthy(octal() & 0o2000000);
  sysx.setCloexec(fd, false);
  t.falsy(octal() & 0o2000000);
  sysx.closeFd(987654); // EBADF is ignored
});

test('ptyUnlock / setWinSize / getWinSize on a new pseudo-terminal', (t) => {
  const master = fs.openSync('/dev/ptmx', fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  t.teardown(() => fs.closeSync(master));
  const n = sysx.ptyUnlock(master);
  t.true(Number.isInteger(n) && n >= 0);
  const slave = fs.openSync(`/dev/pts/${n}`, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  t.teardown(() => fs.closeSync(slave));
  sysx.setWinSize(master, { rows: 33, cols: 101 });
  t.deepEqual(sysx.getWinSize(slave), { rows: 33, cols: 101 });
  const err = t.throws(() => sysx.getWinSize(fs.openSync('/dev/null', 'r'))) as SysError;
  t.is(err.code, 'ENOTTY');
});

test('execve failures throw (the process stays)', (t) => {
  const err = t.throws(() => sysx.execve('/nonexistent/program', ['x'], [])) as SysError;
  t.is(err.code, 'ENOENT');
  t.is(err.syscall, 'execve');
  t.throws(() => sysx.execve('/bin/true', ['a\0b'], []), { code: 'ERR_INVALID_ARG_VALUE' } as never);
});

mountTest('mount (bind, read-only remount), sethostname, interfaceUp, pivotRoot, prctl and capset in new namespaces', (t) => {
  const dir = tmpDir(t);
  const child = path.join(path.dirname(new URL(import.meta.url).pathname), 'launcher', '_sys-child.ts');
  const out = execFileSync('unshare', ['--mount', '--uts', '--net', '--propagation', 'private', '--', process.execPath, '--import', 'tsx', child, dir], { encoding: 'utf8' });
  const r = JSON.parse(out) as Record<string, unknown>;
  t.is(r.hostname, 'layerfs-ns-test');
  t.is(Number(r.loBefore) & 1, 0, 'lo starts down in a new network namespace');
  t.is(Number(r.loAfter) & 1, 1, 'and is up after interfaceUp');
  t.is(r.readOnly, 'EROFS');
  t.deepEqual(r.root, ['inside'], 'after pivot_root the tmpfs is the whole tree');
  t.is(r.nnpAfter, true);
  t.is(r.sysAdminBefore, true);
  t.is(r.sysAdminAfter, false);
  t.is(r.effHasSysAdmin, false);
  t.is(r.sethostnameWithoutCap, 'EPERM');
  t.is(r.execveGone, 'ENOENT', 'the host\'s /bin/sh is unreachable after the pivot');
  t.not(fs.readFileSync('/proc/sys/kernel/hostname', 'utf8').trim(), 'layerfs-ns-test');
  t.deepEqual(fs.readdirSync(dir), [], 'the tmpfs was only mounted in the namespace');
});

test('the per-request calls run through the own addon, and the koffi fallback answers the same', (t) => {
  t.is(sysBackend(), 'addon', 'build/Release/layerfs_sys.node is built by npm ci / setup');
  const dir = tmpDir(t);
  // The same sequence in two processes: one on the addon, one forced onto koffi.
  const script = `
    import * as s from ${JSON.stringify(path.resolve('src/sys/index.ts'))};
    import fs from 'node:fs';
    const d = process.argv[1];
    fs.writeFileSync(d + '/f', 'x');
    fs.symlinkSync('f', d + '/l');
    const out = { backend: s.sysBackend() };
    s.lsetxattr(d + '/f', 'user.a', Buffer.from([0, 1, 255]));
    s.lsetxattr(d + '/f', 'user.b', '');
    out.list = s.llistxattr(d + '/f').sort();
    out.a = [...s.lgetxattr(d + '/f', 'user.a')];
    out.b = s.lgetxattr(d + '/f', 'user.b').length;
    out.none = s.lgetxattr(d + '/f', 'user.none');
    try { s.lsetxattr(d + '/f', 'user.a', 'y', s.XATTR_CREATE); } catch (e) { out.create = e.code + ' ' + e.syscall; }
    s.lremovexattr(d + '/f', 'user.a');
    try { s.lremovexattr(d + '/f', 'user.a'); } catch (e) { out.removed = e.code; }
    try { s.lgetxattr(Buffer.from(d + '/\\xff-missing', 'latin1'), 'user.a'); } catch (e) { out.missing = e.code; }
    s.utimensat(d + '/l', { sec: -5n, nsec: 7 }, { sec: 1700000000n, nsec: 123456789 });
    const st = fs.lstatSync(d + '/l', { bigint: true });
    out.times = [String(st.atimeNs), String(st.mtimeNs)];
    s.renameat2(d + '/f', d + '/l', s.RENAME_EXCHANGE);
    out.swapped = fs.lstatSync(d + '/f').isSymbolicLink();
    try { s.renameat2(d + '/f', d + '/l', s.RENAME_NOREPLACE); } catch (e) { out.noreplace = e.code + ' ' + e.syscall + ' ' + e.dest.endsWith('/l'); }
    process.stdout.write(JSON.stringify(out));
  `;
  const run = (env: NodeJS.ProcessEnv, sub: string) => {
    const d = path.join(dir, sub);
    fs.mkdirSync(d);
    const res = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, d], { env: { ...process.env, ...env }, encoding: 'utf8' });
    return JSON.parse(res) as Record<string, unknown>;
  };
  const fast = run({ LAYERFS_SYS: '' }, 'addon');
  const slow = run({ LAYERFS_SYS: 'koffi' }, 'koffi');
  t.is(fast.backend, 'addon');
  t.is(slow.backend, 'koffi');
  t.deepEqual({ ...fast, backend: 0 }, { ...slow, backend: 0 });
  t.deepEqual(fast.list, ['user.a', 'user.b']);
  t.deepEqual(fast.a, [0, 1, 255]);
  t.is(fast.none, null);
  t.is(fast.create, 'EEXIST lsetxattr');
  t.is(fast.removed, 'ENODATA');
  t.is(fast.missing, 'ENOENT');
  t.deepEqual(fast.times, ['-4999999993', '1700000000123456789']);
  t.is(fast.swapped, true);
  t.is(fast.noreplace, 'EEXIST renameat2 true');
});

test('copyFileWithMeta: data, owner, xattrs but the private ones, mode and times in one call; nothing through a symlink', (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, 'src');
  fs.writeFileSync(src, randomBytes(70_000)); // more than the addon's 64 KiB scratch buffer
  fs.chownSync(src, 1234, 5678);
  fs.chmodSync(src, 0o4751);
  lsetxattr(src, 'user.keep', Buffer.from([0, 1, 2]));
  lsetxattr(src, 'trusted.overlay.opaque', 'y');
  lsetxattr(src, 'user.overlay.whiteout', 'y');
  lsetxattr(src, 'trusted.other', 'v');
  const at = { sec: 1_600_000_000n, nsec: 123 };
  const mt = { sec: -86_400n, nsec: 999_999_999 };
  const dst = path.join(dir, 'dst');
  t.true(copyFileWithMeta(src, dst, ['trusted.overlay.', 'user.overlay.'], { uid: 1234, gid: 5678 }, 0o4751, at, mt));
  const st = fs.lstatSync(dst, { bigint: true }); // before reading it (relatime would move atime)
  t.deepEqual(fs.readFileSync(dst), fs.readFileSync(src));
  t.is(Number(st.mode) & 0o7777, 0o4751, 'set-uid survives the chown (mode after owner)');
  t.deepEqual([Number(st.uid), Number(st.gid)], [1234, 5678]);
  t.is(st.atimeNs, 1_600_000_000_000_000_123n);
  t.is(st.mtimeNs, -86_400n * 1_000_000_000n + 999_999_999n);
  t.deepEqual(llistxattr(dst).sort(), ['trusted.other', 'user.keep']);
  t.deepEqual([...lgetxattr(dst, 'user.keep')!], [0, 1, 2]);
  // The destination is made exclusively; the source is never followed.
  const again = t.throws(() => copyFileWithMeta(src, dst, ['a.', 'b.'], { uid: 0, gid: 0 }, 0o644, at, mt)) as SysError;
  t.is(again.code, 'EEXIST');
  fs.symlinkSync(src, path.join(dir, 'link'));
  const viaLink = t.throws(() => copyFileWithMeta(path.join(dir, 'link'), path.join(dir, 'd2'), ['a.', 'b.'], { uid: 0, gid: 0 }, 0o644, at, mt)) as SysError;
  t.is(viaLink.code, 'ELOOP');
  t.false(fs.existsSync(path.join(dir, 'd2')), 'nothing made when the source cannot be opened');
});
