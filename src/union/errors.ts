import { constants } from 'node:os';

/**
 * An error carrying a POSIX errno name, as the FUSE adapter answers it. These are answers
 * (ENOENT for a lookup of a new name, ENODATA for the security.capability xattr the kernel asks
 * for before every write), not faults: they carry no stack trace, whose capture cost more than
 * the syscalls of the request.
 */
export class FsError extends Error {
  readonly code: string;
  constructor(code: string, message?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ? `${code}: ${message}` : code);
    Error.stackTraceLimit = limit;
    this.code = code;
  }
}

export function fsErr(code: string, message?: string): FsError {
  return new FsError(code, message);
}

const errnoTable = constants.errno as Record<string, number>;

/** Negative errno for an error thrown by the core, node:fs or src/sys; EIO for anything unknown. */
export function toErrno(e: unknown): number {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in errnoTable) return -errnoTable[code];
  return -errnoTable.EIO;
}

export { errCode, isCode } from '../errcode.ts';
