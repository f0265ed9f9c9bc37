// Stage 2 runs as one plain JavaScript file, bundled from src/launcher/stage2.ts with esbuild
// (tsx's own compiler) and cached by content hash. Under tsx it would start ~200 ms slower and,
// worse, tsx's esbuild service process would be a child of stage 2, left running inside the
// container after the execve() of CMD.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../root.ts';

const repo = ROOT;
const here = path.join(ROOT, 'src', 'launcher');
export const STAGE2_SOURCE = path.join(here, 'stage2.ts');

/** Every source file of src/ (stage 2 imports a few of them; hashing all never goes stale). */
function inputs(dir = path.join(repo, 'src')): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...inputs(p));
    else if (/\.(ts|json)$/.test(e.name)) out.push(p);
  }
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
    // Inside node_modules, so that the external `koffi` import resolves from there.
    const dir = path.join(repo, 'node_modules', '.cache', 'layerfs');
    const out = path.join(dir, `stage2-${hash}.mjs`);
    if (fs.existsSync(out)) return out;
    const esbuild = await import('esbuild');
    fs.mkdirSync(dir, { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    esbuild.buildSync({
      entryPoints: [STAGE2_SOURCE],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      external: ['koffi'],
      // The bundle lives in node_modules/.cache: src/root.ts must not derive ROOT from its URL.
      banner: { js: `globalThis.LAYERFS_ROOT = ${JSON.stringify(repo)};` },
      outfile: tmp,
      logLevel: 'silent',
    });
    fs.renameSync(tmp, out);
    return out;
  } catch {
    return null;
  }
}
