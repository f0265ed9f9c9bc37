import { constants as fsc, type BigIntStats } from 'node:fs';
import * as sys from '../sys/index.ts';
import * as b from './bytes.ts';
import {
  chmodSync, copyFileAsync as copyFile, lchownSync, lstatSync, mkdirSync, openAsync as open, readlinkSync, rmSync, symlinkSync,
} from './bytes.ts';
import { isCode } from './errors.ts';
import { Layer, parentOf } from './layer.ts';
import type { Entry, Resolver } from './lookup.ts';
import type { WhiteoutFormat } from './whiteout.ts';
import type { WorkDir } from './workdir.ts';

/** What one copy-up did: told to the stack's listeners (./stack.ts) and to a trace. */
export interface CopyUpEvent {
  /** The union path the upper's copy serves from now on. */
  path: string;
  type: Entry['type'];
  fromLayer: number;
  bytes: number;
  ms: number;
}

/**
 * Copy-up (the kernel's fs/overlayfs/copy_up.c): before the first change to an object that
 * lives in a lower layer, a copy of it is made in the upper — parents first, each with its
 * metadata; then data (regular files), mode, owner, xattrs (all but overlay-private ones) and
 * nanosecond times. The upper parent's times are restored afterwards, as the kernel does.
 *
 * Guarantees: the copy is assembled in the work directory (./workdir.ts) and renamed into
 * place with RENAME_NOREPLACE, so a crash never leaves a partial object visible in the upper,
 * and a failed copy leaves nothing behind (its temporary name is removed). Concurrent copy-ups
 * of one path share one copy. The resolver learns of each copy before anyone else (it serves
 * the upper's copy at once), then `onCopyUp` is told.
 *
 * Across an await (the parent's copy-up, the data of a large file): other paths may be copied
 * up, and this path's ancestors by other callers (shared, see above); the resolver's cache may
 * be invalidated by any operation. Lowers never change through the union. If another
 * operation put an object at the upper name meanwhile, the copy fails (EEXIST) instead of
 * replacing it. Callers: the entry ensure() returns is the answer when the copy ended; a
 * caller that awaits again after it resolves the path again.
 */
export class CopyUp {
  private inflight = new Map<string, Promise<void>>();
  /**
   * The engine's one outlet: told of every copy made, after the resolver. The stack (./stack.ts)
   * connects it to its listeners and its trace.
   */
  onCopyUp?: (ev: CopyUpEvent) => void;
  /**
   * Whatever else of a regular file or directory `e` its copy `tmp` must carry, applied before
   * the copy takes its place: the inode flags (./fileattr.ts). Set by the stack.
   */
  copyExtra?: (e: Entry, tmp: string) => void;

  constructor(
    private readonly layers: Layer[],
    private readonly upper: Layer,
    private readonly resolver: Resolver,
    private readonly wf: WhiteoutFormat,
    /** Where copies are assembled. */
    private readonly work: WorkDir,
  ) {}

  /** Make sure the object at path exists in the upper; returns its (new) entry. */
  async ensure(path: string): Promise<Entry> {
    for (;;) {
      const e = this.resolver.get(path);
      if (this.layers[e.layer].isUpper) return e;
      const running = this.inflight.get(path);
      if (running) await running;
      else await this.copyOnce(e);
    }
  }

  /**
   * ensure() for a chmod: a copy made by this call gets `mode` (permission bits) at once
   * instead of the lower's, which saves a chmod of the copy. True: this call copied, and the
   * mode is set; false: the object was in the upper already (or another call copied it).
   */
  async ensureWithMode(path: string, mode: number): Promise<boolean> {
    const e = this.resolver.get(path);
    if (this.layers[e.layer].isUpper || this.inflight.has(path)) {
      await this.ensure(path);
      return false;
    }
    await this.copyOnce(e, mode);
    return true;
  }

  /** copy(), registered so that concurrent callers for the same path wait for this one. */
  private async copyOnce(e: Entry, mode?: number): Promise<void> {
    const p = this.copy(e, mode);
    this.inflight.set(e.path, p);
    try {
      await p;
    } finally {
      this.inflight.delete(e.path);
    }
  }

  /** Make sure the directory `path` exists in the upper (copying up its ancestors as needed). */
  async ensureDir(path: string): Promise<void> {
    if (path === '/') return;
    const e = await this.ensure(path);
    if (e.type !== 'dir') throw Object.assign(new Error('ENOTDIR'), { code: 'ENOTDIR' });
  }

  /** Copy e's object up; `mode`: permission bits for the copy instead of the original's. */
  private async copy(e: Entry, mode?: number): Promise<void> {
    const t0 = performance.now();
    const parent = parentOf(e.path);
    await this.ensureDir(parent);
    const src = this.layers[e.layer].path(e.path);
    const st = lstatSync(src, { bigint: true });
    const upperParent = this.upper.path(parent);
    const pst = lstatSync(upperParent, { bigint: true });
    const tmp = this.work.tmpName();
    let bytes = 0;
    let metaDone = false;
    try {
      if (st.isDirectory()) {
        mkdirSync(tmp, 0o700);
      } else if (st.isFile() && Number(st.size) <= SMALL_COPY && copySmallFile(src, tmp, st, this.wf, mode)) {
        bytes = Number(st.size); // data and metadata in one call
        metaDone = true;
      } else if (st.isFile()) {
        await copyFileData(src, tmp, Number(st.size));
        bytes = Number(st.size);
      } else if (st.isSymbolicLink()) {
        symlinkSync(readlinkSync(src), tmp);
      } else {
        b.mknod(tmp, Number(st.mode), st.rdev);
      }
      if (!metaDone) copyMetadata(src, tmp, st, this.wf, mode);
      if (this.copyExtra && (st.isFile() || st.isDirectory())) this.copyExtra(e, tmp);
      b.renameat2(tmp, this.upper.path(e.path), sys.RENAME_NOREPLACE);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
    restoreTimes(upperParent, pst);
    this.resolver.copiedUp(e);
    this.onCopyUp?.({ path: e.path, type: e.type, fromLayer: e.layer, bytes, ms: performance.now() - t0 });
  }
}

/**
 * fs.copyFile's mode: never over an existing file; a reflink (FICLONE: shared blocks, no data
 * copied) where the filesystem has them (btrfs, xfs), else libuv's in-kernel copy
 * (copy_file_range, sendfile).
 */
const COPY_MODE = fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE;

/** Files up to this size are copied synchronously (see copyFileData). */
const SMALL_COPY = 256 * 1024;

/**
 * Copy a regular file's data. A file without holes goes through fs.copyFile (in-kernel
 * copy_file_range, or a reflink where the filesystem has them); a sparse file is copied range
 * by range between its holes (SEEK_DATA / SEEK_HOLE), so the copy stays sparse, as the
 * kernel's copy-up keeps it.
 */
export async function copyFileData(src: string, dst: string, size: number): Promise<void> {
  // A small file is copied at once on this thread: a trip through libuv's thread pool (open,
  // copy, close) costs more than the copy itself, and holes do not matter at this size.
  if (size <= SMALL_COPY) {
    b.copyFileSync(src, dst, COPY_MODE);
    return;
  }
  const fin = await open(src, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    const firstHole = sys.lseek(fin.fd, 0, sys.SEEK_HOLE);
    if (firstHole === null || Number(firstHole) >= size) {
      await copyFile(src, dst, COPY_MODE);
      return;
    }
    const fout = await open(dst, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    try {
      await fout.truncate(size);
      const buf = Buffer.allocUnsafe(1 << 20);
      let off = 0;
      while (off < size) {
        const data = sys.lseek(fin.fd, off, sys.SEEK_DATA);
        if (data === null) break;
        const hole = Math.min(Number(sys.lseek(fin.fd, data, sys.SEEK_HOLE) ?? size), size);
        for (let p = Number(data); p < hole; ) {
          const { bytesRead } = await fin.read(buf, 0, Math.min(buf.length, hole - p), p);
          if (bytesRead === 0) break;
          await fout.write(buf, 0, bytesRead, p);
          p += bytesRead;
        }
        off = hole;
      }
    } finally {
      await fout.close();
    }
  } finally {
    await fin.close();
  }
}

/**
 * A small regular file's data and metadata (what copyFileData + copyMetadata do) in one call
 * of the own addon, through descriptors instead of a dozen path walks. False: the addon is not
 * built; copy step by step.
 */
function copySmallFile(src: string, dst: string, st: BigIntStats, wf: WhiteoutFormat, mode = Number(st.mode)): boolean {
  return b.copyFileWithMeta(src, dst, wf.privatePrefixes, { uid: Number(st.uid), gid: Number(st.gid) }, mode & 0o7777,
    sys.timespecFromNs(st.atimeNs), sys.timespecFromNs(st.mtimeNs));
}

/**
 * Owner, mode (or `mode`, where given), xattrs (but overlay-private ones) and times of src onto
 * dst; dst is not followed.
 */
export function copyMetadata(src: string, dst: string, st: BigIntStats, wf: WhiteoutFormat, mode = Number(st.mode)): void {
  // Owner first: chown(2) drops security.capability (and set-id bits), so xattrs and mode
  // come after it.
  lchownSync(dst, Number(st.uid), Number(st.gid));
  for (const name of b.llistxattr(src)) {
    if (wf.isPrivateXattr(name)) continue;
    const v = b.lgetxattr(src, name);
    if (v === null) continue;
    try {
      b.lsetxattr(dst, name, v);
    } catch (err) {
      if (!isCode(err, 'ENOTSUP', 'EOPNOTSUPP')) throw err;
    }
  }
  // A symlink's mode cannot be set.
  if (!st.isSymbolicLink()) chmodSync(dst, mode & 0o7777);
  restoreTimes(dst, st);
}

export function restoreTimes(abs: string, st: BigIntStats): void {
  b.utimensat(abs, sys.timespecFromNs(st.atimeNs), sys.timespecFromNs(st.mtimeNs), { nofollow: true });
}

