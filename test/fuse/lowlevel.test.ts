// The low-level libfuse3 binding through real mounts: the addon, attributes.
// How these tests work and what they share: _ll.ts.

import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { removeTmp } from '../helpers/mounts.ts';
import { UnionFs } from '../../src/union/unionfs.ts';
import { fsp, ADDON, E, ltest, layers, mountUnion, sh, shOk, py, RENAMEAT2, XATTR } from './_ll.ts';

// The addon is built by npm ci (the package's install script); without it every test fails.
test('the addon is built (npm ci runs node-gyp rebuild)', (t) => t.true(fs.existsSync(ADDON), `missing ${ADDON}`));

// ---------------------------------------------------------------------------------------
// attributes

ltest('nanosecond times; touch -m/-a change only their time; 64-bit ino, size, ids, offsets', async (t) => {
  // lower1 on tmpfs: layers on two filesystems, so the union's inode numbers carry the layer
  // in their high bits (64-bit). A 5 GiB sparse file with a tail beyond 4 GiB.
  const shm = fs.mkdtempSync('/dev/shm/layerfs-test-');
  t.teardown(() => removeTmp(shm));
  const L = layers(t, 1, ([l0]) => {
    fs.writeFileSync(path.join(l0!, 'a'), 'lower a\n');
  });
  L.lowers.push(shm);
  const FIVE_G = 5 * 1024 ** 3;
  const fd = fs.openSync(path.join(shm, 'big'), 'w');
  fs.ftruncateSync(fd, FIVE_G);
  fs.writeSync(fd, Buffer.from('TAIL'), 0, 4, FIVE_G - 4);
  fs.closeSync(fd);
  fs.chownSync(path.join(shm, 'big'), 4_000_000_000, 4_000_000_001);
  await mountUnion(t, L);

  await shOk('touch', '-d', '2001-02-03 04:05:06.123456789', L.m('a'));
  t.is(await shOk('stat', '-c', '%x|%y', L.m('a')), '2001-02-03 04:05:06.123456789 +0000|2001-02-03 04:05:06.123456789 +0000\n');
  await shOk('touch', '-m', '-d', '2011-01-01 00:00:00.987654321', L.m('a'));
  t.is(await shOk('stat', '-c', '%x|%y', L.m('a')), '2001-02-03 04:05:06.123456789 +0000|2011-01-01 00:00:00.987654321 +0000\n');
  await shOk('touch', '-a', '-d', '1999-12-31 23:59:59.000000001', L.m('a'));
  t.is(await shOk('stat', '-c', '%x|%y', L.m('a')), '1999-12-31 23:59:59.000000001 +0000|2011-01-01 00:00:00.987654321 +0000\n');
  const up = fs.lstatSync(path.join(L.upper, 'a'), { bigint: true });
  t.is(up.atimeNs, 946684799_000000001n);
  t.is(up.mtimeNs, 1293840000_987654321n);
  // Before 1970.
  await shOk('touch', '-m', '-d', '1969-12-31 23:59:59.5', L.m('a'));
  t.is((await fsp.lstat(L.m('a'), { bigint: true })).mtimeNs, -500_000_000n);

  // 64-bit values.
  const expect = new UnionFs({ lowerdirs: L.lowers, upperdir: L.upper, workdir: L.work }).getattr('/big');
  const st = await fsp.lstat(L.m('big'), { bigint: true });
  t.true(st.ino > 2n ** 32n, `ino ${st.ino}`);
  t.is(st.ino, expect.ino);
  t.is(st.size, BigInt(FIVE_G));
  t.is(st.uid, 4_000_000_000n);
  t.is(st.gid, 4_000_000_001n);
  const fh = await fsp.open(L.m('big'), 'r');
  try {
    const b = Buffer.alloc(8);
    const { bytesRead } = await fh.read(b, 0, 8, FIVE_G - 4);
    t.is(b.subarray(0, bytesRead).toString(), 'TAIL');
  } finally {
    await fh.close();
  }
  // statfs: the upper's filesystem, all fields through.
  const [mb, ms] = (await shOk('stat', '-f', '-c', '%b %S %c %d', L.mnt)).trim().split(' ');
  const [ub, us] = (await shOk('stat', '-f', '-c', '%b %S %c %d', L.upper)).trim().split(' ');
  t.is(mb, ub);
  t.is(ms, us);
});

ltest('new objects belong to the caller (fuse_ctx uid/gid)', async (t) => {
  const L = layers(t, 1, () => {});
  fs.chmodSync(L.dir, 0o755); // mkdtemp makes it 0700: uid 1000 must get through to the mount
  await mountUnion(t, L);
  await fsp.mkdir(L.m('open'));
  await fsp.chmod(L.m('open'), 0o777);
  const as1000 = ['--reuid=1000', '--regid=1000', '--clear-groups'];
  await shOk('setpriv', ...as1000, 'touch', L.m('open/f'));
  await shOk('setpriv', ...as1000, 'mkdir', L.m('open/d'));
  await shOk('setpriv', ...as1000, 'ln', '-s', 'target', L.m('open/s'));
  await shOk('setpriv', ...as1000, 'mkfifo', L.m('open/p'));
  for (const n of ['f', 'd', 's', 'p']) {
    const m = await fsp.lstat(L.m(`open/${n}`));
    const u = fs.lstatSync(path.join(L.upper, 'open', n));
    t.deepEqual([m.uid, m.gid], [1000, 1000], `${n} through the mount`);
    t.deepEqual([u.uid, u.gid], [1000, 1000], `${n} in the upper`);
  }
  // The umask is the caller's (applied by the kernel).
  await shOk('sh', '-c', `umask 077; exec setpriv ${as1000.join(' ')} touch ${L.m('open/private')}`);
  t.is((await fsp.lstat(L.m('open/private'))).mode & 0o777, 0o600);
});

ltest('rename flags: NOREPLACE gives EEXIST; EXCHANGE swaps the two names', async (t) => {
  const L = layers(t, 1, ([l0]) => {
    fs.writeFileSync(path.join(l0!, 'a'), 'a');
    fs.writeFileSync(path.join(l0!, 'b'), 'b');
  });
  await mountUnion(t, L);
  t.is(await py(RENAMEAT2, L.m('a'), L.m('b'), '1'), E.EEXIST);
  t.is(await fsp.readFile(L.m('b'), 'utf8'), 'b');
  t.is(await py(RENAMEAT2, L.m('a'), L.m('c'), '1'), 0);
  t.is(await fsp.readFile(L.m('c'), 'utf8'), 'a');
  t.is(await py(RENAMEAT2, L.m('c'), L.m('b'), '2'), 0);
  t.is(await fsp.readFile(L.m('c'), 'utf8'), 'b');
  t.is(await fsp.readFile(L.m('b'), 'utf8'), 'a');
  t.is(await py(RENAMEAT2, L.m('c'), L.m('b'), '0'), 0);
  t.is(await fsp.readFile(L.m('b'), 'utf8'), 'b');
  t.false(fs.existsSync(L.m('a')));
  t.false(fs.existsSync(L.m('c')));
});

ltest('xattrs: size query, ERANGE into a too-small buffer, list', async (t) => {
  const L = layers(t, 1, ([l0]) => fs.writeFileSync(path.join(l0!, 'f'), 'f'));
  await mountUnion(t, L);
  await shOk('setfattr', '-n', 'user.k', '-v', '0123456789', L.m('f'));
  const r = await py(XATTR, L.m('f'), 'user.k');
  t.deepEqual(r.q, [10, 0, '']);
  t.deepEqual(r.small, [-1, E.ERANGE, '']);
  t.deepEqual(r.exact, [10, 0, '0123456789']);
  t.deepEqual(r.big, [10, 0, '0123456789']);
  t.deepEqual(r.lq, [7, 0, '']);
  t.deepEqual(r.lsmall, [-1, E.ERANGE, '']);
  t.deepEqual(r.lbig, [7, 0, 'user.k\0']);
  const missing = await py(XATTR, L.m('f'), 'user.none');
  t.is(missing.q[1], E.ENODATA);
});
