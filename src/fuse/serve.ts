import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import type { MountConfig } from '../config.ts';
import { log } from '../log.ts';
import { mountAt } from '../mountinfo.ts';
import * as sys from '../sys/index.ts';
import { UnionFs } from '../union/unionfs.ts';
import { mountNative } from './native-adapter.ts';
import { stateFile, type MountState } from '../state.ts';

/** How often the daemon checks that its mount still exists (it exits once unmounted). */
const WATCH_MS = 500;

/**
 * The daemon body: build the union, mount it, serve until the mount goes away (umount,
 * fusermount3 -u, or a signal), then exit. `ready` is called once the kernel has started
 * talking to us; a mount failure rejects before anything is served.
 */
export async function serve(cfg: MountConfig, ready: () => void): Promise<void> {
  const fs = new UnionFs({
    lowerdirs: cfg.lowerdirs,
    upperdir: cfg.upperdir,
    workdir: cfg.workdir,
    readonly: cfg.readonly,
    userxattr: cfg.userxattr,
    volatile: cfg.volatile,
  });
  if (!fs.readonly) fs.prepareWorkdir();
  const extra: string[] = [];
  extra.push(cfg.nodev ? 'nodev' : 'dev', cfg.nosuid ? 'nosuid' : 'suid');
  if (cfg.noexec) extra.push('noexec');
  if (cfg.noatime) extra.push('noatime');
  const isRoot = process.getuid?.() === 0;
  await mountNative(fs, {
    mountpoint: cfg.mountpoint,
    fsname: cfg.fsname,
    readonly: fs.readonly,
    allowOther: isRoot,
    cacheTimeout: cfg.timeoutSeconds ?? 1,
    extra,
    debug: cfg.debug,
  });
  const state: MountState = {
    pid: process.pid,
    mountpoint: cfg.mountpoint,
    lowerdirs: cfg.lowerdirs,
    upperdir: cfg.upperdir,
    workdir: cfg.workdir,
    started: new Date().toISOString(),
  };
  const sf = stateFile(cfg.mountpoint);
  try {
    mkdirSync(sf.dir, { recursive: true, mode: 0o700 });
    writeFileSync(sf.file, JSON.stringify(state) + '\n');
  } catch (e) {
    log(`cannot write state file ${sf.file}: ${e}`);
  }
  log(`mounted ${cfg.mountpoint}: lowers ${cfg.lowerdirs.join(':')}${cfg.upperdir ? ` upper ${cfg.upperdir}` : ' (read-only)'}`);
  ready();

  let leaving = false;
  const leave = (why: string, code: number) => {
    if (leaving) return;
    leaving = true;
    log(`exiting: ${why}`);
    try {
      if (mountAt(cfg.mountpoint)?.fstype === 'fuse.layerfs') sys.umount2(cfg.mountpoint, sys.MNT_DETACH);
    } catch (e) {
      log(`unmount on exit failed: ${e}`);
    }
    try {
      rmSync(sf.file, { force: true });
    } catch {
      // best effort
    }
    process.exit(code);
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => leave(sig, 0));
  // The kernel does not tell a libfuse 2 high-level filesystem that it was unmounted from
  // outside; watch the mount table (reading it never touches our own mount).
  setInterval(() => {
    const m = mountAt(cfg.mountpoint);
    if (!m || m.fstype !== 'fuse.layerfs') leave('unmounted', 0);
  }, WATCH_MS);
}
