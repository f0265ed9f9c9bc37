// kill -9 of the daemon at a random (seeded) point during an operation, then: the dead mount
// answers ENOTCONN, `bin/layerfs umount` cleans it up, the same dirs mount again, and
//   - no partial object is visible (a copy-up is either complete or not there at all),
//   - workdir/work is empty after the remount,
//   - the lowers are byte-identical to before (and untouched: same inodes, ctimes, xattrs),
//   - every operation the child process saw succeed (and fsync'd) before the kill is there.
//
// Four kinds, each a loop of rounds on one set of layers (every round its own names, so the
// rounds need no reset):
//   copyup     1-byte append to a large lower file (copy-up of its data)
//   burst      creates, overwrites, appends, renames, unlinks, mkdir, rmdir from a child
//   dirrename  renames of an upper-only directory, into and out of merged directories
//   mvdir      `mv` of a lower directory: EXDEV, then mv copies the tree and removes the source
//
// Used by test/crash/*.test.ts (20+ rounds each) and scripts/crash-long.ts (as many as asked).
// The caller creates `dir` and registers an unmount of `${dir}/mnt` BEFORE calling runKill.
//
// The kinds are in _kill-copyup.ts, _kill-ops.ts (burst, dirrename) and _kill-mvdir.ts; the public
// types and what the kinds share in _kill-common.ts.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMounted, mountLayerfs, stopEngineIn, unmount } from '../helpers/mounts.ts';
import { daemonPid, deadMountChecks, diffPrints, layerPrint, processAlive, rng, workEntries } from './_lib.ts';
import { mk, type Ctx, type Kind, type KillOptions, type KillReport } from './_kill-common.ts';
import { copyupKind } from './_kill-copyup.ts';
import { mvdirKind } from './_kill-mvdir.ts';
import { opsKind } from './_kill-ops.ts';

export { KILL_KINDS, type KillKind, type KillOptions, type KillReport } from './_kill-common.ts';

function kindFor(o: KillOptions): Kind<any> {
  switch (o.kind) {
    case 'copyup':
      return copyupKind(o.sizeMiB ?? 64);
    case 'burst':
      return opsKind('burst');
    case 'dirrename':
      return opsKind('dirrename');
    case 'mvdir':
      return mvdirKind();
  }
}

export async function runKill(o: KillOptions): Promise<KillReport> {
  const t0 = performance.now();
  const r = rng(o.seed);
  const c: Ctx = {
    dir: o.dir,
    lowers: [path.join(o.dir, 'lower0'), path.join(o.dir, 'lower1')],
    upper: path.join(o.dir, 'upper'),
    work: path.join(o.dir, 'work'),
    mnt: path.join(o.dir, 'mnt'),
    log: o.log,
    notes: [],
  };
  for (const d of [...c.lowers, c.upper, c.work, c.mnt]) mk(d);
  const kind = kindFor(o);
  const report: KillReport = { kind: o.kind, seed: o.seed, rounds: 0, landed: {}, problems: [], ms: 0, notes: c.notes };
  await kind.prepare(c, o.rounds, r);
  // Per round, file hashes are reused while inode, size, mtime and ctime stand still (any write
  // moves the ctime); after the last round every byte is hashed again.
  const hashCache = new Map<string, string>();
  const before = await Promise.all(c.lowers.map((l) => layerPrint(l, hashCache)));
  // The mount's own engine: each round kills it (the suite's engine serves other tests' mounts).
  const engineDir = path.join(o.dir, 'engine');
  mk(engineDir);
  const spec = { lowers: c.lowers, upper: c.upper, work: c.work, mnt: c.mnt, timeoutMs: 60_000, engineDir };
  try {
    await mountLayerfs(spec); // inside: a failed first mount still stops the engine it started
    await kind.calibrate?.(c, r);
    const debug = process.env.LAYERFS_CRASH_DEBUG ? o.log : () => {};
    for (let i = 0; i < o.rounds; i++) {
      if (o.stop?.()) break;
      const roundSeed = Math.floor(r() * 2 ** 32);
      const rr = rng(roundSeed);
      const problems: string[] = [];
      const pid = daemonPid(c.mnt, engineDir);
      let tt = performance.now();
      const lap = (what: string) => {
        const now = performance.now();
        debug(`round ${i}: ${what} ${(now - tt).toFixed(0)} ms`);
        tt = now;
      };
      const info = await kind.round(c, i, rr, pid);
      lap('operation + kill');
      problems.push(...(await deadMountChecks(c.mnt)));
      lap('dead-mount checks + umount');
      if (isMounted(c.mnt)) {
        report.problems.push(...problems.map((p) => `round ${i} (seed ${roundSeed}): ${p}`));
        break;
      }
      kind.between?.(c, i);
      await mountLayerfs(spec);
      lap('remount');
      const left = workEntries(c.work);
      if (left.length) problems.push(`workdir/work not empty after the remount: ${left.map((e) => e.name).join(', ')}`);
      const [p, cls] = await kind.verify(c, i, info);
      problems.push(...p);
      lap('verify');
      for (const name of fs.readdirSync(c.mnt)) if (name.startsWith('#')) problems.push(`a work-dir name is visible in the union: ${name}`);
      for (const [k, l] of c.lowers.entries()) problems.push(...diffPrints(before[k]!, await layerPrint(l, hashCache), `lower${k}`).slice(0, 10));
      lap('lowers');
      report.landed[cls] = (report.landed[cls] ?? 0) + 1;
      report.rounds++;
      if (o.progressEvery && report.rounds % o.progressEvery === 0) {
        o.log(`${report.rounds}/${o.rounds} kills checked (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      }
      if (!processAlive(daemonPid(c.mnt, engineDir))) problems.push('the remounted daemon is not running');
      if (problems.length) {
        report.problems.push(...problems.map((p) => `round ${i} (round seed ${roundSeed}, kill ${cls}): ${p}`));
        if (o.stopOnProblem !== false) break;
      }
    }
  } finally {
    await unmount(c.mnt);
    await stopEngineIn(engineDir);
  }
  for (const [k, l] of c.lowers.entries()) {
    report.problems.push(...diffPrints(before[k]!, await layerPrint(l), `after the last round, lower${k}`).slice(0, 10));
  }
  report.ms = performance.now() - t0;
  return report;
}

export function formatReport(rep: KillReport): string {
  const landed = Object.entries(rep.landed)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${v}× ${k}`)
    .join(', ');
  return `${rep.kind}: ${rep.rounds} kills in ${(rep.ms / 1000).toFixed(1)} s (seed ${rep.seed}); landed: ${landed}` +
    (rep.problems.length ? `\n  PROBLEMS:\n  ${rep.problems.join('\n  ')}` : '');
}
