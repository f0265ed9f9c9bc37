// The union core's trace events (src/union/events.ts) and explainPath (src/union/explain.ts),
// on plain directories: each event where the decision is made, none while nobody listens, and
// explain's attribution on OCI opaque markers and xattr whiteouts.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import type { CoreEvent } from '../../src/union/events.ts';
import { layerName } from '../../src/union/events.ts';
import { explainPath } from '../../src/union/explain.ts';
import { dir, env, file, ociOpaque, symlink, whiteout } from './_helpers.ts';

test('every kind of event, where the core decides it', async (t) => {
  const e = env(t, 2);
  file(e.lowers[0]!, 'a/f', '12345');
  file(e.lowers[1]!, 'a/g', 'g');
  dir(e.lowers[1]!, 'd');
  file(e.lowers[1]!, 'd/x', 'x');
  file(e.lowers[1]!, 'gone', 'g');
  const u = e.union();
  const evs: CoreEvent[] = [];
  u.setTrace((ev) => evs.push(ev));
  t.like(u.lookup('/a/f'), { layer: 1 });
  const fd = await u.open('/a/f', fs.constants.O_WRONLY);
  await u.release(fd);
  await u.unlink('/d/x');
  await u.rmdir('/d');
  await u.mkdir('/d', 0o755);
  await u.unlink('/gone');
  const h = await u.create('/gone', 0o644, fs.constants.O_WRONLY);
  await u.release(h);
  await u.rename('/a/g', '/a/g2');
  await t.throwsAsync(u.rename('/a', '/b'), { code: 'EXDEV' });
  const kinds = evs.map((ev) => ('op' in ev ? `${ev.ev}:${ev.op}` : ev.ev) + ' ' + ev.path);
  for (const k of [
    'lookup /a', 'lookup /a/f', 'copyup /a', 'copyup /a/f', 'whiteout:unlink /d/x', 'whiteout:rmdir /d',
    'whiteout-removed:mkdir /d', 'opaque:mkdir /d', 'whiteout:unlink /gone', 'whiteout-removed:create /gone',
    'whiteout:rename /a/g', 'exdev /a',
  ]) t.true(kinds.includes(k), `${k} in ${kinds.join(', ')}`);
  t.like(evs.find((ev) => ev.ev === 'copyup' && ev.path === '/a/f'), { type: 'file', fromLayer: 1, bytes: 5 });
  t.like(evs.find((ev) => ev.ev === 'exdev'), { path: '/a', to: '/b' });
  // lookups come from the Resolver's cache misses only
  const n = evs.length;
  u.lookup('/a/f');
  t.is(evs.length, n);
  // and nothing at all once the sink is removed
  u.setTrace(undefined);
  u.resolver.invalidateTree('/');
  u.lookup('/a/f');
  await u.unlink('/a/f');
  t.is(evs.length, n);
});

test('layer names: upper, then lower1 for the top-most lower', (t) => {
  const e = env(t, 2);
  const u = e.union();
  t.deepEqual([0, 1, 2].map((i) => layerName(u.layers, i)), ['upper', 'lower1', 'lower2']);
  const ro = e.union({ upperdir: undefined, workdir: undefined });
  t.deepEqual([0, 1].map((i) => layerName(ro.layers, i)), ['lower1', 'lower2']);
});

test('explainPath: an OCI opaque directory in a lower hides the layers below it', (t) => {
  const e = env(t, 2);
  dir(e.lowers[0]!, 'd');
  ociOpaque(e.lowers[0]!, 'd');
  file(e.lowers[0]!, 'd/mine', 'm');
  file(e.lowers[1]!, 'd/old', 'o');
  const u = e.union();
  const x = explainPath(u.resolver, '/d/old');
  const last = x.levels.at(-1)!;
  t.is(last.entry, null);
  t.like(last.missing, { why: 'opaque', layer: 1, path: '/d' });
  t.like(last.layers[2], { has: 'file', verdict: 'hidden', by: { layer: 1, path: '/d', why: 'opaque' } });
  t.like(x.levels[1]!.layers[1], { has: 'dir', opaque: true, verdict: 'serves' });
});

test('explainPath: a whiteout in the upper, a symlink in a lower (never followed)', (t) => {
  const e = env(t, 1);
  const outside = path.join(e.dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret'), 's');
  symlink(e.lowers[0]!, 'l', outside);
  file(e.lowers[0]!, 'w', 'w');
  whiteout(e.upper, 'w');
  const u = e.union();
  const w = explainPath(u.resolver, '/w').levels.at(-1)!;
  t.like(w, { entry: null, missing: { why: 'whiteout', layer: 0, path: '/w' } });
  t.like(w.layers[0], { has: 'whiteout', whiteout: 'chardev', verdict: 'whiteout' });
  t.like(w.layers[1], { has: 'file', verdict: 'hidden' });
  const s = explainPath(u.resolver, '/l/secret').levels.at(-1)!;
  t.like(s, { entry: null, missing: { why: 'not-a-directory', path: '/l', type: 'symlink' } });
  t.like(s.layers[1], { has: 'nothing', blockedAt: { path: '/l', has: 'symlink' } });
});
