// The differential engine: run one scenario (layers + operation list) on
// kernel overlayfs or on layerfs, recording the outcome of every operation
// and snapshots of the merged view and of the upper dir; then compare two runs.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { makeTmp, mount, removeTmp, unmount, type MountTarget } from '../helpers/mounts.ts';
import { compareSnapshots, snapshotTree, type Snapshot } from '../helpers/snapshot.ts';
import { describeOp, type Op, type Scenario } from './engine-ops.ts';
import { runOp, statSummary } from './engine-runop.ts';
import { buildLayer, buildLayers, showName } from './layers.ts';

// The operations and the scenario type live in engine-ops.ts, the operations' implementation in
// engine-runop.ts; this module runs scenarios and compares runs, and is what the harness imports.
export * from './engine-ops.ts';

// ---------------------------------------------------------------------------
// running

export interface RunOutput {
  target: MountTarget;
  /** Per op: 'ok', 'ok: <value>', an errno name ('ENOENT'), or 'EXIT<n>: <message>' for a failed command. */
  results: string[];
  merged: Snapshot;
  /** null for read-only scenarios. */
  upper: Snapshot | null;
  /** Differences between the lower dirs before and after the run (must be empty: lowers are read-only). */
  lowersChanged: string[];
  /**
   * Entries whose path is not valid UTF-8 (snapshotTree cannot name them), walked byte-exactly:
   * one line each, path in rawName() form. Compared like the snapshots.
   */
  raw?: { merged: string[]; upper: string[] | null };
  /** Measurements that are reported but not compared (e.g. allocated sizes). */
  notes?: string[];
}

/** Where a finished run's files are, for RunOptions.afterRun. */
export interface RunDirs {
  target: MountTarget;
  /** The scenario's temp dir (everything below it is removed after afterRun). */
  root: string;
  /** Lower dirs as built for `target`, top-most first. */
  lowers: string[];
  /** The upper dir (already unmounted), or undefined for read-only scenarios. */
  upper?: string;
  work?: string;
}

export interface RunOptions {
  /** Keep the scenario's temp dir (for debugging); also enabled by LAYERFS_DIFF_KEEP=1. */
  keep?: boolean;
  /** Per-operation time limit; a hang aborts the scenario (remaining ops: 'SKIPPED'). Default 20 s. */
  opTimeoutMs?: number;
  /** Called after the run was unmounted and snapshotted, before its temp dir is removed. */
  afterRun?: (dirs: RunDirs) => Promise<void>;
}

const ENV_KEEP = process.env.LAYERFS_DIFF_KEEP === '1';

class Timeout extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Timeout(`${what}: no answer after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * Build fresh copies of the scenario's layers (plus empty upper and work dirs
 * unless read-only), mount them with `target`, run the ops, snapshot the
 * merged view, unmount (always), snapshot the upper dir.
 *
 * Lowers are built as written for layerfs and with OCI markers translated to
 * kernel ones for the kernel (which does not understand OCI markers).
 */
export async function runScenario(s: Scenario, target: MountTarget, opts: RunOptions = {}): Promise<RunOutput> {
  const opTimeoutMs = opts.opTimeoutMs ?? s.opTimeoutMs ?? 20_000;
  const keep = opts.keep ?? ENV_KEEP;
  if (s.needsFreeBytes) checkFreeSpace(s);
  // Modes of created files must not depend on the caller's umask.
  process.umask(0o022);
  const root = makeTmp(undefined, `layerfs-diff-${target}-`);
  try {
    const layers = await buildLayers(s.layers, root, { format: target === 'kernel' ? 'kernel' : 'as-written' });
    let upper: string | undefined;
    let work: string | undefined;
    if (!s.readOnly) {
      upper = layers.upper ?? path.join(root, 'upper');
      if (!layers.upper) fs.mkdirSync(upper, { mode: 0o755 });
      work = path.join(root, 'work');
      fs.mkdirSync(work, { mode: 0o755 });
    } else if (s.layers.upper) {
      throw new Error(`scenario ${s.name}: readOnly with an upper tree`);
    }
    const outside = path.join(root, 'outside');
    await buildLayer(s.outside ?? {}, outside, { format: 'as-written' });
    const mnt = path.join(root, 'mnt');
    fs.mkdirSync(mnt, { mode: 0o755 });

    const lowersBefore = await Promise.all(layers.lowers.map((l) => snapshotTree(l, 'raw')));

    const normalise = (msg: string) => msg.split(mnt).join('<mnt>').split(root).join('<tmp>');
    const results: string[] = [];
    const notes: string[] = [];
    let merged: Snapshot;
    let rawMerged: string[] = [];
    try {
      const options = [...(s.options ?? []), ...(target === 'layerfs' ? (s.layerfsOptions ?? []) : [])];
      await mount(target, { lowers: layers.lowers, upper, work, mnt, options });
      let hung = false;
      for (const o of s.ops) {
        if (hung) {
          results.push('SKIPPED');
          continue;
        }
        try {
          results.push(await withTimeout(runOp(o, mnt, outside, normalise, notes), opTimeoutMs, describeOp(o)));
        } catch (e) {
          if (!(e instanceof Timeout)) throw e;
          results.push('TIMEOUT');
          hung = true;
        }
      }
      merged = hung
        ? { entries: [], errors: ['not taken: an operation hung'] }
        : await withTimeout(snapshotTree(mnt, 'merged'), opTimeoutMs * 3, 'snapshot of the merged view');
      if (!hung) rawMerged = await withTimeout(rawEntries(mnt, 'merged'), opTimeoutMs * 3, 'raw names of the merged view');
    } finally {
      await unmount(mnt);
    }
    const upperSnap = upper ? await snapshotTree(upper, 'upper') : null;
    const rawUpper = upper ? await rawEntries(upper, 'upper') : null;
    const lowersChanged: string[] = [];
    for (let i = 0; i < layers.lowers.length; i++) {
      const after = await snapshotTree(layers.lowers[i]!, 'raw');
      lowersChanged.push(...compareSnapshots(lowersBefore[i]!, after, ['before', 'after'], `lower${i}`));
    }
    if (opts.afterRun) await opts.afterRun({ target, root, lowers: layers.lowers, upper, work });
    return { target, results, merged, upper: upperSnap, lowersChanged, raw: { merged: rawMerged, upper: rawUpper }, notes };
  } finally {
    if (!keep) await removeTmp(root);
  }
}

function checkFreeSpace(s: Scenario): void {
  const st = sys.statfs(os.tmpdir());
  const free = st.bavail * st.bsize;
  if (free < BigInt(s.needsFreeBytes!)) {
    const gib = (n: bigint | number) => (Number(n) / 2 ** 30).toFixed(1);
    throw new Error(`scenario "${s.name}" needs ${gib(s.needsFreeBytes!)} GiB free in ${os.tmpdir()}, only ${gib(free)} GiB available`);
  }
}

/**
 * Entries below `root` whose relative path is not valid UTF-8, walked with byte names (the
 * snapshots name entries by string and cannot reach these): "path: type mode uid:gid …" with
 * the path in rawName() form. In an upper, a 0/0 character device is a 'whiteout'.
 */
export async function rawEntries(root: string, kind: 'merged' | 'upper'): Promise<string[]> {
  const out: string[] = [];
  const visit = async (abs: Buffer, relShown: string, raw: boolean): Promise<void> => {
    let names: Buffer[];
    try {
      names = await fs.promises.readdir(abs, { encoding: 'buffer' });
    } catch (e) {
      if (raw) out.push(`${relShown}: readdir: ${(e as NodeJS.ErrnoException).code ?? e}`);
      return;
    }
    for (const n of names.sort(Buffer.compare)) {
      const shown = showName(n);
      const isRaw = raw || shown !== n.toString('utf8');
      const childRel = relShown ? `${relShown}/${shown}` : shown;
      const child = Buffer.concat([abs, Buffer.from('/'), n]);
      let st: fs.BigIntStats;
      try {
        st = await fs.promises.lstat(child, { bigint: true });
      } catch (e) {
        if (isRaw) out.push(`${childRel}: lstat: ${(e as NodeJS.ErrnoException).code ?? e}`);
        continue;
      }
      if (isRaw) {
        let line: string;
        if (kind === 'upper' && st.isCharacterDevice() && st.rdev === 0n) line = 'whiteout';
        else {
          line = `${statSummary(st, false)}`;
          try {
            if (st.isFile()) line += ` sha256:${createHash('sha256').update(await fs.promises.readFile(child)).digest('hex').slice(0, 16)}`;
            if (st.isSymbolicLink()) line += ` -> ${JSON.stringify(showName(await fs.promises.readlink(child, { encoding: 'buffer' })))}`;
          } catch (e) {
            line += ` (read: ${(e as NodeJS.ErrnoException).code ?? e})`;
          }
        }
        out.push(`${childRel}: ${line}`);
      }
      if (st.isDirectory()) await visit(child, childRel, isRaw);
    }
  };
  await visit(Buffer.from(path.resolve(root)), '', false);
  return out;
}

/** Compare two rawEntries() listings: one line per path that differs. */
function compareRaw(a: string[], b: string[], labels: [string, string], what: string): string[] {
  const split = (l: string): [string, string] => {
    const i = l.indexOf(': ');
    return [l.slice(0, i), l.slice(i + 2)];
  };
  const ma = new Map(a.map(split));
  const mb = new Map(b.map(split));
  const out: string[] = [];
  for (const p of [...new Set([...ma.keys(), ...mb.keys()])].sort()) {
    const va = ma.get(p);
    const vb = mb.get(p);
    if (va === vb) continue;
    if (va === undefined || vb === undefined) out.push(`${what} (raw names): ${JSON.stringify(p)}: only in ${va === undefined ? labels[1] : labels[0]} (${va ?? vb})`);
    else out.push(`${what} (raw names): ${JSON.stringify(p)}: ${labels[0]}=${va} ${labels[1]}=${vb}`);
  }
  return out;
}

/**
 * Mount `target` over an upper dir left by an earlier run (e.g. layerfs mounting the upper the
 * kernel wrote), with freshly built lowers in `target`'s format and a fresh workdir below
 * `dir`, and snapshot the merged view. Always unmounts.
 */
export async function snapshotOverUpper(
  target: MountTarget,
  s: Scenario,
  upper: string,
  dir: string,
  opts: { timeoutMs?: number } = {},
): Promise<{ merged: Snapshot; raw: string[] }> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  fs.mkdirSync(dir, { recursive: true });
  const built = await buildLayers({ lowers: s.layers.lowers }, dir, { format: target === 'kernel' ? 'kernel' : 'as-written' });
  const work = path.join(dir, 'work');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(work);
  fs.mkdirSync(mnt);
  const options = [...(s.options ?? []), ...(target === 'layerfs' ? (s.layerfsOptions ?? []) : [])];
  try {
    await mount(target, { lowers: built.lowers, upper, work, mnt, options });
    const merged = await withTimeout(snapshotTree(mnt, 'merged'), timeoutMs, 'snapshot of the merged view');
    const raw = await withTimeout(rawEntries(mnt, 'merged'), timeoutMs, 'raw names of the merged view');
    return { merged, raw };
  } finally {
    await unmount(mnt);
  }
}

/** Differences between two merged views (snapshot + raw names). */
export function compareMerged(
  a: { merged: Snapshot; raw?: string[] },
  b: { merged: Snapshot; raw?: string[] },
  labels: [string, string],
): string[] {
  const out = compareSnapshots(a.merged, b.merged, labels, 'merged');
  if (a.raw && b.raw) out.push(...compareRaw(a.raw, b.raw, labels, 'merged'));
  return out;
}

/** Divergences between two runs of the same op list. Empty = identical behaviour. */
export function compareRuns(a: RunOutput, b: RunOutput, ops: readonly Op[], labels: [string, string] = [a.target, b.target]): string[] {
  const [la, lb] = labels;
  const out: string[] = [];
  const n = Math.max(a.results.length, b.results.length, ops.length);
  for (let i = 0; i < n; i++) {
    const ra = a.results[i] ?? '(not run)';
    const rb = b.results[i] ?? '(not run)';
    if (ra !== rb) out.push(`op #${i} ${ops[i] ? describeOp(ops[i]!) : '?'}: ${la}=${ra} ${lb}=${rb}`);
  }
  out.push(...compareSnapshots(a.merged, b.merged, labels, 'merged'));
  if (a.raw && b.raw) out.push(...compareRaw(a.raw.merged, b.raw.merged, labels, 'merged'));
  if (a.upper && b.upper) out.push(...compareSnapshots(a.upper, b.upper, labels, 'upper'));
  if (a.raw?.upper && b.raw?.upper) out.push(...compareRaw(a.raw.upper, b.raw.upper, labels, 'upper'));
  else if (a.upper || b.upper) out.push(`upper: present only in ${a.upper ? la : lb}`);
  for (const c of a.lowersChanged) out.push(`${la} modified a lower layer: ${c}`);
  for (const c of b.lowersChanged) out.push(`${lb} modified a lower layer: ${c}`);
  return out;
}

/** Is the harness running kernel-vs-kernel (LAYERFS_DIFF_SELFTEST=1)? */
export function selftestMode(): boolean {
  return process.env.LAYERFS_DIFF_SELFTEST === '1';
}

/**
 * Run the scenario on the kernel and on layerfs (or, in self-test mode, on
 * the kernel twice) and return the divergences, human-readable.
 */
export async function diffScenario(s: Scenario, opts: RunOptions & { selftest?: boolean } = {}): Promise<string[]> {
  const selftest = opts.selftest ?? selftestMode();
  const other: MountTarget = selftest ? 'kernel' : 'layerfs';
  const [ra, rb] = await Promise.allSettled([runScenario(s, 'kernel', opts), runScenario(s, other, opts)]);
  if (ra.status === 'rejected') throw ra.reason;
  if (rb.status === 'rejected') throw rb.reason;
  return compareRuns(ra.value, rb.value, s.ops, ['kernel', selftest ? 'kernel(selftest)' : 'layerfs']);
}
