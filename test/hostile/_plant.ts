// The hostile layer set of test/hostile/: symlinks in every layer position (upper, top,
// middle and bottom lower), as leaves and where another layer has a directory, absolute and
// relative and `..`-laden; a device node, a fifo, hard links (inside a lower and across two),
// whiteout look-alikes (`.wh..`, `.wh...`, `.wh.`); and a canary outside the layers that the
// links point at. Plus the battery of operations run through the mount over all of it.
// Not a test file (ava only runs *.test.ts).

import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { errnoFromMessage, run, runOk } from '../helpers/exec.ts';
import { makeTmp, unmount } from '../helpers/mounts.ts';

export interface Hostile {
  dir: string;
  /** Top-most first. */
  lowers: [string, string, string];
  upper: string;
  work: string;
  mnt: string;
  /** The canary: a tmpfs mounted with strictatime (every read or listing moves an atime). */
  can: string;
  /** Every symlink planted in any layer (absolute paths). */
  links: string[];
  m(rel?: string): string;
  u(rel?: string): string;
}

const CANARY_UID = 4321;

/** Entries of the canary, fingerprinted by path (never listed before the end: a listing moves atimes). */
export const CANARY_ENTRIES = ['.', 'secret', 'cdir', 'cdir/inner', 'cdir/sub'];

function at(root: string, rel: string): string {
  return rel ? path.join(root, rel) : root;
}

/**
 * Build the layers and the canary under a fresh temp dir (the canary tmpfs is mounted, its
 * unmount registered in teardown first). Nothing is mounted on `mnt` yet.
 */
export async function plantHostile(t: ExecutionContext): Promise<Hostile> {
  const dir = makeTmp(t, 'layerfs-test-hostile-');
  const L = path.join(dir, 'layers');
  const [l0, l1, l2, upper, work] = ['l0', 'l1', 'l2', 'upper', 'work'].map((n) => path.join(L, n)) as [string, string, string, string, string];
  const mnt = path.join(dir, 'mnt');
  const can = path.join(dir, 'canary');
  for (const d of [l0, l1, l2, upper, work, mnt, can]) fs.mkdirSync(d, { recursive: true });
  fs.chmodSync(dir, 0o755);

  // The canary: every read, listing, write or metadata change of it shows.
  t.teardown(() => unmount(can));
  await runOk('mount', ['-t', 'tmpfs', '-o', 'size=1m,strictatime,mode=0755', 'tmpfs', can]);
  fs.writeFileSync(path.join(can, 'secret'), 'SECRET\n');
  fs.mkdirSync(path.join(can, 'cdir', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(can, 'cdir', 'inner'), 'INNER\n');
  fs.chmodSync(path.join(can, 'secret'), 0o640);
  fs.chmodSync(path.join(can, 'cdir'), 0o750);
  for (const rel of CANARY_ENTRIES) {
    const p = at(can, rel);
    fs.lchownSync(p, CANARY_UID, CANARY_UID);
    sys.lsetxattr(p, 'user.canary', 'untouched');
    sys.lsetxattr(p, 'trusted.canary', 'untouched');
  }

  const links: string[] = [];
  const link = (root: string, rel: string, target: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.symlinkSync(target, path.join(root, rel));
    links.push(path.join(root, rel));
  };
  const file = (root: string, rel: string, data: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), data);
  };
  const C = (rel = '') => at(can, rel);

  // etc: a link to the host's /etc in the top lower, over a real etc/ in the middle one.
  link(l0, 'etc', '/etc');
  file(l1, 'etc/passwd', 'lower1 etc/passwd\n');
  file(l1, 'etc/shadow', 'lower1 etc/shadow\n');
  // Leaf links to the canary, absolute.
  link(l0, 'cl', C('secret'));
  link(l0, 'cd', C('cdir'));
  // A link in the MIDDLE lower over a real directory in the bottom one.
  link(l1, 'mid', C());
  file(l2, 'mid/m', 'lower2 mid/m\n');
  // A link in the middle lower BETWEEN two real directories: the merge stops at it.
  file(l0, 'mid2/a', 'lower0 mid2/a\n');
  link(l1, 'mid2', C());
  file(l2, 'mid2/b', 'lower2 mid2/b\n');
  // Relative and `..`-laden links in the BOTTOM lower (layers/l2/x: ../.. is the test dir).
  link(l2, 'bot', '../../canary');
  link(l2, 'botroot', '../../../../../../../../../..');
  link(l2, 'botsecret', './../.././canary/../canary/secret');
  // A link in the bottom lower under a real directory in the top one.
  file(l0, 'bdir/f', 'lower0 bdir/f\n');
  link(l2, 'bdir', '../../canary');
  // The UPPER: leaf links, and a real directory over a link in the top lower.
  link(upper, 'uln', C('secret'));
  link(upper, 'urel', '../../canary');
  link(upper, 'self', '.');
  file(upper, 'udir/u', 'upper udir/u\n');
  link(l0, 'udir', C());
  // A directory merged over all four layers, with links inside at every level.
  link(upper, 'm/w', '/');
  link(l0, 'm/x', C('secret'));
  link(l1, 'm/y', '../../../canary');
  link(l1, 'm/yd', '../../../canary/cdir');
  file(l2, 'm/z', 'lower2 m/z\n');
  // `..` as the whole target.
  link(l0, 'dotdot', '..');
  link(l1, 'dotdot2', '../..');
  // A character device 1/3 (what /dev/null is) and a fifo in the lowers.
  sys.mknod(path.join(l0, 'null'), fs.constants.S_IFCHR | 0o666, sys.makedev(1, 3));
  fs.mkdirSync(path.join(l2, 'devdir'));
  sys.mknod(path.join(l2, 'devdir', 'null2'), fs.constants.S_IFCHR | 0o644, sys.makedev(1, 3));
  sys.mknod(path.join(l1, 'fifo'), fs.constants.S_IFIFO | 0o644, 0);
  // Whiteout look-alikes (OCI format names for '.', '..' and ''), at the root and in a merged dir.
  for (const n of ['.wh..', '.wh...', '.wh.']) {
    file(l0, n, `${n}\n`);
    file(l0, `w/${n}`, `${n}\n`);
  }
  file(l0, 'w/.wh..wh..opqx', 'not the opaque marker\n');
  file(l1, 'w/keep', 'lower1 w/keep\n');
  // A kernel-format whiteout in the upper over a file in the bottom lower.
  file(l2, 'wdel', 'lower2 wdel\n');
  sys.mknod(path.join(upper, 'wdel'), fs.constants.S_IFCHR, 0);
  // Hard links: two names of one inode in a lower, and one inode in two lowers.
  file(l0, 'h1', 'hard link\n');
  fs.linkSync(path.join(l0, 'h1'), path.join(l0, 'h2'));
  file(l0, 'h3', 'across layers\n');
  fs.linkSync(path.join(l0, 'h3'), path.join(l1, 'h4'));

  return {
    dir,
    lowers: [l0, l1, l2],
    upper,
    work,
    mnt,
    can,
    links,
    m: (rel = '') => at(mnt, rel),
    u: (rel = '') => at(upper, rel),
  };
}

// ----------------------------------------------------------------------------------- the canary

/** Everything about the canary that any access would change: times (strictatime), owner, mode, xattrs. No reads. */
export function canaryTimes(can: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const rel of CANARY_ENTRIES) {
    const p = at(can, rel);
    const st = fs.lstatSync(p, { bigint: true });
    const x = sys
      .llistxattr(p)
      .sort()
      .map((n) => `${n}=${sys.lgetxattr(p, n)?.toString()}`)
      .join(',');
    out.set(
      rel,
      `ino=${st.ino} mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} size=${st.size} nlink=${st.nlink} ` +
        `atime=${st.atimeNs} mtime=${st.mtimeNs} ctime=${st.ctimeNs} xattrs=[${x}]`,
    );
  }
  return out;
}

/** The canary's contents and listing: reads it (so it moves atimes): only after canaryTimes. */
export function canaryContents(can: string): string {
  const h = (p: string) => createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16);
  return JSON.stringify({
    root: fs.readdirSync(can).sort(),
    cdir: fs.readdirSync(path.join(can, 'cdir')).sort(),
    sub: fs.readdirSync(path.join(can, 'cdir', 'sub')).sort(),
    secret: h(path.join(can, 'secret')),
    inner: h(path.join(can, 'cdir', 'inner')),
  });
}

/** Does a read of the canary move its atime here? (Proves the canary sees reads, not only writes.) */
export function canarySeesReads(can: string): boolean {
  const probe = path.join(can, 'probe');
  fs.writeFileSync(probe, 'probe');
  const a0 = fs.lstatSync(probe, { bigint: true }).atimeNs;
  const until = Date.now() + 20;
  while (Date.now() < until) {
    /* let the clock move */
  }
  fs.readFileSync(probe);
  const a1 = fs.lstatSync(probe, { bigint: true }).atimeNs;
  fs.unlinkSync(probe);
  return a1 !== a0;
}

// ----------------------------------------------------------------------------------- the battery

export interface Step {
  cmd: string;
  args: string[];
  /** 'ok': must succeed; an errno name: must fail with it; 'any': either. */
  expect: 'ok' | 'any' | string;
}

/**
 * Operations through the mount touching every planted entry, and paths beneath them. Only
 * operations that either reach the daemon or are harmless when the caller's own kernel
 * follows a link (stat/cat of host files, stat of canary entries: neither moves a canary
 * time) — the canary must come out untouched.
 */
export function battery(h: Hostile): Step[] {
  const m = h.m;
  const steps: Step[] = [];
  const s = (expect: string, cmd: string, ...args: string[]) => steps.push({ cmd, args, expect });
  const top = ['bdir', 'bot', 'botroot', 'botsecret', 'cd', 'cl', 'devdir', 'dotdot', 'dotdot2', 'etc', 'fifo', 'h1', 'h2', 'h3', 'h4', 'm', 'mid', 'mid2', 'null', 'self', 'udir', 'uln', 'urel', 'w'];
  const topLinks = ['bot', 'botroot', 'botsecret', 'cd', 'cl', 'dotdot', 'dotdot2', 'etc', 'mid', 'self', 'uln', 'urel'];
  // stat and list everything
  s('ok', 'ls', '-la', m());
  s('ok', 'stat', ...top.map((n) => m(n)));
  s('ok', 'readlink', ...topLinks.map((n) => m(n)), m('m/w'), m('m/x'), m('m/y'), m('m/yd'));
  for (const d of ['m', 'w', 'udir', 'mid2', 'bdir', 'devdir']) s('ok', 'ls', '-la', m(d));
  s('ok', 'ls', '-laR', m('m'), m('w'), m('udir'), m('mid2'), m('bdir'), m('devdir'));
  s('ok', 'find', m(), '-xdev');
  // the whiteout look-alikes are never visible, and cannot be made
  for (const n of ['.wh..', '.wh...', '.wh.', 'w/.wh..', 'w/.wh...', 'w/.wh.', 'w/.wh..wh..opqx', 'wdel']) s('ENOENT', 'stat', m(n));
  s('EINVAL', 'mkdir', m('w/.wh.x'));
  s('EINVAL', 'touch', m('.wh..'));
  // beneath the links: the caller's kernel follows them (not the daemon); harmless lookups only
  // (absolute targets: a relative one resolves from the mount point in the caller's view)
  s('ok', 'stat', '-L', m('cl'), m('cd'), m('cd/inner'), m('mid'), m('m/x'));
  s('ENOENT', 'stat', m('cd/nothere'));
  s('ENOENT', 'stat', m('mid/m'));
  s('ok', 'cat', m('etc/hostname'));
  // beneath directories that shadow links in lower layers: the daemon's business
  for (const d of ['mid2', 'bdir', 'udir']) {
    for (const n of ['secret', 'cdir', 'cdir/inner', 'inner', 'b', 'm']) s('ENOENT', 'stat', m(`${d}/${n}`));
    s('ok', 'cat', m(`${d}/${{ mid2: 'a', bdir: 'f', udir: 'u' }[d]}`));
    s('ok', 'sh', '-c', 'echo new > "$1"', 'sh', m(`${d}/new`));
    s('ok', 'mkdir', m(`${d}/nd`));
    s('ok', 'sh', '-c', 'echo deep > "$1"', 'sh', m(`${d}/nd/f`));
    s('ok', 'mv', m(`${d}/new`), m(`${d}/renamed`));
    s('ok', 'chmod', '600', m(`${d}/renamed`));
    s('ok', 'chown', '-h', '1:1', m(`${d}/renamed`));
    s('ok', 'touch', '-h', '-d', '@1111111111', m(`${d}/renamed`));
    s('ok', 'setfattr', '-h', '-n', 'user.x', '-v', '1', m(`${d}/renamed`));
    s('ok', 'ln', m(`${d}/renamed`), m(`${d}/hard`));
    s('ok', 'ln', '-s', '../../canary/secret', m(`${d}/sl`));
    s('ok', 'rm', m(`${d}/hard`), m(`${d}/sl`));
    s('ok', 'rm', '-r', m(`${d}/nd`));
    s('ok', 'ls', '-la', m(d));
  }
  // the links themselves: metadata changes copy the LINK up; renames, hard links, removal
  s('ok', 'chown', '-h', '4242:4242', m('cl'), m('uln'), m('m/x'), m('bot'), m('etc'), m('dotdot'));
  s('ok', 'touch', '-h', '-d', '@1111111111', m('cd'), m('urel'), m('m/y'), m('botsecret'), m('self'));
  s('ok', 'setfattr', '-h', '-n', 'trusted.x', '-v', '1', m('mid'), m('botroot'), m('m/yd'));
  s('ok', 'setfattr', '-h', '-x', 'trusted.x', m('mid'));
  s('ok', 'ln', m('cl'), m('cl.hard'));
  s('ok', 'mv', m('cd'), m('cd.moved'));
  s('ok', 'mv', m('etc'), m('etc.moved'));
  s('ok', 'mv', m('m/yd'), m('m/yd.moved'));
  s('ok', 'rm', m('bot'), m('mid'), m('dotdot2'), m('m/w'));
  s('ok', 'ls', '-la', m(), m('m'));
  // devices and fifos: the daemon copies them up with mknod, never opens them
  s('ok', 'chmod', '600', m('null'));
  s('ok', 'chown', '-h', '1:1', m('devdir/null2'));
  s('ok', 'touch', '-h', '-d', '@1111111111', m('fifo'));
  s('ok', 'cat', m('null'), m('devdir/null2'));
  s('ok', 'sh', '-c', 'echo x > "$1"', 'sh', m('null'));
  // hard links
  s('ok', 'sh', '-c', 'echo more >> "$1"', 'sh', m('h1'));
  s('ok', 'cat', m('h1'), m('h2'), m('h3'), m('h4'));
  s('ok', 'sh', '-c', 'echo more >> "$1"', 'sh', m('h4'));
  // the merged directory: whiteout, opaque directory, rename
  s('ok', 'sh', '-c', 'echo new > "$1"', 'sh', m('m/new'));
  s('ok', 'rm', m('m/z'));
  s('ok', 'mkdir', m('m/z'));
  s('ok', 'mv', m('m/x'), m('m/x2'));
  s('ok', 'touch', m('w/new'));
  // a directory over a link, removed and made again
  s('ok', 'rm', '-rf', m('mid2'));
  s('ok', 'mkdir', m('mid2'));
  s('ok', 'ls', '-laR', m());
  return steps;
}

/** Run the battery; one line per step whose outcome was not the expected one. */
export async function runBattery(steps: Step[]): Promise<string[]> {
  const wrong: string[] = [];
  for (const st of steps) {
    const r = await run(st.cmd, st.args, { timeoutMs: 60_000 });
    const errno = r.code === 0 ? 'ok' : errnoFromMessage(r.stderr) ?? `exit ${r.code}: ${r.stderr.trim()}`;
    if (st.expect !== 'any' && errno !== st.expect) wrong.push(`${st.cmd} ${st.args.join(' ')}: ${errno} (expected ${st.expect})`);
  }
  return wrong;
}
