// Lowers changed underneath a live mount (undefined behaviour in overlayfs terms, but the
// daemon must survive it): while a child process keeps reading, listing and stat-ing through
// the mount, the test appends to lower files, removes and re-creates them, replaces
// directories by files and files by directories or fifos, and deletes whole subtrees. Then:
//   - no crash: the daemon is alive and the mount answers;
//   - no hang: every operation of the reader returned, each within a time limit (the reader
//     opens with O_NONBLOCK, so a fifo swapped in for a file blocks nobody but a daemon that
//     would open it);
//   - every result is a state the path had at some point (in some layer: the old or the new
//     one), or an errno. Every single change to a lower is atomic per path (new objects are
//     built outside the layers and renamed in), so "some state it had" is exact.
import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as sys from '../../src/sys/index.ts';
import { isMounted, layerfsBin, makeTmp, unmount } from '../helpers/mounts.ts';
import { daemonPid, int, pick, pickSeed, processAlive, rng, sleep } from './_lib.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const READER = path.join(HERE, '_reader-child.mjs');
const DURATION_MS = Number(process.env.LAYERFS_LOWER_CHANGE_MS ?? 10_000);
/** An operation slower than this counts as a hang. */
const OP_LIMIT_MS = 10_000;

function daemonPidOrNull(mnt: string): number | null {
  try {
    return daemonPid(mnt);
  } catch {
    return null;
  }
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface Result {
  op: string;
  p: string;
  ms: number;
  err?: string;
  type?: string;
  size?: number;
  sha?: string;
  names?: string[];
  n?: number;
}

test('lowers changed underneath a live mount: no crash, no hang, only old or new states or errnos', async (t) => {
  t.timeout(300_000);
  const seed = pickSeed();
  t.log(`seed ${seed} (replay with LAYERFS_CRASH_SEED=${seed})`);
  const r = rng(seed);
  const dir = makeTmp(t, 'layerfs-test-lowerchange-');
  const [l0, l1, upper, work, mnt, tmp] = ['lower0', 'lower1', 'upper', 'work', 'mnt', 'tmpspace'].map((d) => path.join(dir, d));
  for (const d of [l0, l1, upper, work, mnt, tmp]) fs.mkdirSync(d);
  const layers = [upper, l0, l1];

  // ------------------------------------------------------------------ the layers
  const put = (root: string, rel: string, data: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), data);
  };
  for (let k = 0; k < 5; k++) {
    put(l0, `a/f${k}`, `f${k} v0\n`);
    put(l1, `a/g${k}`, `g${k} v0\n`);
  }
  put(l1, 'a/f0', 'hidden by lower0\n');
  put(upper, 'a/u0', 'upper\n');
  put(l0, 'rep/x', 'rep x\n');
  put(l0, 'rep/y', 'rep y\n');
  put(l0, 'ftod', 'a file for now\n');
  put(l1, 'pipe', 'a file, sometimes a fifo\n');
  const deep: string[] = [];
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) for (let k = 0; k < 3; k++) deep.push(`d/s${i}/t${j}/file${k}`);
  for (const p of deep) put(l1, p, `${p}\n`);

  // Every path the reader may meet (a path met outside this list is a failure in itself).
  const all = new Set<string>(['', 'a', 'pipe', 'rep', 'rep/x', 'rep/y', 'ftod', 'ftod/z', 'd', 'a/u0', 'nothere']);
  for (let k = 0; k < 5; k++) all.add(`a/f${k}`).add(`a/g${k}`);
  for (const p of deep) {
    const parts = p.split('/');
    for (let n = 1; n <= parts.length; n++) all.add(parts.slice(0, n).join('/'));
  }
  const dirs = ['', 'a', 'rep', 'ftod', 'd', 'd/s0', 'd/s1/t2'];
  fs.writeFileSync(path.join(dir, 'paths.json'), JSON.stringify({ all: [...all], dirs }));

  // ------------------------------------------------------------------ every state each path had
  const ever = new Map<string, Set<string>>(); // rel → 'dir' | 'file:<sha>:<size>' | 'other'
  const everNames = new Map<string, Set<string>>(); // dir rel → names
  const record = () => {
    for (const rel of all) {
      for (const root of layers) {
        const p = rel ? path.join(root, rel) : root;
        let st: fs.Stats;
        try {
          st = fs.lstatSync(p);
        } catch {
          continue;
        }
        const s = ever.get(rel) ?? new Set<string>();
        ever.set(rel, s);
        if (st.isDirectory()) {
          s.add('dir');
          const names = everNames.get(rel) ?? new Set<string>();
          everNames.set(rel, names);
          for (const n of fs.readdirSync(p)) names.add(n);
        } else if (st.isFile()) {
          const data = fs.readFileSync(p);
          s.add(`file:${sha(data)}:${data.length}`);
        } else {
          s.add('other');
        }
      }
    }
  };
  record();

  // ------------------------------------------------------------------ mutations (each atomic per path)
  let tmpSeq = 0;
  const tmpPath = () => path.join(tmp, `t${++tmpSeq}`);
  const placeFile = (dst: string, data: string) => {
    const t0 = tmpPath();
    fs.writeFileSync(t0, data);
    fs.renameSync(t0, dst);
  };
  const placeDir = (dst: string, files: Record<string, string>) => {
    const t0 = tmpPath();
    for (const [rel, data] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(t0, rel)), { recursive: true });
      fs.writeFileSync(path.join(t0, rel), data);
    }
    fs.renameSync(t0, dst);
  };
  const exists = (p: string) => fs.existsSync(p);
  let version = 0;
  const counts: Record<string, number> = {};
  const mutations: [string, () => void][] = [
    ['append to a lower file', () => fs.appendFileSync(path.join(l0, `a/f${int(r, 5)}`), `line ${++version}\n`)],
    ['remove or re-create a lower file', () => {
      const p = path.join(l1, `a/g${int(r, 5)}`);
      if (exists(p)) fs.unlinkSync(p);
      else placeFile(p, `g v${++version}\n`);
    }],
    ['replace a lower directory by a file, or back', () => {
      const p = path.join(l0, 'rep');
      if (fs.lstatSync(p, { throwIfNoEntry: false })?.isDirectory()) {
        fs.rmSync(p, { recursive: true });
        placeFile(p, `rep is a file v${++version}\n`);
      } else {
        fs.rmSync(p, { force: true });
        placeDir(p, { x: 'rep x\n', y: `rep y v${++version}\n` });
      }
    }],
    ['replace a lower file by a directory, or back', () => {
      const p = path.join(l0, 'ftod');
      if (fs.lstatSync(p, { throwIfNoEntry: false })?.isDirectory()) {
        fs.rmSync(p, { recursive: true });
        placeFile(p, `ftod file v${++version}\n`);
      } else {
        fs.rmSync(p, { force: true });
        placeDir(p, { z: `z v${++version}\n` });
      }
    }],
    ['replace a lower file by a fifo, or back', () => {
      const p = path.join(l1, 'pipe');
      const t0 = tmpPath();
      if (fs.lstatSync(p).isFIFO()) fs.writeFileSync(t0, `pipe file v${++version}\n`);
      else sys.mknod(t0, fs.constants.S_IFIFO | 0o644, 0);
      fs.renameSync(t0, p);
    }],
    ['delete a whole lower subtree, or bring it back', () => {
      const p = path.join(l1, 'd');
      if (exists(p)) fs.rmSync(p, { recursive: true });
      else placeDir(p, Object.fromEntries(deep.map((q) => [q.slice(2), `${q}\n`])));
    }],
  ];

  // ------------------------------------------------------------------ mount, reader, go
  // The daemon runs in the foreground (-f), its stderr to a file: a crash leaves its stack
  // there, and EIO answers their cause. This test owns the process: unmounting ends it, and
  // the teardown kills it by pid should it still be running.
  t.teardown(() => unmount(mnt));
  const daemonLog = path.join(dir, 'daemon.log');
  const logFd = fs.openSync(daemonLog, 'a');
  // timeout=0: the kernel caches no attributes, so each read uses the size the daemon reports
  // now. (With a cache time, a read can pair a cached size with data from a newer version of
  // the file: a mix no state ever had, made by the kernel, not the daemon — lowers changed
  // underneath are undefined behaviour, and this test is about the daemon.)
  const daemon = spawn(layerfsBin, ['mount', '-f', '-o', `lowerdir=${l0}:${l1},upperdir=${upper},workdir=${work},timeout=0`, mnt], {
    stdio: ['ignore', logFd, logFd],
  });
  fs.closeSync(logFd);
  const pid = daemon.pid!;
  t.teardown(async () => {
    await unmount(mnt);
    if (processAlive(pid)) process.kill(pid, 'SIGKILL');
  });
  for (let i = 0; i < 600 && !(isMounted(mnt) && daemonPidOrNull(mnt) === pid); i++) await sleep(50);
  t.true(isMounted(mnt), `mounted; daemon log: ${fs.readFileSync(daemonLog, 'utf8')}`);
  fs.statSync(mnt);

  const readerLog = path.join(dir, 'reader.log');
  const stop = path.join(dir, 'stop');
  fs.writeFileSync(readerLog, '');
  const reader = spawn(process.execPath, [READER, mnt, path.join(dir, 'paths.json'), readerLog, stop, String(seed)], { stdio: 'ignore' });
  const readerExit = new Promise<number | null>((res) => reader.on('close', (code) => res(code)));
  t.teardown(async () => {
    // A reader stuck on a hung mount is released once the teardown unmount aborts it.
    if (reader.exitCode === null) reader.kill('SIGKILL');
  });

  let lastSize = 0;
  let lastProgress = Date.now();
  let hang = '';
  const tEnd = Date.now() + DURATION_MS;
  while (Date.now() < tEnd) {
    const [name, f] = pick(r, mutations);
    f();
    counts[name] = (counts[name] ?? 0) + 1;
    record();
    await sleep(5 + int(r, 30));
    const size = fs.statSync(readerLog).size;
    if (size !== lastSize) {
      lastSize = size;
      lastProgress = Date.now();
    } else if (Date.now() - lastProgress > OP_LIMIT_MS) {
      hang = `the reader made no progress for ${OP_LIMIT_MS} ms`;
      break;
    }
  }
  fs.writeFileSync(stop, '');
  const code = await Promise.race([readerExit, sleep(OP_LIMIT_MS + 5_000).then(() => 'timeout' as const)]);
  if (code === 'timeout') hang ||= 'the reader did not finish after the stop signal (an operation hangs)';
  t.is(hang, '', 'no hang');

  // ------------------------------------------------------------------ judge
  const dlog = fs.existsSync(daemonLog) ? fs.readFileSync(daemonLog, 'utf8') : '';
  const alive = processAlive(pid);
  if (!alive) t.log(`the daemon died; the end of its log:\n${dlog.slice(-3000)}`);
  t.true(alive, 'the daemon is alive');
  t.notThrows(() => fs.readdirSync(mnt), 'the mount answers');
  const results = fs.readFileSync(readerLog, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Result);
  const end = results.pop();
  t.is(end?.op, 'end', 'the reader finished its loop');
  const bad: string[] = [];
  const errnos: Record<string, number> = {};
  let ok = 0;
  let slowest = 0;
  for (const x of results) {
    slowest = Math.max(slowest, x.ms);
    if (x.ms > OP_LIMIT_MS) bad.push(`${x.op} ${x.p} took ${x.ms} ms`);
    if (x.err) {
      errnos[x.err] = (errnos[x.err] ?? 0) + 1;
      if (!/^E[A-Z]+$/.test(x.err)) bad.push(`${x.op} ${x.p}: not an errno: ${x.err}`);
      continue;
    }
    ok++;
    const states = ever.get(x.p) ?? new Set<string>();
    const files = [...states].filter((s) => s.startsWith('file:'));
    const allowed = (cond: boolean, what: string) => {
      if (!cond) bad.push(`${x.op} ${x.p}: ${what}, a state it never had (had: ${[...states].map((s) => s.slice(0, 20)).join(', ') || 'nothing'})`);
    };
    switch (x.op) {
      case 'stat':
      case 'lstat':
        if (x.type === 'dir') allowed(states.has('dir'), 'a directory');
        else if (x.type === 'file') allowed(files.some((s) => s.endsWith(`:${x.size}`)), `a file of ${x.size} bytes`);
        else allowed(states.has('other'), `a ${x.type}`);
        break;
      case 'read':
      case 'fd':
        if (x.type === 'file') allowed(files.some((s) => s.startsWith(`file:${x.sha}:`)), `content ${x.sha?.slice(0, 12)}`);
        else allowed(states.has(x.type === 'dir' ? 'dir' : 'other'), `opened as a ${x.type}`);
        break;
      case 'readdir': {
        const names = everNames.get(x.p) ?? new Set<string>();
        const foreign = (x.names ?? []).filter((n) => !names.has(n));
        allowed(foreign.length === 0, `listing names ${foreign.join(', ')}`);
        break;
      }
    }
  }
  t.log(`${DURATION_MS} ms of changes: ${Object.entries(counts).map(([k, v]) => `${v}× ${k}`).join(', ')}`);
  t.log(`reader: ${results.length} operations, ${ok} answered with data, errnos: ${JSON.stringify(errnos)}; slowest ${slowest.toFixed(1)} ms`);
  const eio = dlog.split('\n').filter((l) => / layerfs\[\d+\]: \w+: /.test(l));
  // EIO can come from the kernel itself: FUSE marks an inode bad when a getattr reports another
  // file type for it (a directory replaced by a file under one name). The daemon logs each EIO
  // it answers itself.
  t.log(`EIO answered by the daemon itself: ${eio.length}${eio.length ? ` (first 5):\n${eio.slice(0, 5).join('\n')}` : ''}`);
  t.deepEqual(bad.slice(0, 20), [], 'every result is a state the path had, or an errno');
  t.true(results.length > 500, `the reader did enough (${results.length} operations)`);
  t.true(ok > 100 && Object.keys(errnos).length > 0, 'the reader saw both data and errors (the changes did overlap its reads)');
});

// Regression (found by the test above): the readdir answer stats the directory after listing
// it; when the directory vanished in between (a lower changed underneath), the exception
// escaped the adapter's error mapping and ended the daemon.
test('regression: an error while building an answer becomes an errno, it does not end the daemon', async (t) => {
  const { makeOps } = await import('../../src/fuse/fuse-native/adapter.ts');
  const { UnionFs } = await import('../../src/union/unionfs.ts');
  const dir = makeTmp(t, 'layerfs-test-lowerchange-');
  const lower = path.join(dir, 'lower');
  fs.mkdirSync(path.join(lower, 'd'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'd', 'f'), 'f');
  const u = new UnionFs({ lowerdirs: [lower] });
  const ops = makeOps(u);
  // The directory goes away between the listing and the stat of the directory.
  const readdir = u.readdir.bind(u);
  u.readdir = (p: string) => {
    const items = readdir(p);
    fs.rmSync(path.join(lower, 'd'), { recursive: true });
    return items;
  };
  const answer = await new Promise<unknown[]>((res) => {
    try {
      ops.readdir!('/d', (...args: unknown[]) => res(args));
    } catch (e) {
      res(['threw', String(e)]);
    }
  });
  t.deepEqual(answer, [-2], 'readdir answers ENOENT');
});
