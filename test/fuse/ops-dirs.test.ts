// Every filesystem operation through a real mount: mkdir, rmdir, rename.
// How these tests work and what they share: _ops.ts.

import test from 'ava';
import * as fs from 'node:fs';
import { dir, file, symlink, whiteout } from '../diff/layers.ts';
import { GID, UID, kindOf, listTree, mode, names, opaqueOf, shOk, withLayers } from './_env.ts';
import { fsp, S, stat, read } from './_ops.ts';

// ============================================================================ mkdir

test(
  'mkdir: new, existing, inside lower dirs (parents copied up with their metadata), over a whiteout (opaque)',
  withLayers(
    {
      lowers: [
        {
          p: dir(
            { q: dir({ old: file('o') }, { mode: 0o700, uid: 42, gid: 43 }) },
            { mode: 0o751, uid: UID, gid: GID, mtime: 1_500_000_000, xattrs: { 'user.tag': 'p' } },
          ),
          gone: dir({ secret: file('s'), nested: dir({ deeper: file('d') }) }),
          lf: file('f'),
        },
      ],
    },
    async (t, e) => {
      await fsp.mkdir(e.m('nd'), { mode: 0o750 });
      t.true((await stat(e.m('nd'))).isDirectory());
      t.is(Number((await stat(e.m('nd'))).mode) & 0o7777, 0o750);
      t.is(kindOf(e.u('nd')), 'dir');
      t.is(mode(e.u('nd')), 0o750);

      await t.throwsAsync(fsp.mkdir(e.m('nd')), { code: 'EEXIST' });
      await t.throwsAsync(fsp.mkdir(e.m('lf')), { code: 'EEXIST' });
      await t.throwsAsync(fsp.mkdir(e.m('p')), { code: 'EEXIST' });
      await t.throwsAsync(fsp.mkdir(e.m('lf/x')), { code: 'ENOTDIR' });
      await t.throwsAsync(fsp.mkdir(e.m('nope/x')), { code: 'ENOENT' });

      await fsp.mkdir(e.m('p/q/new'));
      t.deepEqual(await names(e.m('p/q')), ['new', 'old']);
      // The parents in the upper carry their lower mode, owner, xattrs; p was not itself
      // changed, so its times are the lower ones too.
      const p = fs.lstatSync(e.u('p'), { bigint: true });
      t.is(Number(p.mode) & 0o7777, 0o751);
      t.is(Number(p.uid), UID);
      t.is(Number(p.gid), GID);
      t.is(p.mtimeNs, 1_500_000_000n * S);
      t.is(await shOk('getfattr', '--only-values', '-n', 'user.tag', e.u('p')), 'p');
      const q = fs.lstatSync(e.u('p/q'));
      t.is(q.mode & 0o7777, 0o700);
      t.is(q.uid, 42);
      t.is(q.gid, 43);
      t.deepEqual(fs.readdirSync(e.u('p/q')), ['new']);
      // through the mount as well
      t.is(Number((await stat(e.m('p'))).mode) & 0o7777, 0o751);
      t.is((await stat(e.m('p'))).mtimeNs, 1_500_000_000n * S);

      // Over a whiteout: the new directory is opaque, the old lower contents stay hidden.
      await shOk('rm', '-rf', e.m('gone'));
      t.is(kindOf(e.u('gone')), 'whiteout');
      await fsp.mkdir(e.m('gone'));
      t.deepEqual(await names(e.m('gone')), []);
      await t.throwsAsync(stat(e.m('gone/secret')), { code: 'ENOENT' });
      t.is(kindOf(e.u('gone')), 'dir');
      t.is(await opaqueOf(e.u('gone')), 'y');
      await fsp.mkdir(e.m('gone/nested'));
      t.deepEqual(await names(e.m('gone/nested')), []);
    },
  ),
);

// ============================================================================ rmdir

test(
  'rmdir: ENOTEMPTY while entries are visible; whiteout after removing a lower dir; upper-only dir vanishes',
  withLayers(
    {
      lowers: [
        {
          full: dir({ f: file('f') }),
          empty: dir(),
          md: dir({ x: file('x'), y: file('y') }),
          allwh: dir({ x: file('x') }),
          lf: file('f'),
        },
      ],
      upper: {
        md: dir({ x: whiteout() }),
        allwh: dir({ x: whiteout() }),
      },
    },
    async (t, e) => {
      await t.throwsAsync(fsp.rmdir(e.m('full')), { code: 'ENOTEMPTY' });
      await t.throwsAsync(fsp.rmdir(e.m('md')), { code: 'ENOTEMPTY' });
      t.is(kindOf(e.u('full')), 'missing'); // a failed rmdir copies nothing up

      await fsp.rmdir(e.m('empty'));
      await t.throwsAsync(stat(e.m('empty')), { code: 'ENOENT' });
      t.is(kindOf(e.u('empty')), 'whiteout');

      // Only whited-out entries left: empty as far as the union is concerned.
      await fsp.rmdir(e.m('allwh'));
      await t.throwsAsync(stat(e.m('allwh')), { code: 'ENOENT' });
      t.is(kindOf(e.u('allwh')), 'whiteout');

      await fsp.unlink(e.m('full/f'));
      await fsp.rmdir(e.m('full'));
      t.is(kindOf(e.u('full')), 'whiteout');

      await fsp.unlink(e.m('md/y'));
      await fsp.rmdir(e.m('md'));
      t.is(kindOf(e.u('md')), 'whiteout');

      await fsp.mkdir(e.m('ud'));
      await fsp.mkdir(e.m('ud/inner'));
      await fsp.rmdir(e.m('ud/inner'));
      await fsp.rmdir(e.m('ud'));
      t.is(kindOf(e.u('ud')), 'missing');

      t.deepEqual(await names(e.m()), ['lf']);
      await t.throwsAsync(fsp.rmdir(e.m('lf')), { code: 'ENOTDIR' });
      await t.throwsAsync(fsp.rmdir(e.m('nope')), { code: 'ENOENT' });
      t.deepEqual(listTree(e.u()).sort(), ['allwh', 'empty', 'full', 'md']);
    },
  ),
);

// ============================================================================ rename

test(
  'rename of files: lower file moved (whiteout left behind), over another lower file, into a lower dir',
  withLayers(
    {
      lowers: [
        {
          lf: file('lower file', { mode: 0o640, uid: UID, gid: GID }),
          victim: file('to be replaced'),
          ls: symlink('some/where'),
          ld: dir({ inside: file('i') }, { mode: 0o750, uid: UID, gid: GID }),
        },
      ],
    },
    async (t, e) => {
      await fsp.rename(e.m('lf'), e.m('moved'));
      await t.throwsAsync(stat(e.m('lf')), { code: 'ENOENT' });
      t.is(await read(e.m('moved')), 'lower file');
      t.is(kindOf(e.u('lf')), 'whiteout');
      t.is(fs.readFileSync(e.u('moved'), 'utf8'), 'lower file');
      t.is(mode(e.u('moved')), 0o640);
      t.is(fs.lstatSync(e.u('moved')).uid, UID);

      await fsp.writeFile(e.m('newf'), 'new');
      await fsp.rename(e.m('newf'), e.m('victim'));
      t.is(await read(e.m('victim')), 'new');
      t.is(kindOf(e.u('newf')), 'missing'); // upper-only source: no whiteout needed
      await t.throwsAsync(stat(e.m('newf')), { code: 'ENOENT' });

      await fsp.rename(e.m('ls'), e.m('ld/ls2'));
      t.is(await fsp.readlink(e.m('ld/ls2')), 'some/where');
      t.is(kindOf(e.u('ls')), 'whiteout');
      t.is(mode(e.u('ld')), 0o750);
      t.deepEqual(await names(e.m('ld')), ['inside', 'ls2']);

      // rename onto itself, and of a missing source
      await fsp.rename(e.m('victim'), e.m('victim'));
      t.is(await read(e.m('victim')), 'new');
      await t.throwsAsync(fsp.rename(e.m('nope'), e.m('x')), { code: 'ENOENT' });
      await t.throwsAsync(fsp.rename(e.m('victim'), e.m('ld')), { code: 'EISDIR' });

      t.deepEqual(await names(e.m()), ['ld', 'moved', 'victim']);
    },
  ),
);

test(
  'rename of directories: lower/merged dir gives EXDEV, mv copies it; upper-only dir is renamed',
  withLayers(
    {
      lowers: [
        {
          ld: dir({ a: file('A'), sub: dir({ b: file('B') }) }, { mode: 0o750, uid: UID, gid: GID }),
          md: dir({ l: file('l') }),
          old: dir({ secret: file('must stay hidden') }),
        },
      ],
      upper: { md: dir({ u: file('u') }) },
    },
    async (t, e) => {
      await t.throwsAsync(fsp.rename(e.m('ld'), e.m('ld2')), { code: 'EXDEV' });
      await t.throwsAsync(fsp.rename(e.m('md'), e.m('md2')), { code: 'EXDEV' });
      t.deepEqual(await names(e.m()), ['ld', 'md', 'old']);

      // mv falls back to copy + delete.
      await shOk('mv', e.m('ld'), e.m('ld2'));
      await t.throwsAsync(stat(e.m('ld')), { code: 'ENOENT' });
      t.is(await read(e.m('ld2/a')), 'A');
      t.is(await read(e.m('ld2/sub/b')), 'B');
      t.is(kindOf(e.u('ld')), 'whiteout');
      t.is(Number((await stat(e.m('ld2'))).mode) & 0o7777, 0o750);

      // An upper-only directory (with contents) is renamed in place.
      await fsp.mkdir(e.m('nd'));
      await fsp.writeFile(e.m('nd/f'), 'nd file');
      const ino = fs.lstatSync(e.u('nd'), { bigint: true }).ino;
      await fsp.rename(e.m('nd'), e.m('nd2'));
      t.is(await read(e.m('nd2/f')), 'nd file');
      t.is(kindOf(e.u('nd')), 'missing');
      t.is(fs.lstatSync(e.u('nd2'), { bigint: true }).ino, ino); // really renamed, not copied

      // ... also onto the name of a removed lower directory: the lower contents stay hidden.
      await shOk('rm', '-rf', e.m('old'));
      await fsp.rename(e.m('nd2'), e.m('old'));
      t.deepEqual(await names(e.m('old')), ['f']);
      await t.throwsAsync(stat(e.m('old/secret')), { code: 'ENOENT' });

      t.deepEqual(await names(e.m()), ['ld2', 'md', 'old']);
    },
  ),
);
