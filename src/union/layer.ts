import { constants as fsc } from 'node:fs';
import { fromText, openSync } from './bytes.ts';
import { fsErr } from './errors.ts';

/** Linux PATH_MAX, counting the terminating NUL. */
const PATH_MAX = 4096;
/** Room kept for one more name below a path ('/', an OCI `.wh.` prefix, a 255-byte name). */
const NAME_ROOM = 1 + 4 + 255;
/** Not in node's fs.constants. */
const O_PATH = 0o10000000;

/**
 * One layer root (the upper or a lower). Every union path is an absolute, normalised path
 * inside the union ('/' or '/a/b'); a layer turns it into a real path below its root.
 *
 * Safety: the union core never asks a layer for a path whose parent was not first found to be
 * a real directory (lstat, which never follows symlinks) in that same layer, and it only uses
 * no-follow operations on the last component. So a symlink planted in a layer is served as a
 * symlink and never traversed by the daemon.
 */
export class Layer {
  /** The root directory, as a byte string (./bytes.ts). */
  readonly root: string;

  constructor(
    /** The root directory as given (text). */
    root: string,
    /** Position in the stack: 0 is the top-most (the upper when there is one). */
    readonly index: number,
    readonly isUpper: boolean,
  ) {
    this.root = fromText(root);
  }

  /**
   * The real path (a byte string) of a union path in this layer. A path that is fine through
   * the mount can be too long for a syscall here, when the layer root is longer than the
   * mount point: such paths are given below a short alias of the root, `/proc/self/fd/N` (a
   * descriptor on the root opened once, at first need), which leaves room to append one more
   * name.
   */
  path(rel: string): string {
    const p = rel === '/' ? this.root : this.root + rel;
    if (p.length + NAME_ROOM < PATH_MAX) return p;
    return this.shortRoot() + (rel === '/' ? '' : rel);
  }

  private alias?: string;

  private shortRoot(): string {
    if (this.alias === undefined) {
      // O_PATH: a handle on the directory itself, nothing is read through it.
      const fd = openSync(this.root, O_PATH | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
      this.alias = `/proc/self/fd/${fd}`;
    }
    return this.alias;
  }

  toString(): string {
    return `${this.isUpper ? 'upper' : 'lower'}[${this.index}] ${this.root}`;
  }
}

/** An empty, `.` or `..` component (or a trailing `/`), a NUL, or a char that is not a byte. */
const BAD_PATH = /\/(?:\.\.?)?(?:\/|$)|\0|[^\x00-\xff]/;
/** A component longer than NAME_MAX (255 bytes). */
const LONG_NAME = /[^/]{256}/;

/**
 * Validate a union path (a byte string): absolute, no empty, '.' or '..' components, no NUL,
 * nothing but bytes.
 */
export function checkPath(p: string): string {
  if (p === '/') return p;
  // One regex pass: this runs for every request, and splitting the path cost microseconds.
  if (p.length === 0 || p.charCodeAt(0) !== 0x2f || BAD_PATH.test(p)) {
    throw fsErr('EINVAL', `bad path ${JSON.stringify(p)}`);
  }
  if (p.length > 256 && LONG_NAME.test(p)) throw fsErr('ENAMETOOLONG');
  return p;
}

export function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

export function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? '/' + name : dir + '/' + name;
}

/** True when p is inside dir (or is dir). */
export function isWithin(p: string, dir: string): boolean {
  return p === dir || dir === '/' || p.startsWith(dir + '/');
}
