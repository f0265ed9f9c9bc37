// Declarative description of overlay layers, and a builder that writes them
// to disk.
//
// A layer is a tree of named nodes. Whiteouts and opaque directories come in
// two on-disk formats:
//   - 'kernel' (overlayfs): a whiteout is a character device 0/0, an opaque
//     directory carries the xattr trusted.overlay.opaque=y;
//   - 'oci' (image layer tarballs): a whiteout of NAME is an empty regular file
//     `.wh.NAME`, an opaque directory contains an empty file `.wh..wh..opq`.
// The kernel understands only its own format, so a scenario whose lowers use
// OCI markers is built for the kernel with every marker translated
// (format 'kernel'), and for layerfs exactly as written (format 'as-written').

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { runOk } from '../helpers/exec.ts';

export type MarkerFormat = 'kernel' | 'oci';
/**
 * Whiteout formats a lower may hold, beyond the two marker formats:
 *   - 'xattr': the kernel's "xwhiteout" (Linux 6.8+): an empty regular file with the xattr
 *     trusted.overlay.whiteout, in a directory marked trusted.overlay.opaque=x;
 *   - 'user-xattr': the same with user.overlay.* (read under the `userxattr` mount option).
 * The kernel reads both natively, so they are built identically for both targets.
 */
export type WhiteoutFormat = MarkerFormat | 'xattr' | 'user-xattr';
/** 'user': user.overlay.opaque=y (read under the `userxattr` mount option), built as is for both targets. */
export type OpaqueFormat = MarkerFormat | 'user';

interface Owned {
  /** Permission bits incl. suid/sgid/sticky. */
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface FileNode extends Owned {
  type: 'file';
  content?: string | Buffer;
  /** Data written at offsets after `content` (pwrite), leaving holes in between: a sparse file. */
  extents?: { offset: number; data: string | Buffer }[];
  /** Final size (truncate after writing): a larger size adds a hole at the end. */
  size?: number;
  /** xattrs, normally user.* (trusted.* works too: the builder runs as root). */
  xattrs?: Record<string, string>;
  /** Modification (and access) time, seconds since the epoch. */
  mtime?: number;
}

export interface DirNode extends Owned {
  type: 'dir';
  children?: Tree;
  opaque?: OpaqueFormat;
  xattrs?: Record<string, string>;
  mtime?: number;
}

export interface SymlinkNode {
  type: 'symlink';
  target: string;
  uid?: number;
  gid?: number;
}

export interface FifoNode extends Owned {
  type: 'fifo';
}

/** A device node (as root): character or block device major:minor. */
export interface DeviceNode extends Owned {
  type: 'chardev' | 'blockdev';
  major: number;
  minor: number;
}

export interface HardlinkNode {
  type: 'hardlink';
  /** Path of the link target, relative to the root of the SAME layer (e.g. 'd/f'). */
  to: string;
}

export interface WhiteoutNode {
  type: 'whiteout';
  format: WhiteoutFormat;
}

export type Node = FileNode | DirNode | SymlinkNode | FifoNode | DeviceNode | HardlinkNode | WhiteoutNode;
/**
 * Directory contents: name → node. Names must not contain '/'. A name that is not valid
 * UTF-8 is written as rawName(bytes) (a NUL-prefixed hex form no real name can take).
 */
export type Tree = Record<string, Node>;

// -- names that are not valid UTF-8 ---------------------------------------------

/** Marks a name component spelled as hex bytes (NUL never occurs in a real name). */
export const RAW_PREFIX = '\u0000';

/** A name (or a path component) given as raw bytes: usable as a Tree key and in op paths. */
export function rawName(bytes: Buffer | number[]): string {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  return RAW_PREFIX + b.toString('hex');
}

/** The bytes of one name component (rawName-encoded or plain UTF-8). */
export function nameBytes(name: string): Buffer {
  return name.startsWith(RAW_PREFIX) ? Buffer.from(name.slice(RAW_PREFIX.length), 'hex') : Buffer.from(name, 'utf8');
}

/** Does a slash-separated path use rawName components? */
export function hasRawNames(p: string): boolean {
  return p.includes(RAW_PREFIX);
}

/** A path for node:fs: the string itself, or a Buffer of its bytes when it has rawName components. */
export function fsPath(p: string): string | Buffer {
  if (!hasRawNames(p)) return p;
  return Buffer.concat(p.split('/').flatMap((c, i) => (i === 0 ? [nameBytes(c)] : [Buffer.from('/'), nameBytes(c)])));
}

/** Printable form of a name's bytes: the UTF-8 text, or rawName() form when not valid UTF-8. */
export function showName(bytes: Buffer): string {
  const s = bytes.toString('utf8');
  return Buffer.from(s, 'utf8').equals(bytes) ? s : rawName(bytes);
}

export interface LayerSet {
  /** Lower layers, TOP-MOST FIRST (same order as lowerdir=). */
  lowers: Tree[];
  /** Initial contents of the upper layer (always written in kernel format: it is overlayfs' on-disk upper). */
  upper?: Tree;
}

// -- constructors ------------------------------------------------------------

export function file(content: string | Buffer = '', opts: Omit<FileNode, 'type' | 'content'> = {}): FileNode {
  return { type: 'file', content, ...opts };
}
export function dir(children: Tree = {}, opts: Omit<DirNode, 'type' | 'children'> = {}): DirNode {
  return { type: 'dir', children, ...opts };
}
export function symlink(target: string, opts: Omit<SymlinkNode, 'type' | 'target'> = {}): SymlinkNode {
  return { type: 'symlink', target, ...opts };
}
export function fifo(opts: Omit<FifoNode, 'type'> = {}): FifoNode {
  return { type: 'fifo', ...opts };
}
export function hardlink(to: string): HardlinkNode {
  return { type: 'hardlink', to };
}
export function whiteout(format: WhiteoutFormat = 'kernel'): WhiteoutNode {
  return { type: 'whiteout', format };
}
export function opaqueDir(format: OpaqueFormat, children: Tree = {}, opts: Omit<DirNode, 'type' | 'children' | 'opaque'> = {}): DirNode {
  return { type: 'dir', children, opaque: format, ...opts };
}
export function chardev(major: number, minor: number, opts: Omit<DeviceNode, 'type' | 'major' | 'minor'> = {}): DeviceNode {
  return { type: 'chardev', major, minor, ...opts };
}
export function blockdev(major: number, minor: number, opts: Omit<DeviceNode, 'type' | 'major' | 'minor'> = {}): DeviceNode {
  return { type: 'blockdev', major, minor, ...opts };
}
/** A sparse file: `extents` of data at offsets, holes between them, `size` bytes in all. */
export function sparseFile(size: number, extents: { offset: number; data: string | Buffer }[], opts: Omit<FileNode, 'type' | 'content' | 'extents' | 'size'> = {}): FileNode {
  return { type: 'file', content: '', extents, size, ...opts };
}

/** Does any node in the set use OCI markers? */
export function usesOci(spec: LayerSet): boolean {
  const visit = (t: Tree): boolean =>
    Object.values(t).some(
      (n) =>
        (n.type === 'whiteout' && n.format === 'oci') ||
        (n.type === 'dir' && (n.opaque === 'oci' || visit(n.children ?? {}))),
    );
  return spec.lowers.some(visit) || (spec.upper !== undefined && visit(spec.upper));
}

// -- builder -------------------------------------------------------------------

export const OCI_WHITEOUT_PREFIX = '.wh.';
export const OCI_OPAQUE_MARKER = '.wh..wh..opq';
export const KERNEL_OPAQUE_XATTR = 'trusted.overlay.opaque';
export const USER_OPAQUE_XATTR = 'user.overlay.opaque';
export const KERNEL_WHITEOUT_XATTR = 'trusted.overlay.whiteout';
export const USER_WHITEOUT_XATTR = 'user.overlay.whiteout';

export interface BuildOptions {
  /** 'as-written': markers exactly as in the spec; 'kernel': OCI markers translated to kernel ones. */
  format: 'as-written' | 'kernel';
}

export interface BuiltLayers {
  /** Absolute paths, top-most first. */
  lowers: string[];
  /** Present when the spec has an upper tree. */
  upper?: string;
}

/** Set an xattr; the value is passed hex-encoded so setfattr never reinterprets it. */
export async function setXattr(p: string, name: string, value: string | Buffer, noFollow = true): Promise<void> {
  const buf = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const args = ['-n', name, '-v', buf.length ? '0x' + buf.toString('hex') : '""'];
  if (noFollow) args.push('-h');
  await runOk('setfattr', [...args, '--', p]);
}

async function mknodWhiteout(p: string): Promise<void> {
  if (hasRawNames(p)) sys.mknod(fsPath(p), fs.constants.S_IFCHR, 0);
  else await runOk('mknod', ['--', p, 'c', '0', '0']);
}

/** setXattr for builder paths, which may have rawName components (never follows symlinks). */
async function setXattrAt(p: string, name: string, value: string | Buffer): Promise<void> {
  if (hasRawNames(p)) sys.lsetxattr(fsPath(p), name, value);
  else await setXattr(p, name, value);
}

function checkName(name: string, where: string): void {
  if (name.startsWith(RAW_PREFIX)) {
    const b = nameBytes(name);
    if (name.length === RAW_PREFIX.length || !/^[0-9a-f]*$/.test(name.slice(RAW_PREFIX.length)) || b.length === 0 || b.includes(0x2f) || b.includes(0)) {
      throw new Error(`invalid raw node name ${JSON.stringify(name)} in ${where}`);
    }
    return;
  }
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new Error(`invalid node name ${JSON.stringify(name)} in ${where}`);
  }
}

interface Deferred {
  links: { at: string; to: string }[];
  fileTimes: { at: string; mtime: number }[];
  /** Directories, children before parents (post-order), to finish last. */
  dirs: { at: string; node: DirNode; xwhiteouts: XwhiteoutKind }[];
}

/** Which xattr whiteouts a directory holds (its opaque xattr must then say "x"). */
type XwhiteoutKind = { trusted: boolean; user: boolean };

/** Write one layer tree into `root` (created, must not exist or be empty). */
export async function buildLayer(tree: Tree, root: string, opts: BuildOptions): Promise<void> {
  root = path.resolve(root);
  fs.mkdirSync(root, { recursive: true, mode: 0o755 });
  fs.chmodSync(root, 0o755);
  const d: Deferred = { links: [], fileTimes: [], dirs: [] };
  const rootX = await writeChildren(tree, root, opts, d);
  // Hard links after all their possible targets exist.
  for (const l of d.links) {
    const src = path.join(root, l.to);
    if (!path.resolve(src).startsWith(root + '/')) throw new Error(`hardlink target outside the layer: ${l.to}`);
    fs.linkSync(fsPath(src), fsPath(l.at));
  }
  for (const f of d.fileTimes) fs.utimesSync(fsPath(f.at), f.mtime, f.mtime);
  // Directory metadata last: creating children changes mtimes, and a
  // restrictive mode must not get in the way of building (though as root it
  // would not).
  for (const { at, node, xwhiteouts } of d.dirs) await finishDir(at, node, opts, xwhiteouts);
  await markXwhiteoutParent(root, undefined, rootX);
}

/** Write a whole layer set below `dir`: dir/lower0 (top-most), dir/lower1, …, and dir/upper if specified. */
export async function buildLayers(spec: LayerSet, dir: string, opts: BuildOptions): Promise<BuiltLayers> {
  const lowers: string[] = [];
  for (let i = 0; i < spec.lowers.length; i++) {
    const p = path.join(path.resolve(dir), `lower${i}`);
    await buildLayer(spec.lowers[i]!, p, opts);
    lowers.push(p);
  }
  const out: BuiltLayers = { lowers };
  if (spec.upper) {
    out.upper = path.join(path.resolve(dir), 'upper');
    await buildLayer(spec.upper, out.upper, { format: 'kernel' });
  }
  return out;
}

/** `.wh.NAME` for a (possibly rawName-encoded) name. */
function ociWhiteoutName(name: string): string {
  return name.startsWith(RAW_PREFIX) ? rawName(Buffer.concat([Buffer.from(OCI_WHITEOUT_PREFIX), nameBytes(name)])) : OCI_WHITEOUT_PREFIX + name;
}

async function writeChildren(tree: Tree, dirPath: string, opts: BuildOptions, d: Deferred): Promise<XwhiteoutKind> {
  const xw: XwhiteoutKind = { trusted: false, user: false };
  for (const [name, node] of Object.entries(tree)) {
    checkName(name, dirPath);
    const at = path.join(dirPath, name);
    const fp = fsPath(at);
    switch (node.type) {
      case 'file': {
        fs.writeFileSync(fp, node.content ?? '');
        if (node.extents?.length || node.size !== undefined) {
          const fd = fs.openSync(fp, 'r+');
          try {
            for (const e of node.extents ?? []) {
              const b = typeof e.data === 'string' ? Buffer.from(e.data) : e.data;
              fs.writeSync(fd, b, 0, b.length, e.offset);
            }
            if (node.size !== undefined) fs.ftruncateSync(fd, node.size);
          } finally {
            fs.closeSync(fd);
          }
        }
        applyOwnership(fp, node.uid, node.gid, false);
        fs.chmodSync(fp, node.mode ?? 0o644); // after chown, which clears suid/sgid
        for (const [k, v] of Object.entries(node.xattrs ?? {})) await setXattrAt(at, k, v);
        if (node.mtime !== undefined) d.fileTimes.push({ at, mtime: node.mtime });
        break;
      }
      case 'dir': {
        fs.mkdirSync(fp, { mode: 0o755 });
        const childX = await writeChildren(node.children ?? {}, at, opts, d);
        d.dirs.push({ at, node, xwhiteouts: childX });
        break;
      }
      case 'symlink':
        fs.symlinkSync(node.target, fp);
        applyOwnership(fp, node.uid, node.gid, true);
        break;
      case 'fifo':
        if (hasRawNames(at)) sys.mknod(fp, fs.constants.S_IFIFO | 0o644, 0);
        else await runOk('mkfifo', ['--', at]);
        applyOwnership(fp, node.uid, node.gid, false);
        fs.chmodSync(fp, node.mode ?? 0o644);
        break;
      case 'chardev':
      case 'blockdev':
        if (node.type === 'chardev' && node.major === 0 && node.minor === 0) throw new Error(`${at}: a 0/0 character device is a whiteout; use whiteout()`);
        sys.mknod(fp, (node.type === 'chardev' ? fs.constants.S_IFCHR : fs.constants.S_IFBLK) | 0o600, sys.makedev(node.major, node.minor));
        applyOwnership(fp, node.uid, node.gid, false);
        fs.chmodSync(fp, node.mode ?? 0o600);
        break;
      case 'hardlink':
        d.links.push({ at, to: node.to });
        break;
      case 'whiteout':
        if (node.format === 'oci' && opts.format === 'as-written') {
          fs.writeFileSync(fsPath(path.join(dirPath, ociWhiteoutName(name))), '');
        } else if (node.format === 'xattr' || node.format === 'user-xattr') {
          // Understood by the kernel itself: the same for both targets.
          fs.writeFileSync(fp, '');
          await setXattrAt(at, node.format === 'xattr' ? KERNEL_WHITEOUT_XATTR : USER_WHITEOUT_XATTR, 'y');
          if (node.format === 'xattr') xw.trusted = true;
          else xw.user = true;
        } else {
          await mknodWhiteout(at);
        }
        break;
      default: {
        const never: never = node;
        throw new Error(`unknown node ${JSON.stringify(never)}`);
      }
    }
  }
  return xw;
}

function applyOwnership(at: string | Buffer, uid: number | undefined, gid: number | undefined, noFollow: boolean): void {
  if (uid === undefined && gid === undefined) return;
  if (noFollow) fs.lchownSync(at, uid ?? 0, gid ?? 0);
  else fs.chownSync(at, uid ?? 0, gid ?? 0);
}

/** A directory holding xattr whiteouts is marked opaque=x (unless it is opaque=y anyway). */
async function markXwhiteoutParent(at: string, opaque: OpaqueFormat | undefined, xw: XwhiteoutKind): Promise<void> {
  const trustedY = opaque === 'kernel' || opaque === 'oci';
  if (xw.trusted && !trustedY) await setXattrAt(at, KERNEL_OPAQUE_XATTR, 'x');
  if (xw.user && opaque !== 'user') await setXattrAt(at, USER_OPAQUE_XATTR, 'x');
}

async function finishDir(at: string, node: DirNode, opts: BuildOptions, xw: XwhiteoutKind): Promise<void> {
  const fp = fsPath(at);
  if (node.opaque === 'oci' && opts.format === 'as-written') {
    fs.writeFileSync(fsPath(path.join(at, OCI_OPAQUE_MARKER)), '');
  } else if (node.opaque === 'user') {
    await setXattrAt(at, USER_OPAQUE_XATTR, 'y');
  } else if (node.opaque) {
    await setXattrAt(at, KERNEL_OPAQUE_XATTR, 'y');
  }
  // An OCI opaque dir written as a marker file has no xattr: it may still need "x".
  await markXwhiteoutParent(at, node.opaque === 'oci' && opts.format === 'as-written' ? undefined : node.opaque, xw);
  for (const [k, v] of Object.entries(node.xattrs ?? {})) await setXattrAt(at, k, v);
  applyOwnership(fp, node.uid, node.gid, false);
  fs.chmodSync(fp, node.mode ?? 0o755);
  if (node.mtime !== undefined) fs.utimesSync(fp, node.mtime, node.mtime);
}
