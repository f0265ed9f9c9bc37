import type { Layer } from './layer.ts';
import type { Entry } from './lookup.ts';

/**
 * What the union core decided, for `layerfs trace` and `mount -o trace=FILE`.
 *
 * The core emits these only while someone listens: every hook is a single `if (this.trace)`
 * check, and no event object is built otherwise. Layers are named by their index in the stack
 * (0 = top-most; see layerName() for the names users see).
 *
 *   lookup            a path resolved for real (the Resolver's cache missed), or a copy-up's
 *                     new answer for it: served by a layer, or missing. Repeated lookups
 *                     answered from the cache emit nothing.
 *   copyup            an object copied from a lower into the upper (size, duration).
 *   whiteout          a whiteout written in the upper (unlink, rmdir, rename away).
 *   whiteout-removed  a whiteout in the upper replaced by a new object of that name.
 *   opaque            a directory in the upper marked opaque (mkdir over a whiteout, an upper
 *                     directory moved into a merged one).
 *   exdev             a rename refused with EXDEV: the directory has lower parts.
 */
export type CoreEvent =
  | { ev: 'lookup'; path: string; entry: Entry | null }
  | { ev: 'copyup'; path: string; type: Entry['type']; fromLayer: number; bytes: number; ms: number }
  | { ev: 'whiteout'; path: string; op: 'unlink' | 'rmdir' | 'rename' }
  | { ev: 'whiteout-removed'; path: string; op: 'create' | 'mkdir' | 'rename' }
  | { ev: 'opaque'; path: string; op: 'mkdir' | 'rename' }
  | { ev: 'exdev'; path: string; to: string };

export type TraceSink = (ev: CoreEvent) => void;

/** The name users see for a layer: "upper", or "lower1" for the top-most lower, "lower2" … */
export function layerName(layers: readonly Layer[], index: number): string {
  const l = layers[index];
  if (!l) return `layer${index}`;
  if (l.isUpper) return 'upper';
  return `lower${index - (layers[0]?.isUpper ? 1 : 0) + 1}`;
}
