import type * as sys from '../sys/index.ts';
import * as b from './bytes.ts';
import * as dir from './dir.ts';
import type { Owner } from './dir.ts';
import { FsError } from './errors.ts';
import type { TraceSink } from './events.ts';
import type { Fsxattr } from './fileattr.ts';
import * as handles from './handles.ts';
import * as inode from './inode.ts';
import type { Attr, TimeArg } from './inode.ts';
import { checkPath, type Layer } from './layer.ts';
import type { Entry, Resolver } from './lookup.ts';
import * as readdir from './readdir.ts';
import type { DirItem } from './readdir.ts';
import { Stack, type CopyUpListener, type UnionOptions } from './stack.ts';
import type { WhiteoutFormat } from './whiteout.ts';

/**
 * The union filesystem: the POSIX operations on union paths. It works on plain directories and
 * knows nothing of FUSE. Errors are thrown as objects with an errno `code` ('ENOENT', 'EXDEV',
 * ...).
 *
 * This is the one object callers hold; the rules live in the files named after them, each
 * operation here a call of one of them on the union's shared state (./stack.ts):
 *
 *   lookup.ts   lookup (the Resolver)          inode.ts    getattr, setattr, xattrs, inode flags
 *   readdir.ts  readdir                        handles.ts  open, read, write, fsync, release, ...
 *   copyup.ts   copy-up, before any change     dir.ts      create, mkdir, link, unlink, rmdir, rename
 *   workdir.ts  the work directory             whiteout.ts the whiteout and opaque formats
 */
export class UnionFs {
  /** The shared state the rules work on. */
  readonly stack: Stack;

  constructor(opts: UnionOptions) {
    this.stack = new Stack(opts);
  }

  get layers(): Layer[] {
    return this.stack.layers;
  }

  get upper(): Layer | undefined {
    return this.stack.upper;
  }

  get resolver(): Resolver {
    return this.stack.resolver;
  }

  get wf(): WhiteoutFormat {
    return this.stack.wf;
  }

  get readonly(): boolean {
    return this.stack.readonly;
  }

  get volatile(): boolean {
    return this.stack.volatile;
  }

  /** `workdir/work`, where objects are assembled and disposed of (./workdir.ts). */
  get workTmp(): string | undefined {
    return this.stack.work?.dir;
  }

  /**
   * Prepare the work directory: whatever a crashed daemon left in it (half-copied files,
   * directories on their way out) is removed, as the kernel does at mount time.
   */
  prepareWorkdir(): void {
    this.stack.work?.prepare();
  }

  /** Start (a function) or stop (undefined) the trace of the union's decisions (./events.ts). */
  setTrace(sink: TraceSink | undefined): void {
    this.stack.setTrace(sink);
  }

  /** Be told of every copy-up, until the returned function is called (Stack.onCopyUp). */
  onCopyUp(listener: CopyUpListener): () => void {
    return this.stack.onCopyUp(listener);
  }

  // ---------------------------------------------------------------- reading

  lookup(path: string): Entry | null {
    return this.stack.resolver.find(checkPath(path));
  }

  /** Whether the upper layer serves path (false: a lower does, or nothing is there). */
  inUpper(path: string): boolean {
    const e = this.lookup(path);
    return !!e && this.stack.layers[e.layer]!.isUpper;
  }

  getattr(path: string): Attr {
    return inode.getattr(this.stack, path);
  }

  lookupAttr(path: string): Attr | null {
    return inode.lookupAttr(this.stack, path);
  }

  fgetattr(fh: number): Attr {
    return handles.fgetattr(this.stack, fh);
  }

  readdir(path: string): DirItem[] {
    return readdir.readdir(this.stack, path);
  }

  direntIno(dir: string, item: DirItem): bigint {
    return readdir.direntIno(this.stack, dir, item);
  }

  readlink(path: string): Buffer {
    return inode.readlink(this.stack, path);
  }

  access(path: string, mode: number): void {
    inode.access(this.stack, path, mode);
  }

  statfs(): sys.StatFs {
    return b.statfs((this.stack.upper ?? this.stack.layers[0]).root);
  }

  getxattr(path: string, name: string): Buffer {
    return inode.getxattr(this.stack, path, name);
  }

  listxattr(path: string): string[] {
    return inode.listxattr(this.stack, path);
  }

  // ---------------------------------------------------------------- files (./handles.ts)

  open(path: string, flags: number): Promise<number> {
    return handles.open(this.stack, path, flags);
  }

  create(path: string, mode: number, flags: number, owner?: Owner): Promise<number> {
    return dir.create(this.stack, path, mode, flags, owner);
  }

  read(fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    return handles.read(this.stack, fh, buf, len, pos);
  }

  readFd(fh: number): number {
    return handles.readFd(this.stack, fh);
  }

  write(fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    return handles.write(this.stack, fh, buf, len, pos);
  }

  fsync(fh: number, datasync: boolean): Promise<void> {
    return handles.fsync(this.stack, fh, datasync);
  }

  release(fh: number): void {
    handles.release(this.stack, fh);
  }

  fallocate(fh: number, mode: number, off: number, len: number): void {
    handles.fallocate(this.stack, fh, mode, off, len);
  }

  lseek(fh: number, off: number, whence: number): number {
    return handles.lseek(this.stack, fh, off, whence);
  }

  copyFileRange(fhIn: number, offIn: number, fhOut: number, offOut: number, len: number, flags: number): number {
    return handles.copyFileRange(this.stack, fhIn, offIn, fhOut, offOut, len, flags);
  }

  ftruncate(fh: number, size: number): void {
    handles.ftruncate(this.stack, fh, size);
  }

  openCount(): number {
    return this.stack.files.size;
  }

  upperFd(fh: number): number | null {
    return handles.upperFd(this.stack, fh);
  }

  // ---------------------------------------------------------------- metadata changes (./inode.ts)

  truncate(path: string, size: number): Promise<void> {
    return inode.truncate(this.stack, path, size);
  }

  chmod(path: string, mode: number): Promise<void> {
    return inode.chmod(this.stack, path, mode);
  }

  chown(path: string, uid: number, gid: number): Promise<void> {
    return inode.chown(this.stack, path, uid, gid);
  }

  utimens(path: string, atime: TimeArg, mtime: TimeArg): Promise<void> {
    return inode.utimens(this.stack, path, atime, mtime);
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    return inode.setxattr(this.stack, path, name, value, flags);
  }

  removexattr(path: string, name: string): Promise<void> {
    return inode.removexattr(this.stack, path, name);
  }

  getFlags(path: string): number {
    return inode.getFlags(this.stack, path);
  }

  setFlags(path: string, flags: number): Promise<void> {
    return inode.setFlags(this.stack, path, flags);
  }

  getFsxattr(path: string): Fsxattr {
    return inode.getFsxattr(this.stack, path);
  }

  setFsxattr(path: string, x: Fsxattr): Promise<void> {
    return inode.setFsxattr(this.stack, path, x);
  }

  // ---------------------------------------------------------------- namespace changes (./dir.ts)

  mkdir(path: string, mode: number, owner?: Owner): Promise<void> {
    return dir.mkdir(this.stack, path, mode, owner);
  }

  symlink(target: string | Buffer, path: string, owner?: Owner): Promise<void> {
    return dir.symlink(this.stack, target, path, owner);
  }

  mknod(path: string, mode: number, rdev: number, owner?: Owner): Promise<void> {
    return dir.mknod(this.stack, path, mode, rdev, owner);
  }

  link(src: string, dst: string): Promise<void> {
    return dir.link(this.stack, src, dst);
  }

  unlink(path: string): Promise<void> {
    return dir.unlink(this.stack, path);
  }

  rmdir(path: string): Promise<void> {
    return dir.rmdir(this.stack, path);
  }

  rename(src: string, dst: string, flags = 0): Promise<void> {
    return dir.rename(this.stack, src, dst, flags);
  }
}

export type { Attr, Owner, TimeArg, UnionOptions };
export { toAttr } from './inode.ts';
export { FsError };
