// FUSE backends compared on this machine, in one run:
//
//   kernel overlayfs (reference) | fuse-overlayfs | layerfs on fuse-native (bin/layerfs mount
//   -o backend=fuse-native) | layerfs as shipped (bin/layerfs mount: the low-level binding,
//   requests read by the JS thread) | the low-level binding with a session thread ('thread',
//   served by this script in a child)
//
//   npx tsx bench/probes/backends.ts [--reps N] [--files N] [--mib N] [--only name,name]
//
// Workloads (all backends serve the same lower layers, each with its own upper and work dir):
//   - round trip: a tight stat() loop on one file with entry/attr timeout 0 (every stat is a
//     GETATTR), and a tight getxattr() loop (ENODATA; never cached by the kernel). All backends
//     are mounted at once and the batches interleaved, so each sees the same machine load;
//     medians of 250-op batches. Also the daemon's CPU time per request (from /proc).
//   - find over a tree of N files: cold (fresh mount, page/dentry caches dropped) and warm
//     (right after, within the 1 s cache time).
//   - sequential read of a 1 GiB lower file (in the page cache underneath; fresh mount) and
//     sequential write of 1 GiB (dd bs=1M, no fsync: the FUSE path, not the disk).
// The table shows medians and, for find/dd, the best of the repetitions: on a shared VM
// single runs can be several times slower for reasons outside the backend.
// Everything mounted is unmounted in finally blocks (and on SIGINT/SIGTERM).
//
// Internal: `npx tsx bench/probes/backends.ts --serve JSON` serves one low-level mount (a
// process must not access its own FUSE mount synchronously, so the low-level backend runs in a
// child).

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readState } from '../../src/engine/state.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SELF = fileURLToPath(import.meta.url);
const TSX = 'file://' + path.join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
const LAYERFS = path.join(ROOT, 'bin', 'layerfs');

// ------------------------------------------------------------------------------------------
// --serve: one low-level mount in this process

interface ServeConfig {
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
  timeout: number;
  dispatch: 'thread' | 'inline';
}

async function serve(cfg: ServeConfig): Promise<void> {
  const { UnionFs } = await import('../../src/union/unionfs.ts');
  const { mountLowLevel } = await import('../../src/fuse/ll-adapter.ts');
  const u = new UnionFs({ lowerdirs: cfg.lowers, upperdir: cfg.upper, workdir: cfg.work });
  u.prepareWorkdir();
  const m = await mountLowLevel(u, {
    mountpoint: cfg.mnt, fsname: 'layerfs-bench', readonly: false, allowOther: true,
    cacheTimeout: cfg.timeout, extra: ['dev', 'suid'], debug: false, dispatch: cfg.dispatch,
  });
  process.stdout.write('ready\n');
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void m.unmount());
  await m.exited;
  process.exit(0);
}

// ------------------------------------------------------------------------------------------
// helpers

function sh(cmd: string, args: string[], opts: { quiet?: boolean } = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => {
      if (code !== 0 && !opts.quiet) process.stderr.write(`  (${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()})\n`);
      resolve({ code, out, err });
    });
  });
}

async function shOk(cmd: string, args: string[]): Promise<string> {
  const r = await sh(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.err.trim()}`);
  return r.out;
}

function mountedAt(mnt: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === mnt);
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function cpuMs(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    const hz = 100; // USER_HZ on Linux
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / hz; // utime + stime
  } catch {
    return NaN;
  }
}

/** The pid of a process whose command line mentions both words. */
function findPid(...words: string[]): number | undefined {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (words.every((w) => cmd.includes(w))) return Number(d);
    } catch {
      // gone
    }
  }
  return undefined;
}

async function dropCaches(): Promise<void> {
  await sh('sync', []);
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

// ------------------------------------------------------------------------------------------
// backends

interface Spec {
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
  /** Entry/attr cache seconds. */
  timeout: number;
}

interface Mounted {
  mnt: string;
  pid?: number;
  unmount(): Promise<void>;
}

interface Backend {
  name: string;
  /** The smallest cache time it can be mounted with (all take timeout=0 now). */
  minTimeout?: number;
  mount(s: Spec): Promise<Mounted>;
}

const live = new Set<Mounted>();

async function forceUnmount(mnt: string): Promise<void> {
  if (!mountedAt(mnt)) return;
  await sh('fusermount3', ['-u', mnt], { quiet: true });
  if (mountedAt(mnt)) await sh('umount', [mnt], { quiet: true });
  if (mountedAt(mnt)) await sh('umount', ['-l', mnt], { quiet: true });
}

function track(m: Mounted): Mounted {
  live.add(m);
  const orig = m.unmount;
  m.unmount = async () => {
    try {
      await orig();
    } finally {
      await forceUnmount(m.mnt);
      live.delete(m);
    }
  };
  return m;
}

const kernel: Backend = {
  name: 'kernel overlayfs',
  async mount(s) {
    await shOk('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${s.lowers.join(':')},upperdir=${s.upper},workdir=${s.work}`, s.mnt]);
    return track({ mnt: s.mnt, unmount: async () => void (await sh('umount', [s.mnt])) });
  },
};

const fuseOverlayfs: Backend = {
  name: 'fuse-overlayfs',
  async mount(s) {
    await shOk('fuse-overlayfs', ['-o', `lowerdir=${s.lowers.join(':')},upperdir=${s.upper},workdir=${s.work},timeout=${s.timeout}`, s.mnt]);
    await waitFor(() => mountedAt(s.mnt), 10_000, 'fuse-overlayfs mount');
    const pid = findPid('fuse-overlayfs', s.mnt);
    return track({
      mnt: s.mnt,
      pid,
      unmount: async () => {
        await sh('fusermount3', ['-u', s.mnt]);
        if (pid) await waitFor(() => !fs.existsSync(`/proc/${pid}`), 10_000, 'fuse-overlayfs exit').catch(() => {});
      },
    });
  },
};

function layerfsMount(name: string, backend: 'fuse-native' | 'lowlevel'): Backend {
  return {
    name,
    async mount(s) {
      const o = `lowerdir=${s.lowers.join(':')},upperdir=${s.upper},workdir=${s.work},timeout=${s.timeout},backend=${backend}`;
      await shOk(LAYERFS, ['mount', '-o', o, s.mnt]);
      const pid = readState(s.mnt)?.pid;
      return track({ mnt: s.mnt, pid, unmount: async () => void (await sh(LAYERFS, ['umount', s.mnt])) });
    },
  };
}

const fuseNative = layerfsMount('layerfs fuse-native', 'fuse-native');
const layerfsDefault = layerfsMount('layerfs lowlevel', 'lowlevel');

function lowLevel(dispatch: 'thread' | 'inline'): Backend {
  return {
    name: `layerfs lowlevel ${dispatch}`,
    async mount(s) {
      const cfg: ServeConfig = { ...s, dispatch };
      const child: ChildProcess = spawn(process.execPath, ['--import', TSX, SELF, '--serve', JSON.stringify(cfg)], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const exit = new Promise<void>((r) => child.on('exit', () => r()));
      await new Promise<void>((resolve, reject) => {
        let buf = '';
        child.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          if (buf.includes('ready\n')) resolve();
        });
        child.on('exit', (code) => reject(new Error(`low-level server exited (${code}) before mounting`)));
      });
      return track({
        mnt: s.mnt,
        pid: child.pid,
        unmount: async () => {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exit;
          clearTimeout(t);
        },
      });
    },
  };
}

// lowLevel('inline') is what bin/layerfs serves (layerfsDefault); run it with --only inline.
const ALL: Backend[] = [kernel, fuseOverlayfs, fuseNative, layerfsDefault, lowLevel('thread'), lowLevel('inline')];
const DEFAULT_SET = ['kernel overlayfs', 'fuse-overlayfs', 'layerfs fuse-native', 'layerfs lowlevel', 'layerfs lowlevel thread'];

// ------------------------------------------------------------------------------------------
// workloads

interface Tree {
  dir: string;
  lowers: string[];
  /** Per backend: upper, work, mount point. */
  slot(i: number, tag: string): Spec;
}

function buildTree(dir: string, files: number, mib: number): Tree {
  const l0 = path.join(dir, 'lower0');
  const l1 = path.join(dir, 'lower1');
  for (const l of [l0, l1]) fs.mkdirSync(l, { recursive: true });
  // The find tree: 100 files per directory, directories split over both lowers (merged).
  const perDir = 100;
  for (let i = 0; i < files; i++) {
    const d = `tree/d${Math.floor(i / perDir)}`;
    const lower = i % 2 ? l0 : l1;
    fs.mkdirSync(path.join(lower, d), { recursive: true });
    fs.writeFileSync(path.join(lower, d, `f${i}`), `${i}\n`);
  }
  fs.writeFileSync(path.join(l0, 'f'), 'round trip target\n');
  // The big file for sequential reads.
  const big = path.join(l0, 'big.bin');
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const fd = fs.openSync(big, 'w');
  for (let i = 0; i < mib; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  return {
    dir,
    lowers: [l0, l1],
    slot(i, tag) {
      const base = path.join(dir, `${tag}-${i}`);
      const s = { lowers: [l0, l1], upper: path.join(base, 'upper'), work: path.join(base, 'work'), mnt: path.join(base, 'mnt'), timeout: 1 };
      for (const d of [s.upper, s.work, s.mnt]) fs.mkdirSync(d, { recursive: true });
      return s;
    },
  };
}

const RTT_PY = `
import os, sys, time, json, statistics
paths = sys.argv[2:]; rounds = int(sys.argv[1]); batch = 250
def gx(p):
    try: os.getxattr(p, 'user.none', follow_symlinks=False)
    except OSError: pass
ops = {'stat': lambda p: os.stat(p), 'getxattr': gx}
res = {p: {k: [] for k in ops} for p in paths}
for p in paths:
    for f in ops.values():
        for _ in range(50): f(p)
for r in range(rounds):
    for p in paths:
        for k, f in ops.items():
            t = time.perf_counter()
            for _ in range(batch): f(p)
            res[p][k].append((time.perf_counter() - t) / batch * 1e6)
print(json.dumps({p: {k: statistics.median(v) for k, v in d.items()} for p, d in res.items()}))
`;

interface Row {
  statUs?: number;
  getxattrUs?: number;
  cpuUsPerOp?: number;
  findColdMs: number[];
  findWarmMs: number[];
  readMBs: number[];
  writeMBs: number[];
}

async function timed(cmd: string, args: string[]): Promise<{ ms: number; out: string }> {
  const t = process.hrtime.bigint();
  const out = await shOk(cmd, args);
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, out };
}

async function roundTrips(backends: Backend[], tree: Tree, rows: Map<string, Row>, rounds: number): Promise<void> {
  const mounts: { b: Backend; m: Mounted }[] = [];
  try {
    for (const [i, b] of backends.entries()) {
      const s = { ...tree.slot(i, 'rtt'), timeout: b.minTimeout ?? 0 };
      mounts.push({ b, m: await b.mount(s) });
    }
    const paths = mounts.map(({ m }) => path.join(m.mnt, 'f'));
    const cpu0 = mounts.map(({ m }) => cpuMs(m.pid));
    const r = JSON.parse(await shOk('python3', ['-c', RTT_PY, String(rounds), ...paths])) as Record<string, { stat: number; getxattr: number }>;
    const cpu1 = mounts.map(({ m }) => cpuMs(m.pid));
    const ops = (rounds * 250 + 50) * 2;
    for (const [k, { b }] of mounts.entries()) {
      const row = rows.get(b.name)!;
      // With a cache time the stats never reach the daemon: not a round trip.
      row.statUs = b.minTimeout ? undefined : r[paths[k]!]!.stat;
      row.getxattrUs = r[paths[k]!]!.getxattr;
      row.cpuUsPerOp = ((cpu1[k]! - cpu0[k]!) * 1000) / ops;
    }
  } finally {
    for (const { m } of mounts.reverse()) await m.unmount();
  }
}

async function findAndDd(b: Backend, i: number, tree: Tree, row: Row, mib: number): Promise<void> {
  const s = tree.slot(i, `io-${b.name.replace(/\W+/g, '_')}`);
  // find: fresh mount, caches dropped.
  let m = await b.mount(s);
  try {
    await dropCaches();
    const cold = await timed('find', [s.mnt]);
    const warm = await timed('find', [s.mnt]);
    const n = cold.out.split('\n').length - 1;
    if (n < 1000) throw new Error(`${b.name}: find saw only ${n} entries`);
    row.findColdMs.push(cold.ms);
    row.findWarmMs.push(warm.ms);
  } finally {
    await m.unmount();
  }
  // dd: a fresh mount (no FUSE page cache), the lower file itself in the page cache.
  await sh('dd', [`if=${path.join(tree.lowers[0]!, 'big.bin')}`, 'of=/dev/null', 'bs=1M', 'status=none']);
  m = await b.mount(s);
  try {
    const bytes = mib * 2 ** 20;
    const rd = await timed('dd', [`if=${path.join(s.mnt, 'big.bin')}`, 'of=/dev/null', 'bs=1M', 'status=none']);
    row.readMBs.push(bytes / 1e6 / (rd.ms / 1000));
    const out = path.join(s.mnt, 'out.bin');
    // An untimed write first: on this VM, memory freed a moment ago (the previous rm) is
    // faulted back in from the host on first touch, which can make one run's copies several
    // times slower, whatever the backend.
    await shOk('dd', ['if=/dev/zero', `of=${out}`, 'bs=1M', `count=${mib}`, 'status=none']);
    await fs.promises.unlink(out);
    const wr = await timed('dd', ['if=/dev/zero', `of=${out}`, 'bs=1M', `count=${mib}`, 'status=none']);
    row.writeMBs.push(bytes / 1e6 / (wr.ms / 1000));
    await fs.promises.unlink(out);
  } finally {
    await m.unmount();
  }
  fs.rmSync(path.dirname(s.mnt), { recursive: true, force: true });
}

function fmt(v: number | undefined, digits = 0): string {
  return v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits);
}

function printTable(backends: Backend[], rows: Map<string, Row>, reps: number, files: number, mib: number): void {
  const cols = backends.map((b) => b.name);
  const lines: [string, (r: Row) => string][] = [
    ['stat round trip, timeout=0 (µs, median)', (r) => (r.statUs === undefined ? 'n/a*' : fmt(r.statUs, 1))],
    ['getxattr round trip, ENODATA (µs, median)', (r) => fmt(r.getxattrUs, 1)],
    ['daemon CPU per request (µs)', (r) => fmt(r.cpuUsPerOp, 1)],
    [`find ${files} files, cold (ms)`, (r) => fmt(median(r.findColdMs))],
    [`find ${files} files, warm (ms)`, (r) => fmt(median(r.findWarmMs))],
    [`seq read ${mib} MiB, dd bs=1M (MB/s)`, (r) => fmt(median(r.readMBs))],
    [`seq write ${mib} MiB, dd bs=1M (MB/s)`, (r) => fmt(median(r.writeMBs))],
    [`  best of ${reps}: seq read (MB/s)`, (r) => fmt(Math.max(...r.readMBs))],
    [`  best of ${reps}: seq write (MB/s)`, (r) => fmt(Math.max(...r.writeMBs))],
    [`  best of ${reps}: find cold (ms)`, (r) => fmt(Math.min(...r.findColdMs))],
  ];
  const w0 = Math.max(...lines.map(([l]) => l.length));
  const ws = cols.map((c) => Math.max(c.length, 9));
  const pad = (s: string, n: number) => ' '.repeat(Math.max(0, n - s.length)) + s;
  const out: string[] = [];
  out.push(`${'workload'.padEnd(w0)} | ${cols.map((c, k) => pad(c, ws[k]!)).join(' | ')}`);
  out.push(`${'-'.repeat(w0)}-+-${ws.map((n) => '-'.repeat(n)).join('-+-')}`);
  for (const [label, f] of lines) out.push(`${label.padEnd(w0)} | ${cols.map((c, k) => pad(f(rows.get(c)!), ws[k]!)).join(' | ')}`);
  console.log('\n' + out.join('\n'));
  const ref = rows.get('fuse-overlayfs');
  if (ref) {
    console.log(`\nratio to fuse-overlayfs (time: lower is better; MB/s: higher is better)`);
    const ratio = (a: number | undefined, b: number | undefined) => (a && b ? (a / b).toFixed(2) + 'x' : '-');
    const rl: [string, (r: Row) => string][] = [
      ['stat round trip', (r) => ratio(r.statUs, ref.statUs)],
      ['getxattr round trip', (r) => ratio(r.getxattrUs, ref.getxattrUs)],
      ['find cold', (r) => ratio(median(r.findColdMs), median(ref.findColdMs))],
      ['find warm', (r) => ratio(median(r.findWarmMs), median(ref.findWarmMs))],
      ['seq read', (r) => ratio(median(r.readMBs), median(ref.readMBs))],
      ['seq write', (r) => ratio(median(r.writeMBs), median(ref.writeMBs))],
    ];
    for (const [label, f] of rl) console.log(`${label.padEnd(w0)} | ${cols.map((c, k) => pad(f(rows.get(c)!), ws[k]!)).join(' | ')}`);
  }
  if (backends.some((b) => b.minTimeout)) console.log('* mounted with a cache time, so its stats are cached: see getxattr for its round trip');
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`\n${reps} repetition(s) of find/dd (medians); ${os.cpus().length} CPUs; load average now ${load}; kernel ${os.release()}; node ${process.version}`);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--serve') return serve(JSON.parse(argv[1]!) as ServeConfig);
  const opt = (name: string, def: number) => {
    const i = argv.indexOf(name);
    return i >= 0 ? Number(argv[i + 1]) : def;
  };
  const reps = opt('--reps', 3);
  const files = opt('--files', 10_000);
  const mib = opt('--mib', 1024);
  const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1]!.split(',') : null;
  if (process.getuid?.() !== 0) throw new Error('run as root (mounts, drop_caches)');
  const backends = ALL.filter((b) => (only ? only.some((o) => b.name.includes(o)) : DEFAULT_SET.includes(b.name)));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-bench-'));
  const cleanup = async () => {
    for (const m of [...live]) {
      try {
        await m.unmount();
      } catch (e) {
        process.stderr.write(`unmount ${m.mnt}: ${e}\n`);
      }
    }
    for (const m of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(dir + '/'))) {
      await forceUnmount(m);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: unmounting\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  process.on('uncaughtException', (e) => {
    process.stderr.write(`${e?.stack ?? e}\nunmounting\n`);
    void cleanup().finally(() => process.exit(1));
  });
  try {
    process.stderr.write(`building the tree (${files} files, ${mib} MiB file) in ${dir}\n`);
    const tree = buildTree(dir, files, mib);
    const rows = new Map<string, Row>(backends.map((b) => [b.name, { findColdMs: [], findWarmMs: [], readMBs: [], writeMBs: [] }]));
    process.stderr.write('round trips (all backends mounted, batches interleaved)\n');
    await roundTrips(backends, tree, rows, 40);
    for (let r = 0; r < reps; r++) {
      for (const [i, b] of backends.entries()) {
        process.stderr.write(`rep ${r + 1}/${reps}: find + dd on ${b.name}\n`);
        await findAndDd(b, i, tree, rows.get(b.name)!, mib);
      }
    }
    printTable(backends, rows, reps, files, mib);
  } finally {
    await cleanup();
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error)?.stack ?? e}\n`);
  process.exit(1);
});
