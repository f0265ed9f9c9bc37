// Mount helpers shared by every test that mounts something (kernel overlayfs
// as the reference, layerfs through FUSE).
//
// THE PATTERN every test must follow, so that a failing test never leaves a
// mount behind:
//
//     const dir = makeTmp(t);                  // removed in teardown (after unmounting
//                                              // anything still mounted below it)
//     const mnt = path.join(dir, 'mnt');
//     fs.mkdirSync(mnt);
//     t.teardown(() => unmount(mnt));          // register BEFORE mounting
//     await mountLayerfs({ lowers, upper, work, mnt });
//
// or, outside ava, `try { await mountX(...); ... } finally { await unmount(mnt); }`
// with the try opened before the mount call. unmount() is a no-op when nothing
// is mounted there, so registering it early is always safe.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, type RunResult } from './exec.ts';

/** Repository root (this file lives in <root>/test/helpers/). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const layerfsBin = path.join(repoRoot, 'bin', 'layerfs');

/** The part of ava's ExecutionContext the helpers need (keeps them framework-agnostic). */
export interface TeardownContext {
  teardown(fn: () => void | Promise<void>): void;
}

export type MountTarget = 'kernel' | 'layerfs';

export interface MountSpec {
  /** Lower layers, TOP-MOST FIRST (same order as overlayfs' lowerdir=). */
  lowers: readonly string[];
  upper?: string;
  work?: string;
  mnt: string;
  /** Extra mount options, e.g. ['ro'] or ['redirect_dir=on']; a string is taken as already comma-joined. */
  options?: readonly string[] | string;
  /** How long the mount command may take. Default 30 s. */
  timeoutMs?: number;
  /**
   * The engine that serves it (LAYERFS_ENGINE_DIR; see privateEngine): a test that kills the
   * server of its mount kills that engine, never the one the other tests' mounts share.
   */
  engineDir?: string;
}

// ---------------------------------------------------------------------------
// engines

/** The pid of the engine of `dir` (from its lock file), or null when none runs there. */
export function enginePid(dir: string): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'engine.lock'), 'utf8').trim());
    if (!pid || !fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('engine')) return null;
    return pid;
  } catch {
    return null;
  }
}

/** Stop the engine of `dir` if one runs (SIGTERM: it detaches its mounts), waiting for it. */
export async function stopEngineIn(dir: string): Promise<void> {
  const pid = enginePid(dir);
  if (pid === null) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 300; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    if (/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  process.kill(pid, 'SIGKILL');
}

/**
 * An engine directory of the test's own (MountSpec.engineDir): its engine starts with the first
 * mount made there and is stopped in teardown (registered before makeTmp's removal).
 */
export function privateEngine(t: TeardownContext): string {
  const dir = makeTmp(t, 'layerfs-test-engine-');
  t.teardown(() => stopEngineIn(dir));
  return dir;
}

// ---------------------------------------------------------------------------
// temp dirs

/**
 * A fresh directory `<tmpdir>/layerfs-test-XXXXXX`. With a test context it is
 * removed in teardown — after unmounting anything still mounted at or below
 * it, so a forgotten mount is cleaned up instead of being recursed into.
 */
export function makeTmp(t?: TeardownContext, prefix = 'layerfs-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (t) t.teardown(() => removeTmp(dir));
  return dir;
}

/** Unmount everything below `dir` (deepest first), then delete it. Refuses to delete through a mount. */
export async function removeTmp(dir: string): Promise<void> {
  for (const m of mountsUnder(dir).reverse()) await unmount(m);
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`not removing ${dir}: still mounted below it: ${left.join(', ')}`);
  fs.rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------
// /proc/self/mountinfo

export interface MountInfo {
  id: number;
  parentId: number;
  /** "major:minor" of the mounted filesystem (for FUSE, minor = fusectl connection id). */
  dev: string;
  mountPoint: string;
  fstype: string;
  source: string;
  superOptions: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function readMountinfo(): MountInfo[] {
  const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const a = line.slice(0, sep).split(' ');
    const b = line.slice(sep + 3).split(' ');
    out.push({
      id: Number(a[0]),
      parentId: Number(a[1]),
      dev: a[2] ?? '',
      mountPoint: unescapeMountinfo(a[4] ?? ''),
      fstype: b[0] ?? '',
      source: unescapeMountinfo(b[1] ?? ''),
      superOptions: b[2] ?? '',
    });
  }
  return out;
}

/**
 * Canonical absolute form of a mount point path as the kernel prints it.
 * Resolves symlinks in the PARENT only: stat()ing the mount point itself could
 * block or fail (ENOTCONN) on a dead FUSE mount.
 */
export function canonicalPath(p: string): string {
  const abs = path.resolve(p);
  if (abs === '/') return abs;
  let parent = path.dirname(abs);
  try {
    parent = fs.realpathSync(parent);
  } catch {
    /* keep the lexical form */
  }
  return path.join(parent, path.basename(abs));
}

/** All mounts stacked at exactly `mnt`, bottom first (the last one is what is visible). */
export function mountsAt(mnt: string): MountInfo[] {
  const c = canonicalPath(mnt);
  return readMountinfo().filter((m) => m.mountPoint === c);
}

export function isMounted(mnt: string): boolean {
  return mountsAt(mnt).length > 0;
}

/** Mount points at or below `dir`, in mountinfo (mount) order, de-duplicated. */
export function mountsUnder(dir: string): string[] {
  const c = canonicalPath(dir);
  const prefix = c.endsWith('/') ? c : c + '/';
  const seen = new Set<string>();
  for (const m of readMountinfo()) {
    if (m.mountPoint === c || m.mountPoint.startsWith(prefix)) seen.add(m.mountPoint);
  }
  return [...seen];
}

function isFuse(m: MountInfo): boolean {
  return m.fstype === 'fuse' || m.fstype.startsWith('fuse.') || m.fstype === 'fuseblk';
}

// ---------------------------------------------------------------------------
// mounting

function checkPathForOptions(p: string, what: string): string {
  // ',' separates mount options and ':' separates lowerdir entries; the temp
  // dirs the tests use never contain them, so refuse instead of escaping.
  if (/[,:\\\n]/.test(p)) throw new Error(`${what} path must not contain ',', ':', '\\' or newlines: ${p}`);
  return path.resolve(p);
}

function optionString(spec: MountSpec, requireWork: boolean): string {
  if (spec.lowers.length === 0) throw new Error('at least one lower layer is required');
  const parts = [`lowerdir=${spec.lowers.map((l) => checkPathForOptions(l, 'lowerdir')).join(':')}`];
  if (spec.upper !== undefined) {
    parts.push(`upperdir=${checkPathForOptions(spec.upper, 'upperdir')}`);
    if (spec.work !== undefined) parts.push(`workdir=${checkPathForOptions(spec.work, 'workdir')}`);
    else if (requireWork) throw new Error('kernel overlayfs needs a workdir together with upperdir');
  } else if (spec.work !== undefined) {
    throw new Error('workdir given without upperdir');
  }
  const extra = typeof spec.options === 'string' ? [spec.options] : (spec.options ?? []);
  for (const o of extra) if (o) parts.push(o);
  return parts.join(',');
}

function failure(what: string, r: RunResult, timeoutMs: number): Error {
  const why = r.timedOut ? `timed out after ${timeoutMs} ms` : `exit ${r.code ?? r.signal}`;
  const msg = r.stderr.trim() || r.stdout.toString('utf8').trim() || '(no output)';
  return new Error(`${what} failed (${why}): ${msg}`);
}

/** `mount -t overlay overlay -o lowerdir=…,upperdir=…,workdir=… mnt`. Rejects with mount's stderr. */
export async function mountKernel(spec: MountSpec): Promise<void> {
  const timeoutMs = spec.timeoutMs ?? 30_000;
  const opts = optionString(spec, true);
  const mnt = path.resolve(spec.mnt);
  const r = await run('mount', ['-t', 'overlay', 'overlay', '-o', opts, mnt], { timeoutMs });
  if (r.code !== 0) {
    const e = failure(`mount -t overlay -o ${opts} ${mnt}`, r, timeoutMs);
    if (spec.upper === undefined && spec.lowers.length < 2) {
      e.message += ' (hint: kernel overlayfs needs at least 2 lowerdirs when there is no upperdir)';
    }
    throw e;
  }
  if (!isMounted(mnt)) throw new Error(`mount -t overlay reported success but nothing is mounted at ${mnt}`);
}

/**
 * `bin/layerfs mount -o lowerdir=…[,upperdir=…,workdir=…][,options] mnt`. The
 * command returns once the mount is ready, leaving the daemon serving in the
 * background. Rejects with its stderr.
 */
export async function mountLayerfs(spec: MountSpec): Promise<void> {
  const timeoutMs = spec.timeoutMs ?? 30_000;
  let opts = optionString(spec, false);
  // LAYERFS_BACKEND=fuse-native runs the tests on the older binding (test/diff/known.ts).
  if (process.env.LAYERFS_BACKEND) opts += `,backend=${process.env.LAYERFS_BACKEND}`;
  const mnt = path.resolve(spec.mnt);
  const env = spec.engineDir ? { LAYERFS_ENGINE_DIR: spec.engineDir } : undefined;
  const r = await run(layerfsBin, ['mount', '-o', opts, mnt], { timeoutMs, viaFiles: true, env });
  if (r.code !== 0) throw failure(`layerfs mount -o ${opts} ${mnt}`, r, timeoutMs);
  // The command is specified to return only once the mount is ready; allow a
  // short grace period anyway before calling it a failure.
  for (let i = 0; i < 40 && !isMounted(mnt); i++) await sleep(50);
  if (!isMounted(mnt)) {
    throw new Error(`layerfs mount exited 0 but nothing is mounted at ${mnt}; stderr: ${r.stderr.trim()}`);
  }
}

export function mount(target: MountTarget, spec: MountSpec): Promise<void> {
  return target === 'kernel' ? mountKernel(spec) : mountLayerfs(spec);
}

/**
 * Mount, having registered the unmount in the test's teardown first — the
 * safe pattern in one call.
 */
export async function mountFor(t: TeardownContext, target: MountTarget, spec: MountSpec): Promise<void> {
  const mnt = spec.mnt;
  t.teardown(() => unmount(mnt));
  await mount(target, spec);
}

// ---------------------------------------------------------------------------
// unmounting

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Abort a FUSE connection through fusectl so that requests stuck on a dead daemon fail with ENOTCONN. */
async function abortFuseConnection(dev: string): Promise<void> {
  const minor = dev.split(':')[1];
  if (!minor) return;
  const ctl = '/sys/fs/fuse/connections';
  try {
    if (!fs.existsSync(path.join(ctl, minor))) {
      if (!readMountinfo().some((m) => m.mountPoint === ctl)) {
        await run('mount', ['-t', 'fusectl', 'fusectl', ctl], { timeoutMs: 5_000 });
      }
    }
    fs.writeFileSync(path.join(ctl, minor, 'abort'), '1');
  } catch {
    /* best effort */
  }
}

/**
 * Unmount whatever is mounted at `mnt` (all stacked mounts). FUSE mounts go
 * through `bin/layerfs umount`, the kernel overlay through `umount`; if that
 * does not work (after a few retries for EBUSY), plain `umount`, then
 * `umount -l` as the last resort (aborting the FUSE connection so nothing
 * stays blocked on a dead daemon). A no-op when nothing is mounted there.
 * Throws only if the mount point is still mounted after all of that.
 */
export async function unmount(mnt: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const target = canonicalPath(mnt);
  const errors: string[] = [];
  let tries = 0; // attempts on the current top-most mount
  for (let round = 0; round < 64; round++) {
    const stack = mountsAt(target);
    const top = stack.at(-1);
    if (!top) return;
    const before = stack.length;
    const gone = () => mountsAt(target).length < before;
    tries++;
    try {
      if (tries <= 4) {
        if (isFuse(top)) {
          const r = await run(layerfsBin, ['umount', target], { timeoutMs, viaFiles: true });
          if (r.code !== 0) errors.push(`layerfs umount: ${r.timedOut ? 'timed out' : r.stderr.trim() || `exit ${r.code}`}`);
          if (gone()) {
            tries = 0;
            continue;
          }
          if (r.timedOut) {
            tries = 4; // a daemon that does not answer: go straight to the lazy unmount + abort
            continue;
          }
        }
        const r = await run('umount', [target], { timeoutMs });
        if (r.code !== 0) errors.push(`umount: ${r.timedOut ? 'timed out' : r.stderr.trim()}`);
        if (gone()) {
          tries = 0;
          continue;
        }
        if (r.timedOut) {
          tries = 4;
          continue;
        }
        await sleep(100 * tries);
      } else if (tries <= 8) {
        const r = await run('umount', ['-l', target], { timeoutMs });
        if (r.code !== 0) errors.push(`umount -l: ${r.stderr.trim()}`);
        if (isFuse(top)) await abortFuseConnection(top.dev);
        if (gone()) tries = 0;
        else await sleep(100);
      } else {
        break;
      }
    } catch (e) {
      errors.push(String(e));
    }
  }
  if (isMounted(target)) {
    throw new Error(`could not unmount ${target}:\n  ${errors.join('\n  ')}`);
  }
}

/** `bin/layerfs --version`, or null when it does not run successfully. */
export async function layerfsVersion(): Promise<string | null> {
  try {
    const r = await run(layerfsBin, ['--version'], { timeoutMs: 30_000 });
    return r.code === 0 ? r.stdout.toString('utf8').trim() : null;
  } catch {
    return null;
  }
}
