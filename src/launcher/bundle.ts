// Stage 2 runs as one plain JavaScript file, bundled from src/launcher/stage2.ts with esbuild
// (tsx's own compiler) and cached by content hash. Under tsx it would start ~200 ms slower and,
// worse, tsx's esbuild service process would be a child of stage 2, left running inside the
// container after the execve() of CMD. The bundling itself is src/esbuild-cache.mjs, shared with
// the CLI's (bin/layerfs.mjs).

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cachedBundle, walkSources } from '../esbuild-cache.mjs';
import { ROOT } from '../root.ts';

const repo = ROOT;
const here = path.join(ROOT, 'src', 'launcher');
export const STAGE2_SOURCE = path.join(here, 'stage2.ts');

/** Every source file of src/ (stage 2 imports a few of them; hashing all never goes stale). */
function inputs(dir = path.join(repo, 'src')): string[] {
  const out: string[] = [];
  walkSources(dir, (p, e) => {
    if (/\.(ts|json)$/.test(e.name)) out.push(p);
  });
  return out;
}

/**
 * Path of the bundled stage 2, building it when the sources changed. Returns null when it
 * cannot be built (esbuild missing, no writable cache): the caller then runs stage2.ts under tsx.
 */
export async function stage2Bundle(): Promise<string | null> {
  try {
    const h = createHash('sha256');
    h.update(repo);
    for (const f of inputs()) h.update(f).update(fs.readFileSync(f));
    const hash = h.digest('hex').slice(0, 16);
    return await cachedBundle({
      root: repo,
      name: 'stage2',
      key: hash,
      build: (esbuild, outfile) =>
        esbuild.buildSync({
          entryPoints: [STAGE2_SOURCE],
          bundle: true,
          platform: 'node',
          format: 'esm',
          target: 'node20',
          external: ['koffi'],
          // The bundle lives in node_modules/.cache: src/root.ts must not derive ROOT from its URL.
          banner: { js: `globalThis.LAYERFS_ROOT = ${JSON.stringify(repo)};` },
          outfile,
          logLevel: 'silent',
        }),
    });
  } catch {
    return null;
  }
}
