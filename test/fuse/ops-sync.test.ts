// Every filesystem operation through a real mount: statfs / fsync / access.
// How these tests work and what they share: _ops.ts.

import test from 'ava';
import * as fs from 'node:fs';
import { dir, file } from '../diff/layers.ts';
import { kindOf, listTree, mode, names, sh, shOk, withLayers } from './_env.ts';
import { fsp, S, stat, read } from './_ops.ts';

// ============================================================================ statfs / fsync / access

test(
  'statfs: stat -f and df work and report the upper filesystem',
  withLayers({ lowers: [{ f: file('f') }] }, async (t, e) => {
    const fmt = '%b %S %c %l';
    const viaMount = (await shOk('stat', '-f', '-c', fmt, e.m())).trim().split(' ');
    const ofUpper = (await shOk('stat', '-f', '-c', fmt, e.u())).trim().split(' ');
    // total blocks, block size, total inodes, max name length
    t.deepEqual(viaMount, ofUpper);
    t.is(viaMount[3], '255');
    t.true(Number(viaMount[0]) > 0);
    const free = Number((await shOk('stat', '-f', '-c', '%f', e.m())).trim());
    const freeUpper = Number((await shOk('stat', '-f', '-c', '%f', e.u())).trim());
    t.true(Math.abs(free - freeUpper) < 0.01 * Number(viaMount[0]), `free ${free} vs ${freeUpper}`);
    await shOk('df', e.m());
  }),
);

test(
  'fsync: dd conv=fsync / fdatasync, fsync of a read-only lower file (no copy-up) and of a directory',
  withLayers({ lowers: [{ lf: file('lower'), ld: dir() }] }, async (t, e) => {
    await shOk('dd', 'if=/dev/zero', `of=${e.m('synced')}`, 'bs=64k', 'count=16', 'conv=fsync', 'status=none');
    t.is((await stat(e.m('synced'))).size, 1024n * 1024n);
    await shOk('dd', 'if=/dev/urandom', `of=${e.m('ld/dsynced')}`, 'bs=4k', 'count=3', 'conv=fdatasync', 'status=none');
    t.is(fs.lstatSync(e.u('ld/dsynced')).size, 12288);

    const ro = await fsp.open(e.m('lf'), 'r');
    await ro.sync();
    await ro.datasync();
    await ro.close();
    t.is(kindOf(e.u('lf')), 'missing');

    const rw = await fsp.open(e.m('lf'), 'r+');
    await rw.write('L', 0);
    await rw.sync();
    await rw.close();
    t.is(fs.readFileSync(e.u('lf'), 'utf8'), 'Lower');

    const d = await fsp.open(e.m('ld'), 'r');
    await d.sync();
    await d.close();
  }),
);

test(
  'access: test -r/-w/-x/-e as root and as an unprivileged user follow the modes',
  withLayers(
    {
      lowers: [
        {
          rw: file('x', { mode: 0o644 }),
          exe: file('#!/bin/sh\n', { mode: 0o755 }),
          private: file('p', { mode: 0o600 }),
          noperm: file('n', { mode: 0o000 }),
          d: dir({ in: file('i', { mode: 0o644 }) }, { mode: 0o755 }),
          closed: dir({ in: file('i', { mode: 0o644 }) }, { mode: 0o700 }),
        },
      ],
    },
    async (t, e) => {
      const check = async (flag: string, p: string, asNobody = false): Promise<boolean> => {
        const cmd = asNobody ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--', 'test'] : ['test'];
        const r = await sh(cmd[0]!, ...cmd.slice(1), flag, e.m(p));
        return r.code === 0;
      };
      // root
      t.true(await check('-r', 'rw'));
      t.true(await check('-w', 'rw'));
      t.false(await check('-x', 'rw'));
      t.true(await check('-x', 'exe'));
      t.true(await check('-r', 'noperm'));
      t.true(await check('-w', 'noperm'));
      t.false(await check('-x', 'noperm'));
      t.true(await check('-x', 'd'));
      t.true(await check('-e', 'd/in'));
      t.false(await check('-e', 'missing'));
      // another user
      t.true(await check('-r', 'rw', true));
      t.false(await check('-w', 'rw', true));
      t.true(await check('-x', 'exe', true));
      t.false(await check('-r', 'private', true));
      t.false(await check('-w', 'd', true));
      t.true(await check('-r', 'd/in', true));
      t.false(await check('-e', 'closed/in', true)); // no search permission on closed/
      const denied = await sh('setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--', 'cat', e.m('private'));
      t.is(denied.errno, 'EACCES', denied.stderr);
      const mk = await sh('setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--', 'touch', e.m('d/new'));
      t.is(mk.errno, 'EACCES', mk.stderr);
      t.deepEqual(listTree(e.u()), []); // access checks copy nothing up
    },
    { prepare: (e) => fs.chmodSync(e.dir, 0o755) },
  ),
);

test(
  'read-only union (no upperdir): reads work, every change fails with EROFS',
  withLayers(
    { lowers: [{ a: file('a'), d: dir({ x: file('x') }) }, { b: file('b') }] },
    async (t, e) => {
      t.deepEqual(await names(e.m()), ['a', 'b', 'd']);
      t.is(await read(e.m('b')), 'b');
      await t.throwsAsync(fsp.writeFile(e.m('new'), 'x'), { code: 'EROFS' });
      await t.throwsAsync(fsp.writeFile(e.m('a'), 'x'), { code: 'EROFS' });
      await t.throwsAsync(fsp.unlink(e.m('a')), { code: 'EROFS' });
      await t.throwsAsync(fsp.mkdir(e.m('nd')), { code: 'EROFS' });
      await t.throwsAsync(fsp.chmod(e.m('d'), 0o700), { code: 'EROFS' });
      await t.throwsAsync(fsp.rename(e.m('a'), e.m('c')), { code: 'EROFS' });
      t.false((await sh('test', '-w', e.m('a'))).code === 0);
      t.is(await read(e.m('a')), 'a');
      t.deepEqual(listTree(e.u()), []);
    },
    { noUpper: true },
  ),
);
