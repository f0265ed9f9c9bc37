import type { Dirent, EntryParam, OpenOptions, Stat, U64 } from './types.ts';

/**
 * The records replies are written in for the addon to decode (layouts: native/fuse/wire.h;
 * test/fuse/wire.test.ts holds these to it), and the kernel's dirent sizes.
 */

/** Stat record (little-endian): field offsets, and its size (BYTES). Times: seconds, nanoseconds. */
export const StatRec = {
  ino: 0, size: 8, blocks: 16, atimeSec: 24, mtimeSec: 32, ctimeSec: 40, atimeNsec: 48, mtimeNsec: 52,
  ctimeNsec: 56, mode: 60, nlink: 64, uid: 68, gid: 72, blksize: 76, rdev: 80, BYTES: 88,
} as const;

/** Entry record: a fuse_entry_param (timeouts in seconds, f64), its attributes a stat record. */
export const EntryRec = { nodeid: 0, generation: 8, entryTimeout: 16, attrTimeout: 24, attr: 32, BYTES: 120 } as const;

/** One packed dirent of replyDirents: this header, then the name's bytes (from `name`), padded to 8. */
export const DirentRec = { namelen: 0, off: 8, entry: 16, name: 136 } as const;

/** Open flags of replyOpen/replyCreate. */
export const OpenFlag = { DIRECT_IO: 1, KEEP_CACHE: 2, NONSEEKABLE: 4, CACHE_READDIR: 8, NOFLUSH: 16 } as const;
const NS = 1_000_000_000n;
const TWO32 = 4294967296;

function putU64(dv: DataView, off: number, v: U64): void {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > Number.MAX_SAFE_INTEGER) throw new TypeError(`not a u64: ${v}`);
    dv.setUint32(off, v >>> 0, true);
    dv.setUint32(off + 4, Math.floor(v / TWO32), true);
  } else if (typeof v === 'bigint') {
    dv.setBigUint64(off, v, true);
  } else {
    throw new TypeError(`not a u64: ${String(v)}`);
  }
}

function putU32(dv: DataView, off: number, v: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`not a u32: ${String(v)}`);
  dv.setUint32(off, v, true);
}

function putTime(dv: DataView, secOff: number, nsecOff: number, ns: bigint): void {
  if (typeof ns !== 'bigint') throw new TypeError(`time must be a bigint of nanoseconds: ${String(ns)}`);
  let sec = ns / NS;
  let nsec = ns - sec * NS;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS;
  }
  dv.setBigInt64(secOff, sec, true);
  dv.setUint32(nsecOff, Number(nsec), true);
}

export function putStat(dv: DataView, o: number, st: Stat): void {
  if (st === null || typeof st !== 'object') throw new TypeError('attributes missing');
  putU64(dv, o + StatRec.ino, st.ino);
  putU64(dv, o + StatRec.size, st.size);
  putU64(dv, o + StatRec.blocks, st.blocks);
  putTime(dv, o + StatRec.atimeSec, o + StatRec.atimeNsec, st.atimeNs);
  putTime(dv, o + StatRec.mtimeSec, o + StatRec.mtimeNsec, st.mtimeNs);
  putTime(dv, o + StatRec.ctimeSec, o + StatRec.ctimeNsec, st.ctimeNs);
  putU32(dv, o + StatRec.mode, st.mode);
  putU32(dv, o + StatRec.nlink, st.nlink);
  putU32(dv, o + StatRec.uid, st.uid);
  putU32(dv, o + StatRec.gid, st.gid);
  putU32(dv, o + StatRec.blksize, st.blksize);
  putU64(dv, o + StatRec.rdev, st.rdev);
}

export function putEntry(dv: DataView, o: number, e: EntryParam): void {
  if (e === null || typeof e !== 'object') throw new TypeError('entry missing');
  putU64(dv, o + EntryRec.nodeid, e.nodeid);
  putU64(dv, o + EntryRec.generation, e.generation ?? 0);
  if (typeof e.entryTimeout !== 'number' || typeof e.attrTimeout !== 'number') throw new TypeError('timeouts must be numbers');
  dv.setFloat64(o + EntryRec.entryTimeout, e.entryTimeout, true);
  dv.setFloat64(o + EntryRec.attrTimeout, e.attrTimeout, true);
  putStat(dv, o + EntryRec.attr, e.attr);
}

export const scratch = new Uint8Array(EntryRec.BYTES);
export const scratchDv = new DataView(scratch.buffer);

export function openFlags(o?: OpenOptions): number {
  if (!o) return 0;
  return (o.directIo ? OpenFlag.DIRECT_IO : 0) | (o.keepCache ? OpenFlag.KEEP_CACHE : 0) | (o.nonseekable ? OpenFlag.NONSEEKABLE : 0) |
    (o.cacheReaddir ? OpenFlag.CACHE_READDIR : 0) | (o.noflush ? OpenFlag.NOFLUSH : 0);
}

/** Size of one entry in the kernel's readdir(plus) buffer (FUSE_DIRENT_ALIGN of name offset + name). */
export function direntSize(nameBytes: number, plus: boolean): number {
  return ((plus ? 152 : 24) + nameBytes + 7) & ~7;
}


/** A byte string (one char per byte), or a TypeError. */
export function checkBytes(s: unknown, what: string): string {
  if (typeof s !== 'string' || NOT_BYTES.test(s)) throw new TypeError(`${what} must be a byte string (chars 0-255)`);
  return s;
}

const NOT_BYTES = /[^\x00-\xff]/;

export function packDirents(list: readonly Dirent[]): Uint8Array {
  const names: Buffer[] = [];
  let total = 0;
  for (const d of list) {
    const nb = Buffer.from(checkBytes(d?.name, 'dirent name'), 'latin1');
    names.push(nb);
    total += DirentRec.name + ((nb.length + 7) & ~7);
  }
  const out = Buffer.alloc(total);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let pos = 0;
  for (let i = 0; i < list.length; i++) {
    const d = list[i]!;
    const nb = names[i]!;
    dv.setUint32(pos + DirentRec.namelen, nb.length, true);
    putU64(dv, pos + DirentRec.off, d.off);
    putEntry(dv, pos + DirentRec.entry, d.entry);
    nb.copy(out, pos + DirentRec.name);
    pos += DirentRec.name + ((nb.length + 7) & ~7);
  }
  return out;
}
