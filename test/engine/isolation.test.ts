// One mount's trouble does not stall the others: a mount whose lower hangs (a FUSE lower whose
// server is stopped) is served on a thread of its own, so the engine's other mounts and its API
// keep answering while a request of that mount waits; a lower that vanishes fails only its own
// mount's requests.

import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../helpers/exec.ts';
import { isMounted, makeTmp, unmount } from '../helpers/mounts.ts';
import { testEngine } from './_engine.ts';

function dirs(root: string, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    out[n] = path.join(root, n);
    fs.mkdirSync(out[n]!, { recursive: true });
  }
  return out;
}

/** Wait (bounded) for `child` to exit; its exit status, or null while it still runs. */
function exitWithin(child: ChildProcess, ms: number): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? 128);
    });
  });
}

test('a mount whose lower hangs does not stall another mount, nor the API', async (t) => {
  const e = testEngine(t);
  const root = makeTmp(t, 'layerfs-test-hang-');
  const d = dirs(root, ['xl', 'xu', 'xw', 'x', 'au', 'aw', 'a', 'bl', 'bu', 'bw', 'b']);
  fs.writeFileSync(path.join(d.xl!, 'f'), 'x\n');
  for (let i = 0; i < 50; i++) fs.mkdirSync(path.join(d.bl!, `d${i}`));
  // X: a FUSE filesystem of another program (fuse-overlayfs), to be stopped.
  const fo = await run('fuse-overlayfs', ['-o', `lowerdir=${d.xl},upperdir=${d.xu},workdir=${d.xw}`, d.x!], { timeoutMs: 30_000 });
  t.is(fo.code, 0, fo.stderr);
  t.teardown(() => unmount(d.x!));
  const pids = (await run('pgrep', ['-f', `fuse-overlayfs .*${d.xw}`])).stdout.toString().trim().split('\n').filter(Boolean).map(Number);
  t.is(pids.length, 1, 'the fuse-overlayfs server found');
  const xpid = pids[0]!;
  t.teardown(() => {
    try {
      process.kill(xpid, 'SIGCONT');
    } catch {
      /* gone */
    }
  });
  t.teardown(() => unmount(d.a!));
  t.teardown(() => unmount(d.b!));
  t.is((await e.layerfs(['mount', '-o', `lowerdir=${d.x},upperdir=${d.au},workdir=${d.aw}`, d.a!])).code, 0);
  t.is((await e.layerfs(['mount', '-o', `lowerdir=${d.bl},upperdir=${d.bu},workdir=${d.bw}`, d.b!])).code, 0);
  t.is(fs.readFileSync(path.join(d.a!, 'f'), 'utf8'), 'x\n');
  t.regex(fs.readFileSync(path.join(e.dir, 'engine.log'), 'utf8'), /served on a thread of its own \(.* is on fuse\)/);

  process.kill(xpid, 'SIGSTOP');
  // A lookup of a name A has not seen goes to A's lower, X, which does not answer now.
  const hung = spawn('stat', [path.join(d.a!, 'not-seen-yet')], { stdio: 'ignore' });
  t.teardown(() => {
    if (hung.exitCode === null) hung.kill('SIGKILL');
  });
  t.is(await exitWithin(hung, 1000), null, 'the request on A waits for X');
  // Meanwhile B serves names it has not seen (each a request to the engine), and the API answers.
  const t0 = performance.now();
  for (let i = 0; i < 50; i++) t.true(fs.statSync(path.join(d.b!, `d${i}`)).isDirectory());
  fs.writeFileSync(path.join(d.b!, 'new'), 'b\n');
  const bMs = performance.now() - t0;
  const t1 = performance.now();
  const v = await e.api('GET', '/v1/mounts');
  const apiMs = performance.now() - t1;
  t.is(v.http, 200);
  t.is(hung.exitCode, null, 'A still waits: B and the API answered meanwhile');
  t.log(`while A waited: 51 requests on B in ${bMs.toFixed(1)} ms, GET /v1/mounts in ${apiMs.toFixed(1)} ms`);

  process.kill(xpid, 'SIGCONT');
  t.is(await exitWithin(hung, 10_000), 1, 'A answers once X does (ENOENT: stat exits 1)');
  t.is(fs.readFileSync(path.join(d.a!, 'f'), 'utf8'), 'x\n');
});

test('a lower that vanishes fails its own mount only', async (t) => {
  const e = testEngine(t);
  const root = makeTmp(t, 'layerfs-test-vanish-');
  const d = dirs(root, ['tl', 'au', 'aw', 'a', 'bl', 'bu', 'bw', 'b']);
  t.teardown(() => unmount(d.tl!));
  t.is((await run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', d.tl!])).code, 0);
  fs.mkdirSync(path.join(d.tl!, 'dir'));
  fs.writeFileSync(path.join(d.tl!, 'dir', 'f'), 'gone soon\n');
  fs.writeFileSync(path.join(d.bl!, 'f'), 'b\n');
  t.teardown(() => unmount(d.a!));
  t.teardown(() => unmount(d.b!));
  t.is((await e.layerfs(['mount', '-o', `lowerdir=${d.tl},upperdir=${d.au},workdir=${d.aw},timeout=0`, d.a!])).code, 0);
  t.is((await e.layerfs(['mount', '-o', `lowerdir=${d.bl},upperdir=${d.bu},workdir=${d.bw}`, d.b!])).code, 0);
  t.is(fs.readFileSync(path.join(d.a!, 'dir', 'f'), 'utf8'), 'gone soon\n');
  // The lower is emptied and detached underneath the live mount.
  fs.rmSync(path.join(d.tl!, 'dir'), { recursive: true });
  t.is((await run('umount', ['-l', d.tl!])).code, 0);
  const err = t.throws(() => fs.readFileSync(path.join(d.a!, 'dir', 'f'))) as NodeJS.ErrnoException;
  t.true(['ENOENT', 'ESTALE', 'EIO'].includes(err.code!), String(err.code));
  t.is(fs.readFileSync(path.join(d.b!, 'f'), 'utf8'), 'b\n', 'B serves');
  fs.writeFileSync(path.join(d.b!, 'g'), 'g\n');
  t.true(isMounted(d.a!), 'A is still mounted (its own requests fail)');
  t.is((await e.api('GET', '/v1/version')).http, 200, 'the engine lives');
});
