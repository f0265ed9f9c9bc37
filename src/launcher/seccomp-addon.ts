/**
 * Seccomp for `layerfs run`, the addon: libseccomp in the project's own addon
 * (native/layerfs_seccomp.cc, build/Release/layerfs_seccomp.node), loaded when this module is
 * imported (stage 2 imports it before it pivots into the container's root). Loading it installs
 * nothing: only loadSeccomp() does. Re-exported by ./seccomp.ts.
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { ROOT } from '../root.ts';
import type { Spec } from './seccomp-spec.ts';

interface Addon {
  load(spec: Spec): void;
  resolve(name: string): number;
  exportBpf(spec: Spec): Buffer;
}

export const SECCOMP_ADDON_PATH = path.join(ROOT, 'build', 'Release', 'layerfs_seccomp.node');

let addon: Addon | null = null;
let addonError: Error | null = null;
// Now, while the host's files are reachable (stage 2 pivots into the container's root later).
try {
  addon = createRequire(import.meta.url)(SECCOMP_ADDON_PATH) as Addon;
} catch (e) {
  addonError = e as Error;
}

function theAddon(): Addon {
  if (addon) return addon;
  throw new Error(`seccomp: the addon ${SECCOMP_ADDON_PATH} cannot be loaded (built by \`npm run install\`): ${addonError?.message.split('\n')[0]}`);
}

/**
 * Install the filter into this process, every thread of it (TSYNC); children and execve()d
 * programs inherit it, and it cannot be removed. Sets no_new_privs (libseccomp's default).
 * @throws Error naming the step that failed (a rule: its position, syscall and action)
 */
export function loadSeccomp(spec: Spec): void {
  theAddon().load(spec);
}

/** The native architecture's number of a syscall, or -1 when it has none (or libseccomp does not know it). */
export function resolveSyscall(name: string): number {
  return theAddon().resolve(name);
}

/**
 * The classic-BPF program libseccomp generates for the spec (what loadSeccomp() would install),
 * as raw `struct sock_filter` instructions, 8 bytes each; nothing is loaded. For
 * build/Release/layerfs_exec (`--seccomp-fd`), which loads it with PR_SET_SECCOMP. The spec's
 * log/specAllow flags are not part of the program.
 * @throws Error naming the step that failed, as loadSeccomp()
 */
export function exportSeccompBpf(spec: Spec): Buffer {
  return theAddon().exportBpf(spec);
}
