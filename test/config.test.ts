import test from 'ava';
import type { ExecutionContext } from 'ava';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  defaultMountRequest,
  ConfigError,
  parseMountArgs,
  splitLowerdirs,
  splitOptions,
  validateMountConfig,
} from '../src/config.ts';
import type { MountRequest } from '../src/config.ts';

// ---------------------------------------------------------------------------
// helpers


function req(fields: Partial<MountRequest>): MountRequest {
  return { ...defaultMountRequest(), ...fields };
}

function parseError(t: ExecutionContext, argv: string[], message: string): void {
  t.throws(() => parseMountArgs(argv), { instanceOf: ConfigError, message }, JSON.stringify(argv));
}

function optError(t: ExecutionContext, opts: string, message: string): void {
  parseError(t, ['-o', opts, '/m'], message);
}

/** A fresh directory tree, removed in teardown:
 *  ROOT/{l1,l2,u,w,m}/ , ROOT/file , ROOT/link/l1 -> ../l1 */
async function fixture(t: ExecutionContext): Promise<string> {
  const root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'layerfs-config-')));
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  for (const d of ['l1', 'l2', 'u', 'w', 'm', 'link']) await fsp.mkdir(path.join(root, d));
  await fsp.writeFile(path.join(root, 'file'), 'x');
  await fsp.symlink('../l1', path.join(root, 'link', 'l1'));
  return root;
}

function rwReq(root: string, fields: Partial<MountRequest> = {}): MountRequest {
  return req({
    lowerdirs: [`${root}/l1`, `${root}/l2`],
    upperdir: `${root}/u`,
    workdir: `${root}/w`,
    mountpoint: `${root}/m`,
    ...fields,
  });
}

const EMPTY_MOUNTINFO = '';

async function validateError(
  t: ExecutionContext,
  r: MountRequest,
  message: string,
  opts: { cwd?: string; mountinfo?: string } = { mountinfo: EMPTY_MOUNTINFO },
): Promise<void> {
  await t.throwsAsync(() => validateMountConfig(r, opts), { instanceOf: ConfigError, message });
}

// ---------------------------------------------------------------------------
// parseMountArgs: accepted forms

test('podman argv: -o with an empty item and volatile', (t) => {
  const argv = [
    '-o',
    'lowerdir=l/AAA:l/BBB,upperdir=/s/overlay/c1/diff,workdir=/s/overlay/c1/work,,volatile',
    '/s/overlay/c1/merged',
  ];
  t.deepEqual(
    parseMountArgs(argv),
    req({
      lowerdirs: ['l/AAA', 'l/BBB'],
      upperdir: '/s/overlay/c1/diff',
      workdir: '/s/overlay/c1/work',
      mountpoint: '/s/overlay/c1/merged',
      volatile: true,
    }),
  );
});

test('podman argv with uid/gid mappings and xattr_permissions', (t) => {
  const r = parseMountArgs([
    '-o',
    'lowerdir=/l,upperdir=/u,workdir=/w,,volatile,uidmapping=:0:100000:65536,gidmapping=0:100000:1:1:200000:65535,xattr_permissions=2',
    '/m',
  ]);
  t.is(r.uidmapping, ':0:100000:65536');
  t.is(r.gidmapping, '0:100000:1:1:200000:65535');
  t.deepEqual(r.ignored, []);
  t.is(r.xattrPermissions, 2);
});

test('mount.fuse3 form: SOURCE MOUNTPOINT -o ...', (t) => {
  t.deepEqual(
    parseMountArgs(['layerfs-src', '/mnt', '-o', 'rw,lowerdir=/a:/b,dev,suid']),
    req({
      lowerdirs: ['/a', '/b'],
      mountpoint: '/mnt',
      source: 'layerfs-src',
      ignored: ['rw', 'dev', 'suid'],
    }),
  );
});

test('glued -oOPTS', (t) => {
  t.deepEqual(
    parseMountArgs(['-olowerdir=/a,ro', '/m']),
    req({ lowerdirs: ['/a'], mountpoint: '/m', readonly: true }),
  );
});

test('several -o lists are concatenated', (t) => {
  t.deepEqual(
    parseMountArgs(['-o', 'lowerdir=/a', '-oupperdir=/u', '/m', '-o', 'workdir=/w,noatime']),
    req({ lowerdirs: ['/a'], upperdir: '/u', workdir: '/w', mountpoint: '/m', noatime: true }),
  );
});

test('-f, -d, --foreground, --debug anywhere', (t) => {
  for (const argv of [
    ['-f', '-d', '-o', 'lowerdir=/a', '/m'],
    ['-o', 'lowerdir=/a', '/m', '-d', '-f'],
    ['--foreground', '-o', 'lowerdir=/a', '--debug', '/m'],
    ['src', '-f', '/m', '-o', 'lowerdir=/a', '--debug'],
  ]) {
    const r = parseMountArgs(argv);
    t.true(r.foreground, argv.join(' '));
    t.true(r.debug, argv.join(' '));
    t.is(r.mountpoint, '/m');
  }
  const plain = parseMountArgs(['-o', 'lowerdir=/a', '/m']);
  t.false(plain.foreground);
  t.false(plain.debug);
  t.true(parseMountArgs(['-o', 'lowerdir=/a,debug', '/m']).debug);
});

test('options may follow the mountpoint', (t) => {
  t.deepEqual(parseMountArgs(['/m', '-o', 'lowerdir=/a']), req({ lowerdirs: ['/a'], mountpoint: '/m' }));
});

test('-- ends flags: a mountpoint starting with a dash', (t) => {
  const r = parseMountArgs(['-o', 'lowerdir=/a', '--', '-weird']);
  t.is(r.mountpoint, '-weird');
});

test('every effective option', (t) => {
  const r = parseMountArgs([
    '-o',
    'lowerdir=/a,upperdir=/u,workdir=/w,ro,volatile,userxattr,redirect_dir=nofollow,' +
      'nodev,nosuid,noexec,noatime,timeout=30,fsname=myfs,debug,backend=fuse-native',
    '/m',
  ]);
  t.deepEqual(
    r,
    req({
      lowerdirs: ['/a'],
      upperdir: '/u',
      workdir: '/w',
      mountpoint: '/m',
      source: 'myfs',
      debug: true,
      readonly: true,
      volatile: true,
      userxattr: true,
      redirectDir: 'nofollow',
      noatime: true,
      nodev: true,
      nosuid: true,
      noexec: true,
      timeoutSeconds: 30,
      backend: 'fuse-native',
    }),
  );
});

test('timeout=0 (no kernel caching) is accepted; backend= defaults to lowlevel', (t) => {
  t.is(parseMountArgs(['-o', 'lowerdir=/a,timeout=0', '/m']).timeoutSeconds, 0);
  t.is(parseMountArgs(['-o', 'lowerdir=/a', '/m']).backend, 'lowlevel');
  t.is(parseMountArgs(['-o', 'lowerdir=/a,backend=fuse-native,backend=lowlevel', '/m']).backend, 'lowlevel');
});

test('passthrough=on|off; default on', (t) => {
  t.is(parseMountArgs(['-o', 'lowerdir=/a', '/m']).passthrough, true);
  t.is(parseMountArgs(['-o', 'lowerdir=/a,passthrough=off', '/m']).passthrough, false);
  t.is(parseMountArgs(['-o', 'lowerdir=/a,passthrough=off,passthrough=on', '/m']).passthrough, true);
  optError(t, 'lowerdir=/a,passthrough=yes', "layerfs: invalid value for passthrough: 'yes' (expected on or off)");
  optError(t, 'lowerdir=/a,passthrough', "layerfs: mount option 'passthrough' requires a value");
});

test('spin=N microseconds, 0 to 10000; default 50 (0 on one CPU)', (t) => {
  t.is(parseMountArgs(['-o', 'lowerdir=/a', '/m']).spinUs, os.availableParallelism() > 1 ? 50 : 0);
  t.is(parseMountArgs(['-o', 'lowerdir=/a,spin=0', '/m']).spinUs, 0);
  t.is(parseMountArgs(['-o', 'lowerdir=/a,spin=10000', '/m']).spinUs, 10000);
  for (const v of ['10001', '-1', 'abc', '', '1.5', '050', '99999']) {
    optError(t, `lowerdir=/a,spin=${v}`, `layerfs: invalid value for spin: '${v}' (expected microseconds, 0 to 10000)`);
  }
});

test('redirect_dir accepts off, follow and nofollow; default is off', (t) => {
  t.is(parseMountArgs(['-o', 'lowerdir=/a', '/m']).redirectDir, 'off');
  for (const v of ['off', 'follow', 'nofollow'] as const) {
    t.is(parseMountArgs(['-o', `lowerdir=/a,redirect_dir=${v}`, '/m']).redirectDir, v);
  }
});

test('fsname= wins over the mount.fuse SOURCE', (t) => {
  t.is(parseMountArgs(['src', '/m', '-o', 'lowerdir=/a,fsname=named']).source, 'named');
  t.is(parseMountArgs(['src', '/m', '-o', 'lowerdir=/a']).source, 'src');
  t.is(parseMountArgs(['/m', '-o', 'lowerdir=/a']).source, undefined);
});

test('squash_to_uid=, squash_to_gid=, squash_to_root are applied (podman: a one-id --uidmap)', (t) => {
  const r = parseMountArgs(['-o', 'lowerdir=/a,squash_to_uid=100000,squash_to_gid=100001', '/m']);
  t.is(r.squashUid, 100000);
  t.is(r.squashGid, 100001);
  t.deepEqual(r.ignored, []);
  const root = parseMountArgs(['-o', 'lowerdir=/a,squash_to_root', '/m']);
  t.is(root.squashUid, 0);
  t.is(root.squashGid, 0);
  optError(t, 'lowerdir=/a,squash_to_root=1', "layerfs: mount option 'squash_to_root' does not take a value");
  optError(t, 'lowerdir=/a,squash_to_uid=4294967295', "layerfs: invalid value for squash_to_uid: '4294967295' (expected an id below 4294967295)");
});

test('accepted-but-ignored options are listed in order', (t) => {
  const ignored = [
    'rw', 'dev', 'suid', 'exec', 'atime', 'relatime', 'strictatime', 'lazytime', 'nolazytime',
    'sync', 'async', 'dirsync', 'diratime', 'nodiratime', 'mand', 'nomand', 'silent', 'loud',
    'defaults', 'auto', 'noauto', 'user', 'user=alice', 'nouser', 'users', '_netdev', 'nofail',
    'context=system_u:object_r:container_file_t:s0', 'fscontext=a', 'defcontext=b', 'rootcontext=c',
    'subtype=layerfs',
    'static_nlink', 'noacl', 'fsync=0', 'fsync=1', 'threaded=0', 'threaded=1', 'fast_ino=1',
    'plugins=/usr/lib/plugin.so', 'writeback=0',
    'max_idle_threads=10', 'allow_other', 'allow_root', 'default_permissions', 'kernel_cache',
    'auto_cache', 'max_read=131072', 'index=off', 'metacopy=off', 'xino=off', 'xino=auto',
    'nfs_export=off', 'verity=off', 'uuid=null', 'x-systemd.automount',
  ];
  const r = parseMountArgs(['-o', ['lowerdir=/a', ...ignored].join(','), '/m']);
  t.deepEqual(r.ignored, ignored);
  t.false(r.readonly);
});

test('mount flags: the last of a pair wins', (t) => {
  const p = (o: string) => parseMountArgs(['-o', `lowerdir=/a,${o}`, '/m']);
  t.true(p('rw,ro').readonly);
  t.false(p('ro,rw').readonly);
  t.false(p('nodev,dev').nodev);
  t.true(p('dev,nodev').nodev);
  t.false(p('nosuid,suid').nosuid);
  t.false(p('noexec,exec').noexec);
  t.false(p('noatime,relatime').noatime);
  t.false(p('noatime,strictatime').noatime);
  t.false(p('noatime,atime').noatime);
  const d = p('ro,nodev,nosuid,noexec,defaults');
  t.false(d.readonly || d.nodev || d.nosuid || d.noexec);
  t.true(p('defaults,ro').readonly);
});

test('SELinux context value in double quotes may contain commas', (t) => {
  const ctx = 'context="system_u:object_r:container_file_t:s0:c123,c456"';
  const r = parseMountArgs(['-o', `lowerdir=/a,${ctx},upperdir=/u,workdir=/w`, '/m']);
  t.deepEqual(r.ignored, [ctx]);
  t.is(r.upperdir, '/u');
  t.is(r.workdir, '/w');
});

// ---------------------------------------------------------------------------
// escaping

test('escapes: \\: in a layer, \\, in an option value, \\\\ a backslash', (t) => {
  const r = parseMountArgs([
    '-o',
    'lowerdir=/x\\:y:/z\\,w,upperdir=/u\\,1,workdir=/w\\\\2',
    '/m',
  ]);
  t.deepEqual(r.lowerdirs, ['/x:y', '/z,w']);
  t.is(r.upperdir, '/u,1');
  t.is(r.workdir, '/w\\2');
});

test('splitOptions', (t) => {
  t.deepEqual(splitOptions('a,b=c'), ['a', 'b=c']);
  t.deepEqual(splitOptions(',a,,b,'), ['a', 'b']);
  t.deepEqual(splitOptions(''), []);
  t.deepEqual(splitOptions(',,,'), []);
  t.deepEqual(splitOptions('lowerdir=/a\\,b:/c,ro'), ['lowerdir=/a\\,b:/c', 'ro']);
  t.deepEqual(splitOptions('a\\\\,b'), ['a\\\\', 'b']);
  t.deepEqual(splitOptions('a\\'), ['a\\']);
  t.deepEqual(splitOptions('x="1,2",context="a,b",y'), ['x="1', '2"', 'context="a,b"', 'y']);
  t.deepEqual(splitOptions('context="unterminated,y'), ['context="unterminated', 'y']);
});

test('splitLowerdirs', (t) => {
  t.deepEqual(splitLowerdirs('/a:/b:/c'), ['/a', '/b', '/c']);
  t.deepEqual(splitLowerdirs('/a\\:b:/c'), ['/a:b', '/c']);
  t.deepEqual(splitLowerdirs('/a\\,b'), ['/a,b']);
  t.deepEqual(splitLowerdirs('/a\\\\:/b'), ['/a\\', '/b']);
  t.deepEqual(splitLowerdirs('/a::/b'), ['/a', '', '/b']);
  t.deepEqual(splitLowerdirs('/a:'), ['/a', '']);
  t.deepEqual(splitLowerdirs(''), ['']);
});

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

// ---------------------------------------------------------------------------
// validateMountConfig: success

test('validate: read-write configuration resolves every path', async (t) => {
  const root = await fixture(t);
  const c = await validateMountConfig(rwReq(root), { mountinfo: EMPTY_MOUNTINFO });
  t.deepEqual(c.lowerdirs, [`${root}/l1`, `${root}/l2`]);
  t.is(c.upperdir, `${root}/u`);
  t.is(c.workdir, `${root}/w`);
  t.is(c.mountpoint, `${root}/m`);
  t.false(c.readonly);
  t.is(c.fsname, 'layerfs');
});

test('validate: relative paths and layer symlinks (podman l/ links), fsname from source', async (t) => {
  const root = await fixture(t);
  const r = parseMountArgs(['mysrc', 'm/', '-o', 'lowerdir=link/l1:l2,upperdir=./u,workdir=w']);
  const c = await validateMountConfig(r, { cwd: root, mountinfo: EMPTY_MOUNTINFO });
  t.deepEqual(c.lowerdirs, [`${root}/l1`, `${root}/l2`]);
  t.is(c.upperdir, `${root}/u`);
  t.is(c.workdir, `${root}/w`);
  t.is(c.mountpoint, `${root}/m`);
  t.is(c.fsname, 'mysrc');
  t.is(c.source, 'mysrc');
  // the request is left untouched
  t.deepEqual(r.lowerdirs, ['link/l1', 'l2']);
});

test('validate: no upperdir means read-only; -o ro with an upper too', async (t) => {
  const root = await fixture(t);
  const lowerOnly = await validateMountConfig(
    req({ lowerdirs: [`${root}/l1`], mountpoint: `${root}/m` }),
    { mountinfo: EMPTY_MOUNTINFO },
  );
  t.true(lowerOnly.readonly);
  t.is(lowerOnly.upperdir, undefined);
  t.is(lowerOnly.workdir, undefined);
  const ro = await validateMountConfig(rwReq(root, { readonly: true }), { mountinfo: EMPTY_MOUNTINFO });
  t.true(ro.readonly);
  t.is(ro.upperdir, `${root}/u`);
});

test('validate: other request fields are carried over', async (t) => {
  const root = await fixture(t);
  const r = parseMountArgs([
    '-f', '-o',
    `lowerdir=${root}/l1,upperdir=${root}/u,workdir=${root}/w,volatile,userxattr,timeout=7,fsname=fs1,nodev,rw`,
    `${root}/m`,
  ]);
  const c = await validateMountConfig(r, { mountinfo: EMPTY_MOUNTINFO });
  t.true(c.foreground);
  t.true(c.volatile);
  t.true(c.userxattr);
  t.true(c.nodev);
  t.is(c.timeoutSeconds, 7);
  t.is(c.fsname, 'fs1');
  t.deepEqual(c.ignored, ['rw']);
});

test('validate: a non-empty workdir is accepted', async (t) => {
  const root = await fixture(t);
  await fsp.mkdir(path.join(root, 'w', 'work', 'leftover'), { recursive: true });
  await fsp.writeFile(path.join(root, 'w', 'work', 'junk'), 'x');
  const c = await validateMountConfig(rwReq(root), { mountinfo: EMPTY_MOUNTINFO });
  t.is(c.workdir, `${root}/w`);
});

test('validate: containment is component-wise (/a/bc is not inside /a/b)', async (t) => {
  const root = await fixture(t);
  for (const d of ['x/b', 'x/bc', 'x/b2', 'x/ba', 'x/bw', 'x/mm']) await fsp.mkdir(path.join(root, d), { recursive: true });
  const c = await validateMountConfig(
    req({
      lowerdirs: [`${root}/x/b`, `${root}/x/bc`],
      upperdir: `${root}/x/ba`,
      workdir: `${root}/x/bw`,
      mountpoint: `${root}/x/b2`,
    }),
    { mountinfo: EMPTY_MOUNTINFO },
  );
  t.is(c.lowerdirs.length, 2);
});

test('validate: the real /proc/self/mountinfo is read when none is given', async (t) => {
  const root = await fixture(t);
  const c = await validateMountConfig(rwReq(root));
  t.is(c.mountpoint, `${root}/m`);
});

// ---------------------------------------------------------------------------
// validateMountConfig: errors

test('validate: missing or non-directory layers', async (t) => {
  const root = await fixture(t);
  await validateError(t, rwReq(root, { lowerdirs: [`${root}/l1`, `${root}/nope`] }),
    `layerfs: lowerdir '${root}/nope' does not exist`);
  await validateError(t, rwReq(root, { lowerdirs: [`${root}/file`] }),
    `layerfs: lowerdir '${root}/file' is not a directory`);
  await validateError(t, rwReq(root, { lowerdirs: [`${root}/file/sub`] }),
    `layerfs: lowerdir '${root}/file/sub' does not exist (a component of the path is not a directory)`);
  await fsp.symlink('missing', path.join(root, 'dangling'));
  await validateError(t, rwReq(root, { lowerdirs: [`${root}/dangling`] }),
    `layerfs: lowerdir '${root}/dangling' does not exist`);
  await fsp.symlink('loop', path.join(root, 'loop'));
  await validateError(t, rwReq(root, { lowerdirs: [`${root}/loop`] }),
    `layerfs: lowerdir '${root}/loop' cannot be resolved (too many levels of symbolic links)`);
  await validateError(t, rwReq(root, { upperdir: `${root}/nope` }),
    `layerfs: upperdir '${root}/nope' does not exist`);
  await validateError(t, rwReq(root, { upperdir: `${root}/file` }),
    `layerfs: upperdir '${root}/file' is not a directory`);
  await validateError(t, rwReq(root, { workdir: `${root}/nope` }),
    `layerfs: workdir '${root}/nope' does not exist`);
  await validateError(t, rwReq(root, { workdir: `${root}/file` }),
    `layerfs: workdir '${root}/file' is not a directory`);
  await validateError(t, rwReq(root, { lowerdirs: ['rel'] }), "layerfs: lowerdir 'rel' does not exist",
    { cwd: root, mountinfo: EMPTY_MOUNTINFO });
});

test('validate: upperdir and workdir come together', async (t) => {
  const root = await fixture(t);
  await validateError(t, rwReq(root, { workdir: undefined }), 'layerfs: upperdir= requires workdir=');
  await validateError(t, rwReq(root, { upperdir: undefined }), 'layerfs: workdir= requires upperdir=');
  await validateError(t, rwReq(root, { lowerdirs: [] }), 'layerfs: missing lowerdir= option');
});

test('validate: upperdir and workdir on different filesystems', async (t) => {
  const root = await fixture(t);
  await validateError(t, rwReq(root, { workdir: '/proc' }),
    `layerfs: workdir '/proc' is not on the same filesystem as upperdir '${root}/u'`);
});

test('validate: layers must not overlap', async (t) => {
  const root = await fixture(t);
  await fsp.mkdir(path.join(root, 'u', 'in'));
  await fsp.mkdir(path.join(root, 'w', 'in'));
  await fsp.mkdir(path.join(root, 'l1', 'in'));
  const u = `${root}/u`;
  const w = `${root}/w`;
  const l1 = `${root}/l1`;
  const l2 = `${root}/l2`;
  await validateError(t, rwReq(root, { lowerdirs: [`${u}/in`] }),
    `layerfs: lowerdir '${u}/in' is inside upperdir '${u}'`);
  await validateError(t, rwReq(root, { upperdir: `${l1}/in` }),
    `layerfs: upperdir '${l1}/in' is inside lowerdir '${l1}'`);
  await validateError(t, rwReq(root, { lowerdirs: [root] }),
    `layerfs: upperdir '${u}' is inside lowerdir '${root}'`);
  await validateError(t, rwReq(root, { lowerdirs: [`${w}/in`] }),
    `layerfs: lowerdir '${w}/in' is inside workdir '${w}'`);
  await validateError(t, rwReq(root, { workdir: `${u}/in` }),
    `layerfs: workdir '${u}/in' is inside upperdir '${u}'`);
  await validateError(t, rwReq(root, { upperdir: `${w}/in` }),
    `layerfs: upperdir '${w}/in' is inside workdir '${w}'`);
  await validateError(t, rwReq(root, { workdir: u }),
    `layerfs: upperdir '${u}' and workdir '${u}' are the same directory`);
  await validateError(t, rwReq(root, { lowerdirs: [u] }),
    `layerfs: lowerdir '${u}' and upperdir '${u}' are the same directory`);
  await validateError(t, rwReq(root, { lowerdirs: [l1, l2, l1] }),
    `layerfs: lowerdir '${l1}' is listed more than once`);
  await validateError(t, rwReq(root, { lowerdirs: [l1, `${root}/link/l1`] }),
    `layerfs: lowerdir '${l1}' and lowerdir '${root}/link/l1' (resolved: '${l1}') are the same directory`);
  await validateError(t, rwReq(root, { lowerdirs: [l1, `${l1}/in`] }),
    `layerfs: lowerdir '${l1}/in' is inside lowerdir '${l1}'`);
  await validateError(t, rwReq(root, { lowerdirs: [`${l1}/in`, l1] }),
    `layerfs: lowerdir '${l1}/in' is inside lowerdir '${l1}'`);
  await validateError(t, rwReq(root, { lowerdirs: [l1, `${l1}/./in/`] }),
    `layerfs: lowerdir '${l1}/./in/' (resolved: '${l1}/in') is inside lowerdir '${l1}'`);
});

test('validate: mountpoint must exist and be a directory', async (t) => {
  const root = await fixture(t);
  await validateError(t, rwReq(root, { mountpoint: `${root}/nope` }),
    `layerfs: mountpoint '${root}/nope' does not exist`);
  await validateError(t, rwReq(root, { mountpoint: `${root}/file` }),
    `layerfs: mountpoint '${root}/file' is not a directory`);
});

test('validate: already a mount point (synthetic mountinfo, with octal escapes)', async (t) => {
  const root = await fixture(t);
  const spaced = path.join(root, 'with space\there');
  await fsp.mkdir(spaced);
  const esc = (p: string) => p.replace(/\\/g, '\\134').replace(/ /g, '\\040').replace(/\t/g, '\\011');
  const mountinfo = [
    '22 27 0:21 / /proc rw,relatime - proc proc rw',
    `99 27 0:50 / ${esc(root)}/m rw,relatime shared:1 - fuse.layerfs layerfs rw`,
    `100 27 0:51 / ${esc(spaced)} rw,relatime - tmpfs tmpfs rw`,
    `101 27 0:52 / ${esc(root)}/l2/deeper rw - tmpfs tmpfs rw`,
    '',
  ].join('\n');
  await validateError(t, rwReq(root), `layerfs: '${root}/m' is already a mount point (unmount it first)`, { mountinfo });
  // via a relative path: the realpath is compared
  await validateError(t, rwReq(root, { mountpoint: 'link/../m' }),
    "layerfs: 'link/../m' is already a mount point (unmount it first)", { cwd: root, mountinfo });
  await validateError(t, rwReq(root, { mountpoint: spaced }),
    `layerfs: '${spaced}' is already a mount point (unmount it first)`, { mountinfo });
  // a mount below a layer or a prefix-sharing path is not a match
  await fsp.mkdir(path.join(root, 'm2'));
  const c = await validateMountConfig(rwReq(root, { mountpoint: `${root}/m2` }), { mountinfo });
  t.is(c.mountpoint, `${root}/m2`);
});

test('validate: already a mount point (real /proc/self/mountinfo, /proc)', async (t) => {
  const root = await fixture(t);
  await validateError(t, rwReq(root, { mountpoint: '/proc' }),
    "layerfs: '/proc' is already a mount point (unmount it first)", {});
});

test('validate: mountpoint must not overlap any layer', async (t) => {
  const root = await fixture(t);
  for (const d of ['l2/mp', 'u/mp', 'w/mp', 'm/inner', 'm/w']) await fsp.mkdir(path.join(root, d));
  await validateError(t, rwReq(root, { mountpoint: `${root}/l2/mp` }),
    `layerfs: mountpoint '${root}/l2/mp' is inside lowerdir '${root}/l2'`);
  await validateError(t, rwReq(root, { mountpoint: `${root}/u/mp` }),
    `layerfs: mountpoint '${root}/u/mp' is inside upperdir '${root}/u'`);
  await validateError(t, rwReq(root, { mountpoint: `${root}/w/mp` }),
    `layerfs: mountpoint '${root}/w/mp' is inside workdir '${root}/w'`);
  await validateError(t, rwReq(root, { mountpoint: `${root}/l1` }),
    `layerfs: mountpoint '${root}/l1' is the same directory as lowerdir '${root}/l1'`);
  await validateError(t, rwReq(root, { mountpoint: `${root}/u` }),
    `layerfs: mountpoint '${root}/u' is the same directory as upperdir '${root}/u'`);
  await validateError(t, rwReq(root, { mountpoint: root }),
    `layerfs: lowerdir '${root}/l1' is inside mountpoint '${root}'`);
  await validateError(t, rwReq(root, { lowerdirs: [`${root}/m/inner`] }),
    `layerfs: lowerdir '${root}/m/inner' is inside mountpoint '${root}/m'`);
  await validateError(t, rwReq(root, { upperdir: `${root}/m/inner`, workdir: `${root}/m/w` }),
    `layerfs: upperdir '${root}/m/inner' is inside mountpoint '${root}/m'`);
  await validateError(t, rwReq(root, { mountpoint: `${root}/w` }),
    `layerfs: mountpoint '${root}/w' is the same directory as workdir '${root}/w'`);
});

test('validation never changes anything on disk', async (t) => {
  const root = await fixture(t);
  await fsp.mkdir(path.join(root, 'w', 'work'));
  await fsp.writeFile(path.join(root, 'l1', 'a'), 'a');
  await fsp.writeFile(path.join(root, 'u', 'b'), 'b');

  async function snapshot(dir: string): Promise<string[]> {
    const out: string[] = [];
    async function walk(d: string): Promise<void> {
      const st = await fsp.lstat(d);
      out.push(`${path.relative(root, d)} ${st.mode} ${st.size} ${st.nlink} ${st.ino} ${st.mtimeMs} ${st.ctimeMs}`);
      if (st.isDirectory()) {
        for (const name of (await fsp.readdir(d)).sort()) await walk(path.join(d, name));
      }
    }
    await walk(dir);
    return out;
  }

  const before = await snapshot(root);
  const attempts: MountRequest[] = [
    rwReq(root),
    rwReq(root, { readonly: true }),
    req({ lowerdirs: [`${root}/l1`], mountpoint: `${root}/m` }),
    rwReq(root, { upperdir: `${root}/missing-upper` }),
    rwReq(root, { workdir: `${root}/missing-work` }),
    rwReq(root, { mountpoint: `${root}/missing-mnt` }),
    rwReq(root, { lowerdirs: [`${root}/missing-lower`] }),
    rwReq(root, { workdir: `${root}/u/w` }),
    rwReq(root, { mountpoint: `${root}/u` }),
  ];
  for (const r of attempts) {
    await validateMountConfig(r, { mountinfo: EMPTY_MOUNTINFO }).catch((e: unknown) => {
      t.true(e instanceof ConfigError);
    });
    await validateMountConfig(r).catch(() => undefined);
  }
  t.deepEqual(await snapshot(root), before);
});
