// layerfs run IMAGE: the image's layers as the root and its config's defaults (Entrypoint/Cmd,
// Env, WorkingDir, User), which the command line overrides as docker's does.

import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run, runOk } from '../helpers/exec.ts';
import { layerfsBin } from '../helpers/mounts.ts';
import { leftovers, runIn, sandbox, type Sandbox } from '../helpers/launcher.ts';
import { copyLayout, fixture, isRoot, layoutFromTars, lfsOk, storeEnv, type StoreEnv } from './_helpers.ts';

const t0 = isRoot() ? test : test.skip;

interface Ctx {
  sb: Sandbox;
  se: StoreEnv;
}

/** A sandbox for the launcher and a store holding busy:a (the fixture's tag a). */
async function setup(t: ExecutionContext): Promise<Ctx> {
  const sb = sandbox(t);
  const se = storeEnv(t);
  await lfsOk(se, ['image', 'import', `oci:${fixture().layout}:a`, '--name', 'busy:a']);
  return { sb, se };
}

/** `layerfs run [OPTS] IMAGE [CMD...]` (docker's form, no '--'), tagged for the sandbox's leftover checks. */
function runImage(c: Ctx, opts: string[], image: string, cmd: string[] = []) {
  return runIn(c.sb, [...opts, '-e', `SANDBOX=${c.sb.dir}`, image, ...cmd], { env: c.se.env });
}

t0("runs the config's Cmd as its User, in its WorkingDir, with its Env", async (t) => {
  const c = await setup(t);
  const r = await runImage(c, [], 'busy:a');
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'hello from the app layer (from image, in /srv, as user)\n');
  t.is(r.stderr, '');
});

t0('CMD replaces Cmd, -e adds to Env, -w and -u override WorkingDir and User', async (t) => {
  const c = await setup(t);
  const r = await runImage(c, ['-e', 'EXTRA=1', '-e', 'GREETING_FROM=cli', '-w', '/tmp', '-u', '0'], 'busy:a', [
    '/bin/sh',
    '-c',
    'echo "$GREETING_FROM $EXTRA"; pwd; id -u; id -g; cat /etc/motd; ls /srv; test -e /etc/issue || echo no-issue',
  ]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'cli 1\n/tmp\n0\n0\napp layer motd\nindex.html\nno-issue\n');
});

t0("the IMAGE -- CMD form, and an image's uid resolved from its /etc/passwd", async (t) => {
  const c = await setup(t);
  const r = await run(layerfsBin, ['run', '-e', `SANDBOX=${c.sb.dir}`, 'busy:a', '--', '/bin/sh', '-c', 'id -u; id -g; echo $HOME'], {
    env: { ...c.sb.env, ...c.se.env },
  });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.toString(), '1000\n1000\n/home/user\n');
});

t0('Entrypoint: CMD arguments replace Cmd after it', async (t) => {
  const c = await setup(t);
  const layout = copyLayout(fixture().layout, path.join(c.se.dir, 'ep'));
  await runOk('umoci', ['config', '--image', `${layout}:a`, '--tag', 'ep', '--config.entrypoint', '/bin/echo', '--config.entrypoint', 'from-entrypoint', '--config.cmd', 'default-arg']);
  await lfsOk(c.se, ['image', 'import', `oci:${layout}:ep`, '--name', 'ep:1']);
  const a = await runImage(c, [], 'ep:1');
  t.is(a.code, 0, a.stderr);
  t.is(a.stdout, 'from-entrypoint default-arg\n');
  const b = await runImage(c, [], 'ep:1', ['one', 'two']);
  t.is(b.stdout, 'from-entrypoint one two\n');
});

t0('an image from a docker-archive runs the same', async (t) => {
  const c = await setup(t);
  await lfsOk(c.se, ['image', 'import', `docker-archive:${fixture().archive}`, '--name', 'da:1']);
  const r = await runImage(c, [], 'da:1');
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'hello from the app layer (from image, in /srv, as user)\n');
});

t0('--lower still takes the first argument as the command, not as an image', async (t) => {
  const c = await setup(t);
  const rec = JSON.parse(fs.readFileSync(path.join(c.se.store, 'images', 'busy%3Aa.json'), 'utf8')) as { layers: { diffID: string }[] };
  const lower = rec.layers.map((l) => path.join(c.se.store, 'layers', l.diffID.slice(7), 'root')).reverse().join(':');
  const r = await runIn(c.sb, ['--lower', lower, '-e', `SANDBOX=${c.sb.dir}`, '/bin/cat', '/etc/motd'], { env: c.se.env });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'app layer motd\n');
});

const bad: [string, (c: Ctx) => Promise<string>, RegExp][] = [
  ['an unknown image', async () => 'nope:1', /^layerfs run: missing --lower A:B:C \(or --rootfs DIR\), and 'nope:1' is not an image in the store \(see 'layerfs image ls'\)$/],
  [
    'an image with neither Entrypoint nor Cmd',
    async (c) => {
      const layout = copyLayout(fixture().layout, path.join(c.se.dir, 'nocmd'));
      await runOk('umoci', ['config', '--image', `${layout}:a`, '--tag', 'nocmd', '--clear', 'config.cmd']);
      await lfsOk(c.se, ['image', 'import', `oci:${layout}:nocmd`, '--name', 'nocmd:1']);
      return 'nocmd:1';
    },
    /^layerfs run: image 'nocmd:1' has no Entrypoint or Cmd: give a command \(layerfs run nocmd:1 -- CMD\)$/,
  ],
  [
    'an image whose User is not in its /etc/passwd',
    async (c) => {
      const layout = copyLayout(fixture().layout, path.join(c.se.dir, 'ghost'));
      await runOk('umoci', ['config', '--image', `${layout}:a`, '--tag', 'ghost', '--config.user', 'ghost']);
      await lfsOk(c.se, ['image', 'import', `oci:${layout}:ghost`, '--name', 'ghost:1']);
      return 'ghost:1';
    },
    /^layerfs run: unable to find user 'ghost' of the image: no matching entry in the container's \/etc\/passwd$/,
  ],
  [
    'an image with a relative WorkingDir',
    async (c) => {
      const src = path.join(c.se.dir, 'src');
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, 'f'), '');
      await runOk('tar', ['-cf', '../l.tar', 'f'], { cwd: src });
      const layout = layoutFromTars(path.join(c.se.dir, 'rel'), [path.join(c.se.dir, 'l.tar')], { Cmd: ['/f'], WorkingDir: 'srv' });
      await lfsOk(c.se, ['image', 'import', `oci:${layout}`, '--name', 'rel:1']);
      return 'rel:1';
    },
    /^layerfs run: image 'rel:1': WorkingDir 'srv' is not an absolute path$/,
  ],
];

for (const [name, image, re] of bad) {
  t0(`bad input: ${name}`, async (t) => {
    const c = await setup(t);
    const r = await runImage(c, [], await image(c));
    t.is(r.code, 125, r.stderr);
    t.is(r.stdout, '');
    t.is(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    t.regex(r.stderr.trimEnd(), re);
    t.deepEqual(leftovers(c.sb), []);
  });
}
