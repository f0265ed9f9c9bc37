// The command line and the mount lifecycle, through real mounts: the argument forms podman,
// mount(8) and users use, every bad input (one line, non-zero exit, nothing mounted or
// changed), unmounting a mount whose daemon died, read-only mounts and allow_other.
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../helpers/exec.ts';
import { enginePid, isMounted, layerfsBin, makeTmp, mountFor, mountsAt, mountsUnder, privateEngine, unmount } from '../helpers/mounts.ts';
import { readState, stateFile } from '../../src/engine/state.ts';
import { processAlive } from '../../src/engine/mount.ts';
import { listTree } from '../helpers/snapshot.ts';

interface Dirs {
  tmp: string;
  l1: string;
  l2: string;
  upper: string;
  work: string;
  mnt: string;
}

function layers(t: ExecutionContext): Dirs {
  const tmp = makeTmp(t);
  const d = {
    tmp,
    l1: path.join(tmp, 'l1'),
    l2: path.join(tmp, 'l2'),
    upper: path.join(tmp, 'upper'),
    work: path.join(tmp, 'work'),
    mnt: path.join(tmp, 'mnt'),
  };
  for (const p of [d.l1, d.l2, d.upper, d.work, d.mnt]) fs.mkdirSync(p);
  fs.writeFileSync(path.join(d.l1, 'top'), 'top\n');
  fs.writeFileSync(path.join(d.l2, 'bottom'), 'bottom\n');
  return d;
}

const snapshot = listTree;

async function layerfs(args: string[], env?: NodeJS.ProcessEnv) {
  const r = await run(layerfsBin, args, { viaFiles: true, env, timeoutMs: 60_000 });
  return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
}

/** Register cleanup for a mount a test makes by other means than mountFor. */
function willUnmount(t: ExecutionContext, mnt: string) {
  t.teardown(() => unmount(mnt));
}

async function expectRefused(t: ExecutionContext, d: Dirs, args: string[], message: string | RegExp) {
  const before = snapshot(d.tmp);
  const mountsBefore = mountsUnder(d.tmp);
  willUnmount(t, d.mnt);
  const r = await layerfs(args);
  t.not(r.code, 0, 'exit status');
  const lines = r.stderr.trimEnd().split('\n');
  t.is(lines.length, 1, `one line of error, got: ${r.stderr}`);
  if (typeof message === 'string') t.is(lines[0], message);
  else t.regex(lines[0], message);
  t.deepEqual(mountsUnder(d.tmp), mountsBefore, 'nothing mounted');
  t.is(snapshot(d.tmp), before, 'nothing changed on disk');
}

test('--version prints the version', async (t) => {
  const r = await layerfs(['--version']);
  t.is(r.code, 0);
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  t.is(r.stdout.trim(), `layerfs ${pkg.version}`);
});

test('refused: missing lowerdir', async (t) => {
  const d = layers(t);
  await expectRefused(t, d, ['mount', '-o', `upperdir=${d.upper},workdir=${d.work}`, d.mnt], 'layerfs: missing lowerdir= option');
});

test('refused: a layer that does not exist', async (t) => {
  const d = layers(t);
  const gone = path.join(d.tmp, 'nope');
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${d.l1}:${gone}`, d.mnt], `layerfs: lowerdir '${gone}' does not exist`);
});

test('refused: a layer that is not a directory', async (t) => {
  const d = layers(t);
  const file = path.join(d.l1, 'top');
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${file}`, d.mnt], `layerfs: lowerdir '${file}' is not a directory`);
});

test('refused: upperdir without workdir, and the reverse', async (t) => {
  const d = layers(t);
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${d.l1},upperdir=${d.upper}`, d.mnt], /upperdir.*workdir|workdir.*upperdir/);
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${d.l1},workdir=${d.work}`, d.mnt], /upperdir.*workdir|workdir.*upperdir/);
});

test('refused: workdir on another filesystem than upperdir', async (t) => {
  const d = layers(t);
  const other = path.join(d.tmp, 'tmpfs');
  fs.mkdirSync(other);
  willUnmount(t, other);
  const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', other]);
  t.is(m.code, 0, m.stderr);
  await expectRefused(
    t, d, ['mount', '-o', `lowerdir=${d.l1},upperdir=${d.upper},workdir=${other}`, d.mnt],
    `layerfs: workdir '${other}' is not on the same filesystem as upperdir '${d.upper}'`,
  );
});

test('refused: upper inside a lower, and a lower inside the upper', async (t) => {
  const d = layers(t);
  const inner = path.join(d.l1, 'up');
  fs.mkdirSync(inner);
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${d.l1},upperdir=${inner},workdir=${d.work}`, d.mnt], /inside|overlap/);
  const lowerInUpper = path.join(d.upper, 'low');
  fs.mkdirSync(lowerInUpper);
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${lowerInUpper},upperdir=${d.upper},workdir=${d.work}`, d.mnt], /inside|overlap/);
});

test('refused: mountpoint missing, not a directory, already a mount', async (t) => {
  const d = layers(t);
  const missing = path.join(d.tmp, 'nomnt');
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${d.l1}`, missing], `layerfs: mountpoint '${missing}' does not exist`);
  const file = path.join(d.tmp, 'file');
  fs.writeFileSync(file, '');
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${d.l1}`, file], `layerfs: mountpoint '${file}' is not a directory`);
  willUnmount(t, d.mnt);
  const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', d.mnt]);
  t.is(m.code, 0, m.stderr);
  const r = await layerfs(['mount', '-o', `lowerdir=${d.l1}`, d.mnt]);
  t.not(r.code, 0);
  t.is(r.stderr.trim(), `layerfs: '${d.mnt}' is already a mount point (unmount it first)`);
  t.is(mountsAt(d.mnt).length, 1, 'only the tmpfs is there');
});

test('refused: unknown option and a bad -o string', async (t) => {
  const d = layers(t);
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${d.l1},frobnicate`, d.mnt], "layerfs: unknown mount option 'frobnicate'");
  await expectRefused(t, d, ['mount', '-o', `lowerdir=${d.l1},redirect_dir=on`, d.mnt], /redirect_dir=on is not supported/);
});

test('mounts through a private engine, serves, and unmounts; the engine lets the mount go', async (t) => {
  const d = layers(t);
  const eng = privateEngine(t);
  willUnmount(t, d.mnt);
  const env = { LAYERFS_ENGINE_DIR: eng };
  const r = await layerfs(['mount', '-o', `lowerdir=${d.l1}:${d.l2},upperdir=${d.upper},workdir=${d.work}`, d.mnt], env);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
  t.true(isMounted(d.mnt));
  t.deepEqual(fs.readdirSync(d.mnt).sort(), ['bottom', 'top']);
  const st = readState(d.mnt, eng);
  t.truthy(st, 'state file written');
  const pid = st!.pid;
  t.true(pid === enginePid(eng), 'the engine started on demand serves it');
  const status = JSON.parse((await layerfs(['engine', 'status', '--json'], env)).stdout) as { mounts: { mountpoint: string }[] };
  t.deepEqual(status.mounts.map((m) => m.mountpoint), [d.mnt]);
  const u = await layerfs(['umount', d.mnt], env);
  t.is(u.code, 0, u.stderr);
  t.false(isMounted(d.mnt));
  t.false(fs.existsSync(stateFile(d.mnt, eng).file), 'state file removed');
  t.true(processAlive(pid), 'the engine keeps running');
  const after = JSON.parse((await layerfs(['engine', 'status', '--json'], env)).stdout) as { mounts: unknown[] };
  t.deepEqual(after.mounts, [], 'and no longer lists the mount');
});

test('timeout=0: the kernel caches no attributes (a change in the upper shows at once)', async (t) => {
  const d = layers(t);
  fs.writeFileSync(path.join(d.upper, 'f'), 'f\n');
  fs.chmodSync(path.join(d.upper, 'f'), 0o644);
  await mountFor(t, 'layerfs', { lowers: [d.l1], upper: d.upper, work: d.work, mnt: d.mnt, options: ['timeout=0'] });
  const m = path.join(d.mnt, 'f');
  t.is((await fs.promises.lstat(m)).mode & 0o777, 0o644);
  // Behind the mount's back (as a test of the cache setting only): with the default timeout the
  // kernel would answer the next stat from its cache.
  fs.chmodSync(path.join(d.upper, 'f'), 0o600);
  t.is((await fs.promises.lstat(m)).mode & 0o777, 0o600);
});

test('podman form: -o with an empty item and volatile, no subcommand', async (t) => {
  const d = layers(t);
  willUnmount(t, d.mnt);
  const r = await layerfs(['-o', `lowerdir=${d.l1}:${d.l2},upperdir=${d.upper},workdir=${d.work},,volatile`, d.mnt]);
  t.is(r.code, 0, r.stderr);
  fs.writeFileSync(path.join(d.mnt, 'new'), 'x');
  t.is(fs.readFileSync(path.join(d.upper, 'new'), 'utf8'), 'x');
});

test('mount(8) form: mount -t fuse.layerfs SOURCE MNT -o rw,lowerdir=...,dev,suid', async (t) => {
  const d = layers(t);
  willUnmount(t, d.mnt);
  // scripts/install-system.sh links /usr/local/bin/layerfs; mount.fuse3 runs it with PATH cleared.
  t.true(fs.existsSync('/usr/local/bin/layerfs'), 'run scripts/install-system.sh first');
  const r = await run('mount', ['-t', 'fuse.layerfs', 'demo-src', d.mnt, '-o', `rw,lowerdir=${d.l1}:${d.l2},upperdir=${d.upper},workdir=${d.work},dev,suid`], { viaFiles: true });
  t.is(r.code, 0, r.stderr);
  const m = mountsAt(d.mnt).at(-1)!;
  t.is(m.fstype, 'fuse.layerfs');
  t.is(m.source, 'demo-src');
  t.deepEqual(fs.readdirSync(d.mnt).sort(), ['bottom', 'top']);
  const u = await run('umount', [d.mnt]);
  t.is(u.code, 0, u.stderr);
  t.false(isMounted(d.mnt));
});

test('the installed command works with an empty environment (as mount.fuse3 runs it)', async (t) => {
  const d = layers(t);
  // Nothing but the engine's directory: otherwise it would start root's default engine, which
  // would outlive the test.
  const eng = privateEngine(t);
  willUnmount(t, d.mnt);
  const r = await run('env', ['-i', `LAYERFS_ENGINE_DIR=${eng}`, '/usr/local/bin/layerfs', 'src', d.mnt, '-o', `rw,lowerdir=${d.l1},dev,suid,lazytime`], { viaFiles: true });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(fs.readdirSync(d.mnt), ['top']);
});

test('escaped layer paths: \\: and \\, in lowerdir', async (t) => {
  const d = layers(t);
  const odd = path.join(d.tmp, 'a:b,c d');
  fs.mkdirSync(odd);
  fs.writeFileSync(path.join(odd, 'odd'), 'odd');
  willUnmount(t, d.mnt);
  const esc = odd.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/,/g, '\\,');
  const r = await layerfs(['mount', '-o', `lowerdir=${esc}:${d.l2}`, d.mnt]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(fs.readdirSync(d.mnt).sort(), ['bottom', 'odd']);
});

test('a workdir left non-empty by a crash is cleaned and reused', async (t) => {
  const d = layers(t);
  fs.mkdirSync(path.join(d.work, 'work', '#half-copied'), { recursive: true });
  fs.writeFileSync(path.join(d.work, 'work', '#half-copied', 'junk'), 'partial');
  await mountFor(t, 'layerfs', { lowers: [d.l1, d.l2], upper: d.upper, work: d.work, mnt: d.mnt });
  t.deepEqual(fs.readdirSync(path.join(d.work, 'work')), [], 'leftovers removed');
  fs.appendFileSync(path.join(d.mnt, 'bottom'), 'more\n');
  t.is(fs.readFileSync(path.join(d.upper, 'bottom'), 'utf8'), 'bottom\nmore\n');
});

test('umount cleans up a mount whose engine was killed (ENOTCONN)', async (t) => {
  const d = layers(t);
  const eng = privateEngine(t);
  await mountFor(t, 'layerfs', { lowers: [d.l1], upper: d.upper, work: d.work, mnt: d.mnt, engineDir: eng });
  const pid = readState(d.mnt, eng)!.pid;
  t.true(pid === enginePid(eng), 'its engine serves it');
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  const err = t.throws(() => fs.readdirSync(d.mnt)) as NodeJS.ErrnoException;
  t.is(err.code, 'ENOTCONN');
  const u = await layerfs(['umount', d.mnt], { LAYERFS_ENGINE_DIR: eng });
  t.is(u.code, 0, u.stderr);
  t.false(isMounted(d.mnt));
  // And the same place mounts again (a fresh engine starts).
  await mountFor(t, 'layerfs', { lowers: [d.l1], upper: d.upper, work: d.work, mnt: d.mnt, engineDir: eng });
  t.deepEqual(fs.readdirSync(d.mnt), ['top']);
  t.not(enginePid(eng), pid);
});

test('umount of something that is not mounted: one line, non-zero', async (t) => {
  const d = layers(t);
  const r = await layerfs(['umount', d.mnt]);
  t.is(r.code, 1);
  t.is(r.stderr.trim(), `layerfs: '${d.mnt}' is not mounted`);
});

for (const cmd of [['fusermount3', '-u'], ['umount']]) {
  test(`the engine notices ${cmd.join(' ')} and lets the mount go`, async (t) => {
    const d = layers(t);
    const eng = privateEngine(t);
    await mountFor(t, 'layerfs', { lowers: [d.l1], upper: d.upper, work: d.work, mnt: d.mnt, engineDir: eng });
    const pid = readState(d.mnt, eng)!.pid;
    const r = await run(cmd[0]!, [...cmd.slice(1), d.mnt]);
    t.is(r.code, 0, r.stderr);
    t.false(isMounted(d.mnt));
    // Bounded wait (not a timing check): the engine learns of the unmount from the kernel.
    const file = stateFile(d.mnt, eng).file;
    for (let i = 0; i < 500 && fs.existsSync(file); i++) await new Promise((res) => setTimeout(res, 20));
    t.false(fs.existsSync(file), 'state file removed');
    t.true(processAlive(pid), 'the engine keeps running');
    const st = await layerfs(['engine', 'status', '--json'], { LAYERFS_ENGINE_DIR: eng });
    t.deepEqual((JSON.parse(st.stdout) as { mounts: unknown[] }).mounts, []);
  });
}

test('without upperdir the mount is read-only: writes give EROFS', async (t) => {
  const d = layers(t);
  await mountFor(t, 'layerfs', { lowers: [d.l1, d.l2], mnt: d.mnt });
  const errOf = (f: () => void) => (t.throws(f) as NodeJS.ErrnoException).code;
  t.is(errOf(() => fs.writeFileSync(path.join(d.mnt, 'new'), 'x')), 'EROFS');
  t.is(errOf(() => fs.appendFileSync(path.join(d.mnt, 'top'), 'x')), 'EROFS');
  t.is(errOf(() => fs.unlinkSync(path.join(d.mnt, 'top'))), 'EROFS');
  t.is(errOf(() => fs.mkdirSync(path.join(d.mnt, 'dir'))), 'EROFS');
  t.is(fs.readFileSync(path.join(d.mnt, 'bottom'), 'utf8'), 'bottom\n');
});

test('-o ro with an upper is read-only too', async (t) => {
  const d = layers(t);
  await mountFor(t, 'layerfs', { lowers: [d.l1], upper: d.upper, work: d.work, mnt: d.mnt, options: ['ro'] });
  t.is((t.throws(() => fs.writeFileSync(path.join(d.mnt, 'new'), 'x')) as NodeJS.ErrnoException).code, 'EROFS');
  t.deepEqual(fs.readdirSync(d.upper), []);
});

test('as root: allow_other lets other users in, default_permissions checks their rights', async (t) => {
  const d = layers(t);
  fs.chmodSync(d.tmp, 0o755);
  fs.writeFileSync(path.join(d.l1, 'secret'), 'root only');
  fs.chmodSync(path.join(d.l1, 'secret'), 0o600);
  await mountFor(t, 'layerfs', { lowers: [d.l1, d.l2], upper: d.upper, work: d.work, mnt: d.mnt });
  const asNobody = (args: string[]) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...args]);
  const ls = await asNobody(['ls', d.mnt]);
  t.is(ls.code, 0, ls.stderr);
  t.deepEqual(ls.stdout.toString().trim().split('\n').sort(), ['bottom', 'secret', 'top']);
  const cat = await asNobody(['cat', path.join(d.mnt, 'secret')]);
  t.not(cat.code, 0);
  t.regex(cat.stderr, /Permission denied/);
  const w = await asNobody(['sh', '-c', `echo x > ${path.join(d.mnt, 'top')}`]);
  t.not(w.code, 0, 'no write to a root-owned 0644 file');
  t.is(fs.readFileSync(path.join(d.mnt, 'top'), 'utf8'), 'top\n');
});
