// The benchmark suite (issue 5): every workload on five filesystems over identical layer sets
// in one run — the raw directory, kernel overlayfs, fuse-overlayfs, unionfs-fuse and layerfs
// (whatever `bin/layerfs mount` runs) — as one Markdown table on stdout and in
// bench/results/latest.md. As root:
//
//   npm run bench                      full run (< 10 min on 2 cores)
//   npm run bench -- --quick           smoke check: small sizes, one repetition (< 2 min)
//   npm run bench -- --memory          only the memory check (stat storm over 100k files; it
//                                      takes minutes, so it is not part of the full run), to
//                                      bench/results/memory.md
//
// Options: --reps N (default 3; --quick 1), --write-reps N (repetitions that include the write
// workloads, default: as many as --reps), --mem-files N (size of the memory check), --only NAME,NAME (filesystems, by substring), --skip big,meta,depth,micro
// (parts), --out FILE (instead of bench/results/latest.md).
//
// Modules: layers.ts builds the layer sets, filesystems.ts mounts and unmounts the five,
// workloads.ts measures, micro.ts runs the in-process benchmark.js cases, table.ts renders.
// Everything lives in a scratch ext4 image below one temp dir (scratch.ts), removed at the end;
// every mount is unmounted in finally blocks and on SIGINT/SIGTERM.

import * as fs from 'node:fs';
import { stopEngine } from './engine.ts';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dropCachesAllowed, loadavg, machine, runOk, versionOf } from './common.ts';
import { FS_NAMES, RUNNERS, forceUnmountAll, layerfsLibraries, mountsBelow, type FsName, type Runner, type Session } from './filesystems.ts';
import { FULL, QUICK, makeBigSet, makeDepthSet, makeMemSet, makeMetaSet, type LayerSet, type Sizes } from './layers.ts';
import { renderMicro, runMicro, type MicroResult } from './micro.ts';
import { makeScratch } from './scratch.ts';
import { Results, renderTable } from './table.ts';
import { META_READ_ROWS, META_WRITE_ROWS, bigWorkloads, depthWorkload, memWorkload, metaRead, metaWrite, rowsFor, type Ctx } from './workloads.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PARTS = ['big', 'meta', 'depth', 'micro', 'memory'] as const;
type Part = (typeof PARTS)[number];

interface Args {
  quick: boolean;
  memoryOnly: boolean;
  reps: number;
  /** Repetitions that include the write workloads (chmod copy-up, creation, unpack). */
  writeReps: number;
  /** Files of the memory check (default: the full run's 100k). */
  memFiles: number;
  only: FsName[];
  parts: Set<Part>;
  out: string;
}

function usage(msg?: string): never {
  if (msg) process.stderr.write(`bench: ${msg}\n`);
  process.stderr.write(
    [
      'usage: npm run bench -- [--quick | --memory] [--reps N] [--write-reps N] [--mem-files N] [--only FS,FS] [--skip PART,PART] [--out FILE]',
      `  --only: filesystems by substring (${FS_NAMES.join(', ')}); --skip: parts (big, meta, depth, micro)`,
      '  --reps N: repetitions (default 3, --quick 1); --write-reps N: of them, those with chmod/creation/unpack (default: all)',
      '  --out FILE: where the Markdown goes (default bench/results/latest.md, --memory: memory.md); runs as root',
      '',
    ].join('\n'),
  );
  process.exit(msg ? 2 : 0);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, memoryOnly: false, reps: 0, writeReps: 0, memFiles: 0, only: [...FS_NAMES], parts: new Set(PARTS.filter((p) => p !== 'memory')), out: path.join(ROOT, 'bench', 'results', 'latest.md') };
  for (let i = 0; i < argv.length; i++) {
    const o = argv[i]!;
    const val = () => argv[++i] ?? usage(`${o} needs a value`);
    if (o === '--quick') a.quick = true;
    else if (o === '--memory') a.memoryOnly = true;
    else if (o === '--reps') a.reps = Number(val());
    else if (o === '--write-reps') a.writeReps = Number(val());
    else if (o === '--mem-files') a.memFiles = Number(val());
    else if (o === '--out') a.out = path.resolve(val());
    else if (o === '--only') {
      const want = val().split(',');
      a.only = FS_NAMES.filter((n) => want.some((w) => n.includes(w)));
    } else if (o === '--skip') {
      for (const p of val().split(',')) {
        if (!(PARTS as readonly string[]).includes(p)) usage(`unknown part ${p}`);
        a.parts.delete(p as Part);
      }
    } else if (o === '--help' || o === '-h') usage();
    else usage(`unknown option ${o}`);
  }
  if (a.quick && a.memoryOnly) usage('--quick and --memory do not go together');
  if (a.memoryOnly) {
    a.parts = new Set(['memory']);
    // Not over the full run's table.
    if (!argv.includes('--out')) a.out = path.join(ROOT, 'bench', 'results', 'memory.md');
  }
  if (!a.reps) a.reps = a.quick ? 1 : 3;
  // The write rows swing most between runs on a shared machine: they get every repetition.
  if (!a.writeReps) a.writeReps = a.reps;
  for (const n of [a.reps, a.writeReps]) if (!Number.isInteger(n) || n < 1) usage('--reps and --write-reps take a positive integer');
  return a;
}

const log = (s: string): void => void process.stderr.write(s + '\n');

/** Set by SIGINT/SIGTERM: no new session starts, and the cleanup runs once. */
let signalled: NodeJS.Signals | undefined;

/** Remove a session's upper, work dir and mount point — never through a mount still there. */
function removeSlot(slot: string): void {
  const left = mountsBelow(slot);
  if (left.length) throw new Error(`still mounted, not removing ${slot}: ${left.join(', ')}`);
  fs.rmSync(slot, { recursive: true, force: true });
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) usage('run as root (mounts, drop_caches, package installs)');
  const t0 = Date.now();
  const startMachine = machine();
  const command = `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`;

  await runOk('bash', [path.join(ROOT, 'scripts', 'bench-setup.sh')], { timeoutMs: 900_000 });

  const z: Sizes = { ...(args.quick ? QUICK : FULL) };
  if (args.memFiles) z.memFiles = args.memFiles;
  const runners = RUNNERS.filter((r) => args.only.includes(r.name));
  const res = new Results();
  // Room for the sets (the big file twice), one copy-up of it at a time, the uppers.
  const { base: scratch, dir: work } = await makeScratch(args.quick ? 2 : 8, log);
  log(`bench: ${command}; scratch dir ${scratch}; load ${startMachine.load}`);
  // layerfs' mounts are served by an engine of the run's own (started by the first mount,
  // stopped at the end): its memory is what the memory rows report for layerfs.
  const engineDir = path.join(scratch, 'engine');
  fs.mkdirSync(engineDir, { mode: 0o700 });
  process.env.LAYERFS_ENGINE_DIR = engineDir;

  // Run once, whoever asks first: the end of main, or a signal (main's finally then waits for it).
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await forceUnmountAll(scratch, log);
      for (const note of stopEngine(path.join(ROOT, 'bin', 'layerfs'), engineDir, process.env)) log(`bench: ${note}`);
      const left = mountsBelow(scratch);
      if (left.length) {
        log(`bench: could not unmount ${left.join(', ')}; leaving ${scratch} in place`);
        process.exitCode = 1;
        return;
      }
      fs.rmSync(scratch, { recursive: true, force: true });
    })());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (signalled) return;
      signalled = sig;
      log(`\nbench: ${sig}: unmounting and removing ${scratch}`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  let micro: MicroResult[] = [];
  try {
    const ctx = (fs: FsName): Ctx => ({ z, res, fs, log });
    /** One mount of one set on one filesystem; a mount failure becomes the rows' reason. */
    const session = async (r: Runner, set: LayerSet, rows: string[], rssRow: string | null, body: (s: Session) => Promise<void>): Promise<void> => {
      if (signalled) throw new Error(`stopped by ${signalled}`);
      const slot = path.join(work, 'slots', `${set.name}-${r.name.replace(/\W+/g, '_')}`);
      const t0 = Date.now();
      const since = (t: number) => ((Date.now() - t) / 1000).toFixed(1);
      let s: Session;
      try {
        s = await r.mount(set, slot);
      } catch (e) {
        const msg = (e as Error).message.split('\n')[0]!;
        log(`  ${r.name}: cannot mount ${set.name}: ${msg}`);
        for (const row of rows) res.fail(row, r.name, `cannot mount ${set.lowers.length} layer${set.lowers.length > 1 ? 's' : ''}: ${msg}`);
        // Peak RSS is the maximum over the mounts that worked.
        if (rssRow) res.note(rssRow, r.name, `${r.name} could not mount the ${set.name} set, which is not included`);
        removeSlot(slot);
        return;
      }
      const t1 = Date.now();
      let t2 = t1;
      try {
        await body(s);
      } finally {
        t2 = Date.now();
        const m = s.mem();
        if (m && rssRow) res.add(rssRow, r.name, m.hwmKiB / 1024);
        await s.unmount();
      }
      const t3 = Date.now();
      removeSlot(slot);
      log(`  ${set.name} on ${r.name}: ${since(t0)} s (mount ${((t1 - t0) / 1000).toFixed(1)}, workloads ${((t2 - t1) / 1000).toFixed(1)}, unmount ${((t3 - t2) / 1000).toFixed(1)}, cleanup ${since(t3)})`);
    };
    const rotated = (rep: number): Runner[] => runners.map((_, i) => runners[(i + rep) % runners.length]!);
    const timedStep = async <T>(what: string, f: () => Promise<T> | T): Promise<T> => {
      const t = Date.now();
      const v = await f();
      log(`bench: ${what}: ${((Date.now() - t) / 1000).toFixed(1)} s (load ${loadavg()})`);
      return v;
    };

    const sets = path.join(work, 'sets');
    const big = args.parts.has('big') ? await timedStep(`building a ${z.bigMiB} MiB file (and its raw copy)`, () => makeBigSet(sets, z.bigMiB)) : null;
    const needMeta = args.parts.has('meta') || args.parts.has('micro');
    const meta = needMeta ? await timedStep('building the tree / readdir set and the tarball', () => makeMetaSet(sets, z)) : null;
    const needDepth = args.parts.has('depth') || args.parts.has('micro');
    const depths = needDepth ? await timedStep(`building the depth sets (${z.depths.join(', ')} layers)`, () => z.depths.map((d) => makeDepthSet(sets, d, z.depthNames))) : [];

    const looped = args.parts.has('big') || args.parts.has('meta') || args.parts.has('depth');
    const reps = looped ? Math.max(args.reps, args.writeReps) : 0;
    for (let rep = 0; rep < reps; rep++) {
      log(`bench: repetition ${rep + 1}/${reps} (load ${loadavg()})`);
      const read = rep < args.reps;
      const write = rep < args.writeReps;
      if (big && read) {
        for (const r of rotated(rep)) {
          await session(r, big, ['seq-cold', 'seq-warm', 'rand', 'copyup-write'], r.daemon ? 'rss-big' : null, (s) => bigWorkloads(s, big, ctx(r.name)));
        }
      }
      if (meta && args.parts.has('meta')) {
        const rows = [...(read ? META_READ_ROWS : []), ...(write ? META_WRITE_ROWS : [])];
        for (const r of rotated(rep)) {
          await session(r, meta, rows, r.daemon ? 'rss-meta' : null, async (s) => {
            if (read) await metaRead(s, meta, ctx(r.name));
            if (write) await metaWrite(s, meta, ctx(r.name));
          });
        }
      }
      if (args.parts.has('depth') && read) {
        for (const d of depths) {
          for (const r of rotated(rep)) await session(r, d, [`depth-${d.depth}`], r.daemon ? 'rss-depth' : null, (s) => depthWorkload(s, d, ctx(r.name)));
        }
      }
    }

    if (args.parts.has('micro') && meta) {
      micro = await timedStep('core micro-benchmarks (benchmark.js)', () => runMicro(meta, depths, args.quick ? 0.2 : 1));
    }

    if (args.parts.has('memory') && z.memFiles > 0) {
      const mem = await timedStep(`building the memory set (${z.memFiles} files over 5 layers)`, () => makeMemSet(sets, z.memFiles));
      for (const r of runners.filter((x) => x.daemon)) {
        await session(r, mem, ['mem-storm', 'mem-rss0', 'mem-rss', 'mem-hwm'], null, (s) => memWorkload(s, mem, ctx(r.name)));
      }
    }
  } finally {
    await cleanup();
  }

  // ---------------------------------------------------------------------------------------
  // the report

  const daemons = new Set(RUNNERS.filter((r) => r.daemon).map((r) => r.name));
  const rows = rowsFor(z, { memory: args.parts.has('memory') && z.memFiles > 0 }).filter((row) => {
    if (args.memoryOnly) return row.id.startsWith('mem-');
    const part = row.id.startsWith('mem-') ? 'memory' : /^(seq|rand|copyup-write|rss-big)/.test(row.id) ? 'big' : /^(depth|rss-depth)/.test(row.id) ? 'depth' : 'meta';
    return args.parts.has(part);
  });
  for (const row of rows) {
    for (const n of FS_NAMES) {
      if (!args.only.includes(n)) res.fail(row.id, n, 'not run (--only)');
      else if (!res.get(row.id, n)?.values.length && !(row.daemonOnly && !daemons.has(n))) res.fail(row.id, n, 'no run succeeded');
    }
  }
  const end = machine();
  const secs = (Date.now() - t0) / 1000;
  const git = await versionOf('git', ['-C', ROOT, 'describe', '--always', '--dirty']);
  const pkg = async (p: string) => versionOf('dpkg-query', ['-W', '-f=${Version}', p]);
  const dropped = dropCachesAllowed();
  const md = [
    `# layerfs benchmarks${args.quick ? ' (--quick: small sizes, not for comparison)' : ''}`,
    '',
    `- command: \`${command}\` (as root; \`tsx bench/run.ts\`)`,
    `- date: ${new Date(t0).toISOString()}, duration ${Math.floor(secs / 60)} min ${Math.round(secs % 60)} s`,
    `- machine: ${startMachine.cpu}, ${startMachine.cores} cores, ${startMachine.memGiB} GiB RAM, kernel ${startMachine.kernel}, node ${startMachine.node}`,
    `- load average (1/5/15 min): ${startMachine.load} at start, ${end.load} at the end (a shared machine: other work ran alongside)`,
    `- versions: layerfs ${git} (\`bin/layerfs mount\` with its default options; its daemons had loaded ${[...layerfsLibraries].sort().join(', ') || '?'}), fuse-overlayfs ${await pkg('fuse-overlayfs')}, unionfs-fuse ${await pkg('unionfs-fuse')} (\`-o cow\`), ${await versionOf('fio', ['--version'])}`,
    args.memoryOnly
      ? '- one run per filesystem with a daemon'
      : `- repetitions: ${args.reps} (column "runs"${args.writeReps !== args.reps ? `; the write workloads chmod, creation and unpack: ${args.writeReps}` : ''}); each value is the median of its runs (peak RSS: the maximum over that many mounts); the filesystems take turns in rotating order`,
    '',
    renderTable(rows, res, daemons),
    '',
    'Notes:',
    '',
    '- Every value is a time or a size: lower is better. The ratio columns are layerfs divided by the other filesystem, from this run: above 1 means layerfs is slower (or bigger).',
    '- Everything (lowers, uppers, work dirs, the raw copy) is on one scratch ext4 filesystem: a sparse image file in the temp dir, loop-mounted with direct IO and without online discard (see bench/scratch.ts).',
    '- raw: a plain directory holding a copy of what the unions show (hard links to a private copy of the files, never the lowers), so its writes are plain writes. The unions all mount the same lower directories, each with a fresh upper and work dir per repetition, with their default options: layerfs lets the kernel cache entries and attributes for 60 s, unionfs-fuse for 1 s, fuse-overlayfs for much longer (an attribute changed underneath was still cached after 2.5 s); the warm runs follow the cold ones at once.',
    dropped === false
      ? '- cold: drop_caches is not permitted here, so "cold" means a fresh mount only (the page cache underneath stays warm).'
      : '- cold: a fresh mount, then `sync; echo 3 > /proc/sys/vm/drop_caches` (page cache, dentries, inodes). warm: the same workload again at once on the same mount.',
    '- IO: fio, psync, one job, 1 MiB blocks (sequential) or 4 KiB (random, time-based), `--invalidate=0`. Stat storm: `find DIR -type f -print0 | xargs -0 stat`. Depth: a tight stat() loop (one node process, timing only the loop) over names that exist only in the bottom layer of a directory merged through every layer, each name looked up once on a fresh mount.',
    '- copy-up write: `printf x 1<>FILE` (bash) on a file only in a lower: the whole file is copied to the upper first. chmod: `xargs chmod` of every tree file. Creation: 4 KiB files written by bash into the merged tree directories. Unpack: `tar -xf` as root (owners, modes, times).',
    ...res.notes.map((n) => `- ${n}`),
  ];
  if (!args.memoryOnly) md.push('- The memory check (daemon RSS after a stat storm over 100k files) is a separate run: `npm run bench -- --memory`.');
  if (micro.length) {
    md.push('', '## Core micro-benchmarks', '', 'benchmark.js, in process, no FUSE: the union core (`Resolver` of src/union/lookup.ts, `mergedReaddir` of src/union/readdir.ts) on the same layer directories; "uncached" removes the path from the Resolver\'s lookup cache before every call, so its last component is resolved again through every layer (its directory stays resolved and indexed, as in a running daemon; the layer directories stay cached by the kernel).', '', renderMicro(micro));
  }
  const text = md.join('\n') + '\n';
  process.stdout.write('\n' + text);
  fs.mkdirSync(path.dirname(args.out), { recursive: true });
  fs.writeFileSync(args.out, text);
  log(`bench: written to ${path.relative(process.cwd(), args.out) || args.out}; ${secs.toFixed(0)} s`);
  return 0;
}

main().then(
  (code) => process.exit(process.exitCode || code),
  (e) => {
    if (signalled) process.exit(130); // cleaned up already (main's finally)
    log(`bench: ${(e as Error)?.stack ?? e}`);
    process.exit(1);
  },
);
