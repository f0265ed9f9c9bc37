// What the tests of src/sys (sys*.test.ts) share: temp dirs, expected errors, tmpfs mounts.

import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type SysError } from '../src/sys/index.ts';

export const { S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, S_IFREG } = fs.constants;
export const TMPFS_MAGIC = 0x01021994n;
export const ST_RDONLY = 1n;
export const ST_VALID = 0x20n;

export function tmpDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-sys-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function expectSysError(t: ExecutionContext, fn: () => unknown, code: string, syscall: string): SysError {
  const err = t.throws(fn) as SysError;
  t.is(err.code, code);
  t.is(err.errno, -(os.constants.errno as Record<string, number>)[code]!);
  t.is(err.syscall, syscall);
  t.true(err.message.startsWith(`${code}: `), err.message);
  t.true(err.message.includes(`, ${syscall} '`), err.message);
  return err;
}

/** Mounting a tmpfs needs CAP_SYS_ADMIN; probe once so those tests are skipped (not failed) elsewhere. */
export const canMount = ((): boolean => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-sys-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'layerfs-probe', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
export const mountTest = canMount ? test : test.skip;

export function mountTmpfs(t: ExecutionContext, opts = 'size=1m'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-sys-mnt-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'layerfs-test', dir]);
  t.teardown(() => {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch {
      // already unmounted by the test
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}
