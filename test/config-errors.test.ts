// Mount option parsing and validation (src/config.ts): the errors of parseMountArgs.
// What these tests share: _config.ts.

import test from 'ava';
import * as path from 'node:path';
import { ConfigError, parseMountArgs } from '../src/config.ts';
import { parseError, optError } from './_config.ts';

// ---------------------------------------------------------------------------
// parseMountArgs: errors

test('argument errors', (t) => {
  parseError(t, [], 'layerfs: expected a mountpoint');
  parseError(t, ['-o', 'lowerdir=/a'], 'layerfs: expected a mountpoint');
  parseError(t, ['-o', 'lowerdir=/a', 'src', '/m', 'extra'], 'layerfs: too many arguments: extra');
  parseError(t, ['a', 'b', 'c', 'd', '-o', 'lowerdir=/a'], 'layerfs: too many arguments: c d');
  parseError(t, ['-x', '-o', 'lowerdir=/a', '/m'], "layerfs: unknown flag '-x'");
  parseError(t, ['--help'], "layerfs: unknown flag '--help'");
  parseError(t, ['-fd', '-o', 'lowerdir=/a', '/m'], "layerfs: unknown flag '-fd'");
  parseError(t, ['/m', '-o'], "layerfs: option '-o' requires an argument");
  parseError(t, ['-o', 'lowerdir=/a', ''], 'layerfs: the mountpoint is empty');
  parseError(t, ['', '/m', '-o', 'lowerdir=/a'], 'layerfs: the mount source is empty');
});

test('lowerdir errors', (t) => {
  parseError(t, ['/m'], 'layerfs: missing lowerdir= option');
  optError(t, 'upperdir=/u,workdir=/w', 'layerfs: missing lowerdir= option');
  optError(t, 'lowerdir=/a,lowerdir=/b', 'layerfs: lowerdir= given more than once');
  parseError(t, ['-o', 'lowerdir=/a', '-o', 'lowerdir=/a', '/m'], 'layerfs: lowerdir= given more than once');
  optError(t, 'lowerdir=/a::/b', "layerfs: data-only lower layers ('::' in lowerdir=) are not supported");
  optError(t, 'lowerdir=/a:/b::/c:/d', "layerfs: data-only lower layers ('::' in lowerdir=) are not supported");
  optError(t, 'lowerdir=', 'layerfs: lowerdir= is empty');
  optError(t, 'lowerdir=/a:', "layerfs: lowerdir= has an empty layer path: '/a:'");
  optError(t, 'lowerdir=:/a', "layerfs: lowerdir= has an empty layer path: ':/a'");
  optError(t, 'lowerdir=/a::', "layerfs: lowerdir= has an empty layer path: '/a::'");
  optError(t, 'lowerdir', "layerfs: mount option 'lowerdir' requires a value");
});

test('upperdir/workdir errors', (t) => {
  optError(t, 'lowerdir=/a,upperdir=', 'layerfs: upperdir= is empty');
  optError(t, 'lowerdir=/a,workdir=', 'layerfs: workdir= is empty');
  optError(t, 'lowerdir=/a,upperdir=/u,upperdir=/v', 'layerfs: upperdir= given more than once');
  optError(t, 'lowerdir=/a,workdir=/u,workdir=/v', 'layerfs: workdir= given more than once');
  optError(t, 'lowerdir=/a,upperdir', "layerfs: mount option 'upperdir' requires a value");
});

test('unknown options', (t) => {
  optError(t, 'lowerdir=/a,bogus', "layerfs: unknown mount option 'bogus'");
  optError(t, 'lowerdir=/a,bogus=1', "layerfs: unknown mount option 'bogus=1'");
  optError(t, 'lowerdir=/a,toString', "layerfs: unknown mount option 'toString'");
  optError(t, 'lowerdir=/a,__proto__=x', "layerfs: unknown mount option '__proto__=x'");
  optError(t, 'lowerdir=/a,nonempty', "layerfs: unknown mount option 'nonempty'");
  optError(t, 'lowerdir=/a,LOWERDIR=/b', "layerfs: unknown mount option 'LOWERDIR=/b'");
});

test('unsupported kernel features', (t) => {
  optError(t, 'lowerdir=/a,redirect_dir=on', 'layerfs: redirect_dir=on is not supported yet');
  optError(t, 'lowerdir=/a,index=on', 'layerfs: index=on is not supported yet');
  optError(t, 'lowerdir=/a,metacopy=on', 'layerfs: metacopy=on is not supported yet');
  optError(t, 'lowerdir=/a,xino=on', 'layerfs: xino=on is not supported yet');
  optError(t, 'lowerdir=/a,nfs_export=on', 'layerfs: nfs_export=on is not supported yet');
  optError(t, 'lowerdir=/a,verity=require', 'layerfs: verity=require is not supported yet');
});

test('bad option values', (t) => {
  optError(t, 'lowerdir=/a,redirect_dir=yes',
    "layerfs: invalid value for redirect_dir: 'yes' (expected off, follow or nofollow)");
  optError(t, 'lowerdir=/a,redirect_dir', "layerfs: mount option 'redirect_dir' requires a value");
  optError(t, 'lowerdir=/a,index=maybe', "layerfs: invalid value for index: 'maybe' (expected off or on)");
  optError(t, 'lowerdir=/a,xino=1', "layerfs: invalid value for xino: '1' (expected off, auto or on)");
  for (const v of ['-1', 'abc', '1.5', '', '99999999999999999999']) {
    optError(t, `lowerdir=/a,timeout=${v}`, `layerfs: invalid value for timeout: '${v}' (expected a non-negative integer)`);
  }
  for (const v of ['fuse', 'libfuse2', '', 'LOWLEVEL']) {
    optError(t, `lowerdir=/a,backend=${v}`, `layerfs: invalid value for backend: '${v}' (expected lowlevel or fuse-native)`);
  }
  optError(t, 'lowerdir=/a,backend', "layerfs: mount option 'backend' requires a value");
  optError(t, 'lowerdir=/a,fsync=2', "layerfs: invalid value for fsync: '2' (expected 0 or 1)");
  optError(t, 'lowerdir=/a,xattr_permissions=3', "layerfs: invalid value for xattr_permissions: '3' (expected 0, 1 or 2)");
  optError(t, 'lowerdir=/a,squash_to_uid=x', "layerfs: invalid value for squash_to_uid: 'x' (expected a non-negative integer)");
  optError(t, 'lowerdir=/a,plugins=', "layerfs: invalid value for plugins: '' (expected a non-empty value)");
  optError(t, 'lowerdir=/a,context', "layerfs: mount option 'context' requires a value");
  optError(t, 'lowerdir=/a,ro=1', "layerfs: mount option 'ro' does not take a value");
  optError(t, 'lowerdir=/a,volatile=yes', "layerfs: mount option 'volatile' does not take a value");
  optError(t, 'lowerdir=/a,fsname=', 'layerfs: fsname= is empty');
});

test('uid/gid mapping format', (t) => {
  const ok = (v: string) => parseMountArgs(['-o', `lowerdir=/a,uidmapping=${v},gidmapping=${v}`, '/m']);
  for (const v of ['0:1000:1', ':0:100000:65536', '0:1000:1:1:100000:65536', '0:0:4294967295']) {
    const r = ok(v);
    t.is(r.uidmapping, v);
    t.is(r.gidmapping, v);
  }
  const msg = (kind: 'uid' | 'gid', v: string) => {
    const id = kind.toUpperCase();
    return `layerfs: invalid ${kind}mapping '${v}' (expected CONTAINER-${id}:HOST-${id}:SIZE[:CONTAINER-${id}:HOST-${id}:SIZE...])`;
  };
  for (const v of ['', 'x', '0:1', '0:1000:1:1', '0:1000:0', '::0:1:1', '0:1:1:', '0:4294967295:2', '-1:0:1']) {
    optError(t, `lowerdir=/a,uidmapping=${v}`, msg('uid', v));
    optError(t, `lowerdir=/a,gidmapping=${v}`, msg('gid', v));
  }
  optError(t, 'lowerdir=/a,uidmapping=0:0:1,uidmapping=0:0:1', 'layerfs: uidmapping= given more than once');
});

test('every error is a one-line ConfigError starting with "layerfs: "', (t) => {
  const bad = [[], ['-q'], ['-o', 'lowerdir=/a\n/b,x\ny', '/m'], ['-o', 'lowerdir=/a', 'a', 'b', 'c\nd']];
  for (const argv of bad) {
    const e = t.throws(() => parseMountArgs(argv), { instanceOf: ConfigError });
    t.true(e.message.startsWith('layerfs: '));
    t.false(e.message.includes('\n'));
    t.true(e instanceof Error);
  }
});
