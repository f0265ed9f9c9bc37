// Rootless: `layerfs run` started by an unprivileged user (setpriv to uid 65534) gets a user
// namespace in which the caller is uid 0; everything else as for root, except cgroup limits
// (v1 has no delegation). The FUSE mount goes through fusermount3, which needs /dev/fuse open to
// the user (Debian's default; scripts/setup.sh restores it where a sandbox made it 600).

import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { enginePid, mountFor, stopEngineIn } from '../helpers/mounts.ts';
import { leftovers, runIn, sandbox, type Sandbox } from '../helpers/launcher.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { isRoot } from './_helpers.ts';

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
  t.is(lines[5], 'CapEff:\t00000000800405fb', "podman's default set");
  t.is(lines[6], 'app layer motd');
  t.regex(r.stderr, /can't create \/root\/x: Permission denied/, 'root inside is no root outside: root-owned files stay closed');
  t.is(lines[7], 'tmp-ok');
  t.true(fs.existsSync(path.join(mnt, 'etc')), 'the reused mount is left mounted');
});

t0('rootless with --lower: layers the caller owns, mounted through fusermount3, written as uid 0 inside', async (t) => {
  const sb = userSandbox(t);
  // Rootless layers belong to the caller (as an image a user imported); uid 0 inside maps to them.
  const layers = path.join(sb.dir, 'layers');
  fs.mkdirSync(layers);
  // cp -a: the app layer holds whiteouts (character devices), which fs.cpSync cannot copy.
  execFileSync('cp', ['-a', rootfs().app, rootfs().base, layers]);
  execFileSync('chown', ['-hR', `${NOBODY}:${NOBODY}`, layers]);
  const upper = path.join(sb.dir, 'upper');
  const work = path.join(sb.dir, 'work');
  for (const d of [upper, work]) {
    fs.mkdirSync(d);
    fs.chownSync(d, NOBODY, NOBODY);
  }
  const open = (fs.statSync('/dev/fuse').mode & 0o006) === 0o006;
  const lower = `${path.join(layers, 'app')}:${path.join(layers, 'base')}`;
  // The user's mounts are served by an engine of the user's own (the suite's is root's).
  const engineDir = path.join(sb.dir, 'engine');
  fs.mkdirSync(engineDir, { mode: 0o700 });
  fs.chownSync(engineDir, NOBODY, NOBODY);
  t.teardown(() => stopEngineIn(engineDir));
  const r = await runIn(sb, ['--lower', lower, '--upper', upper, '--work', work, '--', '/bin/sh', '-c', 'id -u; cat /etc/motd; echo w > /root/w && echo write-ok; rm /etc/motd && echo rm-ok'], { asUid: NOBODY, env: { LAYERFS_ENGINE_DIR: engineDir } });
  const engine = enginePid(engineDir);
  if (open) t.is(engine !== null && fs.statSync(`/proc/${engine}`).uid, NOBODY, "the user's engine runs as the user");
  await stopEngineIn(engineDir);
  if (open) {
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, '0\napp layer motd\nwrite-ok\nrm-ok\n');
    const w = fs.lstatSync(path.join(upper, 'root', 'w'));
    t.is(w.uid, NOBODY, 'a file root made inside belongs to the caller outside');
    t.is(fs.readFileSync(path.join(upper, 'root', 'w'), 'utf8'), 'w\n');
    t.true(fs.lstatSync(path.join(upper, 'etc', 'motd')).isCharacterDevice() || fs.existsSync(path.join(upper, 'etc', '.wh.motd')), 'the deletion is a whiteout in the upper');
  } else {
    t.log('/dev/fuse is not open to unprivileged users on this machine (scripts/setup.sh makes it 666, as Debian does): the FUSE mount cannot be made without root');
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
