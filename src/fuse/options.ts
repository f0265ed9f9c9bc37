import type { IdMap } from './idmap.ts';

/** What every backend is mounted with (the fuse-native one takes no more). */
export interface BaseMountOptions {
  mountpoint: string;
  fsname: string;
  readonly: boolean;
  allowOther: boolean;
  /** Seconds the kernel may cache entries (also negative ones) and attributes. */
  cacheTimeout: number;
  /** Extra mount options (nosuid, nodev, noexec, noatime...). */
  extra: string[];
  debug: boolean;
}

/** How the adapter on the low-level binding mounts a UnionFs (./ll-adapter.ts). */
export interface LowLevelMountOptions extends BaseMountOptions {
  /** FUSE_CAP_WRITEBACK_CACHE; off by default. */
  writebackCache?: boolean;
  /**
   * READDIRPLUS: listings that carry each entry's attributes, saving a LOOKUP round trip per
   * name for `ls -l` or `find | xargs stat`, and costing a union lookup per name (an index
   * lookup and the lstat a plain listing makes anyway for d_ino) for listings nobody stats.
   * true (default): every entry whenever the kernel asks for them; 'adaptive': only in a
   * directory whose names were looked up since its previous listing; false: never.
   */
  readdirplus?: boolean | 'adaptive';
  /** How requests reach the JS thread (see lowlevel.ts); default DEFAULT_DISPATCH. */
  dispatch?: 'thread' | 'inline';
  /** Keep the kernel's page cache of files and directory listings across opens (default true). */
  keepCache?: boolean;
  /**
   * FUSE passthrough for files in the upper layer (default true; the kernel must offer it,
   * Linux >= 6.9): the kernel reads and writes them itself, no request per read or write.
   */
  passthrough?: boolean;
  /** Microseconds to keep reading after answering before the daemon sleeps (see lowlevel.ts). */
  spinUs?: number;
  /** Where handler mistakes and EIO causes are reported (default src/log.ts). */
  logger?: (msg: string) => void;
  /**
   * uidmapping=/gidmapping= (./idmap.ts): owners are shown shifted, and the caller's ids (new
   * objects, chown) are shifted back before they reach the layers. Only at the edges, here:
   * the union core sees disk ids only.
   */
  idmap?: IdMap;
  /**
   * xattr_permissions=2: an object's `user.containers.override_stat` xattr, where it has one,
   * gives the owner and permission bits shown (and chmod/chown through the mount update it).
   */
  overrideStat?: boolean;
}
