// What a container may do: its capability set, the /proc and /sys paths it must not write or
// read, and the devices it may open. Pure data and set arithmetic; stage2.ts applies the paths,
// cgroup.ts the device list, seccomp.ts the syscall filter.
//
// The defaults are podman 4's (containers.conf default_capabilities; the masked and read-only
// path lists runc and crun apply): a container started by root gets no more than podman gives.

/** Linux capability numbers, by the names docker and podman users type (without CAP_). */
export const CAPS: Readonly<Record<string, number>> = {
  CHOWN: 0,
  DAC_OVERRIDE: 1,
  DAC_READ_SEARCH: 2,
  FOWNER: 3,
  FSETID: 4,
  KILL: 5,
  SETGID: 6,
  SETUID: 7,
  SETPCAP: 8,
  LINUX_IMMUTABLE: 9,
  NET_BIND_SERVICE: 10,
  NET_BROADCAST: 11,
  NET_ADMIN: 12,
  NET_RAW: 13,
  IPC_LOCK: 14,
  IPC_OWNER: 15,
  SYS_MODULE: 16,
  SYS_RAWIO: 17,
  SYS_CHROOT: 18,
  SYS_PTRACE: 19,
  SYS_PACCT: 20,
  SYS_ADMIN: 21,
  SYS_BOOT: 22,
  SYS_NICE: 23,
  SYS_RESOURCE: 24,
  SYS_TIME: 25,
  SYS_TTY_CONFIG: 26,
  MKNOD: 27,
  LEASE: 28,
  AUDIT_WRITE: 29,
  AUDIT_CONTROL: 30,
  SETFCAP: 31,
  MAC_OVERRIDE: 32,
  MAC_ADMIN: 33,
  SYSLOG: 34,
  WAKE_ALARM: 35,
  BLOCK_SUSPEND: 36,
  AUDIT_READ: 37,
  PERFMON: 38,
  BPF: 39,
  CHECKPOINT_RESTORE: 40,
};

/**
 * podman 4's default set. Compared with docker's it lacks MKNOD, AUDIT_WRITE and NET_RAW: no
 * device nodes, no audit records, no raw sockets (ping works through ping_group_range).
 */
export const DEFAULT_CAP_NAMES: readonly string[] = [
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
];

/** "net_admin", "CAP_NET_ADMIN", "ALL" → "NET_ADMIN" / "ALL"; null for an unknown name. */
export function capName(s: string): string | null {
  const n = s.trim().toUpperCase().replace(/^CAP_/, '');
  return n === 'ALL' || Object.hasOwn(CAPS, n) ? n : null;
}

/**
 * The capabilities CMD keeps, as names without CAP_: docker's rules (drop ALL empties the
 * default set, add ALL fills it; adds apply after drops). `privileged` gives every one.
 */
export function capabilitySet(add: readonly string[], drop: readonly string[], privileged: boolean): string[] {
  const all = Object.keys(CAPS);
  if (privileged) return all.filter((c) => !drop.includes(c) || add.includes(c));
  let set = new Set(drop.includes('ALL') ? [] : DEFAULT_CAP_NAMES);
  for (const c of drop) set.delete(c);
  if (add.includes('ALL')) set = new Set(all.filter((c) => !drop.includes(c)));
  for (const c of add) if (c !== 'ALL') set.add(c);
  return all.filter((c) => set.has(c));
}

/** Read-only inside the container: bind-remounted read-only over themselves. */
export const READONLY_PATHS: readonly string[] = ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Hidden: an empty read-only tmpfs over a directory, /dev/null over a file. */
export const MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/fs/selinux',
  '/sys/dev/block',
  '/sys/devices/virtual/powercap',
];

/** Device access as the device cgroup spells it: a non-empty subset of r(ead), w(rite), m(knod), in that order. */
export type DeviceAccess = 'rwm' | 'rw' | 'rm' | 'wm' | 'r' | 'w' | 'm';

export interface DeviceRule {
  type: 'c' | 'b';
  /** null: any major / minor. */
  major: number | null;
  minor: number | null;
  access: DeviceAccess;
}

/**
 * "mrw", "rw", "wr" → the DeviceAccess in canonical order ("rwm", "rw", "rw"); null for anything
 * else: empty, another letter, a letter twice (docker's validDeviceMode).
 */
export function deviceAccess(s: string): DeviceAccess | null {
  if (!/^[rwm]{1,3}$/.test(s) || new Set(s).size !== s.length) return null;
  return (['r', 'w', 'm'].filter((c) => s.includes(c)).join('') as DeviceAccess);
}

/**
 * The devices a container may open (device cgroup): the nodes of its minimal /dev, the
 * pseudo-terminals, and `mknod` of nothing (`m` only where a capability-holding process could
 * use it anyway). Everything else — a device node a layer brings, or one made with
 * --cap-add MKNOD — cannot be opened.
 */
export const ALLOWED_DEVICES: readonly DeviceRule[] = [
  { type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
  { type: 'c', major: 1, minor: 7, access: 'rwm' }, // full
  { type: 'c', major: 1, minor: 8, access: 'rwm' }, // random
  { type: 'c', major: 1, minor: 9, access: 'rwm' }, // urandom
  { type: 'c', major: 5, minor: 0, access: 'rwm' }, // tty
  { type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { type: 'c', major: 136, minor: null, access: 'rwm' }, // pts/*
];

/**
 * The device list of a container: ALLOWED_DEVICES and then, for each --device, exactly its node
 * with its permissions.
 */
export function containerDevices(extra: readonly DeviceRule[]): DeviceRule[] {
  return [...ALLOWED_DEVICES, ...extra];
}

/** The v1 devices.allow line of a rule: "c 1:3 rwm", "c 136:* rwm". */
export function deviceRuleLine(r: DeviceRule): string {
  return `${r.type} ${r.major ?? '*'}:${r.minor ?? '*'} ${r.access}`;
}
