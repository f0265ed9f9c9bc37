// The fuzz harness's runner and shrinker: a batch run on both implementations, divergences
// attributed to sequences, and delta debugging to a minimal reproducer. Part of fuzz.ts.

import { diffScenario, type Op, type Scenario } from './engine.ts';
import { batchIdString, entriesToTrees, wellFormed, type Batch, type BatchId, type LayerEntry, type Sequence } from './fuzz-gen.ts';
import { classify } from './known.ts';
import type { Tree } from './layers.ts';

// ---------------------------------------------------------------------------
// running a batch

/** Interleave the sequences' ops round-robin; returns the op list and each op's sequence. */
function interleave(seqs: readonly Sequence[]): { ops: Op[]; owner: number[] } {
  const ops: Op[] = [];
  const owner: number[] = [];
  const n = Math.max(0, ...seqs.map((s) => s.ops.length));
  for (let i = 0; i < n; i++) {
    seqs.forEach((s, k) => {
      const o = s.ops[i];
      if (o) {
        ops.push(o);
        owner.push(k);
      }
    });
  }
  return { ops, owner };
}

export function batchScenario(b: Batch, seqs: readonly Sequence[] = b.sequences, entries: readonly LayerEntry[] = b.entries, name = `fuzz ${batchIdString(b.id)}`): Scenario {
  const { ops } = interleave(seqs);
  const dirs = seqs.map((s) => s.dir);
  return { name, layers: { lowers: entriesToTrees(b.lowers, dirs, entries.filter((e) => dirs.includes(e.path.split('/')[0]!))) }, ops };
}

/** The scenario name the fuzzer's divergences are classified under in known.ts. */
export const FUZZ_SCENARIO = 'fuzz';

/** Unexplained divergences of a scenario run on both sides. */
async function unexplained(s: Scenario): Promise<string[]> {
  return classify(FUZZ_SCENARIO, await diffScenario(s, { opTimeoutMs: 30_000 })).unexplained;
}

/** Which sequence (by dir) a divergence line is about; null when it cannot tell. */
function lineDir(line: string, ops: readonly Op[], owner: readonly number[], seqs: readonly Sequence[]): string | null {
  const m = /^op #(\d+) /.exec(line);
  if (m) return seqs[owner[Number(m[1])]!]?.dir ?? null;
  const p = /^(?:merged|upper)(?: \(raw names\))?: "?(s\d+)[/:"]/.exec(line) ?? /modified a lower layer: lower\d+: (s\d+)[/:]/.exec(line);
  return p ? p[1]! : null;
}

export interface BatchResult {
  id: BatchId;
  ops: number;
  ms: number;
  /** Unexplained divergences per sequence dir ('*' = not attributable to one sequence). */
  failures: Map<string, string[]>;
  /** A harness error (mount failure …) instead of a comparison. */
  error?: string;
}

/** Divergence lines of a whole batch, per sequence dir ('*': not attributable). */
export function attribute(b: Batch, lines: readonly string[]): Map<string, string[]> {
  const { ops, owner } = interleave(b.sequences);
  const out = new Map<string, string[]>();
  for (const line of lines) {
    const d = lineDir(line, ops, owner, b.sequences) ?? '*';
    out.set(d, [...(out.get(d) ?? []), line]);
  }
  return out;
}

export async function runBatch(b: Batch): Promise<BatchResult> {
  const t0 = Date.now();
  const s = batchScenario(b);
  let failures = new Map<string, string[]>();
  try {
    failures = attribute(b, await unexplained(s));
  } catch (e) {
    return { id: b.id, ops: s.ops.length, ms: Date.now() - t0, failures, error: String((e as Error)?.stack ?? e) };
  }
  return { id: b.id, ops: s.ops.length, ms: Date.now() - t0, failures };
}

// ---------------------------------------------------------------------------
// shrinking

/** A rough kind of a divergence line, to keep a reduction on the same bug. */
function kindOf(line: string): string {
  const m = /^op #\d+ (\w+)\(/.exec(line);
  if (m) return `op:${m[1]}`;
  const s = /^(merged|upper)(?: \(raw names\))?: .*?: (only in \w+|\w+):/.exec(line);
  if (s) return `${s[1]}:${s[2]!.startsWith('only in') ? s[2] : s[2]}`;
  return line.split(':')[0]!;
}

/** Classic ddmin: a 1-minimal sublist of `items` for which `fails` holds. */
export async function ddmin<T>(items: T[], fails: (xs: T[]) => Promise<boolean>, budget: () => boolean): Promise<T[]> {
  let cur = items;
  let n = 2;
  while (cur.length >= 2 && budget()) {
    const chunk = Math.ceil(cur.length / n);
    const parts: T[][] = [];
    for (let i = 0; i < cur.length; i += chunk) parts.push(cur.slice(i, i + chunk));
    let reduced = false;
    for (let i = 0; i < parts.length && budget(); i++) {
      if (parts.length > 2 && (await fails(parts[i]!))) {
        cur = parts[i]!;
        n = 2;
        reduced = true;
        break;
      }
      const complement = parts.filter((_, j) => j !== i).flat();
      if (await fails(complement)) {
        cur = complement;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= cur.length) break;
      n = Math.min(cur.length, n * 2);
    }
  }
  return cur;
}

export interface Reproducer {
  id: BatchId;
  dir: string;
  /** Divergences of the reduced case. */
  divergences: string[];
  /** Divergences of the sequence as generated, run alone (empty: it does not fail alone). */
  original: string[];
  lowers: number;
  entries: LayerEntry[];
  ops: Op[];
  trials: number;
  ms: number;
  /** Reduction stopped at the time budget. */
  partial: boolean;
}

/**
 * Re-run one sequence of a batch alone and reduce it to a minimal failing case: delta
 * debugging over its operations, then over its layer entries (keeping the layer set
 * well-formed and the failure of the same kind).
 */
export async function shrink(b: Batch, dir: string, opts: { budgetMs?: number; log?: (s: string) => void } = {}): Promise<Reproducer> {
  const t0 = Date.now();
  const budgetMs = opts.budgetMs ?? 10 * 60_000;
  const log = opts.log ?? (() => {});
  const seq = b.sequences.find((s) => s.dir === dir)!;
  const mine = b.entries.filter((e) => e.path.split('/')[0] === dir);
  let trials = 0;
  let harnessErrors = 0;
  const runCase = async (entries: LayerEntry[], ops: Op[]): Promise<string[]> => {
    trials++;
    try {
      return await unexplained(batchScenario(b, [{ dir, ops }], entries, `fuzz shrink ${dir}`));
    } catch (e) {
      // A trial that could not run (a mount failing …) does not count as reproducing.
      harnessErrors++;
      log(`  shrink ${dir}: trial ${trials} could not run: ${String((e as Error)?.message ?? e).split('\n')[0]}`);
      if (harnessErrors > 5) throw new Error(`shrink ${dir}: giving up after ${harnessErrors} harness errors`);
      return [];
    }
  };
  const original = await runCase(mine, seq.ops);
  const res: Reproducer = { id: b.id, dir, divergences: original, original, lowers: b.lowers, entries: mine, ops: seq.ops, trials, ms: 0, partial: false };
  if (original.length === 0) {
    res.ms = Date.now() - t0;
    return res;
  }
  const kinds = new Set(original.map(kindOf));
  const sameBug = (d: string[]) => d.length > 0 && d.some((l) => kinds.has(kindOf(l)));
  const budget = () => Date.now() - t0 < budgetMs;
  let best = original;
  let ops = seq.ops;
  ops = await ddmin(ops, async (xs) => {
    const d = await runCase(mine, xs);
    if (!sameBug(d)) return false;
    best = d;
    log(`  shrink ${dir}: ${xs.length} ops fail (${trials} trials)`);
    return true;
  }, budget);
  let entries = mine;
  entries = await ddmin(entries, async (xs) => {
    if (!wellFormed(b.lowers, xs)) return false;
    const d = await runCase(xs, ops);
    if (!sameBug(d)) return false;
    best = d;
    log(`  shrink ${dir}: ${xs.length} layer entries fail (${trials} trials)`);
    return true;
  }, budget);
  if (entries.length === 1 && budget()) {
    const d = await runCase([], ops);
    if (sameBug(d)) {
      entries = [];
      best = d;
    }
  }
  // The final case once more, so the printed divergences are its own.
  const final = await runCase(entries, ops);
  return { ...res, divergences: final.length ? final : best, entries, ops, trials, ms: Date.now() - t0, partial: !budget() };
}
