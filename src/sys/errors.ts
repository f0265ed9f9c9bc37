// Failures shaped like Node's fs errors (`code` 'ENOENT', `errno` -2, `syscall`, `path`, `dest`)
// and Node's argument errors (ERR_INVALID_ARG_VALUE, ERR_OUT_OF_RANGE), and the argument
// conversions that raise the latter: C strings for koffi, checked paths for the own addon.

import koffi from 'koffi';
import os from 'node:os';
import util from 'node:util';
import { lib, type PathArg } from './libc.ts';

export interface SysError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
}

// ---------------------------------------------------------------------------
// errors

let errnoNames: Map<number, string> | undefined;

function errnoName(errno: number): string {
  const uv = util.getSystemErrorMap().get(-errno);
  if (uv) return uv[0]; // same name Node's own fs errors use (e.g. ENOTSUP for 95)
  if (!errnoNames) {
    errnoNames = new Map();
    for (const [name, num] of Object.entries(os.constants.errno)) {
      if (!errnoNames.has(num)) errnoNames.set(num, name);
    }
  }
  return errnoNames.get(errno) ?? `Unknown system error ${-errno}`;
}

function errnoMessage(errno: number): string {
  const uv = util.getSystemErrorMap().get(-errno);
  if (uv) return uv[1];
  const s = lib().strerror(errno);
  return s ? s.charAt(0).toLowerCase() + s.slice(1) : `unknown error ${errno}`;
}

function pathString(p: PathArg): string {
  return typeof p === 'string' ? p : p.toString('utf8');
}

export function sysError(errno: number, syscall: string, path?: PathArg, dest?: PathArg): SysError {
  const code = errnoName(errno);
  let message = `${code}: ${errnoMessage(errno)}, ${syscall}`;
  if (path !== undefined) message += ` '${pathString(path)}'`;
  if (dest !== undefined) message += ` -> '${pathString(dest)}'`;
  const err = new Error(message) as SysError;
  err.errno = -errno;
  err.code = code;
  err.syscall = syscall;
  if (path !== undefined) err.path = pathString(path);
  if (dest !== undefined) err.dest = pathString(dest);
  Error.captureStackTrace(err, sysError);
  return err;
}

/** Throw the error of a failed koffi call (its errno). */
export function fail(syscall: string, path?: PathArg, dest?: PathArg): never {
  const err = sysError(koffi.errno(), syscall, path, dest);
  Error.captureStackTrace(err, fail);
  throw err;
}

/** Throw the error of a failure the addon reported (`errno` positive). */
export function failErrno(errno: number, syscall: string, path?: PathArg, dest?: PathArg): never {
  const err = sysError(errno, syscall, path, dest);
  Error.captureStackTrace(err, failErrno);
  throw err;
}

// ---------------------------------------------------------------------------
// argument conversion

export function invalidArg(name: string, value: unknown, reason: string): TypeError {
  const err = new TypeError(`The argument '${name}' ${reason}. Received ${util.inspect(value)}`) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/** NUL-terminated copy of a path. */
export function cPath(p: PathArg, name = 'path'): Buffer {
  let bytes: Buffer;
  if (typeof p === 'string') bytes = Buffer.from(p, 'utf8');
  else if (Buffer.isBuffer(p)) bytes = p;
  else throw invalidArg(name, p, 'must be a string or Buffer');
  if (bytes.includes(0)) throw invalidArg(name, p, 'must be a string or Buffer without null bytes');
  const out = Buffer.alloc(bytes.length + 1);
  bytes.copy(out);
  return out;
}

/** A path for the addon: checked like cPath (no NUL), not copied. */
export function fastPath(p: PathArg, name = 'path'): PathArg {
  if (typeof p === 'string') {
    if (p.includes('\0')) throw invalidArg(name, p, 'must be a string or Buffer without null bytes');
  } else if (!Buffer.isBuffer(p) || p.includes(0)) {
    throw invalidArg(name, p, 'must be a string or Buffer without null bytes');
  }
  return p;
}

export function cName(name: string): string {
  if (typeof name !== 'string' || name.includes('\0')) {
    throw invalidArg('name', name, 'must be a string without null bytes');
  }
  return name;
}

export function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    const err = new RangeError(`The value of "${name}" is out of range. It must be an integer >= ${min} and <= ${max}. Received ${util.inspect(v)}`) as RangeError & { code: string };
    err.code = 'ERR_OUT_OF_RANGE';
    throw err;
  }
  return v;
}
