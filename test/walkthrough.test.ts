// The walk-through "How a union filesystem works" (docs/walkthrough.md today; the test finds the
// page that has that heading, in README.md or docs/) shows commands and their output: this runs
// scripts/walkthrough.sh (which types those commands as a reader would, in a shell with nothing
// of the caller's environment, and unmounts and removes its temp dir on every exit) and checks
// that each console block of the section is exactly what the script prints today, up to what
// changes from run to run (copy-up durations, digests). So the page cannot go stale.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from './helpers/exec.ts';
import { mountsUnder, repoRoot, unmount } from './helpers/mounts.ts';

const TITLE = 'How a union filesystem works';

/** README.md and every page of docs/, relative to the repository. */
function pages(): string[] {
  const docs = fs.readdirSync(path.join(repoRoot, 'docs'), { recursive: true, encoding: 'utf8' });
  return ['README.md', ...docs.filter((f) => f.endsWith('.md')).sort().map((f) => path.join('docs', f))];
}

/**
 * The section under the first heading that `title` matches: from there to the next heading of
 * its level or above, outside fenced code (where `# ` starts a command at a root prompt).
 */
function section(md: string, title: RegExp): string | null {
  const lines = md.split('\n');
  let fenced = false;
  let level = 0;
  let start = -1;
  for (const [i, line] of lines.entries()) {
    if (line.startsWith('```')) fenced = !fenced;
    if (fenced) continue;
    const h = /^(#+) (.*)$/.exec(line);
    if (!h) continue;
    if (start < 0 && title.test(h[2]!)) {
      level = h[1]!.length;
      start = i + 1;
    } else if (start >= 0 && h[1]!.length <= level) {
      return lines.slice(start, i).join('\n');
    }
  }
  return start < 0 ? null : lines.slice(start).join('\n');
}

/** The walk-through: the one page (README.md or docs/) with a heading TITLE, and its section. */
function walkthrough(): { page: string; section: string } {
  const found: { page: string; section: string }[] = [];
  for (const page of pages()) {
    const text = section(fs.readFileSync(path.join(repoRoot, page), 'utf8'), new RegExp(`^${TITLE}$`));
    if (text !== null) found.push({ page, section: text });
  }
  if (found.length !== 1) throw new Error(`expected one page with a "${TITLE}" heading, found ${found.length}: ${found.map((f) => f.page).join(', ')}`);
  return found[0]!;
}

/** The ```console blocks of a piece of Markdown, in order. */
function consoleBlocks(md: string): string[] {
  return [...md.matchAll(/^```console\n([\s\S]*?)^```$/gm)].map((m) => m[1]!.replace(/\n$/, ''));
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

/** The README's console blocks under its heading `Explain` (an excerpt of the walk-through). */
function readmeExplainBlocks(): string[] {
  const text = section(fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8'), /^Explain$/);
  return text === null ? [] : consoleBlocks(text);
}

test('the walk-through = what scripts/walkthrough.sh prints, run with only what the text sets', async (t) => {
  const before = new Set(mountsUnder('/tmp'));
  t.teardown(async () => {
    // The script cleans up after itself; this is for a script killed by the timeout.
    for (const m of mountsUnder('/tmp')) if (!before.has(m) && m.includes('/layerfs-walk.')) await unmount(m);
  });
  const { page, section } = walkthrough();
  // Settings the caller may have must not reach the commands: only what the text sets does
  // (were LAYERFS_STORE passed on, `layerfs commit` would fail on this store, or write to the
  // system's if unset, and the text's next command would find nothing).
  const poison = { LAYERFS_STORE: '/nonexistent/layerfs-walk-store', LAYERFS_LOG: '/nonexistent/layerfs-walk.log', LC_ALL: 'C.UTF-8' };
  const r = await run('bash', [path.join(repoRoot, 'scripts', 'walkthrough.sh')], { timeoutMs: 240_000, viaFiles: true, env: poison });
  t.is(r.code, 0, `the script failed: ${r.stderr}\n${r.stdout.toString()}`);
  t.is(r.stderr, '');
  const got = scriptBlocks(r.stdout.toString());
  const want = consoleBlocks(section);
  t.deepEqual(got.map((b) => b.name), ['setup', 'layers', 'merge', 'shadow', 'copyup', 'whiteout', 'opaque', 'trace', 'commit']);
  t.is(want.length, got.length, `one console block of ${page} per part of the script`);
  for (const [i, b] of got.entries()) t.is(normalise(want[i] ?? ''), normalise(b.text), `${page}: console block ${i + 1} (${b.name})`);
  // The README's explain example is copied from the walk-through: it must still be what it prints.
  const all = normalise(got.map((b) => b.text).join('\n'));
  const excerpts = readmeExplainBlocks();
  t.true(excerpts.length > 0, 'README has an "## Explain" section with a console block');
  for (const x of excerpts) t.true(all.includes(normalise(x)), `README's explain example is not what the walk-through prints:\n${x}`);
  t.deepEqual(mountsUnder('/tmp').filter((m) => m.includes('/layerfs-walk.')), [], 'nothing left mounted');
});

test('the comparison notices a stale page', (t) => {
  const { page, section } = walkthrough();
  const blocks = consoleBlocks(section);
  t.true(blocks.length > 0);
  // every block shows commands at a root prompt, and the explain outputs are in them
  t.true(blocks.every((b) => b.startsWith('# ')));
  t.true(blocks.some((b) => b.includes('# layerfs explain mnt /etc/motd\n/etc/motd is a file from lower1')));
  // the text itself sets the store that `layerfs commit` writes to, before it commits
  const text = blocks.join('\n');
  t.regex(text, /^# export LAYERFS_STORE=/m, `${page} must set LAYERFS_STORE itself`);
  t.true(text.indexOf('# export LAYERFS_STORE=') < text.indexOf('# layerfs commit '));
  // the README links the page
  if (page !== 'README.md') t.true(fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8').includes(`(${page})`), `README links ${page}`);
  // normalisation only hides durations and digests, not words
  t.not(normalise('copy-up /a: file from lower1 in 1.2 ms'), normalise('copy-up /a: file from lower2 in 1.2 ms'));
  t.is(normalise('copy-up /a in 1.2 ms'), normalise('copy-up /a in 33 ms'));
});
