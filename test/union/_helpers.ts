// Shared fixtures for the union-core tests (plain directories, no FUSE).
//
// Every test gets its own temp dir under os.tmpdir() with lowerN/, upper/, work/ (removed in
// teardown). Layers are written with synchronous calls (node:fs and src/sys), so a test body
// reads as "plant this, do that, look at the union and at the disk".

import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { UnionFs, type UnionOptions } from '../../src/union/unionfs.ts';

export const OPAQUE_XATTR = 'trusted.overlay.opaque';
export const { O_RDONLY, O_WRONLY, O_RDWR, O_TRUNC, O_CREAT, O_EXCL } = fs.constants;
export const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR } = fs.constants;

/** A non-root owner for lower files, so that copy-up of the owner is visible. */
export const UID = 1234;
export const GID = 5678;

export interface Env {
  dir: string;
  lowers: string[];
  upper: string;
  work: string;
  /** The union, built lazily by union() so a test can plant its layers first. */
  union(opts?: Partial<UnionOptions>): UnionFs;
}

export function tmpDir(t: ExecutionContext, prefix = 'layerfs-union-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** nLowers lower dirs (lower0 is the top-most), an upper and a workdir, all empty. */
export function env(t: ExecutionContext, nLowers = 1): Env {
  const dir = tmpDir(t);
  const lowers = Array.from({ length: nLowers }, (_, i) => path.join(dir, `lower${i}`));
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  for (const d of [...lowers, upper, work]) fs.mkdirSync(d);
  return {
    dir,
    lowers,
    upper,
    work,
    union(opts = {}) {
      const u = new UnionFs({ lowerdirs: lowers, upperdir: upper, workdir: work, ...opts });
      u.prepareWorkdir();
      return u;
    },
  };
}

// ------------------------------------------------------------------ planting layer contents

export interface Meta {
  mode?: number;
  uid?: number;
  gid?: number;
  /** mtime (and atime) in nanoseconds since the epoch. */
  timeNs?: bigint;
  xattrs?: Record<string, string>;
}

function applyMeta(abs: string, m: Meta, isLink = false): void {
  if (m.uid !== undefined || m.gid !== undefined) fs.lchownSync(abs, m.uid ?? 0, m.gid ?? 0);
  if (m.mode !== undefined && !isLink) fs.chmodSync(abs, m.mode);
  for (const [k, v] of Object.entries(m.xattrs ?? {})) sys.lsetxattr(abs, k, v);
  if (m.timeNs !== undefined) {
    const ts = sys.timespecFromNs(m.timeNs);
    sys.utimensat(abs, ts, ts, { nofollow: true });
  }
}

/** Create the parents of root/rel as plain 0755 directories. */
function parents(root: string, rel: string): string {
  const abs = path.join(root, rel);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  return abs;
}

export function file(root: string, rel: string, content: string | Buffer = '', m: Meta = {}): string {
  const abs = parents(root, rel);
  fs.writeFileSync(abs, content);
  applyMeta(abs, m);
  return abs;
}

export function dir(root: string, rel: string, m: Meta = {}): string {
  const abs = parents(root, rel);
  fs.mkdirSync(abs);
  applyMeta(abs, m);
  return abs;
}

export function symlink(root: string, rel: string, target: string, m: Meta = {}): string {
  const abs = parents(root, rel);
  fs.symlinkSync(target, abs);
  applyMeta(abs, m, true);
  return abs;
}

export function fifo(root: string, rel: string, m: Meta = {}): string {
  const abs = parents(root, rel);
  sys.mknod(abs, S_IFIFO | 0o644, 0);
  applyMeta(abs, m);
  return abs;
}

/** Kernel-format whiteout: character device 0/0. */
export function whiteout(root: string, rel: string): string {
  const abs = parents(root, rel);
  sys.mknod(abs, S_IFCHR, 0);
  return abs;
}

/** OCI-format whiteout: an empty file `.wh.NAME` beside NAME. */
export function ociWhiteout(root: string, rel: string): string {
  const abs = parents(root, path.join(path.dirname(rel), '.wh.' + path.basename(rel)));
  fs.writeFileSync(abs, '');
  return abs;
}

/** Kernel-format opaque directory (created if missing). */
export function opaque(root: string, rel: string): string {
  const abs = path.join(root, rel);
  fs.mkdirSync(abs, { recursive: true });
  sys.lsetxattr(abs, OPAQUE_XATTR, 'y');
  return abs;
}

/** OCI-format opaque directory (created if missing): contains `.wh..wh..opq`. */
export function ociOpaque(root: string, rel: string): string {
  const abs = path.join(root, rel);
  fs.mkdirSync(abs, { recursive: true });
  fs.writeFileSync(path.join(abs, '.wh..wh..opq'), '');
  return abs;
}

// ------------------------------------------------------------------ looking at the disk

export function lstatOrNull(abs: string): fs.BigIntStats | null {
  try {
    return fs.lstatSync(abs, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export function isWhiteout(abs: string): boolean {
  const st = lstatOrNull(abs);
  return st !== null && st.isCharacterDevice() && st.rdev === 0n;
}

export function isOpaque(abs: string): boolean {
  return sys.lgetxattr(abs, OPAQUE_XATTR)?.toString() === 'y';
}

export function xattrs(abs: string | Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of sys.llistxattr(abs).sort()) out[n] = sys.lgetxattr(abs, n)?.toString('hex') ?? '';
  return out;
}

/** Names in a real directory, sorted. */
export function ls(abs: string): string[] {
  return fs.readdirSync(abs).sort();
}

/**
 * Everything about a tree that a write could change, per relative path: type, mode, owner,
 * size, content hash, link target, rdev, inode, mtime and ctime (ns), all xattrs. atime is left
 * out (reading a lower legitimately changes it). Symlinks are never followed.
 */
export function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  // rel: a byte string (names may not be UTF-8); abs: the bytes of the path.
  const visit = (rel: string): void => {
    const abs = Buffer.concat([Buffer.from(root, 'utf8'), Buffer.from(rel ? '/' + rel : '', 'latin1')]);
    const st = fs.lstatSync(abs, { bigint: true });
    const parts: string[] = [
      `mode=${st.mode.toString(8)}`,
      `uid=${st.uid}`,
      `gid=${st.gid}`,
      `ino=${st.ino}`,
      `nlink=${st.nlink}`,
      `mtime=${st.mtimeNs}`,
      `ctime=${st.ctimeNs}`,
      `rdev=${st.rdev}`,
      `xattrs=${JSON.stringify(xattrs(abs))}`,
    ];
    if (st.isFile()) {
      parts.push(`size=${st.size}`, `sha=${createHash('sha256').update(fs.readFileSync(abs)).digest('hex')}`);
    } else if (st.isSymbolicLink()) {
      parts.push(`target=${fs.readlinkSync(abs)}`);
    }
    out[rel || '.'] = parts.join(' ');
    if (st.isDirectory()) {
      for (const n of fs.readdirSync(abs, { encoding: 'buffer' }).map((b) => b.toString('latin1')).sort()) visit(rel ? `${rel}/${n}` : n);
    }
  };
  visit('');
  return out;
}

/** Snapshot the given roots now; the returned function asserts they are unchanged. */
export function guard(t: ExecutionContext, ...roots: string[]): () => void {
  const before = roots.map(snapshot);
  return () => {
    roots.forEach((r, i) => t.deepEqual(snapshot(r), before[i], `${r} was modified`));
  };
}

// ------------------------------------------------------------------ union helpers

export function names(u: UnionFs, p: string): string[] {
  return u
    .readdir(p)
    .map((d) => d.name)
    .sort();
}

export async function readAll(u: UnionFs, p: string): Promise<string> {
  const fd = await u.open(p, O_RDONLY);
  try {
    const chunks: Buffer[] = [];
    let pos = 0;
    for (;;) {
      const buf = Buffer.alloc(65536);
      const n = await u.read(fd, buf, buf.length, pos);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      pos += n;
    }
    return Buffer.concat(chunks).toString();
  } finally {
    u.release(fd);
  }
}

export async function writeAt(u: UnionFs, p: string, data: string, pos = 0, flags = O_WRONLY): Promise<void> {
  const fd = await u.open(p, flags);
  try {
    const b = Buffer.from(data);
    await u.write(fd, b, b.length, pos);
  } finally {
    u.release(fd);
  }
}

/** Nothing may be left in workdir/work after an operation. */
export function assertWorkEmpty(t: ExecutionContext, e: Env): void {
  t.deepEqual(ls(path.join(e.work, 'work')), [], 'workdir/work is not empty');
}

export function ns(sec: number, nsec: number): bigint {
  return BigInt(sec) * 1_000_000_000n + BigInt(nsec);
}
