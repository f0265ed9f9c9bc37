// The container routes of the API (docs/api/openapi.json): what `run -d`, `ps`, `logs`, `stop`,
// `start`, `restart`, `kill`, `wait`, `rm`, `inspect` and `exec` ask the engine. The containers
// themselves are the launcher's (src/launcher/container.ts), handed to the engine as a
// ContainerApi. Their failures keep docker's exit statuses: 125 for `run`'s own, 1 otherwise.

import { API_VERSION, ApiError, bool, str, strList, uint, type Route } from '../api.ts';
import type { LogRecord } from './logs.ts';
import { ContainerError } from './store.ts';

export interface ContainerApi {
  recover(): Promise<string[]>;
  create(args: string[], cwd: string, env: NodeJS.ProcessEnv, attached?: number, image?: string): { id: string; name: string };
  attach(ref: string, runtime: never): void;
  start(ref: string): Promise<void>;
  stop(ref: string, timeout?: number): Promise<void>;
  kill(ref: string, signal?: string): Promise<void>;
  restart(ref: string, timeout?: number): Promise<void>;
  wait(ref: string): Promise<number>;
  remove(ref: string, force?: boolean): Promise<string>;
  list(all: boolean): unknown[];
  inspect(ref: string): Record<string, unknown>;
  runtime(ref: string): unknown;
  logs(ref: string, tail: number | undefined, follow: ((r: LogRecord) => void) | null): { records: LogRecord[]; ended: Promise<void>; stop(): void };
  running(): number;
  stopAll(): Promise<void>;
}

/** A container failure as the API reports it (`status`: the CLI's exit status). */
export async function containerErrors<T>(f: () => Promise<T> | T, status = 1): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof ContainerError) throw new ApiError(e.http, `layerfs: ${e.message}`, e.http === 400 ? (status === 125 ? 125 : 2) : status);
    throw e;
  }
}

const env = (body: Record<string, unknown>): NodeJS.ProcessEnv => {
  const v = body.env;
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ApiError(400, "'env' must be an object of strings");
  const out: NodeJS.ProcessEnv = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (typeof x !== 'string' || x.includes('\0') || k.includes('\0') || k.includes('=')) throw new ApiError(400, "'env' must be an object of strings");
    out[k] = x;
  }
  return out;
};

export function containerRoutes(c: ContainerApi): Route[] {
  const base = `/${API_VERSION}/containers`;
  return [
    { method: 'GET', path: base, handler: (x) => ({ http: 200, body: c.list(bool(x.query, 'all')) }) },
    {
      method: 'POST',
      path: base,
      handler: async (x) => {
        const body = await x.body();
        const args = strList(body, 'args');
        const cwd = str(body, 'cwd', { max: 4096 })!;
        if (!cwd.startsWith('/')) throw new ApiError(400, "'cwd' must be an absolute path");
        const attached = body.attached;
        if (attached !== undefined && (!Number.isInteger(attached) || (attached as number) <= 0)) throw new ApiError(400, "'attached' must be the pid of the supervising command");
        const image = str(body, 'image', { optional: true, max: 4096 });
        const made = await containerErrors(() => c.create(args, cwd, env(body), attached as number | undefined, image), 125);
        return { http: 201, body: { Id: made.id, Name: made.name } };
      },
    },
    {
      method: 'POST',
      path: `${base}/{id}/attach`,
      handler: async (x) => {
        const body = await x.body();
        if (typeof body.runtime !== 'object' || body.runtime === null) throw new ApiError(400, "'runtime' must be an object");
        await containerErrors(() => c.attach(x.params.id!, body.runtime as never));
        return { http: 204 };
      },
    },
    { method: 'GET', path: `${base}/{id}`, handler: async (x) => ({ http: 200, body: await containerErrors(() => c.inspect(x.params.id!)) }) },
    {
      method: 'DELETE',
      path: `${base}/{id}`,
      handler: async (x) => {
        const force = bool(x.query, 'force');
        await containerErrors(() => c.remove(x.params.id!, force));
        return { http: 204 };
      },
    },
    {
      method: 'POST',
      path: `${base}/{id}/start`,
      handler: async (x) => {
        await containerErrors(() => c.start(x.params.id!));
        return { http: 204 };
      },
    },
    {
      method: 'POST',
      path: `${base}/{id}/stop`,
      handler: async (x) => {
        const t = uint(x.query, 't', 3600);
        await containerErrors(() => c.stop(x.params.id!, t));
        return { http: 204 };
      },
    },
    {
      method: 'POST',
      path: `${base}/{id}/restart`,
      handler: async (x) => {
        const t = uint(x.query, 't', 3600);
        await containerErrors(() => c.restart(x.params.id!, t));
        return { http: 204 };
      },
    },
    {
      method: 'POST',
      path: `${base}/{id}/kill`,
      handler: async (x) => {
        const sig = x.query.get('signal') ?? 'SIGKILL';
        await containerErrors(() => c.kill(x.params.id!, sig));
        return { http: 204 };
      },
    },
    {
      method: 'POST',
      path: `${base}/{id}/wait`,
      handler: async (x) => ({ http: 200, body: { StatusCode: await containerErrors(() => c.wait(x.params.id!)) } }),
    },
    {
      method: 'GET',
      path: `${base}/{id}/logs`,
      handler: async (x) => {
        const tail = uint(x.query, 'tail');
        const follow = bool(x.query, 'follow');
        // Resolve (404) before the stream starts; records then flow as they come.
        await containerErrors(() => c.inspect(x.params.id!));
        return {
          http: 200,
          stream: async (write, closed) => {
            const pending: LogRecord[] = [];
            let ready = false;
            const l = c.logs(x.params.id!, tail, follow ? (r) => (ready ? write(r) : pending.push(r)) : null);
            for (const r of l.records) write(r);
            for (const r of pending) write(r);
            ready = true;
            await Promise.race([l.ended, closed]);
            l.stop();
          },
        };
      },
    },
    { method: 'GET', path: `${base}/{id}/exec-info`, handler: async (x) => ({ http: 200, body: await containerErrors(() => c.runtime(x.params.id!)) }) },
  ];
}
