// Start-up and footprint of layerfs next to its peers, on the two-layer busybox root of
// scripts/make-rootfs.sh (bench/README.md describes every row):
//
//   - `layerfs run … -- /bin/true` next to unshare + kernel overlayfs + pivot_root doing the
//     same: median of N runs;
//   - the engine's targets against fuse-overlayfs, each measured in this run, the contenders
//     interleaved: mount + first read + unmount (median of N rounds); the memory of M idle
//     mounts (fuse-overlayfs: M processes; layerfs: one engine, by default and with
//     LAYERFS_ENGINE_THREADS=all); a warm stat storm of 4 concurrent processes on 4 mounts
//     (median of R rounds).
//
//   npx tsx bench/startup.ts [N] [--mounts M] [--files F] [--passes K] [--storm-rounds R]
//                            [--passes-uncached K0]
//   (as root; N 20, M 50, F 2000 files per storm mount, K 50 stats of each file per process
//   and round, R 7; K0 1: the passes of the storm repeated with -o timeout=0, every stat a
//   request)
//
// Every layerfs command runs with LAYERFS_ENGINE_DIR in the run's temp dir: each engine is
// private to the run, started by it, and stopped by it (also when a step fails, or on SIGINT).

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuMs, enginePid, mountsBelow, pgrepPath, pidsWithEnv, pssKiB, readCalls, rssKiB, sleepSync, stopEngine, threadsOf, waitGone } from './engine.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const layerfs = path.join(repo, 'bin', 'layerfs');
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    mounts: { type: 'string' },
    files: { type: 'string' },
    passes: { type: 'string' },
    'storm-rounds': { type: 'string' },
    'passes-uncached': { type: 'string' },
  },
});
const count = (v: string | undefined, dflt: number, what: string): number => {
  const n = Number(v ?? dflt);
  if (!Number.isInteger(n) || n < 1) throw new Error(`bench/startup.ts: ${what} must be a positive integer, not '${v}'`);
  return n;
};
const N = count(positionals[0], 20, 'N');
const MOUNTS = count(opt.mounts, 50, '--mounts');
const FILES = count(opt.files, 2000, '--files');
const PASSES = count(opt.passes, 50, '--passes');
const STORM_ROUNDS = count(opt['storm-rounds'], 7, '--storm-rounds');
const PASSES_UNCACHED = count(opt['passes-uncached'], 1, '--passes-uncached');
const STORM_MOUNTS = 4;
/** Before memory is read: the mounts and the engine idle (the engine's GC settles). */
const SETTLE_MS = 2000;

const layers = '/var/tmp/layerfs-test-rootfs';
const lower = `${layers}/app:${layers}/base`;

// ------------------------------------------------------------------------------------------
// the run's temp dir, its engines, and cleaning up after them

let tmp = '';
let errFile = '';
let errFd = -1;
/** Engines this run may have started: their directory and environment. */
const engines = new Map<string, NodeJS.ProcessEnv>();
/** What went wrong on the way without failing the run (printed under the tables). */
const notes: string[] = [];

const baseEnv: NodeJS.ProcessEnv = { ...process.env };
delete baseEnv.LAYERFS_ENGINE_DIR;
delete baseEnv.LAYERFS_ENGINE_THREADS;

/** A private engine directory and the environment of every layerfs command that uses it. */
function engine(name: string, threads?: 'all'): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = path.join(tmp, name);
  const env = { ...baseEnv, LAYERFS_RUN_DIR: path.join(tmp, 'run'), TMPDIR: tmp, LAYERFS_ENGINE_DIR: dir, ...(threads ? { LAYERFS_ENGINE_THREADS: threads } : {}) };
  engines.set(dir, env);
  return { dir, env };
}

/** Stop an engine of this run and whatever else runs with its LAYERFS_ENGINE_DIR (by pid). */
function endEngine(dir: string): void {
  const env = engines.get(dir);
  if (!env) return;
  notes.push(...stopEngine(layerfs, dir, env));
  const left = pidsWithEnv('LAYERFS_ENGINE_DIR', dir);
  for (const pid of left) {
    notes.push(`process ${pid} (${procName(pid)}) still ran with LAYERFS_ENGINE_DIR=${dir}: SIGTERM`);
    process.kill(pid, 'SIGTERM');
  }
  waitGone(left, 10_000);
  engines.delete(dir);
}

/** Unmount (lazily) what is still mounted below `dir`, end the fuse-overlayfs daemons named by it. */
function unmountBelow(dir: string): void {
  for (const m of mountsBelow(dir)) spawnSync('umount', ['-l', m]);
  const fo = pgrepPath(dir + '/', 'fuse-overlayfs');
  const left = waitGone(fo, 5_000);
  for (const pid of left) {
    notes.push(`fuse-overlayfs ${pid} still ran 5 s after its unmount (a mount namespace another process copied meanwhile may hold its mount): SIGTERM`);
    process.kill(pid, 'SIGTERM');
  }
  waitGone(left, 5_000);
}

/** Remove `dir` unless something is still mounted below it (then say so). */
function removeDir(dir: string): void {
  const still = mountsBelow(dir);
  if (still.length > 0) notes.push(`not removed, still mounted: ${still.join(' ')}`);
  else fs.rmSync(dir, { recursive: true, force: true });
}

function cleanupAll(): void {
  for (const dir of [...engines.keys()]) endEngine(dir);
  if (!tmp) return;
  unmountBelow(tmp);
  if (errFd >= 0) fs.closeSync(errFd);
  errFd = -1;
  removeDir(tmp);
  tmp = '';
}

/**
 * bench/janitor.ts, detached, holding a pipe from this process: it cleans the temp dir up when
 * this process ends without doing so (tsx SIGKILLs a script busy in spawnSync on Ctrl-C).
 */
function startJanitor(): void {
  const j = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'bench', 'janitor.ts'), layerfs, tmp], {
    cwd: repo,
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
    env: baseEnv,
  });
  j.unref();
  (j.stdin as unknown as { unref(): void }).unref();
}

function procName(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 120);
  } catch {
    return '?';
  }
}

// ------------------------------------------------------------------------------------------
// commands and statistics

/**
 * Run a command to success. stderr goes to a file, never a pipe: a daemon the command leaves
 * behind (fuse-overlayfs, the engine) could hold a pipe open and keep spawnSync waiting.
 */
function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = baseEnv): void {
  let stderr: 'pipe' | number = 'pipe';
  if (errFd >= 0) {
    fs.ftruncateSync(errFd, 0);
    stderr = errFd;
  }
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', stderr], env, timeout: 120_000 });
  if (r.status !== 0) {
    const err = errFd >= 0 ? fs.readFileSync(errFile, 'utf8') : (r.stderr?.toString() ?? '');
    throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status ?? r.signal ?? r.error?.message}: ${err.trim().slice(-500)}`);
  }
}

function timeMs(f: () => void): number {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

function dirs(d: string): { upper: string; work: string; mnt: string } {
  const r = { upper: `${d}/upper`, work: `${d}/work`, mnt: `${d}/mnt` };
  for (const p of Object.values(r)) fs.mkdirSync(p, { recursive: true });
  return r;
}

const ovlOpts = (low: string, d: { upper: string; work: string }): string => `lowerdir=${low},upperdir=${d.upper},workdir=${d.work}`;

/** A mount touched once, as a container's first commands would: from a child process. */
function touch(mnt: string): void {
  sh('sh', ['-c', 'ls "$1/bin" >/dev/null && cat "$1/etc/passwd" >/dev/null', 'sh', mnt]);
}

// ------------------------------------------------------------------------------------------
// the start-up rows (unchanged): layerfs run against unshare + kernel overlayfs

function startupRows(): [string, number[]][] {
  const env = engine('engine').env;
  const rows: [string, number[]][] = [];
  // What the launcher does, by hand: new namespaces, kernel overlay over a fresh upper, /proc,
  // pivot_root, detach the old root, exec /bin/true; the upper removed afterwards.
  const kernel: number[] = [];
  for (let i = 0; i < N + 1; i++) {
    const run = path.join(tmp, `k${i}`);
    const script = [
      'set -e',
      `mkdir -p ${run}/upper ${run}/work ${run}/root`,
      `mount -t overlay overlay -o lowerdir=${lower},upperdir=${run}/upper,workdir=${run}/work ${run}/root`,
      `mount -t proc proc ${run}/root/proc`,
      `mount -t tmpfs tmpfs ${run}/root/tmp`,
      'ip link set lo up',
      `cd ${run}/root`,
      'pivot_root . .',
      'umount -l .',
      'exec /bin/true',
    ].join('\n');
    const ms = timeMs(() => {
      sh('unshare', ['--mount', '--pid', '--uts', '--ipc', '--net', '--cgroup', '--fork', '--propagation', 'private', '--', 'sh', '-c', script]);
      fs.rmSync(run, { recursive: true, force: true });
    });
    if (i > 0) kernel.push(ms); // the first run warms the caches
  }
  rows.push(['unshare + kernel overlayfs + pivot_root', kernel]);

  const run: number[] = [];
  for (let i = 0; i < N + 1; i++) {
    const ms = timeMs(() => sh(layerfs, ['run', '--lower', lower, '--', '/bin/true'], env));
    if (i > 0) run.push(ms);
  }
  rows.push(['layerfs run -- /bin/true', run]);
  return rows;
}

// ------------------------------------------------------------------------------------------
// 0. run --rm /bin/true: layerfs against podman (fuse-overlayfs, and layerfs as its
//    mount_program), on the same busybox base layer, interleaved

interface RunRows {
  podmanFo: number[];
  podmanLf: number[];
  layerfs: number[];
}

function runRows(): RunRows | null {
  for (const tool of ['podman', 'runc']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      notes.push(`no ${tool} (scripts/podman-setup.sh installs podman and runc): no run --rm row`);
      return null;
    }
  }
  // podman refuses a runroot path over 50 characters: a short directory of its own.
  const dir = fs.mkdtempSync('/var/tmp/lfsb-');
  for (const d of ['tmp', 'net']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.writeFileSync(path.join(dir, 'storage.conf'), `[storage]\ndriver = "overlay"\ngraphroot = "${dir}/root"\nrunroot = "${dir}/runroot"\n`);
  fs.writeFileSync(path.join(dir, 'containers.conf'), `[engine]\nimage_copy_tmp_dir = "${dir}/tmp"\n[network]\nnetwork_config_dir = "${dir}/net"\n`);
  const eng = engine('engine-run');
  const env = { ...eng.env, CONTAINERS_CONF: path.join(dir, 'containers.conf'), CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'), CONTAINERS_REGISTRIES_CONF: '/dev/null' };
  const global = ['--root', `${dir}/root`, '--runroot', `${dir}/runroot`, '--tmpdir', `${dir}/libpod`, '--runtime', 'runc', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file', '--network-backend', 'netavark', '--storage-driver', 'overlay'];
  const mp = (prog: string) => [...global, '--storage-opt', `overlay.mount_program=${prog}`];
  const image = 'localhost/layerfs-bench:1';
  const base = `${layers}/base`;
  const imp = spawnSync('sh', ['-c', `tar -C "$0" -c . | podman "$@" import - ${image}`, base, ...mp('/usr/bin/fuse-overlayfs')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  if (imp.status !== 0) {
    const why = imp.stderr.toString().trim().split('\n').pop() ?? '';
    notes.push(`podman import of ${base} failed (exit ${imp.status}: ${why}): no run --rm row`);
    unmountBelow(dir);
    removeDir(dir);
    return null;
  }
  const opts = ['--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768'];
  const r: RunRows = { podmanFo: [], podmanLf: [], layerfs: [] };
  const steps: [keyof RunRows, () => void][] = [
    ['podmanFo', () => sh('podman', [...mp('/usr/bin/fuse-overlayfs'), 'run', '--rm', ...opts, image, '/bin/true'], env)],
    ['podmanLf', () => sh('podman', [...mp(layerfs), 'run', '--rm', ...opts, image, '/bin/true'], env)],
    ['layerfs', () => sh(layerfs, ['run', '--rm', '--lower', base, '--', '/bin/true'], eng.env)],
  ];
  try {
    for (let i = 0; i < N + 1; i++) {
      // A rotating order, so that drift and caches hit each alike; the first round warms up.
      for (let k = 0; k < steps.length; k++) {
        const [key, f] = steps[(i + k) % steps.length]!;
        const ms = timeMs(f);
        if (i > 0) r[key].push(ms);
      }
    }
  } finally {
    spawnSync('podman', [...mp('/usr/bin/fuse-overlayfs'), 'rm', '-af', '-t', '0'], { env, stdio: 'ignore' });
    spawnSync('podman', [...mp('/usr/bin/fuse-overlayfs'), 'rmi', '-af'], { env, stdio: 'ignore' });
    unmountBelow(dir);
    removeDir(dir);
  }
  return r;
}

// ------------------------------------------------------------------------------------------
// 1. mount + first read + unmount: fuse-overlayfs against a warm engine, interleaved

interface Cycle {
  mount: number[];
  read: number[];
  umount: number[];
  total: number[];
}

function mountCycles(): { fo: Cycle; lf: Cycle } {
  const e = engine('engine'); // the start-up rows' engine dir (layerfs run starts none)
  const root = path.join(tmp, 'cycle');
  const fo: Cycle = { mount: [], read: [], umount: [], total: [] };
  const lf: Cycle = { mount: [], read: [], umount: [], total: [] };
  const contenders = {
    fo: {
      cycle: fo,
      mount: (o: string, mnt: string) => sh('fuse-overlayfs', ['-o', o, mnt]),
      umount: (mnt: string) => sh('fusermount3', ['-u', mnt]),
    },
    lf: {
      cycle: lf,
      mount: (o: string, mnt: string) => sh(layerfs, ['mount', '-o', o, mnt], e.env),
      umount: (mnt: string) => sh(layerfs, ['umount', mnt], e.env),
    },
  };
  try {
    sh(layerfs, ['engine', 'start'], e.env); // warm: the rounds time mounts of a running engine
    for (let i = 0; i < N + 1; i++) {
      // Alternate who goes first, so that drift within a round hits both.
      for (const who of i % 2 ? (['lf', 'fo'] as const) : (['fo', 'lf'] as const)) {
        const c = contenders[who];
        const d = path.join(root, `${who}${i}`);
        const x = dirs(d);
        const o = ovlOpts(lower, x);
        const t0 = now();
        c.mount(o, x.mnt);
        const t1 = now();
        sh('cat', [`${x.mnt}/etc/passwd`]);
        const t2 = now();
        c.umount(x.mnt);
        const t3 = now();
        if (i > 0) {
          // round 0 warms the caches (and the engine's code paths)
          c.cycle.mount.push(t1 - t0);
          c.cycle.read.push(t2 - t1);
          c.cycle.umount.push(t3 - t2);
          c.cycle.total.push(t3 - t0);
        }
        removeDir(d);
      }
    }
    const left = waitGone(pgrepPath(root + '/', 'fuse-overlayfs'), 5_000);
    if (left.length) notes.push(`mount cycles: ${left.length} fuse-overlayfs process(es) still ran 5 s after their unmount`);
  } finally {
    unmountBelow(root);
    removeDir(root);
  }
  return { fo, lf };
}

// ------------------------------------------------------------------------------------------
// 2. M idle mounts: memory

interface IdleMem {
  /** Sum of VmRSS of every process serving the mounts, KiB. */
  rss: number;
  /** Sum of their PSS (shared pages counted once), KiB. */
  pss: number;
  procs: number;
  /** layerfs: the engine's VmRSS before its first mount, its threads with the mounts, workers logged. */
  idleEngine?: number;
  threads?: number;
  workers?: number;
}

function idleFuseOverlayfs(): IdleMem {
  const root = path.join(tmp, 'idle-fo');
  const mnts: string[] = [];
  try {
    for (let i = 0; i < MOUNTS; i++) {
      const x = dirs(path.join(root, String(i)));
      sh('fuse-overlayfs', ['-o', ovlOpts(lower, x), x.mnt]);
      mnts.push(x.mnt);
    }
    for (const m of mnts) touch(m);
    sleepSync(SETTLE_MS);
    const pids = pgrepPath(root + '/', 'fuse-overlayfs');
    if (pids.length !== MOUNTS) notes.push(`idle mounts: ${pids.length} fuse-overlayfs processes for ${MOUNTS} mounts`);
    return { rss: sum(pids.map(rssKiB)), pss: sum(pids.map(pssKiB)), procs: pids.length };
  } finally {
    for (const m of mnts.reverse()) {
      if (mountsBelow(m).length === 0) continue;
      if (spawnSync('fusermount3', ['-u', m]).status !== 0) spawnSync('umount', ['-l', m]);
    }
    unmountBelow(root);
    removeDir(root);
  }
}

function idleLayerfs(threads?: 'all'): IdleMem {
  const e = engine(threads ? 'e-idle-all' : 'e-idle', threads);
  const root = path.join(tmp, threads ? 'idle-lf-all' : 'idle-lf');
  const mnts: string[] = [];
  try {
    sh(layerfs, ['engine', 'start'], e.env);
    sleepSync(SETTLE_MS);
    const pid = enginePid(e.dir);
    if (pid === undefined) throw new Error(`no engine runs for ${e.dir} after layerfs engine start`);
    const idleEngine = rssKiB(pid);
    for (let i = 0; i < MOUNTS; i++) {
      const x = dirs(path.join(root, String(i)));
      sh(layerfs, ['mount', '-o', ovlOpts(lower, x), x.mnt], e.env);
      mnts.push(x.mnt);
    }
    for (const m of mnts) touch(m);
    sleepSync(SETTLE_MS);
    // The engine, and anything else layerfs left running for these mounts (there should be nothing).
    const pids = [...new Set([pid, ...pidsWithEnv('LAYERFS_ENGINE_DIR', e.dir), ...pgrepPath(root + '/')])];
    for (const p of pids) if (p !== pid) notes.push(`idle mounts${threads ? ', threads=all' : ''}: besides the engine, ${p} runs: ${procName(p)}`);
    let workers = 0;
    try {
      workers = fs.readFileSync(path.join(e.dir, 'engine.log'), 'utf8').split('\n').filter((l) => /served on a thread of its own/.test(l)).length;
    } catch {
      /* no log */
    }
    return { rss: sum(pids.map(rssKiB)), pss: sum(pids.map(pssKiB)), procs: pids.length, idleEngine, threads: threadsOf(pid), workers };
  } finally {
    for (const m of mnts.reverse()) {
      if (mountsBelow(m).length > 0) spawnSync(layerfs, ['umount', m], { env: e.env, stdio: 'ignore', timeout: 30_000 });
    }
    endEngine(e.dir);
    unmountBelow(root);
    removeDir(root);
  }
}

// ------------------------------------------------------------------------------------------
// 3. a warm stat storm: 4 processes, one per mount, at once

/**
 * The storm's process: stats every file once (warming the mount), says "ready", waits for a
 * line on stdin, stats every file K times, says "done". Its own work is the same on every
 * filesystem; its start-up (node's) is outside the timing.
 */
const STORM_CHILD = `
const fs = require('fs');
const [mnt, n, k] = process.argv.slice(1);
const files = [];
for (let i = 0; i < +n; i++) files.push(mnt + '/t/d' + Math.floor(i / 100) + '/f' + (i % 100));
for (const f of files) fs.statSync(f);
process.stdout.write('ready\\n');
process.stdin.once('data', () => {
  for (let j = 0; j < +k; j++) for (const f of files) fs.statSync(f);
  process.stdout.write('done\\n');
  process.exit(0);
});
`;

interface Storm {
  name: string;
  mnts: string[];
  /** The processes serving the mounts (their CPU time is read around the storm). */
  daemons: () => number[];
  wall: number[];
  cpu: number[];
  /** read() calls of the daemons during the storm: about one per FUSE request they received. */
  reads: number[];
}

function makeTree(dir: string): void {
  for (let i = 0; i < FILES; i++) {
    const d = `${dir}/t/d${Math.floor(i / 100)}`;
    if (i % 100 === 0) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(`${d}/f${i % 100}`, '');
  }
}

/** One storm: wall time from "go" to the last "done", and the daemons' CPU time meanwhile. */
async function storm(s: Storm, passes: number): Promise<{ wall: number; cpu: number; reads: number }> {
  const kids = s.mnts.map((m) => spawn(process.execPath, ['-e', STORM_CHILD, m, String(FILES), String(passes)], { stdio: ['pipe', 'pipe', 'pipe'] }));
  const said = (k: (typeof kids)[number], what: string): Promise<number> =>
    new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`stat storm on ${s.name}: no '${what}' within 300 s`)), 300_000);
      k.stderr!.on('data', (b: Buffer) => (err += b.toString()));
      k.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.split('\n').includes(what)) {
          clearTimeout(timer);
          resolve(now());
        }
      });
      k.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`stat storm on ${s.name}: a process exited (${sig ?? code}) before '${what}': ${err.trim().slice(-300)}`));
      });
    });
  try {
    await Promise.all(kids.map((k) => said(k, 'ready')));
    const done = Promise.all(kids.map((k) => said(k, 'done')));
    const daemons = s.daemons();
    const cpu0 = sum(daemons.map(cpuMs));
    const reads0 = sum(daemons.map(readCalls));
    const t0 = now();
    for (const k of kids) k.stdin!.write('go\n');
    const ends = await done;
    const t1 = Math.max(...ends);
    const cpu1 = sum(daemons.map(cpuMs));
    const reads1 = sum(daemons.map(readCalls));
    return { wall: t1 - t0, cpu: cpu1 - cpu0, reads: reads1 - reads0 };
  } finally {
    for (const k of kids) if (k.exitCode === null && k.signalCode === null) k.kill('SIGKILL');
  }
}

/**
 * The storm on fuse-overlayfs, a default engine and a LAYERFS_ENGINE_THREADS=all engine, each
 * with 4 mounts (`extra`: more mount options for all of them), interleaved round by round.
 */
async function statStorms(tag: string, extra: string, passes: number): Promise<Storm[]> {
  const lowerRoot = path.join(tmp, 'storm-lowers'); // read-only, shared by every storm mount
  const lowers = Array.from({ length: STORM_MOUNTS }, (_, j) => path.join(lowerRoot, String(j)));
  if (!fs.existsSync(lowerRoot)) for (const l of lowers) makeTree(l);
  const root = path.join(tmp, `storm-${tag}`);
  const e = engine(`e-${tag}`);
  const ea = engine(`e-${tag}-all`, 'all');
  const storms: Storm[] = [];
  const envOf = new Map<Storm, NodeJS.ProcessEnv>();
  try {
    const fo: Storm = { name: 'fuse-overlayfs', mnts: [], daemons: () => pgrepPath(`${root}/fo/`, 'fuse-overlayfs'), wall: [], cpu: [], reads: [] };
    storms.push(fo);
    for (let j = 0; j < STORM_MOUNTS; j++) {
      const x = dirs(`${root}/fo/${j}`);
      sh('fuse-overlayfs', ['-o', ovlOpts(lowers[j]!, x) + extra, x.mnt]);
      fo.mnts.push(x.mnt);
    }
    for (const [name, eng, sub] of [
      ['layerfs', e, 'lf'],
      ['layerfs, threads=all', ea, 'lfall'],
    ] as const) {
      const s: Storm = { name, mnts: [], daemons: () => [enginePid(eng.dir) ?? 0].filter((p) => p > 0), wall: [], cpu: [], reads: [] };
      storms.push(s);
      envOf.set(s, eng.env);
      sh(layerfs, ['engine', 'start'], eng.env);
      for (let j = 0; j < STORM_MOUNTS; j++) {
        const x = dirs(`${root}/${sub}/${j}`);
        sh(layerfs, ['mount', '-o', ovlOpts(lowers[j]!, x) + extra, x.mnt], eng.env);
        s.mnts.push(x.mnt);
      }
    }
    for (const s of storms) await storm(s, passes); // warm-up round: every cache, every code path
    for (let r = 0; r < STORM_ROUNDS; r++) {
      // Each round in another order, so that drift hits every contender.
      for (let i = 0; i < storms.length; i++) {
        const s = storms[(i + r) % storms.length]!;
        const x = await storm(s, passes);
        s.wall.push(x.wall);
        s.cpu.push(x.cpu);
        s.reads.push(x.reads);
      }
    }
    return storms;
  } finally {
    for (const s of storms) {
      const env = envOf.get(s);
      for (const m of s.mnts) {
        if (mountsBelow(m).length === 0) continue;
        if (env) spawnSync(layerfs, ['umount', m], { env, stdio: 'ignore', timeout: 30_000 });
        else if (spawnSync('fusermount3', ['-u', m]).status !== 0) spawnSync('umount', ['-l', m]);
      }
    }
    endEngine(e.dir);
    endEngine(ea.dir);
    unmountBelow(root);
    removeDir(root);
  }
}

// ------------------------------------------------------------------------------------------
// the tables

const MiB = (kib: number): number => kib / 1024;

function markdownRow(cells: (string | number)[]): string {
  return `| ${cells.join(' | ')} |`;
}

function targetRow(label: string, unit: string, runs: number, fo: number, lf: number, digits: number, target?: number): string {
  const r = fo > 0 && Number.isFinite(lf) ? lf / fo : NaN;
  const t = target === undefined ? '' : `≤ ${target}×${Number.isNaN(r) ? '' : r <= target ? ' (met)' : ' (not met)'}`;
  const f = (v: number) => (Number.isFinite(v) ? v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '?');
  return markdownRow([label, unit, runs, f(fo), f(lf), Number.isNaN(r) ? 'n/a' : `${r.toFixed(2)}×`, t]);
}

/** The rows of one set of storms (fuse-overlayfs, engine default, threads=all). */
function stormRows(title: string, ss: Storm[], target?: number, reads = false): string[] {
  const [fo, lf, all] = ss as [Storm, Storm, Storm];
  const m = (s: Storm, k: 'wall' | 'cpu' | 'reads') => median(s[k]);
  return [
    targetRow(`${title}: wall (engine default)`, 'ms', STORM_ROUNDS, m(fo, 'wall'), m(lf, 'wall'), 0, target),
    targetRow('  same, LAYERFS_ENGINE_THREADS=all', 'ms', STORM_ROUNDS, m(fo, 'wall'), m(all, 'wall'), 0, target),
    targetRow("  daemons' CPU time during the storm (engine default)", 'ms', STORM_ROUNDS, m(fo, 'cpu'), m(lf, 'cpu'), 0),
    targetRow("  daemons' CPU time during the storm, threads=all", 'ms', STORM_ROUNDS, m(fo, 'cpu'), m(all, 'cpu'), 0),
    // Every FUSE request is read() from /dev/fuse, so no read() call means no request; the
    // count is no request count (the engine spins with non-blocking reads after answering).
    ...(reads
      ? [
          targetRow("  daemons' read() calls during the storm (0: no request reached them), engine default", 'calls', STORM_ROUNDS, m(fo, 'reads'), m(lf, 'reads'), 0),
          targetRow("  daemons' read() calls during the storm, threads=all", 'calls', STORM_ROUNDS, m(fo, 'reads'), m(all, 'reads'), 0),
        ]
      : []),
  ];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/startup.ts needs root (mounts, namespaces)');
  for (const tool of ['fuse-overlayfs', 'fusermount3', 'pgrep']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`bench/startup.ts needs ${tool} (scripts/bench-setup.sh installs fuse-overlayfs)`);
  }
  sh('bash', [path.join(repo, 'scripts', 'make-rootfs.sh'), layers]);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-bench-startup-'));
  errFile = path.join(tmp, 'stderr');
  errFd = fs.openSync(errFile, 'a');
  startJanitor();
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`${sig}: cleaning up`);
    cleanupAll();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const started = Date.now();
  const load0 = os.loadavg()[0]!;
  const native = fs.existsSync(path.join(repo, 'build', 'Release', 'layerfs_client'));
  let rows: [string, number[]][];
  let cycles: ReturnType<typeof mountCycles>;
  let idle: { fo: IdleMem; lf: IdleMem; lfAll: IdleMem };
  let storms: Storm[];
  let uncached: Storm[];
  let runs: RunRows | null;
  try {
    rows = startupRows();
    runs = runRows();
    cycles = mountCycles();
    // Its biggest part, for reference: a layerfs mount and unmount on their own (warm engine).
    rows.push(['  of which: layerfs mount + umount', cycles.lf.mount.map((m, i) => m + cycles.lf.umount[i]!)]);
    idle = { fo: idleFuseOverlayfs(), lf: idleLayerfs(), lfAll: idleLayerfs('all') };
    storms = await statStorms('storm', '', PASSES);
    // The same with the kernel caching nothing, so that every stat reaches the daemons.
    uncached = await statStorms('nocache', ',timeout=0', PASSES_UNCACHED);
  } finally {
    cleanupAll();
  }
  const minutes = (Date.now() - started) / 60_000;

  const base = median(rows[0]![1]);
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`start-up, median of ${N} runs (${os.cpus().length} CPUs, load ${load0.toFixed(1)})`);
  console.log(`${'what'.padEnd(w)}  median ms     min ms   × kernel`);
  for (const [name, xs] of rows) {
    console.log(`${name.padEnd(w)}  ${median(xs).toFixed(1).padStart(9)}  ${Math.min(...xs).toFixed(1).padStart(9)}  ${(median(xs) / base).toFixed(1).padStart(9)}`);
  }

  const c = cycles;
  const perMount = (m: IdleMem) => MiB(m.rss) / MOUNTS;
  console.log('');
  console.log(
    `engine targets against fuse-overlayfs, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${os.cpus().length} CPUs, kernel ${os.release()}, node ${process.version}, load ${load0.toFixed(1)} at start and ${os.loadavg()[0]!.toFixed(1)} at the end, ${minutes.toFixed(1)} min${native ? '' : ' (no build/Release/layerfs_client: every layerfs command started node)'}`,
  );
  console.log('');
  const out = [
    markdownRow(['target', 'unit', 'runs', 'fuse-overlayfs', 'layerfs', 'layerfs / fuse-overlayfs', 'target']),
    '| --- | --- | ---: | ---: | ---: | ---: | --- |',
    ...(runs
      ? [
          targetRow('run --rm /bin/true: layerfs run --lower base, against podman run --rm (fuse-overlayfs), median', 'ms', N, median(runs.podmanFo), median(runs.layerfs), 1, 0.7),
          targetRow('  podman run --rm with layerfs as its mount_program, against fuse-overlayfs (reference)', 'ms', N, median(runs.podmanFo), median(runs.podmanLf), 1),
        ]
      : []),
    targetRow('mount + first read + unmount (warm engine), median', 'ms', N, median(c.fo.total), median(c.lf.total), 1, 2),
    targetRow('  of which mount', 'ms', N, median(c.fo.mount), median(c.lf.mount), 1),
    targetRow('  of which first read (cat MNT/etc/passwd)', 'ms', N, median(c.fo.read), median(c.lf.read), 1),
    targetRow('  of which unmount', 'ms', N, median(c.fo.umount), median(c.lf.umount), 1),
    targetRow(`${MOUNTS} idle mounts: VmRSS of all their processes (engine default)`, 'MiB', 1, MiB(idle.fo.rss), MiB(idle.lf.rss), 1, 1),
    targetRow('  per mount', 'MiB', 1, perMount(idle.fo), perMount(idle.lf), 2),
    targetRow(`${MOUNTS} idle mounts: VmRSS, LAYERFS_ENGINE_THREADS=all`, 'MiB', 1, MiB(idle.fo.rss), MiB(idle.lfAll.rss), 1, 1),
    targetRow('  per mount', 'MiB', 1, perMount(idle.fo), perMount(idle.lfAll), 2),
    targetRow(`${MOUNTS} idle mounts: PSS (shared pages once; reference), engine default`, 'MiB', 1, MiB(idle.fo.pss), MiB(idle.lf.pss), 1),
    targetRow(`${MOUNTS} idle mounts: PSS, LAYERFS_ENGINE_THREADS=all`, 'MiB', 1, MiB(idle.fo.pss), MiB(idle.lfAll.pss), 1),
    ...stormRows(`warm stat storm, ${STORM_MOUNTS} mounts × ${FILES} files × ${PASSES} passes, ${STORM_MOUNTS} processes`, storms, 1, true),
    ...stormRows(`same with -o timeout=0 on every mount (no kernel cache), ${PASSES_UNCACHED} pass${PASSES_UNCACHED === 1 ? '' : 'es'} (reference)`, uncached),
  ];
  console.log(out.join('\n'));
  console.log('');
  const idleLine = (name: string, m: IdleMem): string =>
    `${name}: ${m.procs} process(es); the engine alone before its first mount ${MiB(m.idleEngine ?? NaN).toFixed(1)} MiB, so ${((MiB(m.rss) - MiB(m.idleEngine ?? NaN)) / MOUNTS).toFixed(2)} MiB more per mount; ${m.threads} threads, ${m.workers} mounts logged as served on a thread of their own`;
  console.log(`- idle mounts: fuse-overlayfs ${idle.fo.procs} processes, ${MiB(idle.fo.rss / Math.max(1, idle.fo.procs)).toFixed(2)} MiB VmRSS each; memory read ${SETTLE_MS / 1000} s after each mount was touched (ls MNT/bin, cat MNT/etc/passwd)`);
  console.log(`- ${idleLine('engine default', idle.lf)}`);
  console.log(`- ${idleLine('LAYERFS_ENGINE_THREADS=all', idle.lfAll)}`);
  const spread = (ss: Storm[]) => ss.map((s) => `${s.name} ${Math.min(...s.wall).toFixed(0)}-${Math.max(...s.wall).toFixed(0)}`).join(', ');
  console.log(
    `- stat storms: median of ${STORM_ROUNDS} rounds after a warm-up round, the three in a rotating order; each process stats its mount's ${FILES} files once (warm) before the clock starts; wall min-max: ${spread(storms)} ms; timeout=0: ${spread(uncached)} ms`,
  );
  if (runs) {
    const m = median(runs.layerfs);
    console.log(`- run --rm /bin/true: layerfs run ${m.toFixed(0)} ms median (target ≤ 150 ms: ${m <= 150 ? 'met' : 'not met'}), podman with fuse-overlayfs ${median(runs.podmanFo).toFixed(0)} ms, podman with layerfs ${median(runs.podmanLf).toFixed(0)} ms; ${N} rounds each after a warm-up round, in a rotating order, on the busybox base layer (podman: imported with podman import)`);
  }
  console.log(`- mount cycles: fresh upper/work per round, ${N} rounds after a warm-up round, the two alternating who goes first; min of the whole: fuse-overlayfs ${Math.min(...c.fo.total).toFixed(1)} ms, layerfs ${Math.min(...c.lf.total).toFixed(1)} ms`);
  for (const n of notes) console.log(`- note: ${n}`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  for (const n of notes) console.error(`note: ${n}`);
  process.exitCode = 1;
});
