// Every filesystem operation through a real mount: copy-up of parents.
// How these tests work and what they share: _ops.ts.

import test from 'ava';
import * as fs from 'node:fs';
import { dir, file } from '../diff/layers.ts';
import * as sys from '../../src/sys/index.ts';
import { GID, UID, listTree, mode, names, shOk, withLayers } from './_env.ts';
import { fsp, S, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, read } from './_ops.ts';

// ============================================================================ copy-up of parents

test(
  'copy-up of a deep lower file places every parent in the upper with its lower mode, owner and times',
  withLayers(
    {
      lowers: [
        {
          a: dir(
            { b: dir({ c: dir({ f: file('deep', { mode: 0o604, uid: 3, gid: 4 }) }, { mode: 0o1777, uid: 5, gid: 6, mtime: 1_300_000_003 }) }, { mode: 0o2750, uid: 7, gid: 8, mtime: 1_300_000_002 }) },
            { mode: 0o711, uid: UID, gid: GID, mtime: 1_300_000_001, xattrs: { 'user.lvl': 'a' } },
          ),
        },
        { a: dir({ b: dir({ fromlow1: file('l1') }, { mode: 0o700, uid: 99, gid: 99 }) }, { mode: 0o700 }) },
      ],
    },
    async (t, e) => {
      await fsp.appendFile(e.m('a/b/c/f'), '+more');
      t.is(await read(e.m('a/b/c/f')), 'deep+more');
      t.is(fs.readFileSync(e.u('a/b/c/f'), 'utf8'), 'deep+more');
      const expect: [string, number, number, number, bigint][] = [
        ['a', 0o711, UID, GID, 1_300_000_001n],
        ['a/b', 0o2750, 7, 8, 1_300_000_002n],
        ['a/b/c', 0o1777, 5, 6, 1_300_000_003n],
      ];
      for (const [p, m, uid, gid, mtime] of expect) {
        const st = fs.lstatSync(e.u(p), { bigint: true });
        t.is(Number(st.mode) & 0o7777, m, `${p} mode`);
        t.is(Number(st.uid), uid, `${p} uid`);
        t.is(Number(st.gid), gid, `${p} gid`);
        t.is(st.mtimeNs, mtime * S, `${p} mtime`);
      }
      const f = fs.lstatSync(e.u('a/b/c/f'));
      t.is(f.mode & 0o7777, 0o604);
      t.is(f.uid, 3);
      t.is(await shOk('getfattr', '--only-values', '-n', 'user.lvl', e.u('a')), 'a');
      // Only the path itself was copied: no siblings, no lower1 contents.
      t.deepEqual(listTree(e.u()), ['a', 'a/b', 'a/b/c', 'a/b/c/f']);
      t.deepEqual(await names(e.m('a/b')), ['c', 'fromlow1']);
    },
  ),
);

test(
  'copy-up of a sparse lower file keeps it sparse (holes are not written out)',
  withLayers(
    { lowers: [{}] },
    async (t, e) => {
      await fsp.chmod(e.m('sparse'), 0o600); // copy-up, no data change
      const up = fs.lstatSync(e.u('sparse'));
      t.is(up.size, 64 * 1024 * 1024 + 4);
      t.true(up.blocks * 512 < 1024 * 1024, `upper copy uses ${up.blocks * 512} bytes`);
      const fh = await fsp.open(e.m('sparse'), 'r');
      const b = Buffer.alloc(4);
      await fh.read(b, 0, 4, 64 * 1024 * 1024);
      await fh.close();
      t.is(b.toString(), 'tail');
      const head = Buffer.alloc(4096, 1);
      const fh2 = await fsp.open(e.m('sparse'), 'r');
      await fh2.read(head, 0, 4096, 1024 * 1024);
      await fh2.close();
      t.true(head.equals(Buffer.alloc(4096)));
    },
    {
      prepare: (e) => {
        const fd = fs.openSync(e.l(0, 'sparse'), 'w');
        fs.writeSync(fd, 'tail', 64 * 1024 * 1024);
        fs.closeSync(fd);
      },
    },
  ),
);

test(
  'fallocate, SEEK_DATA/SEEK_HOLE and copy_file_range through the mount, on lower and upper files',
  withLayers(
    { lowers: [{}] },
    async (t, e) => {
      const MiB = 1024 * 1024;
      // SEEK_DATA / SEEK_HOLE on a sparse lower file, before any copy-up: the holes show.
      const lo = fs.openSync(e.m('sparse'), 'r');
      try {
        t.is(sys.lseek(lo, 0, sys.SEEK_DATA), BigInt(4 * MiB));
        t.is(sys.lseek(lo, 4 * MiB, sys.SEEK_HOLE), BigInt(4 * MiB + 4), 'the end of the file is a hole');
        t.is(sys.lseek(lo, 4 * MiB + 4, sys.SEEK_DATA), null, 'no data from the end on: ENXIO');
      } finally {
        fs.closeSync(lo);
      }
      // fallocate: preallocate a new file, then punch a hole into it.
      const fd = fs.openSync(e.m('alloc'), 'w+');
      try {
        sys.fallocate(fd, 0, 0, 2 * MiB);
        t.is(fs.fstatSync(fd).size, 2 * MiB);
        t.true(fs.fstatSync(fd).blocks * 512 >= 2 * MiB, 'the blocks are allocated');
        fs.writeSync(fd, Buffer.alloc(2 * MiB, 7), 0, 2 * MiB, 0);
        sys.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MiB, MiB);
        t.is(fs.fstatSync(fd).size, 2 * MiB, 'KEEP_SIZE keeps the size');
        const b = Buffer.alloc(16, 1);
        fs.readSync(fd, b, 0, 16, MiB);
        t.true(b.equals(Buffer.alloc(16)), 'the punched range reads zeros');
        t.is(sys.lseek(fd, 0, sys.SEEK_HOLE), BigInt(MiB));
      } finally {
        fs.closeSync(fd);
      }
      t.is(fs.statSync(e.u('alloc')).size, 2 * MiB, 'it all landed in the upper');
      // copy_file_range from the lower file (read through the union) into a new upper file.
      const src = fs.openSync(e.m('sparse'), 'r');
      const dst = fs.openSync(e.m('copy'), 'w');
      try {
        let done = 0;
        while (done < 4) done += sys.copyFileRange(src, 4 * MiB + done, dst, 10 + done, 4 - done);
      } finally {
        fs.closeSync(src);
        fs.closeSync(dst);
      }
      const got = fs.readFileSync(e.m('copy'));
      t.is(got.length, 14);
      t.is(got.subarray(10).toString(), 'data');
      t.false(fs.existsSync(e.u('sparse')), 'reading the source copied nothing up');
    },
    {
      prepare: (e) => {
        const fd = fs.openSync(e.l(0, 'sparse'), 'w');
        fs.writeSync(fd, 'data', 4 * 1024 * 1024);
        fs.closeSync(fd);
      },
    },
  ),
);
