// Where the daemon's time goes: runs one workload of the suite on a layerfs mount whose daemon
// runs under `node --cpu-prof`, then prints the functions with the most self time.
//
//   npx tsx bench/profile.ts [--workload stat|create|chmod|depth|unpack|xattr] [--files N] [--depth N]
//                            [--top N] [--keep] [--cold]     (--cold: page cache dropped first)
//
// The layer sets are the benchmark suite's (bench/layers.ts), built in a temp dir; the profile
// (a .cpuprofile file, readable by Chrome DevTools) is kept with --keep.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { mountAt } from '../src/mountinfo.ts';
import { ROOT } from '../src/root.ts';
import { dropCaches, run, timed, timedBash, waitFor } from './common.ts';
import { makeScratch } from './scratch.ts';
import { makeDepthSet, makeMetaSet, QUICK, type LayerSet } from './layers.ts';

const { values: o } = parseArgs({
  options: {
    workload: { type: 'string', default: 'stat' },
    files: { type: 'string', default: '5000' },
    depth: { type: 'string', default: '128' },
    top: { type: 'string', default: '30' },
    keep: { type: 'boolean', default: false },
    cold: { type: 'boolean', default: false },
  },
});
const files = Number(o.files);
const bin = path.join(ROOT, 'bin', 'layerfs');

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function summarise(file: string, top: number): void {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const agg = new Map<string, number>();
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    const where = f.url ? `${f.url.replace(/^file:\/\//, '').replace(ROOT + '/', '')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    agg.set(key, (agg.get(key) ?? 0) + us);
  }
  // Inclusive time: each sample counts once for every distinct function on its stack.
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (id: number): string => {
    const f = byId.get(id)!.callFrame;
    const where = f.url ? `${f.url.replace(/^file:\/\//, '').replace(ROOT + '/', '')}:${f.lineNumber + 1}` : '';
    return `${f.functionName || '(anonymous)'} ${where}`.trim();
  };
  const incl = new Map<string, number>();
  for (const [id, us] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) seen.add(keyOf(cur));
    for (const k of seen) incl.set(k, (incl.get(k) ?? 0) + us);
  }
  const idle = agg.get('(idle)') ?? 0;
  console.log(`profile: ${(total / 1e3).toFixed(0)} ms sampled, ${(idle / 1e3).toFixed(0)} ms idle, ${((total - idle) / 1e3).toFixed(0)} ms busy`);
  const rows = [...agg.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top);
  console.log('     self   total');
  for (const [k, us] of rows) console.log(`${(us / 1e3).toFixed(1).padStart(9)} ${((incl.get(k) ?? 0) / 1e3).toFixed(1).padStart(7)} ms  ${k}`);
  console.log('by total time:');
  const inc = [...incl.entries()].filter(([k]) => !/^\(/.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [k, us] of inc) console.log(`${(us / 1e3).toFixed(1).padStart(17)} ms  ${k}`);
}

async function main(): Promise<void> {
  // On a scratch ext4, as the suite does (creating files on this VM's discard-mounted root fs
  // costs ~0.6 ms each, which would drown the daemon's own costs).
  const scratch = await makeScratch(8, (s) => console.error(s));
  const tmp = scratch.dir;
  const profDir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-profile-'));
  try {
    await profile(tmp, profDir);
  } finally {
    await run('umount', [scratch.dir]);
    fs.rmSync(scratch.base, { recursive: true, force: true });
    if (!o.keep) fs.rmSync(profDir, { recursive: true, force: true });
    else console.log(`kept ${profDir}`);
  }
}

async function profile(tmp: string, profDir: string): Promise<void> {
  let set: LayerSet;
  const z = { ...QUICK, treeFiles: files, readdirEntries: 100, unpackFiles: files };
  if (o.workload === 'depth') set = makeDepthSet(tmp, Number(o.depth), 1000);
  else set = await makeMetaSet(tmp, z);
  const mnt = path.join(tmp, 'mnt');
  const upper = path.join(tmp, 'upper');
  const work = path.join(tmp, 'work');
  for (const d of [mnt, upper, work, profDir]) fs.mkdirSync(d, { recursive: true });
  // The daemon in the foreground (-f) under --cpu-prof: it writes the profile when it exits at
  // the unmount.
  const daemon = spawn(
    process.execPath,
    ['--cpu-prof', `--cpu-prof-dir=${profDir}`, path.join(ROOT, 'bin', 'layerfs.mjs'), 'mount', '-f', '-o',
      `lowerdir=${set.lowers.join(':')},upperdir=${upper},workdir=${work}`, mnt],
    { cwd: set.lowerRoot, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const exited = new Promise<void>((r) => daemon.on('exit', () => r()));
  await waitFor(() => mountAt(mnt) !== undefined || daemon.exitCode !== null, 30_000, 'the mount');
  if (daemon.exitCode !== null) throw new Error('the daemon exited before mounting');
  const pid = daemon.pid;
  try {
    if (o.cold && !(await dropCaches())) throw new Error('--cold: cannot drop the page cache here');
    let r: { ms: number };
    switch (o.workload) {
      case 'stat':
        r = await timedBash('find "$1" -type f -print0 | xargs -0 stat -c %s >/dev/null', [path.join(mnt, 'tree')]);
        break;
      case 'create':
        r = await timedBash(
          'd=$(head -c 4096 /dev/zero | tr "\\0" c); for ((i = 0; i < $1; i++)); do printf %s "$d" > "tree/d$((i % 10))/new$i"; done',
          [String(files)],
          { cwd: mnt },
        );
        break;
      case 'chmod':
        r = await timed('xargs', ['-0', '-a', (set as { chmodList?: string }).chmodList!, 'chmod', '0640'], { cwd: mnt });
        break;
      case 'unpack':
        r = await timed('tar', ['-xf', (set as { tarball?: string }).tarball!, '-C', mnt]);
        break;
      case 'xattr':
        // getxattr of an absent name (ENODATA, never cached by the kernel), one file, N times
        r = await timed('python3', ['-c', 'import os, sys\nfor _ in range(int(sys.argv[2])):\n  try: os.getxattr(sys.argv[1], "user.none")\n  except OSError: pass', path.join(mnt, 'tree', 'd0', 'f0'), String(files)]);
        break;
      case 'depth':
        r = await timedBash('cd "$1" && xargs -0 -a "$2" stat -c %s >/dev/null', [mnt, (set as { lookupList?: string }).lookupList!]);
        break;
      default:
        throw new Error(`unknown workload ${o.workload}`);
    }
    console.log(`${o.workload}: ${r.ms.toFixed(0)} ms (daemon pid ${pid})`);
  } finally {
    await run(bin, ['umount', mnt], { viaFiles: true });
    await exited;
  }
  const prof = fs.readdirSync(profDir).find((f) => pid !== undefined && f.includes(`.${pid}.`));
  if (!prof) throw new Error(`no profile of the daemon (pid ${pid}) in ${profDir}`);
  summarise(path.join(profDir, prof), Number(o.top));
}

main().catch((e) => {
  console.error(`profile: ${(e as Error).message}`);
  process.exit(1);
});
