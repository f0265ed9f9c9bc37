// Shared fixture for the FUSE tests (test/fuse/*.test.ts): one fresh layer set and one
// mount per test, plus the checks every writing test ends with.
//
// By default the mount is layerfs. With LAYERFS_FUSE_TARGET=kernel the very same tests run on
// kernel overlayfs (mounted with redirect_dir=off, the behaviour layerfs implements), which is
// how the expectations written here were checked against the reference:
//
//     LAYERFS_FUSE_TARGET=kernel npx ava test/fuse/
//
// Not a test file itself (ava only picks up *.test.ts).

import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildLayers, type LayerSet } from '../diff/layers.ts';
import { run, runOk, errnoFromMessage, type RunResult } from '../helpers/exec.ts';
import { makeTmp, mountFor, type MountTarget } from '../helpers/mounts.ts';
import { compareSnapshots, snapshotTree, type Snapshot } from '../helpers/snapshot.ts';

export const TARGET: MountTarget = process.env.LAYERFS_FUSE_TARGET === 'kernel' ? 'kernel' : 'layerfs';

/** A non-root owner for lower objects, so that copy-up of the owner is visible. */
export const UID = 1234;
export const GID = 5678;
export const OPAQUE_XATTR = 'trusted.overlay.opaque';

export interface Env {
  /** The test's temp dir (everything below it is removed in teardown, after unmounting). */
  dir: string;
  /** Lower layer roots, top-most first. */
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
  /** Path through the mount. */
  m(rel?: string): string;
  /** Path in the upper layer. */
  u(rel?: string): string;
  /** Path in lower layer i (0 = top-most). */
  l(i: number, rel?: string): string;
  /** Fingerprints of the lowers taken right before mounting. */
  lowerPrints: LowerPrint[];
}

export interface SetupOptions {
  /** No upperdir/workdir: a read-only union. */
  noUpper?: boolean;
  /** Extra mount options. */
  options?: string[];
  /** Called after the layers are written and before the lowers are fingerprinted and mounted. */
  prepare?: (e: Omit<Env, 'lowerPrints'>) => void | Promise<void>;
}

// ---------------------------------------------------------------------------------------
// a small limiter: every test of a file runs concurrently in ava, and each mount is a daemon

const MAX_MOUNTS = Number(process.env.LAYERFS_FUSE_PARALLEL ?? 3);
let active = 0;
const waiting: (() => void)[] = [];

async function acquire(): Promise<void> {
  if (active < MAX_MOUNTS) {
    active++;
    return;
  }
  await new Promise<void>((r) => waiting.push(r));
}

function release(): void {
  const next = waiting.shift();
  if (next) next();
  else active--;
}

// ---------------------------------------------------------------------------------------
// set-up

function rel(root: string, p = ''): string {
  return p === '' || p === '.' ? root : path.join(root, p);
}

/** Write the layers, fingerprint the lowers, mount (unmount registered in teardown first). */
export async function setup(t: ExecutionContext, spec: LayerSet, opts: SetupOptions = {}): Promise<Env> {
  const dir = makeTmp(t, 'layerfs-fuse-');
  const built = await buildLayers(spec, path.join(dir, 'layers'), { format: 'kernel' });
  const upper = built.upper ?? path.join(dir, 'layers', 'upper');
  const work = path.join(dir, 'layers', 'work');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(upper, { recursive: true });
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(mnt);
  const base = {
    dir,
    lowers: built.lowers,
    upper,
    work,
    mnt,
    m: (p?: string) => rel(mnt, p),
    u: (p?: string) => rel(upper, p),
    l: (i: number, p?: string) => rel(built.lowers[i]!, p),
  };
  await opts.prepare?.(base);
  const lowerPrints = await Promise.all(built.lowers.map((l) => lowerPrint(l)));
  const options = [...(opts.options ?? [])];
  if (TARGET === 'kernel') options.push('redirect_dir=off');
  await mountFor(t, TARGET, {
    lowers: built.lowers,
    upper: opts.noUpper ? undefined : upper,
    work: opts.noUpper ? undefined : work,
    mnt,
    options,
  });
  return { ...base, lowerPrints };
}

/**
 * A test body on a fresh layer set: mounts, runs `body`, then checks that no lower layer was
 * modified in any way (contents, metadata, xattrs, ctimes, entries added or removed).
 */
export function withLayers(
  spec: LayerSet | (() => LayerSet),
  body: (t: ExecutionContext, e: Env) => Promise<void>,
  opts: SetupOptions = {},
): (t: ExecutionContext) => Promise<void> {
  return async (t) => {
    await acquire();
    try {
      const e = await setup(t, typeof spec === 'function' ? spec() : spec, opts);
      await body(t, e);
      await assertLowersUnchanged(t, e);
    } finally {
      release();
    }
  };
}

// ---------------------------------------------------------------------------------------
// "the lowers are never modified"

export interface LowerPrint {
  root: string;
  /** Contents, modes, owners, xattrs of all namespaces (snapshot 'raw'). */
  snap: Snapshot;
  /** path → "ino mtime ctime nlink": any change to an inode (data, metadata, xattr) moves its ctime. */
  times: Map<string, string>;
}

function walkTimes(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (p: string, r: string): void => {
    const st = fs.lstatSync(p, { bigint: true });
    out.set(r, `ino=${st.ino} mtime=${st.mtimeNs} ctime=${st.ctimeNs} nlink=${st.nlink}`);
    if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) visit(path.join(p, n), r === '.' ? n : `${r}/${n}`);
  };
  visit(root, '.');
  return out;
}

export async function lowerPrint(root: string): Promise<LowerPrint> {
  return { root, snap: await snapshotTree(root, 'raw'), times: walkTimes(root) };
}

export function compareTimes(a: Map<string, string>, b: Map<string, string>, what: string): string[] {
  const out: string[] = [];
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    if (a.get(k) !== b.get(k)) out.push(`${what}: ${k}: before ${a.get(k) ?? '(none)'} after ${b.get(k) ?? '(none)'}`);
  }
  return out;
}

export async function assertLowersUnchanged(t: ExecutionContext, e: Env): Promise<void> {
  const diffs: string[] = [];
  for (const [i, before] of e.lowerPrints.entries()) {
    const after = await lowerPrint(before.root);
    diffs.push(...compareSnapshots(before.snap, after.snap, ['before', 'after'], `lower${i}`));
    diffs.push(...compareTimes(before.times, after.times, `lower${i}`));
  }
  t.deepEqual(diffs, [], 'a lower layer was modified');
}

// ---------------------------------------------------------------------------------------
// small helpers

export function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/** lstat (bigint) or null when the path does not exist. */
export function lst(p: string): fs.BigIntStats | null {
  try {
    return fs.lstatSync(p, { bigint: true });
  } catch (err) {
    const c = (err as NodeJS.ErrnoException).code;
    if (c === 'ENOENT' || c === 'ENOTDIR') return null;
    throw err;
  }
}

export type Kind = 'missing' | 'whiteout' | 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';

/** What is at p, without following it; a character device 0/0 is a 'whiteout'. */
export function kindOf(p: string): Kind {
  const st = lst(p);
  if (!st) return 'missing';
  if (st.isCharacterDevice()) return st.rdev === 0n ? 'whiteout' : 'chardev';
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isBlockDevice()) return 'blockdev';
  return 'socket';
}

export function mode(p: string): number {
  return Number(fs.lstatSync(p).mode) & 0o7777;
}

/** The opaque xattr of a real (layer) directory, or null. */
export async function opaqueOf(p: string): Promise<string | null> {
  const r = await run('getfattr', ['-h', '--only-values', '-n', OPAQUE_XATTR, '--', p]);
  return r.code === 0 ? r.stdout.toString('utf8') : null;
}

/** Run a command; its result plus the errno name its error message maps to. */
export async function sh(cmd: string, ...args: string[]): Promise<RunResult & { errno: string | null; out: string }> {
  const r = await run(cmd, args, { timeoutMs: 60_000 });
  return { ...r, errno: r.code === 0 ? null : errnoFromMessage(r.stderr), out: r.stdout.toString('utf8') };
}

export async function shOk(cmd: string, ...args: string[]): Promise<string> {
  return (await runOk(cmd, args, { timeoutMs: 60_000 })).stdout.toString('utf8');
}

/** Sorted names of a directory through readdir(3) (no . and ..). */
export async function names(p: string): Promise<string[]> {
  return (await fs.promises.readdir(p)).sort();
}

/** Every relative path below root (not following symlinks), sorted. */
export function listTree(root: string): string[] {
  const out: string[] = [];
  const visit = (p: string, r: string): void => {
    for (const n of fs.readdirSync(p).sort()) {
      const rr = r ? `${r}/${n}` : n;
      out.push(rr);
      if (fs.lstatSync(path.join(p, n)).isDirectory()) visit(path.join(p, n), rr);
    }
  };
  visit(root, '');
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
