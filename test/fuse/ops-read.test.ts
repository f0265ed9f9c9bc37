// Every filesystem operation through a real mount: getattr, readdir, open / read.
// How these tests work and what they share: _ops.ts.

import test from 'ava';
import * as fs from 'node:fs';
import { dir, fifo, file, hardlink, opaqueDir, symlink, whiteout, type LayerSet } from '../diff/layers.ts';
import { GID, TARGET, UID, listTree, mode, names, sh, sha256, shOk, withLayers } from './_env.ts';
import { fsp, S, stat, read, attrs, bigContent } from './_ops.ts';

// ============================================================================ getattr

test(
  'getattr: lower, upper and merged entries report the attributes of the layer that serves them',
  withLayers(
    {
      lowers: [
        {
          lf: file('lower file\n', { mode: 0o640, uid: UID, gid: GID, mtime: 1_600_000_000 }),
          lx: file('#!/bin/sh\n', { mode: 0o4755 }),
          ld: dir({ in: file('x') }, { mode: 0o710, uid: UID, gid: GID }),
          ls: symlink('lf', { uid: UID, gid: GID }),
          lp: fifo({ mode: 0o600, uid: 7, gid: 8 }),
          md: dir({ a: file('a') }, { mode: 0o755 }),
          mm: dir({ top: file('t') }, { mode: 0o751, uid: 11, gid: 12 }),
          shadow: file('lower version, longer', { mode: 0o644 }),
        },
        {
          md: dir({ b: file('b') }, { mode: 0o700 }),
          mm: dir({ bottom: file('b') }, { mode: 0o700, uid: 13, gid: 14 }),
          deep: file('from the bottom layer', { mode: 0o604, uid: 21, gid: 22 }),
          shadow: file('bottom', { mode: 0o600 }),
        },
      ],
      upper: {
        uf: file('upper!', { mode: 0o600, uid: 42, gid: 43 }),
        md: dir({ c: file('cc') }, { mode: 0o750, uid: 7, gid: 8 }),
        shadow: file('up', { mode: 0o666, uid: 3, gid: 4 }),
      },
    },
    async (t, e) => {
      const upperBefore = listTree(e.u());
      const expectFrom = async (name: string, real: string) => {
        t.deepEqual(attrs(await stat(e.m(name))), attrs(fs.lstatSync(real, { bigint: true })), name);
      };
      await expectFrom('lf', e.l(0, 'lf'));
      await expectFrom('lx', e.l(0, 'lx'));
      await expectFrom('ld', e.l(0, 'ld'));
      await expectFrom('ls', e.l(0, 'ls'));
      await expectFrom('lp', e.l(0, 'lp'));
      await expectFrom('deep', e.l(1, 'deep'));
      await expectFrom('uf', e.u('uf'));
      await expectFrom('shadow', e.u('shadow')); // upper hides both lowers
      await expectFrom('md', e.u('md')); // merged dir: the upper's attributes
      await expectFrom('mm', e.l(0, 'mm')); // dir merged from two lowers: the top-most one's
      await expectFrom('md/b', e.l(1, 'md/b'));

      // The spot checks the generic comparison above relies on.
      const lf = await stat(e.m('lf'));
      t.is(Number(lf.mode) & 0o7777, 0o640);
      t.is(Number(lf.uid), UID);
      t.is(Number(lf.gid), GID);
      t.is(lf.size, 11n);
      t.is(lf.mtimeNs, 1_600_000_000n * S);
      t.true(lf.isFile());
      t.is(Number((await stat(e.m('lx'))).mode) & 0o7777, 0o4755);
      t.true((await stat(e.m('ls'))).isSymbolicLink());
      t.true((await stat(e.m('lp'))).isFIFO());
      t.true((await stat(e.m('md'))).isDirectory());
      t.is(Number((await stat(e.m('md'))).uid), 7);
      t.is(Number((await stat(e.m('shadow'))).size), 2);
      // A merged directory reports one link (as overlayfs does), so tools do not take nlink-2
      // for its number of subdirectories.
      t.is((await stat(e.m('md'))).nlink, 1n);
      // stat() through a symlink reaches its target's attributes (resolved by the kernel).
      t.is((await fsp.stat(e.m('ls'), { bigint: true })).size, 11n);

      await t.throwsAsync(stat(e.m('nope')), { code: 'ENOENT' });
      await t.throwsAsync(stat(e.m('lf/below')), { code: 'ENOTDIR' });
      // Looking things up never copies anything up.
      t.deepEqual(listTree(e.u()), upperBefore);
    },
  ),
);

test(
  'getattr: hard-linked lower files show their link count; distinct files have distinct inode numbers',
  withLayers(
    { lowers: [{ a: file('same'), b: hardlink('a'), c: file('other') }] },
    async (t, e) => {
      const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => stat(e.m(n))));
      t.is(a!.nlink, 2n);
      t.is(b!.nlink, 2n);
      t.is(c!.nlink, 1n);
      t.is(a!.ino, b!.ino);
      t.not(a!.ino, c!.ino);
      // stable across lookups
      t.is((await stat(e.m('c'))).ino, c!.ino);
    },
  ),
);

// ============================================================================ readdir

test(
  'readdir: names merged across layers, each once; whiteouts and opaque dirs hide lower names',
  withLayers(
    {
      lowers: [
        {
          a: file('a'),
          b: file('b'),
          c: whiteout(), // hides lower1's c
          sub: dir({ z: file('z'), dup: file('from lower0') }),
          wd: dir(),
        },
        {
          c: file('c'),
          d: file('d'),
          e: file('e'),
          sub: dir({ y: file('y'), dup: file('from lower1'), gone: file('g') }),
          od: dir({ hidden: file('h') }),
        },
      ],
      upper: {
        u: file('u'),
        e: whiteout(),
        sub: dir({ x: file('x'), gone: whiteout() }),
        od: opaqueDir('kernel', { o: file('o') }),
      },
    },
    async (t, e) => {
      t.deepEqual(await names(e.m()), ['a', 'b', 'd', 'od', 'sub', 'u', 'wd']);
      t.deepEqual(await names(e.m('sub')), ['dup', 'x', 'y', 'z']);
      t.is(await read(e.m('sub/dup')), 'from lower0');
      t.deepEqual(await names(e.m('od')), ['o']);
      t.deepEqual(await names(e.m('wd')), []);
      // Whited-out names are gone for lookups too.
      await t.throwsAsync(stat(e.m('c')), { code: 'ENOENT' });
      await t.throwsAsync(stat(e.m('e')), { code: 'ENOENT' });
      await t.throwsAsync(stat(e.m('sub/gone')), { code: 'ENOENT' });
      await t.throwsAsync(stat(e.m('od/hidden')), { code: 'ENOENT' });

      // d_type of every entry matches its type.
      const types = Object.fromEntries(
        (await fsp.readdir(e.m(), { withFileTypes: true })).map((d) => [d.name, d.isDirectory() ? 'dir' : d.isFile() ? 'file' : '?']),
      );
      t.deepEqual(types, { a: 'file', b: 'file', d: 'file', od: 'dir', sub: 'dir', u: 'file', wd: 'dir' });

      // `ls -a` shows . and .. first, and nothing of the whiteouts.
      const ls = (await shOk('ls', '-a1', '--', e.m())).trim().split('\n');
      t.deepEqual(ls, ['.', '..', 'a', 'b', 'd', 'od', 'sub', 'u', 'wd']);
      const lsSub = (await shOk('ls', '-a1', '--', e.m('sub'))).trim().split('\n');
      t.deepEqual(lsSub, ['.', '..', 'dup', 'x', 'y', 'z']);

      await t.throwsAsync(fsp.readdir(e.m('a')), { code: 'ENOTDIR' });
      await t.throwsAsync(fsp.readdir(e.m('e')), { code: 'ENOENT' });
      // No listing copied anything up.
      t.deepEqual(listTree(e.u()), ['e', 'od', 'od/o', 'sub', 'sub/gone', 'sub/x', 'u']);
    },
  ),
);

test(
  'readdir: .wh.* names in a lower are never listed and act as OCI whiteouts (layerfs extension)',
  withLayers(
    {
      lowers: [
        { '.wh.d': file(''), keep: file('k'), sub: dir({ '.wh..wh..opq': file(''), mine: file('m') }) },
        { d: file('d'), other: file('o'), sub: dir({ below: file('b') }) },
      ],
    },
    async (t, e) => {
      if (TARGET === 'kernel') {
        // The kernel knows only its own format: it shows these names as ordinary files.
        t.deepEqual(await names(e.m()), ['.wh.d', 'd', 'keep', 'other', 'sub']);
        return;
      }
      t.deepEqual(await names(e.m()), ['keep', 'other', 'sub']);
      t.deepEqual(await names(e.m('sub')), ['mine']);
      await t.throwsAsync(stat(e.m('.wh.d')), { code: 'ENOENT' });
      await t.throwsAsync(stat(e.m('d')), { code: 'ENOENT' });
      await t.throwsAsync(stat(e.m('sub/below')), { code: 'ENOENT' });
    },
  ),
);

test(
  'readdir: a large directory merged from three layers lists every name exactly once',
  withLayers(
    () => {
      const l0: Record<string, ReturnType<typeof file>> = {};
      const l1: Record<string, ReturnType<typeof file>> = {};
      const up: Record<string, ReturnType<typeof file>> = {};
      for (let i = 0; i < 700; i++) {
        const n = `entry-with-a-rather-long-name-${String(i).padStart(4, '0')}`;
        if (i % 3 === 0) l0[n] = file('0');
        if (i % 3 === 1 || i % 5 === 0) l1[n] = file('1');
        if (i % 3 === 2 || i % 7 === 0) up[n] = file('u');
      }
      return { lowers: [{ big: dir(l0) }, { big: dir(l1) }], upper: { big: dir(up) } };
    },
    async (t, e) => {
      const got = await fsp.readdir(e.m('big'));
      t.is(got.length, 700);
      t.is(new Set(got).size, 700);
      t.is(await read(e.m('big/entry-with-a-rather-long-name-0000')), 'u'); // in all three
      t.is(await read(e.m('big/entry-with-a-rather-long-name-0003')), '0'); // lower0 and lower1
    },
  ),
);

// ============================================================================ open / read

test(
  'read of lower files (whole, at offsets, via symlink) never copies up: the upper stays empty',
  withLayers(
    (): LayerSet => ({
      lowers: [
        {
          small: file('hello lower\n', { xattrs: { 'user.k': 'v' } }),
          sub: dir({ inner: file('inner') }, { mode: 0o700 }),
          link: symlink('small'),
        },
        { big: file(bigContent) },
      ],
    }),
    async (t, e) => {
      t.is(await read(e.m('small')), 'hello lower\n');
      t.is(await read(e.m('link')), 'hello lower\n');
      t.is(await read(e.m('sub/inner')), 'inner');
      t.is(sha256(await fsp.readFile(e.m('big'))), sha256(bigContent));
      const fh = await fsp.open(e.m('big'), 'r');
      try {
        const buf = Buffer.alloc(4096);
        const { bytesRead } = await fh.read(buf, 0, 4096, 1_000_003);
        t.is(bytesRead, 4096);
        t.true(buf.equals(bigContent.subarray(1_000_003, 1_000_003 + 4096)));
        // reading past the end
        const tail = await fh.read(Buffer.alloc(100), 0, 100, bigContent.length - 10);
        t.is(tail.bytesRead, 10);
      } finally {
        await fh.close();
      }
      // A read-only open with extra flags, readlink, xattrs, access (even W_OK), a recursive
      // listing: none of them may touch the upper.
      await (await fsp.open(e.m('small'), fs.constants.O_RDONLY | fs.constants.O_NOATIME)).close();
      t.is(await fsp.readlink(e.m('link')), 'small');
      t.is((await shOk('getfattr', '--only-values', '-n', 'user.k', e.m('small'))), 'v');
      await fsp.access(e.m('small'), fs.constants.R_OK | fs.constants.W_OK);
      await shOk('ls', '-laR', e.m());
      await shOk('sha256sum', e.m('small'), e.m('big'), e.m('sub/inner'));
      t.deepEqual(listTree(e.u()), []);
    },
  ),
);

test(
  'a descriptor opened read-only on a lower file follows the copy-up (and a rename) of that file',
  withLayers({ lowers: [{ lf: file('original'), k: file('kkkkkkkk') }] }, async (t, e) => {
    const b = Buffer.alloc(8);
    const ro = await fsp.open(e.m('lf'), 'r');
    try {
      await ro.read(b, 0, 8, 0);
      t.is(b.toString(), 'original');
      const rw = await fsp.open(e.m('lf'), 'r+'); // copies up
      await rw.write('ORIGINAL', 0);
      await rw.close();
      t.is(fs.readFileSync(e.u('lf'), 'utf8'), 'ORIGINAL');
      await ro.read(b, 0, 8, 0);
      t.is(b.toString(), 'ORIGINAL');
    } finally {
      await ro.close();
    }

    const k = await fsp.open(e.m('k'), 'r');
    try {
      await fsp.chmod(e.m('k'), 0o600); // copy-up under the open descriptor
      await k.read(b, 0, 8, 0);
      t.is(b.toString(), 'kkkkkkkk');
      await fsp.rename(e.m('k'), e.m('k2'));
      await fsp.writeFile(e.m('k2'), 'KKKKKKKK');
      await k.read(b, 0, 8, 0);
      t.is(b.toString(), 'KKKKKKKK');
    } finally {
      await k.close();
    }
  }),
);
