// The differential engine: run one scenario (layers + operation list) on
// kernel overlayfs or on layerfs, recording the outcome of every operation
// and snapshots of the merged view and of the upper dir; then compare two runs.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { errnoFromMessage, run } from '../helpers/exec.ts';
import { makeTmp, mount, removeTmp, unmount, type MountTarget } from '../helpers/mounts.ts';
import { compareSnapshots, devString, octalMode, snapshotTree, type Snapshot } from '../helpers/snapshot.ts';
import { buildLayer, buildLayers, fsPath, hasRawNames, showName, type LayerSet, type Tree } from './layers.ts';

// ---------------------------------------------------------------------------
// operations

export type Op =
  | { op: 'writeFile'; path: string; content: string; mode?: number }
  | { op: 'appendFile'; path: string; content: string }
  /** pwrite() into an existing file, without O_TRUNC / O_CREAT. */
  | { op: 'writeAt'; path: string; offset: number; content: string }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'readFile'; path: string }
  | { op: 'readdir'; path: string }
  /** `times: true` adds mtime (whole seconds) to the result — for checking utimes. */
  | { op: 'stat' | 'lstat'; path: string; times?: boolean }
  | { op: 'mkdir'; path: string; mode?: number }
  | { op: 'rmdir'; path: string }
  | { op: 'unlink'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'link'; from: string; to: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'chown'; path: string; uid: number; gid: number }
  /** Seconds since the epoch. */
  | { op: 'utimes'; path: string; atime: number; mtime: number }
  | { op: 'mkfifo'; path: string; mode?: number }
  | { op: 'setxattr'; path: string; name: string; value: string }
  | { op: 'getxattr'; path: string; name: string }
  | { op: 'removexattr'; path: string; name: string }
  /** Lists user.* names only. */
  | { op: 'listxattr'; path: string }
  /** `rm -rf`. */
  | { op: 'rmrf'; path: string }
  /** `mv` (exercises mv's copy+delete fallback on EXDEV). */
  | { op: 'mv'; from: string; to: string }
  /** `cp -a`; `from` is inside the mount, or with fromOutside in the scenario's `outside` tree. */
  | { op: 'cpa'; from: string; to: string; fromOutside?: boolean }
  /** renameat2(2) with RENAME_NOREPLACE or RENAME_EXCHANGE. */
  | { op: 'rename2'; from: string; to: string; flags: 'noreplace' | 'exchange' }
  /** mknod(2) of a character or block device (needs root). */
  | { op: 'mknod'; path: string; kind: 'chr' | 'blk'; major: number; minor: number; mode?: number }
  /** lchown(2): the symlink itself. */
  | { op: 'lchown'; path: string; uid: number; gid: number }
  /** pread() of `length` bytes at `offset`. */
  | { op: 'readAt'; path: string; offset: number; length: number }
  /** Size and sha256 of a file's content, read in pieces (works for files of any size). */
  | { op: 'checksum'; path: string }
  /**
   * Allocated size (st_blocks × 512) of a file: recorded in RunOutput.notes, NOT compared —
   * the allocation of holes is the underlying filesystem's business. The result is 'ok'
   * (or the errno of the stat).
   */
  | { op: 'allocated'; path: string }
  /** `lsattr -d`: the inode flags, as lsattr's letters (the result is 'ok: <letters>'). */
  | { op: 'lsattr'; path: string }
  /** `chattr <mode>`: mode as chattr takes it ('+i', '-a', '=A'). */
  | { op: 'chattr'; path: string; mode: string };

/** Short constructors for scenario lists. */
export const op = {
  writeFile: (p: string, content: string, mode?: number): Op => ({ op: 'writeFile', path: p, content, mode }),
  appendFile: (p: string, content: string): Op => ({ op: 'appendFile', path: p, content }),
  writeAt: (p: string, offset: number, content: string): Op => ({ op: 'writeAt', path: p, offset, content }),
  truncate: (p: string, size: number): Op => ({ op: 'truncate', path: p, size }),
  readFile: (p: string): Op => ({ op: 'readFile', path: p }),
  readdir: (p: string): Op => ({ op: 'readdir', path: p }),
  stat: (p: string, times = false): Op => ({ op: 'stat', path: p, times }),
  lstat: (p: string, times = false): Op => ({ op: 'lstat', path: p, times }),
  mkdir: (p: string, mode?: number): Op => ({ op: 'mkdir', path: p, mode }),
  rmdir: (p: string): Op => ({ op: 'rmdir', path: p }),
  unlink: (p: string): Op => ({ op: 'unlink', path: p }),
  rename: (from: string, to: string): Op => ({ op: 'rename', from, to }),
  symlink: (target: string, p: string): Op => ({ op: 'symlink', target, path: p }),
  readlink: (p: string): Op => ({ op: 'readlink', path: p }),
  link: (from: string, to: string): Op => ({ op: 'link', from, to }),
  chmod: (p: string, mode: number): Op => ({ op: 'chmod', path: p, mode }),
  chown: (p: string, uid: number, gid: number): Op => ({ op: 'chown', path: p, uid, gid }),
  utimes: (p: string, atime: number, mtime: number): Op => ({ op: 'utimes', path: p, atime, mtime }),
  mkfifo: (p: string, mode?: number): Op => ({ op: 'mkfifo', path: p, mode }),
  setxattr: (p: string, name: string, value: string): Op => ({ op: 'setxattr', path: p, name, value }),
  getxattr: (p: string, name: string): Op => ({ op: 'getxattr', path: p, name }),
  removexattr: (p: string, name: string): Op => ({ op: 'removexattr', path: p, name }),
  listxattr: (p: string): Op => ({ op: 'listxattr', path: p }),
  rmrf: (p: string): Op => ({ op: 'rmrf', path: p }),
  mv: (from: string, to: string): Op => ({ op: 'mv', from, to }),
  cpa: (from: string, to: string, fromOutside = false): Op => ({ op: 'cpa', from, to, fromOutside }),
  rename2: (from: string, to: string, flags: 'noreplace' | 'exchange'): Op => ({ op: 'rename2', from, to, flags }),
  mknod: (p: string, kind: 'chr' | 'blk', major: number, minor: number, mode?: number): Op => ({ op: 'mknod', path: p, kind, major, minor, mode }),
  lchown: (p: string, uid: number, gid: number): Op => ({ op: 'lchown', path: p, uid, gid }),
  readAt: (p: string, offset: number, length: number): Op => ({ op: 'readAt', path: p, offset, length }),
  checksum: (p: string): Op => ({ op: 'checksum', path: p }),
  allocated: (p: string): Op => ({ op: 'allocated', path: p }),
  lsattr: (p: string): Op => ({ op: 'lsattr', path: p }),
  chattr: (p: string, mode: string): Op => ({ op: 'chattr', path: p, mode }),
};

export function describeOp(o: Op): string {
  const { op: name, ...args } = o;
  const parts = Object.entries(args)
    .filter(([, v]) => v !== undefined && v !== false)
    .map(([k, v]) => (k === 'mode' && typeof v === 'number' ? `${k}=${octalMode(v)}` : `${k}=${JSON.stringify(v)}`));
  return `${name}(${parts.join(', ')})`;
}

// ---------------------------------------------------------------------------
// scenarios

export interface Scenario {
  name: string;
  description?: string;
  layers: LayerSet;
  /** Mount without upper/work dir (kernel overlayfs then needs ≥ 2 lowers). */
  readOnly?: boolean;
  /** A tree outside the mount, source of `cpa` with fromOutside. */
  outside?: Tree;
  ops: Op[];
  /** Extra mount options for both implementations. */
  options?: string[];
  /** Extra mount options for layerfs only. */
  layerfsOptions?: string[];
  /**
   * Free space the scenario needs in the temp dir's filesystem (per run); checked with
   * statfs before building anything, so a full disk gives a clear error, not a half run.
   */
  needsFreeBytes?: number;
  /** Per-operation time limit for this scenario (RunOptions.opTimeoutMs still wins). Default 20 s. */
  opTimeoutMs?: number;
}

// ---------------------------------------------------------------------------
// running

export interface RunOutput {
  target: MountTarget;
  /** Per op: 'ok', 'ok: <value>', an errno name ('ENOENT'), or 'EXIT<n>: <message>' for a failed command. */
  results: string[];
  merged: Snapshot;
  /** null for read-only scenarios. */
  upper: Snapshot | null;
  /** Differences between the lower dirs before and after the run (must be empty: lowers are read-only). */
  lowersChanged: string[];
  /**
   * Entries whose path is not valid UTF-8 (snapshotTree cannot name them), walked byte-exactly:
   * one line each, path in rawName() form. Compared like the snapshots.
   */
  raw?: { merged: string[]; upper: string[] | null };
  /** Measurements that are reported but not compared (e.g. allocated sizes). */
  notes?: string[];
}

/** Where a finished run's files are, for RunOptions.afterRun. */
export interface RunDirs {
  target: MountTarget;
  /** The scenario's temp dir (everything below it is removed after afterRun). */
  root: string;
  /** Lower dirs as built for `target`, top-most first. */
  lowers: string[];
  /** The upper dir (already unmounted), or undefined for read-only scenarios. */
  upper?: string;
  work?: string;
}

export interface RunOptions {
  /** Keep the scenario's temp dir (for debugging); also enabled by LAYERFS_DIFF_KEEP=1. */
  keep?: boolean;
  /** Per-operation time limit; a hang aborts the scenario (remaining ops: 'SKIPPED'). Default 20 s. */
  opTimeoutMs?: number;
  /** Called after the run was unmounted and snapshotted, before its temp dir is removed. */
  afterRun?: (dirs: RunDirs) => Promise<void>;
}

const ENV_KEEP = process.env.LAYERFS_DIFF_KEEP === '1';
const O = fs.constants;

function contentSummary(buf: Buffer): string {
  const s = buf.toString('utf8');
  // eslint-disable-next-line no-control-regex
  if (buf.length <= 64 && Buffer.from(s, 'utf8').equals(buf) && !/[\u0000-\u0009\u000b-\u001f\u007f]/.test(s)) {
    return JSON.stringify(s);
  }
  return `${buf.length} bytes sha256:${createHash('sha256').update(buf).digest('hex').slice(0, 16)}`;
}

function statSummary(st: fs.BigIntStats, times: boolean): string {
  let type: string;
  if (st.isFile()) type = 'file';
  else if (st.isDirectory()) type = 'dir';
  else if (st.isSymbolicLink()) type = 'symlink';
  else if (st.isFIFO()) type = 'fifo';
  else if (st.isCharacterDevice()) type = 'chardev';
  else if (st.isBlockDevice()) type = 'blockdev';
  else if (st.isSocket()) type = 'socket';
  else type = 'unknown';
  let s = `${type} ${octalMode(st.mode)} ${st.uid}:${st.gid}`;
  if (type === 'file' || type === 'symlink') s += ` size=${st.size}`;
  if (type !== 'dir') s += ` nlink=${st.nlink}`;
  if (type === 'chardev' || type === 'blockdev') s += ` rdev=${devString(st.rdev)}`;
  if (times) s += ` mtime=${st.mtimeMs / 1000n}`;
  return s;
}

/** Run a command for an op; its failure becomes an errno name (or the normalised message). */
async function cmd(c: string, args: string[], cwd: string, normalise: (s: string) => string): Promise<string> {
  const r = await run(c, args, { cwd, timeoutMs: 60_000 });
  if (r.code === 0) return 'ok';
  const code = errnoFromMessage(r.stderr);
  return code ?? `EXIT${r.code ?? r.signal}: ${normalise(r.stderr.trim())}`;
}

/** Relative path inside the mount, safe as a command argument (never starts with '-'). */
function rel(p: string): string {
  if (p === '' || p === '.') return '.';
  if (path.isAbsolute(p) || p.split('/').includes('..')) throw new Error(`op path must be relative and stay inside the mount: ${p}`);
  return p.startsWith('-') ? `./${p}` : p;
}

/** Ops that run a command take string arguments only: no rawName paths there. */
function noRaw(o: Op, ...paths: string[]): void {
  for (const p of paths) if (hasRawNames(p)) throw new Error(`${o.op}: paths with rawName() components are not supported (${describeOp(o)})`);
}

async function runOp(o: Op, mnt: string, outside: string, normalise: (s: string) => string, notes: string[]): Promise<string> {
  const P = (p: string) => fsPath(path.join(mnt, rel(p)));
  const fsp = fs.promises;
  try {
    switch (o.op) {
      // Files are opened O_NONBLOCK: the same for regular files, and a fifo then answers
      // (ENXIO, or an empty read) instead of blocking a thread of libuv's pool for ever.
      case 'writeFile':
        await fsp.writeFile(P(o.path), o.content, { flag: O.O_WRONLY | O.O_CREAT | O.O_TRUNC | O.O_NONBLOCK, ...(o.mode === undefined ? {} : { mode: o.mode }) });
        return 'ok';
      case 'appendFile':
        await fsp.appendFile(P(o.path), o.content, { flag: O.O_WRONLY | O.O_CREAT | O.O_APPEND | O.O_NONBLOCK });
        return 'ok';
      case 'writeAt': {
        const fh = await fsp.open(P(o.path), O.O_RDWR | O.O_NONBLOCK);
        try {
          const buf = Buffer.from(o.content);
          await fh.write(buf, 0, buf.length, o.offset);
        } finally {
          await fh.close();
        }
        return 'ok';
      }
      case 'truncate':
        await fsp.truncate(P(o.path), o.size);
        return 'ok';
      case 'readFile':
        return `ok: ${contentSummary(await fsp.readFile(P(o.path), { flag: O.O_RDONLY | O.O_NONBLOCK }))}`;
      case 'readdir':
        return `ok: ${JSON.stringify((await fsp.readdir(P(o.path), { encoding: 'buffer' })).map(showName).sort())}`;
      case 'stat':
        return `ok: ${statSummary(await fsp.stat(P(o.path), { bigint: true }), !!o.times)}`;
      case 'lstat':
        return `ok: ${statSummary(await fsp.lstat(P(o.path), { bigint: true }), !!o.times)}`;
      case 'mkdir':
        await fsp.mkdir(P(o.path), o.mode === undefined ? {} : { mode: o.mode });
        return 'ok';
      case 'rmdir':
        await fsp.rmdir(P(o.path));
        return 'ok';
      case 'unlink':
        await fsp.unlink(P(o.path));
        return 'ok';
      case 'rename':
        await fsp.rename(P(o.from), P(o.to));
        return 'ok';
      case 'symlink':
        await fsp.symlink(o.target, P(o.path));
        return 'ok';
      case 'readlink':
        return `ok: ${JSON.stringify(showName(await fsp.readlink(P(o.path), { encoding: 'buffer' })))}`;
      case 'link':
        await fsp.link(P(o.from), P(o.to));
        return 'ok';
      case 'chmod':
        await fsp.chmod(P(o.path), o.mode);
        return 'ok';
      case 'chown':
        await fsp.chown(P(o.path), o.uid, o.gid);
        return 'ok';
      case 'utimes':
        await fsp.utimes(P(o.path), o.atime, o.mtime);
        return 'ok';
      case 'mkfifo':
        noRaw(o, o.path);
        return await cmd('mkfifo', [...(o.mode === undefined ? [] : ['-m', o.mode.toString(8)]), '--', rel(o.path)], mnt, normalise);
      // setfattr/getfattr take text arguments: on a path with rawName() components the same
      // syscalls are made from here (l*xattr: such paths never name a symlink in the scenarios).
      case 'setxattr': {
        const v = Buffer.from(o.value, 'utf8');
        if (hasRawNames(o.path)) {
          sys.lsetxattr(P(o.path), o.name, v);
          return 'ok';
        }
        return await cmd('setfattr', ['-n', o.name, '-v', v.length ? '0x' + v.toString('hex') : '""', '--', rel(o.path)], mnt, normalise);
      }
      case 'getxattr': {
        if (hasRawNames(o.path)) {
          const v = sys.lgetxattr(P(o.path), o.name);
          return v === null ? 'ENODATA' : `ok: ${contentSummary(v)}`;
        }
        const r = await run('getfattr', ['--only-values', '-n', o.name, '--', rel(o.path)], { cwd: mnt });
        if (r.code === 0) return `ok: ${contentSummary(r.stdout)}`;
        return errnoFromMessage(r.stderr) ?? `EXIT${r.code}: ${normalise(r.stderr.trim())}`;
      }
      case 'removexattr':
        if (hasRawNames(o.path)) {
          sys.lremovexattr(P(o.path), o.name);
          return 'ok';
        }
        return await cmd('setfattr', ['-x', o.name, '--', rel(o.path)], mnt, normalise);
      case 'listxattr': {
        if (hasRawNames(o.path)) return `ok: ${JSON.stringify(sys.llistxattr(P(o.path)).filter((n) => n.startsWith('user.')).sort())}`;
        const r = await run('getfattr', ['-m', '^user\\.', '--', rel(o.path)], { cwd: mnt });
        if (r.code !== 0) return errnoFromMessage(r.stderr) ?? `EXIT${r.code}: ${normalise(r.stderr.trim())}`;
        const names = r.stdout
          .toString('utf8')
          .split('\n')
          .filter((l) => l && !l.startsWith('#'))
          .sort();
        return `ok: ${JSON.stringify(names)}`;
      }
      case 'rmrf':
        noRaw(o, o.path);
        return await cmd('rm', ['-rf', '--', rel(o.path)], mnt, normalise);
      case 'mv':
        noRaw(o, o.from, o.to);
        return await cmd('mv', ['--', rel(o.from), rel(o.to)], mnt, normalise);
      case 'cpa': {
        noRaw(o, o.from, o.to);
        // Concatenate, do not path.join(): a trailing '/.' (copy the contents) must survive.
        const src = o.fromOutside ? `${outside}/${rel(o.from)}` : rel(o.from);
        return await cmd('cp', ['-a', '--', src, rel(o.to)], mnt, normalise);
      }
      case 'rename2':
        sys.renameat2(P(o.from), P(o.to), o.flags === 'noreplace' ? sys.RENAME_NOREPLACE : sys.RENAME_EXCHANGE);
        return 'ok';
      case 'mknod':
        sys.mknod(P(o.path), (o.kind === 'chr' ? fs.constants.S_IFCHR : fs.constants.S_IFBLK) | (o.mode ?? 0o600), sys.makedev(o.major, o.minor));
        return 'ok';
      case 'lchown':
        await fsp.lchown(P(o.path), o.uid, o.gid);
        return 'ok';
      case 'readAt': {
        const fh = await fsp.open(P(o.path), O.O_RDONLY | O.O_NONBLOCK);
        try {
          const buf = Buffer.alloc(o.length);
          const { bytesRead } = await fh.read(buf, 0, o.length, o.offset);
          return `ok: ${contentSummary(buf.subarray(0, bytesRead))}`;
        } finally {
          await fh.close();
        }
      }
      case 'checksum': {
        const h = createHash('sha256');
        let size = 0;
        const fh = await fsp.open(P(o.path), O.O_RDONLY | O.O_NONBLOCK);
        try {
          const buf = Buffer.alloc(1 << 20);
          for (;;) {
            const { bytesRead } = await fh.read(buf, 0, buf.length, size);
            if (bytesRead === 0) break;
            h.update(buf.subarray(0, bytesRead));
            size += bytesRead;
          }
        } finally {
          await fh.close();
        }
        return `ok: size=${size} sha256:${h.digest('hex').slice(0, 16)}`;
      }
      case 'lsattr': {
        noRaw(o, o.path);
        const r = await run('lsattr', ['-d', '--', rel(o.path)], { cwd: mnt });
        if (r.code !== 0) return errnoFromMessage(r.stderr) ?? `EXIT${r.code}: ${normalise(r.stderr.trim())}`;
        return `ok: ${r.stdout.toString('utf8').trim().split(/\s+/)[0]}`;
      }
      case 'chattr':
        noRaw(o, o.path);
        return await cmd('chattr', [o.mode, '--', rel(o.path)], mnt, normalise);
      case 'allocated': {
        const st = await fsp.stat(P(o.path), { bigint: true });
        notes.push(`${o.path}: size=${st.size} allocated=${st.blocks * 512n}`);
        return 'ok';
      }
      default: {
        const never: never = o;
        throw new Error(`unknown op ${JSON.stringify(never)}`);
      }
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException | null)?.code;
    if (typeof code === 'string') return code;
    throw e;
  }
}

class Timeout extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Timeout(`${what}: no answer after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * Build fresh copies of the scenario's layers (plus empty upper and work dirs
 * unless read-only), mount them with `target`, run the ops, snapshot the
 * merged view, unmount (always), snapshot the upper dir.
 *
 * Lowers are built as written for layerfs and with OCI markers translated to
 * kernel ones for the kernel (which does not understand OCI markers).
 */
export async function runScenario(s: Scenario, target: MountTarget, opts: RunOptions = {}): Promise<RunOutput> {
  const opTimeoutMs = opts.opTimeoutMs ?? s.opTimeoutMs ?? 20_000;
  const keep = opts.keep ?? ENV_KEEP;
  if (s.needsFreeBytes) checkFreeSpace(s);
  // Modes of created files must not depend on the caller's umask.
  process.umask(0o022);
  const root = makeTmp(undefined, `layerfs-diff-${target}-`);
  try {
    const layers = await buildLayers(s.layers, root, { format: target === 'kernel' ? 'kernel' : 'as-written' });
    let upper: string | undefined;
    let work: string | undefined;
    if (!s.readOnly) {
      upper = layers.upper ?? path.join(root, 'upper');
      if (!layers.upper) fs.mkdirSync(upper, { mode: 0o755 });
      work = path.join(root, 'work');
      fs.mkdirSync(work, { mode: 0o755 });
    } else if (s.layers.upper) {
      throw new Error(`scenario ${s.name}: readOnly with an upper tree`);
    }
    const outside = path.join(root, 'outside');
    await buildLayer(s.outside ?? {}, outside, { format: 'as-written' });
    const mnt = path.join(root, 'mnt');
    fs.mkdirSync(mnt, { mode: 0o755 });

    const lowersBefore = await Promise.all(layers.lowers.map((l) => snapshotTree(l, 'raw')));

    const normalise = (msg: string) => msg.split(mnt).join('<mnt>').split(root).join('<tmp>');
    const results: string[] = [];
    const notes: string[] = [];
    let merged: Snapshot;
    let rawMerged: string[] = [];
    try {
      const options = [...(s.options ?? []), ...(target === 'layerfs' ? (s.layerfsOptions ?? []) : [])];
      await mount(target, { lowers: layers.lowers, upper, work, mnt, options });
      let hung = false;
      for (const o of s.ops) {
        if (hung) {
          results.push('SKIPPED');
          continue;
        }
        try {
          results.push(await withTimeout(runOp(o, mnt, outside, normalise, notes), opTimeoutMs, describeOp(o)));
        } catch (e) {
          if (!(e instanceof Timeout)) throw e;
          results.push('TIMEOUT');
          hung = true;
        }
      }
      merged = hung
        ? { entries: [], errors: ['not taken: an operation hung'] }
        : await withTimeout(snapshotTree(mnt, 'merged'), opTimeoutMs * 3, 'snapshot of the merged view');
      if (!hung) rawMerged = await withTimeout(rawEntries(mnt, 'merged'), opTimeoutMs * 3, 'raw names of the merged view');
    } finally {
      await unmount(mnt);
    }
    const upperSnap = upper ? await snapshotTree(upper, 'upper') : null;
    const rawUpper = upper ? await rawEntries(upper, 'upper') : null;
    const lowersChanged: string[] = [];
    for (let i = 0; i < layers.lowers.length; i++) {
      const after = await snapshotTree(layers.lowers[i]!, 'raw');
      lowersChanged.push(...compareSnapshots(lowersBefore[i]!, after, ['before', 'after'], `lower${i}`));
    }
    if (opts.afterRun) await opts.afterRun({ target, root, lowers: layers.lowers, upper, work });
    return { target, results, merged, upper: upperSnap, lowersChanged, raw: { merged: rawMerged, upper: rawUpper }, notes };
  } finally {
    if (!keep) await removeTmp(root);
  }
}

function checkFreeSpace(s: Scenario): void {
  const st = sys.statfs(os.tmpdir());
  const free = st.bavail * st.bsize;
  if (free < BigInt(s.needsFreeBytes!)) {
    const gib = (n: bigint | number) => (Number(n) / 2 ** 30).toFixed(1);
    throw new Error(`scenario "${s.name}" needs ${gib(s.needsFreeBytes!)} GiB free in ${os.tmpdir()}, only ${gib(free)} GiB available`);
  }
}

/**
 * Entries below `root` whose relative path is not valid UTF-8, walked with byte names (the
 * snapshots name entries by string and cannot reach these): "path: type mode uid:gid …" with
 * the path in rawName() form. In an upper, a 0/0 character device is a 'whiteout'.
 */
export async function rawEntries(root: string, kind: 'merged' | 'upper'): Promise<string[]> {
  const out: string[] = [];
  const visit = async (abs: Buffer, relShown: string, raw: boolean): Promise<void> => {
    let names: Buffer[];
    try {
      names = await fs.promises.readdir(abs, { encoding: 'buffer' });
    } catch (e) {
      if (raw) out.push(`${relShown}: readdir: ${(e as NodeJS.ErrnoException).code ?? e}`);
      return;
    }
    for (const n of names.sort(Buffer.compare)) {
      const shown = showName(n);
      const isRaw = raw || shown !== n.toString('utf8');
      const childRel = relShown ? `${relShown}/${shown}` : shown;
      const child = Buffer.concat([abs, Buffer.from('/'), n]);
      let st: fs.BigIntStats;
      try {
        st = await fs.promises.lstat(child, { bigint: true });
      } catch (e) {
        if (isRaw) out.push(`${childRel}: lstat: ${(e as NodeJS.ErrnoException).code ?? e}`);
        continue;
      }
      if (isRaw) {
        let line: string;
        if (kind === 'upper' && st.isCharacterDevice() && st.rdev === 0n) line = 'whiteout';
        else {
          line = `${statSummary(st, false)}`;
          try {
            if (st.isFile()) line += ` sha256:${createHash('sha256').update(await fs.promises.readFile(child)).digest('hex').slice(0, 16)}`;
            if (st.isSymbolicLink()) line += ` -> ${JSON.stringify(showName(await fs.promises.readlink(child, { encoding: 'buffer' })))}`;
          } catch (e) {
            line += ` (read: ${(e as NodeJS.ErrnoException).code ?? e})`;
          }
        }
        out.push(`${childRel}: ${line}`);
      }
      if (st.isDirectory()) await visit(child, childRel, isRaw);
    }
  };
  await visit(Buffer.from(path.resolve(root)), '', false);
  return out;
}

/** Compare two rawEntries() listings: one line per path that differs. */
function compareRaw(a: string[], b: string[], labels: [string, string], what: string): string[] {
  const split = (l: string): [string, string] => {
    const i = l.indexOf(': ');
    return [l.slice(0, i), l.slice(i + 2)];
  };
  const ma = new Map(a.map(split));
  const mb = new Map(b.map(split));
  const out: string[] = [];
  for (const p of [...new Set([...ma.keys(), ...mb.keys()])].sort()) {
    const va = ma.get(p);
    const vb = mb.get(p);
    if (va === vb) continue;
    if (va === undefined || vb === undefined) out.push(`${what} (raw names): ${JSON.stringify(p)}: only in ${va === undefined ? labels[1] : labels[0]} (${va ?? vb})`);
    else out.push(`${what} (raw names): ${JSON.stringify(p)}: ${labels[0]}=${va} ${labels[1]}=${vb}`);
  }
  return out;
}

/**
 * Mount `target` over an upper dir left by an earlier run (e.g. layerfs mounting the upper the
 * kernel wrote), with freshly built lowers in `target`'s format and a fresh workdir below
 * `dir`, and snapshot the merged view. Always unmounts.
 */
export async function snapshotOverUpper(
  target: MountTarget,
  s: Scenario,
  upper: string,
  dir: string,
  opts: { timeoutMs?: number } = {},
): Promise<{ merged: Snapshot; raw: string[] }> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  fs.mkdirSync(dir, { recursive: true });
  const built = await buildLayers({ lowers: s.layers.lowers }, dir, { format: target === 'kernel' ? 'kernel' : 'as-written' });
  const work = path.join(dir, 'work');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(work);
  fs.mkdirSync(mnt);
  const options = [...(s.options ?? []), ...(target === 'layerfs' ? (s.layerfsOptions ?? []) : [])];
  try {
    await mount(target, { lowers: built.lowers, upper, work, mnt, options });
    const merged = await withTimeout(snapshotTree(mnt, 'merged'), timeoutMs, 'snapshot of the merged view');
    const raw = await withTimeout(rawEntries(mnt, 'merged'), timeoutMs, 'raw names of the merged view');
    return { merged, raw };
  } finally {
    await unmount(mnt);
  }
}

/** Differences between two merged views (snapshot + raw names). */
export function compareMerged(
  a: { merged: Snapshot; raw?: string[] },
  b: { merged: Snapshot; raw?: string[] },
  labels: [string, string],
): string[] {
  const out = compareSnapshots(a.merged, b.merged, labels, 'merged');
  if (a.raw && b.raw) out.push(...compareRaw(a.raw, b.raw, labels, 'merged'));
  return out;
}

/** Divergences between two runs of the same op list. Empty = identical behaviour. */
export function compareRuns(a: RunOutput, b: RunOutput, ops: readonly Op[], labels: [string, string] = [a.target, b.target]): string[] {
  const [la, lb] = labels;
  const out: string[] = [];
  const n = Math.max(a.results.length, b.results.length, ops.length);
  for (let i = 0; i < n; i++) {
    const ra = a.results[i] ?? '(not run)';
    const rb = b.results[i] ?? '(not run)';
    if (ra !== rb) out.push(`op #${i} ${ops[i] ? describeOp(ops[i]!) : '?'}: ${la}=${ra} ${lb}=${rb}`);
  }
  out.push(...compareSnapshots(a.merged, b.merged, labels, 'merged'));
  if (a.raw && b.raw) out.push(...compareRaw(a.raw.merged, b.raw.merged, labels, 'merged'));
  if (a.upper && b.upper) out.push(...compareSnapshots(a.upper, b.upper, labels, 'upper'));
  if (a.raw?.upper && b.raw?.upper) out.push(...compareRaw(a.raw.upper, b.raw.upper, labels, 'upper'));
  else if (a.upper || b.upper) out.push(`upper: present only in ${a.upper ? la : lb}`);
  for (const c of a.lowersChanged) out.push(`${la} modified a lower layer: ${c}`);
  for (const c of b.lowersChanged) out.push(`${lb} modified a lower layer: ${c}`);
  return out;
}

/** Is the harness running kernel-vs-kernel (LAYERFS_DIFF_SELFTEST=1)? */
export function selftestMode(): boolean {
  return process.env.LAYERFS_DIFF_SELFTEST === '1';
}

/**
 * Run the scenario on the kernel and on layerfs (or, in self-test mode, on
 * the kernel twice) and return the divergences, human-readable.
 */
export async function diffScenario(s: Scenario, opts: RunOptions & { selftest?: boolean } = {}): Promise<string[]> {
  const selftest = opts.selftest ?? selftestMode();
  const other: MountTarget = selftest ? 'kernel' : 'layerfs';
  const [ra, rb] = await Promise.allSettled([runScenario(s, 'kernel', opts), runScenario(s, other, opts)]);
  if (ra.status === 'rejected') throw ra.reason;
  if (rb.status === 'rejected') throw rb.reason;
  return compareRuns(ra.value, rb.value, s.ops, ['kernel', selftest ? 'kernel(selftest)' : 'layerfs']);
}
