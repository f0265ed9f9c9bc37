// The container's cgroup: created by the launcher, joined by stage 2 right before it executes
// CMD (so the Node process of stage 2 never counts against the limits), removed afterwards.
//
// cgroup v1 (what this machine has): one directory `layerfs-<id>` below the launcher's own
// cgroup in each of the memory, pids, cpu and cpuacct hierarchies (nesting below our own cgroup
// keeps the container inside whatever limits the caller already has).
// cgroup v2 (unified): one directory below the launcher's own cgroup when the controllers can be
// enabled there, otherwise below `<cgroup2 root>/layerfs` (v2 forbids enabling controllers for
// children of a cgroup that holds processes, as the launcher's own may).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { readMountinfo } from '../mountinfo.ts';
import { applyDeviceFilterV2 } from './devices-bpf.ts';
import { deviceRuleLine, type DeviceRule } from './security.ts';

export interface Limits {
  memory?: number;
  pidsLimit?: number;
  cpus?: number;
}

export interface Cgroups {
  version: 1 | 2;
  /** Every directory created, in creation order (removed in reverse). */
  dirs: string[];
  /** The cgroup.procs files stage 2 writes its pid to. */
  procs: string[];
  /** Directory whose memory.* files count OOM kills. */
  memoryDir?: string;
}

interface Hierarchy {
  version: 1 | 2;
  controllers: string[];
  /** Directory of the launcher's own cgroup in this hierarchy. */
  own: string;
  /** Mount point of the hierarchy. */
  mount: string;
}

const V1_CONTROLLERS = ['memory', 'pids', 'cpu', 'cpuacct', 'devices'];
const V2_CONTROLLERS = ['memory', 'pids', 'cpu'];
const CFS_PERIOD_US = 100_000;

/** The cgroup hierarchies this process can use, with its own cgroup's directory in each. */
export function hierarchies(): Hierarchy[] {
  const own = new Map<string, string>(); // "memory" or "" (v2) -> path of our cgroup
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const c of m[1] === '' ? [''] : m[1].split(',')) own.set(c, m[2]);
  }
  const out: Hierarchy[] = [];
  for (const m of readMountinfo()) {
    const { root, mountpoint: mnt, fstype } = m;
    let controllers: string[];
    let ownPath: string | undefined;
    if (fstype === 'cgroup') {
      controllers = m.superOptions.filter((o) => V1_CONTROLLERS.includes(o));
      if (controllers.length === 0) continue;
      ownPath = own.get(controllers[0]);
    } else if (fstype === 'cgroup2') {
      ownPath = own.get('');
      controllers = [];
      try {
        const base = ownPath !== undefined ? relativeTo(root, ownPath) : undefined;
        const dir = base !== undefined ? path.join(mnt, base) : mnt;
        controllers = fs.readFileSync(path.join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter((c) => V2_CONTROLLERS.includes(c));
      } catch {
        /* not readable: unusable */
      }
      if (controllers.length === 0) continue;
    } else continue;
    if (ownPath === undefined) continue;
    const rel = relativeTo(root, ownPath);
    if (rel === undefined) continue; // our cgroup is outside what this mount shows
    if (out.some((h) => h.mount === mnt)) continue;
    out.push({ version: fstype === 'cgroup2' ? 2 : 1, controllers, own: path.join(mnt, rel), mount: mnt });
  }
  // Prefer v1 controllers (a hybrid system puts them there); v2 only when v1 has none.
  const v1 = out.filter((h) => h.version === 1);
  return v1.length > 0 ? v1 : out.filter((h) => h.version === 2);
}

function relativeTo(root: string, p: string): string | undefined {
  if (root === '/') return p;
  if (p === root) return '/';
  if (p.startsWith(root + '/')) return p.slice(root.length);
  return undefined;
}

/** Why limits cannot be applied here, or null when they can. */
export function limitsUnsupported(limits: Limits): string | null {
  const wanted: string[] = [];
  if (limits.memory !== undefined) wanted.push('memory');
  if (limits.pidsLimit !== undefined) wanted.push('pids');
  if (limits.cpus !== undefined) wanted.push('cpu');
  if (wanted.length === 0) return null;
  let hs: Hierarchy[];
  try {
    hs = hierarchies();
  } catch (e) {
    return `cannot read the cgroup setup (${(e as Error).message})`;
  }
  for (const w of wanted) {
    const h = hs.find((x) => x.controllers.includes(w));
    if (!h) return `no cgroup '${w}' controller is available on this system`;
    try {
      fs.accessSync(h.own, fs.constants.W_OK);
    } catch {
      return `no permission to create cgroups in ${h.own} (resource limits need root, or a delegated cgroup v2 tree)`;
    }
  }
  return null;
}

function write(dir: string, file: string, value: string): void {
  try {
    fs.writeFileSync(path.join(dir, file), value);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`cannot write '${value}' to ${path.join(dir, file)}: ${err.code ?? err.message}`);
  }
}

/**
 * Create the container's cgroup(s) and apply the limits. `record` is called with each directory
 * before it is created, so that a launcher killed half-way leaves a trace to clean up.
 * `devices`: the only devices the container may open or create (v1: the devices controller's
 * deny-all + allow list; v2: an eBPF device program on the cgroup); null leaves devices alone.
 * Returns null when this system offers no usable hierarchy (and no limits were asked for).
 */
export function createCgroups(id: string, limits: Limits, record: (dir: string) => void, devices: readonly DeviceRule[] | null = null): Cgroups | null {
  let hs: Hierarchy[];
  try {
    hs = hierarchies().filter((h) => isWritable(h.own) || (h.version === 2 && isWritable(h.mount)));
  } catch {
    hs = [];
  }
  if (hs.length === 0) return null;
  const cg: Cgroups = { version: hs[0].version, dirs: [], procs: [] };
  const name = `layerfs-${id}`;
  const mk = (dir: string): void => {
    record(dir);
    fs.mkdirSync(dir);
    cg.dirs.push(dir);
  };
  try {
    if (cg.version === 1) {
      for (const h of hs) {
        const dir = path.join(h.own, name);
        mk(dir);
        cg.procs.push(path.join(dir, 'cgroup.procs'));
        if (h.controllers.includes('memory')) {
          cg.memoryDir = dir;
          if (limits.memory !== undefined) {
            write(dir, 'memory.limit_in_bytes', String(limits.memory));
            // Without a memsw limit the hog would swap instead of being killed (when swap exists).
            if (fs.existsSync(path.join(dir, 'memory.memsw.limit_in_bytes'))) write(dir, 'memory.memsw.limit_in_bytes', String(limits.memory));
          }
        }
        if (h.controllers.includes('pids') && limits.pidsLimit !== undefined) write(dir, 'pids.max', String(limits.pidsLimit));
        if (h.controllers.includes('devices') && devices) {
          write(dir, 'devices.deny', 'a');
          for (const r of devices) write(dir, 'devices.allow', deviceRuleLine(r));
        }
        if (h.controllers.includes('cpu') && limits.cpus !== undefined) {
          write(dir, 'cpu.cfs_period_us', String(CFS_PERIOD_US));
          write(dir, 'cpu.cfs_quota_us', String(Math.max(1000, Math.round(limits.cpus * CFS_PERIOD_US))));
        }
      }
    } else {
      const h = hs[0];
      const need = V2_CONTROLLERS.filter((c) => h.controllers.includes(c));
      const enable = (dir: string): boolean => {
        try {
          fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), need.map((c) => `+${c}`).join(' '));
          return true;
        } catch {
          return false;
        }
      };
      let parent = h.own;
      if (!enable(parent)) {
        // Our own cgroup holds processes: use a `layerfs` cgroup at the top instead.
        parent = path.join(h.mount, 'layerfs');
        if (!fs.existsSync(parent)) fs.mkdirSync(parent);
        if (!enable(h.mount) || !enable(parent)) throw new Error(`cannot enable the ${need.join(', ')} controllers below ${h.mount}`);
      }
      const dir = path.join(parent, name);
      mk(dir);
      cg.procs.push(path.join(dir, 'cgroup.procs'));
      cg.memoryDir = dir;
      if (limits.memory !== undefined) {
        write(dir, 'memory.max', String(limits.memory));
        if (fs.existsSync(path.join(dir, 'memory.swap.max'))) write(dir, 'memory.swap.max', '0');
      }
      if (limits.pidsLimit !== undefined) write(dir, 'pids.max', String(limits.pidsLimit));
      if (limits.cpus !== undefined) write(dir, 'cpu.max', `${Math.max(1000, Math.round(limits.cpus * CFS_PERIOD_US))} ${CFS_PERIOD_US}`);
      if (devices) applyDeviceFilterV2(dir, devices);
    }
    if (devices && cg.version === 1 && !hs.some((h) => h.controllers.includes('devices'))) {
      throw new Error('no cgroup v1 devices controller to keep the container from device nodes');
    }
  } catch (e) {
    removeCgroups(cg.dirs);
    throw e;
  }
  return cg;
}

function isWritable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** How many processes the kernel OOM-killed in the container's memory cgroup. */
export function oomKills(cg: Cgroups | null): number {
  if (!cg?.memoryDir) return 0;
  const file = cg.version === 1 ? 'memory.oom_control' : 'memory.events';
  try {
    const m = /^oom_kill (\d+)$/m.exec(fs.readFileSync(path.join(cg.memoryDir, file), 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function procsOf(dir: string): number[] {
  try {
    return fs
      .readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** The processes in any of these cgroups. */
export function cgroupPids(dirs: readonly string[]): number[] {
  return [...new Set(dirs.flatMap(procsOf))];
}

/**
 * SIGKILL whatever is still in the cgroups, then remove them (deepest first). Synchronous,
 * bounded (about 5 s); returns the directories that could not be removed.
 */
export function removeCgroups(dirs: readonly string[]): string[] {
  const left: string[] = [];
  for (const dir of [...dirs].reverse()) {
    if (!fs.existsSync(dir)) continue;
    const until = Date.now() + 5000;
    for (;;) {
      for (const pid of procsOf(dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      try {
        fs.rmdirSync(dir);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (Date.now() > until) {
          left.push(dir);
          break;
        }
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      }
    }
  }
  return left;
}
