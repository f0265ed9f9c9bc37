// ENOSPC in the upper: upper and work dir on a 16 MiB tmpfs, the lowers elsewhere.
//  - copy-up of a 64 MiB lower file fails with ENOSPC to the caller; no partial file in the
//    union, the upper or the work dir; the space is given back; the mount stays usable, and
//    a copy-up that failed for lack of space succeeds once space is freed;
//  - a plain write that runs out of space gets ENOSPC (not EIO); after freeing space, writes
//    work again.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runOk } from '../helpers/exec.ts';
import { makeTmp, mountFor, unmount } from '../helpers/mounts.ts';
import { daemonPid, diffPrints, fsp, hashFile, layerPrint, processAlive, sha256, workEntries } from './_lib.ts';

const MiB = 1 << 20;

interface Env {
  dir: string;
  lower: string;
  upper: string;
  work: string;
  mnt: string;
  small: string;
  m(p: string): string;
  u(p: string): string;
}

async function setup(t: ExecutionContext, files: Record<string, Buffer>): Promise<Env> {
  const dir = makeTmp(t, 'layerfs-test-enospc-');
  const small = path.join(dir, 'small');
  const lower = path.join(dir, 'lower');
  const mnt = path.join(dir, 'mnt');
  for (const d of [small, lower, mnt]) fs.mkdirSync(d);
  for (const [name, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(lower, name)), { recursive: true });
    fs.writeFileSync(path.join(lower, name), data);
  }
  t.teardown(() => unmount(small)); // runs after the layerfs unmount below (teardowns run last-first)
  await runOk('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'tmpfs', small]);
  const upper = path.join(small, 'upper');
  const work = path.join(small, 'work');
  fs.mkdirSync(upper);
  fs.mkdirSync(work);
  await mountFor(t, 'layerfs', { lowers: [lower], upper, work, mnt });
  return { dir, lower, upper, work, mnt, small, m: (p) => path.join(mnt, p), u: (p) => path.join(upper, p) };
}

function usedBytes(p: string): number {
  const s = fs.statfsSync(p);
  return (s.blocks - s.bfree) * s.bsize;
}

/** Write `chunk`-sized pieces to a new file through the mount until it fails; the error. */
async function fillUntilError(file: string, chunk: number): Promise<{ code: string | undefined; written: number }> {
  const fh = await fsp.open(file, 'wx');
  const buf = randomBytes(chunk);
  let written = 0;
  try {
    for (;;) {
      const { bytesWritten } = await fh.write(buf, 0, chunk);
      written += bytesWritten;
      if (written > 64 * MiB) return { code: 'no error after 64 MiB', written };
    }
  } catch (e) {
    return { code: (e as NodeJS.ErrnoException).code, written };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

test('copy-up of a 64 MiB lower file into a 16 MiB upper: ENOSPC, no partial file, space given back, mount usable', async (t) => {
  const big = randomBytes(64 * MiB);
  const mid = randomBytes(8 * MiB);
  const e = await setup(t, { big, mid, note: Buffer.from('hello\n'), 'd/f': Buffer.from('in d\n') });
  const lowerBefore = await layerPrint(e.lower);
  const usedBefore = usedBytes(e.small);

  const err = await t.throwsAsync(fsp.appendFile(e.m('big'), 'x'));
  t.is((err as NodeJS.ErrnoException).code, 'ENOSPC', `append (copy-up) failed with ${(err as NodeJS.ErrnoException).code}`);
  t.false(fs.existsSync(e.u('big')), 'no (partial) copy in the upper');
  t.deepEqual(workEntries(e.work), [], 'the work dir was cleaned');
  t.true(usedBytes(e.small) - usedBefore < MiB, `the space of the failed copy was given back (used ${usedBytes(e.small) - usedBefore} bytes more)`);
  t.is(await hashFile(e.m('big')), sha256(big), 'the union shows the untouched lower file');
  t.is(fs.statSync(e.m('big')).size, big.length);

  // Still usable: small writes, a small copy-up, a directory copy-up.
  await fsp.writeFile(e.m('new'), 'fresh\n');
  await fsp.appendFile(e.m('note'), 'more\n');
  await fsp.writeFile(e.m('d/g'), 'g\n');
  t.is(await fsp.readFile(e.m('new'), 'utf8'), 'fresh\n');
  t.is(await fsp.readFile(e.m('note'), 'utf8'), 'hello\nmore\n');
  t.is(fs.readFileSync(e.u('d/g'), 'utf8'), 'g\n');

  // A copy-up that fails for lack of space works once space is freed.
  const filler = await fillUntilError(e.m('filler'), MiB);
  t.is(filler.code, 'ENOSPC');
  await fsp.truncate(e.m('filler'), filler.written - 4 * MiB); // leave ~4 MiB: less than mid's 8
  const err2 = await t.throwsAsync(fsp.appendFile(e.m('mid'), 'x'));
  t.is((err2 as NodeJS.ErrnoException).code, 'ENOSPC');
  t.false(fs.existsSync(e.u('mid')));
  t.deepEqual(workEntries(e.work), []);
  t.is(await hashFile(e.m('mid')), sha256(mid));
  await fsp.unlink(e.m('filler'));
  await fsp.appendFile(e.m('mid'), 'x');
  t.is(await hashFile(e.m('mid')), sha256(Buffer.concat([mid, Buffer.from('x')])), 'the retried copy-up is complete');
  t.is(await hashFile(e.u('mid')), sha256(Buffer.concat([mid, Buffer.from('x')])));

  t.true(processAlive(daemonPid(e.mnt)), 'the daemon is alive');
  t.deepEqual(diffPrints(lowerBefore, await layerPrint(e.lower), 'lower'), [], 'the lower is untouched');
});

test('a write that runs out of space in the upper gets ENOSPC; after freeing space the mount works', async (t) => {
  const e = await setup(t, { keep: Buffer.from('keep\n') });
  const r = await fillUntilError(e.m('fill'), 256 * 1024);
  t.is(r.code, 'ENOSPC', `the write failed with ${r.code} after ${r.written} bytes`);
  t.true(r.written > 8 * MiB && r.written <= 16 * MiB, `wrote ${r.written} bytes before ENOSPC`);
  t.is(fs.statSync(e.m('fill')).size, r.written, 'what was written (and acknowledged) is there');
  t.deepEqual(workEntries(e.work), []);
  // Another write in the full upper: ENOSPC again, and the daemon stays up.
  const again = await t.throwsAsync(fsp.appendFile(e.m('fill'), randomBytes(64 * 1024)));
  t.is((again as NodeJS.ErrnoException).code, 'ENOSPC');
  t.is(await fsp.readFile(e.m('keep'), 'utf8'), 'keep\n', 'reads still work on the full upper');
  await fsp.unlink(e.m('fill'));
  await fsp.writeFile(e.m('after'), 'written after freeing space\n');
  t.is(await fsp.readFile(e.m('after'), 'utf8'), 'written after freeing space\n');
  await fsp.appendFile(e.m('keep'), 'copied up\n');
  t.is(fs.readFileSync(e.u('keep'), 'utf8'), 'keep\ncopied up\n');
  t.true(processAlive(daemonPid(e.mnt)), 'the daemon is alive');
});
