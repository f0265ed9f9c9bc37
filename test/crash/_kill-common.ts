// Part of the kill -9 harness (_kill.ts, which describes it and runs the rounds): the public
// types, and what the kinds share (the context of a round, a kind's shape, starting and killing
// processes).

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitDead } from './_lib.ts';

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

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CHILD = path.join(HERE, '_ops-child.mjs');
export const UID = 1234;
export const GID = 5678;

export interface Ctx {
  dir: string;
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
  log: (s: string) => void;
  notes: string[];
}

export interface Kind<Info> {
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

export function mk(p: string): void {
  fs.mkdirSync(p, { recursive: true });
}

export function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Spawn a command; resolves with its exit code (null when killed). stdout/stderr are kept small. */
export function start(cmd: string, args: string[]): { done: Promise<{ code: number | null; stderr: string }>; pid: number } {
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

export async function killNow(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  if (!(await waitDead(pid))) throw new Error(`daemon ${pid} did not die after SIGKILL`);
}

// =============================================================================== copyup
