// Signals and every exit path: SIGTERM / SIGINT to the launcher reach CMD, SIGKILL follows after
// --stop-timeout, a launcher killed with SIGKILL takes the container along and its leftovers
// are reaped; -it gives an interactive terminal where Ctrl-C reaches the foreground process.

import test from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { layerfsBin } from '../helpers/mounts.ts';
import { launch, leftovers, processesMentioning, runIn, sandbox, waitFor } from '../helpers/launcher.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { isRoot } from './_helpers.ts';

const t0 = isRoot() ? test.serial : test.skip; // serial: each test starts real containers

/** Wait until nothing of the container is left but the engine (which serves on) and a tsx compiler. */
async function containerGone(sb: { dir: string }): Promise<void> {
  const others = (): string[] =>
    processesMentioning(sb.dir)
      .map((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
        } catch {
          return 'engine run'; // gone meanwhile
        }
      })
      .filter((c) => !c.includes('engine run') && !c.includes('esbuild --service')); // the engine; tsx's compiler
  try {
    await waitFor(() => others().length === 0, 20_000, 'the container to die');
  } catch {
    throw new Error(`still running: ${others().join(' | ')}`);
  }
}

function readyVolume(sb: { dir: string }): { vol: string; ready: () => boolean } {
  const vol = path.join(sb.dir, 'vol');
  fs.mkdirSync(vol, { recursive: true });
  return { vol, ready: () => fs.existsSync(path.join(vol, 'ready')) };
}

t0('SIGTERM to the launcher reaches CMD; its exit status is the launcher\'s; all cleaned up', async (t) => {
  const sb = sandbox(t);
  const { vol, ready } = readyVolume(sb);
  const l = launch(sb, ['--lower', rootfs().lower, '-v', `${vol}:/v`, '--', '/bin/sh', '-c', 'trap "echo got TERM; exit 7" TERM; touch /v/ready; sleep 300 & wait']);
  await waitFor(ready, 60_000, 'the container');
  l.child.kill('SIGTERM');
  const r = await l.result;
  t.is(r.code, 7);
  t.is(r.stdout, 'got TERM\n');
  t.deepEqual(leftovers(sb), []);
});

t0('SIGINT (Ctrl-C) to the launcher reaches CMD', async (t) => {
  const sb = sandbox(t);
  const { vol, ready } = readyVolume(sb);
  const l = launch(sb, ['--lower', rootfs().lower, '-v', `${vol}:/v`, '--', '/bin/sh', '-c', 'trap "echo got INT; exit 130" INT; touch /v/ready; sleep 300 & wait']);
  await waitFor(ready, 60_000, 'the container');
  l.child.kill('SIGINT');
  const r = await l.result;
  t.is(r.code, 130);
  t.is(r.stdout, 'got INT\n');
});

t0('a CMD that ignores SIGTERM is SIGKILLed after --stop-timeout: 137, all cleaned up', async (t) => {
  const sb = sandbox(t);
  const { vol, ready } = readyVolume(sb);
  const l = launch(sb, ['--lower', rootfs().lower, '--stop-timeout', '1', '-v', `${vol}:/v`, '--', '/bin/sh', '-c', 'touch /v/ready; sleep 300']);
  await waitFor(ready, 60_000, 'the container');
  const at = Date.now();
  l.child.kill('SIGTERM');
  const r = await l.result;
  t.is(r.code, 137);
  t.true(Date.now() - at < 30_000);
  t.deepEqual(leftovers(sb), []);
});

t0('CMD killed from the host: 128+9', async (t) => {
  const sb = sandbox(t);
  const { vol, ready } = readyVolume(sb);
  const l = launch(sb, ['--lower', rootfs().lower, '-v', `${vol}:/v`, '--', '/bin/sh', '-c', 'touch /v/ready; sleep 300; true']);
  await waitFor(ready, 60_000, 'the container');
  const cmd = processesMentioning(sb.dir).find((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('/bin/sh\0-c\0touch'));
  t.truthy(cmd);
  process.kill(cmd!, 'SIGKILL');
  const r = await l.result;
  t.is(r.code, 137);
  t.is(r.stderr, '');
});

t0('SIGTERM while still setting up: nothing is left behind', async (t) => {
  const sb = sandbox(t);
  const l = launch(sb, ['--lower', rootfs().lower, '--', '/bin/sleep', '300']);
  // As soon as the run record exists (before or during the mount).
  await waitFor(() => fs.existsSync(sb.runDir) && fs.readdirSync(sb.runDir).length > 0, 60_000, 'the run record');
  l.child.kill('SIGTERM');
  const r = await l.result;
  t.true(r.code === 143 || r.code === 137, `status ${r.code}: ${r.stderr}`);
  t.deepEqual(leftovers(sb), []);
});

t0('launcher SIGKILLed: the container dies with it; `layerfs run --cleanup` reaps the rest', async (t) => {
  const sb = sandbox(t);
  const { vol, ready } = readyVolume(sb);
  const l = launch(sb, ['--lower', rootfs().lower, '--pids-limit', '20', '-v', `${vol}:/v`, '--', '/bin/sh', '-c', 'sleep 300 & sleep 300 & touch /v/ready; wait']);
  await waitFor(ready, 60_000, 'the container');
  const launcherPid = l.child.pid!;
  l.child.kill('SIGKILL');
  await l.result;
  // Parent-death signals: unshare, then CMD (PID 1) and so the whole PID namespace.
  await containerGone(sb);
  t.false(fs.existsSync(`/proc/${launcherPid}`));
  const before = leftovers(sb);
  t.true(before.some((x) => x.startsWith('mount ')), 'the mount is still there (nothing can run on SIGKILL)');
  t.true(before.some((x) => x.startsWith('cgroup ')));
  const c = spawn(layerfsBin, ['run', '--cleanup'], { env: sb.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise((r) => c.on('close', r));
  t.is(code, 0, err);
  t.is(err, 'layerfs run: reaped 1 leftover run\n');
  t.deepEqual(leftovers(sb), []);
});

t0('the next run reaps what a SIGKILLed launcher left', async (t) => {
  const sb = sandbox(t);
  const { vol, ready } = readyVolume(sb);
  const l = launch(sb, ['--lower', rootfs().lower, '-v', `${vol}:/v`, '--', '/bin/sh', '-c', 'touch /v/ready; sleep 300']);
  await waitFor(ready, 60_000, 'the container');
  l.child.kill('SIGKILL');
  await l.result;
  await containerGone(sb);
  const r = await runIn(sb, ['--lower', rootfs().lower, '--', '/bin/true']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(leftovers(sb), []);
});

function script(sb: { env: NodeJS.ProcessEnv }, command: string, input: (write: (s: string) => void, output: () => string) => Promise<void>): Promise<{ code: number | null; out: string }> {
  // util-linux script(1) gives the launcher a terminal, as a person at a terminal would.
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...sb.env, TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<number | null>((r) => child.on('close', r));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  return input((s) => child.stdin!.write(s), () => out).then(async () => {
    const code = await done;
    clearTimeout(timer);
    child.stdin!.destroy();
    return { code, out };
  });
}

t0('-it: an interactive terminal of the container\'s own; Ctrl-C reaches the foreground process', async (t) => {
  const sb = sandbox(t);
  const cmd = `${layerfsBin} run -it --lower ${rootfs().lower} -e SANDBOX=${sb.dir} -- /bin/sh`;
  const r = await script(sb, cmd, async (write, output) => {
    await waitFor(() => /# $/.test(output().replace(/\x1b\[6n/g, '')), 60_000, 'the prompt');
    write('tty; echo "T=$TERM"; stty size\r');
    await waitFor(() => /\d+ \d+\r*\n/.test(output()), 20_000, 'stty').catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(output())}`);
    });
    write('sleep 300\r');
    await new Promise((res) => setTimeout(res, 2000));
    write('\x03'); // Ctrl-C: SIGINT to the foreground process group: sleep dies, the shell stays
    await waitFor(() => /\^C[\s\S]*# /.test(output()), 20_000, 'the prompt after Ctrl-C');
    write('echo "sleep ended $?"\r');
    await waitFor(() => /sleep ended 130/.test(output()), 20_000, 'sleep to be interrupted').catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(output())}`);
    });
    write('exit 5\r');
  });
  t.is(r.code, 5, r.out);
  t.regex(r.out, /\/dev\/pts\/0\r*\n/, 'its own devpts instance');
  t.regex(r.out, /T=xterm/);
  t.regex(r.out, /sleep ended 130/);
});
