// Hostile sources stay bounded: a blob is read at most up to its declared size + 1 byte, JSON
// documents at most 4 MiB, and only regular files inside the source are read (no symlink,
// FIFO, device, or blobs directory symlinked out of the layout). Every refusal is one line,
// exit status 1, nothing stored and the store's tmp/ empty. Each import here runs under a
// watchdog that SIGKILLs it after 20 s or once the store holds more than 64 MiB, so that a
// regression can neither hang the suite nor fill the disk.
//
// And `image rm` refuses while a `layerfs run` of the image runs, even when every layer of the
// image is shared with another image (which stays removable); a run refuses to start on an
// image whose removal holds its lock.

import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../helpers/exec.ts';
import { layerfsBin } from '../helpers/mounts.ts';
import { waitFor } from '../helpers/launcher.ts';
import { copyLayout, fixture, gnuTar, isRoot, layerDirs, lfs, lfsOk, readLayout, storedObjects, storeEnv, type StoreEnv } from './_helpers.ts';

const t0 = isRoot() ? test : test.skip;

/** The importer's cap on a JSON document (src/image/importer.ts MAX_JSON). */
const MAX_JSON = 4 << 20;
const WATCHDOG_MS = 20_000;
const WATCHDOG_BYTES = 64 << 20;

/** Bytes allocated below `p` (st_blocks: a sparse file counts what it really holds). */
function diskBytes(p: string): number {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return 0;
  }
  let total = st.blocks * 512;
  if (st.isDirectory()) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(p);
    } catch {
      /* removed meanwhile */
    }
    for (const n of names) total += diskBytes(path.join(p, n));
  }
  return total;
}

interface Bounded {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  overgrown: boolean;
}

/** `layerfs ARGS` with the store of `se`, under the watchdog (20 s, 64 MiB in the store). */
function lfsBounded(t: ExecutionContext, se: StoreEnv, args: string[]): Promise<Bounded> {
  const child = spawn(layerfsBin, args, { env: { ...process.env, LC_ALL: 'C', ...se.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let timedOut = false;
  let overgrown = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, WATCHDOG_MS);
  const poll = setInterval(() => {
    if (diskBytes(se.store) > WATCHDOG_BYTES) {
      overgrown = true;
      child.kill('SIGKILL');
    }
  }, 100);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), timedOut, overgrown });
    });
  });
}

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Refused in time: exit 1, one line matching `re`, nothing on stdout, nothing stored, tmp/ empty. */
function refused(t: ExecutionContext, se: StoreEnv, r: Bounded, re: RegExp): void {
  t.false(r.timedOut, `still running after ${WATCHDOG_MS} ms; stderr: ${r.stderr}`);
  t.false(r.overgrown, `the store grew past ${WATCHDOG_BYTES} bytes`);
  t.is(r.code, 1, r.stderr);
  t.is(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
  t.regex(r.stderr.trimEnd(), re);
  t.is(r.stdout, '');
  t.deepEqual(storedObjects(se.store), [], 'nothing stored, nothing left in tmp/');
  t.deepEqual(fs.readdirSync(path.join(se.store, 'tmp')), []);
  t.true(diskBytes(se.store) < 1 << 20, 'the store stayed small');
}

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

interface Layout {
  dir: string;
  manifestDigest: string;
  config: { digest: string; size: number };
  /** Tag a's 4 layers. */
  layers: { digest: string; size: number }[];
  blob: (digest: string) => string;
  /** The import of tag a, and the start of its error lines (`^layerfs image import: oci:DIR:a: `). */
  args: string[];
  line: string;
  /** The start of the error line of layer i (0-based). */
  layer: (i: number) => string;
}

/** A private copy of the fixture's OCI layout, to damage. */
function layoutCopy(se: StoreEnv, name: string): Layout {
  const dir = copyLayout(fixture().layout, path.join(se.dir, name));
  const { manifest, blob } = readLayout(dir, 'a');
  const m = manifest as unknown as { config: { digest: string; size: number }; layers: { digest: string; size: number }[] };
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const manifestDigest = index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === 'a')!.digest;
  const line = `^layerfs image import: oci:${esc(dir)}:a: `;
  return {
    dir,
    manifestDigest,
    config: m.config,
    layers: m.layers,
    blob,
    args: ['image', 'import', `oci:${dir}:a`, '--name', 'hostile:1'],
    line,
    layer: (i) => `${line}layer ${i + 1}/4 \\(${m.layers[i].digest}\\): `,
  };
}

/** Replace a file by what `make` creates at its path. */
function replace(file: string, make: (file: string) => void): void {
  fs.rmSync(file);
  make(file);
}

// ---------------------------------------------------------------------------
// OCI layouts

t0('a layer blob that is a symlink to /dev/zero is refused at once: one line, exit 1, nothing stored', async (t) => {
  const se = storeEnv(t);
  const l = layoutCopy(se, 'zero');
  replace(l.blob(l.layers[1].digest), (f) => fs.symlinkSync('/dev/zero', f));
  const r = await lfsBounded(t, se, l.args);
  refused(t, se, r, new RegExp(`${l.layer(1)}blob is a symlink, not a regular file$`));
});

t0('a layer blob larger than its declared size (8 GiB, sparse) is refused without being read', async (t) => {
  const se = storeEnv(t);
  const l = layoutCopy(se, 'huge');
  replace(l.blob(l.layers[0].digest), (f) => {
    fs.writeFileSync(f, '');
    fs.truncateSync(f, 8 * 2 ** 30);
  });
  const r = await lfsBounded(t, se, l.args);
  refused(t, se, r, new RegExp(`${l.layer(0)}blob is larger than its declared size of ${l.layers[0].size} bytes \\(it has ${8 * 2 ** 30}\\)$`));
});

t0('a layer blob shorter than its declared size is refused', async (t) => {
  const se = storeEnv(t);
  const l = layoutCopy(se, 'short');
  fs.truncateSync(l.blob(l.layers[2].digest), l.layers[2].size - 1);
  const r = await lfsBounded(t, se, l.args);
  refused(t, se, r, new RegExp(`${l.layer(2)}blob is shorter than its declared size of ${l.layers[2].size} bytes \\(it has ${l.layers[2].size - 1}\\)$`));
});

const jsonCases: [string, (l: Layout) => void, (l: Layout) => string][] = [
  [
    'a manifest 10 bytes larger than declared',
    (l) => fs.appendFileSync(l.blob(l.manifestDigest), ' '.repeat(10)),
    (l) => {
      const size = fs.statSync(l.blob(l.manifestDigest)).size - 10;
      return `manifest ${l.manifestDigest}: blob is larger than its declared size of ${size} bytes \\(it has ${size + 10}\\)`;
    },
  ],
  [
    'a config 1 byte shorter than declared',
    (l) => fs.truncateSync(l.blob(l.config.digest), l.config.size - 1),
    (l) => `config ${l.config.digest}: blob is shorter than its declared size of ${l.config.size} bytes \\(it has ${l.config.size - 1}\\)`,
  ],
  [
    // Valid JSON, only too big (nothing declares the size of index.json).
    'an index.json of 4 MiB + 1 byte',
    (l) => {
      const f = path.join(l.dir, 'index.json');
      const text = fs.readFileSync(f, 'utf8');
      fs.writeFileSync(f, text + ' '.repeat(MAX_JSON + 1 - Buffer.byteLength(text)));
    },
    () => `index\\.json is larger than the limit of ${MAX_JSON} bytes for a JSON document \\(it has ${MAX_JSON + 1}\\)`,
  ],
  [
    'a manifest declared as 5 MiB',
    (l) => {
      const f = path.join(l.dir, 'index.json');
      const index = JSON.parse(fs.readFileSync(f, 'utf8')) as { manifests: { digest: string; size: number }[] };
      for (const m of index.manifests) if (m.digest === l.manifestDigest) m.size = 5 << 20;
      fs.writeFileSync(f, JSON.stringify(index));
    },
    (l) => `manifest ${l.manifestDigest}: declared size of ${5 << 20} bytes is over the limit of ${MAX_JSON} bytes for a JSON document`,
  ],
];

for (const [name, damage, message] of jsonCases) {
  t0(`JSON documents are bounded: ${name}`, async (t) => {
    const se = storeEnv(t);
    const l = layoutCopy(se, 'json');
    damage(l);
    const r = await lfsBounded(t, se, l.args);
    refused(t, se, r, new RegExp(`${l.line}${message(l)}$`));
  });
}

const specialCases: [string, (l: Layout) => void, (l: Layout) => string][] = [
  ['a layer blob that is a FIFO', (l) => replace(l.blob(l.layers[1].digest), (f) => sh('mkfifo', [f])), (l) => `${l.layer(1)}blob is a FIFO, not a regular file`],
  [
    'a layer blob that is a character device (1,5: zero)',
    (l) => replace(l.blob(l.layers[1].digest), (f) => sh('mknod', [f, 'c', '1', '5'])),
    (l) => `${l.layer(1)}blob is a character device, not a regular file`,
  ],
  [
    'a layer blob that is a block device (7,250)',
    (l) => replace(l.blob(l.layers[3].digest), (f) => sh('mknod', [f, 'b', '7', '250'])),
    (l) => `${l.layer(3)}blob is a block device, not a regular file`,
  ],
  ['a layer blob that is a directory', (l) => replace(l.blob(l.layers[0].digest), (f) => fs.mkdirSync(f)), (l) => `${l.layer(0)}blob is a directory, not a regular file`],
  ['a config that is a FIFO', (l) => replace(l.blob(l.config.digest), (f) => sh('mkfifo', [f])), (l) => `${l.line}config ${l.config.digest} is a FIFO, not a regular file`],
  ['an index.json that is a FIFO', (l) => replace(path.join(l.dir, 'index.json'), (f) => sh('mkfifo', [f])), (l) => `${l.line}index\\.json is a FIFO, not a regular file`],
  [
    // The right bytes, but outside the layout: a symlink is not followed, whatever it points to.
    'a manifest symlinked to a good copy outside the layout',
    (l) => {
      const outside = path.join(path.dirname(l.dir), 'manifest-outside');
      fs.copyFileSync(l.blob(l.manifestDigest), outside);
      replace(l.blob(l.manifestDigest), (f) => fs.symlinkSync(outside, f));
    },
    (l) => `${l.line}manifest ${l.manifestDigest} is a symlink, not a regular file`,
  ],
  [
    'blobs/sha256 symlinked out of the layout (a good copy there)',
    (l) => {
      const outside = path.join(path.dirname(l.dir), 'sha256-outside');
      fs.renameSync(path.join(l.dir, 'blobs', 'sha256'), outside);
      fs.symlinkSync(outside, path.join(l.dir, 'blobs', 'sha256'));
    },
    (l) => `${l.line}blobs/sha256 in ${esc(l.dir)} is a symlink, not a directory inside the layout`,
  ],
  [
    'blobs symlinked out of the layout (a good copy there)',
    (l) => {
      const outside = path.join(path.dirname(l.dir), 'blobs-outside');
      fs.renameSync(path.join(l.dir, 'blobs'), outside);
      fs.symlinkSync(outside, path.join(l.dir, 'blobs'));
    },
    (l) => `${l.line}blobs in ${esc(l.dir)} is a symlink, not a directory inside the layout`,
  ],
];

for (const [name, damage, message] of specialCases) {
  t0(`only regular files inside the layout are read: ${name}`, async (t) => {
    const se = storeEnv(t);
    const l = layoutCopy(se, 'special');
    damage(l);
    const r = await lfsBounded(t, se, l.args);
    refused(t, se, r, new RegExp(`${message(l)}$`));
  });
}

// ---------------------------------------------------------------------------
// docker-archive

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/**
 * A one-layer docker-archive written by hand (tar member order as given), from a directory
 * holding layer.tar, config.json and manifest.json, which `damage` may change first.
 */
async function handArchive(dir: string, damage: (x: string) => void = () => {}, order = ['layer.tar', 'config.json', 'manifest.json']): Promise<string> {
  const src = path.join(dir, 'src');
  const x = path.join(dir, 'x');
  fs.mkdirSync(src);
  fs.mkdirSync(x);
  fs.writeFileSync(path.join(src, 'f'), 'hand-made\n');
  await gnuTar(src, ['-cf', path.join(x, 'layer.tar'), 'f']);
  const layer = fs.readFileSync(path.join(x, 'layer.tar'));
  fs.writeFileSync(path.join(x, 'config.json'), JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/f'] }, rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
  fs.writeFileSync(path.join(x, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: ['test/hand:1'], Layers: ['layer.tar'] }]));
  damage(x);
  const file = path.join(dir, 'hand.tar');
  await gnuTar(x, ['-cf', file, ...order]);
  return file;
}

t0('docker-archive: a hand-made archive imports (the control of the cases below)', async (t) => {
  const se = storeEnv(t);
  const file = await handArchive(se.dir);
  t.regex(await lfsOk(se, ['image', 'import', `docker-archive:${file}`]), /^test\/hand:1 [0-9a-f]{12}: 1 layer, 1 new\n$/);
});

const archiveCases: [string, (x: string) => void, string[] | undefined, string][] = [
  [
    // GNU tar stores the second name of a hard-linked file as a Link entry.
    'the layer is a hard link entry',
    (x) => fs.linkSync(path.join(x, 'layer.tar'), path.join(x, 'first.tar')),
    ['first.tar', 'layer.tar', 'config.json', 'manifest.json'],
    `'layer\\.tar' is a Link entry in the archive, not a regular file`,
  ],
  [
    'the config is a character device entry',
    (x) => replace(path.join(x, 'config.json'), (f) => sh('mknod', [f, 'c', '1', '5'])),
    undefined,
    `'config\\.json' is a CharacterDevice entry in the archive, not a regular file`,
  ],
  [
    'manifest.json over 4 MiB',
    (x) => {
      const f = path.join(x, 'manifest.json');
      const text = fs.readFileSync(f, 'utf8');
      fs.writeFileSync(f, text + ' '.repeat(MAX_JSON + 1 - Buffer.byteLength(text)));
    },
    undefined,
    `manifest\\.json is larger than the limit of ${MAX_JSON} bytes for a JSON document \\(its header says ${MAX_JSON + 1}\\)`,
  ],
];

for (const [name, damage, order, message] of archiveCases) {
  t0(`docker-archive members: ${name}`, async (t) => {
    const se = storeEnv(t);
    const file = await handArchive(se.dir, damage, order);
    const r = await lfsBounded(t, se, ['image', 'import', `docker-archive:${file}`]);
    refused(t, se, r, new RegExp(`^layerfs image import: docker-archive:${esc(file)}: ${message}$`));
  });
}

/** `make` creates `name` in dir; returns its path. */
const made =
  (name: string, make: (p: string) => void) =>
  (dir: string): string => {
    const p = path.join(dir, name);
    make(p);
    return p;
  };

const archiveFiles: [string, (dir: string) => string, string][] = [
  ['a FIFO', made('fifo.tar', (p) => sh('mkfifo', [p])), 'a FIFO'],
  [
    'a symlink to a FIFO',
    made('link.tar', (p) => {
      sh('mkfifo', [`${p}.fifo`]);
      fs.symlinkSync(`${p}.fifo`, p);
    }),
    'a FIFO',
  ],
  ['a character device (1,5: zero)', made('zero.tar', (p) => sh('mknod', [p, 'c', '1', '5'])), 'a character device'],
  ['a directory', made('dir.tar', (p) => fs.mkdirSync(p)), 'a directory'],
];

for (const [name, make, kind] of archiveFiles) {
  t0(`docker-archive: an archive FILE that is ${name} is refused without hanging`, async (t) => {
    const se = storeEnv(t);
    const file = make(se.dir);
    const r = await lfsBounded(t, se, ['image', 'import', `docker-archive:${file}`]);
    refused(t, se, r, new RegExp(`^layerfs image import: docker-archive:${esc(file)}: ${esc(file)} is ${kind}, not a regular file$`));
  });
}

// ---------------------------------------------------------------------------
// image rm while a run of the image runs

/** Start a process (kill it in teardown); resolves its exit. */
function start(t: ExecutionContext, cmd: string, args: string[], env: NodeJS.ProcessEnv, opts: { group?: boolean } = {}): { child: ChildProcess; exited: Promise<unknown>; stop: () => Promise<void> } {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: 'ignore', detached: opts.group });
  const exited = new Promise((r) => child.on('exit', r));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      if (opts.group) process.kill(-child.pid!, 'SIGKILL');
      else child.kill('SIGTERM');
    }
    await exited;
  };
  t.teardown(stop);
  return { child, exited, stop };
}

t0('image rm refuses while a run of the image runs, also when another image holds all its layers; that other image can go', async (t) => {
  const se = storeEnv(t);
  const f = fixture();
  await lfsOk(se, ['image', 'import', `oci:${f.layout}:a`, '--name', 'busy:a']);
  await lfsOk(se, ['image', 'import', `oci:${f.layout}:b`, '--name', 'busy:b']); // a's 4 layers + 1
  t.is(layerDirs(se.store).length, 5);
  const flag = path.join(se.dir, 'running');
  const runEnv = { ...se.env, LAYERFS_RUN_DIR: path.join(se.dir, 'run'), TMPDIR: se.dir };
  const c = start(t, layerfsBin, ['run', '-u', '0', '--stop-timeout', '1', '-v', `${se.dir}:/host`, 'busy:a', '--', '/bin/sh', '-c', 'touch /host/running; sleep 120'], runEnv);
  await waitFor(() => fs.existsSync(flag) || c.child.exitCode !== null, 60_000, 'the container to start');
  t.true(fs.existsSync(flag), 'the container started');

  // Every layer of busy:a is busy:b's too: no layer would be deleted, the image is refused all the same.
  const r = await lfs(se, ['image', 'rm', 'busy:a']);
  t.is(r.code, 1, r.stderr);
  t.is(r.stderr, "layerfs image rm: image 'busy:a' is in use by a running container (layerfs run); stop it first\n");
  t.deepEqual((await lfsOk(se, ['image', 'ls', '-q'])).split('\n').filter(Boolean), ['busy:a', 'busy:b']);
  // busy:b shares the running image's layers: it goes, its own layer with it, a's layers stay.
  t.is(await lfsOk(se, ['image', 'rm', 'busy:b']), 'removed busy:b: deleted 1 layer; kept 4 layers still used by other images\n');
  t.is(layerDirs(se.store).length, 4);
  t.is(await lfsOk(se, ['image', 'ls', '-q']), 'busy:a\n');

  await c.stop();
  t.is(await lfsOk(se, ['image', 'rm', 'busy:a']), 'removed busy:a: deleted 4 layers\n');
  t.deepEqual(storedObjects(se.store), []);
  t.deepEqual(fs.readdirSync(path.join(se.store, 'locks')), [], 'the lock file went with the image');
});

t0('a run refuses to start on an image whose removal holds its lock', async (t) => {
  const se = storeEnv(t);
  await lfsOk(se, ['image', 'import', `oci:${fixture().layout}:a`, '--name', 'busy:a']);
  // What `image rm` holds while it removes busy:a: the image's lock file, exclusively.
  const locks = path.join(se.store, 'locks');
  fs.mkdirSync(locks, { recursive: true });
  const held = path.join(se.dir, 'held');
  const holder = start(t, 'flock', ['-x', '-o', path.join(locks, 'busy%3Aa.lock'), '-c', `touch ${held}; exec sleep 120`], {}, { group: true });
  await waitFor(() => fs.existsSync(held) || holder.child.exitCode !== null, 30_000, 'flock to hold the lock');
  t.true(fs.existsSync(held), 'flock holds the lock');
  const runEnv = { ...se.env, LAYERFS_RUN_DIR: path.join(se.dir, 'run'), TMPDIR: se.dir };
  const r = await run(layerfsBin, ['run', '-u', '0', 'busy:a', '--', '/bin/true'], { env: runEnv, timeoutMs: 60_000 });
  t.is(r.code, 125, r.stderr);
  t.is(r.stderr, "layerfs run: image 'busy:a' is being removed\n");
  await holder.stop();
  const ok = await run(layerfsBin, ['run', '-u', '0', 'busy:a', '--', '/bin/true'], { env: runEnv, timeoutMs: 60_000 });
  t.is(ok.code, 0, ok.stderr);
});
