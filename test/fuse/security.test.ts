// The daemon runs as root and the layers are untrusted: a layer may hold symlinks pointing
// anywhere (`etc -> /`, `up -> ../../..`, links to a canary outside the layers). What must
// never happen is the DAEMON resolving a layer path through such a link — i.e. listing,
// stat-ing, reading or writing something outside the layers on the caller's behalf.
//
// What reaches the daemon, and therefore what is meaningful to test here:
//
//  * Operations on a symlink itself (lstat, readlink, lchown, lutimes, lsetxattr, unlink,
//    rename, link): the kernel hands the daemon the path of the link; the daemon must act on
//    the link (copied up), never on its target.
//  * Paths BELOW a union directory whose name is, in some other layer, a symlink: e.g. the
//    upper has a real dir `b/` and a lower has `b -> /outside`. The kernel sees `b` as a
//    directory and sends `/b/secret` to the daemon; a daemon that naively tried
//    `lower/b/secret` would let the kernel's path walk (inside the daemon!) follow the
//    lower's link to /outside/secret. The overlay rules say that lower entry is hidden
//    anyway (a non-directory under a directory ends the merge), so it must never be touched.
//  * The converse, a symlink in a higher layer over a real directory in a lower one: the union
//    entry is the symlink, so the lower directory's contents must stay invisible.
//
// What does NOT reach the daemon, and is not tested: operations that FOLLOW a symlink seen
// through the mount (`cat MNT/etc/passwd`, `ls MNT/cdir/`, `chmod MNT/canary`). The caller's
// own VFS resolves the link in the caller's namespace — exactly as with kernel overlayfs — so
// they never touch the daemon, and they would touch the canary legitimately. The battery
// below carefully avoids them, so that any change to the canary is the daemon's doing.
//
// The canary: a directory outside the layers whose every entry has atime < mtime, on a
// relatime mount, so that any read or listing of it (not only writes) shows as a changed
// atime; the fingerprint is taken with lstat only, which changes nothing. The test verifies
// first, on a separate probe, that reads and listings really do move atimes on this system.

import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readState } from '../../src/engine/state.ts';
import { TARGET, kindOf, listTree, names, sh, shOk, sleep, withLayers, type Env } from './_env.ts';

const fsp = fs.promises;
const S = 1_000_000_000n;

// ---------------------------------------------------------------------------------------- fixture

interface Planted {
  /** The canary directory outside the layers. */
  can: string;
  /** Union path (relative) → the target planted, for every symlink reachable through the mount. */
  links: Map<string, string>;
  /** Absolute paths of every planted symlink, in every layer (visible through the union or not). */
  linkPaths: string[];
  /** Whether reads/listings move atimes here (relatime, atime < mtime). */
  atimeSensitive: boolean;
  /** The canary fingerprint, taken right before mounting. */
  before: Map<string, string>;
  /** Fingerprint of a few host paths a followed `etc -> /` or `up -> ../../..` would reach. */
  hostBefore: Map<string, string>;
}

const CANARY_ENTRIES = ['.', 'canary', 'secret', 'sub', 'sub/deep'];
const HOST_PATHS = ['/', '/tmp', '/etc', '/etc/passwd'];

function canPath(can: string, rel: string): string {
  return rel === '.' ? can : path.join(can, rel);
}

/** lstat-only fingerprint (changes nothing, not even an atime). */
function fingerprint(paths: string[], withAtime: boolean): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of paths) {
    let st: fs.BigIntStats;
    try {
      st = fs.lstatSync(p, { bigint: true });
    } catch (e) {
      out.set(p, `error ${(e as NodeJS.ErrnoException).code}`);
      continue;
    }
    out.set(
      p,
      `ino=${st.ino} mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} size=${st.size} nlink=${st.nlink} ` +
        `mtime=${st.mtimeNs} ctime=${st.ctimeNs}` + (withAtime ? ` atime=${st.atimeNs}` : ''),
    );
  }
  return out;
}

function hostPrint(): Map<string, string> {
  // Only what a followed link would change (owner, mode, xattr-free fields): the host's
  // own mtimes move for unrelated reasons.
  const out = new Map<string, string>();
  for (const p of HOST_PATHS) {
    const st = fs.lstatSync(p);
    out.set(p, `mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} mtime-not-planted=${st.mtimeMs !== 1_111_111_111_000}`);
  }
  return out;
}

/** atime older than mtime, so that relatime updates the atime on the next read or listing. */
async function makeStale(p: string): Promise<void> {
  await shOk('touch', '-h', '-m', '-d', '@1200000000', p);
  await shOk('touch', '-h', '-a', '-d', '@1000000000', p);
}

/** Do reads and listings move atimes of stale entries here? (Proves the canary can see them.) */
async function probeAtime(dir: string): Promise<boolean> {
  const probe = path.join(dir, 'atime-probe');
  fs.mkdirSync(probe);
  fs.writeFileSync(path.join(probe, 'f'), 'probe');
  await makeStale(path.join(probe, 'f'));
  await makeStale(probe);
  const before = fingerprint([probe, path.join(probe, 'f')], true);
  fs.readFileSync(path.join(probe, 'f'));
  fs.readdirSync(probe);
  const after = fingerprint([probe, path.join(probe, 'f')], true);
  fs.rmSync(probe, { recursive: true });
  return [...before.keys()].every((k) => before.get(k) !== after.get(k));
}

function symlinkAt(abs: string, target: string, all: string[]): void {
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  fs.symlinkSync(target, abs);
  all.push(abs);
}

function fileAt(abs: string, content: string): void {
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  fs.writeFileSync(abs, content);
}

/**
 * Plant the hostile layers. Relative targets are written so that, resolved from where the
 * link lives in its layer (layers/<layer>/...), they reach the host root or the canary.
 */
async function plant(e: Omit<Env, 'lowerPrints'>, p: Planted): Promise<void> {
  const can = path.join(e.dir, 'outside');
  p.can = can;
  fs.mkdirSync(path.join(can, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(can, 'canary'), 'CANARY\n');
  fs.writeFileSync(path.join(can, 'secret'), 'SECRET\n');
  fs.writeFileSync(path.join(can, 'sub', 'deep'), 'DEEP\n');
  fs.chmodSync(e.dir, 0o755);

  const l0 = e.l(0);
  const l1 = e.l(1);
  const up = e.u();
  const all = p.linkPaths;
  const visible = (rel: string, target: string) => p.links.set(rel, target);

  // The brief's set, in the top lower and (with a u prefix) in the upper.
  for (const [root, pre] of [[l0, ''], [up, 'u']] as const) {
    const set: [string, string][] = [
      [`${pre}etc`, '/'],
      [`${pre}up`, '../../..'], // layers/<layer>/../../.. = the directory holding the test dir
      [`${pre}rel`, '../../outside'], // = the canary
      [`${pre}canary`, path.join(can, 'canary')],
      [`${pre}cdir`, can],
      [`${pre}d/x`, can],
      [`${pre}d/y`, '../../../outside'],
      [`${pre}d/z`, path.join(can, 'secret')],
      [`${pre}d/t`, '/tmp'],
    ];
    for (const [rel, target] of set) {
      symlinkAt(path.join(root, rel), target, all);
      visible(rel, target);
    }
  }
  // A: a symlink in lower0 over a real directory in lower1: `a` is the link, a/f invisible.
  symlinkAt(path.join(l0, 'a'), can, all);
  visible('a', can);
  fileAt(path.join(l1, 'a', 'f'), 'lower1 a/f');
  // B: a real directory in the upper over a symlink in lower0.
  fileAt(path.join(up, 'b', 'ub'), 'upper b/ub');
  symlinkAt(path.join(l0, 'b'), can, all);
  // C: a real directory in lower0 over a symlink in lower1.
  fileAt(path.join(l0, 'c', 'lc'), 'lower0 c/lc');
  symlinkAt(path.join(l1, 'c'), can, all);
  // E: one level deeper: e/ merges lower0 and lower1; e/sub is a dir in lower0, a link in lower1.
  fileAt(path.join(l0, 'e', 'sub', 's0'), 'lower0 e/sub/s0');
  fileAt(path.join(l1, 'e', 'other'), 'lower1 e/other');
  symlinkAt(path.join(l1, 'e', 'sub'), can, all);
  // R: the same with a relative link (layers/lower1/../../outside).
  fileAt(path.join(up, 'r', 'ur'), 'upper r/ur');
  symlinkAt(path.join(l1, 'r'), '../../outside', all);
  // W: a directory merged from upper and lower0, over a link in lower1.
  fileAt(path.join(up, 'w', 'uw'), 'upper w/uw');
  fileAt(path.join(l0, 'w', 'lw'), 'lower0 w/lw');
  symlinkAt(path.join(l1, 'w'), can, all);
  // F: a symlink in the upper over a real directory in lower0.
  symlinkAt(path.join(up, 'f'), can, all);
  visible('f', can);
  fileAt(path.join(l0, 'f', 'lf'), 'lower0 f/lf');
  // G: a regular file in lower0 over a directory in lower1.
  fileAt(path.join(l0, 'g'), 'lower0 g');
  fileAt(path.join(l1, 'g', 'f'), 'lower1 g/f');

  p.atimeSensitive = await probeAtime(e.dir);
  for (const rel of CANARY_ENTRIES) await makeStale(canPath(can, rel));
  p.before = fingerprint(CANARY_ENTRIES.map((r) => canPath(can, r)), true);
  p.hostBefore = hostPrint();
}

function secureTest(
  title: string,
  body: (t: ExecutionContext, e: Env, p: Planted) => Promise<void>,
  run: typeof test | typeof test.failing = test,
): void {
  const p: Planted = { can: '', links: new Map(), linkPaths: [], atimeSensitive: false, before: new Map(), hostBefore: new Map() };
  run(
    title,
    withLayers(
      { lowers: [{}, {}], upper: {} },
      async (t, e) => {
        if (!p.atimeSensitive) t.log('reads do not move atimes here (noatime?): the canary checks cover writes and metadata only');
        await body(t, e, p);
        assertCanaryUntouched(t, p);
      },
      { prepare: (e) => plant(e, p) },
    ),
  );
}

function assertCanaryUntouched(t: ExecutionContext, p: Planted): void {
  const after = fingerprint(CANARY_ENTRIES.map((r) => canPath(p.can, r)), true);
  const diffs: string[] = [];
  for (const [k, v] of p.before) {
    const a = after.get(k)!;
    const strip = (s: string) => (p.atimeSensitive ? s : s.replace(/ atime=\d+/, ''));
    if (strip(a) !== strip(v)) diffs.push(`${k}:\n  before ${v}\n  after  ${a}`);
  }
  t.deepEqual(diffs, [], 'the canary outside the layers was touched');
  // Listed last: listing it moves its atime.
  t.deepEqual(listTree(p.can), ['canary', 'secret', 'sub', 'sub/deep'], 'entries appeared in the canary');
  const host = hostPrint();
  t.deepEqual([...host], [...p.hostBefore], 'host paths changed');
}

// ---------------------------------------------------------------------------------------- tests

// Meaningful because a union that consulted every layer for every path would show the
// canary's names below b, c, e/sub, r, w (found by lstat through the lower's link), or the
// lower directories below the links a and f; and a directory listing that merged a lower
// link would read the canary directory (its atime would move).
secureTest('union resolution: lower entries below a higher non-directory are never consulted, lower links below a directory never followed', async (t, e, p) => {
  // Every planted link is served as the link it is.
  for (const [rel, target] of p.links) {
    const st = await fsp.lstat(e.m(rel));
    t.true(st.isSymbolicLink(), `${rel} is a symlink`);
    t.is(await fsp.readlink(e.m(rel)), target, `${rel} target`);
  }
  t.true((await fsp.lstat(e.m('b'))).isDirectory());
  t.true((await fsp.lstat(e.m('c'))).isDirectory());
  t.true((await fsp.lstat(e.m('e/sub'))).isDirectory());
  t.true((await fsp.lstat(e.m('r'))).isDirectory());
  t.true((await fsp.lstat(e.m('w'))).isDirectory());
  t.true((await fsp.lstat(e.m('g'))).isFile());

  t.deepEqual(await names(e.m('b')), ['ub']);
  t.deepEqual(await names(e.m('c')), ['lc']);
  t.deepEqual(await names(e.m('e')), ['other', 'sub']);
  t.deepEqual(await names(e.m('e/sub')), ['s0']);
  t.deepEqual(await names(e.m('r')), ['ur']);
  t.deepEqual(await names(e.m('w')), ['lw', 'uw']);
  t.deepEqual(await names(e.m('d')), ['t', 'x', 'y', 'z']);
  for (const dir of ['b', 'c', 'e/sub', 'r', 'w']) {
    for (const n of ['canary', 'secret', 'sub', 'sub/deep']) {
      await t.throwsAsync(fsp.lstat(e.m(`${dir}/${n}`)), { code: 'ENOENT' }, `${dir}/${n}`);
      await t.throwsAsync(fsp.readFile(e.m(`${dir}/${n}`)), { code: 'ENOENT' }, `${dir}/${n}`);
    }
  }
  await t.throwsAsync(fsp.lstat(e.m('g/f')), { code: 'ENOTDIR' });
  await t.throwsAsync(fsp.readdir(e.m('g')), { code: 'ENOTDIR' });

  // The whole tree as a physical walk (nothing followed) shows exactly the union.
  const found = (await shOk('find', e.m(), '-mindepth', '1', '-printf', '%P %y\n')).trim().split('\n').sort();
  t.deepEqual(found, [
    'a l', 'b d', 'b/ub f', 'c d', 'c/lc f', 'canary l', 'cdir l', 'd d', 'd/t l', 'd/x l', 'd/y l', 'd/z l',
    'e d', 'e/other f', 'e/sub d', 'e/sub/s0 f', 'etc l', 'f l', 'g f', 'r d', 'r/ur f', 'rel l',
    'ucanary l', 'ucdir l', 'ud d', 'ud/t l', 'ud/x l', 'ud/y l', 'ud/z l', 'uetc l', 'up l', 'urel l', 'uup l',
    'w d', 'w/lw f', 'w/uw f',
  ].sort());
  // Nothing of that copied anything up.
  t.false(fs.existsSync(e.u('c')));
  t.false(fs.existsSync(e.u('e')));
});

// Meaningful because every one of these creates, changes or removes something at a path
// whose directory, in some lower, is a link to the canary: a daemon that resolved the lower
// path would create files in the canary, modify or delete its entries, or copy them up.
secureTest('writes below directories that shadow lower links land in the upper, never behind the links', async (t, e) => {
  await fsp.writeFile(e.m('b/secret'), 'not the canary');
  await fsp.writeFile(e.m('b/canary'), 'nor this');
  await fsp.mkdir(e.m('c/sub'));
  await fsp.writeFile(e.m('c/sub/deep'), 'fresh');
  await fsp.writeFile(e.m('e/sub/canary'), 'in e/sub');
  await fsp.appendFile(e.m('w/lw'), '+');
  await fsp.rename(e.m('w/lw'), e.m('w/secret'));
  await fsp.mkdir(e.m('r/sub'));
  await fsp.unlink(e.m('r/ur'));
  await fsp.chmod(e.m('c'), 0o700);
  await shOk('setfattr', '-n', 'user.k', '-v', 'v', e.m('e/sub'));
  await shOk('touch', '-d', '@1111111111', e.m('w'));
  await shOk('chown', '-R', '4242:4343', e.m('e'));
  await shOk('truncate', '-s', '0', e.m('b/secret'));

  t.is(fs.readFileSync(e.u('b/secret'), 'utf8'), '');
  t.is(fs.readFileSync(e.u('b/canary'), 'utf8'), 'nor this');
  t.is(fs.readFileSync(e.u('c/sub/deep'), 'utf8'), 'fresh');
  t.is(fs.readFileSync(e.u('e/sub/canary'), 'utf8'), 'in e/sub');
  t.is(fs.readFileSync(e.u('w/secret'), 'utf8'), 'lower0 w/lw+');
  t.is(kindOf(e.u('w/lw')), 'whiteout');
  t.is(kindOf(e.u('r/sub')), 'dir');
  t.is(kindOf(e.u('r/ur')), 'missing');
  t.is(fs.lstatSync(e.u('e/sub')).uid, 4242);
  t.is(fs.lstatSync(e.u('e/other')).uid, 4242);
  t.is(fs.lstatSync(e.u('w'), { bigint: true }).mtimeNs, 1_111_111_111n * S);
  t.deepEqual(await names(e.m('e/sub')), ['canary', 's0']);
  t.deepEqual(await names(e.m('w')), ['secret', 'uw']);

  // Removing and re-creating the shadowing directories: the lower links stay hidden.
  await shOk('rm', '-rf', e.m('c'), e.m('e/sub'), e.m('b'));
  t.is(kindOf(e.u('c')), 'whiteout');
  t.is(kindOf(e.u('e/sub')), 'whiteout');
  t.is(kindOf(e.u('b')), 'whiteout'); // lower0 has a `b` (the link)
  await t.throwsAsync(fsp.lstat(e.m('b')), { code: 'ENOENT' });
  await fsp.mkdir(e.m('c'));
  await fsp.mkdir(e.m('e/sub'));
  t.deepEqual(await names(e.m('c')), []);
  t.deepEqual(await names(e.m('e/sub')), []);
  await fsp.writeFile(e.m('c/secret'), 'upper only');
  t.is(fs.readFileSync(e.u('c/secret'), 'utf8'), 'upper only');
});

/** Links whose target is the canary (any mistaken follow by the daemon would change it). */
function canaryLinks(p: Planted): string[] {
  const host = ['/', '/tmp'];
  return [...p.links.entries()].filter(([r, target]) => !host.includes(target) && !/(^|\/)u?up$/.test(r)).map(([r]) => r);
}

// Meaningful because each of these operations names the symlink itself; the daemon must copy
// the LINK up and act on it (lchown, utimensat NOFOLLOW, lsetxattr, link, rename, unlink).
// Following it would chown/touch/xattr the canary. On the links to the host (`etc -> /`,
// `up -> ../../..`, `d/t -> /tmp`) only the operations that cannot damage the host if the
// daemon were wrong are run (lstat, readlink, link, rename, copy, unlink, and tree walks that
// never follow); the mutating ones use the links to the canary.
secureTest('operations on the planted links act on the links (copied up), never on their targets', async (t, e, p) => {
  for (const rel of canaryLinks(p)) {
    await shOk('chown', '-h', '4242:4343', e.m(rel));
    await shOk('touch', '-h', '-d', '@1111111111', e.m(rel));
    await shOk('setfattr', '-h', '-n', 'trusted.sec', '-v', '1', e.m(rel));
    const st = await fsp.lstat(e.m(rel), { bigint: true });
    t.true(st.isSymbolicLink(), rel);
    t.is(Number(st.uid), 4242, `${rel} uid`);
    t.is(Number(st.gid), 4343, `${rel} gid`);
    t.is(st.mtimeNs, 1_111_111_111n * S, `${rel} mtime`);
    t.is(await shOk('getfattr', '-h', '--only-values', '-n', 'trusted.sec', e.m(rel)), '1', `${rel} xattr`);
    // and in the upper, the link itself carries the changes
    const u = fs.lstatSync(e.u(rel), { bigint: true });
    t.true(u.isSymbolicLink(), `${rel} in the upper`);
    t.is(Number(u.uid), 4242);
    t.is(u.mtimeNs, 1_111_111_111n * S);
    t.is(fs.readlinkSync(e.u(rel)), p.links.get(rel)!);
  }
  for (const [rel, target] of p.links) {
    const flat = rel.replace(/\//g, '_');
    await fsp.link(e.m(rel), e.m(`${flat}.hl`));
    t.is(await fsp.readlink(e.m(`${flat}.hl`)), target);
    await fsp.rename(e.m(`${flat}.hl`), e.m(`${flat}.mv`));
    t.is(await fsp.readlink(e.m(`${flat}.mv`)), target);
    await shOk('cp', '-P', '--preserve=all', e.m(rel), e.m(`${flat}.cp`));
    t.is(await fsp.readlink(e.m(`${flat}.cp`)), target);
    t.is(fs.readlinkSync(e.u(`${flat}.cp`)), target);
  }
  // Tree-wide tools that never follow links encountered on the way.
  await shOk('ls', '-laR', e.m());
  await shOk('du', '-a', e.m());
  await shOk('getfattr', '-R', '-P', '-h', '-d', '-m', '-', '--absolute-names', e.m());
  await shOk('tar', '-cf', '/dev/null', '-C', e.m(), '.');
  await shOk('chmod', '-R', 'go-w', e.m('d'), e.m('ud'));
  await shOk('chown', '-h', '5:5', ...['x', 'y', 'z'].flatMap((n) => [e.m(`d/${n}`), e.m(`ud/${n}`)]));
  t.is(fs.lstatSync(e.u('d/x')).uid, 5);
  // And everything goes.
  await shOk('rm', '-rf', e.m('d'), e.m('ud'));
  for (const rel of p.links.keys()) {
    if (rel.includes('/')) continue;
    await fsp.unlink(e.m(rel));
    await t.throwsAsync(fsp.lstat(e.m(rel)), { code: 'ENOENT' });
  }
  t.is(kindOf(e.u('etc')), 'whiteout');
  t.is(kindOf(e.u('d')), 'whiteout');
  t.is(kindOf(e.u('uetc')), 'missing');
  t.is(kindOf(e.u('f')), 'whiteout'); // lower0 has a directory f
});

// ---------------------------------------------------------------------------------------- strace

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

const STRACE = which('strace');

/**
 * The absolute paths the daemon passed as path ARGUMENTS, from `strace -f` output. Data that
 * is merely printed as a string is left out: a link's target (symlink's first argument,
 * readlink's buffer), xattr names and values, and anything in a "resumed" line (those carry
 * only a call's output arguments; its inputs are on the "unfinished" line).
 */
function tracedPaths(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+\s+(?:<\.\.\. \w+ resumed>|(\w+)\()/.exec(line);
    if (!m || !m[1]) continue;
    const call = m[1];
    const strs = [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]!);
    let args: string[];
    if (call === 'symlink') args = strs.slice(1, 2);
    else if (call === 'symlinkat') args = strs.slice(-1);
    else if (call.startsWith('readlink') || call.endsWith('xattr')) args = strs.slice(0, 1);
    else args = strs;
    for (const x of args) if (x.startsWith('/')) out.push(x);
  }
  return out;
}

// A complement to the canary, which cannot see an lstat through a link of a name that does
// not exist behind it: with strace on the daemon, check every path it hands the kernel. None
// may lie in the canary, and none may have a planted link as a proper prefix (which would
// mean the kernel's path walk, inside the daemon, went through that link). Skipped where
// strace is not installed; not applicable to the kernel (there is no daemon).
(STRACE && TARGET === 'layerfs' ? secureTest : (title: string) => test.skip(title, () => {}))(
  'strace: the daemon never passes a path through a planted link, nor into the canary',
  async (t, e, p) => {
    const st = readState(e.mnt);
    t.truthy(st?.pid, 'daemon pid from the state file');
    if (!st) return;
    const out = path.join(e.dir, 'strace.out');
    const tracer = spawn(STRACE!, ['-f', '-qq', '-s', '4096', '-e', 'trace=%file', '-o', out, '-p', String(st.pid)], {
      stdio: 'ignore',
    });
    const exited = new Promise<void>((r) => tracer.on('exit', () => r()));
    t.teardown(async () => {
      if (tracer.exitCode === null) tracer.kill('SIGKILL');
      await exited;
    });
    // Attached once a lookup of a fresh name (never cached by the kernel) shows up in the trace.
    const traced = () => fs.existsSync(out) && fs.readFileSync(out, 'utf8').includes('strace-attach-probe-');
    for (let i = 0; i < 100 && !traced(); i++) {
      await fsp.lstat(e.m(`strace-attach-probe-${i}`)).catch(() => undefined);
      await sleep(100);
    }
    t.true(traced(), 'strace attached to the daemon');

    for (const rel of p.links.keys()) {
      await fsp.lstat(e.m(rel));
      await fsp.readlink(e.m(rel));
    }
    for (const dir of ['a', 'b', 'c', 'e', 'e/sub', 'r', 'w', 'f', 'g', 'd']) {
      for (const n of ['canary', 'secret', 'sub', 'nothere', 'sub/deep']) {
        await fsp.lstat(e.m(`${dir}/${n}`)).catch(() => undefined);
      }
    }
    await shOk('ls', '-laR', e.m());
    await fsp.writeFile(e.m('b/new'), 'x');
    await fsp.writeFile(e.m('e/sub/new'), 'x');
    await fsp.mkdir(e.m('w/newdir'));
    await fsp.writeFile(e.m('c/lc'), 'rewritten');
    await shOk('chown', '-h', '4242:4343', e.m('canary'), e.m('d/x'), e.m('ucdir'));
    await shOk('touch', '-h', '-d', '@1111111111', e.m('rel'), e.m('d/y'));
    await shOk('rm', '-rf', e.m('r'), e.m('d'), e.m('a'), e.m('f'));

    tracer.kill('SIGINT');
    await exited;
    const text = fs.readFileSync(out, 'utf8');
    const paths = tracedPaths(text);
    // The trace is complete enough to mean something: it shows the lookups below the shadowing
    // directories and the writes there.
    t.true(paths.includes(e.l(0, 'c/lc')), 'lookups in lower0 traced');
    t.true(paths.some((x) => x.startsWith(e.u('b') + '/')), 'work below upper/b traced');
    t.true(paths.some((x) => x.startsWith(e.l(0, 'e/sub') + '/')), 'lookups below lower0/e/sub traced');
    const bad: string[] = [];
    for (const x of paths) {
      if (x === p.can || x.startsWith(p.can + '/')) bad.push(`into the canary: ${x}`);
      for (const link of p.linkPaths) if (x.startsWith(link + '/')) bad.push(`through ${link}: ${x}`);
    }
    t.deepEqual([...new Set(bad)], []);
  },
);
