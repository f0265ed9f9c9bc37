// The wire between the layerfs_fuse addon and src/fuse/lowlevel.ts: the op codes requests
// arrive under, the byte layout of the records lowlevel.ts writes for the addon to decode
// (stat, entry, packed dirents), the open flags, and the libfuse constants lowlevel.ts
// mirrors. The C++ side is native/fuse/wire.h (and libfuse's headers), reported by the
// addon's wire() from offsetof/sizeof; the TS side is lowlevel.ts' `Op`, `StatRec`,
// `EntryRec`, `DirentRec`, `OpenFlag`, `Cap`, `SetAttr`, `IoctlFlags` and `direntSize`. A
// change on one side only fails here, naming every mismatch. No mount: the records are
// captured from lowlevel.ts' own Request methods on a stand-in session and decoded with the
// addon's offsets, sizes and types.
import test from 'ava';
import {
  Cap, DirentRec, EntryRec, IoctlFlags, Op, OpenFlag, Request, SetAttr, StatRec, direntSize, loadAddon,
  type AddonWire, type EntryParam as Entry, type LowLevelSession, type OpenOptions, type Stat,
} from '../../src/fuse/lowlevel.ts';

type Table = Readonly<Record<string, number>>;

/**
 * Every way two name → number tables disagree, one line each: a different value, a name only
 * on one side (unless listed in `tsOnly`, with the reason there).
 */
function compareTables(what: string, ts: Table, native: Table, tsOnly: readonly string[] = []): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(ts)) {
    if (!(k in native)) {
      if (!tsOnly.includes(k)) out.push(`${what}.${k}: only in lowlevel.ts (${v})`);
    } else if (native[k] !== v) {
      out.push(`${what}.${k}: lowlevel.ts says ${v}, the addon ${native[k]}`);
    }
  }
  for (const [k, v] of Object.entries(native)) if (!(k in ts)) out.push(`${what}.${k}: only in the addon (${v})`);
  return out;
}

const wire = (): AddonWire => loadAddon().wire();

/** A TS record table ({field: offset, BYTES?}) as the addon reports records. */
function recordTable(r: AddonWire['records'][keyof AddonWire['records']], bytesKey: string): Table {
  const t: Record<string, number> = { [bytesKey]: r.bytes };
  for (const [k, f] of Object.entries(r.fields)) t[k] = f.offset;
  return t;
}

test('op codes: lowlevel.ts Op is native/fuse/wire.h LAYERFS_OPS', (t) => {
  const bad = compareTables('Op', Op, wire().ops);
  t.deepEqual(bad, [], bad.join('\n'));
});

test('record layouts: lowlevel.ts StatRec, EntryRec, DirentRec are wire.h StatRec, EntryRec, DirentRec', (t) => {
  const r = wire().records;
  const bad = [
    ...compareTables('StatRec', StatRec, recordTable(r.stat, 'BYTES')),
    ...compareTables('EntryRec', EntryRec, recordTable(r.entry, 'BYTES')),
    // A dirent's size is its header's: the name starts there.
    ...compareTables('DirentRec', DirentRec, recordTable(r.dirent, 'name')),
  ];
  // The addon's own records: fields in bounds, no overlaps, sizes that go with their types.
  const SIZE: Record<string, number> = { u32: 4, u64: 8, i64: 8, f64: 8, stat: r.stat.bytes, entry: r.entry.bytes, bytes: 0 };
  for (const [name, rec] of Object.entries(r)) {
    const fields = Object.entries(rec.fields).sort((a, b) => a[1].offset - b[1].offset);
    let end = 0;
    for (const [k, f] of fields) {
      if (SIZE[f.type] === undefined) bad.push(`addon ${name}.${k}: unknown type ${f.type}`);
      else if (SIZE[f.type] !== f.size) bad.push(`addon ${name}.${k}: a ${f.type} of ${f.size} bytes`);
      if (f.offset < end) bad.push(`addon ${name}.${k}: overlaps the field before it`);
      end = f.offset + f.size;
    }
    if (end > rec.bytes) bad.push(`addon ${name}: fields end at ${end}, past its ${rec.bytes} bytes`);
  }
  t.deepEqual(bad, [], bad.join('\n'));
});

test('open flags: lowlevel.ts OpenFlag is wire.h OpenFlag', (t) => {
  const bad = compareTables('OpenFlag', OpenFlag, wire().openFlags);
  t.deepEqual(bad, [], bad.join('\n'));
});

test("libfuse constants: lowlevel.ts Cap, SetAttr, IoctlFlags are libfuse's", (t) => {
  const lib = wire().libfuse;
  const bad = [
    ...compareTables('Cap', Cap, lib.Cap),
    ...compareTables('SetAttr', SetAttr, lib.SetAttr),
    // FUSE_IOCTL_32BIT and FUSE_IOCTL_COMPAT_X32 are the kernel's (fuse_kernel.h), which
    // libfuse does not install.
    ...compareTables('IoctlFlags', IoctlFlags, lib.IoctlFlags, ['BIT32', 'COMPAT_X32']),
  ];
  t.deepEqual(bad, [], bad.join('\n'));
});

test("direntSize: the kernel's dirent sizes as libfuse computes them", (t) => {
  const k = wire().kernelDirent;
  const bad: string[] = [];
  for (const plus of [false, true]) {
    for (let n = 0; n <= 64; n++) {
      const want = ((plus ? k.plusName : k.name) + n + 7) & ~7;
      if (direntSize(n, plus) !== want) bad.push(`direntSize(${n}, ${plus}) = ${direntSize(n, plus)}, libfuse: ${want}`);
    }
  }
  t.deepEqual(bad, [], bad.join('\n'));
});

// ---------------------------------------------------------------------------------------
// records written by lowlevel.ts, read with the addon's layout

/** A stand-in session: each addon call is recorded (buffers copied: lowlevel.ts reuses them). */
function standIn(): { req(op: number): Request; call(name: string): unknown[] } {
  const calls = new Map<string, unknown[]>();
  const addon = new Proxy({}, {
    get: (_t, name) => (...args: unknown[]) => {
      calls.set(String(name), args.map((a) => (a instanceof Uint8Array ? Buffer.from(a) : a)));
      return 0;
    },
  });
  const session = {
    addon, handle: {}, answered() {},
    report(msg: string) {
      throw new Error(msg);
    },
  } as unknown as LowLevelSession;
  let id = 0;
  return {
    req: (op) => new Request(session, ++id, op, 0, 0, 0, 0),
    call(name) {
      const c = calls.get(name);
      if (!c) throw new Error(`no ${name} call`);
      return c;
    },
  };
}

type Decoded = { [k: string]: bigint | number | Decoded | null };

function decode(buf: Buffer, at: number, rec: AddonWire['records']['stat'], all: AddonWire['records']): Decoded {
  const out: Decoded = {};
  for (const [k, f] of Object.entries(rec.fields)) {
    const o = at + f.offset;
    if (f.type === 'u64') out[k] = buf.readBigUInt64LE(o);
    else if (f.type === 'i64') out[k] = buf.readBigInt64LE(o);
    else if (f.type === 'u32') out[k] = buf.readUInt32LE(o);
    else if (f.type === 'f64') out[k] = buf.readDoubleLE(o);
    else if (f.type === 'stat') out[k] = decode(buf, o, all.stat, all);
    else if (f.type === 'entry') out[k] = decode(buf, o, all.entry, all);
    else out[k] = null; // the dirent's name: read by the caller
  }
  return out;
}

/** Every field where `got` differs from `want`, one line each. */
function diff(what: string, want: Decoded, got: Decoded): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(want), ...Object.keys(got)])) {
    const w = want[k];
    const g = got[k];
    if (w !== null && typeof w === 'object' && g !== null && typeof g === 'object') out.push(...diff(`${what}.${k}`, w, g));
    else if (w !== g) out.push(`${what}.${k}: lowlevel.ts was given ${String(w)}, the addon's layout reads ${String(g)}`);
  }
  return out;
}

const NS = 1_000_000_000n;
// Every byte of every field non-zero where the type allows: a field read at the wrong offset
// or with the wrong width shows.
const STAT: Stat = {
  ino: 0x0102030405060708n, size: 0x1112131415161718n, blocks: 0x2122232425262728n,
  atimeNs: -2n * NS + 500_000_000n, mtimeNs: 0x3132333435n * NS + 123_456_789n, ctimeNs: 0x4142434445n * NS + 987_654_321n,
  mode: 0x8182a1a4, nlink: 0x91929394, uid: 0xa1a2a3a4, gid: 0xb1b2b3b4, blksize: 0xc1c2c3c4, rdev: 0xd1d2d3d4d5d6d7d8n,
};
const STAT_READ: Decoded = {
  ino: 0x0102030405060708n, size: 0x1112131415161718n, blocks: 0x2122232425262728n,
  atimeSec: -2n, mtimeSec: 0x3132333435n, ctimeSec: 0x4142434445n,
  atimeNsec: 500_000_000, mtimeNsec: 123_456_789, ctimeNsec: 987_654_321,
  mode: 0x8182a1a4, nlink: 0x91929394, uid: 0xa1a2a3a4, gid: 0xb1b2b3b4, blksize: 0xc1c2c3c4, rdev: 0xd1d2d3d4d5d6d7d8n,
};
const ENTRY: Entry = { nodeid: 0x1e1d1c1b1a1918, generation: 0x2e2d2c2b2a29, entryTimeout: 1.25, attrTimeout: 3.5, attr: STAT };
const ENTRY_READ: Decoded = {
  nodeid: 0x1e1d1c1b1a1918n, generation: 0x2e2d2c2b2a29n, entryTimeout: 1.25, attrTimeout: 3.5, attr: STAT_READ,
};

test('stat and entry records written by lowlevel.ts read back with the addon layout', (t) => {
  const w = wire();
  const s = standIn();
  const bad: string[] = [];

  s.req(Op.GETATTR).attr(STAT, 1);
  const attr = s.call('replyAttr')[2] as Buffer;
  bad.push(...diff('attr', STAT_READ, decode(attr, 0, w.records.stat, w.records)));

  s.req(Op.LOOKUP).entry(ENTRY);
  const entry = s.call('replyEntry')[2] as Buffer;
  bad.push(...diff('entry', ENTRY_READ, decode(entry, 0, w.records.entry, w.records)));

  s.req(Op.LOOKUP).negative(2.75);
  const neg = decode(s.call('replyEntry')[2] as Buffer, 0, w.records.entry, w.records);
  t.is(neg.entryTimeout, 2.75, 'a negative entry: its timeout where the addon reads entryTimeout');
  t.is(neg.nodeid, 0n);

  s.req(Op.CREATE).create(ENTRY, 7);
  bad.push(...diff('create', ENTRY_READ, decode(s.call('replyCreate')[2] as Buffer, 0, w.records.entry, w.records)));
  t.deepEqual(bad, [], bad.join('\n'));
});

test('open flags written by lowlevel.ts are the addon bits', (t) => {
  const w = wire();
  const s = standIn();
  // OpenOptions → the addon's flag names; an addon flag with no option here fails too.
  const OPTION: Record<string, keyof OpenOptions> = {
    DIRECT_IO: 'directIo', KEEP_CACHE: 'keepCache', NONSEEKABLE: 'nonseekable', CACHE_READDIR: 'cacheReaddir', NOFLUSH: 'noflush',
  };
  const bad: string[] = [];
  let all = 0;
  for (const [flag, bit] of Object.entries(w.openFlags)) {
    const opt = OPTION[flag];
    if (!opt) {
      bad.push(`OpenFlag.${flag}: no OpenOptions field in this test for it`);
      continue;
    }
    all |= bit;
    s.req(Op.OPEN).open(3, { [opt]: true });
    const fl = s.call('replyOpen')[3];
    if (fl !== bit) bad.push(`open({${opt}}): lowlevel.ts sent ${String(fl)}, the addon reads ${flag} as ${bit}`);
  }
  s.req(Op.CREATE).create(ENTRY, 9, { directIo: true, keepCache: true, nonseekable: true, cacheReaddir: true, noflush: true });
  const fl = s.call('replyCreate')[4];
  if (fl !== all) bad.push(`create(every option): lowlevel.ts sent ${String(fl)}, the addon's bits make ${all}`);
  t.deepEqual(bad, [], bad.join('\n'));
});

test('packed dirents written by lowlevel.ts read back with the addon layout', (t) => {
  const w = wire();
  const s = standIn();
  const list = [
    { name: 'a', off: 1, entry: ENTRY },
    { name: 'eight ch', off: 0x12345678, entry: { ...ENTRY, nodeid: 5 } },
    { name: 'not \xff utf-8 \xc3', off: Number.MAX_SAFE_INTEGER, entry: ENTRY },
  ];
  s.req(Op.READDIRPLUS).dirents(list, true, 65536);
  const packed = s.call('replyDirents')[2] as Buffer;
  const d = w.records.dirent;
  const bad: string[] = [];
  let pos = 0;
  for (const [i, want] of list.entries()) {
    if (pos + d.bytes > packed.length) {
      bad.push(`dirent ${i}: the packed list ends at ${packed.length}, before its header`);
      break;
    }
    const got = decode(packed, pos, d, w.records);
    const nl = got.namelen as number;
    const name = packed.subarray(pos + d.fields.name!.offset, pos + d.fields.name!.offset + nl).toString('latin1');
    if (name !== want.name) bad.push(`dirent ${i}: name ${JSON.stringify(name)}, lowlevel.ts wrote ${JSON.stringify(want.name)}`);
    if (got.off !== BigInt(want.off)) bad.push(`dirent ${i}: off ${String(got.off)}, lowlevel.ts wrote ${want.off}`);
    bad.push(...diff(`dirent ${i}.entry`, { ...ENTRY_READ, nodeid: BigInt(want.entry.nodeid) }, got.entry as Decoded));
    pos += d.fields.name!.offset + ((nl + 7) & ~7);
  }
  if (pos !== packed.length) bad.push(`the packed list is ${packed.length} bytes, its entries ${pos}`);
  t.deepEqual(bad, [], bad.join('\n'));
});

test('the comparison names every kind of mismatch', (t) => {
  t.deepEqual(compareTables('X', { A: 1, B: 2, C: 3, K: 4 }, { A: 1, B: 5, D: 6 }, ['K']), [
    'X.B: lowlevel.ts says 2, the addon 5',
    'X.C: only in lowlevel.ts (3)',
    'X.D: only in the addon (6)',
  ]);
  t.deepEqual(diff('r', { a: 1n, s: { b: 2 } }, { a: 1n, s: { b: 3 } }), ["r.s.b: lowlevel.ts was given 2, the addon's layout reads 3"]);
});
