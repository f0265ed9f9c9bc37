// The fuzz harness's generator: the seeded PRNG, the namespace of a sequence, layer entries (a
// flat form of a layer set the shrinker can drop entries from) and random batches. Part of
// fuzz.ts, which describes the harness and re-exports this module.

import { op, type Op } from './engine.ts';
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
