// --env-file FILE: docker's format (docker/cli opts.ParseEnvFile), read bounded.
//
//   KEY=VALUE      the value is everything after the first '=', as it is (no quotes removed,
//                  trailing blanks kept)
//   KEY            the launcher's own value of KEY when it has one; dropped otherwise
//   # comment      skipped, as are blank lines; leading blanks of a line are ignored
//
// A file that cannot be used — missing, not a regular file (a FIFO is never waited on), over
// 1 MiB, not UTF-8, a bad variable name — is one RunError line naming the file and the line.

import * as fs from 'node:fs';
import { RunError } from './errors.ts';

export const MAX_ENV_FILE_BYTES = 1024 * 1024;

function readBounded(file: string): Buffer {
  const what = `--env-file ${file}`;
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RunError(`${what}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new RunError(`${what}: not a regular file`);
    const buf = Buffer.alloc(MAX_ENV_FILE_BYTES + 1);
    let n = 0;
    for (let r; n < buf.length && (r = fs.readSync(fd, buf, n, buf.length - n, null)) > 0; ) n += r;
    if (n > MAX_ENV_FILE_BYTES) throw new RunError(`${what}: larger than ${MAX_ENV_FILE_BYTES} bytes`);
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/** The KEY=VALUE entries of an env file, in order. `hostEnv` gives a bare KEY its value. */
export function readEnvFile(file: string, hostEnv: NodeJS.ProcessEnv): string[] {
  const buf = readBounded(file);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(buf);
  } catch {
    throw new RunError(`--env-file ${file}: not valid UTF-8`);
  }
  const out: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '').replace(/^[ \t\v\f]+/, '');
    if (line === '' || line.startsWith('#')) return;
    const at = `--env-file ${file} line ${i + 1}`;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line : line.slice(0, eq);
    if (key === '') throw new RunError(`${at}: no variable name before '='`);
    if (/\s/.test(key)) throw new RunError(`${at}: variable '${key.trim()}' contains blanks`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new RunError(`${at}: bad variable name '${key}' (letters, digits and _, not starting with a digit)`);
    if (line.includes('\0')) throw new RunError(`${at}: contains a NUL byte`);
    if (eq >= 0) out.push(line);
    else if (hostEnv[key] !== undefined) out.push(`${key}=${hostEnv[key]}`);
  });
  return out;
}
