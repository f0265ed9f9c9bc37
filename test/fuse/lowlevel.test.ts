// The low-level libfuse3 binding (native/layerfs_fuse.cc, src/fuse/lowlevel.ts) and its
// adapter (src/fuse/ll-adapter.ts) through real mounts.
//
// Each test mounts in a child process (test/fuse/_ll-child.ts): a process must never touch
// its own FUSE mount synchronously from the JS thread that serves it. The test works on the
// mount from here, with async fs calls and external commands. Every mount is unmounted in
// teardown (the child is stopped, then anything left below the test's temp dir is unmounted).

import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../helpers/exec.ts';
import { isMounted, makeTmp, removeTmp, repoRoot } from '../helpers/mounts.ts';
import { UnionFs } from '../../src/union/unionfs.ts';
import { Cap, Op } from '../../src/fuse/lowlevel.ts';
import type { ChildConfig } from './_ll-child.ts';

const fsp = fs.promises;
const CHILD = path.join(repoRoot, 'test', 'fuse', '_ll-child.ts');
const TSX = 'file://' + path.join(repoRoot, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
const ADDON = path.join(repoRoot, 'build', 'Release', 'layerfs_fuse.node');
const E = os.constants.errno;

// The addon is built by npm ci (the package's install script); without it every test fails.
const ltest = test.serial;
test('the addon is built (npm ci runs node-gyp rebuild)', (t) => t.true(fs.existsSync(ADDON), `missing ${ADDON}`));

// ---------------------------------------------------------------------------------------
// the child

interface Child {
  proc: ChildProcess;
  conn: { maxWrite: number; want: number; capable: number; passthrough: boolean };
  stderr(): string;
  /** The next stdout line starting with `prefix` (JSON after it, parsed). */
  line(prefix: string, timeoutMs?: number): Promise<any>;
  exit: Promise<number | null>;
  stop(): Promise<any>;
}

async function startChild(t: ExecutionContext, cfg: ChildConfig, nodeArgs: string[] = []): Promise<Child> {
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

interface Layers {
  dir: string;
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
  m(p?: string): string;
}

/** A temp dir with lower layers (filled by `fill`), an upper, a work dir and a mount point. */
function layers(t: ExecutionContext, nLowers: number, fill: (lowers: string[]) => void): Layers {
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

async function mountUnion(t: ExecutionContext, L: Layers, extra: Partial<ChildConfig> = {}): Promise<Child> {
  return startChild(t, { mode: 'union', mnt: L.mnt, lowers: L.lowers, upper: L.upper, work: L.work, ...extra });
}

async function sh(cmd: string, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const r = await run(cmd, args, { timeoutMs: 60_000 });
  return { code: r.code, out: r.stdout.toString('utf8'), err: r.stderr };
}

async function shOk(cmd: string, ...args: string[]): Promise<string> {
  const r = await sh(cmd, ...args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.err}`);
  return r.out;
}

async function py(code: string, ...args: string[]): Promise<any> {
  return JSON.parse(await shOk('python3', '-c', code, ...args));
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

const RENAMEAT2 = `
import ctypes, sys, json
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))
print(json.dumps(0 if r == 0 else ctypes.get_errno()))
`;

const XATTR = `
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

// ---------------------------------------------------------------------------------------
// attributes

ltest('nanosecond times; touch -m/-a change only their time; 64-bit ino, size, ids, offsets', async (t) => {
  // lower1 on tmpfs: layers on two filesystems, so the union's inode numbers carry the layer
  // in their high bits (64-bit). A 5 GiB sparse file with a tail beyond 4 GiB.
  const shm = fs.mkdtempSync('/dev/shm/layerfs-test-');
  t.teardown(() => removeTmp(shm));
  const L = layers(t, 1, ([l0]) => {
    fs.writeFileSync(path.join(l0!, 'a'), 'lower a\n');
  });
  L.lowers.push(shm);
  const FIVE_G = 5 * 1024 ** 3;
  const fd = fs.openSync(path.join(shm, 'big'), 'w');
  fs.ftruncateSync(fd, FIVE_G);
  fs.writeSync(fd, Buffer.from('TAIL'), 0, 4, FIVE_G - 4);
  fs.closeSync(fd);
  fs.chownSync(path.join(shm, 'big'), 4_000_000_000, 4_000_000_001);
  await mountUnion(t, L);

  await shOk('touch', '-d', '2001-02-03 04:05:06.123456789', L.m('a'));
  t.is(await shOk('stat', '-c', '%x|%y', L.m('a')), '2001-02-03 04:05:06.123456789 +0000|2001-02-03 04:05:06.123456789 +0000\n');
  await shOk('touch', '-m', '-d', '2011-01-01 00:00:00.987654321', L.m('a'));
  t.is(await shOk('stat', '-c', '%x|%y', L.m('a')), '2001-02-03 04:05:06.123456789 +0000|2011-01-01 00:00:00.987654321 +0000\n');
  await shOk('touch', '-a', '-d', '1999-12-31 23:59:59.000000001', L.m('a'));
  t.is(await shOk('stat', '-c', '%x|%y', L.m('a')), '1999-12-31 23:59:59.000000001 +0000|2011-01-01 00:00:00.987654321 +0000\n');
  const up = fs.lstatSync(path.join(L.upper, 'a'), { bigint: true });
  t.is(up.atimeNs, 946684799_000000001n);
  t.is(up.mtimeNs, 1293840000_987654321n);
  // Before 1970.
  await shOk('touch', '-m', '-d', '1969-12-31 23:59:59.5', L.m('a'));
  t.is((await fsp.lstat(L.m('a'), { bigint: true })).mtimeNs, -500_000_000n);

  // 64-bit values.
  const expect = new UnionFs({ lowerdirs: L.lowers, upperdir: L.upper, workdir: L.work }).getattr('/big');
  const st = await fsp.lstat(L.m('big'), { bigint: true });
  t.true(st.ino > 2n ** 32n, `ino ${st.ino}`);
  t.is(st.ino, expect.ino);
  t.is(st.size, BigInt(FIVE_G));
  t.is(st.uid, 4_000_000_000n);
  t.is(st.gid, 4_000_000_001n);
  const fh = await fsp.open(L.m('big'), 'r');
  try {
    const b = Buffer.alloc(8);
    const { bytesRead } = await fh.read(b, 0, 8, FIVE_G - 4);
    t.is(b.subarray(0, bytesRead).toString(), 'TAIL');
  } finally {
    await fh.close();
  }
  // statfs: the upper's filesystem, all fields through.
  const [mb, ms] = (await shOk('stat', '-f', '-c', '%b %S %c %d', L.mnt)).trim().split(' ');
  const [ub, us] = (await shOk('stat', '-f', '-c', '%b %S %c %d', L.upper)).trim().split(' ');
  t.is(mb, ub);
  t.is(ms, us);
});

ltest('new objects belong to the caller (fuse_ctx uid/gid)', async (t) => {
  const L = layers(t, 1, () => {});
  fs.chmodSync(L.dir, 0o755); // mkdtemp makes it 0700: uid 1000 must get through to the mount
  await mountUnion(t, L);
  await fsp.mkdir(L.m('open'));
  await fsp.chmod(L.m('open'), 0o777);
  const as1000 = ['--reuid=1000', '--regid=1000', '--clear-groups'];
  await shOk('setpriv', ...as1000, 'touch', L.m('open/f'));
  await shOk('setpriv', ...as1000, 'mkdir', L.m('open/d'));
  await shOk('setpriv', ...as1000, 'ln', '-s', 'target', L.m('open/s'));
  await shOk('setpriv', ...as1000, 'mkfifo', L.m('open/p'));
  for (const n of ['f', 'd', 's', 'p']) {
    const m = await fsp.lstat(L.m(`open/${n}`));
    const u = fs.lstatSync(path.join(L.upper, 'open', n));
    t.deepEqual([m.uid, m.gid], [1000, 1000], `${n} through the mount`);
    t.deepEqual([u.uid, u.gid], [1000, 1000], `${n} in the upper`);
  }
  // The umask is the caller's (applied by the kernel).
  await shOk('sh', '-c', `umask 077; exec setpriv ${as1000.join(' ')} touch ${L.m('open/private')}`);
  t.is((await fsp.lstat(L.m('open/private'))).mode & 0o777, 0o600);
});

ltest('rename flags: NOREPLACE gives EEXIST; EXCHANGE swaps the two names', async (t) => {
  const L = layers(t, 1, ([l0]) => {
    fs.writeFileSync(path.join(l0!, 'a'), 'a');
    fs.writeFileSync(path.join(l0!, 'b'), 'b');
  });
  await mountUnion(t, L);
  t.is(await py(RENAMEAT2, L.m('a'), L.m('b'), '1'), E.EEXIST);
  t.is(await fsp.readFile(L.m('b'), 'utf8'), 'b');
  t.is(await py(RENAMEAT2, L.m('a'), L.m('c'), '1'), 0);
  t.is(await fsp.readFile(L.m('c'), 'utf8'), 'a');
  t.is(await py(RENAMEAT2, L.m('c'), L.m('b'), '2'), 0);
  t.is(await fsp.readFile(L.m('c'), 'utf8'), 'b');
  t.is(await fsp.readFile(L.m('b'), 'utf8'), 'a');
  t.is(await py(RENAMEAT2, L.m('c'), L.m('b'), '0'), 0);
  t.is(await fsp.readFile(L.m('b'), 'utf8'), 'b');
  t.false(fs.existsSync(L.m('a')));
  t.false(fs.existsSync(L.m('c')));
});

ltest('xattrs: size query, ERANGE into a too-small buffer, list', async (t) => {
  const L = layers(t, 1, ([l0]) => fs.writeFileSync(path.join(l0!, 'f'), 'f'));
  await mountUnion(t, L);
  await shOk('setfattr', '-n', 'user.k', '-v', '0123456789', L.m('f'));
  const r = await py(XATTR, L.m('f'), 'user.k');
  t.deepEqual(r.q, [10, 0, '']);
  t.deepEqual(r.small, [-1, E.ERANGE, '']);
  t.deepEqual(r.exact, [10, 0, '0123456789']);
  t.deepEqual(r.big, [10, 0, '0123456789']);
  t.deepEqual(r.lq, [7, 0, '']);
  t.deepEqual(r.lsmall, [-1, E.ERANGE, '']);
  t.deepEqual(r.lbig, [7, 0, 'user.k\0']);
  const missing = await py(XATTR, L.m('f'), 'user.none');
  t.is(missing.q[1], E.ENODATA);
});

// ---------------------------------------------------------------------------------------
// directories and data

ltest('readdirplus: ls -l and find of a 10k-entry directory (attributes always, and adaptive)', async (t) => {
  const N = 10_000;
  const L = layers(t, 2, ([l0, l1]) => {
    fs.mkdirSync(path.join(l1!, 'big'));
    fs.mkdirSync(path.join(l0!, 'big'));
    for (let i = 0; i < N; i++) fs.writeFileSync(path.join(i % 2 ? l0! : l1!, 'big', `file-${i}`), 'x'.repeat(i % 100));
  });
  for (const readdirplus of [true, 'adaptive'] as const) {
    const c = await mountUnion(t, L, { readdirplus });
    t.truthy(c.conn.want & Cap.READDIRPLUS, 'READDIRPLUS negotiated');
    // Looked up first: the listing is then advised to carry attributes in adaptive mode too.
    await fsp.stat(L.m('big/file-1'));
    const out = await shOk('ls', '-l', '--time-style=+', L.m('big'));
    const lines = out.trim().split('\n').slice(1);
    t.is(lines.length, N);
    const sizes = new Map(lines.map((l) => {
      const f = l.trim().split(/\s+/);
      return [f[f.length - 1]!, Number(f[4])];
    }));
    for (const i of [0, 1, 99, 4321, 9999]) t.is(sizes.get(`file-${i}`), i % 100, `${readdirplus}: file-${i}`);
    t.is((await shOk('ls', '-f', L.m('big'))).trim().split('\n').length, N + 2);
    t.is((await shOk('find', L.m('big'), '-type', 'f')).trim().split('\n').length, N);
    await c.stop();
  }
});

ltest('big writes: 8 MiB with dd bs=1M (1 MiB write requests), content intact', async (t) => {
  const L = layers(t, 1, () => {});
  const c = await mountUnion(t, L);
  t.is(c.conn.maxWrite, 1 << 20);
  const src = path.join(L.dir, 'src.bin');
  const data = randomBytes(8 << 20);
  fs.writeFileSync(src, data);
  await shOk('dd', `if=${src}`, `of=${L.m('big')}`, 'bs=1M', 'status=none');
  t.is(sha(fs.readFileSync(path.join(L.upper, 'big'))), sha(data));
  t.is(sha(await fsp.readFile(L.m('big'))), sha(data));
  // Overwrite a middle piece and append, through one handle.
  const fh = await fsp.open(L.m('big'), 'r+');
  await fh.write(Buffer.from('MIDDLE'), 0, 6, 3 << 20);
  await fh.close();
  data.write('MIDDLE', 3 << 20);
  await shOk('sh', '-c', `printf END >> ${L.m('big')}`);
  t.is(sha(await fsp.readFile(L.m('big'))), sha(Buffer.concat([data, Buffer.from('END')])));
});

ltest('writeback_cache (option): write-only opens, partial overwrites, appends and sizes stay right', async (t) => {
  const L = layers(t, 1, ([l0]) => fs.writeFileSync(path.join(l0!, 'low'), 'lower data\n'));
  const c = await mountUnion(t, L, { writebackCache: true });
  t.truthy(c.conn.want & Cap.WRITEBACK_CACHE, 'WRITEBACK_CACHE negotiated');
  const data = randomBytes(3 << 20);
  // Write-only, unaligned: the kernel fills its page cache and may read the file back through
  // this handle (the adapter opens write-only as read-write for that).
  const fh = await fsp.open(L.m('w'), 'w');
  await fh.write(data, 0, data.length, 0);
  await fh.write(Buffer.from('XYZ'), 0, 3, 4097);
  await fh.close();
  data.write('XYZ', 4097);
  await shOk('sh', '-c', `printf tail >> ${L.m('w')}; printf more >> ${L.m('low')}`);
  const want = Buffer.concat([data, Buffer.from('tail')]);
  t.is((await fsp.stat(L.m('w'))).size, want.length);
  t.is(sha(await fsp.readFile(L.m('w'))), sha(want));
  await shOk('sync');
  t.is(sha(fs.readFileSync(path.join(L.upper, 'w'))), sha(want));
  t.is(await fsp.readFile(L.m('low'), 'utf8'), 'lower data\nmore');
  t.is(fs.readFileSync(path.join(L.lowers[0]!, 'low'), 'utf8'), 'lower data\n');
});

ltest('open(O_TRUNC) of a lower file copies up and truncates; lowers untouched', async (t) => {
  const L = layers(t, 1, ([l0]) => fs.writeFileSync(path.join(l0!, 'f'), 'lower content'));
  await mountUnion(t, L);
  await shOk('sh', '-c', `printf new > ${L.m('f')}`);
  t.is(await fsp.readFile(L.m('f'), 'utf8'), 'new');
  t.is(fs.readFileSync(path.join(L.upper, 'f'), 'utf8'), 'new');
  t.is(fs.readFileSync(path.join(L.lowers[0]!, 'f'), 'utf8'), 'lower content');
});

ltest('copy-up changes st_ino behind the kernel: cached attributes of copied-up ancestors are dropped', async (t) => {
  const L = layers(t, 1, ([l0]) => {
    fs.mkdirSync(path.join(l0!, 'a', 'b'), { recursive: true });
    fs.writeFileSync(path.join(l0!, 'a', 'b', 'f'), 'f');
  });
  // Long cache times: without the invalidation the kernel would keep the lower inode numbers.
  await mountUnion(t, L, { cacheTimeout: 60 });
  const lowerA = fs.statSync(path.join(L.lowers[0]!, 'a')).ino;
  t.is((await fsp.stat(L.m('a'))).ino, lowerA);
  await fsp.stat(L.m('a/b'));
  await fsp.stat(L.m('a/b/f'));
  await fsp.writeFile(L.m('a/b/new'), 'n'); // copies up a and a/b
  t.is((await fsp.stat(L.m('a'))).ino, fs.statSync(path.join(L.upper, 'a')).ino);
  t.is((await fsp.stat(L.m('a/b'))).ino, fs.statSync(path.join(L.upper, 'a', 'b')).ino);
  // d_ino in a listing the kernel keeps (cache_readdir): read it before the copy-up of f...
  const dino = async () => {
    const py = 'import os, sys\nprint([e.inode() for e in os.scandir(sys.argv[1]) if e.name == "f"][0])';
    return Number((await run('python3', ['-c', py, L.m('a/b')])).stdout.toString().trim());
  };
  t.is(await dino(), fs.statSync(path.join(L.lowers[0]!, 'a', 'b', 'f')).ino);
  await shOk('setfattr', '-n', 'user.x', '-v', '1', L.m('a/b/f')); // copies up f
  t.is((await fsp.stat(L.m('a/b/f'))).ino, fs.statSync(path.join(L.upper, 'a', 'b', 'f')).ino);
  // ...and after it: the listing was dropped, so it shows the new number too.
  t.is(await dino(), fs.statSync(path.join(L.upper, 'a', 'b', 'f')).ino);
  // RENAME_EXCHANGE copies up both sides, the destination too.
  fs.writeFileSync(path.join(L.upper, 'a', 'b', 'u'), 'u');
  await fsp.stat(L.m('a/b/u'));
  fs.writeFileSync(path.join(L.lowers[0]!, 'x'), 'x');
  await fsp.stat(L.m('x'));
  t.is(await py(RENAMEAT2, L.m('a/b/u'), L.m('x'), '2'), 0);
  t.is((await fsp.stat(L.m('a/b/u'))).ino, fs.statSync(path.join(L.upper, 'a', 'b', 'u')).ino);
  t.is((await fsp.stat(L.m('x'))).ino, fs.statSync(path.join(L.upper, 'x')).ino);
});

ltest('namespace: a renamed directory carries its subtree; unlinked open files stay usable; hard links', async (t) => {
  const L = layers(t, 1, ([l0]) => fs.writeFileSync(path.join(l0!, 'a'), 'aaa'));
  const c = await mountUnion(t, L, { cacheTimeout: 0 });
  await fsp.mkdir(L.m('d1/sub'), { recursive: true });
  await fsp.writeFile(L.m('d1/sub/f'), 'hi');
  await fsp.stat(L.m('d1/sub/f'));
  await fsp.rename(L.m('d1'), L.m('d2'));
  t.is(await fsp.readFile(L.m('d2/sub/f'), 'utf8'), 'hi');
  await fsp.appendFile(L.m('d2/sub/f'), ' there');
  t.is(fs.readFileSync(path.join(L.upper, 'd2', 'sub', 'f'), 'utf8'), 'hi there');
  t.false(fs.existsSync(L.m('d1')));

  const r = await py(`
import os, sys, json
p = sys.argv[1]
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b'orphan data')
os.unlink(p)
st = os.fstat(fd)
os.lseek(fd, 0, 0)
data = os.read(fd, 100)
os.close(fd)
print(json.dumps([st.st_size, data.decode(), os.path.exists(p)]))
`, L.m('tmpfile'));
  t.deepEqual(r, [11, 'orphan data', false]);

  await fsp.link(L.m('a'), L.m('a2'));
  const [s1, s2] = [await fsp.stat(L.m('a')), await fsp.stat(L.m('a2'))];
  t.is(s1.ino, s2.ino);
  t.is(s2.nlink, 2);
  t.is(await fsp.readFile(L.m('a2'), 'utf8'), 'aaa');
  await fsp.symlink('a', L.m('ln'));
  t.is(await fsp.readlink(L.m('ln')), 'a');
  void c;
});

// ---------------------------------------------------------------------------------------
// robustness

ltest('a handler bug answers EIO (logged) and the mount keeps serving', async (t) => {
  const L = layers(t, 1, ([l0]) => fs.writeFileSync(path.join(l0!, 'a'), 'aaa'));
  const c = await mountUnion(t, L);
  const r = await sh('getfattr', '-n', 'user.layerfs-test.throw', L.m('a'));
  t.not(r.code, 0);
  t.regex(r.err, /Input\/output error/);
  t.is(await fsp.readFile(L.m('a'), 'utf8'), 'aaa');
  t.regex(c.stderr(), /injected handler bug/);
});

ltest('binding guards: throw, reject, no answer, double answer, wrong types; a hung request is answered at unmount', async (t) => {
  const dir = makeTmp(t);
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  const c = await startChild(t, { mode: 'raw', mnt });
  t.is(await fsp.readFile(path.join(mnt, 'ok'), 'utf8'), 'still serving\n');
  for (const name of ['throw-sync', 'throw-async', 'no-answer', 'no-answer-async', 'bad-type', 'bad-errno']) {
    const e = await fsp.lstat(path.join(mnt, name)).then(() => null, (err: NodeJS.ErrnoException) => err.code);
    t.is(e, 'EIO', name);
    t.is(await fsp.readFile(path.join(mnt, 'ok'), 'utf8'), 'still serving\n', `after ${name}`);
  }
  const d = await fsp.lstat(path.join(mnt, 'double')).then(() => null, (err: NodeJS.ErrnoException) => err.code);
  t.is(d, 'ENOENT');
  t.is(await fsp.readFile(path.join(mnt, 'ok'), 'utf8'), 'still serving\n');
  const log = c.stderr();
  t.regex(log, /lookup: handler threw: Error: sync bug/);
  t.regex(log, /lookup: handler threw: Error: async bug/);
  t.regex(log, /lookup: handler finished without answering/);
  t.regex(log, /lookup: second reply to request \d+ ignored/);
  t.regex(log, /TypeError/);

  // A request whose handler never answers: answered ENOTCONN when the session ends.
  const hung = sh('stat', path.join(mnt, 'hang'));
  await new Promise((r) => setTimeout(r, 300));
  const info = await c.stop();
  t.is(info.reason, 'unmount');
  t.true(info.abandoned >= 1, JSON.stringify(info));
  const h = await hung;
  t.not(h.code, 0);
  t.regex(h.err, /Transport endpoint is not connected|Software caused connection abort|No such file/);
  t.false(isMounted(mnt));
});

ltest('unmount from outside (umount, fusermount3 -u): exited resolves and the server exits by itself', async (t) => {
  for (const how of [['umount'], ['fusermount3', '-u']]) {
    const L = layers(t, 1, ([l0]) => fs.writeFileSync(path.join(l0!, 'a'), 'a'));
    const c = await mountUnion(t, L);
    t.is(await fsp.readFile(L.m('a'), 'utf8'), 'a');
    await shOk(how[0]!, ...how.slice(1), L.mnt);
    const info = await c.line('exited', 10_000);
    t.is(info.reason, 'external', how.join(' '));
    t.is(await c.exit, 0);
    t.false(isMounted(L.mnt));
  }
});

ltest('a server process that exits with its mount up leaves no mount behind', async (t) => {
  const L = layers(t, 1, () => {});
  const c = await startChild(t, { mode: 'exit-while-mounted', mnt: L.mnt, lowers: L.lowers, upper: L.upper, work: L.work });
  t.is(await c.exit, 0);
  t.false(isMounted(L.mnt));
  await t.notThrowsAsync(fsp.readdir(L.mnt));
});

ltest('no leaks: 50 mount/unmount cycles with request bursts in one process (after 20 warm-up cycles)', async (t) => {
  const L = layers(t, 1, ([l0]) => {
    fs.mkdirSync(path.join(l0!, 'd'));
    for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(l0!, 'd', `f${i}`), `file ${i}\n`);
    fs.writeFileSync(path.join(l0!, 'top'), 'top\n');
  });
  const burst = 'ls -lR MNT >/dev/null && cat MNT/d/* >/dev/null && echo x > MNT/new && rm MNT/new && touch MNT/top && getfattr -d MNT/top >/dev/null';
  const c = await startChild(t, { mode: 'cycles', mnt: L.mnt, lowers: L.lowers, upper: L.upper, work: L.work, cycles: 50, burst }, ['--expose-gc']);
  const r = await c.line('cycles', 110_000);
  // RSS after each cycle (after a forced GC). Single samples scatter by several MiB (write
  // buffers waiting for their finalizers, malloc arenas), so compare medians of the first and
  // last ten cycles, and fit a slope: a leak shows as a steady climb.
  const mib = (r.rss as number[]).map((x) => x / 2 ** 20);
  const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  const first = med(mib.slice(0, 10));
  const last = med(mib.slice(-10));
  const n = mib.length;
  const mx = (n - 1) / 2;
  const my = mib.reduce((a, b) => a + b, 0) / n;
  const slope = mib.reduce((a, y, i) => a + (i - mx) * (y - my), 0) / mib.reduce((a, _y, i) => a + (i - mx) ** 2, 0);
  t.log(`50 cycles: open fds ${r.fdBefore} -> ${r.fdAfter}; RSS median of first 10 cycles ${first.toFixed(1)} MiB, of last 10 ${last.toFixed(1)} MiB (${(last - first).toFixed(1)}); slope ${(slope * 1024).toFixed(0)} KiB/cycle; end-to-end ${(r.rssBefore / 2 ** 20).toFixed(1)} -> ${(r.rssAfter / 2 ** 20).toFixed(1)} MiB`);
  t.is(r.failures, 0);
  t.is(r.fdAfter, r.fdBefore);
  t.true(last - first < 6, `RSS grew ${(last - first).toFixed(1)} MiB`);
  t.true(slope < 0.1, `RSS climbs ${(slope * 1024).toFixed(0)} KiB per cycle`);
  t.is(await c.exit, 0);
  t.false(isMounted(L.mnt));
});

// ---------------------------------------------------------------------------------------
// passthrough

/** Requests of each op code the child's session has handed to JS so far. */
async function opCounts(c: Child): Promise<(op: number) => number> {
  c.proc.kill('SIGUSR2');
  const st = (await c.line('stats')) as { byOp: Record<string, number> };
  return (op) => st.byOp[String(op)] ?? 0;
}

async function passthroughRound(t: ExecutionContext, passthrough: boolean): Promise<{ reads: number; writes: number }> {
  const L = layers(t, 1, ([l]) => fs.writeFileSync(path.join(l!, 'low'), 'lower data'));
  // A file already in the upper (its data never passed through the mount).
  const big = randomBytes(1 << 20);
  fs.writeFileSync(path.join(L.upper, 'up'), big);
  const c = await mountUnion(t, L, { passthrough });
  t.is(c.conn.passthrough, passthrough, 'negotiated exactly when asked (this kernel offers it)');
  const before = await opCounts(c);
  // 200 writes into a new file, then the upper file read whole.
  const fh = await fsp.open(L.m('new'), 'w');
  const block = Buffer.alloc(4096, 'a');
  for (let i = 0; i < 200; i++) await fh.write(block, 0, block.length, i * block.length);
  await fh.close();
  t.is(sha(await fsp.readFile(L.m('up'))), sha(big));
  const after = await opCounts(c);
  t.is(fs.statSync(path.join(L.upper, 'new')).size, 200 * 4096, 'the data is in the upper file');
  t.is(sha(fs.readFileSync(path.join(L.upper, 'new'))), sha(Buffer.alloc(200 * 4096, 'a')));

  // A lower file open read-only (served by the daemon) while another descriptor writes it
  // (copy-up): the open for writing must not ask the kernel for passthrough on an inode it
  // caches, and the first descriptor follows the copy-up.
  const ro = await fsp.open(L.m('low'), 'r');
  const buf = Buffer.alloc(32);
  t.is((await ro.read(buf, 0, 32, 0)).bytesRead, 10);
  await fsp.writeFile(L.m('low'), 'upper data!', { flag: 'r+' });
  const n = (await ro.read(buf, 0, 32, 0)).bytesRead;
  t.is(buf.toString('utf8', 0, n), 'upper data!');
  await ro.close();
  // Copied up and closed: now it may pass through. Two descriptors on it at once share it.
  const a = await fsp.open(L.m('low'), 'r');
  const b = await fsp.open(L.m('low'), 'r+');
  await b.write(Buffer.from('UPPER'), 0, 5, 0);
  const m = (await a.read(buf, 0, 32, 0)).bytesRead;
  t.is(buf.toString('utf8', 0, m), 'UPPER data!');
  await a.close();
  await b.close();
  t.is(fs.readFileSync(path.join(L.upper, 'low'), 'utf8'), 'UPPER data!');
  t.is(fs.readFileSync(path.join(L.lowers[0]!, 'low'), 'utf8'), 'lower data', 'the lower is untouched');
  await c.stop();
  t.is(c.stderr().match(/^LOG .*/m)?.[0], undefined, 'no handler complaints');
  return { reads: after(Op.READ) - before(Op.READ), writes: after(Op.WRITE) - before(Op.WRITE) };
}

ltest('passthrough: upper files are read and written by the kernel, no READ/WRITE reaches the daemon', async (t) => {
  const r = await passthroughRound(t, true);
  t.deepEqual(r, { reads: 0, writes: 0 });
});

ltest('passthrough off: the same reads and writes do reach the daemon (what the test above tells apart)', async (t) => {
  const r = await passthroughRound(t, false);
  t.true(r.writes >= 200, `${r.writes} WRITE requests for 200 writes`);
  t.true(r.reads >= 1, `${r.reads} READ requests for 1 MiB never read before`);
});

// ---------------------------------------------------------------------------------------
// reads by splice

const STRACE = ['/usr/bin/strace', '/bin/strace'].find((p) => fs.existsSync(p));

ltest('reads are spliced from the file to the kernel (no pread into the daemon), contents intact', async (t) => {
  // 3 MiB + 123: six 512 KiB requests and a short one at the end of the file; 100 bytes: a
  // one-page request, which libfuse answers by pread + writev (it splices from two pages on).
  const big = randomBytes((3 << 20) + 123);
  const small = randomBytes(100);
  // Four more read at once: their answers are written from several pool threads together.
  const more = [1, 2, 3, 4].map(() => randomBytes((2 << 20) + 4097));
  const L = layers(t, 1, ([l]) => {
    fs.writeFileSync(path.join(l!, 'big'), big);
    fs.writeFileSync(path.join(l!, 'small'), small);
    more.forEach((b, i) => fs.writeFileSync(path.join(l!, `more${i}`), b));
  });
  const c = await mountUnion(t, L);
  t.truthy(STRACE, 'strace is installed (scripts/setup.sh installs it)');
  if (!STRACE) return;
  const out = path.join(L.dir, 'strace.out');
  // -ff: one file per thread, so calls on the thread pool are not split into unfinished/resumed halves.
  const tracer = spawn(STRACE, ['-ff', '-e', 'trace=splice,vmsplice,pread64,preadv,preadv2', '-o', out, '-p', String(c.proc.pid)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let tracerErr = '';
  const attached = new Promise<void>((res) => tracer.stderr!.on('data', (d: Buffer) => {
    tracerErr += d.toString();
    if (tracerErr.includes('attached')) res();
  }));
  const traceDone = new Promise<void>((r) => tracer.on('exit', () => r()));
  t.teardown(async () => {
    if (tracer.exitCode === null) tracer.kill('SIGKILL');
    await traceDone;
  });
  await Promise.race([attached, traceDone]);
  t.regex(tracerErr, /attached/, 'strace attached to the daemon');
  t.is(sha(await fsp.readFile(L.m('big'))), sha(big));
  t.is(sha(await fsp.readFile(L.m('small'))), sha(small));
  const got = await Promise.all(more.map((_, i) => fsp.readFile(L.m(`more${i}`))));
  got.forEach((b, i) => t.is(sha(b), sha(more[i]!), `more${i}`));
  tracer.kill('SIGINT');
  await traceDone;
  const trace = fs.readdirSync(L.dir).filter((f) => f.startsWith('strace.out.'))
    .flatMap((f) => fs.readFileSync(path.join(L.dir, f), 'utf8').split('\n'));
  // splice(file, [offset], pipe, ...) = n: the file's bytes going into the pipe.
  const fromFile = trace.filter((l) => /splice\(\d+, \[\d+\], \d+, NULL, \d+, [^)]*\) = [1-9]/.test(l)).length;
  const bigPreads = trace.filter((l) => /pread64\(\d+, .*, (\d+), \d+\) = \d+/.test(l) && Number(/, (\d+), \d+\) = /.exec(l)![1]) > 4096);
  t.true(fromFile >= 6, `${fromFile} splices from the file for 3 MiB:\n${trace.join('\n').slice(0, 3000)}`);
  t.deepEqual(bigPreads, [], 'no read request was copied through memory');
  t.true(trace.some((l) => l.includes('pread64(') && l.includes(', 4096, 0) = 100')), 'the one-page read went by pread');
  await c.stop();
  t.is(c.stderr().match(/^LOG .*/m)?.[0], undefined, 'no handler complaints');
});

// ---------------------------------------------------------------------------------------
// spinning

async function spinRound(t: ExecutionContext, spinUs: number): Promise<{ hits: number; requests: number }> {
  const L = layers(t, 1, ([l]) => fs.writeFileSync(path.join(l!, 'f'), 'x'));
  // Timeout 0: every stat is a GETATTR round trip.
  const c = await mountUnion(t, L, { spinUs, cacheTimeout: 0 });
  c.proc.kill('SIGUSR2');
  const before = (await c.line('stats')) as { spinHits: number; requests: number };
  await shOk('python3', '-c', 'import os, sys\nfor _ in range(2000): os.stat(sys.argv[1])', L.m('f'));
  c.proc.kill('SIGUSR2');
  const after = (await c.line('stats')) as { spinHits: number; requests: number };
  await c.stop();
  return { hits: after.spinHits - before.spinHits, requests: after.requests - before.requests };
}

ltest('spinning: with spinUs the next request of a tight loop is found by the spin, not by a wake-up', async (t) => {
  const r = await spinRound(t, 2000);
  t.true(r.requests >= 2000, `${r.requests} requests`);
  // Most of them: the client sends the next stat within microseconds of our answer.
  t.true(r.hits > r.requests / 2, `${r.hits} of ${r.requests} requests found by spinning`);
});

ltest('spinning off (spinUs 0): every request comes through the event loop', async (t) => {
  const r = await spinRound(t, 0);
  t.true(r.requests >= 2000, `${r.requests} requests`);
  t.is(r.hits, 0);
});
