// The one esbuild bundling helper, for the two bundles of layerfs: the CLI (bin/layerfs.mjs,
// which runs before any TypeScript can, hence plain JavaScript; its types are in
// esbuild-cache.d.mts) and stage 2 of `layerfs run` (src/launcher/bundle.ts). A bundle is kept
// in the cache under a key of its sources and built only when no bundle has that key.

import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Calls `visit` with every entry below `dir` that is not a directory (by path, with its
 * directory entry), depth first, each directory's entries sorted by name: a stable order to
 * hash the sources in.
 */
export function walkSources(dir, visit) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walkSources(p, visit);
    else visit(p, e);
  }
}

/**
 * The path of bundle `NAME-KEY.mjs` in `ROOT/node_modules/.cache/layerfs` (inside node_modules,
 * so that the bundle's external imports resolve from there), built first when missing:
 * `build(esbuild, outfile)` writes it to a temporary file that is then renamed into place, so
 * that no process ever runs half a bundle. `prune`: then remove the other bundles of NAME that are a day old.
 * Throws when esbuild is missing or the cache is not writable.
 */
export async function cachedBundle({ root, name, key, build, prune = false }) {
  const dir = path.join(root, 'node_modules', '.cache', 'layerfs');
  const out = path.join(dir, `${name}-${key}.mjs`);
  if (fs.existsSync(out)) return out;
  const esbuild = await import('esbuild');
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  await build(esbuild, tmp);
  fs.renameSync(tmp, out);
  if (prune) {
    // Only bundles a day old: a running engine may still start worker threads from the one it
    // was started with (src/engine/isolate.ts), and another checkout may share this cache.
    const others = new RegExp(`^${name}-[0-9a-f]{16}\\.mjs$`);
    const old = Date.now() - 24 * 3600 * 1000;
    for (const f of fs.readdirSync(dir)) {
      if (!others.test(f) || f === path.basename(out)) continue;
      try {
        if (fs.statSync(path.join(dir, f)).mtimeMs < old) fs.rmSync(path.join(dir, f), { force: true });
      } catch {
        /* raced with another pruner */
      }
    }
  }
  return out;
}
