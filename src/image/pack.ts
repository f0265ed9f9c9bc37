// Packing an upper directory (kernel overlayfs format, as layerfs and the kernel write it)
// into an OCI layer tar stream.
//
//   whiteout (character device 0/0)             -> empty regular file `.wh.NAME`
//   opaque directory (<prefix>opaque = "y")     -> the directory, then `DIR/.wh..wh..opq`
//   everything else                             -> itself: owner, mode, mtime (whole seconds),
//                                                  symlink target, device numbers, hard links
//                                                  (the second name of an inode is a link
//                                                  entry), xattrs as PAX SCHILY.xattr.* records
// Overlay-private xattrs (`trusted.overlay.*`, `user.overlay.*`) are never written. Sockets
// cannot be in a tar file and are skipped with a warning. The upper's root directory itself is
// not an entry (its metadata is not part of a layer). Entries come in a stable order (names
// sorted), so the same upper gives the same bytes.
//
// Refused (nothing is written): an upper using kernel features that make it depend on its
// lowers (`metacopy`, `redirect` xattrs), and names starting with `.wh.` in the upper (they
// would turn into whiteouts; layerfs never creates them).
//
// Tar headers are encoded by node-tar's Header; the PAX records that carry xattrs and long
// names are assembled here (node-tar's own Pax writer has no xattr support).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Header, type HeaderData } from 'tar';
import * as sys from '../sys/index.ts';
import { isWhiteoutStat, OCI_OPAQUE, OCI_PREFIX, WhiteoutFormat } from '../union/index.ts';
import { ImageError } from './oci.ts';
import { isCode } from '../errcode.ts';

export interface PackOptions {
  /** Opaque markers are `user.overlay.opaque` (the upper of a `userxattr` mount). */
  userxattr: boolean;
  warn: (message: string) => void;
}

const BLOCK = 512;
const CHUNK = 1 << 20;

function paxRecord(key: string, value: Buffer): Buffer {
  const kv = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = kv.length + 1;
  while (String(len).length + kv.length !== len) len = String(len).length + kv.length;
  return Buffer.concat([Buffer.from(String(len)), kv]);
}

function pad(n: number): Buffer {
  const r = n % BLOCK;
  return Buffer.alloc(r === 0 ? 0 : BLOCK - r);
}

/** One header (with a PAX extended header first when needed). */
function headerBlocks(h: HeaderData, xattrs: Map<string, Buffer>): Buffer[] {
  const header = new Header(h);
  header.encode();
  const records: Buffer[] = [];
  if (header.needPax) {
    records.push(paxRecord('path', Buffer.from(h.path ?? '', 'utf8')));
    if (h.linkpath) records.push(paxRecord('linkpath', Buffer.from(h.linkpath, 'utf8')));
    if ((h.uid ?? 0) > 0o7777777) records.push(paxRecord('uid', Buffer.from(String(h.uid))));
    if ((h.gid ?? 0) > 0o7777777) records.push(paxRecord('gid', Buffer.from(String(h.gid))));
    if ((h.size ?? 0) > 0o77777777777) records.push(paxRecord('size', Buffer.from(String(h.size))));
  }
  for (const [name, value] of [...xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    records.push(paxRecord(`SCHILY.xattr.${name}`, value));
  }
  if (records.length === 0) return [header.block!];
  const body = Buffer.concat(records);
  const pax = new Header({
    path: `PaxHeaders/${path.posix.basename(h.path ?? 'x')}`.slice(0, 99),
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime: h.mtime,
    type: 'ExtendedHeader',
  });
  pax.encode();
  return [pax.block!, body, pad(body.length), header.block!];
}

function mtimeOf(st: fs.BigIntStats): Date {
  return new Date(Number(st.mtimeNs / 1_000_000_000n) * 1000);
}

function devNumbers(rdev: bigint): { devmaj: number; devmin: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { devmaj: Number(major & 0xffff_ffffn), devmin: Number(minor & 0xffff_ffffn) };
}

/** Stream the layer tar of `upper` (an async generator of its bytes). */
export async function* packUpper(upper: string, opts: PackOptions): AsyncGenerator<Buffer> {
  const wf = new WhiteoutFormat(opts.userxattr);
  const links = new Map<string, string>();

  const xattrsOf = (abs: string, rel: string): Map<string, Buffer> => {
    const out = new Map<string, Buffer>();
    let names: string[];
    try {
      names = sys.llistxattr(abs);
    } catch (e) {
      if (isCode(e, 'ENOTSUP', 'EOPNOTSUPP')) return out;
      throw e;
    }
    for (const name of names) {
      if (name === `${wf.prefix}metacopy` || name === `${wf.prefix}redirect`) {
        throw new ImageError(`'/${rel}' carries ${name}: this upper depends on its lower layers (metacopy/redirect_dir) and cannot be committed as a layer`);
      }
      if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) continue;
      const v = sys.lgetxattr(abs, name);
      if (v !== null) out.set(name, v);
    }
    return out;
  };

  function* walk(relDir: string): Generator<Buffer> {
    const absDir = relDir === '' ? upper : path.join(upper, relDir);
    const names = fs.readdirSync(absDir).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const abs = path.join(absDir, name);
      if (name.startsWith(OCI_PREFIX)) {
        throw new ImageError(`'/${rel}': names starting with '${OCI_PREFIX}' are OCI whiteout markers and cannot be committed (layerfs never creates them in an upper)`);
      }
      let st: fs.BigIntStats;
      try {
        st = fs.lstatSync(abs, { bigint: true });
      } catch (e) {
        if (isCode(e, 'ENOENT')) continue; // removed while we walk
        throw e;
      }
      const base: HeaderData = { uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode & 0o7777n), mtime: mtimeOf(st), uname: '', gname: '' };
      if (isWhiteoutStat(st)) {
        const wh = relDir === '' ? `${OCI_PREFIX}${name}` : `${relDir}/${OCI_PREFIX}${name}`;
        yield* headerBlocks({ path: wh, type: 'File', size: 0, mode: 0o644, uid: 0, gid: 0, mtime: mtimeOf(st) }, new Map());
        continue;
      }
      const xattrs = xattrsOf(abs, rel);
      if (st.isDirectory()) {
        yield* headerBlocks({ ...base, path: `${rel}/`, type: 'Directory', size: 0 }, xattrs);
        if (wf.isOpaqueDir(abs, false)) {
          yield* headerBlocks({ path: `${rel}/${OCI_OPAQUE}`, type: 'File', size: 0, mode: 0o644, uid: 0, gid: 0, mtime: mtimeOf(st) }, new Map());
        }
        yield* walk(rel);
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        if (st.nlink > 1n) {
          const first = links.get(key);
          if (first !== undefined) {
            yield* headerBlocks({ ...base, path: rel, type: 'Link', linkpath: first, size: 0 }, new Map());
            continue;
          }
          links.set(key, rel);
        }
        const size = Number(st.size);
        yield* headerBlocks({ ...base, path: rel, type: 'File', size }, xattrs);
        const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        try {
          let done = 0;
          while (done < size) {
            const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - done));
            const n = fs.readSync(fd, buf, 0, buf.length, done);
            if (n === 0) throw new ImageError(`'/${rel}' shrank while it was being committed (is the upper still in use?)`);
            done += n;
            yield n === buf.length ? buf : buf.subarray(0, n);
          }
        } finally {
          fs.closeSync(fd);
        }
        yield pad(size);
      } else if (st.isSymbolicLink()) {
        yield* headerBlocks({ ...base, path: rel, type: 'SymbolicLink', linkpath: fs.readlinkSync(abs), size: 0 }, xattrs);
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const type = st.isCharacterDevice() ? 'CharacterDevice' : 'BlockDevice';
        yield* headerBlocks({ ...base, path: rel, type, size: 0, ...devNumbers(st.rdev) }, xattrs);
      } else if (st.isFIFO()) {
        yield* headerBlocks({ ...base, path: rel, type: 'FIFO', size: 0 }, xattrs);
      } else {
        opts.warn(`'/${rel}' is a socket: skipped (a tar layer cannot hold sockets)`);
      }
    }
  }

  let batch: Buffer[] = [];
  let batched = 0;
  for (const b of walk('')) {
    batch.push(b);
    batched += b.length;
    if (batched >= CHUNK) {
      yield Buffer.concat(batch);
      batch = [];
      batched = 0;
    }
  }
  batch.push(Buffer.alloc(2 * BLOCK)); // end of archive
  yield Buffer.concat(batch);
}
