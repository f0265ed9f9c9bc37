// Helpers for the image tests: a private store per test, real OCI images built with Debian's
// umoci from the busybox root of scripts/make-rootfs.sh, and a way to look at a store.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ExecutionContext } from 'ava';
import { run, runOk, type RunResult } from '../helpers/exec.ts';
import { layerfsBin, makeTmp } from '../helpers/mounts.ts';
import { rootfs } from '../helpers/rootfs.ts';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export interface StoreEnv {
  dir: string;
  store: string;
  env: NodeJS.ProcessEnv;
}

/** A temp dir (removed, after unmounting anything below it, in teardown) with a store in it. */
export function storeEnv(t: ExecutionContext, prefix = 'layerfs-test-image-'): StoreEnv {
  const dir = makeTmp(t, prefix);
  const store = path.join(dir, 'store');
  return { dir, store, env: { LAYERFS_STORE: store, LC_ALL: 'C' } };
}

/** `bin/layerfs ARGS` with the store of `se`. */
export function lfs(se: StoreEnv, args: readonly string[], opts: { timeoutMs?: number; viaFiles?: boolean } = {}): Promise<RunResult> {
  return run(layerfsBin, args, { env: se.env, timeoutMs: opts.timeoutMs ?? 120_000, viaFiles: opts.viaFiles });
}

export async function lfsOk(se: StoreEnv, args: readonly string[]): Promise<string> {
  const r = await lfs(se, args);
  if (r.code !== 0) throw new Error(`layerfs ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout.toString();
}

/** Every file and directory below the store, except the lock file (relative paths, sorted). */
export function storeContents(store: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const abs = path.join(store, rel);
    let names: string[];
    try {
      names = fs.readdirSync(abs);
    } catch {
      return;
    }
    for (const n of names.sort()) {
      const r = rel ? `${rel}/${n}` : n;
      if (r === 'lock') continue;
      out.push(r);
      // Inside an unpacked layer: its files are not interesting here.
      if (fs.lstatSync(path.join(store, r)).isDirectory() && !/^layers\/[a-f0-9]{64}\/root$/.test(r)) walk(r);
    }
  };
  walk('');
  return out;
}

/** Store entries that mean something was stored: blobs, layers, images, tmp leftovers. */
export function storedObjects(store: string): string[] {
  return storeContents(store).filter((p) => /^(blobs\/sha256\/.|layers\/.|images\/.|tmp\/.)/.test(p));
}

export function layerDirs(store: string): string[] {
  try {
    return fs.readdirSync(path.join(store, 'layers')).sort();
  } catch {
    return [];
  }
}

export interface Fixture {
  /** The OCI image layout (tags 'a' and 'b'). */
  layout: string;
  /** A docker-archive of tag 'a', named docker.io/test/busy:a inside. */
  archive: string;
}

/**
 * Two real OCI images, built with umoci in `dir`:
 *
 *  tag a: 4 layers -- the busybox base of make-rootfs.sh; an app layer (changes /etc/motd,
 *         adds /etc/app.conf with xattrs, /usr/local/bin/hello, and /data with special
 *         files); /srv replaced wholesale (an opaque directory); a whiteout of /etc/issue.
 *         Config: Cmd ["/usr/local/bin/hello"],
 *         Env GREETING_FROM=image, WorkingDir /srv, User user.
 *  tag b: a's layers plus one more (adds /etc/b.txt), same config.
 */
export function buildFixture(dir: string): Fixture {
  const layout = path.join(dir, 'oci');
  const sh = (cmd: string, args: string[]): void => {
    execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  // umoci insert changes the modes of the directories it reads for a moment and puts them back:
  // two inserts of one tree at once can leave the first one's temporary modes behind. So it
  // reads a private copy, never the shared rootfs the other tests use.
  const base = path.join(dir, 'base');
  sh('cp', ['-a', rootfs().base, base]);
  sh('umoci', ['init', '--layout', layout]);
  sh('umoci', ['new', '--image', `${layout}:a`]);
  sh('umoci', ['insert', '--image', `${layout}:a`, base, '/']);
  const app = path.join(dir, 'app');
  fs.mkdirSync(path.join(app, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(app, 'usr/local/bin'), { recursive: true });
  fs.writeFileSync(path.join(app, 'etc/motd'), 'app layer motd\n');
  fs.writeFileSync(path.join(app, 'etc/app.conf'), 'greeting="hello from the app layer"\n');
  fs.writeFileSync(path.join(app, 'usr/local/bin/hello'), '#!/bin/sh\n. /etc/app.conf\necho "$greeting (from $GREETING_FROM, in $(pwd), as $(id -un))"\n', { mode: 0o755 });
  // Everything a layer can carry: xattrs, setuid, owners, hard links, FIFOs, devices, symlinks,
  // a sticky directory, an old mtime.
  const data = path.join(app, 'data');
  fs.mkdirSync(data);
  sh('setfattr', ['-n', 'user.test', '-v', 'hello', path.join(app, 'etc/app.conf')]);
  sh('setfattr', ['-n', 'trusted.test', '-v', 'tval', path.join(app, 'etc/app.conf')]);
  fs.writeFileSync(path.join(data, 'suid'), 's\n', { mode: 0o755 });
  fs.chmodSync(path.join(data, 'suid'), 0o4755);
  fs.writeFileSync(path.join(data, 'private'), 'p\n', { mode: 0o600 });
  fs.chownSync(path.join(data, 'private'), 1000, 1000);
  fs.linkSync(path.join(data, 'private'), path.join(data, 'hardlink'));
  fs.utimesSync(path.join(data, 'private'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
  sh('mkfifo', [path.join(data, 'fifo')]);
  sh('mknod', [path.join(data, 'null2'), 'c', '1', '3']);
  sh('mknod', [path.join(data, 'loop9'), 'b', '7', '9']);
  fs.symlinkSync('../etc/app.conf', path.join(data, 'rel'));
  fs.symlinkSync('/etc/app.conf', path.join(data, 'abs'));
  fs.mkdirSync(path.join(data, 'sticky'));
  fs.chmodSync(path.join(data, 'sticky'), 0o1777);
  sh('umoci', ['insert', '--image', `${layout}:a`, app, '/']);
  const srv = path.join(dir, 'srv');
  fs.mkdirSync(srv);
  fs.writeFileSync(path.join(srv, 'index.html'), '<h1>app</h1>\n');
  sh('umoci', ['insert', '--image', `${layout}:a`, '--opaque', srv, '/srv']);
  sh('umoci', ['insert', '--image', `${layout}:a`, '--whiteout', '/etc/issue']);
  sh('umoci', [
    'config',
    '--image',
    `${layout}:a`,
    '--config.cmd',
    '/usr/local/bin/hello',
    '--config.env',
    'GREETING_FROM=image',
    '--config.workingdir',
    '/srv',
    '--config.user',
    'user',
  ]);
  sh('umoci', ['tag', '--image', `${layout}:a`, 'b']);
  const extra = path.join(dir, 'extra');
  fs.mkdirSync(path.join(extra, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(extra, 'etc/b.txt'), 'only in b\n');
  sh('umoci', ['insert', '--image', `${layout}:b`, extra, '/']);
  sh('umoci', ['gc', '--layout', layout]);
  const archive = path.join(dir, 'busy-a.tar');
  sh('skopeo', ['copy', '--quiet', `oci:${layout}:a`, `docker-archive:${archive}:docker.io/test/busy:a`]);
  return { layout, archive };
}

let shared: { dir: string; fixture: Fixture } | undefined;

/**
 * The fixture, built once per test file (in its own temp dir, removed when the process
 * exits). Tests must not modify it: copy it first (copyLayout).
 */
export function fixture(): Fixture {
  if (!shared) {
    const dir = fs.mkdtempSync('/var/tmp/layerfs-test-image-fixture-');
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    shared = { dir, fixture: buildFixture(dir) };
  }
  return shared.fixture;
}

/** A private copy of an OCI layout (to damage it). */
export function copyLayout(from: string, to: string): string {
  execFileSync('cp', ['-a', from, to]);
  return to;
}

/** The manifest of tag `tag` in an OCI layout, and the paths of its blobs. */
export function readLayout(layout: string, tag: string): { manifest: { config: { digest: string }; layers: { digest: string; mediaType: string }[] }; blob: (d: string) => string } {
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!desc) throw new Error(`no tag ${tag} in ${layout}`);
  const blob = (d: string): string => path.join(layout, 'blobs', 'sha256', d.slice('sha256:'.length));
  return { manifest: JSON.parse(fs.readFileSync(blob(desc.digest), 'utf8')), blob };
}

/**
 * A one-image OCI layout made of the given uncompressed layer tarballs (bottom first) and a
 * minimal config, written by hand: for layers that umoci would refuse to build (hostile ones).
 */
export function layoutFromTars(dir: string, tars: string[], config: Record<string, unknown> = {}, diffIDs?: string[]): string {
  const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');
  fs.mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (b: Buffer): string => {
    const d = sha(b);
    fs.writeFileSync(path.join(dir, 'blobs', 'sha256', d.slice(7)), b);
    return d;
  };
  const layers = tars.map((t) => {
    const b = fs.readFileSync(t);
    return { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: put(b), size: b.length };
  });
  const cfg = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config, rootfs: { type: 'layers', diff_ids: diffIDs ?? layers.map((l) => l.digest) } }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: put(cfg), size: cfg.length },
      layers,
    }),
  );
  const md = put(manifest);
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: md, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }),
  );
  return dir;
}

/** GNU tar, as an argument list (cwd given). */
export async function gnuTar(cwd: string, args: string[]): Promise<void> {
  await runOk('tar', args, { cwd });
}
