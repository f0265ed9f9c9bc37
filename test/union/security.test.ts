// Untrusted layers: symlinks planted in lowers and in the upper must never be followed by
// the (root) daemon. Lookups through them fail, operations at them act on the link itself,
// and a canary outside the layers never changes.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import type { UnionFs } from '../../src/union/unionfs.ts';
import {
  O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, S_IFIFO, S_IFLNK, S_IFMT, assertWorkEmpty, dir, env, file, guard,
  lstatOrNull, names, ns, symlink, type Env,
} from './_helpers.ts';

interface Sec extends Env {
  outside: string;
  canary: string;
  u: UnionFs;
  /** Union paths that would reach the canary file if a symlink on the way were followed. */
  through: string[];
  /** Union paths that would reach the outside directory if followed. */
  throughDirs: string[];
  /** Union paths that are symlinks to the canary file. */
  at: string[];
  /** Asserts that nothing outside the layers changed (and the lowers did not either). */
  unchanged(): void;
}

function sec(t: ExecutionContext): Sec {
  const e = env(t, 2);
  const outside = path.join(e.dir, 'outside');
  const canary = file(outside, 'canary', 'secret', {
    mode: 0o640,
    uid: 0,
    gid: 0,
    timeNs: ns(1_000_000_000, 1),
    xattrs: { 'user.canary': '1' },
  });
  file(outside, 'cdir/inner', 'inner');
  const [l0, l1] = [e.lowers[0]!, e.lowers[1]!];
  // In the top lower.
  symlink(l0, 'etc', '/');
  symlink(l0, 'x', '../../..'); // lower0/../../.. is '/'
  symlink(l0, 'canary', canary);
  symlink(l0, 'rel', '../outside/canary');
  symlink(l0, 'out', outside);
  symlink(l0, 'relout', '../outside');
  symlink(l0, 'd/sub', outside); // a symlink as an intermediate component of a real directory
  symlink(l0, 'shadow', outside); // hides a real directory in lower1
  file(l1, 'shadow/canary', 'lower1 file');
  file(l1, 'shadow/cdir/inner', 'lower1 file');
  file(l0, 'f', 'plain lower file');
  // In the upper.
  symlink(e.upper, 'ucanary', canary);
  symlink(e.upper, 'uout', outside);
  symlink(e.upper, 'm/evil', outside); // inside a merged directory
  file(l0, 'm/ok', 'ok');
  symlink(e.upper, 'upshadow', outside); // hides a real directory in a lower
  file(l1, 'upshadow/canary', 'lower1 file');
  file(l1, 'upshadow/cdir/inner', 'lower1 file');
  const dirLinks = ['/out', '/relout', '/d/sub', '/shadow', '/uout', '/m/evil', '/upshadow'];
  const throughDirs = [...dirLinks, '/etc' + outside, '/x' + outside];
  const through = throughDirs.map((d) => d + '/canary');
  const at = ['/canary', '/rel', '/ucanary'];
  const check = guard(t, outside, ...e.lowers);
  const u = e.union();
  return { ...e, outside, canary, u, through, throughDirs, at, unchanged: check };
}

test('lookups through planted symlinks fail with ENOTDIR instead of leaving the layers', (t) => {
  const s = sec(t);
  for (const p of [...s.through, ...s.throughDirs.map((d) => d + '/cdir/inner'), '/etc/etc/passwd', '/x/etc/passwd']) {
    const err = t.throws(() => s.u.getattr(p), undefined, p);
    t.true(['ENOTDIR', 'ENOENT'].includes((err as { code?: string }).code ?? ''), `${p}: ${String(err)}`);
    t.throws(() => s.u.lookup(p), undefined, p);
    t.throws(() => s.u.getxattr(p, 'user.canary'), undefined, p);
    t.throws(() => s.u.listxattr(p), undefined, p);
    t.throws(() => s.u.readlink(p), undefined, p);
  }
  for (const d of s.throughDirs) {
    t.throws(() => s.u.readdir(d), undefined, d);
  }
  s.unchanged();
});

test('getattr of a planted symlink returns the symlink, never its target', (t) => {
  const s = sec(t);
  const canary = fs.lstatSync(s.canary);
  for (const p of [...s.at, '/etc', '/x', '/out', '/relout', '/d/sub', '/shadow', '/uout', '/m/evil', '/upshadow']) {
    const a = s.u.getattr(p);
    t.is(a.mode & S_IFMT, S_IFLNK, p);
    t.not(a.ino, BigInt(canary.ino), p);
    t.is(s.u.lookup(p)?.type, 'symlink', p);
  }
  t.is(s.u.readlink('/canary').toString(), s.canary);
  t.is(s.u.readlink('/x').toString(), '../../..');
  t.is(s.u.readlink('/upshadow').toString(), s.outside);
  const items = new Map(s.u.readdir('/').map((i) => [i.name, i.type]));
  for (const n of ['etc', 'x', 'canary', 'rel', 'out', 'relout', 'shadow', 'ucanary', 'uout', 'upshadow']) {
    t.is(items.get(n), 'symlink', n);
  }
  t.deepEqual(names(s.u, '/m'), ['evil', 'ok']);
  t.deepEqual(names(s.u, '/d'), ['sub']);
  s.unchanged();
});

test('open of a symlink fails with ELOOP instead of opening its target; open through one fails', async (t) => {
  const s = sec(t);
  for (const p of s.at) {
    for (const flags of [O_RDONLY, O_WRONLY, O_RDWR | O_TRUNC]) {
      await t.throwsAsync(s.u.open(p, flags), { code: 'ELOOP' }, `${p} ${flags}`);
    }
    await t.throwsAsync(s.u.create(p, 0o644, O_RDWR | O_CREAT), { code: 'ELOOP' }, p);
  }
  for (const p of s.through) {
    for (const flags of [O_RDONLY, O_WRONLY, O_RDWR | O_TRUNC]) {
      await t.throwsAsync(s.u.open(p, flags), undefined, `${p} ${flags}`);
    }
  }
  t.is(s.u.openCount(), 0);
  s.unchanged();
});

test('metadata changes through planted symlinks never reach the canary', async (t) => {
  const s = sec(t);
  for (const p of s.through) {
    await t.throwsAsync(s.u.chmod(p, 0o777), undefined, p);
    await t.throwsAsync(s.u.chown(p, 1234, 1234), undefined, p);
    await t.throwsAsync(s.u.utimens(p, 'now', 'now'), undefined, p);
    await t.throwsAsync(s.u.truncate(p, 0), undefined, p);
    await t.throwsAsync(s.u.setxattr(p, 'user.pwned', Buffer.from('1'), 0), undefined, p);
    await t.throwsAsync(s.u.removexattr(p, 'user.canary'), undefined, p);
  }
  s.unchanged();
});

test('namespace changes through planted symlinks never create, remove or move anything outside', async (t) => {
  const s = sec(t);
  for (const d of s.throughDirs) {
    await t.throwsAsync(s.u.create(d + '/new', 0o644, O_RDWR | O_CREAT), undefined, d);
    await t.throwsAsync(s.u.mkdir(d + '/newdir', 0o755), undefined, d);
    await t.throwsAsync(s.u.symlink('/', d + '/newlink'), undefined, d);
    await t.throwsAsync(s.u.mknod(d + '/fifo', S_IFIFO | 0o644, 0), undefined, d);
    await t.throwsAsync(s.u.link('/f', d + '/hard'), undefined, d);
    await t.throwsAsync(s.u.link(d + '/canary', '/stolen-link'), undefined, d);
    await t.throwsAsync(s.u.unlink(d + '/canary'), undefined, d);
    await t.throwsAsync(s.u.rmdir(d + '/cdir'), undefined, d);
    await t.throwsAsync(s.u.rename(d + '/canary', '/stolen'), undefined, d);
    await t.throwsAsync(s.u.rename(d + '/cdir', '/stolen'), undefined, d);
    await t.throwsAsync(s.u.rename('/f', d + '/planted'), undefined, d);
  }
  t.is(s.u.lookup('/stolen'), null);
  t.is(s.u.lookup('/stolen-link'), null);
  assertWorkEmpty(t, s);
  s.unchanged();
});

test('operations at a symlink act on the link (copied up as a link), never on its target', async (t) => {
  const s = sec(t);
  const canaryTarget = s.canary;
  for (const p of s.at) {
    await t.throwsAsync(s.u.chmod(p, 0o777), { code: 'EOPNOTSUPP' }, p);
    await t.throwsAsync(s.u.truncate(p, 0), { code: 'EINVAL' }, p);
    await s.u.chown(p, 4321, 4321);
    await s.u.utimens(p, { sec: 7n, nsec: 8 }, { sec: 9n, nsec: 10 });
    // Linux refuses user.* xattrs on symlinks; either way, the target must not get one.
    await s.u.setxattr(p, 'user.pwned', Buffer.from('1'), 0).catch(() => undefined);
    await t.throwsAsync(s.u.removexattr(p, 'user.canary'), { code: 'ENODATA' }, p);
    const abs = path.join(s.upper, p);
    const st = fs.lstatSync(abs, { bigint: true });
    t.true(st.isSymbolicLink(), p);
    t.is(Number(st.uid), 4321, p);
    t.is(st.mtimeNs, ns(9, 10), p);
    t.is(s.u.getattr(p).mode & S_IFMT, S_IFLNK, p);
  }
  t.is(fs.readlinkSync(path.join(s.upper, 'canary')), canaryTarget, 'copy-up copied the link');
  t.is(fs.readlinkSync(path.join(s.upper, 'rel')), '../outside/canary');
  // Directory symlinks, too.
  for (const p of ['/etc', '/x', '/out', '/d/sub', '/shadow', '/m/evil']) {
    await s.u.chown(p, 4321, 4321);
    await s.u.utimens(p, { sec: 7n, nsec: 8 }, { sec: 9n, nsec: 10 });
    t.true(fs.lstatSync(path.join(s.upper, p)).isSymbolicLink(), p);
  }
  // Linking, renaming and removing links moves the links only.
  await s.u.link('/canary', '/canary-hardlink');
  t.true(fs.lstatSync(path.join(s.upper, 'canary-hardlink')).isSymbolicLink());
  await s.u.rename('/rel', '/moved');
  t.is(fs.readlinkSync(path.join(s.upper, 'moved')), '../outside/canary');
  await s.u.unlink('/canary');
  await s.u.unlink('/out');
  await s.u.unlink('/ucanary');
  t.is(lstatOrNull(path.join(s.upper, 'ucanary')), null);
  t.true(fs.existsSync(s.canary));
  await t.throwsAsync(s.u.rmdir('/etc'), { code: 'ENOTDIR' });
  assertWorkEmpty(t, s);
  s.unchanged();
});

test('copy-up of a parent never goes through a symlink that shadows a lower directory', async (t) => {
  const s = sec(t);
  // /shadow is a lower0 symlink over a lower1 directory; /upshadow an upper symlink over one.
  for (const p of ['/shadow/canary', '/upshadow/canary', '/shadow/cdir/inner', '/upshadow/cdir/inner']) {
    await t.throwsAsync(s.u.open(p, O_WRONLY), { code: 'ENOTDIR' }, p);
    await t.throwsAsync(s.u.chmod(p, 0o600), { code: 'ENOTDIR' }, p);
  }
  t.false(fs.existsSync(path.join(s.upper, 'shadow')));
  t.true(fs.lstatSync(path.join(s.upper, 'upshadow')).isSymbolicLink());
  assertWorkEmpty(t, s);
  s.unchanged();
});

test('an upper symlink over a lower directory is never used as a copy-up parent', async (t) => {
  // The upper parent of a copy-up target is a symlink planted in the upper, shadowing a lower dir.
  const e = env(t);
  const outside = path.join(e.dir, 'outside2');
  dir(outside, 'p');
  file(e.lowers[0]!, 'p/f', 'lower');
  symlink(e.upper, 'p', path.join(outside, 'p'));
  const check = guard(t, outside, ...e.lowers);
  const u = e.union();
  await t.throwsAsync(u.open('/p/f', O_RDWR), { code: 'ENOTDIR' });
  await t.throwsAsync(u.create('/p/g', 0o644, O_RDWR | O_CREAT), { code: 'ENOTDIR' });
  t.deepEqual(fs.readdirSync(path.join(outside, 'p')), []);
  check();
});
