// Long random differential runs: layerfs against kernel overlayfs (test/diff/fuzz.ts).
//
//   npx tsx scripts/fuzz.ts --ops 100000 --seed 42        # as root
//
// Options:
//   --ops N            operations to run in all (default 3000)
//   --seed S           run seed (default: derived from the clock, printed)
//   --seqs N           independent sequences per batch, i.e. per pair of mounts (default 10)
//   --len N            operations per sequence (default 30)
//   --jobs N           batches running at once (default 2)
//   --no-shrink        report failing sequences without reducing them
//   --shrink-budget S  seconds spent reducing one failing sequence (default 600)
//   --max-shrinks N    failing sequences to reduce; the rest are only listed (default 5)
//   --out DIR          also write each reproducer to DIR/<seed>-<batch>-<seq>.txt and .sh
//   --replay S:B:K     run sequence K of batch B of seed S alone and reduce it
//   --stop-on-failure  stop starting batches after the first divergence
// LAYERFS_DIFF_SELFTEST=1 runs the kernel on both sides (checks the harness itself).
// Exit status: 0 when no unexplained divergence was found, 1 otherwise, 2 for bad arguments.

import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  batchIdString,
  formatReproducer,
  generateBatch,
  runBatch,
  shellScript,
  shrink,
  type BatchId,
  type BatchResult,
  type Reproducer,
} from '../test/diff/fuzz.ts';

function usage(msg: string): never {
  process.stderr.write(`fuzz: ${msg}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const opt = { ops: 3000, seed: NaN, seqs: 10, len: 30, jobs: 2, shrink: true, shrinkBudget: 600, maxShrinks: 5, out: '', replay: '', stopOnFailure: false };
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  const val = () => args[++i] ?? usage(`${a} needs a value`);
  const num = () => {
    const v = Number(val());
    if (!Number.isInteger(v) || v < 0) usage(`${a}: not a non-negative integer`);
    return v;
  };
  switch (a) {
    case '--ops': opt.ops = num(); break;
    case '--seed': opt.seed = num(); break;
    case '--seqs': opt.seqs = Math.max(1, num()); break;
    case '--len': opt.len = Math.max(1, num()); break;
    case '--jobs': opt.jobs = Math.max(1, num()); break;
    case '--no-shrink': opt.shrink = false; break;
    case '--shrink-budget': opt.shrinkBudget = num(); break;
    case '--max-shrinks': opt.maxShrinks = num(); break;
    case '--out': opt.out = val(); break;
    case '--replay': opt.replay = val(); break;
    case '--stop-on-failure': opt.stopOnFailure = true; break;
    case '-h':
    case '--help':
      process.stdout.write(fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n') + '\n');
      process.exit(0);
    default:
      usage(`unknown argument ${a}`);
  }
}
if (process.getuid?.() !== 0) usage('must run as root (it mounts kernel overlayfs and FUSE)');
if (Number.isNaN(opt.seed)) opt.seed = Date.now() % 2 ** 31;
if (opt.out) fs.mkdirSync(opt.out, { recursive: true });

const t0 = Date.now();
const log = (s: string) => process.stdout.write(s + '\n');
const secs = (ms: number) => (ms / 1000).toFixed(1) + ' s';

let stopping = false;
process.on('SIGINT', () => {
  if (stopping) process.exit(130);
  stopping = true;
  log('\n(interrupted: finishing the running batches; ^C again to abort, leaving mounts behind)');
});

function save(r: Reproducer): void {
  if (!opt.out) return;
  const base = path.join(opt.out, `${r.id.seed}-${r.id.batch}-${r.dir}`);
  fs.writeFileSync(base + '.txt', formatReproducer(r) + '\n');
  fs.writeFileSync(base + '.sh', shellScript(r), { mode: 0o755 });
  log(`(written to ${base}.txt and .sh)`);
}

async function reduce(id: BatchId, dir: string): Promise<Reproducer> {
  const b = generateBatch(id);
  log(`reducing ${batchIdString(id)} ${dir} (budget ${opt.shrinkBudget} s) …`);
  const r = await shrink(b, dir, { budgetMs: opt.shrinkBudget * 1000, log });
  log(formatReproducer(r));
  save(r);
  return r;
}

if (opt.replay) {
  const m = /^(\d+):(\d+):(\d+)$/.exec(opt.replay) ?? usage('--replay wants SEED:BATCH:SEQ');
  const id: BatchId = { seed: Number(m[1]), batch: Number(m[2]), sequences: opt.seqs, opsPerSequence: opt.len };
  const k = Number(m[3]);
  if (k >= opt.seqs) usage(`sequence ${k} does not exist with --seqs ${opt.seqs}`);
  const r = await reduce(id, `s${k}`);
  process.exit(r.original.length ? 1 : 0);
}

log(`fuzz: seed ${opt.seed}, ${opt.ops} ops in batches of ${opt.seqs} sequences × ${opt.len} ops, ${opt.jobs} at a time`);
log(`(rerun with: npx tsx scripts/fuzz.ts --ops ${opt.ops} --seed ${opt.seed} --seqs ${opt.seqs} --len ${opt.len})`);

const perBatch = opt.seqs * opt.len;
const batches = Math.max(1, Math.ceil(opt.ops / perBatch));
let next = 0;
let opsRun = 0;
let divergentSeqs = 0;
let divergenceLines = 0;
let harnessErrors = 0;
const failing: { id: BatchId; dir: string }[] = [];

async function worker(): Promise<void> {
  while (next < batches && !stopping && !(opt.stopOnFailure && failing.length > 0)) {
    const id: BatchId = { seed: opt.seed, batch: next++, sequences: opt.seqs, opsPerSequence: opt.len };
    const r: BatchResult = await runBatch(generateBatch(id));
    opsRun += r.ops;
    const lines = [...r.failures.values()].reduce((n, l) => n + l.length, 0);
    divergenceLines += lines;
    const rate = opsRun / ((Date.now() - t0) / 1000);
    if (r.error) {
      harnessErrors++;
      log(`batch ${id.batch}: HARNESS ERROR after ${secs(r.ms)}: ${r.error.split('\n')[0]}`);
      continue;
    }
    log(`batch ${id.batch}: ${r.ops} ops, ${lines} divergence(s) in ${r.failures.size} sequence(s), ${secs(r.ms)}   [${opsRun}/${batches * perBatch} ops, ${rate.toFixed(0)} ops/s]`);
    for (const [dir, ls] of r.failures) {
      divergentSeqs++;
      log(`  ${dir}:`);
      for (const l of ls.slice(0, 20)) log(`    ${l}`);
      if (ls.length > 20) log(`    … ${ls.length - 20} more`);
      if (dir !== '*') failing.push({ id, dir });
    }
  }
}
await Promise.all(Array.from({ length: Math.min(opt.jobs, batches) }, worker));

const reproducers: Reproducer[] = [];
if (opt.shrink && failing.length > 0) {
  for (const f of failing.slice(0, opt.maxShrinks)) {
    if (stopping) break;
    try {
      reproducers.push(await reduce(f.id, f.dir));
    } catch (e) {
      harnessErrors++;
      log(`reducing ${batchIdString(f.id)} ${f.dir} failed: ${(e as Error)?.stack ?? e}`);
    }
  }
  for (const f of failing.slice(opt.maxShrinks)) {
    log(`not reduced: ${batchIdString(f.id)} ${f.dir}  (npx tsx scripts/fuzz.ts --replay ${f.id.seed}:${f.id.batch}:${f.dir.slice(1)} --seqs ${f.id.sequences} --len ${f.id.opsPerSequence})`);
  }
}

const elapsed = Date.now() - t0;
log('');
log(`== fuzz summary: seed ${opt.seed}`);
log(`   ${opsRun} operations in ${Math.ceil(opsRun / perBatch)} batches, ${secs(elapsed)} (${(opsRun / (elapsed / 1000)).toFixed(0)} ops/s incl. mounts, snapshots and reduction)`);
log(`   ${divergentSeqs} divergent sequence(s), ${divergenceLines} divergence line(s), ${harnessErrors} harness error(s)`);
if (reproducers.length) log(`   reduced: ${reproducers.map((r) => `${r.dir}@${r.id.batch} → ${r.ops.length} ops/${r.entries.length} entries`).join(', ')}`);
process.exit(divergentSeqs > 0 || harnessErrors > 0 ? 1 : 0);
