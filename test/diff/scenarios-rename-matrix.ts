// Part of the scenario list of the differential harness (scenarios.ts, which holds them in order
// and says what a scenario is): the renames of every kind of source over every kind
// of target (used by scenarios-formats.ts).

import type { Op, Scenario } from './engine.ts';
import { op } from './engine.ts';
import {
  dir,
  file,
  symlink,
  whiteout,
  type Tree,
} from './layers.ts';

// ---------------------------------------------------------------------------
// rename in all combinations
//
// One scenario per kind of source; inside it, one top-level directory per kind of target,
// holding `src` and the target, so every pair is an independent rename on one mount.

export const renameSources = ['upper-file', 'lower-file', 'shadow-file', 'lower-symlink', 'upper-dir', 'lower-dir', 'merged-dir'] as const;
const renameTargets = [
  'none',
  'upper-file',
  'lower-file',
  'upper-dir-empty',
  'lower-dir-empty',
  'merged-dir-empty',
  'dir-nonempty',
  'upper-whiteout',
  'lower-whiteout-kernel',
  'lower-whiteout-oci',
  'lower-symlink',
  'lower-only-parent',
  'lower-only-parent-file',
  'self',
] as const;
type RenameSource = (typeof renameSources)[number];
type RenameTarget = (typeof renameTargets)[number];

function renameCase(src: RenameSource, dst: RenameTarget): { l0: Tree; l1: Tree; up: Tree; to: string } {
  const l0: Tree = {};
  const l1: Tree = {};
  const up: Tree = {};
  switch (src) {
    case 'upper-file':
      up.src = file('upper src\n', { mode: 0o600 });
      break;
    case 'lower-file':
      l0.src = file('lower src\n', { mode: 0o640, uid: 7, gid: 8, xattrs: { 'user.src': 'lower' } });
      break;
    case 'shadow-file':
      up.src = file('upper src over lower\n');
      l0.src = file('lower src, shadowed\n');
      break;
    case 'lower-symlink':
      l0.src = symlink('somewhere', { uid: 3, gid: 4 });
      break;
    case 'upper-dir':
      up.src = dir({ inner: file('inner') }, { mode: 0o750 });
      break;
    case 'lower-dir':
      l0.src = dir({ inner: file('inner') }, { mode: 0o750 });
      break;
    case 'merged-dir':
      up.src = dir({ inner: file('inner') });
      l0.src = dir({ other: file('from the lower') });
      break;
  }
  let to = 'dst';
  switch (dst) {
    case 'none':
      break;
    case 'upper-file':
      up.dst = file('upper dst');
      break;
    case 'lower-file':
      l0.dst = file('lower dst');
      break;
    case 'upper-dir-empty':
      up.dst = dir();
      break;
    case 'lower-dir-empty':
      l0.dst = dir({}, { mode: 0o700 });
      break;
    case 'merged-dir-empty':
      up.dst = dir({ x: whiteout('kernel') });
      l0.dst = dir({ x: file('x, whited out') });
      break;
    case 'dir-nonempty':
      l0.dst = dir({ x: file('x') });
      break;
    case 'upper-whiteout':
      up.dst = whiteout('kernel');
      l0.dst = file('hidden by the upper whiteout');
      break;
    case 'lower-whiteout-kernel':
      l0.dst = whiteout('kernel');
      l1.dst = file('hidden by a kernel whiteout');
      break;
    case 'lower-whiteout-oci':
      l0.dst = whiteout('oci');
      l1.dst = file('hidden by an OCI whiteout');
      break;
    case 'lower-symlink':
      l0.dst = symlink('src');
      break;
    case 'lower-only-parent':
      l0.lo = dir({}, { mode: 0o750, uid: 5, gid: 5 });
      to = 'lo/dst';
      break;
    case 'lower-only-parent-file':
      l0.lo = dir({ dst: file('lower lo/dst') }, { mode: 0o750 });
      to = 'lo/dst';
      break;
    case 'self':
      to = 'src';
      break;
  }
  return { l0, l1, up, to };
}

export function renameScenario(src: RenameSource): Scenario {
  const lowers: [Tree, Tree] = [{}, {}];
  const upper: Tree = {};
  const ops: Op[] = [];
  const after: Op[] = [];
  for (const t of renameTargets) {
    const c = renameCase(src, t);
    const d = `to-${t}`;
    lowers[0][d] = dir(c.l0);
    if (Object.keys(c.l1).length) lowers[1][d] = dir(c.l1);
    if (Object.keys(c.up).length) upper[d] = dir(c.up);
    ops.push(op.rename(`${d}/src`, `${d}/${c.to}`));
    after.push(op.readdir(d), op.lstat(`${d}/${c.to}`), op.readdir(`${d}/${c.to}`));
    if (c.to.startsWith('lo/')) after.push(op.lstat(`${d}/lo`));
  }
  return {
    name: `rename matrix: ${src} source`,
    description: `rename(2) of a ${src} onto each kind of target: ${renameTargets.join(', ')}`,
    layers: { lowers, upper },
    ops: [...ops, ...after],
  };
}
