// Small process helpers shared by the FUSE / differential tests.
//
// Commands are run without a shell (argument arrays, so names with spaces or
// quotes need no escaping) and with LC_ALL=C so that their error messages are
// the untranslated glibc strerror() texts, which errnoFromMessage() maps back
// to symbolic codes.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface RunResult {
  /** Exit code, or null when the process was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  cwd?: string;
  /** Kill the process (SIGKILL) after this long. Default 60 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /**
   * Capture stdout/stderr through temp files instead of pipes. Use this for
   * commands that leave a background child (a FUSE daemon) which may inherit
   * the descriptors: with pipes, 'close' would only fire once that child
   * exits; with files we only wait for the command itself to exit.
   */
  viaFiles?: boolean;
}

const C_ENV = { LC_ALL: 'C', LANG: 'C', LANGUAGE: '' };

/** Run a command to completion; never rejects for a non-zero exit (only if it cannot be spawned). */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const env = { ...process.env, ...C_ENV, ...opts.env };
  if (opts.viaFiles) return runViaFiles(cmd, args, opts.cwd, env, timeoutMs);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8'), timedOut });
    });
  });
}

async function runViaFiles(
  cmd: string,
  args: readonly string[],
  cwd: string | undefined,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<RunResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-run-'));
  const outPath = path.join(dir, 'stdout');
  const errPath = path.join(dir, 'stderr');
  const outFd = fs.openSync(outPath, 'w');
  const errFd = fs.openSync(errPath, 'w');
  try {
    const { code, signal, timedOut } = await new Promise<{
      code: number | null;
      signal: NodeJS.Signals | null;
      timedOut: boolean;
    }>((resolve, reject) => {
      const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', outFd, errFd] });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      // 'exit', not 'close': a daemonised grandchild may keep the files open.
      child.on('exit', (c, s) => {
        clearTimeout(timer);
        resolve({ code: c, signal: s, timedOut });
      });
    });
    return { code, signal, timedOut, stdout: fs.readFileSync(outPath), stderr: fs.readFileSync(errPath, 'utf8') };
  } finally {
    fs.closeSync(outFd);
    fs.closeSync(errFd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Like run(), but rejects with an Error carrying stderr when the command fails. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs ?? 60_000} ms` : `exit ${r.code ?? r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}: ${r.stderr.trim() || r.stdout.toString().trim()}`);
  }
  return r;
}

/** glibc strerror() texts (C locale) → errno names, plus a few tool-specific phrasings. */
const MESSAGES: Record<string, string> = {
  'Operation not permitted': 'EPERM',
  'No such file or directory': 'ENOENT',
  'Input/output error': 'EIO',
  'Bad file descriptor': 'EBADF',
  'Permission denied': 'EACCES',
  'Device or resource busy': 'EBUSY',
  'File exists': 'EEXIST',
  'Invalid cross-device link': 'EXDEV',
  'Not a directory': 'ENOTDIR',
  'Is a directory': 'EISDIR',
  'Invalid argument': 'EINVAL',
  'File too large': 'EFBIG',
  'No space left on device': 'ENOSPC',
  'Read-only file system': 'EROFS',
  'Too many links': 'EMLINK',
  'Numerical result out of range': 'ERANGE',
  'Argument list too long': 'E2BIG',
  'File name too long': 'ENAMETOOLONG',
  'Function not implemented': 'ENOSYS',
  'Directory not empty': 'ENOTEMPTY',
  'Too many levels of symbolic links': 'ELOOP',
  'No data available': 'ENODATA',
  'No such attribute': 'ENODATA', // getfattr's own wording for ENODATA
  'Operation not supported': 'EOPNOTSUPP',
  'Transport endpoint is not connected': 'ENOTCONN',
  'Stale file handle': 'ESTALE',
  'Text file busy': 'ETXTBSY',
  'Disk quota exceeded': 'EDQUOT',
};

/**
 * Map the error lines of a coreutils / attr command to errno names: the
 * sorted, de-duplicated set of recognised codes joined with '+', or null when
 * no line ends in a known strerror() text (the caller then reports the raw,
 * path-normalised message).
 */
export function errnoFromMessage(stderr: string): string | null {
  const codes = new Set<string>();
  for (const line of stderr.split('\n')) {
    const l = line.trim();
    if (!l) continue;
    let found: string | undefined;
    for (const [msg, code] of Object.entries(MESSAGES)) {
      if (l.endsWith(`: ${msg}`) || l === msg) {
        found = code;
        break;
      }
    }
    if (found) codes.add(found);
  }
  if (codes.size === 0) return null;
  return [...codes].sort().join('+');
}
