// Types of esbuild-cache.mjs (plain JavaScript: bin/layerfs.mjs runs it before any TypeScript can).
import type { Dirent } from 'node:fs';

export function walkSources(dir: string, visit: (path: string, entry: Dirent) => void): void;

export function cachedBundle(opts: {
  root: string;
  name: string;
  key: string;
  build: (esbuild: typeof import('esbuild'), outfile: string) => unknown;
  prune?: boolean;
}): Promise<string>;
