// The engine's mounts: every mount it serves, by mount point. A mount ends however it is ended
// (the API, `layerfs umount`, fusermount3 -u, umount(8), the engine stopping) and the table
// forgets it then. The state files (./state.ts) double as the engine's records: after the
// engine died (kill -9 takes its mounts with it), the next engine finds the records of mounts
// whose server is gone and detaches what is left of them (recoverDead).

import { readdirSync, readFileSync, rmSync } from 'node:fs';
import type { MountConfig } from '../config.ts';
import { log, logTarget } from '../log.ts';
import { ROOT } from '../root.ts';
import { mountAt } from '../mountinfo.ts';
import * as sys from '../sys/index.ts';
import { startServing, type ServedMount } from './daemon.ts';
import { needsOwnThread, startInWorker } from './isolate.ts';
import { processAlive, unmount, UserError } from './mount.ts';
import { stateDir, stateFile, type MountState } from './state.ts';

export interface MountInfo extends MountState {
  /** The state file's id: a stable name of the mount point (sha-256 prefix). */
  id: string;
}

function idOf(mountpoint: string): string {
  return stateFile(mountpoint).file.replace(/^.*\/|\.json$/g, '');
}

export class MountTable {
  private readonly served = new Map<string, ServedMount>();
  /** Mount points being mounted right now (a second request for one is refused). */
  private readonly starting = new Set<string>();

  get size(): number {
    return this.served.size;
  }

  list(): MountInfo[] {
    return [...this.served.values()].map((m) => ({ id: idOf(m.state.mountpoint), ...m.state }));
  }

  get(mountpoint: string): MountInfo | undefined {
    const m = this.served.get(mountpoint);
    return m && { id: idOf(mountpoint), ...m.state };
  }

  byId(id: string): MountInfo | undefined {
    return this.list().find((m) => m.id === id);
  }

  /** Mount `cfg` (validated) and serve it; resolves once it serves. */
  async mount(cfg: MountConfig): Promise<MountInfo> {
    const mp = cfg.mountpoint;
    if (this.served.has(mp) || this.starting.has(mp)) throw new UserError(`layerfs: ${mp} is already a layerfs mount of this engine`);
    this.starting.add(mp);
    let m: ServedMount;
    try {
      const why = needsOwnThread(cfg);
      const own = why ? await startInWorker(cfg, ROOT, logTarget()) : null;
      if (why && !own) log(`${mp}: ${why}, but without the bundle no worker can serve it: served on the main thread`);
      else if (why) log(`${mp}: served on a thread of its own (${why})`);
      m = own ?? (await startServing(cfg));
    } catch (e) {
      throw new UserError(`layerfs: cannot mount ${mp}: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      this.starting.delete(mp);
    }
    this.served.set(mp, m);
    void m.ended.then(() => {
      if (this.served.get(mp) === m) this.served.delete(mp);
    });
    return { id: idOf(mp), ...m.state };
  }

  /**
   * Unmount `mountpoint` as `layerfs umount` does: a busy mount is refused unless `lazy`; a
   * mount this engine does not serve (a `mount -f` daemon's, a dead one) is unmounted too.
   */
  async unmount(mountpoint: string, lazy = false): Promise<void> {
    const mine = this.served.get(mountpoint);
    await unmount(mountpoint, { lazy, served: mine ? mine.ended.then(() => undefined) : undefined });
  }

  /** Stop serving everything (the engine is stopping): each mount detached. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.served.values()].map((m) => m.stop()));
  }

  /** Mounts in use: some process has a file open in it or its working directory there. */
  busy(): string[] {
    return [...this.served.keys()].filter((mp) => {
      try {
        sys.umount2(mp, sys.MNT_EXPIRE);
        return false; // first MNT_EXPIRE marks it and fails EAGAIN when unused; success: unused and gone
      } catch (e) {
        return (e as { code?: string }).code === 'EBUSY';
      }
    });
  }
}

/**
 * After an engine died: for each state file whose server is gone, detach what is left of its
 * mount (a FUSE mount without its server answers ENOTCONN) and drop the record. Returns the
 * mount points cleaned up.
 */
export function recoverDead(): string[] {
  const dir = stateDir();
  const cleaned: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return cleaned;
  }
  for (const n of names) {
    if (!/^[0-9a-f]{16}\.json$/.test(n)) continue;
    let st: MountState;
    try {
      st = JSON.parse(readFileSync(`${dir}/${n}`, 'utf8')) as MountState;
    } catch {
      continue;
    }
    if (typeof st.mountpoint !== 'string' || typeof st.pid !== 'number') continue;
    if (st.pid !== process.pid && processAlive(st.pid)) continue;
    if (mountAt(st.mountpoint)?.fstype === 'fuse.layerfs') {
      try {
        sys.umount2(st.mountpoint, sys.MNT_DETACH);
      } catch (e) {
        log(`cannot detach the dead mount ${st.mountpoint}: ${(e as Error).message}`);
        continue;
      }
    }
    rmSync(`${dir}/${n}`, { force: true });
    if (st.socket) rmSync(st.socket, { force: true });
    cleaned.push(st.mountpoint);
  }
  return cleaned;
}
