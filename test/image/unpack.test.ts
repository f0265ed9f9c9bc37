// The layer unpacker on tarballs made by GNU tar: faithful to what tar packed, and refusing
// hostile entries (each one a real tarball) with a clear error, touching nothing outside.

import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runOk } from '../helpers/exec.ts';
import { makeTmp } from '../helpers/mounts.ts';
import { compareSnapshots, snapshotTree } from '../helpers/snapshot.ts';
import { LayerError, unpackLayer } from '../../src/image/unpack.ts';
import { gnuTar, isRoot, layoutFromTars, lfs, storedObjects, storeEnv } from './_helpers.ts';

const t0 = isRoot() ? test : test.skip;

function tmp(t: ExecutionContext): string {
  return makeTmp(t, 'layerfs-test-unpack-');
}

t0('unpacks owners, modes, times, links, devices, FIFOs, xattrs and whiteouts as tar packed them', async (t) => {
  const d = tmp(t);
  const src = path.join(d, 'src');
  fs.mkdirSync(path.join(src, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(src, 'dev'));
  fs.mkdirSync(path.join(src, 'opt/old'), { recursive: true });
  fs.writeFileSync(path.join(src, 'etc/conf'), 'conf\n');
  await runOk('setfattr', ['-n', 'user.note', '-v', 'a note', path.join(src, 'etc/conf')]);
  await runOk('setfattr', ['-n', 'trusted.mark', '-v', '0x01020380ff', path.join(src, 'etc')]); // not valid UTF-8
  await runOk('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(src, 'opt/old')]);
  fs.writeFileSync(path.join(src, 'suid'), '#!/bin/sh\n', { mode: 0o755 });
  fs.chmodSync(path.join(src, 'suid'), 0o4755);
  fs.writeFileSync(path.join(src, 'owned'), 'o\n', { mode: 0o640 });
  fs.chownSync(path.join(src, 'owned'), 1234, 5678);
  fs.linkSync(path.join(src, 'owned'), path.join(src, 'etc/owned-link'));
  fs.symlinkSync('../owned', path.join(src, 'etc/rel'));
  fs.symlinkSync('/bin/busybox', path.join(src, 'abs'));
  fs.lchownSync(path.join(src, 'abs'), 7, 8);
  await runOk('mknod', [path.join(src, 'dev/tty9'), 'c', '4', '9']);
  await runOk('mknod', [path.join(src, 'dev/sdz'), 'b', '259', '70000']);
  await runOk('mkfifo', ['-m', '0620', path.join(src, 'dev/pipe')]);
  fs.writeFileSync(path.join(src, 'etc/.wh.gone'), '');
  fs.writeFileSync(path.join(src, 'opt/.wh..wh..opq'), '');
  fs.mkdirSync(path.join(src, 'sticky'));
  fs.chmodSync(path.join(src, 'sticky'), 0o1777);
  const old = new Date('1999-12-31T23:59:58Z');
  for (const p of ['etc/conf', 'owned', 'etc', 'sticky']) fs.utimesSync(path.join(src, p), old, old);
  fs.lutimesSync(path.join(src, 'abs'), old, old);
  const tar = path.join(d, 'l.tar');
  await gnuTar(src, ['--xattrs', '--xattrs-include=*', '--format=posix', '-cf', tar, '.']);
  // gzip too: the unpacker recognises it by its magic bytes.
  await runOk('gzip', ['-k', tar]);

  for (const blob of [tar, `${tar}.gz`]) {
    const dest = path.join(d, `out-${path.basename(blob)}`);
    const r = await unpackLayer(blob, dest, { label: 'test' });
    t.regex(r.diffID, /^sha256:[0-9a-f]{64}$/);
    t.is(r.tarSize, fs.statSync(tar).size);
    // Everything except the xattrs the unpacker refuses to restore (listed in warnings).
    const want = await snapshotTree(src, 'raw');
    const got = await snapshotTree(dest, 'raw');
    const strip = (s: typeof want): typeof want => ({
      ...s,
      entries: s.entries.map((e) => {
        const x = { ...(e.xattrs ?? {}) };
        delete x['trusted.overlay.opaque'];
        delete x['trusted.mark'];
        return { ...e, xattrs: Object.keys(x).length ? x : undefined };
      }),
    });
    t.deepEqual(compareSnapshots(strip(want), strip(got), ['source', 'unpacked'], blob), []);
    t.is(fs.statSync(path.join(dest, 'etc/conf')).mtime.toISOString(), old.toISOString());
    t.is(fs.lstatSync(path.join(dest, 'abs')).mtime.toISOString(), old.toISOString(), 'symlink times (no-follow)');
    t.is(fs.statSync(path.join(dest, 'etc')).mtime.toISOString(), old.toISOString(), 'directory times set after its entries');
    t.is(fs.readlinkSync(path.join(dest, 'abs')), '/bin/busybox', 'absolute symlink targets are kept (they mean the container root)');
    t.is(fs.statSync(path.join(dest, 'owned')).ino, fs.statSync(path.join(dest, 'etc/owned-link')).ino, 'hard link');
    t.is(fs.statSync(path.join(dest, 'dev/sdz')).rdev, fs.statSync(path.join(src, 'dev/sdz')).rdev);
    t.true(fs.lstatSync(path.join(dest, 'etc/.wh.gone')).isFile(), 'OCI whiteouts are kept as they are');
    t.true(fs.lstatSync(path.join(dest, 'opt/.wh..wh..opq')).isFile());
    t.deepEqual(
      r.warnings.map((w) => w.replace(/^layer test: /, '')).sort(),
      [
        "entry './etc/': extended attributes not restored: its PAX header is not valid UTF-8 (binary values are not supported)",
        "entry './opt/old/': overlay-private xattr 'trusted.overlay.opaque' dropped (only .wh. entries mark whiteouts in an image)",
      ],
    );
  }
});

t0('an empty layer (only the end-of-archive blocks) unpacks to an empty directory', async (t) => {
  const d = tmp(t);
  const blob = path.join(d, 'empty.tar');
  fs.writeFileSync(blob, Buffer.alloc(1024));
  const r = await unpackLayer(blob, path.join(d, 'out'), { label: 'empty' });
  t.is(r.entries, 0);
  t.deepEqual(fs.readdirSync(path.join(d, 'out')), []);
});

t0('a truncated layer is refused', async (t) => {
  const d = tmp(t);
  const src = path.join(d, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'big'), Buffer.alloc(5000, 7));
  await gnuTar(src, ['-cf', '../l.tar', 'big']);
  const whole = fs.readFileSync(path.join(d, 'l.tar'));
  for (const [name, len] of [
    ['inside the data', 512 + 3000],
    ['inside a header', 300],
  ] as const) {
    const blob = path.join(d, `cut-${len}.tar`);
    fs.writeFileSync(blob, whole.subarray(0, len));
    const e = await t.throwsAsync(unpackLayer(blob, path.join(d, `out-${len}`), { label: 'cut' }), { instanceOf: LayerError }, name);
    t.regex(e!.message, /^layer cut: not a valid tar stream/, name);
  }
});

t0('entry types that would change the content silently are refused: sparse files, unknown types', async (t) => {
  const d = tmp(t);
  const src = path.join(d, 'src');
  fs.mkdirSync(src);
  const fd = fs.openSync(path.join(src, 'sparse'), 'w');
  fs.writeSync(fd, 'end', 4 * 1024 * 1024);
  fs.closeSync(fd);
  for (const [format, re] of [
    ['gnu', /^layer sparse: entry 'sparse': unsupported entry type 'SparseFile'$/],
    ['posix', /^layer sparse: entry '.*sparse': sparse files \(GNU\.sparse PAX records\) are not supported$/],
  ] as const) {
    const tar = path.join(d, `${format}.tar`);
    await gnuTar(src, ['-S', `--format=${format}`, '-cf', tar, 'sparse']);
    const e = await t.throwsAsync(unpackLayer(tar, path.join(d, `out-${format}`), { label: 'sparse' }), { instanceOf: LayerError }, format);
    t.regex(e!.message, re, format);
  }
});

interface Hostile {
  name: string;
  /** Builds the tarball in dir (cwd for tar) and returns its path. */
  make: (dir: string, outside: string) => Promise<string>;
  message: RegExp;
}

const hostile: Hostile[] = [
  {
    name: "a '../' path",
    make: async (dir) => {
      fs.mkdirSync(path.join(dir, 'a/b'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'a/evil'), 'x');
      await gnuTar(path.join(dir, 'a/b'), ['-P', '-cf', '../../t.tar', '../evil']);
      return path.join(dir, 't.tar');
    },
    message: /entry '\.\.\/evil': path '\.\.\/evil' has a '\.\.' component$/,
  },
  {
    name: 'an absolute path',
    make: async (dir, outside) => {
      fs.writeFileSync(path.join(outside, 'abs-file'), 'x');
      await gnuTar(dir, ['-P', '-cf', 't.tar', path.join(outside, 'abs-file')]);
      return path.join(dir, 't.tar');
    },
    message: /entry '\/.*\/abs-file': absolute path '\/.*' is not allowed in a layer$/,
  },
  {
    name: 'a symlink pointing out of the layer',
    make: async (dir) => {
      fs.mkdirSync(path.join(dir, 's/etc'), { recursive: true });
      fs.symlinkSync('../../../../etc/shadow', path.join(dir, 's/etc/shadow'));
      await gnuTar(path.join(dir, 's'), ['-cf', '../t.tar', 'etc/shadow']);
      return path.join(dir, 't.tar');
    },
    message: /entry 'etc\/shadow': symlink target '\.\.\/\.\.\/\.\.\/\.\.\/etc\/shadow' points out of the layer$/,
  },
  {
    name: 'a hard link pointing out of the layer',
    make: async (dir) => {
      fs.mkdirSync(path.join(dir, 'h'));
      fs.writeFileSync(path.join(dir, 'h/a'), 'x');
      fs.linkSync(path.join(dir, 'h/a'), path.join(dir, 'h/b'));
      // GNU tar rewrites only the hard link's target: b -> ../../a
      await gnuTar(path.join(dir, 'h'), ['-P', '--transform', 'flags=h;s,^a$,../../a,', '-cf', '../t.tar', 'a', 'b']);
      return path.join(dir, 't.tar');
    },
    message: /entry 'b': hard link target '\.\.\/\.\.\/a' has a '\.\.' component: a hard link must point into the layer$/,
  },
  {
    name: 'a hard link to an absolute path',
    make: async (dir) => {
      fs.mkdirSync(path.join(dir, 'h'));
      fs.writeFileSync(path.join(dir, 'h/a'), 'x');
      fs.linkSync(path.join(dir, 'h/a'), path.join(dir, 'h/b'));
      await gnuTar(path.join(dir, 'h'), ['-P', '--transform', 'flags=h;s,^a$,/etc/passwd,', '-cf', '../t.tar', 'a', 'b']);
      return path.join(dir, 't.tar');
    },
    message: /entry 'b': absolute hard link target '\/etc\/passwd' is not allowed in a layer: a hard link must point into the layer$/,
  },
  {
    name: 'an entry written through a symlink planted by an earlier entry',
    make: async (dir, outside) => {
      fs.mkdirSync(path.join(dir, 'p/real'), { recursive: true });
      fs.symlinkSync(outside, path.join(dir, 'p/link'));
      fs.writeFileSync(path.join(dir, 'p/real/payload'), 'pwned');
      // Entries: link -> OUTSIDE (a symlink), then link/payload (the file renamed by tar).
      await gnuTar(path.join(dir, 'p'), ['--transform', 'flags=r;s,^real/,link/,', '-cf', '../t.tar', 'link', 'real/payload']);
      return path.join(dir, 't.tar');
    },
    message: /entry 'link\/payload': 'link' is a symlink: an entry may not be written through a symlink$/,
  },
  {
    name: 'a hard link through a planted symlink',
    make: async (dir, outside) => {
      fs.mkdirSync(path.join(dir, 'q/real'), { recursive: true });
      fs.writeFileSync(path.join(outside, 'secret'), 'secret');
      fs.symlinkSync(outside, path.join(dir, 'q/link'));
      fs.writeFileSync(path.join(dir, 'q/real/secret'), 'x');
      fs.linkSync(path.join(dir, 'q/real/secret'), path.join(dir, 'q/grab'));
      await gnuTar(path.join(dir, 'q'), ['--transform', 'flags=h;s,^real/,link/,', '-cf', '../t.tar', 'link', 'real/secret', 'grab']);
      return path.join(dir, 't.tar');
    },
    message: /entry 'grab': hard link target 'link\/secret' goes through the symlink 'link'$/,
  },
];

for (const h of hostile) {
  t0(`refuses ${h.name}`, async (t) => {
    const d = tmp(t);
    const outside = path.join(d, 'outside');
    fs.mkdirSync(outside);
    const work = path.join(d, 'work');
    fs.mkdirSync(work);
    const tar = await h.make(work, outside);
    const before = fs.readdirSync(outside).sort();
    const e = await t.throwsAsync(unpackLayer(tar, path.join(d, 'dest'), { label: 'evil' }), { instanceOf: LayerError });
    t.regex(e!.message, new RegExp(`^layer evil: ${h.message.source}`));
    t.deepEqual(fs.readdirSync(outside).sort(), before, 'nothing was written outside the layer');
    for (const f of fs.readdirSync(outside)) t.not(fs.readFileSync(path.join(outside, f), 'utf8'), 'pwned');
  });
}

t0('a hostile layer in an image: one line, exit 1, nothing stored, nothing written outside', async (t) => {
  const se = storeEnv(t);
  const outside = path.join(se.dir, 'outside');
  fs.mkdirSync(outside);
  const p = path.join(se.dir, 'p');
  fs.mkdirSync(path.join(p, 'real'), { recursive: true });
  fs.symlinkSync(outside, path.join(p, 'link'));
  fs.writeFileSync(path.join(p, 'real/payload'), 'pwned');
  fs.writeFileSync(path.join(p, 'fine'), 'fine');
  await gnuTar(p, ['--transform', 'flags=r;s,^real/,link/,', '-cf', '../evil.tar', 'fine', 'link', 'real/payload']);
  fs.mkdirSync(path.join(se.dir, 'ok'));
  fs.writeFileSync(path.join(se.dir, 'ok/ok'), 'ok');
  await gnuTar(path.join(se.dir, 'ok'), ['-cf', '../ok.tar', 'ok']);
  const layout = layoutFromTars(path.join(se.dir, 'lay'), [path.join(se.dir, 'ok.tar'), path.join(se.dir, 'evil.tar')]);
  const r = await lfs(se, ['image', 'import', `oci:${layout}`, '--name', 'evil:1']);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /^layerfs image import: layer 2\/2 \(sha256:[0-9a-f]{64}\): entry 'link\/payload': 'link' is a symlink: an entry may not be written through a symlink\n$/);
  t.deepEqual(fs.readdirSync(outside), []);
  t.deepEqual(storedObjects(se.store), [], 'not even the good first layer');
});
