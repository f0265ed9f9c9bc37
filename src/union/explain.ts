import type { BigIntStats } from 'node:fs';
import { lstatSync, readlinkSync } from './bytes.ts';
import { isCode } from './errors.ts';
import { baseName, joinPath, type Layer } from './layer.ts';
import { typeOf, type Entry, type EntryType, type Resolver } from './lookup.ts';
import { hasOciWhiteout, isOciName, isWhiteoutStat } from './whiteout.ts';

/**
 * Why the union shows what it shows at one path: every layer's verdict, level by level along
 * the path (for `layerfs explain`). The union's answer itself always comes from the Resolver
 * (lookup.ts), and each layer is classified with the whiteout helpers the Resolver uses; this
 * only attributes the Resolver's answer to the layers (and checks that the attribution agrees
 * with it). Like the Resolver, it descends in a layer only through entries lstat found to be
 * real directories, so a symlink in a layer is never followed.
 */

/** What a layer holds at a path. */
export type Has = EntryType | 'whiteout' | 'nothing';

export type Verdict =
  /** The union shows this layer's object. */
  | 'serves'
  /** A directory below the serving one that merges into it. */
  | 'merged'
  /** An object beneath another one at the same path that ends the search (a non-directory). */
  | 'shadowed'
  /** A whiteout: hides this name in every layer below. */
  | 'whiteout'
  /** Something that a whiteout, an opaque directory or a non-directory above keeps out of the union. */
  | 'hidden'
  /** Nothing there. */
  | 'absent';

/** What hides or shadows a layer's object: the marker or object at `path` in layer `layer`. */
export interface Cause {
  layer: number;
  path: string;
  why: 'whiteout' | 'opaque' | 'shadow' | 'reserved';
}

export interface LayerVerdict {
  layer: number;
  has: Has;
  verdict: Verdict;
  by?: Cause;
  /** How a whiteout is written: character device 0/0, OCI `.wh.NAME`, or an xattr whiteout. */
  whiteout?: 'chardev' | 'oci' | 'xattr';
  /** A directory marked opaque in this layer. */
  opaque?: boolean;
  /** An ancestor that is not a directory in this layer (never followed), when has = 'nothing'. */
  blockedAt?: { path: string; has: Has };
  /** A symlink's target, read (never followed); a byte string. */
  target?: string;
}

/** Why a path is not in the union. */
export interface Missing {
  why: 'whiteout' | 'opaque' | 'shadow' | 'not-a-directory' | 'nowhere' | 'reserved';
  /** The layer holding the marker or object that causes it (absent for 'nowhere'/'reserved'). */
  layer?: number;
  /** Where the cause sits: the path itself or an ancestor. */
  path: string;
  /** For 'not-a-directory': what the ancestor is in the union. */
  type?: EntryType;
}

export interface Level {
  path: string;
  /** The Resolver's answer; null when the path is not in the union. */
  entry: Entry | null;
  layers: LayerVerdict[];
  missing?: Missing;
}

export interface Explanation {
  path: string;
  /** '/' first, the path itself last. */
  levels: Level[];
}

function lstatOrNull(p: string): BigIntStats | null {
  try {
    return lstatSync(p, { bigint: true });
  } catch (e) {
    if (isCode(e, 'ENOENT', 'ENOTDIR', 'ENAMETOOLONG')) return null;
    throw e;
  }
}

/** Classify layer's object at path, whose parent was found to be a real directory in that layer. */
function probe(r: Resolver, layer: Layer, parentPath: string, path: string): Omit<LayerVerdict, 'layer' | 'verdict'> {
  const abs = layer.path(path);
  const st = lstatOrNull(abs);
  if (!st) {
    if (!layer.isUpper && hasOciWhiteout(layer.path(parentPath), baseName(path))) return { has: 'whiteout', whiteout: 'oci' };
    return { has: 'nothing' };
  }
  if (isWhiteoutStat(st)) return { has: 'whiteout', whiteout: 'chardev' };
  if (!layer.isUpper && r.wf.isXwhiteout(abs, st)) return { has: 'whiteout', whiteout: 'xattr' };
  const has = typeOf(st);
  if (has === 'dir') return { has, opaque: r.wf.isOpaqueDir(abs, !layer.isUpper) };
  if (has === 'symlink') return { has, target: readlinkSync(abs).toString('latin1') };
  return { has };
}

/** Explain a union path (absolute, normalised, a byte string: see layer.ts checkPath). */
export function explainPath(r: Resolver, path: string): Explanation {
  const layers = r.layers;
  const root = r.root();
  const rootLevel: Level = {
    path: '/',
    entry: root,
    layers: layers.map((l, i) => ({
      layer: i,
      has: 'dir',
      verdict: i === 0 ? 'serves' : 'merged',
      opaque: false,
    })),
  };
  const levels: Level[] = [rootLevel];
  if (path === '/') return { path, levels };
  let prev = rootLevel;
  let cur = '/';
  for (const name of path.slice(1).split('/')) {
    const p = joinPath(cur, name);
    const level = explainLevel(r, prev, p);
    levels.push(level);
    prev = level;
    cur = p;
  }
  return { path, levels };
}

function explainLevel(r: Resolver, prev: Level, p: string): Level {
  const layers = r.layers;
  const parentPath = prev.path;
  const parent = prev.entry;
  // What each layer has at p: only looked at below a real directory of that same layer.
  const facts = layers.map((l, i): Omit<LayerVerdict, 'verdict'> => {
    const up = prev.layers[i]!;
    if (up.has === 'dir') return { layer: i, ...probe(r, l, parentPath, p) };
    if (up.has === 'nothing') return { layer: i, has: 'nothing', ...(up.blockedAt ? { blockedAt: up.blockedAt } : {}) };
    return { layer: i, has: 'nothing', blockedAt: { path: parentPath, has: up.has } };
  });
  const inherited = (f: Omit<LayerVerdict, 'verdict'>): LayerVerdict =>
    f.has === 'nothing' ? { ...f, verdict: 'absent' } : { ...f, verdict: 'hidden', by: prev.layers[f.layer]!.by };

  if (!parent || parent.type !== 'dir') {
    const out = facts.map(inherited);
    const missing: Missing = !parent
      ? { ...prev.missing!, path: prev.missing!.path }
      : { why: 'not-a-directory', layer: parent.layer, path: parentPath, type: parent.type };
    return { path: p, entry: null, layers: out, missing };
  }

  const entry = r.find(p);
  const verdicts: LayerVerdict[] = facts.map(inherited);
  if (isOciName(baseName(p))) {
    for (const v of verdicts) if (v.has !== 'nothing') Object.assign(v, { verdict: 'hidden', by: { layer: v.layer, path: p, why: 'reserved' } });
    return { path: p, entry, layers: verdicts, missing: { why: 'reserved', path: p } };
  }

  // The Resolver's scan (lookup.ts Resolver.child), attributed to the layers.
  let state: 'search' | 'merge' | 'stop' = 'search';
  let stop: Cause | undefined;
  let serving: number | undefined;
  const merged: number[] = [];
  for (const li of parent.dirLayers) {
    const f = facts[li]!;
    const v = verdicts[li]!;
    delete v.by;
    if (state === 'stop') {
      Object.assign(v, f.has === 'nothing' ? { verdict: 'absent' } : { verdict: stop!.why === 'shadow' && stop!.path === p ? 'shadowed' : 'hidden', by: stop });
    } else if (f.has === 'nothing') {
      v.verdict = 'absent';
    } else if (f.has === 'whiteout') {
      v.verdict = 'whiteout';
      stop = { layer: li, path: p, why: 'whiteout' };
      state = 'stop';
    } else if (state === 'search') {
      v.verdict = 'serves';
      serving = li;
      merged.push(li);
      if (f.has !== 'dir') (stop = { layer: li, path: p, why: 'shadow' }), (state = 'stop');
      else if (f.opaque) (stop = { layer: li, path: p, why: 'opaque' }), (state = 'stop');
      else state = 'merge';
    } else if (f.has !== 'dir') {
      // A non-directory beneath a directory: shadowed by it, and the merge ends here.
      Object.assign(v, { verdict: 'shadowed', by: { layer: serving!, path: p, why: 'shadow' } });
      stop = { layer: li, path: p, why: 'shadow' };
      state = 'stop';
    } else {
      v.verdict = 'merged';
      merged.push(li);
      if (f.opaque) (stop = { layer: li, path: p, why: 'opaque' }), (state = 'stop');
    }
  }

  // The attribution must agree with the Resolver, or explain would tell a story the mount does not.
  const agrees = entry
    ? serving === entry.layer && (entry.type !== 'dir' ? true : merged.join() === entry.dirLayers.join())
    : serving === undefined;
  if (!agrees) {
    throw new Error(`explain: internal disagreement with the lookup at ${p} (resolver: ${JSON.stringify(entry)}, explain: ${serving}/${merged})`);
  }

  let missing: Missing | undefined;
  if (!entry) {
    const hiddenOne = verdicts.find((v) => v.verdict === 'hidden' && v.by);
    if (stop) missing = { why: stop.why as Missing['why'], layer: stop.layer, path: stop.path };
    else if (hiddenOne?.by) missing = { why: hiddenOne.by.why as Missing['why'], layer: hiddenOne.by.layer, path: hiddenOne.by.path };
    else missing = { why: 'nowhere', path: p };
  }
  return { path: p, entry, layers: verdicts, ...(missing ? { missing } : {}) };
}
