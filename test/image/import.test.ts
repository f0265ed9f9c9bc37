// layerfs image import / ls / rm with real images (umoci, skopeo): layers stored once and
// refcounted by images, faithful content, digests checked, nothing stored on any error.

import test from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run, runOk } from '../helpers/exec.ts';
import { layerfsBin, mountFor } from '../helpers/mounts.ts';
import { compareSnapshots, snapshotTree } from '../helpers/snapshot.ts';
import { waitFor } from '../helpers/launcher.ts';
import { copyLayout, fixture, gnuTar, isRoot, layerDirs, layoutFromTars, lfs, lfsOk, readLayout, storeContents, storedObjects, storeEnv } from './_helpers.ts';

const t0 = isRoot() ? test : test.skip;

function oneLine(t: { is: (a: unknown, b: unknown, m?: string) => void }, stderr: string): void {
  t.is(stderr.split('\n').length, 2, `one line: ${stderr}`);
}

t0('oci: import stores the layers and the config; a second image stores only its own layer', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  const out = await lfsOk(se, ['image', 'import', `oci:${f.layout}:a`, '--name', 'busy:a']);
  t.regex(out, /^busy:a [0-9a-f]{12}: 4 layers, 4 new\n$/);
  t.is(layerDirs(se.store).length, 4);
  // The config is kept as it is (same bytes, same digest).
  const { manifest, blob } = readLayout(f.layout, 'a');
  const cfg = manifest.config.digest.slice(7);
  t.deepEqual(fs.readFileSync(path.join(se.store, 'blobs/sha256', cfg)), fs.readFileSync(blob(manifest.config.digest)));
  t.true(out.includes(cfg.slice(0, 12)));

  const out2 = await lfsOk(se, ['image', 'import', `oci:${f.layout}:b`, '--name', 'busy:b']);
  t.regex(out2, /^busy:b [0-9a-f]{12}: 5 layers, 1 new\n$/);
  t.is(layerDirs(se.store).length, 5, 'the 4 shared layers are stored once');

  const ls = await lfsOk(se, ['image', 'ls']);
  const lines = ls.trimEnd().split('\n');
  t.regex(lines[0], /^NAME +ID +LAYERS +SIZE +CREATED$/);
  t.regex(lines[1], /^busy:a +[0-9a-f]{12} +4 +[0-9.]+[kM]B +\d{4}-\d\d-\d\dT/);
  t.regex(lines[2], /^busy:b +[0-9a-f]{12} +5 +/);
  t.is(lines.length, 3);
  t.deepEqual(storedObjects(se.store).filter((p) => p.startsWith('tmp/')), [], 'no staging left');
});

t0('without --name an image is named after the layout and tag, or the archive RepoTags', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  t.regex(await lfsOk(se, ['image', 'import', `oci:${f.layout}:a`]), /^oci:a /);
  t.regex(await lfsOk(se, ['image', 'import', `docker-archive:${f.archive}`]), /^docker\.io\/test\/busy:a [0-9a-f]{12}: 4 layers, 0 new\n$/);
  t.deepEqual((await lfsOk(se, ['image', 'ls', '-q'])).split('\n').filter(Boolean), ['docker.io/test/busy:a', 'oci:a']);
});

t0('the stored layers, mounted, show exactly what umoci unpacks (owners, modes, links, devices, xattrs)', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  await lfsOk(se, ['image', 'import', `oci:${f.layout}:a`, '--name', 'busy:a']);
  const rec = JSON.parse(fs.readFileSync(path.join(se.store, 'images', encodeURIComponent('busy:a') + '.json'), 'utf8')) as { layers: { diffID: string }[] };
  const lowers = rec.layers.map((l) => path.join(se.store, 'layers', l.diffID.slice(7), 'root')).reverse();
  const mnt = path.join(se.dir, 'mnt');
  fs.mkdirSync(mnt);
  await mountFor(t, 'layerfs', { lowers, mnt });
  const bundle = path.join(se.dir, 'bundle');
  await runOk('umoci', ['unpack', '--image', `${f.layout}:a`, bundle]);
  const ours = await snapshotTree(mnt, 'merged');
  const theirs = await snapshotTree(path.join(bundle, 'rootfs'), 'merged');
  t.deepEqual(compareSnapshots(theirs, ours, ['umoci unpack', 'layerfs image'], 'image a'), []);
  t.true(ours.entries.length > 300, 'the busybox root is there');
  // What the comparison does not cover: times, trusted.* xattrs, OCI whiteouts kept as files.
  const app = rec.layers[1].diffID.slice(7);
  const layer = path.join(se.store, 'layers', app, 'root');
  t.is(fs.statSync(path.join(layer, 'data/private')).mtime.toISOString(), '2001-02-03T04:05:06.000Z');
  t.is((await runOk('getfattr', ['--only-values', '-n', 'trusted.test', path.join(layer, 'etc/app.conf')])).stdout.toString(), 'tval');
  const wh = path.join(se.store, 'layers', rec.layers[3].diffID.slice(7), 'root', 'etc', '.wh.issue');
  t.true(fs.lstatSync(wh).isFile(), 'the OCI whiteout is kept as it is');
  t.true(fs.lstatSync(path.join(se.store, 'layers', rec.layers[2].diffID.slice(7), 'root', 'srv', '.wh..wh..opq')).isFile());
  t.false(fs.existsSync(path.join(mnt, 'etc/issue')));
  t.deepEqual(fs.readdirSync(path.join(mnt, 'srv')), ['index.html']);
});

t0('docker-archive: the same layers as the OCI image are not stored twice', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  t.regex(await lfsOk(se, ['image', 'import', `docker-archive:${f.archive}`, '--name', 'da:1']), /^da:1 [0-9a-f]{12}: 4 layers, 4 new\n$/);
  t.regex(await lfsOk(se, ['image', 'import', `oci:${f.layout}:a`, '--name', 'oci:1']), /: 4 layers, 0 new\n$/);
  t.is(layerDirs(se.store).length, 4);
  // Both images have the same config (the archive keeps it byte for byte).
  const ls = (await lfsOk(se, ['image', 'ls'])).split('\n');
  t.is(ls[1].split(/ +/)[1], ls[2].split(/ +/)[1]);
});

t0("a multi-platform index: the host's platform is imported; a second import under a name replaces the image", async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  const layout = copyLayout(f.layout, path.join(se.dir, 'multi'));
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[] };
  const desc = (tag: string) => {
    const d = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)!;
    return { mediaType: d.mediaType, digest: d.digest, size: d.size };
  };
  // arm64 gets b (5 layers), amd64 gets a (4 layers).
  const multi = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { ...desc('b'), platform: { architecture: 'arm64', os: 'linux' } },
        { ...desc('a'), platform: { architecture: 'amd64', os: 'linux' } },
      ],
    }),
  );
  const { createHash } = await import('node:crypto');
  const hex = createHash('sha256').update(multi).digest('hex');
  fs.writeFileSync(path.join(layout, 'blobs/sha256', hex), multi);
  index.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${hex}`, size: multi.length, annotations: { 'org.opencontainers.image.ref.name': 'multi' } });
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify(index));
  t.is(process.arch, 'x64');
  t.regex(await lfsOk(se, ['image', 'import', `oci:${layout}:multi`, '--name', 'm:1']), /^m:1 [0-9a-f]{12}: 4 layers, 4 new\n$/);
  t.regex(await lfsOk(se, ['image', 'import', `oci:${layout}:b`, '--name', 'm:1']), /^m:1 [0-9a-f]{12}: 5 layers, 1 new \(replaces the image of that name\)\n$/);
  t.regex(await lfsOk(se, ['image', 'import', `oci:${layout}:b`, '--name', 'm:1']), /: 5 layers, 0 new \(already stored\)\n$/);
  t.regex(await lfsOk(se, ['image', 'ls']), /^m:1 +[0-9a-f]{12} +5 /m);
  t.regex(await lfsOk(se, ['image', 'import', `oci:${layout}:multi`, '--name', 'm:1']), /: 4 layers, 0 new \(replaces the image of that name\)\n$/);
  t.is(layerDirs(se.store).length, 4, "the replaced image's own layer is deleted");
});

t0('a layer blob that does not match its digest: one line, exit 1, nothing stored', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  const layout = copyLayout(f.layout, path.join(se.dir, 'bad'));
  const { manifest, blob } = readLayout(layout, 'a');
  const victim = blob(manifest.layers[1].digest);
  const b = fs.readFileSync(victim);
  b[b.length - 9] ^= 0xff; // inside the gzip trailer's CRC: still the same size
  fs.writeFileSync(victim, b);
  const r = await lfs(se, ['image', 'import', `oci:${layout}:a`]);
  t.is(r.code, 1, r.stderr);
  oneLine(t, r.stderr);
  t.regex(r.stderr, new RegExp(`^layerfs image import: oci:.*: layer 2/4 \\(${manifest.layers[1].digest}\\): digest mismatch: expected ${manifest.layers[1].digest}, got sha256:[0-9a-f]{64}\\n$`));
  t.is(r.stdout.toString(), '');
  t.deepEqual(storedObjects(se.store), []);
});

t0('a manifest or config that does not match its digest is refused before anything is read further', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  for (const which of ['config', 'manifest'] as const) {
    const layout = copyLayout(f.layout, path.join(se.dir, which));
    const { manifest, blob } = readLayout(layout, 'a');
    let file: string;
    if (which === 'config') file = blob(manifest.config.digest);
    else {
      const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'));
      file = blob(index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === 'a').digest);
    }
    // One character changed, the size kept: the digest is what tells (a size lie fails
    // earlier, see bounded.test.ts).
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"', "'"));
    const r = await lfs(se, ['image', 'import', `oci:${layout}:a`]);
    t.is(r.code, 1, r.stderr);
    oneLine(t, r.stderr);
    t.regex(r.stderr, new RegExp(`${which} sha256:[0-9a-f]{64}: digest mismatch`));
    t.deepEqual(storedObjects(se.store), []);
  }
});

t0('a layer whose content does not match the config diff_id is refused, nothing stored', async (t) => {
  const se = storeEnv(t);
  const src = path.join(se.dir, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'f'), 'x');
  await gnuTar(src, ['-cf', '../l.tar', 'f']);
  // The config lies about the layer's DiffID (every digest that covers the config is right).
  const layout = layoutFromTars(path.join(se.dir, 'lay'), [path.join(se.dir, 'l.tar')], {}, ['sha256:' + '1'.repeat(64)]);
  const r = await lfs(se, ['image', 'import', `oci:${layout}`]);
  t.is(r.code, 1, r.stderr);
  oneLine(t, r.stderr);
  t.regex(r.stderr, /uncompressed content has digest sha256:[0-9a-f]{64}, but the config's diff_id is sha256:1{64}$/m);
  t.deepEqual(storedObjects(se.store), []);
});

t0('a blob that claims the diff_id of an already stored layer is checked all the same', async (t) => {
  const se = storeEnv(t);
  for (const n of ['one', 'two']) {
    fs.mkdirSync(path.join(se.dir, n));
    fs.writeFileSync(path.join(se.dir, n, 'f'), n);
    await gnuTar(path.join(se.dir, n), ['-cf', `../${n}.tar`, 'f']);
  }
  await lfsOk(se, ['image', 'import', `oci:${layoutFromTars(path.join(se.dir, 'l1'), [path.join(se.dir, 'one.tar')])}`, '--name', 'one:1']);
  const stored = layerDirs(se.store);
  const liar = layoutFromTars(path.join(se.dir, 'l2'), [path.join(se.dir, 'two.tar')], {}, [`sha256:${stored[0]}`]);
  const r = await lfs(se, ['image', 'import', `oci:${liar}`, '--name', 'two:1']);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`uncompressed content has digest sha256:[0-9a-f]{64}, but the config's diff_id is sha256:${stored[0]}\n$`));
  t.deepEqual(layerDirs(se.store), stored);
  t.is(await lfsOk(se, ['image', 'ls', '-q']), 'one:1\n');
});

t0('docker-archive: a tampered layer is refused by its name digest and the diff_id', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  const x = path.join(se.dir, 'x');
  fs.mkdirSync(x);
  await runOk('tar', ['-xf', f.archive, '-C', x]);
  const manifest = JSON.parse(fs.readFileSync(path.join(x, 'manifest.json'), 'utf8'))[0] as { Layers: string[] };
  const victim = path.join(x, manifest.Layers[1]);
  const b = fs.readFileSync(fs.realpathSync(victim));
  const i = b.indexOf('app layer motd');
  t.true(i > 0);
  b.write('APP', i);
  fs.rmSync(fs.realpathSync(victim));
  fs.writeFileSync(victim, b);
  const tampered = path.join(se.dir, 'tampered.tar');
  await runOk('tar', ['-cf', tampered, '-C', x, '.']);
  const r = await lfs(se, ['image', 'import', `docker-archive:${tampered}`]);
  t.is(r.code, 1, r.stderr);
  oneLine(t, r.stderr);
  t.regex(r.stderr, /layer .*: digest mismatch: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}$/m);
  t.deepEqual(storedObjects(se.store), []);
});

const badInputs: [string, (d: string) => string[], number, RegExp][] = [
  ['no SOURCE', () => ['image', 'import'], 2, /^layerfs image import: needs exactly one SOURCE/],
  ['a bad transport', () => ['image', 'import', 'docker://busybox'], 1, /^layerfs image import: unsupported transport 'docker'/],
  ['no transport', (d) => ['image', 'import', d], 1, /^layerfs image import: '.*' is not TRANSPORT:PATH/],
  ['a missing layout', (d) => ['image', 'import', `oci:${d}/nope`], 1, /^layerfs image import: oci:.*: .*\/nope does not exist$/],
  ['a directory that is not a layout', (d) => ['image', 'import', `oci:${d}`], 1, /is not an OCI image layout \(no oci-layout file\)$/],
  ['an unknown tag', () => ['image', 'import', `oci:${fixture().layout}:zz`], 1, /no image tagged 'zz' in .* \(tags: a, b\)$/],
  ['a layout with two images and no tag', () => ['image', 'import', `oci:${fixture().layout}`], 1, /holds 2 images \(a, b\); name one: oci:.*:TAG$/],
  ['a missing archive', (d) => ['image', 'import', `docker-archive:${d}/nope.tar`], 1, /^layerfs image import: docker-archive:.*: .*\/nope\.tar does not exist$/],
  ['an archive that is not a tar', (d) => ['image', 'import', `docker-archive:${d}/text`], 1, /^layerfs image import: docker-archive:.*: not a valid tar archive/],
  ['a bad --name', () => ['image', 'import', `oci:${fixture().layout}:a`, '--name', 'Bad Name'], 1, /^layerfs image import: bad image name 'Bad Name'/],
  ['an unknown option', () => ['image', 'import', '--frob', 'oci:x'], 2, /^layerfs image import: unknown option '--frob'$/],
  ['an unknown image subcommand', () => ['image', 'pull', 'x'], 2, /^layerfs image: unknown subcommand 'pull'/],
  ['rm of an unknown image', () => ['image', 'rm', 'nope:1'], 1, /^layerfs image rm: no image 'nope:1' in the store/],
];

for (const [name, args, code, re] of badInputs) {
  t0(`bad input: ${name}`, async (t) => {
    const se = storeEnv(t);
    fs.writeFileSync(path.join(se.dir, 'text'), 'not a tar archive at all\n'.repeat(40));
    const r = await lfs(se, args(se.dir));
    t.is(r.code, code, r.stderr);
    oneLine(t, r.stderr);
    t.regex(r.stderr.trimEnd(), re);
    t.is(r.stdout.toString(), '');
    t.deepEqual(storedObjects(se.store), []);
  });
}

t0('image rm: layers are refcounted by images', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  await lfsOk(se, ['image', 'import', `oci:${f.layout}:a`, '--name', 'busy:a']);
  await lfsOk(se, ['image', 'import', `oci:${f.layout}:b`, '--name', 'busy:b']);
  await lfsOk(se, ['image', 'import', `docker-archive:${f.archive}`, '--name', 'busy:da']);
  const before = layerDirs(se.store);
  t.is(before.length, 5);
  t.is(await lfsOk(se, ['image', 'rm', 'busy:b']), 'removed busy:b: deleted 1 layer; kept 4 layers still used by other images\n');
  t.is(layerDirs(se.store).length, 4);
  t.is(await lfsOk(se, ['image', 'rm', 'busy:a']), 'removed busy:a: deleted 0 layers; kept 4 layers still used by other images\n');
  t.is(layerDirs(se.store).length, 4);
  t.is(await lfsOk(se, ['image', 'rm', 'busy:da']), 'removed busy:da: deleted 4 layers\n');
  t.deepEqual(storedObjects(se.store), [], 'no layer, blob or image left');
  t.is(await lfsOk(se, ['image', 'ls']), 'NAME  ID  LAYERS  SIZE  CREATED\n');
});

t0('image rm refuses while a container runs on the image', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  await lfsOk(se, ['image', 'import', `oci:${f.layout}:a`, '--name', 'busy:a']);
  const flag = path.join(se.dir, 'running');
  const child = spawn(layerfsBin, ['run', '-u', '0', '--stop-timeout', '1', '-v', `${se.dir}:/host`, 'busy:a', '--', '/bin/sh', '-c', 'touch /host/running; sleep 30'], {
    env: { ...process.env, ...se.env, LAYERFS_RUN_DIR: path.join(se.dir, 'run'), TMPDIR: se.dir },
    stdio: 'ignore',
  });
  const exited = new Promise((r) => child.on('exit', r));
  t.teardown(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  await waitFor(() => fs.existsSync(flag), 60_000, 'the container to start');
  const r = await lfs(se, ['image', 'rm', 'busy:a']);
  t.is(r.code, 1);
  t.is(r.stderr, "layerfs image rm: image 'busy:a' is in use by a running container (layerfs run); stop it first\n");
  t.is(layerDirs(se.store).length, 4);
  t.regex(await lfsOk(se, ['image', 'ls', '-q']), /^busy:a$/m);
  child.kill('SIGTERM');
  await exited;
  t.regex(await lfsOk(se, ['image', 'rm', 'busy:a']), /^removed busy:a: deleted 4 layers\n$/);
});

t0('progress is shown on a terminal only', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  const plain = await lfs(se, ['image', 'import', `oci:${f.layout}:a`, '--name', 'p:1']);
  t.is(plain.code, 0);
  t.is(plain.stderr, '', 'nothing on a stderr that is not a terminal');
  // script(1) gives the command a terminal.
  const cmd = `${layerfsBin} image import oci:${f.layout}:b --name p:2`;
  const r = await run('script', ['-qec', cmd, '/dev/null'], { env: se.env });
  t.is(r.code, 0, r.stdout.toString());
  const out = r.stdout.toString();
  // Each phase shows its own bytes; the whole job only as a percentage (a layer is copied, then unpacked).
  t.regex(out, /importing p:2: layer 1\/5, copying [0-9.]+ MiB \/ [0-9.]+ MiB \(\d+% in all\)/);
  t.regex(out, /importing p:2: layer \d\/5, unpacking [0-9.]+ MiB \/ [0-9.]+ MiB \(\d+% in all\)/);
  t.regex(out, /p:2 [0-9a-f]{12}: 5 layers, 1 new/);
});

t0('a killed import leaves no half layer; the next import cleans up and completes', async (t) => {
  const se = storeEnv(t);
  // One layer with many files, so that unpacking it takes a while.
  const src = path.join(se.dir, 'many');
  for (let d = 0; d < 40; d++) {
    fs.mkdirSync(path.join(src, `d${d}`), { recursive: true });
    for (let i = 0; i < 250; i++) fs.writeFileSync(path.join(src, `d${d}`, `f${i}`), `${d}/${i}\n`);
  }
  await gnuTar(src, ['-cf', '../many.tar', '.']);
  const layout = layoutFromTars(path.join(se.dir, 'lay'), [path.join(se.dir, 'many.tar')]);
  const child = spawn(layerfsBin, ['image', 'import', `oci:${layout}`, '--name', 'many:1'], { env: { ...process.env, ...se.env }, stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  const tmp = path.join(se.store, 'tmp');
  const unpacking = (): boolean => {
    try {
      const stage = fs.readdirSync(tmp).find((e) => e.startsWith('import-'));
      return stage !== undefined && fs.readdirSync(path.join(tmp, stage, 'layer-0', 'root')).length > 5;
    } catch {
      return false;
    }
  };
  await waitFor(() => unpacking() || child.exitCode !== null, 60_000, 'the unpacking to start');
  child.kill('SIGKILL');
  await exited;
  t.true(fs.readdirSync(tmp).length > 0, 'killed while unpacking (the staging is still there)');
  t.deepEqual(layerDirs(se.store), [], 'no layer under its final name');
  t.deepEqual(storeContents(se.store).filter((p) => /^(images|blobs\/sha256)\/./.test(p)), []);
  t.is(await lfsOk(se, ['image', 'ls', '-q']), '');
  t.regex(await lfsOk(se, ['image', 'import', `oci:${layout}`, '--name', 'many:1']), /^many:1 [0-9a-f]{12}: 1 layer, 1 new\n$/);
  t.deepEqual(fs.readdirSync(tmp), []);
  const [hex] = layerDirs(se.store);
  const info = JSON.parse(fs.readFileSync(path.join(se.store, 'layers', hex, 'layer.json'), 'utf8'));
  t.is(info.entries, 41 + 40 * 250);
});
