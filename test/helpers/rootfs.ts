// The two-layer busybox root of scripts/make-rootfs.sh (app on top of base), built once and
// shared read-only by the tests of `layerfs run`, of images and of podman.

import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { repoRoot } from './mounts.ts';

/** Shared, idempotently built layers (read-only lowers: sharing them between tests is safe). */
export const ROOTFS_DIR = '/var/tmp/layerfs-test-rootfs';

export interface Rootfs {
  app: string;
  base: string;
  /** --lower value: app on top of base. */
  lower: string;
}

let built: Rootfs | undefined;

export function rootfs(): Rootfs {
  if (!built) {
    execFileSync('bash', [path.join(repoRoot, 'scripts', 'make-rootfs.sh'), ROOTFS_DIR], { stdio: ['ignore', 'ignore', 'inherit'] });
    built = { app: `${ROOTFS_DIR}/app`, base: `${ROOTFS_DIR}/base`, lower: `${ROOTFS_DIR}/app:${ROOTFS_DIR}/base` };
  }
  return built;
}
