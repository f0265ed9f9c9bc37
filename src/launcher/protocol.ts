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

/** --tmpfs PATH[:OPTIONS]: a tmpfs mounted at `target`. */
export interface Stage2Tmpfs {
  /** Absolute container path (no '..', not '/'). */
  target: string;
  readonly: boolean;
  noexec: boolean;
  nosuid: boolean;
  nodev: boolean;
  /** tmpfs's own options (size=, mode=, uid=, gid=), comma-separated; '' for none. */
  data: string;
}

/** --device HOST[:CONTAINER[:PERMS]]: the host's node, made (or bound) at `target`. */
export interface Stage2Device {
  /** Real path of the node on the host (a character or block device). */
  host: string;
  /** Absolute container path below /dev. */
  target: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  /** Permission bits, owner and group of the host's node (the container's copy gets them). */
  mode: number;
  uid: number;
  gid: number;
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
  /**
   * The groups CMD gets (setgroups): the primary gid, then the groups the container's
   * /etc/group lists the user in, as docker sets them. Not set without root (setgroups is denied
   * in the user namespace unshare --map-root-user makes).
   */
  groups: number[];
  /** HOME when neither the image nor -e/--env-file sets it: the user's passwd entry's, else '/'. */
  home: string;
  tmpfs: Stage2Tmpfs[];
  devices: Stage2Device[];
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
