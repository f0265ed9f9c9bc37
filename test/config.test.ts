// Mount option parsing and validation (src/config.ts): the accepted forms of parseMountArgs, escaping.
// What these tests share: _config.ts.

import test from 'ava';
import * as os from 'node:os';
import { parseMountArgs, splitLowerdirs, splitOptions } from '../src/config.ts';
import { req, optError } from './_config.ts';

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
