// The random differential run sized for CI: a few thousand operations (fixed seeds plus one
// seed derived from today's date, printed), compared after every operation and at the end on
// kernel overlayfs and layerfs. Zero unexplained divergences is the bar. A failing sequence is
// reduced (time-bounded) and printed as a scenario literal and a shell script.
//
// Long runs: `npx tsx scripts/fuzz.ts --ops 100000 --seed S`.
// LAYERFS_FUZZ_SEEDS=1,2,3 replaces the seeds; LAYERFS_FUZZ_BATCHES=N batches per seed;
// LAYERFS_FUZZ_SHRINK_S=N seconds to reduce one failure (0: do not reduce).

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { compareRuns, runScenario } from './engine.ts';
import {
  attribute,
  batchIdString,
  batchScenario,
  ddmin,
  entriesToTrees,
  formatReproducer,
  generateBatch,
  mulberry32,
  runBatch,
  scenarioLiteral,
  shellScript,
  shrink,
  wellFormed,
  type BatchId,
  type Reproducer,
} from './fuzz.ts';
import { limiter } from '../helpers/limit.ts';

const SEQS = 10;
const LEN = 30;
const today = new Date();
const dateSeed = today.getUTCFullYear() * 10000 + (today.getUTCMonth() + 1) * 100 + today.getUTCDate();
const seeds = process.env.LAYERFS_FUZZ_SEEDS ? process.env.LAYERFS_FUZZ_SEEDS.split(',').map(Number) : [1, 2, 3, dateSeed];
const batchesPerSeed = Number(process.env.LAYERFS_FUZZ_BATCHES ?? 3);
const shrinkMs = Number(process.env.LAYERFS_FUZZ_SHRINK_S ?? 90) * 1000;

const limit = limiter(2);

const totals = { ops: 0, batches: 0, divergences: 0, ms: 0 };
test.after.always(() => {
  console.log(
    `fuzz: seeds ${seeds.join(', ')} (date seed ${dateSeed}): ${totals.ops} operations in ${totals.batches} batches, ` +
      `${totals.divergences} unexplained divergence(s), ${(totals.ms / 1000).toFixed(0)} s of batch time`,
  );
});

// ---------------------------------------------------------------------------------- the run

for (const seed of seeds) {
  for (let batch = 0; batch < batchesPerSeed; batch++) {
    const id: BatchId = { seed, batch, sequences: SEQS, opsPerSequence: LEN };
    test(`fuzz ${batchIdString(id)}${seed === dateSeed ? ' (date seed)' : ''}`, async (t) => {
      t.timeout(600_000);
      const b = generateBatch(id);
      const r = await limit(() => runBatch(b));
      totals.ops += r.ops;
      totals.batches++;
      totals.ms += r.ms;
      if (r.error) t.fail(`harness error: ${r.error}`);
      const lines = [...r.failures.values()].flat();
      totals.divergences += lines.length;
      t.log(`${r.ops} ops, ${lines.length} unexplained divergence(s), ${(r.ms / 1000).toFixed(1)} s`);
      if (lines.length === 0) {
        t.pass();
        return;
      }
      const report: string[] = [];
      for (const [dir, ls] of r.failures) {
        report.push(`${dir}:`, ...ls.map((l) => `  ${l}`));
        if (dir !== '*' && shrinkMs > 0) {
          const rep: Reproducer = await limit(() => shrink(b, dir, { budgetMs: shrinkMs }));
          t.log(formatReproducer(rep));
        }
      }
      t.fail(`${lines.length} unexplained divergence(s) in ${batchIdString(id)}:\n${report.join('\n')}`);
    });
  }
}

// ---------------------------------------------------------------------------------- the fuzzer itself

test('the generator is a pure function of the seed', (t) => {
  const id: BatchId = { seed: 12345, batch: 7, sequences: 4, opsPerSequence: 20 };
  t.deepEqual(generateBatch(id), generateBatch(id));
  t.notDeepEqual(generateBatch(id).sequences, generateBatch({ ...id, batch: 8 }).sequences);
  const r1 = mulberry32(1);
  const r2 = mulberry32(1);
  for (let i = 0; i < 100; i++) t.is(r1(), r2());
});

test('generated layer sets are well-formed, and sequences stay in their own directory', (t) => {
  for (let batch = 0; batch < 40; batch++) {
    const b = generateBatch({ seed: 99, batch, sequences: 5, opsPerSequence: 30 });
    t.true(wellFormed(b.lowers, b.entries), `batch ${batch}`);
    t.true(b.lowers === 2 || b.lowers === 3);
    for (const s of b.sequences) {
      for (const o of s.ops) {
        for (const p of Object.entries(o).filter(([k]) => ['path', 'from', 'to'].includes(k)).map(([, v]) => String(v))) {
          t.true(p === s.dir || p.startsWith(`${s.dir}/`), `${p} outside ${s.dir}`);
          t.false(p.split('/').includes('..'));
        }
        if (o.op === 'symlink') t.false(o.target.split('/').includes('..') || o.target.startsWith('/'), o.target);
      }
    }
    const trees = entriesToTrees(b.lowers, b.sequences.map((s) => s.dir), b.entries);
    t.is(trees.length, b.lowers);
    for (const tree of trees) t.deepEqual(Object.keys(tree).sort(), b.sequences.map((s) => s.dir).sort());
  }
});

test('ddmin finds a 1-minimal failing subset', async (t) => {
  const items = Array.from({ length: 60 }, (_, i) => i);
  let calls = 0;
  const min = await ddmin(items, async (xs) => {
    calls++;
    return xs.includes(7) && xs.includes(23) && xs.includes(41);
  }, () => true);
  t.deepEqual(min, [7, 23, 41]);
  t.true(calls < 200, `${calls} calls`);
});

test('reproducers print as a scenario literal and as a shell script sh accepts', (t) => {
  const b = generateBatch({ seed: 5, batch: 0, sequences: 3, opsPerSequence: 25 });
  const r: Reproducer = {
    id: b.id,
    dir: 's1',
    divergences: ['op #0 …'],
    original: ['op #0 …'],
    lowers: b.lowers,
    entries: b.entries.filter((e) => e.path.startsWith('s1/')),
    ops: b.sequences[1]!.ops,
    trials: 0,
    ms: 0,
    partial: false,
  };
  const lit = scenarioLiteral(r);
  t.regex(lit, /^ {2}\{\n {4}name: "fuzz: seed=5 batch=0 seqs=3 len=25 s1",/);
  t.regex(lit, /ops: \[\n/);
  t.is((lit.match(/^ {6}op\./gm) ?? []).length, r.ops.length);
  const sh = shellScript(r);
  t.notThrows(() => execFileSync('sh', ['-n'], { input: sh }));
  t.regex(formatReproducer(r), /--replay 5:0:1 --seqs 3 --len 25/);
});

// The harness must be able to see a divergence and pin it on the right sequence: the same
// operations on two layer sets that differ in one sequence's entries (both on the kernel).
test('divergences are attributed to the sequence whose directory they concern', async (t) => {
  t.timeout(300_000);
  const b = generateBatch({ seed: 3, batch: 1, sequences: 4, opsPerSequence: 20 });
  // A name outside the namespace (no op touches it): only the merged views differ, and any
  // readdir of s2.
  const mutated = [...b.entries, { layer: 0, path: 's2/zz', node: { type: 'file' as const, content: 'added' } }];
  const s1 = batchScenario(b);
  const s2 = batchScenario(b, b.sequences, mutated);
  const [ra, rb] = await Promise.all([runScenario(s1, 'kernel'), runScenario(s2, 'kernel')]);
  const lines = compareRuns(ra, rb, s1.ops, ['A', 'B']);
  t.true(lines.length > 0, 'the difference is seen');
  const byDir = attribute(b, lines);
  t.deepEqual([...byDir.keys()], ['s2'], lines.join('\n'));
  t.true(lines.includes('merged: s2/zz: only in B (file 0644)'), lines.join('\n'));
});
