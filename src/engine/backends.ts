import type { LowLevelMountOptions } from '../fuse/ll-adapter.ts';
import { mountAt } from '../mountinfo.ts';
import * as sys from '../sys/index.ts';
import type { UnionFs } from '../union/index.ts';

// The backends a daemon serves a mount through, and how each tells that its mount ended.

/** fuse-native only: how often the daemon checks that its mount still exists. */
const WATCH_MS = 500;

/** A served mount, whichever binding serves it. */
export interface Served {
  /** Resolves (with why) once the kernel ended the session: umount, fusermount3 -u, abort. */
  ended: Promise<{ why: string; code: number }>;
  /** Stop serving and unmount (idempotent). */
  stop(): Promise<void>;
}
/**
 * libfuse3 low-level: the session ends when the kernel ends the connection (reading /dev/fuse
 * fails with ENODEV after any unmount), so the daemon learns of it at once, no polling.
 */
export async function serveLowLevel(fs: UnionFs, opts: LowLevelMountOptions): Promise<Served> {
  const { mountLowLevel } = await import('../fuse/ll-adapter.ts');
  const m = await mountLowLevel(fs, opts);
  return {
    ended: m.exitInfo.then((i) =>
      i.reason === 'error' ? { why: `the FUSE session failed (${i.code})`, code: 1 } : { why: 'unmounted', code: 0 },
    ),
    stop: () => m.unmount(),
  };
}

/**
 * fuse-native (libfuse 2 high-level): it does not tell the filesystem that it was unmounted
 * from outside, so the mount table is watched (reading it never touches our own mount).
 */
export async function serveNative(fs: UnionFs, opts: LowLevelMountOptions): Promise<Served> {
  const { mountNative } = await import('../fuse/fuse-native/adapter.ts');
  await mountNative(fs, opts);
  const mine = () => mountAt(opts.mountpoint)?.fstype === 'fuse.layerfs';
  return {
    ended: new Promise((resolve) => {
      const timer = setInterval(() => {
        if (mine()) return;
        clearInterval(timer);
        resolve({ why: 'unmounted', code: 0 });
      }, WATCH_MS);
    }),
    stop: async () => {
      if (mine()) sys.umount2(opts.mountpoint, sys.MNT_DETACH);
    },
  };
}
