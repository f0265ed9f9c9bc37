// Differential tests: every scenario runs on kernel overlayfs and on layerfs
// over identical copies of its layers; any difference in an op's result, in
// the merged view or in the upper dir fails the test.
//
// LAYERFS_DIFF_SELFTEST=1 runs the kernel on both sides (checks the harness
// itself; every scenario must pass). LAYERFS_DIFF_KEEP=1 keeps the temp dirs.
// LAYERFS_DIFF_ONLY=<substring> runs only the scenarios whose name contains it.
// LAYERFS_DIFF_JOBS=<n> scenarios run at the same time (default 4; each run
// uses its own temp dirs and mount points, so they do not interfere).

import test from 'ava';
import { compareRuns, diffScenario, op, runScenario, selftestMode, type Scenario } from './engine.ts';
import { dir, file, whiteout } from './layers.ts';
import { scenarios } from './scenarios.ts';
import { classify } from './known.ts';
import { limiter } from '../helpers/limit.ts';

const selftest = selftestMode();
const only = process.env.LAYERFS_DIFF_ONLY;
const tag = selftest ? '[kernel vs kernel] ' : '';

const limit = limiter(Math.max(1, Number(process.env.LAYERFS_DIFF_JOBS ?? 4) || 4));

test('scenario names are unique and there are at least 30', (t) => {
  const names = scenarios.map((s) => s.name);
  t.is(new Set(names).size, names.length);
  t.true(names.length >= 30, `only ${names.length} scenarios`);
});

for (const s of scenarios) {
  if (only && !s.name.includes(only)) continue;
  test(`${tag}${s.name}`, async (t) => {
    const divergences = await limit(() => diffScenario(s));
    if (selftest) {
      t.deepEqual(divergences, []);
      return;
    }
    const { explained, unexplained, stale } = classify(s.name, divergences);
    for (const e of explained) t.log(e);
    if (unexplained.length > 0) {
      t.fail(`${unexplained.length} divergence(s) in "${s.name}":\n  ${unexplained.join('\n  ')}`);
    }
    t.deepEqual(stale.map((k) => k.why), [], 'known divergences listed in test/diff/known.ts that no longer occur');
  });
}

// The harness must be able to fail: run two DIFFERENT layer sets (both on the
// kernel) through the same operations and check that the engine reports each
// kind of difference — op results, merged view, upper dir.
test('the engine reports divergences between different layer sets', async (t) => {
  const ops = [op.readFile('f'), op.readdir('d'), op.appendFile('g', '+'), op.unlink('d/x'), op.stat('gone')];
  const a: Scenario = {
    name: 'A',
    layers: { lowers: [{ f: file('one'), d: dir({ x: file('x') }), gone: file('here') }] },
    ops,
  };
  const b: Scenario = {
    name: 'B',
    layers: {
      lowers: [
        { f: file('two'), d: dir({ x: file('x'), extra: file('extra') }), g: file('g', { mode: 0o600 }), gone: whiteout('kernel') },
        { gone: file('hidden') },
      ],
    },
    ops,
  };
  const ra = await runScenario(a, 'kernel');
  const rb = await runScenario(b, 'kernel');
  const d = compareRuns(ra, rb, ops, ['A', 'B']);
  const has = (re: RegExp) => t.true(d.some((l) => re.test(l)), `expected a divergence matching ${re}; got:\n  ${d.join('\n  ')}`);
  has(/^op #0 readFile\(path="f"\): A=ok: "one" B=ok: "two"$/);
  has(/^op #1 readdir\(path="d"\): A=ok: \["x"\] B=ok: \["extra","x"\]$/);
  has(/^op #4 stat\(path="gone"\): A=ok: .* B=ENOENT$/);
  has(/^merged: f: sha256: /);
  has(/^merged: d\/extra: only in B/);
  has(/^merged: gone: only in A/);
  has(/^upper: g: mode: A=0644 B=0600$/);
  // Ops whose results agree are not reported.
  t.false(d.some((l) => l.startsWith('op #2') || l.startsWith('op #3')), d.join('\n'));
  // And a run compared with itself is clean.
  t.deepEqual(compareRuns(ra, ra, ops), []);
});
