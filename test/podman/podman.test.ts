// podman 4.3 (Debian) with layerfs as its overlay mount_program, end to end: a base image
// imported offline from the busybox root of scripts/make-rootfs.sh, a second layer from
// `podman build` that deletes a base file and adds one, containers run with and without --rm
// and with --uidmap. Every podman command uses a private store, run root, tmpdir and config
// files below the test's temp dir; nothing of the host's podman state is used.
//
// Proof that layerfs (and not podman's native overlay) served each container: the root mount
// inside the container is `fuse.layerfs`, and the daemons' log (LAYERFS_LOG, which podman
// passes on to its mount program) records every mount and every exit.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readMountinfo, repoRoot } from '../helpers/mounts.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { processAlive } from '../../src/engine/mount.ts';
import { stateFile } from '../../src/engine/state.ts';
import { cmdline, daemons, fuseMountsUnder, pod, rmContainer, RUN_OPTS, waitDaemonsGone, type Pod } from '../helpers/podman.ts';

test.before(() => {
  execFileSync('bash', [path.join(repoRoot, 'scripts', 'podman-setup.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
});

/** The base image from the busybox root, and on top of it, with `podman build`, the app image. */
async function images(p: Pod): Promise<void> {
  const base = rootfs().base;
  const tar = path.join(p.dir, 'base.tar');
  execFileSync('tar', ['-C', base, '-cf', tar, '.']);
  await p.ok(['import', '-q', tar, 'localhost/lfs-base:1']);
  const ctx = path.join(p.dir, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'Containerfile'), [
    'FROM localhost/lfs-base:1',
    'RUN rm /etc/issue && echo added > /etc/added && echo changed > /etc/motd',
    '',
  ].join('\n'));
  await p.ok(['build', ...RUN_OPTS, '-t', 'localhost/lfs-app:1', ctx], 300_000);
}

/** The script every container runs: what the test asserts, one `key=value` a line. */
const PROBE = [
  'echo root=$(grep " / / " /proc/self/mountinfo | sed "s/.* - //" | cut -d" " -f1)',
  'test -e /etc/issue && echo issue=present || echo issue=absent',
  'echo added=$(cat /etc/added)',
  'echo motd=$(cat /etc/motd)',
  'echo passwd=$(head -1 /etc/passwd | cut -d: -f1)',
  'echo busybox=$(busybox | head -1 | cut -d" " -f1)',
  'echo hello > /w && echo write=$(cat /w)',
  'echo ids=$(stat -c %u:%g /etc/passwd)',
  'echo me=$(id -u)',
].join('; ');

function parseProbe(out: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const l of out.split('\n')) {
    const i = l.indexOf('=');
    if (i > 0) r[l.slice(0, i)] = l.slice(i + 1);
  }
  return r;
}

const EXPECTED = {
  root: 'fuse.layerfs',
  issue: 'absent',
  added: 'added',
  motd: 'changed',
  passwd: 'root',
  busybox: 'BusyBox',
  write: 'hello',
  ids: '0:0',
  me: '0',
};

test.serial('podman build, run --rm and run: layerfs serves every mount and every daemon exits', async (t) => {
  const p = pod(t);
  await images(p);
  const built = daemons(p);
  t.true(built.length >= 1, 'podman build mounted through layerfs');
  // The built layer is stored as podman commits it with a mount program: the deleted file is an
  // OCI whiteout, a plain file in the layer's diff dir, that layerfs reads in lowers.
  const top = (await p.ok(['image', 'inspect', '--format', '{{.GraphDriver.Data.UpperDir}}', 'localhost/lfs-app:1'])).trim();
  t.true(fs.statSync(path.join(top, 'etc', '.wh.issue')).isFile(), `${top}/etc/.wh.issue`);
  t.deepEqual(await waitDaemonsGone(p), [], 'the build mounts were unmounted');

  // run --rm (podman adds `volatile`)
  const rm = await p.ok(['run', '--rm', ...RUN_OPTS, 'localhost/lfs-app:1', 'sh', '-c', PROBE]);
  t.deepEqual(parseProbe(rm), EXPECTED, rm);

  // A long-running container: its merged dir is a layerfs mount served by a live daemon.
  const id = (await p.ok(['run', '-d', '--name', 'long', ...RUN_OPTS, 'localhost/lfs-app:1', 'sleep', '600'])).trim();
  const merged = (await p.ok(['inspect', '--format', '{{.GraphDriver.Data.MergedDir}}', id])).trim();
  const m = readMountinfo().filter((x) => x.mountPoint === merged).at(-1);
  t.is(m?.fstype, 'fuse.layerfs', `mount at ${merged}`);
  const d = daemons(p).find((x) => x.mountpoint === merged);
  t.truthy(d, 'a daemon logged this mount');
  t.true(processAlive(d!.pid) && cmdline(d!.pid).includes('engine run'), 'the engine serving it runs');
  t.true(fs.existsSync(path.join(p.engineDir, path.basename(stateFile(merged).file))), 'its state file is there');
  const ex = await p.ok(['exec', 'long', 'sh', '-c', PROBE]);
  t.deepEqual(parseProbe(ex), EXPECTED, ex);
  // podman computes diffs by comparing mounted views
  const diff = (await p.ok(['diff', 'long'])).split('\n');
  t.true(diff.includes('A /w'), diff.join('\n'));
  await p.ok(['stop', '-t', '0', 'long']);
  await rmContainer(p, 'long');
  const until = Date.now() + 15_000; // the engine notices podman's fusermount3 -u at once
  const ended = () => daemons(p).find((x) => x.line === d!.line)?.exited;
  while (!ended() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  t.true(ended(), 'the engine logged the end of the container mount');
  t.false(fs.existsSync(path.join(p.engineDir, path.basename(stateFile(merged).file))), 'its state file is gone');
  t.false(readMountinfo().some((x) => x.mountPoint === merged), 'its mount is gone');

  // A container that just runs to its end without --rm, then is removed.
  const plain = await p.ok(['run', '--name', 'plain', ...RUN_OPTS, 'localhost/lfs-app:1', 'sh', '-c', PROBE]);
  t.deepEqual(parseProbe(plain), EXPECTED, plain);
  await rmContainer(p, 'plain');

  const all = daemons(p);
  t.true(all.length >= 4, `mounts logged: ${all.length}`);
  t.is(new Set(all.map((x) => x.pid)).size, 1, 'one engine served them all');
  t.deepEqual((await waitDaemonsGone(p)).map((x) => x.line), [], 'every mount podman made has ended');
  t.deepEqual(fuseMountsUnder(p.dir), [], 'nothing stays mounted');
});

test.serial('podman run --uidmap: owners are shifted by the mount, stored unshifted', async (t) => {
  const p = pod(t);
  await images(p);
  const map = ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'];
  const out = await p.ok(['run', '--rm', ...RUN_OPTS, ...map, 'localhost/lfs-app:1', 'sh', '-c', `${PROBE}; echo uidmap=$(cat /proc/self/uid_map | tr -s " " | sed "s/^ //")`]);
  t.deepEqual(parseProbe(out), { ...EXPECTED, uidmap: '0 100000 65536' }, out);
  const mounted = daemons(p).at(-1)!;
  // podman 4.3 passes the lowers through idmapped mounts it detaches at once: layerfs reads
  // them through the store's own path instead.
  t.notRegex(mounted.line, /\/mapped\/\d+\//, mounted.line);

  // Not --rm: what the container writes lands in its upper with the container's ids.
  await p.ok(['run', '--name', 'u', ...RUN_OPTS, ...map, 'localhost/lfs-app:1', 'sh', '-c', 'echo x > /mine && chown 5:6 /etc/passwd && mkdir /d']);
  const upper = (await p.ok(['inspect', '--format', '{{.GraphDriver.Data.UpperDir}}', 'u'])).trim();
  const ids = (f: string) => {
    const st = fs.lstatSync(path.join(upper, f));
    return `${st.uid}:${st.gid}`;
  };
  t.is(ids('mine'), '0:0');
  t.is(ids('d'), '0:0');
  t.is(ids('etc/passwd'), '5:6');
  await rmContainer(p, 'u');

  // A one-id map: podman passes squash_to_uid=/squash_to_gid= instead.
  const one = await p.ok(['run', '--rm', ...RUN_OPTS, '--uidmap', '0:100000:1', '--gidmap', '0:100000:1', 'localhost/lfs-app:1', 'sh', '-c', PROBE]);
  t.deepEqual(parseProbe(one), EXPECTED, one);
  t.deepEqual(await waitDaemonsGone(p), [], 'every mount podman made has ended');
  t.deepEqual(fuseMountsUnder(p.dir), [], 'nothing stays mounted');
});

test.serial('podman with overlay.force_mask=shared: the real modes come from user.containers.override_stat', async (t) => {
  // podman then stores layers with mode 0755 everywhere, the real owner and mode in an xattr,
  // and passes xattr_permissions=2.
  const p = pod(t, { storageOpts: ['overlay.force_mask=shared'] });
  await images(p);
  const base = rootfs().base;
  const out = await p.ok(['run', '--rm', ...RUN_OPTS, 'localhost/lfs-app:1', 'sh', '-c', `${PROBE}; stat -c mode=%a /root /etc/passwd`]);
  const probe = parseProbe(out);
  t.like(probe, EXPECTED, out);
  // stat prints one mode= line per file: the last one wins in parseProbe, so check both lines.
  const modes = out.split('\n').filter((l) => l.startsWith('mode=')).map((l) => l.slice(5));
  const real = (f: string) => (fs.statSync(path.join(base, f)).mode & 0o777).toString(8);
  t.deepEqual(modes, [real('root'), real('etc/passwd')]);
  t.is(real('root'), '700', 'the fixture has a 0700 /root');
  t.deepEqual(await waitDaemonsGone(p), [], 'every mount podman made has ended');
  t.deepEqual(fuseMountsUnder(p.dir), [], 'nothing stays mounted');
});
