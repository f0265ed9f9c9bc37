// The low-level libfuse3 binding through real mounts: directories and data.
// How these tests work and what they share: _ll.ts.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../helpers/exec.ts';
import { Cap } from '../../src/fuse/lowlevel.ts';
import { fsp, ltest, layers, mountUnion, sh, shOk, py, sha, RENAMEAT2 } from './_ll.ts';

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
