import { LRUCache } from 'lru-cache';
import { lstatOrNull, readdirEntries } from './bytes.ts';
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

/** An index and what it was read from, to notice a lower directory changed underneath. */
interface Listing {
  names: LowerNames;
  /** The indexed layers' directories: their layer, inode and modification time when read. */
  dirs: { li: number; ino: bigint; mtimeNs: bigint }[];
  /** When the directories were last found unchanged (performance.now()). */
  checked: number;
}

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
 * Only lowers are indexed: the union never changes them, so an index needs no invalidation by
 * the union's own operations. Changing a lower under a live mount is undefined behaviour (for the
 * kernel too), but people do it, and the kernel then mostly shows the change: so an index is
 * re-checked against its directories' modification times when it is used and older than
 * `recheckMs` (at most one lstat per layer per directory and period; 0: at every use), and
 * whenever it says no lower has a name; it is read again when a directory changed. A stale name is checked by lstat and skipped when gone. The upper
 * changes all the time and is never indexed.
 *
 * An index belongs to one resolution of the directory (its Entry, whose dirLayers it covers): when
 * the union changes what the directory merges (an opaque copy, a rename), the Resolver makes a new
 * Entry and the old index is simply no longer asked. Memory is bounded: the indexes live in an LRU
 * cache weighed by their number of names.
 */
export class DirIndex {
  private readonly cache: LRUCache<Entry, Listing | false>;

  constructor(
    private readonly layers: Layer[],
    private readonly recheckMs = 1000,
    maxNames = 1_000_000,
  ) {
    this.cache = new LRUCache({
      maxSize: maxNames,
      sizeCalculation: (v) => (v ? v.names.size + 1 : 1),
    });
  }

  /**
   * The lower names of the directory `dir` (a resolved union directory); null: not indexed.
   * `recheck`: check the directories now, whenever they were last checked (before a lookup
   * answers that no lower has a name: a name added underneath then shows at once).
   */
  names(dir: Entry, recheck = false): LowerNames | null {
    let hit = this.cache.get(dir);
    if (hit && (recheck || performance.now() - hit.checked >= this.recheckMs) && !this.unchanged(dir, hit)) hit = undefined;
    if (hit !== undefined) return hit ? hit.names : null;
    const l = this.read(dir);
    this.cache.set(dir, l ?? false);
    return l && l.names;
  }

  /** Are the directories the listing was read from still as they were? */
  private unchanged(dir: Entry, l: Listing): boolean {
    for (const d of l.dirs) {
      const st = lstatOrNull(this.layers[d.li]!.path(dir.path));
      if (!st || st.ino !== d.ino || st.mtimeNs !== d.mtimeNs) return false;
    }
    l.checked = performance.now();
    return true;
  }

  clear(): void {
    this.cache.clear();
  }

  private read(dir: Entry): Listing | null {
    const m: LowerNames = new Map();
    const dirs: Listing['dirs'] = [];
    const checked = performance.now();
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
        // The time first: a change after it shows as a new time at the next check.
        const st = lstatOrNull(layer.path(dir.path));
        if (!st) return null;
        dirs.push({ li, ino: st.ino, mtimeNs: st.mtimeNs });
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
    return { names: m, dirs, checked };
  }
}
