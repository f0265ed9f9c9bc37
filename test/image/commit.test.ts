// Images out: layerfs diff, commit and image export, checked with real umoci and skopeo, and
// the round trip run -> change -> commit -> export -> umoci unpack.

import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runOk } from '../helpers/exec.ts';
import { snapshotTree, type SnapEntry } from '../helpers/snapshot.ts';
import { runIn, sandbox } from '../helpers/launcher.ts';
import { fixture, isRoot, layerDirs, lfs, lfsOk, storedObjects, storeEnv, type StoreEnv } from './_helpers.ts';

const t0 = isRoot() ? test : test.skip;

function byPath(entries: SnapEntry[]): Map<string, SnapEntry> {
  return new Map(entries.map((e) => [e.path, e]));
}

/** Paths removed, added, and changed (content, mode, owner, type, target) from a to b. */
function treeChanges(a: SnapEntry[], b: SnapEntry[]): { removed: string[]; added: string[]; changed: string[] } {
  const A = byPath(a);
  const B = byPath(b);
  const same = (x: SnapEntry, y: SnapEntry): boolean =>
    x.type === y.type && x.mode === y.mode && x.uid === y.uid && x.gid === y.gid && x.sha256 === y.sha256 && x.target === y.target && x.rdev === y.rdev;
  return {
    removed: [...A.keys()].filter((p) => !B.has(p)).sort(),
    added: [...B.keys()].filter((p) => !A.has(p)).sort(),
    changed: [...A.keys()].filter((p) => B.has(p) && !same(A.get(p)!, B.get(p)!)).sort(),
  };
}

async function umociUnpack(layout: string, tag: string, dest: string): Promise<SnapEntry[]> {
  await runOk('umoci', ['unpack', '--image', `${layout}:${tag}`, dest]);
  return (await snapshotTree(path.join(dest, 'rootfs'), 'merged')).entries;
}

t0('round trip: run an image, change files, diff, commit, export, umoci unpack shows exactly the change', async (t) => {
  const sb = sandbox(t);
  const se = storeEnv(t);
  const f = fixture();
  await lfsOk(se, ['image', 'import', `oci:${f.layout}:a`, '--name', 'busy:a']);
  const upper = path.join(se.dir, 'upper');
  const work = path.join(se.dir, 'work');
  fs.mkdirSync(upper);
  fs.mkdirSync(work);
  const script = [
    'rm /etc/hosts', // a file of the base layer
    'echo changed > /etc/app.conf', // a file of the app layer
    'chmod 600 /etc/passwd', // metadata only
    'echo new > /srv/new.txt', // into the opaque /srv
    'mkdir -p /opt/new && echo deep > /opt/new/file',
    'rm -rf /home/user', // a directory
    'rm -rf /data && mkdir /data && echo again > /data/only', // replaced wholesale: opaque
  ].join(' && ');
  const r = await runIn(sb, ['--upper', upper, '--work', work, '-u', '0', '-e', `SANDBOX=${sb.dir}`, 'busy:a', '/bin/sh', '-c', script], { env: se.env });
  t.is(r.code, 0, r.stderr);

  const exact = await lfsOk(se, ['diff', upper, '--from', 'busy:a']);
  t.is(
    exact,
    [
      'C /data',
      'D /data/abs',
      'D /data/fifo',
      'D /data/hardlink',
      'D /data/loop9',
      'D /data/null2',
      'A /data/only',
      'D /data/private',
      'D /data/rel',
      'D /data/sticky',
      'D /data/suid',
      'C /etc',
      'C /etc/app.conf',
      'D /etc/hosts',
      'C /etc/passwd',
      'C /home',
      'D /home/user',
      'A /opt',
      'A /opt/new',
      'A /opt/new/file',
      'C /srv',
      'A /srv/new.txt',
      '',
    ].join('\n'),
  );
  // From the upper alone: whiteouts and the opaque /data are known; copied-up objects look new.
  const alone = await lfsOk(se, ['diff', upper]);
  t.is(
    alone,
    [
      'C /data',
      'A /data/only',
      'A /etc',
      'A /etc/app.conf',
      'D /etc/hosts',
      'A /etc/passwd',
      'A /home',
      'D /home/user',
      'A /opt',
      'A /opt/new',
      'A /opt/new/file',
      'A /srv',
      'A /srv/new.txt',
      '',
    ].join('\n'),
  );

  const c = await lfsOk(se, ['commit', upper, '--from', 'busy:a', '--name', 'busy:changed', '-m', 'round trip']);
  t.regex(c, /^busy:changed [0-9a-f]{12}: 5 layers \(new layer [0-9a-f]{12}, \d+ entries\)\n$/);
  t.is(layerDirs(se.store).length, 5);
  const out = path.join(se.dir, 'out');
  t.is(await lfsOk(se, ['image', 'export', 'busy:changed', out]), `exported busy:changed to oci:${out}:changed\n`);

  const inspect = JSON.parse((await runOk('skopeo', ['inspect', `oci:${out}:changed`])).stdout.toString()) as { Layers: string[]; Env: string[] };
  t.is(inspect.Layers.length, 5);
  t.deepEqual(inspect.Env, ['GREETING_FROM=image'], 'the base config is kept');

  const index = JSON.parse(fs.readFileSync(path.join(out, 'index.json'), 'utf8'));
  const m = JSON.parse(fs.readFileSync(path.join(out, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  const config = JSON.parse(fs.readFileSync(path.join(out, 'blobs/sha256', m.config.digest.slice(7)), 'utf8'));
  t.like(config.history.at(-1), { created_by: 'layerfs commit --from busy:a', comment: 'round trip' });
  t.is(config.rootfs.diff_ids.length, 5);
  t.deepEqual(config.config.Cmd, ['/usr/local/bin/hello']);
  const before = await umociUnpack(f.layout, 'a', path.join(se.dir, 'b0'));
  const after = await umociUnpack(out, 'changed', path.join(se.dir, 'b1'));
  t.deepEqual(treeChanges(before, after), {
    removed: ['data/abs', 'data/fifo', 'data/hardlink', 'data/loop9', 'data/null2', 'data/private', 'data/rel', 'data/sticky', 'data/suid', 'etc/hosts', 'home/user'],
    added: ['data/only', 'opt', 'opt/new', 'opt/new/file', 'srv/new.txt'],
    changed: ['etc/app.conf', 'etc/passwd'],
  });
  t.is(fs.readFileSync(path.join(se.dir, 'b1/rootfs/etc/app.conf'), 'utf8'), 'changed\n');
  t.is(fs.statSync(path.join(se.dir, 'b1/rootfs/etc/passwd')).mode & 0o777, 0o600);

  // The new image runs, with the change.
  const again = await runIn(sb, ['-e', `SANDBOX=${sb.dir}`, 'busy:changed', '/bin/cat', '/srv/new.txt', '/opt/new/file'], { env: se.env });
  t.is(again.code, 0, again.stderr);
  t.is(again.stdout, 'new\ndeep\n');
  // And the exported layout imports back to the same layers.
  t.regex(await lfsOk(se, ['image', 'import', `oci:${out}:changed`, '--name', 'back:1']), /: 5 layers, 0 new\n$/);
});

/** A kernel-format upper made by hand: whiteouts, an opaque dir, overlay-private xattrs, specials. */
async function handUpper(dir: string, opaqueXattr = 'trusted.overlay.opaque'): Promise<string> {
  const u = path.join(dir, 'upper');
  fs.mkdirSync(path.join(u, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(u, 'var/cache'), { recursive: true });
  await runOk('mknod', [path.join(u, 'etc/gone'), 'c', '0', '0']);
  await runOk('setfattr', ['-n', opaqueXattr, '-v', 'y', path.join(u, 'var/cache')]);
  fs.writeFileSync(path.join(u, 'var/cache/fresh'), 'fresh\n');
  fs.writeFileSync(path.join(u, 'etc/conf'), 'conf\n');
  await runOk('setfattr', ['-n', 'user.keep', '-v', 'kept', path.join(u, 'etc/conf')]);
  await runOk('setfattr', ['-n', 'trusted.bin', '-v', '0x0080ff0a00', path.join(u, 'etc/conf')]);
  await runOk('setfattr', ['-n', 'trusted.overlay.origin', '-v', '0x00fb', path.join(u, 'etc/conf')]);
  fs.writeFileSync(path.join(u, 'etc/suid'), 'x', { mode: 0o755 });
  fs.chownSync(path.join(u, 'etc/suid'), 1000, 100);
  fs.chmodSync(path.join(u, 'etc/suid'), 0o4711); // after chown, which clears setuid
  fs.linkSync(path.join(u, 'etc/suid'), path.join(u, 'etc/suid-link'));
  fs.symlinkSync('conf', path.join(u, 'etc/link'));
  await runOk('mknod', [path.join(u, 'etc/tty7'), 'c', '4', '7']);
  await runOk('mkfifo', [path.join(u, 'etc/fifo')]);
  fs.writeFileSync(path.join(u, `etc/${'long-name-'.repeat(12)}`), 'long\n');
  return u;
}

t0('commit writes OCI whiteouts and opaque markers, keeps xattrs, drops overlay-private ones', async (t) => {
  const se = storeEnv(t);
  const u = await handUpper(se.dir);
  t.regex(await lfsOk(se, ['commit', u, '--name', 'hand:1']), /^hand:1 [0-9a-f]{12}: 1 layer \(new layer [0-9a-f]{12}, \d+ entries\)\n$/);
  const out = path.join(se.dir, 'out');
  await lfsOk(se, ['image', 'export', 'hand:1', out]);
  const index = JSON.parse(fs.readFileSync(path.join(out, 'index.json'), 'utf8'));
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  t.is(manifest.layers[0].mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  const layer = path.join(out, 'blobs/sha256', manifest.layers[0].digest.slice(7));
  // GNU tar reads it back: names, whiteouts, and every xattr (the binary one too).
  const list = (await runOk('tar', ['-tzf', layer])).stdout.toString().trim().split('\n').sort();
  t.deepEqual(list, [
    'etc/',
    'etc/.wh.gone',
    'etc/conf',
    'etc/fifo',
    'etc/link',
    `etc/${'long-name-'.repeat(12)}`,
    'etc/suid',
    'etc/suid-link',
    'etc/tty7',
    'var/',
    'var/cache/',
    'var/cache/.wh..wh..opq',
    'var/cache/fresh',
  ]);
  const x = path.join(se.dir, 'x');
  fs.mkdirSync(x);
  await runOk('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '-xpzf', layer, '-C', x]);
  const dump = (await runOk('getfattr', ['-d', '-e', 'hex', '-m', '-', path.join(x, 'etc/conf')])).stdout.toString();
  t.regex(dump, /trusted\.bin=0x0080ff0a00/);
  t.regex(dump, /user\.keep=0x6b657074/);
  t.notRegex(dump, /overlay/);
  const st = fs.statSync(path.join(x, 'etc/suid'));
  t.is(st.mode & 0o7777, 0o4711);
  t.is(st.uid, 1000);
  t.is(st.gid, 100);
  t.is(st.nlink, 2, 'the hard link is a link entry');
  t.is(fs.statSync(path.join(x, 'etc/tty7')).rdev, fs.statSync(path.join(u, 'etc/tty7')).rdev);
  // umoci applies it: the whiteout and the opaque marker are markers, not files.
  const b = path.join(se.dir, 'bundle');
  await runOk('umoci', ['unpack', '--image', `${out}:1`, b]);
  t.false(fs.existsSync(path.join(b, 'rootfs/etc/.wh.gone')));
  t.deepEqual(fs.readdirSync(path.join(b, 'rootfs/var/cache')), ['fresh']);
  t.is(fs.readFileSync(path.join(b, 'rootfs/etc/conf'), 'utf8'), 'conf\n');
});

t0('--userxattr: the opaque marker of a userxattr upper is user.overlay.opaque', async (t) => {
  const se = storeEnv(t);
  const u = await handUpper(se.dir, 'user.overlay.opaque');
  await lfsOk(se, ['commit', u, '--userxattr', '--name', 'ux:1']);
  await lfsOk(se, ['commit', u, '--name', 'ux:2']);
  const diff1 = await lfsOk(se, ['diff', u, '--userxattr']);
  const diff2 = await lfsOk(se, ['diff', u]);
  t.regex(diff1, /^C \/var\/cache$/m);
  t.regex(diff2, /^A \/var\/cache$/m, 'without --userxattr it is not an opaque marker');
  const layers = (name: string): string[] => {
    const rec = JSON.parse(fs.readFileSync(path.join(se.store, 'images', encodeURIComponent(name) + '.json'), 'utf8'));
    return rec.layers.map((l: { diffID: string }) => l.diffID);
  };
  const opq = (name: string): boolean => fs.existsSync(path.join(se.store, 'layers', layers(name)[0].slice(7), 'root/var/cache/.wh..wh..opq'));
  t.true(opq('ux:1'));
  t.false(opq('ux:2'));
});

t0('diff against lowers: exact letters, and a whiteout over nothing is no change', async (t) => {
  const se = storeEnv(t);
  const lower = path.join(se.dir, 'lower');
  fs.mkdirSync(path.join(lower, 'd/sub'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'd/a'), 'a');
  fs.writeFileSync(path.join(lower, 'd/sub/b'), 'b');
  fs.writeFileSync(path.join(lower, 'f'), 'f');
  const u = path.join(se.dir, 'u');
  fs.mkdirSync(path.join(u, 'd'), { recursive: true });
  await runOk('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(u, 'd')]);
  fs.writeFileSync(path.join(u, 'd/a'), 'a2');
  await runOk('mknod', [path.join(u, 'f'), 'c', '0', '0']);
  await runOk('mknod', [path.join(u, 'never-was'), 'c', '0', '0']);
  t.is(await lfsOk(se, ['diff', u, '--lower', lower]), 'C /d\nC /d/a\nD /d/sub\nD /f\n');
  t.is(await lfsOk(se, ['diff', u]), 'C /d\nA /d/a\nD /f\nD /never-was\n');
});

const bad: [string, (se: StoreEnv) => Promise<string[]>, number, RegExp][] = [
  ['commit of a missing upper', async (se) => ['commit', path.join(se.dir, 'nope')], 1, /^layerfs commit: upper '.*\/nope' does not exist$/],
  ['commit of an upper that is a file', async (se) => ['commit', path.join(se.dir, 'file')], 1, /^layerfs commit: upper '.*\/file' is not a directory$/],
  ['commit without an upper', async () => ['commit'], 2, /^layerfs commit: needs exactly one UPPER directory$/],
  ['commit --from an unknown image', async (se) => ['commit', se.dir, '--from', 'nope:1'], 1, /^layerfs commit: no image 'nope:1' in the store/],
  ['commit with a bad name', async (se) => ['commit', se.dir, '--name', 'UP:x'], 1, /^layerfs commit: bad image name 'UP:x'/],
  [
    'commit of an upper with a .wh. name',
    async (se) => {
      const u = path.join(se.dir, 'u');
      fs.mkdirSync(path.join(u, 'etc'), { recursive: true });
      fs.writeFileSync(path.join(u, 'etc/.wh.passwd'), '');
      return ['commit', u];
    },
    1,
    /^layerfs commit: '\/etc\/\.wh\.passwd': names starting with '\.wh\.' are OCI whiteout markers and cannot be committed/,
  ],
  [
    'commit of an upper that depends on its lowers (metacopy)',
    async (se) => {
      const u = path.join(se.dir, 'u');
      fs.mkdirSync(u);
      fs.writeFileSync(path.join(u, 'meta'), '');
      await runOk('setfattr', ['-n', 'trusted.overlay.metacopy', '-v', '', path.join(u, 'meta')]);
      return ['commit', u];
    },
    1,
    /^layerfs commit: '\/meta' carries trusted\.overlay\.metacopy: this upper depends on its lower layers/,
  ],
  ['diff of a file', async (se) => ['diff', path.join(se.dir, 'file')], 1, /^layerfs diff: upper '.*\/file' is not a directory$/],
  ['diff --from an unknown image', async (se) => ['diff', se.dir, '--from', 'nope:1'], 1, /^layerfs diff: no image 'nope:1' in the store/],
  ['diff with a missing lower', async (se) => ['diff', se.dir, '--lower', path.join(se.dir, 'nope')], 1, /^layerfs diff: lower layer '.*\/nope' does not exist$/],
  ['export of an unknown image', async (se) => ['image', 'export', 'nope:1', path.join(se.dir, 'out')], 1, /^layerfs image export: no image 'nope:1' in the store/],
];

for (const [name, args, code, re] of bad) {
  t0(`bad input: ${name}`, async (t: ExecutionContext) => {
    const se = storeEnv(t);
    fs.writeFileSync(path.join(se.dir, 'file'), 'x');
    const r = await lfs(se, await args(se));
    t.is(r.code, code, r.stderr);
    t.is(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    t.regex(r.stderr.trimEnd(), re);
    t.is(r.stdout.toString(), '');
    t.deepEqual(storedObjects(se.store), []);
    t.false(fs.existsSync(path.join(se.dir, 'out')));
  });
}

t0('export into a directory that is not empty changes nothing', async (t) => {
  const se = storeEnv(t);
  const u = path.join(se.dir, 'u');
  fs.mkdirSync(u);
  fs.writeFileSync(path.join(u, 'f'), 'f');
  await lfsOk(se, ['commit', u, '--name', 'x:1']);
  const out = path.join(se.dir, 'out');
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'mine'), 'mine');
  const r = await lfs(se, ['image', 'export', 'x:1', out]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^layerfs image export: '.*\/out' exists and is not empty\n$/);
  t.deepEqual(fs.readdirSync(out), ['mine']);
  t.deepEqual(
    fs.readdirSync(se.dir).filter((e) => e.includes('layerfs-export')),
    [],
    'no staging left beside it',
  );
});
