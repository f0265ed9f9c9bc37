// The merged listing of a directory.

import test from 'ava';
import { dir, env, fifo, file, names, ociOpaque, ociWhiteout, opaque, symlink, whiteout } from './_helpers.ts';

test('each name is listed once, with the type of the top-most layer', (t) => {
  const e = env(t, 2);
  file(e.upper, 'd/a');
  dir(e.lowers[0]!, 'd/a');
  symlink(e.lowers[0]!, 'd/b', 'x');
  file(e.lowers[1]!, 'd/b');
  file(e.lowers[1]!, 'd/a');
  dir(e.lowers[1]!, 'd/c');
  fifo(e.lowers[1]!, 'd/p');
  const u = e.union();
  const items = u.readdir('/d').sort((x, y) => (x.name < y.name ? -1 : 1));
  t.deepEqual(
    items.map((i) => [i.name, i.type]),
    [
      ['a', 'file'],
      ['b', 'symlink'],
      ['c', 'dir'],
      ['p', 'fifo'],
    ],
  );
  t.deepEqual(
    items.map((i) => i.layer),
    [0, 1, 2, 2],
  );
});

test('the root merges every layer', (t) => {
  const e = env(t, 3);
  file(e.upper, 'u');
  file(e.lowers[0]!, 'a');
  file(e.lowers[1]!, 'b');
  file(e.lowers[2]!, 'c');
  file(e.lowers[2]!, 'a');
  t.deepEqual(names(e.union(), '/'), ['a', 'b', 'c', 'u']);
});

test('whiteouts hide names: kernel format in the upper and in lowers, OCI format in lowers', (t) => {
  const e = env(t, 3);
  whiteout(e.upper, 'd/w-up');
  whiteout(e.lowers[0]!, 'd/w-l0');
  ociWhiteout(e.lowers[0]!, 'd/oci-l0');
  ociWhiteout(e.lowers[1]!, 'd/oci-l1');
  for (const n of ['w-up', 'w-l0', 'oci-l0', 'oci-l1', 'kept']) {
    file(e.lowers[2]!, `d/${n}`);
  }
  dir(e.lowers[1]!, 'd/w-up'); // a directory is hidden just as well
  file(e.lowers[0]!, 'd/oci-l1'); // the OCI whiteout in lower1 hides below it, not above it
  const u = e.union();
  t.deepEqual(names(u, '/d'), ['kept', 'oci-l1']);
  t.is(u.lookup('/d/oci-l1')?.layer, 1);
});

test('OCI markers are never listed, in any layer', (t) => {
  const e = env(t, 2);
  file(e.upper, 'd/.wh.in-upper');
  ociWhiteout(e.lowers[0]!, 'd/x');
  file(e.lowers[0]!, 'd/f');
  file(e.lowers[0]!, 'd/.wh..wh..something');
  dir(e.lowers[1]!, 'd/.wh.dir');
  ociOpaque(e.lowers[0]!, 'o');
  file(e.lowers[0]!, 'o/g');
  const u = e.union();
  t.deepEqual(names(u, '/d'), ['f']);
  t.deepEqual(names(u, '/o'), ['g']);
  t.false(u.readdir('/').some((i) => i.name.startsWith('.wh.')));
});

test('an opaque directory ends the merge (kernel format in upper and lower, OCI in lower)', (t) => {
  const e = env(t, 3);
  opaque(e.upper, 'k');
  file(e.upper, 'k/u');
  file(e.lowers[0]!, 'k/l0');
  opaque(e.lowers[0]!, 'm');
  file(e.lowers[0]!, 'm/l0');
  file(e.upper, 'm/u');
  file(e.lowers[1]!, 'm/l1');
  ociOpaque(e.lowers[1]!, 'o');
  file(e.lowers[1]!, 'o/l1');
  file(e.lowers[0]!, 'o/l0');
  file(e.lowers[2]!, 'o/l2');
  const u = e.union();
  t.deepEqual(names(u, '/k'), ['u']);
  t.deepEqual(names(u, '/m'), ['l0', 'u']);
  t.deepEqual(names(u, '/o'), ['l0', 'l1']);
});

test('a non-directory between two directories cuts the lower one off', (t) => {
  const e = env(t, 2);
  file(e.upper, 'd/u');
  file(e.lowers[0]!, 'd');
  file(e.lowers[1]!, 'd/l1');
  t.deepEqual(names(e.union(), '/d'), ['u']);
});

test('an empty merged directory lists nothing; readdir of a file or a missing path fails', (t) => {
  const e = env(t);
  dir(e.upper, 'd');
  whiteout(e.upper, 'd/a');
  file(e.lowers[0]!, 'd/a');
  file(e.lowers[0]!, 'f');
  const u = e.union();
  t.deepEqual(u.readdir('/d'), []);
  t.throws(() => u.readdir('/f'), { code: 'ENOTDIR' });
  t.throws(() => u.readdir('/nope'), { code: 'ENOENT' });
});
