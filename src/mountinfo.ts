import { readFileSync } from 'node:fs';

export interface MountInfo {
  mountpoint: string;
  fstype: string;
  source: string;
}

/**
 * Decode the octal escapes the kernel uses in /proc/self/mountinfo. It only
 * escapes space, tab, newline and backslash (\040 \011 \012 \134), all ASCII.
 */
function decodeField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parse a mountinfo text: mount point (5th field), and after the ' - ' separator fstype and source. */
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
