// The pure parts of the image code: names, sources, entry paths, PAX records, and how
// `layerfs run` tells an IMAGE from a command.

import test from 'ava';
import { parseSource } from '../../src/image/importer.ts';
import { ImageError } from '../../src/image/oci.ts';
import { normalizeName } from '../../src/image/store.ts';
import { entryParts, paxXattrs, symlinkEscapes } from '../../src/image/unpack.ts';
import { parseRunArgs, RunError } from '../../src/launcher/options.ts';

test('image names: [REGISTRY[:PORT]/]REPO[:TAG], latest by default', (t) => {
  t.is(normalizeName('busybox'), 'busybox:latest');
  t.is(normalizeName('busy:a'), 'busy:a');
  t.is(normalizeName('docker.io/library/busybox:1.36'), 'docker.io/library/busybox:1.36');
  t.is(normalizeName('localhost:5000/x/y'), 'localhost:5000/x/y:latest');
  for (const bad of ['', 'Busy', 'a b', 'a:', 'a:-x', '../x', '/x', 'x/', 'a@sha256:00', 'x:' + 'y'.repeat(129)]) t.is(normalizeName(bad), null, bad);
});

test("sources in skopeo's transport syntax", (t) => {
  t.deepEqual(parseSource('oci:/d'), { transport: 'oci', dir: '/d', tag: undefined });
  t.deepEqual(parseSource('oci:/d:v1'), { transport: 'oci', dir: '/d', tag: 'v1' });
  t.deepEqual(parseSource('docker-archive:/f.tar'), { transport: 'docker-archive', file: '/f.tar', ref: undefined });
  t.deepEqual(parseSource('docker-archive:/f.tar:repo/x:1'), { transport: 'docker-archive', file: '/f.tar', ref: 'repo/x:1' });
  t.throws(() => parseSource('docker://busybox'), { instanceOf: ImageError, message: /unsupported transport 'docker'/ });
  t.throws(() => parseSource('oci:'), { instanceOf: ImageError, message: /missing path/ });
  t.throws(() => parseSource('oci:/d:'), { instanceOf: ImageError, message: /empty tag/ });
  t.throws(() => parseSource('/just/a/path'), { instanceOf: ImageError, message: /is not TRANSPORT:PATH/ });
});

test('entry paths: the root, relative paths; no absolute paths, no ..', (t) => {
  for (const root of ['/', './', '.', '', '././']) t.deepEqual(entryParts(root), [], root);
  t.deepEqual(entryParts('./etc//passwd'), ['etc', 'passwd']);
  t.deepEqual(entryParts('etc/'), ['etc']);
  t.throws(() => entryParts('/etc/passwd'), { message: /absolute path/ });
  t.throws(() => entryParts('a/../../b'), { message: /'\.\.' component/ });
  t.throws(() => entryParts('a/..'), { message: /'\.\.' component/ });
});

test('symlink targets: absolute ones mean the container root; relative ones may not climb out', (t) => {
  t.false(symlinkEscapes(['bin', 'sh'], '/bin/busybox'));
  t.false(symlinkEscapes(['a', 'b', 'l'], '../../x'));
  t.true(symlinkEscapes(['a', 'b', 'l'], '../../../x'));
  t.true(symlinkEscapes(['l'], '..'));
  t.false(symlinkEscapes(['a', 'l'], './../b/./c'));
});

test('PAX xattr records, and text that lost bytes to UTF-8 decoding', (t) => {
  const rec = (k: string, v: string): string => {
    const body = ` ${k}=${v}\n`;
    let n = Buffer.byteLength(body) + 1;
    while (String(n).length + Buffer.byteLength(body) !== n) n = String(n).length + Buffer.byteLength(body);
    return `${n}${body}`;
  };
  const x = paxXattrs([rec('mtime', '1.5') + rec('SCHILY.xattr.user.a', 'é=b') + rec('SCHILY.xattr.trusted.b', '')]);
  t.deepEqual(
    [...x!].map(([k, v]) => [k, v.toString()]),
    [
      ['user.a', 'é=b'],
      ['trusted.b', ''],
    ],
  );
  t.is(paxXattrs([rec('SCHILY.xattr.user.a', 'x').replace('x', '\uFFFD')]), null);
  t.deepEqual([...paxXattrs(['some/long/gnu/name'])!], [], 'a GNU long name is not PAX');
});

test('run: a first argument that names an image is the IMAGE, the rest the command', (t) => {
  const isImage = (n: string): boolean => n === 'img:1';
  const a = parseRunArgs(['-e', 'A=1', 'img:1', '/bin/echo', '-n', 'x'], {}, isImage);
  t.is(a.image, 'img:1');
  t.deepEqual(a.command, ['/bin/echo', '-n', 'x']);
  t.deepEqual(a.env, ['A=1']);
  const b = parseRunArgs(['img:1', '--', '/bin/true'], {}, isImage);
  t.deepEqual([b.image, b.command], ['img:1', ['/bin/true']]);
  const c = parseRunArgs(['--upper', '/u', '--work', '/w', 'img:1'], {}, isImage);
  t.deepEqual([c.image, c.command, c.upper], ['img:1', [], '/u']);
  // With --lower the first argument is the command, even if it names an image.
  const d = parseRunArgs(['--lower', '/l', 'img:1'], {}, isImage);
  t.deepEqual([d.image, d.command], [undefined, ['img:1']]);
  // After '--' there is no image.
  t.throws(() => parseRunArgs(['--', 'img:1'], {}, isImage), { instanceOf: RunError, message: /missing --lower A:B:C \(or --rootfs DIR, or an IMAGE\)$/ });
  t.throws(() => parseRunArgs(['other', 'x'], {}, isImage), { instanceOf: RunError, message: /'other' is not an image in the store/ });
  const e = parseRunArgs(['img:1', '--keep', '-e', 'X=1'], {}, isImage);
  t.deepEqual([e.command, e.keep, e.env], [['--keep', '-e', 'X=1'], false, []], 'what follows IMAGE is the command, as with docker');
});
