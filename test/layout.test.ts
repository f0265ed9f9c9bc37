// docs/layout.md names every folder of the repository and what lives there. This holds the page
// to the tree: its table's first column must name every top-level source folder — each folder
// directly under src/ and under test/, and bin/, native/, scripts/, bench/, docs/ — and every
// folder it names must exist. A folder added without its row, or removed with its row left
// behind, fails here by name.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './helpers/mounts.ts';

const PAGE = 'docs/layout.md';
const TOP = ['bin', 'native', 'scripts', 'bench', 'docs'];

/** Folders directly under `dir` (relative to the repository), as `dir/name/`. */
function foldersUnder(dir: string): string[] {
  return fs
    .readdirSync(path.join(repoRoot, dir), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => `${dir}/${e.name}/`);
}

/** The top-level source folders of the tree, as `path/`. */
function sourceFolders(): string[] {
  return [...TOP.map((d) => `${d}/`), ...foldersUnder('src'), ...foldersUnder('test')].sort();
}

/** The folders the page's table names: the first column of each row, `path/` in backquotes. */
function namedFolders(md: string): string[] {
  return [...md.matchAll(/^\| `([^`]+\/)` \|/gm)].map((m) => m[1]!);
}

test(`${PAGE} names every top-level source folder`, (t) => {
  const named = new Set(namedFolders(fs.readFileSync(path.join(repoRoot, PAGE), 'utf8')));
  const missing = sourceFolders().filter((d) => !named.has(d));
  t.deepEqual(missing, [], `${PAGE} does not describe: ${missing.join(', ')} (add a row for each)`);
});

test(`every folder ${PAGE} names exists`, (t) => {
  const named = namedFolders(fs.readFileSync(path.join(repoRoot, PAGE), 'utf8'));
  t.true(named.length > 0, `${PAGE} has no table of folders`);
  const gone = named.filter((d) => !fs.statSync(path.join(repoRoot, d), { throwIfNoEntry: false })?.isDirectory());
  t.deepEqual(gone, [], `${PAGE} names folders that do not exist: ${gone.join(', ')}`);
  const twice = named.filter((d, i) => named.indexOf(d) !== i);
  t.deepEqual(twice, [], `${PAGE} names folders twice: ${twice.join(', ')}`);
});

test('the README links the layout page', (t) => {
  t.true(fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8').includes(`(${PAGE})`));
});

test('the check sees a missing and a stale row', (t) => {
  const md = '| folder | what |\n| --- | --- |\n| `bin/` | the command |\n| `src/gone/` | nothing |\nprose naming `src/union/` does not count\n';
  const named = namedFolders(md);
  t.deepEqual(named, ['bin/', 'src/gone/']);
  t.true(sourceFolders().includes('src/union/'));
  t.false(new Set(named).has('src/union/'));
  t.false(fs.existsSync(path.join(repoRoot, 'src/gone')));
});
