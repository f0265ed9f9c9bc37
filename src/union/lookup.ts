import type { BigIntStats } from 'node:fs';
import { lstatOrNull } from './bytes.ts';
import { DirIndex, K_DIR, K_WHITEOUT, type LowerNames } from './dirindex.ts';
import { LRUCache } from 'lru-cache';
import { fsErr } from './errors.ts';
import { Layer, baseName, joinPath, parentOf } from './layer.ts';
import { WhiteoutFormat, hasOciWhiteout, isOciName, isWhiteoutStat } from './whiteout.ts';
import type { TraceSink } from './events.ts';

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

const NO_CODES: readonly number[] = [];

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

/**
 * The overlay lookup rules, top to bottom: a whiteout hides everything below it; a
 * non-directory ends the search (and is invisible beneath a directory above it); directories
 * merge with the directories below them until an opaque directory. Lower entries are only
 * consulted inside parents that are real directories in that same lower.
 *
 * Results are cached per path (without their attributes, which are always read fresh). The
 * union core invalidates the cache whenever it changes the upper.
 *
 * This is the kernel's fs/overlayfs/namei.c. Nothing here awaits: a resolution is one pass
 * over the layers as they are at the call, and an Entry, once returned, never changes. Callers
 * that await between resolving a path and using the answer resolve it again: any operation
 * may change the upper, and invalidate the cache, meanwhile.
 */
export class Resolver {
  private cache: LRUCache<string, Entry | false>;
  /** The names of lower directories, so a lookup skips the layers that lack a name. */
  readonly index: DirIndex;
  /** The attributes child() read for the object it found (see findFresh). */
  private fresh: { path: string; st: BigIntStats } | null = null;
  /** Set while someone traces the union (./events.ts): told of every uncached resolution. */
  trace?: TraceSink;

  constructor(
    readonly layers: Layer[],
    readonly wf: WhiteoutFormat,
    cacheSize = 50_000,
    /** How often a lower directory's index is checked against the directory (see DirIndex). */
    lowerRecheckMs = 1000,
  ) {
    // Bounded by maxSize, not max: lru-cache preallocates arrays of `max` entries (~1.2 MB at
    // 50,000), which an engine serving fifty idle mounts would pay fifty times.
    this.cache = new LRUCache({ maxSize: cacheSize, sizeCalculation: () => 1 });
    this.index = new DirIndex(layers, lowerRecheckMs);
    this.rootEntry = { path: '/', layer: 0, type: 'dir', dirLayers: layers.map((l) => l.index) };
  }

  get upper(): Layer | undefined {
    return this.layers[0]?.isUpper ? this.layers[0] : undefined;
  }

  /** The root is always merged across every layer (an opaque marker on a root is ignored). */
  private readonly rootEntry: Entry;

  root(): Entry {
    return this.rootEntry;
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

  /**
   * Like find, with the attributes of the object when this very call had to read them to
   * resolve the path (a cache miss): the caller saves that lstat. Null attributes: read them.
   */
  findFresh(path: string): [Entry | null, BigIntStats | null] {
    this.fresh = null;
    const e = this.find(path);
    const f = this.fresh as { path: string; st: BigIntStats } | null;
    this.fresh = null;
    return [e, f !== null && e !== null && f.path === path ? f.st : null];
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
    const lowers = this.index.names(parent);
    if (!lowers) return this.childLayerByLayer(parent, name, path);
    const acc: { found: Entry | null } = { found: null };
    const top = this.layers[parent.dirLayers[0]!]!;
    if (top.isUpper) {
      const st = lstatOrNull(top.path(path));
      if (st) {
        if (isWhiteoutStat(st)) return null;
        if (this.take(acc, top, path, st)) return acc.found;
      }
    }
    // The lowers: only those whose listing has the name (or an OCI whiteout for it).
    const codes = this.lowerCodes(parent, name, lowers, !acc.found);
    if (!codes) return this.childLayerByLayer(parent, name, path);
    let present = -1; // a layer whose object of this name was taken: its own whiteout does not count
    for (const code of codes) {
      const li = code >> 2;
      const kind = code & 3;
      if (kind === K_WHITEOUT) {
        if (li === present) continue;
        break;
      }
      const layer = this.layers[li]!;
      if (kind === K_DIR && acc.found) {
        // A directory merging below the one found: nothing of it but its opaque mark matters.
        present = li;
        acc.found.dirLayers.push(li);
        if (this.wf.isOpaqueDir(layer.path(path), true)) break;
        continue;
      }
      const st = lstatOrNull(layer.path(path));
      if (!st) continue; // gone since the listing was read
      present = li;
      if (isWhiteoutStat(st) || this.wf.isXwhiteout(layer.path(path), st)) break;
      if (this.take(acc, layer, path, st)) break;
    }
    return acc.found;
  }

  /**
   * The index codes (./dirindex.ts) of `name` in the lower layers of the directory `parent`,
   * top first; empty when no lower has it. `recheck`: believe that only after making sure the
   * directories did not change underneath (a name added to a lower then shows at once). Null:
   * the directory can no longer be indexed.
   */
  private lowerCodes(parent: Entry, name: string, lowers: LowerNames, recheck: boolean): readonly number[] | null {
    let hits = lowers.get(name);
    if (hits === undefined && recheck) {
      const again = this.index.names(parent, true);
      if (!again) return null;
      hits = again.get(name);
    }
    return hits === undefined ? NO_CODES : typeof hits === 'number' ? [hits] : hits;
  }

  /** The lookup without an index (a lower directory that could not be listed): lstat per layer. */
  private childLayerByLayer(parent: Entry, name: string, path: string): Entry | null {
    const acc: { found: Entry | null } = { found: null };
    for (const li of parent.dirLayers) {
      const layer = this.layers[li]!;
      const st = lstatOrNull(layer.path(path));
      if (!st) {
        if (!layer.isUpper && hasOciWhiteout(layer.path(parent.path), name)) break;
        continue;
      }
      if (isWhiteoutStat(st)) break;
      if (!layer.isUpper && this.wf.isXwhiteout(layer.path(path), st)) break;
      if (this.take(acc, layer, path, st)) break;
    }
    return acc.found;
  }

  /**
   * One layer's object for the path (not a whiteout), in lookup order: the first one found
   * serves the path; directories below a directory merge into it. True: the search ends here
   * (a non-directory, a non-directory below a directory, or an opaque directory).
   */
  private take(acc: { found: Entry | null }, layer: Layer, path: string, st: BigIntStats): boolean {
    const type = typeOf(st);
    if (!acc.found) {
      acc.found = { path, layer: layer.index, type, dirLayers: [] };
      this.fresh = { path, st };
      if (type !== 'dir') return true;
    } else if (type !== 'dir') {
      return true; // a non-directory below a directory is hidden, and ends the merge
    }
    acc.found.dirLayers.push(layer.index);
    return this.wf.isOpaqueDir(layer.path(path), !layer.isUpper);
  }

  /**
   * Does any lower layer (below the upper) show something at parent/name? Decides whether
   * removing or renaming away the name needs a whiteout in the upper.
   */
  lowerHas(parentPath: string, name: string): boolean {
    const parent = this.find(parentPath);
    if (!parent || parent.type !== 'dir') return false;
    const path = joinPath(parentPath, name);
    const lowers = this.index.names(parent);
    const codes = lowers && this.lowerCodes(parent, name, lowers, true);
    if (codes) {
      for (const code of codes) {
        if ((code & 3) === K_WHITEOUT) return false;
        const layer = this.layers[code >> 2]!;
        const st = lstatOrNull(layer.path(path));
        if (!st) continue; // gone since the listing was read
        return !isWhiteoutStat(st) && !this.wf.isXwhiteout(layer.path(path), st);
      }
      return false;
    }
    for (const li of parent.dirLayers) {
      const layer = this.layers[li]!;
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

  /**
   * `e` was just copied up: the upper's copy serves its path now. A non-directory is recorded
   * as such (no lookup needed to learn it); a directory, which merges, is looked up again.
   */
  copiedUp(e: Entry): void {
    const up = this.upper;
    if (e.type === 'dir' || !up) {
      this.invalidate(e.path);
      return;
    }
    const now: Entry = { path: e.path, layer: up.index, type: e.type, dirLayers: [] };
    this.cache.set(e.path, now);
    if (this.trace) this.trace({ ev: 'lookup', path: e.path, entry: now });
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
