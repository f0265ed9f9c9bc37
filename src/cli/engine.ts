// The `engine` commands and the client side of mount/umount: the Node CLI's way to the engine
// (src/engine/client.ts). Forwarded command lines run in the engine as src/cli/remote.ts says.

import type { Args } from './args.ts';
import { UsageError } from './args.ts';
import type { CommandContext } from './commands.ts';

export async function engineRun(a: Args, ctx: CommandContext): Promise<number> {
  const fdText = a.str('notify-fd');
  let notifyFd: number | undefined;
  if (fdText !== undefined) {
    if (!/^[0-9]{1,4}$/.test(fdText)) throw new UsageError(`layerfs engine run: bad --notify-fd '${fdText}'`);
    notifyFd = Number(fdText);
  }
  const { runEngine } = await import('../engine/server.ts');
  const { runForwarded } = await import('./remote.ts');
  const { Containers } = await import('../launcher/container.ts');
  return runEngine({
    notifyFd,
    logToStderr: a.flag('log-stderr'),
    cli: (argv, cwd, api) => runForwarded(argv, cwd, api, ctx.route),
    containers: (deps) => new Containers(deps),
  });
}

export async function engineStart(): Promise<number> {
  const { ensureEngine } = await import('../engine/client.ts');
  await ensureEngine();
  return 0;
}

export async function engineStop(a: Args): Promise<number> {
  const { call, engineRunning } = await import('../engine/client.ts');
  const { enginePaths } = await import('../engine/paths.ts');
  const { processAlive } = await import('../engine/mount.ts');
  if (!(await engineRunning())) {
    process.stderr.write('layerfs engine: no engine runs\n');
    return 0;
  }
  const v = await call('GET', '/v1/version');
  const pid = typeof v.body?.pid === 'number' ? v.body.pid : 0;
  const r = await call('POST', `/v1/engine/stop${a.flag('force') ? '?force=true' : ''}`);
  if (r.http !== 202) {
    process.stderr.write(`${String(r.body?.message ?? `layerfs engine: the engine answered HTTP ${r.http}`)}\n`);
    return typeof r.body?.status === 'number' ? r.body.status : 1;
  }
  const until = Date.now() + 15_000;
  while (pid && processAlive(pid) && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
  if (pid && processAlive(pid)) {
    process.stderr.write(`layerfs engine: the engine (pid ${pid}) did not exit within 15 s (see ${enginePaths().log})\n`);
    return 1;
  }
  return 0;
}

export async function engineStatus(a: Args): Promise<number> {
  const { call, engineRunning } = await import('../engine/client.ts');
  const { enginePaths } = await import('../engine/paths.ts');
  if (!(await engineRunning())) {
    if (a.flag('json')) process.stdout.write(JSON.stringify({ running: false, socket: enginePaths().socket }) + '\n');
    else process.stdout.write(`no engine runs (socket ${enginePaths().socket})\n`);
    return 3;
  }
  const v = (await call('GET', '/v1/version')).body ?? {};
  const mounts = ((await call('GET', '/v1/mounts')).body ?? []) as unknown as { mountpoint: string }[];
  if (a.flag('json')) {
    process.stdout.write(JSON.stringify({ running: true, socket: enginePaths().socket, ...v, mounts }) + '\n');
    return 0;
  }
  process.stdout.write(`engine ${String(v.version)} runs (pid ${String(v.pid)}, since ${String(v.started)}) on ${enginePaths().socket}\n`);
  process.stdout.write(`${mounts.length} mount${mounts.length === 1 ? '' : 's'}${mounts.length ? ':' : ''}\n`);
  for (const m of mounts) process.stdout.write(`  ${m.mountpoint}\n`);
  return 0;
}

/** `layerfs umount`: through the engine when one runs (it may serve the mount), else here. */
export async function cmdUmount(a: Args): Promise<number> {
  const { engineRunning, forward } = await import('../engine/client.ts');
  const mp = a.positionals[0]!;
  if (await engineRunning()) return forward(['umount', ...(a.flag('lazy') ? ['-l'] : []), '--', mp]);
  await (await import('../engine/mount.ts')).unmount(mp, { lazy: a.flag('lazy') });
  return 0;
}
