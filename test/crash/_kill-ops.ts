// Part of the kill -9 harness (_kill.ts, which describes it and runs the rounds): the burst and
// dirrename kinds, a child process running random operations checked against a model of the tree.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { int, pick, rng, sameMap, sha256, showDiff, sleep, treeState } from './_lib.ts';
import { CHILD, killNow, mk, start, type Kind } from './_kill-common.ts';

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

export function opsKind(which: 'burst' | 'dirrename'): Kind<OpsInfo> {
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
