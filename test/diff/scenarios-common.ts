// Part of the scenario list of the differential harness (scenarios.ts, which holds them in order
// and says what a scenario is): what several parts share: a fixed timestamp, reads that
// show a few paths, a richly-populated lower.

import type { Op } from './engine.ts';
import { op } from './engine.ts';
import {
  dir,
  file,
  type Tree,
} from './layers.ts';

export const T0 = 1_600_000_000; // a fixed timestamp (Sep 2020)

/** Reads that show the whole visible state of a few paths. */
export function look(...paths: string[]): Op[] {
  const out: Op[] = [];
  for (const p of paths) out.push(op.lstat(p), op.readdir(p));
  return out;
}

/** A richly-populated lower layer used by several copy-up scenarios. */
export function metaLower(): Tree {
  return {
    f: file('lower content\n', { mode: 0o640, uid: 1000, gid: 1001, xattrs: { 'user.origin': 'lower', 'user.color': 'blue' }, mtime: T0 }),
    g: file('another\n', { mode: 0o600, uid: 2000, gid: 2000 }),
    d: dir(
      {
        inner: file('inner\n', { mode: 0o644, uid: 3000, gid: 3001 }),
        sub: dir({ leaf: file('leaf\n') }, { mode: 0o700 }),
      },
      { mode: 0o750, uid: 1000, gid: 1000, xattrs: { 'user.dirattr': 'dir' } },
    ),
  };
}
