// kill -9 of the daemon during a burst of creates, overwrites, appends, renames, unlinks, mkdir
// and rmdir (of upper and lower objects) from a child process that logs each operation once it
// returned success (data fsync'd first), 20 times: after `layerfs umount` and a remount the
// union is exactly the state after the logged operations, or after the one in flight (or, for
// a create/overwrite in flight, with that file created/truncated but not yet written); the work
// dir is empty and the lowers are byte-identical. See _kill.ts.
import test from 'ava';
import * as path from 'node:path';
import { makeTmp, unmount } from '../helpers/mounts.ts';
import { formatReport, runKill } from './_kill.ts';
import { pickSeed } from './_lib.ts';

const ROUNDS = Number(process.env.LAYERFS_CRASH_ROUNDS ?? 20);

test(`kill -9 during a burst of namespace operations, ${ROUNDS} times: every logged operation survives, nothing half-done shows`, async (t) => {
  t.timeout(600_000);
  const seed = pickSeed();
  t.log(`seed ${seed} (replay with LAYERFS_CRASH_SEED=${seed})`);
  const dir = makeTmp(t, 'layerfs-test-crash-');
  t.teardown(() => unmount(path.join(dir, 'mnt')));
  const rep = await runKill({ kind: 'burst', dir, rounds: ROUNDS, seed, log: (s) => t.log(s) });
  t.log(formatReport(rep));
  t.deepEqual(rep.problems, []);
  t.is(rep.rounds, ROUNDS);
});
