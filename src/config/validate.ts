// Checking a parsed request against the filesystem: every layer, the mountpoint and the trace
// file resolved (fs.realpath) and checked (a directory, accessible, not inside one another, the
// mountpoint not already a mount point). Only reads: realpath, stat, access and
// /proc/self/mountinfo.

import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { parseMountinfo, withoutIdmap } from '../mountinfo.ts';
import { errCode } from '../errcode.ts';
import { q } from './escape.ts';
import { ConfigError, type MountConfig, type MountRequest } from './request.ts';

interface Resolved {
  role: 'lowerdir' | 'upperdir' | 'workdir' | 'mountpoint';
  given: string;
  real: string;
  stat: Stats;
}

/** "upperdir '/u'", plus the resolved path when it differs from what was given. */
function describe(r: Resolved): string {
  return r.real === r.given ? `${r.role} ${q(r.given)}` : `${r.role} ${q(r.given)} (resolved: ${q(r.real)})`;
}

function accessFailure(role: string, given: string, e: unknown): ConfigError {
  const what = `${role} ${q(given)}`;
  switch (errCode(e)) {
    case 'ENOENT':
      return new ConfigError(`layerfs: ${what} does not exist`);
    case 'ENOTDIR':
      return new ConfigError(`layerfs: ${what} does not exist (a component of the path is not a directory)`);
    case 'EACCES':
    case 'EPERM':
      return new ConfigError(`layerfs: ${what} cannot be accessed (permission denied)`);
    case 'ELOOP':
      return new ConfigError(`layerfs: ${what} cannot be resolved (too many levels of symbolic links)`);
    case 'ENAMETOOLONG':
      return new ConfigError(`layerfs: ${what} cannot be resolved (name too long)`);
    case 'ENOTCONN':
      return new ConfigError(
        `layerfs: ${what} is a disconnected FUSE mount (transport endpoint is not connected); unmount it first`,
      );
    default: {
      const code = errCode(e);
      const detail = code ?? (e instanceof Error ? e.message : String(e));
      return new ConfigError(`layerfs: ${what} cannot be accessed (${detail})`);
    }
  }
}

async function resolveDir(role: Resolved['role'], given: string, cwd: string): Promise<Resolved> {
  let real: string;
  let stat: Stats;
  try {
    real = await fsp.realpath(path.resolve(cwd, given));
    stat = await fsp.stat(real);
  } catch (e) {
    throw accessFailure(role, given, e);
  }
  if (!stat.isDirectory()) throw new ConfigError(`layerfs: ${role} ${q(given)} is not a directory`);
  return { role, given, real, stat };
}

/**
 * With uidmapping=/gidmapping=/squash_to_*, a lower on an idmapped mount is read through a
 * plain mount of the same filesystem instead. podman 4.3–4.5 passes its lowers through idmapped mounts made
 * for the kernel's overlay (which pins them) together with uidmapping= for the mount program,
 * and detaches those mounts as soon as the program has returned: reading through them would
 * shift the ids twice and, once detached, find nothing. The directory found must be the same
 * one (device and inode), else the path is kept.
 */
async function bypassIdmap(r: Resolved, mountinfo: string): Promise<void> {
  const plain = withoutIdmap(r.real, parseMountinfo(mountinfo));
  if (plain === null) return;
  try {
    const st = await fsp.stat(plain);
    if (st.dev === r.stat.dev && st.ino === r.stat.ino) {
      r.real = plain;
      r.stat = st;
    }
  } catch {
    // keep the idmapped path
  }
}

async function checkAccess(r: Resolved, writable: boolean): Promise<void> {
  const mode = fsConstants.R_OK | fsConstants.X_OK | (writable ? fsConstants.W_OK : 0);
  try {
    await fsp.access(r.real, mode);
  } catch (e) {
    const code = errCode(e);
    if (code === 'EROFS') {
      throw new ConfigError(`layerfs: ${describe(r)} is on a read-only filesystem`);
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new ConfigError(
        `layerfs: ${describe(r)} is not ${writable ? 'readable and writable' : 'readable'} (permission denied)`,
      );
    }
    throw accessFailure(r.role, r.given, e);
  }
}

/** True if child is strictly below parent (component-wise; both absolute, normalized). */
function isInside(child: string, parent: string): boolean {
  if (child === parent) return false;
  const prefix = parent.endsWith('/') ? parent : parent + '/';
  return child.startsWith(prefix);
}

/**
 * Check a parsed request against the filesystem and resolve every path.
 * Throws ConfigError (one line naming the offending path). Only reads.
 */
export async function validateMountConfig(
  req: MountRequest,
  opts?: { cwd?: string; mountinfo?: string },
): Promise<MountConfig> {
  const cwd = opts?.cwd ?? process.cwd();

  if (req.lowerdirs.length === 0) throw new ConfigError('layerfs: missing lowerdir= option');
  if (req.upperdir !== undefined && req.workdir === undefined) {
    throw new ConfigError('layerfs: upperdir= requires workdir=');
  }
  if (req.workdir !== undefined && req.upperdir === undefined) {
    throw new ConfigError('layerfs: workdir= requires upperdir=');
  }
  const readonly = req.readonly || req.upperdir === undefined;

  // Any of the id options: what podman passes along with lowers on idmapped mounts.
  const shifts = req.uidmapping !== undefined || req.gidmapping !== undefined || req.squashUid !== undefined || req.squashGid !== undefined;
  if (shifts && req.backend === 'fuse-native') {
    throw new ConfigError('layerfs: uidmapping=/gidmapping=/squash_to_* need backend=lowlevel (fuse-native does not pass the caller\'s ids)');
  }
  let mountinfo = opts?.mountinfo;
  if (mountinfo === undefined) {
    try {
      mountinfo = await fsp.readFile('/proc/self/mountinfo', 'utf8');
    } catch {
      mountinfo = undefined; // no /proc: the mount itself will report a clash
    }
  }

  // Layers.
  const lowers: Resolved[] = [];
  for (const l of req.lowerdirs) {
    const r = await resolveDir('lowerdir', l, cwd);
    await checkAccess(r, false);
    if (shifts && mountinfo !== undefined) {
      await bypassIdmap(r, mountinfo);
    }
    lowers.push(r);
  }
  let upper: Resolved | undefined;
  let work: Resolved | undefined;
  if (req.upperdir !== undefined && req.workdir !== undefined) {
    upper = await resolveDir('upperdir', req.upperdir, cwd);
    work = await resolveDir('workdir', req.workdir, cwd);
    if (upper.stat.dev !== work.stat.dev) {
      throw new ConfigError(
        `layerfs: workdir ${q(req.workdir)} is not on the same filesystem as upperdir ${q(req.upperdir)}`,
      );
    }
    await checkAccess(upper, !readonly);
    await checkAccess(work, !readonly);
  }

  // No layer may be, or be inside, another one.
  const dirs: Resolved[] = [...lowers];
  if (upper) dirs.push(upper);
  if (work) dirs.push(work);
  for (let i = 0; i < dirs.length; i++) {
    for (let j = i + 1; j < dirs.length; j++) {
      const a = dirs[i];
      const b = dirs[j];
      if (a.real === b.real) {
        if (a.role === b.role && a.given === b.given) {
          throw new ConfigError(`layerfs: ${describe(a)} is listed more than once`);
        }
        throw new ConfigError(`layerfs: ${describe(a)} and ${describe(b)} are the same directory`);
      }
      if (isInside(a.real, b.real)) throw new ConfigError(`layerfs: ${describe(a)} is inside ${describe(b)}`);
      if (isInside(b.real, a.real)) throw new ConfigError(`layerfs: ${describe(b)} is inside ${describe(a)}`);
    }
  }

  // Mountpoint.
  const mp = await resolveDir('mountpoint', req.mountpoint, cwd);
  if (mountinfo !== undefined && parseMountinfo(mountinfo).some((m) => m.mountpoint === mp.real)) {
    throw new ConfigError(`layerfs: ${q(req.mountpoint)} is already a mount point (unmount it first)`);
  }
  for (const d of dirs) {
    if (d.real === mp.real) {
      throw new ConfigError(`layerfs: ${describe(mp)} is the same directory as ${describe(d)}`);
    }
    if (isInside(mp.real, d.real)) throw new ConfigError(`layerfs: ${describe(mp)} is inside ${describe(d)}`);
    if (isInside(d.real, mp.real)) throw new ConfigError(`layerfs: ${describe(d)} is inside ${describe(mp)}`);
  }

  // The trace file: its directory must exist, and it may not be in the mount (the daemon would
  // write into its own mount) nor in a layer (layers change only through the mount).
  let trace: string | undefined;
  if (req.trace !== undefined) {
    const abs = path.resolve(cwd, req.trace);
    let dirReal: string;
    try {
      dirReal = await fsp.realpath(path.dirname(abs));
    } catch {
      throw new ConfigError(`layerfs: the directory of trace file ${q(req.trace)} does not exist`);
    }
    trace = path.join(dirReal, path.basename(abs));
    try {
      if (!(await fsp.lstat(trace)).isFile()) throw new ConfigError(`layerfs: trace file ${q(req.trace)} is not a regular file`);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
    }
    for (const d of [...dirs, mp]) {
      if (trace === d.real || isInside(trace, d.real)) throw new ConfigError(`layerfs: trace file ${q(req.trace)} is inside ${describe(d)}`);
    }
  }

  const config: MountConfig = {
    ...req,
    ...(trace ? { trace } : {}),
    lowerdirs: lowers.map((l) => l.real),
    mountpoint: mp.real,
    readonly,
    fsname: req.source ?? 'layerfs',
    ignored: [...req.ignored],
  };
  if (upper) config.upperdir = upper.real;
  if (work) config.workdir = work.real;
  return config;
}
