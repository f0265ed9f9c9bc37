// Mount option parsing and validation (src/config.ts): validateMountConfig, its successes and its errors.
// What these tests share: _config.ts.

import test from 'ava';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, parseMountArgs, validateMountConfig } from '../src/config.ts';
import type { MountRequest } from '../src/config.ts';
import { req, fixture, rwReq, EMPTY_MOUNTINFO, validateError } from './_config.ts';

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
