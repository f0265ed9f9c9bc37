// Start-up time of `layerfs run … -- /bin/true` next to unshare + kernel overlayfs + pivot_root
// doing the same, on the two-layer busybox root of scripts/make-rootfs.sh. Median of N runs.
//
//   npx tsx bench/startup.ts [N]        (as root; N defaults to 10)

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const layerfs = path.join(repo, 'bin', 'layerfs');
const N = Number(process.argv[2] ?? 10);

function sh(cmd: string, args: string[], env?: NodeJS.ProcessEnv): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status ?? r.signal}: ${r.stderr?.toString().trim()}`);
}

function timeMs(f: () => void): number {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function mountsBelow(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')))
    .reverse();
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('bench/startup.ts needs root (mounts, namespaces)');
  const layers = '/var/tmp/layerfs-test-rootfs';
  sh('bash', [path.join(repo, 'scripts', 'make-rootfs.sh'), layers]);
  const lower = `${layers}/app:${layers}/base`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-bench-startup-'));
  const env = { LAYERFS_RUN_DIR: path.join(dir, 'run'), TMPDIR: dir };
  const rows: [string, number[]][] = [];
  try {
    // What the launcher does, by hand: new namespaces, kernel overlay over a fresh upper, /proc,
    // pivot_root, detach the old root, exec /bin/true; the upper removed afterwards.
    const kernel: number[] = [];
    for (let i = 0; i < N + 1; i++) {
      const run = path.join(dir, `k${i}`);
      const script = [
        'set -e',
        `mkdir -p ${run}/upper ${run}/work ${run}/root`,
        `mount -t overlay overlay -o lowerdir=${lower},upperdir=${run}/upper,workdir=${run}/work ${run}/root`,
        `mount -t proc proc ${run}/root/proc`,
        `mount -t tmpfs tmpfs ${run}/root/tmp`,
        'ip link set lo up',
        `cd ${run}/root`,
        'pivot_root . .',
        'umount -l .',
        'exec /bin/true',
      ].join('\n');
      const ms = timeMs(() => {
        sh('unshare', ['--mount', '--pid', '--uts', '--ipc', '--net', '--cgroup', '--fork', '--propagation', 'private', '--', 'sh', '-c', script]);
        fs.rmSync(run, { recursive: true, force: true });
      });
      if (i > 0) kernel.push(ms); // the first run warms the caches
    }
    rows.push(['unshare + kernel overlayfs + pivot_root', kernel]);

    const run: number[] = [];
    for (let i = 0; i < N + 1; i++) {
      const ms = timeMs(() => sh(layerfs, ['run', '--lower', lower, '--', '/bin/true'], env));
      if (i > 0) run.push(ms);
    }
    rows.push(['layerfs run -- /bin/true', run]);

    // Its biggest part, for reference: a layerfs mount and unmount on their own.
    const mnt: number[] = [];
    for (let i = 0; i < N + 1; i++) {
      const d = path.join(dir, `m${i}`);
      for (const s of ['upper', 'work', 'root']) fs.mkdirSync(path.join(d, s), { recursive: true });
      const ms = timeMs(() => {
        sh(layerfs, ['mount', '-o', `lowerdir=${lower},upperdir=${d}/upper,workdir=${d}/work`, `${d}/root`]);
        sh(layerfs, ['umount', `${d}/root`]);
      });
      fs.rmSync(d, { recursive: true, force: true });
      if (i > 0) mnt.push(ms);
    }
    rows.push(['  of which: layerfs mount + umount', mnt]);
  } finally {
    for (const m of mountsBelow(dir)) spawnSync('umount', ['-l', m]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const base = median(rows[0][1]);
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`start-up, median of ${N} runs (${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(1)})`);
  console.log(`${'what'.padEnd(w)}  median ms     min ms   × kernel`);
  for (const [name, xs] of rows) {
    console.log(`${name.padEnd(w)}  ${median(xs).toFixed(1).padStart(9)}  ${Math.min(...xs).toFixed(1).padStart(9)}  ${(median(xs) / base).toFixed(1).padStart(9)}`);
  }
}

main();
