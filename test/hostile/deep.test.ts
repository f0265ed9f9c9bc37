// Layers built to strain path handling and listing:
//  - a path of PATH_MAX (4095 bytes) through the mount, where the layer roots are longer
//    than the mount point (so the same path below a layer root is longer than PATH_MAX):
//    create, stat, read, append, rename, list, chmod, remove; and a lower tree that deep,
//    copied up and whited out;
//  - a directory of 100,000 entries spread over two lowers (with OCI whiteouts): listing it
//    works, the count is right, in reasonable time (printed).
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../helpers/exec.ts';
import { makeTmp, mountFor, unmount } from '../helpers/mounts.ts';

const fsp = fs.promises;
const PATH_MAX = 4096;

/** Directories of 200-byte names under `base` until a file name completes a path of `total` bytes. */
function deepChain(base: string, total: number, letter: string): { dirs: string[]; file: string } {
  const dirs: string[] = [];
  let p = base;
  const comp = letter.repeat(200);
  while (p.length + 1 + comp.length + 1 + 20 < total) {
    p = `${p}/${comp}`;
    dirs.push(p);
  }
  const file = `${p}/${'f'.repeat(total - p.length - 1)}`;
  return { dirs, file };
}

test('a path of PATH_MAX bytes through the mount, with layer roots longer than the mount point', async (t) => {
  const dir = makeTmp(t, 'layerfs-test-deep-');
  // The copy-up below leaves a path longer than PATH_MAX in the upper, which fs.rmSync (absolute
  // paths) cannot remove: rm(1) walks with openat. Runs before the temp dir's own removal.
  t.teardown(async () => {
    await unmount(path.join(dir, 'm'));
    await run('rm', ['-rf', path.join(dir, 'layers-with-roots-longer-than-the-mount-point')]);
  });
  const mnt = path.join(dir, 'm');
  const L = path.join(dir, 'layers-with-roots-longer-than-the-mount-point');
  const lower = path.join(L, 'lower');
  const upper = path.join(L, 'upper-layer-with-an-even-longer-name');
  const work = path.join(L, 'work');
  for (const d of [mnt, lower, upper, work]) fs.mkdirSync(d, { recursive: true });
  // A lower tree as deep as the lower's root allows (its files' paths are PATH_MAX - 1 there).
  const low = deepChain(lower, PATH_MAX - 1, 'l');
  for (const d of low.dirs) fs.mkdirSync(d);
  fs.writeFileSync(low.file, 'deep in the lower\n');
  t.teardown(() => unmount(mnt));
  await mountFor(t, 'layerfs', { lowers: [lower], upper, work, mnt });
  t.true(upper.length > mnt.length + 40, 'the upper root is much longer than the mount point');

  // Through the mount, a file whose path is exactly PATH_MAX - 1 bytes.
  const up = deepChain(mnt, PATH_MAX - 1, 'u');
  t.is(up.file.length, PATH_MAX - 1);
  for (const d of up.dirs) await fsp.mkdir(d);
  await fsp.writeFile(up.file, 'deep through the mount\n');
  t.is((await fsp.stat(up.file)).size, 23);
  t.is(await fsp.readFile(up.file, 'utf8'), 'deep through the mount\n');
  await fsp.appendFile(up.file, 'more\n');
  const renamed = up.file.slice(0, -1) + 'g';
  await fsp.rename(up.file, renamed);
  const last = path.dirname(up.file);
  t.deepEqual(await fsp.readdir(last), [path.basename(renamed)]);
  await fsp.chmod(renamed, 0o600);
  t.is((await fsp.stat(renamed)).mode & 0o777, 0o600);
  t.is(await fsp.readFile(renamed, 'utf8'), 'deep through the mount\nmore\n');
  // In the upper, below a root longer than the mount point: found with a relative walk.
  const found = (await run('find', [upper, '-type', 'f', '-printf', '%d %s %m\n'])).stdout.toString().trim();
  t.is(found, `${up.dirs.length + 1} 28 600`);
  await fsp.unlink(renamed);
  t.deepEqual(await fsp.readdir(last), []);
  await fsp.rm(up.dirs[0]!, { recursive: true });
  await t.throwsAsync(fsp.stat(up.dirs[0]!), { code: 'ENOENT' });

  // The lower's deep file through the mount: read, copy-up (into the longer upper), whiteout.
  const lowInMnt = mnt + low.file.slice(lower.length);
  t.is(await fsp.readFile(lowInMnt, 'utf8'), 'deep in the lower\n');
  await fsp.appendFile(lowInMnt, 'copied up\n');
  t.is(await fsp.readFile(lowInMnt, 'utf8'), 'deep in the lower\ncopied up\n');
  t.is(fs.readFileSync(low.file, 'utf8'), 'deep in the lower\n', 'the lower is untouched');
  const upCopy = (await run('find', [upper, '-type', 'f', '-printf', '%s\n'])).stdout.toString().trim();
  t.is(upCopy, '28', 'the copy-up landed in the upper');
  // A remount (fresh caches) sees the same.
  await unmount(mnt);
  await mountFor(t, 'layerfs', { lowers: [lower], upper, work, mnt });
  t.is(await fsp.readFile(lowInMnt, 'utf8'), 'deep in the lower\ncopied up\n');
  await fsp.unlink(lowInMnt);
  await t.throwsAsync(fsp.stat(lowInMnt), { code: 'ENOENT' });
  const wh = (await run('find', [upper, '-type', 'c', '-printf', '%d\n'])).stdout.toString().trim();
  t.is(wh, String(low.dirs.length + 1), 'a whiteout at the same depth in the upper');
  t.deepEqual(await fsp.readdir(path.dirname(lowInMnt)), []);
});

test('a directory of 100,000 entries over two lowers: listed completely, in reasonable time', async (t) => {
  t.timeout(600_000);
  const dir = makeTmp(t, 'layerfs-test-deep-');
  const [l0, l1, mnt] = ['l0', 'l1', 'mnt'].map((d) => path.join(dir, d));
  const name = (i: number) => `e${String(i).padStart(6, '0')}`;
  const touch = (p: string) => fs.closeSync(fs.openSync(p, 'w'));
  const t0 = performance.now();
  fs.mkdirSync(path.join(l0, 'big'), { recursive: true });
  fs.mkdirSync(path.join(l1, 'big'), { recursive: true });
  // lower0: 0..59999 and OCI whiteouts for 99000..99999; lower1: 50000..100999.
  for (let i = 0; i < 60_000; i++) touch(path.join(l0, 'big', name(i)));
  for (let i = 99_000; i < 100_000; i++) touch(path.join(l0, 'big', `.wh.${name(i)}`));
  for (let i = 50_000; i < 101_000; i++) touch(path.join(l1, 'big', name(i)));
  const made = performance.now() - t0;
  fs.mkdirSync(mnt);
  await mountFor(t, 'layerfs', { lowers: [l0, l1], mnt });

  const t1 = performance.now();
  const names = await fsp.readdir(path.join(mnt, 'big'));
  const cold = performance.now() - t1;
  const t2 = performance.now();
  const again = await fsp.readdir(path.join(mnt, 'big'));
  const warm = performance.now() - t2;
  const t3 = performance.now();
  const ls = await run('sh', ['-c', 'ls -f "$1" | wc -l', 'sh', path.join(mnt, 'big')], { timeoutMs: 300_000 });
  const lsMs = performance.now() - t3;
  // A stat per entry (what ls -l does) costs a FUSE lookup each: sampled, not all 100,000.
  const t4 = performance.now();
  for (let i = 0; i < 101_000; i += 101) await fsp.lstat(path.join(mnt, 'big', name(i))).catch(() => undefined);
  const statMs = (performance.now() - t4) / 1000;
  t.log(`made 112,000 lower entries in ${(made / 1000).toFixed(1)} s; through the mount: readdir ${(cold / 1000).toFixed(2)} s (again ${(warm / 1000).toFixed(2)} s), ` +
    `ls -f ${(lsMs / 1000).toFixed(2)} s; 1,000 lstats ${(statMs * 1000).toFixed(0)} ms (${statMs.toFixed(2)} ms each: ~${(statMs * 100).toFixed(0)} s for ls -l of all)`);

  t.is(names.length, 100_000);
  t.is(again.length, 100_000);
  const set = new Set(names);
  const expected: string[] = [];
  for (let i = 0; i < 101_000; i++) if (i < 99_000 || i >= 100_000) expected.push(name(i));
  t.deepEqual(expected.filter((n) => !set.has(n)), [], 'every name is listed');
  t.is(set.size, 100_000, 'each name once');
  t.false(names.some((n) => n.startsWith('.wh.')), 'no whiteout shows');
  t.is(ls.stdout.toString().trim(), '100002', 'ls -f: 100,000 entries plus . and ..');
  await t.throwsAsync(fsp.stat(path.join(mnt, 'big', name(99_500))), { code: 'ENOENT' });
  t.true((await fsp.stat(path.join(mnt, 'big', name(100_500)))).isFile());
  t.true(cold < 60_000, 'the listing takes less than a minute');
});
