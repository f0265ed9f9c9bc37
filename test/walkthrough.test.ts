// README's "How a union filesystem works" shows commands and their output: this runs
// scripts/walkthrough.sh (which mounts, and unmounts and removes its temp dir on every exit)
// and checks that each console block of that section is exactly what the script prints today,
// up to what changes from run to run (copy-up durations, digests). So the README cannot go stale.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from './helpers/exec.ts';
import { mountsUnder, repoRoot, unmount } from './helpers/mounts.ts';

const SECTION = '## How a union filesystem works';

/** The ```console blocks of the README section, in order. */
function readmeBlocks(): string[] {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n${SECTION}\n`);
  if (start < 0) throw new Error(`README has no "${SECTION}" section`);
  const rest = readme.slice(start + SECTION.length + 2);
  const end = rest.search(/^## /m);
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/^```console\n([\s\S]*?)^```$/gm)].map((m) => m[1]!.replace(/\n$/, ''));
}

/** The script's output cut at its `==> NAME` lines. */
function scriptBlocks(out: string): { name: string; text: string }[] {
  const blocks: { name: string; text: string }[] = [];
  for (const line of out.replace(/\n$/, '').split('\n')) {
    const m = /^==> (\S+)$/.exec(line);
    if (m) blocks.push({ name: m[1]!, text: '' });
    else if (blocks.length) blocks.at(-1)!.text += (blocks.at(-1)!.text ? '\n' : '') + line;
    else throw new Error(`output before the first block: ${line}`);
  }
  return blocks.map((b) => ({ ...b, text: b.text.replace(/\n+$/, '') }));
}

/** What may change between runs: durations and hex digests. */
function normalise(s: string): string {
  return s.replace(/ in [0-9.]+ ms\b/g, ' in N ms').replace(/\b[0-9a-f]{64}\b/g, '<digest>').replace(/\b[0-9a-f]{12}\b/g, '<id>');
}

test('README walk-through = what scripts/walkthrough.sh prints', async (t) => {
  const before = new Set(mountsUnder('/tmp'));
  t.teardown(async () => {
    // The script cleans up after itself; this is for a script killed by the timeout.
    for (const m of mountsUnder('/tmp')) if (!before.has(m) && m.includes('/layerfs-walk.')) await unmount(m);
  });
  const r = await run('bash', [path.join(repoRoot, 'scripts', 'walkthrough.sh')], { timeoutMs: 240_000, viaFiles: true });
  t.is(r.code, 0, `the script failed: ${r.stderr}\n${r.stdout.toString()}`);
  t.is(r.stderr, '');
  const got = scriptBlocks(r.stdout.toString());
  const want = readmeBlocks();
  t.deepEqual(got.map((b) => b.name), ['layers', 'merge', 'shadow', 'copyup', 'whiteout', 'opaque', 'trace', 'commit']);
  t.is(want.length, got.length, 'one README console block per part of the script');
  for (const [i, b] of got.entries()) t.is(normalise(want[i] ?? ''), normalise(b.text), `README block ${i + 1} (${b.name})`);
  t.deepEqual(mountsUnder('/tmp').filter((m) => m.includes('/layerfs-walk.')), [], 'nothing left mounted');
});

test('the comparison notices a stale README', (t) => {
  const blocks = readmeBlocks();
  t.true(blocks.length > 0);
  // every block shows commands at a root prompt, and the explain outputs are in them
  t.true(blocks.every((b) => b.startsWith('# ')));
  t.true(blocks.some((b) => b.includes('# layerfs explain mnt /etc/motd\n/etc/motd is a file from lower1')));
  // normalisation only hides durations and digests, not words
  t.not(normalise('copy-up /a: file from lower1 in 1.2 ms'), normalise('copy-up /a: file from lower2 in 1.2 ms'));
  t.is(normalise('copy-up /a in 1.2 ms'), normalise('copy-up /a in 33 ms'));
});
