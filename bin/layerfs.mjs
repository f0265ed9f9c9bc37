// Starts the layerfs CLI from one JavaScript file bundled from src/ with esbuild, rebuilt
// whenever a source file changes. Under tsx every start pays ~0.25 s of compiling; the
// daemon, the launcher and podman's calls start several processes per container.
// LAYERFS_NO_BUNDLE=1 (or a bundle that cannot be built) runs src/cli.ts under tsx instead.
// The bundling itself is src/esbuild-cache.mjs, shared with stage 2's (src/launcher/bundle.ts).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cachedBundle, walkSources } from '../src/esbuild-cache.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
globalThis.LAYERFS_ROOT = root;

/**
 * A key that changes when any file under src/ (or package.json) changes: their sizes and
 * modification times, not their contents (reading every source would cost each start).
 */
function sourceKey() {
  const h = createHash('sha256').update(root);
  walkSources(path.join(root, 'src'), (p, e) => {
    if (!e.isFile()) return;
    const st = fs.statSync(p);
    h.update(`${p}\0${st.size}\0${st.mtimeMs}\0`);
  });
  const pkg = fs.statSync(path.join(root, 'package.json'));
  h.update(`${pkg.size}\0${pkg.mtimeMs}`);
  return h.digest('hex').slice(0, 16);
}

function bundle() {
  return cachedBundle({
    root,
    name: 'cli',
    key: sourceKey(),
    prune: true,
    build: (esbuild, outfile) =>
      esbuild.build({
        entryPoints: [path.join(root, 'src', 'cli.ts')],
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        packages: 'external', // resolved from node_modules, beside which the bundle lives
        outfile,
        logLevel: 'silent',
      }),
  });
}

let entry = null;
if (!process.env.LAYERFS_NO_BUNDLE) {
  try {
    entry = await bundle();
  } catch {
    entry = null; // no esbuild or no writable cache: tsx below
  }
}
if (entry) {
  await import(pathToFileURL(entry).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(path.join(root, 'src', 'cli.ts')).href);
}
