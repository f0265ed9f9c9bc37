// src/sys, the syscalls Node's fs lacks: renameat2, utimensat.
// What these tests share: _sys.ts.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, renameat2, timespecFromNs, utimensat } from '../src/sys/index.ts';
import { tmpDir, expectSysError } from './_sys.ts';

// --- renameat2 --------------------------------------------------------------

test('renameat2 RENAME_EXCHANGE swaps a file and a directory', (t) => {
  const dir = tmpDir(t);
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  fs.writeFileSync(a, 'file-a');
  fs.mkdirSync(b);
  fs.writeFileSync(path.join(b, 'inner'), 'inside');
  renameat2(a, b, RENAME_EXCHANGE);
  t.true(fs.lstatSync(a).isDirectory());
  t.is(fs.readFileSync(path.join(a, 'inner'), 'utf8'), 'inside');
  t.true(fs.lstatSync(b).isFile());
  t.is(fs.readFileSync(b, 'utf8'), 'file-a');
  // EXCHANGE needs both to exist
  expectSysError(t, () => renameat2(a, path.join(dir, 'none'), RENAME_EXCHANGE), 'ENOENT', 'renameat2');
});

test('renameat2 RENAME_NOREPLACE refuses to overwrite', (t) => {
  const dir = tmpDir(t);
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  fs.writeFileSync(a, 'A');
  fs.writeFileSync(b, 'B');
  const err = expectSysError(t, () => renameat2(a, b, RENAME_NOREPLACE), 'EEXIST', 'renameat2');
  t.is(err.path, a);
  t.is(err.dest, b);
  t.is(err.message, `EEXIST: file already exists, renameat2 '${a}' -> '${b}'`);
  t.is(fs.readFileSync(a, 'utf8'), 'A');
  t.is(fs.readFileSync(b, 'utf8'), 'B');

  const c = path.join(dir, 'c');
  renameat2(a, c, RENAME_NOREPLACE);
  t.false(fs.existsSync(a));
  t.is(fs.readFileSync(c, 'utf8'), 'A');
});

test('renameat2 RENAME_WHITEOUT leaves a 0/0 char device at the source', (t) => {
  const dir = tmpDir(t);
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  fs.writeFileSync(a, 'A');
  renameat2(a, b, RENAME_WHITEOUT);
  const wh = fs.lstatSync(a);
  t.true(wh.isCharacterDevice());
  t.is(wh.rdev, 0);
  t.is(fs.readFileSync(b, 'utf8'), 'A');
});

test('renameat2 with flags 0 is a plain rename; invalid flag combos are EINVAL', (t) => {
  const dir = tmpDir(t);
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  fs.writeFileSync(a, 'A');
  fs.writeFileSync(b, 'B');
  renameat2(a, b, 0);
  t.false(fs.existsSync(a));
  t.is(fs.readFileSync(b, 'utf8'), 'A');
  fs.writeFileSync(a, 'A2');
  expectSysError(t, () => renameat2(a, b, RENAME_NOREPLACE | RENAME_EXCHANGE), 'EINVAL', 'renameat2');
});

// --- utimensat --------------------------------------------------------------

test('timespecFromNs splits nanoseconds, flooring negative times', (t) => {
  t.deepEqual(timespecFromNs(0n), { sec: 0n, nsec: 0 });
  t.deepEqual(timespecFromNs(1_700_000_000_123_456_789n), { sec: 1_700_000_000n, nsec: 123_456_789 });
  t.deepEqual(timespecFromNs(-1n), { sec: -1n, nsec: 999_999_999 });
  t.deepEqual(timespecFromNs(-1_000_000_000n), { sec: -1n, nsec: 0 });
  t.deepEqual(timespecFromNs(-1_500_000_000n), { sec: -2n, nsec: 500_000_000 });
});

test('utimensat sets exact nanosecond atime and mtime on a file', (t) => {
  const f = path.join(tmpDir(t), 'f');
  fs.writeFileSync(f, 'x');
  utimensat(f, { sec: 1_600_000_000n, nsec: 987_654_321 }, { sec: 1_700_000_000n, nsec: 123_456_789 });
  const st = fs.lstatSync(f, { bigint: true });
  t.is(st.atimeNs, 1_600_000_000_987_654_321n);
  t.is(st.mtimeNs, 1_700_000_000_123_456_789n);
});

test('utimensat copies times from lstat bigint ns (copy-up), including pre-1970', (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, 'src');
  const dst = path.join(dir, 'dst');
  fs.writeFileSync(src, '');
  fs.writeFileSync(dst, '');
  utimensat(src, timespecFromNs(-1_500_000_001n), timespecFromNs(1_234_567_890_000_000_007n));
  const s = fs.lstatSync(src, { bigint: true });
  t.is(s.atimeNs, -1_500_000_001n);
  t.is(s.mtimeNs, 1_234_567_890_000_000_007n);
  utimensat(dst, timespecFromNs(s.atimeNs), timespecFromNs(s.mtimeNs));
  const d = fs.lstatSync(dst, { bigint: true });
  t.is(d.atimeNs, s.atimeNs);
  t.is(d.mtimeNs, s.mtimeNs);
});

test('utimensat on a symlink changes the link, not the target (nofollow default)', (t) => {
  const dir = tmpDir(t);
  const target = path.join(dir, 'target');
  const link = path.join(dir, 'link');
  fs.writeFileSync(target, '');
  fs.symlinkSync('target', link);
  utimensat(target, { sec: 1_000_000_000n, nsec: 1 }, { sec: 1_000_000_000n, nsec: 2 });

  utimensat(link, { sec: 1_700_000_000n, nsec: 111_111_111 }, { sec: 1_700_000_000n, nsec: 123_456_789 });
  const l = fs.lstatSync(link, { bigint: true });
  t.is(l.atimeNs, 1_700_000_000_111_111_111n);
  t.is(l.mtimeNs, 1_700_000_000_123_456_789n);
  const tg = fs.lstatSync(target, { bigint: true });
  t.is(tg.atimeNs, 1_000_000_000_000_000_001n);
  t.is(tg.mtimeNs, 1_000_000_000_000_000_002n);

  // nofollow: false goes through the link
  utimensat(link, 'omit', { sec: 5n, nsec: 5 }, { nofollow: false });
  t.is(fs.lstatSync(target, { bigint: true }).mtimeNs, 5_000_000_005n);
  t.is(fs.lstatSync(link, { bigint: true }).mtimeNs, 1_700_000_000_123_456_789n);
});

test("utimensat 'omit' leaves a time unchanged and 'now' uses the current time", (t) => {
  const f = path.join(tmpDir(t), 'f');
  fs.writeFileSync(f, '');
  utimensat(f, { sec: 100n, nsec: 1 }, { sec: 200n, nsec: 2 });

  utimensat(f, 'omit', { sec: 300n, nsec: 3 });
  let st = fs.lstatSync(f, { bigint: true });
  t.is(st.atimeNs, 100_000_000_001n);
  t.is(st.mtimeNs, 300_000_000_003n);

  utimensat(f, { sec: 400n, nsec: 4 }, 'omit');
  st = fs.lstatSync(f, { bigint: true });
  t.is(st.atimeNs, 400_000_000_004n);
  t.is(st.mtimeNs, 300_000_000_003n);

  const before = BigInt(Date.now() - 2000) * 1_000_000n;
  utimensat(f, 'omit', 'now');
  const after = BigInt(Date.now() + 2000) * 1_000_000n;
  st = fs.lstatSync(f, { bigint: true });
  t.is(st.atimeNs, 400_000_000_004n);
  t.true(st.mtimeNs >= before && st.mtimeNs <= after, `mtimeNs=${st.mtimeNs}`);
});

test('utimensat validates nsec and reports errors', (t) => {
  const dir = tmpDir(t);
  const f = path.join(dir, 'f');
  fs.writeFileSync(f, '');
  t.throws(() => utimensat(f, { sec: 0n, nsec: 1_000_000_000 }, 'omit'), { instanceOf: RangeError });
  t.throws(() => utimensat(f, 'omit', { sec: 0n, nsec: -1 }), { instanceOf: RangeError });
  t.throws(() => utimensat(f, 'omit', { sec: 0n, nsec: 0.5 }), { instanceOf: RangeError });
  const missing = path.join(dir, 'missing');
  const err = expectSysError(t, () => utimensat(missing, 'now', 'now'), 'ENOENT', 'utimensat');
  t.is(err.path, missing);
});
