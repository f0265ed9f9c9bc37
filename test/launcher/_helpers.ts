// Helpers of the `layerfs run` tests alone; what other folders' tests use too (the busybox root,
// the sandbox and starting the launcher) is in test/helpers/rootfs.ts and test/helpers/launcher.ts.

import { runIn, type LaunchOptions, type Result, type Sandbox } from '../helpers/launcher.ts';
import { rootfs } from '../helpers/rootfs.ts';

/** Run a shell script as CMD in the standard two-layer root. */
export function sh(sb: Sandbox, script: string, options: readonly string[] = [], opts: LaunchOptions = {}): Promise<Result> {
  return runIn(sb, ['--lower', rootfs().lower, ...options, '--', '/bin/sh', '-c', script], opts);
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}
