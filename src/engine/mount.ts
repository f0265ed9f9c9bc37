import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { mountAt } from '../mountinfo.ts';
import { readState, stateFile } from './state.ts';
import * as sys from '../sys/index.ts';

/** A failure a user should see as one line; the CLI exits with `status`. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly status = 1,
  ) {
    super(message);
  }
}

/** Full path: mount.fuse3 runs us with an empty PATH. */
const FUSERMOUNT = '/usr/bin/fusermount3';

/** Resolve a mount point without touching it (a dead FUSE mount answers ENOTCONN). */
export function resolveMountpoint(p: string): string {
  const abs = resolve(p);
  try {
    return resolve(realpathSync(dirname(abs)), basename(abs));
  } catch {
    return abs;
  }
}

/** Whether the process still runs: a zombie (exited, not yet reaped) counts as gone. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie has exited (its files are closed, its writes done) but answers kill(0) until its
  // parent reaps it; a daemon whose parent is init may stay one for seconds (init reaps lazily).
  // The main thread turns zombie before the other threads are done exiting (and they share the
  // open files): alive while any thread is not a zombie.
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      let stat: string;
      try {
        stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      } catch {
        continue; // that thread is gone
      }
      const state = stat[stat.lastIndexOf(')') + 2];
      if (state !== 'Z' && state !== 'X') return true;
    }
    return false;
  } catch {
    return false;
  }
}

/**
 * Unmount a layerfs mount, including one whose daemon died ("Transport endpoint is not
 * connected"), and wait for the daemon to exit (`served`: for this process' session to end) so
 * that the upper is settled when we return.
 */
export async function unmount(mountpoint: string, opts: { lazy?: boolean; served?: Promise<void> } = {}): Promise<void> {
  const mnt = resolveMountpoint(mountpoint);
  const m = mountAt(mnt);
  if (!m) throw new UserError(`layerfs: '${mountpoint}' is not mounted`);
  if (m.fstype !== 'fuse.layerfs') throw new UserError(`layerfs: '${mountpoint}' is not a layerfs mount (it is ${m.fstype})`);
  const st = readState(mnt);
  try {
    sys.umount2(mnt, opts.lazy ? sys.MNT_DETACH : 0);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'EBUSY') throw new UserError(`layerfs: '${mountpoint}' is busy (files are open or a process is inside it; 'layerfs umount -l' detaches it anyway)`);
    if (code !== 'EPERM') throw e;
    // Not root: a mount the caller made through fusermount3 is theirs to unmount with it.
    const r = spawnSync(FUSERMOUNT, [opts.lazy ? '-uz' : '-u', mnt], { encoding: 'utf8' });
    if (r.status !== 0) {
      const why = (r.stderr || r.error?.message || '').trim().split('\n')[0];
      throw new UserError(`layerfs: not allowed to unmount '${mountpoint}'${why ? ` (${why})` : ''}`);
    }
  }
  if (opts.served) {
    // Served by this process (the engine): its session notices the unmount and cleans up.
    await Promise.race([opts.served, new Promise((r) => setTimeout(r, 10_000))]);
  } else if (st?.pid && st.pid !== process.pid) {
    // Its server (an engine, or a mount -f daemon) removes the state file once its session has
    // ended; a server that died cannot.
    const file = stateFile(mnt).file;
    const until = Date.now() + 10_000;
    while (existsSync(file) && processAlive(st.pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  }
  rmSync(stateFile(mnt).file, { force: true });
  rmSync(stateFile(mnt).socket, { force: true }); // a killed daemon leaves it
}
