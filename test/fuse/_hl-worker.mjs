// One worker of the hard-link stress test (test/fuse/hardlinks.test.ts): a seeded sequence of
// creates, links, renames, unlinks and writes on names only this worker uses (w<N>-<k>), in
// the directories it is given, holding a few descriptors open across operations. It knows at
// every step which names exist and what each object holds, so any error on a name that exists,
// or content other than the last written, is a defect. Prints one JSON line: its final names
// with their content, and the errors.
//
// Objects are made in the cold directories and linked anywhere; descriptors are held only on
// names in the hot ones. So a cold directory's dentries can all be reclaimed (the daemon gets
// a FORGET for it) while an object first named there lives on, held through a hot name.
//
//   node _hl-worker.mjs MOUNT WORKER SEED OPS HOT_DIRS COLD_DIRS    (dirs comma-separated)

import * as fs from 'node:fs';
import * as path from 'node:path';

const [mnt, worker, seedArg, opsArg, hotArg, coldArg] = process.argv.slice(2);
const hot = hotArg.split(',');
const cold = coldArg.split(',');
const dirs = [...hot, ...cold];
let seed = Number(seedArg) >>> 0;
const rand = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(rand() * a.length)];

let nextName = 0;
let nextObj = 0;
/** name (relative to the mount) → object id */
const names = new Map();
/** object id → { content, names: Set } */
const objects = new Map();
/** open descriptors: { fd, obj } */
const held = [];
const errors = [];

const abs = (n) => path.join(mnt, n);
const fresh = (where = dirs) => `${pick(where)}/w${worker}-${nextName++}`;
const err = (op, name, e) => errors.push(`${op} ${name}: ${e.code ?? e.message}`);

function create() {
  const n = fresh(cold);
  const obj = nextObj++;
  const content = `w${worker} object ${obj} v0\n`;
  try {
    fs.writeFileSync(abs(n), content, { flag: 'wx' });
  } catch (e) {
    return err('create', n, e);
  }
  objects.set(obj, { content, names: new Set([n]) });
  names.set(n, obj);
}

function link() {
  if (names.size === 0) return create();
  const from = pick([...names.keys()]);
  const to = fresh();
  try {
    fs.linkSync(abs(from), abs(to));
  } catch (e) {
    return err('link', `${from} -> ${to}`, e);
  }
  const obj = names.get(from);
  names.set(to, obj);
  objects.get(obj).names.add(to);
}

function rename() {
  if (names.size === 0) return;
  const from = pick([...names.keys()]);
  const to = fresh();
  try {
    fs.renameSync(abs(from), abs(to));
  } catch (e) {
    return err('rename', `${from} -> ${to}`, e);
  }
  const obj = names.get(from);
  names.delete(from);
  names.set(to, obj);
  const o = objects.get(obj);
  o.names.delete(from);
  o.names.add(to);
}

function unlink() {
  if (names.size < 4) return;
  const n = pick([...names.keys()]);
  try {
    fs.unlinkSync(abs(n));
  } catch (e) {
    return err('unlink', n, e);
  }
  const obj = names.get(n);
  names.delete(n);
  const o = objects.get(obj);
  o.names.delete(n);
  if (o.names.size === 0) objects.delete(obj);
}

function write() {
  if (names.size === 0) return;
  const n = pick([...names.keys()]);
  const o = objects.get(names.get(n));
  const content = `w${worker} object ${names.get(n)} via ${n} at ${nextName}\n`;
  try {
    fs.writeFileSync(abs(n), content);
  } catch (e) {
    return err('write', n, e);
  }
  o.content = content;
}

function check() {
  if (names.size === 0) return;
  const n = pick([...names.keys()]);
  const o = objects.get(names.get(n));
  try {
    const got = fs.readFileSync(abs(n), 'utf8');
    if (got !== o.content) errors.push(`read ${n}: ${JSON.stringify(got)}, expected ${JSON.stringify(o.content)}`);
    const st = fs.statSync(abs(n));
    if (st.nlink !== o.names.size) errors.push(`stat ${n}: nlink ${st.nlink}, expected ${o.names.size}`);
  } catch (e) {
    err('check', n, e);
  }
}

function hold() {
  const hotNames = [...names.keys()].filter((n) => hot.includes(n.split('/')[0]));
  if (hotNames.length === 0) return link();
  const n = pick(hotNames);
  try {
    held.push({ fd: fs.openSync(abs(n), 'r+'), obj: names.get(n) });
  } catch (e) {
    return err('open', n, e);
  }
  if (held.length > 4) fs.closeSync(held.shift().fd);
}

/** Through a held descriptor, then through every other name of the object (by path). */
function writeHeld() {
  const h = held.length > 0 ? pick(held) : null;
  const o = h && objects.get(h.obj);
  if (!o) return;
  const content = `w${worker} object ${h.obj} through a descriptor at ${nextName}\n`;
  try {
    fs.ftruncateSync(h.fd, 0);
    fs.writeSync(h.fd, content, 0);
  } catch (e) {
    return err('fd write', `object ${h.obj}`, e);
  }
  o.content = content;
  for (const n of o.names) {
    try {
      fs.chmodSync(abs(n), 0o640);
      if (fs.readFileSync(abs(n), 'utf8') !== content) errors.push(`read ${n} after a write through a descriptor: stale`);
    } catch (e) {
      err('by name after fd write', n, e);
    }
  }
}

const OPS = [create, create, link, link, link, rename, unlink, write, check, check, hold, writeHeld, writeHeld];
for (let i = 0; i < Number(opsArg); i++) pick(OPS)();
for (const h of held) fs.closeSync(h.fd);

const final = {};
for (const [n, obj] of names) final[n] = objects.get(obj).content;
process.stdout.write(JSON.stringify({ worker, names: final, errors }) + '\n');
