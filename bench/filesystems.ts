// The five filesystems the suite compares, each as a runner that mounts a layer set (with a
// fresh upper and work dir in a slot directory of its own) and unmounts it again:
//
//   raw               a plain directory: a hard-linked copy of the set's flat/ (no union)
//   kernel overlayfs  mount -t overlay
//   fuse-overlayfs    fuse-overlayfs -f (Debian package), started by us: its pid is ours
//   unionfs-fuse      unionfs -f -o cow (Debian package), started by us
//   layerfs           bin/layerfs mount / bin/layerfs umount, whatever FUSE backend it runs;
//                     the daemon's pid comes from its state file (src/state.ts)
//
// Every mount is registered in `live` until it is gone, so that run.ts can unmount whatever is
// left on an error or a signal. All of them use the module/daemon defaults (cache times too).

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readState } from '../src/engine/state.ts';
import { readMountinfo, layerfsBin, unmount as forceUnmount } from '../test/helpers/mounts.ts';
import { memOf, run, runOk, sleep, waitFor, type Mem } from './common.ts';
import type { LayerSet } from './layers.ts';

export const FS_NAMES = ['raw', 'kernel overlayfs', 'fuse-overlayfs', 'unionfs-fuse', 'layerfs'] as const;
export type FsName = (typeof FS_NAMES)[number];

export interface Session {
  fs: FsName;
  /** Where the workloads run: the mount point (or the raw copy). */
  root: string;
  /** The FUSE daemon serving it. */
  pid?: number;
  /** VmRSS / VmHWM of the daemon now (undefined without a daemon). */
  mem(): Mem | undefined;
  unmount(): Promise<void>;
}

export interface Runner {
  name: FsName;
  /** Has a userspace daemon (whose memory is reported). */
  daemon: boolean;
  /** Mount `set` with upper, work and mount point below `slot` (created here). */
  mount(set: LayerSet, slot: string): Promise<Session>;
}

/** Sessions not yet unmounted. */
export const live = new Set<Session>();

function mounted(mnt: string): boolean {
  return readMountinfo().some((m) => m.mountPoint === mnt);
}

interface Dirs {
  upper: string;
  work: string;
  mnt: string;
}

function dirs(slot: string): Dirs {
  const d = { upper: path.join(slot, 'upper'), work: path.join(slot, 'work'), mnt: path.join(slot, 'mnt') };
  for (const p of Object.values(d)) fs.mkdirSync(p, { recursive: true });
  return d;
}

function track(s: Session): Session {
  live.add(s);
  const inner = s.unmount;
  s.unmount = async () => {
    try {
      await inner();
    } finally {
      // Whatever the polite way left behind (a busy or dead mount): the tests' robust unmount.
      if (mounted(s.root)) await forceUnmount(s.root);
      live.delete(s);
    }
  };
  return s;
}

const noMem = (): undefined => undefined;

// ------------------------------------------------------------------------------------------

const raw: Runner = {
  name: 'raw',
  daemon: false,
  async mount(set, slot) {
    // A hard-linked copy: fresh directories (so creations start from the same state every
    // time), the same file inodes as flat/ (which only the raw baseline ever uses).
    fs.mkdirSync(slot, { recursive: true });
    const root = path.join(slot, 'root');
    await runOk('cp', ['-al', set.flat, root]);
    return { fs: 'raw', root, mem: noMem, unmount: async () => {} };
  },
};

const kernel: Runner = {
  name: 'kernel overlayfs',
  daemon: false,
  async mount(set, slot) {
    const d = dirs(slot);
    const opts = `lowerdir=${set.lowers.join(':')},upperdir=${d.upper},workdir=${d.work}`;
    await runOk('mount', ['-t', 'overlay', 'overlay', '-o', opts, d.mnt], { cwd: set.lowerRoot, timeoutMs: 60_000 });
    return track({
      fs: 'kernel overlayfs',
      root: d.mnt,
      mem: noMem,
      unmount: async () => void (await run('umount', [d.mnt], { timeoutMs: 60_000 })),
    });
  },
};

/** A FUSE daemon run in the foreground by us: mounted once the kernel has the mount. */
async function foreground(name: FsName, cmd: string, args: string[], cwd: string, mnt: string): Promise<Session> {
  const child: ChildProcess = spawn(cmd, args, { cwd, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
  let exited = false;
  const exit = new Promise<void>((r) => child.on('close', () => ((exited = true), r())));
  child.on('error', (e) => (err += String(e)));
  const session = track({
    fs: name,
    root: mnt,
    pid: child.pid,
    mem: () => memOf(child.pid),
    unmount: async () => {
      if (mounted(mnt)) await run('umount', [mnt], { timeoutMs: 60_000 });
      // The daemon leaves once the kernel tells it the mount is gone.
      const t = setTimeout(() => child.kill('SIGTERM'), 10_000);
      const k = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exit;
      clearTimeout(t);
      clearTimeout(k);
    },
  });
  try {
    await waitFor(() => exited || mounted(mnt), 60_000, `${name} to mount`);
    if (!mounted(mnt)) throw new Error(`${name} exited without mounting: ${err.trim().split('\n').slice(-3).join(' / ')}`);
    // The kernel answers once the daemon's INIT reply is through.
    await runOk('stat', ['-c', '%i', mnt], { timeoutMs: 60_000 });
  } catch (e) {
    await session.unmount();
    throw e;
  }
  return session;
}

const fuseOverlayfs: Runner = {
  name: 'fuse-overlayfs',
  daemon: true,
  async mount(set, slot) {
    const d = dirs(slot);
    const opts = `lowerdir=${set.lowers.join(':')},upperdir=${d.upper},workdir=${d.work}`;
    return foreground('fuse-overlayfs', 'fuse-overlayfs', ['-f', '-o', opts, d.mnt], set.lowerRoot, d.mnt);
  },
};

const unionfs: Runner = {
  name: 'unionfs-fuse',
  daemon: true,
  async mount(set, slot) {
    const d = dirs(slot);
    const branches = [`${d.upper}=RW`, ...set.lowers.map((l) => `${l}=RO`)].join(':');
    return foreground('unionfs-fuse', 'unionfs', ['-f', '-o', 'cow', branches, d.mnt], set.lowerRoot, d.mnt);
  },
};

/** The FUSE libraries and native addons the layerfs daemons had loaded (which backend served). */
export const layerfsLibraries = new Set<string>();

function fuseLibraries(pid: number | undefined): string[] {
  if (!pid) return [];
  try {
    const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
    const libs = maps.split('\n').map((l) => l.split(/\s+/)[5] ?? '').filter((f) => /\/libfuse[^/]*\.so|\.node$/.test(f));
    return [...new Set(libs.map((f) => path.basename(f)))];
  } catch {
    return [];
  }
}

const layerfs: Runner = {
  name: 'layerfs',
  daemon: true,
  async mount(set, slot) {
    const d = dirs(slot);
    const opts = `lowerdir=${set.lowers.join(':')},upperdir=${d.upper},workdir=${d.work}`;
    // viaFiles: the daemon it leaves behind must not hold our pipes open.
    await runOk(layerfsBin, ['mount', '-o', opts, d.mnt], { cwd: set.lowerRoot, viaFiles: true, timeoutMs: 120_000 });
    const pid = readState(d.mnt)?.pid;
    for (const lib of fuseLibraries(pid)) layerfsLibraries.add(lib);
    return track({
      fs: 'layerfs',
      root: d.mnt,
      pid,
      mem: () => memOf(pid),
      unmount: async () => {
        // `layerfs umount` returns once the engine has let the mount go (the engine serves on).
        await run(layerfsBin, ['umount', d.mnt], { viaFiles: true, timeoutMs: 60_000 });
      },
    });
  },
};

export const RUNNERS: Runner[] = [raw, kernel, fuseOverlayfs, unionfs, layerfs];

/**
 * Unmount every live session, then anything else still mounted at or below dir (deepest
 * first; a crashed daemon's dead mount, say). Errors are logged, not thrown.
 */
export async function forceUnmountAll(dir: string, log: (s: string) => void): Promise<void> {
  for (const s of [...live].reverse()) {
    try {
      await s.unmount();
    } catch (e) {
      log(`unmounting ${s.root}: ${(e as Error).message}`);
    }
  }
  for (const m of mountsBelow(dir)) {
    try {
      await forceUnmount(m);
    } catch (e) {
      log(`unmounting ${m}: ${(e as Error).message}`);
    }
  }
}

/** Mount points at or below dir, deepest (most recently mounted) first. */
export function mountsBelow(dir: string): string[] {
  return readMountinfo()
    .map((m) => m.mountPoint)
    .filter((m) => m === dir || m.startsWith(dir + '/'))
    .reverse();
}
