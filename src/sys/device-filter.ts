// The cgroup v2 device controller, for the launcher: an eBPF device program attached to a
// cgroup (generated, loaded and attached by the own addon; there is no koffi fallback).

import { checkInt, fastPath, invalidArg, sysError, type SysError } from './errors.ts';
import { SYS_ADDON_PATH, fullAddon, type PathArg } from './libc.ts';

/** Bits of DevRule.access (the kernel's BPF_DEVCG_ACC_*). */
export const BPF_DEVCG_ACC_MKNOD = 1;
export const BPF_DEVCG_ACC_READ = 2;
export const BPF_DEVCG_ACC_WRITE = 4;

/** The most rules cgroupDeviceFilter takes (the program stays a few hundred instructions). */
export const DEVICE_FILTER_MAX_RULES = 64;

/** One allow rule of a device filter. */
export interface DevRule {
  /** 'c' character, 'b' block, 'a' either. */
  type: 'c' | 'b' | 'a';
  /** -1: any. */
  major: number;
  /** -1: any. */
  minor: number;
  /** BPF_DEVCG_ACC_* bits granted (1..7). */
  access: number;
}

export interface DeviceFilterError extends SysError {
  /** The kernel verifier's message when it refused the program (bpf(BPF_PROG_LOAD)). */
  verifierLog?: string;
}

/**
 * Attach to cgroup v2 directory `dir` an eBPF device program (BPF_PROG_TYPE_CGROUP_DEVICE,
 * attach type BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI) that allows a device open or mknod by the
 * cgroup's tasks only when one of `rules` grants it; everything else fails with EPERM. The
 * program lives as long as the cgroup (or until detached). Needs CAP_SYS_ADMIN (or CAP_BPF and
 * CAP_NET_ADMIN) and the own addon (no koffi fallback). Throws a SysError (`syscall`:
 * 'bpf(BPF_PROG_LOAD)', 'open' or 'bpf(BPF_PROG_ATTACH)'); for a refused program, its
 * `verifierLog` and message carry the verifier's words.
 */
export function cgroupDeviceFilter(dir: PathArg, rules: readonly DevRule[]): void {
  if (!Array.isArray(rules)) throw invalidArg('rules', rules, 'must be an array');
  if (rules.length > DEVICE_FILTER_MAX_RULES) {
    const err = new RangeError(`cgroupDeviceFilter: ${rules.length} device rules, at most ${DEVICE_FILTER_MAX_RULES} are supported`) as RangeError & { code: string };
    err.code = 'ERR_OUT_OF_RANGE';
    throw err;
  }
  const checked = rules.map((r, i): DevRule => {
    if (typeof r !== 'object' || r === null || (r.type !== 'c' && r.type !== 'b' && r.type !== 'a')) {
      throw invalidArg(`rules[${i}]`, r, "must be { type: 'c' | 'b' | 'a', major, minor, access }");
    }
    return {
      type: r.type,
      major: checkInt(`rules[${i}].major`, r.major, -1, 0x7fff_ffff),
      minor: checkInt(`rules[${i}].minor`, r.minor, -1, 0x7fff_ffff),
      access: checkInt(`rules[${i}].access`, r.access, 1, 7),
    };
  });
  const f = fullAddon();
  if (!f?.cgroupDeviceFilter) {
    throw new Error(`cgroupDeviceFilter: needs the layerfs_sys addon with cgroupDeviceFilter (${SYS_ADDON_PATH}); build it with \`npm run install\``);
  }
  const info: { syscall?: string; log?: string } = {};
  const r = f.cgroupDeviceFilter(fastPath(dir, 'dir'), checked, info);
  if (r === 0) return;
  const err = sysError(-r, info.syscall ?? 'cgroupDeviceFilter', dir) as DeviceFilterError;
  if (info.log !== undefined) {
    err.verifierLog = info.log;
    err.message += `: verifier: ${info.log}`;
  }
  Error.captureStackTrace(err, cgroupDeviceFilter);
  throw err;
}
