// Every filesystem operation through a real mount: xattrs.
// How these tests work and what they share: _ops.ts.

import test from 'ava';
import * as fs from 'node:fs';
import { dir, file, opaqueDir } from '../diff/layers.ts';
import { TARGET, kindOf, listTree, names, opaqueOf, sh, shOk, withLayers } from './_env.ts';
import { read } from './_ops.ts';

// ============================================================================ xattrs

test(
  'user xattrs: read without copy-up; set, list and remove (with copy-up)',
  withLayers(
    {
      lowers: [
        {
          lf: file('content', { xattrs: { 'user.a': 'one' } }),
          other: file('o', { xattrs: { 'user.keep': 'k' } }),
          ld: dir({ c: file('c') }, { xattrs: { 'user.d': 'dir' } }),
        },
      ],
    },
    async (t, e) => {
      t.is(await shOk('getfattr', '--only-values', '-n', 'user.a', e.m('lf')), 'one');
      t.regex(await shOk('getfattr', '-d', e.m('lf')), /user\.a="one"/);
      t.deepEqual(listTree(e.u()), []); // reading copied nothing up

      await shOk('setfattr', '-n', 'user.b', '-v', 'two', e.m('lf'));
      const dump = await shOk('getfattr', '-d', '--absolute-names', e.m('lf'));
      t.regex(dump, /user\.a="one"/);
      t.regex(dump, /user\.b="two"/);
      t.is(await shOk('getfattr', '--only-values', '-n', 'user.b', e.u('lf')), 'two');
      t.is(await shOk('getfattr', '--only-values', '-n', 'user.a', e.u('lf')), 'one');
      t.is(fs.readFileSync(e.u('lf'), 'utf8'), 'content');

      await shOk('setfattr', '-n', 'user.b', '-v', 'changed', e.m('lf'));
      t.is(await shOk('getfattr', '--only-values', '-n', 'user.b', e.m('lf')), 'changed');

      await shOk('setfattr', '-x', 'user.a', e.m('lf'));
      const gone = await sh('getfattr', '-n', 'user.a', e.m('lf'));
      t.is(gone.errno, 'ENODATA', gone.stderr);
      t.notRegex(await shOk('getfattr', '-d', e.m('lf')), /user\.a/);

      // removing a name that does not exist fails, and copies nothing up
      const rm = await sh('setfattr', '-x', 'user.nothere', e.m('other'));
      t.is(rm.errno, 'ENODATA', rm.stderr);
      t.is(kindOf(e.u('other')), 'missing');
      // removing a lower file's xattr copies it up without the xattr
      await shOk('setfattr', '-x', 'user.keep', e.m('other'));
      t.is((await sh('getfattr', '-n', 'user.keep', e.m('other'))).errno, 'ENODATA');
      t.is((await sh('getfattr', '-n', 'user.keep', e.u('other'))).errno, 'ENODATA');

      // directories
      await shOk('setfattr', '-n', 'user.more', '-v', 'm', e.m('ld'));
      t.is(await shOk('getfattr', '--only-values', '-n', 'user.d', e.m('ld')), 'dir');
      t.is(await shOk('getfattr', '--only-values', '-n', 'user.more', e.u('ld')), 'm');
      t.deepEqual(await names(e.m('ld')), ['c']);

      // a trusted.* (not overlay) xattr works for root
      await shOk('setfattr', '-n', 'trusted.mine', '-v', 'z', e.m('lf'));
      t.is(await shOk('getfattr', '--only-values', '-n', 'trusted.mine', e.m('lf')), 'z');

      const none = await sh('getfattr', '-n', 'user.none', e.m('ld'));
      t.is(none.errno, 'ENODATA', none.stderr);
    },
  ),
);

// What the kernel does here changed in Linux 6.7 ("escaped" overlay xattrs, for nested
// overlays): before, getting or setting trusted.overlay.* through an overlay failed with
// EOPNOTSUPP; since, a get of the real marker gives ENODATA and a set succeeds but is stored
// escaped (trusted.overlay.overlay.NAME in the upper), so it never acts as a marker. layerfs
// refuses the set with EOPNOTSUPP (the pre-6.7 behaviour). What both must guarantee — and
// what is asserted for both — is that the markers are invisible and that nothing done
// through the mount can create, change or remove a real marker.
test(
  'overlay-private xattrs (trusted.overlay.*) are invisible through the mount and cannot be set or removed',
  withLayers(
    {
      lowers: [{ ld: dir({ l: file('l') }), lf: file('f') }, { od: dir({ hidden: file('h') }), ld: dir({ l2: file('l2') }) }],
      upper: { od: opaqueDir('kernel', { o: file('o') }) },
    },
    async (t, e) => {
      // the opaque marker is there on disk ...
      t.is(await opaqueOf(e.u('od')), 'y');
      // ... and not visible through the mount
      const dump = await shOk('getfattr', '-d', '-m', '-', '--absolute-names', e.m('od'));
      t.notRegex(dump, /overlay/);
      const get = await sh('getfattr', '-n', OPAQUE, e.m('od'));
      t.not(get.code, 0);
      t.true(get.errno === 'EOPNOTSUPP' || get.errno === 'ENODATA', get.stderr);

      const set = await sh('setfattr', '-n', OPAQUE, '-v', 'y', e.m('ld'));
      const set2 = await sh('setfattr', '-n', 'trusted.overlay.anything', '-v', 'x', e.m('lf'));
      const rm = await sh('setfattr', '-x', OPAQUE, e.m('od'));
      if (TARGET === 'layerfs') {
        t.is(set.errno, 'EOPNOTSUPP', set.stderr);
        t.is(set2.errno, 'EOPNOTSUPP', set2.stderr);
        t.is(rm.errno, 'EOPNOTSUPP', rm.stderr);
        // a refused change copies nothing up
        t.is(kindOf(e.u('ld')), 'missing');
        t.is(kindOf(e.u('lf')), 'missing');
      } else {
        t.not(rm.code, 0);
      }
      // Whatever the answer, no real marker was made or removed: ld still merges both lowers,
      // od is still opaque.
      t.not(await opaqueOf(e.u('ld')), 'y');
      t.deepEqual(await names(e.m('ld')), ['l', 'l2']);
      t.is(await opaqueOf(e.u('od')), 'y');
      t.deepEqual(await names(e.m('od')), ['o']);
      t.notRegex(await shOk('getfattr', '-d', '-m', '-', '--absolute-names', e.m('od')), /opaque/);
    },
  ),
);

const OPAQUE = 'trusted.overlay.opaque';
