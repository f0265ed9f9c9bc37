// The checkout's root directory, from which the repository's other files are found. Under tsx
// this module sits in src/; bundled (bin/layerfs.mjs) every module shares the bundle's
// import.meta.url, so the starter hands the root over instead.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const handed = (globalThis as { LAYERFS_ROOT?: unknown }).LAYERFS_ROOT;

export const ROOT: string = typeof handed === 'string' ? handed : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The command that starts the CLI: node and its arguments before the subcommand. */
export const CLI_START: readonly string[] = [process.execPath, path.join(ROOT, 'bin', 'layerfs.mjs')];

/** node arguments that run a TypeScript file directly (tsx's loader). */
export const TSX_ARGS: readonly string[] = ['--import', 'file://' + path.join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs')];

/** The version in the checkout's package.json (throws when it cannot be read). */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}
