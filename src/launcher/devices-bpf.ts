// The device list on cgroup v2: there is no devices.allow file there, the kernel runs an eBPF
// program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the cgroup on every open and mknod of a
// device node by its tasks. src/sys (native/layerfs_sys.cc) generates, loads and attaches it;
// this turns the launcher's rules into that program's allow-list.

import {
  BPF_DEVCG_ACC_MKNOD,
  BPF_DEVCG_ACC_READ,
  BPF_DEVCG_ACC_WRITE,
  cgroupDeviceFilter,
  DEVICE_FILTER_MAX_RULES,
  type DevRule,
} from '../sys/index.ts';
import { deviceAccess, deviceRuleLine as describe, type DeviceRule } from './security.ts';

const BITS: Readonly<Record<string, number>> = { r: BPF_DEVCG_ACC_READ, w: BPF_DEVCG_ACC_WRITE, m: BPF_DEVCG_ACC_MKNOD };

/** "rwm", "rw", "r", "wm"... (security.ts's DeviceAccess) → BPF_DEVCG_ACC_* bits; undefined if not one. */
function accessBits(access: string): number | undefined {
  if (typeof access !== 'string' || deviceAccess(access) !== access) return undefined;
  return [...access].reduce((bits, c) => bits | BITS[c], 0);
}

/** A device number part: null (any) → -1. */
function part(r: DeviceRule, which: 'major' | 'minor'): number {
  const v = r[which];
  if (v === null) return -1;
  if (!Number.isInteger(v) || v < 0 || v > 0x7fff_ffff) {
    throw new RangeError(`device rule "${describe(r)}": ${which} must be null or an integer 0..2147483647`);
  }
  return v;
}

/** The rules as the program's allow-list (exported for tests). */
export function toDevRules(rules: readonly DeviceRule[]): DevRule[] {
  if (rules.length > DEVICE_FILTER_MAX_RULES) {
    throw new RangeError(`too many device rules: ${rules.length} (the cgroup v2 device filter takes at most ${DEVICE_FILTER_MAX_RULES})`);
  }
  return rules.map((r) => {
    if (r.type !== 'c' && r.type !== 'b') throw new RangeError(`device rule "${describe(r)}": type must be 'c' or 'b'`);
    const access = accessBits(r.access);
    if (access === undefined) throw new RangeError(`device rule "${describe(r)}": access must be a subset of 'rwm', in that order ('rwm', 'rw', 'r', 'm'...)`);
    return { type: r.type, major: part(r, 'major'), minor: part(r, 'minor'), access };
  });
}

/**
 * Let the tasks of cgroup v2 directory `cgroupDir` (and its descendants) open and mknod only
 * the devices `rules` grant; anything else fails with EPERM. Attach before the container's
 * process enters the cgroup. The program stays attached until the cgroup is removed.
 * Throws a SysError from src/sys (with the verifier's message if the kernel refused the program).
 */
export function applyDeviceFilterV2(cgroupDir: string, rules: readonly DeviceRule[]): void {
  cgroupDeviceFilter(cgroupDir, toDevRules(rules));
}
