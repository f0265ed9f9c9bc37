// Small helpers shared by the benchmark suite's modules (bench/run.ts and friends): running
// and timing commands, statistics, page-cache dropping, daemon memory, the machine.
//
// Commands run without a shell through test/helpers/exec.ts (the same runner the FUSE tests
// use), with LC_ALL=C; a shell appears only where a workload is itself a pipeline.

import * as fs from 'node:fs';
import * as os from 'node:os';
import { run, type RunOptions, type RunResult } from '../test/helpers/exec.ts';

export { run };

/** Like run(), but throws one line (the command, its exit, its stderr) when it fails. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, { timeoutMs: 600_000, ...opts });
  if (r.code !== 0) {
    const why = r.timedOut ? 'timed out' : `exit ${r.code ?? r.signal}`;
    const msg = (r.stderr.trim() || r.stdout.toString().trim()).split('\n').slice(0, 3).join(' / ');
    throw new Error(`${cmd} ${args.join(' ').slice(0, 200)}: ${why}: ${msg}`);
  }
  return r;
}

/** Run a command to success and return its wall-clock time (ms) and output. */
export async function timed(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<{ ms: number; out: string }> {
  const t0 = process.hrtime.bigint();
  const r = await runOk(cmd, args, opts);
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, out: r.stdout.toString() };
}

/** A bash script with positional arguments ($1…), timed. */
export function timedBash(script: string, args: readonly string[], opts: RunOptions = {}): Promise<{ ms: number; out: string }> {
  return timed('bash', ['-c', script, 'bash', ...args], opts);
}

export function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function lines(out: string): number {
  return out.split('\n').filter((l) => l !== '').length;
}

// ------------------------------------------------------------------------------------------
// page cache

let dropAllowed: boolean | undefined;

/**
 * `sync; echo 3 > /proc/sys/vm/drop_caches`: page cache, dentries and inodes. Returns false
 * (once known, without trying again) where this sandbox does not permit it; "cold" then only
 * means a fresh mount.
 */
export async function dropCaches(): Promise<boolean> {
  if (dropAllowed === false) return false;
  await run('sync', []);
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    dropAllowed = true;
  } catch {
    dropAllowed = false;
  }
  return dropAllowed;
}

export function dropCachesAllowed(): boolean | undefined {
  return dropAllowed;
}

// ------------------------------------------------------------------------------------------
// daemon memory

export interface Mem {
  /** Resident set size now (VmRSS), KiB. */
  rssKiB: number;
  /** Peak resident set size (VmHWM), KiB. */
  hwmKiB: number;
}

/** VmRSS and VmHWM of a process, or undefined when it is gone. */
export function memOf(pid: number | undefined): Mem | undefined {
  if (!pid) return undefined;
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
    return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------
// the machine

export interface Machine {
  cpu: string;
  cores: number;
  kernel: string;
  node: string;
  memGiB: number;
  load: string;
}

export function loadavg(): string {
  return os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
}

export function machine(): Machine {
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.cpus().length,
    kernel: os.release(),
    node: process.version,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    load: loadavg(),
  };
}

/** First line of `cmd args` (a version string), or '?' when it does not run. */
export async function versionOf(cmd: string, args: string[], pick: RegExp = /\S.*/): Promise<string> {
  try {
    const r = await run(cmd, args, { timeoutMs: 10_000 });
    const text = (r.stdout.toString() + '\n' + r.stderr).trim();
    return pick.exec(text)?.[0]?.trim() ?? '?';
  } catch {
    return '?';
  }
}
