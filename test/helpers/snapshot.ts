// Snapshot of a directory tree (a merged view, an upper dir, a lower dir) as a
// sorted list of plain entries, and a field-by-field comparison of two
// snapshots.
//
// Recorded per entry: relative path ('.' is the root itself), type,
// permission bits (incl. suid/sgid/sticky), uid, gid, size and sha256 of
// regular files, symlink target, nlink of non-directories, rdev of devices,
// and xattrs according to the snapshot kind.
//
// NOT recorded (on purpose, in this first version): times, inode numbers,
// directory sizes and directory link counts — they legitimately differ
// between a kernel filesystem and a FUSE one, or between two runs.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { dumpXattrs, showXattrValue } from './xattr.ts';
import { isMounted } from './mounts.ts';

/**
 * A plain listing of everything under dir (names, modes, sizes, mtimes), not descending into
 * mount points: compare two to prove a refused command changed nothing.
 */
export function listTree(dir: string): string {
  const out: string[] = [];
  const walk = (p: string) => {
    for (const n of fs.readdirSync(p).sort()) {
      const f = path.join(p, n);
      const st = fs.lstatSync(f);
      out.push(`${path.relative(dir, f)} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory() && !isMounted(f)) walk(f);
    }
  };
  walk(dir);
  return out.join('\n');
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket' | 'whiteout' | 'unknown';

export interface SnapEntry {
  path: string;
  type: EntryType;
  mode?: string;
  uid?: number;
  gid?: number;
  size?: number;
  sha256?: string;
  target?: string;
  nlink?: number;
  rdev?: string;
  /** name → printable value (see showXattrValue). */
  xattrs?: Record<string, string>;
  /** Upper snapshots only: value of the overlay opaque xattr on a directory. */
  opaque?: string;
  /** Problems met while reading this entry (e.g. content read failing with EIO). */
  error?: string;
}

export interface Snapshot {
  entries: SnapEntry[];
  /** Errors not tied to one entry (readdir failures, getfattr complaints), paths relative. */
  errors: string[];
}

/**
 * Kinds of snapshot:
 *  - 'merged': a mounted view. xattrs: user.* only.
 *  - 'upper': an overlayfs upper dir. xattrs: user.* (except user.overlay.*,
 *    which is overlayfs' namespace under the userxattr option), plus the opaque
 *    marker of directories; a character device 0/0 is recorded as a 'whiteout'
 *    (type only: its mode and link count are implementation details — the
 *    kernel hard-links all whiteouts to one shared inode, so their nlink
 *    depends on how many whiteouts exist).
 *    All other overlay xattrs — trusted.overlay.origin (a file handle of the
 *    lower inode), .impure (a cache flag saying a dir may contain copied-up
 *    entries), .uuid, .redirect, .metacopy, .nlink, ... — are ignored: they
 *    are file handles and caches, not the semantics being compared.
 *  - 'raw': everything, all xattr namespaces (used to check a layer was not modified).
 */
export type SnapshotKind = 'merged' | 'upper' | 'raw';

const OPAQUE_XATTRS = ['trusted.overlay.opaque', 'user.overlay.opaque'];

function keepXattr(kind: SnapshotKind, name: string): boolean {
  if (kind === 'raw') return true;
  if (!name.startsWith('user.')) return false;
  if (kind === 'upper' && name.startsWith('user.overlay.')) return false;
  return true;
}

function typeOf(st: fs.BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

/** Linux dev_t → "major:minor". */
export function devString(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

export function octalMode(mode: number | bigint): string {
  return '0' + (Number(mode) & 0o7777).toString(8).padStart(3, '0');
}

function errCode(e: unknown): string {
  const c = (e as NodeJS.ErrnoException | null)?.code;
  return typeof c === 'string' ? c : String(e);
}

async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  h.update(await fs.promises.readFile(p));
  return h.digest('hex');
}

/** Take a snapshot of the tree rooted at `root`. */
export async function snapshotTree(root: string, kind: SnapshotKind): Promise<Snapshot> {
  root = path.resolve(root);
  const entries: SnapEntry[] = [];
  const errors: string[] = [];
  const abs = new Map<string, string>(); // rel → absolute path, for the xattr pass

  const visit = async (rel: string): Promise<void> => {
    const p = rel === '.' ? root : path.join(root, rel);
    let st: fs.BigIntStats;
    try {
      st = await fs.promises.lstat(p, { bigint: true });
    } catch (e) {
      entries.push({ path: rel, type: 'unknown', error: `lstat: ${errCode(e)}` });
      return;
    }
    const type = typeOf(st);
    const e: SnapEntry = { path: rel, type };
    entries.push(e);
    if (kind === 'upper' && type === 'chardev' && st.rdev === 0n) {
      e.type = 'whiteout';
      e.uid = Number(st.uid);
      e.gid = Number(st.gid);
      return;
    }
    abs.set(rel, p);
    e.mode = octalMode(st.mode);
    e.uid = Number(st.uid);
    e.gid = Number(st.gid);
    if (type !== 'dir') e.nlink = Number(st.nlink);
    if (type === 'file') {
      e.size = Number(st.size);
      try {
        e.sha256 = await sha256File(p);
      } catch (err) {
        e.error = `read: ${errCode(err)}`;
      }
    } else if (type === 'symlink') {
      try {
        e.target = await fs.promises.readlink(p);
      } catch (err) {
        e.error = `readlink: ${errCode(err)}`;
      }
    } else if (type === 'chardev' || type === 'blockdev') {
      e.rdev = devString(st.rdev);
    } else if (type === 'dir') {
      let names: string[];
      try {
        names = await fs.promises.readdir(p);
      } catch (err) {
        e.error = `readdir: ${errCode(err)}`;
        return;
      }
      names.sort();
      for (const n of names) await visit(rel === '.' ? n : `${rel}/${n}`);
    }
  };
  await visit('.');

  // xattrs: one getfattr run for all entries (whiteouts excluded).
  const byAbs = new Map<string, SnapEntry>();
  for (const e of entries) {
    const a = abs.get(e.path);
    if (a) byAbs.set(a, e);
  }
  const { xattrs, errors: xerrs } = await dumpXattrs([...byAbs.keys()]);
  for (const [a, m] of xattrs) {
    const e = byAbs.get(a);
    if (!e) continue;
    for (const [name, value] of m) {
      if (kind === 'upper' && e.type === 'dir' && OPAQUE_XATTRS.includes(name)) {
        e.opaque = showXattrValue(value);
        continue;
      }
      if (!keepXattr(kind, name)) continue;
      (e.xattrs ??= {})[name] = showXattrValue(value);
    }
  }
  for (const x of xerrs) errors.push(x.split(root).join('<root>'));
  for (const e of entries) {
    if (e.xattrs) e.xattrs = Object.fromEntries(Object.entries(e.xattrs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { entries, errors };
}

const FIELDS: (keyof SnapEntry)[] = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'nlink', 'rdev', 'xattrs', 'opaque', 'error'];

function show(v: unknown): string {
  if (v === undefined) return '(none)';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/**
 * Human-readable differences between two snapshots: one line per path that
 * exists on one side only and per differing field.
 */
export function compareSnapshots(a: Snapshot, b: Snapshot, labels: [string, string], what: string): string[] {
  const out: string[] = [];
  const [la, lb] = labels;
  const ma = new Map(a.entries.map((e) => [e.path, e]));
  const mb = new Map(b.entries.map((e) => [e.path, e]));
  const paths = [...new Set([...ma.keys(), ...mb.keys()])].sort();
  for (const p of paths) {
    const ea = ma.get(p);
    const eb = mb.get(p);
    if (!ea || !eb) {
      const only = ea ? la : lb;
      const e = (ea ?? eb)!;
      out.push(`${what}: ${p}: only in ${only} (${e.type}${e.mode ? ' ' + e.mode : ''})`);
      continue;
    }
    for (const f of FIELDS) {
      const va = show(ea[f]);
      const vb = show(eb[f]);
      if (va !== vb) out.push(`${what}: ${p}: ${f}: ${la}=${va} ${lb}=${vb}`);
    }
  }
  const ea = a.errors.join('\n');
  const eb = b.errors.join('\n');
  if (ea !== eb) out.push(`${what}: errors while reading: ${la}=${JSON.stringify(a.errors)} ${lb}=${JSON.stringify(b.errors)}`);
  return out;
}
