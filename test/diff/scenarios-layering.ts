// Part of the scenario list of the differential harness (scenarios.ts, which holds them in order
// and says what a scenario is): shadowing, whiteouts, copy-up, deletion.

import type { Scenario } from './engine.ts';
import { op } from './engine.ts';
import {
  dir,
  file,
  opaqueDir,
  symlink,
  whiteout,
} from './layers.ts';
import { T0, look, metaLower } from './scenarios-common.ts';

export const layeringScenarios: Scenario[] = [
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
];
