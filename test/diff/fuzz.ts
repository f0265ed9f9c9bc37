// Random differential testing: seeded operation sequences over a small namespace, run on
// kernel overlayfs and on layerfs, compared after every operation (its result) and at the end
// (merged view, upper dir) by the differential engine.
//
// A BATCH is one random layer set (2–3 lowers, empty upper) holding N independent SEQUENCES,
// each confined to its own top-level directory s0/, s1/, … and all run on one pair of mounts
// (a mount costs a daemon start). Inside its directory a sequence uses a tiny namespace —
// names a b c d in s/, a b c e in s/d/, a b c in s/d/e/ — so operations collide: the same
// names are written, removed, renamed over, turned into dirs, linked, whited out.
//
// A sequence that diverges is re-run alone and reduced by delta debugging, first over its
// operations, then over its layer entries, to a minimal reproducer, printed as the seed that
// regenerates it, a scenario literal for scenarios.ts, and a shell script.
//
// Everything is a pure function of the seed (mulberry32), so a seed reproduces a run exactly.

import { repoRoot } from '../helpers/mounts.ts';
import { describeOp, diffScenario, op, type Op, type Scenario } from './engine.ts';
import { classify } from './known.ts';
import type { Node, Tree, WhiteoutFormat } from './layers.ts';
import { mulberry32 } from '../helpers/random.ts';

// ---------------------------------------------------------------------------
// PRNG

export { mulberry32 };

/** A 32-bit seed for part `k` of the run seeded with `seed` (batch seeds, sequence seeds). */
export function subSeed(seed: number, ...k: number[]): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const x of k) {
    h = Math.imul(h ^ (x + 0x7f4a7c15), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}

export class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** Pick a key by weight. */
  weighted<K extends string>(w: Partial<Record<K, number>>): K {
    const entries = Object.entries(w) as [K, number][];
    let r = this.next() * entries.reduce((s, [, x]) => s + x, 0);
    for (const [k, x] of entries) {
      r -= x;
      if (r < 0) return k;
    }
    return entries[entries.length - 1]![0];
  }
}

// ---------------------------------------------------------------------------
// the namespace of one sequence (paths relative to its directory)

/** Children names per directory of the namespace (a and d/b: sometimes dirs, with one child). */
const CHILDREN: Record<string, readonly string[]> = { '': ['a', 'b', 'c', 'd'], a: ['x'], d: ['a', 'b', 'c', 'e'], 'd/b': ['x'], 'd/e': ['a', 'b', 'c'] };
/** Every path of the namespace. */
export const NAMESPACE: readonly string[] = ['a', 'a/x', 'b', 'c', 'd', 'd/a', 'd/b', 'd/b/x', 'd/c', 'd/e', 'd/e/a', 'd/e/b', 'd/e/c'];
/** Symlink targets: relative, never '..' (a sequence must not reach outside its directory). */
const TARGETS = ['a', 'b', 'c', 'd', 'e', 'd/a', 'e/b', 'd/e', 'nowhere', '.'];
const CONTENTS = ['', 'x', 'hello\n', 'some longer content that spans a few words\n', '0123456789'];

// ---------------------------------------------------------------------------
// layer entries: a flat form of a layer set, so that the shrinker can drop single entries

/** A node without children (dirs get theirs from other entries). */
export type FlatNode = Exclude<Node, { type: 'dir' }> | (Omit<Extract<Node, { type: 'dir' }>, 'children'> & { type: 'dir' });

export interface LayerEntry {
  /** Lower index, 0 = top-most. */
  layer: number;
  /** Path relative to the layer root, e.g. 's3/d/e/a'. */
  path: string;
  node: FlatNode;
}

export interface Sequence {
  /** Its directory, e.g. 's3'. */
  dir: string;
  /** Ops with paths already prefixed by `dir`. */
  ops: Op[];
}

export interface Batch {
  id: BatchId;
  lowers: number;
  entries: LayerEntry[];
  sequences: Sequence[];
}

export interface BatchId {
  seed: number;
  batch: number;
  sequences: number;
  opsPerSequence: number;
}

export function batchIdString(id: BatchId): string {
  return `seed=${id.seed} batch=${id.batch} seqs=${id.sequences} len=${id.opsPerSequence}`;
}

const parentPath = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');

/** The layer set of some entries (every sequence dir present in every lower as a plain dir). */
export function entriesToTrees(lowers: number, dirs: readonly string[], entries: readonly LayerEntry[]): Tree[] {
  const trees: Tree[] = [];
  for (let l = 0; l < lowers; l++) {
    const root: Tree = {};
    const dirsByPath = new Map<string, Tree>([['', root]]);
    for (const d of dirs) {
      const children: Tree = {};
      root[d] = { type: 'dir', children };
      dirsByPath.set(d, children);
    }
    const mine = entries.filter((e) => e.layer === l).sort((a, b) => a.path.split('/').length - b.path.split('/').length);
    const files = new Set<string>();
    for (const e of mine) {
      const parent = dirsByPath.get(parentPath(e.path));
      if (!parent) continue; // its parent entry was dropped: so is it
      const name = e.path.slice(e.path.lastIndexOf('/') + 1);
      if (e.node.type === 'hardlink' && !files.has(e.node.to)) continue;
      if (e.node.type === 'dir') {
        const children: Tree = {};
        parent[name] = { ...e.node, children };
        dirsByPath.set(e.path, children);
      } else {
        parent[name] = { ...e.node } as Node;
        if (e.node.type === 'file') files.add(e.path);
      }
    }
    trees.push(root);
  }
  return trees;
}

/**
 * How the union resolves `p` considering lowers `from`.. only (entries as given; the sequence
 * dirs are plain dirs everywhere): null when absent, else its type and, for a dir, the layers
 * that merge there.
 */
function resolve(lowers: number, entries: readonly LayerEntry[], from: number, p: string): { dir: boolean; layers: number[] } | null {
  const at = (l: number, q: string) => entries.find((e) => e.layer === l && e.path === q)?.node;
  const parts = p.split('/');
  let layers = Array.from({ length: lowers - from }, (_, i) => from + i); // the sequence dir
  for (let i = 1; i < parts.length; i++) {
    const q = parts.slice(0, i + 1).join('/');
    let found: { dir: boolean; layers: number[] } | null = null;
    for (const l of layers) {
      const n = at(l, q);
      if (!n) continue;
      if (n.type === 'whiteout') break;
      if (!found) {
        found = { dir: n.type === 'dir', layers: [] };
        if (n.type !== 'dir') break;
      } else if (n.type !== 'dir') break;
      found.layers.push(l);
      if (n.type === 'dir' && n.opaque) break;
    }
    if (!found) return null;
    if (i < parts.length - 1 && !found.dir) return null;
    layers = found.layers;
    if (i === parts.length - 1) return found;
  }
  return { dir: true, layers };
}

/**
 * Layer sets the kernel reads consistently: a whiteout only inside a directory that another
 * layer merges with. (The kernel lists a directory that only one layer has straight from that
 * layer, whiteouts included — see the scenario 'whiteouts inside a lower dir that no other
 * layer merges with'. The generator and the shrinker keep clear of that.)
 */
export function wellFormed(lowers: number, entries: readonly LayerEntry[]): boolean {
  for (const e of entries) {
    if (e.node.type !== 'whiteout') continue;
    const parent = parentPath(e.path);
    const r = resolve(lowers, entries, e.layer, parent);
    if (!r || !r.dir || r.layers.length < 2 || r.layers[0] !== e.layer) return false;
  }
  return true;
}

function genNode(rng: Rng, p: string, canWhiteout: boolean, layerFiles: string[]): FlatNode | null {
  // d and d/e are mostly directories (else most of the namespace would be ENOTDIR), but not always.
  const isDirName = p === 'd' || p === 'd/e';
  const kind = isDirName
    ? rng.weighted({ none: 20, file: 6, dir: 60, opaque: 8, symlink: 3, whiteout: canWhiteout ? 6 : 0, fifo: 1, hardlink: layerFiles.length ? 1 : 0 })
    : rng.weighted({
        none: 35,
        file: 30,
        dir: CHILDREN[p] ? 20 : 6,
        opaque: CHILDREN[p] ? 3 : 1,
        symlink: 7,
        whiteout: canWhiteout ? 12 : 0,
        fifo: 2,
        hardlink: layerFiles.length ? 3 : 0,
      });
  switch (kind) {
    case 'none':
      return null;
    case 'file': {
      const n: FlatNode = { type: 'file', content: rng.pick(CONTENTS), mode: rng.pick([0o644, 0o644, 0o600, 0o755, 0o640]) };
      if (rng.chance(0.2)) n.xattrs = { 'user.k': rng.pick(['v', 'lower value']) };
      if (rng.chance(0.15)) Object.assign(n, { uid: 1000, gid: 1000 });
      return n;
    }
    case 'dir':
    case 'opaque': {
      const n: FlatNode = { type: 'dir', mode: rng.pick([0o755, 0o755, 0o750, 0o700, 0o775]) };
      if (kind === 'opaque') n.opaque = rng.pick(['kernel', 'oci'] as const);
      if (rng.chance(0.1)) n.xattrs = { 'user.dir': 'd' };
      if (rng.chance(0.1)) Object.assign(n, { uid: 1000, gid: 1000 });
      return n;
    }
    case 'symlink':
      return { type: 'symlink', target: rng.pick(TARGETS) };
    case 'whiteout':
      // Not 'xattr': the kernel cannot rmdir a dir holding xattr whiteouts (its emptiness
      // check counts them), which would end every such sequence in a cascade of explained-but-
      // unmatchable divergences. Hand-written scenarios cover xattr whiteouts and that quirk.
      return { type: 'whiteout', format: rng.pick(['kernel', 'oci'] as const satisfies readonly WhiteoutFormat[]) };
    case 'fifo':
      return { type: 'fifo', mode: 0o644 };
    case 'hardlink':
      return { type: 'hardlink', to: rng.pick(layerFiles) };
  }
}

/** Random layer entries for one sequence dir, generated bottom-most lower first. */
function genLayers(rng: Rng, lowers: number, dir: string, entries: LayerEntry[]): void {
  for (let l = lowers - 1; l >= 0; l--) {
    const files: string[] = [];
    const visit = (rel: string) => {
      for (const name of CHILDREN[rel]!) {
        const p = rel ? `${rel}/${name}` : name;
        const full = `${dir}/${p}`;
        const parentFull = rel ? `${dir}/${rel}` : dir;
        const pr = resolve(lowers, entries, l, parentFull);
        const canWhiteout = !!pr && pr.dir && pr.layers.length >= 2 && pr.layers[0] === l;
        const node = genNode(rng, p, canWhiteout, files);
        if (!node) continue;
        entries.push({ layer: l, path: full, node });
        if (node.type === 'file') files.push(full);
        if (node.type === 'dir' && CHILDREN[p]) visit(p);
      }
    };
    visit('');
  }
}

function genOp(rng: Rng, dir: string): Op {
  const P = () => {
    const r = rng.next();
    if (r < 0.02) return `${dir}/new`;
    return `${dir}/${rng.pick(NAMESPACE)}`;
  };
  /** For directory operations: directory-ish names more often. */
  const D = () => (rng.chance(0.5) ? `${dir}/${rng.pick(['d', 'd/e', 'd/e', 'a', 'd/b'])}` : P());
  const kind = rng.weighted({
    writeFile: 10,
    appendFile: 7,
    writeAt: 3,
    truncate: 4,
    unlink: 8,
    mkdir: 8,
    rmdir: 6,
    rename: 12,
    symlink: 4,
    link: 5,
    chmod: 4,
    chown: 2,
    setxattr: 3,
    removexattr: 1,
    getxattr: 1,
    listxattr: 1,
    readFile: 6,
    readdir: 7,
    stat: 4,
    lstat: 4,
    readlink: 2,
    mkfifo: 1,
    rmrf: 1,
    mv: 1,
  });
  switch (kind) {
    case 'writeFile':
      return op.writeFile(P(), rng.pick(CONTENTS));
    case 'appendFile':
      return op.appendFile(P(), rng.pick(['+', 'appended\n']));
    case 'writeAt':
      return op.writeAt(P(), rng.pick([0, 2, 100]), rng.pick(['W', 'written']));
    case 'truncate':
      return op.truncate(P(), rng.pick([0, 1, 3, 20, 5000]));
    case 'unlink':
      return op.unlink(P());
    case 'mkdir':
      return op.mkdir(D(), rng.chance(0.3) ? rng.pick([0o700, 0o750]) : undefined);
    case 'rmdir':
      return op.rmdir(D());
    case 'rename':
      return rng.chance(0.25) ? op.rename(D(), D()) : op.rename(P(), P());
    case 'symlink':
      return op.symlink(rng.pick(TARGETS), P());
    case 'link':
      return op.link(P(), P());
    case 'chmod':
      return op.chmod(P(), rng.pick([0o600, 0o644, 0o700, 0o755, 0o4755, 0o1777]));
    case 'chown':
      return op.chown(P(), rng.pick([0, 1000, 1]), rng.pick([0, 1000, 2]));
    case 'setxattr':
      return op.setxattr(P(), rng.pick(['user.k', 'user.new']), rng.pick(['v', 'w', '']));
    case 'removexattr':
      return op.removexattr(P(), rng.pick(['user.k', 'user.new']));
    case 'getxattr':
      return op.getxattr(P(), rng.pick(['user.k', 'user.new']));
    case 'listxattr':
      return op.listxattr(P());
    case 'readFile':
      return op.readFile(P());
    case 'readdir':
      return op.readdir(rng.chance(0.2) ? dir : D());
    case 'stat':
      return op.stat(P());
    case 'lstat':
      return op.lstat(P());
    case 'readlink':
      return op.readlink(P());
    case 'mkfifo':
      return op.mkfifo(P());
    case 'rmrf':
      return op.rmrf(P());
    case 'mv':
      return op.mv(D(), P());
  }
}

/** Generate batch number `id.batch` of the run seeded `id.seed` (deterministic). */
export function generateBatch(id: BatchId): Batch {
  const rng = new Rng(subSeed(id.seed, id.batch));
  const lowers = rng.chance(0.5) ? 2 : 3;
  const entries: LayerEntry[] = [];
  const sequences: Sequence[] = [];
  for (let k = 0; k < id.sequences; k++) {
    const dir = `s${k}`;
    const srng = new Rng(subSeed(id.seed, id.batch, k));
    genLayers(srng, lowers, dir, entries);
    const ops: Op[] = [];
    for (let i = 0; i < id.opsPerSequence; i++) ops.push(genOp(srng, dir));
    sequences.push({ dir, ops });
  }
  return { id, lowers, entries, sequences };
}

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

// ---------------------------------------------------------------------------
// printing a reproducer

function octal(n: number): string {
  return '0o' + n.toString(8);
}

function tsOpts(o: object, skip: string[]): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
    if (skip.includes(k) || v === undefined) continue;
    if (k === 'mode' && typeof v === 'number') parts.push(`mode: ${octal(v)}`);
    else parts.push(`${/^[a-z]\w*$/i.test(k) ? k : JSON.stringify(k)}: ${JSON.stringify(v)}`);
  }
  return parts.length ? `{ ${parts.join(', ')} }` : '';
}

/** A Tree as TypeScript using the constructors of layers.ts. */
export function tsTree(t: Tree, indent = ''): string {
  const inner = indent + '  ';
  const items = Object.entries(t).map(([name, n]) => `${inner}${/^[a-z_]\w*$/i.test(name) ? name : JSON.stringify(name)}: ${tsNode(n, inner)},`);
  return items.length ? `{\n${items.join('\n')}\n${indent}}` : '{}';
}

function tsNode(n: Node, indent: string): string {
  const args = (...xs: string[]) => xs.filter(Boolean).join(', ');
  switch (n.type) {
    case 'file':
      return `file(${args(JSON.stringify(typeof n.content === 'string' ? n.content : (n.content ?? '').toString()), tsOpts(n, ['type', 'content']))})`;
    case 'dir': {
      const kids = tsTree(n.children ?? {}, indent);
      if (n.opaque) return `opaqueDir(${args(JSON.stringify(n.opaque), kids, tsOpts(n, ['type', 'children', 'opaque']))})`;
      return `dir(${args(kids, tsOpts(n, ['type', 'children']))})`;
    }
    case 'symlink':
      return `symlink(${args(JSON.stringify(n.target), tsOpts(n, ['type', 'target']))})`;
    case 'fifo':
      return `fifo(${tsOpts(n, ['type'])})`;
    case 'hardlink':
      return `hardlink(${JSON.stringify(n.to)})`;
    case 'whiteout':
      return `whiteout(${JSON.stringify(n.format)})`;
    case 'chardev':
    case 'blockdev':
      return `${n.type}(${args(String(n.major), String(n.minor), tsOpts(n, ['type', 'major', 'minor']))})`;
  }
}

function tsOp(o: Op): string {
  const m = (mode: number | undefined) => (mode === undefined ? '' : `, ${octal(mode)}`);
  switch (o.op) {
    case 'writeFile':
      return `op.writeFile(${JSON.stringify(o.path)}, ${JSON.stringify(o.content)}${m(o.mode)})`;
    case 'mkdir':
      return `op.mkdir(${JSON.stringify(o.path)}${m(o.mode)})`;
    case 'mkfifo':
      return `op.mkfifo(${JSON.stringify(o.path)}${m(o.mode)})`;
    case 'chmod':
      return `op.chmod(${JSON.stringify(o.path)}, ${octal(o.mode)})`;
    default: {
      // Every other constructor takes the op's fields in declaration order.
      const { op: name, ...rest } = o;
      return `op.${name}(${Object.values(rest).filter((v) => v !== undefined).map((v) => JSON.stringify(v)).join(', ')})`;
    }
  }
}

/** The reproducer as a scenario literal for test/diff/scenarios.ts. */
export function scenarioLiteral(r: Reproducer): string {
  const trees = entriesToTrees(r.lowers, [r.dir], r.entries);
  const lines = [
    `  {`,
    `    name: ${JSON.stringify(`fuzz: ${batchIdString(r.id)} ${r.dir}`)},`,
    `    layers: {`,
    `      lowers: [`,
    ...trees.map((t) => `        ${tsTree(t, '        ')},`),
    `      ],`,
    `    },`,
    `    ops: [`,
    ...r.ops.map((o) => `      ${tsOp(o)},`),
    `    ],`,
    `  },`,
  ];
  return lines.join('\n');
}

const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function shBuild(t: Tree, dir: string, format: 'kernel' | 'layerfs', out: string[], links: string[]): void {
  let xw = false;
  for (const [name, n] of Object.entries(t)) {
    const p = `${dir}/${name}`;
    const own = (x: { uid?: number; gid?: number }, h = '') => {
      if (x.uid !== undefined || x.gid !== undefined) out.push(`chown ${h}${x.uid ?? 0}:${x.gid ?? 0} ${sq(p)}`);
    };
    switch (n.type) {
      case 'file':
        out.push(`printf %s ${sq(typeof n.content === 'string' ? n.content : '')} > ${sq(p)}`);
        own(n);
        out.push(`chmod ${(n.mode ?? 0o644).toString(8)} ${sq(p)}`);
        for (const [k, v] of Object.entries(n.xattrs ?? {})) out.push(`setfattr -h -n ${sq(k)} -v ${sq(v)} ${sq(p)}`);
        break;
      case 'dir': {
        out.push(`mkdir ${sq(p)}`);
        shBuild(n.children ?? {}, p, format, out, links);
        if (n.opaque === 'oci' && format === 'layerfs') out.push(`: > ${sq(`${p}/.wh..wh..opq`)}`);
        else if (n.opaque === 'user') out.push(`setfattr -n user.overlay.opaque -v y ${sq(p)}`);
        else if (n.opaque) out.push(`setfattr -n trusted.overlay.opaque -v y ${sq(p)}`);
        for (const [k, v] of Object.entries(n.xattrs ?? {})) out.push(`setfattr -n ${sq(k)} -v ${sq(v)} ${sq(p)}`);
        own(n);
        out.push(`chmod ${(n.mode ?? 0o755).toString(8)} ${sq(p)}`);
        break;
      }
      case 'symlink':
        out.push(`ln -s ${sq(n.target)} ${sq(p)}`);
        own(n, '-h ');
        break;
      case 'fifo':
        out.push(`mkfifo -m ${(n.mode ?? 0o644).toString(8)} ${sq(p)}`);
        own(n);
        break;
      case 'chardev':
      case 'blockdev':
        out.push(`mknod -m ${(n.mode ?? 0o600).toString(8)} ${sq(p)} ${n.type === 'chardev' ? 'c' : 'b'} ${n.major} ${n.minor}`);
        own(n);
        break;
      case 'hardlink':
        links.push(`ln "$L"/${sq(n.to)} ${sq(p)}`);
        break;
      case 'whiteout':
        if (n.format === 'oci' && format === 'layerfs') out.push(`: > ${sq(`${dir}/.wh.${name}`)}`);
        else if (n.format === 'xattr' || n.format === 'user-xattr') {
          const pre = n.format === 'xattr' ? 'trusted' : 'user';
          out.push(`: > ${sq(p)}`, `setfattr -n ${pre}.overlay.whiteout -v y ${sq(p)}`);
          if (!xw) out.push(`setfattr -n ${pre}.overlay.opaque -v x ${sq(dir)}`);
          xw = true;
        } else out.push(`mknod ${sq(p)} c 0 0`);
        break;
    }
  }
}

function shOp(o: Op): string {
  const perl = (code: string, ...args: string[]) => `perl -e ${sq(code)} ${args.map(sq).join(' ')}`;
  switch (o.op) {
    case 'writeFile':
      return perl('open(F,">",$ARGV[0]) or die "$!\\n"; print F $ARGV[1]; close F or die "$!\\n"', o.path, o.content);
    case 'appendFile':
      return perl('open(F,">>",$ARGV[0]) or die "$!\\n"; print F $ARGV[1]; close F or die "$!\\n"', o.path, o.content);
    case 'writeAt':
      return perl('open(F,"+<",$ARGV[0]) or die "$!\\n"; seek(F,$ARGV[1],0); print F $ARGV[2]; close F or die "$!\\n"', o.path, String(o.offset), o.content);
    case 'truncate':
      return perl('truncate($ARGV[0],$ARGV[1]) or die "$!\\n"', o.path, String(o.size));
    case 'readFile':
      return `cat ${sq(o.path)}`;
    case 'readdir':
      return perl('opendir(D,$ARGV[0]) or die "$!\\n"; print join(" ", sort grep {!/^\\.\\.?$/} readdir D), "\\n"', o.path);
    case 'stat':
      return `stat -L -c '%F %a %u:%g %s %h' ${sq(o.path)}`;
    case 'lstat':
      return `stat -c '%F %a %u:%g %s %h' ${sq(o.path)}`;
    case 'mkdir':
      return perl('mkdir($ARGV[0], oct($ARGV[1])) or die "$!\\n"', o.path, (o.mode ?? 0o777).toString(8));
    case 'rmdir':
      return perl('rmdir($ARGV[0]) or die "$!\\n"', o.path);
    case 'unlink':
      return perl('unlink($ARGV[0]) or die "$!\\n"', o.path);
    case 'rename':
      return perl('rename($ARGV[0],$ARGV[1]) or die "$!\\n"', o.from, o.to);
    case 'symlink':
      return perl('symlink($ARGV[0],$ARGV[1]) or die "$!\\n"', o.target, o.path);
    case 'readlink':
      return `readlink ${sq(o.path)}`;
    case 'link':
      return perl('link($ARGV[0],$ARGV[1]) or die "$!\\n"', o.from, o.to);
    case 'chmod':
      return perl('chmod(oct($ARGV[1]),$ARGV[0]) or die "$!\\n"', o.path, o.mode.toString(8));
    case 'chown':
      return perl('chown($ARGV[1],$ARGV[2],$ARGV[0]) or die "$!\\n"', o.path, String(o.uid), String(o.gid));
    case 'lchown':
      return `chown -h ${o.uid}:${o.gid} ${sq(o.path)}`;
    case 'utimes':
      return perl('utime($ARGV[1],$ARGV[2],$ARGV[0]) or die "$!\\n"', o.path, String(o.atime), String(o.mtime));
    case 'mkfifo':
      return `mkfifo ${o.mode === undefined ? '' : `-m ${o.mode.toString(8)} `}${sq(o.path)}`;
    case 'mknod':
      return `mknod -m ${(o.mode ?? 0o600).toString(8)} ${sq(o.path)} ${o.kind === 'chr' ? 'c' : 'b'} ${o.major} ${o.minor}`;
    case 'setxattr':
      return `setfattr -n ${sq(o.name)} -v ${sq(o.value === '' ? '""' : o.value)} ${sq(o.path)}`;
    case 'getxattr':
      return `getfattr --only-values -n ${sq(o.name)} ${sq(o.path)}`;
    case 'removexattr':
      return `setfattr -x ${sq(o.name)} ${sq(o.path)}`;
    case 'listxattr':
      return `getfattr -m '^user\\.' ${sq(o.path)}`;
    case 'rmrf':
      return `rm -rf ${sq(o.path)}`;
    case 'mv':
      return `mv ${sq(o.from)} ${sq(o.to)}`;
    case 'cpa':
      return `cp -a ${sq(o.from)} ${sq(o.to)}`;
    case 'readAt':
      return `dd if=${sq(o.path)} bs=1 skip=${o.offset} count=${o.length} status=none`;
    case 'checksum':
      return `sha256sum < ${sq(o.path)}`;
    case 'allocated':
      return `du -B1 ${sq(o.path)}`;
    case 'rename2':
      return `: rename2 ${o.flags} is not expressible in sh: ${sq(describeOp(o))}`;
    case 'lsattr':
      return `lsattr -d ${sq(o.path)}`;
    case 'chattr':
      return `chattr ${sq(o.mode)} ${sq(o.path)}`;
  }
}

/** The reproducer as a self-contained shell script: `sh repro.sh kernel|layerfs` (as root). */
export function shellScript(r: Reproducer): string {
  const trees = entriesToTrees(r.lowers, [r.dir], r.entries);
  const build = (format: 'kernel' | 'layerfs') => {
    const out: string[] = [];
    trees.forEach((t, i) => {
      const links: string[] = [];
      out.push(`L="$D/lower${i}"; mkdir "$L"; cd "$L"`);
      shBuild(t, '.', format, out, links);
      out.push(...links);
    });
    return out.map((l) => `  ${l}`).join('\n');
  };
  const lowerdir = Array.from({ length: r.lowers }, (_, i) => `$D/lower${i}`).join(':');
  return `#!/bin/sh
# fuzz reproducer: ${batchIdString(r.id)} ${r.dir}
# usage (as root): sh THIS kernel   or   sh THIS layerfs   — then diff the two outputs.
set -u
T=\${1:-kernel}
LAYERFS=\${LAYERFS:-${repoRoot}/bin/layerfs}
D=$(mktemp -d /tmp/layerfs-repro-XXXXXX)
mkdir "$D/upper" "$D/work" "$D/mnt"
if [ "$T" = kernel ]; then
${build('kernel')}
else
${build('layerfs')}
fi
cd /
if [ "$T" = kernel ]; then
  mount -t overlay overlay -o lowerdir=${lowerdir},upperdir=$D/upper,workdir=$D/work "$D/mnt" || exit 1
else
  "$LAYERFS" mount -o lowerdir=${lowerdir},upperdir=$D/upper,workdir=$D/work "$D/mnt" || exit 1
fi
cd "$D/mnt"
n=0
r() { if out=$("$@" 2>&1); then echo "#$n ok $out"; else echo "#$n ERR $out"; fi; n=$((n+1)); }
${r.ops.map((o) => `r ${shOp(o)}    # ${describeOp(o)}`).join('\n')}
cd /
if [ "$T" = kernel ]; then umount "$D/mnt"; else "$LAYERFS" umount "$D/mnt"; fi
echo "== upper"
(cd "$D/upper" && find . -mindepth 1 | sort | while read -r p; do stat -c '%n %F %a %u:%g %s %t:%T' "$p"; done; getfattr -R -h -d -m - . 2>/dev/null | grep -v '^trusted.overlay.origin\\|^trusted.overlay.impure\\|^trusted.overlay.uuid')
rm -rf "$D"
`;
}

export function formatReproducer(r: Reproducer): string {
  const head = r.original.length
    ? `minimal reproducer (${r.ops.length} ops, ${r.entries.length} layer entries; ${r.trials} trials, ${(r.ms / 1000).toFixed(0)} s${r.partial ? ', stopped at the time budget' : ''})`
    : 'the sequence does NOT diverge when run alone (an interaction within the batch, or a flaky result); the batch seed reproduces it';
  return [
    `=== fuzz divergence: ${batchIdString(r.id)} ${r.dir}`,
    `replay: npx tsx scripts/fuzz.ts --replay ${r.id.seed}:${r.id.batch}:${r.dir.slice(1)} --seqs ${r.id.sequences} --len ${r.id.opsPerSequence}`,
    head,
    'divergences:',
    ...r.divergences.map((d) => `  ${d}`),
    '--- scenario literal (paste into test/diff/scenarios.ts):',
    scenarioLiteral(r),
    '--- shell script (sh repro.sh kernel; sh repro.sh layerfs):',
    shellScript(r),
  ].join('\n');
}
