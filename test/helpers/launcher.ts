// Starting `layerfs run` with everything it creates kept below the test's own temp dir, and
// proving that nothing is left behind (mounts, cgroups, run records, throw-away uppers,
// processes). Shared by the tests of test/launcher/ and test/image/ (run IMAGE, commit).

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ExecutionContext } from 'ava';
import { hierarchies, removeCgroups } from '../../src/launcher/cgroup.ts';
import { layerfsBin, makeTmp, mountsUnder } from './mounts.ts';

export interface Sandbox {
  /** The test's temp dir; run records (and so the root mounts) and throw-away uppers go below it. */
  dir: string;
  runDir: string;
  tmpDir: string;
  /** Environment for bin/layerfs. */
  env: NodeJS.ProcessEnv;
  /** Run ids used so far (to check their cgroups). */
  ids: string[];
  nextId(): string;
}

/**
 * A per-test sandbox. Teardown (registered first, so it runs last) asserts that everything the
 * launcher created is gone, then removes the dir.
 */
export function sandbox(t: ExecutionContext): Sandbox {
  const dir = makeTmp(t, 'layerfs-test-run-');
  const runDir = path.join(dir, 'run');
  const tmpDir = path.join(dir, 'tmp');
  fs.mkdirSync(tmpDir);
  const sb: Sandbox = {
    dir,
    runDir,
    tmpDir,
    ids: [],
    env: { ...process.env, LAYERFS_RUN_DIR: runDir, TMPDIR: tmpDir, LC_ALL: 'C' },
    nextId() {
      const id = `t${randomBytes(5).toString('hex')}`;
      this.ids.push(id);
      return id;
    },
  };
  t.teardown(() => {
    // Assert first (while the evidence is there), then clean up regardless, so that a failing
    // test leaks nothing: processes, cgroups (makeTmp's teardown unmounts and removes the dir).
    const left = leftovers(sb);
    if (left.length > 0) t.fail(`left behind: ${left.join('; ')}`);
    for (const pid of processesMentioning(sb.dir)) {
      try {
        // Never the engine: it serves other tests' mounts (and is started with a clean environment).
        if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').includes('engine run')) process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    removeCgroups(hierarchies().flatMap((h) => sb.ids.map((id) => path.join(h.own, `layerfs-${id}`))));
  });
  return sb;
}

/** Everything a run of this sandbox may have left: should be empty after every run. */
export function leftovers(sb: Sandbox): string[] {
  const out: string[] = [];
  for (const m of mountsUnder(sb.dir)) out.push(`mount ${m}`);
  try {
    for (const e of fs.readdirSync(sb.runDir)) out.push(`run record ${e}`);
  } catch {
    /* never created */
  }
  for (const e of fs.readdirSync(sb.tmpDir)) if (e.startsWith('layerfs-run-')) out.push(`scratch ${e}`);
  for (const h of hierarchies()) {
    for (const id of sb.ids) if (fs.existsSync(path.join(h.own, `layerfs-${id}`))) out.push(`cgroup ${h.own}/layerfs-${id}`);
  }
  for (const pid of processesMentioning(sb.dir)) out.push(`process ${pid} (${cmdline(pid)})`);
  return out;
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim().slice(0, 120);
  } catch {
    return '?';
  }
}

/**
 * Processes whose environment or command line mentions `needle`: the launcher, unshare, stage
 * 2, the FUSE daemon (their environment carries paths of the sandbox) and CMD (every test run
 * passes -e SANDBOX=<dir>).
 */
export function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue; // exited, not reaped yet
      const env = fs.readFileSync(`/proc/${d}/environ`);
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`);
      if (env.includes(needle) || cmd.includes(needle)) out.push(Number(d));
    } catch {
      /* gone or kernel thread */
    }
  }
  return out;
}

export interface Launched {
  child: ChildProcess;
  id: string;
  result: Promise<Result>;
}

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface LaunchOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** Run under another uid (setpriv), for the rootless tests. */
  asUid?: number;
}

/** Start `layerfs run ARGS` (the sandbox tag is added as -e SANDBOX=...). */
export function launch(sb: Sandbox, args: readonly string[], opts: LaunchOptions = {}): Launched {
  const id = sb.nextId();
  const split = args.indexOf('--');
  const full = split >= 0 ? [...args.slice(0, split), '-e', `SANDBOX=${sb.dir}`, ...args.slice(split)] : [...args];
  let cmd = layerfsBin;
  let argv = ['run', ...full];
  if (opts.asUid !== undefined) {
    argv = ['--reuid', String(opts.asUid), '--regid', String(opts.asUid), '--clear-groups', '--', layerfsBin, ...argv];
    cmd = 'setpriv';
  }
  const child = spawn(cmd, argv, {
    env: { ...sb.env, LAYERFS_RUN_ID: id, ...opts.env },
    stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const result = new Promise<Result>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 100_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
  return { child, id, result };
}

/** Run `layerfs run ARGS` to completion. */
export function runIn(sb: Sandbox, args: readonly string[], opts: LaunchOptions = {}): Promise<Result> {
  return launch(sb, args, opts).result;
}

export async function waitFor(cond: () => boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
