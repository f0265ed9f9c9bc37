// PROOF that the daemon never reads, writes or stats anything outside its layers while it
// serves the hostile layers of _plant.ts: the daemon runs in the foreground (`layerfs mount
// -f`) under `strace -f -y -e trace=%file,%desc`; once the mount is ready a marker lookup
// notes the trace's offset, the battery of _plant.ts runs (every planted entry, and paths
// beneath them), an end marker closes the window, and every path the daemon handed the
// kernel in between is checked:
//   - path arguments of every traced call (a dirfd-relative name is joined to its dirfd), and
//     the path strace shows for every file descriptor argument or result (-y);
//   - each must lie in a layer root, the upper or the workdir, or be one of the explicit
//     exceptions below; none may go through a planted link or into the canary;
//   - the device nodes and the fifo planted in the lowers are never opened.
// Plus the canary (a strictatime tmpfs the links point at) keeps its contents, mode, owner,
// times and xattrs.
//
// This test owns the daemon process (strace's child): it ends it by pid (SIGTERM: the daemon
// unmounts and exits), and the unmount registered in teardown catches anything left.
import test from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readState } from '../../src/engine/state.ts';
import { run } from '../helpers/exec.ts';
import { isMounted, layerfsBin, unmount } from '../helpers/mounts.ts';
import { processAlive, sleep, waitDead, which } from '../crash/_lib.ts';
import { battery, canaryContents, canarySeesReads, canaryTimes, plantHostile, runBattery } from './_plant.ts';
import { tracedPaths } from './_trace.ts';

/** Paths outside the layers the daemon (pid) may legitimately use while serving, and why. */
const exceptions = (pid: number): [RegExp, string][] => [
  [new RegExp(`^/proc/(self|${pid})/mountinfo$`), 'the daemon watches its own mount table, to exit once unmounted'],
  [/^\/dev\/fuse$/, 'the FUSE device the requests come through (a descriptor)'],
  [/^(pipe|socket|anon_inode):/, 'pipes, sockets, eventfds and epoll of the runtime (descriptors, not paths)'],
  [/^\/run\/layerfs\/[0-9a-f]+\.json$/, 'the mount state file (written at mount, removed at exit)'],
  [/^\/proc\/sys\/vm\/overcommit_memory$/, "the runtime reading the kernel's overcommit policy when it reserves memory"],
  [/^\/sys\/devices\/system\/cpu\/online$/, 'the runtime counting online CPUs (V8 sizes its worker threads by it)'],
];

test.before('strace is installed (apt-get install strace when missing)', async (t) => {
  if (which('strace')) return;
  t.log('strace is missing: apt-get install -y strace');
  const r = await run('apt-get', ['install', '-y', 'strace'], { timeoutMs: 600_000, env: { DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.code !== 0) t.log(`apt-get install strace failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
});

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) return false;
    await sleep(50);
  }
  return true;
}

test('strace proof: serving hostile layers, the daemon touches nothing outside its layers (and the canary stays untouched)', async (t) => {
  t.timeout(600_000);
  const strace = which('strace');
  if (!strace) {
    t.log('!!! strace is not installed and could not be installed: THE PROOF DID NOT RUN !!!');
    t.fail('strace missing: the strace proof cannot run');
    return;
  }
  const h = await plantHostile(t);
  t.true(canarySeesReads(h.can), 'the canary moves atimes on reads (strictatime)');
  const contentsBefore = canaryContents(h.can);
  const canBefore = canaryTimes(h.can);
  // Every planted link, in every layer (visible through the union or not).
  const planted = h.links;

  const trace = path.join(h.dir, 'strace.log');
  const errFile = path.join(h.dir, 'daemon.stderr');
  const errFd = fs.openSync(errFile, 'w');
  t.teardown(() => unmount(h.mnt));
  const opts = `lowerdir=${h.lowers.join(':')},upperdir=${h.upper},workdir=${h.work}`;
  const tracer = spawn(strace, ['-f', '-qq', '-y', '-s', '4096', '-e', 'trace=%file,%desc', '-o', trace, layerfsBin, 'mount', '-f', '-o', opts, h.mnt], {
    stdio: ['ignore', 'ignore', errFd],
  });
  fs.closeSync(errFd);
  const tracerDone = new Promise<void>((r) => tracer.on('close', () => r()));
  let daemonPid = 0;
  t.teardown(async () => {
    // After the unmount above (teardowns run last-first): nothing of ours may stay behind.
    if (daemonPid && processAlive(daemonPid)) process.kill(daemonPid, 'SIGKILL');
    if (tracer.exitCode === null) tracer.kill('SIGKILL');
    await Promise.race([tracerDone, sleep(10_000)]);
  });

  const ready = await waitFor(() => isMounted(h.mnt) && !!readState(h.mnt)?.pid, 120_000);
  t.true(ready, `mounted under strace; daemon stderr: ${fs.readFileSync(errFile, 'utf8')}`);
  if (!ready) return;
  daemonPid = readState(h.mnt)!.pid;
  fs.statSync(h.mnt);

  // The window: from a marker lookup once the mount is ready to another after the battery.
  const marker = async (name: string): Promise<number> => {
    await fs.promises.lstat(h.m(name)).catch(() => undefined);
    let at = -1;
    await waitFor(() => (at = fs.readFileSync(trace, 'utf8').indexOf(name)) >= 0, 30_000);
    return at;
  };
  const tag = `strace-marker-${process.pid}-${Date.now()}`;
  const begin = await marker(`${tag}-begin`);
  t.true(begin >= 0, 'the begin marker shows in the trace');
  const steps = battery(h);
  const wrong = await runBattery(steps);
  t.deepEqual(wrong, [], 'every operation of the battery behaved');
  const end = await marker(`${tag}-end`);
  t.true(end > begin, 'the end marker shows in the trace');

  // End the daemon by pid; it unmounts and exits, and strace with it.
  process.kill(daemonPid, 'SIGTERM');
  t.true(await waitDead(daemonPid, 30_000), 'the daemon exited on SIGTERM');
  await Promise.race([tracerDone, sleep(30_000)]);
  t.false(isMounted(h.mnt), 'unmounted');

  const full = fs.readFileSync(trace, 'utf8');
  const window = full.slice(full.lastIndexOf('\n', begin) + 1, full.indexOf('\n', end));
  const { paths, relative } = tracedPaths(window);
  const roots = [...h.lowers, h.upper, h.work];
  const inLayer = (p: string) => roots.some((r) => p === r || p.startsWith(r + '/'));
  const outside = new Map<string, string>();
  const through: string[] = [];
  const exceptionsUsed = new Map<string, number>();
  const EXCEPTIONS = exceptions(daemonPid);
  for (const x of paths) {
    for (const l of planted) if (x.path.startsWith(l + '/')) through.push(`${x.call} ${x.path} (through the planted link ${l})`);
    if (inLayer(x.path)) continue;
    const ex = EXCEPTIONS.find(([re]) => re.test(x.path));
    if (ex) {
      exceptionsUsed.set(ex[1], (exceptionsUsed.get(ex[1]) ?? 0) + 1);
      continue;
    }
    if (!outside.has(x.path)) outside.set(x.path, x.line.slice(0, 300));
  }
  const lines = window.split('\n').length;
  t.log(`${steps.length} battery steps; ${lines} traced calls in the window, ${paths.length} paths checked`);
  t.log(`exceptions used: ${[...exceptionsUsed].map(([why, n]) => `${n}× ${why}`).join('; ') || 'none'}`);
  t.deepEqual([...outside.entries()].map(([p, l]) => `${p}    <- ${l}`), [], 'paths outside the layers');
  t.deepEqual(through, [], 'paths through planted links');
  t.deepEqual(relative.map((x) => `${x.call} ${x.path}`), [], 'relative paths (resolved against the daemon cwd)');
  t.false(paths.some((x) => x.path === h.can || x.path.startsWith(h.can + '/')), 'nothing in the canary');

  // The planted device nodes and the fifo are never opened by the daemon (copy-up uses mknod).
  const specials = [path.join(h.lowers[0], 'null'), path.join(h.lowers[2], 'devdir/null2'), path.join(h.lowers[1], 'fifo'), h.u('null'), h.u('devdir/null2'), h.u('fifo')];
  const opened = paths.filter((x) => /^open/.test(x.call) && specials.includes(x.path));
  t.deepEqual(opened.map((x) => x.line), [], 'device nodes and fifos opened by the daemon');
  t.true(paths.some((x) => x.call === 'mknodat' || x.call === 'mknod'), 'the devices were copied up with mknod (traced)');

  // The trace really covers the battery: lookups in every lower, writes in the upper, work dir use.
  for (const r of roots) t.true(paths.some((x) => x.path.startsWith(r + '/')), `traced paths below ${r}`);
  t.true(paths.some((x) => /xattr$/.test(x.call) && x.path === h.u('mid')), 'lsetxattr on the copied-up link traced');

  // The canary: not read, listed, written, or changed in any way.
  const after = canaryTimes(h.can);
  t.deepEqual([...canBefore.keys()].filter((k) => canBefore.get(k) !== after.get(k)).map((k) => `${k}: ${canBefore.get(k)} -> ${after.get(k)}`), [], 'canary times, owner, mode, xattrs');
  t.is(canaryContents(h.can), contentsBefore, 'canary contents and listings');
});

// The parser the proof rests on: it must see every kind of path the daemon can hand the
// kernel, and nothing that is merely data.
test('the strace parser finds path arguments, dirfd-relative names and descriptor paths, not data', (t) => {
  const text = [
    '101 openat(AT_FDCWD</work/main>, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 23</etc/passwd>',
    '101 newfstatat(7</l0/dir>, "name", {st_mode=S_IFREG|0644, st_size=1, ...}, AT_SYMLINK_NOFOLLOW) = 0',
    '101 lstat("/tmp/x/l0/etc/passwd", 0x7ffd) = -1 ENOENT (No such file or directory)',
    '102 readlink("/tmp/x/l0/cl", "/outside/secret", 4096) = 15',
    '102 symlink("/outside/target", "/tmp/x/upper/ln") = 0',
    '102 lsetxattr("/tmp/x/upper/f", "user.x", "/not/a/path", 11, 0) = 0',
    '103 write(5</dev/fuse>, "12</fake/decoration> \"/data/not/a/path\"", 40) = 40',
    '103 pread64(24</tmp/x/l0/f>, "content", 65536, 0) = 7',
    '104 renameat2(AT_FDCWD</work/main>, "/tmp/x/work/work/#1", AT_FDCWD</work/main>, "/tmp/x/upper/f", RENAME_NOREPLACE) = 0',
    '104 statx(AT_FDCWD</work/main>, "relative/name", AT_STATX_SYNC_AS_STAT, STATX_ALL, 0x7ffd) = -1 ENOENT',
    '105 getxattr("/tmp/x/l1/d", "trusted.overlay.opaque" <unfinished ...>',
    '105 <... getxattr resumed>, "/resumed/output", 4096) = -1 ENODATA',
    '106 copy_file_range(30</tmp/x/l0/big>, NULL, 31</tmp/x/work/work/#2>, NULL, 9223372036854775807, 0) = 1048576',
  ].join('\n');
  const { paths, relative } = tracedPaths(text);
  t.deepEqual(paths.map((x) => x.path).sort(), [
    '/dev/fuse', '/etc/passwd', '/etc/passwd', '/l0/dir', '/l0/dir/name', '/tmp/x/l0/big', '/tmp/x/l0/cl', '/tmp/x/l0/etc/passwd',
    '/tmp/x/l0/f', '/tmp/x/l1/d', '/tmp/x/upper/f', '/tmp/x/upper/f', '/tmp/x/upper/ln', '/tmp/x/work/work/#1', '/tmp/x/work/work/#2',
  ].sort());
  t.deepEqual(relative.map((x) => x.path), ['relative/name']);
});
