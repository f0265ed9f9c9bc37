// User namespaces for root's containers: which host ids the container's ids are, so that root
// in the container is an unprivileged uid on the host (never 0 → 0).
//
//   --userns[=auto[:size=N]]   a free block of N ids (default 65536) from the pool: the ranges
//                              /etc/subuid and /etc/subgid give the user `containers` (podman's
//                              convention), else 1879048192 + k·65536 (a region systemd leaves
//                              unused: above its container range, below its reserved ids).
//                              "Free" means no live user namespace on the host maps any of it
//                              (read from /proc/*/uid_map), checked under a host-wide lock held
//                              until the new namespace's maps are written.
//   --uidmap CTR:HOST:N        explicit ranges, as podman spells them (--gidmap defaults to the
//   --gidmap CTR:HOST:N        uid ranges, and the other way round)
//   --subuidname NAME          the ranges /etc/subuid (/etc/subgid: --subgidname, default the
//   --subgidname NAME          same name) give NAME, container id 0 upwards
//
// The layers are shown to the container through the mount's uidmapping=/gidmapping= with the
// same ranges: an image's root-owned file is owned by the container's root, and what the
// container writes is stored in the upper with the image's ids (commit and diff see them so).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { stateDir } from '../engine/state.ts';
import * as sys from '../sys/index.ts';
import { RunError } from './errors.ts';

export interface IdRange {
  container: number;
  host: number;
  size: number;
}

export interface IdMaps {
  uid: IdRange[];
  gid: IdRange[];
}

export type UsernsRequest =
  | { kind: 'auto'; size: number }
  | { kind: 'map'; uid: IdRange[]; gid: IdRange[] }
  | { kind: 'subid'; user: string; group: string };

/** The kernel takes at most 340 lines per map (since 4.15). */
const MAX_RANGES = 340;
const ID_LIMIT = 2 ** 32 - 1; // (uid_t)-1 is never a valid id
const BLOCK = 65536;
const DEFAULT_POOL: IdRange = { container: 0, host: 1879048192, size: 4094 * BLOCK };
const POOL_USER = 'containers';

/** "CTR:HOST:N" (podman's --uidmap syntax). */
export function parseIdRange(s: string, opt: string): IdRange {
  const m = /^([0-9]{1,10}):([0-9]{1,10}):([0-9]{1,10})$/.exec(s);
  if (!m) throw new RunError(`bad ${opt} '${s}': expected CONTAINER_ID:HOST_ID:COUNT`);
  const r = { container: Number(m[1]), host: Number(m[2]), size: Number(m[3]) };
  if (r.size < 1) throw new RunError(`bad ${opt} '${s}': the count must be at least 1`);
  if (r.container + r.size > ID_LIMIT || r.host + r.size > ID_LIMIT) throw new RunError(`bad ${opt} '${s}': ids must stay below 4294967295`);
  return r;
}

/** A map the kernel accepts and that never makes the container's ids host root. */
export function checkRanges(ranges: readonly IdRange[], what: string): void {
  if (ranges.length === 0) throw new RunError(`${what}: no ranges`);
  if (ranges.length > MAX_RANGES) throw new RunError(`${what}: ${ranges.length} ranges (the kernel takes at most ${MAX_RANGES})`);
  const overlap = (key: 'container' | 'host'): boolean => {
    const sorted = [...ranges].sort((a, b) => a[key] - b[key]);
    return sorted.some((r, i) => i > 0 && sorted[i - 1][key] + sorted[i - 1].size > r[key]);
  };
  if (overlap('container')) throw new RunError(`${what}: container ranges overlap`);
  if (overlap('host')) throw new RunError(`${what}: host ranges overlap`);
  const root = ranges.find((r) => r.host === 0);
  if (root) throw new RunError(`${what}: maps container id ${root.container} to host id 0; container ids must be unprivileged on the host`);
  if (!ranges.some((r) => r.container === 0)) throw new RunError(`${what}: container id 0 is not mapped`);
}

/** Whether container id `id` is mapped. */
export function mapsId(ranges: readonly IdRange[], id: number): boolean {
  return ranges.some((r) => id >= r.container && id < r.container + r.size);
}

/** The ranges /etc/subuid or /etc/subgid give `name` (or its numeric id), container id 0 upwards. */
export function subidRanges(file: string, name: string, id?: number): IdRange[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: IdRange[] = [];
  let next = 0;
  for (const line of text.split('\n')) {
    const f = line.trim().split(':');
    if (f.length !== 3 || !(f[0] === name || (id !== undefined && f[0] === String(id)))) continue;
    const host = Number(f[1]);
    const size = Number(f[2]);
    if (!Number.isSafeInteger(host) || !Number.isSafeInteger(size) || host < 1 || size < 1 || host + size > ID_LIMIT) continue;
    out.push({ container: next, host, size });
    next += size;
  }
  return out;
}

/** The numeric id of a user or group name in the host's /etc/passwd or /etc/group. */
function hostId(file: string, name: string): number | undefined {
  try {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f.length >= 3) return Number(f[2]);
    }
  } catch {
    /* no such file */
  }
  return undefined;
}

/** Host id ranges that live user namespaces map (as seen from ours, the initial one). */
function rangesInUse(kind: 'uid' | 'gid'): { host: number; size: number }[] {
  const own = fs.readlinkSync('/proc/self/ns/user');
  const seen = new Set<string>([own]);
  const out: { host: number; size: number }[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ns = fs.readlinkSync(`/proc/${d}/ns/user`);
      if (seen.has(ns)) continue;
      seen.add(ns);
      for (const line of fs.readFileSync(`/proc/${d}/${kind}_map`, 'utf8').split('\n')) {
        const f = line.trim().split(/\s+/);
        if (f.length === 3) out.push({ host: Number(f[1]), size: Number(f[2]) });
      }
    } catch {
      /* gone, or a kernel thread */
    }
  }
  return out;
}

function intersects(a: { host: number; size: number }, b: { host: number; size: number }): boolean {
  return a.host < b.host + b.size && b.host < a.host + a.size;
}

/** Candidate blocks of `size` ids from the pool's ranges, in order. */
function* blocks(pool: readonly IdRange[], size: number): Generator<number> {
  for (const r of pool) for (let h = r.host; h + size <= r.host + r.size; h += Math.max(size, BLOCK)) yield h;
}

export interface Allocation {
  maps: IdMaps;
  /** Call once the namespace's maps are written (or the start failed). */
  release(): void;
}

/**
 * The id maps a request stands for. For `auto`, a block no live user namespace maps, reserved
 * under a host-wide lock until `release()`: the caller writes the new namespace's maps first.
 */
export function allocateIds(req: UsernsRequest): Allocation {
  const none = (): void => undefined;
  if (req.kind === 'map') {
    checkRanges(req.uid, '--uidmap');
    checkRanges(req.gid, '--gidmap');
    return { maps: { uid: req.uid, gid: req.gid }, release: none };
  }
  if (req.kind === 'subid') {
    const uid = subidRanges('/etc/subuid', req.user, hostId('/etc/passwd', req.user));
    const gid = subidRanges('/etc/subgid', req.group, hostId('/etc/group', req.group));
    if (uid.length === 0) throw new RunError(`--subuidname ${req.user}: /etc/subuid has no range for '${req.user}'`);
    if (gid.length === 0) throw new RunError(`--subgidname ${req.group}: /etc/subgid has no range for '${req.group}'`);
    checkRanges(uid, `/etc/subuid for '${req.user}'`);
    checkRanges(gid, `/etc/subgid for '${req.group}'`);
    return { maps: { uid, gid }, release: none };
  }
  const poolUid = subidRanges('/etc/subuid', POOL_USER);
  const poolGid = subidRanges('/etc/subgid', POOL_USER);
  const fromFiles = poolUid.length > 0 && poolGid.length > 0;
  // Host-wide (not the engine's directory, which tests move): every launcher of the host
  // allocates from the same ranges.
  const lockDir = process.getuid?.() === 0 ? '/run/layerfs' : stateDir();
  fs.mkdirSync(lockDir, { recursive: true, mode: 0o700 });
  const fd = fs.openSync(path.join(lockDir, 'userns.lock'), fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  let held = true;
  const release = (): void => {
    if (held) fs.closeSync(fd); // closing drops the flock
    held = false;
  };
  try {
    sys.flock(fd, sys.LOCK_EX);
    const usedU = rangesInUse('uid');
    const usedG = rangesInUse('gid');
    const free = (used: { host: number; size: number }[], host: number): boolean => !used.some((u) => intersects(u, { host, size: req.size }));
    const uidPool = fromFiles ? poolUid : [DEFAULT_POOL];
    const gidPool = fromFiles ? poolGid : [DEFAULT_POOL];
    const gidBlocks = [...blocks(gidPool, req.size)];
    for (const [i, u] of [...blocks(uidPool, req.size)].entries()) {
      const g = gidBlocks[i];
      if (g === undefined) break;
      if (free(usedU, u) && free(usedG, g)) {
        return { maps: { uid: [{ container: 0, host: u, size: req.size }], gid: [{ container: 0, host: g, size: req.size }] }, release };
      }
    }
    throw new RunError(`--userns=auto: no free block of ${req.size} ids left in ${fromFiles ? `the /etc/subuid and /etc/subgid ranges of '${POOL_USER}'` : 'the default pool'}`);
  } catch (e) {
    release();
    throw e;
  }
}

/** /proc/PID/uid_map text. */
export function mapText(ranges: readonly IdRange[]): string {
  return ranges.map((r) => `${r.container} ${r.host} ${r.size}\n`).join('');
}

/** The mount's uidmapping=/gidmapping= value (fuse-overlayfs syntax: CTR:HOST:N[:CTR:HOST:N…]). */
export function mappingOption(ranges: readonly IdRange[]): string {
  return ranges.map((r) => `${r.container}:${r.host}:${r.size}`).join(':');
}
