// A process that serves a mount through the low-level binding, driven by
// test/fuse/lowlevel.test.ts and bench/probes/backends.ts. A FUSE mount must never be accessed
// synchronously from the JS thread that serves it (that deadlocks), so the tests mount here
// and work on the mount from their own process.
//
// Configuration: JSON in LL_CHILD (see ChildConfig). Protocol on stdout, one line each:
//   ready {conn...}            the mount serves
//   exited {reason,code,...}   the session ended (after SIGTERM/SIGINT: unmount(); or from outside)
//   cycles {...}               (mode 'cycles') the leak measurement
// Handler mistakes are logged to stderr, one line each, prefixed "LOG ".

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { UnionFs } from '../../src/union/unionfs.ts';
import { mountLowLevel, type LowLevelMount } from '../../src/fuse/ll-adapter.ts';
import { LowLevelSession, type Request, type Stat } from '../../src/fuse/lowlevel.ts';

export interface ChildConfig {
  mode: 'union' | 'raw' | 'cycles' | 'exit-while-mounted';
  mnt: string;
  lowers?: string[];
  upper?: string;
  work?: string;
  cacheTimeout?: number;
  allowOther?: boolean;
  writebackCache?: boolean;
  /** FUSE passthrough for upper files (the adapter's default: on). */
  passthrough?: boolean;
  /** Microseconds to keep reading after answering (default 0 here). */
  spinUs?: number;
  readdirplus?: boolean | 'adaptive';
  /** cycles mode: how many mount/unmount cycles, and a shell command run against MNT each time. */
  cycles?: number;
  burst?: string;
  /** cycles mode: cycles before the measurement (V8's heap and JIT settle; default 20). */
  warmup?: number;
  /** cycles mode: print RSS / heap every N cycles on stderr. */
  trace?: number;
}

const cfg = JSON.parse(process.env.LL_CHILD ?? '{}') as ChildConfig;
const logger = (m: string) => process.stderr.write('LOG ' + m.replace(/\n/g, '\n    ') + '\n');
const out = (s: string) => process.stdout.write(s + '\n');

function union(): UnionFs {
  const u = new UnionFs({ lowerdirs: cfg.lowers!, upperdir: cfg.upper, workdir: cfg.work, readonly: !cfg.upper });
  if (!u.readonly) u.prepareWorkdir();
  // A bug injected on purpose: this xattr name makes the core throw a plain TypeError.
  const orig = u.getxattr.bind(u);
  u.getxattr = (p: string, name: string) => {
    if (name === 'user.layerfs-test.throw') throw new TypeError('injected handler bug');
    return orig(p, name);
  };
  return u;
}

function mountUnion(): Promise<LowLevelMount> {
  return mountLowLevel(union(), {
    mountpoint: cfg.mnt,
    fsname: 'layerfs-test',
    readonly: !cfg.upper,
    allowOther: cfg.allowOther ?? true,
    cacheTimeout: cfg.cacheTimeout ?? 1,
    extra: ['dev', 'suid'],
    debug: false,
    writebackCache: cfg.writebackCache,
    passthrough: cfg.passthrough,
    spinUs: cfg.spinUs,
    readdirplus: cfg.readdirplus,
    logger,
  });
}

// ---------------------------------------------------------------------------------------
// raw mode: a tiny in-memory filesystem whose handlers make every kind of mistake

const T0 = 1_000_000_000_123_456_789n;
function st(ino: bigint, mode: number, size: number): Stat {
  return { ino, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, size, blocks: 0, blksize: 4096, atimeNs: T0, mtimeNs: T0, ctimeNs: T0 };
}
const OK = Buffer.from('still serving\n');
const rootAttr = st(1n, 0o40755, 0);
const okAttr = st(2n, 0o100644, OK.length);

async function mountRaw(): Promise<LowLevelSession> {
  const entry = (r: Request) => r.entry({ nodeid: 2, attr: okAttr, entryTimeout: 0, attrTimeout: 0 });
  return LowLevelSession.mount({
    lookup(r, _parent, name) {
      switch (name) {
        case 'ok': entry(r); return;
        case 'throw-sync': throw new Error('sync bug');
        case 'throw-async': return Promise.reject(new Error('async bug'));
        case 'no-answer': return;
        case 'no-answer-async': return new Promise((res) => setTimeout(res, 5));
        case 'double': r.err(2); r.err(2); return;
        case 'bad-type': r.entry({ nodeid: 'x' as unknown as number, attr: okAttr, entryTimeout: 0, attrTimeout: 0 }); return;
        case 'bad-errno': r.err(Number.NaN); return;
        case 'hang': return new Promise<void>(() => {});
        default: r.err(2);
      }
    },
    getattr(r, ino) {
      r.attr(ino === 1 ? rootAttr : okAttr, 0);
    },
    open(r) {
      r.open(1);
    },
    read(r, _ino, _fh, size, off) {
      r.buf(OK.subarray(off, off + size));
    },
    readdir(r, _ino, _fh, size, off) {
      const all = [
        { name: '.', off: 1, entry: { nodeid: 0, attr: rootAttr, entryTimeout: 0, attrTimeout: 0 } },
        { name: '..', off: 2, entry: { nodeid: 0, attr: rootAttr, entryTimeout: 0, attrTimeout: 0 } },
        { name: 'ok', off: 3, entry: { nodeid: 0, attr: okAttr, entryTimeout: 0, attrTimeout: 0 } },
      ];
      r.dirents(all.slice(off), false, size);
    },
  }, { mountpoint: cfg.mnt, fsname: 'layerfs-raw', allowOther: true, defaultPermissions: true, logger });
}

// ---------------------------------------------------------------------------------------

function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function sh(cmd: string): Promise<number> {
  return new Promise((resolve) => {
    const c = spawn('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
    c.on('exit', (code) => resolve(code ?? -1));
  });
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function cycles(): Promise<void> {
  const n = cfg.cycles ?? 50;
  const burst = cfg.burst ?? 'ls -lR MNT >/dev/null && cat MNT/* >/dev/null 2>&1; true';
  const one = async (): Promise<number> => {
    const m = await mountUnion();
    const rc = await sh(burst.replace(/MNT/g, cfg.mnt));
    await m.unmount();
    await m.exited;
    return rc;
  };
  // Warm-up: the first mounts load the addon, koffi, libfuse, and grow V8's heap to its
  // working size (measured: RSS is flat from about the 20th cycle on).
  for (let i = 0; i < (cfg.warmup ?? 20); i++) await one();
  gc();
  await new Promise((r) => setTimeout(r, 100));
  gc();
  const fd0 = fdCount();
  const rss0 = process.memoryUsage().rss;
  const rss: number[] = [];
  let failures = 0;
  for (let i = 0; i < n; i++) {
    if ((await one()) !== 0) failures++;
    gc();
    rss.push(process.memoryUsage().rss);
    if (cfg.trace && (i + 1) % cfg.trace === 0) {
      const m = process.memoryUsage();
      process.stderr.write(`cycle ${i + 1}: rss ${(m.rss / 2 ** 20).toFixed(1)} heapUsed ${(m.heapUsed / 2 ** 20).toFixed(1)} heapTotal ${(m.heapTotal / 2 ** 20).toFixed(1)} external ${(m.external / 2 ** 20).toFixed(1)} fds ${fdCount()}\n`);
    }
  }
  gc();
  await new Promise((r) => setTimeout(r, 100));
  gc();
  const fd1 = fdCount();
  const rss1 = process.memoryUsage().rss;
  out('cycles ' + JSON.stringify({ cycles: n, failures, fdBefore: fd0, fdAfter: fd1, rssBefore: rss0, rssAfter: rss1, rss }));
}

let lastMount: LowLevelMount | undefined;

async function main(): Promise<void> {
  if (cfg.mode === 'cycles') {
    await cycles();
    return;
  }
  let unmount: () => Promise<void>;
  let exited: Promise<unknown>;
  let conn: unknown;
  if (cfg.mode === 'raw') {
    const s = await mountRaw();
    unmount = () => s.unmount({ timeoutMs: 500 });
    exited = s.exited;
    conn = s.conn;
  } else {
    const m = await mountUnion();
    lastMount = m;
    unmount = m.unmount;
    exited = m.exitInfo;
    conn = m.session.conn;
  }
  // SIGUSR2: session statistics, a `stats` line on stdout (set before 'ready').
  const session = cfg.mode === 'raw' ? null : lastMount?.session;
  process.on('SIGUSR2', () => out('stats ' + JSON.stringify(session?.stats())));
  out('ready ' + JSON.stringify(conn));
  if (cfg.mode === 'exit-while-mounted') {
    // Leave without unmounting: the addon's exit hook must unmount.
    setTimeout(() => process.exit(0), 50);
    return;
  }
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void unmount());
  const info = await exited;
  out('exited ' + JSON.stringify(info));
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`child failed: ${(e as Error)?.stack ?? e}\n`);
  process.exit(1);
});
