// `layerfs run IMAGE`: an image of the store as the root, with its config's defaults, which
// the command line overrides as docker's does:
//
//   command      Entrypoint + (CMD from the command line, else the config's Cmd)
//   environment  the config's Env, then each -e (a later KEY wins)
//   directory    -w, else WorkingDir, else /
//   user         -u, else User (a name or number, with an optional :group, looked up in the
//                container's /etc/passwd and /etc/group once the root is mounted)

import * as fs from 'node:fs';
import { containerPath, RunError, type RunOptions } from './options.ts';
import { PathError, resolveInRoot } from './paths.ts';
import { checkConfig, ImageError, parseJson } from '../image/oci.ts';
import { holdImage, Store } from '../image/store.ts';

/** Does `name` name an image of the store? (false when there is no readable store) */
export function isStoredImage(name: string, env: NodeJS.ProcessEnv = process.env): boolean {
  try {
    return Store.fromEnv(env).find(name) !== null;
  } catch {
    return false;
  }
}

/**
 * Fill opts from the image opts.image names: its layers (top-most first) as the lowers, and
 * the config's defaults. Returns descriptors holding shared locks on the image and its layers
 * (close them when the container is gone), so that `image rm` cannot remove the image or
 * delete its layers meanwhile.
 */
export function applyImage(opts: RunOptions, env: NodeJS.ProcessEnv = process.env): number[] {
  const store = Store.fromEnv(env);
  const ref = opts.image!;
  let fds: number[] = [];
  try {
    const found = store.find(ref);
    if (!found) throw new RunError(`no image '${ref}' in the store (see 'layerfs image ls')`);
    const held = holdImage(store, found);
    fds = held.fds;
    const rec = held.rec;
    const config = checkConfig(parseJson(store.readBlob(rec.configDigest), `config of ${rec.name}`), `config of ${rec.name}`);
    // Top-most first. A layer that appears twice adds nothing the higher copy does not: the
    // lower copy is left out (a lowerdir list cannot name one directory twice).
    const seen = new Set<string>();
    opts.lowers = [];
    for (const l of [...rec.layers].reverse()) {
      if (seen.has(l.diffID)) continue;
      seen.add(l.diffID);
      opts.lowers.push(store.layerRoot(l.diffID));
    }
    const c = config.config ?? {};
    const command = [...(c.Entrypoint ?? []), ...(opts.command.length > 0 ? opts.command : (c.Cmd ?? []))];
    if (command.length === 0) throw new RunError(`image '${rec.name}' has no Entrypoint or Cmd: give a command (layerfs run ${ref} -- CMD)`);
    if (command[0] === '') throw new RunError(`image '${rec.name}': the command is an empty string`);
    opts.command = command;
    const imageEnv = (c.Env ?? []).filter((e) => /^[^=\0]+=/.test(e) && !e.includes('\0'));
    opts.env = [...imageEnv, ...opts.env];
    if (opts.workdir === undefined && c.WorkingDir) {
      if (!c.WorkingDir.startsWith('/')) throw new RunError(`image '${rec.name}': WorkingDir '${c.WorkingDir}' is not an absolute path`);
      opts.workdir = containerPath(c.WorkingDir, `the WorkingDir of image '${rec.name}'`);
    }
    if (opts.user === undefined && c.User) opts.imageUser = c.User;
    return fds;
  } catch (e) {
    for (const fd of fds) fs.closeSync(fd);
    if (e instanceof ImageError) throw new RunError(e.message);
    throw e;
  }
}

function readInRoot(root: string, file: string): string[][] {
  try {
    return fs
      .readFileSync(resolveInRoot(root, file), 'utf8')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch (e) {
    if (e instanceof PathError || (e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw e;
  }
}

/**
 * The uid and gid of an image's User (`name`, `uid`, `name:group`, `uid:gid`...), looked up in
 * the container's files below `root` (symlinks resolved inside the root). As docker does: a
 * uid without a passwd entry gets gid 0; an unknown name is an error.
 */
export function resolveImageUser(root: string, spec: string): { uid: number; gid: number } {
  const [u, g] = spec.split(':', 2);
  const passwd = readInRoot(root, '/etc/passwd');
  const id = (s: string): number | null => (/^[0-9]+$/.test(s) && Number(s) < 0xffff_ffff ? Number(s) : null);
  let uid: number;
  let gid = 0;
  const byId = id(u);
  if (byId !== null) {
    uid = byId;
    const ent = passwd.find((f) => f.length >= 4 && id(f[2]) === uid);
    if (ent) gid = id(ent[3]) ?? 0;
  } else {
    const ent = passwd.find((f) => f.length >= 4 && f[0] === u);
    if (!ent || id(ent[2]) === null) throw new RunError(`unable to find user '${u}' of the image: no matching entry in the container's /etc/passwd`);
    uid = id(ent[2])!;
    gid = id(ent[3]) ?? 0;
  }
  if (g !== undefined && g !== '') {
    const gById = id(g);
    if (gById !== null) gid = gById;
    else {
      const ent = readInRoot(root, '/etc/group').find((f) => f.length >= 3 && f[0] === g);
      if (!ent || id(ent[2]) === null) throw new RunError(`unable to find group '${g}' of the image: no matching entry in the container's /etc/group`);
      gid = id(ent[2])!;
    }
  }
  return { uid, gid };
}
