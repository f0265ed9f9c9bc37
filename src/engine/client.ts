// The engine's client side for the Node CLI: requests over the engine's socket, and starting
// the engine on demand. (The hot path, `layerfs mount`/`umount` as podman and mount(8) run
// them, goes through native/client/client.c instead, which never starts Node when the engine
// runs.)

import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { CLI_START } from '../root.ts';
import { UserError } from './mount.ts';
import { enginePaths } from './paths.ts';

const START_TIMEOUT_MS = 30_000;

export interface Answer {
  http: number;
  body: Record<string, unknown> | null;
}

/** One request to the engine; rejects with the socket's error (ENOENT, ECONNREFUSED, EACCES). */
export function call(method: string, path: string, body?: unknown, socket = enginePaths().socket): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = httpRequest(
      {
        socketPath: socket,
        method,
        path,
        headers: payload === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Record<string, unknown> | null = null;
          try {
            parsed = text.trim() ? (JSON.parse(text) as Record<string, unknown>) : null;
          } catch {
            parsed = { message: `layerfs: the engine answered HTTP ${res.statusCode} with something that is not JSON` };
          }
          resolve({ http: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const code = (e: unknown): string | undefined => (e as NodeJS.ErrnoException)?.code;

function permissionError(socket: string): UserError {
  let owner = '';
  try {
    owner = ` (it belongs to uid ${statSync(socket).uid})`;
  } catch {
    /* unknown */
  }
  return new UserError(`layerfs: no permission to talk to the engine at ${socket}${owner}; an engine of your own runs when LAYERFS_ENGINE_DIR names a directory of yours`);
}

/** Whether an engine answers (false: none runs); throws when it exists but we may not talk to it. */
export async function engineRunning(socket = enginePaths().socket): Promise<boolean> {
  try {
    await call('GET', '/v1/version', undefined, socket);
    return true;
  } catch (e) {
    if (code(e) === 'ENOENT' || code(e) === 'ECONNREFUSED') return false;
    if (code(e) === 'EACCES') throw permissionError(socket);
    throw e;
  }
}

/** Start the engine in the background unless one answers; resolves once it serves. */
export async function ensureEngine(): Promise<void> {
  const p = enginePaths();
  if (await engineRunning(p.socket)) {
    await warnIfStale(p.socket);
    return;
  }
  const [node, ...args] = CLI_START;
  const child = spawn(node!, [...ENGINE_NODE_FLAGS, ...args, 'engine', 'run', '--notify-fd', '3'], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    cwd: '/',
    env: engineEnv(process.env),
  });
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  const reply = await new Promise<string>((resolve) => {
    let buf = '';
    const timer = setTimeout(() => resolve('error: the engine did not start within 30 s'), START_TIMEOUT_MS);
    pipe.on('data', (d: Buffer) => (buf += d.toString()));
    pipe.on('end', () => {
      clearTimeout(timer);
      resolve(buf.trim());
    });
    pipe.on('error', () => undefined);
  });
  child.unref();
  (pipe as unknown as { destroy(): void }).destroy();
  if (reply === 'ok') return;
  // Another command started one at the same time: that one serves.
  if (/already runs/.test(reply) && (await engineRunning(p.socket))) return;
  throw new UserError(`layerfs: cannot start the engine: ${reply.replace(/^error: /, '').replace(/^layerfs engine: /, '') || `see ${p.log}`}`);
}

let warned = false;

/** One line when the running engine was started from other sources than this command's. */
async function warnIfStale(socket: string): Promise<void> {
  if (warned) return;
  warned = true;
  try {
    const v = await call('GET', '/v1/version', undefined, socket);
    const { codeId } = await import('./isolate.ts');
    const mine = codeId();
    if (typeof v.body?.code === 'string' && v.body.code !== mine && mine !== 'src' && v.body.code !== 'src') {
      process.stderr.write(`layerfs: the engine (pid ${String(v.body.pid)}) runs other code than this command (${v.body.code}, not ${mine}): 'layerfs engine stop' lets the next command start the new one\n`);
    }
  } catch {
    /* the engine answers what it can */
  }
}

/**
 * The engine's environment: what it needs from the starter's, nothing else (it outlives the
 * command that started it and serves everyone's mounts: a test's temporary paths, a user's
 * secrets have no business there).
 */
export function engineEnv(from: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const keep = /^(PATH|LANG|LC_[A-Z]+|TZ|HOME|XDG_RUNTIME_DIR|XDG_DATA_HOME|LAYERFS_(ENGINE_DIR|STORE|NODE|NO_BUNDLE|ENGINE_THREADS|FUSE_DISPATCH|BACKEND))$/;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(from)) if (keep.test(k) && v !== undefined) env[k] = v;
  env.MALLOC_ARENA_MAX = from.MALLOC_ARENA_MAX ?? '2';
  return env;
}

/**
 * Node flags of the engine: a small young generation (the engine's garbage is per request;
 * 16 MiB semi-spaces per process would be most of an idle engine's memory).
 */
export const ENGINE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

/**
 * Print a container's log as it comes (GET /v1/containers/REF/logs, newline-delimited JSON):
 * stdout records to stdout, stderr ones to stderr. `done` settles when the stream ends (true)
 * or the engine refused (false, its message printed).
 */
export function streamLogs(ref: string, opts: { tail?: number; follow: boolean }, timestamps: boolean): { done: Promise<boolean>; cancel(): void } {
  const q = new URLSearchParams();
  if (opts.tail !== undefined) q.set('tail', String(opts.tail));
  if (opts.follow) q.set('follow', 'true');
  let cancel = (): void => undefined;
  const done = new Promise<boolean>((resolve) => {
    const req = httpRequest({ socketPath: enginePaths().socket, method: 'GET', path: `/v1/containers/${encodeURIComponent(ref)}/logs?${q}` }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line) continue;
          let r: { log?: string; stream?: string; time?: string; message?: string };
          try {
            r = JSON.parse(line) as typeof r;
          } catch {
            continue;
          }
          if (res.statusCode !== 200) {
            process.stderr.write(`${String(r.message ?? `layerfs: the engine answered HTTP ${res.statusCode}`)}\n`);
            continue;
          }
          const text = timestamps ? `${r.time} ${r.log}` : String(r.log);
          (r.stream === 'stderr' ? process.stderr : process.stdout).write(text);
        }
      });
      res.on('end', () => resolve(res.statusCode === 200));
      res.on('error', () => resolve(false));
    });
    req.on('error', (e) => {
      process.stderr.write(`layerfs: the engine: ${e.message}\n`);
      resolve(false);
    });
    req.end();
    cancel = () => req.destroy();
  });
  return { done, cancel: () => cancel() };
}

/**
 * Mount `cfg` through the engine (starting it when needed), as `layerfs run` does for its root:
 * resolves once the mount serves.
 */
export async function mountThroughEngine(cfg: { mountpoint: string; options: string }): Promise<void> {
  await ensureEngine();
  const a = await call('POST', '/v1/mounts', { mountpoint: cfg.mountpoint, options: cfg.options });
  if (a.http !== 201) throw new UserError(String(a.body?.message ?? `layerfs: the engine answered HTTP ${a.http}`));
}

/** Forward a command line to the engine (starting it when needed) and print its answer. */
export async function forward(argv: readonly string[]): Promise<number> {
  await ensureEngine();
  const a = await call('POST', '/v1/cli', { argv, cwd: process.cwd() });
  const b = a.body ?? {};
  if (a.http >= 200 && a.http < 300) {
    if (b.fallback === true) throw new UserError('layerfs: the engine is stopping; try again');
    if (typeof b.stdout === 'string') process.stdout.write(b.stdout);
    if (typeof b.stderr === 'string') process.stderr.write(b.stderr);
    return typeof b.status === 'number' ? b.status : 0;
  }
  process.stderr.write(`${typeof b.message === 'string' ? b.message : `layerfs: the engine answered HTTP ${a.http}`}\n`);
  return typeof b.status === 'number' ? b.status : 1;
}
