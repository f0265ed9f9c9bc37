// The native front of the command (native/client/client.c, built into
// build/Release/layerfs_client; bin/layerfs execs it) against a fake engine: a unix socket in a
// temporary LAYERFS_ENGINE_DIR that records what the client sends and answers what each test
// scripts. The request's exact form, the answer reproduced (stdout and stderr bytes, the exit
// status), errors, the fall-backs to the Node CLI (no engine, {"fallback": true}, an argument that
// is not UTF-8) and the answers that are lost, which must never run node. Nothing here mounts.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot } from '../helpers/mounts.ts';

const client = path.join(repoRoot, 'build', 'Release', 'layerfs_client');
const script = path.join(repoRoot, 'bin', 'layerfs');
const mjs = path.join(repoRoot, 'bin', 'layerfs.mjs');

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs cmd to its end (SIGKILL after 30 s), in the given cwd, with LC_ALL=C and env added. */
function exec(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; uid?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, LC_ALL: 'C', LAYERFS_ENGINE_DIR: undefined, ...opts.env };
    const ids = opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid };
    const child = spawn(cmd, args, { cwd: opts.cwd, env, ...ids, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000, killSignal: 'SIGKILL' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** What the engine does with one connection, once the request is read (or the client ended). */
type Answer = (sock: net.Socket) => void;

interface Engine {
  dir: string;
  /** Every request received in full, as bytes. */
  requests: Buffer[];
  connections: number;
}

/** A fake engine in a fresh directory, answering every request with `answer`; all gone at teardown. */
async function fakeEngine(t: ExecutionContext, answer: Answer): Promise<Engine> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-test-client-'));
  const engine: Engine = { dir, requests: [], connections: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    engine.connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {}); // EPIPE, ECONNRESET: a client that stopped reading
    let got = Buffer.alloc(0);
    let answered = false;
    const reply = () => {
      if (answered) return;
      answered = true;
      answer(sock);
    };
    sock.on('data', (b: Buffer) => {
      got = Buffer.concat([got, b]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = /^content-length: *(\d+)\r?$/im.exec(got.subarray(0, end).toString('latin1'));
      if (got.length < end + 4 + Number(length?.[1] ?? 0)) return;
      engine.requests.push(got);
      reply();
    });
    sock.on('end', reply);
  });
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path.join(dir, 'engine.sock'), resolve);
  });
  return engine;
}

/** An answer of these bytes, then the end of the connection. */
const raw =
  (bytes: string | Buffer): Answer =>
  (sock) =>
    sock.end(bytes);

/** An HTTP answer with this status and JSON body text (written as given), with Content-Length. */
function http(code: number, body: string): Answer {
  const b = Buffer.from(body);
  return raw(Buffer.concat([Buffer.from(`HTTP/1.1 ${code} X\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n`), b]));
}

/** The client with the engine of `engine` (or any directory). */
function layerfsClient(dir: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Ran> {
  return exec(client, args, { cwd: opts.cwd, env: { LAYERFS_ENGINE_DIR: dir, ...opts.env } });
}

/** What the Node CLI itself prints for args. */
async function nodeCli(args: string[]): Promise<Ran> {
  return exec(process.execPath, [mjs, ...args]);
}

const LOST = /^layerfs: lost the engine's answer \([^\n]+\)\n$/;

test.before('the client is built', (t) => {
  t.true(fs.existsSync(client), `${client} is missing: build it with node-gyp rebuild (npm run install)`);
});

// ------------------------------------------------------------------------------- the request

test('the request: POST /v1/cli, its headers, argv and cwd as JSON (quotes, backslashes, control characters, UTF-8)', async (t) => {
  const e = await fakeEngine(t, http(200, '{"status":0,"stdout":"","stderr":""}'));
  const args = [
    '-o', 'lowerdir=/a\\,b:/c,upperdir="/u p"', '/mnt', 'new\nline', 'tab\there\r', '', 'ünïcødé ©∑ 😀',
    '\u0001\u001f\u007f', 'back\\slash\\', '"', '\\u0041', '--', 'x'.repeat(10_000),
  ];
  const cwd = fs.realpathSync(e.dir);
  const r = await layerfsClient(e.dir, args, { cwd });
  t.is(r.code, 0, r.stderr);
  t.is(e.connections, 1);
  t.is(e.requests.length, 1);
  const req = e.requests[0]!;
  const end = req.indexOf('\r\n\r\n');
  const head = req.subarray(0, end).toString('latin1').split('\r\n');
  const body = req.subarray(end + 4);
  t.deepEqual(head, [
    'POST /v1/cli HTTP/1.1',
    'Host: layerfs',
    'Content-Type: application/json',
    `Content-Length: ${body.length}`,
    'Connection: close',
  ]);
  t.false(body.some((c) => c < 0x20), 'control characters are escaped');
  t.deepEqual(JSON.parse(body.toString('utf8')), { argv: args, cwd });
  t.true(body.toString('utf8').includes('"ünïcødé ©∑ 😀"'), 'UTF-8 is sent as it is');
});

test('no arguments: an empty argv', async (t) => {
  const e = await fakeEngine(t, http(200, '{}'));
  const r = await layerfsClient(e.dir, [], { cwd: '/' });
  t.is(r.code, 0, r.stderr);
  const req = e.requests[0]!;
  t.deepEqual(JSON.parse(req.subarray(req.indexOf('\r\n\r\n') + 4).toString()), { argv: [], cwd: '/' });
});

test('bin/layerfs runs the client, with an empty PATH and through a symlink', async (t) => {
  const e = await fakeEngine(t, http(200, '{"stdout":"from the engine\\n"}'));
  const link = path.join(e.dir, 'layerfs');
  fs.symlinkSync(script, link);
  for (const cmd of [script, link]) {
    const r = await exec(cmd, ['src', '/mnt', '-o', 'rw'], { env: { PATH: '', LAYERFS_ENGINE_DIR: e.dir } });
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout.toString(), 'from the engine\n');
  }
  t.is(e.requests.length, 2);
  const req = e.requests[1]!;
  t.deepEqual(JSON.parse(req.subarray(req.indexOf('\r\n\r\n') + 4).toString()).argv, ['src', '/mnt', '-o', 'rw']);
});

(process.getuid?.() === 0 ? test : test.skip)('not root: the engine in $XDG_RUNTIME_DIR/layerfs (an empty LAYERFS_ENGINE_DIR is no directory)', async (t) => {
  const e = await fakeEngine(t, http(200, '{"stdout":"xdg"}'));
  fs.chmodSync(e.dir, 0o755);
  fs.chmodSync(path.join(e.dir, 'engine.sock'), 0o777);
  const xdg = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-test-client-'));
  t.teardown(() => fs.rmSync(xdg, { recursive: true, force: true }));
  fs.chmodSync(xdg, 0o755);
  fs.symlinkSync(e.dir, path.join(xdg, 'layerfs'));
  const r = await exec(client, ['x'], { uid: 65534, cwd: '/', env: { XDG_RUNTIME_DIR: xdg, LAYERFS_ENGINE_DIR: '' } });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.toString(), 'xdg');
  t.is(e.requests.length, 1);
});

// ------------------------------------------------------------------------------- the answer

test('a 2xx answer: stdout and stderr bytes as given (escapes, surrogate pairs), the exit status', async (t) => {
  const body =
    '{ "extra": {"nested": [1, -2.5e+3, true, false, null, {"a": "b\\"}"}, []]}, "status" : 3,' +
    ' "stdout": "a\\u00e9\\ud83d\\ude00\\n\\t\\"q\\\\\\/ raw é😀 \\b\\f\\r",' +
    ' "stderr": "warn\\u0000x\\uD834\\uDD1E lone \\ud800 end", "message": "ignored on 2xx", "fallback": false }\n';
  const e = await fakeEngine(t, http(201, body));
  const r = await layerfsClient(e.dir, ['version']);
  t.is(r.code, 3);
  t.deepEqual(r.stdout, Buffer.from('aé😀\n\t"q\\/ raw é😀 \b\f\r'));
  t.is(r.stderr, 'warn\u0000x𝄞 lone \ufffd end');
});

test('a 2xx answer without status exits 0; the status is clamped to 0..255', async (t) => {
  const cases: [string, number][] = [
    ['{}', 0],
    ['{"status":null}', 0],
    ['{"status":255}', 255],
    ['{"status":256}', 255],
    ['{"status":100000000000000000000000}', 255],
    ['{"status":-1}', 0],
    ['{"status":42}', 42],
  ];
  for (const [body, code] of cases) {
    const e = await fakeEngine(t, http(200, body));
    const r = await layerfsClient(e.dir, ['x']);
    t.is(r.code, code, body);
    t.is(r.stdout.length, 0, body);
    t.is(r.stderr, '', body);
  }
});

test('an answer without Content-Length, in pieces, is read to its end', async (t) => {
  const e = await fakeEngine(t, (sock) => {
    const parts = ['HTTP/1.1 200 OK\r\n', 'Content-Type: application/json\r\n\r\n{"stdout":"o', 'ne\\n", "sta', 'tus": 7}'];
    const next = () => {
      const p = parts.shift();
      if (p === undefined) sock.end();
      else sock.write(p, () => setTimeout(next, 20));
    };
    next();
  });
  const r = await layerfsClient(e.dir, ['x']);
  t.is(r.code, 7, r.stderr);
  t.is(r.stdout.toString(), 'one\n');
});

test('an error answer: the message on stderr, its status (else 1); no message: the HTTP code', async (t) => {
  let e = await fakeEngine(t, http(409, '{"message":"layerfs umount: /m is busy","status":32,"stdout":"not printed"}'));
  let r = await layerfsClient(e.dir, ['umount', '/m']);
  t.is(r.code, 32);
  t.is(r.stdout.length, 0);
  t.is(r.stderr, 'layerfs umount: /m is busy\n');

  e = await fakeEngine(t, http(400, '{"message":"\'cwd\' must be an absolute path \\u2014 sorry"}'));
  r = await layerfsClient(e.dir, ['x']);
  t.is(r.code, 1);
  t.is(r.stderr, "'cwd' must be an absolute path — sorry\n");

  e = await fakeEngine(t, http(503, '{"status":9}'));
  r = await layerfsClient(e.dir, ['x']);
  t.is(r.code, 9);
  t.is(r.stderr, 'layerfs: the engine answered HTTP 503\n');

  e = await fakeEngine(t, http(500, ''));
  r = await layerfsClient(e.dir, ['x']);
  t.is(r.code, 1);
  t.is(r.stderr, 'layerfs: the engine answered HTTP 500\n');
});

// ------------------------------------------------------------------------------- node instead

test('{"fallback": true}: the Node CLI runs the command (--help, version)', async (t) => {
  const e = await fakeEngine(t, http(200, '{"fallback":true,"stdout":"not printed","status":5}'));
  for (const args of [['--help'], ['version']]) {
    const want = await nodeCli(args);
    t.is(want.code, 0, want.stderr);
    t.true(want.stdout.length > 0);
    const r = await layerfsClient(e.dir, args);
    t.is(r.code, want.code, r.stderr);
    t.is(r.stdout.toString(), want.stdout.toString(), args.join(' '));
    t.is(r.stderr, want.stderr);
  }
  const forwarded = e.requests.filter((b) => b.toString('latin1').startsWith('POST /v1/cli '));
  t.deepEqual(
    forwarded.map((b) => JSON.parse(b.subarray(b.indexOf('\r\n\r\n') + 4).toString()).argv),
    [['--help'], ['version']],
  );
});

test('no engine (no socket, a dead socket, not a socket, a path too long): the Node CLI, nothing printed of its own', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-test-client-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const want = await nodeCli(['--help']);
  t.is(want.code, 0, want.stderr);

  const dead = path.join(dir, 'dead');
  const notSock = path.join(dir, 'file');
  fs.mkdirSync(dead);
  fs.mkdirSync(notSock);
  fs.writeFileSync(path.join(notSock, 'engine.sock'), '');
  // A socket nobody listens on: a hard link to a listening one outlives it (connect: ECONNREFUSED).
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path.join(dir, 'live.sock'), resolve));
  fs.linkSync(path.join(dir, 'live.sock'), path.join(dead, 'engine.sock'));
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const long = path.join(dir, 'd'.repeat(120));

  for (const engineDir of [path.join(dir, 'nothing'), dead, notSock, long]) {
    const r = await layerfsClient(engineDir, ['--help']);
    t.is(r.code, 0, `${engineDir}: ${r.stderr}`);
    t.is(r.stdout.toString(), want.stdout.toString(), engineDir);
    t.is(r.stderr, '', engineDir);
  }
});

test('LAYERFS_NODE names node; R/bin/layerfs.mjs is found from the binary; argv[0] does not matter', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-test-client-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const echo = fs.existsSync('/usr/bin/echo') ? '/usr/bin/echo' : '/bin/echo';
  const r = await layerfsClient(dir, ['a b', '-o', 'c'], { env: { LAYERFS_NODE: echo } });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.toString(), `-- ${mjs} a b -o c\n`);
  // Called as mount.fuse3 would (another argv[0]) and through bin/layerfs: the same.
  const s = await exec('/bin/bash', ['-c', 'exec -a mount.fuse.layerfs "$0" "$@"', client, 'x'], { env: { LAYERFS_NODE: echo, LAYERFS_ENGINE_DIR: dir } });
  t.is(s.stdout.toString(), `-- ${mjs} x\n`, s.stderr);
  const b = await exec(script, ['y'], { env: { LAYERFS_NODE: echo, LAYERFS_ENGINE_DIR: dir, PATH: '' } });
  t.is(b.stdout.toString(), `-- ${mjs} y\n`, b.stderr);

  const bad = await layerfsClient(dir, ['--help'], { env: { LAYERFS_NODE: path.join(dir, 'no-node') } });
  t.is(bad.code, 127);
  t.is(bad.stdout.length, 0);
  t.is(bad.stderr, 'layerfs: cannot start node (No such file or directory)\n');
});

test('an argument that is not UTF-8: the Node CLI, without a word to the engine', async (t) => {
  const e = await fakeEngine(t, http(200, '{"stdout":"engine"}'));
  const echo = fs.existsSync('/usr/bin/echo') ? '/usr/bin/echo' : '/bin/echo';
  // The byte 0xff (and an overlong '/', and a UTF-16 surrogate) through a shell: Node's spawn only passes UTF-8.
  for (const bytes of ['a\\377b', '\\300\\257', '\\355\\240\\200']) {
    const r = await exec('/bin/sh', ['-c', `exec "$0" "$(printf '${bytes}')"`, client], { env: { LAYERFS_ENGINE_DIR: e.dir, LAYERFS_NODE: echo } });
    t.is(r.code, 0, r.stderr);
    t.true(r.stdout.toString('latin1').startsWith(`-- ${mjs} `), `${bytes}: ${r.stdout.toString('latin1')}`);
  }
  t.is(e.connections, 0);
  // The same arguments in UTF-8 do go to the engine.
  const ok = await layerfsClient(e.dir, ['aÿb'], { env: { LAYERFS_NODE: echo } });
  t.is(ok.stdout.toString(), 'engine');
  t.is(e.connections, 1);
});

test('a command line over 1 MiB: the Node CLI, without a word to the engine', async (t) => {
  const e = await fakeEngine(t, http(200, '{"stdout":"engine"}'));
  const echo = fs.existsSync('/usr/bin/echo') ? '/usr/bin/echo' : '/bin/echo';
  const args = Array.from({ length: 9 }, () => 'x'.repeat(120_000)); // 1.08 MB; each under MAX_ARG_STRLEN
  const r = await layerfsClient(e.dir, args, { env: { LAYERFS_NODE: echo } });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.toString(), `-- ${mjs} ${args.join(' ')}\n`);
  t.is(e.connections, 0);
  const under = await layerfsClient(e.dir, args.slice(0, 8), { env: { LAYERFS_NODE: echo } });
  t.is(under.stdout.toString(), 'engine');
  t.is(e.connections, 1);
});

// ------------------------------------------------------------------------------- lost answers

test('an answer that cannot be read: the lost-answer line, exit 1, never node', async (t) => {
  const cases: [string, Answer, RegExp][] = [
    ['closed without an answer', (sock) => sock.end(), /the connection closed without an answer/],
    ['destroyed mid-answer', (sock) => sock.write('HTTP/1.1 200 OK\r\nContent-', () => sock.destroy()), /the header is incomplete/],
    ['garbage', raw('hello there\r\n\r\n'), /not an HTTP\/1 status line/],
    ['no end of the header', raw('HTTP/1.1 200 OK\r\nContent-Length: 2'), /the header is incomplete/],
    ['a body shorter than its Content-Length', raw('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}'), /ended 98 bytes short/],
    ['not JSON', http(200, '{"stdout": "unterminated}'), /malformed JSON/],
    ['not an object', http(200, '["stdout"]'), /malformed JSON/],
    ['a 2xx without a body', http(200, ''), /malformed JSON/],
    ['trailing data', http(200, '{} {}'), /malformed JSON/],
    ['a raw newline in a string', http(200, '{"stdout": "a\nb"}'), /malformed JSON/],
    ['a bad escape', http(200, '{"stdout": "\\x41"}'), /malformed JSON/],
    ['nesting too deep', http(200, `{"x": ${'['.repeat(100)}${']'.repeat(100)}}`), /malformed JSON/],
    ['a status that is no integer', http(200, '{"status": 1.5}'), /"status" is not an integer/],
    ['a stdout that is no string', http(200, '{"stdout": 5}'), /"stdout" is not a string/],
    ['a status that is a string', http(200, '{"status": "3"}'), /"status" is not an integer/],
    ['a bad number', http(200, '{"status": 01}'), /malformed JSON/],
    ['a fallback that is no boolean', http(200, '{"fallback": 1}'), /"fallback" is not true or false/],
    ['chunked', raw('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n'), /Transfer-Encoding/],
  ];
  const echo = fs.existsSync('/usr/bin/echo') ? '/usr/bin/echo' : '/bin/echo';
  for (const [what, answer, reason] of cases) {
    const e = await fakeEngine(t, answer);
    const r = await layerfsClient(e.dir, ['mount', '/m'], { env: { LAYERFS_NODE: echo } });
    t.is(r.code, 1, what);
    t.is(r.stdout.length, 0, `${what}: node ran`);
    t.regex(r.stderr, LOST, what);
    t.regex(r.stderr, reason, what);
    t.is(e.requests.length, 1, what);
  }
});

test('an answer over 16 MiB: the lost-answer line, exit 1', async (t) => {
  const e = await fakeEngine(t, (sock) => {
    sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"stdout":"');
    sock.end(Buffer.alloc(17 << 20, 'a'));
  });
  const r = await layerfsClient(e.dir, ['x']);
  t.is(r.code, 1);
  t.is(r.stdout.length, 0);
  t.regex(r.stderr, LOST);
  t.regex(r.stderr, /larger than 16 MiB/);
});

test('an answer just under 16 MiB is reproduced', async (t) => {
  const text = 'b'.repeat((16 << 20) - 200);
  const e = await fakeEngine(t, http(200, `{"stdout":"${text}"}`));
  const r = await layerfsClient(e.dir, ['x']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.length, text.length);
  t.true(r.stdout.every((c) => c === 0x62));
});
