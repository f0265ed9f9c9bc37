// Stage 2 of `layerfs run`: a Node process started by `unshare --fork` inside the new mount,
// PID, UTS, IPC and network (and user) namespaces, where it is PID 1. It builds the container's
// mounts below the root the launcher mounted, pivots into it, detaches the host's root, drops
// privileges and finally execve()s CMD, which thereby becomes PID 1 itself.
//
// Every module is imported up front: after pivot_root the host's files (node_modules, this
// source tree) are gone. Errors go to the launcher on fd 4 as one line; stdout/stderr are never
// touched (libuv would make them non-blocking, and CMD would inherit that).

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../sys/index.ts';
import { makeInRoot, PathError, resolveInRoot } from './paths.ts';
import { CTL_IN_FD, CTL_OUT_FD, STAGE2_ENV, STDERR_FD, type Stage2Config, type Stage2Device } from './protocol.ts';
import { loadSeccomp } from './seccomp-addon.ts';
import { specFromWire } from './seccomp-spec.ts';
import { MASKED_PATHS, READONLY_PATHS } from './security.ts';

class Stage2Error extends Error {
  constructor(
    message: string,
    readonly status = 125,
  ) {
    super(message);
  }
}

function send(line: string): void {
  const b = Buffer.from(line.replace(/[\r\n]+/g, ' ') + '\n');
  let off = 0;
  while (off < b.length) off += fs.writeSync(CTL_OUT_FD, b, off);
}

/** Read one line from the launcher (blocking: stage 2 has nothing else to do meanwhile). */
function receive(): string {
  const buf = Buffer.alloc(256);
  let line = '';
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(CTL_IN_FD, buf, 0, buf.length, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw e;
    }
    if (n === 0) throw new Stage2Error('the launcher went away');
    line += buf.toString('utf8', 0, n);
    const nl = line.indexOf('\n');
    if (nl >= 0) return line.slice(0, nl);
  }
}

const { MS_BIND, MS_REC, MS_RDONLY, MS_REMOUNT, MS_NOSUID, MS_NODEV, MS_NOEXEC } = sys;
// statfs f_flags bits that a bind remount must keep (in a user namespace they are locked).
const ST_KEEP = sys.MS_NOSUID | sys.MS_NODEV | sys.MS_NOEXEC | sys.MS_NOATIME | 0x800 /* NODIRATIME */ | sys.MS_RELATIME;

function remountReadOnly(target: string): void {
  const keep = Number(sys.statfs(target).flags) & ST_KEEP;
  sys.mount(null, target, null, MS_REMOUNT | MS_BIND | MS_RDONLY | keep);
}

function mountPoint(cfg: Stage2Config, target: string, file = false): string {
  try {
    return makeInRoot(cfg.root, target, file);
  } catch (e) {
    if (e instanceof PathError) throw new Stage2Error(e.message);
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EROFS' || err.code === 'EACCES' || err.code === 'EPERM') {
      throw new Stage2Error(`cannot create mount point '${target}' in the root (${err.code}${cfg.readOnly ? '; the image lacks it and --read-only' : ''})`);
    }
    throw e;
  }
}

/**
 * The root must be a mount point of its own for pivot_root: a bind of the layerfs mount (or of
 * the --rootfs directory) onto itself, private to this namespace.
 */
function bindRoot(cfg: Stage2Config): void {
  sys.mount(cfg.root, cfg.root, null, MS_BIND | MS_REC);
}

/**
 * Root with --userns: stage 2 started as host root, which the namespace does not map (it kept
 * its capabilities there through unshare --keep-caps). Become the namespace's root — an
 * unprivileged host id — before anything is created in the container's root, so that the mount
 * stores it with the image's ids. That id cannot pass the launcher's run directory (mode 700):
 * the root is reached through a descriptor opened before the switch from here on.
 */
function becomeNamespaceRoot(cfg: Stage2Config): void {
  const fd = fs.openSync(cfg.root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  sys.setgroups([]);
  sys.setresgid(0);
  sys.setresuid(0);
  cfg.root = `/proc/self/fd/${fd}`;
}

/**
 * With a user namespace a --device is a bind of the host's node (mknod is not allowed there),
 * and stage 2 may be an unprivileged host id by then (root with --userns): each node is held as
 * an O_PATH descriptor opened first, as host root (O_PATH opens no device), and bound from it.
 */
const O_PATH = 0o10000000;
function holdDevices(cfg: Stage2Config): Map<Stage2Device, number> {
  const held = new Map<Stage2Device, number>();
  if (cfg.userns) for (const d of cfg.devices) held.set(d, fs.openSync(d.host, O_PATH | fs.constants.O_NOFOLLOW));
  return held;
}

/**
 * --device: the host's node at its path below the container's /dev (a tmpfs of ours): made with
 * mknod with the host node's numbers, mode and owner, or, in a user namespace, the host's node
 * bound onto an empty file. The device cgroup (run.ts) decides what may be opened.
 */
function makeDevices(cfg: Stage2Config, held: Map<Stage2Device, number>): void {
  for (const d of cfg.devices) {
    const fd = held.get(d);
    if (fd !== undefined) {
      sys.mount(`/proc/self/fd/${fd}`, mountPoint(cfg, d.target, true), null, MS_BIND);
      fs.closeSync(fd);
      continue;
    }
    const parent = mountPoint(cfg, path.posix.dirname(d.target));
    const node = path.join(parent, path.posix.basename(d.target));
    try {
      sys.mknod(node, (d.type === 'c' ? fs.constants.S_IFCHR : fs.constants.S_IFBLK) | d.mode, sys.makedev(d.major, d.minor));
    } catch (e) {
      throw new Stage2Error(`cannot make device '${d.target}': ${(e as sys.SysError).code ?? (e as Error).message}`);
    }
    fs.chownSync(node, d.uid, d.gid);
    fs.chmodSync(node, d.mode); // mknod's mode passed the umask
  }
}

function setupMounts(cfg: Stage2Config, held: Map<Stage2Device, number>): void {
  const root = cfg.root;

  sys.mount('proc', mountPoint(cfg, '/proc'), 'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC);

  // /dev: a small tmpfs with the host's harmless device nodes bind-mounted in (bind mounts work
  // in a user namespace too, where mknod does not).
  const dev = mountPoint(cfg, '/dev');
  sys.mount('tmpfs', dev, 'tmpfs', MS_NOSUID | MS_NOEXEC, 'mode=755,size=65536k');
  for (const d of ['null', 'zero', 'full', 'random', 'urandom', 'tty']) {
    const p = path.join(dev, d);
    fs.closeSync(fs.openSync(p, 'w', 0o666));
    sys.mount(`/dev/${d}`, p, null, MS_BIND);
  }
  fs.mkdirSync(path.join(dev, 'pts'));
  sys.mount('devpts', path.join(dev, 'pts'), 'devpts', MS_NOSUID | MS_NOEXEC, `newinstance,ptmxmode=0666,mode=0620${cfg.userns ? '' : ',gid=5'}`);
  fs.symlinkSync('pts/ptmx', path.join(dev, 'ptmx'));
  fs.mkdirSync(path.join(dev, 'shm'));
  sys.mount('shm', path.join(dev, 'shm'), 'tmpfs', MS_NOSUID | MS_NODEV | MS_NOEXEC, 'mode=1777,size=65536k');
  fs.mkdirSync(path.join(dev, 'mqueue'));
  fs.symlinkSync('/proc/self/fd', path.join(dev, 'fd'));
  ['stdin', 'stdout', 'stderr'].forEach((n, i) => fs.symlinkSync(`/proc/self/fd/${i}`, path.join(dev, n)));
  makeDevices(cfg, held);

  // /sys read-only (writable with --privileged). sysfs needs a network namespace of our own user namespace; with --net host
  // in a user namespace, a read-only bind of the host's /sys instead.
  const sysDir = mountPoint(cfg, '/sys');
  try {
    sys.mount('sysfs', sysDir, 'sysfs', (cfg.privileged ? 0 : MS_RDONLY) | MS_NOSUID | MS_NODEV | MS_NOEXEC);
  } catch (e) {
    if ((e as sys.SysError).code !== 'EPERM') throw e;
    sys.mount('/sys', sysDir, null, MS_BIND | MS_REC);
    remountReadOnly(sysDir);
  }

  // ping without CAP_NET_RAW: ICMP datagram sockets for every group, in the container's own
  // network namespace only (with --net host this sysctl is the host's: left alone).
  // In a user namespace only its mapped groups are accepted: then root's group alone.
  if (cfg.net === 'none') {
    const range = path.join(root, 'proc/sys/net/ipv4/ping_group_range');
    try {
      fs.writeFileSync(range, '0 2147483647');
    } catch {
      try {
        fs.writeFileSync(range, '0 0');
      } catch {
        /* ping then needs a raw socket, as on a host with the default range */
      }
    }
  }
  if (!cfg.privileged) restrictKernelFiles(root);

  sys.mount('tmpfs', mountPoint(cfg, '/tmp'), 'tmpfs', MS_NOSUID | MS_NODEV, 'mode=1777');

  // Volumes and --tmpfs, parents first. Targets resolve inside the root (symlinks scoped to it;
  // a missing one is made there, never outside).
  const mounts = [
    ...cfg.volumes.map((v) => ({
      target: v.target,
      mount: (): void => {
        const target = mountPoint(cfg, v.target, !v.dir);
        sys.mount(v.host, target, null, MS_BIND | MS_REC);
        if (v.readonly) remountReadOnly(target);
      },
    })),
    ...cfg.tmpfs.map((t) => ({
      target: t.target,
      mount: (): void => {
        const flags = (t.readonly ? MS_RDONLY : 0) | (t.noexec ? MS_NOEXEC : 0) | (t.nosuid ? MS_NOSUID : 0) | (t.nodev ? MS_NODEV : 0);
        try {
          sys.mount('tmpfs', mountPoint(cfg, t.target), 'tmpfs', flags, t.data === '' ? null : t.data);
        } catch (e) {
          if (e instanceof Stage2Error) throw e;
          throw new Stage2Error(`cannot mount the tmpfs at '${t.target}': ${(e as sys.SysError).code ?? (e as Error).message}`);
        }
      },
    })),
  ];
  for (const m of mounts.sort((a, b) => a.target.split('/').length - b.target.split('/').length)) m.mount();

  // The working directory, made like a mount point when the image lacks it (before the root
  // turns read-only, as docker does).
  try {
    const existed = fs.existsSync(resolveInRoot(root, cfg.workdir));
    const wd = makeInRoot(root, cfg.workdir, false);
    if (!existed && cfg.uid !== 0) fs.chownSync(wd, cfg.uid, cfg.gid); // one we made: the user's
  } catch (e) {
    const why = e instanceof PathError ? e.message : ((e as NodeJS.ErrnoException).code ?? (e as Error).message);
    throw new Stage2Error(`cannot create working directory '${cfg.workdir}': ${why}`);
  }

  if (cfg.readOnly) remountReadOnly(root);
}

/**
 * What the kernel shows in /proc and /sys about the host: read-only where a write would reach
 * the host (sysctls, sysrq, irq affinity), hidden where a read tells too much (kcore, keys,
 * timers, firmware tables). Paths are looked up below `root` without following symlinks; ones
 * this kernel lacks are skipped. Called after /proc and /sys are mounted, before the pivot.
 */
function restrictKernelFiles(root: string): void {
  const at = (p: string): fs.Stats | null => {
    try {
      return fs.lstatSync(path.join(root, p));
    } catch {
      return null;
    }
  };
  for (const p of READONLY_PATHS) {
    const st = at(p);
    if (!st || st.isSymbolicLink()) continue;
    const target = path.join(root, p);
    sys.mount(target, target, null, MS_BIND | MS_REC);
    remountReadOnly(target);
  }
  for (const p of MASKED_PATHS) {
    const st = at(p);
    if (!st || st.isSymbolicLink()) continue;
    const target = path.join(root, p);
    if (st.isDirectory()) sys.mount('tmpfs', target, 'tmpfs', MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 'size=0,mode=555');
    else sys.mount('/dev/null', target, null, MS_BIND);
  }
}

/** The pseudo-terminal for -t: the launcher allocates it in our devpts (see run.ts). */
function openTty(cfg: Stage2Config): number {
  send('pty');
  const reply = receive();
  const m = /^pty (\d+)$/.exec(reply);
  if (!m) throw new Stage2Error(`the launcher could not allocate a terminal (${reply})`);
  const fd = fs.openSync(path.join(cfg.root, 'dev/pts', m[1]), fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  if (cfg.uid !== 0) fs.fchownSync(fd, cfg.uid, cfg.gid);
  return fd;
}

function pivot(root: string): void {
  process.chdir(root);
  sys.pivotRoot('.', '.'); // the old root now sits on top of the new one, at '/'
  sys.umount2('.', sys.MNT_DETACH); // detach it (and every host mount below it)
  process.chdir('/');
}

function findCommand(cfg: Stage2Config): string {
  const cmd = cfg.command[0];
  const executable = (p: string): boolean => {
    try {
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (cmd.includes('/')) {
    if (!fs.existsSync(cmd)) throw new Stage2Error(`${cmd}: no such file or directory`, 127);
    return cmd;
  }
  const pathVar = cfg.env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  for (const dir of pathVar.split(':')) {
    const p = path.join(dir || '.', cmd);
    if (executable(p)) return p;
  }
  throw new Stage2Error(`${cmd}: command not found in the container`, 127);
}

function dropPrivileges(cfg: Stage2Config): void {
  sys.setNoNewPrivs();
  const keep = new Set(cfg.caps);
  const last = Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
  for (let c = 0; c <= last; c++) if (!keep.has(c) && sys.capBoundingHas(c)) sys.capBoundingDrop(c);
  sys.capAmbientClearAll();
  // The user's groups, as docker sets them (the primary gid first). Rootless: unshare
  // --map-root-user has denied setgroups, and we have none (runc skips them the same way).
  if (!(cfg.userns && !cfg.requestMap)) sys.setgroups(cfg.groups);
  if (cfg.uid !== 0 || cfg.gid !== 0) {
    sys.setresgid(cfg.gid);
    sys.setresuid(cfg.uid); // a uid other than 0 clears the permitted and effective sets
    sys.setParentDeathSignal(9); // a change of uid clears it: die with `unshare` again
  }
  let mask = 0n;
  for (const c of keep) mask |= 1n << BigInt(c);
  const cur = sys.capget();
  sys.capset({ effective: cur.effective & mask, permitted: cur.permitted & mask, inheritable: 0n });
}

/** SIGKILL our own child processes: after execve() they would be CMD's, inside the container. */
function killChildren(): void {
  for (const tid of fs.readdirSync('/proc/self/task')) {
    let kids: string[] = [];
    try {
      kids = fs.readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      /* thread gone */
    }
    for (const k of kids) {
      try {
        process.kill(Number(k), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

function main(): never {
  const cfg = JSON.parse(process.env[STAGE2_ENV] ?? 'null') as Stage2Config | null;
  if (!cfg) throw new Stage2Error('stage 2 is internal to layerfs run');
  sys.setBlocking(CTL_IN_FD);
  sys.getNoNewPrivs(); // load the libc bindings while the host's files are still reachable

  // Opened first: the cgroup filesystem is the host's (root-owned, gone after the pivot).
  const cgroupFds = cfg.cgroupProcs.map((p) => fs.openSync(p, 'w'));
  bindRoot(cfg);
  const held = holdDevices(cfg);
  if (cfg.requestMap) becomeNamespaceRoot(cfg);
  setupMounts(cfg, held);
  if (cfg.net === 'none') sys.interfaceUp('lo');
  sys.sethostname(cfg.hostname);
  const ttyFd = cfg.tty ? openTty(cfg) : -1;

  pivot(cfg.root);

  try {
    process.chdir(cfg.workdir);
  } catch (e) {
    throw new Stage2Error(`cannot change to working directory '${cfg.workdir}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!cfg.env.some((e) => e.startsWith('HOME='))) cfg.env.push(`HOME=${cfg.home}`);
  const file = findCommand(cfg);

  // Join the cgroup only now: stage 2's own Node heap is never charged to the container's
  // limits, and its threads never count against pids.max. Then a cgroup namespace rooted there.
  for (const fd of cgroupFds) {
    fs.writeSync(fd, '0');
    fs.closeSync(fd);
  }
  if (cfg.cgroupProcs.length > 0) sys.unshare(sys.CLONE_NEWCGROUP);

  if (ttyFd < 0) sys.dup2(STDERR_FD, 2);
  if (ttyFd >= 0) {
    sys.setsid();
    sys.setControllingTerminal(ttyFd);
    for (const fd of [0, 1, 2]) sys.dup2(ttyFd, fd);
    fs.closeSync(ttyFd);
  }
  // Node marks its stdio close-on-exec (and libuv may have made it non-blocking): undo both,
  // or CMD would start with no stdin/stdout/stderr.
  for (const fd of [0, 1, 2]) {
    try {
      sys.setCloexec(fd, false);
      sys.setBlocking(fd);
    } catch {
      /* closed */
    }
  }
  dropPrivileges(cfg);
  sys.closeFd(CTL_IN_FD);
  // Nothing but stdio reaches CMD: not the launcher's caller's descriptors, not ours (fd 4 stays
  // open until the execve() itself, for an error after "exec").
  for (const f of fs.readdirSync('/proc/self/fd')) {
    const fd = Number(f);
    if (fd > 2) {
      try {
        sys.setCloexec(fd, true);
      } catch {
        /* the directory's own descriptor, closed meanwhile */
      }
    }
  }
  killChildren(); // none when bundled; under tsx its esbuild service would stay behind
  sys.resetSignals();
  // Last: from here on only what the filter allows (write and execve are).
  if (cfg.seccomp) {
    try {
      loadSeccomp(specFromWire(cfg.seccomp));
    } catch (e) {
      throw new Stage2Error(`cannot load the seccomp filter: ${(e as Error).message}`);
    }
  }
  send('exec');
  try {
    sys.execve(file, cfg.command, cfg.env);
  } catch (e) {
    const err = e as sys.SysError;
    throw new Stage2Error(`cannot execute ${cfg.command[0]}: ${err.code === 'EACCES' ? 'permission denied' : err.code === 'ENOENT' ? 'no such file or directory' : err.message}`, err.code === 'ENOENT' ? 127 : 126);
  }
}

try {
  main();
} catch (e) {
  const status = e instanceof Stage2Error ? e.status : 125;
  const msg = e instanceof Stage2Error ? e.message : `container set-up failed: ${(e as Error).message}`;
  try {
    send(`error ${status} ${msg}`);
  } catch {
    /* launcher gone */
  }
  process.exit(status);
}
