// Part of the scenario list of the differential harness (scenarios.ts, which holds them in order
// and says what a scenario is): whiteout and opaque formats, copy-up of each file
// type, renames (with the rename matrix), hard links.

import type { Scenario } from './engine.ts';
import { op } from './engine.ts';
import {
  blockdev,
  chardev,
  dir,
  fifo,
  file,
  hardlink,
  opaqueDir,
  symlink,
  whiteout,
} from './layers.ts';
import { T0, look } from './scenarios-common.ts';
import { renameScenario, renameSources } from './scenarios-rename-matrix.ts';

export const formatScenarios: Scenario[] = [
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
];
