// --entrypoint and --env-file in real containers, with and without an image of the store:
// docker's rules for combining them with the image's Entrypoint, Cmd and Env. Root only.

import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runOk } from '../helpers/exec.ts';
import { leftovers, runIn, sandbox, type Result, type Sandbox } from '../helpers/launcher.ts';
import { repoRoot } from '../helpers/mounts.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { layoutFromTars, lfsOk, storeEnv, type StoreEnv } from '../image/_helpers.ts';
import { isRoot } from './_helpers.ts';

const t0 = isRoot() ? test.serial : test.skip; // serial: each test starts real containers

interface Ctx {
  sb: Sandbox;
  se: StoreEnv;
}

/**
 * A store with image ep:1: the busybox base as its one layer, Entrypoint
 * ["/bin/echo", "from-entrypoint"], Cmd ["default-arg"], Env FROM_IMAGE=1 and B=image.
 */
async function withImage(t: ExecutionContext): Promise<Ctx> {
  const sb = sandbox(t);
  const se = storeEnv(t);
  const tar = path.join(se.dir, 'base.tar');
  await runOk('tar', ['-cf', tar, '-C', rootfs().base, '.']);
  const layout = layoutFromTars(path.join(se.dir, 'oci'), [tar], {
    Entrypoint: ['/bin/echo', 'from-entrypoint'],
    Cmd: ['default-arg'],
    Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'FROM_IMAGE=1', 'B=image'],
  });
  await lfsOk(se, ['image', 'import', `oci:${layout}`, '--name', 'ep:1']);
  return { sb, se };
}

/** `layerfs run OPTS... IMAGE CMD...` (docker's form), tagged for the sandbox's leftover checks. */
function runImage(c: Ctx, opts: string[], cmd: string[] = []): Promise<Result> {
  return runIn(c.sb, [...opts, '-e', `SANDBOX=${c.sb.dir}`, 'ep:1', ...cmd], { env: c.se.env });
}

t0('--entrypoint without an image: the program, the command its arguments', async (t) => {
  const sb = sandbox(t);
  const r = await runIn(sb, ['--lower', rootfs().lower, '--entrypoint', '/bin/echo', '--', 'a', 'b']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'a b\n');
  const alone = await runIn(sb, ['--lower', rootfs().lower, '--entrypoint', '/bin/pwd', '--']);
  t.is(alone.stdout, '/\n');
  const cleared = await runIn(sb, ['--lower', rootfs().lower, '--entrypoint', '', '--', '/bin/echo', 'c']);
  t.is(cleared.stdout, 'c\n');
});

t0("--entrypoint with an image: replaces the Entrypoint and drops the image's Cmd; '' clears it", async (t) => {
  const c = await withImage(t);
  const plain = await runImage(c, []);
  t.is(plain.code, 0, plain.stderr);
  t.is(plain.stdout, 'from-entrypoint default-arg\n', 'the image alone');
  t.is((await runImage(c, [], ['x'])).stdout, 'from-entrypoint x\n');
  const ep = await runImage(c, ['--entrypoint', '/bin/echo']);
  t.is(ep.code, 0, ep.stderr);
  t.is(ep.stdout, '\n', 'the Cmd is not used once --entrypoint is given (docker)');
  t.is((await runImage(c, ['--entrypoint', '/bin/echo'], ['x', 'y'])).stdout, 'x y\n');
  t.is((await runImage(c, ['--entrypoint=/bin/sh'], ['-c', 'echo "$FROM_IMAGE $B"'])).stdout, '1 image\n');
  const cleared = await runImage(c, ['--entrypoint', ''], ['/bin/echo', 'z']);
  t.is(cleared.code, 0, cleared.stderr);
  t.is(cleared.stdout, 'z\n');
  const nothing = await runImage(c, ['--entrypoint', '']);
  t.is(nothing.code, 125);
  t.is(nothing.stderr, "layerfs run: --entrypoint '' clears the Entrypoint and Cmd of image 'ep:1': give a command (layerfs run --entrypoint '' ep:1 CMD)\n");
  t.deepEqual(leftovers(c.sb), []);
});

// Node 20 takes an `--env-file` anywhere in its command line before a `--` for itself (it loads
// the file into the launcher's own environment, or exits with status 9 when it is missing):
// bin/layerfs therefore starts `node -- bin/layerfs.mjs`. These tests start it that way
// themselves; the last one goes through bin/layerfs.

/** `node -- bin/layerfs.mjs run ARGS` as runIn runs bin/layerfs (run id, sandbox tag). */
function runViaNode(sb: Sandbox, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  const id = sb.nextId();
  const full = ['-e', `SANDBOX=${sb.dir}`, ...args];
  const child = spawn(process.execPath, ['--', path.join(repoRoot, 'bin', 'layerfs.mjs'), 'run', ...full], {
    env: { ...sb.env, LAYERFS_RUN_ID: id, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut: false });
    });
  });
}

const ENV_SHOW = 'env | grep -E "^(A|B|C|D|FROM_HOST|FROM_IMAGE|NOT_ON_HOST|SPACED)=" | sort';

t0('--env-file: KEY=VALUE as written, bare KEY from the launcher, comments skipped; then -e wins', async (t) => {
  const sb = sandbox(t);
  const f1 = path.join(sb.dir, 'one.env');
  fs.writeFileSync(f1, '# settings\n\nA=from file one\n  SPACED=  kept  \nFROM_HOST\nNOT_ON_HOST\nB="quotes stay"\n');
  const f2 = path.join(sb.dir, 'two.env');
  fs.writeFileSync(f2, 'A=from file two\nC=3\n');
  const r = await runViaNode(sb, ['--lower', rootfs().lower, '-e', 'C=cli', '--env-file', f1, '--env-file', f2, '--', '/bin/sh', '-c', ENV_SHOW], { FROM_HOST: 'host value' });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'A=from file two\nB="quotes stay"\nC=cli\nFROM_HOST=host value\nSPACED=  kept  \n');
  t.deepEqual(leftovers(sb), []);
});

t0("--env-file with an image: the image's Env, then the files, then -e", async (t) => {
  const c = await withImage(t);
  const f = path.join(c.sb.dir, 'img.env');
  fs.writeFileSync(f, 'B=file\nD=file\n');
  const r = await runViaNode(c.sb, ['--env-file', f, '-e', 'D=cli', '--entrypoint', '/bin/sh', 'ep:1', '--', '-c', ENV_SHOW], c.se.env);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'B=file\nD=cli\nFROM_IMAGE=1\n');
});

t0('--env-file that cannot be read: one line, exit status 125, nothing started', async (t) => {
  const sb = sandbox(t);
  const missing = path.join(sb.dir, 'missing.env');
  const r = await runViaNode(sb, ['--lower', rootfs().lower, '--env-file', missing, '-v', `${sb.dir}:/host`, '--', '/bin/sh', '-c', 'touch /host/ran']);
  t.is(r.code, 125);
  t.is(r.stderr, `layerfs run: --env-file ${missing}: no such file\n`);
  const bad = path.join(sb.dir, 'bad.env');
  fs.writeFileSync(bad, 'OK=1\nNOT OK=2\n');
  const b = await runViaNode(sb, ['--lower', rootfs().lower, '--env-file', bad, '-v', `${sb.dir}:/host`, '--', '/bin/sh', '-c', 'touch /host/ran']);
  t.is(b.code, 125);
  t.is(b.stderr, `layerfs run: --env-file ${bad} line 2: variable 'NOT OK' contains blanks\n`);
  t.false(fs.existsSync(path.join(sb.dir, 'ran')));
  t.deepEqual(leftovers(sb), []);
});

// bin/layerfs (and build/Release/layerfs_client) start node with a `--` before the script:
// otherwise Node 20 handles `--env-file` itself (see above).
(isRoot() ? test.serial : test.skip)('--env-file through bin/layerfs reaches the launcher', async (t) => {
  const sb = sandbox(t);
  const missing = path.join(sb.dir, 'missing.env');
  const r = await runIn(sb, ['--lower', rootfs().lower, '--env-file', missing, '--', 'true']);
  t.is(r.stderr, `layerfs run: --env-file ${missing}: no such file\n`);
  t.is(r.code, 125);
  const f = path.join(sb.dir, 'ok.env');
  fs.writeFileSync(f, 'A=1\n');
  const ok = await runIn(sb, ['--lower', rootfs().lower, '--env-file', f, '--', '/bin/sh', '-c', 'echo $A'], { env: { A: 'launcher' } });
  t.is(ok.stdout, '1\n');
});
