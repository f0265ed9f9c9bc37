// `layerfs diff UPPER`: what an upper directory changes, as `docker diff` prints it
// (`A` added, `C` changed, `D` deleted, one path a line, sorted).
//
// With the lowers (`--from IMAGE`, or `--lower A:B:C`) every answer is exact: a path in the
// upper is `C` when the lowers show something there and `A` when they do not; a whiteout is
// `D` when it hides something; an opaque directory also deletes (`D`) every name the lowers
// show in it that the upper does not have again.
//
// From the upper alone it can tell:
//   - `D` for every whiteout (character device 0/0): it deleted something (or nothing, if
//     the lowers never had it -- that it cannot know);
//   - `C` for an opaque directory (it replaces a directory the lowers had), and for objects
//     the kernel marked as copied up (`<prefix>origin`, and `<prefix>impure` on directories;
//     layerfs does not write these markers);
//   - everything else in the upper was added or changed, and which of the two it cannot tell
//     (a copied-up file looks exactly like a new one): it prints `A` for those.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Layer, Resolver, WhiteoutFormat, isWhiteoutStat, mergedReaddir, type Entry } from '../union/index.ts';
import * as sys from '../sys/index.ts';
import { ImageError } from './oci.ts';

export interface Change {
  kind: 'A' | 'C' | 'D';
  path: string;
}

function checkDir(p: string, what: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new ImageError(`${what} '${p}' does not exist`);
  }
  if (!st.isDirectory()) throw new ImageError(`${what} '${p}' is not a directory`);
  return path.resolve(p);
}

function hasXattr(abs: string, name: string): boolean {
  try {
    return sys.lgetxattr(abs, name) !== null;
  } catch {
    return false;
  }
}

export function diffUpper(upperArg: string, opts: { lowers?: string[]; userxattr: boolean }): Change[] {
  const upper = checkDir(upperArg, 'upper');
  const wf = new WhiteoutFormat(opts.userxattr);
  const lowers = opts.lowers?.map((l) => checkDir(l, 'lower layer'));
  // The lowers alone, as the image shows them before the change (lower layers read OCI
  // whiteouts and opaque markers, src/union/).
  const before = lowers ? new Resolver(lowers.map((l, i) => new Layer(l, i, false)), wf) : null;
  const find = (p: string): Entry | null => {
    try {
      return before!.find(p);
    } catch {
      return null; // below a non-directory of the lowers
    }
  };
  const out: Change[] = [];

  const walk = (rel: string): void => {
    const absDir = rel === '/' ? upper : path.join(upper, rel);
    const names = fs.readdirSync(absDir);
    for (const name of names) {
      const p = rel === '/' ? `/${name}` : `${rel}/${name}`;
      const abs = path.join(absDir, name);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(abs);
      } catch {
        continue; // removed while we look
      }
      if (isWhiteoutStat(st)) {
        if (!before || find(p)) out.push({ kind: 'D', path: p });
        continue;
      }
      const dir = st.isDirectory();
      const opaque = dir && wf.isOpaqueDir(abs, false);
      if (before) {
        const was = find(p);
        out.push({ kind: was ? 'C' : 'A', path: p });
        if (opaque && was?.type === 'dir') {
          const again = new Set(fs.readdirSync(abs)); // whiteouts among them report their own D
          for (const item of mergedReaddir(before.layers, was, wf)) {
            if (!again.has(item.name)) out.push({ kind: 'D', path: `${p}/${item.name}` });
          }
        }
      } else {
        const copied = hasXattr(abs, `${wf.prefix}origin`) || (dir && hasXattr(abs, `${wf.prefix}impure`));
        out.push({ kind: opaque || copied ? 'C' : 'A', path: p });
      }
      if (dir) walk(p);
    }
  };
  walk('/');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
