// The reader of test/crash/lower-change.test.ts: reads, lists and stats paths through a mount
// in a loop, in a seeded random order, until a stop file appears. One JSON line per operation
// to LOG (outside the mount), written when the operation returned:
//   {"op":"stat","p":"a/f0","ms":1.2,"type":"file","size":12}  or  {..., "err":"ENOENT"}
// Plain JavaScript, so that it starts fast.
//
//   node _reader-child.mjs MNT PATHS.json LOG STOPFILE SEED
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

const [mnt, pathsFile, logFile, stopFile, seedArg] = process.argv.slice(2);
const paths = JSON.parse(fs.readFileSync(pathsFile, 'utf8'));
const log = fs.openSync(logFile, 'a');
let a = Number(seedArg) >>> 0;
const rand = () => {
  a = (a + 0x6d2b79f5) >>> 0;
  let t = a;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (xs) => xs[Math.floor(rand() * xs.length)];

function typeOf(st) {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

function record(op, p, f) {
  const t0 = performance.now();
  let out;
  try {
    out = f();
  } catch (e) {
    out = { err: e.code ?? String(e.message) };
  }
  fs.writeSync(log, JSON.stringify({ op, p, ms: +(performance.now() - t0).toFixed(2), ...out }) + '\n');
}

const abs = (p) => (p === '' ? mnt : path.join(mnt, p));
const ops = {
  stat: (p) => record('stat', p, () => {
    const st = fs.statSync(abs(p));
    return { type: typeOf(st), size: st.isFile() ? st.size : undefined };
  }),
  lstat: (p) => record('lstat', p, () => {
    const st = fs.lstatSync(abs(p));
    return { type: typeOf(st), size: st.isFile() ? st.size : undefined };
  }),
  read: (p) => record('read', p, () => {
    // O_NONBLOCK: a fifo (the tests swap one in) must not block the reader itself.
    const fd = fs.openSync(abs(p), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) return { type: typeOf(st) };
      return { type: 'file', sha: createHash('sha256').update(fs.readFileSync(fd)).digest('hex') };
    } finally {
      fs.closeSync(fd);
    }
  }),
  readdir: (p) => record('readdir', p, () => ({ names: fs.readdirSync(abs(p)).sort() })),
  fd: (p) => record('fd', p, () => {
    // open, fstat, read everything through the descriptor
    const fd = fs.openSync(abs(p), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) return { type: typeOf(st) };
      const chunks = [];
      const b = Buffer.alloc(65536);
      let pos = 0;
      for (;;) {
        const n = fs.readSync(fd, b, 0, b.length, pos);
        if (n === 0) break;
        chunks.push(Buffer.from(b.subarray(0, n)));
        pos += n;
      }
      return { type: typeOf(st), sha: createHash('sha256').update(Buffer.concat(chunks)).digest('hex') };
    } finally {
      fs.closeSync(fd);
    }
  }),
  walk: (p) => {
    // A recursive listing: every entry met is recorded as an lstat of its own.
    const visit = (rel) => {
      let names;
      try {
        names = fs.readdirSync(abs(rel)).sort();
      } catch (e) {
        record('readdir', rel, () => { throw e; });
        return;
      }
      record('readdir', rel, () => ({ names }));
      for (const n of names) {
        const r = rel ? `${rel}/${n}` : n;
        let isDir = false;
        record('lstat', r, () => {
          const st = fs.lstatSync(abs(r));
          isDir = st.isDirectory();
          return { type: typeOf(st), size: st.isFile() ? st.size : undefined };
        });
        if (isDir) visit(r);
      }
    };
    visit(p);
  },
};

const kinds = Object.keys(ops);
let n = 0;
while (!(n % 20 === 0 && fs.existsSync(stopFile))) {
  n++;
  const op = pick(kinds);
  const p = op === 'walk' ? pick(paths.dirs) : op === 'readdir' ? pick(paths.dirs) : pick(paths.all);
  ops[op](p);
}
fs.writeSync(log, JSON.stringify({ op: 'end', n }) + '\n');
