// The low-level libfuse3 binding through real mounts: passthrough, reads by splice, spinning.
// How these tests work and what they share: _ll.ts.

import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Op } from '../../src/fuse/lowlevel.ts';
import { fsp, ltest, Child, layers, mountUnion, shOk, sha } from './_ll.ts';

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
