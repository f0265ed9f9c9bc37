// Starts the layerfs CLI from one JavaScript file bundled from src/ with esbuild, rebuilt
// whenever a source file changes. Under tsx every start pays ~0.25 s of compiling; the
// daemon, the launcher and podman's calls start several processes per container.
// LAYERFS_NO_BUNDLE=1 (or a bundle that cannot be built) runs src/cli.ts under tsx instead.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
globalThis.LAYERFS_ROOT = root;

/** A key that changes when any file under src/ (or package.json) changes. */
function sourceKey() {
  const h = createHash('sha256').update(root);
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = fs.statSync(p);
        h.update(`${p}\0${st.size}\0${st.mtimeMs}\0`);
      }
    }
  };
  walk(path.join(root, 'src'));
  const pkg = fs.statSync(path.join(root, 'package.json'));
  h.update(`${pkg.size}\0${pkg.mtimeMs}`);
  return h.digest('hex').slice(0, 16);
}

async function bundle() {
  const dir = path.join(root, 'node_modules', '.cache', 'layerfs');
  const key = sourceKey();
  const out = path.join(dir, `cli-${key}.mjs`);
  if (fs.existsSync(out)) return out;
  const esbuild = await import('esbuild');
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  await esbuild.build({
    entryPoints: [path.join(root, 'src', 'cli.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external', // resolved from node_modules, beside which the bundle lives
    outfile: tmp,
    logLevel: 'silent',
  });
  fs.renameSync(tmp, out);
  for (const f of fs.readdirSync(dir)) {
    if (/^cli-[0-9a-f]{16}\.mjs$/.test(f) && f !== path.basename(out)) fs.rmSync(path.join(dir, f), { force: true });
  }
  return out;
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
