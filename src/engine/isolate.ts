// Mounts served apart, each on a worker thread of its own. The engine serves mounts on its main
// thread, where the union's file calls are synchronous (they are the fast path): a call into a
// layer on a filesystem that can hang (another FUSE mount whose server stopped, an NFS server
// gone away) would block that thread, and with it every other mount and the API. A mount with
// any layer on such a filesystem therefore gets its own thread (and ~10 MiB of memory): when it
// hangs, it hangs alone. Local filesystems do not hang in that sense and share the main thread.
//
// The worker runs the same bundle as the CLI (src/cli.ts starts this file's runMountWorker when
// it finds itself on a mount worker thread). Without a bundle (LAYERFS_NO_BUNDLE, under tsx)
// there is no file a worker can start, and such mounts are served on the main thread (logged).

import { statfsSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, parentPort, workerData } from 'node:worker_threads';
import type { MountConfig } from '../config.ts';
import { log, setLogTarget } from '../log.ts';
import type { ServedMount } from './daemon.ts';
import type { MountState } from './state.ts';

/** f_type of the filesystems whose calls can block indefinitely on something outside the host. */
const CAN_HANG: ReadonlyMap<number, string> = new Map([
  [0x65735546, 'fuse'],
  [0x6969, 'nfs'],
  [0xff534d42, 'cifs'],
  [0xfe534d42, 'smb2'],
  [0x517b, 'smb'],
  [0x01021997, '9p'],
  [0x00c36400, 'ceph'],
  [0x5346414f, 'afs'],
  [0x6b414653, 'afs'],
  [0x73757245, 'coda'],
  [0x013111a8, 'ibrix'],
  [0x47504653, 'gpfs'],
  [0x0bd00bd0, 'lustre'],
]);

/** Why `cfg` is served on a thread of its own (the first layer on such a filesystem), or null. */
export function needsOwnThread(cfg: MountConfig): string | null {
  // For measuring the two ways against each other: every mount on a thread, or none.
  if (process.env.LAYERFS_ENGINE_THREADS === 'all') return 'LAYERFS_ENGINE_THREADS=all';
  if (process.env.LAYERFS_ENGINE_THREADS === 'none') return null;
  for (const dir of [...cfg.lowerdirs, ...(cfg.upperdir ? [cfg.upperdir] : [])]) {
    let type: number;
    try {
      type = statfsSync(dir).type;
    } catch {
      continue; // validated a moment ago; the mount itself reports what is wrong
    }
    const name = CAN_HANG.get(type >>> 0);
    if (name) return `${dir} is on ${name}`;
  }
  return null;
}

/** The file a worker can start: the CLI bundle this code runs from, or null under tsx. */
function bundleFile(): string | null {
  const here = fileURLToPath(import.meta.url);
  return /\/node_modules\/\.cache\/layerfs\/cli-[0-9a-f]{16}\.mjs$/.test(here) ? here : null;
}

/** Which build of the code runs: the bundle's name (its key hashes the sources), or 'src' under tsx. */
export function codeId(): string {
  const file = bundleFile();
  return file ? basename(file) : 'src';
}

type FromWorker =
  | { kind: 'ready'; state: MountState }
  | { kind: 'error'; message: string }
  | { kind: 'ended'; why: string; code: number }
  | { kind: 'stopped' };

/** Serve `cfg` on a worker thread; null when no worker can be started (no bundle). */
export async function startInWorker(cfg: MountConfig, root: string, logTarget: string | null): Promise<ServedMount | null> {
  const file = bundleFile();
  if (!file) return null;
  // The bundle learns the checkout's root from a global (src/root.ts), set before it loads.
  const boot = `globalThis.LAYERFS_ROOT = ${JSON.stringify(root)}; import(${JSON.stringify('file://' + file)});`;
  const w = new Worker(boot, { eval: true, workerData: { layerfsWorker: 'mount', cfg, logTarget }, stdout: false, stderr: false });
  const listeners = new Set<(m: FromWorker) => void>();
  w.on('message', (m: FromWorker) => {
    for (const l of listeners) l(m);
  });
  const exited = new Promise<number>((resolve) => w.once('exit', resolve));
  const next = (kinds: FromWorker['kind'][]): Promise<FromWorker | null> =>
    new Promise((resolve) => {
      const l = (m: FromWorker): void => {
        if (!kinds.includes(m.kind)) return;
        listeners.delete(l);
        resolve(m);
      };
      listeners.add(l);
      void exited.then(() => {
        listeners.delete(l);
        resolve(null);
      });
    });
  w.on('error', (e) => log(`${cfg.mountpoint}: its worker failed: ${e.message}`));
  const first = await next(['ready', 'error']);
  if (!first || first.kind !== 'ready') {
    await w.terminate();
    throw new Error(first?.kind === 'error' ? first.message : 'its worker thread exited before mounting');
  }
  const ended = next(['ended']).then(async (m) => {
    await w.terminate();
    return m && m.kind === 'ended' ? { why: m.why, code: m.code } : { why: 'its worker thread exited', code: 1 };
  });
  return {
    state: first.state,
    ended,
    stop: async () => {
      w.postMessage({ kind: 'stop' });
      await ended;
    },
  };
}

/** The worker side: serve the mount workerData names, report to the engine, stop when told. */
export async function runMountWorker(): Promise<void> {
  const port = parentPort!;
  const { cfg, logTarget } = workerData as { cfg: MountConfig; logTarget: string | null };
  setLogTarget(logTarget);
  const { startServing } = await import('./daemon.ts');
  let m: ServedMount;
  try {
    m = await startServing(cfg);
  } catch (e) {
    port.postMessage({ kind: 'error', message: (e as Error).message.split('\n')[0] });
    return;
  }
  port.on('message', (msg: { kind: string }) => {
    if (msg.kind === 'stop') void m.stop();
  });
  port.postMessage({ kind: 'ready', state: m.state });
  const r = await m.ended;
  port.postMessage({ kind: 'ended', why: r.why, code: r.code });
}

export function isMountWorker(): boolean {
  return !!parentPort && (workerData as { layerfsWorker?: string } | null)?.layerfsWorker === 'mount';
}
