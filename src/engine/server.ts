// The engine: one long-running process per user that serves every layerfs mount of that user
// (./mounts.ts) and answers the API (./api.ts) on D/engine.sock (./paths.ts). `layerfs engine
// run` runs it in the foreground (systemd's unit does); any command that needs it starts it in
// the background (./client.ts). One engine per directory: it holds D/engine.lock.
//
// Failure model. A handler of one mount that throws answers EIO to that request only (the FUSE
// session catches it); a request that never finishes keeps only its own caller waiting. A mount
// whose layers sit on a filesystem that can hang (another FUSE mount, NFS...) would block the
// whole process in a system call, so it is served apart (see mounts.ts). If the engine dies,
// its mounts die with it (ENOTCONN); the next engine detaches them (recoverDead).

import { chmodSync, closeSync, constants, mkdirSync, openSync, readFileSync, rmSync, writeSync, ftruncateSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { MountConfig } from '../config.ts';
import { log, setLogTarget } from '../log.ts';
import { packageVersion, ROOT } from '../root.ts';
import * as sys from '../sys/index.ts';
import { API_VERSION, ApiError, bool, dispatch, str, strList, type Route } from './api.ts';
import { UserError } from './mount.ts';
import { codeId } from './isolate.ts';
import { MountTable, recoverDead } from './mounts.ts';
import { containerRoutes, type ContainerApi } from './containers/routes.ts';
import { enginePaths } from './paths.ts';

/** What the engine does with a command line a client forwards (POST /v1/cli): src/cli/remote.ts. */
export type CliHandler = (
  argv: string[],
  cwd: string,
  engine: EngineApi,
) => Promise<{ fallback: true } | { status: number; stdout: string; stderr: string }>;

/** What the engine offers the command layer it runs forwarded commands with. */
export interface EngineApi {
  mount(cfg: MountConfig): Promise<unknown>;
  unmount(mountpoint: string, lazy: boolean): Promise<void>;
  /** Its containers (absent in an engine without them: tests of the routes alone). */
  containers?: ContainerApi;
}

/** What the engine hands the launcher's containers: its store and its way to mount. */
export interface ContainerDeps {
  storeRoot: string;
  env: NodeJS.ProcessEnv;
  mount(cfg: MountConfig, options: string): Promise<void>;
}

export interface EngineOptions {
  /** Where "ok" or "error: ..." is written once listening (the starter's pipe). */
  notifyFd?: number;
  /** Log to stderr instead of D/engine.log. */
  logToStderr?: boolean;
  cli: CliHandler;
  /** The OpenAPI document served at /v1/openapi.json. */
  openapiFile?: string;
  /** The containers (src/launcher/container.ts), made with the engine's mount table. */
  containers?: (deps: ContainerDeps) => ContainerApi;
}

function version(): string {
  try {
    return packageVersion();
  } catch {
    return 'unknown';
  }
}

/** Run the engine until it is stopped; resolves with the process' exit status. */
export async function runEngine(opts: EngineOptions): Promise<number> {
  const p = enginePaths();
  const notify = (line: string): void => {
    if (opts.notifyFd === undefined) return;
    try {
      writeSync(opts.notifyFd, line + '\n');
      closeSync(opts.notifyFd);
    } catch {
      // the starter is gone
    }
    opts.notifyFd = undefined;
  };
  mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  setLogTarget(opts.logToStderr ? 'stderr' : p.log);
  const lockFd = openSync(p.lock, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  if (!sys.flock(lockFd, sys.LOCK_EX | sys.LOCK_NB)) {
    let pid = '';
    try {
      pid = readFileSync(p.lock, 'utf8').trim();
    } catch {
      /* unknown */
    }
    const msg = `layerfs engine: an engine already runs for ${p.dir}${pid ? ` (pid ${pid})` : ''}`;
    notify(`error: ${msg}`);
    throw new UserError(msg);
  }
  ftruncateSync(lockFd);
  writeSync(lockFd, `${process.pid}\n`, 0);
  process.chdir('/');

  const cleaned = recoverDead();
  for (const m of cleaned) log(`detached the dead mount ${m} (its engine had died)`);

  const mounts = new MountTable();
  const started = new Date().toISOString();
  let stopping: Promise<void> | null = null;
  let server: Server;
  // The store whose containers it runs: $LAYERFS_STORE, else root's /var/lib/layerfs (as the
  // image store), else the user's own data directory.
  const storeRoot =
    process.env.LAYERFS_STORE ||
    (process.getuid?.() === 0 ? '/var/lib/layerfs' : `${process.env.XDG_DATA_HOME || `${process.env.HOME || '/tmp'}/.local/share`}/layerfs`);
  const containers = opts.containers?.({
    storeRoot,
    env: process.env,
    mount: async (cfg) => {
      await mounts.mount(cfg);
    },
  });
  const engineApi: EngineApi = {
    mount: (cfg) => mounts.mount(cfg),
    unmount: (mp, lazy) => mounts.unmount(mp, lazy),
    containers,
  };
  if (containers) {
    try {
      for (const id of await containers.recover()) log(`container ${id.slice(0, 12)} was running when its engine died: exited (137)`);
    } catch (e) {
      log(`cannot recover the containers of ${storeRoot}: ${(e as Error).message}`);
    }
  }

  const stop = (force: boolean): Promise<void> => {
    if (stopping) return stopping;
    const busy = mounts.busy();
    if (busy.length > 0 && !force) {
      throw new ApiError(409, `layerfs engine: ${busy.length} mount${busy.length > 1 ? 's are' : ' is'} busy (${busy.join(', ')}): unmount ${busy.length > 1 ? 'them' : 'it'} first, or stop with --force`);
    }
    stopping = (async () => {
      log(`stopping${force ? ' (forced)' : ''}: ${containers?.running() ?? 0} container(s) to stop, ${mounts.size} mount(s) to unmount`);
      server.close();
      await containers?.stopAll();
      await mounts.stopAll();
      rmSync(p.socket, { force: true });
    })();
    return stopping;
  };

  const routes = buildRoutes({ mounts, started, dir: p.dir, store: storeRoot, cli: opts.cli, engineApi, openapiFile: opts.openapiFile, stop, stopping: () => stopping !== null });

  const oldMask = process.umask(0o077);
  rmSync(p.socket, { force: true }); // a dead engine's: we hold the lock
  server = createServer({ requestTimeout: 0, headersTimeout: 30_000, maxHeaderSize: 16384 }, (req, res) => void dispatch(routes, req, res));
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(p.socket, () => {
      server.off('error', reject);
      resolve();
    });
  });
  process.umask(oldMask);
  chmodSync(p.socket, 0o600);
  server.on('error', (e) => log(`API server: ${e.message}`));
  log(`engine ${version()} (pid ${process.pid}) listening on ${p.socket}`);

  // A bug in one handler must not take every mount down with the process: logged, not fatal.
  process.on('uncaughtException', (e) => log(`uncaught: ${e?.stack ?? e}`));
  process.on('unhandledRejection', (e) => log(`unhandled rejection: ${(e as Error)?.stack ?? e}`));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      log(`${sig}: stopping`);
      void stop(true).then(() => process.exit(0));
    });
  }
  process.on('SIGHUP', () => log('SIGHUP ignored'));
  notify('ok');
  return -1; // keep running: stop() exits
}

/** What the routes work with. */
export interface RouteDeps {
  mounts: MountTable;
  started: string;
  dir: string;
  /** The store whose containers it runs. */
  store: string;
  cli: CliHandler;
  engineApi: EngineApi;
  openapiFile?: string;
  stop(force: boolean): Promise<void>;
  stopping(): boolean;
}

/** The API's routes: what the engine serves (docs/api/openapi.json documents exactly these). */
export function buildRoutes(d: RouteDeps): Route[] {
  return [
    {
      method: 'GET',
      path: `/${API_VERSION}/version`,
      handler: () => ({ http: 200, body: { version: version(), api: API_VERSION, pid: process.pid, started: d.started, dir: d.dir, store: d.store, code: codeId() } }),
    },
    {
      method: 'GET',
      path: `/${API_VERSION}/openapi.json`,
      handler: () => {
        const file = d.openapiFile ?? join(ROOT, 'docs', 'api', 'openapi.json');
        try {
          return { http: 200, body: JSON.parse(readFileSync(file, 'utf8')) };
        } catch (e) {
          throw new ApiError(500, `cannot read ${file}: ${(e as Error).message}`);
        }
      },
    },
    { method: 'GET', path: `/${API_VERSION}/mounts`, handler: () => ({ http: 200, body: d.mounts.list() }) },
    {
      method: 'POST',
      path: `/${API_VERSION}/mounts`,
      handler: async (c) => {
        const body = await c.body();
        const mountpoint = str(body, 'mountpoint', { max: 4096 })!;
        const options = str(body, 'options', { max: 65536 })!;
        const cwd = str(body, 'cwd', { optional: true, max: 4096 });
        if (cwd !== undefined && !cwd.startsWith('/')) throw new ApiError(400, `'cwd' must be an absolute path`);
        if (cwd === undefined && !mountpoint.startsWith('/')) throw new ApiError(400, `'mountpoint' must be absolute (or give 'cwd')`);
        const { parseMountArgs, validateMountConfig } = await import('../config.ts');
        const cfg = await configErrors(async () => {
          const req = parseMountArgs(['-o', options, mountpoint]);
          return validateMountConfig(req, { cwd: cwd ?? '/' });
        });
        if (cfg.foreground || cfg.debug) throw new ApiError(400, "'debug' is for a foreground mount (layerfs mount -f), not the engine's");
        return { http: 201, body: await userErrors(() => d.mounts.mount(cfg)) };
      },
    },
    {
      method: 'GET',
      path: `/${API_VERSION}/mounts/{id}`,
      handler: (c) => {
        const m = d.mounts.byId(c.params.id!);
        if (!m) throw new ApiError(404, `layerfs: no mount '${c.params.id}' is served by this engine`);
        return { http: 200, body: m };
      },
    },
    {
      method: 'DELETE',
      path: `/${API_VERSION}/mounts/{id}`,
      handler: async (c) => {
        const m = d.mounts.byId(c.params.id!);
        if (!m) throw new ApiError(404, `layerfs: no mount '${c.params.id}' is served by this engine`);
        await userErrors(() => d.mounts.unmount(m.mountpoint, bool(c.query, 'lazy')));
        return { http: 204 };
      },
    },
    {
      method: 'POST',
      path: `/${API_VERSION}/cli`,
      handler: async (c) => {
        const body = await c.body();
        const argv = strList(body, 'argv');
        const cwd = str(body, 'cwd', { max: 4096 })!;
        if (!cwd.startsWith('/')) throw new ApiError(400, `'cwd' must be an absolute path`);
        if (d.stopping()) return { http: 200, body: { fallback: true } };
        return { http: 200, body: await d.cli(argv, cwd, d.engineApi) };
      },
    },
    {
      method: 'POST',
      path: `/${API_VERSION}/engine/stop`,
      handler: (c) => {
        const force = bool(c.query, 'force');
        const done = d.stop(force);
        void done.then(() => process.exit(0));
        return { http: 202, body: { stopping: true, mounts: d.mounts.size } };
      },
    },
    ...(d.engineApi.containers ? containerRoutes(d.engineApi.containers) : []),
  ];
}

async function configErrors<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if ((e as Error).name === 'ConfigError') throw new ApiError(400, (e as Error).message);
    throw e;
  }
}

async function userErrors<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof UserError) {
      const http = /is not mounted/.test(e.message) ? 404 : /busy|already/.test(e.message) ? 409 : 422;
      throw new ApiError(http, e.message, e.status);
    }
    throw e;
  }
}
