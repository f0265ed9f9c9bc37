// The engine as a user meets it: started by the first command that needs it, one per
// directory, stopped cleanly (refusing while a mount is busy), recovering after kill -9, and
// refusing clients without permission and malformed requests with one clear line.

import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { processAlive } from '../../src/engine/mount.ts';
import { readState, stateFile } from '../../src/engine/state.ts';
import { run } from '../helpers/exec.ts';
import { isMounted, layerfsBin, makeTmp, unmount } from '../helpers/mounts.ts';
import { testEngine, type TestEngine } from './_engine.ts';

/** A lower with one file, an upper, a work dir and a mount point; unmounted in teardown. */
function layers(t: ExecutionContext, name = 'm') {
  const dir = makeTmp(t, 'layerfs-test-engine-layers-');
  const d = { lower: path.join(dir, 'lower'), upper: path.join(dir, 'upper'), work: path.join(dir, 'work'), mnt: path.join(dir, name) };
  for (const x of Object.values(d)) fs.mkdirSync(x);
  fs.writeFileSync(path.join(d.lower, 'f'), 'lower\n');
  t.teardown(() => unmount(d.mnt));
  return { ...d, opts: `lowerdir=${d.lower},upperdir=${d.upper},workdir=${d.work}` };
}

async function mounted(e: TestEngine): Promise<string[]> {
  const a = await e.api('GET', '/v1/mounts');
  return (a.body as unknown as { mountpoint: string }[]).map((m) => m.mountpoint).sort();
}

test('the first mount starts the engine; concurrent first commands share one engine', async (t) => {
  const e = testEngine(t);
  const st = await e.layerfs(['engine', 'status']);
  t.is(st.code, 3, 'no engine yet');
  t.regex(st.stdout, /^no engine runs/);
  t.is(e.pid(), null);
  const a = layers(t, 'a');
  const b = layers(t, 'b');
  const [ra, rb] = await Promise.all([e.layerfs(['mount', '-o', a.opts, a.mnt]), e.layerfs(['mount', '-o', b.opts, b.mnt])]);
  t.is(ra.code, 0, ra.stderr);
  t.is(rb.code, 0, rb.stderr);
  const pid = e.pid();
  t.truthy(pid, 'an engine runs');
  t.is(readState(a.mnt, e.dir)?.pid, pid!);
  t.is(readState(b.mnt, e.dir)?.pid, pid!, 'one engine serves both');
  t.is(fs.readFileSync(path.join(a.mnt, 'f'), 'utf8'), 'lower\n');
  t.deepEqual(await mounted(e), [a.mnt, b.mnt].sort());
  t.is((fs.statSync(e.socket).mode & 0o777).toString(8), '600', 'the socket is the user\'s alone');
  const again = await e.layerfs(['engine', 'run', '--log-stderr']);
  t.is(again.code, 1);
  t.regex(again.stderr.trim(), /^layerfs engine: an engine already runs for .* \(pid \d+\)$/);
});

test('engine stop: refused while a mount is busy, then unmounts and exits; --force detaches', async (t) => {
  const e = testEngine(t);
  const a = layers(t, 'a');
  const b = layers(t, 'b');
  for (const x of [a, b]) t.is((await e.layerfs(['mount', '-o', x.opts, x.mnt])).code, 0);
  const pid = e.pid()!;
  const fd = fs.openSync(path.join(a.mnt, 'f'), 'r');
  let closed = false;
  t.teardown(() => {
    if (!closed) fs.closeSync(fd);
  });
  const refused = await e.layerfs(['engine', 'stop']);
  t.is(refused.code, 1);
  t.is(refused.stderr.trim(), `layerfs engine: 1 mount is busy (${a.mnt}): unmount it first, or stop with --force`);
  t.true(processAlive(pid), 'still running');
  t.deepEqual(await mounted(e), [a.mnt, b.mnt].sort(), 'nothing unmounted');
  t.is(fs.readFileSync(path.join(a.mnt, 'f'), 'utf8'), 'lower\n');
  fs.closeSync(fd);
  closed = true;
  const ok = await e.layerfs(['engine', 'stop']);
  t.is(ok.code, 0, ok.stderr);
  t.false(processAlive(pid), 'exited');
  t.false(isMounted(a.mnt) || isMounted(b.mnt), 'both unmounted');
  t.false(fs.existsSync(e.socket), 'socket removed');

  // --force: a busy mount is detached; its user then gets ENOTCONN or the directory below.
  t.is((await e.layerfs(['mount', '-o', a.opts, a.mnt])).code, 0);
  const pid2 = e.pid()!;
  const fd2 = fs.openSync(path.join(a.mnt, 'f'), 'r');
  t.teardown(() => fs.closeSync(fd2));
  const forced = await e.layerfs(['engine', 'stop', '--force']);
  t.is(forced.code, 0, forced.stderr);
  t.false(processAlive(pid2));
  t.false(isMounted(a.mnt), 'detached');
});

test('kill -9 of the engine: its mounts die; the next engine detaches them and serves again', async (t) => {
  const e = testEngine(t);
  const a = layers(t, 'a');
  t.is((await e.layerfs(['mount', '-o', a.opts, a.mnt])).code, 0);
  fs.appendFileSync(path.join(a.mnt, 'f'), 'written\n');
  const pid = e.pid()!;
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 200 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  t.is((t.throws(() => fs.readdirSync(a.mnt)) as NodeJS.ErrnoException).code, 'ENOTCONN', 'the mount died with it');
  t.true(fs.existsSync(stateFile(a.mnt, e.dir).file), 'its record stays behind');

  const b = layers(t, 'b');
  const r = await e.layerfs(['mount', '-o', b.opts, b.mnt]);
  t.is(r.code, 0, r.stderr);
  t.not(e.pid(), pid, 'a fresh engine');
  t.false(isMounted(a.mnt), 'the dead mount was detached');
  t.false(fs.existsSync(stateFile(a.mnt, e.dir).file), 'and its record removed');
  t.regex(fs.readFileSync(path.join(e.dir, 'engine.log'), 'utf8'), new RegExp(`detached the dead mount ${a.mnt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  t.deepEqual(await mounted(e), [b.mnt]);
  // The upper kept what was written before the kill; mounting it again serves it.
  t.is(fs.readFileSync(path.join(a.upper, 'f'), 'utf8'), 'lower\nwritten\n');
  t.is((await e.layerfs(['mount', '-o', a.opts, a.mnt])).code, 0);
  t.is(fs.readFileSync(path.join(a.mnt, 'f'), 'utf8'), 'lower\nwritten\n');
});

test('a client without permission on the socket: one line, nothing changed', async (t) => {
  const e = testEngine(t);
  const a = layers(t, 'a');
  t.is((await e.layerfs(['mount', '-o', a.opts, a.mnt])).code, 0);
  fs.chmodSync(e.dir, 0o755); // let nobody reach the socket itself (mode 0600)
  const b = layers(t, 'b');
  fs.chmodSync(path.dirname(b.mnt), 0o777);
  for (const args of [['engine', 'status'], ['mount', '-o', `lowerdir=${b.lower}`, b.mnt], ['umount', a.mnt]]) {
    const r = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', layerfsBin, ...args], {
      viaFiles: true,
      env: e.env,
      timeoutMs: 60_000,
    });
    t.not(r.code, 0, args.join(' '));
    const lines = r.stderr.trim().split('\n');
    t.is(lines.length, 1, r.stderr);
    t.regex(lines[0]!, /^layerfs: no permission to talk to the engine at .*engine\.sock \(it belongs to uid 0\)/, args.join(' '));
  }
  t.deepEqual(await mounted(e), [a.mnt], 'nothing changed');
  t.false(isMounted(b.mnt));
});

/** A raw HTTP exchange on the socket (for requests no well-behaved client sends). */
function raw(socket: string, text: string | Buffer): Promise<{ http: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    const chunks: Buffer[] = [];
    c.on('connect', () => c.write(text)); // no half-close: the server answers, then closes (Connection: close)
    c.on('data', (d) => chunks.push(d));
    c.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'EPIPE' || (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
    c.on('close', () => {
      const s = Buffer.concat(chunks).toString('utf8');
      const m = /^HTTP\/1\.1 (\d+)/.exec(s);
      const body = s.slice(s.indexOf('\r\n\r\n') + 4);
      try {
        resolve({ http: m ? Number(m[1]) : 0, body: JSON.parse(body) as Record<string, unknown> });
      } catch {
        reject(new Error(`not a JSON answer to ${String(text).slice(0, 60)}: ${JSON.stringify(s)}`));
      }
    });
  });
}

const post = (p: string, body: string) =>
  `POST ${p} HTTP/1.1\r\nHost: layerfs\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;

test('malformed API requests: JSON errors with the exit status, nothing changed', async (t) => {
  const e = testEngine(t);
  const a = layers(t, 'a');
  t.is((await e.layerfs(['mount', '-o', a.opts, a.mnt])).code, 0);
  // [what, request, HTTP status, message, exit status]
  const cases: [string, string | Buffer, number, RegExp, number][] = [
    ['not JSON', post('/v1/mounts', '{"mountpoint":'), 400, /^the request body is not JSON/, 2],
    ['not an object', post('/v1/cli', '[1,2]'), 400, /^the request body must be a JSON object$/, 2],
    ['argv not strings', post('/v1/cli', '{"argv":[1],"cwd":"/"}'), 400, /^'argv' must be an array of strings$/, 2],
    ['relative cwd', post('/v1/cli', '{"argv":["umount","x"],"cwd":"tmp"}'), 400, /^'cwd' must be an absolute path$/, 2],
    ['NUL in a path', post('/v1/mounts', JSON.stringify({ mountpoint: '/x\0y', options: 'lowerdir=/' })), 400, /NUL/, 2],
    ['bad mount options', post('/v1/mounts', JSON.stringify({ mountpoint: a.mnt, options: 'lowerdir=/nonexistent-layer' })), 400, /^layerfs: lowerdir '\/nonexistent-layer' does not exist$/, 2],
    ['mount over a mount', post('/v1/mounts', JSON.stringify({ mountpoint: a.mnt, options: a.opts })), 400, /already a mount point|already/, 2],
    ['unknown mount', `DELETE /v1/mounts/0123456789abcdef HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 404, /no mount '0123456789abcdef'/, 1],
    ['unknown route', `GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 404, /^no such API route: GET \/v1\/nothing$/, 2],
    ['wrong method', `PUT /v1/mounts HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, 405, /^PUT is not allowed on \/v1\/mounts \(allowed: GET, POST\)$/, 2],
    ['bad query', post('/v1/engine/stop?force=maybe', ''), 400, /^query parameter 'force' must be true or false/, 2],
    ['too large', post('/v1/cli', JSON.stringify({ argv: ['x'.repeat(1_100_000)], cwd: '/' })), 413, /larger than 1048576 bytes/, 2],
  ];
  for (const [what, req, http, msg, status] of cases) {
    const r = await raw(e.socket, req);
    t.is(r.http, http, what);
    t.regex(String(r.body.message), msg, what);
    t.is(r.body.status, status, `${what}: the exit status`);
  }
  t.deepEqual(await mounted(e), [a.mnt], 'nothing changed');
  t.is(fs.readFileSync(path.join(a.mnt, 'f'), 'utf8'), 'lower\n');
  t.true(processAlive(e.pid()!));
});
