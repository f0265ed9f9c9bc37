// Every filesystem operation through a real mount: create / write, truncate, unlink.
// How these tests work and what they share: _ops.ts.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { dir, file, symlink, whiteout, type LayerSet } from '../diff/layers.ts';
import { GID, UID, kindOf, mode, names, sh, sha256, shOk, withLayers } from './_env.ts';
import { fsp, stat, read, bigContent } from './_ops.ts';

// ============================================================================ create / write

test(
  'create, write and read back: the file lands in the upper with the requested mode',
  withLayers(
    { lowers: [{ ld: dir({ old: file('o') }, { mode: 0o750, uid: UID, gid: GID }), lf: file('lower') }] },
    async (t, e) => {
      await fsp.writeFile(e.m('new.txt'), 'fresh content\n');
      t.is(await read(e.m('new.txt')), 'fresh content\n');
      t.is(fs.readFileSync(e.u('new.txt'), 'utf8'), 'fresh content\n');
      t.is(Number((await stat(e.m('new.txt'))).uid), process.getuid!());

      const fh = await fsp.open(e.m('modes'), 'wx', 0o640);
      await fh.writeFile('m');
      await fh.close();
      t.is(Number((await stat(e.m('modes'))).mode) & 0o777, 0o640);
      t.is(mode(e.u('modes')), 0o640);

      // O_EXCL on an existing (lower) name fails, and copies nothing up.
      await t.throwsAsync(fsp.open(e.m('lf'), 'wx'), { code: 'EEXIST' });
      t.is(kindOf(e.u('lf')), 'missing');

      // Creating inside a lower directory copies the directory up first.
      await fsp.writeFile(e.m('ld/n'), 'in lower dir');
      t.is(await read(e.m('ld/n')), 'in lower dir');
      t.is(fs.readFileSync(e.u('ld/n'), 'utf8'), 'in lower dir');
      t.deepEqual(await names(e.m('ld')), ['n', 'old']);
      t.deepEqual(fs.readdirSync(e.u('ld')), ['n']); // only the new file, not the siblings

      t.deepEqual(await names(e.m()), ['ld', 'lf', 'modes', 'new.txt']);
    },
  ),
);

test(
  'partial overwrite at an offset copies a lower file up and keeps the rest of it',
  withLayers(
    { lowers: [{ lf: file('0123456789', { mode: 0o604, uid: UID, gid: GID }) }] },
    async (t, e) => {
      const fh = await fsp.open(e.m('lf'), 'r+');
      try {
        await fh.write('AB', 3);
        // reading back through the same handle sees the write
        const b = Buffer.alloc(10);
        await fh.read(b, 0, 10, 0);
        t.is(b.toString(), '012AB56789');
      } finally {
        await fh.close();
      }
      t.is(await read(e.m('lf')), '012AB56789');
      t.is(fs.readFileSync(e.u('lf'), 'utf8'), '012AB56789');
      const up = fs.lstatSync(e.u('lf'));
      t.is(up.mode & 0o7777, 0o604);
      t.is(up.uid, UID);
      t.is(up.gid, GID);

      // A write past the end leaves a hole of zeros.
      const fh2 = await fsp.open(e.m('lf'), 'r+');
      await fh2.write('Z', 20);
      await fh2.close();
      t.deepEqual(await fsp.readFile(e.m('lf')), Buffer.concat([Buffer.from('012AB56789'), Buffer.alloc(10), Buffer.from('Z')]));
    },
  ),
);

test(
  'append (O_APPEND) to a lower file and to a new file',
  withLayers(
    { lowers: [{ lf: file('base\n') }] },
    async (t, e) => {
      await fsp.appendFile(e.m('lf'), 'one\n');
      await fsp.appendFile(e.m('lf'), 'two\n');
      t.is(await read(e.m('lf')), 'base\none\ntwo\n');
      t.is(fs.readFileSync(e.u('lf'), 'utf8'), 'base\none\ntwo\n');

      // Writes at an explicit position are ignored under O_APPEND: they go to the end.
      const fh = await fsp.open(e.m('lf'), 'a');
      await fh.write('three\n', 0);
      await fh.close();
      t.is(await read(e.m('lf')), 'base\none\ntwo\nthree\n');

      await shOk('sh', '-c', 'echo a >> "$1"; echo b >> "$1"', 'sh', e.m('fresh'));
      t.is(await read(e.m('fresh')), 'a\nb\n');
    },
  ),
);

test(
  'large write (8 MiB) and a write into the middle of a large lower file: contents hash-equal',
  withLayers(
    (): LayerSet => ({ lowers: [{ biglow: file(bigContent) }] }),
    async (t, e) => {
      const data = randomBytes(8 * 1024 * 1024);
      await fsp.writeFile(e.m('large'), data);
      t.is((await stat(e.m('large'))).size, BigInt(data.length));
      t.is(sha256(await fsp.readFile(e.m('large'))), sha256(data));
      t.is(sha256(fs.readFileSync(e.u('large'))), sha256(data));
      // with dd, in odd-sized blocks
      const out = await shOk('sh', '-c', 'dd if="$1" bs=12345 status=none | sha256sum', 'sh', e.m('large'));
      t.is(out.split(' ')[0], sha256(data));

      const patch = randomBytes(300_000);
      const at = 1_234_567;
      const fh = await fsp.open(e.m('biglow'), 'r+');
      await fh.write(patch, 0, patch.length, at);
      await fh.close();
      const expected = Buffer.from(bigContent);
      patch.copy(expected, at);
      t.is(sha256(await fsp.readFile(e.m('biglow'))), sha256(expected));
      t.is(sha256(fs.readFileSync(e.u('biglow'))), sha256(expected));
    },
  ),
);

// ============================================================================ truncate

test(
  'truncate: grow and shrink upper files; truncating a lower file copies it up (path and fd)',
  withLayers(
    {
      lowers: [
        {
          shrinkme: file('0123456789', { mode: 0o640, uid: UID, gid: GID }),
          growme: file('abc'),
          viafd: file('through a handle'),
          otrunc: file('old content'),
          d: dir(),
        },
      ],
    },
    async (t, e) => {
      await fsp.writeFile(e.m('up'), 'hello');
      await fsp.truncate(e.m('up'), 10);
      t.deepEqual(await fsp.readFile(e.m('up')), Buffer.concat([Buffer.from('hello'), Buffer.alloc(5)]));
      await fsp.truncate(e.m('up'), 2);
      t.is(await read(e.m('up')), 'he');

      await fsp.truncate(e.m('shrinkme'), 4);
      t.is(await read(e.m('shrinkme')), '0123');
      t.is(fs.readFileSync(e.u('shrinkme'), 'utf8'), '0123');
      t.is(mode(e.u('shrinkme')), 0o640);
      t.is(fs.lstatSync(e.u('shrinkme')).uid, UID);

      await shOk('truncate', '-s', '1M', e.m('growme'));
      const g = await fsp.readFile(e.m('growme'));
      t.is(g.length, 1024 * 1024);
      t.is(g.subarray(0, 3).toString(), 'abc');
      t.true(g.subarray(3).equals(Buffer.alloc(1024 * 1024 - 3)));

      const fh = await fsp.open(e.m('viafd'), 'r+');
      await fh.truncate(7);
      await fh.close();
      t.is(await read(e.m('viafd')), 'through');
      t.is(fs.readFileSync(e.u('viafd'), 'utf8'), 'through');

      await fsp.writeFile(e.m('otrunc'), 'new'); // O_TRUNC on a lower file
      t.is(await read(e.m('otrunc')), 'new');
      t.is(fs.readFileSync(e.u('otrunc'), 'utf8'), 'new');

      await t.throwsAsync(fsp.truncate(e.m('d'), 0), { code: 'EISDIR' });
    },
  ),
);

// ============================================================================ unlink

test(
  'unlink: a lower file leaves a whiteout, an upper-only file leaves nothing, a merged one a whiteout',
  withLayers(
    {
      lowers: [
        { lf: file('lower'), both: file('lower both'), ls: symlink('lf'), sub: dir({ sf: file('s') }, { mode: 0o711, uid: UID, gid: GID }) },
        { deep: file('bottom') },
      ],
      upper: { uf: file('upper'), both: file('upper both') },
    },
    async (t, e) => {
      await fsp.unlink(e.m('lf'));
      await t.throwsAsync(stat(e.m('lf')), { code: 'ENOENT' });
      t.is(kindOf(e.u('lf')), 'whiteout');

      await fsp.unlink(e.m('uf'));
      await t.throwsAsync(stat(e.m('uf')), { code: 'ENOENT' });
      t.is(kindOf(e.u('uf')), 'missing');

      await fsp.unlink(e.m('both'));
      await t.throwsAsync(stat(e.m('both')), { code: 'ENOENT' });
      t.is(kindOf(e.u('both')), 'whiteout');

      await fsp.unlink(e.m('ls'));
      t.is(kindOf(e.u('ls')), 'whiteout');
      await fsp.unlink(e.m('deep'));
      t.is(kindOf(e.u('deep')), 'whiteout');

      // In a lower directory: the directory is copied up with its metadata, then whiteout.
      await fsp.unlink(e.m('sub/sf'));
      t.is(kindOf(e.u('sub/sf')), 'whiteout');
      t.is(mode(e.u('sub')), 0o711);
      t.is(fs.lstatSync(e.u('sub')).uid, UID);
      t.deepEqual(await names(e.m('sub')), []);

      t.deepEqual(await names(e.m()), ['sub']);

      // The name can be created again; nothing of the lower version shows.
      await fsp.writeFile(e.m('lf'), 'reborn');
      t.is(await read(e.m('lf')), 'reborn');
      t.is(kindOf(e.u('lf')), 'file');
      t.deepEqual(await names(e.m()), ['lf', 'sub']);

      await t.throwsAsync(fsp.unlink(e.m('sub')), { code: 'EISDIR' });
      await t.throwsAsync(fsp.unlink(e.m('nope')), { code: 'ENOENT' });
    },
  ),
);
