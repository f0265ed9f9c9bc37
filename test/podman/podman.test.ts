// podman 4.3 (Debian) with layerfs as its overlay mount_program, end to end: a base image
// imported offline from the busybox root of scripts/make-rootfs.sh, a second layer from
// `podman build` that deletes a base file and adds one, containers run with and without --rm
// and with --uidmap. Every podman command uses a private store, run root, tmpdir and config
// files below the test's temp dir; nothing of the host's podman state is used.
//
// Proof that layerfs (and not podman's native overlay) served each container: the root mount
// inside the container is `fuse.layerfs`, and the daemons' log (LAYERFS_LOG, which podman
// passes on to its mount program) records every mount and every exit.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run, type RunResult } from '../helpers/exec.ts';
import { layerfsBin, makeTmp, mountsUnder, readMountinfo, repoRoot } from '../helpers/mounts.ts';
import { rootfs } from '../launcher/_helpers.ts';
import { processAlive } from '../../src/mount.ts';
import { stateFile } from '../../src/state.ts';

test.before(() => {
  execFileSync('bash', [path.join(repoRoot, 'scripts', 'podman-setup.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
});

/** What `podman run` needs on this machine (README, podman). */
const RUN_OPTS = ['--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768'];

interface Pod {
  dir: string;
  /** The daemons' log. */
  log: string;
  podman(args: string[], timeoutMs?: number): Promise<RunResult & { out: string }>;
  /** podman that must succeed; returns its stdout. */
  ok(args: string[], timeoutMs?: number): Promise<string>;
}

/**
 * A private podman: store, run root, libpod tmpdir, network config and config files in a temp
 * dir. Teardown (registered after makeTmp's, so it runs before it): remove every container,
 * stop daemons of ours that are still alive (by pid, from their log), and makeTmp's teardown
 * then unmounts whatever is left below the dir (podman's bind mount of its overlay/ dir) and
 * removes it.
 */
function pod(t: ExecutionContext, storageOpts: string[] = []): Pod {
  const dir = fs.realpathSync(makeTmp(t, 'layerfs-podman-'));
  fs.chmodSync(dir, 0o755);
  for (const d of ['tmp', 'net']) fs.mkdirSync(path.join(dir, d));
  const conf = path.join(dir, 'containers.conf');
  fs.writeFileSync(conf, [
    '[engine]',
    `image_copy_tmp_dir = "${dir}/tmp"`,
    '[network]',
    `network_config_dir = "${dir}/net"`,
    '',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'storage.conf'), [
    '[storage]',
    'driver = "overlay"',
    `graphroot = "${dir}/root"`,
    `runroot = "${dir}/runroot"`,
    '',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'registries.conf'), 'unqualified-search-registries = []\n');
  const log = path.join(dir, 'layerfs.log');
  const env = {
    CONTAINERS_CONF: conf,
    CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'),
    CONTAINERS_REGISTRIES_CONF: path.join(dir, 'registries.conf'),
    LAYERFS_LOG: log,
    TMPDIR: path.join(dir, 'tmp'),
  };
  const global = [
    '--root', `${dir}/root`, '--runroot', `${dir}/runroot`, '--tmpdir', `${dir}/libpod`,
    '--storage-driver', 'overlay', '--storage-opt', `overlay.mount_program=${layerfsBin}`,
    ...storageOpts.flatMap((o) => ['--storage-opt', o]),
    '--runtime', 'runc', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file', '--network-backend', 'netavark',
  ];
  const podman = async (args: string[], timeoutMs = 120_000) => {
    // Files, not pipes: `run -d` leaves conmon behind, which would hold pipes open.
    const r = await run('podman', [...global, ...args], { env, viaFiles: true, timeoutMs });
    return { ...r, out: r.stdout.toString() };
  };
  const p: Pod = {
    dir,
    log,
    podman,
    async ok(args, timeoutMs) {
      const r = await podman(args, timeoutMs);
      if (r.code !== 0) throw new Error(`podman ${args.join(' ')}: exit ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${r.stderr.trim()}\n${r.out}`);
      return r.out;
    },
  };
  t.teardown(async () => {
    // A container being removed while its cleanup process still runs can fail once: retry.
    for (let i = 0; i < 3; i++) {
      const r = await podman(['rm', '-af', '-t', '0'], 60_000);
      if (r.code === 0) break;
    }
    for (const d of daemons(p)) {
      if (processAlive(d.pid) && cmdline(d.pid).includes('__serve')) process.kill(d.pid, 'SIGTERM');
    }
  });
  return p;
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

interface Daemon {
  pid: number;
  mountpoint: string;
  /** The `mounted …` log line. */
  line: string;
  exited: boolean;
}

/** Every daemon podman started, from the log: `layerfs[PID]: mounted MNT (…)` / `exiting: …`. */
function daemons(p: Pod): Daemon[] {
  let text = '';
  try {
    text = fs.readFileSync(p.log, 'utf8');
  } catch {
    return [];
  }
  const out = new Map<number, Daemon>();
  for (const line of text.split('\n')) {
    const m = /layerfs\[(\d+)\]: (mounted (\S+) |exiting: )/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    if (m[3]) out.set(pid, { pid, mountpoint: m[3], line, exited: false });
    else if (out.has(pid)) out.get(pid)!.exited = true;
  }
  return [...out.values()];
}

/**
 * `podman rm NAME`. podman 4.3 races its own cleanup process (conmon's exit command) over the
 * container's /dev/shm mount and can fail with `unlinkat …/userdata/shm: device or resource
 * busy` even though it removed the container; seen just the same with the kernel's overlay
 * (no mount program) and --uidmap. Retried; what counts is that the container is gone.
 */
async function rmContainer(p: Pod, name: string): Promise<void> {
  let last = '';
  for (let i = 0; i < 5; i++) {
    const r = await p.podman(['rm', name]);
    if (r.code === 0) return;
    last = r.stderr.trim();
    if ((await p.podman(['container', 'exists', name])).code === 1) return;
    await new Promise((res) => setTimeout(res, 200 * (i + 1)));
  }
  throw new Error(`podman rm ${name}: ${last}`);
}

/** Wait until every logged daemon has exited; returns those still running. */
async function waitDaemonsGone(p: Pod, ms = 15_000): Promise<Daemon[]> {
  const until = Date.now() + ms;
  for (;;) {
    const alive = daemons(p).filter((d) => processAlive(d.pid));
    if (alive.length === 0 || Date.now() > until) return alive;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** FUSE mounts left below the dir (podman's own bind mount of overlay/ may stay: it is not ours). */
function fuseMountsUnder(dir: string): string[] {
  const under = new Set(mountsUnder(dir));
  return readMountinfo().filter((m) => under.has(m.mountPoint) && m.fstype.startsWith('fuse')).map((m) => `${m.mountPoint} (${m.fstype})`);
}

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
  t.deepEqual(await waitDaemonsGone(p), [], 'the build mounts were unmounted and their daemons exited');

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
  t.true(processAlive(d!.pid) && cmdline(d!.pid).includes('__serve'), 'its daemon runs');
  t.true(fs.existsSync(stateFile(merged).file), 'its state file is there');
  const ex = await p.ok(['exec', 'long', 'sh', '-c', PROBE]);
  t.deepEqual(parseProbe(ex), EXPECTED, ex);
  // podman computes diffs by comparing mounted views
  const diff = (await p.ok(['diff', 'long'])).split('\n');
  t.true(diff.includes('A /w'), diff.join('\n'));
  await p.ok(['stop', '-t', '0', 'long']);
  await rmContainer(p, 'long');
  const until = Date.now() + 15_000; // it exits by itself, moments after podman's fusermount3 -u
  while (processAlive(d!.pid) && cmdline(d!.pid).includes('__serve') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  t.false(processAlive(d!.pid) && cmdline(d!.pid).includes('__serve'), 'the container daemon exited');
  t.false(readMountinfo().some((x) => x.mountPoint === merged), 'its mount is gone');

  // A container that just runs to its end without --rm, then is removed.
  const plain = await p.ok(['run', '--name', 'plain', ...RUN_OPTS, 'localhost/lfs-app:1', 'sh', '-c', PROBE]);
  t.deepEqual(parseProbe(plain), EXPECTED, plain);
  await rmContainer(p, 'plain');

  const all = daemons(p);
  t.true(all.length >= 4, `daemons logged: ${all.length}`);
  t.deepEqual(await waitDaemonsGone(p), [], 'every daemon podman started has exited');
  t.deepEqual(all.filter((x) => !daemons(p).find((y) => y.pid === x.pid)?.exited).map((x) => x.line), [], 'each logged its exit');
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
  t.deepEqual(await waitDaemonsGone(p), [], 'every daemon podman started has exited');
  t.deepEqual(fuseMountsUnder(p.dir), [], 'nothing stays mounted');
});

test.serial('podman with overlay.force_mask=shared: the real modes come from user.containers.override_stat', async (t) => {
  // podman then stores layers with mode 0755 everywhere, the real owner and mode in an xattr,
  // and passes xattr_permissions=2.
  const p = pod(t, ['overlay.force_mask=shared']);
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
  t.deepEqual(await waitDaemonsGone(p), [], 'every daemon podman started has exited');
  t.deepEqual(fuseMountsUnder(p.dir), [], 'nothing stays mounted');
});
