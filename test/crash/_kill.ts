// kill -9 of the daemon at a random (seeded) point during an operation, then: the dead mount
// answers ENOTCONN, `bin/layerfs umount` cleans it up, the same dirs mount again, and
//   - no partial object is visible (a copy-up is either complete or not there at all),
//   - workdir/work is empty after the remount,
//   - the lowers are byte-identical to before (and untouched: same inodes, ctimes, xattrs),
//   - every operation the child process saw succeed (and fsync'd) before the kill is there.
//
// Four kinds, each a loop of rounds on one set of layers (every round its own names, so the
// rounds need no reset):
//   copyup     1-byte append to a large lower file (copy-up of its data)
//   burst      creates, overwrites, appends, renames, unlinks, mkdir, rmdir from a child
//   dirrename  renames of an upper-only directory, into and out of merged directories
//   mvdir      `mv` of a lower directory: EXDEV, then mv copies the tree and removes the source
//
// Used by test/crash/*.test.ts (20+ rounds each) and scripts/crash-long.ts (as many as asked).
// The caller creates `dir` and registers an unmount of `${dir}/mnt` BEFORE calling runKill.

import { spawn } from 'node:child_process';
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as sys from '../../src/sys/index.ts';
import { runOk } from '../helpers/exec.ts';
import { isMounted, mountLayerfs, unmount } from '../helpers/mounts.ts';
import {
  daemonPid, deadMountChecks, diffPrints, fsp, hashFile, int, layerPrint, pick, processAlive, rng, sameMap, sha256,
  showDiff, sleep, treeState, waitDead, workEntries,
} from './_lib.ts';

export type KillKind = 'copyup' | 'burst' | 'dirrename' | 'mvdir';
export const KILL_KINDS: readonly KillKind[] = ['copyup', 'burst', 'dirrename', 'mvdir'];

export interface KillOptions {
  kind: KillKind;
  /** A fresh, empty directory for the layers and the mount point (`${dir}/mnt`). */
  dir: string;
  rounds: number;
  seed: number;
  log: (s: string) => void;
  /** copyup: size of the lower file in MiB (default 64). */
  sizeMiB?: number;
  /** Stop at the first round with problems (default true). */
  stopOnProblem?: boolean;
  /** Log a progress line every this many rounds. */
  progressEvery?: number;
  /** Checked before each round: true ends the loop early (an interrupted long run). */
  stop?: () => boolean;
}

export interface KillReport {
  kind: KillKind;
  seed: number;
  rounds: number;
  /** Where the kills landed: class → count. */
  landed: Record<string, number>;
  problems: string[];
  ms: number;
  notes: string[];
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(HERE, '_ops-child.mjs');
const UID = 1234;
const GID = 5678;

interface Ctx {
  dir: string;
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
  log: (s: string) => void;
  notes: string[];
}

interface Kind<Info> {
  /** Write the lower layers (nothing is mounted yet). */
  prepare(c: Ctx, rounds: number, r: () => number): Promise<void>;
  /** Mounted: measure how long the operation takes, to aim the kills. */
  calibrate?(c: Ctx, r: () => number): Promise<void>;
  /** Mounted: start the operation, kill the daemon (pid) at a random point, wait until it is dead. */
  round(c: Ctx, i: number, r: () => number, pid: number): Promise<Info>;
  /** Unmounted, after round i's kill: tidy what earlier rounds left (they are verified). */
  between?(c: Ctx, i: number): void;
  /** Remounted: check round i; returns [problems, landing class]. */
  verify(c: Ctx, i: number, info: Info): Promise<[string[], string]>;
}

function mk(p: string): void {
  fs.mkdirSync(p, { recursive: true });
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Spawn a command; resolves with its exit code (null when killed). stdout/stderr are kept small. */
function start(cmd: string, args: string[]): { done: Promise<{ code: number | null; stderr: string }>; pid: number } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString();
  });
  const done = new Promise<{ code: number | null; stderr: string }>((res, rej) => {
    child.on('error', rej);
    child.on('close', (code) => res({ code, stderr }));
  });
  return { done, pid: child.pid! };
}

async function killNow(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  if (!(await waitDead(pid))) throw new Error(`daemon ${pid} did not die after SIGKILL`);
}

// =============================================================================== copyup

interface CopyupInfo {
  cls: string;
  childOk: boolean;
  tmpSize: number;
}

function copyupKind(sizeMiB: number): Kind<CopyupInfo> {
  const size = sizeMiB * 1024 * 1024;
  let hLower = '';
  let hLowerX = '';
  let copyMs = 0;
  const big = (i: number | string) => `big.${i}`;
  const trigger = (c: Ctx, name: string) => start('/bin/sh', ['-c', 'printf x >> "$1"', 'sh', path.join(c.mnt, name)]);

  /**
   * Spin (in slices of 20 ms, yielding in between so the child's exit is noticed) until
   * `check` says done; a busy wait reacts within microseconds, which a copy at GiB/s needs.
   */
  async function spin(check: () => boolean, child: { done: Promise<unknown> }, what: string): Promise<void> {
    let finished = false;
    void child.done.then(() => (finished = true));
    const until = Date.now() + 60_000;
    for (;;) {
      const slice = performance.now() + 20;
      while (performance.now() < slice) if (check()) return;
      if (finished || Date.now() > until) {
        if (finished) return;
        throw new Error(`${what}: nothing happened within 60 s`);
      }
      await new Promise((r) => setImmediate(r));
    }
  }

  /** The copy's temporary file in the work dir, once it shows (null: the copy-up is over). */
  async function copyStarted(c: Ctx, name: string, child: { done: Promise<unknown> }): Promise<string | null> {
    let tmp: string | null = null;
    await spin(() => {
      const e = workEntries(c.work).find((x) => x.type === 'file');
      if (e) tmp = path.join(c.work, 'work', e.name);
      return tmp !== null || exists(path.join(c.upper, name));
    }, child, `copy-up of ${name}`);
    return tmp;
  }

  return {
    async prepare(c, rounds) {
      const l0 = c.lowers[0]!;
      const data = cryptoRandomBytes(size);
      hLower = sha256(data);
      hLowerX = sha256(Buffer.concat([data, Buffer.from('x')]));
      const src = path.join(l0, 'big.src');
      fs.writeFileSync(src, data);
      fs.chownSync(src, UID, GID);
      fs.chmodSync(src, 0o640);
      sys.lsetxattr(src, 'user.crash', 'yes');
      fs.utimesSync(src, 1_000_000_000, 1_100_000_000);
      // Every round copies up its own name: hard links to the one lower inode.
      for (const i of [...Array(rounds).keys(), 'calib']) fs.linkSync(src, path.join(l0, big(i)));
      fs.writeFileSync(path.join(c.lowers[1]!, 'other'), 'lower1\n');
    },
    async calibrate(c, _r) {
      const t0 = performance.now();
      const { code, stderr } = await trigger(c, big('calib')).done;
      copyMs = performance.now() - t0;
      if (code !== 0) throw new Error(`calibration append failed: ${stderr}`);
      c.log(`a 1-byte append that copies up ${sizeMiB} MiB takes ${copyMs.toFixed(0)} ms here (uninterrupted); 85% of the kills are aimed at a random byte of the copy, 15% at a random time in 1.3 times that`);
    },
    async round(c, i, r, pid) {
      const name = big(i);
      const byBytes = r() < 0.85;
      const fraction = r();
      const t00 = performance.now();
      const child = trigger(c, name);
      if (byBytes) {
        // Mostly: kill once the copy in work/ has reached a random fraction of the file.
        const tmp = await copyStarted(c, name, child);
        const target = fraction * size;
        if (tmp) {
          await spin(() => {
            try {
              return fs.statSync(tmp).size >= target;
            } catch {
              return true; // renamed into place (or gone): too late
            }
          }, child, `copy-up of ${name}`);
        }
      } else {
        // Sometimes: at a random time from the trigger on, so that kills also land before the
        // copy starts and around the rename into the upper.
        await sleep(fraction * copyMs * 1.3 - (performance.now() - t00));
      }
      await killNow(pid);
      // Where did it land? (The daemon is dead: nothing changes any more.)
      const tmp = workEntries(c.work).filter((e) => e.type === 'file');
      const tmpSize = tmp.length ? Math.max(...tmp.map((e) => e.size)) : -1;
      let cls: string;
      if (exists(path.join(c.upper, name))) cls = 'after the rename into the upper';
      else if (tmp.length === 0) cls = 'before the copy started';
      else if (tmpSize < size) cls = 'mid-copy';
      else cls = 'copied, before the rename';
      const { code } = await child.done;
      return { cls, childOk: code === 0, tmpSize };
    },
    between(c, i) {
      // Round i-1's copy is verified: drop it so the upper does not grow by 64 MiB a round.
      if (i > 0) fs.rmSync(path.join(c.upper, big(i - 1)), { force: true });
      if (i === 0) fs.rmSync(path.join(c.upper, big('calib')), { force: true });
    },
    async verify(c, i, info) {
      const problems: string[] = [];
      const name = big(i);
      const m = path.join(c.mnt, name);
      const u = path.join(c.upper, name);
      const lst = fs.lstatSync(path.join(c.lowers[0]!, 'big.src'));
      const h = await hashFile(m);
      const st = fs.statSync(m);
      if (h !== hLower && h !== hLowerX) {
        problems.push(`${name}: the union shows a partial or corrupt file (size ${st.size} of ${size}${info.cls ? `, kill ${info.cls}` : ''})`);
      }
      if (info.childOk && h !== hLowerX) problems.push(`${name}: the append returned success but is not there`);
      if ((st.mode & 0o7777) !== 0o640 || st.uid !== UID || st.gid !== GID) {
        problems.push(`${name}: metadata through the union mode=${(st.mode & 0o7777).toString(8)} uid=${st.uid} gid=${st.gid}`);
      }
      if (exists(u)) {
        const hu = await hashFile(u);
        if (hu !== h) problems.push(`${name}: the upper copy differs from what the union shows`);
        const us = fs.lstatSync(u);
        if ((us.mode & 0o7777) !== 0o640 || us.uid !== UID || us.gid !== GID) {
          problems.push(`${name}: the upper copy has mode=${(us.mode & 0o7777).toString(8)} uid=${us.uid} gid=${us.gid} (incomplete copy-up)`);
        }
        if (sys.lgetxattr(u, 'user.crash')?.toString() !== 'yes') problems.push(`${name}: the upper copy lacks the lower's xattr`);
        if (h === hLower && us.mtimeMs !== lst.mtimeMs) problems.push(`${name}: an unmodified copy lacks the lower's mtime`);
      } else if (h !== hLower) {
        problems.push(`${name}: not in the upper, yet the union does not show the lower's content`);
      }
      const cls = info.cls === 'mid-copy' ? `mid-copy` : info.cls;
      return [problems, cls];
    },
  };
}

// =============================================================================== op lists (burst, dirrename)

type Op =
  | { op: 'create' | 'overwrite' | 'append'; p: string; data: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'unlink' | 'mkdir' | 'rmdir'; p: string }
  | { op: 'mark' };

/** rel → file contents, or null for a directory. */
type Model = Map<string, string | null>;

function parentRel(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function applyOp(m: Model, o: Op): Model {
  const n = new Map(m);
  switch (o.op) {
    case 'create':
    case 'overwrite':
      n.set(o.p, o.data);
      break;
    case 'append':
      n.set(o.p, (m.get(o.p) ?? '') + o.data);
      break;
    case 'unlink':
    case 'rmdir':
      n.delete(o.p);
      break;
    case 'mkdir':
      n.set(o.p, null);
      break;
    case 'rename': {
      const v = m.get(o.from);
      if (v === undefined) throw new Error(`model: rename of missing ${o.from}`);
      n.delete(o.to);
      if (v === null) {
        for (const k of m.keys()) {
          if (k.startsWith(o.to + '/')) n.delete(k);
        }
        for (const k of m.keys()) {
          if (k === o.from || k.startsWith(o.from + '/')) n.delete(k);
        }
        for (const [k, kv] of m) {
          if (k === o.from || k.startsWith(o.from + '/')) n.set(o.to + k.slice(o.from.length), kv);
        }
      } else {
        n.delete(o.from);
        n.set(o.to, v);
      }
      break;
    }
    case 'mark':
      break;
  }
  return n;
}

function modelState(m: Model): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of m) out.set(k, v === null ? 'dir' : `file:${sha256(v)}`);
  return out;
}

function isEmptyDir(m: Model, d: string): boolean {
  if (m.get(d) !== null) return false;
  for (const k of m.keys()) if (k.startsWith(d + '/')) return false;
  return true;
}

let textPool = '';

/** 1..max characters: a random slice of a random pool (cheap, and contents rarely repeat). */
function randomText(r: () => number, max: number): string {
  if (!textPool) {
    const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n';
    const pr = rng(12345);
    const a: string[] = [];
    for (let i = 0; i < 65536; i++) a.push(chars[int(pr, chars.length)]!);
    textPool = a.join('');
  }
  const n = 1 + int(r, max);
  const off = int(r, textPool.length - n);
  return textPool.slice(off, off + n);
}

/** Lower contents of one burst round's directory. */
function burstLower(i: number): Model {
  const m: Model = new Map();
  for (let k = 0; k < 6; k++) m.set(`l${k}`, `lower r${i} l${k}\n`.repeat(1 + k * 50));
  m.set('ld', null);
  for (let k = 0; k < 3; k++) m.set(`ld/x${k}`, `lower r${i} ld/x${k}\n`);
  m.set('le', null);
  return m;
}

/** A valid sequence of burst operations from the initial model. */
function burstOps(r: () => number, init: Model, count: number): Op[] {
  const dirsPool = ['', 'ld', 'le', 'nd0', 'nd1', 'nd1/deep'];
  const filePool: string[] = [];
  for (const d of dirsPool) for (let k = 0; k < 5; k++) filePool.push(d ? `${d}/f${k}` : `f${k}`);
  for (const k of init.keys()) if (init.get(k) !== null && !filePool.includes(k)) filePool.push(k);
  const ops: Op[] = [];
  let m = init;
  const existingFiles = () => [...m.keys()].filter((k) => m.get(k) !== null);
  const parentOk = (p: string) => parentRel(p) === '' || m.get(parentRel(p)) === null;
  while (ops.length < count) {
    const kind = pick(r, ['create', 'create', 'create', 'overwrite', 'append', 'rename', 'rename', 'unlink', 'unlink', 'mkdir', 'rmdir'] as const);
    let o: Op | null = null;
    if (kind === 'create') {
      const free = filePool.filter((p) => !m.has(p) && parentOk(p));
      if (free.length) o = { op: 'create', p: pick(r, free), data: randomText(r, 3000) };
    } else if (kind === 'overwrite' || kind === 'append') {
      const fs_ = existingFiles();
      if (fs_.length) o = { op: kind, p: pick(r, fs_), data: randomText(r, kind === 'append' ? 200 : 3000) };
    } else if (kind === 'rename') {
      const fs_ = existingFiles();
      const from = fs_.length ? pick(r, fs_) : null;
      const targets = filePool.filter((p) => p !== from && parentOk(p) && m.get(p) !== null);
      if (from && targets.length) o = { op: 'rename', from, to: pick(r, targets) };
    } else if (kind === 'unlink') {
      const fs_ = existingFiles();
      if (fs_.length) o = { op: 'unlink', p: pick(r, fs_) };
    } else if (kind === 'mkdir') {
      const free = dirsPool.filter((d) => d && !m.has(d) && parentOk(d));
      if (free.length) o = { op: 'mkdir', p: pick(r, free) };
    } else {
      const empty = dirsPool.filter((d) => d && isEmptyDir(m, d));
      if (empty.length) o = { op: 'rmdir', p: pick(r, empty) };
    }
    if (!o) continue;
    ops.push(o);
    m = applyOp(m, o);
  }
  return ops;
}

/** Lower contents of one dirrename round's directory. */
function dirLower(i: number): Model {
  const m: Model = new Map();
  m.set('merged', null);
  m.set('merged/m0', `lower r${i} m0\n`);
  m.set('merged/m1', `lower r${i} m1\n`);
  m.set('merged/empty', null);
  m.set('lf', `lower r${i} lf\n`);
  return m;
}

/** An upper-only directory is built, then moved around (into and out of merged dirs). */
function dirOps(r: () => number, init: Model, count: number): Op[] {
  const ops: Op[] = [];
  let m = init;
  const push = (o: Op) => {
    ops.push(o);
    m = applyOp(m, o);
  };
  push({ op: 'mkdir', p: 'ud' });
  for (const f of ['a', 'b', 'c', 'd']) push({ op: 'create', p: `ud/${f}`, data: randomText(r, 3000) });
  push({ op: 'mkdir', p: 'ud/sub' });
  push({ op: 'create', p: 'ud/sub/x', data: randomText(r, 3000) });
  push({ op: 'mark' });
  let at = 'ud';
  const spots = ['ud', 'ud2', 'merged/ud', 'merged/empty', 'merged/ud3', 'ud4'];
  while (ops.length < count) {
    const roll = r();
    if (roll < 0.7) {
      const targets = spots.filter((s) => s !== at && (!m.has(s) || isEmptyDir(m, s)));
      if (!targets.length) continue;
      const to = pick(r, targets);
      push({ op: 'rename', from: at, to });
      at = to;
    } else if (roll < 0.8) {
      const free = spots.filter((s) => !m.has(s) && !s.startsWith('merged/'));
      if (free.length) push({ op: 'mkdir', p: pick(r, free) }); // an empty upper dir to rename over
    } else {
      const f = pick(r, ['a', 'b', 'c', 'd', 'e', 'sub/x', 'sub/y']);
      const p = `${at}/${f}`;
      push(m.has(p) ? { op: pick(r, ['overwrite', 'append'] as const), p, data: randomText(r, 1000) } : { op: 'create', p, data: randomText(r, 1000) });
    }
  }
  return ops;
}

function writeModel(root: string, m: Model): void {
  mk(root);
  for (const [k, v] of [...m].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const p = path.join(root, k);
    if (v === null) mk(p);
    else fs.writeFileSync(p, v);
  }
}

interface OpsInfo {
  log: string;
  ops: Op[];
  init: Model;
  killedAfterExit: string | null;
}

function opsKind(which: 'burst' | 'dirrename'): Kind<OpsInfo> {
  const windowMs = which === 'burst' ? 1000 : 800;
  const rd = (i: number) => `r${i}`;
  const inits = new Map<number, Model>();
  return {
    async prepare(c, rounds) {
      for (let i = 0; i < rounds; i++) {
        const m = which === 'burst' ? burstLower(i) : dirLower(i);
        inits.set(i, m);
        writeModel(path.join(c.lowers[0]!, rd(i)), m);
        // The second lower only adds a name, so r<i> is merged across both lowers.
        writeModel(path.join(c.lowers[1]!, rd(i)), new Map([['from-lower1', 'lower1\n']]));
        m.set('from-lower1', 'lower1\n');
      }
    },
    async round(c, i, r, pid) {
      const init = inits.get(i)!;
      const tg = performance.now();
      const ops = which === 'burst' ? burstOps(r, init, 6000) : dirOps(r, init, 4000);
      if (process.env.LAYERFS_CRASH_DEBUG) c.log(`round ${i}: generated ${ops.length} ops in ${(performance.now() - tg).toFixed(0)} ms`);
      const opsFile = path.join(c.dir, `ops-${i}.json`);
      const log = path.join(c.dir, `log-${i}.txt`);
      fs.writeFileSync(opsFile, JSON.stringify({ root: path.join(c.mnt, rd(i)), ops }));
      fs.writeFileSync(log, '');
      const child = start(process.execPath, [CHILD, opsFile, log]);
      let exited: string | null = null;
      void child.done.then(({ code, stderr }) => (exited = `exit ${code} ${stderr.trim()}`));
      // The kill window opens when the child has started (burst) or passed its marker (dirrename).
      const ready = which === 'burst' ? /^S$/m : /^M \d+$/m;
      const until = Date.now() + 60_000;
      while (!ready.test(fs.readFileSync(log, 'utf8')) && exited === null) {
        if (Date.now() > until) throw new Error('the ops child did not get going within 60 s');
        await sleep(2);
      }
      await sleep(r() * windowMs);
      const killedAfterExit = exited;
      await killNow(pid);
      await child.done;
      return { log: fs.readFileSync(log, 'utf8'), ops, init, killedAfterExit };
    },
    async verify(c, i, info) {
      const problems: string[] = [];
      const lines = info.log.trim().split('\n');
      let done = -1;
      let begun = -1;
      let failed: string | null = null;
      for (const l of lines) {
        const [k, n, code] = l.split(' ');
        if (k === 'D' || k === 'M') done = Number(n);
        if (k === 'B') begun = Number(n);
        if (k === 'F') failed = `op ${n} ${JSON.stringify(info.ops[Number(n)])}: ${code}`;
      }
      if (info.killedAfterExit !== null && failed) {
        problems.push(`an operation failed on the live mount, before the kill: ${failed} (${info.killedAfterExit})`);
      }
      let m = info.init;
      for (let k = 0; k <= done; k++) m = applyOp(m, info.ops[k]!);
      const candidates: [string, Map<string, string>][] = [['all logged ops', modelState(m)]];
      if (process.env.LAYERFS_CRASH_DEBUG) c.log(`round ${i}: ${done + 1} ops done before the kill`);
      let cls = info.killedAfterExit !== null ? 'after the child finished all operations' : 'between two operations';
      if (begun > done) {
        const o = info.ops[begun]!;
        cls = `during ${o.op}`;
        candidates.push([`with ${o.op} done`, modelState(applyOp(m, o))]);
        if (o.op === 'create' || o.op === 'overwrite') {
          candidates.push([`with ${o.p} created/truncated but not written`, modelState(applyOp(m, { op: 'create', p: o.p, data: '' }))]);
        }
      }
      const actual = await treeState(path.join(c.mnt, rd(i)));
      const match = candidates.find(([, s]) => sameMap(actual, s));
      if (!match) {
        problems.push(
          `r${i}: the union matches no state the logged operations allow (${done + 1} done, in flight: ${begun > done ? JSON.stringify(info.ops[begun]) : 'none'}):\n` +
            showDiff(actual, candidates[0]![1]),
        );
      }
      return [problems, cls];
    },
  };
}

// =============================================================================== mvdir

interface MvInfo {
  code: number | null;
}

interface Content {
  type: 'dir' | 'file';
  data?: Buffer;
  mode: number;
}

async function walkContents(root: string): Promise<Map<string, Content> | null> {
  if (!exists(root)) return null;
  const out = new Map<string, Content>();
  const visit = async (abs: string, rel: string) => {
    for (const n of (await fsp.readdir(abs)).sort()) {
      const p = path.join(abs, n);
      const r = rel ? `${rel}/${n}` : n;
      const st = await fsp.lstat(p);
      if (st.isDirectory()) {
        out.set(r, { type: 'dir', mode: st.mode & 0o7777 });
        await visit(p, r);
      } else {
        out.set(r, { type: 'file', data: await fsp.readFile(p), mode: st.mode & 0o7777 });
      }
    }
  };
  await visit(root, '');
  return out;
}

function mvdirKind(): Kind<MvInfo> {
  let template = new Map<string, Content>();
  let mvMs = 0;
  const tree = (i: number | string) => `r/tree.${i}`;
  const moved = (i: number | string) => `r/moved.${i}`;
  return {
    async prepare(c, rounds, r) {
      const t = path.join(c.dir, 'template');
      for (const s of ['s0', 's1', 's2']) {
        mk(path.join(t, s));
        for (let k = 0; k < 20; k++) {
          const f = path.join(t, s, `f${k}`);
          fs.writeFileSync(f, cryptoRandomBytes(1024 + int(r, 48 * 1024)));
          fs.chmodSync(f, pick(r, [0o644, 0o600, 0o755, 0o640]));
        }
      }
      fs.writeFileSync(path.join(t, 's1', 'big'), cryptoRandomBytes(4 << 20));
      fs.writeFileSync(path.join(t, 'top'), cryptoRandomBytes(10 * 1024));
      template = (await walkContents(t))!;
      await runOk('chown', ['-R', `${UID}:${GID}`, t]);
      mk(path.join(c.lowers[0]!, 'r'));
      mk(path.join(c.lowers[1]!, 'r'));
      fs.writeFileSync(path.join(c.lowers[1]!, 'r', 'from-lower1'), 'lower1\n');
      for (const i of [...Array(rounds).keys(), 'calib']) await runOk('cp', ['-a', t, path.join(c.lowers[0]!, tree(i))]);
      fs.rmSync(t, { recursive: true });
    },
    async calibrate(c) {
      const t0 = performance.now();
      const { code, stderr } = await start('mv', [path.join(c.mnt, tree('calib')), path.join(c.mnt, moved('calib'))]).done;
      mvMs = performance.now() - t0;
      if (code !== 0) throw new Error(`calibration mv failed: ${stderr}`);
      const got = await walkContents(path.join(c.mnt, moved('calib')));
      if (!got || got.size !== template.size) throw new Error('calibration mv: incomplete copy');
      c.log(`mv of a lower tree (${template.size} entries, ${(treeBytes(template) / 1048576).toFixed(1)} MiB) takes ${mvMs.toFixed(0)} ms here; half the kills land at random in that window, half aimed at the removal of the source`);
    },
    async round(c, i, r, pid) {
      const child = start('mv', [path.join(c.mnt, tree(i)), path.join(c.mnt, moved(i))]);
      // Half the kills at a random time in the move (mostly the copy, which takes most of it);
      // half aimed at the removal of the source, which is short (whiteouts, copy-up of the
      // source's directories): a random delay after the source first shows up in the upper.
      const removal = r() < 0.5;
      const f = r();
      if (removal) {
        let finished = false;
        void child.done.then(() => (finished = true));
        while (!finished && !exists(path.join(c.upper, tree(i)))) await new Promise((res) => setImmediate(res));
        await sleep(f * 60);
      } else {
        await sleep(f * mvMs);
      }
      await killNow(pid);
      const { code } = await child.done;
      return { code };
    },
    async verify(c, i, info) {
      const problems: string[] = [];
      const src = await walkContents(path.join(c.mnt, tree(i)));
      const dst = await walkContents(path.join(c.mnt, moved(i)));
      const complete = (t: Map<string, Content> | null) => t !== null && t.size === template.size && [...template].every(([k, v]) => same(t.get(k), v));
      // The source: every entry still there is intact, nothing foreign.
      for (const [k, v] of src ?? []) {
        if (!same(v, template.get(k))) problems.push(`tree.${i}/${k}: the source changed (${describe(v, template.get(k))})`);
      }
      const srcComplete = complete(src);
      // The destination: what mv has copied so far; at most the one file in flight is short.
      let partial = 0;
      for (const [k, v] of dst ?? []) {
        const want = template.get(k);
        if (!want) {
          problems.push(`moved.${i}/${k}: not in the source tree`);
          continue;
        }
        if (want.type !== v.type) problems.push(`moved.${i}/${k}: ${v.type} instead of ${want.type}`);
        else if (v.type === 'file' && !v.data!.equals(want.data!)) {
          if (v.data!.length < want.data!.length && want.data!.subarray(0, v.data!.length).equals(v.data!)) partial++;
          else problems.push(`moved.${i}/${k}: content is not the source's, nor a prefix of it (${v.data!.length} bytes)`);
        }
      }
      if (partial > 1) problems.push(`moved.${i}: ${partial} incomplete files (mv copies one at a time)`);
      const dstComplete = complete(dst);
      if (!srcComplete && !dstComplete) {
        problems.push(`tree.${i} lost entries (mv was removing it) but moved.${i} is not a complete copy`);
      }
      if (info.code === 0 && (src !== null || !dstComplete)) problems.push(`mv reported success but the move is not complete`);
      let cls: string;
      if (!dst) cls = 'before the copy started';
      else if (!dstComplete) cls = 'while mv copied files';
      else if (srcComplete) cls = 'after the copy, before the removal';
      else if (src) cls = 'while mv removed the source';
      else cls = 'after mv finished';
      return [problems, cls];
    },
  };
}

function same(a: Content | undefined, b: Content | undefined): boolean {
  if (!a || !b || a.type !== b.type) return false;
  return a.type === 'dir' || a.data!.equals(b.data!);
}

function describe(a: Content | undefined, b: Content | undefined): string {
  if (!b) return 'foreign entry';
  if (!a) return 'missing';
  if (a.type !== b.type) return `${a.type} instead of ${b.type}`;
  return `${a.data?.length} bytes instead of ${b.data?.length}`;
}

function treeBytes(t: Map<string, Content>): number {
  let n = 0;
  for (const v of t.values()) n += v.data?.length ?? 0;
  return n;
}

// =============================================================================== the loop

function kindFor(o: KillOptions): Kind<any> {
  switch (o.kind) {
    case 'copyup':
      return copyupKind(o.sizeMiB ?? 64);
    case 'burst':
      return opsKind('burst');
    case 'dirrename':
      return opsKind('dirrename');
    case 'mvdir':
      return mvdirKind();
  }
}

export async function runKill(o: KillOptions): Promise<KillReport> {
  const t0 = performance.now();
  const r = rng(o.seed);
  const c: Ctx = {
    dir: o.dir,
    lowers: [path.join(o.dir, 'lower0'), path.join(o.dir, 'lower1')],
    upper: path.join(o.dir, 'upper'),
    work: path.join(o.dir, 'work'),
    mnt: path.join(o.dir, 'mnt'),
    log: o.log,
    notes: [],
  };
  for (const d of [...c.lowers, c.upper, c.work, c.mnt]) mk(d);
  const kind = kindFor(o);
  const report: KillReport = { kind: o.kind, seed: o.seed, rounds: 0, landed: {}, problems: [], ms: 0, notes: c.notes };
  await kind.prepare(c, o.rounds, r);
  // Per round, file hashes are reused while inode, size, mtime and ctime stand still (any write
  // moves the ctime); after the last round every byte is hashed again.
  const hashCache = new Map<string, string>();
  const before = await Promise.all(c.lowers.map((l) => layerPrint(l, hashCache)));
  const spec = { lowers: c.lowers, upper: c.upper, work: c.work, mnt: c.mnt, timeoutMs: 60_000 };
  await mountLayerfs(spec);
  try {
    await kind.calibrate?.(c, r);
    const debug = process.env.LAYERFS_CRASH_DEBUG ? o.log : () => {};
    for (let i = 0; i < o.rounds; i++) {
      if (o.stop?.()) break;
      const roundSeed = Math.floor(r() * 2 ** 32);
      const rr = rng(roundSeed);
      const problems: string[] = [];
      const pid = daemonPid(c.mnt);
      let tt = performance.now();
      const lap = (what: string) => {
        const now = performance.now();
        debug(`round ${i}: ${what} ${(now - tt).toFixed(0)} ms`);
        tt = now;
      };
      const info = await kind.round(c, i, rr, pid);
      lap('operation + kill');
      problems.push(...(await deadMountChecks(c.mnt)));
      lap('dead-mount checks + umount');
      if (isMounted(c.mnt)) {
        report.problems.push(...problems.map((p) => `round ${i} (seed ${roundSeed}): ${p}`));
        break;
      }
      kind.between?.(c, i);
      await mountLayerfs(spec);
      lap('remount');
      const left = workEntries(c.work);
      if (left.length) problems.push(`workdir/work not empty after the remount: ${left.map((e) => e.name).join(', ')}`);
      const [p, cls] = await kind.verify(c, i, info);
      problems.push(...p);
      lap('verify');
      for (const name of fs.readdirSync(c.mnt)) if (name.startsWith('#')) problems.push(`a work-dir name is visible in the union: ${name}`);
      for (const [k, l] of c.lowers.entries()) problems.push(...diffPrints(before[k]!, await layerPrint(l, hashCache), `lower${k}`).slice(0, 10));
      lap('lowers');
      report.landed[cls] = (report.landed[cls] ?? 0) + 1;
      report.rounds++;
      if (o.progressEvery && report.rounds % o.progressEvery === 0) {
        o.log(`${report.rounds}/${o.rounds} kills checked (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      }
      if (!processAlive(daemonPid(c.mnt))) problems.push('the remounted daemon is not running');
      if (problems.length) {
        report.problems.push(...problems.map((p) => `round ${i} (round seed ${roundSeed}, kill ${cls}): ${p}`));
        if (o.stopOnProblem !== false) break;
      }
    }
  } finally {
    await unmount(c.mnt);
  }
  for (const [k, l] of c.lowers.entries()) {
    report.problems.push(...diffPrints(before[k]!, await layerPrint(l), `after the last round, lower${k}`).slice(0, 10));
  }
  report.ms = performance.now() - t0;
  return report;
}

export function formatReport(rep: KillReport): string {
  const landed = Object.entries(rep.landed)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${v}× ${k}`)
    .join(', ');
  return `${rep.kind}: ${rep.rounds} kills in ${(rep.ms / 1000).toFixed(1)} s (seed ${rep.seed}); landed: ${landed}` +
    (rep.problems.length ? `\n  PROBLEMS:\n  ${rep.problems.join('\n  ')}` : '');
}
