// Serving one mount: build the union, mount it through a backend (./backends.ts), record the
// state file (./state.ts) and start the trace service (./trace.ts); stop it again. The engine
// (./server.ts) serves many mounts this way in one process (./mounts.ts); `layerfs mount -f`
// serves one in the foreground with serve() below, which owns the process.

import { rmSync } from 'node:fs';
import type { MountConfig } from '../config.ts';
import { IdMap } from '../fuse/idmap.ts';
import { log } from '../log.ts';
import { UnionFs } from '../union/index.ts';
import { serveLowLevel, serveNative, type Served } from './backends.ts';
import { stateFile, writeState, type MountState } from './state.ts';
import { startTraceService } from './trace.ts';

/**
 * How long the kernel may cache entries and attributes (timeout=). Every change made through
 * the mount reaches the kernel's cache (copy-up drops what it changes behind the kernel's back),
 * so this only bounds how long changes made to the layers underneath stay unseen.
 */
const DEFAULT_CACHE_SECONDS = 60;

/** One mount being served. */
export interface ServedMount {
  readonly state: MountState;
  /** Settles once the mount is gone (umount, fusermount3 -u, abort, stop()) and cleaned up. */
  readonly ended: Promise<{ why: string; code: number }>;
  /** Stop serving: the mount is detached (busy or not) and cleaned up; resolves once ended. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Build the union and mount it; resolves once the kernel has started talking to us (a mount
 * failure rejects before anything is served, with nothing left behind). Never exits the process.
 */
export async function startServing(cfg: MountConfig): Promise<ServedMount> {
  const fs = new UnionFs({
    lowerdirs: cfg.lowerdirs,
    upperdir: cfg.upperdir,
    workdir: cfg.workdir,
    readonly: cfg.readonly,
    userxattr: cfg.userxattr,
    volatile: cfg.volatile,
    // A lower changed underneath shows within a second, or at once when the kernel caches nothing.
    lowerRecheckMs: Math.min(1000, (cfg.timeoutSeconds ?? DEFAULT_CACHE_SECONDS) * 1000),
  });
  if (!fs.readonly) fs.prepareWorkdir();
  const extra: string[] = [];
  extra.push(cfg.nodev ? 'nodev' : 'dev', cfg.nosuid ? 'nosuid' : 'suid');
  if (cfg.noexec) extra.push('noexec');
  if (cfg.noatime) extra.push('noatime');
  const opts = {
    mountpoint: cfg.mountpoint,
    fsname: cfg.fsname,
    readonly: fs.readonly,
    allowOther: process.getuid?.() === 0,
    cacheTimeout: cfg.timeoutSeconds ?? DEFAULT_CACHE_SECONDS,
    extra,
    debug: cfg.debug,
    passthrough: cfg.passthrough,
    spinUs: cfg.spinUs,
    idmap: IdMap.fromOptions(cfg),
    overrideStat: cfg.xattrPermissions === 2,
  };
  const sf = stateFile(cfg.mountpoint);
  // The trace file and the socket of `layerfs trace`; events flow only while someone listens.
  const tracer = await startTraceService(fs, {
    mountpoint: cfg.mountpoint,
    file: cfg.trace,
    socketPath: sf.socket,
    onSocketError: (e) => log(`no live trace (cannot listen on ${sf.socket}): ${e.message}`),
  });
  let served: Served;
  try {
    served = cfg.backend === 'fuse-native' ? await serveNative(fs, opts) : await serveLowLevel(fs, opts);
  } catch (e) {
    tracer.close();
    throw e;
  }

  const state: MountState = {
    pid: process.pid,
    mountpoint: cfg.mountpoint,
    lowerdirs: cfg.lowerdirs,
    upperdir: cfg.upperdir,
    workdir: cfg.workdir,
    userxattr: cfg.userxattr,
    ...(cfg.trace ? { trace: cfg.trace } : {}),
    ...(tracer.socket ? { socket: tracer.socket } : {}),
    started: new Date().toISOString(),
  };
  try {
    writeState(state);
  } catch (e) {
    log(`cannot write state file ${sf.file}: ${e}`);
  }
  log(`mounted ${cfg.mountpoint} (${cfg.backend}): lowers ${cfg.lowerdirs.join(':')}${cfg.upperdir ? ` upper ${cfg.upperdir}` : ' (read-only)'}`);

  const cleanup = (): void => {
    try {
      tracer.close();
      rmSync(sf.file, { force: true }); // the socket: tracer.close()
    } catch {
      // best effort
    }
  };
  const ended = served.ended.then((r) => {
    cleanup();
    log(`${cfg.mountpoint}: ${r.why}`);
    return r;
  });
  return {
    state,
    ended,
    stop: async () => {
      try {
        await served.stop();
      } catch (e) {
        log(`${cfg.mountpoint}: unmount failed: ${e}`);
        cleanup();
        return;
      }
      await ended;
    },
  };
}

/**
 * `layerfs mount -f`: serve one mount in this process until it goes away (umount,
 * fusermount3 -u, or a signal), then exit. `ready` is called once the mount serves.
 */
export async function serve(cfg: MountConfig, ready: () => void): Promise<void> {
  const m = await startServing(cfg);
  ready();
  let leaving = false;
  const leave = async (why: string, code: number): Promise<void> => {
    if (leaving) return;
    leaving = true;
    log(`exiting: ${why}`);
    await m.stop();
    process.exit(code);
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => void leave(sig, 0));
  void m.ended.then(({ why, code }) => leave(why, code));
}
