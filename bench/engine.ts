// Process helpers of bench/startup.ts: a private layerfs engine (its pid, stopping it), the
// processes a benchmark left behind (fuse-overlayfs daemons found by a path of the benchmark's
// temp dir, processes carrying its LAYERFS_ENGINE_DIR), their memory and CPU time. Everything
// here is synchronous, so that the same code cleans up from a `finally` and from a signal
// handler.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

const sleeper = new Int32Array(new SharedArrayBuffer(4));

export function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** Whether `pid` is a live process (a zombie is not). */
export function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

function environOf(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
  } catch {
    return [];
  }
}

/** Live processes (not this one) whose environment has NAME=VALUE exactly. */
export function pidsWithEnv(name: string, value: string): number[] {
  const want = `${name}=${value}`;
  const pids: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid || !alive(pid)) continue;
    if (environOf(pid).includes(want)) pids.push(pid);
  }
  return pids;
}

/** `pgrep -f PATH`: live processes whose command line contains `p`; only those named `comm` when given. */
export function pgrepPath(p: string, comm?: string): number[] {
  const r = spawnSync('pgrep', ['-f', '--', p], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter((l) => /^[0-9]+$/.test(l))
    .map(Number)
    .filter((pid) => pid !== process.pid && alive(pid))
    .filter((pid) => {
      if (!comm) return true;
      try {
        return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm;
      } catch {
        return false;
      }
    });
}

/** The engine of `dir`: the pid in its engine.lock, when that process runs with this LAYERFS_ENGINE_DIR. */
export function enginePid(dir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(`${dir}/engine.lock`, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return undefined;
  return environOf(pid).includes(`LAYERFS_ENGINE_DIR=${dir}`) ? pid : undefined;
}

function statusField(pid: number, key: string): number {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** VmRSS, KiB (NaN when gone). */
export const rssKiB = (pid: number): number => statusField(pid, 'VmRSS');

/** Threads of a process. */
export const threadsOf = (pid: number): number => statusField(pid, 'Threads');

/** Proportional set size (shared pages split among their users), KiB (NaN when gone). */
export function pssKiB(pid: number): number {
  try {
    const s = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return Number(/^Pss:\s+(\d+) kB/m.exec(s)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

let clkTck: number | undefined;

/** User + system CPU time of a process (all its threads), ms. */
export function cpuMs(pid: number): number {
  clkTck ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    return ((Number(f[11]) + Number(f[12])) * 1000) / clkTck;
  } catch {
    return NaN;
  }
}

/** read()-family system calls a process made so far (/proc/PID/io syscr, all its threads). */
export function readCalls(pid: number): number {
  try {
    return Number(/^syscr:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** Mount points at or below `dir`, deepest last-mounted first. */
export function mountsBelow(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')))
    .reverse();
}

/** Wait (up to `ms`) until none of `pids` runs; the ones still running. */
export function waitGone(pids: readonly number[], ms: number): number[] {
  const until = Date.now() + ms;
  let left = pids.filter(alive);
  while (left.length > 0 && Date.now() < until) {
    sleepSync(20);
    left = left.filter(alive);
  }
  return left;
}

/**
 * Stop the engine of `dir` if it runs: `layerfs engine stop --force` with its environment, then
 * SIGTERM and at last SIGKILL to the pid of its engine.lock (that pid only). Returns what did
 * not go as it should (empty when the engine stopped as asked, or none ran).
 */
export function stopEngine(layerfs: string, dir: string, env: NodeJS.ProcessEnv): string[] {
  const notes: string[] = [];
  const pid = enginePid(dir);
  if (pid === undefined) return notes;
  const r = spawnSync(layerfs, ['engine', 'stop', '--force'], { stdio: ['ignore', 'ignore', 'pipe'], env, timeout: 30_000 });
  if (r.status !== 0) notes.push(`layerfs engine stop --force (${dir}): exit ${r.status ?? r.signal}: ${r.stderr?.toString().trim()}`);
  if (waitGone([pid], 5_000).length === 0) return notes;
  notes.push(`the engine ${pid} (${dir}) still ran after engine stop: SIGTERM`);
  process.kill(pid, 'SIGTERM');
  if (waitGone([pid], 10_000).length === 0) return notes;
  notes.push(`the engine ${pid} (${dir}) still ran 10 s after SIGTERM: SIGKILL`);
  process.kill(pid, 'SIGKILL');
  waitGone([pid], 5_000);
  return notes;
}
