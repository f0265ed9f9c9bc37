import { lstatSync, readdirEntries, type ByteDirent } from './bytes.ts';
import { isCode } from './errors.ts';
import type { Layer } from './layer.ts';
import type { Entry, EntryType } from './lookup.ts';
import { OCI_OPAQUE, OCI_PREFIX, isWhiteoutStat, type WhiteoutFormat } from './whiteout.ts';

export interface DirItem {
  name: string;
  type: EntryType | 'fifo' | 'chr' | 'blk' | 'sock';
  /** Index of the layer the name is served from. */
  layer: number;
}

function direntType(d: ByteDirent): DirItem['type'] {
  if (d.isDirectory()) return 'dir';
  if (d.isFile()) return 'file';
  if (d.isSymbolicLink()) return 'symlink';
  if (d.isFIFO()) return 'fifo';
  if (d.isCharacterDevice()) return 'chr';
  if (d.isBlockDevice()) return 'blk';
  if (d.isSocket()) return 'sock';
  return 'other';
}

/**
 * The merged listing of a directory: each name once, from the top-most layer that has it;
 * whiteouts (kernel char 0/0, and `.wh.NAME` in lowers) hide the name in every layer below;
 * a non-directory hides a directory of the same name below it; `.wh.*` names never appear.
 * Only the layers in entry.dirLayers are read, so an opaque directory ends the merge.
 */
export function mergedReaddir(layers: Layer[], dir: Entry, wf?: WhiteoutFormat): DirItem[] {
  const seen = new Set<string>();
  const out: DirItem[] = [];
  for (const li of dir.dirLayers) {
    const layer = layers[li];
    const abs = layer.path(dir.path);
    let ents: ByteDirent[];
    try {
      ents = readdirEntries(abs);
    } catch (e) {
      if (isCode(e, 'ENOENT', 'ENOTDIR')) continue; // changed underneath us: skip the layer
      throw e;
    }
    const hidden: string[] = [];
    // Lower dirs marked opaque=x may hold xattr whiteouts (empty files carrying the xattr).
    const xw = wf !== undefined && !layer.isUpper && wf.hasXwhiteouts(abs);
    for (const d of ents) {
      const name = d.name;
      if (name.startsWith(OCI_PREFIX)) {
        // Never listed; in a lower it is an OCI whiteout for the rest of its name.
        if (!layer.isUpper && name !== OCI_OPAQUE) hidden.push(name.slice(OCI_PREFIX.length));
        continue;
      }
      if (seen.has(name)) continue;
      seen.add(name);
      if (d.isCharacterDevice()) {
        let wh = false;
        try {
          wh = isWhiteoutStat(lstatSync(abs + '/' + name));
        } catch (e) {
          if (!isCode(e, 'ENOENT')) throw e;
          continue;
        }
        if (wh) continue;
      }
      if (xw && d.isFile()) {
        let wh = false;
        try {
          wh = wf.isXwhiteout(abs + '/' + name, lstatSync(abs + '/' + name));
        } catch (e) {
          if (!isCode(e, 'ENOENT')) throw e;
          continue;
        }
        if (wh) continue;
      }
      out.push({ name, type: direntType(d), layer: li });
    }
    // OCI whiteouts hide names from the layers below this one, not from this one.
    for (const h of hidden) seen.add(h);
  }
  return out;
}
