// kill -9 of the daemon during renames of directories, 20 times each:
//  - an upper-only directory (with files) moved around, into and out of merged directories and
//    over empty lower and upper directories: it is at its old or its new name, whole;
//  - `mv` of a lower directory (rename gives EXDEV, mv copies the tree, then removes the
//    source): the source keeps every entry it still shows intact, the copy holds at most the
//    one file mv was writing, and once the source lost entries the copy is complete.
// Then the work dir is empty and the lowers are byte-identical. See _kill.ts.
import test from 'ava';
import * as path from 'node:path';
import { makeTmp, unmount } from '../helpers/mounts.ts';
import { formatReport, runKill, type KillKind } from './_kill.ts';
import { pickSeed } from './_lib.ts';

const ROUNDS = Number(process.env.LAYERFS_CRASH_ROUNDS ?? 20);

for (const [kind, what] of [
  ['dirrename', 'renames of an upper-only directory'],
  ['mvdir', '`mv` (EXDEV, then copy and remove) of a lower directory'],
] as [KillKind, string][]) {
  test(`kill -9 during ${what}, ${ROUNDS} times`, async (t) => {
    t.timeout(600_000);
    const seed = pickSeed();
    t.log(`seed ${seed} (replay with LAYERFS_CRASH_SEED=${seed})`);
    const dir = makeTmp(t, 'layerfs-test-crash-');
    t.teardown(() => unmount(path.join(dir, 'mnt')));
    const rep = await runKill({ kind, dir, rounds: ROUNDS, seed, log: (s) => t.log(s) });
    t.log(formatReport(rep));
    t.deepEqual(rep.problems, []);
    t.is(rep.rounds, ROUNDS);
  });
}
