// Malformed option strings and weird layer paths, through the real command line (the parsing
// itself is unit-tested in test/config.test.ts; escaped `\:` `\,` lowers are mounted in
// test/fuse/cli.test.ts). Each malformed string gets one line on stderr, exit status 2, and
// nothing is mounted or changed; layer paths and a mount point with colons, commas, spaces,
// backslashes, tabs, newlines, '=', a leading dash and non-ASCII mount right, fuse-overlayfs
// escaped, and the daemon keeps serving them (it watches the mount table for its mount point,
// where the kernel escapes some of these characters).
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readState, stateFile } from '../../src/engine/state.ts';
import { run } from '../helpers/exec.ts';
import { isMounted, layerfsBin, makeTmp, mountsUnder, readMountinfo, unmount } from '../helpers/mounts.ts';
import { processAlive, sleep } from '../crash/_lib.ts';
import { listTree } from '../helpers/snapshot.ts';

const esc = (p: string) => p.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/,/g, '\\,');

async function layerfs(args: string[]) {
  const r = await run(layerfsBin, args, { viaFiles: true, timeoutMs: 60_000 });
  return { code: r.code, stderr: r.stderr };
}

const listing = listTree;

function dirs(t: ExecutionContext) {
  const tmp = makeTmp(t, 'layerfs-test-options-');
  const [l1, l2, upper, work, mnt] = ['l1', 'l2', 'upper', 'work', 'mnt'].map((n) => path.join(tmp, n));
  for (const d of [l1, l2, upper, work, mnt]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(l1, 'one'), '1\n');
  t.teardown(() => unmount(mnt));
  return { tmp, l1: l1!, l2: l2!, upper: upper!, work: work!, mnt: mnt! };
}

test('malformed option strings: one line, exit 2, nothing mounted or changed', async (t) => {
  const d = dirs(t);
  const cases: [string, RegExp][] = [
    ['', /missing lowerdir/],
    [',,,', /missing lowerdir/],
    ['lowerdir', /'lowerdir' requires a value/],
    ['lowerdir=', /lowerdir= is empty/],
    [`lowerdir=${d.l1}:`, /empty layer path/],
    [`lowerdir=:${d.l1}`, /empty layer path/],
    [`lowerdir=${d.l1}::${d.l2}`, /data-only lower layers/],
    [`lowerdir=${d.l1}\\`, /does not exist/],
    [`lowerdir=${d.l1}\\:${d.l2}`, /does not exist/],
    [`=${d.l1}`, /unknown mount option/],
    [`lowerdir=${d.l1},lowerdir=${d.l2}`, /given more than once/],
    [`lowerdir=${d.l1},upperdir=${d.upper}`, /requires workdir/],
    [`lowerdir=${d.l1},upperdir=,workdir=${d.work}`, /upperdir= is empty/],
    [`lowerdir=${d.l1},upperdir=${d.upper},workdir=${d.work},timeout=-1`, /invalid value for timeout/],
    [`lowerdir=${d.l1},upperdir=${d.upper},workdir=${d.work},backend=fuse2`, /invalid value for backend: 'fuse2' \(expected lowlevel or fuse-native\)/],
    [`lowerdir=${d.l1},ro=1`, /does not take a value/],
    [`lowerdir=${d.l1},metacopy=on`, /metacopy=on is not supported/],
    [`lowerdir=${d.l1},upperdir=${d.upper}\nx,workdir=${d.work}`, /upperdir .* does not exist/],
    [`lowerdir=${d.l1}:${d.l1}`, /listed more than once/],
    [`lowerdir=${d.l1},upperdir=${d.l1},workdir=${d.work}`, /same directory/],
    [`lowerdir=${d.mnt}`, /same directory|inside/],
  ];
  const before = listing(d.tmp);
  for (const [opts, want] of cases) {
    const r = await layerfs(['mount', '-o', opts, d.mnt]);
    const lines = r.stderr.trimEnd().split('\n');
    t.is(r.code, 2, `exit status for -o ${JSON.stringify(opts)}: ${r.stderr}`);
    t.is(lines.length, 1, `one line for -o ${JSON.stringify(opts)}: ${JSON.stringify(r.stderr)}`);
    t.regex(lines[0]!, /^layerfs: /);
    t.regex(lines[0]!, want, `-o ${JSON.stringify(opts)}`);
    t.deepEqual(mountsUnder(d.tmp), [], 'nothing mounted');
  }
  // Argument-level malformations.
  for (const [args, want] of [
    [['mount', '-o'], /'-o' requires an argument/],
    [['mount', '-o', `lowerdir=${d.l1}`], /expected a mountpoint/],
    [['mount', '-o', `lowerdir=${d.l1}`, 'a', 'b', d.mnt], /too many arguments/],
    [['mount', '-x', '-o', `lowerdir=${d.l1}`, d.mnt], /unknown flag/],
    [['mount', '-o', `lowerdir=${d.l1}`, ''], /mountpoint is empty/],
  ] as [string[], RegExp][]) {
    const r = await layerfs(args);
    t.is(r.code, 2, `${JSON.stringify(args)}: ${r.stderr}`);
    t.is(r.stderr.trimEnd().split('\n').length, 1, `one line for ${JSON.stringify(args)}`);
    t.regex(r.stderr, want);
  }
  t.is(listing(d.tmp), before, 'nothing changed on disk');
});

test('weird layer paths and mount point (colons, commas, spaces, backslashes, tabs, newlines, =, -, UTF-8) mount right', async (t) => {
  const base = makeTmp(t, 'layerfs-test-options-');
  const names = ['a:b', 'c,d', 'e f', 'g\\h', 'tab\there', 'new\nline', 'eq=x,ro', '-o', 'ünï ★'];
  const lowers = names.map((n) => path.join(base, `lower ${n}`));
  lowers.forEach((l, i) => {
    fs.mkdirSync(l);
    fs.writeFileSync(path.join(l, `from${i}`), `${names[i]}\n`);
    fs.writeFileSync(path.join(l, 'shared'), `${names[i]}\n`);
  });
  const upper = path.join(base, 'up,per:x y\\');
  const work = path.join(base, 'wo\\rk:,\t');
  const mnt = path.join(base, 'm n,o:p\\q\t\nr');
  for (const d of [upper, work, mnt]) fs.mkdirSync(d);
  t.teardown(() => unmount(mnt));
  const opts = `lowerdir=${lowers.map(esc).join(':')},upperdir=${esc(upper)},workdir=${esc(work)}`;
  const r = await layerfs(['mount', '-o', opts, mnt]);
  t.is(r.code, 0, r.stderr);
  t.true(isMounted(mnt), 'mounted (and found in mountinfo, where the kernel escapes space, tab, newline, backslash)');
  const st = readState(mnt);
  t.deepEqual(st?.lowerdirs, lowers, 'the layers were unescaped right');
  t.is(st?.upperdir, upper);
  t.is(st?.workdir, work);
  t.deepEqual(fs.readdirSync(mnt).sort(), [...names.map((_n, i) => `from${i}`), 'shared'].sort());
  t.is(fs.readFileSync(path.join(mnt, 'shared'), 'utf8'), `${names[0]}\n`, 'the first lower is the top-most');
  fs.appendFileSync(path.join(mnt, 'from3'), 'more\n');
  t.is(fs.readFileSync(path.join(upper, 'from3'), 'utf8'), 'g\\h\nmore\n');
  // The daemon watches the mount table every 500 ms: it must recognise its escaped mount point.
  await sleep(1500);
  t.true(processAlive(st!.pid), 'the daemon is still serving after its mount-table checks');
  t.is(fs.readFileSync(path.join(mnt, 'from8'), 'utf8'), 'ünï ★\n');
  t.true(readMountinfo().some((m) => m.mountPoint === mnt && m.fstype === 'fuse.layerfs'));
  const u = await layerfs(['umount', mnt]);
  t.is(u.code, 0, u.stderr);
  t.false(isMounted(mnt));
  // The engine lets the mount go (its state file goes with it) and serves on.
  const file = stateFile(mnt).file;
  for (let i = 0; i < 500 && fs.existsSync(file); i++) await sleep(20);
  t.false(fs.existsSync(file), 'the engine let the mount go');
});
