// `layerfs explain` and `layerfs trace` through real mounts: every verdict explain gives (from
// the layer directories of a running mount), its JSON shape and errors; the trace file and the
// live trace socket, with the events of copy-up, whiteout, opaque directory and lookup.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from './helpers/exec.ts';
import { isMounted, layerfsBin, makeTmp, mountFor, removeTmp, unmount } from './helpers/mounts.ts';
import { stateFile } from '../src/engine/state.ts';
import { ConfigError, parseMountArgs } from '../src/config.ts';

async function layerfs(args: string[], cwd?: string) {
  const r = await run(layerfsBin, args, { viaFiles: true, timeoutMs: 60_000, cwd });
  return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
}

async function explain(mnt: string, p: string, json = false) {
  const r = await layerfs(['explain', ...(json ? ['--json'] : []), mnt, p]);
  return { ...r, json: json && r.stdout ? (JSON.parse(r.stdout) as Explained) : undefined };
}

interface LayerJson {
  name: string;
  dir: string;
  has: string;
  verdict: string;
  by: { layer: string; path: string; why: string } | null;
  whiteout: string | null;
  opaque: boolean;
  blockedAt: { path: string; has: string } | null;
  target: string | null;
}
interface LevelJson {
  path: string;
  exists: boolean;
  type: string | null;
  layer: string | null;
  copiedUp: boolean;
  merged: boolean;
  mergedFrom: string[];
  missing: { why: string; layer: string | null; path: string; type?: string } | null;
  layers: LayerJson[];
}
interface Explained extends LevelJson {
  version: number;
  mountpoint: string;
  along: LevelJson[];
  text: string[];
}

function verdicts(x: LevelJson): Record<string, string> {
  return Object.fromEntries(x.layers.map((l) => [l.name, l.verdict]));
}

// ------------------------------------------------------------------------------ explain

/**
 * One mount for every explain case (explain only reads): two lowers, and an upper shaped by
 * operations through the mount (copy-up, whiteout, opaque directory, a new file). Unmounted in
 * after.always, whatever happens.
 */
interface Fixture {
  dir: string;
  mnt: string;
  upper: string;
  l1: string;
  l2: string;
  outside: string;
}
let fx: Fixture | undefined;
let fxError: unknown;
const fxDirs: string[] = [];

test.before(async () => {
  const dir = makeTmp(undefined, 'layerfs-explain-');
  fxDirs.push(dir);
  const d = (p: string) => path.join(dir, p);
  const f: Fixture = { dir, mnt: d('mnt'), upper: d('upper'), l1: d('l1'), l2: d('l2'), outside: d('outside') };
  for (const p of ['l1/etc', 'l2/etc', 'l2/data/old', 'l2/shadow', 'upper', 'work', 'mnt', 'outside']) fs.mkdirSync(d(p), { recursive: true });
  const w = (p: string, s: string) => fs.writeFileSync(d(p), s);
  w('l1/etc/motd', 'motd from l1\n');
  w('l2/etc/motd', 'motd from l2\n');
  w('l1/etc/issue', 'issue l1\n');
  w('l2/etc/issue', 'issue l2\n');
  w('l2/etc/hosts', 'hosts\n');
  w('l2/etc/gone', 'gone\n');
  w('l1/etc/.wh.gone', ''); // an OCI whiteout in a lower
  w('l2/data/old/f', 'old\n');
  w('l2/only-l2', 'only\n');
  w('l1/shadow', 'a file over a directory\n');
  w('l2/shadow/inner', 'inner\n');
  w('outside/secret', 'host file\n');
  fs.symlinkSync(f.outside, d('l1/link')); // a planted symlink out of the layer
  try {
    await mountFor({ teardown: () => {} }, 'layerfs', { lowers: [f.l1, f.l2], upper: f.upper, work: d('work'), mnt: f.mnt });
    const m = (p: string) => path.join(f.mnt, p);
    fs.appendFileSync(m('etc/motd'), 'changed\n'); // copy-up
    fs.rmSync(m('etc/hosts')); // whiteout
    fs.rmSync(m('data/old'), { recursive: true }); // whiteouts…
    fs.mkdirSync(m('data/old')); // …and an opaque directory over them
    fs.writeFileSync(m('newfile'), 'new\n'); // upper only
    fx = f;
  } catch (e) {
    fxError = e;
  }
});

test.after.always(async () => {
  for (const dir of fxDirs) await removeTmp(dir);
});

function fixture(t: ExecutionContext): Fixture {
  if (!fx) t.fail(`the fixture mount failed: ${fxError}`);
  return fx!;
}

test('explain: upper-only file', async (t) => {
  const f = fixture(t);
  const r = await explain(f.mnt, '/newfile', true);
  t.is(r.code, 0, r.stderr);
  const x = r.json!;
  t.like(x, { exists: true, type: 'file', layer: 'upper', copiedUp: false, merged: false, missing: null });
  t.deepEqual(verdicts(x), { upper: 'serves', lower1: 'absent', lower2: 'absent' });
  t.regex(x.text[0]!, /^\/newfile is a file from upper\.$/);
});

test('explain: lower-only file', async (t) => {
  const f = fixture(t);
  const r = await explain(f.mnt, '/only-l2');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^\/only-l2 is a file from lower2\.\n/);
  t.regex(r.stdout, /lower2 +serves +a file/);
});

test('explain: a lower file shadowing another', async (t) => {
  const f = fixture(t);
  const r = await explain(f.mnt, '/etc/issue', true);
  t.is(r.code, 0, r.stderr);
  const x = r.json!;
  t.like(x, { layer: 'lower1', copiedUp: false });
  t.deepEqual(verdicts(x), { upper: 'absent', lower1: 'serves', lower2: 'shadowed' });
  t.deepEqual(x.layers[2]!.by, { layer: 'lower1', path: '/etc/issue', why: 'shadow' });
  t.regex(x.text[0]!, /it shadows lower2's/);
});

test('explain: a copied-up file', async (t) => {
  const f = fixture(t);
  const r = await explain(f.mnt, '/etc/motd', true);
  t.is(r.code, 0, r.stderr);
  const x = r.json!;
  t.like(x, { exists: true, layer: 'upper', copiedUp: true });
  t.deepEqual(verdicts(x), { upper: 'serves', lower1: 'shadowed', lower2: 'shadowed' });
  t.regex(x.text[0]!, /copied up: lower1 and lower2 have it too/);
  // the ancestor is a merged directory, and the walk says so
  t.deepEqual(x.along.map((a) => a.path), ['/', '/etc']);
  t.like(x.along[1], { merged: true, mergedFrom: ['upper', 'lower1', 'lower2'] });
});

test('explain: hidden by a whiteout in the upper (exit 1, and why)', async (t) => {
  const f = fixture(t);
  const r = await explain(f.mnt, '/etc/hosts', true);
  t.is(r.code, 1);
  const x = r.json!;
  t.like(x, { exists: false, type: null, layer: null, missing: { why: 'whiteout', layer: 'upper', path: '/etc/hosts' } });
  t.like(x.layers[0], { has: 'whiteout', whiteout: 'chardev', verdict: 'whiteout' });
  t.like(x.layers[2], { has: 'file', verdict: 'hidden', by: { layer: 'upper', path: '/etc/hosts', why: 'whiteout' } });
  const text = await explain(f.mnt, '/etc/hosts');
  t.regex(text.stdout, /^\/etc\/hosts does not exist: it is hidden by a whiteout in upper, which hides lower2's copy\./);
});

test('explain: hidden by an OCI whiteout in a lower', async (t) => {
  const f = fixture(t);
  const r = await explain(f.mnt, '/etc/gone', true);
  t.is(r.code, 1);
  t.like(r.json!, { missing: { why: 'whiteout', layer: 'lower1', path: '/etc/gone' } });
  t.like(r.json!.layers[1], { has: 'whiteout', whiteout: 'oci', verdict: 'whiteout' });
  t.like(r.json!.layers[2], { verdict: 'hidden' });
});

test('explain: an opaque directory, and what it hides below itself', async (t) => {
  const f = fixture(t);
  const d = await explain(f.mnt, '/data/old', true);
  t.is(d.code, 0, d.stderr);
  t.like(d.json!, { layer: 'upper', merged: false, mergedFrom: ['upper'], copiedUp: false });
  t.like(d.json!.layers[0], { opaque: true, verdict: 'serves' });
  t.like(d.json!.layers[2], { has: 'dir', verdict: 'hidden', by: { layer: 'upper', path: '/data/old', why: 'opaque' } });
  t.regex(d.json!.text[0]!, /opaque in upper, which hides lower2's directory/);
  const r = await explain(f.mnt, '/data/old/f', true);
  t.is(r.code, 1);
  t.like(r.json!, { missing: { why: 'opaque', layer: 'upper', path: '/data/old' } });
  t.like(r.json!.layers[2], { has: 'file', verdict: 'hidden', by: { why: 'opaque', path: '/data/old' } });
  t.regex(r.json!.text[0]!, /hidden by the opaque directory \/data\/old in upper/);
});

test('explain: a merged directory names its layers', async (t) => {
  const f = fixture(t);
  const r = await explain(f.mnt, '/etc', true);
  t.is(r.code, 0, r.stderr);
  t.like(r.json!, { type: 'dir', merged: true, mergedFrom: ['upper', 'lower1', 'lower2'], copiedUp: true });
  t.deepEqual(verdicts(r.json!), { upper: 'serves', lower1: 'merged', lower2: 'merged' });
  t.regex(r.json!.text[0]!, /^\/etc is a merged directory: upper, lower1 and lower2 contribute/);
});

test('explain: missing everywhere, and below a non-directory', async (t) => {
  const f = fixture(t);
  const r = await explain(f.mnt, '/nope', true);
  t.is(r.code, 1);
  t.like(r.json!, { missing: { why: 'nowhere', layer: null, path: '/nope' } });
  t.is(r.json!.text[0], '/nope does not exist: no layer has it.');
  // lower1's file /shadow shadows lower2's directory: lower2's /shadow/inner cannot show
  const s = await explain(f.mnt, '/shadow/inner', true);
  t.is(s.code, 1);
  t.like(s.json!, { missing: { why: 'not-a-directory', layer: 'lower1', path: '/shadow', type: 'file' } });
  t.like(s.json!.layers[2], { has: 'file', verdict: 'hidden', by: { layer: 'lower1', path: '/shadow', why: 'shadow' } });
  t.like(s.json!.along[1]!.layers[2], { has: 'dir', verdict: 'shadowed' });
});

test('explain: a symlink in a layer is reported, never followed', async (t) => {
  const f = fixture(t);
  const l = await explain(f.mnt, '/link', true);
  t.is(l.code, 0, l.stderr);
  t.like(l.json!, { type: 'symlink', layer: 'lower1' });
  t.like(l.json!.layers[1], { has: 'symlink', target: f.outside });
  // outside/secret exists on the host: following the link would find it
  const r = await explain(f.mnt, '/link/secret', true);
  t.is(r.code, 1);
  t.like(r.json!, { exists: false, missing: { why: 'not-a-directory', path: '/link', type: 'symlink' } });
  t.like(r.json!.layers[1], { has: 'nothing', verdict: 'absent', blockedAt: { path: '/link', has: 'symlink' } });
  t.false(r.stdout.includes('host file'));
});

test('explain: PATH under the mount point, relative, or with .. is the same union path', async (t) => {
  const f = fixture(t);
  const a = await explain(f.mnt, '/etc/motd', true);
  for (const p of [path.join(f.mnt, 'etc/motd'), 'etc/motd', '/etc/../etc/./motd', '/etc/motd/']) {
    const b = await explain(f.mnt, p, true);
    t.is(b.code, 0, `${p}: ${b.stderr}`);
    t.deepEqual(b.json, a.json, p);
  }
  const inside = await layerfs(['explain', '--json', f.mnt, 'motd'], path.join(f.mnt, 'etc'));
  t.is(JSON.parse(inside.stdout).path, '/etc/motd');
});

test('explain --json: the documented stable shape', async (t) => {
  const f = fixture(t);
  const r = await explain(f.mnt, '/etc/hosts', true);
  const x = r.json!;
  const levelKeys = ['copiedUp', 'exists', 'layer', 'layers', 'merged', 'mergedFrom', 'missing', 'path', 'type'];
  t.deepEqual(Object.keys(x).sort(), [...levelKeys, 'along', 'mountpoint', 'text', 'version'].sort());
  t.is(x.version, 1);
  t.is(x.mountpoint, f.mnt);
  t.is(x.path, '/etc/hosts');
  for (const a of x.along) t.deepEqual(Object.keys(a).sort(), levelKeys);
  const layerKeys = ['blockedAt', 'by', 'dir', 'has', 'name', 'opaque', 'target', 'verdict', 'whiteout'];
  for (const l of [...x.layers, ...x.along.flatMap((a) => a.layers)]) t.deepEqual(Object.keys(l).sort(), layerKeys);
  t.deepEqual(x.layers.map((l) => [l.name, l.dir]), [['upper', f.upper], ['lower1', f.l1], ['lower2', f.l2]]);
  t.true(x.text.every((s) => typeof s === 'string'));
});

test('explain: not a layerfs mount, nothing mounted, bad arguments', async (t) => {
  const dir = makeTmp(t);
  const plain = await layerfs(['explain', dir, '/x']);
  t.is(plain.code, 3);
  t.is(plain.stderr, `layerfs explain: '${dir}' is not a layerfs mount (nothing is mounted there)\n`);
  const proc = await layerfs(['explain', '/proc', '/x']);
  t.is(proc.code, 3);
  t.is(proc.stderr, "layerfs explain: '/proc' is not a layerfs mount (it is proc)\n");
  const usage = await layerfs(['explain', dir]);
  t.is(usage.code, 2);
  t.is(usage.stderr.trimEnd().split('\n').length, 1);
  const bad = await layerfs(['explain', '--yaml', dir, '/x']);
  t.is(bad.code, 2);
});

test('explain: a userxattr mount (user.overlay.opaque) and a read-only mount', async (t) => {
  const dir = makeTmp(t, 'layerfs-explain-');
  const d = (p: string) => path.join(dir, p);
  for (const p of ['l1/d', 'upper', 'work', 'mnt', 'ro']) fs.mkdirSync(d(p), { recursive: true });
  fs.writeFileSync(d('l1/d/f'), 'f\n');
  await mountFor(t, 'layerfs', { lowers: [d('l1')], upper: d('upper'), work: d('work'), mnt: d('mnt'), options: ['userxattr'] });
  fs.rmSync(d('mnt/d'), { recursive: true });
  fs.mkdirSync(d('mnt/d'));
  const r = await explain(d('mnt'), '/d/f', true);
  t.is(r.code, 1, r.stdout + r.stderr);
  t.like(r.json!, { missing: { why: 'opaque', layer: 'upper', path: '/d' } });
  await mountFor(t, 'layerfs', { lowers: [d('l1')], mnt: d('ro') });
  const ro = await explain(d('ro'), '/d/f', true);
  t.is(ro.code, 0, ro.stderr);
  t.like(ro.json!, { layer: 'lower1', copiedUp: false });
  t.deepEqual(ro.json!.layers.map((l) => l.name), ['lower1']);
});

// ------------------------------------------------------------------------------ trace

interface TraceEnv {
  dir: string;
  mnt: string;
  l1: string;
  l2: string;
  upper: string;
  trace: string;
}

/** Two lowers with a 1000-byte file, a lower-only file and a lower directory; mounted. */
async function traceMount(t: ExecutionContext, opts: { form: 'flag' | 'option' | 'none' }): Promise<TraceEnv> {
  const dir = makeTmp(t, 'layerfs-trace-');
  const d = (p: string) => path.join(dir, p);
  for (const p of ['l1/etc', 'l2/etc', 'l2/dir', 'upper', 'work', 'mnt']) fs.mkdirSync(d(p), { recursive: true });
  fs.writeFileSync(d('l1/etc/big'), 'x'.repeat(1000));
  fs.writeFileSync(d('l2/etc/gone'), 'gone\n');
  fs.writeFileSync(d('l2/lowfile'), 'low\n');
  fs.writeFileSync(d('l2/dir/f'), 'f\n');
  const e: TraceEnv = { dir, mnt: d('mnt'), l1: d('l1'), l2: d('l2'), upper: d('upper'), trace: d('trace.jsonl') };
  const spec = { lowers: [e.l1, e.l2], upper: e.upper, work: d('work'), mnt: e.mnt };
  if (opts.form === 'flag') {
    t.teardown(() => unmount(e.mnt));
    const opt = `lowerdir=${e.l1}:${e.l2},upperdir=${e.upper},workdir=${d('work')}`;
    const r = await layerfs(['mount', '--trace', e.trace, '-o', opt, e.mnt]);
    t.is(r.code, 0, r.stderr);
  } else {
    await mountFor(t, 'layerfs', { ...spec, options: opts.form === 'option' ? [`trace=${e.trace}`] : [] });
  }
  return e;
}

/** The operations every trace test makes, and the events they must produce. */
function operate(e: TraceEnv): void {
  const m = (p: string) => path.join(e.mnt, p);
  t0read(m('lowfile'));
  fs.appendFileSync(m('etc/big'), 'y'); // copy-up of 1000 bytes
  fs.rmSync(m('etc/gone')); // whiteout
  fs.rmSync(m('dir'), { recursive: true }); // whiteouts
  fs.mkdirSync(m('dir')); // opaque
}

function t0read(p: string): void {
  fs.readFileSync(p);
}

type Rec = Record<string, unknown> & { ev: string };

function checkEvents(t: ExecutionContext, recs: Rec[]): void {
  t.like(recs.find((r) => r.ev === 'lookup' && r.path === '/lowfile'), { found: true, type: 'file', layer: 'lower2' });
  const cu = recs.find((r) => r.ev === 'copyup' && r.path === '/etc/big');
  t.like(cu, { type: 'file', from: 'lower1', bytes: 1000 });
  t.is(typeof cu?.ms, 'number');
  t.like(recs.find((r) => r.ev === 'copyup' && r.path === '/etc'), { type: 'dir', bytes: 0 });
  t.like(recs.find((r) => r.ev === 'whiteout' && r.path === '/etc/gone'), { op: 'unlink' });
  t.like(recs.find((r) => r.ev === 'whiteout' && r.path === '/dir'), { op: 'rmdir' });
  t.like(recs.find((r) => r.ev === 'whiteout-removed' && r.path === '/dir'), { op: 'mkdir' });
  t.like(recs.find((r) => r.ev === 'opaque' && r.path === '/dir'), { op: 'mkdir' });
  for (const r of recs.filter((x) => x.ev !== 'hello')) t.regex(String(r.t), /^\d{4}-\d\d-\d\dT/);
}

function readRecs(file: string): Rec[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec);
}

test('trace: mount --trace FILE appends the events as JSON lines', async (t) => {
  const e = await traceMount(t, { form: 'flag' });
  operate(e);
  const recs = readRecs(e.trace);
  t.like(recs[0], { ev: 'hello', mountpoint: e.mnt, layers: [{ name: 'upper', dir: e.upper }, { name: 'lower1', dir: e.l1 }, { name: 'lower2', dir: e.l2 }] });
  checkEvents(t, recs);
  t.is(fs.statSync(e.trace).mode & 0o777, 0o600);
  // layerfs trace FILE prints them in words
  const r = await layerfs(['trace', e.trace]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^copy-up +\/etc\/big: file, 1000 bytes, from lower1 to upper in [\d.]+ ms$/m);
  t.regex(r.stdout, /^whiteout +\/etc\/gone: created in upper \(unlink\)$/m);
  t.regex(r.stdout, /^opaque +\/dir: marked opaque in upper \(mkdir over a whiteout\)$/m);
  t.regex(r.stdout, /^lookup +\/lowfile: file from lower2$/m);
});

test('trace: -o trace=FILE, and a cached lookup is not traced twice', async (t) => {
  const e = await traceMount(t, { form: 'option' });
  operate(e);
  const lookups = () => readRecs(e.trace).filter((r) => r.ev === 'lookup' && r.path === '/lowfile').length;
  t.is(lookups(), 1);
  // the kernel forgets the entry after its 1 s timeout; the union core's cache still has it
  await new Promise((r) => setTimeout(r, 1200));
  t0read(path.join(e.mnt, 'lowfile'));
  t.is(lookups(), 1);
  checkEvents(t, readRecs(e.trace));
});

test('trace: refused when the trace file would be inside the mount or a layer', async (t) => {
  const dir = makeTmp(t);
  for (const p of ['l1', 'mnt']) fs.mkdirSync(path.join(dir, p));
  t.teardown(() => unmount(path.join(dir, 'mnt')));
  for (const where of ['mnt/t.jsonl', 'l1/t.jsonl']) {
    const r = await layerfs(['mount', '--trace', path.join(dir, where), '-o', `lowerdir=${path.join(dir, 'l1')}`, path.join(dir, 'mnt')]);
    t.is(r.code, 2, where);
    t.regex(r.stderr, /^layerfs: trace file '.*' is inside (the )?(mountpoint|lowerdir)/);
    t.false(isMounted(path.join(dir, 'mnt')));
  }
});

test('trace: --trace FILE, --trace=FILE and -o trace=FILE parse to the same request', (t) => {
  const base = ['-o', 'lowerdir=/a', '/m'];
  t.is(parseMountArgs(['--trace', 'x.jsonl', ...base]).trace, 'x.jsonl');
  t.is(parseMountArgs(['--trace=x.jsonl', ...base]).trace, 'x.jsonl');
  t.is(parseMountArgs(['-o', 'lowerdir=/a,trace=x.jsonl', '/m']).trace, 'x.jsonl');
  t.is(parseMountArgs(base).trace, undefined);
  t.throws(() => parseMountArgs(['-o', 'lowerdir=/a,trace=', '/m']), { instanceOf: ConfigError, message: 'layerfs: trace= is empty' });
  t.throws(() => parseMountArgs([...base, '--trace']), { instanceOf: ConfigError });
});

/** `layerfs trace [--json] MNT` as a child; its stdout lines as they come. */
function traceClient(t: ExecutionContext, mnt: string, json: boolean) {
  const child: ChildProcess = spawn(layerfsBin, ['trace', ...(json ? ['--json'] : []), mnt], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  // 'close', not 'exit': only then has everything the child wrote to its pipes arrived.
  const exited = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  return {
    child,
    exited,
    lines: () => out.split('\n').filter(Boolean),
    stderr: () => err,
    async waitFor(pred: (lines: string[]) => boolean, what: string, ms = 20_000) {
      const until = Date.now() + ms;
      while (!pred(out.split('\n').filter(Boolean))) {
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}; got:\n${out}\nstderr: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

test('trace: live over the socket while a client listens; the socket is gone after unmount', async (t) => {
  const e = await traceMount(t, { form: 'none' });
  const sock = stateFile(e.mnt).socket;
  t.is(fs.statSync(sock).mode & 0o777, 0o600);
  t.true(fs.statSync(sock).isSocket());
  const c = traceClient(t, e.mnt, true);
  await c.waitFor((l) => l.some((x) => x.includes('"hello"')), 'hello');
  operate(e);
  await c.waitFor((l) => l.some((x) => x.includes('"opaque"')), 'the opaque event');
  checkEvents(t, c.lines().map((l) => JSON.parse(l) as Rec));
  // a second, human-readable client at the same time
  const h = traceClient(t, e.mnt, false);
  await c.waitFor(() => h.lines().some((x) => x.startsWith('trace of ')), 'the second client');
  fs.writeFileSync(path.join(e.mnt, 'newfile'), 'n');
  await h.waitFor((l) => l.some((x) => /^lookup +\/newfile: file from upper$/.test(x)), 'the lookup line');
  const r = await layerfs(['umount', e.mnt]);
  t.is(r.code, 0, r.stderr);
  t.is(await c.exited, 0);
  t.is(await h.exited, 0);
  t.regex(h.stderr(), /is no longer served/);
  t.false(fs.existsSync(sock), 'socket removed at exit');
});

test('trace: a client that leaves (Ctrl-C) does not disturb the next; cached lookups are not reported again', async (t) => {
  const e = await traceMount(t, { form: 'none' });
  const c = traceClient(t, e.mnt, true);
  await c.waitFor((l) => l.length > 0, 'hello');
  c.child.kill('SIGINT');
  t.is(await c.exited, 0);
  fs.readFileSync(path.join(e.mnt, 'lowfile')); // resolved while nobody listens: no event kept anywhere
  const c2 = traceClient(t, e.mnt, true);
  await c2.waitFor((l) => l.length > 0, 'hello');
  fs.readFileSync(path.join(e.mnt, 'lowfile')); // cached in the core: no event either
  fs.appendFileSync(path.join(e.mnt, 'etc/big'), 'z');
  await c2.waitFor((l) => l.some((x) => x.includes('"copyup"') && x.includes('/etc/big')), 'copy-up');
  t.false(c2.lines().some((x) => x.includes('/lowfile')));
});

test('trace: a daemon that cannot create its socket still mounts, and trace says why it cannot connect', async (t) => {
  const dir = makeTmp(t, 'layerfs-trace-');
  for (const p of ['l1', 'mnt']) fs.mkdirSync(path.join(dir, p));
  const mnt = path.join(dir, 'mnt');
  const sock = stateFile(mnt).socket;
  fs.mkdirSync(path.dirname(sock), { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.join(sock, 'in-the-way'), { recursive: true }); // a non-empty directory where the socket goes
  t.teardown(() => fs.rmSync(sock, { recursive: true, force: true }));
  await mountFor(t, 'layerfs', { lowers: [path.join(dir, 'l1')], mnt });
  const r = await layerfs(['trace', mnt]);
  t.is(r.code, 3);
  t.is(r.stderr, `layerfs trace: the daemon of '${mnt}' has no trace socket (its daemon could not create one, or predates layerfs trace)\n`);
});

test('trace: not a layerfs mount', async (t) => {
  const dir = makeTmp(t);
  const r = await layerfs(['trace', dir]);
  t.is(r.code, 3);
  t.is(r.stderr, `layerfs trace: '${dir}' is not a layerfs mount (nothing is mounted there)\n`);
});
