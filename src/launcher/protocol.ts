// What the launcher (host side, src/launcher/run.ts) hands to stage 2 (src/launcher/stage2.ts,
// PID 1 inside the new namespaces), and the few lines they exchange.
//
//   fd 3  launcher -> stage 2:  "go"         (root with --userns: read by a `sh` in front of stage 2)
//                                            the uid/gid maps are written: execute stage 2 now,
//                                            as root of the user namespace with all its caps
//                               "pty N"      the pseudo-terminal slave to open (-t), or "nopty M"
//   fd 4  stage 2 -> launcher:  "pty"        asks for a pseudo-terminal (-t)
//                               "exec"       about to execute CMD ("error" may still follow)
//                               "error S M"  stage 2 failed with exit status S and message M
//   fd 5  the launcher's stderr, which becomes CMD's (fd 2 of unshare and stage 2 is a pipe the
//         launcher reads: util-linux 2.38's unshare reports a child killed by SIGKILL only as
//         "sigprocmask unblock failed" and exit status 1, which the launcher maps to 137)

import type { SeccompWire } from './seccomp.ts';

export interface Stage2Volume {
  /** Real path on the host. */
  host: string;
  /** Absolute container path (no '..'). */
  target: string;
  readonly: boolean;
  /** The host path is a directory (else a file: the target becomes a file). */
  dir: boolean;
}

export interface Stage2Config {
  /** Host path of the directory that becomes '/'. */
  root: string;
  readOnly: boolean;
  volumes: Stage2Volume[];
  hostname: string;
  /** 'none': a new network namespace with lo up; 'host': the host's. */
  net: 'none' | 'host';
  /** Running in a user namespace (no mknod, no gid=5 for devpts, sysfs only with own netns). */
  userns: boolean;
  /** The launcher writes the uid/gid maps (root with --userns: an unprivileged host range). */
  requestMap: boolean;
  workdir: string;
  uid: number;
  gid: number;
  /** The complete environment of CMD. */
  env: string[];
  command: string[];
  tty: boolean;
  /** cgroup.procs files to join right before executing CMD. */
  cgroupProcs: string[];
  /** Capabilities CMD keeps (numbers). */
  caps: number[];
  /** --privileged: no masked or read-only kernel files, /sys writable. */
  privileged: boolean;
  /** The compiled seccomp filter (seccomp.ts specToWire), loaded right before execve; null: none. */
  seccomp: SeccompWire | null;
}

export const STAGE2_ENV = 'LAYERFS_STAGE2';
export const CTL_IN_FD = 3;
export const CTL_OUT_FD = 4;
export const STDERR_FD = 5;
