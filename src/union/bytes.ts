/**
 * Byte-string paths: the union core's only way to the filesystem.
 *
 * Names on Linux are bytes, and container layers may hold names that are not valid UTF-8;
 * Node's fs decodes names as UTF-8 (an invalid byte becomes U+FFFD, for good). So every path,
 * name and symlink target inside the union core is a byte string: a JS string with one char
 * per byte (latin1, chars 0-255), exactly the bytes on disk. ASCII reads the same either way;
 * '/' and NUL are never part of a multi-byte UTF-8 sequence, so splitting and checking a byte
 * string on them is splitting and checking the bytes.
 *
 * The functions below take byte strings and hand the bytes to Node's fs and src/sys (the
 * string itself when it is ASCII, else a Buffer of its bytes); the ones that return names
 * return byte strings. Text from elsewhere (layer paths from the command line) enters with
 * fromText(); names leave for UTF-8 APIs with toText().
 */
import * as fs from 'node:fs';
import type { BigIntStats, Dirent, Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as sys from '../sys/index.ts';

const NON_ASCII = /[^\x00-\x7f]/;
const NOT_BYTES = /[^\x00-\xff]/;

/** What Node's fs and src/sys take for a byte-string path. */
export function osPath(p: string): string | Buffer {
  if (!NON_ASCII.test(p)) return p;
  if (NOT_BYTES.test(p)) throw Object.assign(new Error(`not a byte string: ${JSON.stringify(p)}`), { code: 'EINVAL' });
  return Buffer.from(p, 'latin1');
}

/** The byte string of a text (UTF-8) string, e.g. a layer path given on the command line. */
export function fromText(s: string): string {
  return NON_ASCII.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s;
}

/** A byte string read as UTF-8 (for UTF-8-only APIs; bytes that are not UTF-8 become U+FFFD). */
export function toText(s: string): string {
  return NON_ASCII.test(s) ? Buffer.from(s, 'latin1').toString('utf8') : s;
}

/** The bytes of a byte string. */
export function bytesOf(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

// ---------------------------------------------------------------------------- node:fs

export function lstatSync(p: string): Stats;
export function lstatSync(p: string, o: { bigint: true }): BigIntStats;
export function lstatSync(p: string, o?: { bigint: true }): Stats | BigIntStats {
  return o ? fs.lstatSync(osPath(p), o) : fs.lstatSync(osPath(p));
}

/**
 * lstat that answers null for a name that is not there (ENOENT, or ENOTDIR when a parent is not
 * a directory) without throwing: a lookup through many layers misses in most of them, and a
 * thrown error costs several times the syscall.
 */
export function lstatOrNull(p: string): BigIntStats | null {
  try {
    return fs.lstatSync(osPath(p), { bigint: true, throwIfNoEntry: false }) ?? null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR' || code === 'ENAMETOOLONG') return null;
    throw e;
  }
}

export function openSync(p: string, flags: number, mode?: number): number {
  return fs.openSync(osPath(p), flags, mode);
}

export function mkdirSync(p: string, mode: number): void {
  fs.mkdirSync(osPath(p), mode);
}

export function chmodSync(p: string, mode: number): void {
  fs.chmodSync(osPath(p), mode);
}

export function lchownSync(p: string, uid: number, gid: number): void {
  fs.lchownSync(osPath(p), uid, gid);
}

export function linkSync(existing: string, p: string): void {
  fs.linkSync(osPath(existing), osPath(p));
}

/** `target` is a byte string or the bytes themselves. */
export function symlinkSync(target: string | Buffer, p: string): void {
  fs.symlinkSync(typeof target === 'string' ? osPath(target) : target, osPath(p));
}

export function readlinkSync(p: string): Buffer {
  return fs.readlinkSync(osPath(p), { encoding: 'buffer' });
}

export function unlinkSync(p: string): void {
  fs.unlinkSync(osPath(p));
}

export function rmdirSync(p: string): void {
  fs.rmdirSync(osPath(p));
}

/** rm -r (Node removes a Buffer path's children by their bytes). */
export function rmSync(p: string, o: { recursive?: boolean; force?: boolean }): void {
  fs.rmSync(osPath(p), o);
}

/** Names in a directory. */
export function readdirSync(p: string): string[] {
  return fs.readdirSync(osPath(p), { encoding: 'buffer' }).map((b) => b.toString('latin1'));
}

/** A directory entry whose name is a byte string. */
export type ByteDirent = Omit<Dirent, 'name' | 'path' | 'parentPath'> & { name: string };

/** Entries of a directory, with their types. */
export function readdirEntries(p: string): ByteDirent[] {
  const ents = fs.readdirSync(osPath(p), { encoding: 'buffer', withFileTypes: true }) as unknown as fs.Dirent<Buffer>[];
  return ents.map((d) => {
    const e = d as unknown as { name: Buffer | string };
    e.name = (e.name as Buffer).toString('latin1');
    return d as unknown as ByteDirent;
  });
}

export function openAsync(p: string, flags: number, mode?: number): Promise<fsp.FileHandle> {
  return fsp.open(osPath(p), flags, mode);
}

export function copyFileSync(src: string, dst: string, mode: number): void {
  fs.copyFileSync(osPath(src), osPath(dst), mode);
}

export function copyFileAsync(src: string, dst: string, mode: number): Promise<void> {
  return fsp.copyFile(osPath(src), osPath(dst), mode);
}

// ---------------------------------------------------------------------------- src/sys
// (xattr names stay text: UTF-8, as the kernel's xattr API is used by every tool.)

export function mknod(p: string, mode: number, dev: number | bigint = 0): void {
  sys.mknod(osPath(p), mode, dev);
}

export function lgetxattr(p: string, name: string): Buffer | null {
  return sys.lgetxattr(osPath(p), name);
}

export function llistxattr(p: string): string[] {
  return sys.llistxattr(osPath(p));
}

export function lsetxattr(p: string, name: string, value: Buffer | string, flags = 0): void {
  sys.lsetxattr(osPath(p), name, value, flags);
}

export function lremovexattr(p: string, name: string): void {
  sys.lremovexattr(osPath(p), name);
}

export function copyFileWithMeta(
  src: string, dst: string, skip: readonly [string, string], owner: { uid: number; gid: number },
  mode: number, atime: sys.Timespec, mtime: sys.Timespec,
): boolean {
  return sys.copyFileWithMeta(osPath(src), osPath(dst), skip, owner, mode, atime, mtime);
}

export function renameat2(from: string, to: string, flags: number): void {
  sys.renameat2(osPath(from), osPath(to), flags);
}

export function utimensat(p: string, atime: sys.TimeArg, mtime: sys.TimeArg, opts: { nofollow?: boolean } = {}): void {
  sys.utimensat(osPath(p), atime, mtime, opts);
}

export function statfs(p: string): sys.StatFs {
  return sys.statfs(osPath(p));
}
