// Copy-up: what lands in the upper before the first change to a lower object.

import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import type { CopyUpEvent } from '../../src/union/copyup.ts';
import type { UnionFs } from '../../src/union/unionfs.ts';
import {
  GID, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, UID, assertWorkEmpty, dir, env, fifo, file, guard, ls, lstatOrNull,
  names, ns, readAll, symlink, writeAt, xattrs, type Env,
} from './_helpers.ts';

const T_FILE = ns(1_500_000_000, 987_654_321);
const XATTRS = { 'user.a': '1', 'user.b': 'two', 'trusted.keep': 'kept', 'trusted.overlay.origin': 'not copied' };
const COPIED_XATTRS = { 'trusted.keep': 'kept', 'user.a': '1', 'user.b': 'two' };

/** A lower file /d/f with every kind of metadata worth copying; /d exists in the upper too. */
function fixture(t: ExecutionContext, content = 'lower content\n'): Env {
  const e = env(t);
  file(e.lowers[0]!, 'd/f', content, { mode: 0o2754, uid: UID, gid: GID, xattrs: XATTRS, timeNs: T_FILE });
  dir(e.upper, 'd');
  return e;
}

/** Record the copy-ups a union performs (through its public listener, UnionFs.onCopyUp). */
function copyUps(u: UnionFs): CopyUpEvent[] {
  const evs: CopyUpEvent[] = [];
  u.onCopyUp((ev) => evs.push(ev));
  return evs;
}

function hexXattrs(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Buffer.from(v).toString('hex')]));
}

/** The upper copy has the lower's metadata, except for the fields given in `changed`. */
function assertCopied(
  t: ExecutionContext,
  e: Env,
  rel: string,
  lowerBefore: fs.BigIntStats,
  changed: { mode?: number; uid?: number; gid?: number; times?: boolean; xattrs?: Record<string, string> } = {},
): fs.BigIntStats {
  const up = fs.lstatSync(path.join(e.upper, rel), { bigint: true });
  t.is(Number(up.mode & 0o170000n), Number(lowerBefore.mode & 0o170000n), `${rel}: type`);
  t.is(Number(up.mode & 0o7777n).toString(8), (changed.mode ?? Number(lowerBefore.mode & 0o7777n)).toString(8), `${rel}: mode`);
  t.is(Number(up.uid), changed.uid ?? Number(lowerBefore.uid), `${rel}: uid`);
  t.is(Number(up.gid), changed.gid ?? Number(lowerBefore.gid), `${rel}: gid`);
  if (!changed.times) {
    t.is(up.mtimeNs, lowerBefore.mtimeNs, `${rel}: mtime`);
    t.is(up.atimeNs, lowerBefore.atimeNs, `${rel}: atime`);
  }
  t.deepEqual(xattrs(path.join(e.upper, rel)), hexXattrs(changed.xattrs ?? COPIED_XATTRS), `${rel}: xattrs`);
  t.not(up.ino, lowerBefore.ino, `${rel}: a copy, not the lower inode`);
  return up;
}

function lowerStat(e: Env, rel: string, layer = 0): fs.BigIntStats {
  return fs.lstatSync(path.join(e.lowers[layer]!, rel), { bigint: true });
}

test('open for write copies up data, mode, owner, ns times and xattrs; the write lands in the upper', async (t) => {
  const e = fixture(t);
  const check = guard(t, ...e.lowers);
  const before = lowerStat(e, 'd/f');
  const u = e.union();
  const evs = copyUps(u);
  const fd = await u.open('/d/f', O_WRONLY);
  assertCopied(t, e, 'd/f', before);
  t.is(fs.readFileSync(path.join(e.upper, 'd/f'), 'utf8'), 'lower content\n');
  t.is(u.lookup('/d/f')?.layer, 0);
  const b = Buffer.from('UPPER');
  t.is(await u.write(fd, b, b.length, 0), 5);
  u.release(fd);
  t.is(await readAll(u, '/d/f'), 'UPPER content\n');
  t.is(fs.readFileSync(path.join(e.upper, 'd/f'), 'utf8'), 'UPPER content\n');
  t.is(evs.length, 1);
  t.like(evs[0], { path: '/d/f', type: 'file', fromLayer: 1, bytes: 14 });
  assertWorkEmpty(t, e);
  check();
});

for (const [label, flags] of [
  ['O_RDWR|O_TRUNC', O_RDWR | O_TRUNC],
  ['O_WRONLY|O_TRUNC', O_WRONLY | O_TRUNC],
  ['O_RDONLY|O_TRUNC', O_RDONLY | O_TRUNC],
] as const) {
  test(`open with ${label} copies up and truncates the copy only`, async (t) => {
    const e = fixture(t);
    const check = guard(t, ...e.lowers);
    const before = lowerStat(e, 'd/f');
    const u = e.union();
    const fd = await u.open('/d/f', flags);
    u.release(fd);
    t.is(fs.readFileSync(path.join(e.upper, 'd/f'), 'utf8'), '');
    assertCopied(t, e, 'd/f', before, { times: true });
    t.is(u.getattr('/d/f').size, 0);
    assertWorkEmpty(t, e);
    check();
  });
}

test('onCopyUp: a listener hears each copy-up once, with its path, until it unsubscribes', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'a', 'a\n');
  file(e.lowers[0]!, 'b', 'b\n');
  file(e.lowers[0]!, 'c', 'c\n');
  const u = e.union();
  const heard: string[] = [];
  const other: string[] = [];
  const stop = u.onCopyUp((ev) => heard.push(ev.path));
  u.onCopyUp((ev) => other.push(ev.path));
  await u.truncate('/a', 1);
  await u.truncate('/a', 0); // already in the upper: no copy-up
  t.deepEqual(heard, ['/a']);
  stop();
  stop(); // a second call changes nothing
  await u.truncate('/b', 1);
  t.deepEqual(heard, ['/a'], 'not told after unsubscribing');
  t.deepEqual(other, ['/a', '/b'], 'another listener is still told');
  const stopOther = u.onCopyUp(() => t.fail('unsubscribed at once'));
  stopOther();
  await u.truncate('/c', 1);
  t.deepEqual(other, ['/a', '/b', '/c']);
  assertWorkEmpty(t, e);
});

test('truncate copies up, then truncates the copy', async (t) => {
  const e = fixture(t);
  const check = guard(t, ...e.lowers);
  const before = lowerStat(e, 'd/f');
  const u = e.union();
  await u.truncate('/d/f', 5);
  t.is(fs.readFileSync(path.join(e.upper, 'd/f'), 'utf8'), 'lower');
  assertCopied(t, e, 'd/f', before, { times: true });
  await u.truncate('/d/f', 8);
  t.deepEqual(fs.readFileSync(path.join(e.upper, 'd/f')), Buffer.from('lower\0\0\0'));
  assertWorkEmpty(t, e);
  check();
});

test('chmod copies up everything but the mode, which it changes', async (t) => {
  const e = fixture(t);
  const check = guard(t, ...e.lowers);
  const before = lowerStat(e, 'd/f');
  const u = e.union();
  await u.chmod('/d/f', 0o4700);
  assertCopied(t, e, 'd/f', before, { mode: 0o4700 });
  t.is(u.getattr('/d/f').mode & 0o7777, 0o4700);
  t.is(fs.readFileSync(path.join(e.upper, 'd/f'), 'utf8'), 'lower content\n');
  assertWorkEmpty(t, e);
  check();
});

test('chmod with copy-up sets the new mode on every kind of copy (a directory, a big file, one already up)', async (t) => {
  // The copy is made with the new mode (no chmod after it): the one-call copy of a small file
  // is covered above; a directory and a file over its size limit take the step-by-step copy.
  const e = fixture(t);
  dir(e.lowers[0]!, 'sub', { mode: 0o755, uid: UID, gid: GID, xattrs: XATTRS, timeNs: T_FILE });
  file(e.lowers[0]!, 'd/big', randomBytes(300 * 1024), { mode: 0o644, uid: UID, gid: GID, xattrs: XATTRS, timeNs: T_FILE });
  const check = guard(t, ...e.lowers);
  const sub = lowerStat(e, 'sub');
  const big = lowerStat(e, 'd/big');
  const u = e.union();
  await u.chmod('/sub', 0o2700);
  await u.chmod('/d/big', 0o600);
  assertCopied(t, e, 'sub', sub, { mode: 0o2700 });
  assertCopied(t, e, 'd/big', big, { mode: 0o600 });
  t.deepEqual(fs.readFileSync(path.join(e.upper, 'd/big')), fs.readFileSync(path.join(e.lowers[0]!, 'd/big')));
  // In the upper already: a plain chmod.
  await u.chmod('/d/big', 0o640);
  t.is(fs.lstatSync(path.join(e.upper, 'd/big')).mode & 0o7777, 0o640);
  t.is(u.getattr('/sub').mode & 0o7777, 0o2700);
  t.is(u.getattr('/d/big').mode & 0o7777, 0o640);
  assertWorkEmpty(t, e);
  check();
});

test('chown copies up everything but the owner, which it changes', async (t) => {
  const e = fixture(t);
  fs.chmodSync(path.join(e.lowers[0]!, 'd/f'), 0o754); // chown would clear set-id bits anyway
  const check = guard(t, ...e.lowers);
  const before = lowerStat(e, 'd/f');
  const u = e.union();
  await u.chown('/d/f', 42, 43);
  assertCopied(t, e, 'd/f', before, { uid: 42, gid: 43 });
  t.like(u.getattr('/d/f'), { uid: 42, gid: 43 });
  await u.chown('/d/f', -1, 44);
  t.like(u.getattr('/d/f'), { uid: 42, gid: 44 });
  assertWorkEmpty(t, e);
  check();
});

test('utimens copies up, then sets nanosecond times (now / omit too)', async (t) => {
  const e = fixture(t);
  const check = guard(t, ...e.lowers);
  const before = lowerStat(e, 'd/f');
  const u = e.union();
  await u.utimens('/d/f', { sec: 1_234_567_890n, nsec: 1 }, { sec: 1_111_111_111n, nsec: 999_999_999 });
  const up = assertCopied(t, e, 'd/f', before, { times: true });
  t.is(up.atimeNs, ns(1_234_567_890, 1));
  t.is(up.mtimeNs, ns(1_111_111_111, 999_999_999));
  await u.utimens('/d/f', 'omit', { sec: 5n, nsec: 6 });
  const a = u.getattr('/d/f');
  t.is(a.atimeNs, ns(1_234_567_890, 1));
  t.is(a.mtimeNs, ns(5, 6));
  const t0 = BigInt(Date.now() - 5000) * 1_000_000n;
  await u.utimens('/d/f', 'now', 'omit');
  t.true(u.getattr('/d/f').atimeNs > t0);
  assertWorkEmpty(t, e);
  check();
});

test('setxattr copies up, then sets the attribute on the copy; flags are honoured', async (t) => {
  const e = fixture(t);
  const check = guard(t, ...e.lowers);
  const before = lowerStat(e, 'd/f');
  const u = e.union();
  await t.throwsAsync(u.setxattr('/d/f', 'user.a', Buffer.from('x'), sys.XATTR_CREATE), { code: 'EEXIST' });
  await u.setxattr('/d/f', 'user.new', Buffer.from('v'), 0);
  assertCopied(t, e, 'd/f', before, { xattrs: { ...COPIED_XATTRS, 'user.new': 'v' } });
  await t.throwsAsync(u.setxattr('/d/f', 'user.none', Buffer.from('x'), sys.XATTR_REPLACE), { code: 'ENODATA' });
  t.is(u.getxattr('/d/f', 'user.new').toString(), 'v');
  t.deepEqual(u.listxattr('/d/f').sort(), ['trusted.keep', 'user.a', 'user.b', 'user.new']);
  assertWorkEmpty(t, e);
  check();
});

test('removexattr: a missing attribute gives ENODATA without copy-up; a present one is removed from the copy', async (t) => {
  const e = fixture(t);
  const check = guard(t, ...e.lowers);
  const u = e.union();
  const evs = copyUps(u);
  await t.throwsAsync(u.removexattr('/d/f', 'user.missing'), { code: 'ENODATA' });
  t.deepEqual(ls(path.join(e.upper, 'd')), []);
  t.is(evs.length, 0);
  await u.removexattr('/d/f', 'user.a');
  t.deepEqual(xattrs(path.join(e.upper, 'd/f')), hexXattrs({ 'trusted.keep': 'kept', 'user.b': 'two' }));
  t.throws(() => u.getxattr('/d/f', 'user.a'), { code: 'ENODATA' });
  t.is(evs.length, 1);
  assertWorkEmpty(t, e);
  check();
});

test('overlay-private xattrs are neither copied up, shown, read nor written', async (t) => {
  const e = fixture(t);
  const check = guard(t, ...e.lowers);
  const u = e.union();
  t.false(u.listxattr('/d/f').includes('trusted.overlay.origin'));
  t.throws(() => u.getxattr('/d/f', 'trusted.overlay.origin'), { code: 'EOPNOTSUPP' });
  await t.throwsAsync(u.setxattr('/d/f', 'trusted.overlay.opaque', Buffer.from('y'), 0), { code: 'EOPNOTSUPP' });
  await t.throwsAsync(u.removexattr('/d/f', 'trusted.overlay.origin'), { code: 'EOPNOTSUPP' });
  t.deepEqual(ls(path.join(e.upper, 'd')), [], 'refused operations do not copy up');
  await u.chmod('/d/f', 0o600);
  t.is(sys.lgetxattr(path.join(e.upper, 'd/f'), 'trusted.overlay.origin'), null);
  check();
});

test('parents are copied up first, each with its own metadata (deep lower-only path)', async (t) => {
  const e = env(t);
  const metas = {
    a: { mode: 0o750, uid: UID, gid: GID, xattrs: { 'user.level': 'a' }, timeNs: ns(1_000_000_001, 1) },
    'a/b': { mode: 0o711, uid: 0, gid: GID, xattrs: { 'user.level': 'b' }, timeNs: ns(1_000_000_002, 22) },
    'a/b/c': { mode: 0o1777, uid: UID, gid: 0, xattrs: { 'user.level': 'c', 'trusted.t': 'x' }, timeNs: ns(1_000_000_003, 333) },
  };
  file(e.lowers[0]!, 'a/b/c/f', 'deep', { mode: 0o600, uid: UID, gid: GID, timeNs: ns(1_000_000_004, 4444) });
  file(e.lowers[0]!, 'a/b/sibling', 'not copied');
  for (const rel of ['a/b/c', 'a/b', 'a'] as const) {
    const m = metas[rel];
    fs.lchownSync(path.join(e.lowers[0]!, rel), m.uid, m.gid);
    fs.chmodSync(path.join(e.lowers[0]!, rel), m.mode);
    for (const [k, v] of Object.entries(m.xattrs)) sys.lsetxattr(path.join(e.lowers[0]!, rel), k, v);
    const ts = sys.timespecFromNs(m.timeNs);
    sys.utimensat(path.join(e.lowers[0]!, rel), ts, ts);
  }
  const rootTimes = sys.timespecFromNs(ns(1_200_000_000, 5));
  sys.utimensat(e.upper, rootTimes, rootTimes);
  const check = guard(t, ...e.lowers);
  const befores = Object.fromEntries(['a', 'a/b', 'a/b/c', 'a/b/c/f'].map((r) => [r, lowerStat(e, r)]));
  const u = e.union();
  const evs = copyUps(u);
  await writeAt(u, '/a/b/c/f', 'DEEP');
  for (const rel of ['a', 'a/b', 'a/b/c'] as const) {
    assertCopied(t, e, rel, befores[rel]!, { xattrs: metas[rel].xattrs });
  }
  assertCopied(t, e, 'a/b/c/f', befores['a/b/c/f']!, { times: true, xattrs: {} });
  t.deepEqual(ls(path.join(e.upper, 'a/b')), ['c'], 'siblings stay in the lower');
  t.deepEqual(names(u, '/a/b'), ['c', 'sibling']);
  t.is(await readAll(u, '/a/b/c/f'), 'DEEP');
  t.deepEqual(
    evs.map((ev) => [ev.path, ev.type]),
    [
      ['/a', 'dir'],
      ['/a/b', 'dir'],
      ['/a/b/c', 'dir'],
      ['/a/b/c/f', 'file'],
    ],
  );
  const up = fs.lstatSync(e.upper, { bigint: true });
  t.is(up.mtimeNs, ns(1_200_000_000, 5), "the upper root's times are restored");
  t.is(up.atimeNs, ns(1_200_000_000, 5));
  assertWorkEmpty(t, e);
  check();
});

test('a parent that two lowers share is copied up from the top-most one', async (t) => {
  const e = env(t, 2);
  dir(e.lowers[0]!, 'd', { mode: 0o701, uid: UID, gid: GID });
  file(e.lowers[1]!, 'd/f', 'x', { mode: 0o644 });
  fs.chmodSync(path.join(e.lowers[1]!, 'd'), 0o755);
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.chmod('/d/f', 0o600);
  const st = fs.lstatSync(path.join(e.upper, 'd'));
  t.is(st.mode & 0o7777, 0o701);
  t.is(st.uid, UID);
  t.is(fs.readFileSync(path.join(e.upper, 'd/f'), 'utf8'), 'x');
  check();
});

test("copy-up leaves the upper parent's times as they were", async (t) => {
  const e = fixture(t);
  file(e.lowers[0]!, 'top', 'x');
  const T = sys.timespecFromNs(ns(1_300_000_000, 424_242_424));
  sys.utimensat(path.join(e.upper, 'd'), T, T);
  sys.utimensat(e.upper, T, T);
  const u = e.union();
  await u.chmod('/d/f', 0o600);
  await u.chmod('/top', 0o600);
  for (const p of [path.join(e.upper, 'd'), e.upper]) {
    const st = fs.lstatSync(p, { bigint: true });
    t.is(st.mtimeNs, ns(1_300_000_000, 424_242_424), p);
    t.is(st.atimeNs, ns(1_300_000_000, 424_242_424), p);
  }
  assertWorkEmpty(t, e);
});

test('concurrent copy-ups of one path make one correct copy', async (t) => {
  const content = randomBytes(4 << 20);
  const e = fixture(t);
  fs.writeFileSync(path.join(e.lowers[0]!, 'd/f'), content);
  const check = guard(t, ...e.lowers);
  const u = e.union();
  const evs = copyUps(u);
  const [a, b] = await Promise.all([u.open('/d/f', O_WRONLY), u.open('/d/f', O_RDWR)]);
  t.is(evs.length, 1);
  t.is(u.fgetattr(a).ino, u.fgetattr(b).ino, 'both opens share the copy');
  t.is(u.fgetattr(a).ino, fs.lstatSync(path.join(e.upper, 'd/f'), { bigint: true }).ino);
  await u.write(a, Buffer.from('A'), 1, 0);
  await u.write(b, Buffer.from('B'), 1, 1);
  u.release(a);
  u.release(b);
  const expected = Buffer.from(content);
  expected[0] = 0x41;
  expected[1] = 0x42;
  t.true(fs.readFileSync(path.join(e.upper, 'd/f')).equals(expected));
  assertWorkEmpty(t, e);
  check();
});

test('concurrent copy-ups below one lower-only directory copy it once', async (t) => {
  const e = env(t);
  for (const n of ['a', 'b', 'c', 'd', 'e']) file(e.lowers[0]!, `p/q/${n}`, n);
  const check = guard(t, ...e.lowers);
  const u = e.union();
  const evs = copyUps(u);
  await Promise.all(['a', 'b', 'c', 'd', 'e', 'a', 'c'].map((n) => u.chmod(`/p/q/${n}`, 0o600)));
  t.deepEqual(evs.map((ev) => ev.path).sort(), ['/p', '/p/q', '/p/q/a', '/p/q/b', '/p/q/c', '/p/q/d', '/p/q/e']);
  t.deepEqual(ls(path.join(e.upper, 'p/q')), ['a', 'b', 'c', 'd', 'e']);
  for (const n of ['a', 'b', 'c', 'd', 'e']) t.is(fs.readFileSync(path.join(e.upper, 'p/q', n), 'utf8'), n);
  assertWorkEmpty(t, e);
  check();
});

test('reading never copies up', async (t) => {
  const e = fixture(t);
  symlink(e.lowers[0]!, 'd/l', 'f');
  dir(e.lowers[0]!, 'sub');
  const check = guard(t, ...e.lowers);
  const upperBefore = guard(t, e.upper);
  const u = e.union();
  const evs = copyUps(u);
  t.is(await readAll(u, '/d/f'), 'lower content\n');
  const fd = await u.open('/d/f', O_RDONLY);
  t.throws(() => u.ftruncate(fd, 0), { code: 'EBADF' });
  await t.throwsAsync(u.write(fd, Buffer.from('x'), 1, 0), { code: 'EBADF' });
  t.is(u.fgetattr(fd).size, 14);
  u.release(fd);
  u.getattr('/d/f');
  u.readdir('/d');
  u.readdir('/sub');
  u.readlink('/d/l');
  u.getxattr('/d/f', 'user.a');
  u.listxattr('/d/f');
  u.access('/d/f', fs.constants.R_OK | fs.constants.W_OK);
  t.is(evs.length, 0);
  upperBefore();
  check();
});

test('copy-up of a symlink copies the link itself', async (t) => {
  const e = env(t);
  file(e.lowers[0]!, 'target', 'target content', { mode: 0o640, uid: UID });
  symlink(e.lowers[0]!, 'l', 'target', { uid: UID, gid: GID, timeNs: ns(1_000_000_000, 7) });
  symlink(e.lowers[0]!, 'abs', '/etc/passwd');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.chown('/l', 1, 2);
  const st = fs.lstatSync(path.join(e.upper, 'l'), { bigint: true });
  t.true(st.isSymbolicLink());
  t.is(fs.readlinkSync(path.join(e.upper, 'l')), 'target');
  t.is(Number(st.uid), 1);
  t.is(Number(st.gid), 2);
  t.is(st.mtimeNs, ns(1_000_000_000, 7));
  t.is(lstatOrNull(path.join(e.upper, 'target')), null, 'the target is not copied');
  await u.utimens('/abs', { sec: 10n, nsec: 11 }, { sec: 12n, nsec: 13 });
  t.is(fs.readlinkSync(path.join(e.upper, 'abs')), '/etc/passwd');
  t.is(fs.lstatSync(path.join(e.upper, 'abs'), { bigint: true }).mtimeNs, ns(12, 13));
  t.is(u.readlink('/abs').toString(), '/etc/passwd');
  assertWorkEmpty(t, e);
  check();
});

test('copy-up of a fifo makes a fifo', async (t) => {
  const e = env(t);
  fifo(e.lowers[0]!, 'p', { mode: 0o640, uid: UID, gid: GID });
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.chmod('/p', 0o600);
  const st = fs.lstatSync(path.join(e.upper, 'p'));
  t.true(st.isFIFO());
  t.is(st.mode & 0o7777, 0o600);
  t.is(st.uid, UID);
  assertWorkEmpty(t, e);
  check();
});

test('copy-up of a directory copies the directory alone; its lower children still show', async (t) => {
  const e = env(t);
  dir(e.lowers[0]!, 'd', { mode: 0o755, uid: UID, gid: GID, xattrs: { 'user.d': 'dir' } });
  file(e.lowers[0]!, 'd/x', 'x');
  dir(e.lowers[0]!, 'd/sub');
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.setxattr('/d', 'user.more', Buffer.from('m'), 0);
  t.deepEqual(ls(path.join(e.upper, 'd')), []);
  t.deepEqual(xattrs(path.join(e.upper, 'd')), hexXattrs({ 'user.d': 'dir', 'user.more': 'm' }));
  t.is(fs.lstatSync(path.join(e.upper, 'd')).uid, UID);
  t.deepEqual(names(u, '/d'), ['sub', 'x']);
  t.is(u.getattr('/d').nlink, 1, 'now merged');
  await u.chmod('/d', 0o700);
  t.is(fs.lstatSync(path.join(e.upper, 'd')).mode & 0o7777, 0o700);
  assertWorkEmpty(t, e);
  check();
});

test('a failed metadata change on a lower object does not copy it up', async (t) => {
  const e = env(t);
  dir(e.lowers[0]!, 'd');
  symlink(e.lowers[0]!, 'l', 'd');
  const u = e.union();
  const evs = copyUps(u);
  await t.throwsAsync(u.truncate('/d', 0), { code: 'EISDIR' });
  await t.throwsAsync(u.truncate('/l', 0), { code: 'EINVAL' });
  await t.throwsAsync(u.chmod('/l', 0o777), { code: 'EOPNOTSUPP' });
  await t.throwsAsync(u.open('/d', O_WRONLY), { code: 'EISDIR' });
  await t.throwsAsync(u.open('/l', O_WRONLY), { code: 'ELOOP' });
  t.is(evs.length, 0);
  t.deepEqual(ls(e.upper), []);
});

test('prepareWorkdir clears what a crashed copy-up left behind', (t) => {
  const e = env(t);
  file(e.work, 'work/#dead-1', 'half a file');
  file(e.work, 'work/#dead-2/sub/x', 'a directory on its way out');
  fs.chmodSync(path.join(e.work, 'work/#dead-2/sub'), 0o000);
  const u = e.union();
  t.deepEqual(ls(path.join(e.work, 'work')), []);
  t.is(fs.lstatSync(path.join(e.work, 'work')).mode & 0o777, 0o700);
  u.prepareWorkdir();
  assertWorkEmpty(t, e);
});

test('copy-up keeps file capabilities (security.capability survives the owner change)', async (t) => {
  const e = env(t);
  const bin = file(e.lowers[0]!, 'bin/ping', 'binary', { mode: 0o755, uid: UID, gid: GID });
  // cap_net_raw=ep, VFS_CAP_REVISION_2
  const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
  sys.lsetxattr(bin, 'security.capability', cap);
  const check = guard(t, ...e.lowers);
  const u = e.union();
  await u.chmod('/bin/ping', 0o4755);
  const up = path.join(e.upper, 'bin/ping');
  t.deepEqual(sys.lgetxattr(up, 'security.capability'), cap);
  t.like(fs.lstatSync(up), { uid: UID, gid: GID, mode: fs.constants.S_IFREG | 0o4755 });
  check();
});

test('a file opened read-only before its copy-up reads the upper copy afterwards (as the kernel)', async (t) => {
  const e = fixture(t);
  fs.writeFileSync(path.join(e.lowers[0]!, 'd/f'), 'lower data');
  const u = e.union();
  const r = await u.open('/d/f', fs.constants.O_RDONLY);
  const buf = Buffer.alloc(64);
  t.is(buf.subarray(0, await u.read(r, buf, 64, 0)).toString(), 'lower data');
  const w = await u.open('/d/f', fs.constants.O_WRONLY | fs.constants.O_TRUNC);
  await u.write(w, Buffer.from('upper'), 5, 0);
  t.is(buf.subarray(0, await u.read(r, buf, 64, 0)).toString(), 'upper');
  // After a rename the handle still follows its file.
  await u.rename('/d/f', '/d/g');
  await u.write(w, Buffer.from('!'), 1, 5);
  t.is(buf.subarray(0, await u.read(r, buf, 64, 0)).toString(), 'upper!');
  u.release(r);
  u.release(w);
  t.is(u.openCount(), 0);
});

test('copy-up of a sparse 2 GiB file keeps it sparse and byte-identical where it has data', async (t) => {
  const e = env(t);
  const lower = path.join(e.lowers[0]!, 'sparse');
  const size = 2 * 1024 ** 3;
  const fd = fs.openSync(lower, 'w');
  fs.ftruncateSync(fd, size);
  const marks: [number, string][] = [[0, 'head'], [1_000_000_007, 'middle'], [size - 4, 'tail']];
  for (const [off, s] of marks) fs.writeSync(fd, s, off);
  fs.closeSync(fd);
  const u = e.union();
  const t0 = Date.now();
  const h = await u.open('/sparse', O_WRONLY);
  t.log(`copy-up of a 2 GiB sparse file: ${Date.now() - t0} ms`);
  u.release(h);
  const up = fs.statSync(path.join(e.upper, 'sparse'));
  t.is(up.size, size);
  t.true(up.blocks * 512 < 1024 * 1024, `allocated ${up.blocks * 512} bytes: holes kept`);
  const ufd = fs.openSync(path.join(e.upper, 'sparse'), 'r');
  for (const [off, s] of marks) {
    const b = Buffer.alloc(s.length + 2);
    const n = fs.readSync(ufd, b, 0, b.length, off - 1 < 0 ? 0 : off - 1);
    const got = b.subarray(0, n).toString('latin1');
    t.true(got.includes(s), `data at ${off}`);
  }
  fs.closeSync(ufd);
  assertWorkEmpty(t, e);
});
