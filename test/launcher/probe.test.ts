// What a container can and cannot do, proven from inside it: test/launcher/probe/probe.sh (and
// the static probe.c it runs) print one verdict a row (denied | allowed | n/a, or info for
// values), under `layerfs run` and under `podman run --rm --network none` (runc, podman's own
// default masks, read-only paths and seccomp profile, and this machine's containers.conf default
// capabilities; a private store with the vfs driver) on the same busybox image.
// Every row podman denies must be denied by layerfs too; a row podman marks n/a (absent on this
// kernel) is skipped. Beyond the rows: layerfs's capability sets are subsets of podman's, no host
// path (layers, the run's scratch and run dirs) shows in the container's mount table, PID 1's
// root is the container's, and with --userns container root is not host root.
//
// The probe changes nothing: see the headers of probe.sh and probe.c.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot } from '../helpers/mounts.ts';
import { pod, RUN_OPTS } from '../helpers/podman.ts';
import { CAPS } from '../../src/launcher/security.ts';
import { processesMentioning, runIn, sandbox, type Sandbox } from '../helpers/launcher.ts';
import { rootfs, ROOTFS_DIR } from '../helpers/rootfs.ts';

const PROBE_SRC = path.join(repoRoot, 'test', 'launcher', 'probe');

type Verdict = 'denied' | 'allowed' | 'n/a' | 'info';

interface Row {
  verdict: Verdict;
  detail: string;
}

interface Probe {
  /** Verdict rows in the order printed (info rows too, except the mount table). */
  rows: Map<string, Row>;
  /** The container's mount table, one mountinfo line a row (IDs dropped). */
  mountinfo: string[];
  raw: string;
}

function parseProbe(out: string): Probe {
  const rows = new Map<string, Row>();
  const mountinfo: string[] = [];
  for (const line of out.split('\n')) {
    const [name, verdict, ...rest] = line.split('\t');
    if (!name || !verdict || !['denied', 'allowed', 'n/a', 'info'].includes(verdict)) continue;
    const detail = rest.join('\t');
    if (name === 'mountinfo') mountinfo.push(detail);
    else rows.set(name, { verdict: verdict as Verdict, detail });
  }
  return { rows, mountinfo, raw: out };
}

/** Rows every run must print (so that a probe that broke halfway cannot pass). */
const EXPECTED_ROWS = [
  '/proc/sys', '/proc/sys/kernel/core_pattern', '/proc/sys/kernel/printk_ratelimit', '/proc/sysrq-trigger', '/proc/irq',
  '/proc/bus', '/proc/fs', '/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/latency_stats', '/proc/sched_debug',
  '/proc/scsi', '/proc/acpi', '/sys/firmware', '/sys/devices/virtual/powercap', 'no seccomp filter', 'CapBnd', 'CapEff',
  'uid_map', '/proc/1/root', 'add_key', 'keyctl', 'request_key', 'bpf', 'perf_event_open', 'kexec_load', 'kexec_file_load',
  'init_module', 'finit_module', 'delete_module', 'open_by_handle_at', 'userfaultfd', 'swapon', 'swapoff', 'reboot',
  'clock_settime', 'settimeofday', 'mount', 'umount2', 'pivot_root', 'unshare(CLONE_NEWNS)', 'unshare(CLONE_NEWUSER)',
  'setns', 'personality(READ_IMPLIES_EXEC)', 'mknod', 'open(image char dev 1:11)', 'sethostname(same name)', 'ioperm', 'iopl',
];

/**
 * Rows podman must deny itself (this machine: podman 4.3.1, runc 1.1.5, the packaged
 * containers.conf's capabilities and seccomp.json): the read-only /proc/sys, a masked /proc file
 * (below), a masked /sys dir, the seccomp filter, calls the profile or the dropped capabilities
 * refuse, and a device node the device cgroup refuses. Not keyctl: the profile allows it (its row
 * is still compared).
 */
const PODMAN_DENIES = [
  '/proc/sys', '/proc/sys/kernel/core_pattern', '/sys/firmware', 'no seccomp filter', 'add_key', 'bpf', 'mount', 'mknod',
  'unshare(CLONE_NEWNS)', 'open(image char dev 1:11)', '/proc/1/root',
];

/** Rows shown, never failed on (sethostname to the same name in the container's own UTS namespace). */
const INFORMATIONAL = new Set(['sethostname(same name)']);

const CAP_BY_NUMBER = new Map(Object.entries(CAPS).map(([name, n]) => [n, name]));

function capNames(mask: bigint): string[] {
  const out: string[] = [];
  for (let i = 0; i < 64; i++) if ((mask >> BigInt(i)) & 1n) out.push(CAP_BY_NUMBER.get(i)?.toLowerCase() ?? `cap${i}`);
  return out;
}

function capMask(p: Probe, field: string): bigint | undefined {
  const v = p.rows.get(field)?.detail;
  return v && /^[0-9a-f]+$/i.test(v) ? BigInt(`0x${v}`) : undefined;
}

// ---------------------------------------------------------------------------------------------
// the probe layer: /probe/probe.sh, /probe/probe (static), /probe/dev-kmsg (c 1 11)

let layer = '';

test.before(() => {
  execFileSync('bash', [path.join(repoRoot, 'scripts', 'podman-setup.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  rootfs();
  layer = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-probe-layer-'));
  fs.chmodSync(layer, 0o755);
  const dir = path.join(layer, 'probe');
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.copyFileSync(path.join(PROBE_SRC, 'probe.sh'), path.join(dir, 'probe.sh'));
  fs.chmodSync(path.join(dir, 'probe.sh'), 0o755);
  execFileSync('gcc', ['-static', '-O2', '-Wall', '-o', path.join(dir, 'probe'), path.join(PROBE_SRC, 'probe.c')], { stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync('mknod', ['-m', '0600', path.join(dir, 'dev-kmsg'), 'c', '1', '11']);
});

test.after.always(() => {
  if (layer) fs.rmSync(layer, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// podman: the reference, run once (the first test that needs it owns the private store)

let podmanProbe: Promise<Probe> | undefined;

function podmanRun(t: ExecutionContext): Promise<Probe> {
  podmanProbe ??= (async () => {
    const p = pod(t, { driver: 'vfs', systemDefaults: true });
    // Registered after pod()'s teardown, so it runs before it: images go (with -f, any container
    // left using them), then whatever of podman's still mentions the store (conmon) is killed.
    t.teardown(async () => {
      await p.podman(['rmi', '-af'], 60_000);
      for (const pid of processesMentioning(p.dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    });
    const tar = path.join(p.dir, 'image.tar');
    execFileSync('tar', ['-C', rootfs().base, '-cf', tar, '.']);
    execFileSync('tar', ['-C', layer, '-rf', tar, './probe']);
    await p.ok(['import', '-q', tar, 'localhost/lfs-probe:1']);
    const r = await p.podman(['run', '--rm', ...RUN_OPTS, 'localhost/lfs-probe:1', '/bin/sh', '/probe/probe.sh']);
    if (r.code !== 0) throw new Error(`podman run: exit ${r.code}: ${r.stderr.trim()}\n${r.out}`);
    if (r.stderr.trim()) t.log(`podman's probe stderr:\n${r.stderr.trim()}`);
    return parseProbe(r.out);
  })();
  return podmanProbe;
}

// ---------------------------------------------------------------------------------------------
// layerfs

async function layerfsRun(t: ExecutionContext, sb: Sandbox, options: string[] = []): Promise<Probe> {
  const r = await runIn(sb, ['-u', '0', '--lower', `${layer}:${rootfs().base}`, ...options, '--', '/bin/sh', '/probe/probe.sh']);
  if (r.code !== 0) throw new Error(`layerfs run${options.map((o) => ` ${o}`).join('')}: exit ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''}: ${r.stderr.trim()}\n${r.stdout}`);
  if (r.stderr.trim()) t.log(`layerfs's probe stderr:\n${r.stderr.trim()}`);
  return parseProbe(r.stdout);
}

function table(podman: Probe, layerfs: Probe, label: string): string {
  const names = [...new Set([...podman.rows.keys(), ...layerfs.rows.keys()])];
  const w = Math.max(...names.map((n) => n.length), 3);
  const cell = (p: Probe, n: string) => p.rows.get(n)?.verdict ?? '(missing)';
  const lines = [`${'row'.padEnd(w)} | podman  | ${label}`, `${'-'.repeat(w)}-+---------+-${'-'.repeat(label.length)}`];
  for (const n of names) {
    const pv = cell(podman, n);
    const lv = cell(layerfs, n);
    const pd = podman.rows.get(n)?.detail ?? '';
    const ld = layerfs.rows.get(n)?.detail ?? '';
    const bad = pv === 'denied' && lv === 'allowed' ? (INFORMATIONAL.has(n) ? '  (info only)' : '  <-- FAIL') : '';
    if (pv === 'info' || lv === 'info') lines.push(`${n.padEnd(w)} | ${pd} | ${ld}`);
    else lines.push(`${n.padEnd(w)} | ${pv.padEnd(7)} | ${lv}${bad}`);
  }
  lines.push('', 'details (podman / layerfs):');
  for (const n of names) {
    if (podman.rows.get(n)?.verdict === 'info') continue;
    lines.push(`  ${n}: ${podman.rows.get(n)?.detail ?? '-'}  /  ${layerfs.rows.get(n)?.detail ?? '-'}`);
  }
  return lines.join('\n');
}

/**
 * Everything layerfs allows beyond podman, one line each: every row podman denies and layerfs
 * allows, missing rows, capabilities beyond podman's, host paths in the mount table, a foreign
 * /proc/1/root.
 */
function problems(podman: Probe, layerfs: Probe, sb: Sandbox): string[] {
  const out: string[] = [];
  for (const n of EXPECTED_ROWS) if (!layerfs.rows.has(n)) out.push(`the probe printed no row '${n}'`);
  for (const [n, p] of podman.rows) {
    if (p.verdict !== 'denied' || INFORMATIONAL.has(n)) continue;
    const l = layerfs.rows.get(n);
    if (l?.verdict === 'allowed') out.push(`${n}: podman denies (${p.detail}), layerfs allows (${l.detail})`);
  }

  for (const field of ['CapBnd', 'CapEff']) {
    const pm = capMask(podman, field);
    const lm = capMask(layerfs, field);
    if (pm === undefined || lm === undefined) {
      out.push(`${field} unreadable (podman '${podman.rows.get(field)?.detail}', layerfs '${layerfs.rows.get(field)?.detail}')`);
      continue;
    }
    const extra = lm & ~pm;
    if (extra !== 0n) out.push(`${field} ${lm.toString(16)} is not a subset of podman's ${pm.toString(16)}: also ${capNames(extra).join(', ')}`);
  }

  // No host path of the layers or of the run's sandbox in the container's mount table.
  const host = new Set<string>();
  for (const p of [layer, rootfs().base, ROOTFS_DIR, sb.dir, sb.runDir, sb.tmpDir, repoRoot]) {
    host.add(p);
    try {
      host.add(fs.realpathSync(p));
    } catch {
      /* not there (runDir after the run) */
    }
  }
  if (layerfs.mountinfo.length === 0) out.push('the probe printed no mount table');
  for (const m of layerfs.mountinfo) {
    const hit = [...host].find((h) => m.includes(h));
    if (hit) out.push(`host path ${hit} in the container's mountinfo: ${m}`);
  }

  const root = layerfs.rows.get('/proc/1/root');
  if (root?.verdict !== 'denied') out.push(`/proc/1/root is not the container's root: ${root?.detail}`);
  return out;
}

/** Log the table and every problem (ava shows a test's first failed assertion only), then fail once a problem. */
function report(t: ExecutionContext, label: string, podman: Probe, layerfs: Probe, found: string[]): void {
  t.log(`${label} vs podman run --rm --network none:\n${table(podman, layerfs, label)}`);
  if (found.length > 0) t.log(`${label}: ${found.length} problems:\n${found.map((p, i) => `${String(i + 1).padStart(2)}. ${p}`).join('\n')}`);
  for (const p of found) t.fail(`${label}: ${p}`);
  if (found.length === 0) t.pass();
}

/** uid_map as the probe prints it ("inside outside count;" a line): what is wrong with it for --userns. */
function usernsProblems(layerfs: Probe): string[] {
  const map = layerfs.rows.get('uid_map')?.detail ?? '';
  const ranges = map.split(';').filter((x) => x.trim()).map((x) => x.trim().split(/\s+/).map(Number));
  if (ranges.length === 0) return [`uid_map unreadable: '${map}'`];
  if (ranges.length === 1 && ranges[0]!.join(' ') === '0 0 4294967295') return [`no user namespace of its own (uid_map '${map}')`];
  const root = ranges.find(([inside = 0, , count = 0]) => inside <= 0 && 0 < inside + count);
  if (!root) return [`container uid 0 is not mapped (uid_map '${map}')`];
  const hostId = root[1]! - root[0]!;
  return hostId === 0 ? [`container uid 0 is host uid 0 (uid_map '${map}')`] : [];
}

// ---------------------------------------------------------------------------------------------

test.serial('podman run --network none: the probe runs and podman denies the core rows', async (t) => {
  const started = Date.now();
  const p = await podmanRun(t);
  t.log(`podman: ${Date.now() - started} ms; its rows:\n${[...p.rows].map(([n, r]) => `${n}\t${r.verdict}\t${r.detail}`).join('\n')}`);
  for (const n of EXPECTED_ROWS) t.true(p.rows.has(n), `podman: the probe printed a row '${n}'`);
  for (const n of PODMAN_DENIES) t.is(p.rows.get(n)?.verdict, 'denied', `podman: ${n}: ${p.rows.get(n)?.detail}`);
  // A masked /proc file: /proc/kcore where the kernel has one, else /proc/keys or /proc/timer_list.
  const masked = ['/proc/kcore', '/proc/keys', '/proc/timer_list'].filter((n) => p.rows.get(n)?.verdict !== 'n/a');
  t.true(masked.length > 0, 'podman: at least one of /proc/kcore, /proc/keys, /proc/timer_list exists');
  for (const n of masked) t.is(p.rows.get(n)?.verdict, 'denied', `podman: ${n}: ${p.rows.get(n)?.detail}`);
  t.not(capMask(p, 'CapBnd'), undefined, 'podman: CapBnd');
});

test.serial('layerfs run -u 0: nothing allowed that podman denies', async (t) => {
  const podman = await podmanRun(t);
  const sb = sandbox(t);
  const started = Date.now();
  const l = await layerfsRun(t, sb);
  t.log(`layerfs run: ${Date.now() - started} ms`);
  report(t, 'layerfs', podman, l, problems(podman, l, sb));
});

test.serial('layerfs run --userns -u 0: nothing allowed that podman denies; container root is not host root', async (t) => {
  const podman = await podmanRun(t);
  const sb = sandbox(t);
  const l = await layerfsRun(t, sb, ['--userns']);
  t.log(`--userns: uid_map '${l.rows.get('uid_map')?.detail ?? ''}', gid_map '${l.rows.get('gid_map')?.detail ?? ''}'`);
  report(t, 'layerfs --userns', podman, l, [...usernsProblems(l), ...problems(podman, l, sb)]);
});
