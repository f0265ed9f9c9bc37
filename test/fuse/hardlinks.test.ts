// Hard links whose kernel dentries are forgotten: every name the kernel still holds must keep
// reaching the object. The kernel keeps one inode for all names of an upper hard link, so when
// the dentries of one name's directory are reclaimed (memory pressure: here a memory cgroup's
// force_empty), the daemon gets a FORGET for that directory while the object lives on through
// the other names. Each scenario runs on kernel overlayfs and on layerfs, same steps.

import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hierarchies, removeCgroups } from '../../src/launcher/cgroup.ts';
import * as sys from '../../src/sys/index.ts';
import { run } from '../helpers/exec.ts';
import { makeTmp, mountFor, unmount, type MountTarget } from '../helpers/mounts.ts';

const isRoot = process.getuid?.() === 0;
const t0 = isRoot ? test.serial : test.skip; // serial: memory pressure affects every mount

/** A memory cgroup to charge dentries to, and a way to make the kernel reclaim them. */
interface Pressure {
  /** Run `sh -c script` inside the cgroup, to completion. */
  inside(script: string, ...args: string[]): void;
  /** Start `cmd args` inside the cgroup; resolves with its stdout (rejects on a non-zero exit). */
  spawnInside(cmd: string, args: string[]): Promise<string>;
  /** Make the kernel drop what is charged to the cgroup (unused dentries and inodes among it). */
  reclaim(): void;
}

function pressure(t: ExecutionContext): Pressure {
  const mem = hierarchies().find((h) => h.controllers.includes('memory'));
  const name = `layerfs-hl-${randomBytes(4).toString('hex')}`;
  let dir: string | null = null;
  if (mem) {
    dir = path.join(mem.own, name);
    fs.mkdirSync(dir);
    const created = dir;
    t.teardown(() => void removeCgroups([created])); // kills what the test left in it, then removes it
  }
  const v1 = mem?.version === 1;
  return {
    inside(script, ...args) {
      const join = dir ? `echo $$ > ${dir}/cgroup.procs; ` : '';
      execFileSync('sh', ['-c', join + script, 'sh', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    },
    async spawnInside(cmd, args) {
      const join = dir ? `echo $$ > ${dir}/cgroup.procs; ` : '';
      const r = await run('sh', ['-c', `${join}exec "$0" "$@"`, cmd, ...args], { timeoutMs: 300_000 });
      if (r.code !== 0) throw new Error(`${cmd} exited ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''}: ${r.stderr}`);
      return r.stdout.toString();
    },
    reclaim() {
      // With processes in the cgroup their own memory cannot all go (no swap): the kernel says
      // EBUSY / EAGAIN after reclaiming what it can, dentries and inodes included.
      try {
        if (dir && v1) for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(dir, 'memory.force_empty'), '1');
        else if (dir) fs.writeFileSync(path.join(dir, 'memory.reclaim'), String(64 << 20));
        else fs.writeFileSync('/proc/sys/vm/drop_caches', '2'); // no memory cgroup: every unused dentry
      } catch (e) {
        if (!['EBUSY', 'EAGAIN'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
      }
    },
  };
}

interface Layers {
  dir: string;
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
  m(rel: string): string;
  remount(): Promise<void>;
}

async function layers(t: ExecutionContext, target: MountTarget, prepareLower?: (lower: string) => void): Promise<Layers> {
  const dir = makeTmp(t, `layerfs-hl-${target}-`);
  const l: Layers = {
    dir,
    lowers: [path.join(dir, 'l1'), path.join(dir, 'l2')],
    upper: path.join(dir, 'u'),
    work: path.join(dir, 'w'),
    mnt: path.join(dir, 'm'),
    m: (rel) => path.join(dir, 'm', rel),
    async remount() {
      await unmount(l.mnt);
      await mountFor(t, target, { lowers: l.lowers, upper: l.upper, work: l.work, mnt: l.mnt });
    },
  };
  for (const d of [...l.lowers, l.upper, l.work, l.mnt]) fs.mkdirSync(d);
  prepareLower?.(l.lowers[0]);
  await mountFor(t, target, { lowers: l.lowers, upper: l.upper, work: l.work, mnt: l.mnt });
  return l;
}

/** Everything a caller does with a name: read, stat, xattrs, open for write; errors as codes. */
function probe(p: string, write: string): string[] {
  const out: string[] = [];
  const step = (what: string, f: () => string): void => {
    try {
      out.push(`${what}: ${f()}`);
    } catch (e) {
      out.push(`${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  step('read', () => fs.readFileSync(p, 'utf8').trim());
  step('stat', () => `nlink=${fs.statSync(p).nlink}`);
  step('setxattr', () => (sys.lsetxattr(p, 'user.hl', write), 'ok'));
  step('getxattr', () => sys.lgetxattr(p, 'user.hl')?.toString() ?? 'none');
  step('write', () => (fs.appendFileSync(p, `${write}\n`), 'ok'));
  return out;
}

interface Scenario {
  /** Make the two names through the mount (before the remount that empties the caches). */
  make(l: Layers): void;
  lowerContent?: (lower: string) => void;
  /** Looked up inside the cgroup (its dentries are reclaimed). */
  first: string;
  /** Held open outside it. */
  second: string;
  /** After both lookups, before the reclaim. */
  between?: (l: Layers) => void;
  /** The names to check afterwards. */
  check: string[];
}

const pair = (l: Layers): void => {
  fs.mkdirSync(l.m('d1'));
  fs.mkdirSync(l.m('d2'));
  fs.writeFileSync(l.m('d1/a'), 'data\n');
  fs.linkSync(l.m('d1/a'), l.m('d2/b'));
};

const SCENARIOS: Record<string, Scenario> = {
  'd1/a looked up first, then d2/b': { make: pair, first: 'd1/a', second: 'd2/b', check: ['d2/b', 'd1/a'] },
  'd2/b looked up first, then d1/a': { make: pair, first: 'd2/b', second: 'd1/a', check: ['d1/a', 'd2/b'] },
  'the first name renamed': { make: pair, first: 'd1/a', second: 'd2/b', between: (l) => fs.renameSync(l.m('d1/a'), l.m('d2/c')), check: ['d2/b', 'd2/c'] },
  'the first name unlinked': { make: pair, first: 'd1/a', second: 'd2/b', between: (l) => fs.unlinkSync(l.m('d1/a')), check: ['d2/b'] },
  'the first name renamed into another directory, its old directory forgotten': {
    make: (l) => {
      pair(l);
      fs.mkdirSync(l.m('d3'));
    },
    first: 'd1/a',
    second: 'd2/b',
    between: (l) => fs.renameSync(l.m('d1/a'), l.m('d3/a')),
    check: ['d2/b', 'd3/a'],
  },
  'an object copied up from a lower between the two lookups': {
    make: () => undefined,
    lowerContent: (lower) => {
      fs.mkdirSync(path.join(lower, 'd1'));
      fs.mkdirSync(path.join(lower, 'd2'));
      fs.writeFileSync(path.join(lower, 'd1/a'), 'data\n');
      fs.linkSync(path.join(lower, 'd1/a'), path.join(lower, 'd2/b'));
    },
    first: 'd1/a',
    second: 'd2/b',
    between: (l) => fs.chmodSync(l.m('d1/a'), 0o600), // copy-up of d1/a only
    check: ['d2/b', 'd1/a'],
  },
};

async function scenario(t: ExecutionContext, target: MountTarget, s: Scenario): Promise<string[]> {
  const l = await layers(t, target, s.lowerContent);
  s.make(l);
  await l.remount(); // nothing cached: the next lookups make new dentries and nodes
  const p = pressure(t);
  p.inside('stat "$1" >/dev/null', l.m(s.first));
  const fd = fs.openSync(l.m(s.second), 'r'); // holds its dentry (and the shared inode)
  t.teardown(() => {
    try {
      fs.closeSync(fd);
    } catch {
      /* closed */
    }
  });
  s.between?.(l);
  p.reclaim();
  const out: string[] = [];
  for (const name of s.check) for (const line of probe(l.m(name), `via ${name}`)) out.push(`${name} ${line}`);
  out.push(`fstat: nlink=${fs.fstatSync(fd).nlink}`);
  fs.closeSync(fd);
  // What the upper holds afterwards, through a fresh mount.
  await l.remount();
  for (const name of s.check) {
    try {
      out.push(`${name} after remount: ${fs.readFileSync(l.m(name), 'utf8').trim().split('\n').join('|')}`);
    } catch (e) {
      out.push(`${name} after remount: ${(e as NodeJS.ErrnoException).code}`);
    }
  }
  return out;
}

for (const [name, s] of Object.entries(SCENARIOS)) {
  t0(`hard links, kernel dentries reclaimed: ${name}`, async (t) => {
    const kernel = await scenario(t, 'kernel', s);
    const layerfs = await scenario(t, 'layerfs', s);
    t.log(kernel.join('\n'));
    t.false(kernel.some((x) => /: E[A-Z]+$/.test(x)), 'the kernel reaches every name (the reference itself works)');
    t.deepEqual(layerfs, kernel);
  });
}

// ------------------------------------------------------------------------------------------
// stress: 4 workers link, rename, unlink and write while the kernel keeps forgetting dentries

const WORKERS = 4;
const OPS = 1500;
const HOT = ['h0', 'h1'];
const COLD = Array.from({ length: 10 }, (_, i) => `c${i}`);
const DIRS = [...HOT, ...COLD];
const WORKER = path.join(path.dirname(new URL(import.meta.url).pathname), '_hl-worker.mjs');

interface StressResult {
  /** name → content, as the mount shows them at the end. */
  names: Record<string, string>;
  /** Names sharing an object, each group sorted, groups sorted. */
  groups: string[][];
  /** What the workers expected and what went wrong. */
  expected: Record<string, string>;
  errors: string[];
}

async function stress(t: ExecutionContext, target: MountTarget, seed: number): Promise<StressResult> {
  const l = await layers(t, target);
  for (const d of DIRS) fs.mkdirSync(l.m(d));
  await l.remount();
  const p = pressure(t);
  const workers = Array.from({ length: WORKERS }, (_, w) =>
    p.spawnInside(process.execPath, [WORKER, l.mnt, String(w), String(seed + w), String(OPS), HOT.join(','), COLD.join(',')]),
  );
  let done = false;
  const all = Promise.all(workers).finally(() => (done = true));
  let rounds = 0;
  while (!done) {
    p.reclaim();
    rounds++;
    await new Promise((r) => setTimeout(r, 15));
  }
  const reports = (await all).map((o) => JSON.parse(o.trim()) as { names: Record<string, string>; errors: string[] });
  t.log(`${target}: ${rounds} reclaims while the workers ran`);
  const expected: Record<string, string> = {};
  const errors: string[] = [];
  for (const r of reports) {
    Object.assign(expected, r.names);
    errors.push(...r.errors);
  }
  // Every name a listing shows, opened and read (outside the cgroup, after the pressure).
  const names: Record<string, string> = {};
  const byIno = new Map<bigint, string[]>();
  for (const d of DIRS) {
    for (const e of fs.readdirSync(l.m(d)).sort()) {
      const n = `${d}/${e}`;
      try {
        names[n] = fs.readFileSync(l.m(n), 'utf8');
        const ino = fs.statSync(l.m(n), { bigint: true }).ino;
        byIno.set(ino, [...(byIno.get(ino) ?? []), n]);
      } catch (e) {
        errors.push(`final open ${n}: ${(e as NodeJS.ErrnoException).code}`);
      }
    }
  }
  const groups = [...byIno.values()].map((g) => g.sort()).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  return { names, groups, expected, errors };
}

t0('hard links under pressure: 4 workers link, rename, unlink and write while dentries are reclaimed; same as the kernel', async (t) => {
  const seed = 1000 + Math.floor(Math.random() * 1000);
  t.log(`seed ${seed}`);
  const kernel = await stress(t, 'kernel', seed);
  const layerfs = await stress(t, 'layerfs', seed);
  t.deepEqual(kernel.errors, [], 'the reference runs clean');
  t.deepEqual(kernel.names, kernel.expected, 'the reference shows what the workers wrote');
  t.true(kernel.groups.some((g) => g.length > 1), 'some objects end with several names');
  t.deepEqual(layerfs.errors, []);
  t.deepEqual(layerfs.names, layerfs.expected);
  t.deepEqual(layerfs.names, kernel.names);
  t.deepEqual(layerfs.groups, kernel.groups);
});
