// The container's confinement and its opt-outs, from inside: the seccomp filter and
// --security-opt, capabilities with --cap-add/--cap-drop, the device cgroup, --privileged.
// (test/launcher/probe.test.ts compares the whole picture with podman's.)

import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CAPS } from '../../src/launcher/security.ts';
import { leftovers, runIn, sandbox } from '../helpers/launcher.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { isRoot, sh } from './_helpers.ts';

const t0 = isRoot() ? test.serial : test.skip; // serial: each test starts real containers

function field(out: string, name: string): string | undefined {
  return new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(out)?.[1];
}

t0('a seccomp filter by default; the namespace and mount calls need CAP_SYS_ADMIN', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'grep Seccomp: /proc/self/status; unshare -m true 2>&1 || echo unshare-refused');
  t.is(r.code, 0, r.stderr);
  t.is(field(r.stdout, 'Seccomp'), '2');
  t.regex(r.stdout, /unshare\(0x20000\): Operation not permitted\nunshare-refused/);
  const admin = await sh(sb, 'unshare -m sh -c "mount -t tmpfs x /mnt && echo mounted"', ['--cap-add', 'SYS_ADMIN']);
  t.is(admin.code, 0, admin.stderr);
  t.is(admin.stdout, 'mounted\n', 'the profile follows the capabilities');
});

t0('--security-opt seccomp=unconfined and seccomp=FILE.json (docker\'s format)', async (t) => {
  const sb = sandbox(t);
  const none = await sh(sb, 'grep Seccomp: /proc/self/status', ['--security-opt', 'seccomp=unconfined']);
  t.is(field(none.stdout, 'Seccomp'), '0');
  const profile = path.join(sb.dir, 'no-mkdir.json');
  fs.writeFileSync(profile, JSON.stringify({
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
    syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }],
  }));
  const custom = await sh(sb, 'mkdir /tmp/d 2>&1; grep Seccomp: /proc/self/status', ['--security-opt', `seccomp=${profile}`]);
  t.is(custom.code, 0, custom.stderr);
  t.regex(custom.stdout, /mkdir: can't create directory '\/tmp\/d': Permission denied/);
  t.is(field(custom.stdout, 'Seccomp'), '2');
});

t0('a profile that cannot be used: one line, exit 125, nothing started or left', async (t) => {
  const sb = sandbox(t);
  const marker = path.join(sb.dir, 'ran');
  const cases: [string, string, RegExp][] = [
    ['bad.json', '{"defaultAction": "SCMP_ACT_ALLOW",', /^layerfs run: seccomp profile .*bad\.json: .+\n$/],
    ['notify.json', JSON.stringify({ defaultAction: 'SCMP_ACT_NOTIFY' }), /^layerfs run: seccomp profile .*notify\.json: .*SCMP_ACT_NOTIFY.*\n$/],
    ['cap.json', JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', includes: { caps: ['CAP_FLY'] } }] }), /^layerfs run: seccomp profile .*cap\.json: .*CAP_FLY.*\n$/],
  ];
  for (const [name, text, re] of cases) {
    const file = path.join(sb.dir, name);
    fs.writeFileSync(file, text);
    const r = await runIn(sb, ['--lower', rootfs().lower, '--security-opt', `seccomp=${file}`, '-v', `${sb.dir}:/host`, '--', '/bin/sh', '-c', 'touch /host/ran']);
    t.is(r.code, 125, name);
    t.regex(r.stderr, re, name);
    t.false(fs.existsSync(marker), `${name}: nothing ran`);
    t.deepEqual(leftovers(sb), [], `${name}: nothing left`);
  }
  const fifo = path.join(sb.dir, 'fifo.json');
  execFileSync('mkfifo', [fifo]);
  const r = await runIn(sb, ['--lower', rootfs().lower, '--security-opt', `seccomp=${fifo}`, '--', 'true'], { timeoutMs: 20_000 });
  t.false(r.timedOut, 'a FIFO is not waited on');
  t.is(r.code, 125);
  t.regex(r.stderr, /seccomp profile .*fifo\.json: not a regular file/);
});

t0('--cap-drop / --cap-add as docker spells them', async (t) => {
  const sb = sandbox(t);
  const none = await sh(sb, 'grep -E "^Cap(Eff|Bnd)" /proc/self/status', ['--cap-drop', 'ALL']);
  t.is(field(none.stdout, 'CapEff'), '0'.repeat(16));
  t.is(field(none.stdout, 'CapBnd'), '0'.repeat(16));
  const one = await sh(sb, 'grep -E "^CapEff" /proc/self/status; chown 1:1 /tmp 2>&1 || echo chown-refused', ['--cap-drop', 'CHOWN']);
  t.is(BigInt(`0x${field(one.stdout, 'CapEff')}`) & (1n << BigInt(CAPS.CHOWN)), 0n);
  t.regex(one.stdout, /chown-refused/);
  const bad = await sh(sb, 'true', ['--cap-add', 'CAP_FLY']);
  t.is(bad.code, 125);
  t.is(bad.stderr, "layerfs run: --cap-add 'CAP_FLY': unknown capability (names as docker spells them, e.g. NET_ADMIN or CAP_NET_ADMIN, or ALL)\n");
});

t0('devices: none but /dev\'s can be opened, even a node a layer brings or one made with CAP_MKNOD', async (t) => {
  const sb = sandbox(t);
  const layer = path.join(sb.dir, 'devlayer');
  fs.mkdirSync(path.join(layer, 'evil'), { recursive: true });
  execFileSync('mknod', [path.join(layer, 'evil', 'kmsg'), 'c', '1', '11']); // the host's kernel log
  execFileSync('mknod', [path.join(layer, 'evil', 'null'), 'c', '1', '3']);
  const lower = `${layer}:${rootfs().lower}`;
  const script = 'head -c1 /evil/kmsg >/dev/null 2>&1 && echo kmsg-open || echo kmsg-refused; echo x > /evil/null && echo null-ok; mknod /tmp/mem c 1 1 2>&1 || echo mknod-refused';
  const r = await runIn(sb, ['--lower', lower, '--', '/bin/sh', '-c', script]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'kmsg-refused\nnull-ok\nmknod: /tmp/mem: Operation not permitted\nmknod-refused\n');
  // CAP_MKNOD makes the nodes of /dev's kinds, and no other (the device cgroup covers mknod too).
  const mk = await runIn(sb, ['--lower', lower, '--cap-add', 'MKNOD', '--', '/bin/sh', '-c', 'mknod /root/null c 1 3 && echo x > /root/null && echo null-made; mknod /root/kmsg c 1 11 2>&1 || echo kmsg-refused']);
  t.is(mk.code, 0, mk.stderr);
  t.is(mk.stdout, 'null-made\nmknod: /root/kmsg: Operation not permitted\nkmsg-refused\n');
  // --privileged: the opt-out lifts the device restriction too.
  const priv = await runIn(sb, ['--lower', lower, '--privileged', '--', '/bin/sh', '-c', 'head -c1 /evil/kmsg >/dev/null && echo kmsg-open']);
  t.is(priv.code, 0, priv.stderr);
  t.is(priv.stdout, 'kmsg-open\n');
});

t0('--privileged: every capability, no filter, no masked or read-only kernel files', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'grep -E "^(CapEff|Seccomp):" /proc/self/status; grep -cE " /proc/(sys|keys|irq) " /proc/self/mountinfo; grep " /sys " /proc/self/mountinfo | cut -d" " -f6', ['--privileged']);
  t.is(r.code, 0, r.stderr);
  // Every capability the launcher itself may hand on (a sandbox may have bounded ours).
  const ours = BigInt(`0x${field(fs.readFileSync('/proc/self/status', 'utf8'), 'CapBnd')}`);
  const all = (1n << BigInt(Math.max(...Object.values(CAPS)) + 1)) - 1n;
  t.is(BigInt(`0x${field(r.stdout, 'CapEff')}`), all & ours);
  t.is(field(r.stdout, 'Seccomp'), '0');
  const lines = r.stdout.trim().split('\n');
  t.is(lines[2], '0', 'nothing mounted over /proc/sys, /proc/keys, /proc/irq');
  t.regex(lines[3], /^rw,/, '/sys writable');
});
