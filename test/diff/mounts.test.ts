// Tests of the shared mount helpers (test/helpers/mounts.ts). They live here
// because test/helpers/ holds helpers only.

import test from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  enginePid,
  isMounted,
  makeTmp,
  mountKernel,
  mountLayerfs,
  mountsAt,
  mountsUnder,
  privateEngine,
  readMountinfo,
  removeTmp,
  unmount,
} from '../helpers/mounts.ts';

function layout(root: string) {
  const l1 = path.join(root, 'l1');
  const l2 = path.join(root, 'l2');
  const upper = path.join(root, 'upper');
  const work = path.join(root, 'work');
  const mnt = path.join(root, 'mnt');
  for (const d of [l1, l2, upper, work, mnt]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(l1, 'a'), 'from l1');
  fs.writeFileSync(path.join(l2, 'a'), 'from l2');
  fs.writeFileSync(path.join(l2, 'b'), 'from l2');
  return { l1, l2, upper, work, mnt };
}

test('mountKernel / isMounted / unmount; unmount is idempotent', async (t) => {
  const { l1, l2, upper, work, mnt } = layout(makeTmp(t));
  t.teardown(() => unmount(mnt));
  t.false(isMounted(mnt));
  await mountKernel({ lowers: [l1, l2], upper, work, mnt });
  t.true(isMounted(mnt));
  t.is(mountsAt(mnt).at(-1)?.fstype, 'overlay');
  t.is(fs.readFileSync(path.join(mnt, 'a'), 'utf8'), 'from l1'); // top-most first
  t.deepEqual(fs.readdirSync(mnt).sort(), ['a', 'b']);
  await unmount(mnt);
  t.false(isMounted(mnt));
  await t.notThrowsAsync(unmount(mnt));
  await t.notThrowsAsync(unmount(path.join(mnt, 'does-not-exist')));
});

test('read-only kernel mount without upper, and a mount point with a space', async (t) => {
  const root = makeTmp(t);
  const { l1, l2 } = layout(root);
  const mnt = path.join(root, 'mount point');
  fs.mkdirSync(mnt);
  t.teardown(() => unmount(mnt));
  await mountKernel({ lowers: [l1, l2], mnt });
  t.true(isMounted(mnt)); // mountinfo escapes the space as \040
  t.true(mountsUnder(root).includes(mnt));
  t.throws(() => fs.writeFileSync(path.join(mnt, 'x'), ''), { code: 'EROFS' });
  await unmount(mnt);
  t.false(isMounted(mnt));
});

test('mountKernel rejects with mount’s stderr; nothing is left mounted', async (t) => {
  const { l1, upper, work, mnt } = layout(makeTmp(t));
  t.teardown(() => unmount(mnt));
  const err = await t.throwsAsync(mountKernel({ lowers: [l1, path.join(l1, 'missing')], upper, work, mnt }));
  t.regex(err?.message ?? '', /mount/);
  t.false(isMounted(mnt));
  const err2 = await t.throwsAsync(mountKernel({ lowers: [l1], mnt }));
  t.regex(err2?.message ?? '', /at least 2 lowerdirs/);
});

test('option-breaking characters in paths are refused', async (t) => {
  const { l1, mnt } = layout(makeTmp(t));
  await t.throwsAsync(mountKernel({ lowers: [l1 + ',x', l1], mnt }), { message: /must not contain/ });
  await t.throwsAsync(mountLayerfs({ lowers: [l1 + ':x'], mnt }), { message: /must not contain/ });
});

test('mountLayerfs rejects for a missing lowerdir and leaves nothing mounted', async (t) => {
  const { l1, upper, work, mnt } = layout(makeTmp(t));
  t.teardown(() => unmount(mnt));
  await t.throwsAsync(mountLayerfs({ lowers: [path.join(l1, 'missing')], upper, work, mnt, timeoutMs: 60_000 }));
  t.false(isMounted(mnt));
});

test('unmount of a busy mount falls back to a lazy unmount', async (t) => {
  const { l1, l2, upper, work, mnt } = layout(makeTmp(t));
  t.teardown(() => unmount(mnt));
  await mountKernel({ lowers: [l1, l2], upper, work, mnt });
  const busy = spawn('sleep', ['60'], { cwd: mnt, stdio: 'ignore' });
  t.teardown(() => {
    busy.kill('SIGKILL');
  });
  await new Promise((r) => busy.once('spawn', r));
  await unmount(mnt);
  t.false(isMounted(mnt));
});

test('stacked mounts at one point are all unmounted', async (t) => {
  const { l1, l2, mnt } = layout(makeTmp(t));
  t.teardown(() => unmount(mnt));
  await mountKernel({ lowers: [l1, l2], mnt });
  await mountKernel({ lowers: [l2, l1], mnt });
  t.is(mountsAt(mnt).length, 2);
  await unmount(mnt);
  t.false(isMounted(mnt));
});

test('removeTmp unmounts what is still mounted below the dir before deleting it', async (t) => {
  const root = makeTmp(); // no t: removed explicitly below
  t.teardown(() => removeTmp(root)); // safety net if an assertion throws
  const { l1, l2, mnt } = layout(root);
  await mountKernel({ lowers: [l1, l2], mnt });
  await removeTmp(root);
  t.false(isMounted(mnt));
  t.false(fs.existsSync(root));
  t.true(fs.existsSync('/proc/self/mountinfo') && readMountinfo().length > 0);
});

/**
 * The process serving a FUSE mount: holds /dev/fuse open and names the mount point in its argv
 * or environment, or (an engine, which serves many) its engine directory.
 */
function findFuseDaemon(mnt: string, engineDir?: string): number | null {
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const fds = fs.readdirSync(`/proc/${p}/fd`);
      if (!fds.some((fd) => fs.readlinkSync(`/proc/${p}/fd/${fd}`) === '/dev/fuse')) continue;
      const text = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8') + fs.readFileSync(`/proc/${p}/environ`, 'utf8');
      if (text.includes(mnt) || (engineDir !== undefined && text.includes(engineDir))) return Number(p);
    } catch {
      /* process gone or not ours to read */
    }
  }
  return null;
}

test('unmount recovers from a FUSE daemon that stopped answering', async (t) => {
  const { l1, mnt } = layout(makeTmp(t));
  // An engine of the test's own: it is the process stopped below.
  const engineDir = privateEngine(t);
  t.teardown(() => unmount(mnt));
  try {
    await mountLayerfs({ lowers: [l1], mnt, timeoutMs: 60_000, engineDir });
  } catch (e) {
    t.log(`layerfs does not mount yet, nothing to test: ${(e as Error).message}`);
    t.pass();
    return;
  }
  const pid = enginePid(engineDir);
  if (pid === null || findFuseDaemon(mnt, engineDir) !== pid) {
    t.fail('mounted, but found no process serving the mount');
    return;
  }
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  });
  process.kill(pid, 'SIGSTOP');
  const read = fs.promises.readFile(path.join(mnt, 'a'), 'utf8').then(
    () => 'answered',
    (e: NodeJS.ErrnoException) => e.code ?? String(e),
  );
  await new Promise((r) => setTimeout(r, 300));
  await unmount(mnt, { timeoutMs: 3_000 });
  t.false(isMounted(mnt));
  // The request stuck on the stopped daemon is aborted, not left hanging.
  const outcome = await Promise.race([read, new Promise((r) => setTimeout(() => r('still hung'), 5_000))]);
  t.not(outcome, 'still hung');
});
