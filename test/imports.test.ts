// The import graph of src/: no cycle between files, and none between the folders of src/
// (launcher → image is fine; image → launcher as well would make them one knot). The graph is
// esbuild's (the bundler the CLI already uses), static and dynamic imports alike.

import test from 'ava';
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './helpers/mounts.ts';

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** file (relative to the repository) → the src/ files it imports. */
async function graph(): Promise<Map<string, string[]>> {
  const r = await esbuild.build({
    entryPoints: sources(path.join(repoRoot, 'src')),
    absWorkingDir: repoRoot,
    bundle: true,
    write: false,
    metafile: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    outdir: path.join(repoRoot, 'node_modules', '.cache', 'layerfs', 'imports-check'),
    logLevel: 'silent',
  });
  const g = new Map<string, string[]>();
  for (const [file, input] of Object.entries(r.metafile.inputs)) {
    if (!file.startsWith('src/')) continue;
    g.set(file, input.imports.filter((i) => !i.external && i.path.startsWith('src/')).map((i) => i.path));
  }
  return g;
}

/** Strongly connected components with more than one member (Tarjan), each sorted. */
function cycles(g: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        c.push(w);
      } while (w !== v);
      if (c.length > 1 || (g.get(v) ?? []).includes(v)) out.push(c.sort());
    }
  };
  for (const v of g.keys()) if (!index.has(v)) visit(v);
  return out;
}

/** src/a/b.ts → src/a; src/cli.ts → src/cli.ts (a top-level file is a unit of its own). */
function folderOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 2 ? parts.slice(0, 2).join('/') : file;
}

test('no import cycle between the files of src/', async (t) => {
  const g = await graph();
  t.true(g.size > 50, `the graph has the sources (${g.size})`);
  t.deepEqual(cycles(g), []);
});

test('no import cycle between the folders of src/', async (t) => {
  const g = await graph();
  const folders = new Map<string, Set<string>>();
  for (const [file, deps] of g) {
    const f = folderOf(file);
    const set = folders.get(f) ?? new Set<string>();
    for (const d of deps) if (folderOf(d) !== f) set.add(folderOf(d));
    folders.set(f, set);
  }
  const found = cycles(new Map([...folders].map(([f, s]) => [f, [...s]])));
  // Name the imports that close each cycle, so the message says what to move.
  const why = found.map((c) => {
    const edges = [...g].flatMap(([file, deps]) => deps.filter((d) => c.includes(folderOf(file)) && c.includes(folderOf(d)) && folderOf(d) !== folderOf(file)).map((d) => `${file} -> ${d}`));
    return `${c.join(' <-> ')}: ${edges.join(', ')}`;
  });
  t.deepEqual(why, []);
});

test('the cycle finder finds a cycle', (t) => {
  t.deepEqual(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])), [['a', 'b', 'c']]);
  t.deepEqual(cycles(new Map([['a', ['b']], ['b', []]])), []);
});
