// Each isolation bullet of `layerfs run`, proven from inside the container, on the real two-layer
// busybox root (base + a layer that adds, changes and deletes files), with real namespaces and
// real mounts. Every test's teardown asserts that nothing was left behind.

import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CAPS, DEFAULT_CAP_NAMES, MASKED_PATHS, READONLY_PATHS } from '../../src/launcher/security.ts';
import { launch, runIn, sandbox, waitFor } from '../helpers/launcher.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { isRoot, sh } from './_helpers.ts';

const t0 = isRoot() ? test.serial : test.skip; // serial: each test starts real containers

function nsId(kind: string): string {
  return fs.readlinkSync(`/proc/self/ns/${kind}`);
}

t0('the root is the two-layer image: adds, changes and deletes of the top layer show', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'cat /etc/motd /etc/app.conf; hello; ls /bin/vi /etc/issue 2>&1; ls /srv; test -x /bin/busybox && echo busybox');
  t.is(r.code, 0, r.stderr);
  t.is(
    r.stdout,
    [
      'app layer motd',
      'greeting="hello from the app layer"',
      'hello from the app layer',
      "ls: /bin/vi: No such file or directory",
      "ls: /etc/issue: No such file or directory",
      'index.html',
      'busybox',
      '',
    ].join('\n'),
  );
});

t0('mount namespace + pivot_root: a host marker file is invisible, no host path is reachable', async (t) => {
  const sb = sandbox(t);
  const marker = path.join(sb.dir, 'HOST-MARKER');
  fs.writeFileSync(marker, 'secret');
  const r = await sh(sb, `cat ${marker} 2>&1; ls ${sb.dir} 2>&1; ls /.oldroot 2>&1; cat /proc/self/mountinfo; readlink /proc/self/ns/mnt`);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /HOST-MARKER'?: No such file or directory/);
  t.notRegex(r.stdout, /secret/);
  const mountinfo = r.stdout.split('\n').filter((l) => / - /.test(l));
  // Only the container's own mounts: the root, proc, dev (+ nodes, pts, shm), sys, tmp.
  // (and the masked and read-only kernel files over /proc and /sys, where this kernel has them)
  const points = mountinfo.map((l) => l.split(' ')[4]).sort();
  const kernelFiles = [...MASKED_PATHS, ...READONLY_PATHS].filter((p) => fs.existsSync(p)).sort();
  t.deepEqual(points.filter((p) => !kernelFiles.includes(p)), ['/', '/dev', '/dev/full', '/dev/null', '/dev/pts', '/dev/random', '/dev/shm', '/dev/tty', '/dev/urandom', '/dev/zero', '/proc', '/sys', '/tmp'].sort());
  t.deepEqual(points.filter((p) => kernelFiles.includes(p)), kernelFiles);
  t.regex(mountinfo.find((l) => l.split(' ')[4] === '/')!, / - fuse\.layerfs /, 'the root is the layerfs mount, pivoted into');
  t.not(r.stdout.trim().split('\n').at(-1), nsId('mnt'));
  for (const l of mountinfo) t.notRegex(l.split(' ')[3], new RegExp(os.tmpdir()), 'no host directory is bind-mounted in');
});

t0('PID namespace: CMD is PID 1, ps shows only the container', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'echo $$; ps -o pid,comm; readlink /proc/self/ns/pid; cat /proc/1/cmdline | tr "\\0" " "');
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.is(lines[0], '1');
  t.regex(lines[1], /PID +COMMAND/);
  const procs = lines.slice(2, -2).map((l) => l.trim().split(/\s+/));
  t.deepEqual(procs[0], ['1', 'sh'], 'PID 1 is the command itself (no init in between)');
  t.deepEqual(procs.slice(1).map((p) => p[1]), ['ps'], 'nothing but the shell and ps');
  t.not(lines.at(-2), nsId('pid'));
  t.is(lines.at(-1)!.trim(), `/bin/sh -c ${'echo $$; ps -o pid,comm; readlink /proc/self/ns/pid; cat /proc/1/cmdline | tr "\\0" " "'}`);
});

t0('UTS namespace: the host name differs; --hostname sets it', async (t) => {
  const sb = sandbox(t);
  const a = await sh(sb, 'hostname; readlink /proc/self/ns/uts');
  t.is(a.code, 0, a.stderr);
  const [name, ns] = a.stdout.trim().split('\n');
  t.not(name, os.hostname());
  t.not(ns, nsId('uts'));
  const b = await sh(sb, 'hostname; echo $HOSTNAME', ['--hostname', 'box1']);
  t.is(b.stdout, 'box1\nbox1\n');
  t.is(os.hostname(), fs.readFileSync('/proc/sys/kernel/hostname', 'utf8').trim(), 'the host keeps its name');
});

t0('IPC and cgroup namespaces: own ids, the cgroup namespace is rooted at the container cgroup', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'readlink /proc/self/ns/ipc; readlink /proc/self/ns/cgroup; grep -E ":(memory|pids):" /proc/self/cgroup');
  t.is(r.code, 0, r.stderr);
  const [ipc, cgroup, ...cg] = r.stdout.trim().split('\n');
  t.not(ipc, nsId('ipc'));
  t.not(cgroup, nsId('cgroup'));
  t.true(cg.length >= 1);
  for (const l of cg) t.regex(l, /:\/$/, `inside, its own cgroup is the root: ${l}`);
});

t0('network: only lo, and it is up; --net host shares the host interfaces', async (t) => {
  const sb = sandbox(t);
  // busybox ping needs a raw socket: CAP_NET_RAW, which podman's default set (and ours) lacks.
  const r = await sh(sb, 'cat /proc/net/dev; ip link; readlink /proc/self/ns/net; ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok', ['--cap-add', 'NET_RAW']);
  t.is(r.code, 0, r.stderr);
  const ifaces = r.stdout
    .split('\n')
    .filter((l) => /^\s*[^\s|]+:\s+\d/.test(l))
    .map((l) => l.trim().split(':')[0]);
  t.deepEqual(ifaces, ['lo']);
  const links = r.stdout.split('\n').filter((l) => /^\d+: /.test(l));
  t.is(links.length, 1);
  t.regex(links[0], /^1: lo: <LOOPBACK,UP,LOWER_UP>/);
  t.regex(r.stdout, /ping-ok/);
  t.not(r.stdout.trim().split('\n').find((l) => l.startsWith('net:')), nsId('net'));

  const host = await sh(sb, 'readlink /proc/self/ns/net; cat /proc/net/dev | wc -l', ['--net', 'host']);
  t.is(host.code, 0, host.stderr);
  const [ns, lines] = host.stdout.trim().split('\n');
  t.is(ns, nsId('net'));
  t.is(Number(lines), fs.readFileSync('/proc/net/dev', 'utf8').trim().split('\n').length);
});

t0('/dev is minimal, /proc is the new PID namespace, /sys is read-only, /tmp is a writable tmpfs', async (t) => {
  const sb = sandbox(t);
  const r = await sh(
    sb,
    [
      'ls /dev | tr "\\n" " "; echo',
      'head -c 4 /dev/zero | od -An -tx1; head -c 8 /dev/urandom | wc -c; echo x > /dev/null && echo null-ok',
      'echo x > /dev/full 2>/dev/null || echo full-ENOSPC',
      'ls /proc | grep -E "^[0-9]+$" | tr "\\n" " "; echo',
      'touch /sys/x 2>&1; grep " /sys " /proc/self/mounts',
      'echo hi > /tmp/t && cat /tmp/t; grep " /tmp " /proc/self/mounts; echo s > /dev/shm/s && echo shm-ok',
    ].join('; '),
  );
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.is(lines[0].trim(), 'fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero');
  t.is(lines[1].trim(), '00 00 00 00');
  t.is(lines[2].trim(), '8');
  t.is(lines[3], 'null-ok');
  t.is(lines[4], 'full-ENOSPC');
  const pids = lines[5].trim().split(' ').map(Number);
  t.is(pids[0], 1, 'PID 1 is there');
  t.true(pids.length <= 4, `only PID 1 and the pipeline's own processes: ${lines[5]}`);
  t.regex(lines[6], /Read-only file system/);
  t.regex(lines[7], /^sysfs \/sys sysfs ro,/);
  t.is(lines[8], 'hi');
  t.regex(lines[9], /^tmpfs \/tmp tmpfs rw,nosuid,nodev/);
  t.is(lines[10], 'shm-ok');
});

t0('no_new_privs and podman\'s default capability set', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'grep -E "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)" /proc/self/status');
  t.is(r.code, 0, r.stderr);
  let mask = 0n;
  for (const c of DEFAULT_CAP_NAMES) mask |= 1n << BigInt(CAPS[c]);
  const hex = mask.toString(16).padStart(16, '0');
  const fields = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(/:\s*/)));
  t.deepEqual(fields, { CapInh: '0'.repeat(16), CapPrm: hex, CapEff: hex, CapBnd: hex, CapAmb: '0'.repeat(16), NoNewPrivs: '1' });
  const sysAdmin = await sh(sb, 'mount -t tmpfs x /mnt 2>&1; hostname evil 2>&1; ip link add d0 type dummy 2>&1; echo done');
  t.regex(sysAdmin.stdout, /mount: permission denied|Operation not permitted/);
  t.regex(sysAdmin.stdout, /hostname: sethostname: Operation not permitted/);
  t.regex(sysAdmin.stdout, /Operation not permitted/);
});

t0('writes land in the upper; the lowers are untouched', async (t) => {
  const sb = sandbox(t);
  const upper = path.join(sb.dir, 'upper');
  const work = path.join(sb.dir, 'work');
  fs.mkdirSync(upper);
  fs.mkdirSync(work);
  const r = await sh(sb, 'echo changed >> /etc/motd; echo new > /root/new; rm /etc/app.conf; mkdir /srv2', ['--upper', upper, '--work', work]);
  t.is(r.code, 0, r.stderr);
  t.is(fs.readFileSync(path.join(upper, 'etc/motd'), 'utf8'), 'app layer motd\nchanged\n');
  t.is(fs.readFileSync(path.join(upper, 'root/new'), 'utf8'), 'new\n');
  const wh = fs.lstatSync(path.join(upper, 'etc/app.conf'));
  t.true(wh.isCharacterDevice() && wh.rdev === 0, 'a kernel-format whiteout');
  t.true(fs.statSync(path.join(upper, 'srv2')).isDirectory());
  t.false(fs.existsSync(path.join(upper, 'proc')), 'the mount points exist in the image: nothing else is written');
  t.is(fs.readFileSync(path.join(rootfs().app, 'etc/motd'), 'utf8'), 'app layer motd\n');
  t.true(fs.existsSync(path.join(rootfs().app, 'etc/app.conf')));
  // The same upper again: the changes are there.
  const again = await sh(sb, 'cat /etc/motd /root/new; ls /etc/app.conf 2>&1', ['--upper', upper, '--work', work]);
  t.is(again.stdout, "app layer motd\nchanged\nnew\nls: /etc/app.conf: No such file or directory\n");
});

t0('the throw-away upper is removed afterwards; --keep keeps it and prints its path', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'echo data > /root/file; ls -d /root/file');
  t.is(r.code, 0, r.stderr);
  t.deepEqual(fs.readdirSync(sb.tmpDir).filter((e) => e.startsWith('layerfs-run-')), [], 'nothing left in TMPDIR');

  const k = await sh(sb, 'echo data > /root/file', ['--keep']);
  t.is(k.code, 0, k.stderr);
  const m = /^layerfs run: upper kept: (\S+) \(workdir (\S+)\)$/m.exec(k.stderr);
  t.truthy(m, k.stderr);
  const upper = m![1];
  t.true(upper.startsWith(sb.tmpDir + '/layerfs-run-'));
  t.is(fs.readFileSync(path.join(upper, 'root/file'), 'utf8'), 'data\n');
  fs.rmSync(path.dirname(upper), { recursive: true }); // the kept upper is the caller's now
});

t0('exit status: CMD\'s own, 128+N when killed by signal N, 127 when not found', async (t) => {
  const sb = sandbox(t);
  t.is((await sh(sb, 'exit 42')).code, 42);
  t.is((await sh(sb, 'true')).code, 0);
  // PID 1 cannot be killed by a signal it has no handler for, not even from inside: a fault is
  // one it cannot ignore; SIGKILL from the host is tested in signals.test.ts.
  const segv = await runIn(sb, ['--lower', rootfs().lower, '--', '/bin/sh', '-c', 'kill -SEGV $$; exit 3']);
  t.is(segv.code, 3, 'PID 1 ignores a signal it has no handler for');
  const child = await sh(sb, 'sh -c \'kill -TERM $$\'; echo "child status $?"');
  t.is(child.stdout, 'child status 143\n');
  const nf = await runIn(sb, ['--lower', rootfs().lower, '--', 'no-such-command']);
  t.is(nf.code, 127);
  t.is(nf.stderr, 'layerfs run: no-such-command: command not found in the container\n');
  const notExec = await runIn(sb, ['--lower', rootfs().lower, '--', '/etc/motd']);
  t.is(notExec.code, 126);
  t.regex(notExec.stderr, /^layerfs run: cannot execute \/etc\/motd: permission denied\n$/);
});

t0('-e, -w, -u and the environment CMD gets', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'env | sort; pwd; id', ['-e', 'FOO=bar baz', '-e', 'EMPTY=', '-w', '/srv/work', '-u', '1000:1000'], {
    env: { HOST_SECRET: 'leak' },
  });
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const env = lines.slice(0, -2).filter((l) => !l.startsWith('SANDBOX=') && !l.startsWith('PWD=') && !l.startsWith('SHLVL='));
  t.deepEqual(env, ['EMPTY=', 'FOO=bar baz', 'HOME=/home/user', `HOSTNAME=${lines.find((l) => l.startsWith('HOSTNAME='))!.slice(9)}`, 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
  t.is(lines.at(-2), '/srv/work');
  t.is(lines.at(-1), 'uid=1000(user) gid=1000(user) groups=1000(user)');

  const caps = await sh(sb, 'grep -E "^Cap(Prm|Eff)" /proc/self/status; touch /etc/x 2>&1', ['-u', '1000']);
  t.is(caps.stdout, 'CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\ntouch: /etc/x: Permission denied\n');
  const pass = await sh(sb, 'echo $FROM_HOST', ['-e', 'FROM_HOST'], { env: { FROM_HOST: 'passed' } });
  t.is(pass.stdout, 'passed\n', '-e KEY passes the launcher\'s value on');
});

t0('--read-only: the root cannot be written, /tmp and volumes can', async (t) => {
  const sb = sandbox(t);
  const vol = path.join(sb.dir, 'vol');
  fs.mkdirSync(vol);
  const r = await sh(sb, 'touch /etc/x 2>&1; mkdir /new 2>&1; echo ok > /tmp/ok && cat /tmp/ok; echo v > /data/v && echo vol-ok; grep " / " /proc/self/mounts', ['--read-only', '-v', `${vol}:/data`]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /touch: \/etc\/x: Read-only file system/);
  t.regex(r.stdout, /mkdir: can't create directory '\/new': Read-only file system/);
  t.regex(r.stdout, /^ok$/m);
  t.regex(r.stdout, /^vol-ok$/m);
  t.regex(r.stdout, /^layerfs \/ fuse\.layerfs ro,/m);
  t.is(fs.readFileSync(path.join(vol, 'v'), 'utf8'), 'v\n');
});

t0('volumes: data written there survives the container; :ro is read-only; file volumes', async (t) => {
  const sb = sandbox(t);
  const vol = path.join(sb.dir, 'vol');
  const ro = path.join(sb.dir, 'ro');
  fs.mkdirSync(vol);
  fs.mkdirSync(ro);
  fs.writeFileSync(path.join(ro, 'r'), 'read me\n');
  const file = path.join(sb.dir, 'single.conf');
  fs.writeFileSync(file, 'one file\n');
  const args = ['-v', `${vol}:/data/deep`, '-v', `${ro}:/ro:ro`, '-v', `${file}:/etc/single.conf`];
  const r = await sh(sb, 'echo persisted > /data/deep/out; cat /ro/r; touch /ro/x 2>&1; cat /etc/single.conf', args);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'read me\ntouch: /ro/x: Read-only file system\none file\n');
  t.is(fs.readFileSync(path.join(vol, 'out'), 'utf8'), 'persisted\n');
  const again = await sh(sb, 'cat /data/deep/out', args);
  t.is(again.stdout, 'persisted\n', 'a second container sees it');
  t.deepEqual(fs.readdirSync(ro), ['r']);
});

t0('a volume target behind a symlink in the image stays inside the container root', async (t) => {
  const sb = sandbox(t);
  const upper = path.join(sb.dir, 'upper');
  const work = path.join(sb.dir, 'work');
  fs.mkdirSync(path.join(upper, 'srv'), { recursive: true });
  fs.mkdirSync(work);
  // An image that points at host paths: absolutely, and by climbing with '..'.
  fs.symlinkSync(sb.dir, path.join(upper, 'srv', 'escape'));
  fs.symlinkSync('../../../../../../../../etc/layerfs-hostetc', path.join(upper, 'srv', 'escape2'));
  const vol = path.join(sb.dir, 'vol');
  fs.mkdirSync(vol);
  fs.writeFileSync(path.join(vol, 'v'), 'vol\n');
  const r = await sh(sb, `ls ${sb.dir}/x; ls /etc/layerfs-hostetc`, ['--upper', upper, '--work', work, '-v', `${vol}:/srv/escape/x`, '-v', `${vol}:/srv/escape2`]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'v\nv\n');
  // The mount points were made inside the container's root (its /tmp tmpfs, and the upper):
  t.true(fs.statSync(path.join(upper, 'etc/layerfs-hostetc')).isDirectory());
  t.false(fs.existsSync(path.join(sb.dir, 'x')), 'never on the host');
  t.false(fs.existsSync('/etc/layerfs-hostetc'), 'never on the host');
});

t0('--userns as root: container root is an unprivileged host id; the upper keeps the image\'s ids', async (t) => {
  const sb = sandbox(t);
  const upper = path.join(sb.dir, 'upper');
  const work = path.join(sb.dir, 'work');
  fs.mkdirSync(upper);
  fs.mkdirSync(work);
  const r = await sh(sb, 'cat /proc/self/uid_map /proc/self/gid_map; readlink /proc/self/ns/user; id; echo w > /root/w && echo write-ok; stat -c "%u:%g" /etc/motd /root/w', ['--userns', '--upper', upper, '--work', work]);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const [uidMap, gidMap] = lines.slice(0, 2).map((l) => l.trim().split(/\s+/).map(Number));
  t.is(uidMap[0], 0);
  t.true(uidMap[1] >= 100000, `container root is host uid ${uidMap[1]}, not a privileged one`);
  t.is(uidMap[2], 65536);
  t.is(gidMap[0], 0);
  t.true(gidMap[1] >= 100000);
  t.not(lines[2], nsId('user'));
  t.is(lines[3], 'uid=0(root) gid=0(root) groups=0(root)', 'root\'s groups: its gid (docker\'s setgroups)');
  t.is(lines[4], 'write-ok');
  t.deepEqual(lines.slice(5), ['0:0', '0:0'], 'the image\'s root-owned files are the container root\'s');
  const st = fs.statSync(path.join(upper, 'root/w'));
  t.deepEqual([st.uid, st.gid], [0, 0], 'stored with the image\'s ids (what commit packs)');
  const u = await sh(sb, 'id', ['--userns', '-u', '1000:1000']);
  t.is(u.stdout, 'uid=1000(user) gid=1000(user) groups=1000(user)\n');
  // Seen on the host through the mount, the container's files belong to its range.
  const l = launch(sb, ['--userns', '--stop-timeout', '0', '--lower', rootfs().lower, '--', '/bin/sh', '-c', 'echo x > /root/mine; cat /proc/self/uid_map; sleep 30']);
  const mine = path.join(sb.runDir, l.id, 'root', 'root', 'mine');
  try {
    await waitFor(() => fs.existsSync(mine), 20_000, 'the file written in the container');
    const seen = fs.statSync(mine);
    const motd = fs.statSync(path.join(sb.runDir, l.id, 'root', 'etc', 'motd'));
    t.true(seen.uid >= 100000 && seen.gid >= 100000, `host view ${seen.uid}:${seen.gid}`);
    t.deepEqual([motd.uid, motd.gid], [seen.uid, seen.gid], 'the image\'s root files too');
  } finally {
    l.child.kill('SIGTERM');
    await l.result;
  }
});

t0('--userns=auto: two containers at once get disjoint host ranges', async (t) => {
  const sb = sandbox(t);
  const [a, b] = await Promise.all([0, 1].map(() => sh(sb, 'cat /proc/self/uid_map; sleep 1', ['--userns=auto'])));
  t.is(a.code, 0, a.stderr);
  t.is(b.code, 0, b.stderr);
  const ha = Number(a.stdout.trim().split(/\s+/)[1]);
  const hb = Number(b.stdout.trim().split(/\s+/)[1]);
  t.true(ha > 0 && hb > 0);
  t.true(Math.abs(ha - hb) >= 65536, `ranges at ${ha} and ${hb} overlap`);
});

t0('--uidmap/--gidmap as podman spells them; a map that reaches host root is refused', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'cat /proc/self/uid_map /proc/self/gid_map', ['--uidmap', '0:300000:1000', '--gidmap', '0:400000:2000']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)), [['0', '300000', '1000'], ['0', '400000', '2000']]);
  const bad = await sh(sb, 'true', ['--uidmap', '0:0:65536']);
  t.is(bad.code, 125);
  t.is(bad.stderr, 'layerfs run: --uidmap: maps container id 0 to host id 0; container ids must be unprivileged on the host\n');
  const unmapped = await sh(sb, 'true', ['--uidmap', '0:300000:10', '-u', '500']);
  t.is(unmapped.code, 125);
  t.regex(unmapped.stderr, /user 500:0 is not mapped in the container's user namespace/, 'no passwd entry: gid 0, as docker');
});

t0('--rootfs reuses an existing directory (e.g. a mount) as the root and leaves it alone', async (t) => {
  const sb = sandbox(t);
  const dir = path.join(sb.dir, 'plain-root');
  fs.cpSync(rootfs().base, dir, { recursive: true, verbatimSymlinks: true });
  const r = await runIn(sb, ['--rootfs', dir, '--', '/bin/sh', '-c', 'cat /etc/motd; echo x > /root/x']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'busybox base layer\n');
  t.is(fs.readFileSync(path.join(dir, 'root/x'), 'utf8'), 'x\n');
  t.true(fs.existsSync(path.join(dir, 'etc')));
});
