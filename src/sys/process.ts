// Processes, namespaces, mounts and credentials, for the launcher (src/launcher/) and for
// unmounting: mount, umount2, pivot_root, sethostname, unshare, prctl (no_new_privs, the parent
// death signal, the capability bounding and ambient sets), capget/capset, setgroups,
// setres[ug]id, setsid, terminals and pseudo-terminals, bringing an interface up, descriptors
// (dup2, close, fcntl), signal dispositions and execve. All through koffi (libc.ts).
//
// Credentials, capabilities and prctl() settings are per thread in the kernel: call these from
// the thread that goes on to execve() (Node's main thread). glibc's setres[ug]id/setgroups
// apply to every thread of the process.

import koffi from 'koffi';
import os from 'node:os';
import { cPath, checkInt, fail, invalidArg } from './errors.ts';
import { lib, procLib, type PathArg } from './libc.ts';

// mount(2) flags
export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_REMOUNT = 0x20;
export const MS_NOATIME = 0x400;
export const MS_BIND = 0x1000;
export const MS_MOVE = 0x2000;
export const MS_REC = 0x4000;
export const MS_PRIVATE = 0x40000;
export const MS_SLAVE = 0x80000;
export const MS_RELATIME = 0x200000;

// umount2(2) flags
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;
export const MNT_EXPIRE = 4;
export const UMOUNT_NOFOLLOW = 8;

// unshare(2) / clone(2) flags
export const CLONE_NEWNS = 0x20000;
export const CLONE_NEWCGROUP = 0x2000000;
export const CLONE_NEWUTS = 0x4000000;
export const CLONE_NEWIPC = 0x8000000;
export const CLONE_NEWUSER = 0x10000000;
export const CLONE_NEWPID = 0x20000000;
export const CLONE_NEWNET = 0x40000000;

const SYS_pivot_root = 155; // x86_64
const PR_SET_PDEATHSIG = 1;
const PR_CAPBSET_READ = 23;
const PR_CAPBSET_DROP = 24;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_GET_NO_NEW_PRIVS = 39;
const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_CLEAR_ALL = 4;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;

function nullablePath(p: PathArg | null | undefined, name: string): Buffer | null {
  return p === null || p === undefined ? null : cPath(p, name);
}

/** mount(2). `source`, `fstype` and `data` may be null (bind mounts, remounts, propagation changes). */
export function mount(source: PathArg | null, target: PathArg, fstype: string | null, flags: number, data: string | null = null): void {
  const r = procLib().mount(nullablePath(source, 'source'), cPath(target, 'target'), nullablePath(fstype, 'fstype'), BigInt(flags), nullablePath(data, 'data'));
  if (r !== 0) fail('mount', target);
}

/** umount2(2). `flags`: MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW. */
export function umount2(target: PathArg, flags: number): void {
  if (lib().umount2(cPath(target, 'target'), flags) !== 0) fail('umount2', target);
}

/**
 * pivot_root(2) (glibc has no wrapper). `pivotRoot('.', '.')` after chdir(newRoot) stacks the old
 * root on top of the new one, to be detached with umount2('.', MNT_DETACH) — no directory for the
 * old root is needed inside the new one.
 */
export function pivotRoot(newRoot: PathArg, putOld: PathArg): void {
  const r = procLib().syscall(SYS_pivot_root, 'const char *', cPath(newRoot, 'newRoot'), 'const char *', cPath(putOld, 'putOld'));
  if (Number(r) !== 0) fail('pivot_root', newRoot, putOld);
}

/** sethostname(2), in the caller's UTS namespace. */
export function sethostname(name: string): void {
  const b = Buffer.from(name, 'utf8');
  if (procLib().sethostname(b, b.length) !== 0) fail('sethostname');
}

/** unshare(2) with CLONE_NEW* flags. */
export function unshare(flags: number): void {
  if (procLib().unshare(flags) !== 0) fail('unshare');
}

function prctl(option: number, a2: number | bigint = 0, a3: number | bigint = 0, a4: number | bigint = 0, a5: number | bigint = 0): number {
  const ul = 'unsigned long';
  const r = procLib().prctl(option, ul, BigInt(a2), ul, BigInt(a3), ul, BigInt(a4), ul, BigInt(a5));
  if (r < 0) fail('prctl');
  return r;
}

/** prctl(PR_SET_NO_NEW_PRIVS, 1): execve() never grants privileges again (setuid bits, file caps). */
export function setNoNewPrivs(): void {
  prctl(PR_SET_NO_NEW_PRIVS, 1);
}

export function getNoNewPrivs(): boolean {
  return prctl(PR_GET_NO_NEW_PRIVS) === 1;
}

/** prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` to us when our parent (thread) exits. */
export function setParentDeathSignal(sig: number): void {
  prctl(PR_SET_PDEATHSIG, sig);
}

/** Whether capability number `cap` is in the calling thread's bounding set. */
export function capBoundingHas(cap: number): boolean {
  return prctl(PR_CAPBSET_READ, cap) === 1;
}

/** Remove capability number `cap` from the calling thread's bounding set (needs CAP_SETPCAP). */
export function capBoundingDrop(cap: number): void {
  prctl(PR_CAPBSET_DROP, cap);
}

/** Empty the calling thread's ambient capability set. */
export function capAmbientClearAll(): void {
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);
}

/** Capability sets as bit masks (bit N = capability number N). */
export interface CapSets {
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
}

function capHeader(): Buffer {
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(LINUX_CAPABILITY_VERSION_3, 0);
  hdr.writeInt32LE(0, 4); // the calling thread
  return hdr;
}

/** capget(2) of the calling thread. */
export function capget(): CapSets {
  const data = Buffer.alloc(24); // struct __user_cap_data_struct[2]
  if (procLib().capget(capHeader(), data) !== 0) fail('capget');
  const join = (off: number): bigint => BigInt(data.readUInt32LE(off)) | (BigInt(data.readUInt32LE(off + 12)) << 32n);
  return { effective: join(0), permitted: join(4), inheritable: join(8) };
}

/** capset(2) of the calling thread. */
export function capset(sets: CapSets): void {
  const data = Buffer.alloc(24);
  const lo = (v: bigint): number => Number(v & 0xffff_ffffn);
  const hi = (v: bigint): number => Number((v >> 32n) & 0xffff_ffffn);
  data.writeUInt32LE(lo(sets.effective), 0);
  data.writeUInt32LE(lo(sets.permitted), 4);
  data.writeUInt32LE(lo(sets.inheritable), 8);
  data.writeUInt32LE(hi(sets.effective), 12);
  data.writeUInt32LE(hi(sets.permitted), 16);
  data.writeUInt32LE(hi(sets.inheritable), 20);
  if (procLib().capset(capHeader(), data) !== 0) fail('capset');
}

/** setgroups(2): the supplementary group list (every thread, through glibc). */
export function setgroups(gids: readonly number[]): void {
  const buf = Buffer.alloc(4 * gids.length);
  gids.forEach((g, i) => buf.writeUInt32LE(checkInt('gid', g, 0, 0xffff_fffe), 4 * i));
  if (procLib().setgroups(gids.length, buf) !== 0) fail('setgroups');
}

/** setresgid(2) with one gid for real, effective and saved. */
export function setresgid(gid: number): void {
  checkInt('gid', gid, 0, 0xffff_fffe);
  if (procLib().setresgid(gid, gid, gid) !== 0) fail('setresgid');
}

/** setresuid(2) with one uid for real, effective and saved. */
export function setresuid(uid: number): void {
  checkInt('uid', uid, 0, 0xffff_fffe);
  if (procLib().setresuid(uid, uid, uid) !== 0) fail('setresuid');
}

/** setsid(2); returns the new session id. */
export function setsid(): number {
  const r = procLib().setsid();
  if (r < 0) fail('setsid');
  return r;
}

const TIOCSCTTY = 0x540en;
const TIOCGWINSZ = 0x5413n;
const TIOCSWINSZ = 0x5414n;
const TIOCGPTN = 0x80045430n;
const TIOCSPTLCK = 0x40045431n;
const SIOCGIFFLAGS = 0x8913n;
const SIOCSIFFLAGS = 0x8914n;
const IFF_UP = 0x1;

function ioctlPtr(fd: number, req: bigint, arg: Buffer, name: string): void {
  if (procLib().ioctl(fd, req, 'void *', arg) !== 0) fail(name);
}

/** ioctl(TIOCSCTTY): make terminal `fd` the controlling terminal of the calling session leader. */
export function setControllingTerminal(fd: number): void {
  if (procLib().ioctl(fd, TIOCSCTTY, 'int', 0) !== 0) fail('ioctl(TIOCSCTTY)');
}

/** Unlock the slave of pseudo-terminal master `fd` (unlockpt) and return its number (ptsname). */
export function ptyUnlock(fd: number): number {
  const v = Buffer.alloc(4);
  ioctlPtr(fd, TIOCSPTLCK, v, 'ioctl(TIOCSPTLCK)');
  ioctlPtr(fd, TIOCGPTN, v, 'ioctl(TIOCGPTN)');
  return v.readUInt32LE(0);
}

export interface WinSize {
  rows: number;
  cols: number;
}

export function getWinSize(fd: number): WinSize {
  const ws = Buffer.alloc(8);
  ioctlPtr(fd, TIOCGWINSZ, ws, 'ioctl(TIOCGWINSZ)');
  return { rows: ws.readUInt16LE(0), cols: ws.readUInt16LE(2) };
}

export function setWinSize(fd: number, size: WinSize): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(size.rows, 0);
  ws.writeUInt16LE(size.cols, 2);
  ioctlPtr(fd, TIOCSWINSZ, ws, 'ioctl(TIOCSWINSZ)');
}

/** Set the IFF_UP flag of network interface `name` (e.g. 'lo') in the caller's network namespace. */
export function interfaceUp(name: string): void {
  const c = procLib();
  const sock = c.socket(2 /* AF_INET */, 2 /* SOCK_DGRAM */ | 0x80000 /* SOCK_CLOEXEC */, 0);
  if (sock < 0) fail('socket');
  try {
    const ifr = Buffer.alloc(40); // struct ifreq: char ifr_name[16]; union { short ifr_flags; ... }
    const n = Buffer.from(name, 'utf8');
    if (n.length >= 16 || n.includes(0)) throw invalidArg('name', name, 'must be an interface name (at most 15 bytes)');
    n.copy(ifr);
    ioctlPtr(sock, SIOCGIFFLAGS, ifr, 'ioctl(SIOCGIFFLAGS)');
    ifr.writeInt16LE(ifr.readInt16LE(16) | IFF_UP, 16);
    ioctlPtr(sock, SIOCSIFFLAGS, ifr, 'ioctl(SIOCSIFFLAGS)');
  } finally {
    c.close(sock);
  }
}

/** dup2(2). */
export function dup2(oldfd: number, newfd: number): void {
  if (procLib().dup2(oldfd, newfd) < 0) fail('dup2');
}

/** close(2) of a raw descriptor (one Node does not own); EBADF is ignored. */
export function closeFd(fd: number): void {
  if (procLib().close(fd) !== 0 && koffi.errno() !== os.constants.errno.EBADF) fail('close');
}

const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const FD_CLOEXEC = 1;
const O_NONBLOCK = 0o4000;

/** Clear O_NONBLOCK on `fd` (an open file description libuv may have made non-blocking). */
export function setBlocking(fd: number): void {
  const c = procLib();
  const fl = c.fcntl(fd, F_GETFL);
  if (fl < 0) fail('fcntl');
  if (fl & O_NONBLOCK && c.fcntl(fd, F_SETFL, 'int', fl & ~O_NONBLOCK) < 0) fail('fcntl');
}

/** Set or clear FD_CLOEXEC on `fd`. */
export function setCloexec(fd: number, on: boolean): void {
  const c = procLib();
  const fl = c.fcntl(fd, F_GETFD);
  if (fl < 0) fail('fcntl');
  if (c.fcntl(fd, F_SETFD, 'int', on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC) < 0) fail('fcntl');
}

/**
 * Put every signal back to its default disposition and unblock them all. execve() keeps ignored
 * signals ignored and the mask as it is, and Node ignores SIGPIPE (and libuv blocks nothing, but
 * be sure): a program started from Node by execve() should not inherit that.
 */
export function resetSignals(): void {
  const c = procLib();
  for (let sig = 1; sig <= 64; sig++) {
    if (sig === 9 || sig === 19 || sig === 32 || sig === 33) continue; // SIGKILL, SIGSTOP, glibc-internal
    c.signal(sig, 0n); // SIG_DFL; EINVAL for the few that cannot be changed is fine
  }
  const empty = Buffer.alloc(128); // sigset_t
  if (c.sigprocmask(2 /* SIG_SETMASK */, empty, null) !== 0) fail('sigprocmask');
}

/**
 * execve(2): replace this process with `path`. Returns only by throwing. Descriptors without
 * FD_CLOEXEC stay open in the new program; Node's own are close-on-exec.
 */
export function execve(path: PathArg, argv: readonly string[], env: readonly string[]): never {
  for (const s of [...argv, ...env]) if (s.includes('\0')) throw invalidArg('argv/env', s, 'must not contain null bytes');
  procLib().execve(cPath(path), [...argv, null], [...env, null]);
  fail('execve', path);
}
