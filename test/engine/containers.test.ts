// Containers that live: `run -d` and the commands docker users drive them with, against a real
// engine of the test's own (its own store), real mounts and real namespaces.

import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { processAlive } from '../../src/engine/mount.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { makeTmp } from '../helpers/mounts.ts';
import { testEngine, type TestEngine } from './_engine.ts';

/** A private engine whose containers live in a store of the test's own. */
function engine(t: ExecutionContext): TestEngine & { store: string } {
  const store = makeTmp(t, 'layerfs-test-store-');
  const e = testEngine(t);
  e.env.LAYERFS_STORE = store;
  // Whatever a failing test leaves running: removed before the engine stops.
  t.teardown(async () => {
    const ids = (await e.layerfs(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await e.layerfs(['rm', '-f', ...ids]);
  });
  return { ...e, store };
}

async function ok(e: TestEngine, args: string[]): Promise<string> {
  const r = await e.layerfs(args);
  if (r.code !== 0) throw new Error(`layerfs ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function until(what: string, f: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const inspect = async (e: TestEngine, ref: string) =>
  (JSON.parse(await ok(e, ['inspect', ref])) as { Id: string; State: { Status: string; Pid: number; ExitCode: number | null; RestartCount: number }; GraphDriver: { Data: { UpperDir: string } } }[])[0]!;

test('run -d, ps, logs, inspect; stop keeps the upper and start runs on it; rm removes it', async (t) => {
  const e = engine(t);
  const script = 'if [ -f /kept ]; then echo "again: $(cat /kept)"; else echo first > /kept; echo wrote; fi; echo to-stderr >&2; exec sleep 600';
  const id = (await ok(e, ['run', '-d', '--name', 'c1', '--lower', rootfs().lower, '--', '/bin/sh', '-c', script])).trim();
  t.regex(id, /^[0-9a-f]{64}$/, 'the full ID, as docker prints it');
  const ps = await ok(e, ['ps']);
  t.regex(ps, /^CONTAINER ID {3}IMAGE/);
  t.regex(ps, new RegExp(`\\n${id.slice(0, 12)} .*Up .* c1\\n`));
  t.is((await ok(e, ['ps', '-q'])).trim(), id.slice(0, 12));
  const json = (await ok(e, ['ps', '--format', 'json'])).trim().split('\n').map((l) => JSON.parse(l) as { Id: string; Names: string; State: string });
  t.deepEqual(json.map((x) => [x.Id, x.Names, x.State]), [[id, 'c1', 'running']]);
  await until('its output', async () => (await e.layerfs(['logs', 'c1'])).stdout === 'wrote\n');
  const logs = await e.layerfs(['logs', '-t', id.slice(0, 5)]);
  t.regex(logs.stdout, /^\d{4}-\d\d-\d\dT[\d:.]+Z wrote\n$/, 'by ID prefix, with times');
  t.is(logs.stderr.replace(/^\S+ /, ''), 'to-stderr\n', 'stderr stays stderr');
  const raw = fs.readFileSync(path.join(e.store, 'containers', id, 'log.json'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { stream: string });
  t.deepEqual(raw.map((r) => r.stream).sort(), ['stderr', 'stdout'], 'json-lines with the stream');
  const info = await inspect(e, 'c1');
  t.is(info.Id, id);
  t.is(info.State.Status, 'running');
  t.true(processAlive(info.State.Pid));
  t.is(fs.readFileSync(path.join(info.GraphDriver.Data.UpperDir, 'kept'), 'utf8'), 'first\n', 'what it wrote is in its upper');

  const stop = await e.layerfs(['stop', '-t', '1', 'c1']);
  t.is(stop.code, 0, stop.stderr);
  t.is(stop.stdout, 'c1\n');
  t.false(processAlive(info.State.Pid));
  const stopped = await inspect(e, 'c1');
  t.is(stopped.State.Status, 'exited');
  t.is(stopped.State.ExitCode, 137, 'sh as PID 1 ignores SIGTERM: SIGKILL after -t');
  t.regex(await ok(e, ['ps', '-a']), /Exited \(137\)/);
  t.is((await ok(e, ['ps'])).split('\n').length, 2, 'ps without -a: only the header');

  t.is((await ok(e, ['start', 'c1'])).trim(), 'c1');
  await until('the second run', async () => (await e.layerfs(['logs', 'c1'])).stdout === 'wrote\nagain: first\n');
  const tail = await e.layerfs(['logs', '--tail', '2', 'c1']);
  t.deepEqual([tail.stdout, tail.stderr], ['again: first\n', 'to-stderr\n'], 'the last 2 lines of both streams');

  const rm = await e.layerfs(['rm', 'c1']);
  t.is(rm.code, 1);
  t.regex(rm.stderr, /^layerfs rm: cannot remove container c1: it is running \(stop it first, or rm -f\)\n$/);
  t.is((await ok(e, ['rm', '-f', 'c1'])).trim(), 'c1');
  t.false(fs.existsSync(path.join(e.store, 'containers', id)), 'records and upper removed');
  t.is((await ok(e, ['ps', '-aq'])).trim(), '');
});

test('exec joins the running container under its rules; -u, -e, -w; errors as one line', async (t) => {
  const e = engine(t);
  await ok(e, ['run', '-d', '--name', 'ex', '--lower', rootfs().lower, '--', 'sleep', '600']);
  const pid = (await inspect(e, 'ex')).State.Pid;
  const ns = (p: number | 'self') => ['mnt', 'pid', 'uts', 'ipc', 'net'].map((n) => fs.readlinkSync(`/proc/${p}/ns/${n}`));
  const out = await e.layerfs(['exec', 'ex', 'sh', '-c', 'for n in mnt pid uts ipc net; do readlink /proc/self/ns/$n; done; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; cat /proc/1/cmdline | tr "\\0" " "']);
  t.is(out.code, 0, out.stderr);
  const lines = out.stdout.trim().split('\n');
  t.deepEqual(lines.slice(0, 5), ns(pid), "PID 1's namespaces");
  t.notDeepEqual(lines.slice(0, 5), ns('self'));
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  t.is(lines[5], status.split('\n').find((l) => l.startsWith('CapEff:'))!.replace(/\s+/, '\t'), 'the capabilities of PID 1');
  t.deepEqual(lines.slice(6, 8).map((l) => l.replace(/\s+/g, ' ')), ['NoNewPrivs: 1', 'Seccomp: 2']);
  t.is(lines[8]!.trim(), 'sleep 600', 'its PID 1 is the container\'s');
  t.is((await ok(e, ['exec', '-u', 'nobody', 'ex', 'id', '-u'])).trim(), '65534');
  const r = await e.layerfs(['exec', '-e', 'X=1', '-w', '/etc', 'ex', 'sh', '-c', 'echo "$X $(pwd)"; exit 3']);
  t.is(r.stdout, '1 /etc\n');
  t.is(r.code, 3, "CMD's exit status");
  const denied = await e.layerfs(['exec', 'ex', 'unshare', '-m', 'true']);
  t.not(denied.code, 0, 'the seccomp filter holds in exec too');
  const missing = await e.layerfs(['exec', 'ex', 'no-such-cmd']);
  t.is(missing.code, 127);
  t.is(missing.stderr, 'layerfs exec: no-such-cmd: executable file not found in $PATH\n');
  const nouser = await e.layerfs(['exec', '-u', 'ghost', 'ex', 'true']);
  t.is(nouser.code, 125);
  t.regex(nouser.stderr, /^layerfs exec: unable to find user ghost/);
  await ok(e, ['stop', '-t', '0', 'ex']);
  const stopped = await e.layerfs(['exec', 'ex', 'true']);
  t.is(stopped.code, 1);
  t.is(stopped.stderr, 'layerfs exec: container ex is not running\n');
  const unknown = await e.layerfs(['exec', 'nosuch', 'true']);
  t.is(unknown.code, 1);
  t.is(unknown.stderr, 'layerfs exec: no such container: nosuch\n');
});

test('bad input: unknown container, name clash, bad signal: one line each, nothing changed', async (t) => {
  const e = engine(t);
  await ok(e, ['run', '-d', '--name', 'dup', '--lower', rootfs().lower, '--', 'sleep', '600']);
  const clash = await e.layerfs(['run', '-d', '--name', 'dup', '--lower', rootfs().lower, '--', 'true']);
  t.is(clash.code, 125);
  t.regex(clash.stderr, /^layerfs run: the container name "dup" is already in use by container [0-9a-f]{12}: remove it or choose another name\n$/);
  for (const cmd of ['stop', 'start', 'kill', 'rm', 'inspect', 'logs', 'wait', 'restart']) {
    const r = await e.layerfs([cmd, 'nosuch']);
    t.is(r.code, 1, cmd);
    t.is(r.stderr, `layerfs ${cmd}: no such container: nosuch\n`, cmd);
  }
  const sig = await e.layerfs(['kill', '-s', 'NOPE', 'dup']);
  t.is(sig.code, 1);
  t.is(sig.stderr, 'layerfs kill: invalid signal: NOPE\n');
  const badName = await e.layerfs(['run', '-d', '--name', '-x', '--lower', rootfs().lower, '--', 'true']);
  t.is(badName.code, 125);
  t.is(badName.stderr.split('\n').length, 2, badName.stderr);
  const ps = (await ok(e, ['ps', '-a', '--format', 'json'])).trim().split('\n');
  t.is(ps.length, 1, 'only the first container');
  t.is((JSON.parse(ps[0]!) as { State: string }).State, 'running');
});

test('kill, wait, --rm, --restart=on-failure:2', async (t) => {
  const e = engine(t);
  // PID 1 ignores signals it has no handler for: this one handles TERM.
  await ok(e, ['run', '-d', '--name', 'k', '--lower', rootfs().lower, '--', 'sh', '-c', 'trap "exit 7" TERM; echo ready; while :; do sleep 0.1; done']);
  await until('its trap', async () => (await e.layerfs(['logs', 'k'])).stdout === 'ready\n');
  t.is((await ok(e, ['kill', '-s', 'TERM', 'k'])).trim(), 'k');
  t.is((await ok(e, ['wait', 'k'])).trim(), '7', 'its trap ran');

  const gone = (await ok(e, ['run', '-d', '--rm', '--lower', rootfs().lower, '--', 'sh', '-c', 'exit 4'])).trim();
  await until('--rm to remove it', async () => !fs.existsSync(path.join(e.store, 'containers', gone)));
  t.false((await ok(e, ['ps', '-aq', '--no-trunc'])).includes(gone));

  await ok(e, ['run', '-d', '--name', 'flaky', '--restart', 'on-failure:2', '--lower', rootfs().lower, '--', 'sh', '-c', 'echo run; exit 3']);
  await until('two restarts', async () => {
    const i = await inspect(e, 'flaky');
    return i.State.RestartCount === 2 && i.State.Status === 'exited';
  });
  await new Promise((r) => setTimeout(r, 1500)); // no third run after the last allowed one
  const i = await inspect(e, 'flaky');
  t.is(i.State.RestartCount, 2);
  t.is(i.State.ExitCode, 3);
  t.is((await ok(e, ['logs', 'flaky'])).split('\n').filter(Boolean).length, 3, 'the first run and two restarts');
});

test('kill -9 of the engine: its containers are exited (137) for the next engine, and start again on their upper', async (t) => {
  const e = engine(t);
  await ok(e, ['run', '-d', '--name', 'survivor', '--lower', rootfs().lower, '--', 'sh', '-c', 'echo $((1 + $(cat /n 2>/dev/null || echo 0))) > /n; cat /n; exec sleep 600']);
  await until('its first run', async () => (await e.layerfs(['logs', 'survivor'])).stdout === '1\n');
  const before = await inspect(e, 'survivor');
  const enginePid = e.pid()!;
  process.kill(enginePid, 'SIGKILL');
  await until('the engine to die', async () => !processAlive(enginePid));
  await until('its container to die with it', async () => !processAlive(before.State.Pid));
  const after = await inspect(e, 'survivor'); // starts a fresh engine
  t.not(e.pid(), enginePid);
  t.is(after.State.Status, 'exited');
  t.is(after.State.ExitCode, 137);
  t.regex(fs.readFileSync(path.join(e.dir, 'engine.log'), 'utf8'), /was running when its engine died: exited \(137\)/);
  await ok(e, ['start', 'survivor']);
  await until('its second run', async () => (await e.layerfs(['logs', 'survivor'])).stdout === '1\n2\n');
  t.is((await inspect(e, 'survivor')).State.Status, 'running');
});

test('a foreground run is a container while it runs: ps lists it, exec and stop reach it, its end removes it', async (t) => {
  const e = engine(t);
  const { spawn } = await import('node:child_process');
  const { layerfsBin } = await import('../helpers/mounts.ts');
  const fg = spawn(layerfsBin, ['run', '--name', 'fg', '--lower', rootfs().lower, '--', 'sh', '-c', 'echo up; trap "echo term; exit 9" TERM; while :; do sleep 0.1; done'], {
    env: { ...process.env, ...e.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  fg.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => fg.on('exit', (code) => r(code)));
  t.teardown(() => {
    if (fg.exitCode === null) fg.kill('SIGKILL');
  });
  await until('it to run', async () => out === 'up\n');
  await until('ps to list it', async () => /Up .* fg\n/.test(await ok(e, ['ps'])));
  const info = await inspect(e, 'fg');
  t.is(info.State.Status, 'running');
  t.true(processAlive(info.State.Pid));
  t.is((await ok(e, ['exec', 'fg', 'hostname'])).trim(), info.Id.slice(0, 12), "its host name is the short ID, as docker's");
  const other = await e.layerfs(['run', '--name', 'fg', '--lower', rootfs().lower, '--', 'true']);
  t.is(other.code, 125, 'the name is taken while it runs');
  t.regex(other.stderr, /the container name "fg" is already in use/);
  t.is((await ok(e, ['stop', '-t', '5', 'fg'])).trim(), 'fg');
  t.is(await exited, 9, "the foreground command's exit status is its CMD's");
  t.is(out, 'up\nterm\n', 'its output stayed the command\'s');
  t.is((await ok(e, ['ps', '-aq'])).trim(), '', 'removed at its end, as a foreground run always was');
});
