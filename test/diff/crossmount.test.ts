// Cross-mounting: the upper dir each implementation writes must mean the same to the other.
//
// For every scenario with an upper dir: run it on layerfs, unmount, mount KERNEL overlayfs on
// layerfs' upper (same lowers, built in the kernel's format; a fresh workdir) and compare the
// merged view with the one layerfs showed; and the other way round — the kernel's upper
// mounted by layerfs must show what the kernel showed.
//
// LAYERFS_DIFF_ONLY=<substring> and LAYERFS_DIFF_JOBS=<n> as in diff.test.ts.

import test from 'ava';
import * as path from 'node:path';
import type { MountTarget } from '../helpers/mounts.ts';
import { compareMerged, runScenario, snapshotOverUpper, type Scenario } from './engine.ts';
import { classify } from './known.ts';
import { scenarios } from './scenarios.ts';
import { limiter } from '../helpers/limit.ts';

const only = process.env.LAYERFS_DIFF_ONLY;

const limit = limiter(Math.max(1, Number(process.env.LAYERFS_DIFF_JOBS ?? 3) || 3));

/** Run `s` on `writer`, then mount `reader` on the upper it left; the two merged views' differences. */
async function cross(s: Scenario, writer: MountTarget, reader: MountTarget): Promise<{ lines: string[]; notes: string[] }> {
  let other: Awaited<ReturnType<typeof snapshotOverUpper>> | undefined;
  const run = await runScenario(s, writer, {
    afterRun: async (dirs) => {
      other = await snapshotOverUpper(reader, s, dirs.upper!, path.join(dirs.root, `cross-${reader}`));
    },
  });
  if (!other) throw new Error('the cross mount did not run');
  const lines = compareMerged({ merged: run.merged, raw: run.raw?.merged }, other, [writer, `${reader} on ${writer}'s upper`]);
  return { lines, notes: (run.notes ?? []).map((n) => `${writer}: ${n}`) };
}

/** Scenarios whose lines classify under this name in known.ts. */
function crossName(s: Scenario): string {
  return `crossmount: ${s.name}`;
}

const withUpper = scenarios.filter((s) => !s.readOnly && (!only || s.name.includes(only)));

test('every scenario with an upper is cross-mounted', (t) => {
  t.true(withUpper.length >= (only ? 1 : 60), `${withUpper.length} scenarios`);
});

for (const s of withUpper) {
  test(`crossmount: ${s.name}`, async (t) => {
    t.timeout(600_000);
    const [a, b] = await Promise.all([limit(() => cross(s, 'layerfs', 'kernel')), limit(() => cross(s, 'kernel', 'layerfs'))]);
    for (const n of [...a.notes, ...b.notes]) t.log(n);
    const { explained, unexplained, stale } = classify(crossName(s), [...a.lines, ...b.lines]);
    for (const e of explained) t.log(e);
    if (unexplained.length > 0) t.fail(`${unexplained.length} difference(s) across implementations in "${s.name}":\n  ${unexplained.join('\n  ')}`);
    t.deepEqual(stale.map((k) => k.why), [], 'known differences listed in test/diff/known.ts that no longer occur');
  });
}
