// Helpers shared by the crash and fault tests (test/crash/), the hostile-layer tests
// (test/hostile/) and scripts/crash-long.ts. Not a test file (ava only runs *.test.ts).

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readState } from '../../src/engine/state.ts';
import { run } from '../helpers/exec.ts';
import { isMounted, layerfsBin } from '../helpers/mounts.ts';
import { processAlive } from '../../src/engine/mount.ts';
import { mulberry32 } from '../helpers/random.ts';

export const fsp = fs.promises;

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ------------------------------------------------------------------------------ seeded randomness

/** A seedable PRNG (mulberry32); returns floats in [0, 1). */
export const rng = mulberry32;

/** The seed: LAYERFS_CRASH_SEED when set (to replay a failure), else a fresh one. */
export function pickSeed(): number {
  const env = process.env.LAYERFS_CRASH_SEED;
  if (env && /^\d+$/.test(env)) return Number(env) >>> 0;
  return (Date.now() ^ (process.pid << 16) ^ Math.floor(Math.random() * 0xffffffff)) >>> 0;
}

export function int(r: () => number, n: number): number {
  return Math.floor(r() * n);
}

export function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[int(r, xs.length)]!;
}

// ------------------------------------------------------------------------------ processes

/** Is pid a running process (not gone, not a zombie waiting to be reaped)? */
export { processAlive };

/** Wait until pid has exited (zombies count as exited). False on timeout. */
export async function waitDead(pid: number, timeoutMs = 20_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (Date.now() > until) return false;
    await sleep(5);
  }
  return true;
}

/** The pid serving `mnt` (its engine's, or its mount -f daemon's), from the state file. */
export function daemonPid(mnt: string, engineDir?: string): number {
  const st = readState(path.resolve(mnt), engineDir);
  if (!st?.pid) throw new Error(`no layerfs state file (daemon pid) for ${mnt}`);
  return st.pid;
}

// ------------------------------------------------------------------------------ after a kill

/**
 * What must hold right after the daemon was killed: the mount answers ENOTCONN, and
 * `bin/layerfs umount` removes it. Returns the problems found.
 */
export async function deadMountChecks(mnt: string): Promise<string[]> {
  const problems: string[] = [];
  // A listing always asks the daemon (OPENDIR). A stat may not: the kernel answers it from the
  // attributes it caches (timeout=, 60 s by default), whether the daemon still lives or not.
  try {
    fs.readdirSync(mnt);
    problems.push(`listing the dead mount ${mnt} succeeded (expected ENOTCONN)`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOTCONN') problems.push(`listing the dead mount: ${code} (expected ENOTCONN)`);
  }
  const r = await run(layerfsBin, ['umount', mnt], { viaFiles: true, timeoutMs: 60_000 });
  if (r.code !== 0) problems.push(`layerfs umount of the dead mount: exit ${r.code}: ${r.stderr.trim()}`);
  if (isMounted(mnt)) problems.push(`${mnt} still mounted after layerfs umount`);
  return problems;
}

/** Entries of workdir/work (what a crash left there), with sizes. */
export function workEntries(work: string): { name: string; size: number; type: string }[] {
  const w = path.join(work, 'work');
  let names: string[];
  try {
    names = fs.readdirSync(w);
  } catch {
    return [];
  }
  return names.map((name) => {
    try {
      const st = fs.lstatSync(path.join(w, name));
      return { name, size: st.size, type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other' };
    } catch {
      return { name, size: -1, type: 'gone' };
    }
  });
}

// ------------------------------------------------------------------------------ hashing and trees

export function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/** sha256 of a file, streamed (large files, FUSE mounts). */
export function hashFile(p: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    const s = fs.createReadStream(p, { highWaterMark: 1 << 20 });
    s.on('data', (d) => h.update(d));
    s.on('error', reject);
    s.on('end', () => resolve(h.digest('hex')));
  });
}

/**
 * sha256 of files already hashed, by inode, size, mtime and ctime: any change to a file's data
 * moves its ctime (the kernel sets it; no call can set it back), so an unchanged key means
 * unchanged bytes. For repeated fingerprints of big layers; a final check goes without.
 */
export type HashCache = Map<string, string>;

/**
 * A fingerprint of a layer: per entry type, mode, owner, size, inode, nlink, mtime and ctime
 * (any change to an inode, data or metadata or xattr, moves its ctime), symlink targets,
 * device numbers, xattrs, and the sha256 of every regular file (once per inode). Two equal
 * fingerprints mean the layer is byte-identical and untouched.
 */
export async function layerPrint(root: string, cache?: HashCache): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const hashes = new Map<bigint, string>();
  const { llistxattr, lgetxattr } = await import('../../src/sys/index.ts');
  const visit = async (abs: string, rel: string): Promise<void> => {
    const st = fs.lstatSync(abs, { bigint: true });
    let extra = '';
    if (st.isFile()) {
      let h = hashes.get(st.ino);
      const key = `${st.ino} ${st.size} ${st.mtimeNs} ${st.ctimeNs}`;
      if (!h && cache) h = cache.get(key);
      if (!h) {
        h = await hashFile(abs);
        hashes.set(st.ino, h);
        cache?.set(key, h);
      }
      extra = ` sha256=${h}`;
    } else if (st.isSymbolicLink()) {
      extra = ` target=${fs.readlinkSync(abs)}`;
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      extra = ` rdev=${st.rdev}`;
    }
    const xattrs = llistxattr(abs)
      .sort()
      .map((n) => `${n}=${lgetxattr(abs, n)?.toString('hex')}`)
      .join(',');
    out.set(
      rel,
      `mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} size=${st.isDirectory() ? '-' : st.size} ino=${st.ino} ` +
        `nlink=${st.isDirectory() ? '-' : st.nlink} mtime=${st.mtimeNs} ctime=${st.ctimeNs}${extra} xattrs=[${xattrs}]`,
    );
    if (st.isDirectory()) {
      for (const n of fs.readdirSync(abs).sort()) await visit(path.join(abs, n), rel === '.' ? n : `${rel}/${n}`);
    }
  };
  await visit(root, '.');
  return out;
}

export function diffPrints(a: Map<string, string>, b: Map<string, string>, what: string): string[] {
  const out: string[] = [];
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    if (a.get(k) !== b.get(k)) out.push(`${what}: ${k}: before ${a.get(k) ?? '(none)'} / after ${b.get(k) ?? '(none)'}`);
  }
  return out;
}

/** A union (or plain) tree as rel → "dir" | "file:<sha256>" | "symlink:<target>" | "other". */
export async function treeState(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = async (abs: string, rel: string): Promise<void> => {
    for (const n of (await fsp.readdir(abs)).sort()) {
      const p = path.join(abs, n);
      const r = rel ? `${rel}/${n}` : n;
      const st = await fsp.lstat(p);
      if (st.isDirectory()) {
        out.set(r, 'dir');
        await visit(p, r);
      } else if (st.isFile()) {
        out.set(r, `file:${sha256(await fsp.readFile(p))}`);
      } else if (st.isSymbolicLink()) {
        out.set(r, `symlink:${await fsp.readlink(p)}`);
      } else {
        out.set(r, 'other');
      }
    }
  };
  await visit(root, '');
  return out;
}

export function sameMap(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** The differences between two tree states, for messages (at most `max` lines). */
export function showDiff(actual: Map<string, string>, expected: Map<string, string>, max = 12): string {
  const lines: string[] = [];
  for (const k of [...new Set([...actual.keys(), ...expected.keys()])].sort()) {
    const a = actual.get(k);
    const e = expected.get(k);
    if (a !== e) lines.push(`  ${k}: actual ${short(a)} expected ${short(e)}`);
  }
  return lines.slice(0, max).join('\n') + (lines.length > max ? `\n  … ${lines.length - max} more` : '');
}

function short(v: string | undefined): string {
  if (v === undefined) return '(absent)';
  return v.startsWith('file:') ? `file:${v.slice(5, 17)}` : v;
}

// ------------------------------------------------------------------------------ tools

export function which(cmd: string): string | null {
  for (const dir of (process.env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}
