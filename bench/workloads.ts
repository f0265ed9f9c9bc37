// The workloads, as the rows of the table and the code that measures them on one mounted
// session. run.ts mounts; these only run commands against `session.root` and record results:
//
//   big set   (one session): sequential read cold + warm and random 4 KiB reads (fio, psync,
//             one job, JSON output), then the copy-up of a 1-byte write into the big file.
//   meta set  (one session): stat storm cold + warm (find | xargs stat), merged readdir
//             (ls -f) first and second listing; in the repetitions that include the write
//             workloads, then on the same mount: chmod of every tree file (copy-up), creation
//             of small files in the merged tree dirs, tar -x of the tarball.
//   depth set (one session per layer count): stat of names that live only in the bottom layer,
//             each looked up once on a fresh mount, timed inside one process.
//   mem set   (one session, --memory / full run): stat storm over 100k files, daemon RSS.
//
// Every value is a time (lower is better); IO rows also show the throughput it amounts to.

import * as path from 'node:path';
import { dropCaches, lines, runOk, timed, timedBash } from './common.ts';
import type { FsName, Session } from './filesystems.ts';
import type { BigSet, DepthSet, MemSet, MetaSet, Sizes } from './layers.ts';
import type { Results, RowDef } from './table.ts';

const MiB = 2 ** 20;

export function rowsFor(z: Sizes, opts: { memory: boolean }): RowDef[] {
  const mbs = (bytes: number) => ({ unit: 'MB/s', digits: 0, of: (ms: number) => bytes / 1e6 / (ms / 1000) });
  const k = (n: number) => (n >= 1000 ? `${n / 1000}k` : String(n));
  const big = `${z.bigMiB >= 1024 ? `${z.bigMiB / 1024} GiB` : `${z.bigMiB} MiB`}`;
  const rows: RowDef[] = [
    { id: 'seq-cold', label: `sequential read of a ${big} lower file, cold`, unit: 'ms', digits: 0, aux: mbs(z.bigMiB * MiB) },
    { id: 'seq-warm', label: `sequential read of a ${big} lower file, warm`, unit: 'ms', digits: 0, aux: mbs(z.bigMiB * MiB) },
    {
      id: 'rand',
      label: `random 4 KiB reads of that file (${z.randSeconds} s, warm)`,
      unit: 'µs/read',
      digits: 1,
      aux: { unit: 'IOPS', digits: 0, of: (us: number) => 1e6 / us },
    },
    { id: 'stat-cold', label: `stat storm: ${k(z.treeFiles)} files over 5 layers, cold`, unit: 'ms', digits: 0 },
    { id: 'stat-warm', label: `stat storm: ${k(z.treeFiles)} files over 5 layers, warm`, unit: 'ms', digits: 0 },
    { id: 'readdir-1', label: `merged readdir: ls -f, ${k(z.readdirEntries)} entries over 5 layers with whiteouts, 1st listing`, unit: 'ms', digits: 1 },
    { id: 'readdir-2', label: `merged readdir: ls -f, same directory, 2nd listing`, unit: 'ms', digits: 1 },
    { id: 'create', label: `small-file creation: ${k(z.createFiles)} × 4 KiB written and closed`, unit: 'ms', digits: 0 },
    { id: 'copyup-write', label: `copy-up: first 1-byte write into the ${big} lower file`, unit: 'ms', digits: 0 },
    { id: 'copyup-chmod', label: `copy-up: chmod of ${k(z.treeFiles)} lower files`, unit: 'ms', digits: 0 },
    { id: 'unpack', label: `unpack: tar -x of ${k(z.unpackFiles)} files`, unit: 'ms', digits: 0 },
    ...z.depths.map(
      (d): RowDef => ({
        id: `depth-${d}`,
        label: `depth: lookup of a name only in the bottom layer, ${d} layer${d > 1 ? 's' : ''}`,
        unit: 'µs/lookup',
        digits: 0,
      }),
    ),
    { id: 'rss-big', label: 'daemon peak RSS (VmHWM), big-file mounts', unit: 'MiB', digits: 1, agg: 'max', daemonOnly: true },
    { id: 'rss-meta', label: 'daemon peak RSS (VmHWM), tree mounts', unit: 'MiB', digits: 1, agg: 'max', daemonOnly: true },
    { id: 'rss-depth', label: `daemon peak RSS (VmHWM), depth mounts (up to ${Math.max(...z.depths)} layers)`, unit: 'MiB', digits: 1, agg: 'max', daemonOnly: true },
  ];
  if (opts.memory) {
    rows.push(
      { id: 'mem-storm', label: `memory check: stat storm over ${k(z.memFiles)} files (5 layers), cold`, unit: 'ms', digits: 0, daemonOnly: true },
      { id: 'mem-rss0', label: `memory check: daemon RSS right after mounting`, unit: 'MiB', digits: 1, daemonOnly: true },
      { id: 'mem-rss', label: `memory check: daemon RSS after the ${k(z.memFiles)}-file stat storm`, unit: 'MiB', digits: 1, daemonOnly: true },
      { id: 'mem-hwm', label: `memory check: daemon peak RSS (VmHWM) after it`, unit: 'MiB', digits: 1, daemonOnly: true, agg: 'max' },
    );
  }
  return rows;
}

export interface Ctx {
  z: Sizes;
  res: Results;
  fs: FsName;
  log(s: string): void;
}

/** Run one measurement; a failure becomes the cell's reason instead of ending the run. */
async function measure(c: Ctx, row: string, f: () => Promise<number>): Promise<void> {
  try {
    c.res.add(row, c.fs, await f());
  } catch (e) {
    const msg = (e as Error).message;
    c.log(`  ${c.fs} ${row}: ${msg}`);
    c.res.fail(row, c.fs, `failed: ${msg}`);
  }
}

/** Drop the page cache (and dentries/inodes); notes the run once if that is not permitted. */
async function cold(c: Ctx): Promise<void> {
  if (!(await dropCaches()) && !c.res.notes.some((n) => n.startsWith('drop_caches'))) {
    c.res.notes.push('drop_caches is not permitted here: "cold" means a fresh mount only (page cache underneath still warm).');
  }
}

// ------------------------------------------------------------------------------------------
// fio

interface FioRead {
  bw_bytes: number;
  iops: number;
  io_bytes: number;
  runtime: number;
}

async function fio(args: string[]): Promise<FioRead> {
  const r = await runOk('fio', ['--output-format=json', '--ioengine=psync', '--numjobs=1', '--invalidate=0', '--readonly', ...args]);
  const text = r.stdout.toString();
  const json = JSON.parse(text.slice(text.indexOf('{'))) as { jobs: { read: FioRead; error: number }[] };
  const job = json.jobs[0];
  if (!job || job.error) throw new Error(`fio job error ${job?.error}`);
  return job.read;
}

async function seqRead(file: string, bytes: number): Promise<number> {
  const r = await fio(['--name=seq', `--filename=${file}`, '--rw=read', '--bs=1M']);
  if (r.io_bytes !== bytes) throw new Error(`fio read ${r.io_bytes} of ${bytes} bytes`);
  return (r.io_bytes / r.bw_bytes) * 1000; // ms
}

async function randRead(file: string, seconds: number): Promise<number> {
  const r = await fio(['--name=rand', `--filename=${file}`, '--rw=randread', '--bs=4k', `--runtime=${seconds}`, '--time_based']);
  return 1e6 / r.iops; // µs per read
}

// ------------------------------------------------------------------------------------------
// sessions

export async function bigWorkloads(s: Session, set: BigSet, c: Ctx): Promise<void> {
  const file = path.join(s.root, set.file);
  await cold(c);
  await measure(c, 'seq-cold', () => seqRead(file, set.bytes));
  await measure(c, 'seq-warm', () => seqRead(file, set.bytes));
  await measure(c, 'rand', () => randRead(file, c.z.randSeconds));
  // Opening for writing copies the whole file up (kernel and fuse-overlayfs at open, unionfs-fuse
  // and layerfs when they choose to); the raw directory just writes. bash's own redirection: no
  // extra process. Written-back first (not timed): a 1 GiB copy dirties 1 GiB, and without a
  // sync whoever comes next pays for the one before (the row swung by 2x between runs).
  await runOk('sync', []);
  await measure(c, 'copyup-write', async () => (await timedBash('printf x 1<>"$1"', [file])).ms);
}

export const META_READ_ROWS = ['stat-cold', 'stat-warm', 'readdir-1', 'readdir-2'];
export const META_WRITE_ROWS = ['copyup-chmod', 'create', 'unpack'];

/** Stat storm cold and warm, then the merged readdir, first and second listing. */
export async function metaRead(s: Session, set: MetaSet, c: Ctx): Promise<void> {
  const tree = path.join(s.root, 'tree');
  const storm = async () => {
    const r = await timedBash('find "$1" -type f -print0 | xargs -0 stat -c %s', [tree]);
    const n = lines(r.out);
    if (n !== set.treeFiles) throw new Error(`stat saw ${n} of ${set.treeFiles} files`);
    return r.ms;
  };
  await cold(c);
  await measure(c, 'stat-cold', storm);
  await measure(c, 'stat-warm', storm);

  const listing = async (row: string) => {
    const r = await timed('ls', ['-f', path.join(s.root, 'ls')]);
    const n = lines(r.out) - 2; // . and ..
    if (n !== set.readdirEntries) {
      c.res.note(row, c.fs, `${c.fs} lists ${n} entries, not ${set.readdirEntries}${c.fs === 'unionfs-fuse' ? ': it does not know kernel-format whiteouts (char 0/0) and shows them as device files' : ''}`);
    }
    return r.ms;
  };
  await measure(c, 'readdir-1', () => listing('readdir-1'));
  await measure(c, 'readdir-2', () => listing('readdir-2'));
}

/** chmod of every tree file (copy-up), small-file creation, tar -x: on the same mount, after metaRead. */
export async function metaWrite(s: Session, set: MetaSet, c: Ctx): Promise<void> {
  await measure(c, 'copyup-chmod', async () => (await timed('xargs', ['-0', '-a', set.chmodList, 'chmod', '0640'], { cwd: s.root })).ms);

  // N files of 4 KiB, spread over the merged tree directories (each creation looks the name up
  // through the layers first); bash's printf builtin and redirection, no process per file.
  const create = 'd=$(head -c 4096 /dev/zero | tr "\\0" c); for ((i = 0; i < $1; i++)); do printf %s "$d" > "tree/d$((i % $2))/new$i"; done';
  await measure(c, 'create', async () => (await timedBash(create, [String(c.z.createFiles), String(set.treeDirs)], { cwd: s.root })).ms);

  await measure(c, 'unpack', async () => (await timed('tar', ['-xf', set.tarball, '-C', s.root])).ms);
}

/**
 * stat() of every name of a NUL-separated list, in a child node process that times only its
 * loop (a process's start-up would otherwise dominate the few ms that 1000 kernel lookups
 * take). Prints "<count> <ns>".
 */
const STAT_LOOP = `
const fs = require('node:fs');
const names = fs.readFileSync(process.argv[1], 'utf8').split('\\0').filter(Boolean);
const t = process.hrtime.bigint();
for (const p of names) fs.statSync(p);
console.log(names.length, String(process.hrtime.bigint() - t));
`;

export async function depthWorkload(s: Session, set: DepthSet, c: Ctx): Promise<void> {
  await measure(c, `depth-${set.depth}`, async () => {
    const r = await runOk(process.execPath, ['-e', STAT_LOOP, set.lookupList], { cwd: s.root });
    const [n, ns] = r.stdout.toString().trim().split(' ').map(Number) as [number, number];
    if (n !== set.names) throw new Error(`looked up ${n} of ${set.names} names`);
    return ns / 1000 / n; // µs per lookup
  });
}

export async function memWorkload(s: Session, set: MemSet, c: Ctx): Promise<void> {
  const toMiB = (kib: number) => kib / 1024;
  const m0 = s.mem();
  if (m0) c.res.add('mem-rss0', c.fs, toMiB(m0.rssKiB));
  await cold(c);
  await measure(c, 'mem-storm', async () => {
    const r = await timedBash('find "$1" -type f -print0 | xargs -0 stat -c %s', [path.join(s.root, 'tree')]);
    const n = lines(r.out);
    if (n !== set.files) throw new Error(`stat saw ${n} of ${set.files} files`);
    return r.ms;
  });
  const m1 = s.mem();
  if (m1) {
    c.res.add('mem-rss', c.fs, toMiB(m1.rssKiB));
    c.res.add('mem-hwm', c.fs, toMiB(m1.hwmKiB));
  }
}
