// `layerfs run -d`: a container of the engine (./container.ts), created and started through it.
// The engine answers a forwarded `run -d` itself (detachedRunInEngine) unless the arguments need
// the caller's environment (-e KEY, --env-file with a bare KEY): then the Node CLI sends its
// environment along (runDetached).

import type { ContainerApi } from '../engine/containers/routes.ts';
import { ContainerError } from '../engine/containers/store.ts';
import { isStoredImage } from './image.ts';
import { parseRunArgs, RunError } from './options.ts';
import type { RuntimeInfo } from './run.ts';

type Answer = { status: number; stdout: string; stderr: string };

/** Parse run's arguments as if in `cwd` (relative --env-file paths; parsing is synchronous). */
export function inDir<T>(cwd: string, f: () => T): T {
  const old = process.cwd();
  try {
    process.chdir(cwd);
  } catch (e) {
    throw new ContainerError(`the working directory ${cwd}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 400);
  }
  try {
    return f();
  } finally {
    process.chdir(old);
  }
}

/** This process' environment, for -e KEY and --env-file's bare KEYs (the engine has its own). */
function callerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return env;
}

/** The engine's one line for a refused request, without its `layerfs: ` (run says `layerfs run: `). */
function messageOf(a: { http: number; body: Record<string, unknown> | null }): string {
  return String(a.body?.message ?? `the engine answered HTTP ${a.http}`).replace(/^layerfs: /, '');
}

async function createAndStart(api: ContainerApi, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Answer> {
  let id: string;
  try {
    id = api.create([...args], cwd, env).id;
  } catch (e) {
    if (e instanceof ContainerError) return { status: 125, stdout: '', stderr: `layerfs run: ${e.message}\n` };
    throw e;
  }
  try {
    // docker: a container that fails to start stays, unless --rm (the engine then removed it).
    await api.start(id);
  } catch (e) {
    if (!(e instanceof ContainerError)) throw e;
    return { status: 125, stdout: '', stderr: `layerfs run: ${e.message}\n` };
  }
  return { status: 0, stdout: `${id}\n`, stderr: '' };
}

/** In the engine: `run -d` of a forwarded command line; null when the Node CLI must do it. */
export async function detachedRunInEngine(args: readonly string[], cwd: string, api: ContainerApi): Promise<Answer | null> {
  let needsEnv = false;
  const env = new Proxy({} as NodeJS.ProcessEnv, {
    get: () => {
      needsEnv = true;
      return undefined;
    },
  });
  let detach: boolean;
  try {
    detach = inDir(cwd, () => parseRunArgs(args, env, (n) => isStoredImage(n)).detach);
  } catch (e) {
    if (e instanceof RunError || e instanceof ContainerError) return null; // the Node CLI reports it as run does
    throw e;
  }
  if (!detach || needsEnv) return null;
  return createAndStart(api, args, cwd, {});
}

/**
 * A foreground `layerfs run ARGS` as a container of the engine while it runs: the record
 * (named, listed), then attach() once CMD runs, remove() at its end. Its output, signals and
 * exit status stay this command's. Throws the engine's refusal of the name (in use) as run's
 * error; without an engine it may talk to, or a store it can keep records in, null: the run
 * goes on unlisted, as before.
 */
export async function registerForeground(args: readonly string[], image?: string): Promise<{ id: string; attach(rt: RuntimeInfo): Promise<void>; remove(): Promise<void> } | null> {
  const client = await import('../engine/client.ts');
  const env = callerEnv();
  let made: Awaited<ReturnType<typeof client.call>>;
  try {
    await client.ensureEngine();
    made = await client.call('POST', '/v1/containers', { args, cwd: process.cwd(), env, attached: process.pid, ...(image !== undefined ? { image } : {}) });
  } catch {
    // No engine this user may talk to (a --rootfs run needs none): the run goes on, unlisted.
    return null;
  }
  if (made.http === 409) throw new RunError(`layerfs run: ${messageOf(made)}`);
  if (made.http !== 201) return null; // the engine cannot keep a record (its store): unlisted, as before
  const id = String(made.body?.Id);
  return {
    id,
    attach: async (rt) => {
      await client.call('POST', `/v1/containers/${id}/attach`, { runtime: rt }).catch(() => undefined);
    },
    remove: async () => {
      await client.call('DELETE', `/v1/containers/${id}?force=true`).catch(() => undefined);
    },
  };
}

/** In the Node CLI: `run -d ARGS` through the engine's API, with this process' environment. */
export async function runDetached(args: readonly string[]): Promise<number> {
  const client = await import('../engine/client.ts');
  await client.ensureEngine();
  const made = await client.call('POST', '/v1/containers', { args, cwd: process.cwd(), env: callerEnv() });
  if (made.http !== 201) {
    process.stderr.write(`layerfs run: ${messageOf(made)}\n`);
    return 125;
  }
  const id = String(made.body?.Id);
  // A failed start leaves the container (docker's rule), unless --rm: the engine removed it.
  const started = await client.call('POST', `/v1/containers/${id}/start`);
  if (started.http !== 204) {
    process.stderr.write(`layerfs run: ${messageOf(started)}\n`);
    return 125;
  }
  process.stdout.write(`${id}\n`);
  return 0;
}
