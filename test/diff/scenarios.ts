// The scenario list of the differential harness. Each scenario describes its
// layers (lowers top-most first, optionally a pre-populated upper) and a list
// of operations; the engine runs it on kernel overlayfs and on layerfs and
// compares every op result plus the final merged view and upper dir.
//
// Scenarios say what they exercise; they do NOT encode expected results —
// the kernel is the reference. Comments note what the kernel does where it is
// not obvious (observed on Linux 6.18, default module options:
// redirect_dir=off, index=off, metacopy=off, xino=off).

import type { Op, Scenario } from './engine.ts';
import { op } from './engine.ts';
import {
  blockdev,
  chardev,
  dir,
  fifo,
  file,
  hardlink,
  opaqueDir,
  rawName,
  sparseFile,
  symlink,
  whiteout,
  type Tree,
} from './layers.ts';

const T0 = 1_600_000_000; // a fixed timestamp (Sep 2020)

/** Reads that show the whole visible state of a few paths. */
function look(...paths: string[]): Op[] {
  const out: Op[] = [];
  for (const p of paths) out.push(op.lstat(p), op.readdir(p));
  return out;
}

/** A richly-populated lower layer used by several copy-up scenarios. */
function metaLower(): Tree {
  return {
    f: file('lower content\n', { mode: 0o640, uid: 1000, gid: 1001, xattrs: { 'user.origin': 'lower', 'user.color': 'blue' }, mtime: T0 }),
    g: file('another\n', { mode: 0o600, uid: 2000, gid: 2000 }),
    d: dir(
      {
        inner: file('inner\n', { mode: 0o644, uid: 3000, gid: 3001 }),
        sub: dir({ leaf: file('leaf\n') }, { mode: 0o700 }),
      },
      { mode: 0o750, uid: 1000, gid: 1000, xattrs: { 'user.dirattr': 'dir' } },
    ),
  };
}

const baseScenarios: Scenario[] = [
  // ---------------------------------------------------------------- shadowing
  {
    name: 'upper file shadows lower file',
    layers: {
      lowers: [{ f: file('lower f\n'), g: file('only in lower\n') }],
      upper: { f: file('upper f\n', { mode: 0o600, uid: 10, gid: 20 }) },
    },
    ops: [op.readFile('f'), op.stat('f'), op.readFile('g'), op.readdir('.'), op.appendFile('f', 'more\n'), op.readFile('f')],
  },
  {
    name: 'upper dir merges with lower dir',
    layers: {
      lowers: [{ d: dir({ a: file('lower a'), b: file('lower b'), s: dir({ x: file('x') }) }, { mode: 0o711 }) }],
      upper: { d: dir({ b: file('upper b'), c: file('upper c'), s: dir({ y: file('y') }) }, { mode: 0o755 }) },
    },
    ops: [op.readdir('d'), op.stat('d'), op.readFile('d/a'), op.readFile('d/b'), op.readFile('d/c'), op.readdir('d/s')],
  },
  {
    name: 'upper symlink shadows lower file',
    layers: {
      lowers: [{ x: file('lower x'), t: file('the target') }],
      upper: { x: symlink('t') },
    },
    ops: [op.lstat('x'), op.readlink('x'), op.readFile('x'), op.stat('x'), op.readlink('t')],
  },
  {
    name: 'three lowers: top-most wins, directories merge',
    layers: {
      lowers: [
        { f: file('top f'), d: dir({ a: file('a from 0') }) },
        { f: file('middle f'), g: file('middle g'), d: dir({ a: file('a from 1'), b: file('b from 1') }) },
        { f: file('bottom f'), g: file('bottom g'), h: file('bottom h'), d: dir({ c: file('c from 2'), e: dir({ x: file('') }) }) },
      ],
    },
    ops: [
      op.readFile('f'),
      op.readFile('g'),
      op.readFile('h'),
      op.readdir('.'),
      op.readdir('d'),
      op.readFile('d/a'),
      op.readFile('d/b'),
      op.readFile('d/c'),
      op.readdir('d/e'),
    ],
  },
  {
    name: 'a file in a higher lower ends the lookup: dir below is invisible',
    layers: {
      lowers: [{ x: file('i am a file') }, { x: dir({ child: file('hidden child') }), y: dir({ z: file('z') }) }],
    },
    ops: [op.stat('x'), op.readFile('x'), op.readdir('x'), op.readFile('x/child'), op.stat('x/child'), op.readdir('.'), op.readdir('y')],
  },
  {
    name: 'a dir in a higher lower hides a file below it',
    layers: {
      lowers: [{ x: dir({ a: file('a') }) }, { x: file('the file below') }],
    },
    ops: [op.stat('x'), op.readdir('x'), op.readFile('x'), op.readFile('x/a'), op.writeFile('x/b', 'new'), op.readdir('x')],
  },
  {
    name: 'a non-directory in the middle lower stops the merge of a dir',
    layers: {
      lowers: [{ x: dir({ a: file('a') }) }, { x: symlink('elsewhere') }, { x: dir({ b: file('b') }) }],
    },
    ops: [op.readdir('x'), op.stat('x/b'), op.readFile('x/a'), op.mkdir('x/b'), op.readdir('x')],
  },

  // ------------------------------------------------------------- whiteouts
  {
    name: 'kernel whiteout in a lower hides a file',
    layers: {
      lowers: [{ f: whiteout('kernel'), keep: file('top keep') }, { f: file('hidden'), keep: file('bottom keep'), other: file('o') }],
    },
    ops: [op.readFile('f'), op.stat('f'), op.readdir('.'), op.unlink('f'), op.writeFile('f', 'recreated'), op.readFile('f'), op.readdir('.')],
  },
  {
    name: 'OCI whiteout in a lower hides a file',
    layers: {
      lowers: [{ f: whiteout('oci'), keep: file('top keep') }, { f: file('hidden'), keep: file('bottom keep'), other: file('o') }],
    },
    ops: [op.readFile('f'), op.stat('f'), op.readdir('.'), op.unlink('f'), op.writeFile('f', 'recreated'), op.readFile('f'), op.readdir('.')],
  },
  {
    name: 'kernel whiteout in a lower hides a whole dir',
    layers: {
      lowers: [{ d: whiteout('kernel') }, { d: dir({ a: file('a'), b: dir({ c: file('c') }) }), e: file('e') }],
    },
    ops: [op.stat('d'), op.readdir('d'), op.readFile('d/a'), op.readdir('.'), op.rmdir('d'), op.mkdir('d'), op.readdir('d'), op.writeFile('d/n', 'n')],
  },
  {
    name: 'OCI whiteout in a lower hides a whole dir',
    layers: {
      lowers: [{ d: whiteout('oci') }, { d: dir({ a: file('a'), b: dir({ c: file('c') }) }), e: file('e') }],
    },
    ops: [op.stat('d'), op.readdir('d'), op.readFile('d/a'), op.readdir('.'), op.rmdir('d'), op.mkdir('d'), op.readdir('d'), op.writeFile('d/n', 'n')],
  },
  {
    name: 'kernel opaque dir in a lower',
    layers: {
      lowers: [
        { d: opaqueDir('kernel', { a: file('top a') }) },
        { d: dir({ a: file('bottom a'), b: file('b'), c: dir({ x: file('x') }) }) },
      ],
    },
    ops: [op.readdir('d'), op.readFile('d/a'), op.stat('d/b'), op.readdir('d/c'), op.writeFile('d/b', 'new b'), op.readdir('d'), op.rmrf('d'), op.readdir('.')],
  },
  {
    name: 'OCI opaque dir in a lower',
    layers: {
      lowers: [
        { d: opaqueDir('oci', { a: file('top a') }) },
        { d: dir({ a: file('bottom a'), b: file('b'), c: dir({ x: file('x') }) }) },
      ],
    },
    ops: [op.readdir('d'), op.readFile('d/a'), op.stat('d/b'), op.readdir('d/c'), op.writeFile('d/b', 'new b'), op.readdir('d'), op.rmrf('d'), op.readdir('.')],
  },
  // Copy-up of an opaque lower dir: the kernel does not copy overlay xattrs,
  // so the upper copy is NOT opaque; the lower dir's opacity still stops the
  // merge below it.
  ...(['kernel', 'oci'] as const).map(
    (format): Scenario => ({
      name: `copy-up of an opaque lower dir (${format === 'kernel' ? 'kernel' : 'OCI'} marker)`,
      layers: {
        lowers: [
          { d: opaqueDir(format, { a: file('top a'), s: dir({ t: file('t') }) }, { mode: 0o750 }) },
          { d: dir({ b: file('b'), s: dir({ u: file('u') }) }) },
        ],
      },
      ops: [op.writeFile('d/n', 'n'), op.readdir('d'), op.appendFile('d/s/t', '+'), op.readdir('d/s'), op.stat('d/b'), op.chmod('d', 0o755)],
    }),
  ),
  {
    name: 'mixed markers across three lowers',
    layers: {
      lowers: [
        { d: dir({ x: whiteout('oci'), t: file('top t') }), e: opaqueDir('oci', { only: file('only') }), q: whiteout('oci') },
        { d: dir({ x: file('mid x'), y: whiteout('kernel'), u: file('mid u') }), e: dir({ k: file('k') }), z: whiteout('kernel'), q: dir({ r: file('r') }) },
        { d: dir({ x: file('bottom x'), y: file('bottom y'), w: file('bottom w') }), e: dir({ m: file('m') }), z: file('z'), q: file('q') },
      ],
    },
    ops: [
      ...look('.', 'd', 'e'),
      op.readFile('d/x'),
      op.readFile('d/y'),
      op.readFile('d/w'),
      op.stat('z'),
      op.stat('q'),
      op.writeFile('d/y', 'y again'),
      op.unlink('d/w'),
      op.readdir('d'),
    ],
  },
  {
    name: 'whiteout and opaque dir already in the upper',
    layers: {
      lowers: [{ f: file('lower f'), d: dir({ o: file('lower o'), p: file('lower p') }), keep: file('k') }],
      upper: { f: whiteout('kernel'), d: opaqueDir('kernel', { n: file('upper n') }) },
    },
    ops: [op.stat('f'), op.readdir('.'), op.readdir('d'), op.stat('d/o'), op.unlink('d/n'), op.readdir('d'), op.rmdir('d'), op.stat('d'), op.readdir('.')],
  },

  // ------------------------------------------------------------- copy-up
  {
    name: 'copy-up on overwrite (writeFile)',
    layers: { lowers: [metaLower()] },
    ops: [op.writeFile('f', 'replaced\n'), op.readFile('f'), op.stat('f'), op.listxattr('f'), op.readFile('g')],
  },
  {
    name: 'copy-up on appendFile',
    layers: { lowers: [metaLower()] },
    ops: [op.appendFile('f', 'appended\n'), op.readFile('f'), op.stat('f'), op.getxattr('f', 'user.origin')],
  },
  {
    name: 'copy-up on write at an offset (no truncation)',
    layers: { lowers: [metaLower()] },
    ops: [op.writeAt('f', 6, 'CONTENT'), op.readFile('f'), op.writeAt('g', 20, 'past the end'), op.readFile('g'), op.stat('g')],
  },
  {
    name: 'copy-up on truncate',
    layers: { lowers: [metaLower()] },
    ops: [op.truncate('f', 5), op.readFile('f'), op.truncate('g', 0), op.stat('g'), op.truncate('d/inner', 100), op.stat('d/inner'), op.readFile('d/inner')],
  },
  {
    name: 'copy-up on chmod (file and dir)',
    layers: { lowers: [metaLower()] },
    ops: [op.chmod('f', 0o4755), op.stat('f'), op.chmod('d', 0o1777), op.stat('d'), op.readdir('d'), op.chmod('d/sub', 0o2755), op.stat('d/sub'), op.readFile('d/sub/leaf')],
  },
  {
    name: 'copy-up on chown',
    layers: { lowers: [metaLower()] },
    ops: [op.chown('f', 1234, 5678), op.stat('f'), op.chown('d', 42, 43), op.stat('d'), op.chown('d/inner', 0, 0), op.stat('d/inner'), op.getxattr('f', 'user.color')],
  },
  {
    name: 'copy-up on utimes',
    layers: { lowers: [metaLower()] },
    ops: [op.stat('f', true), op.utimes('f', T0 + 100, T0 + 200), op.stat('f', true), op.utimes('d', T0, T0 + 1), op.stat('d', true), op.readFile('f')],
  },
  {
    name: 'copy-up on setxattr / removexattr; getxattr and listxattr',
    layers: { lowers: [metaLower()] },
    ops: [
      op.listxattr('f'),
      op.getxattr('f', 'user.origin'),
      op.getxattr('f', 'user.missing'),
      op.setxattr('f', 'user.new', 'value'),
      op.listxattr('f'),
      op.getxattr('f', 'user.new'),
      op.removexattr('g', 'user.nothing'),
      op.setxattr('g', 'user.tmp', 'x'),
      op.removexattr('g', 'user.tmp'),
      op.listxattr('g'),
      op.removexattr('f', 'user.color'),
      op.listxattr('f'),
      op.setxattr('d', 'user.on-dir', 'yes'),
      op.listxattr('d'),
      op.getxattr('d/inner', 'user.none'),
    ],
  },
  {
    name: 'copy-up of deep lower-only parents',
    layers: {
      lowers: [
        {
          a: dir(
            {
              b: dir(
                {
                  c: dir({ f: file('deep\n', { uid: 9, gid: 9 }), other: file('stays lower') }, { mode: 0o700, uid: 7, gid: 8, xattrs: { 'user.c': 'c' } }),
                  sib: dir({ s: file('sibling') }),
                },
                { mode: 0o750, uid: 5, gid: 6 },
              ),
              untouched: dir({ u: file('u') }, { mode: 0o700 }),
            },
            { mode: 0o755, xattrs: { 'user.a': 'a' } },
          ),
        },
      ],
    },
    ops: [op.appendFile('a/b/c/f', 'more\n'), op.readFile('a/b/c/f'), ...look('a', 'a/b', 'a/b/c'), op.writeFile('a/b/sib/new', 'new file')],
  },
  {
    name: 'copied-up parent takes its attributes from the top-most lower dir',
    layers: {
      lowers: [
        { p: dir({ q: dir({}, { mode: 0o751, uid: 11, gid: 12 }) }, { mode: 0o711, uid: 1, gid: 2, xattrs: { 'user.from': 'top' } }) },
        { p: dir({ q: dir({ f: file('from the bottom lower') }, { mode: 0o755 }) }, { mode: 0o755, xattrs: { 'user.from': 'bottom' } }) },
      ],
    },
    ops: [op.appendFile('p/q/f', '+'), op.readFile('p/q/f'), op.stat('p'), op.stat('p/q'), op.listxattr('p'), op.getxattr('p', 'user.from')],
  },

  // ------------------------------------------------------------- deletion
  {
    name: 'unlink of a lower file leaves a whiteout',
    layers: { lowers: [{ f: file('f'), l: symlink('f'), d: dir({ g: file('g') }) }] },
    ops: [op.unlink('f'), op.stat('f'), op.unlink('f'), op.readdir('.'), op.unlink('l'), op.unlink('d/g'), op.readdir('d'), op.unlink('d')],
  },
  {
    name: 'unlink of an upper-only file leaves no whiteout',
    layers: { lowers: [{ d: dir({ keep: file('k') }) }], upper: { u: file('pre-existing upper only') } },
    ops: [op.writeFile('new', 'n'), op.unlink('new'), op.writeFile('d/new', 'n'), op.unlink('d/new'), op.unlink('u'), op.readdir('.'), op.readdir('d')],
  },
  {
    name: 'unlink then recreate a lower file',
    layers: { lowers: [{ f: file('old', { mode: 0o600, uid: 5, gid: 5, xattrs: { 'user.old': '1' } }), d: dir({ g: file('old g') }) }] },
    ops: [op.unlink('f'), op.writeFile('f', 'new'), op.readFile('f'), op.stat('f'), op.listxattr('f'), op.unlink('d/g'), op.mkdir('d/g'), op.lstat('d/g'), op.readdir('d/g')],
  },
  {
    name: 'rmdir of a lower dir leaves a whiteout',
    layers: { lowers: [{ e: dir({}, { mode: 0o700 }), d: dir({ empty: dir() }), f: file('f') }] },
    ops: [op.rmdir('e'), op.stat('e'), op.rmdir('e'), op.rmdir('d/empty'), op.readdir('d'), op.rmdir('f'), op.readdir('.')],
  },
  {
    name: 'rmdir of a merged dir with visible entries: ENOTEMPTY; after emptying it works',
    layers: {
      lowers: [{ d: dir({ a: file('a') }) }, { d: dir({ b: file('b'), s: dir() }) }],
      upper: { d: dir({ c: file('c') }) },
    },
    ops: [
      op.rmdir('d'),
      op.unlink('d/a'),
      op.unlink('d/c'),
      op.rmdir('d'),
      op.rmdir('d/s'),
      op.unlink('d/b'),
      op.readdir('d'),
      op.rmdir('d'),
      op.stat('d'),
      op.mkdir('d'),
      op.readdir('d'),
    ],
  },
  {
    name: 'rm -rf of a merged dir, then mkdir again (opaque)',
    layers: {
      lowers: [{ d: dir({ a: file('a'), s: dir({ t: file('t') }) }, { mode: 0o750 }) }, { d: dir({ b: file('b'), l: symlink('a') }) }],
    },
    ops: [op.rmrf('d'), op.stat('d'), op.readdir('.'), op.mkdir('d'), op.readdir('d'), op.stat('d'), op.writeFile('d/x', 'x'), op.readdir('d'), op.stat('d/a')],
  },
  {
    name: 'mkdir of new dirs',
    layers: { lowers: [{ lo: dir({ f: file('f') }, { mode: 0o700, uid: 3, gid: 4 }), file: file('a file') }] },
    ops: [
      op.mkdir('new'),
      op.mkdir('new/sub', 0o700),
      op.mkdir('lo/inside', 0o2775),
      op.mkdir('lo'),
      op.mkdir('file'),
      op.mkdir('missing/child'),
      op.mkdir('file/child'),
      ...look('new', 'new/sub', 'lo', 'lo/inside'),
    ],
  },

  // ------------------------------------------------------------- rename
  {
    name: 'rename of upper files',
    layers: { lowers: [{ l: file('lower') }], upper: { u: file('upper') } },
    ops: [op.rename('u', 'u2'), op.writeFile('n', 'new'), op.rename('n', 'n2'), op.rename('n2', 'l'), op.readFile('l'), op.readdir('.'), op.rename('nonexistent', 'x')],
  },
  {
    name: 'rename of a lower file: copy-up, whiteout at the source',
    layers: { lowers: [{ f: file('f content', { mode: 0o640, xattrs: { 'user.k': 'v' } }), d: dir({ g: file('g') }), e: dir() }] },
    ops: [op.rename('f', 'g'), op.stat('f'), op.readFile('g'), op.listxattr('g'), op.rename('d/g', 'e/g'), op.readdir('d'), op.readdir('e'), op.rename('e/g', 'top-g')],
  },
  {
    name: 'rename over an existing target',
    layers: {
      lowers: [{ a: file('a'), b: file('b'), c: file('c'), dd: dir({ x: file('x') }), ed: dir(), f: file('f') }],
      upper: { u: file('u') },
    },
    ops: [
      op.rename('a', 'b'),
      op.readFile('b'),
      op.stat('a'),
      op.rename('u', 'c'),
      op.readFile('c'),
      op.rename('f', 'dd'),
      op.rename('dd', 'f'),
      op.rename('c', 'c'),
      op.readdir('.'),
    ],
  },
  {
    name: 'rename of a lower or merged dir: EXDEV (redirect_dir off)',
    layers: {
      lowers: [{ d: dir({ a: file('a') }), e: dir(), m: dir({ x: file('x') }) }],
      upper: { m: dir({ y: file('y') }) },
    },
    ops: [op.rename('d', 'd2'), op.rename('e', 'e2'), op.rename('m', 'm2'), op.rename('d', 'm/d'), ...look('.', 'd', 'm')],
  },
  {
    name: 'mv of a lower dir falls back to copy + delete',
    layers: {
      lowers: [
        { d: dir({ a: file('a', { mode: 0o600 }), s: dir({ t: file('t') }, { mode: 0o711 }), l: symlink('a') }, { mode: 0o750, uid: 7, gid: 7 }) },
        { d: dir({ b: file('b'), a: file('hidden a') }) },
      ],
    },
    ops: [op.mv('d', 'd2'), op.stat('d'), ...look('d2', 'd2/s'), op.readFile('d2/a'), op.readFile('d2/b'), op.readlink('d2/l')],
  },
  {
    name: 'rename of an upper-only dir works',
    layers: { lowers: [{ lo: dir({ f: file('f') }) }], upper: { pre: dir({ p: file('p') }) } },
    ops: [
      op.mkdir('n'),
      op.writeFile('n/f', 'f'),
      op.rename('n', 'm'),
      op.readdir('m'),
      op.rename('m', 'lo/m'),
      op.readdir('lo/m'),
      op.rename('pre', 'pre2'),
      op.readdir('pre2'),
      ...look('.', 'lo'),
    ],
  },
  {
    name: 'rename of an upper dir over an empty lower dir',
    layers: { lowers: [{ empty: dir(), full: dir({ x: file('x') }) }] },
    ops: [op.mkdir('n'), op.writeFile('n/f', 'f'), op.rename('n', 'full'), op.rename('n', 'empty'), op.readdir('empty'), op.readdir('.')],
  },

  // ------------------------------------------------------------- links and special files
  {
    name: 'hard link to a lower file (and hard links inside a lower)',
    layers: { lowers: [{ f: file('f'), h1: file('shared'), h2: hardlink('h1') }] },
    ops: [
      op.stat('h1'),
      op.stat('h2'),
      op.link('f', 'f2'),
      op.stat('f'),
      op.stat('f2'),
      op.appendFile('f2', '+'),
      op.readFile('f'),
      op.appendFile('h1', ' changed'),
      op.readFile('h1'),
      op.readFile('h2'),
      op.stat('h1'),
      op.stat('h2'),
      op.link('f', 'f2'),
    ],
  },
  {
    name: 'symlink create and readlink',
    layers: { lowers: [{ t: file('target'), ls: symlink('t'), d: dir() }] },
    ops: [
      op.symlink('t', 'l'),
      op.readlink('l'),
      op.readFile('l'),
      op.lstat('l'),
      op.symlink('does/not/exist', 'dangling'),
      op.readFile('dangling'),
      op.symlink('x', 't'),
      op.readlink('ls'),
      op.symlink('../t', 'd/up'),
      op.readFile('d/up'),
      op.readlink('t'),
      op.unlink('ls'),
      op.symlink('t', 'ls'),
    ],
  },
  {
    name: 'fifo creation',
    layers: { lowers: [{ lf: fifo({ mode: 0o600 }), d: dir() }] },
    ops: [op.mkfifo('p'), op.stat('p'), op.mkfifo('p'), op.mkfifo('d/q', 0o640), op.stat('d/q'), op.stat('lf'), op.chmod('lf', 0o666), op.stat('lf'), op.unlink('p')],
  },
  {
    name: 'read-only mount (no upper): writes give EROFS',
    readOnly: true,
    layers: {
      lowers: [{ f: file('top f'), d: dir({ a: file('a') }) }, { f: file('bottom f'), g: file('g'), d: dir({ b: file('b') }) }],
    },
    ops: [
      op.readFile('f'),
      op.readdir('d'),
      op.writeFile('f', 'x'),
      op.writeFile('new', 'x'),
      op.appendFile('g', 'x'),
      op.truncate('g', 0),
      op.mkdir('nd'),
      op.rmdir('d'),
      op.unlink('f'),
      op.rename('f', 'f2'),
      op.symlink('f', 'l'),
      op.link('f', 'f3'),
      op.chmod('f', 0o600),
      op.chown('f', 1, 1),
      op.utimes('f', T0, T0),
      op.mkfifo('p'),
      op.setxattr('f', 'user.x', 'y'),
      op.rmrf('d'),
      op.getxattr('f', 'user.x'),
      op.stat('f'),
    ],
  },
  {
    name: 'ro mount option with an upper',
    options: ['ro'],
    layers: { lowers: [{ f: file('f'), d: dir({ a: file('a') }) }], upper: { u: file('u') } },
    ops: [op.readFile('f'), op.readFile('u'), op.writeFile('f', 'x'), op.unlink('u'), op.mkdir('n'), op.readdir('.')],
  },
  {
    name: 'names with spaces',
    layers: {
      lowers: [{ 'a dir': dir({ 'a file': file('spaced'), ' lead': file('leading space') }), 'trail ': file('trailing space') }],
    },
    ops: [
      op.readdir('a dir'),
      op.readFile('a dir/a file'),
      op.rename('a dir/a file', 'a dir/b file'),
      op.writeFile('new dir with spaces', 'oops a file'),
      op.mkdir('real new dir'),
      op.writeFile('real new dir/x y', 'x y'),
      op.unlink('trail '),
      op.unlink('a dir/ lead'),
      op.readdir('.'),
      op.readdir('a dir'),
    ],
  },
  {
    name: 'cp -a into the mount',
    outside: {
      src: dir(
        { f: file('outside f', { mode: 0o750, uid: 42, gid: 43, xattrs: { 'user.cp': 'kept' } }), l: symlink('f'), sub: dir({ g: file('g') }, { mode: 0o700 }) },
        { mode: 0o755, uid: 1, gid: 1 },
      ),
    },
    layers: { lowers: [{ d: dir({ f: file('lower f'), keep: file('keep') }), e: dir({ x: file('x') }) }] },
    ops: [op.cpa('src', 'copied', true), op.cpa('src/.', 'd', true), op.cpa('e', 'e-copy'), ...look('copied', 'd', 'd/sub', 'e-copy'), op.readFile('d/f')],
  },
  {
    name: 'error codes of common mistakes',
    layers: { lowers: [{ f: file('f'), d: dir({ x: file('x') }), e: dir() }] },
    ops: [
      op.readFile('d'),
      op.readdir('f'),
      op.unlink('d'),
      op.rmdir('f'),
      op.stat('f/x'),
      op.writeFile('f/x', 'x'),
      op.link('f', 'd/x'),
      op.link('d', 'd2'),
      op.readlink('f'),
      op.rename('d', 'd/inside'),
      op.rename('e', 'f'),
      op.writeFile('missing/x', 'x'),
      op.getxattr('nothere', 'user.x'),
    ],
  },
  {
    name: 'lower metadata visible through the merged view',
    layers: {
      lowers: [
        {
          suid: file('#!/bin/sh\n', { mode: 0o4755, uid: 100, gid: 100 }),
          sgid: file('', { mode: 0o2710, uid: 0, gid: 50 }),
          sticky: dir({ in: file('in', { mode: 0o666 }) }, { mode: 0o1777 }),
          xa: file('xa', { xattrs: { 'user.one': '1', 'user.two': 'two words', 'user.empty': '' } }),
          sl: symlink('suid', { uid: 5, gid: 6 }),
          p: fifo({ mode: 0o620, uid: 8, gid: 9 }),
        },
      ],
    },
    ops: [op.stat('suid'), op.stat('sgid'), op.stat('sticky'), op.lstat('sl'), op.stat('p'), op.listxattr('xa'), op.getxattr('xa', 'user.two'), op.getxattr('xa', 'user.empty')],
  },

  // ---------------------------------------------------------------- inode flags (lsattr / chattr)
  // The kernel answers FS_IOC_GETFLAGS from the layer that serves the object and copies it up
  // before FS_IOC_SETFLAGS. (On ext4 every object shows 'e', extents.)
  {
    name: 'inode flags: lsattr and chattr on lower, upper and merged objects',
    layers: {
      lowers: [{ f: file('lower f'), d: dir({ c: file('c') }), m: dir({ a: file('a') }), sl: symlink('f'), p: fifo() }],
      upper: { g: file('upper g'), m: dir({ b: file('b') }) },
    },
    ops: [
      op.lsattr('f'),
      op.lsattr('g'),
      op.lsattr('d'),
      op.lsattr('m'),
      op.lsattr('.'),
      op.lsattr('p'),
      op.chattr('f', '+A'),
      op.lsattr('f'),
      op.readFile('f'),
      op.chattr('g', '+d'),
      op.lsattr('g'),
      op.chattr('d', '+A'),
      op.lsattr('d'),
      op.lsattr('d/c'),
      op.readdir('d'),
      op.chattr('m', '+d'),
      op.lsattr('m'),
      op.readdir('m'),
      op.chattr('p', '+A'),
      op.chattr('f', '-A'),
      op.lsattr('f'),
    ],
  },
  {
    // Since 5.16 the kernel keeps immutable and append-only in overlay.protattr on the upper
    // object, not on its real inode, and enforces them itself.
    name: 'inode flags: immutable and append-only are kept by the overlay and enforced',
    layers: {
      lowers: [{ lf: file('lf'), src: file('src'), d: dir({ x: file('x') }), e: dir({ y: file('y') }) }],
      upper: { g: file('g'), h: file('h'), u: file('u') },
    },
    ops: [
      op.chattr('g', '+i'),
      op.lsattr('g'),
      op.appendFile('g', '+'),
      op.writeFile('g', 'new'),
      op.truncate('g', 0),
      op.chmod('g', 0o600),
      op.chown('g', 1, 1),
      op.utimes('g', T0, T0),
      op.setxattr('g', 'user.x', 'y'),
      op.unlink('g'),
      op.rename('g', 'g2'),
      op.rename('u', 'g'),
      op.link('g', 'g3'),
      op.readFile('g'),
      op.chattr('h', '+a'),
      op.lsattr('h'),
      op.appendFile('h', '+more'),
      op.writeFile('h', 'replaced'),
      op.writeAt('h', 0, 'X'),
      op.truncate('h', 0),
      op.utimes('h', T0, T0),
      op.unlink('h'),
      op.readFile('h'),
      op.chattr('lf', '+i'),
      op.lsattr('lf'),
      op.writeFile('lf', 'x'),
      op.unlink('lf'),
      op.chattr('d', '+a'),
      op.writeFile('d/new', 'n'),
      op.mkdir('d/nd'),
      op.unlink('d/x'),
      op.rename('d/x', 'd/x2'),
      op.rename('src', 'd/src'),
      op.unlink('d/src'),
      op.rmdir('d/nd'),
      op.readdir('d'),
      op.chattr('e', '+i'),
      op.writeFile('e/new', 'n'),
      op.appendFile('e/y', '+'),
      op.mkdir('e/nd'),
      op.unlink('e/y'),
      op.rmrf('e'),
      op.readdir('e'),
      op.lsattr('e'),
      op.chattr('g', '-i'),
      op.unlink('g'),
      op.chattr('h', '-a'),
      op.writeFile('h', 'replaced'),
      op.chattr('lf', '-i'),
      op.unlink('lf'),
      op.chattr('d', '-a'),
      op.unlink('d/x'),
      op.chattr('e', '-i'),
      op.rmrf('e'),
      op.readdir('.'),
    ],
  },
  {
    name: 'inode flags: userxattr keeps the protection flags in user.overlay.protattr',
    options: ['userxattr'],
    layers: { lowers: [{ f: file('f'), d: dir({ x: file('x') }) }] },
    ops: [
      op.chattr('f', '+i'),
      op.lsattr('f'),
      op.unlink('f'),
      op.listxattr('f'),
      op.chattr('d', '+a'),
      op.unlink('d/x'),
      op.writeFile('d/y', 'y'),
      op.chattr('f', '-i'),
      op.unlink('f'),
    ],
  },
];


// ---------------------------------------------------------------------------
// rename in all combinations
//
// One scenario per kind of source; inside it, one top-level directory per kind of target,
// holding `src` and the target, so every pair is an independent rename on one mount.

const renameSources = ['upper-file', 'lower-file', 'shadow-file', 'lower-symlink', 'upper-dir', 'lower-dir', 'merged-dir'] as const;
const renameTargets = [
  'none',
  'upper-file',
  'lower-file',
  'upper-dir-empty',
  'lower-dir-empty',
  'merged-dir-empty',
  'dir-nonempty',
  'upper-whiteout',
  'lower-whiteout-kernel',
  'lower-whiteout-oci',
  'lower-symlink',
  'lower-only-parent',
  'lower-only-parent-file',
  'self',
] as const;
type RenameSource = (typeof renameSources)[number];
type RenameTarget = (typeof renameTargets)[number];

function renameCase(src: RenameSource, dst: RenameTarget): { l0: Tree; l1: Tree; up: Tree; to: string } {
  const l0: Tree = {};
  const l1: Tree = {};
  const up: Tree = {};
  switch (src) {
    case 'upper-file':
      up.src = file('upper src\n', { mode: 0o600 });
      break;
    case 'lower-file':
      l0.src = file('lower src\n', { mode: 0o640, uid: 7, gid: 8, xattrs: { 'user.src': 'lower' } });
      break;
    case 'shadow-file':
      up.src = file('upper src over lower\n');
      l0.src = file('lower src, shadowed\n');
      break;
    case 'lower-symlink':
      l0.src = symlink('somewhere', { uid: 3, gid: 4 });
      break;
    case 'upper-dir':
      up.src = dir({ inner: file('inner') }, { mode: 0o750 });
      break;
    case 'lower-dir':
      l0.src = dir({ inner: file('inner') }, { mode: 0o750 });
      break;
    case 'merged-dir':
      up.src = dir({ inner: file('inner') });
      l0.src = dir({ other: file('from the lower') });
      break;
  }
  let to = 'dst';
  switch (dst) {
    case 'none':
      break;
    case 'upper-file':
      up.dst = file('upper dst');
      break;
    case 'lower-file':
      l0.dst = file('lower dst');
      break;
    case 'upper-dir-empty':
      up.dst = dir();
      break;
    case 'lower-dir-empty':
      l0.dst = dir({}, { mode: 0o700 });
      break;
    case 'merged-dir-empty':
      up.dst = dir({ x: whiteout('kernel') });
      l0.dst = dir({ x: file('x, whited out') });
      break;
    case 'dir-nonempty':
      l0.dst = dir({ x: file('x') });
      break;
    case 'upper-whiteout':
      up.dst = whiteout('kernel');
      l0.dst = file('hidden by the upper whiteout');
      break;
    case 'lower-whiteout-kernel':
      l0.dst = whiteout('kernel');
      l1.dst = file('hidden by a kernel whiteout');
      break;
    case 'lower-whiteout-oci':
      l0.dst = whiteout('oci');
      l1.dst = file('hidden by an OCI whiteout');
      break;
    case 'lower-symlink':
      l0.dst = symlink('src');
      break;
    case 'lower-only-parent':
      l0.lo = dir({}, { mode: 0o750, uid: 5, gid: 5 });
      to = 'lo/dst';
      break;
    case 'lower-only-parent-file':
      l0.lo = dir({ dst: file('lower lo/dst') }, { mode: 0o750 });
      to = 'lo/dst';
      break;
    case 'self':
      to = 'src';
      break;
  }
  return { l0, l1, up, to };
}

function renameScenario(src: RenameSource): Scenario {
  const lowers: [Tree, Tree] = [{}, {}];
  const upper: Tree = {};
  const ops: Op[] = [];
  const after: Op[] = [];
  for (const t of renameTargets) {
    const c = renameCase(src, t);
    const d = `to-${t}`;
    lowers[0][d] = dir(c.l0);
    if (Object.keys(c.l1).length) lowers[1][d] = dir(c.l1);
    if (Object.keys(c.up).length) upper[d] = dir(c.up);
    ops.push(op.rename(`${d}/src`, `${d}/${c.to}`));
    after.push(op.readdir(d), op.lstat(`${d}/${c.to}`), op.readdir(`${d}/${c.to}`));
    if (c.to.startsWith('lo/')) after.push(op.lstat(`${d}/lo`));
  }
  return {
    name: `rename matrix: ${src} source`,
    description: `rename(2) of a ${src} onto each kind of target: ${renameTargets.join(', ')}`,
    layers: { lowers, upper },
    ops: [...ops, ...after],
  };
}

// ---------------------------------------------------------------------------
// names

const name255 = 'n'.repeat(251) + '.255'; // 255 bytes
const name255utf8 = 'é'.repeat(127) + 'x'; // 255 bytes in UTF-8, 128 characters
const name256 = 'n'.repeat(252) + '.256';

// ---------------------------------------------------------------------------
// sparse files

const GiB = 2 ** 30;

const moreScenarios: Scenario[] = [
  // ------------------------------------------------------------- whiteout / opaque formats
  {
    name: 'xattr whiteouts (trusted.overlay.whiteout) in a lower hide a file and a dir',
    description: 'Linux 6.8+ "xwhiteouts": empty regular files with trusted.overlay.whiteout, their dir marked opaque=x',
    layers: {
      lowers: [
        { d: dir({ f: whiteout('xattr'), sub: whiteout('xattr'), keep: file('top keep') }) },
        { d: dir({ f: file('hidden f'), sub: dir({ x: file('x') }), other: file('other') }) },
      ],
    },
    ops: [
      ...look('d'),
      op.readFile('d/f'),
      op.stat('d/sub'),
      op.readdir('d/sub'),
      op.writeFile('d/f', 'new f'),
      op.readFile('d/f'),
      op.mkdir('d/sub'),
      op.readdir('d/sub'),
      op.readdir('d'),
      op.unlink('d/f'),
      op.rmdir('d/sub'),
      op.readdir('d'),
    ],
  },
  {
    name: 'xattr whiteouts at a lower root and in the middle of three lowers',
    layers: {
      lowers: [
        { top: file('top'), m: dir({ a: file('a from top') }) },
        { f: whiteout('xattr'), m: dir({ b: whiteout('xattr'), c: file('c from middle') }) },
        { f: file('hidden'), g: file('g'), m: dir({ b: file('hidden b'), c: file('c from bottom'), e: file('e') }) },
      ],
    },
    ops: [op.readdir('.'), op.stat('f'), op.readdir('m'), op.readFile('m/c'), op.stat('m/b'), op.writeFile('m/b', 'b'), op.unlink('m/e'), op.readdir('m')],
  },
  // The kernel (6.18) lists such a dir as empty but refuses to remove it: its emptiness check
  // counts the xattr whiteout files as entries. layerfs removes it (known.ts).
  {
    name: 'rmdir of a dir that xattr whiteouts make look empty',
    layers: {
      lowers: [
        { d: dir({ a: whiteout('xattr') }), e: dir({ a: whiteout('kernel'), b: whiteout('oci') }) },
        { d: dir({ a: file('a') }), e: dir({ a: file('a'), b: file('b') }) },
      ],
    },
    ops: [op.readdir('d'), op.rmdir('d'), op.readdir('e'), op.rmdir('e'), op.readdir('.')],
  },
  {
    name: 'whiteouts of names that exist in no lower below (all formats)',
    layers: {
      lowers: [
        { k: whiteout('kernel'), o: whiteout('oci'), x: whiteout('xattr'), d: dir({ k: whiteout('kernel'), o: whiteout('oci') }) },
        { d: dir() },
      ],
    },
    ops: [...look('.', 'd'), op.writeFile('k', 'k'), op.mkdir('o'), op.symlink('k', 'x'), op.mkdir('d/k'), op.writeFile('d/o', 'o'), op.readdir('o'), ...look('.', 'd')],
  },
  {
    name: 'OCI and kernel markers in one directory of one lower',
    layers: {
      lowers: [
        { d: opaqueDir('oci', { a: file('top a') }), e: dir({ k: whiteout('kernel'), o: whiteout('oci'), x: whiteout('xattr'), n: file('n') }) },
        { d: dir({ a: file('bottom a'), b: file('b') }), e: dir({ k: file('k'), o: file('o'), x: file('x'), p: file('p') }) },
      ],
    },
    ops: [...look('d', 'e'), op.stat('e/k'), op.stat('e/o'), op.stat('e/x'), op.writeFile('e/o', 'new o'), op.unlink('e/p'), op.rmdir('d'), op.unlink('d/a'), op.rmdir('d'), op.readdir('.')],
  },
  // The kernel reads a directory that only one layer has straight from that layer, so a
  // whiteout there (pointless: nothing below it to hide) is listed, as a name that cannot be
  // looked up; once the directory is copied up it is merged and the whiteout disappears.
  // layerfs never lists a whiteout (known.ts).
  {
    name: 'whiteouts inside a lower dir that no other layer merges with',
    layers: {
      lowers: [
        { d: dir({ a: file('a'), k: whiteout('kernel'), o: whiteout('oci') }), p: opaqueDir('kernel', { b: file('b'), k: whiteout('kernel') }) },
        { p: dir({ c: file('c') }) },
      ],
    },
    ops: [op.readdir('d'), op.readdir('p'), op.stat('d/k'), op.stat('p/k'), op.writeFile('d/new', 'n'), op.readdir('d'), op.readdir('p')],
  },
  {
    name: 'userxattr: user.overlay.* markers (and trusted.overlay.* ignored)',
    options: ['userxattr'],
    layers: {
      lowers: [
        {
          u: opaqueDir('user', { a: file('top a') }),
          t: opaqueDir('kernel', { a: file('top a') }),
          w: dir({ f: whiteout('user-xattr'), g: whiteout('kernel'), keep: file('keep') }),
        },
        { u: dir({ b: file('b, hidden by user opaque') }), t: dir({ b: file('b, visible: trusted opaque ignored') }), w: dir({ f: file('f'), g: file('g'), h: file('h') }) },
      ],
    },
    ops: [
      ...look('u', 't', 'w'),
      op.rmrf('t'),
      op.mkdir('t'),
      op.readdir('t'),
      op.unlink('w/h'),
      op.writeFile('u/new', 'n'),
      op.rename('w/keep', 'w/kept'),
      op.listxattr('u'),
      op.getxattr('u', 'user.overlay.opaque'),
      op.setxattr('w', 'user.overlay.opaque', 'y'),
      op.readdir('w'),
    ],
  },

  // ------------------------------------------------------------- copy-up of each file type
  {
    name: 'copy-up of each file type: file, dir, symlink, fifo, char and block device',
    layers: {
      lowers: [
        {
          f: file('file\n', { mode: 0o751, uid: 11, gid: 12, xattrs: { 'user.t': 'file' }, mtime: T0 }),
          d: dir({ in: file('in') }, { mode: 0o705, uid: 13, gid: 14, xattrs: { 'user.t': 'dir' }, mtime: T0 }),
          l: symlink('f', { uid: 15, gid: 16 }),
          p: fifo({ mode: 0o640, uid: 17, gid: 18 }),
          c: chardev(1, 3, { mode: 0o666, uid: 19, gid: 20 }),
          b: blockdev(7, 200, { mode: 0o660, uid: 21, gid: 22 }),
        },
      ],
    },
    ops: [
      op.chown('f', 11, 99),
      op.chown('d', 13, 99),
      op.lchown('l', 15, 99),
      op.chown('p', 17, 99),
      op.chown('c', 19, 99),
      op.chown('b', 21, 99),
      op.stat('f'),
      op.stat('d'),
      op.lstat('l'),
      op.readlink('l'),
      op.stat('p'),
      op.stat('c'),
      op.stat('b'),
      op.listxattr('f'),
      op.listxattr('d'),
      op.readdir('d'),
    ],
  },
  {
    name: 'device nodes: read/write through a lower char device, mknod, chmod',
    layers: { lowers: [{ null: chardev(1, 3, { mode: 0o666 }), zero: chardev(1, 5, { mode: 0o444 }), d: dir() }] },
    ops: [
      op.readFile('null'),
      op.writeFile('null', 'into the void'),
      op.readAt('zero', 0, 8),
      op.mknod('d/c', 'chr', 1, 7, 0o640),
      op.stat('d/c'),
      op.mknod('d/b', 'blk', 7, 3),
      op.stat('d/b'),
      op.mknod('d/wh', 'chr', 0, 0),
      op.mknod('null', 'chr', 1, 3),
      op.chmod('zero', 0o644),
      op.stat('zero'),
      op.readdir('d'),
      op.unlink('null'),
      op.readdir('.'),
    ],
  },

  // ------------------------------------------------------------- rename
  ...renameSources.map(renameScenario),
  {
    name: 'RENAME_NOREPLACE',
    description: 'renameat2(RENAME_NOREPLACE): EEXIST over anything, else a plain rename',
    layers: {
      lowers: [{ a: file('a'), b: file('b'), d: dir({ x: file('x') }), e: dir(), w: whiteout('kernel') }, { w: file('hidden') }],
      upper: { u: file('u'), v: file('v') },
    },
    ops: [
      op.rename2('a', 'b', 'noreplace'),
      op.rename2('u', 'v', 'noreplace'),
      op.rename2('a', 'e', 'noreplace'),
      op.rename2('e', 'd', 'noreplace'),
      op.rename2('a', 'a', 'noreplace'),
      op.rename2('u', 'w', 'noreplace'),
      op.rename2('a', 'new', 'noreplace'),
      op.readdir('.'),
    ],
  },
  {
    name: 'RENAME_EXCHANGE',
    description: 'renameat2(RENAME_EXCHANGE) of upper, lower and mixed pairs',
    layers: {
      lowers: [{ a: file('lower a'), d: dir({ x: file('x') }), e: dir() }],
      upper: { u: file('upper u'), v: file('upper v') },
    },
    ops: [
      op.rename2('u', 'v', 'exchange'),
      op.rename2('a', 'u', 'exchange'),
      op.rename2('d', 'e', 'exchange'),
      op.rename2('u', 'missing', 'exchange'),
      op.readFile('u'),
      op.readFile('v'),
      op.readFile('a'),
    ],
  },
  {
    name: 'rename of lower fifos, symlinks and devices',
    layers: { lowers: [{ p: fifo({ mode: 0o600, uid: 2 }), l: symlink('p'), c: chardev(1, 3), d: dir({ q: fifo() }) }] },
    ops: [op.rename('p', 'd/p2'), op.rename('l', 'd/l2'), op.rename('c', 'd/c2'), op.rename('d/q', 'q'), ...look('.', 'd'), op.lstat('d/p2'), op.readlink('d/l2'), op.lstat('d/c2')],
  },

  // ------------------------------------------------------------- hard links
  {
    name: 'hard links to lower files: both names, nlink, content after writes',
    layers: {
      lowers: [{ f: file('f', { mode: 0o640, uid: 3, gid: 3, xattrs: { 'user.f': '1' } }), d: dir({ g: file('g') }), lo: dir({}, { mode: 0o750 }), h1: file('h'), h2: hardlink('h1') }],
    },
    ops: [
      op.link('f', 'f2'),
      op.stat('f'),
      op.stat('f2'),
      op.writeAt('f2', 0, 'F'),
      op.readFile('f'),
      op.appendFile('f', '+'),
      op.readFile('f2'),
      op.chmod('f', 0o600),
      op.stat('f2'),
      op.listxattr('f2'),
      op.link('d/g', 'lo/g2'),
      op.stat('d/g'),
      op.unlink('d/g'),
      op.stat('lo/g2'),
      op.readFile('lo/g2'),
      op.rename('f2', 'd/f3'),
      op.stat('f'),
      op.link('f', 'f'),
      op.link('lo', 'lo2'),
      op.unlink('f'),
      op.stat('d/f3'),
      op.link('h1', 'h3'),
      op.stat('h1'),
      op.stat('h2'),
      op.stat('h3'),
      op.writeFile('h2', 'h2 rewritten'),
      op.readFile('h1'),
      op.readFile('h3'),
      op.stat('h2'),
      op.link('missing', 'x'),
      op.link('f', 'missing/x'),
      ...look('.', 'd', 'lo'),
    ],
  },
  {
    name: 'hard links to lower symlinks and fifos',
    layers: { lowers: [{ l: symlink('t'), t: file('t'), p: fifo() }] },
    ops: [op.link('l', 'l2'), op.lstat('l'), op.lstat('l2'), op.readlink('l2'), op.link('p', 'p2'), op.stat('p'), op.stat('p2'), op.unlink('l'), op.lstat('l2')],
  },

  // ------------------------------------------------------------- unlink / rmdir and recreate
  {
    name: 'unlink and recreate as another type',
    layers: {
      lowers: [
        { f: file('old f'), d: dir({ x: file('x') }), s: symlink('f'), e: dir(), p: fifo() },
        { d: dir({ y: file('y') }), f: dir({ below: file('dir below a file') }) },
      ],
    },
    ops: [
      op.unlink('f'),
      op.mkdir('f'),
      op.readdir('f'),
      op.lstat('f'),
      op.rmdir('f'),
      op.symlink('d', 'f'),
      op.readlink('f'),
      op.readdir('f'),
      op.unlink('s'),
      op.writeFile('s', 'now a file'),
      op.rmrf('d'),
      op.writeFile('d', 'a file where the dir was'),
      op.readFile('d'),
      op.unlink('d'),
      op.mkdir('d'),
      op.readdir('d'),
      op.rmdir('e'),
      op.mkfifo('e'),
      op.lstat('e'),
      op.unlink('p'),
      op.mkdir('p'),
      op.writeFile('p/in', 'in'),
      ...look('.', 'f', 'd', 'p'),
    ],
  },
  {
    name: 'unlink and recreate repeatedly (file in a lower-only dir)',
    layers: { lowers: [{ d: dir({ f: file('lower') }, { mode: 0o711 }) }] },
    ops: [
      op.unlink('d/f'),
      op.writeFile('d/f', 'one'),
      op.unlink('d/f'),
      op.writeFile('d/f', 'two'),
      op.readFile('d/f'),
      op.unlink('d/f'),
      op.stat('d/f'),
      op.symlink('x', 'd/f'),
      op.unlink('d/f'),
      op.readdir('d'),
      op.stat('d'),
    ],
  },
  {
    name: 'rmdir and mkdir: the new dir is opaque; whiteout-only dirs are empty',
    layers: {
      lowers: [
        { m: dir({ a: file('a') }), w: dir({ x: whiteout('oci'), y: whiteout('kernel') }) },
        { m: dir({ b: dir({ c: file('c') }) }), w: dir({ x: file('x'), y: file('y') }) },
      ],
    },
    ops: [
      op.rmdir('m'),
      op.unlink('m/a'),
      op.rmrf('m/b'),
      op.readdir('m'),
      op.rmdir('m'),
      op.stat('m'),
      op.mkdir('m'),
      op.readdir('m'),
      op.writeFile('m/new', 'n'),
      op.rmdir('m'),
      op.unlink('m/new'),
      op.rmdir('m'),
      op.mkdir('m', 0o700),
      op.stat('m'),
      op.readdir('w'),
      op.rmdir('w'),
      op.mkdir('w'),
      op.readdir('w'),
      op.rmdir('w'),
      op.readdir('.'),
    ],
  },

  // ------------------------------------------------------------- deep paths
  {
    name: 'deep paths created under lower-only parents',
    layers: {
      lowers: [
        {
          a: dir(
            { b: dir({ c: dir({ keep: file('keep') }, { mode: 0o711, uid: 4, gid: 5, xattrs: { 'user.c': 'c' }, mtime: T0 }) }, { mode: 0o750, uid: 2, gid: 3, mtime: T0 }) },
            { uid: 1, gid: 1, xattrs: { 'user.a': 'a' }, mtime: T0 },
          ),
        },
      ],
    },
    ops: [
      op.mkdir('a/b/c/n1'),
      op.mkdir('a/b/c/n1/n2', 0o700),
      op.writeFile('a/b/c/n1/n2/f', 'deep'),
      op.symlink('f', 'a/b/c/n1/n2/l'),
      op.readFile('a/b/c/n1/n2/l'),
      op.mkfifo('a/b/c/p'),
      op.writeFile('top', 't'),
      op.rename('top', 'a/b/c/n1/top'),
      op.stat('a', true),
      op.stat('a/b', true),
      op.stat('a/b/c'),
      op.listxattr('a'),
      op.listxattr('a/b/c'),
      ...look('a', 'a/b', 'a/b/c', 'a/b/c/n1', 'a/b/c/n1/n2'),
      op.mkdir('a/b/x/y'),
    ],
  },

  // ------------------------------------------------------------- metadata of lower objects
  {
    name: 'chmod/chown/utimes (same atime and mtime)/truncate of lower files, dirs and through symlinks',
    layers: {
      lowers: [
        {
          f: file('0123456789', { mode: 0o644, uid: 1, gid: 1, mtime: T0 }),
          d: dir({ g: file('g', { mtime: T0 }) }, { mode: 0o755, mtime: T0 }),
          l: symlink('f', { uid: 9, gid: 9 }),
          ld: symlink('d'),
        },
      ],
    },
    ops: [
      op.chmod('l', 0o600),
      op.lstat('l'),
      op.stat('f'),
      op.chown('ld', 5, 6),
      op.stat('d'),
      op.lstat('ld'),
      op.chown('f', -1, 77),
      op.stat('f'),
      op.utimes('d/g', T0 + 50, T0 + 50),
      op.stat('d/g', true),
      op.utimes('d', T0 + 60, T0 + 60),
      op.stat('d', true),
      op.truncate('l', 4),
      op.readFile('f'),
      op.truncate('f', 0),
      op.stat('f'),
      op.truncate('d', 0),
      op.truncate('f', -1),
      op.chmod('missing', 0o644),
    ],
  },

  // ------------------------------------------------------------- xattrs
  {
    name: 'xattrs: trusted.* as root, overlay-private names, symlinks, large values',
    layers: {
      lowers: [
        {
          f: file('f', { xattrs: { 'user.a': 'a', 'trusted.t': 'lower trusted' } }),
          o: opaqueDir('kernel', { x: file('x') }),
          l: symlink('f'),
          d: dir({ e: file('e') }, { xattrs: { 'user.d': 'd' } }),
        },
      ],
    },
    ops: [
      op.getxattr('f', 'trusted.t'),
      op.setxattr('f', 'trusted.new', 'set through the mount'),
      op.getxattr('f', 'trusted.new'),
      op.getxattr('o', 'trusted.overlay.opaque'),
      op.setxattr('f', 'trusted.overlay.opaque', 'y'),
      op.setxattr('d', 'trusted.overlay.opaque', 'y'),
      op.getxattr('d', 'trusted.overlay.opaque'),
      op.removexattr('o', 'trusted.overlay.opaque'),
      op.setxattr('l', 'user.on-symlink', 'x'),
      op.setxattr('f', 'user.big', 'v'.repeat(3000)),
      op.getxattr('f', 'user.big'),
      op.setxattr('f', 'user.empty', ''),
      op.getxattr('f', 'user.empty'),
      op.listxattr('f'),
      op.removexattr('d', 'user.d'),
      op.listxattr('d'),
      op.setxattr('d/e', 'user.deep', 'deep'),
      op.listxattr('d/e'),
      op.readdir('o'),
    ],
  },

  // ------------------------------------------------------------- fifos
  {
    name: 'fifos: copy-up, rename, unlink, recreate',
    layers: { lowers: [{ p: fifo({ mode: 0o600, uid: 4, gid: 4 }), d: dir({ q: fifo({ mode: 0o644 }) }) }] },
    ops: [
      op.chown('p', 4, 5),
      op.stat('p'),
      op.setxattr('p', 'user.x', 'y'),
      op.rename('d/q', 'd/q2'),
      op.stat('d/q2'),
      op.unlink('p'),
      op.mkfifo('p', 0o600),
      op.stat('p'),
      op.mkfifo('d/q2'),
      op.writeFile('d/q', 'a regular file now'),
      ...look('.', 'd'),
    ],
  },

  // ------------------------------------------------------------- sparse files
  {
    name: 'sparse files: size and content equal after copy-up and writes past the end',
    description: 'allocated sizes (du) are recorded as notes only: the underlying filesystem decides how holes are stored',
    layers: {
      lowers: [{ s: sparseFile(1 << 20, [{ offset: 4096, data: 'data in the middle' }, { offset: 500_000, data: 'more' }], { mode: 0o640 }), e: sparseFile(65536, []) }],
    },
    ops: [
      op.stat('s'),
      op.readAt('s', 4090, 30),
      op.checksum('s'),
      op.allocated('s'),
      op.appendFile('s', 'tail'),
      op.stat('s'),
      op.checksum('s'),
      op.readAt('s', 500_000, 4),
      op.allocated('s'),
      op.writeAt('e', 200_000, 'far past the end'),
      op.stat('e'),
      op.checksum('e'),
      op.allocated('e'),
      op.writeFile('n', ''),
      op.truncate('n', 3_000_000),
      op.writeAt('n', 1_000_000, 'x'),
      op.stat('n'),
      op.checksum('n'),
      op.allocated('n'),
    ],
  },
  {
    name: 'large sparse file (2 GiB): copy-up on append',
    description: 'a 2 GiB file that is almost all hole (truncate -s 2G), appended to through the mount',
    needsFreeBytes: 5 * GiB,
    // Reading 2 GiB through FUSE (checksum) takes seconds, more on a loaded machine.
    opTimeoutMs: 300_000,
    layers: { lowers: [{ big: sparseFile(2 * GiB, [{ offset: 0, data: 'head' }, { offset: GiB, data: 'middle' }]) }] },
    ops: [
      op.stat('big'),
      op.allocated('big'),
      op.readAt('big', GiB - 2, 10),
      op.appendFile('big', 'x'),
      op.stat('big'),
      op.readAt('big', 2 * GiB - 2, 10),
      op.readAt('big', 0, 6),
      op.allocated('big'),
      op.checksum('big'),
    ],
  },

  // ------------------------------------------------------------- names
  {
    name: 'names with newlines, tabs and 255-byte names',
    layers: {
      lowers: [{ 'new\nline': file('nl'), 'tab\there': dir({ 'x\ny': file('xy') }), [name255]: file('long'), d: dir() }],
    },
    ops: [
      op.readdir('.'),
      op.readFile('new\nline'),
      op.readdir('tab\there'),
      op.rename('new\nline', 'd/an\nother'),
      op.writeFile(`d/${name255}`, 'created long'),
      op.writeFile(`d/${name255utf8}`, 'created long utf-8'),
      op.writeFile(`d/${name256}`, 'too long'),
      op.mkdir(`d/${name256}`),
      op.stat(name256),
      op.appendFile(name255, '+'),
      op.symlink(name255, 'd/l'),
      op.readFile(`d/${name255}`),
      op.unlink('tab\there/x\ny'),
      op.setxattr('d/an\nother', 'user.x', 'y'),
      op.writeFile('tab\there/x\ny', 'again'),
      ...look('.', 'd', 'tab\there'),
    ],
  },
  {
    name: 'names that are not valid UTF-8',
    layers: {
      lowers: [
        { [rawName([0xff])]: file('ff'), [rawName(Buffer.from('caf\xe9', 'latin1'))]: dir({ x: file('x') }), d: dir({ [rawName([0xfe, 0x41])]: file('fe A') }) },
        { [rawName(Buffer.from('lower\x80', 'latin1'))]: file('bottom') },
      ],
    },
    ops: [
      op.readdir('.'),
      op.readFile(rawName([0xff])),
      op.stat(rawName(Buffer.from('caf\xe9', 'latin1'))),
      op.readdir(rawName(Buffer.from('caf\xe9', 'latin1'))),
      op.writeFile(rawName(Buffer.from('new\xfe', 'latin1')), 'created'),
      op.appendFile(`d/${rawName([0xfe, 0x41])}`, '+'),
      op.rename(rawName([0xff]), 'ff-renamed'),
      op.unlink(rawName(Buffer.from('lower\x80', 'latin1'))),
      op.mkdir(rawName(Buffer.from('dir\xc0', 'latin1'))),
      op.readdir('.'),
      op.readdir('d'),
      // xattrs on such names (a lower file: copy-up; an upper one), a rename inside a lower
      // directory that has such a name (copy-up of the parent, a whiteout), rmdir, link.
      op.setxattr(`d/${rawName([0xfe, 0x41])}`, 'user.k', 'v1'),
      op.getxattr(`d/${rawName([0xfe, 0x41])}`, 'user.k'),
      op.listxattr(`d/${rawName([0xfe, 0x41])}`),
      op.setxattr(rawName(Buffer.from('new\xfe', 'latin1')), 'user.a', 'x'),
      op.removexattr(rawName(Buffer.from('new\xfe', 'latin1')), 'user.a'),
      op.getxattr(rawName(Buffer.from('new\xfe', 'latin1')), 'user.a'),
      op.listxattr(rawName(Buffer.from('caf\xe9', 'latin1'))),
      op.rename(`${rawName(Buffer.from('caf\xe9', 'latin1'))}/x`, `${rawName(Buffer.from('caf\xe9', 'latin1'))}/${rawName([0xef, 0xbf])}`),
      op.readdir(rawName(Buffer.from('caf\xe9', 'latin1'))),
      op.stat(rawName([0xfd])),
      op.link(rawName(Buffer.from('new\xfe', 'latin1')), rawName([0xc3])),
      op.stat(rawName([0xc3])),
      op.rmdir(rawName(Buffer.from('dir\xc0', 'latin1'))),
      op.readdir('.'),
    ],
  },
];

export const scenarios: Scenario[] = [...baseScenarios, ...moreScenarios];
