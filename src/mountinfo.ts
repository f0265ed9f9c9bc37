// /proc/self/mountinfo, decoded once for everyone: what is mounted where, the mount a path is
// on, and a way around idmapped mounts.

import { readFileSync } from 'node:fs';

export interface MountInfo {
  mountpoint: string;
  fstype: string;
  source: string;
  /** major:minor of the filesystem (3rd field). */
  dev: string;
  /** The directory of that filesystem this mount shows (4th field: '/' for a whole fs). */
  root: string;
  /** Per-mount options (6th field), e.g. ['rw', 'relatime', 'idmapped']. */
  options: string[];
  /** Per-superblock options (the last field), e.g. ['rw', 'memory'] for a cgroup v1 hierarchy. */
  superOptions: string[];
}

/**
 * Decode the octal escapes the kernel uses in /proc/self/mountinfo. It only
 * escapes space, tab, newline and backslash (\040 \011 \012 \134), all ASCII.
 */
function decodeField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Parse a mountinfo text: the 3rd to 6th fields (dev, root, mount point, options), and after
 * the ' - ' separator fstype, source and the superblock's options.
 */
export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    if (fields.length < 5 || fields[4] === '') continue;
    const sep = fields.indexOf('-', 6);
    out.push({
      mountpoint: decodeField(fields[4]),
      fstype: sep > 0 ? fields[sep + 1] ?? '' : '',
      source: sep > 0 ? decodeField(fields[sep + 2] ?? '') : '',
      dev: fields[2] ?? '',
      root: decodeField(fields[3] ?? ''),
      options: (fields[5] ?? '').split(','),
      superOptions: sep > 0 ? (fields[sep + 3] ?? '').split(',') : [],
    });
  }
  return out;
}

export function readMountinfo(): MountInfo[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** The top-most mount at exactly this path, if any. */
export function mountAt(path: string, mounts: MountInfo[] = readMountinfo()): MountInfo | undefined {
  let found: MountInfo | undefined;
  for (const m of mounts) if (m.mountpoint === path) found = m;
  return found;
}

function within(p: string, dir: string): boolean {
  return p === dir || dir === '/' || p.startsWith(dir + '/');
}

/** The rest of p below dir ('' or '/x/y'); p must be within dir. */
function below(p: string, dir: string): string {
  return dir === '/' ? (p === '/' ? '' : p) : p.slice(dir.length);
}

/** The mount a (real, absolute) path is on: the last-mounted one with the longest mount point. */
export function mountOf(p: string, mounts: MountInfo[]): MountInfo | undefined {
  let found: MountInfo | undefined;
  for (const m of mounts) {
    if (within(p, m.mountpoint) && (!found || m.mountpoint.length >= found.mountpoint.length)) found = m;
  }
  return found;
}

/**
 * A (real, absolute) path that lies on an idmapped mount, as the same directory through a
 * plain mount of the same filesystem; null when the path is not on an idmapped mount, or no
 * plain mount shows that directory. Files seen through the result carry their ids as stored.
 * (podman 4.3–4.5 hands a mount program its lowers through idmapped mounts and detaches
 * those as soon as the program returns: see README, podman.)
 */
export function withoutIdmap(p: string, mounts: MountInfo[]): string | null {
  const m = mountOf(p, mounts);
  if (!m || !m.options.includes('idmapped')) return null;
  // The directory in its filesystem.
  const inFs = (m.root === '/' ? '' : m.root) + below(p, m.mountpoint) || '/';
  let best: { path: string; depth: number } | null = null;
  for (const o of mounts) {
    if (o.dev !== m.dev || o.options.includes('idmapped') || !within(inFs, o.root)) continue;
    const candidate = o.mountpoint === '/' ? below(inFs, o.root) || '/' : o.mountpoint + below(inFs, o.root);
    // The candidate must not be hidden by a later mount over part of its path.
    const top = mountOf(candidate, mounts);
    if (top !== o) continue;
    if (!best || o.root.length > best.depth) best = { path: candidate, depth: o.root.length };
  }
  return best?.path ?? null;
}
