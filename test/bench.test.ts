// The benchmark suite's smoke check: `bench/run.ts --quick` runs to the end, its table has a
// number or an explicit reason in every workload × filesystem cell, and it leaves no mount,
// daemon or temp dir behind. Nothing here is about speed.

import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FS_NAMES } from '../bench/filesystems.ts';
import { QUICK } from '../bench/layers.ts';
import { parseTable } from '../bench/table.ts';
import { rowsFor } from '../bench/workloads.ts';
import { run } from './helpers/exec.ts';
import { makeTmp, readMountinfo, repoRoot } from './helpers/mounts.ts';

const asRoot = process.getuid?.() === 0 ? test : test.skip;
const TSX = 'file://' + path.join(repoRoot, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');

/** A value ("1,234", "12.5 (800 MB/s)"), possibly with footnote marks. */
const NUMBER = /^\d[\d,]*(\.\d+)?( \([\d,.]+ [^)]+\))?( \[\d+\])*$/;
/** No value, and why: "— (cannot mount 128 layers: …)", "— (no daemon)". */
const REASON = /^— \(.+\)( \[\d+\])*$/;

asRoot('bench --quick: a complete table, and nothing left mounted', async (t) => {
  const dir = makeTmp(t, 'layerfs-test-bench-');
  const out = path.join(dir, 'latest.md');
  const r = await run(process.execPath, ['--import', TSX, path.join(repoRoot, 'bench', 'run.ts'), '--quick', '--out', out], {
    cwd: repoRoot,
    timeoutMs: 8 * 60_000,
  });
  const scratch = /scratch dir (\S+);/.exec(r.stderr)?.[1];
  t.is(r.code, 0, r.stderr.slice(-3000));
  t.truthy(scratch, 'the suite names its scratch dir');

  // Nothing left behind: mounts, daemons serving them, the scratch dir.
  t.deepEqual(
    readMountinfo().filter((m) => m.mountPoint.startsWith(scratch!)).map((m) => m.mountPoint),
    [],
    'mounts left behind',
  );
  const daemons = fs.readdirSync('/proc').filter((p) => {
    if (!/^\d+$/.test(p)) return false;
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(scratch!);
    } catch {
      return false;
    }
  });
  t.deepEqual(daemons, [], 'processes still working in the scratch dir');
  t.false(fs.existsSync(scratch!), 'scratch dir removed');
  const loops = await run('losetup', ['-a']);
  t.false(loops.stdout.toString().includes(scratch!), 'loop device of the scratch image detached');

  // The table: the same on stdout and in the file, every cell a number or a reason.
  const md = fs.readFileSync(out, 'utf8');
  t.true(r.stdout.toString().includes(md.trim()), 'stdout has the table');
  t.regex(md, /machine: .+ cores/);
  t.regex(md, /load average \(1\/5\/15 min\): [\d.]+ [\d.]+ [\d.]+ at start/);
  t.regex(md, /command: `npm run bench -- --quick/);
  const { header, rows } = parseTable(md);
  t.deepEqual(header, ['workload', 'unit', 'runs', ...FS_NAMES, 'layerfs / kernel', 'layerfs / fuse-overlayfs']);
  const defs = rowsFor(QUICK, { memory: false });
  t.deepEqual(
    rows.map((r) => r[0]),
    defs.map((d) => d.label),
    'one row per workload',
  );
  for (const [i, row] of rows.entries()) {
    const def = defs[i]!;
    t.is(row.length, header.length, `${def.label}: column count`);
    FS_NAMES.forEach((name, k) => {
      const cell = row[k + 3]!;
      t.true(NUMBER.test(cell) || REASON.test(cell), `${def.label} × ${name}: neither a number nor a reason: ${cell}`);
      t.false(cell.includes('not measured'), `${def.label} × ${name}: not measured`);
      // Our own baselines and layerfs itself must always be measured.
      if (name === 'raw' || name === 'kernel overlayfs' || name === 'layerfs') {
        if (def.daemonOnly && name !== 'layerfs') t.is(cell, '— (no daemon)');
        else t.regex(cell, NUMBER, `${def.label} × ${name}`);
      }
    });
    t.regex(row[2]!, /^[1-9]\d*$/, `${def.label}: runs`);
    for (const k of [8, 9]) t.regex(row[k]!, /^(\d+\.\d\d×|n\/a)$/, `${def.label}: ratio column`);
  }
  // The micro-benchmarks ran too.
  t.regex(md, /\| Resolver\.find .+ \| [\d.]+ \|/);
  t.regex(md, /\| mergedReaddir .+ \| [\d.]+ \|/);
});
