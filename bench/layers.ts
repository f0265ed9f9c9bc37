// Layer sets for the benchmark suite. Each set is built once per run and shared, read-only, by
// every union filesystem (each mount gets its own upper and work dir); the raw-directory
// baseline gets `flat`, a plain copy of what the union shows, so that its writes never touch
// the lowers.
//
// On disk, below the set's directory:
//   L/0 … L/N-1   the lowers, 0 the top-most. Mounts are made with cwd L and lowerdir=0:1:…,
//                 which keeps the option string short (a kernel mount's options must fit in a
//                 page: 128 absolute temp paths do not).
//   flat/         the merged view as one plain directory (for the raw baseline)
//   *.list        NUL-separated paths relative to the mount root, for xargs -0 -a

import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeWhiteout } from '../src/union/whiteout.ts';
import { runOk } from './common.ts';

export interface Sizes {
  /** The big lower file for the IO workloads, MiB. */
  bigMiB: number;
  /** Files in the stat-storm / chmod tree (100 per directory, spread over 5 layers). */
  treeFiles: number;
  /** Entries the merged readdir directory shows. */
  readdirEntries: number;
  /** Files of 4 KiB created by the small-file workload. */
  createFiles: number;
  /** Files in the tarball unpacked into the mount. */
  unpackFiles: number;
  /** Layer counts of the depth workload. */
  depths: number[];
  /** Names looked up per depth measurement (each once, on a fresh mount). */
  depthNames: number;
  /** Files of the memory check's stat storm (0: no memory check). */
  memFiles: number;
  /** Seconds of random 4 KiB reads per measurement. */
  randSeconds: number;
}

export const FULL: Sizes = {
  bigMiB: 1024,
  treeFiles: 10_000,
  readdirEntries: 10_000,
  createFiles: 10_000,
  unpackFiles: 20_000,
  depths: [1, 16, 64, 128],
  depthNames: 1000,
  memFiles: 100_000,
  randSeconds: 2,
};

export const QUICK: Sizes = {
  bigMiB: 64,
  treeFiles: 1000,
  readdirEntries: 1000,
  createFiles: 1000,
  unpackFiles: 2000,
  depths: [1, 16, 64, 128],
  depthNames: 100,
  memFiles: 0,
  randSeconds: 1,
};

/** Layers of the tree / readdir / memory sets. */
export const META_LAYERS = 5;
const PER_DIR = 100;

export interface LayerSet {
  name: string;
  dir: string;
  /** cwd for mounting: the lowers are its entries `lowers`. */
  lowerRoot: string;
  /** Lower names relative to lowerRoot, top-most first. */
  lowers: string[];
  flat: string;
}

function newSet(root: string, name: string, n: number): LayerSet {
  const dir = path.join(root, name);
  const lowerRoot = path.join(dir, 'L');
  const lowers = Array.from({ length: n }, (_, i) => String(i));
  for (const l of lowers) fs.mkdirSync(path.join(lowerRoot, l), { recursive: true });
  const flat = path.join(dir, 'flat');
  fs.mkdirSync(flat, { recursive: true });
  return { name, dir, lowerRoot, lowers, flat };
}

export function lowerPath(s: LayerSet, i: number): string {
  return path.join(s.lowerRoot, s.lowers[i]!);
}

function writeList(file: string, paths: string[]): string {
  fs.writeFileSync(file, paths.join('\0') + '\0');
  return file;
}

// ------------------------------------------------------------------------------------------
// the big file

export interface BigSet extends LayerSet {
  /** Relative to the mount root. */
  file: string;
  bytes: number;
}

/** One lower holding big.bin (incompressible-ish data), and a separate copy in flat/. */
export function makeBigSet(root: string, mib: number): BigSet {
  const s = newSet(root, 'big', 1);
  // 1 MiB of pseudo-random bytes (xorshift), repeated: no all-zero pages anywhere.
  const chunk = Buffer.alloc(1 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < chunk.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    chunk.writeUInt32LE(x >>> 0, i);
  }
  for (const target of [path.join(lowerPath(s, 0), 'big.bin'), path.join(s.flat, 'big.bin')]) {
    const fd = fs.openSync(target, 'w');
    try {
      for (let i = 0; i < mib; i++) fs.writeSync(fd, chunk);
    } finally {
      fs.closeSync(fd);
    }
  }
  return { ...s, file: 'big.bin', bytes: mib * 2 ** 20 };
}

// ------------------------------------------------------------------------------------------
// the metadata set: a tree of small files and one big merged directory, over 5 layers

export interface MetaSet extends LayerSet {
  treeFiles: number;
  treeDirs: number;
  /** Entries `ls -f ls` must show (without . and ..). */
  readdirEntries: number;
  /** Whiteouts planted in the readdir directory (kernel format, char 0/0). */
  whiteouts: number;
  /** tree/dK/fI for every tree file, for chmod. */
  chmodList: string;
  /** The tarball for the unpack workload (top directory pkg/). */
  tarball: string;
}

/**
 * tree/d0 … tree/dD-1: every directory exists in all 5 layers (merged), file fI lives in
 * layer I mod 5. ls/: names spread over the 5 layers, some shadowed by a higher layer, some
 * hidden by whiteouts in the layer above; the merged listing has exactly `entries` names.
 */
export function makeTreeFiles(s: LayerSet, files: number, opts: { flat: boolean }): number {
  const dirs = Math.ceil(files / PER_DIR);
  const n = s.lowers.length;
  for (let d = 0; d < dirs; d++) {
    for (let l = 0; l < n; l++) fs.mkdirSync(path.join(lowerPath(s, l), 'tree', `d${d}`), { recursive: true });
    if (opts.flat) fs.mkdirSync(path.join(s.flat, 'tree', `d${d}`), { recursive: true });
  }
  const body = Buffer.alloc(64, 'y');
  for (let i = 0; i < files; i++) {
    const rel = path.join('tree', `d${Math.floor(i / PER_DIR)}`, `f${i}`);
    fs.writeFileSync(path.join(lowerPath(s, i % n), rel), body);
    if (opts.flat) fs.writeFileSync(path.join(s.flat, rel), body);
  }
  return dirs;
}

export async function makeMetaSet(root: string, z: Sizes): Promise<MetaSet> {
  const s = newSet(root, 'meta', META_LAYERS);
  const treeDirs = makeTreeFiles(s, z.treeFiles, { flat: true });

  // ls/: per layer `unique` names of its own; `shared` names in every layer (shown once, from
  // the top); in each layer but the bottom, `wh` whiteouts hiding names of the layer below.
  // Merged: 5*unique - 4*wh + shared = entries, with shared = 4*wh.
  const n = META_LAYERS;
  const wh = Math.max(1, Math.floor(z.readdirEntries / 100));
  const shared = (n - 1) * wh;
  const unique = Math.floor(z.readdirEntries / n);
  const flatLs = path.join(s.flat, 'ls');
  fs.mkdirSync(flatLs);
  let entries = 0;
  for (let l = 0; l < n; l++) {
    const d = path.join(lowerPath(s, l), 'ls');
    fs.mkdirSync(d);
    for (let j = 0; j < unique; j++) {
      fs.writeFileSync(path.join(d, `n${l}-${j}`), '');
      // hidden by a whiteout in the layer above?
      if (!(l > 0 && j < wh)) {
        fs.writeFileSync(path.join(flatLs, `n${l}-${j}`), '');
        entries++;
      }
    }
    for (let j = 0; j < shared; j++) fs.writeFileSync(path.join(d, `s${j}`), String(l));
    if (l < n - 1) for (let j = 0; j < wh; j++) makeWhiteout(path.join(d, `n${l + 1}-${j}`));
  }
  for (let j = 0; j < shared; j++) fs.writeFileSync(path.join(flatLs, `s${j}`), '0');
  entries += shared;

  const chmodList = writeList(
    path.join(s.dir, 'chmod.list'),
    Array.from({ length: z.treeFiles }, (_, i) => `tree/d${Math.floor(i / PER_DIR)}/f${i}`),
  );

  // The tarball: pkg/aX/bY/fZ, 100 files per directory, sizes 0 … 4 KiB.
  const src = path.join(s.dir, 'tar-src');
  const data = Buffer.alloc(4096, 'z');
  for (let i = 0; i < z.unpackFiles; i++) {
    const d = path.join(src, 'pkg', `a${Math.floor(i / 1000)}`, `b${Math.floor(i / PER_DIR) % 10}`);
    if (i % PER_DIR === 0) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, `f${i}`), data.subarray(0, (i * 37) % 4097));
  }
  const tarball = path.join(s.dir, 'unpack.tar');
  await runOk('tar', ['-cf', tarball, '-C', src, 'pkg']);
  fs.rmSync(src, { recursive: true, force: true });

  return { ...s, treeFiles: z.treeFiles, treeDirs, readdirEntries: entries, whiteouts: (n - 1) * wh, chmodList, tarball };
}

// ------------------------------------------------------------------------------------------
// depth: a path that lives only in the bottom of N layers

export interface DepthSet extends LayerSet {
  depth: number;
  names: number;
  /** d/t0 … d/tM-1, each only in the bottom layer. */
  lookupList: string;
}

/** N lowers, each with d/xI (so d is merged through all of them); d/tJ only in the bottom one. */
export function makeDepthSet(root: string, depth: number, names: number): DepthSet {
  const s = newSet(root, `depth${depth}`, depth);
  for (let l = 0; l < depth; l++) {
    fs.mkdirSync(path.join(lowerPath(s, l), 'd'));
    fs.writeFileSync(path.join(lowerPath(s, l), 'd', `x${l}`), '');
  }
  fs.mkdirSync(path.join(s.flat, 'd'));
  for (let l = 0; l < depth; l++) fs.writeFileSync(path.join(s.flat, 'd', `x${l}`), '');
  const rel = Array.from({ length: names }, (_, j) => `d/t${j}`);
  for (const r of rel) {
    fs.writeFileSync(path.join(lowerPath(s, depth - 1), r), '');
    fs.writeFileSync(path.join(s.flat, r), '');
  }
  return { ...s, depth, names, lookupList: writeList(path.join(s.dir, 'lookup.list'), rel) };
}

// ------------------------------------------------------------------------------------------
// memory: a big tree over 5 layers (no flat copy: only the daemons are measured)

export interface MemSet extends LayerSet {
  files: number;
}

export function makeMemSet(root: string, files: number): MemSet {
  const s = newSet(root, 'mem', META_LAYERS);
  makeTreeFiles(s, files, { flat: false });
  return { ...s, files };
}
