// Hostile image layers through a real mount (the daemon is root, the layers untrusted):
// symlinks in every layer position, links where another layer has a directory, `..` targets,
// symlinked layer roots, hard links inside and across lowers, device nodes and fifos in
// lowers, whiteout look-alike names. The union must serve each planted object as what it is,
// never look behind a link, and leave the canary the links point at untouched.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readState } from '../../src/engine/state.ts';
import { run } from '../helpers/exec.ts';
import { devString } from '../helpers/snapshot.ts';
import { mountFor, unmount } from '../helpers/mounts.ts';
import { diffPrints, layerPrint } from '../crash/_lib.ts';
import { battery, canaryContents, canarySeesReads, canaryTimes, plantHostile, runBattery, type Hostile } from './_plant.ts';

const fsp = fs.promises;

async function mountHostile(t: Parameters<typeof plantHostile>[0], h: Hostile, options: string[] = []): Promise<void> {
  await mountFor(t, 'layerfs', { lowers: h.lowers, upper: h.upper, work: h.work, mnt: h.mnt, options });
}

const names = async (p: string) => (await fsp.readdir(p)).sort();

test('planted links in every layer position: served as links, never looked behind; the canary stays untouched', async (t) => {
  const h = await plantHostile(t);
  t.true(canarySeesReads(h.can), 'the canary moves atimes on reads (strictatime)');
  const contentsBefore = canaryContents(h.can); // reads: before the times are taken
  const canBefore = canaryTimes(h.can);
  const lowersBefore = await Promise.all(h.lowers.map((l) => layerPrint(l)));
  await mountHostile(t, h);

  // The union view.
  t.deepEqual(await names(h.m()), [
    'bdir', 'bot', 'botroot', 'botsecret', 'cd', 'cl', 'devdir', 'dotdot', 'dotdot2', 'etc', 'fifo',
    'h1', 'h2', 'h3', 'h4', 'm', 'mid', 'mid2', 'null', 'self', 'udir', 'uln', 'urel', 'w',
  ]);
  const targets: Record<string, string> = {
    etc: '/etc', cl: path.join(h.can, 'secret'), cd: path.join(h.can, 'cdir'), mid: h.can, bot: '../../canary',
    botroot: '../../../../../../../../../..', botsecret: './../.././canary/../canary/secret', uln: path.join(h.can, 'secret'),
    urel: '../../canary', self: '.', dotdot: '..', dotdot2: '../..', 'm/w': '/', 'm/x': path.join(h.can, 'secret'),
    'm/y': '../../../canary', 'm/yd': '../../../canary/cdir',
  };
  for (const [rel, target] of Object.entries(targets)) {
    t.true((await fsp.lstat(h.m(rel))).isSymbolicLink(), `${rel} is a symlink`);
    t.is(await fsp.readlink(h.m(rel)), target, `${rel} -> ${target}`);
  }
  // A lower directory under a link (mid: link in the middle over a dir at the bottom) is invisible;
  // a link under a directory ends the merge (mid2, bdir, udir) and is invisible itself.
  t.deepEqual(await names(h.m('mid2')), ['a']);
  t.deepEqual(await names(h.m('bdir')), ['f']);
  t.deepEqual(await names(h.m('udir')), ['u']);
  t.deepEqual(await names(h.m('m')), ['w', 'x', 'y', 'yd', 'z']);
  t.deepEqual(await names(h.m('w')), ['keep'], 'whiteout look-alikes hide nothing and never show');
  t.deepEqual(await names(h.m('devdir')), ['null2']);
  for (const d of ['mid2', 'bdir', 'udir']) {
    for (const n of ['secret', 'cdir', 'inner', 'b', 'm']) await t.throwsAsync(fsp.lstat(h.m(`${d}/${n}`)), { code: 'ENOENT' }, `${d}/${n}`);
  }
  for (const n of ['.wh..', '.wh...', '.wh.', 'w/.wh..', 'w/.wh...', 'w/.wh.', 'wdel']) {
    await t.throwsAsync(fsp.lstat(h.m(n)), { code: 'ENOENT' }, n);
  }
  t.true((await fsp.stat(h.m('w/.'))).isDirectory());
  t.true((await fsp.stat(h.m('w/..'))).isDirectory());
  // Every name the union shows, walked physically: nothing of the canary or the host appears.
  const walked = (await run('find', [h.m(), '-mindepth', '1', '-printf', '%P %y\n'])).stdout.toString().trim().split('\n').sort();
  t.deepEqual(walked, [
    'bdir d', 'bdir/f f', 'bot l', 'botroot l', 'botsecret l', 'cd l', 'cl l', 'devdir d', 'devdir/null2 c', 'dotdot l',
    'dotdot2 l', 'etc l', 'fifo p', 'h1 f', 'h2 f', 'h3 f', 'h4 f', 'm d', 'm/w l', 'm/x l', 'm/y l', 'm/yd l', 'm/z f',
    'mid l', 'mid2 d', 'mid2/a f', 'null c', 'self l', 'udir d', 'udir/u f', 'uln l', 'urel l', 'w d', 'w/keep f',
  ]);

  // The battery: every planted entry, and beneath them.
  const wrong = await runBattery(battery(h));
  t.deepEqual(wrong, [], 'every operation of the battery behaved');

  // What the battery did landed in the upper, on the links themselves.
  for (const rel of ['cl', 'uln', 'm/x2', 'etc.moved', 'dotdot']) {
    const st = fs.lstatSync(h.u(rel));
    t.true(st.isSymbolicLink(), `${rel} copied up as a link`);
    t.is(st.uid, 4242, `${rel} chowned as a link`);
  }
  t.true(fs.lstatSync(h.u('cd.moved')).isSymbolicLink());
  t.is(fs.lstatSync(h.u('botsecret')).mtimeMs, 1111111111000);
  t.is(fs.readFileSync(h.u('bdir/renamed'), 'utf8'), 'new\n');
  t.is(fs.lstatSync(h.u('mid2')).isDirectory(), true);
  t.deepEqual(await names(h.m('mid2')), [], 'mid2 made again over its whiteout is opaque');
  const null0 = fs.lstatSync(h.u('null'), { bigint: true });
  t.true(null0.isCharacterDevice() && devString(null0.rdev) === '1:3' && (Number(null0.mode) & 0o777) === 0o600, 'the device copied up by mknod');

  // Nothing outside the layers changed; the lowers did not change at all.
  t.deepEqual(diff(canBefore, canaryTimes(h.can)), [], 'the canary was not read, listed, written or changed');
  t.is(canaryContents(h.can), contentsBefore, 'the canary holds what it held');
  for (const [i, l] of h.lowers.entries()) t.deepEqual(diffPrints(lowersBefore[i]!, await layerPrint(l), `lower${i}`), [], `lower${i} untouched`);
});

function diff(a: Map<string, string>, b: Map<string, string>): string[] {
  return [...a.keys()].filter((k) => a.get(k) !== b.get(k)).map((k) => `${k}:\n  before ${a.get(k)}\n  after  ${b.get(k)}`);
}

test('symlinked layer roots: resolved at mount, the links may change afterwards without effect', async (t) => {
  const h = await plantHostile(t);
  const ln = path.join(h.dir, 'links');
  fs.mkdirSync(ln);
  const alias = (name: string, target: string) => {
    fs.symlinkSync(path.relative(ln, target), path.join(ln, name));
    return path.join(ln, name);
  };
  const spec = {
    lowers: h.lowers.map((l, i) => alias(`l${i}`, l)),
    upper: alias('upper', h.upper),
    work: alias('work', h.work),
    mnt: h.mnt, // (the test helpers find mounts by the mount point's real path)
  };
  await mountFor(t, 'layerfs', spec);
  const st = readState(h.mnt);
  t.deepEqual(st?.lowerdirs, h.lowers, 'the lowers are known by their real paths');
  t.is(st?.upperdir, h.upper);
  t.is(st?.workdir, h.work);
  t.deepEqual(await names(h.m('mid2')), ['a']);
  // Re-point every alias at the canary: the mount keeps serving the real layers.
  const canBefore = canaryTimes(h.can);
  for (const n of ['l0', 'l1', 'l2', 'upper', 'work']) {
    fs.unlinkSync(path.join(ln, n));
    fs.symlinkSync(h.can, path.join(ln, n));
  }
  t.deepEqual(await names(h.m('mid2')), ['a']);
  t.deepEqual(await names(h.m('m')), ['w', 'x', 'y', 'yd', 'z']);
  await fsp.writeFile(h.m('written'), 'after re-pointing\n');
  await fsp.appendFile(h.m('m/z'), 'copied up\n');
  t.is(fs.readFileSync(h.u('written'), 'utf8'), 'after re-pointing\n');
  t.is(fs.readFileSync(h.u('m/z'), 'utf8'), 'lower2 m/z\ncopied up\n');
  t.deepEqual(diff(canBefore, canaryTimes(h.can)), [], 'the canary was not touched');
});

test('hard links inside a lower and across lowers: one inode through the mount until a write copies up one name', async (t) => {
  const h = await plantHostile(t);
  const l0 = h.lowers[0];
  const before = fs.lstatSync(path.join(l0, 'h1'), { bigint: true });
  const before3 = fs.lstatSync(path.join(l0, 'h3'), { bigint: true });
  await mountHostile(t, h);
  const [a, b] = [await fsp.lstat(h.m('h1')), await fsp.lstat(h.m('h2'))];
  t.is(a.ino, b.ino, 'both names show one inode');
  t.is(a.nlink, 2);
  const [c, d] = [await fsp.lstat(h.m('h3')), await fsp.lstat(h.m('h4'))];
  t.is(c.ino, d.ino, 'a hard link across two lowers shows one inode');
  await fsp.appendFile(h.m('h1'), 'more\n');
  await fsp.writeFile(h.m('h4'), 'replaced\n');
  t.is(await fsp.readFile(h.m('h1'), 'utf8'), 'hard link\nmore\n');
  t.is(await fsp.readFile(h.m('h2'), 'utf8'), 'hard link\n', 'the other name keeps the lower content');
  t.is(await fsp.readFile(h.m('h3'), 'utf8'), 'across layers\n');
  t.is(await fsp.readFile(h.m('h4'), 'utf8'), 'replaced\n');
  t.not((await fsp.lstat(h.m('h1'))).ino, (await fsp.lstat(h.m('h2'))).ino, 'the written name is a copy now');
  const after = fs.lstatSync(path.join(l0, 'h1'), { bigint: true });
  const after3 = fs.lstatSync(path.join(l0, 'h3'), { bigint: true });
  t.is(after.ctimeNs, before.ctimeNs, 'the shared lower inode was not modified');
  t.is(after3.ctimeNs, before3.ctimeNs);
  t.is(fs.readFileSync(path.join(l0, 'h1'), 'utf8'), 'hard link\n');
  t.is(fs.readFileSync(path.join(h.lowers[1], 'h4'), 'utf8'), 'across layers\n');
});

test('device nodes and fifos in lowers: served as such, opened by the kernel (never the daemon), refused under nodev', async (t) => {
  const h = await plantHostile(t);
  await mountHostile(t, h);
  const st = fs.lstatSync(h.m('null'), { bigint: true });
  t.true(st.isCharacterDevice());
  t.is(devString(st.rdev), '1:3');
  t.is(devString(fs.lstatSync(h.m('devdir/null2'), { bigint: true }).rdev), '1:3');
  t.true(fs.lstatSync(h.m('fifo')).isFIFO());
  // Opened through the mount: the kernel's /dev/null driver answers (empty read, writes vanish).
  t.is(await fsp.readFile(h.m('null'), 'utf8'), '');
  await fsp.writeFile(h.m('null'), 'into the void\n');
  t.is(fs.lstatSync(path.join(h.lowers[0], 'null')).size, 0);
  t.false(fs.existsSync(h.u('null')), 'writing to the device is no copy-up');
  // Under nodev, the same device cannot be opened at all.
  await unmount(h.mnt);
  await mountHostile(t, h, ['nodev']);
  await t.throwsAsync(fsp.readFile(h.m('null')), { code: 'EACCES' });
  t.true(fs.lstatSync(h.m('null')).isCharacterDevice());
});
