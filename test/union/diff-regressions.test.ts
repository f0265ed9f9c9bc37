// Regressions found by the differential harness (test/diff/), each pinned on plain directories.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { assertWorkEmpty, dir, env, file, guard, isWhiteout, lstatOrNull, names, readAll } from './_helpers.ts';

/** Kernel 6.8+ xattr whiteout: an empty file with <prefix>whiteout; its dir is marked opaque=x. */
function xwhiteout(root: string, rel: string, prefix = 'trusted.overlay.'): void {
  const abs = file(root, rel, '');
  sys.lsetxattr(abs, prefix + 'whiteout', 'y');
  sys.lsetxattr(path.dirname(abs), prefix + 'opaque', 'x');
}

// Found by the scenario 'xattr whiteouts (trusted.overlay.whiteout) in a lower hide a file and a dir':
// layerfs showed the empty marker files as regular files.
test('xattr whiteouts in a lower hide the names below them; opaque=x is not opaque', async (t) => {
  const e = env(t, 2);
  xwhiteout(e.lowers[0]!, 'd/f');
  xwhiteout(e.lowers[0]!, 'd/sub');
  file(e.lowers[0]!, 'd/keep', 'keep');
  file(e.lowers[1]!, 'd/f', 'hidden');
  file(e.lowers[1]!, 'd/sub/x', 'x');
  file(e.lowers[1]!, 'd/other', 'other'); // visible: opaque=x does not make d opaque
  const check = guard(t, ...e.lowers);
  const u = e.union();
  t.deepEqual(names(u, '/d'), ['keep', 'other']);
  t.is(u.lookup('/d/f'), null);
  t.is(u.lookup('/d/sub'), null);
  t.is(await readAll(u, '/d/other'), 'other');
  // Creating over an xattr whiteout needs no upper whiteout; a dir made there is opaque.
  await u.mkdir('/d/sub', 0o755);
  t.deepEqual(names(u, '/d/sub'), []);
  // Removing what was created leaves a whiteout only where a lower still shows the name:
  // nothing shows through an xattr whiteout, so none is needed.
  await u.rmdir('/d/sub');
  t.is(lstatOrNull(path.join(e.upper, 'd/sub')), null);
  t.deepEqual(names(u, '/d'), ['keep', 'other']);
  // Removing a visible lower file does need one.
  await u.unlink('/d/other');
  t.true(isWhiteout(path.join(e.upper, 'd/other')));
  assertWorkEmpty(t, e);
  check();
});

test('xattr whiteouts: user.overlay.* under userxattr, and a whiteout at a lower root', async (t) => {
  const e = env(t, 2);
  xwhiteout(e.lowers[0]!, 'f', 'user.overlay.');
  xwhiteout(e.lowers[0]!, 'g'); // trusted.*: not a marker under userxattr
  file(e.lowers[1]!, 'f', 'hidden');
  file(e.lowers[1]!, 'g', 'g below');
  const u = e.union({ userxattr: true });
  t.deepEqual(names(u, '/'), ['g']);
  t.is(u.getattr('/g').size, 0, 'the unmarked empty file is served as it is');
  t.is(e.union().lookup('/g'), null, 'without userxattr the trusted marker counts');
});

test('an empty file with the whiteout xattr in an unmarked dir: hidden from lookup, listed (as the kernel does)', async (t) => {
  const e = env(t, 2);
  const abs = file(e.lowers[0]!, 'd/x', '');
  sys.lsetxattr(abs, 'trusted.overlay.whiteout', 'y');
  file(e.lowers[1]!, 'd/x', 'below');
  const u = e.union();
  t.is(u.lookup('/d/x'), null);
  t.deepEqual(names(u, '/d'), ['x']);
});

// Found by 'rename matrix: lower-dir source': renaming a lower dir onto a non-empty dir gave
// ENOTEMPTY where the kernel says EXDEV (it refuses to move the dir before looking at the target).
test('rename of a lower or merged dir onto a non-empty dir: EXDEV, not ENOTEMPTY', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'src/inner', 'i');
  file(e.lowers[0]!, 'dst/x', 'x');
  dir(e.upper, 'm');
  file(e.upper, 'm/u', 'u');
  file(e.lowers[0]!, 'm/l', 'l');
  file(e.upper, 'up/inner', 'i');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await t.throwsAsync(u.rename('/src', '/dst'), { code: 'EXDEV' });
  await t.throwsAsync(u.rename('/m', '/dst'), { code: 'EXDEV' });
  // Type mismatches are the VFS's checks and come first; an upper-only dir gets ENOTEMPTY.
  await t.throwsAsync(u.rename('/src', '/m/u'), { code: 'ENOTDIR' });
  await t.throwsAsync(u.rename('/up', '/dst'), { code: 'ENOTEMPTY' });
  t.deepEqual(fs.readdirSync(e.upper).sort(), ['m', 'up']);
  assertWorkEmpty(t, e);
  check();
});
