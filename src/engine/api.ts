// The engine's HTTP+JSON API: its routes (a table the OpenAPI document docs/api/openapi.json
// describes; test/engine/api.test.ts holds the two together), request bodies read bounded, and
// errors as JSON {message, status} where `status` is the exit status the CLI gives the same
// failure (2 for bad input, 1 otherwise).

import type { IncomingMessage, ServerResponse } from 'node:http';

export const API_VERSION = 'v1';
/** The largest request body the engine reads. */
export const MAX_BODY = 1 << 20;

/**
 * A failure the API reports as JSON with HTTP `http` and exit status `status`: 2 for a request
 * that is wrong in itself (as the CLI's usage errors), 1 for one that fails.
 */
export class ApiError extends Error {
  constructor(
    readonly http: number,
    message: string,
    readonly status = http === 400 ? 2 : 1,
  ) {
    super(message);
  }
}

export interface Reply {
  http: number;
  body?: unknown;
  /** Instead of a body: newline-delimited JSON written as it comes (application/x-ndjson). */
  stream?: (write: (record: unknown) => void, closed: Promise<void>) => Promise<void>;
}

export interface Ctx {
  params: Record<string, string>;
  query: URLSearchParams;
  body: () => Promise<Record<string, unknown>>;
}

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  /** An OpenAPI path template: /v1/mounts/{id}. */
  path: string;
  handler(ctx: Ctx): Promise<Reply> | Reply;
}

/** Match `url` against `template`: its parameters, or null. */
export function matchPath(template: string, pathname: string): Record<string, string> | null {
  const t = template.split('/');
  const p = pathname.split('/');
  if (t.length !== p.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < t.length; i++) {
    const m = /^\{(\w+)\}$/.exec(t[i]!);
    if (m) {
      if (p[i] === '') return null;
      try {
        params[m[1]!] = decodeURIComponent(p[i]!);
      } catch {
        return null;
      }
    } else if (t[i] !== p[i]) return null;
  }
  return params;
}

/** The request body as a JSON object (bounded; an empty body is {}). */
export function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const fail = (e: ApiError): void => {
      if (done) return;
      done = true;
      reject(e);
      req.resume(); // drain the rest; the reply closes the connection
    };
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > MAX_BODY) return fail(new ApiError(413, `the request body is larger than ${MAX_BODY} bytes`, 2));
      chunks.push(c);
    });
    req.on('error', (e) => fail(new ApiError(400, `cannot read the request: ${e.message}`)));
    req.on('end', () => {
      if (done) return;
      done = true;
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch (e) {
        return reject(new ApiError(400, `the request body is not JSON: ${(e as Error).message}`));
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return reject(new ApiError(400, 'the request body must be a JSON object'));
      resolve(v as Record<string, unknown>);
    });
  });
}

export function send(res: ServerResponse, http: number, body?: unknown): void {
  if (res.headersSent) return;
  if (body === undefined) {
    res.writeHead(http, { 'Content-Length': 0 });
    res.end();
    return;
  }
  const text = JSON.stringify(body) + '\n';
  res.writeHead(http, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Dispatch one request through `routes`; every failure becomes a JSON error. */
export async function dispatch(routes: readonly Route[], req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const url = new URL(req.url ?? '/', 'http://layerfs');
    let allowed: string[] = [];
    for (const r of routes) {
      const params = matchPath(r.path, url.pathname);
      if (!params) continue;
      if (r.method !== req.method) {
        allowed.push(r.method);
        continue;
      }
      const reply = await r.handler({ params, query: url.searchParams, body: () => readJson(req) });
      if (reply.stream) {
        res.writeHead(reply.http, { 'Content-Type': 'application/x-ndjson' });
        const closed = new Promise<void>((resolve) => res.on('close', () => resolve()));
        await reply.stream((rec) => {
          if (!res.writableEnded && !res.destroyed) res.write(JSON.stringify(rec) + '\n');
        }, closed);
        if (!res.writableEnded) res.end();
        return;
      }
      send(res, reply.http, reply.body);
      return;
    }
    if (allowed.length > 0) {
      res.setHeader('Allow', allowed.join(', '));
      throw new ApiError(405, `${req.method} is not allowed on ${url.pathname} (allowed: ${allowed.join(', ')})`, 2);
    }
    throw new ApiError(404, `no such API route: ${req.method} ${url.pathname}`, 2);
  } catch (e) {
    if (e instanceof ApiError) send(res, e.http, { message: e.message, status: e.status });
    else send(res, 500, { message: `layerfs engine: ${(e as Error).message ?? String(e)}`, status: 1 });
  }
}

/** Fields of a request body, checked. */
export function str(body: Record<string, unknown>, key: string, opts: { optional?: boolean; max?: number } = {}): string | undefined {
  const v = body[key];
  if (v === undefined && opts.optional) return undefined;
  if (typeof v !== 'string') throw new ApiError(400, `'${key}' must be a string`);
  if (v.length > (opts.max ?? 65536)) throw new ApiError(400, `'${key}' is longer than ${opts.max ?? 65536} characters`);
  if (v.includes('\0')) throw new ApiError(400, `'${key}' holds a NUL character`);
  return v;
}

export function strList(body: Record<string, unknown>, key: string, maxItems = 4096): string[] {
  const v = body[key];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.includes('\0'))) throw new ApiError(400, `'${key}' must be an array of strings`);
  if (v.length > maxItems) throw new ApiError(400, `'${key}' has more than ${maxItems} items`);
  return v as string[];
}

/** A non-negative integer query parameter (undefined when absent). */
export function uint(q: URLSearchParams, key: string, max = 2 ** 31): number | undefined {
  const v = q.get(key);
  if (v === null) return undefined;
  if (!/^[0-9]{1,10}$/.test(v) || Number(v) > max) throw new ApiError(400, `query parameter '${key}' must be a whole number from 0 to ${max}, not '${v}'`);
  return Number(v);
}

export function bool(q: URLSearchParams, key: string): boolean {
  const v = q.get(key);
  if (v === null) return false;
  if (v === '1' || v === 'true' || v === '') return true;
  if (v === '0' || v === 'false') return false;
  throw new ApiError(400, `query parameter '${key}' must be true or false, not '${v}'`);
}
