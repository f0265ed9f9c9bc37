// The layer builder writes exactly what the spec says, in both formats.

import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeTmp } from '../helpers/mounts.ts';
import { dumpXattrs } from '../helpers/xattr.ts';
import { buildLayer, buildLayers, dir, fifo, file, hardlink, opaqueDir, symlink, usesOci, whiteout, type Tree } from './layers.ts';

const tree: Tree = {
  f: file('content', { mode: 0o4750, uid: 12, gid: 34, xattrs: { 'user.a': 'b' }, mtime: 1_500_000_000 }),
  kw: whiteout('kernel'),
  ow: whiteout('oci'),
  kd: opaqueDir('kernel', { x: file('x') }),
  od: opaqueDir('oci', { y: file('y') }, { mode: 0o700 }),
  d: dir({ h: hardlink('f'), l: symlink('../f', { uid: 5, gid: 6 }), p: fifo({ mode: 0o600 }) }, { mode: 0o1777, uid: 1, gid: 2, mtime: 1_400_000_000 }),
};

async function xattrsOf(p: string): Promise<Record<string, string>> {
  const { xattrs } = await dumpXattrs([p]);
  const m = xattrs.get(p) ?? new Map<string, Buffer>();
  return Object.fromEntries([...m].map(([k, v]) => [k, v.toString('utf8')]));
}

function isWhiteoutDev(p: string): boolean {
  const st = fs.lstatSync(p, { bigint: true });
  return st.isCharacterDevice() && st.rdev === 0n;
}

test('as-written keeps OCI markers as files and writes kernel markers natively', async (t) => {
  const root = path.join(makeTmp(t), 'layer');
  await buildLayer(tree, root, { format: 'as-written' });
  t.deepEqual(fs.readdirSync(root).sort(), ['.wh.ow', 'd', 'f', 'kd', 'kw', 'od']);
  t.true(isWhiteoutDev(path.join(root, 'kw')));
  const oci = fs.lstatSync(path.join(root, '.wh.ow'));
  t.true(oci.isFile());
  t.is(oci.size, 0);
  t.is((await xattrsOf(path.join(root, 'kd')))['trusted.overlay.opaque'], 'y');
  t.deepEqual(fs.readdirSync(path.join(root, 'od')).sort(), ['.wh..wh..opq', 'y']);
  t.false('trusted.overlay.opaque' in (await xattrsOf(path.join(root, 'od'))));
});

test('kernel format translates every OCI marker', async (t) => {
  const root = path.join(makeTmp(t), 'layer');
  await buildLayer(tree, root, { format: 'kernel' });
  t.deepEqual(fs.readdirSync(root).sort(), ['d', 'f', 'kd', 'kw', 'od', 'ow']);
  t.true(isWhiteoutDev(path.join(root, 'kw')));
  t.true(isWhiteoutDev(path.join(root, 'ow')));
  t.deepEqual(fs.readdirSync(path.join(root, 'od')), ['y']);
  t.is((await xattrsOf(path.join(root, 'od')))['trusted.overlay.opaque'], 'y');
  t.is((await xattrsOf(path.join(root, 'kd')))['trusted.overlay.opaque'], 'y');
});

test('metadata: modes incl. suid/sticky, owners, xattrs, times, hard links, symlinks, fifos', async (t) => {
  const root = path.join(makeTmp(t), 'layer');
  await buildLayer(tree, root, { format: 'as-written' });
  const f = fs.statSync(path.join(root, 'f'));
  t.is(f.mode & 0o7777, 0o4750);
  t.is(f.uid, 12);
  t.is(f.gid, 34);
  t.is(f.nlink, 2);
  t.is(Math.floor(f.mtimeMs / 1000), 1_500_000_000);
  t.is((await xattrsOf(path.join(root, 'f')))['user.a'], 'b');
  t.is(fs.statSync(path.join(root, 'd', 'h')).ino, f.ino);
  const d = fs.statSync(path.join(root, 'd'));
  t.is(d.mode & 0o7777, 0o1777);
  t.is(d.uid, 1);
  t.is(d.gid, 2);
  t.is(Math.floor(d.mtimeMs / 1000), 1_400_000_000);
  const l = fs.lstatSync(path.join(root, 'd', 'l'));
  t.true(l.isSymbolicLink());
  t.is(l.uid, 5);
  t.is(fs.readlinkSync(path.join(root, 'd', 'l')), '../f');
  const p = fs.lstatSync(path.join(root, 'd', 'p'));
  t.true(p.isFIFO());
  t.is(p.mode & 0o7777, 0o600);
  t.is(fs.statSync(path.join(root, 'od')).mode & 0o7777, 0o700);
});

test('buildLayers lays out lower0 (top-most) … and a kernel-format upper', async (t) => {
  const root = makeTmp(t);
  const spec = { lowers: [{ a: file('top') }, { a: file('bottom') }], upper: { w: whiteout('oci') } };
  t.true(usesOci(spec));
  t.false(usesOci({ lowers: [{ a: whiteout('kernel') }] }));
  const built = await buildLayers(spec, root, { format: 'as-written' });
  t.deepEqual(built.lowers, [path.join(root, 'lower0'), path.join(root, 'lower1')]);
  t.is(fs.readFileSync(path.join(built.lowers[0]!, 'a'), 'utf8'), 'top');
  t.is(built.upper, path.join(root, 'upper'));
  t.true(isWhiteoutDev(path.join(root, 'upper', 'w')));
});

test('invalid names and hard links leaving the layer are refused', async (t) => {
  const root = makeTmp(t);
  await t.throwsAsync(buildLayer({ 'a/b': file('') }, path.join(root, 'x'), { format: 'kernel' }));
  await t.throwsAsync(buildLayer({ h: hardlink('../outside') }, path.join(root, 'y'), { format: 'kernel' }));
});
