// The commands the engine runs for a client that forwarded its command line (POST /v1/cli):
// the mount forms and umount, the ones on podman's and mount(8)'s hot path. Everything else
// answers {fallback: true}: the client then runs the command itself (native/client/client.c
// execs the Node CLI). Paths are resolved against the client's working directory, and output
// and exit status are what the same command prints and returns when run directly.

import * as path from 'node:path';
import { parseMountArgs, validateMountConfig } from '../config.ts';
import type { EngineApi } from '../engine/server.ts';
import { resolveMountpoint } from '../engine/mount.ts';
import { UsageError, parseCommandArgs } from './args.ts';
import { failureOf } from './failure.ts';
import type { Route } from './main.ts';
import { mountWantsHelp } from './mount.ts';
import { CONTAINER_WORDS, runContainerCommand } from './containers.ts';

type Answer = { fallback: true } | { status: number; stdout: string; stderr: string };

const FALLBACK: Answer = { fallback: true };

/** `route`: the command layer's router (src/cli/main.ts), handed over by `engine run`. */
export async function runForwarded(argv: string[], cwd: string, engine: EngineApi, route: (argv: readonly string[]) => Route): Promise<Answer> {
  let r;
  try {
    r = route(argv);
  } catch {
    return FALLBACK;
  }
  if (r.kind !== 'command') return FALLBACK;
  try {
    if (r.cmd.name === 'mount') {
      if (mountWantsHelp(r.argv)) return FALLBACK;
      const req = parseMountArgs([...r.argv]);
      if (req.foreground || req.debug) return FALLBACK; // served by the CLI's own process
      const cfg = await validateMountConfig(req, { cwd });
      await engine.mount(cfg);
      return { status: 0, stdout: '', stderr: '' };
    }
    if (CONTAINER_WORDS.has(r.cmd.name) && engine.containers) {
      return (await runContainerCommand(r.cmd.name, r.argv, engine.containers)) ?? FALLBACK;
    }
    if (r.cmd.name === 'run' && engine.containers) {
      const { detachedRunInEngine } = await import('../launcher/detached.ts');
      return (await detachedRunInEngine(r.argv, cwd, engine.containers)) ?? FALLBACK;
    }
    if (r.cmd.name === 'umount' && r.cmd.kind === 'parsed') {
      const p = parseCommandArgs('umount', r.argv, r.cmd.options);
      if (p.help) return FALLBACK;
      const pos = p.args.positionals;
      if (pos.length !== 1) throw new UsageError(`layerfs umount: ${r.cmd.args.error}`);
      await engine.unmount(resolveMountpoint(path.resolve(cwd, pos[0]!)), p.args.flag('lazy'));
      return { status: 0, stdout: '', stderr: '' };
    }
  } catch (e) {
    const f = await failureOf(e);
    return { status: f.status, stdout: '', stderr: f.text };
  }
  return FALLBACK;
}
