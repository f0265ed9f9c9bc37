// The low-level libfuse3 binding through real mounts: robustness.
// How these tests work and what they share: _ll.ts.

import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMounted, makeTmp } from '../helpers/mounts.ts';
import { fsp, ltest, startChild, layers, mountUnion, sh, shOk } from './_ll.ts';

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
