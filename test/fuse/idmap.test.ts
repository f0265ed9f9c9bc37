// uidmapping=/gidmapping= (podman's --uidmap): the mapping itself, finding a lower's plain
// path behind an idmapped mount, and a real mount that shows and stores shifted owners.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IdMap, IdMapping, OVERFLOW_ID, formatOverrideStat, parseOverrideStat } from '../../src/fuse/idmap.ts';
import { parseMountinfo, withoutIdmap } from '../../src/mountinfo.ts';
import { run } from '../helpers/exec.ts';
import { layerfsBin, makeTmp, unmount } from '../helpers/mounts.ts';

test('a mapping shows disk ids as host ids and stores host ids as disk ids', (t) => {
  const m = IdMapping.parse(':0:100000:65536');
  t.deepEqual(m.ranges, [{ container: 0, host: 100000, size: 65536 }]);
  t.is(m.toHost(0), 100000);
  t.is(m.toHost(65535), 165535);
  t.is(m.toHost(65536), OVERFLOW_ID, 'past the range');
  t.is(m.toDisk(100000), 0);
  t.is(m.toDisk(165535), 65535);
  t.is(m.toDisk(0), OVERFLOW_ID, 'host root is not in the container');
  t.is(m.toDisk(99999), OVERFLOW_ID);
});

test('several ranges, first match wins', (t) => {
  const m = IdMapping.parse('0:1000:1:1:200000:100');
  t.is(m.toHost(0), 1000);
  t.is(m.toHost(1), 200000);
  t.is(m.toHost(100), 200099);
  t.is(m.toHost(101), OVERFLOW_ID);
  t.is(m.toDisk(1000), 0);
  t.is(m.toDisk(200050), 51);
  t.throws(() => IdMapping.parse('0:1'));
  t.throws(() => IdMapping.parse('a:b:c'));
});

test('IdMap: a missing mapping leaves those ids alone; -1 (unchanged) stays -1', (t) => {
  const m = IdMap.fromOptions({ uidmapping: ':0:100000:65536' })!;
  t.deepEqual(m.shown({ uid: 5, gid: 5, size: 1 }), { uid: 100005, gid: 5, size: 1 });
  t.is(m.uidToDisk(-1), -1);
  t.is(m.uidToDisk(100007), 7);
  t.is(m.gidToDisk(100007), 100007);
  t.is(IdMap.fromOptions({}), undefined);
});

test('IdMap: squash ids replace what is shown, never what is stored', (t) => {
  const m = IdMap.fromOptions({ squashUid: 100000, squashGid: 100001 })!;
  t.deepEqual(m.shown({ uid: 5, gid: 7 }), { uid: 100000, gid: 100001 });
  t.is(m.uidToDisk(100007), 100007);
  t.is(m.gidToDisk(3), 3);
  const both = IdMap.fromOptions({ uidmapping: '0:100000:10', squashGid: 0 })!;
  t.deepEqual(both.shown({ uid: 5, gid: 7 }), { uid: 100005, gid: 0 });
  t.is(both.uidToDisk(100005), 5);
});

// As podman 4.3 leaves them: the store's overlay/ dir bind-mounted on itself, and an idmapped
// mount of it under the container's mapped/0.
const MOUNTINFO = [
  '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
  '42 27 254:0 /tmp/s/overlay /tmp/s/overlay rw,relatime - ext4 /dev/vda rw',
  '50 42 254:0 /tmp/s/overlay /tmp/s/overlay/c1/mapped/0 rw,relatime,idmapped - ext4 /dev/vda rw',
  '51 27 0:33 / /tmp/other rw,relatime - tmpfs tmpfs rw',
  '52 51 0:33 /x /tmp/other/y/mapped rw,idmapped - tmpfs tmpfs rw',
].join('\n');

test('withoutIdmap: the same directory through a plain mount of its filesystem', (t) => {
  const mi = parseMountinfo(MOUNTINFO);
  t.is(withoutIdmap('/tmp/s/overlay/c1/mapped/0/abc/diff', mi), '/tmp/s/overlay/abc/diff');
  t.is(withoutIdmap('/tmp/s/overlay/c1/mapped/0', mi), '/tmp/s/overlay');
  t.is(withoutIdmap('/tmp/s/overlay/abc/diff', mi), null, 'not idmapped');
  t.is(withoutIdmap('/tmp/other/y/mapped/q', mi), '/tmp/other/x/q', 'a bind of a sub-directory');
  // The only plain mount of the filesystem shows a different directory: no way around.
  const only = parseMountinfo(['27 1 254:0 / / rw - ext4 /dev/vda rw', '60 27 0:40 /a /m rw,idmapped - tmpfs t rw', '61 27 0:40 /b /n rw - tmpfs t rw'].join('\n'));
  t.is(withoutIdmap('/m/z', only), null);
});

// A real mount: lower files stored as container ids, shown as host ids; a new file made by a
// host id in the range is stored as its container id; chown maps too.
test('mount with uidmapping=/gidmapping= shows and stores shifted owners', async (t) => {
  const tmp = makeTmp(t);
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((n) => path.join(tmp, n));
  for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d);
  fs.chmodSync(tmp, 0o755);
  fs.writeFileSync(path.join(lower, 'root-file'), 'r');
  fs.writeFileSync(path.join(lower, 'user-file'), 'u');
  fs.lchownSync(path.join(lower, 'user-file'), 1000, 1001);
  fs.writeFileSync(path.join(lower, 'outside'), 'o');
  fs.lchownSync(path.join(lower, 'outside'), 70000, 70000);
  fs.chmodSync(upper, 0o777); // the merged root takes its attributes from the upper
  t.teardown(() => unmount(mnt));
  const r = await run(layerfsBin, ['-o', `lowerdir=${lower},upperdir=${upper},workdir=${work},uidmapping=:0:100000:65536,gidmapping=:0:200000:65536`, mnt], { viaFiles: true });
  t.is(r.code, 0, r.stderr);

  const ids = (p: string) => {
    const st = fs.lstatSync(p);
    return [st.uid, st.gid];
  };
  t.deepEqual(ids(mnt), [100000, 200000], 'the root directory');
  t.deepEqual(ids(path.join(mnt, 'root-file')), [100000, 200000]);
  t.deepEqual(ids(path.join(mnt, 'user-file')), [101000, 201001]);
  t.deepEqual(ids(path.join(mnt, 'outside')), [OVERFLOW_ID, OVERFLOW_ID], 'not in the mapping');
  // readdirplus answers carry the same ids as lookups
  const listed = (await run('ls', ['-ln', mnt])).stdout.toString();
  t.regex(listed, /101000 +201001 .* user-file/);

  // A new file by host uid 100007 / gid 200008: stored as 7/8.
  const mk = await run('setpriv', ['--reuid', '100007', '--regid', '200008', '--clear-groups', 'sh', '-c', `echo n > ${mnt}/new && mkdir ${mnt}/dir`]);
  t.is(mk.code, 0, mk.stderr);
  t.deepEqual(ids(path.join(upper, 'new')), [7, 8]);
  t.deepEqual(ids(path.join(upper, 'dir')), [7, 8]);
  t.deepEqual(ids(path.join(mnt, 'new')), [100007, 200008]);

  // chown through the mount: host ids in, container ids on disk.
  fs.lchownSync(path.join(mnt, 'root-file'), 100005, 200006);
  t.deepEqual(ids(path.join(upper, 'root-file')), [5, 6]);
  t.deepEqual(ids(path.join(mnt, 'root-file')), [100005, 200006]);
  // chown of the group only keeps the owner
  fs.lchownSync(path.join(mnt, 'new'), -1, 200009);
  t.deepEqual(ids(path.join(upper, 'new')), [7, 9]);
});

test('override_stat values as containers/storage writes them', (t) => {
  t.deepEqual(parseOverrideStat('0:0:0700'), { uid: 0, gid: 0, mode: 0o700 });
  t.deepEqual(parseOverrideStat('1000:1001:04755'), { uid: 1000, gid: 1001, mode: 0o4755 });
  t.deepEqual(parseOverrideStat('5:6:0644\0'), { uid: 5, gid: 6, mode: 0o644 }, 'a NUL-terminated value');
  t.is(parseOverrideStat('0:0'), null);
  t.is(parseOverrideStat('a:0:0700'), null);
  t.is(formatOverrideStat({ uid: 5, gid: 6, mode: 0o644 }), '5:6:0644');
});

test('mount with xattr_permissions=2 shows owner and mode from user.containers.override_stat', async (t) => {
  const tmp = makeTmp(t);
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((n) => path.join(tmp, n));
  for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d);
  // As force_mask=shared leaves a layer: mode 0755 on disk, the real one in the xattr.
  fs.mkdirSync(path.join(lower, 'root'), 0o755);
  fs.writeFileSync(path.join(lower, 'shadow'), 's', { mode: 0o755 });
  fs.writeFileSync(path.join(lower, 'plain'), 'p', { mode: 0o644 });
  const set = (f: string, v: string) => run('setfattr', ['-n', 'user.containers.override_stat', '-v', v, path.join(lower, f)]);
  t.is((await set('root', '0:0:0700')).code, 0);
  t.is((await set('shadow', '0:42:0640')).code, 0);
  t.teardown(() => unmount(mnt));
  const r = await run(layerfsBin, ['-o', `lowerdir=${lower},upperdir=${upper},workdir=${work},xattr_permissions=2,uidmapping=0:100000:65536,gidmapping=0:100000:65536`, mnt], { viaFiles: true });
  t.is(r.code, 0, r.stderr);
  const st = (f: string) => {
    const s = fs.lstatSync(path.join(mnt, f));
    return `${s.uid}:${s.gid}:${(s.mode & 0o7777).toString(8)}:${s.isDirectory() ? 'd' : 'f'}`;
  };
  t.is(st('root'), '100000:100000:700:d');
  t.is(st('shadow'), '100000:100042:640:f');
  t.is(st('plain'), '100000:100000:644:f', 'no xattr: the file itself');
  // chmod/chown through the mount keep the xattr in step (stored in container ids).
  fs.chmodSync(path.join(mnt, 'shadow'), 0o600);
  fs.lchownSync(path.join(mnt, 'shadow'), 100007, -1);
  t.is(st('shadow'), '100007:100042:600:f');
  const x = await run('getfattr', ['--only-values', '-n', 'user.containers.override_stat', path.join(upper, 'shadow')]);
  t.is(x.stdout.toString(), '7:42:0600');
  // Through the mount the override is the owner and mode, not an xattr.
  const seen = await run('getfattr', ['-d', '-m', '-', path.join(mnt, 'shadow')]);
  t.notRegex(seen.stdout.toString(), /override_stat/);
  t.not((await run('getfattr', ['-n', 'user.containers.override_stat', path.join(mnt, 'shadow')])).code, 0);
});

test('uidmapping= with backend=fuse-native is refused in one line', async (t) => {
  const tmp = makeTmp(t);
  const [lower, mnt] = ['lower', 'mnt'].map((n) => path.join(tmp, n));
  for (const d of [lower, mnt]) fs.mkdirSync(d);
  t.teardown(() => unmount(mnt));
  const r = await run(layerfsBin, ['-o', `lowerdir=${lower},uidmapping=0:1000:1,backend=fuse-native`, mnt], { viaFiles: true });
  t.is(r.code, 2);
  t.is(r.stderr.trim(), "layerfs: uidmapping=/gidmapping=/squash_to_* need backend=lowlevel (fuse-native does not pass the caller's ids)");
});

test('mount with squash_to_uid=/squash_to_gid= shows one owner, stores the real ones', async (t) => {
  const tmp = makeTmp(t);
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((n) => path.join(tmp, n));
  for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(lower, 'f'), 'f');
  fs.lchownSync(path.join(lower, 'f'), 1000, 1001);
  t.teardown(() => unmount(mnt));
  const r = await run(layerfsBin, ['-o', `lowerdir=${lower},upperdir=${upper},workdir=${work},squash_to_uid=4242,squash_to_gid=4343`, mnt], { viaFiles: true });
  t.is(r.code, 0, r.stderr);
  const st = fs.lstatSync(path.join(mnt, 'f'));
  t.deepEqual([st.uid, st.gid], [4242, 4343]);
  fs.writeFileSync(path.join(mnt, 'new'), 'n'); // by root
  const up = fs.lstatSync(path.join(upper, 'new'));
  t.deepEqual([up.uid, up.gid], [0, 0]);
  const shown = fs.lstatSync(path.join(mnt, 'new'));
  t.deepEqual([shown.uid, shown.gid], [4242, 4343]);
});

// ---------------------------------------------------------------------------------------------
// What podman 4.3 does on a kernel with idmapped mounts: the lowers reach the mount program
// through an idmapped mount (disk uid 0 seen as 100000), with uidmapping= as well, and the
// idmapped mount is detached as soon as the program returns. Rebuilt here without podman.

const SYS_OPEN_TREE = 428;
const SYS_MOVE_MOUNT = 429;
const SYS_MOUNT_SETATTR = 442;
const OPEN_TREE_CLONE = 1;
const OPEN_TREE_CLOEXEC = 0o2000000;
const AT_FDCWD = -100;
const AT_EMPTY_PATH = 0x1000;
const MOVE_MOUNT_F_EMPTY_PATH = 4;
const MOUNT_ATTR_IDMAP = 0x00100000;

/** Bind `src` at `target` as an idmapped mount with the user namespace of process `pid`. */
async function idmappedBind(src: string, target: string, pid: number): Promise<void> {
  const { default: koffi } = await import('koffi');
  const libc = koffi.load('libc.so.6');
  const syscall = libc.func('long syscall(long number, ...)');
  const errno = libc.func('int *__errno_location(void)');
  const check = (what: string, r: number | bigint) => {
    if (Number(r) < 0) throw new Error(`${what} failed: errno ${koffi.decode(errno(), 'int')}`);
    return Number(r);
  };
  const userns = fs.openSync(`/proc/${pid}/ns/user`, 'r');
  try {
    const tree = check('open_tree', syscall(SYS_OPEN_TREE, 'int', AT_FDCWD, 'str', src, 'uint', OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    try {
      const attr = Buffer.alloc(32); // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd }
      attr.writeBigUInt64LE(BigInt(MOUNT_ATTR_IDMAP), 0);
      attr.writeBigUInt64LE(BigInt(userns), 24);
      check('mount_setattr', syscall(SYS_MOUNT_SETATTR, 'int', tree, 'str', '', 'uint', AT_EMPTY_PATH, 'void *', attr, 'size_t', 32));
      check('move_mount', syscall(SYS_MOVE_MOUNT, 'int', tree, 'str', '', 'int', AT_FDCWD, 'str', target, 'uint', MOVE_MOUNT_F_EMPTY_PATH));
    } finally {
      fs.closeSync(tree);
    }
  } finally {
    fs.closeSync(userns);
  }
}

test('uidmapping= with lowers on an idmapped mount that is detached at once (podman 4.3)', async (t) => {
  const tmp = fs.realpathSync(makeTmp(t));
  const store = path.join(tmp, 'store');
  const [lower, upper, work, mnt, mapped] = ['store/lower', 'upper', 'work', 'mnt', 'mapped'].map((n) => path.join(tmp, n));
  for (const d of [store, lower, upper, work, mnt, mapped]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(lower, 'f'), 'lower data');
  fs.lchownSync(path.join(lower, 'f'), 0, 0);
  t.teardown(() => unmount(mnt));
  t.teardown(() => unmount(mapped));

  // A process in a user namespace where host 100000.. is 0..: its namespace gives the idmap.
  const { spawn } = await import('node:child_process');
  const holder = spawn('unshare', ['--user', 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(() => void holder.kill('SIGKILL'));
  // Root writes the maps itself (unshare --map-users goes through newuidmap and /etc/subuid).
  const nsOf = (pid: number | string) => fs.readlinkSync(`/proc/${pid}/ns/user`);
  const until = Date.now() + 10_000;
  while (nsOf(holder.pid!) === nsOf('self') && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  fs.writeFileSync(`/proc/${holder.pid}/uid_map`, '0 100000 65536\n');
  fs.writeFileSync(`/proc/${holder.pid}/gid_map`, '0 100000 65536\n');
  await idmappedBind(store, mapped, holder.pid!);
  t.is(fs.lstatSync(path.join(mapped, 'lower', 'f')).uid, 100000, 'the idmapped view shifts disk uid 0');

  const r = await run(layerfsBin, ['-o', `lowerdir=${mapped}/lower,upperdir=${upper},workdir=${work},uidmapping=:0:100000:65536,gidmapping=:0:100000:65536`, mnt], { viaFiles: true });
  t.is(r.code, 0, r.stderr);
  t.is((await run('umount', ['-l', mapped])).code, 0, 'detached, as podman does');

  const st = fs.lstatSync(path.join(mnt, 'f'));
  t.deepEqual([st.uid, st.gid], [100000, 100000], 'shifted once, not twice');
  t.is(fs.readFileSync(path.join(mnt, 'f'), 'utf8'), 'lower data', 'still readable after the detach');
});
