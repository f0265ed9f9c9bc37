// In-process micro-benchmarks of the union core (benchmark.js) on the suite's plain layer
// directories, no FUSE: the Resolver's lookup (src/union/lookup.ts) and the readdir merge
// (src/union/readdir.ts), built the way the union tests build them (a UnionFs over the lowers,
// cf. test/union/_helpers.ts), with the bare syscall on the flat copy as the baseline.

import Benchmark from 'benchmark';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mergedReaddir } from '../src/union/readdir.ts';
import { UnionFs } from '../src/union/unionfs.ts';
import { lowerPath, type DepthSet, type LayerSet, type MetaSet } from './layers.ts';

export interface MicroResult {
  name: string;
  /** Mean time per operation, µs. */
  meanUs: number;
  /** Relative margin of error, %. */
  rme: number;
  samples: number;
  error?: string;
}

/**
 * Forget a path in the Resolver's cache, so that the next find() resolves its last component
 * again in every layer (its directory stays resolved and indexed, as in a running daemon, where
 * the kernel asks for one name in a known directory).
 */
function forget(u: UnionFs, p: string): void {
  u.resolver.invalidate(p);
}

function core(set: LayerSet): UnionFs {
  // Read-only (no upper): the lowers are only read.
  return new UnionFs({ lowerdirs: set.lowers.map((_, i) => lowerPath(set, i)) });
}

export function runMicro(meta: MetaSet, depths: DepthSet[], maxTime: number): MicroResult[] {
  const cases: [string, () => void][] = [];
  let sink = 0;

  const u = core(meta);
  // The last file of tree/d0 that lives in the bottom layer: found after 4 misses in d0.
  const bottom = Math.floor((Math.min(100, meta.treeFiles) - 1) / 5) * 5 + 4;
  const file = `/tree/d0/f${bottom}`;
  if (u.resolver.find(file)?.layer !== meta.lowers.length - 1) throw new Error(`micro: ${file} is not in the bottom layer`);
  cases.push([`Resolver.find ${file} (bottom of 5 layers), uncached`, () => {
    forget(u, file);
    sink += u.resolver.find(file)!.layer;
  }]);
  cases.push([`Resolver.find ${file}, cached`, () => void (sink += u.resolver.find(file)!.layer)]);
  const flatFile = path.join(meta.flat, file);
  cases.push([`baseline: lstat of that file in a plain directory`, () => void (sink += fs.lstatSync(flatFile).size)]);

  for (const d of depths) {
    const ud = core(d);
    cases.push([`Resolver.find /d/t0 (bottom of ${d.depth} layer${d.depth > 1 ? 's' : ''}), uncached`, () => {
      forget(ud, '/d/t0');
      sink += ud.resolver.find('/d/t0')!.layer;
    }]);
  }

  const ls = u.resolver.get('/ls');
  const n = mergedReaddir(u.layers, ls, u.wf).length;
  if (n !== meta.readdirEntries) throw new Error(`micro: mergedReaddir gave ${n} entries, not ${meta.readdirEntries}`);
  cases.push([`mergedReaddir /ls (${n} entries, 5 layers, ${meta.whiteouts} whiteouts)`, () => void (sink += mergedReaddir(u.layers, ls, u.wf).length)]);
  const flatLs = path.join(meta.flat, 'ls');
  cases.push([`baseline: readdir (with types) of the flat ${n}-entry directory`, () => void (sink += fs.readdirSync(flatLs, { withFileTypes: true }).length)]);

  const out: MicroResult[] = [];
  for (const [name, fn] of cases) {
    const b = new Benchmark(name, fn, { maxTime, minSamples: 5 });
    b.run();
    out.push({
      name,
      meanUs: b.stats.mean * 1e6,
      rme: b.stats.rme,
      samples: b.stats.sample.length,
      error: b.error ? String(b.error) : undefined,
    });
  }
  if (sink < 0) throw new Error('unreachable'); // keeps the results alive
  return out;
}

export function renderMicro(rs: MicroResult[]): string {
  const fmt = (us: number) => (us >= 100 ? us.toFixed(0) : us >= 1 ? us.toFixed(2) : us.toFixed(3));
  const out = ['| benchmark | mean (µs/op) | ± (%) | samples |', '| --- | ---: | ---: | ---: |'];
  for (const r of rs) {
    out.push(r.error ? `| ${r.name} | — (${r.error.replace(/\|/g, '/')}) | | |` : `| ${r.name} | ${fmt(r.meanUs)} | ${r.rme.toFixed(1)} | ${r.samples} |`);
  }
  return out.join('\n');
}
