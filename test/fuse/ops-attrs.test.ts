// Every filesystem operation through a real mount: chmod / chown, utimens, mknod.
// How these tests work and what they share: _ops.ts.

import test from 'ava';
import * as fs from 'node:fs';
import { dir, fifo, file, symlink, whiteout } from '../diff/layers.ts';
import { devString } from '../helpers/snapshot.ts';
import { GID, UID, kindOf, mode, names, sh, shOk, withLayers } from './_env.ts';
import { fsp, S, MS, stat, read } from './_ops.ts';

// ============================================================================ chmod / chown

test(
  'chmod and chown of lower objects copy them up with data, xattrs and times intact',
  withLayers(
    {
      lowers: [
        {
          cm: file('chmod me', { mode: 0o644, uid: UID, gid: GID, mtime: 1_400_000_000, xattrs: { 'user.a': '1' } }),
          co: file('chown me', { mode: 0o755, mtime: 1_400_000_001 }),
          suid: file('setuid', { mode: 0o4755 }),
          lsym: symlink('cm', { uid: UID, gid: GID }),
          ld: dir({ child: file('c') }, { mode: 0o755 }),
          lp: fifo({ mode: 0o644 }),
        },
      ],
    },
    async (t, e) => {
      await fsp.chmod(e.m('cm'), 0o600);
      t.is(Number((await stat(e.m('cm'))).mode) & 0o7777, 0o600);
      t.is(mode(e.u('cm')), 0o600);
      t.is(fs.readFileSync(e.u('cm'), 'utf8'), 'chmod me');
      t.is(fs.lstatSync(e.u('cm')).uid, UID);
      t.is(fs.lstatSync(e.u('cm')).gid, GID);
      t.is(fs.lstatSync(e.u('cm'), { bigint: true }).mtimeNs, 1_400_000_000n * S);
      t.is(await shOk('getfattr', '--only-values', '-n', 'user.a', e.u('cm')), '1');
      t.is(await read(e.m('cm')), 'chmod me');

      await fsp.chown(e.m('co'), 4242, 4343);
      const co = await stat(e.m('co'));
      t.is(Number(co.uid), 4242);
      t.is(Number(co.gid), 4343);
      t.is(Number(co.mode) & 0o7777, 0o755);
      t.is(fs.lstatSync(e.u('co')).uid, 4242);
      t.is(fs.readFileSync(e.u('co'), 'utf8'), 'chown me');
      t.is(fs.lstatSync(e.u('co'), { bigint: true }).mtimeNs, 1_400_000_001n * S);

      // chown of a set-uid file drops the set-uid bit, as on any filesystem.
      await fsp.chown(e.m('suid'), 1, 1);
      t.is(Number((await stat(e.m('suid'))).mode) & 0o7777, 0o755);
      t.is(mode(e.u('suid')), 0o755);

      await shOk('chown', '-h', '4242:4343', e.m('lsym'));
      t.is(Number((await stat(e.m('lsym'))).uid), 4242);
      t.is(kindOf(e.u('lsym')), 'symlink');
      t.is(fs.lstatSync(e.u('lsym')).uid, 4242);
      t.is(fs.readlinkSync(e.u('lsym')), 'cm');
      t.is(fs.lstatSync(e.u('cm')).uid, UID); // the link's target is untouched

      // A directory is copied up alone, not its contents.
      await fsp.chmod(e.m('ld'), 0o700);
      t.is(mode(e.u('ld')), 0o700);
      t.deepEqual(fs.readdirSync(e.u('ld')), []);
      t.deepEqual(await names(e.m('ld')), ['child']);

      // Special files are copied up as what they are.
      await fsp.chown(e.m('lp'), 5, 6);
      t.is(kindOf(e.u('lp')), 'fifo');
      t.is(fs.lstatSync(e.u('lp')).uid, 5);
      t.is(mode(e.u('lp')), 0o644);
    },
  ),
);

// ============================================================================ utimens

test(
  'utimens: touch -d sets both times to the second, on lower (copy-up) and upper files and on symlinks',
  withLayers(
    { lowers: [{ lf: file('data', { mtime: 1_000_000_000 }), lsym: symlink('lf') }] },
    async (t, e) => {
      await shOk('touch', '-d', '@1700000000', e.m('lf'));
      const st = await stat(e.m('lf'));
      t.is(st.mtimeNs, 1_700_000_000n * S);
      t.is(st.atimeNs, 1_700_000_000n * S);
      const up = fs.lstatSync(e.u('lf'), { bigint: true });
      t.is(up.mtimeNs, 1_700_000_000n * S);
      t.is(up.atimeNs, 1_700_000_000n * S);
      t.is(fs.readFileSync(e.u('lf'), 'utf8'), 'data');

      await fsp.writeFile(e.m('uf'), 'u');
      await shOk('touch', '-d', '@1600000000', e.m('uf'));
      t.is((await stat(e.m('uf'))).mtimeNs, 1_600_000_000n * S);
      t.is((await stat(e.m('uf'))).atimeNs, 1_600_000_000n * S);

      await shOk('touch', '-h', '-d', '@1500000000', e.m('lsym'));
      t.is((await stat(e.m('lsym'))).mtimeNs, 1_500_000_000n * S);
      t.is(fs.lstatSync(e.u('lsym'), { bigint: true }).mtimeNs, 1_500_000_000n * S);
      t.is((await stat(e.m('lf'))).mtimeNs, 1_700_000_000n * S); // target untouched

      // fs.utimes with two equal times, at millisecond precision.
      await fsp.utimes(e.m('uf'), 1_650_000_000.25, 1_650_000_000.25);
      t.is((await stat(e.m('uf'))).mtimeNs / MS, 1_650_000_000_250n);
      t.is((await stat(e.m('uf'))).atimeNs / MS, 1_650_000_000_250n);

      // `touch` with no time: now.
      const before = BigInt(Date.now() - 2000) * MS;
      await shOk('touch', e.m('uf'));
      const now = await stat(e.m('uf'));
      t.true(now.mtimeNs >= before, `mtime ${now.mtimeNs} not recent`);
      t.true(now.mtimeNs <= BigInt(Date.now() + 2000) * MS);
    },
  ),
);

test(
  'copy-up keeps the lower file’s times (exact in the upper, to the millisecond through the mount)',
  withLayers(
    { lowers: [{ tf: file('timed', { xattrs: { 'user.x': 'y' } }), td: dir({ c: file('c') }) }] },
    async (t, e) => {
      for (const name of ['tf', 'td']) {
        const st = await stat(e.m(name));
        t.is(st.mtimeNs / MS, 1_600_000_000_123n, `${name} mtime through the mount`);
      }
      // copy-up by metadata change (tf) and by creating a child (td: its own times move)
      await fsp.chmod(e.m('tf'), 0o600);
      const up = fs.lstatSync(e.u('tf'), { bigint: true });
      // (atimes are not compared: reading the lower for the copy moves it on the kernel too)
      t.is(up.mtimeNs, 1_600_000_000_123_456_789n);
      t.is((await stat(e.m('tf'))).mtimeNs / MS, 1_600_000_000_123n);

      await fsp.chmod(e.m('td/c'), 0o600); // copies up td as the parent of c
      const td = fs.lstatSync(e.u('td'), { bigint: true });
      t.is(td.mtimeNs, 1_600_000_000_123_456_789n);
    },
    {
      prepare: async (e) => {
        for (const p of [e.l(0, 'tf'), e.l(0, 'td')]) {
          await shOk('touch', '-h', '-a', '-d', '@1500000000.987654321', p);
          await shOk('touch', '-h', '-m', '-d', '@1600000000.123456789', p);
        }
      },
    },
  ),
);

// ============================================================================ mknod

test(
  'mknod: fifo, character and block devices; a 0/0 character device (a whiteout) is refused',
  withLayers(
    { lowers: [{ ld: dir({}, { mode: 0o711 }) }] },
    async (t, e) => {
      await shOk('mkfifo', '-m', '0620', e.m('fifo'));
      const f = await stat(e.m('fifo'));
      t.true(f.isFIFO());
      t.is(Number(f.mode) & 0o7777, 0o620);
      t.is(kindOf(e.u('fifo')), 'fifo');

      await shOk('mknod', '-m', '0666', e.m('null'), 'c', '1', '3');
      const n = await stat(e.m('null'));
      t.true(n.isCharacterDevice());
      t.is(devString(n.rdev), '1:3');
      t.is(kindOf(e.u('null')), 'chardev');
      t.is(devString(fs.lstatSync(e.u('null'), { bigint: true }).rdev), '1:3');
      // it is a working /dev/null
      await fsp.writeFile(e.m('null'), 'discarded');
      t.is(await read(e.m('null')), '');

      await shOk('mknod', e.m('ld/blk'), 'b', '7', '200');
      const b = await stat(e.m('ld/blk'));
      t.true(b.isBlockDevice());
      t.is(devString(b.rdev), '7:200');
      t.is(mode(e.u('ld')), 0o711);

      const wh = await sh('mknod', e.m('wh'), 'c', '0', '0');
      t.is(wh.errno, 'EPERM', wh.stderr);
      t.is(kindOf(e.u('wh')), 'missing');
      await t.throwsAsync(stat(e.m('wh')), { code: 'ENOENT' });

      const again = await sh('mkfifo', e.m('fifo'));
      t.is(again.errno, 'EEXIST', again.stderr);

      // a fifo through the mount passes data
      const reader = shOk('cat', e.m('fifo'));
      await shOk('sh', '-c', 'echo through the pipe > "$1"', 'sh', e.m('fifo'));
      t.is(await reader, 'through the pipe\n');
    },
  ),
);
