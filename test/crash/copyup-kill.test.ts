// kill -9 of the daemon in the middle of the copy-up of a large lower file (triggered by a
// 1-byte append through the mount from a child process), 20 times: after `layerfs umount` and a
// remount the file is either the lower's untouched version or the complete copy (sha256), the
// work dir is empty and the lowers are byte-identical. See _kill.ts.
// LAYERFS_CRASH_ROUNDS=N changes the number of kills, LAYERFS_CRASH_SEED=S replays a run,
// LAYERFS_CRASH_MIB=N the file size (default 128 MiB: the copy runs at 1-3 GiB/s from the page
// cache; the kills are aimed at a random byte of the copy, and at this size 75-90% of them land
// mid-copy here, against 55-80% at 64 MiB; scripts/crash-long.ts uses 256 MiB).
import test from 'ava';
import * as path from 'node:path';
import { makeTmp, unmount } from '../helpers/mounts.ts';
import { formatReport, runKill } from './_kill.ts';
import { pickSeed } from './_lib.ts';

const ROUNDS = Number(process.env.LAYERFS_CRASH_ROUNDS ?? 20);
const MIB = Number(process.env.LAYERFS_CRASH_MIB ?? 128);

test(`kill -9 during copy-up of a ${MIB} MiB lower file, ${ROUNDS} times: complete copy or untouched lower, never a partial file`, async (t) => {
  t.timeout(600_000);
  const seed = pickSeed();
  t.log(`seed ${seed} (replay with LAYERFS_CRASH_SEED=${seed})`);
  const dir = makeTmp(t, 'layerfs-test-crash-');
  t.teardown(() => unmount(path.join(dir, 'mnt')));
  const rep = await runKill({ kind: 'copyup', dir, rounds: ROUNDS, seed, sizeMiB: MIB, log: (s) => t.log(s) });
  t.log(formatReport(rep));
  t.deepEqual(rep.problems, []);
  t.is(rep.rounds, ROUNDS);
  // Where the kills land depends on the machine's speed and load, so it is reported, not
  // asserted (no timing assertions in tests); the invariants above hold wherever they land.
  t.log(`kills that landed mid-copy: ${rep.landed['mid-copy'] ?? 0} of ${ROUNDS}`);
});
