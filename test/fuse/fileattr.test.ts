// Inode flags through a real mount: lsattr and chattr (FS_IOC_GETFLAGS / FS_IOC_SETFLAGS, which
// the kernel turns into FUSE_IOCTL requests on a file it opens for them; directories too, with
// FUSE_CAP_IOCTL_DIR). layerfs by default; LAYERFS_FUSE_TARGET=kernel runs the same tests on
// kernel overlayfs (see _env.ts). The last test runs one chattr/lsattr session on both and
// compares every answer and what lands in the upper layer.
//
// On this machine's ext4 every object shows 'e' (extents): the tests compare with the layer
// objects' own flags rather than spell them out.

import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { buildLayers, dir, file, type LayerSet } from '../diff/layers.ts';
import { errnoFromMessage, run } from '../helpers/exec.ts';
import { makeTmp, mountFor, type MountTarget } from '../helpers/mounts.ts';
import { TARGET, kindOf, sh, shOk, withLayers } from './_env.ts';

const PROTATTR = 'trusted.overlay.protattr';

/** lsattr's letters for one object (a path through the mount or in a layer). */
async function lsattr(p: string): Promise<string> {
  return (await shOk('lsattr', '-d', '--', p)).trim().split(/\s+/)[0]!;
}

/** The protattr xattr of a layer object, or null. */
function protattr(abs: string): string | null {
  return sys.lgetxattr(abs, PROTATTR)?.toString('latin1') ?? null;
}

/** The errno of a command that failed, or 'ok'. */
async function result(cmd: string, ...args: string[]): Promise<string> {
  const r = await sh(cmd, ...args);
  return r.code === 0 ? 'ok' : (r.errno ?? `exit ${r.code}: ${r.stderr.trim()}`);
}

function layers(): LayerSet {
  return {
    lowers: [{ lf: file('lower file\n'), ld: dir({ c: file('c\n') }), m: dir({ a: file('a') }) }],
    upper: { uf: file('upper file\n'), m: dir({ b: file('b') }), ud: dir({ x: file('x') }) },
  };
}

test(
  'lsattr shows the flags of the object that serves the path: lower file, upper file, directories (lsattr -d)',
  withLayers(layers, async (t, e) => {
    t.is(await lsattr(e.m('lf')), await lsattr(e.l(0, 'lf')));
    t.is(await lsattr(e.m('uf')), await lsattr(e.u('uf')));
    t.is(await lsattr(e.m('ld')), await lsattr(e.l(0, 'ld')));
    t.is(await lsattr(e.m('ld/c')), await lsattr(e.l(0, 'ld/c')));
    t.is(await lsattr(e.m('m')), await lsattr(e.u('m')));
    t.is(await lsattr(e.m()), await lsattr(e.u()));
    // Reading flags copies nothing up.
    t.is(kindOf(e.u('lf')), 'missing');
    t.is(kindOf(e.u('ld')), 'missing');
  }),
);

test(
  'chattr +A on a lower file copies it up and sets the flag on the upper copy; the lower is untouched',
  withLayers(layers, async (t, e) => {
    const lowerBefore = await lsattr(e.l(0, 'lf'));
    t.false(lowerBefore.includes('A'));
    await shOk('chattr', '+A', e.m('lf'));
    t.true((await lsattr(e.m('lf'))).includes('A'));
    t.true((await lsattr(e.u('lf'))).includes('A'), 'set on the upper copy');
    t.is(await lsattr(e.l(0, 'lf')), lowerBefore, 'the lower file keeps its flags');
    t.is(fs.readFileSync(e.m('lf'), 'utf8'), 'lower file\n');
    t.is(fs.readFileSync(e.u('lf'), 'utf8'), 'lower file\n');
    await shOk('chattr', '-A', e.m('lf'));
    t.is(await lsattr(e.m('lf')), lowerBefore);
    // (withLayers then checks that no lower was modified in any way.)
  }),
);

test(
  'chattr on a lower directory copies up the directory alone; its children stay in the lower',
  withLayers(layers, async (t, e) => {
    const childBefore = await lsattr(e.l(0, 'ld/c'));
    await shOk('chattr', '+d', e.m('ld'));
    t.true((await lsattr(e.m('ld'))).includes('d'));
    t.true((await lsattr(e.u('ld'))).includes('d'));
    t.false((await lsattr(e.l(0, 'ld'))).includes('d'));
    t.deepEqual(fs.readdirSync(e.u('ld')), []);
    t.is(await lsattr(e.m('ld/c')), childBefore);
  }),
);

test(
  'chattr +i: kept in trusted.overlay.protattr (not on the upper inode) and enforced; chattr -i lifts it',
  withLayers(layers, async (t, e) => {
    await shOk('chattr', '+i', e.m('uf'));
    t.true((await lsattr(e.m('uf'))).includes('i'));
    t.false((await lsattr(e.u('uf'))).includes('i'), 'the upper inode itself is not immutable');
    t.is(protattr(e.u('uf')), 'i');
    t.is(await result('sh', '-c', `echo more >> '${e.m('uf')}'`), 'EPERM');
    t.is(await result('truncate', '-s', '0', e.m('uf')), 'EPERM');
    t.is(await result('chmod', '600', e.m('uf')), 'EPERM');
    t.is(await result('touch', e.m('uf')), 'EPERM');
    t.is(await result('setfattr', '-n', 'user.x', '-v', '1', e.m('uf')), 'EPERM');
    t.is(await result('rm', '-f', e.m('uf')), 'EPERM');
    t.is(await result('mv', e.m('uf'), e.m('uf2')), 'EPERM');
    t.is(await result('ln', e.m('uf'), e.m('uf3')), 'EPERM');
    t.is(fs.readFileSync(e.m('uf'), 'utf8'), 'upper file\n');
    // Overlay-private: not visible as an xattr through the mount.
    t.false((await shOk('getfattr', '-d', '-m', '-', e.m('uf'))).includes('protattr'));
    await shOk('chattr', '-i', e.m('uf'));
    t.is(protattr(e.u('uf')), null);
    await shOk('rm', e.m('uf'));
    t.is(kindOf(e.u('uf')), 'missing');
  }),
);

test(
  'chattr +a on a directory: new names are taken, none is removed',
  withLayers(layers, async (t, e) => {
    await shOk('chattr', '+a', e.m('ud'));
    t.is(protattr(e.u('ud')), 'a');
    t.is(await result('touch', e.m('ud/new')), 'ok');
    t.is(await result('mkdir', e.m('ud/sub')), 'ok');
    t.is(await result('rm', '-f', e.m('ud/x')), 'EPERM');
    t.is(await result('rmdir', e.m('ud/sub')), 'EPERM');
    t.is(await result('mv', e.m('ud/new'), e.m('new')), 'EPERM');
    t.deepEqual(fs.readdirSync(e.m('ud')).sort(), ['new', 'sub', 'x']);
    await shOk('chattr', '-a', e.m('ud'));
    await shOk('rm', '-r', e.m('ud'));
  }),
);

// ------------------------------------------------------------------ against kernel overlayfs

/**
 * One session of commands (run in the mount point), kept to what both implementations must
 * answer alike; the lower file `la` carries a real append-only flag (set on the lower).
 */
const SESSION: string[][] = [
  ['lsattr', '-d', 'lf', 'la', 'uf', 'ld', 'ld/c', 'm', '.'],
  ['chattr', '+A', 'lf'],
  ['lsattr', '-d', 'lf'],
  ['chattr', '+d', 'ld'],
  ['lsattr', '-d', 'ld', 'ld/c'],
  ['chattr', '+i', 'uf'],
  ['lsattr', '-d', 'uf'],
  ['sh', '-c', 'echo x >> uf'],
  ['rm', '-f', 'uf'],
  ['mv', 'uf', 'uf2'],
  ['chmod', '600', 'uf'],
  ['chattr', '+a', 'ud'],
  ['touch', 'ud/new'],
  ['rm', '-f', 'ud/x'],
  ['sh', '-c', 'echo y >> la'], // copy-up of an append-only lower file
  ['lsattr', '-d', 'la'],
  ['truncate', '-s', '0', 'la'],
  ['chattr', '+i', 'ld/c'],
  ['sh', '-c', 'echo z > ld/c'],
  ['chattr', '-i', 'uf'],
  ['rm', 'uf'],
  ['chattr', '-a', 'ud'],
  ['rm', '-f', 'ud/x'],
  ['ls', '-A', '.', 'ud', 'ld'],
  ['cat', 'la'],
];

interface Outcome {
  answers: string[];
  /** Per upper object: type, lsattr letters of the real object, protattr. */
  upper: Record<string, string>;
}

async function session(t: ExecutionContext, target: MountTarget, root: string): Promise<Outcome> {
  const built = await buildLayers(layers(), path.join(root, 'layers'), { format: 'kernel' });
  const upper = built.upper!;
  const work = path.join(root, 'work');
  const mnt = path.join(root, 'mnt');
  fs.mkdirSync(work);
  fs.mkdirSync(mnt);
  const la = path.join(built.lowers[0]!, 'la');
  fs.writeFileSync(la, 'append only\n');
  await shOk('chattr', '+a', la);
  // Registered after the temp dir's removal, so run before it (teardowns run last first).
  t.teardown(async () => void (await run('chattr', ['-a', la])));
  await mountFor(t, target, { lowers: built.lowers, upper, work, mnt });
  const answers: string[] = [];
  for (const c of SESSION) {
    const r = await run(c[0]!, c.slice(1), { cwd: mnt, timeoutMs: 30_000 });
    const err = r.code === 0 ? '' : ` ${errnoFromMessage(r.stderr) ?? r.stderr.trim()}`;
    answers.push(`${c.join(' ')} => ${r.code}${err} ${r.stdout.toString('utf8').trim()}`);
  }
  const out: Record<string, string> = {};
  const visit = async (rel: string): Promise<void> => {
    for (const n of fs.readdirSync(path.join(upper, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const abs = path.join(upper, r);
      const kind = kindOf(abs);
      const flags = kind === 'file' || kind === 'dir' ? await lsattr(abs) : '';
      out[r] = `${kind} ${flags} protattr=${protattr(abs)}`;
      if (kind === 'dir') await visit(r);
    }
  };
  await visit('');
  t.true((await lsattr(la)).includes('a'), 'the lower keeps its own flag');
  return { answers, upper: out };
}

test('a chattr/lsattr session gives the same answers and the same upper on kernel overlayfs and on layerfs', async (t) => {
  if (TARGET === 'kernel') {
    t.pass('compares layerfs with the kernel: nothing to do when the suite runs on the kernel');
    return;
  }
  const kernel = await session(t, 'kernel', makeTmp(t, 'layerfs-fileattr-kernel-'));
  const layerfs = await session(t, 'layerfs', makeTmp(t, 'layerfs-fileattr-layerfs-'));
  t.deepEqual(layerfs.answers, kernel.answers);
  t.deepEqual(layerfs.upper, kernel.upper);
  // What the session must have shown (so that "the same" is not "the same failure").
  t.true(kernel.answers.some((a) => /^chattr \+i uf => 0/.test(a)));
  t.true(kernel.answers.some((a) => /^rm -f uf => 1 EPERM/.test(a)));
  t.false('uf' in kernel.upper);
  t.regex(kernel.upper['la']!, /^file \S+ protattr=a$/);
  t.regex(kernel.upper['lf']!, /^file \S*A\S* protattr=null$/);
});
