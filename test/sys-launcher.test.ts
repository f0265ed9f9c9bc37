// src/sys, the syscalls Node's fs lacks: processes, namespaces, mounts, credentials (the
// launcher's syscalls).
// What these tests share: _sys.ts.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { lgetxattr, llistxattr, lsetxattr, renameat2, sysBackend, copyFileWithMeta, type SysError } from '../src/sys/index.ts';
import * as sysx from '../src/sys/index.ts';
import { tmpDir, mountTest } from './_sys.ts';

// --- processes, namespaces, mounts, credentials (the launcher's syscalls) ---

test('capget / capBoundingHas / getNoNewPrivs describe this process', (t) => {
  const caps = sysx.capget();
  t.is(typeof caps.effective, 'bigint');
  t.is((caps.permitted & caps.effective) === caps.effective, true, 'effective is a subset of permitted');
  if (process.getuid?.() === 0) t.true(sysx.capBoundingHas(0), 'root has CAP_CHOWN in its bounding set');
  t.is((t.throws(() => sysx.capBoundingHas(63)) as SysError).code, 'EINVAL', 'beyond cap_last_cap');
  t.is(typeof sysx.getNoNewPrivs(), 'boolean');
});

test('setCloexec / setBlocking change descriptor flags', (t) => {
  const dir = tmpDir(t);
  const fd = fs.openSync(path.join(dir, 'f'), fs.constants.O_CREAT | fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  t.teardown(() => fs.closeSync(fd));
  const flags = (): string => fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').split('\n')[1];
  const octal = (): number => parseInt(flags().split(/\s+/)[1], 8);
  t.truthy(octal() & 0o4000);
  sysx.setBlocking(fd);
  t.falsy(octal() & 0o4000);
  sysx.setCloexec(fd, true);
  t.truthy(octal() & 0o2000000);
  sysx.setCloexec(fd, false);
  t.falsy(octal() & 0o2000000);
  sysx.closeFd(987654); // EBADF is ignored
});

test('ptyUnlock / setWinSize / getWinSize on a new pseudo-terminal', (t) => {
  const master = fs.openSync('/dev/ptmx', fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  t.teardown(() => fs.closeSync(master));
  const n = sysx.ptyUnlock(master);
  t.true(Number.isInteger(n) && n >= 0);
  const slave = fs.openSync(`/dev/pts/${n}`, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  t.teardown(() => fs.closeSync(slave));
  sysx.setWinSize(master, { rows: 33, cols: 101 });
  t.deepEqual(sysx.getWinSize(slave), { rows: 33, cols: 101 });
  const err = t.throws(() => sysx.getWinSize(fs.openSync('/dev/null', 'r'))) as SysError;
  t.is(err.code, 'ENOTTY');
});

test('execve failures throw (the process stays)', (t) => {
  const err = t.throws(() => sysx.execve('/nonexistent/program', ['x'], [])) as SysError;
  t.is(err.code, 'ENOENT');
  t.is(err.syscall, 'execve');
  t.throws(() => sysx.execve('/bin/true', ['a\0b'], []), { code: 'ERR_INVALID_ARG_VALUE' } as never);
});

mountTest('mount (bind, read-only remount), sethostname, interfaceUp, pivotRoot, prctl and capset in new namespaces', (t) => {
  const dir = tmpDir(t);
  const child = path.join(path.dirname(new URL(import.meta.url).pathname), 'launcher', '_sys-child.ts');
  const out = execFileSync('unshare', ['--mount', '--uts', '--net', '--propagation', 'private', '--', process.execPath, '--import', 'tsx', child, dir], { encoding: 'utf8' });
  const r = JSON.parse(out) as Record<string, unknown>;
  t.is(r.hostname, 'layerfs-ns-test');
  t.is(Number(r.loBefore) & 1, 0, 'lo starts down in a new network namespace');
  t.is(Number(r.loAfter) & 1, 1, 'and is up after interfaceUp');
  t.is(r.readOnly, 'EROFS');
  t.deepEqual(r.root, ['inside'], 'after pivot_root the tmpfs is the whole tree');
  t.is(r.nnpAfter, true);
  t.is(r.sysAdminBefore, true);
  t.is(r.sysAdminAfter, false);
  t.is(r.effHasSysAdmin, false);
  t.is(r.sethostnameWithoutCap, 'EPERM');
  t.is(r.execveGone, 'ENOENT', 'the host\'s /bin/sh is unreachable after the pivot');
  t.not(fs.readFileSync('/proc/sys/kernel/hostname', 'utf8').trim(), 'layerfs-ns-test');
  t.deepEqual(fs.readdirSync(dir), [], 'the tmpfs was only mounted in the namespace');
});

test('the per-request calls run through the own addon, and the koffi fallback answers the same', (t) => {
  t.is(sysBackend(), 'addon', 'build/Release/layerfs_sys.node is built by npm ci / setup');
  const dir = tmpDir(t);
  // The same sequence in two processes: one on the addon, one forced onto koffi.
  const script = `
    import * as s from ${JSON.stringify(path.resolve('src/sys/index.ts'))};
    import fs from 'node:fs';
    const d = process.argv[1];
    fs.writeFileSync(d + '/f', 'x');
    fs.symlinkSync('f', d + '/l');
    const out = { backend: s.sysBackend() };
    s.lsetxattr(d + '/f', 'user.a', Buffer.from([0, 1, 255]));
    s.lsetxattr(d + '/f', 'user.b', '');
    out.list = s.llistxattr(d + '/f').sort();
    out.a = [...s.lgetxattr(d + '/f', 'user.a')];
    out.b = s.lgetxattr(d + '/f', 'user.b').length;
    out.none = s.lgetxattr(d + '/f', 'user.none');
    try { s.lsetxattr(d + '/f', 'user.a', 'y', s.XATTR_CREATE); } catch (e) { out.create = e.code + ' ' + e.syscall; }
    s.lremovexattr(d + '/f', 'user.a');
    try { s.lremovexattr(d + '/f', 'user.a'); } catch (e) { out.removed = e.code; }
    try { s.lgetxattr(Buffer.from(d + '/\\xff-missing', 'latin1'), 'user.a'); } catch (e) { out.missing = e.code; }
    s.utimensat(d + '/l', { sec: -5n, nsec: 7 }, { sec: 1700000000n, nsec: 123456789 });
    const st = fs.lstatSync(d + '/l', { bigint: true });
    out.times = [String(st.atimeNs), String(st.mtimeNs)];
    s.renameat2(d + '/f', d + '/l', s.RENAME_EXCHANGE);
    out.swapped = fs.lstatSync(d + '/f').isSymbolicLink();
    try { s.renameat2(d + '/f', d + '/l', s.RENAME_NOREPLACE); } catch (e) { out.noreplace = e.code + ' ' + e.syscall + ' ' + e.dest.endsWith('/l'); }
    process.stdout.write(JSON.stringify(out));
  `;
  const run = (env: NodeJS.ProcessEnv, sub: string) => {
    const d = path.join(dir, sub);
    fs.mkdirSync(d);
    const res = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, d], { env: { ...process.env, ...env }, encoding: 'utf8' });
    return JSON.parse(res) as Record<string, unknown>;
  };
  const fast = run({ LAYERFS_SYS: '' }, 'addon');
  const slow = run({ LAYERFS_SYS: 'koffi' }, 'koffi');
  t.is(fast.backend, 'addon');
  t.is(slow.backend, 'koffi');
  t.deepEqual({ ...fast, backend: 0 }, { ...slow, backend: 0 });
  t.deepEqual(fast.list, ['user.a', 'user.b']);
  t.deepEqual(fast.a, [0, 1, 255]);
  t.is(fast.none, null);
  t.is(fast.create, 'EEXIST lsetxattr');
  t.is(fast.removed, 'ENODATA');
  t.is(fast.missing, 'ENOENT');
  t.deepEqual(fast.times, ['-4999999993', '1700000000123456789']);
  t.is(fast.swapped, true);
  t.is(fast.noreplace, 'EEXIST renameat2 true');
});

test('copyFileWithMeta: data, owner, xattrs but the private ones, mode and times in one call; nothing through a symlink', (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, 'src');
  fs.writeFileSync(src, randomBytes(70_000)); // more than the addon's 64 KiB scratch buffer
  fs.chownSync(src, 1234, 5678);
  fs.chmodSync(src, 0o4751);
  lsetxattr(src, 'user.keep', Buffer.from([0, 1, 2]));
  lsetxattr(src, 'trusted.overlay.opaque', 'y');
  lsetxattr(src, 'user.overlay.whiteout', 'y');
  lsetxattr(src, 'trusted.other', 'v');
  const at = { sec: 1_600_000_000n, nsec: 123 };
  const mt = { sec: -86_400n, nsec: 999_999_999 };
  const dst = path.join(dir, 'dst');
  t.true(copyFileWithMeta(src, dst, ['trusted.overlay.', 'user.overlay.'], { uid: 1234, gid: 5678 }, 0o4751, at, mt));
  const st = fs.lstatSync(dst, { bigint: true }); // before reading it (relatime would move atime)
  t.deepEqual(fs.readFileSync(dst), fs.readFileSync(src));
  t.is(Number(st.mode) & 0o7777, 0o4751, 'set-uid survives the chown (mode after owner)');
  t.deepEqual([Number(st.uid), Number(st.gid)], [1234, 5678]);
  t.is(st.atimeNs, 1_600_000_000_000_000_123n);
  t.is(st.mtimeNs, -86_400n * 1_000_000_000n + 999_999_999n);
  t.deepEqual(llistxattr(dst).sort(), ['trusted.other', 'user.keep']);
  t.deepEqual([...lgetxattr(dst, 'user.keep')!], [0, 1, 2]);
  // The destination is made exclusively; the source is never followed.
  const again = t.throws(() => copyFileWithMeta(src, dst, ['a.', 'b.'], { uid: 0, gid: 0 }, 0o644, at, mt)) as SysError;
  t.is(again.code, 'EEXIST');
  fs.symlinkSync(src, path.join(dir, 'link'));
  const viaLink = t.throws(() => copyFileWithMeta(path.join(dir, 'link'), path.join(dir, 'd2'), ['a.', 'b.'], { uid: 0, gid: 0 }, 0o644, at, mt)) as SysError;
  t.is(viaLink.code, 'ELOOP');
  t.false(fs.existsSync(path.join(dir, 'd2')), 'nothing made when the source cannot be opened');
});
