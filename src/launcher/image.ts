// `layerfs run IMAGE`: an image of the store as the root, with its config's defaults, which
// the command line overrides as docker's does:
//
//   command      Entrypoint + (CMD from the command line, else the config's Cmd); with
//                --entrypoint E: E + CMD (the config's Cmd is not used; --entrypoint '' clears E)
//   environment  the config's Env, then each --env-file's, then each -e (a later KEY wins)
//   directory    -w, else WorkingDir, else /
//   user         -u, else User (a name or number, with an optional :group, looked up in the
//                container's /etc/passwd and /etc/group once the root is mounted: resolveUser,
//                which -u without an image uses too)

import * as fs from 'node:fs';
import { containerPath, RunError, type RunOptions, type UserSpec } from './options.ts';
import { PathError, resolveInRootAsync } from './paths.ts';
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
    // docker: a given --entrypoint (even '') replaces the Entrypoint and drops the image's Cmd.
    const command =
      opts.entrypoint !== undefined
        ? [...(opts.entrypoint === '' ? [] : [opts.entrypoint]), ...opts.command]
        : [...(c.Entrypoint ?? []), ...(opts.command.length > 0 ? opts.command : (c.Cmd ?? []))];
    if (command.length === 0 && opts.entrypoint === '') throw new RunError(`--entrypoint '' clears the Entrypoint and Cmd of image '${rec.name}': give a command (layerfs run --entrypoint '' ${ref} CMD)`);
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

/** The most of /etc/passwd or /etc/group read (the files of real images are a few KiB). */
export const MAX_ACCOUNT_FILE_BYTES = 1024 * 1024;

/**
 * The lines of container file `file` below `root`, split at ':' (comments and blank lines
 * skipped); [] when it does not exist. Symlinks are resolved inside the root (resolveInRoot), so
 * a planted `/etc/passwd -> /host/file` names <root>/host/file, never the host's; the last
 * component is opened without following a symlink, without blocking (a FIFO) and must be a
 * regular file; at most MAX_ACCOUNT_FILE_BYTES are read.
 */
export async function readInRoot(root: string, file: string): Promise<string[][]> {
  // Asynchronous: in the engine, the thread that reads is the one serving the mount.
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(await resolveInRootAsync(root, file), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (e) {
    // Missing, or not ours to read (rootless, a --rootfs of another user): as if it were absent.
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof PathError || code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES') return [];
    throw new RunError(`cannot read the container's ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let text: string;
  try {
    if (!(await fh.stat()).isFile()) throw new RunError(`the container's ${file} is not a regular file`);
    const buf = Buffer.alloc(MAX_ACCOUNT_FILE_BYTES + 1);
    let n = 0;
    for (let r; n < buf.length && (r = (await fh.read(buf, n, buf.length - n, null)).bytesRead) > 0; ) n += r;
    if (n > MAX_ACCOUNT_FILE_BYTES) throw new RunError(`the container's ${file} is larger than ${MAX_ACCOUNT_FILE_BYTES} bytes`);
    text = buf.toString('utf8', 0, n);
  } finally {
    await fh.close();
  }
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

/** Who CMD runs as: docker's (runc's GetExecUser) answer for a user spec. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  /** setgroups(): the primary gid first, then the groups /etc/group lists the user's name in. */
  groups: number[];
  /** The passwd entry's home directory, '/' without one. */
  home: string;
}

const numeric = (s: string | undefined): number | null => (s !== undefined && /^[0-9]+$/.test(s) && Number(s) < 0xffff_ffff ? Number(s) : null);

/**
 * "name", "uid", "name:group", "uid:gid"... (an image's User) as a UserSpec, read as runc does:
 * fields after a second ':' are ignored, an empty user is root.
 */
function specOf(s: string): UserSpec {
  const [u, g] = s.split(':');
  const out: UserSpec = {};
  const n = u === '' ? 0 : numeric(u);
  if (n !== null) out.uid = n;
  else out.name = u;
  if (g !== undefined && g !== '') {
    const gn = numeric(g);
    if (gn !== null) out.gid = gn;
    else out.group = g;
  }
  return out;
}

/**
 * Resolve a user in the container's own /etc/passwd and /etc/group below `root` (read with
 * readInRoot), as docker does:
 *  - a name must have a passwd entry; a number may lack one (then gid 0, HOME '/');
 *  - the primary gid is the entry's unless a group is given (a name must be in /etc/group);
 *  - supplementary groups: those whose member list names the user, only when the user matched
 *    a passwd entry and no group was given; the primary gid always leads the list.
 * `spec` undefined is the default user, root. `fromImage`: the spec is the image's User (the
 * messages say so). An unknown name is a RunError (exit status 125, as docker run's).
 */
export async function resolveUser(root: string, spec: UserSpec | string | undefined, fromImage = false): Promise<ResolvedUser> {
  const u = typeof spec === 'string' ? specOf(spec) : (spec ?? { uid: 0 });
  const passwd = await readInRoot(root, '/etc/passwd');
  const ent = passwd.find((f) => f.length >= 3 && numeric(f[2]) !== null && (u.uid !== undefined ? numeric(f[2]) === u.uid : f[0] === u.name));
  let uid: number;
  let gid = 0;
  let home = '/';
  if (ent) {
    uid = numeric(ent[2])!;
    gid = numeric(ent[3]) ?? 0;
    if (ent[5]) home = ent[5];
  } else if (u.uid !== undefined) {
    uid = u.uid;
  } else if (fromImage) {
    throw new RunError(`unable to find user '${u.name}' of the image: no matching entry in the container's /etc/passwd`);
  } else {
    throw new RunError(`unable to find user ${u.name}: no matching entries in passwd file`);
  }
  const groups: number[] = [];
  if (u.gid !== undefined || u.group !== undefined || ent) {
    const group = (await readInRoot(root, '/etc/group')).filter((f) => f.length >= 3 && numeric(f[2]) !== null);
    if (u.gid !== undefined || u.group !== undefined) {
      const g = group.find((f) => (u.gid !== undefined ? numeric(f[2]) === u.gid : f[0] === u.group));
      if (g) gid = numeric(g[2])!;
      else if (u.gid !== undefined) gid = u.gid;
      else if (fromImage) throw new RunError(`unable to find group '${u.group}' of the image: no matching entry in the container's /etc/group`);
      else throw new RunError(`unable to find group ${u.group}: no matching entries in group file`);
    } else {
      for (const f of group) if ((f[3] ?? '').split(',').some((m) => m.trim() === ent![0])) groups.push(numeric(f[2])!);
    }
  }
  return { uid, gid, groups: [...new Set([gid, ...groups])], home };
}
