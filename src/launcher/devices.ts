// --device HOST[:CONTAINER[:PERMS]] on the host side: the node must be a character or block
// device (after following symlinks, as docker does for /dev/disk/by-id/... paths); stage 2 makes
// it at CONTAINER (mknod, or a bind of the host's node in a user namespace) and the device
// cgroup allows exactly that major:minor with PERMS, on top of ALLOWED_DEVICES.

import * as fs from 'node:fs';
import { RunError } from './errors.ts';
import type { DeviceMapping } from './options.ts';
import type { Stage2Device } from './protocol.ts';
import type { DeviceRule } from './security.ts';

/** Major and minor of a dev_t (glibc's gnu_dev_major / gnu_dev_minor). */
export function majorMinor(rdev: bigint): { major: number; minor: number } {
  return {
    major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn & 0xffff_ffffn)),
    minor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn & 0xffff_ffffn)),
  };
}

/** Check each --device on the host: what stage 2 makes, and the device cgroup rules. */
export function checkDevices(devices: readonly DeviceMapping[]): { devices: Stage2Device[]; rules: DeviceRule[] } {
  const out: Stage2Device[] = [];
  const rules: DeviceRule[] = [];
  for (const d of devices) {
    let host: string;
    let st: fs.BigIntStats;
    try {
      host = fs.realpathSync(d.host);
      st = fs.statSync(host, { bigint: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new RunError(`--device '${d.host}': ${code === 'ENOENT' ? 'no such file on the host' : (code ?? (e as Error).message)}`);
    }
    if (!st.isCharacterDevice() && !st.isBlockDevice()) throw new RunError(`--device '${d.host}': not a device node (only character and block devices can be passed)`);
    const type = st.isCharacterDevice() ? 'c' : 'b';
    const { major, minor } = majorMinor(st.rdev);
    out.push({ host, target: d.target, type, major, minor, mode: Number(st.mode & 0o777n), uid: Number(st.uid), gid: Number(st.gid) });
    rules.push({ type, major, minor, access: d.access });
  }
  return { devices: out, rules };
}
