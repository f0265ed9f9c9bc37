// The crash tests of test/crash/ (kill -9 of the daemon at a random point, then remount and
// check), with as many rounds as asked:
//
//   npx tsx scripts/crash-long.ts --rounds 200 [--kinds copyup,burst,dirrename,mvdir]
//                                 [--seed N] [--size-mib 256] [--keep-going]
//
// Prints, per kind, how many kills ran, where they landed and every problem found (with the
// seed to replay it: LAYERFS_CRASH_SEED=N for the tests, --seed N here). Exit status 1 when
// there was a problem. Must run as root (it mounts).

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KILL_KINDS, formatReport, runKill, type KillKind } from '../test/crash/_kill.ts';
import { pickSeed } from '../test/crash/_lib.ts';
import { removeTmp, unmount } from '../test/helpers/mounts.ts';

function usage(msg?: string): never {
  if (msg) process.stderr.write(`crash-long: ${msg}\n`);
  process.stderr.write('usage: npx tsx scripts/crash-long.ts [--rounds N] [--kinds copyup,burst,dirrename,mvdir] [--seed N] [--size-mib N] [--keep-going]\n');
  process.exit(2);
}

const args = process.argv.slice(2);
let rounds = 200;
let kinds: KillKind[] = [...KILL_KINDS];
let seed = pickSeed();
let sizeMiB = 256;
let keepGoing = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const val = () => args[++i] ?? usage(`${a} needs a value`);
  if (a === '--rounds') rounds = Number(val());
  else if (a === '--kinds') kinds = val().split(',') as KillKind[];
  else if (a === '--seed') seed = Number(val()) >>> 0;
  else if (a === '--size-mib') sizeMiB = Number(val());
  else if (a === '--keep-going') keepGoing = true;
  else if (a === '-h' || a === '--help') usage();
  else usage(`unknown argument ${a}`);
}
if (!Number.isInteger(rounds) || rounds < 1) usage('--rounds must be a positive integer');
if (!Number.isInteger(sizeMiB) || sizeMiB < 1) usage('--size-mib must be a positive integer');
for (const k of kinds) if (!KILL_KINDS.includes(k)) usage(`unknown kind ${k} (kinds: ${KILL_KINDS.join(', ')})`);
if (process.getuid?.() !== 0) usage('must run as root');

let failed = false;
// Interrupted (Ctrl-C, kill): the current round finishes, the kind unmounts and its temp dir
// is removed, then we exit. A second signal exits at once.
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (stopping) process.exit(130);
    stopping = true;
    process.stdout.write(`crash-long: ${sig}: stopping after this round, then cleaning up\n`);
  });
}
process.stdout.write(`crash-long: ${rounds} rounds of ${kinds.join(', ')}; seed ${seed}\n`);
for (const [k, kind] of kinds.entries()) {
  if (stopping) break;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `layerfs-test-crashlong-${kind}-`));
  const kindSeed = (seed + k * 0x9e3779b1) >>> 0;
  try {
    const rep = await runKill({
      kind,
      dir,
      rounds,
      seed: kindSeed,
      sizeMiB,
      stopOnProblem: !keepGoing,
      progressEvery: 25,
      stop: () => stopping,
      log: (s) => process.stdout.write(`  ${kind}: ${s}\n`),
    });
    process.stdout.write(formatReport(rep) + '\n');
    if (rep.problems.length) failed = true;
  } catch (e) {
    failed = true;
    process.stdout.write(`${kind}: ERROR (seed ${kindSeed}): ${(e as Error).stack ?? e}\n`);
  } finally {
    await unmount(path.join(dir, 'mnt')).catch((e) => process.stdout.write(`unmount: ${e}\n`));
    await removeTmp(dir).catch((e) => process.stdout.write(`cleanup: ${e}\n`));
  }
}
process.exit(stopping ? 130 : failed ? 1 : 0);
