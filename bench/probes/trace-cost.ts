// What the trace hooks cost (issue 7): Resolver.find through 5 layers, uncached and cached, with
// tracing off and on (a no-op sink), and optionally against another checkout's union core
// (LAYERFS_BASE=/path/to/checkout, e.g. one without the hooks: `git archive <commit> src | tar
// -x -C DIR` plus a node_modules symlink). Rounds rotate the order of the variants; medians.
//
//     node --import tsx bench/probes/trace-cost.ts
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UnionFs } from '../../src/union/unionfs.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-trace-cost-'));
try {
  for (let l = 0; l < 5; l++) {
    for (let d = 0; d < 5; d++) {
      fs.mkdirSync(`${root}/l${l}/tree/d${d}`, { recursive: true });
      for (let f = l; f < 100; f += 5) fs.writeFileSync(`${root}/l${l}/tree/d${d}/f${f}`, 'x');
    }
  }
  const lowers = [0, 1, 2, 3, 4].map((l) => `${root}/l${l}`);
  type Core = { resolver: { find(p: string): unknown; invalidate(p: string): void } };
  const variants: [string, Core][] = [];
  if (process.env.LAYERFS_BASE) {
    const base = (await import(path.resolve(process.env.LAYERFS_BASE, 'src/union/unionfs.ts'))) as { UnionFs: new (o: object) => Core };
    variants.push(['base', new base.UnionFs({ lowerdirs: lowers })]);
  }
  variants.push(['trace off', new UnionFs({ lowerdirs: lowers })]);
  const on = new UnionFs({ lowerdirs: lowers });
  let events = 0;
  on.setTrace(() => void events++);
  variants.push(['trace on', on]);

  const file = '/tree/d0/f99';
  const uncached = (u: Core, n: number) => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      for (const q of [file, '/tree/d0', '/tree']) u.resolver.invalidate(q);
      u.resolver.find(file);
    }
    return Number(process.hrtime.bigint() - t0) / n / 1000;
  };
  const cached = (u: Core, n: number) => {
    u.resolver.find(file);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) u.resolver.find(file);
    return Number(process.hrtime.bigint() - t0) / n / 1000;
  };
  const res = new Map<string, number[]>();
  const add = (k: string, v: number) => res.set(k, [...(res.get(k) ?? []), v]);
  for (const [, u] of variants) uncached(u, 1000), cached(u, 200_000); // warm-up
  const rounds = 21;
  for (let r = 0; r < rounds; r++) {
    const order = [...variants.slice(r % variants.length), ...variants.slice(0, r % variants.length)];
    for (const [k, u] of order) add(`${k}, uncached`, uncached(u, 2000));
    for (const [k, u] of order) add(`${k}, cached`, cached(u, 500_000));
  }
  const med = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1]!;
  console.log(`Resolver.find ${file} through 5 layers, median of ${rounds} rounds (load ${os.loadavg()[0]!.toFixed(1)}):`);
  for (const [k, v] of res) console.log(`  ${k.padEnd(22)} ${med(v).toFixed(k.endsWith('uncached') ? 1 : 4)} µs`);
  console.log(`  (events delivered with trace on: ${events})`);
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
