// Resolving a container path inside a root directory on the host, the way the container will
// see it: symlinks in the image are followed relative to the container's root, and '..' never
// climbs above it. A planted `data -> /etc` then names <root>/etc, never the host's /etc.

import * as fs from 'node:fs';
import * as path from 'node:path';

const MAX_SYMLINKS = 40;

export class PathError extends Error {}

/** A file-system question the resolver asks: the answer is an lstat or a link's target. */
type Ask = { op: 'lstat'; path: string } | { op: 'readlink'; path: string };
type Answer = fs.Stats | string | null;

/**
 * The walk of resolveInRoot, as a generator that asks for lstat/readlink answers (null: ENOENT)
 * and returns the host path: run synchronously by resolveInRoot, asynchronously by
 * resolveInRootAsync (the engine, whose own thread serves the mount it reads).
 */
function* walk(root: string, target: string): Generator<Ask, string, Answer> {
  const todo = target.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  let links = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = path.join(root, ...done, part);
    const st = (yield { op: 'lstat', path: host }) as fs.Stats | null;
    if (st === null) {
      // Missing from here on: what remains cannot be a symlink yet; drop '..' lexically.
      done.push(part);
      for (const rest of todo) {
        if (rest === '..') done.pop();
        else if (rest !== '.') done.push(rest);
      }
      break;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) throw new PathError(`too many levels of symbolic links in '${target}'`);
      const link = (yield { op: 'readlink', path: host }) as string;
      if (link.startsWith('/')) done.length = 0;
      todo.unshift(...link.split('/').filter((p) => p !== ''));
      continue;
    }
    done.push(part);
    if (!st.isDirectory() && todo.length > 0) throw new PathError(`'${target}': '/${done.join('/')}' is not a directory in the container`);
  }
  const out = path.join(root, ...done);
  if (out !== root && !out.startsWith(root.endsWith('/') ? root : root + '/')) throw new PathError(`'${target}' is outside the container's root`);
  return out;
}

const missing = (e: unknown): null => {
  if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  return null;
};

/**
 * Host path of container path `target` below `root` (both absolute). Components that do not
 * exist yet are appended as they are (the caller creates them). Never returns a path outside
 * root.
 */
export function resolveInRoot(root: string, target: string): string {
  const g = walk(root, target);
  let answer: Answer = null;
  for (;;) {
    const r = g.next(answer);
    if (r.done) return r.value;
    try {
      answer = r.value.op === 'lstat' ? fs.lstatSync(r.value.path) : fs.readlinkSync(r.value.path);
    } catch (e) {
      answer = missing(e);
    }
  }
}

/** resolveInRoot without blocking the thread (the engine serves the mount it resolves in). */
export async function resolveInRootAsync(root: string, target: string): Promise<string> {
  const g = walk(root, target);
  let answer: Answer = null;
  for (;;) {
    const r = g.next(answer);
    if (r.done) return r.value;
    try {
      answer = r.value.op === 'lstat' ? await fs.promises.lstat(r.value.path) : await fs.promises.readlink(r.value.path);
    } catch (e) {
      answer = missing(e);
    }
  }
}

/**
 * Create container path `target` below `root` (directories, or an empty file as the last
 * component when `file`), resolving each component as resolveInRoot does. Returns the host
 * path of the (now existing) target, which is never a symlink.
 */
export function makeInRoot(root: string, target: string, file: boolean): string {
  const host = resolveInRoot(root, target);
  const rel = path.relative(root, host);
  const parts = rel === '' ? [] : rel.split('/');
  let cur = root;
  parts.forEach((p, i) => {
    cur = path.join(cur, p);
    const last = i === parts.length - 1;
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(cur);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (!st) {
      if (last && file) fs.closeSync(fs.openSync(cur, fs.constants.O_CREAT | fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW | fs.constants.O_EXCL, 0o644));
      else fs.mkdirSync(cur, 0o755);
      return;
    }
    if (st.isSymbolicLink()) throw new PathError(`'${target}': '/${parts.slice(0, i + 1).join('/')}' changed while it was resolved`);
    if (!last || !file) {
      if (!st.isDirectory()) throw new PathError(`'${target}': '/${parts.slice(0, i + 1).join('/')}' is not a directory in the container`);
    } else if (st.isDirectory()) {
      throw new PathError(`'${target}' is a directory in the container, but the volume is a file`);
    }
  });
  return host;
}
