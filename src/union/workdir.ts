import * as b from './bytes.ts';
import { mkdirSync, rmSync } from './bytes.ts';

/**
 * The work directory (`workdir=`; the kernel's `work/` in it, fs/overlayfs/util.c and the
 * cleanup in dir.c): a private directory on the upper's filesystem, never part of the union.
 * Objects are assembled in it before one rename(2) puts them in place (copy-up, a new object
 * over a whiteout, a whiteout over an object), and objects on their way out are moved into it
 * before they are deleted, so a name in the upper is never half-made or half-gone.
 *
 * Guarantees: tmpName() never gives a name twice within a process (pid and a counter), so
 * concurrent operations never collide, even across their awaits; prepare() removes whatever a
 * crashed daemon left, as the kernel does at mount time.
 *
 * Callers: a name from tmpName() is the caller's alone until it is renamed into the upper or
 * removed; the caller removes it on every failure path (copyup.ts, dir.ts).
 */
export class WorkDir {
  private seq = 0;

  constructor(
    /** `workdir/work`, a byte string (./bytes.ts). */
    readonly dir: string,
  ) {}

  /** Empty the work directory (creating it, mode 0700): anything in it is a crash's leftover. */
  prepare(): void {
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, 0o700);
  }

  /** A fresh name in the work directory. */
  tmpName(): string {
    return `${this.dir}/#${process.pid.toString(16)}-${(++this.seq).toString(16)}`;
  }

  /** Move the tree at `abs` (in the upper) into the work directory, then remove it there. */
  moveAndRemove(abs: string): void {
    const tmp = this.tmpName();
    b.renameat2(abs, tmp, 0);
    removeTree(tmp);
  }
}

/** Remove a tree that was moved into the work directory. */
export function removeTree(abs: string): void {
  rmSync(abs, { recursive: true, force: true });
}

/** The work directory's subdirectory layerfs uses, as the kernel's `work`. */
export const WORK_SUBDIR = 'work';
