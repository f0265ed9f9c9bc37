// The differential engine's operations on a mount: each Op carried out, its outcome as a
// string ('ok', 'ok: <value>', an errno name, 'EXIT<n>: …'). Used by engine.ts.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../../src/sys/index.ts';
import { errnoFromMessage, run } from '../helpers/exec.ts';
import { devString, octalMode } from '../helpers/snapshot.ts';
import { describeOp, type Op } from './engine-ops.ts';
import { fsPath, hasRawNames, showName } from './layers.ts';

const O = fs.constants;

function contentSummary(buf: Buffer): string {
  const s = buf.toString('utf8');
  // eslint-disable-next-line no-control-regex
  if (buf.length <= 64 && Buffer.from(s, 'utf8').equals(buf) && !/[\u0000-\u0009\u000b-\u001f\u007f]/.test(s)) {
    return JSON.stringify(s);
  }
  return `${buf.length} bytes sha256:${createHash('sha256').update(buf).digest('hex').slice(0, 16)}`;
}

export function statSummary(st: fs.BigIntStats, times: boolean): string {
  let type: string;
  if (st.isFile()) type = 'file';
  else if (st.isDirectory()) type = 'dir';
  else if (st.isSymbolicLink()) type = 'symlink';
  else if (st.isFIFO()) type = 'fifo';
  else if (st.isCharacterDevice()) type = 'chardev';
  else if (st.isBlockDevice()) type = 'blockdev';
  else if (st.isSocket()) type = 'socket';
  else type = 'unknown';
  let s = `${type} ${octalMode(st.mode)} ${st.uid}:${st.gid}`;
  if (type === 'file' || type === 'symlink') s += ` size=${st.size}`;
  if (type !== 'dir') s += ` nlink=${st.nlink}`;
  if (type === 'chardev' || type === 'blockdev') s += ` rdev=${devString(st.rdev)}`;
  if (times) s += ` mtime=${st.mtimeMs / 1000n}`;
  return s;
}

/** Run a command for an op; its failure becomes an errno name (or the normalised message). */
async function cmd(c: string, args: string[], cwd: string, normalise: (s: string) => string): Promise<string> {
  const r = await run(c, args, { cwd, timeoutMs: 60_000 });
  if (r.code === 0) return 'ok';
  const code = errnoFromMessage(r.stderr);
  return code ?? `EXIT${r.code ?? r.signal}: ${normalise(r.stderr.trim())}`;
}

/** Relative path inside the mount, safe as a command argument (never starts with '-'). */
function rel(p: string): string {
  if (p === '' || p === '.') return '.';
  if (path.isAbsolute(p) || p.split('/').includes('..')) throw new Error(`op path must be relative and stay inside the mount: ${p}`);
  return p.startsWith('-') ? `./${p}` : p;
}

/** Ops that run a command take string arguments only: no rawName paths there. */
function noRaw(o: Op, ...paths: string[]): void {
  for (const p of paths) if (hasRawNames(p)) throw new Error(`${o.op}: paths with rawName() components are not supported (${describeOp(o)})`);
}

export async function runOp(o: Op, mnt: string, outside: string, normalise: (s: string) => string, notes: string[]): Promise<string> {
  const P = (p: string) => fsPath(path.join(mnt, rel(p)));
  const fsp = fs.promises;
  try {
    switch (o.op) {
      // Files are opened O_NONBLOCK: the same for regular files, and a fifo then answers
      // (ENXIO, or an empty read) instead of blocking a thread of libuv's pool for ever.
      case 'writeFile':
        await fsp.writeFile(P(o.path), o.content, { flag: O.O_WRONLY | O.O_CREAT | O.O_TRUNC | O.O_NONBLOCK, ...(o.mode === undefined ? {} : { mode: o.mode }) });
        return 'ok';
      case 'appendFile':
        await fsp.appendFile(P(o.path), o.content, { flag: O.O_WRONLY | O.O_CREAT | O.O_APPEND | O.O_NONBLOCK });
        return 'ok';
      case 'writeAt': {
        const fh = await fsp.open(P(o.path), O.O_RDWR | O.O_NONBLOCK);
        try {
          const buf = Buffer.from(o.content);
          await fh.write(buf, 0, buf.length, o.offset);
        } finally {
          await fh.close();
        }
        return 'ok';
      }
      case 'truncate':
        await fsp.truncate(P(o.path), o.size);
        return 'ok';
      case 'readFile':
        return `ok: ${contentSummary(await fsp.readFile(P(o.path), { flag: O.O_RDONLY | O.O_NONBLOCK }))}`;
      case 'readdir':
        return `ok: ${JSON.stringify((await fsp.readdir(P(o.path), { encoding: 'buffer' })).map(showName).sort())}`;
      case 'stat':
        return `ok: ${statSummary(await fsp.stat(P(o.path), { bigint: true }), !!o.times)}`;
      case 'lstat':
        return `ok: ${statSummary(await fsp.lstat(P(o.path), { bigint: true }), !!o.times)}`;
      case 'mkdir':
        await fsp.mkdir(P(o.path), o.mode === undefined ? {} : { mode: o.mode });
        return 'ok';
      case 'rmdir':
        await fsp.rmdir(P(o.path));
        return 'ok';
      case 'unlink':
        await fsp.unlink(P(o.path));
        return 'ok';
      case 'rename':
        await fsp.rename(P(o.from), P(o.to));
        return 'ok';
      case 'symlink':
        await fsp.symlink(o.target, P(o.path));
        return 'ok';
      case 'readlink':
        return `ok: ${JSON.stringify(showName(await fsp.readlink(P(o.path), { encoding: 'buffer' })))}`;
      case 'link':
        await fsp.link(P(o.from), P(o.to));
        return 'ok';
      case 'chmod':
        await fsp.chmod(P(o.path), o.mode);
        return 'ok';
      case 'chown':
        await fsp.chown(P(o.path), o.uid, o.gid);
        return 'ok';
      case 'utimes':
        await fsp.utimes(P(o.path), o.atime, o.mtime);
        return 'ok';
      case 'mkfifo':
        noRaw(o, o.path);
        return await cmd('mkfifo', [...(o.mode === undefined ? [] : ['-m', o.mode.toString(8)]), '--', rel(o.path)], mnt, normalise);
      // setfattr/getfattr take text arguments: on a path with rawName() components the same
      // syscalls are made from here (l*xattr: such paths never name a symlink in the scenarios).
      case 'setxattr': {
        const v = Buffer.from(o.value, 'utf8');
        if (hasRawNames(o.path)) {
          sys.lsetxattr(P(o.path), o.name, v);
          return 'ok';
        }
        return await cmd('setfattr', ['-n', o.name, '-v', v.length ? '0x' + v.toString('hex') : '""', '--', rel(o.path)], mnt, normalise);
      }
      case 'getxattr': {
        if (hasRawNames(o.path)) {
          const v = sys.lgetxattr(P(o.path), o.name);
          return v === null ? 'ENODATA' : `ok: ${contentSummary(v)}`;
        }
        const r = await run('getfattr', ['--only-values', '-n', o.name, '--', rel(o.path)], { cwd: mnt });
        if (r.code === 0) return `ok: ${contentSummary(r.stdout)}`;
        return errnoFromMessage(r.stderr) ?? `EXIT${r.code}: ${normalise(r.stderr.trim())}`;
      }
      case 'removexattr':
        if (hasRawNames(o.path)) {
          sys.lremovexattr(P(o.path), o.name);
          return 'ok';
        }
        return await cmd('setfattr', ['-x', o.name, '--', rel(o.path)], mnt, normalise);
      case 'listxattr': {
        if (hasRawNames(o.path)) return `ok: ${JSON.stringify(sys.llistxattr(P(o.path)).filter((n) => n.startsWith('user.')).sort())}`;
        const r = await run('getfattr', ['-m', '^user\\.', '--', rel(o.path)], { cwd: mnt });
        if (r.code !== 0) return errnoFromMessage(r.stderr) ?? `EXIT${r.code}: ${normalise(r.stderr.trim())}`;
        const names = r.stdout
          .toString('utf8')
          .split('\n')
          .filter((l) => l && !l.startsWith('#'))
          .sort();
        return `ok: ${JSON.stringify(names)}`;
      }
      case 'rmrf':
        noRaw(o, o.path);
        return await cmd('rm', ['-rf', '--', rel(o.path)], mnt, normalise);
      case 'mv':
        noRaw(o, o.from, o.to);
        return await cmd('mv', ['--', rel(o.from), rel(o.to)], mnt, normalise);
      case 'cpa': {
        noRaw(o, o.from, o.to);
        // Concatenate, do not path.join(): a trailing '/.' (copy the contents) must survive.
        const src = o.fromOutside ? `${outside}/${rel(o.from)}` : rel(o.from);
        return await cmd('cp', ['-a', '--', src, rel(o.to)], mnt, normalise);
      }
      case 'rename2':
        sys.renameat2(P(o.from), P(o.to), o.flags === 'noreplace' ? sys.RENAME_NOREPLACE : sys.RENAME_EXCHANGE);
        return 'ok';
      case 'mknod':
        sys.mknod(P(o.path), (o.kind === 'chr' ? fs.constants.S_IFCHR : fs.constants.S_IFBLK) | (o.mode ?? 0o600), sys.makedev(o.major, o.minor));
        return 'ok';
      case 'lchown':
        await fsp.lchown(P(o.path), o.uid, o.gid);
        return 'ok';
      case 'readAt': {
        const fh = await fsp.open(P(o.path), O.O_RDONLY | O.O_NONBLOCK);
        try {
          const buf = Buffer.alloc(o.length);
          const { bytesRead } = await fh.read(buf, 0, o.length, o.offset);
          return `ok: ${contentSummary(buf.subarray(0, bytesRead))}`;
        } finally {
          await fh.close();
        }
      }
      case 'checksum': {
        const h = createHash('sha256');
        let size = 0;
        const fh = await fsp.open(P(o.path), O.O_RDONLY | O.O_NONBLOCK);
        try {
          const buf = Buffer.alloc(1 << 20);
          for (;;) {
            const { bytesRead } = await fh.read(buf, 0, buf.length, size);
            if (bytesRead === 0) break;
            h.update(buf.subarray(0, bytesRead));
            size += bytesRead;
          }
        } finally {
          await fh.close();
        }
        return `ok: size=${size} sha256:${h.digest('hex').slice(0, 16)}`;
      }
      case 'lsattr': {
        noRaw(o, o.path);
        const r = await run('lsattr', ['-d', '--', rel(o.path)], { cwd: mnt });
        if (r.code !== 0) return errnoFromMessage(r.stderr) ?? `EXIT${r.code}: ${normalise(r.stderr.trim())}`;
        return `ok: ${r.stdout.toString('utf8').trim().split(/\s+/)[0]}`;
      }
      case 'chattr':
        noRaw(o, o.path);
        return await cmd('chattr', [o.mode, '--', rel(o.path)], mnt, normalise);
      case 'allocated': {
        const st = await fsp.stat(P(o.path), { bigint: true });
        notes.push(`${o.path}: size=${st.size} allocated=${st.blocks * 512n}`);
        return 'ok';
      }
      default: {
        const never: never = o;
        throw new Error(`unknown op ${JSON.stringify(never)}`);
      }
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException | null)?.code;
    if (typeof code === 'string') return code;
    throw e;
  }
}
