// The differential engine's vocabulary: the operations a scenario runs and the scenario itself
// (re-exported by engine.ts, which runs them).

import { octalMode } from '../helpers/snapshot.ts';
import type { LayerSet, Tree } from './layers.ts';

// ---------------------------------------------------------------------------
// operations

export type Op =
  | { op: 'writeFile'; path: string; content: string; mode?: number }
  | { op: 'appendFile'; path: string; content: string }
  /** pwrite() into an existing file, without O_TRUNC / O_CREAT. */
  | { op: 'writeAt'; path: string; offset: number; content: string }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'readFile'; path: string }
  | { op: 'readdir'; path: string }
  /** `times: true` adds mtime (whole seconds) to the result — for checking utimes. */
  | { op: 'stat' | 'lstat'; path: string; times?: boolean }
  | { op: 'mkdir'; path: string; mode?: number }
  | { op: 'rmdir'; path: string }
  | { op: 'unlink'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'link'; from: string; to: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'chown'; path: string; uid: number; gid: number }
  /** Seconds since the epoch. */
  | { op: 'utimes'; path: string; atime: number; mtime: number }
  | { op: 'mkfifo'; path: string; mode?: number }
  | { op: 'setxattr'; path: string; name: string; value: string }
  | { op: 'getxattr'; path: string; name: string }
  | { op: 'removexattr'; path: string; name: string }
  /** Lists user.* names only. */
  | { op: 'listxattr'; path: string }
  /** `rm -rf`. */
  | { op: 'rmrf'; path: string }
  /** `mv` (exercises mv's copy+delete fallback on EXDEV). */
  | { op: 'mv'; from: string; to: string }
  /** `cp -a`; `from` is inside the mount, or with fromOutside in the scenario's `outside` tree. */
  | { op: 'cpa'; from: string; to: string; fromOutside?: boolean }
  /** renameat2(2) with RENAME_NOREPLACE or RENAME_EXCHANGE. */
  | { op: 'rename2'; from: string; to: string; flags: 'noreplace' | 'exchange' }
  /** mknod(2) of a character or block device (needs root). */
  | { op: 'mknod'; path: string; kind: 'chr' | 'blk'; major: number; minor: number; mode?: number }
  /** lchown(2): the symlink itself. */
  | { op: 'lchown'; path: string; uid: number; gid: number }
  /** pread() of `length` bytes at `offset`. */
  | { op: 'readAt'; path: string; offset: number; length: number }
  /** Size and sha256 of a file's content, read in pieces (works for files of any size). */
  | { op: 'checksum'; path: string }
  /**
   * Allocated size (st_blocks × 512) of a file: recorded in RunOutput.notes, NOT compared —
   * the allocation of holes is the underlying filesystem's business. The result is 'ok'
   * (or the errno of the stat).
   */
  | { op: 'allocated'; path: string }
  /** `lsattr -d`: the inode flags, as lsattr's letters (the result is 'ok: <letters>'). */
  | { op: 'lsattr'; path: string }
  /** `chattr <mode>`: mode as chattr takes it ('+i', '-a', '=A'). */
  | { op: 'chattr'; path: string; mode: string };

/** Short constructors for scenario lists. */
export const op = {
  writeFile: (p: string, content: string, mode?: number): Op => ({ op: 'writeFile', path: p, content, mode }),
  appendFile: (p: string, content: string): Op => ({ op: 'appendFile', path: p, content }),
  writeAt: (p: string, offset: number, content: string): Op => ({ op: 'writeAt', path: p, offset, content }),
  truncate: (p: string, size: number): Op => ({ op: 'truncate', path: p, size }),
  readFile: (p: string): Op => ({ op: 'readFile', path: p }),
  readdir: (p: string): Op => ({ op: 'readdir', path: p }),
  stat: (p: string, times = false): Op => ({ op: 'stat', path: p, times }),
  lstat: (p: string, times = false): Op => ({ op: 'lstat', path: p, times }),
  mkdir: (p: string, mode?: number): Op => ({ op: 'mkdir', path: p, mode }),
  rmdir: (p: string): Op => ({ op: 'rmdir', path: p }),
  unlink: (p: string): Op => ({ op: 'unlink', path: p }),
  rename: (from: string, to: string): Op => ({ op: 'rename', from, to }),
  symlink: (target: string, p: string): Op => ({ op: 'symlink', target, path: p }),
  readlink: (p: string): Op => ({ op: 'readlink', path: p }),
  link: (from: string, to: string): Op => ({ op: 'link', from, to }),
  chmod: (p: string, mode: number): Op => ({ op: 'chmod', path: p, mode }),
  chown: (p: string, uid: number, gid: number): Op => ({ op: 'chown', path: p, uid, gid }),
  utimes: (p: string, atime: number, mtime: number): Op => ({ op: 'utimes', path: p, atime, mtime }),
  mkfifo: (p: string, mode?: number): Op => ({ op: 'mkfifo', path: p, mode }),
  setxattr: (p: string, name: string, value: string): Op => ({ op: 'setxattr', path: p, name, value }),
  getxattr: (p: string, name: string): Op => ({ op: 'getxattr', path: p, name }),
  removexattr: (p: string, name: string): Op => ({ op: 'removexattr', path: p, name }),
  listxattr: (p: string): Op => ({ op: 'listxattr', path: p }),
  rmrf: (p: string): Op => ({ op: 'rmrf', path: p }),
  mv: (from: string, to: string): Op => ({ op: 'mv', from, to }),
  cpa: (from: string, to: string, fromOutside = false): Op => ({ op: 'cpa', from, to, fromOutside }),
  rename2: (from: string, to: string, flags: 'noreplace' | 'exchange'): Op => ({ op: 'rename2', from, to, flags }),
  mknod: (p: string, kind: 'chr' | 'blk', major: number, minor: number, mode?: number): Op => ({ op: 'mknod', path: p, kind, major, minor, mode }),
  lchown: (p: string, uid: number, gid: number): Op => ({ op: 'lchown', path: p, uid, gid }),
  readAt: (p: string, offset: number, length: number): Op => ({ op: 'readAt', path: p, offset, length }),
  checksum: (p: string): Op => ({ op: 'checksum', path: p }),
  allocated: (p: string): Op => ({ op: 'allocated', path: p }),
  lsattr: (p: string): Op => ({ op: 'lsattr', path: p }),
  chattr: (p: string, mode: string): Op => ({ op: 'chattr', path: p, mode }),
};

export function describeOp(o: Op): string {
  const { op: name, ...args } = o;
  const parts = Object.entries(args)
    .filter(([, v]) => v !== undefined && v !== false)
    .map(([k, v]) => (k === 'mode' && typeof v === 'number' ? `${k}=${octalMode(v)}` : `${k}=${JSON.stringify(v)}`));
  return `${name}(${parts.join(', ')})`;
}

// ---------------------------------------------------------------------------
// scenarios

export interface Scenario {
  name: string;
  description?: string;
  layers: LayerSet;
  /** Mount without upper/work dir (kernel overlayfs then needs ≥ 2 lowers). */
  readOnly?: boolean;
  /** A tree outside the mount, source of `cpa` with fromOutside. */
  outside?: Tree;
  ops: Op[];
  /** Extra mount options for both implementations. */
  options?: string[];
  /** Extra mount options for layerfs only. */
  layerfsOptions?: string[];
  /**
   * Free space the scenario needs in the temp dir's filesystem (per run); checked with
   * statfs before building anything, so a full disk gives a clear error, not a half run.
   */
  needsFreeBytes?: number;
  /** Per-operation time limit for this scenario (RunOptions.opTimeoutMs still wins). Default 20 s. */
  opTimeoutMs?: number;
}
