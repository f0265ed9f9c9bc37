// The low-level libfuse3 binding (native/layerfs_fuse.cc, src/fuse/lowlevel.ts) and its
// adapter (src/fuse/ll-adapter.ts) through real mounts.
//
// Each test mounts in a child process (test/fuse/_ll-child.ts): a process must never touch
// its own FUSE mount synchronously from the JS thread that serves it. The test works on the
// mount from here, with async fs calls and external commands. Every mount is unmounted in
// teardown (the child is stopped, then anything left below the test's temp dir is unmounted).
//
// The tests are in lowlevel*.test.ts by topic; this module holds what they share: the child
// that serves a mount, layer sets, commands. Their tests run serially within each file (ltest).

import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../helpers/exec.ts';
import { makeTmp, repoRoot } from '../helpers/mounts.ts';
import type { ChildConfig } from './_ll-child.ts';

export const fsp = fs.promises;
export const CHILD = path.join(repoRoot, 'test', 'fuse', '_ll-child.ts');
export const TSX = 'file://' + path.join(repoRoot, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
export const ADDON = path.join(repoRoot, 'build', 'Release', 'layerfs_fuse.node');
export const E = os.constants.errno;

// The addon is built by npm ci (the package's install script); without it every test fails.
export const ltest = test.serial;

// ---------------------------------------------------------------------------------------
// the child

export interface Child {
  proc: ChildProcess;
  conn: { maxWrite: number; want: number; capable: number; passthrough: boolean };
  stderr(): string;
  /** The next stdout line starting with `prefix` (JSON after it, parsed). */
  line(prefix: string, timeoutMs?: number): Promise<any>;
  exit: Promise<number | null>;
  stop(): Promise<any>;
}

export async function startChild(t: ExecutionContext, cfg: ChildConfig, nodeArgs: string[] = []): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', TSX, ...nodeArgs, CHILD], {
    cwd: repoRoot,
    env: { ...process.env, LL_CHILD: JSON.stringify(cfg) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let outBuf = '';
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  proc.stdout!.on('data', (d: Buffer) => {
    outBuf += d.toString();
    let i;
    while ((i = outBuf.indexOf('\n')) >= 0) {
      lines.push(outBuf.slice(0, i));
      outBuf = outBuf.slice(i + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  const exit = new Promise<number | null>((res) => proc.on('exit', (code) => {
    res(code);
    for (const w of waiters.splice(0)) w();
  }));
  let exited = false;
  void exit.then(() => (exited = true));
  t.teardown(async () => {
    if (!exited) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    }
  });
  const line = async (prefix: string, timeoutMs = 60_000): Promise<any> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const k = lines.findIndex((l) => l.startsWith(prefix + ' '));
      if (k >= 0) {
        const l = lines.splice(k, 1)[0]!;
        return JSON.parse(l.slice(prefix.length + 1));
      }
      if (exited) throw new Error(`child exited without '${prefix}'; stderr:\n${err}`);
      if (Date.now() > until) throw new Error(`no '${prefix}' from the child within ${timeoutMs} ms; stderr:\n${err}`);
      await new Promise<void>((r) => {
        const tm = setTimeout(r, 200);
        waiters.push(() => {
          clearTimeout(tm);
          r();
        });
      });
    }
  };
  const child: Child = {
    proc,
    conn: undefined as unknown as Child['conn'],
    stderr: () => err,
    line,
    exit,
    stop: async () => {
      proc.kill('SIGTERM');
      const info = await line('exited');
      await exit;
      return info;
    },
  };
  if (cfg.mode !== 'cycles') child.conn = await line('ready');
  return child;
}

export interface Layers {
  dir: string;
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
  m(p?: string): string;
}

/** A temp dir with lower layers (filled by `fill`), an upper, a work dir and a mount point. */
export function layers(t: ExecutionContext, nLowers: number, fill: (lowers: string[]) => void): Layers {
  const dir = makeTmp(t);
  const lowers = Array.from({ length: nLowers }, (_, i) => path.join(dir, `lower${i}`));
  for (const l of lowers) fs.mkdirSync(l);
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  const mnt = path.join(dir, 'mnt');
  for (const d of [upper, work, mnt]) fs.mkdirSync(d);
  fill(lowers);
  return { dir, lowers, upper, work, mnt, m: (p = '') => (p ? path.join(mnt, p) : mnt) };
}

export async function mountUnion(t: ExecutionContext, L: Layers, extra: Partial<ChildConfig> = {}): Promise<Child> {
  return startChild(t, { mode: 'union', mnt: L.mnt, lowers: L.lowers, upper: L.upper, work: L.work, ...extra });
}

export async function sh(cmd: string, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const r = await run(cmd, args, { timeoutMs: 60_000 });
  return { code: r.code, out: r.stdout.toString('utf8'), err: r.stderr };
}

export async function shOk(cmd: string, ...args: string[]): Promise<string> {
  const r = await sh(cmd, ...args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.err}`);
  return r.out;
}

export async function py(code: string, ...args: string[]): Promise<any> {
  return JSON.parse(await shOk('python3', '-c', code, ...args));
}

export function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export const RENAMEAT2 = `
import ctypes, sys, json
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))
print(json.dumps(0 if r == 0 else ctypes.get_errno()))
`;

export const XATTR = `
import ctypes, sys, json
libc = ctypes.CDLL(None, use_errno=True)
libc.lgetxattr.restype = ctypes.c_ssize_t
libc.llistxattr.restype = ctypes.c_ssize_t
p, name = sys.argv[1].encode(), sys.argv[2].encode()
def get(size):
    buf = ctypes.create_string_buffer(size) if size else None
    r = libc.lgetxattr(p, name, buf, ctypes.c_size_t(size))
    return [r, ctypes.get_errno() if r < 0 else 0, buf.raw[:r].decode() if buf is not None and r > 0 else '']
def lst(size):
    buf = ctypes.create_string_buffer(size) if size else None
    r = libc.llistxattr(p, buf, ctypes.c_size_t(size))
    return [r, ctypes.get_errno() if r < 0 else 0, buf.raw[:r].decode() if buf is not None and r > 0 else '']
print(json.dumps({'q': get(0), 'small': get(4), 'exact': get(10), 'big': get(64), 'lq': lst(0), 'lsmall': lst(1), 'lbig': lst(256)}))
`;
