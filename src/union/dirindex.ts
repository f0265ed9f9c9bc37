import { LRUCache } from 'lru-cache';
import { readdirEntries } from './bytes.ts';
import { isCode } from './errors.ts';
import type { Layer } from './layer.ts';
import type { Entry } from './lookup.ts';
import { OCI_OPAQUE, OCI_PREFIX } from './whiteout.ts';

/**
 * What one lower layer's listing of a directory says about a name, packed in one number:
 * `layer * 4 + kind`.
 */
export const K_OTHER = 0; // there, and not a directory by its listing (or the listing does not say)
export const K_DIR = 1; // there, a directory
export const K_WHITEOUT = 2; // not there, but an OCI whiteout `.wh.NAME` is (it hides the layers below)

/**
 * For each name of a merged directory, where the lower layers have it: the codes of the layers
 * whose listing holds the name or an OCI whiteout for it, top layer first (for one layer, the
 * name before its whiteout). A name no lower has is absent.
 */
export type LowerNames = Map<string, number | number[]>;

/** Directories bigger than this are not indexed (their lookups lstat in every layer). */
const MAX_NAMES = 200_000;

/**
 * The lower layers' names of a merged directory, read with one readdir per layer on the first
 * lookup inside it.
 *
 * A lookup walks the layers top to bottom; without an index each layer that lacks the name costs
 * an lstat (and one more for a possible OCI `.wh.NAME`), so a name in the bottom of 128 layers
 * cost 256 syscalls. With the index a lookup is one hash lookup that yields just the layers that
 * have the name (usually one), and only those are asked for attributes: lookup time no longer
 * grows with the depth of the stack.
 *
 * Only lowers are indexed: the union never changes them (changing a lower under a live mount is
 * undefined behaviour, for the kernel too), so an index needs no invalidation by the union's own
 * operations. A lower changed underneath anyway shows a name already indexed in its new state or
 * not at all (a stale name is checked by lstat and skipped when gone), and a name added later
 * stays unseen while the index lives. The upper changes all the time and is never indexed.
 *
 * An index belongs to one resolution of the directory (its Entry, whose dirLayers it covers): when
 * the union changes what the directory merges (an opaque copy, a rename), the Resolver makes a new
 * Entry and the old index is simply no longer asked. Memory is bounded: the indexes live in an LRU
 * cache weighed by their number of names.
 */
export class DirIndex {
  private readonly cache: LRUCache<Entry, LowerNames | false>;

  constructor(
    private readonly layers: Layer[],
    maxNames = 1_000_000,
  ) {
    this.cache = new LRUCache({
      maxSize: maxNames,
      sizeCalculation: (v) => (v ? v.size + 1 : 1),
    });
  }

  /** The lower names of the directory `dir` (a resolved union directory); null: not indexed. */
  names(dir: Entry): LowerNames | null {
    const hit = this.cache.get(dir);
    if (hit !== undefined) return hit || null;
    const m = this.read(dir);
    this.cache.set(dir, m ?? false);
    return m;
  }

  clear(): void {
    this.cache.clear();
  }

  private read(dir: Entry): LowerNames | null {
    const m: LowerNames = new Map();
    const add = (name: string, code: number) => {
      const v = m.get(name);
      if (v === undefined) m.set(name, code);
      else if (typeof v === 'number') m.set(name, [v, code]);
      else v.push(code);
    };
    for (const li of dir.dirLayers) {
      const layer = this.layers[li]!;
      if (layer.isUpper) continue;
      let ents;
      try {
        ents = readdirEntries(layer.path(dir.path));
      } catch (e) {
        // Not a readable directory (any more): look names up one by one, as without an index.
        if (isCode(e, 'ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'ENAMETOOLONG', 'ELOOP')) return null;
        throw e;
      }
      if (m.size + ents.length > MAX_NAMES) return null;
      const whiteouts: string[] = [];
      for (const d of ents) {
        const name = d.name;
        if (name.startsWith(OCI_PREFIX)) {
          if (name !== OCI_OPAQUE) whiteouts.push(name.slice(OCI_PREFIX.length));
        } else {
          add(name, li * 4 + (d.isDirectory() ? K_DIR : K_OTHER));
        }
      }
      for (const name of whiteouts) add(name, li * 4 + K_WHITEOUT);
    }
    return m;
  }
}
