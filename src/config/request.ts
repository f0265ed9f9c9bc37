// What a mount asks for (MountRequest, from the command line) and what it gets once checked
// against the filesystem (MountConfig), the defaults, and the one error type of option parsing
// and validation.

import * as os from 'node:os';
import { oneLine } from './escape.ts';

/** A user-facing configuration error; the message is one line starting with "layerfs: ". */
export class ConfigError extends Error {
  constructor(message: string) {
    super(oneLine(message));
    this.name = 'ConfigError';
  }
}

export interface MountRequest {
  /** Lower layers as given (unescaped), top-most first. */
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  /** As given on the command line. */
  mountpoint: string;
  /** SOURCE of the mount.fuse form, or the value of fsname= (fsname= wins). */
  source?: string;
  /** -f / --foreground */
  foreground: boolean;
  /** -d / --debug / -o debug */
  debug: boolean;
  /** -o ro */
  readonly: boolean;
  /** -o volatile: skip fsync on the upper layer, as the kernel does. */
  volatile: boolean;
  /** -o userxattr: use user.overlay.* instead of trusted.overlay.* */
  userxattr: boolean;
  /**
   * redirect_dir=. Defaults to 'off', which is what the kernel uses when the
   * option is absent (on kernels built without OVERLAY_FS_REDIRECT_DIR); the
   * kernel treats 'off' as 'follow' when redirect_always_follow is enabled
   * (its default) and as 'nofollow' otherwise.
   */
  redirectDir: 'off' | 'follow' | 'nofollow';
  noatime: boolean;
  nodev: boolean;
  nosuid: boolean;
  noexec: boolean;
  /** timeout=N, a non-negative integer number of seconds (0: the kernel caches nothing). */
  timeoutSeconds?: number;
  /**
   * passthrough=on|off: the kernel reads and writes upper files itself (FUSE passthrough,
   * Linux >= 6.9; backend=lowlevel). Default on; off sends every read and write to the daemon.
   */
  passthrough: boolean;
  /**
   * spin=N: microseconds the daemon keeps reading /dev/fuse after answering, before it sleeps
   * (0..10000, default 50). A client's next request then finds it awake instead of paying a
   * wake-up (tens of microseconds on a VM); the price is up to N µs of CPU after each burst.
   */
  spinUs: number;
  /**
   * backend=: the FUSE binding the daemon serves through. 'lowlevel' (default): layerfs' own
   * libfuse3 low-level addon; 'fuse-native': the fuse-native package on libfuse 2 (known
   * defects, README).
   */
  backend: Backend;
  /** Options that were accepted but have no effect, in the order given. */
  ignored: string[];
  /** uidmapping= / gidmapping= value, format-checked (applied by src/fuse/idmap.ts). */
  uidmapping?: string;
  gidmapping?: string;
  /** trace=FILE (or --trace FILE): append the union's decisions to FILE as JSON lines. */
  trace?: string;
  /**
   * squash_to_uid= / squash_to_gid= (squash_to_root: both 0): every object is shown as owned
   * by this id; what is stored is not changed (podman passes these for a one-id --uidmap).
   */
  squashUid?: number;
  squashGid?: number;
  /**
   * xattr_permissions=2: owners and permission bits are shown from the
   * `user.containers.override_stat` xattr where an object has one (containers/storage's
   * force_mask stores the real ones there and masks the files). 0 and 1: nothing.
   */
  xattrPermissions?: 0 | 1 | 2;
}

export const BACKENDS = ['lowlevel', 'fuse-native'] as const;
export type Backend = (typeof BACKENDS)[number];

export interface MountConfig extends MountRequest {
  /** Absolute, fs.realpath'ed. */
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  mountpoint: string;
  /** True when there is no upperdir, or -o ro was given. */
  readonly: boolean;
  /** source ?? 'layerfs' */
  fsname: string;
}

/**
 * spin=: the default, in microseconds (see MountRequest.spinUs). On one CPU there is no
 * other CPU to stay awake for: spinning would only keep the client waiting, so it is off.
 */
export const DEFAULT_SPIN_US = os.availableParallelism() > 1 ? 50 : 0;

/** A request with every option at its default (fresh arrays each time). */
export function defaultMountRequest(): MountRequest {
  return {
    lowerdirs: [],
    mountpoint: '',
    foreground: false,
    debug: false,
    readonly: false,
    volatile: false,
    userxattr: false,
    redirectDir: 'off',
    noatime: false,
    nodev: false,
    nosuid: false,
    noexec: false,
    passthrough: true,
    spinUs: DEFAULT_SPIN_US,
    backend: 'lowlevel',
    ignored: [],
  };
}

