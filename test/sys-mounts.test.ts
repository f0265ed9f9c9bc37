// src/sys, the syscalls Node's fs lacks: statfs, umount2.
// What these tests share: _sys.ts.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { lgetxattr, lsetxattr, MNT_DETACH, statfs, umount2, UMOUNT_NOFOLLOW } from '../src/sys/index.ts';
import { TMPFS_MAGIC, ST_RDONLY, ST_VALID, tmpDir, expectSysError, mountTest, mountTmpfs } from './_sys.ts';

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
