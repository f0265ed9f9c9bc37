// The API document (docs/api/openapi.json) against the engine: the routes the engine serves are
// exactly the documented ones, and live answers of each operation have a documented status and
// match its schema (ajv).

import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildRoutes } from '../../src/engine/server.ts';
import type { Answer } from '../../src/engine/client.ts';
import { MountTable } from '../../src/engine/mounts.ts';
import { makeTmp, unmount } from '../helpers/mounts.ts';
import { testEngine } from './_engine.ts';

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
  const routes = buildRoutes({
    mounts: new MountTable(),
    started: '',
    dir: '',
    cli: async () => ({ fallback: true }),
    engineApi: { mount: async () => undefined, unmount: async () => undefined },
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
  await expect('POST', '/v1/engine/stop', '/v1/engine/stop?force=nope', undefined, 400);
  await expect('POST', '/v1/engine/stop', '/v1/engine/stop', undefined, 202);
  t.deepEqual([...seen].sort(), documented(), 'every documented operation was exercised');
});
