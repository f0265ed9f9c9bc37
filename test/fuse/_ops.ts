// Every filesystem operation through a real mount (layerfs over FUSE by default; the same
// tests run on kernel overlayfs with LAYERFS_FUSE_TARGET=kernel — see _env.ts).
//
// Each test builds its own layer set, mounts it, works through the mount only, and checks
// both what the mount shows and what landed in the upper layer (the on-disk format is the
// kernel's: whiteout = char dev 0/0, opaque dir = trusted.overlay.opaque=y). Every test ends
// with the check that no lower layer was modified (contents, metadata, xattrs, ctimes).
//
// The tests are in ops-*.test.ts by operation; this module holds what they share.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { TARGET } from './_env.ts';

export const fsp = fs.promises;

/**
 * A known layerfs bug, each one described where it is used: the test states the kernel's
 * behaviour, so it is test.failing on layerfs and an ordinary (passing) test when the suite
 * runs against kernel overlayfs — which is how each was checked.
 */
export const knownBug = TARGET === 'kernel' ? test : test.failing;
/**
 * A defect of the fuse-native binding (README), fixed by the default backend: test.failing
 * only when the suite runs on fuse-native (LAYERFS_BACKEND=fuse-native).
 */
export const nativeBug = process.env.LAYERFS_BACKEND === 'fuse-native' && TARGET !== 'kernel' ? test.failing : test;
export const S = 1_000_000_000n; // ns per second
export const MS = 1_000_000n; // ns per millisecond
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;

export async function stat(p: string): Promise<fs.BigIntStats> {
  return fsp.lstat(p, { bigint: true });
}

export async function read(p: string): Promise<string> {
  return fsp.readFile(p, 'utf8');
}

/** Type, permission bits, owner and size of a stat, for deepEqual. */
export function attrs(st: fs.BigIntStats): { fmt: number; perm: number; uid: number; gid: number; size: number } {
  return {
    fmt: Number(st.mode) & fs.constants.S_IFMT,
    perm: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
  };
}

export const bigContent = randomBytes(3 * 1024 * 1024 + 17);
