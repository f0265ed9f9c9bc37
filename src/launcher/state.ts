// What a running `layerfs run` has created, written down BEFORE each thing is created, so that
// whatever a launcher killed with SIGKILL left behind (a mount, cgroups, a throw-away upper) can
// be reaped by the next `layerfs run` or by `layerfs run --cleanup`.
//
//   <run dir>/<id>/state.json   this record
//   <run dir>/<id>/root         the mount point of the container's root
//
// The run dir is $LAYERFS_RUN_DIR, else <layerfs state dir>/run (/run/layerfs/run as root).

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { unmount } from '../engine/mount.ts';
import { mountAt } from '../mountinfo.ts';
import { stateDir } from '../engine/state.ts';
import * as sys from '../sys/index.ts';
import { removeCgroups } from './cgroup.ts';

export interface RunState {
  id: string;
  launcherPid: number;
  /** Start time of the launcher (field 22 of /proc/PID/stat), against pid reuse. */
  launcherStart: string;
  /** The mount point of the root, when the launcher mounted it. */
  mountpoint?: string;
  cgroupDirs: string[];
  /** Parent of the throw-away upper and work dirs (removed unless keep). */
  scratch?: string;
  keep: boolean;
}

export function runDir(): string {
  return process.env.LAYERFS_RUN_DIR || path.join(stateDir(), 'run');
}

/** The fields of /proc/PID/stat after the command name (state first), or null when it is gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Its start time (field 22), which tells a process from a later one with the same pid. */
export function processStart(pid: number): string | null {
  return statFields(pid)?.[19] ?? null;
}

/** Its parent's pid, or null when it is gone. */
export function parentPid(pid: number): number | null {
  const f = statFields(pid);
  return f ? Number(f[1]) : null;
}

export class RunRecord {
  readonly dir: string;
  readonly file: string;
  readonly state: RunState;

  constructor(id: string, keep: boolean) {
    this.dir = path.join(runDir(), id);
    this.file = path.join(this.dir, 'state.json');
    this.state = { id, launcherPid: process.pid, launcherStart: processStart(process.pid) ?? '', cgroupDirs: [], keep };
    fs.mkdirSync(runDir(), { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.dir, { mode: 0o700 });
    this.save();
  }

  save(): void {
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(this.state, null, 2) + '\n');
    fs.renameSync(tmp, this.file);
  }

  update(f: (s: RunState) => void): void {
    f(this.state);
    this.save();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Undo everything a run recorded: kill and remove its cgroups, unmount its root (lazily when
 * still busy), delete the throw-away upper unless kept, and the record itself. Returns the
 * problems met (empty when all is clean).
 */
export async function cleanupRun(dir: string, state: RunState): Promise<string[]> {
  const problems: string[] = [];
  for (const d of removeCgroups(state.cgroupDirs)) problems.push(`cgroup ${d} is still busy`);
  if (state.mountpoint) {
    const mnt = state.mountpoint;
    for (let i = 0; i < 50 && mountAt(mnt); i++) {
      try {
        await unmount(mnt);
      } catch (e) {
        if (i === 49) problems.push((e as Error).message);
        await sleep(100);
      }
    }
    if (mountAt(mnt) && process.getuid?.() !== 0) {
      // Without root only fusermount3 (setuid) may unmount a FUSE mount.
      for (const args of [['-u', mnt], ['-uz', mnt]]) {
        if (!mountAt(mnt)) break;
        try {
          execFileSync('fusermount3', args, { stdio: 'ignore' });
        } catch {
          /* next */
        }
      }
      if (!mountAt(mnt)) problems.length = 0;
    }
    if (mountAt(mnt)) {
      try {
        await unmount(mnt, { lazy: true });
      } catch {
        try {
          sys.umount2(mnt, sys.MNT_DETACH);
        } catch (e) {
          problems.push(`cannot unmount ${mnt}: ${(e as Error).message}`);
        }
      }
    }
  }
  if (state.scratch && !state.keep) {
    try {
      fs.rmSync(state.scratch, { recursive: true, force: true });
    } catch (e) {
      problems.push(`cannot remove ${state.scratch}: ${(e as Error).message}`);
    }
  }
  if (!(state.mountpoint && mountAt(state.mountpoint))) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      problems.push(`cannot remove ${dir}: ${(e as Error).message}`);
    }
  }
  return problems;
}

/** Reap the runs whose launcher is gone. Returns how many were reaped, and the problems met. */
export async function reapDead(): Promise<{ reaped: string[]; problems: string[] }> {
  const reaped: string[] = [];
  const problems: string[] = [];
  let ids: string[];
  try {
    ids = fs.readdirSync(runDir());
  } catch {
    return { reaped, problems };
  }
  for (const id of ids) {
    const dir = path.join(runDir(), id);
    let state: RunState;
    try {
      state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as RunState;
    } catch {
      // A record being written right now, or a stray directory: leave young ones alone.
      try {
        if (Date.now() - fs.statSync(dir).mtimeMs > 60_000 && !mountAt(path.join(dir, 'root'))) fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        /* raced */
      }
      continue;
    }
    if (processStart(state.launcherPid) === state.launcherStart) continue; // still running
    problems.push(...(await cleanupRun(dir, state)));
    reaped.push(id);
  }
  return { reaped, problems };
}
