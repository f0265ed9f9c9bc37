// Rootless: `layerfs run` started by an unprivileged user (setpriv to uid 65534) gets a user
// namespace in which the caller is uid 0; everything else as for root, except cgroup limits
// (v1 has no delegation) and the FUSE mount itself, which needs /dev/fuse to be accessible.

import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mountFor } from '../helpers/mounts.ts';
import { isRoot, leftovers, rootfs, runIn, sandbox, type Sandbox } from './_helpers.ts';

const NOBODY = 65534;
const t0 = isRoot() ? test : test.skip;

/** A sandbox the unprivileged user can use: traversable, with its run dir and TMPDIR its own. */
function userSandbox(t: Parameters<typeof sandbox>[0]): Sandbox {
  const sb = sandbox(t);
  fs.chmodSync(sb.dir, 0o755);
  fs.mkdirSync(sb.runDir);
  fs.chownSync(sb.runDir, NOBODY, NOBODY);
  fs.chownSync(sb.tmpDir, NOBODY, NOBODY);
  return sb;
}

t0('rootless on a layerfs mount made by root (--rootfs): the caller is uid 0 in a user namespace', async (t) => {
  const sb = userSandbox(t);
  const mnt = path.join(sb.dir, 'mnt');
  const upper = path.join(sb.dir, 'upper');
  const work = path.join(sb.dir, 'work');
  for (const d of [mnt, upper, work]) fs.mkdirSync(d);
  await mountFor(t, 'layerfs', { lowers: [rootfs().app, rootfs().base], upper, work, mnt, timeoutMs: 120_000 });
  const host = fs.readlinkSync('/proc/self/ns/user');
  const r = await runIn(sb, ['--rootfs', mnt, '--', '/bin/sh', '-c', 'id; cat /proc/self/uid_map; readlink /proc/self/ns/user; echo $$; cat /proc/net/dev | grep -c :; grep CapEff /proc/self/status; cat /etc/motd; echo x > /root/x 2>&1; touch /tmp/t && echo tmp-ok'], { asUid: NOBODY });
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.is(lines[0], 'uid=0(root) gid=0(root)');
  t.deepEqual(lines[1].trim().split(/\s+/), ['0', String(NOBODY), '1'], 'uid 0 inside is the caller outside');
  t.not(lines[2], host);
  t.is(lines[3], '1');
  t.is(lines[4], '1', 'only lo');
  t.is(lines[5], 'CapEff:\t00000000a80425fb');
  t.is(lines[6], 'app layer motd');
  t.regex(r.stderr, /can't create \/root\/x: Permission denied/, 'root inside is no root outside: root-owned files stay closed');
  t.is(lines[7], 'tmp-ok');
  t.true(fs.existsSync(path.join(mnt, 'etc')), 'the reused mount is left mounted');
});

t0('rootless with --lower: runs when /dev/fuse is open to the user, else one clear line', async (t) => {
  const sb = userSandbox(t);
  const open = (fs.statSync('/dev/fuse').mode & 0o006) === 0o006;
  const r = await runIn(sb, ['--lower', rootfs().lower, '--', '/bin/sh', '-c', 'id -u; echo w > /root/w && echo write-ok'], { asUid: NOBODY });
  if (open) {
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, '0\nwrite-ok\n');
  } else {
    t.log('/dev/fuse is not accessible to unprivileged users on this machine: the launcher refuses a FUSE mount without root');
    t.is(r.code, 125);
    t.regex(r.stderr, /^layerfs run: without root, mounting layerfs needs read-write access to \/dev\/fuse, which uid 65534 lacks here \(mode 600; Debian's udev default is 666\); or use --rootfs on a mount made by root\n$/);
  }
  t.deepEqual(leftovers(sb), []);
});

t0('rootless: limits are refused with one line (cgroup v1 has no delegation)', async (t) => {
  const sb = userSandbox(t);
  const r = await runIn(sb, ['--rootfs', rootfs().base, '--memory', '64m', '--', '/bin/true'], { asUid: NOBODY });
  t.is(r.code, 125);
  t.regex(r.stderr, /^layerfs run: no permission to create cgroups in .* \(resource limits need root, or a delegated cgroup v2 tree\)\n$/);
});
