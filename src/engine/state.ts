import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { engineDir } from './paths.ts';

/** What a running daemon records about its mount, so `umount` (and later tools) can find it. */
export interface MountState {
  pid: number;
  mountpoint: string;
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  /** -o userxattr: opaque markers are user.overlay.* (for `layerfs explain`). */
  userxattr?: boolean;
  /** -o trace=FILE, when given. */
  trace?: string;
  /** The unix socket `layerfs trace` connects to (absent for daemons before it existed). */
  socket?: string;
  started: string;
}

/** The engine's directory (./paths.ts): state files sit beside its socket. */
export function stateDir(): string {
  return engineDir();
}

/** The daemon's state file, and its trace socket (`layerfs trace`) beside it. */
export function stateFile(mountpoint: string, dir = stateDir()): { dir: string; file: string; socket: string } {
  const id = createHash('sha256').update(mountpoint).digest('hex').slice(0, 16);
  return { dir, file: `${dir}/${id}.json`, socket: `${dir}/${id}.sock` };
}

/** The state file of the mount at `mountpoint` (of the engine of `dir`, by default this user's). */
export function readState(mountpoint: string, dir = stateDir()): MountState | null {
  try {
    return JSON.parse(readFileSync(stateFile(mountpoint, dir).file, 'utf8')) as MountState;
  } catch {
    return null;
  }
}

/** Record a daemon's state (its directory made private to the user on first use). */
export function writeState(state: MountState): void {
  const sf = stateFile(state.mountpoint);
  mkdirSync(sf.dir, { recursive: true, mode: 0o700 });
  writeFileSync(sf.file, JSON.stringify(state) + '\n');
}
