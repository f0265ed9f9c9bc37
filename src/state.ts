import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** What a running daemon records about its mount, so `umount` (and later tools) can find it. */
export interface MountState {
  pid: number;
  mountpoint: string;
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  started: string;
}

export function stateDir(): string {
  if (process.getuid?.() === 0) return '/run/layerfs';
  return `${process.env.XDG_RUNTIME_DIR || `/tmp/layerfs-${process.getuid?.() ?? 'user'}`}/layerfs`;
}

export function stateFile(mountpoint: string): { dir: string; file: string } {
  const dir = stateDir();
  const id = createHash('sha256').update(mountpoint).digest('hex').slice(0, 16);
  return { dir, file: `${dir}/${id}.json` };
}

export function readState(mountpoint: string): MountState | null {
  try {
    return JSON.parse(readFileSync(stateFile(mountpoint).file, 'utf8')) as MountState;
  } catch {
    return null;
  }
}
