// The API document (docs/api/openapi.json) against the engine: the routes the engine serves are
// exactly the documented ones, and live answers of each operation have a documented status and
// match its schema (ajv).

import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildRoutes } from '../../src/engine/server.ts';
import type { Answer } from '../../src/engine/client.ts';
import { MountTable } from '../../src/engine/mounts.ts';
import type { ContainerApi } from '../../src/engine/containers/routes.ts';
import { makeTmp, unmount } from '../helpers/mounts.ts';
import { testEngine } from './_engine.ts';
import { rootfs } from '../helpers/rootfs.ts';

const DOC_FILE = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..', '..', 'docs', 'api', 'openapi.json');
type Doc = { paths: Record<string, Record<string, { responses: Record<string, { $ref?: string; content?: { 'application/json': { schema: object } } }> }>> };
const doc = JSON.parse(fs.readFileSync(DOC_FILE, 'utf8')) as Doc & { components: { responses: Record<string, unknown> } };
const METHODS = ['get', 'post', 'delete', 'put', 'patch'];

function documented(): string[] {
  return Object.entries(doc.paths)
    .flatMap(([p, ops]) => Object.keys(ops).filter((m) => METHODS.includes(m)).map((m) => `${m.toUpperCase()} ${p}`))
    .sort();
}

test('the engine serves exactly the documented routes', (t) => {
  const never = (): never => {
    throw new Error('not called');
  };
  const containers = new Proxy({}, { get: () => never }) as ContainerApi;
  const routes = buildRoutes({
    mounts: new MountTable(),
    started: '',
    dir: '',
    store: '',
    cli: async () => ({ fallback: true }),
    engineApi: { mount: async () => undefined, unmount: async () => undefined, containers },
    stop: async () => undefined,
    stopping: () => false,
  });
  t.deepEqual(routes.map((r) => `${r.method} ${r.path}`).sort(), documented());
});

const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
ajv.addSchema(doc, 'doc');

/** Problems of `answer` as the response of METHOD PATH (documented status, body schema). */
function check(method: string, template: string, a: Answer): string[] {
  const op = doc.paths[template]?.[method.toLowerCase()];
  if (!op) return [`${method} ${template} is not documented`];
  let resp = op.responses[String(a.http)];
  if (!resp) return [`${method} ${template}: HTTP ${a.http} is not documented (${JSON.stringify(a.body)})`];
  if (resp.$ref) resp = doc.components.responses[resp.$ref.split('/').pop()!] as typeof resp;
  const schema = resp.content?.['application/json']?.schema;
  if (!schema) return a.body === null ? [] : [`${method} ${template} ${a.http}: a body where none is documented`];
  const ref = '$ref' in schema ? { $ref: `doc${String((schema as { $ref: string }).$ref)}` } : schema;
  const v = ajv.compile(rewriteRefs(ref));
  return v(a.body) ? [] : [`${method} ${template} ${a.http}: ${ajv.errorsText(v.errors)} in ${JSON.stringify(a.body).slice(0, 300)}`];
}

/** Inline schemas' local refs point into the document. */
function rewriteRefs(s: unknown): object {
  return JSON.parse(JSON.stringify(s).replace(/"\$ref":"#\//g, '"$ref":"doc#/')) as object;
}

test('every operation answers as documented (live engine)', async (t) => {
  const e = testEngine(t);
  e.env.LAYERFS_STORE = makeTmp(t, 'layerfs-test-api-store-');
  const dir = makeTmp(t, 'layerfs-test-api-');
  for (const d of ['lower', 'upper', 'work', 'mnt', 'mnt2']) fs.mkdirSync(path.join(dir, d));
  fs.writeFileSync(path.join(dir, 'lower', 'f'), 'x\n');
  const mnt = path.join(dir, 'mnt');
  t.teardown(() => unmount(mnt));
  t.teardown(() => unmount(path.join(dir, 'mnt2')));
  t.is((await e.layerfs(['engine', 'start'])).code, 0);
  const seen = new Set<string>();
  const expect = async (method: string, template: string, url: string, body: unknown, http: number): Promise<Answer> => {
    const a = await e.api(method, url, body);
    seen.add(`${method} ${template}`);
    t.deepEqual(check(method, template, a), [], `${method} ${url}`);
    t.is(a.http, http, `${method} ${url}: ${JSON.stringify(a.body)}`);
    return a;
  };
  const opts = `lowerdir=${dir}/lower,upperdir=${dir}/upper,workdir=${dir}/work`;
  const v = await expect('GET', '/v1/version', '/v1/version', undefined, 200);
  t.is(v.body?.pid, e.pid()!);
  const o = await expect('GET', '/v1/openapi.json', '/v1/openapi.json', undefined, 200);
  t.deepEqual(o.body, doc as unknown as Record<string, unknown>, 'the engine serves this document');
  await expect('GET', '/v1/mounts', '/v1/mounts', undefined, 200);
  const m = await expect('POST', '/v1/mounts', '/v1/mounts', { mountpoint: 'mnt', options: opts, cwd: dir }, 201);
  t.is(m.body?.mountpoint, mnt, 'relative to cwd');
  t.is(fs.readFileSync(path.join(mnt, 'f'), 'utf8'), 'x\n');
  await expect('POST', '/v1/mounts', '/v1/mounts', { mountpoint: mnt }, 400);
  const list = await expect('GET', '/v1/mounts', '/v1/mounts', undefined, 200);
  t.deepEqual((list.body as unknown as { mountpoint: string }[]).map((x) => x.mountpoint), [mnt]);
  const id = String(m.body?.id);
  await expect('GET', '/v1/mounts/{id}', `/v1/mounts/${id}`, undefined, 200);
  await expect('GET', '/v1/mounts/{id}', '/v1/mounts/ffffffffffffffff', undefined, 404);
  const fb = await expect('POST', '/v1/cli', '/v1/cli', { argv: ['version'], cwd: '/' }, 200);
  t.deepEqual(fb.body, { fallback: true });
  const um = await expect('POST', '/v1/cli', '/v1/cli', { argv: ['umount', 'nothing-here'], cwd: dir }, 200);
  t.deepEqual(um.body, { status: 1, stdout: '', stderr: `layerfs: '${dir}/nothing-here' is not mounted\n` });
  await expect('POST', '/v1/cli', '/v1/cli', { argv: 'mount' }, 400);
  const fd = fs.openSync(path.join(mnt, 'f'), 'r');
  try {
    await expect('DELETE', '/v1/mounts/{id}', `/v1/mounts/${id}`, undefined, 409);
    await expect('POST', '/v1/engine/stop', '/v1/engine/stop', undefined, 409);
  } finally {
    fs.closeSync(fd);
  }
  await expect('DELETE', '/v1/mounts/{id}', `/v1/mounts/${id}?lazy=maybe`, undefined, 400);
  await expect('DELETE', '/v1/mounts/{id}', `/v1/mounts/${id}`, undefined, 204);
  await expect('DELETE', '/v1/mounts/{id}', `/v1/mounts/${id}`, undefined, 404);
  t.false(fs.existsSync(path.join(mnt, 'f')), 'unmounted');

  // Containers (of a store of the test's own).
  const C = '/v1/containers';
  const lower = rootfs().lower;
  await expect('GET', C, `${C}?all=true`, undefined, 200);
  await expect('POST', C, C, { args: ['--lower', lower, '--bogus'], cwd: '/' }, 400);
  await expect('POST', C, C, { args: ['no-such-image'], cwd: '/' }, 400);
  const made = await expect('POST', C, C, { args: ['--name', 'api', '--lower', lower, '--', 'sh', '-c', 'trap "exit 5" TERM; echo hello; while :; do sleep 0.1; done'], cwd: '/' }, 201);
  await expect('POST', C, C, { args: ['--name', 'api', '--lower', lower, '--', 'true'], cwd: '/' }, 409);
  const cid = String(made.body?.Id);
  await expect('GET', `${C}/{id}`, `${C}/api`, undefined, 200);
  await expect('GET', `${C}/{id}`, `${C}/nosuch`, undefined, 404);
  await expect('GET', `${C}/{id}/exec-info`, `${C}/api/exec-info`, undefined, 409);
  await expect('POST', `${C}/{id}/start`, `${C}/${cid.slice(0, 8)}/start`, undefined, 204);
  await expect('POST', `${C}/{id}/start`, `${C}/nosuch/start`, undefined, 404);
  await expect('GET', `${C}/{id}/exec-info`, `${C}/api/exec-info`, undefined, 200);
  await expect('POST', `${C}/{id}/kill`, `${C}/api/kill?signal=NOPE`, undefined, 400);
  await expect('GET', `${C}/{id}/logs`, `${C}/api/logs?tail=x`, undefined, 400);
  await expect('DELETE', `${C}/{id}`, `${C}/api`, undefined, 409);
  for (let i = 0; i < 100; i++) {
    const l = await e.api('GET', `${C}/api/logs`);
    if (l.http === 200 && l.body?.log === 'hello\n') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const logs = await e.api('GET', `${C}/api/logs?tail=1`);
  seen.add(`GET ${C}/{id}/logs`);
  t.is(logs.http, 200);
  t.deepEqual(check('GET', `${C}/{id}/logs`, { http: 200, body: null }), [], 'a stream: no JSON body');
  t.like(logs.body, { log: 'hello\n', stream: 'stdout' }, 'one record per line');
  await expect('POST', `${C}/{id}/kill`, `${C}/api/kill?signal=TERM`, undefined, 204);
  const w = await expect('POST', `${C}/{id}/wait`, `${C}/api/wait`, undefined, 200);
  t.is(w.body?.StatusCode, 5);
  await expect('POST', `${C}/{id}/kill`, `${C}/api/kill`, undefined, 409);
  await expect('POST', `${C}/{id}/restart`, `${C}/api/restart?t=0`, undefined, 204);
  await expect('POST', `${C}/{id}/stop`, `${C}/api/stop?t=0`, undefined, 204);
  await expect('POST', `${C}/{id}/stop`, `${C}/api/stop?t=-1`, undefined, 400);
  await expect('POST', `${C}/{id}/restart`, `${C}/nosuch/restart`, undefined, 404);
  await expect('POST', `${C}/{id}/wait`, `${C}/nosuch/wait`, undefined, 404);
  // A foreground run's record: created for a live pid (ours), attached, removed.
  const fg = await expect('POST', C, C, { args: ['--lower', lower, '--', 'true'], cwd: '/', attached: process.pid }, 201);
  await expect('POST', C, C, { args: ['--lower', lower, '--', 'true'], cwd: '/', attached: -1 }, 400);
  await expect('POST', `${C}/{id}/attach`, `${C}/api/attach`, { runtime: { pid: 1 } }, 409);
  await expect('POST', `${C}/{id}/attach`, `${C}/${String(fg.body?.Id)}/attach`, { runtime: 'x' }, 400);
  await expect('POST', `${C}/{id}/attach`, `${C}/nosuch/attach`, { runtime: {} }, 404);
  await expect('POST', `${C}/{id}/attach`, `${C}/${String(fg.body?.Id)}/attach`, { runtime: { pid: 1, root: '/', env: [] } }, 400); // not ours
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => void child.kill('SIGKILL'));
  await expect('POST', `${C}/{id}/attach`, `${C}/${String(fg.body?.Id)}/attach`, { runtime: { pid: child.pid, root: '/', env: [] } }, 204);
  await expect('DELETE', `${C}/{id}`, `${C}/${String(fg.body?.Id)}`, undefined, 409);
  await expect('DELETE', `${C}/{id}`, `${C}/api?force=maybe`, undefined, 400);
  await expect('DELETE', `${C}/{id}`, `${C}/api`, undefined, 204);
  await expect('DELETE', `${C}/{id}`, `${C}/api`, undefined, 404);

  await expect('POST', '/v1/engine/stop', '/v1/engine/stop?force=nope', undefined, 400);
  await expect('POST', '/v1/engine/stop', '/v1/engine/stop', undefined, 202);
  t.deepEqual([...seen].sort(), documented(), 'every documented operation was exercised');
});
