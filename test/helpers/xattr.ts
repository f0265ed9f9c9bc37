// xattr access through the attr package's tools (setfattr / getfattr), so the
// calls go through the ordinary syscalls of a separate process: exactly what a
// user of the mount would do.

import { run } from './exec.ts';

/** getfattr escapes unusual characters in file names as \ooo (octal). */
function unescapeGetfattr(s: string): string {
  const bytes: number[] = [];
  const src = Buffer.from(s, 'utf8');
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x5c /* \ */ && i + 3 < src.length && /^[0-7]{3}$/.test(src.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(src.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else {
      bytes.push(c);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * Parse `getfattr -d -e hex --absolute-names` output into path → (name → value).
 * Files without (matching) xattrs do not appear.
 */
export function parseGetfattrDump(out: string): Map<string, Map<string, Buffer>> {
  const res = new Map<string, Map<string, Buffer>>();
  let cur: Map<string, Buffer> | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = new Map();
      res.set(unescapeGetfattr(line.slice('# file: '.length)), cur);
      continue;
    }
    if (!line || !cur) continue;
    const eq = line.indexOf('=');
    const name = eq < 0 ? line : line.slice(0, eq);
    const raw = eq < 0 ? '' : line.slice(eq + 1);
    let value: Buffer;
    if (raw.startsWith('0x')) value = Buffer.from(raw.slice(2), 'hex');
    else if (raw.startsWith('0s')) value = Buffer.from(raw.slice(2), 'base64');
    else if (raw.startsWith('"') && raw.endsWith('"')) value = Buffer.from(raw.slice(1, -1), 'utf8');
    else value = Buffer.from(raw, 'utf8');
    cur.set(unescapeGetfattr(name), value);
  }
  return res;
}

/**
 * All xattrs (names matching `pattern`, a getfattr -m regex; default: all
 * namespaces visible to the caller) of many absolute paths, without following
 * symlinks. Returns path → (name → value) plus getfattr's error lines.
 */
export async function dumpXattrs(
  paths: readonly string[],
  pattern = '-',
): Promise<{ xattrs: Map<string, Map<string, Buffer>>; errors: string[] }> {
  const xattrs = new Map<string, Map<string, Buffer>>();
  const errors: string[] = [];
  const CHUNK = 256;
  for (let i = 0; i < paths.length; i += CHUNK) {
    const chunk = paths.slice(i, i + CHUNK);
    const r = await run('getfattr', ['-h', '-d', '-m', pattern, '-e', 'hex', '--absolute-names', '--', ...chunk]);
    for (const [p, m] of parseGetfattrDump(r.stdout.toString('utf8'))) xattrs.set(p, m);
    for (const l of r.stderr.split('\n')) if (l.trim()) errors.push(l.trim());
  }
  return { xattrs, errors };
}

/** Printable form of an xattr value: a JSON string if it is clean UTF-8 text, else hex. */
export function showXattrValue(v: Buffer): string {
  const s = v.toString('utf8');
  // eslint-disable-next-line no-control-regex
  if (Buffer.from(s, 'utf8').equals(v) && !/[\u0000-\u001f\u007f]/.test(s)) return JSON.stringify(s);
  return '0x' + v.toString('hex');
}
