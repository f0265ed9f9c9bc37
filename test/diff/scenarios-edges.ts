// Part of the scenario list of the differential harness (scenarios.ts, which holds them in order
// and says what a scenario is): unlink and rmdir then recreate, deep paths, metadata
// of lower objects, xattrs, fifos, sparse files, names.

import type { Scenario } from './engine.ts';
import { op } from './engine.ts';
import {
  dir,
  fifo,
  file,
  opaqueDir,
  rawName,
  sparseFile,
  symlink,
  whiteout,
} from './layers.ts';
import { T0, look } from './scenarios-common.ts';

// ---------------------------------------------------------------------------
// names

const name255 = 'n'.repeat(251) + '.255'; // 255 bytes
const name255utf8 = 'é'.repeat(127) + 'x'; // 255 bytes in UTF-8, 128 characters
const name256 = 'n'.repeat(252) + '.256';

// ---------------------------------------------------------------------------
// sparse files

const GiB = 2 ** 30;

export const edgeScenarios: Scenario[] = [
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
