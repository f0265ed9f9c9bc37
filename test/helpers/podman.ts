// A private podman for the tests: store, run root, libpod tmpdir, network config and config
// files below the test's temp dir; nothing of the host's podman state is used. Shared by
// test/podman/podman.test.ts (layerfs as overlay's mount_program) and
// test/launcher/probe.test.ts (the vfs driver: podman's own isolation as the reference).
import type { ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run, type RunResult } from './exec.ts';
import { layerfsBin, makeTmp, mountsUnder, readMountinfo, stopEngineIn } from './mounts.ts';

/** What `podman run` needs on this machine (README, podman). */
export const RUN_OPTS = ['--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768'];

export interface Pod {
  dir: string;
  /** The log of the pod's own engine (LAYERFS_ENGINE_DIR is private to the pod). */
  log: string;
  /** The pod's engine directory. */
  engineDir: string;
  podman(args: string[], timeoutMs?: number): Promise<RunResult & { out: string }>;
  /** podman that must succeed; returns its stdout. */
  ok(args: string[], timeoutMs?: number): Promise<string>;
}

export interface PodOptions {
  /**
   * 'layerfs' (the default): the overlay driver with layerfs as its mount_program. 'vfs': plain
   * copies, no mount program (nothing of layerfs involved).
   */
  driver?: 'layerfs' | 'vfs';
  /** More --storage-opt values. */
  storageOpts?: string[];
  /**
   * Give containers this machine's defaults: copy the [containers] table of its containers.conf
   * (default_capabilities, default_sysctls, ...) into the private one. Without it, podman (which
   * reads only the private file, CONTAINERS_CONF) falls back to its compiled-in defaults; on
   * Debian's podman 4.3 those keep CAP_MKNOD, CAP_NET_RAW and CAP_AUDIT_WRITE, which the
   * packaged /usr/share/containers/containers.conf drops.
   */
  systemDefaults?: boolean;
}

/**
 * The [containers] table of the machine's containers.conf: /etc/containers/containers.conf if
 * it has one, else /usr/share/containers/containers.conf's ('' when neither has).
 */
export function systemContainersTable(): string {
  for (const f of ['/etc/containers/containers.conf', '/usr/share/containers/containers.conf']) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    const lines = text.split('\n');
    const start = lines.findIndex((l) => /^\[containers\]\s*$/.test(l));
    if (start < 0) continue;
    const end = lines.findIndex((l, i) => i > start && /^\[[^\]]+\]\s*$/.test(l));
    return lines.slice(start, end < 0 ? undefined : end).filter((l) => l.trim() !== '' && !/^\s*#/.test(l)).join('\n');
  }
  return '';
}

/**
 * A private podman: store, run root, libpod tmpdir, network config and config files in a temp
 * dir. Teardown (registered after makeTmp's, so it runs before it): remove every container,
 * stop daemons of ours that are still alive (by pid, from their log), and makeTmp's teardown
 * then unmounts whatever is left below the dir (podman's bind mount of its overlay/ dir) and
 * removes it.
 */
export function pod(t: ExecutionContext, opts: PodOptions = {}): Pod {
  const driver = opts.driver ?? 'layerfs';
  const dir = fs.realpathSync(makeTmp(t, 'layerfs-podman-'));
  fs.chmodSync(dir, 0o755);
  for (const d of ['tmp', 'net']) fs.mkdirSync(path.join(dir, d));
  const conf = path.join(dir, 'containers.conf');
  fs.writeFileSync(conf, [
    ...(opts.systemDefaults ? [systemContainersTable()] : []),
    '[engine]',
    `image_copy_tmp_dir = "${dir}/tmp"`,
    '[network]',
    `network_config_dir = "${dir}/net"`,
    '',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'storage.conf'), [
    '[storage]',
    `driver = "${driver === 'vfs' ? 'vfs' : 'overlay'}"`,
    `graphroot = "${dir}/root"`,
    `runroot = "${dir}/runroot"`,
    '',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'registries.conf'), 'unqualified-search-registries = []\n');
  // podman runs the mount program with its own environment: the pod's mounts are served by an
  // engine of the pod's (started by the first mount, stopped in teardown).
  const engineDir = path.join(dir, 'engine');
  const log = path.join(engineDir, 'engine.log');
  const env = {
    CONTAINERS_CONF: conf,
    CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'),
    CONTAINERS_REGISTRIES_CONF: path.join(dir, 'registries.conf'),
    LAYERFS_ENGINE_DIR: engineDir,
    TMPDIR: path.join(dir, 'tmp'),
  };
  const storage = driver === 'vfs'
    ? ['--storage-driver', 'vfs']
    : ['--storage-driver', 'overlay', '--storage-opt', `overlay.mount_program=${layerfsBin}`];
  const global = [
    '--root', `${dir}/root`, '--runroot', `${dir}/runroot`, '--tmpdir', `${dir}/libpod`,
    ...storage,
    ...(opts.storageOpts ?? []).flatMap((o) => ['--storage-opt', o]),
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
    engineDir,
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
    await stopEngineIn(engineDir);
  });
  return p;
}

export function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** A mount the pod's engine served, from its log. */
export interface Daemon {
  /** The engine's pid. */
  pid: number;
  mountpoint: string;
  /** The `mounted …` log line. */
  line: string;
  /** The engine logged its end (`MNT: unmounted`). */
  exited: boolean;
}

/** Every mount podman had the engine make, from its log: `layerfs[PID]: mounted MNT (…)` / `MNT: unmounted`. */
export function daemons(p: Pod): Daemon[] {
  let text = '';
  try {
    text = fs.readFileSync(p.log, 'utf8');
  } catch {
    return [];
  }
  const all: Daemon[] = [];
  const open = new Map<string, Daemon>();
  for (const line of text.split('\n')) {
    const m = /layerfs\[(\d+)\]: (?:mounted (\S+) |(\S+): (?:unmounted|the FUSE session failed))/.exec(line);
    if (!m) continue;
    if (m[2]) {
      const d = { pid: Number(m[1]), mountpoint: m[2], line, exited: false };
      all.push(d);
      open.set(m[2], d);
    } else {
      const d = open.get(m[3]!);
      if (d) d.exited = true;
      open.delete(m[3]!);
    }
  }
  return all;
}

/**
 * `podman rm NAME`. podman 4.3 races its own cleanup process (conmon's exit command) over the
 * container's /dev/shm mount and can fail with `unlinkat …/userdata/shm: device or resource
 * busy` even though it removed the container; seen just the same with the kernel's overlay
 * (no mount program) and --uidmap. Retried; what counts is that the container is gone.
 */
export async function rmContainer(p: Pod, name: string): Promise<void> {
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
export async function waitDaemonsGone(p: Pod, ms = 15_000): Promise<Daemon[]> {
  const until = Date.now() + ms;
  for (;;) {
    const alive = daemons(p).filter((d) => !d.exited);
    if (alive.length === 0 || Date.now() > until) return alive;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** FUSE mounts left below the dir (podman's own bind mount of overlay/ may stay: it is not ours). */
export function fuseMountsUnder(dir: string): string[] {
  const under = new Set(mountsUnder(dir));
  return readMountinfo().filter((m) => under.has(m.mountPoint) && m.fstype.startsWith('fuse')).map((m) => `${m.mountPoint} (${m.fstype})`);
}
