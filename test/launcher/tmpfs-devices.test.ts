// --tmpfs and --device in real containers: what /proc/mounts shows inside, docker's default
// noexec, size=, mount points made inside the root only; a device node passed with --device
// opens with exactly its permissions while one not passed stays denied (device cgroup v1 here,
// and the cgroup v2 eBPF program for the same list). Root only.

import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { applyDeviceFilterV2 } from '../../src/launcher/devices-bpf.ts';
import { containerDevices } from '../../src/launcher/security.ts';
import { statfs } from '../../src/sys/index.ts';
import { runIn, sandbox, type Sandbox } from '../helpers/launcher.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { isRoot, sh } from './_helpers.ts';

const t0 = isRoot() ? test.serial : test.skip; // serial: each test starts real containers

const mountLine = (out: string, at: string): string | undefined => out.split('\n').find((l) => l.split(' ')[1] === at);

t0('--tmpfs: a tmpfs with docker\'s defaults rw,noexec,nosuid,nodev and no size limit', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'cat /proc/mounts; echo data > /data/f && cat /data/f; cp /bin/busybox /data/bb; /data/bb true; echo "exec status $?"', ['--tmpfs', '/data']);
  t.is(r.code, 0, r.stderr);
  t.is(mountLine(r.stdout, '/data'), 'tmpfs /data tmpfs rw,nosuid,nodev,noexec,relatime 0 0');
  t.regex(r.stdout, /^data\nexec status 126$/m, 'noexec: the copy cannot run');
  t.regex(r.stderr, /\/data\/bb: Permission denied/);
});

t0('--tmpfs options: size= bounds it, mode/uid/gid/exec/ro show in /proc/mounts and act', async (t) => {
  const sb = sandbox(t);
  const r = await sh(
    sb,
    'grep -E " /(big|ro|x) " /proc/mounts; stat -c "%a %u %g" /big; dd if=/dev/zero of=/big/f bs=1k count=2048 2>&1 | grep -o "No space left on device"; cp /bin/busybox /x/echo && /x/echo exec-ok; touch /ro/f 2>&1 || echo ro-refused',
    ['--tmpfs', '/big:size=1m,mode=750,uid=1000,gid=1000', '--tmpfs', '/x:exec,suid', '--tmpfs', '/ro:ro'],
  );
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.is(mountLine(r.stdout, '/big'), 'tmpfs /big tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k,mode=750,uid=1000,gid=1000 0 0');
  t.is(mountLine(r.stdout, '/x'), 'tmpfs /x tmpfs rw,nodev,relatime 0 0');
  t.is(mountLine(r.stdout, '/ro'), 'tmpfs /ro tmpfs ro,nosuid,nodev,noexec,relatime 0 0');
  t.is(lines[3], '750 1000 1000');
  t.is(lines[4], 'No space left on device');
  t.is(lines[5], 'exec-ok');
  t.is(lines.slice(6).join('\n'), "touch: /ro/f: Read-only file system\nro-refused\n");
});

t0('--tmpfs mount points: made when missing, inside the root only (a planted symlink does not lead out), under --read-only too', async (t) => {
  const sb = sandbox(t);
  const outside = path.join(sb.dir, 'outside');
  fs.mkdirSync(outside);
  const layer = path.join(sb.dir, 'escape-layer');
  fs.mkdirSync(layer);
  fs.symlinkSync(outside, path.join(layer, 'escape')); // absolute: a host directory
  fs.symlinkSync('../../../../../../../..' + outside, path.join(layer, 'up'));
  const lower = `${layer}:${rootfs().lower}`;
  const r = await runIn(sb, ['--lower', lower, '--read-only', '--tmpfs', '/escape/t1', '--tmpfs', '/up/t2', '--tmpfs', '/new/deep/t3', '--', '/bin/sh', '-c', 'grep -E "/t[123] " /proc/mounts | cut -d" " -f2; touch /new/deep/t3/w && echo writable; touch /etc/w 2>&1']);
  t.is(r.code, 1, r.stderr);
  // The kernel shows where the symlinks led: below the container's root.
  t.is(r.stdout, `${outside}/t1\n${outside}/t2\n/new/deep/t3\nwritable\ntouch: /etc/w: Read-only file system\n`);
  t.deepEqual(fs.readdirSync(outside), [], 'nothing made in the host directory the symlinks name');
});

/** A character device node (mode 666) with these numbers, in a fresh directory of the sandbox. */
function node(sb: Sandbox, name: string, major: number, minor: number): string {
  const p = path.join(fs.mkdtempSync(path.join(sb.dir, 'dev-')), name);
  execFileSync('mknod', ['-m', '666', p, 'c', String(major), String(minor)]);
  return p;
}

// tun (10:200) and loop-control (10:237): opening either does nothing without an ioctl, and
// neither is in the container's default device list.
const OPEN = (p: string): string =>
  `(: < ${p}) 2>/dev/null && echo "${p} r ok" || echo "${p} r refused"; (: >> ${p}) 2>/dev/null && echo "${p} w ok" || echo "${p} w refused"`;

t0('--device: the node at its container path, with exactly its permissions; a device not passed stays denied', async (t) => {
  const sb = sandbox(t);
  const tun = node(sb, 'tun', 10, 200);
  const layer = path.join(sb.dir, 'dev-layer');
  fs.mkdirSync(path.join(layer, 'evil'), { recursive: true });
  execFileSync('mknod', ['-m', '666', path.join(layer, 'evil', 'loop-control'), 'c', '10', '237']);
  const lower = `${layer}:${rootfs().lower}`;
  const script = `stat -c "%F %t:%T %a %U" /dev/net/tun; ${OPEN('/dev/net/tun')}; ${OPEN('/evil/loop-control')}`;
  const r = await runIn(sb, ['--lower', lower, '--device', `${tun}:/dev/net/tun:r`, '--', '/bin/sh', '-c', script]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'character special file a:c8 666 root\n/dev/net/tun r ok\n/dev/net/tun w refused\n/evil/loop-control r refused\n/evil/loop-control w refused\n');
  const rw = await runIn(sb, ['--lower', lower, '--device', `${tun}:/dev/net/tun`, '--', '/bin/sh', '-c', `${OPEN('/dev/net/tun')}; ${OPEN('/evil/loop-control')}`]);
  t.is(rw.stdout, '/dev/net/tun r ok\n/dev/net/tun w ok\n/evil/loop-control r refused\n/evil/loop-control w refused\n', 'default permissions rwm');
  // Without --device: no node, and the same node made by the image cannot be opened.
  execFileSync('mknod', ['-m', '666', path.join(layer, 'evil', 'tun'), 'c', '10', '200']);
  const none = await runIn(sb, ['--lower', lower, '--', '/bin/sh', '-c', `test -e /dev/net/tun || echo no-node; ${OPEN('/evil/tun')}`]);
  t.is(none.stdout, 'no-node\n/evil/tun r refused\n/evil/tun w refused\n');
  // w only; the rule is the device number's, wherever a node with it is.
  const w = await runIn(sb, ['--lower', lower, '--device', `${tun}:/dev/tun0:w`, '--', '/bin/sh', '-c', `${OPEN('/dev/tun0')}; ${OPEN('/evil/tun')}`]);
  t.is(w.stdout, '/dev/tun0 r refused\n/dev/tun0 w ok\n/evil/tun r refused\n/evil/tun w ok\n');
});

t0('--device with --userns: the host node is bound (no mknod in a user namespace)', async (t) => {
  const sb = sandbox(t);
  const tun = node(sb, 'tun', 10, 200);
  fs.chmodSync(path.dirname(tun), 0o700); // only host root reaches it: held open before stage 2 drops to the range
  const r = await runIn(sb, ['--lower', rootfs().lower, '--userns', '--device', `${tun}:/dev/net/tun:r`, '--', '/bin/sh', '-c', `grep -c " /dev/net/tun " /proc/self/mountinfo; ${OPEN('/dev/net/tun')}`]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '1\n/dev/net/tun r ok\n/dev/net/tun w refused\n');
});

// The same list as the cgroup v2 eBPF program: ALLOWED_DEVICES plus the --device rule.
const CGROUP2_SUPER_MAGIC = 0x63677270n;
function cgroup2Root(): string | null {
  for (const p of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
    try {
      if (statfs(p).type === CGROUP2_SUPER_MAGIC) return p;
    } catch {
      // not there
    }
  }
  return null;
}
const ROOT2 = isRoot() ? cgroup2Root() : null;
const t2 = ROOT2 ? test.serial : test.skip;

t2('cgroup v2: the eBPF program allows the --device node with its permissions on top of the defaults', async (t) => {
  const sb = sandbox(t);
  const tun = node(sb, 'tun', 10, 200);
  const lc = node(sb, 'loop-control', 10, 237);
  const dir = path.join(ROOT2!, `layerfs-test-devopt-${process.pid}-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(dir);
  let pid: number | undefined;
  t.teardown(async () => {
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (let i = 0; i < 50; i++) {
      try {
        fs.rmdirSync(dir);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        await sleep(100);
      }
    }
  });
  applyDeviceFilterV2(dir, containerDevices([{ type: 'c', major: 10, minor: 200, access: 'r' }]));
  // The shell joins the cgroup first, then tries the nodes.
  const script = `echo $$ > ${dir}/cgroup.procs || exit 9; ${OPEN(tun)}; ${OPEN(lc)}; ${OPEN('/dev/null')}`;
  const child = spawn('/bin/sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  pid = child.pid;
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.is(code, 0);
  t.is(out, `${tun} r ok\n${tun} w refused\n${lc} r refused\n${lc} w refused\n/dev/null r ok\n/dev/null w ok\n`);
});
