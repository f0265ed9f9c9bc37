import type { BigIntStats } from 'node:fs';
import { lstatSync } from './bytes.ts';
import { LRUCache } from 'lru-cache';
import { fsErr, isCode } from './errors.ts';
import { Layer, baseName, joinPath, parentOf } from './layer.ts';
import { WhiteoutFormat, hasOciWhiteout, isOciName, isWhiteoutStat } from './whiteout.ts';
import type { TraceSink } from './events.ts';

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

/** What a union path resolves to. */
export interface Entry {
  path: string;
  /** Index of the layer that serves this object (0 = top-most). */
  layer: number;
  type: EntryType;
  /** For directories: the layers whose directories merge here, top first (stops at an opaque one). */
  dirLayers: number[];
}

export function typeOf(st: BigIntStats): EntryType {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

function lstatOrNull(p: string): BigIntStats | null {
  try {
    return lstatSync(p, { bigint: true });
  } catch (e) {
    if (isCode(e, 'ENOENT', 'ENOTDIR', 'ENAMETOOLONG')) return null;
    throw e;
  }
}

/**
 * The overlay lookup rules, top to bottom: a whiteout hides everything below it; a
 * non-directory ends the search (and is invisible beneath a directory above it); directories
 * merge with the directories below them until an opaque directory. Lower entries are only
 * consulted inside parents that are real directories in that same lower.
 *
 * Results are cached per path (without their attributes, which are always read fresh). The
 * union core invalidates the cache whenever it changes the upper.
 */
export class Resolver {
  private cache: LRUCache<string, Entry | false>;
  /** Set while someone traces the union (./events.ts): told of every uncached resolution. */
  trace?: TraceSink;

  constructor(
    readonly layers: Layer[],
    readonly wf: WhiteoutFormat,
    cacheSize = 50_000,
  ) {
    this.cache = new LRUCache({ max: cacheSize });
  }

  get upper(): Layer | undefined {
    return this.layers[0]?.isUpper ? this.layers[0] : undefined;
  }

  root(): Entry {
    // The root is always merged across every layer (an opaque marker on a root is ignored).
    return { path: '/', layer: 0, type: 'dir', dirLayers: this.layers.map((l) => l.index) };
  }

  /** Resolve a path; null when it does not exist in the union. Throws ENOTDIR through a non-directory. */
  find(path: string): Entry | null {
    if (path === '/') return this.root();
    const hit = this.cache.get(path);
    if (hit !== undefined) return hit || null;
    const parent = this.find(parentOf(path));
    if (!parent) return null;
    if (parent.type !== 'dir') throw fsErr('ENOTDIR');
    const e = this.child(parent, baseName(path));
    if (this.trace) this.trace({ ev: 'lookup', path, entry: e });
    this.cache.set(path, e ?? false);
    return e;
  }

  /** Like find, but ENOENT when missing. */
  get(path: string): Entry {
    const e = this.find(path);
    if (!e) throw fsErr('ENOENT');
    return e;
  }

  /** Resolve `name` inside the directory `parent`. */
  child(parent: Entry, name: string): Entry | null {
    const path = joinPath(parent.path, name);
    // `.wh.*` names are markers in image layers: never visible through the union.
    if (isOciName(name)) return null;
    let found: Entry | null = null;
    for (const li of parent.dirLayers) {
      const layer = this.layers[li];
      const st = lstatOrNull(layer.path(path));
      if (!st) {
        if (!layer.isUpper && hasOciWhiteout(layer.path(parent.path), name)) break;
        continue;
      }
      if (isWhiteoutStat(st)) break;
      if (!layer.isUpper && this.wf.isXwhiteout(layer.path(path), st)) break;
      const type = typeOf(st);
      if (!found) {
        found = { path, layer: li, type, dirLayers: [] };
        if (type !== 'dir') break;
      } else if (type !== 'dir') {
        break; // a non-directory below a directory is hidden, and ends the merge
      }
      found.dirLayers.push(li);
      if (this.wf.isOpaqueDir(layer.path(path), !layer.isUpper)) break;
    }
    return found;
  }

  /**
   * Does any lower layer (below the upper) show something at parent/name? Decides whether
   * removing or renaming away the name needs a whiteout in the upper.
   */
  lowerHas(parentPath: string, name: string): boolean {
    const parent = this.find(parentPath);
    if (!parent || parent.type !== 'dir') return false;
    const path = joinPath(parentPath, name);
    for (const li of parent.dirLayers) {
      const layer = this.layers[li];
      if (layer.isUpper) continue;
      const st = lstatOrNull(layer.path(path));
      if (!st) {
        if (hasOciWhiteout(layer.path(parentPath), name)) return false;
        continue;
      }
      return !isWhiteoutStat(st) && !this.wf.isXwhiteout(layer.path(path), st);
    }
    return false;
  }

  /** Is there a whiteout for parent/name in the upper itself? */
  upperWhiteout(path: string): boolean {
    const up = this.upper;
    if (!up) return false;
    const st = lstatOrNull(up.path(path));
    return st !== null && isWhiteoutStat(st);
  }

  /** Is this directory made of more than the upper alone (a lower contributes)? */
  isMergedOrLower(e: Entry): boolean {
    return e.dirLayers.some((li) => !this.layers[li].isUpper) || !this.layers[e.layer].isUpper;
  }

  invalidate(path: string): void {
    this.cache.delete(path);
  }

  /** Forget path and everything below it. */
  invalidateTree(path: string): void {
    if (path === '/') {
      this.cache.clear();
      return;
    }
    this.cache.delete(path);
    const prefix = path + '/';
    for (const k of this.cache.keys()) if (k.startsWith(prefix)) this.cache.delete(k);
  }
}
