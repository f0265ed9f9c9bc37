import { lstatSync, readdirEntries, type ByteDirent } from './bytes.ts';
import { fsErr, isCode } from './errors.ts';
import { checkPath, joinPath, type Layer } from './layer.ts';
import type { Entry, EntryType } from './lookup.ts';
import type { Stack } from './stack.ts';
import { OCI_OPAQUE, OCI_PREFIX, isWhiteoutStat, type WhiteoutFormat } from './whiteout.ts';

/*
 * Listing a directory (the kernel's fs/overlayfs/readdir.c): the merge of its layers' listings
 * (mergedReaddir), and the inode number each listed name shows (direntIno).
 *
 * Guarantees: each name once, as lookup would serve it; whiteouts and `.wh.*` names never
 * listed; a layer's directory that vanished underneath is skipped, not an error. Nothing here
 * awaits: a listing is one consistent pass over the layers as they are at the call.
 */

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

/** The listing of the union directory at path (ENOTDIR for anything else). */
export function readdir(s: Stack, path: string): DirItem[] {
  const e = s.resolver.get(checkPath(path));
  if (e.type !== 'dir') throw fsErr('ENOTDIR');
  return mergedReaddir(s.layers, e, s.wf);
}

/** The inode number getattr would report for a listed entry (one lstat, no lookup); 0: gone. */
export function direntIno(s: Stack, dir: string, item: DirItem): bigint {
  try {
    const st = lstatSync(s.layers[item.layer].path(joinPath(dir, item.name)), { bigint: true });
    return s.inodes.ino(item.layer, st);
  } catch {
    return 0n;
  }
}
