// `layerfs run` command line: parsing and the checks that need no filesystem.
//
//   layerfs run [OPTIONS] --lower A:B:C [--upper U --work W] -- CMD [ARGS...]
//   layerfs run [OPTIONS] IMAGE [--] [CMD [ARGS...]]     (an image of the store, src/image/)
//
// Every bad input becomes a RunError (one line, exit status 125, as docker's launcher errors)
// before anything is created or mounted. The only files read here are --env-file's (docker's
// CLI reads them while parsing too).

import * as os from 'node:os';
import * as path from 'node:path';
import { splitLowerdirs } from '../config.ts';
import { readEnvFile } from './envfile.ts';
import { RunError } from './errors.ts';
import { capName, deviceAccess, type DeviceAccess } from './security.ts';
import { parseIdRange, type IdRange, type UsernsRequest } from './userns.ts';

export { RunError };

export interface Volume {
  /** Host path as given (resolved later). */
  host: string;
  /** Absolute, normalized path inside the container (no '..'). */
  target: string;
  readonly: boolean;
}

export type NetMode = 'none' | 'host';

/**
 * -u/--user: a user by number or by name, with an optional group by number or by name (docker's
 * NAME[:GROUP] / UID[:GID], any mix). Names are looked up in the container's own /etc/passwd and
 * /etc/group once its root is mounted (image.ts resolveUser). Exactly one of uid/name is set.
 */
export interface UserSpec {
  uid?: number;
  name?: string;
  gid?: number;
  group?: string;
}

/** --tmpfs PATH[:OPTIONS]. Docker's defaults: rw,noexec,nosuid,nodev, no size limit. */
export interface TmpfsMount {
  /** Absolute, normalized container path (not '/'). */
  target: string;
  readonly: boolean;
  noexec: boolean;
  nosuid: boolean;
  nodev: boolean;
  /** tmpfs's own options, in the order given, a later one of a kind replacing an earlier: size=, mode=, uid=, gid=. */
  data: string[];
}

/** --device HOST[:CONTAINER[:PERMS]]. */
export interface DeviceMapping {
  /** Host path as given (absolute; a character or block device, checked by run.ts). */
  host: string;
  /** Container path, below /dev (default: the host path). */
  target: string;
  /** What the device cgroup allows on it (default rwm). */
  access: DeviceAccess;
}

/** --restart: what the engine is to do when CMD exits. */
export interface RestartPolicy {
  policy: 'no' | 'on-failure';
  /** on-failure:N: give up after N restarts; 0 is no limit (docker's MaximumRetryCount). */
  maxRetries: number;
}

export interface RunOptions {
  lowers: string[];
  /**
   * An image of the store (the first non-option argument when there is no --lower/--rootfs).
   * run.ts resolves it to its layers and applies its config's defaults before running.
   */
  image?: string;
  /** User from the image's config (a name or number, resolved in the container's /etc/passwd). */
  imageUser?: string;
  upper?: string;
  work?: string;
  /** An existing directory or mount (e.g. a layerfs mount) used as the root as it is. */
  rootfs?: string;
  keep: boolean;
  /** The environment given: each --env-file's entries (files in order), then each -e; later wins. */
  env: string[];
  /** The --env-file files, in order (already read into env). */
  envFiles: string[];
  workdir?: string;
  /** -u/--user (an image's User goes to imageUser). */
  user?: UserSpec;
  /**
   * --entrypoint: replaces the image's Entrypoint (and its Cmd is then not used, as docker);
   * '' clears it. Without an image it is the program and the command its arguments: parseRunArgs
   * has put it in `command` already; with an image applyImage does.
   */
  entrypoint?: string;
  /** --tmpfs, in the order given. */
  tmpfs: TmpfsMount[];
  /** --device, in the order given. */
  devices: DeviceMapping[];
  /** -d/--detach: run in the background under the engine (parsed; `run` itself refuses it for now). */
  detach: boolean;
  /** --name: the container's name (docker's rule: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128). */
  name?: string;
  /** --restart (parsed; only `no` runs without the engine). */
  restart?: RestartPolicy;
  /**
   * --rm: remove the container when it exits. Without the engine a run never outlives its CMD and
   * everything is removed anyway (the throw-away upper unless --keep, which --rm excludes).
   */
  rm: boolean;
  hostname?: string;
  readOnly: boolean;
  volumes: Volume[];
  memory?: number;
  pidsLimit?: number;
  cpus?: number;
  net: NetMode;
  /** A user namespace even as root (always one when not root). */
  userns: boolean;
  /** As root: which host ids the container's are (--userns=auto, --uidmap, --subuidname). */
  idmap?: UsernsRequest;
  /** --cap-add / --cap-drop, names without CAP_ (or ALL), in the order given. */
  capAdd: string[];
  capDrop: string[];
  /** Every capability, no seccomp filter, no masked or read-only paths, every device. */
  privileged: boolean;
  /** --security-opt seccomp=: the default profile, none, or a profile file (docker's JSON). */
  seccomp: 'default' | 'unconfined' | { file: string };
  interactive: boolean;
  tty: boolean;
  /** Seconds between the forwarded SIGTERM/SIGINT and SIGKILL. */
  stopTimeout: number;
  /** Only reap what launchers that died left behind, run nothing. */
  cleanupOnly: boolean;
  help: boolean;
  command: string[];
}

export const USAGE = `usage: layerfs run [OPTIONS] --lower A:B:C [--upper U --work W] -- CMD [ARGS...]
       layerfs run [OPTIONS] IMAGE [--] [CMD [ARGS...]]   (an image of 'layerfs image ls': its layers,
         Entrypoint/Cmd, Env, WorkingDir and User; CMD replaces Cmd, --entrypoint Entrypoint and Cmd,
         --env-file and -e add to Env, -w/-u override)
  --lower A:B:C          layers, top-most first        --rootfs DIR      use DIR (e.g. a mount) as the root
  --upper U --work W     keep changes in U             --keep            keep the throw-away upper (path printed)
  -e, --env KEY[=VAL]    set a variable                -w, --workdir DIR  working directory inside
  --env-file FILE        KEY=VAL lines (# comments; a bare KEY takes ours), read before the -e options
  -u, --user USER[:GROUP]  a name or UID, a group name or GID (the container's /etc/passwd, /etc/group)
  --entrypoint CMD       the program to run: replaces the image's Entrypoint and Cmd ('' clears them)
  --hostname NAME        host name inside              --read-only       root mounted read-only
  -v, --volume HOST:CTR[:ro|rw]  bind mount
  --tmpfs PATH[:OPTS]    a tmpfs at PATH (rw,noexec,nosuid,nodev; OPTS: ro exec suid dev size= mode= uid= gid=)
  --device HOST[:CTR[:PERMS]]  the host's device node at CTR (below /dev), opened with PERMS (rwm)
  --memory BYTES[k|m|g]  memory limit (OOM-kill)       --pids-limit N    process limit
  --cpus F               CPU limit                     --net none|host   network (none: only lo)
  -i, -t, -it            stdin open, TTY               --stop-timeout S  SIGTERM..SIGKILL grace (10)
  --rm                   remove the container when it exits (what run always does)
  --name NAME            the container's name          --cleanup         reap what killed launchers left
  -d, --detach           run in the background         --restart no|on-failure[:N]  restart CMD when it fails
                         (-d and --restart need the engine: this version of run refuses them)
security (docs/containers.md: what a container can and cannot do):
  --cap-add CAP, --cap-drop CAP   change podman's default capability set (NET_ADMIN or CAP_NET_ADMIN, ALL)
  --privileged           every capability, no seccomp filter, no masked /proc paths, any device
  --security-opt seccomp=unconfined|FILE.json   no filter, or a docker/podman JSON profile
  --userns[=auto[:size=N]|host]   user namespace as root: container ids from an unused host range
  --uidmap CTR:HOST:N, --gidmap CTR:HOST:N     explicit ranges (host id 0 is refused)
  --subuidname NAME, --subgidname NAME          the ranges /etc/subuid, /etc/subgid give NAME`;

const VALUE_OPTS = new Map<string, string>([
  ['--lower', 'lower'],
  ['--upper', 'upper'],
  ['--work', 'work'],
  ['--rootfs', 'rootfs'],
  ['-e', 'env'],
  ['--env', 'env'],
  ['-w', 'workdir'],
  ['--workdir', 'workdir'],
  ['-u', 'user'],
  ['--user', 'user'],
  ['--env-file', 'envfile'],
  ['--entrypoint', 'entrypoint'],
  ['--tmpfs', 'tmpfs'],
  ['--device', 'device'],
  ['--name', 'name'],
  ['--restart', 'restart'],
  ['--hostname', 'hostname'],
  ['-h', 'hostname'],
  ['-v', 'volume'],
  ['--volume', 'volume'],
  ['--memory', 'memory'],
  ['-m', 'memory'],
  ['--pids-limit', 'pids'],
  ['--cpus', 'cpus'],
  ['--net', 'net'],
  ['--network', 'net'],
  ['--stop-timeout', 'stop'],
  ['--cap-add', 'capadd'],
  ['--cap-drop', 'capdrop'],
  ['--security-opt', 'secopt'],
  ['--uidmap', 'uidmap'],
  ['--gidmap', 'gidmap'],
  ['--subuidname', 'subuidname'],
  ['--subgidname', 'subgidname'],
]);

const FLAG_OPTS = new Map<string, string>([
  ['--keep', 'keep'],
  ['--read-only', 'readonly'],
  ['--privileged', 'privileged'],
  ['-i', 'interactive'],
  ['--interactive', 'interactive'],
  ['-t', 'tty'],
  ['--tty', 'tty'],
  ['--cleanup', 'cleanup'],
  ['--help', 'help'],
  ['-d', 'detach'],
  ['--detach', 'detach'],
  ['--rm', 'rm'],
]);

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** "64m", "1g", "1048576", "512k" → bytes. */
export function parseBytes(s: string): number | null {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) return null;
  const v = Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
  return Number.isSafeInteger(v) && v > 0 ? v : null;
}

/** Container path: absolute, normalized; '..' is refused (it could only lead out of the root). */
export function containerPath(p: string, what: string): string {
  if (!p.startsWith('/')) throw new RunError(`${what} '${p}' must be an absolute path inside the container`);
  if (p.includes('\0')) throw new RunError(`${what} contains a NUL byte`);
  if (p.split('/').includes('..')) throw new RunError(`${what} '${p}' is outside the container's root ('..' is not allowed)`);
  return path.posix.normalize(p).replace(/(.)\/+$/, '$1');
}

export function parseVolume(spec: string): Volume {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1]) {
    throw new RunError(`bad volume '${spec}': expected HOST:CONTAINER[:ro|rw]`);
  }
  let readonly = false;
  if (parts.length === 3) {
    if (parts[2] === 'ro') readonly = true;
    else if (parts[2] !== 'rw') throw new RunError(`bad volume '${spec}': mode must be 'ro' or 'rw', not '${parts[2]}'`);
  }
  if (!parts[0].startsWith('/')) throw new RunError(`bad volume '${spec}': the host path must be absolute`);
  const target = containerPath(parts[1], `volume target in '${spec}'`);
  if (target === '/') throw new RunError(`bad volume '${spec}': cannot mount over the container's root`);
  return { host: parts[0], target, readonly };
}

const ID_MAX = 0xffff_fffe; // (uid_t)-1 is "no change" to the kernel

/** A user or group name as passwd/group files hold them (no ':', no blanks), not all digits. */
const NAME = /^[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,255}\$?$/;

/** -u NAME|UID[:GROUP|GID] (docker's forms). */
export function parseUser(s: string): UserSpec {
  const bad = (): RunError => new RunError(`bad user '${s}': expected NAME or UID, optionally with :GROUP or :GID`);
  const m = /^([^:]+)(?::([^:]+))?$/.exec(s);
  if (!m) throw bad();
  const out: UserSpec = {};
  const part = (v: string, id: 'uid' | 'gid', name: 'name' | 'group'): void => {
    if (/^[0-9]+$/.test(v)) {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n > ID_MAX) throw bad();
      out[id] = n;
    } else if (NAME.test(v)) out[name] = v;
    else throw bad();
  };
  part(m[1], 'uid', 'name');
  if (m[2] !== undefined) part(m[2], 'gid', 'group');
  return out;
}

/** The -u value back as text (for messages). */
export function userText(u: UserSpec): string {
  const g = u.gid ?? u.group;
  return `${u.uid ?? u.name}${g === undefined ? '' : `:${g}`}`;
}

/** --tmpfs PATH[:OPTIONS] (docker's option names; the defaults rw,noexec,nosuid,nodev). */
export function parseTmpfs(spec: string): TmpfsMount {
  const colon = spec.indexOf(':');
  const where = colon < 0 ? spec : spec.slice(0, colon);
  const opts = colon < 0 ? '' : spec.slice(colon + 1);
  if (where === '') throw new RunError(`bad --tmpfs '${spec}': expected PATH[:OPTIONS]`);
  const target = containerPath(where, `--tmpfs path in '${spec}'`);
  if (target === '/') throw new RunError(`bad --tmpfs '${spec}': cannot mount over the container's root`);
  const t: TmpfsMount = { target, readonly: false, noexec: true, nosuid: true, nodev: true, data: [] };
  const data = new Map<string, string>();
  const flags: Record<string, () => void> = {
    rw: () => (t.readonly = false),
    ro: () => (t.readonly = true),
    noexec: () => (t.noexec = true),
    exec: () => (t.noexec = false),
    nosuid: () => (t.nosuid = true),
    suid: () => (t.nosuid = false),
    nodev: () => (t.nodev = true),
    dev: () => (t.nodev = false),
  };
  const values: Record<string, RegExp> = {
    size: /^[0-9]{1,19}[kmgKMG%]?$/,
    mode: /^[0-7]{1,4}$/,
    uid: /^[0-9]{1,10}$/,
    gid: /^[0-9]{1,10}$/,
  };
  for (const o of opts === '' ? [] : opts.split(',')) {
    const eq = o.indexOf('=');
    const key = eq < 0 ? o : o.slice(0, eq);
    if (eq < 0 && Object.hasOwn(flags, key)) {
      flags[key]();
      continue;
    }
    if (eq > 0 && Object.hasOwn(values, key)) {
      const v = o.slice(eq + 1);
      if (!values[key].test(v) || ((key === 'uid' || key === 'gid') && Number(v) > ID_MAX)) {
        throw new RunError(`bad --tmpfs '${spec}': ${key}=${v} is not a valid ${key === 'size' ? 'size (bytes, or with k, m, g or %)' : key === 'mode' ? 'octal mode' : `${key} (a number)`}`);
      }
      data.set(key, `${key}=${v}`);
      continue;
    }
    throw new RunError(`bad --tmpfs '${spec}': unsupported option '${o}' (supported: rw, ro, exec, noexec, suid, nosuid, dev, nodev, size=, mode=, uid=, gid=)`);
  }
  t.data = [...data.values()];
  return t;
}

/** The container's own /dev entries, which a --device may not replace. */
const DEV_OWN = new Set(['/dev', '/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty', '/dev/ptmx', '/dev/stdin', '/dev/stdout', '/dev/stderr']);
const DEV_OWN_DIRS = ['/dev/pts', '/dev/shm', '/dev/mqueue', '/dev/fd'];

/**
 * --device HOST[:CONTAINER[:PERMS]], split as docker's CLI does: a second field that is a valid
 * PERMS is the permissions (the container path is then the host's).
 */
export function parseDevice(spec: string): DeviceMapping {
  const parts = spec.split(':');
  if (parts.length > 3 || parts.some((p) => p === '')) throw new RunError(`bad --device '${spec}': expected HOST[:CONTAINER[:PERMS]]`);
  let target: string | undefined;
  let perms = 'rwm';
  if (parts.length === 3) perms = parts[2];
  if (parts.length >= 2) {
    if (parts.length === 2 && deviceAccess(parts[1]) !== null) perms = parts[1];
    else target = parts[1];
  }
  const access = deviceAccess(perms);
  if (access === null) throw new RunError(`bad --device '${spec}': permissions '${perms}' must be a combination of r, w and m`);
  if (!parts[0].startsWith('/')) throw new RunError(`bad --device '${spec}': the host path must be absolute`);
  const where = containerPath(target ?? parts[0], `--device path in '${spec}'`);
  if (!where.startsWith('/dev/')) throw new RunError(`bad --device '${spec}': the container path '${where}' must be below /dev`);
  if (DEV_OWN.has(where) || DEV_OWN_DIRS.some((d) => where === d || where.startsWith(d + '/'))) {
    throw new RunError(`bad --device '${spec}': '${where}' is one of the container's own /dev entries`);
  }
  return { host: parts[0], target: where, access };
}

/** --restart no|on-failure[:N]|always|unless-stopped (docker's spellings and checks). */
export function parseRestart(v: string): RestartPolicy {
  const colon = v.indexOf(':');
  const name = colon < 0 ? v : v.slice(0, colon);
  const count = colon < 0 ? undefined : v.slice(colon + 1);
  if (name === 'always' || name === 'unless-stopped') {
    throw new RunError(`--restart ${name}: only 'no' and 'on-failure[:N]' are supported for now`);
  }
  if (name !== 'no' && name !== '' && name !== 'on-failure') {
    throw new RunError(`bad --restart '${v}': unknown policy '${name}' (use 'no' or 'on-failure[:N]')`);
  }
  if (count !== undefined) {
    if (!/^-?[0-9]+$/.test(count) || !Number.isSafeInteger(Number(count))) throw new RunError(`bad --restart '${v}': the maximum retry count must be an integer`);
    if (name !== 'on-failure') throw new RunError(`bad --restart '${v}': a maximum retry count can only be used with 'on-failure'`);
    if (Number(count) < 0) throw new RunError(`bad --restart '${v}': the maximum retry count cannot be negative`);
  }
  return name === 'on-failure' ? { policy: 'on-failure', maxRetries: count === undefined ? 0 : Number(count) } : { policy: 'no', maxRetries: 0 };
}

function parseEnv(s: string, hostEnv: NodeJS.ProcessEnv): string | null {
  const eq = s.indexOf('=');
  const key = eq < 0 ? s : s.slice(0, eq);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new RunError(`bad environment variable '${s}': expected KEY=VALUE`);
  if (s.includes('\0')) throw new RunError(`bad environment variable '${key}': contains a NUL byte`);
  if (eq >= 0) return s;
  const v = hostEnv[key]; // -e KEY passes the launcher's value on, as docker does
  return v === undefined ? null : `${key}=${v}`;
}

/**
 * Parse the arguments that follow `layerfs run`. Pure apart from reading the CPU count, the
 * --env-file files, and asking `isImage` whether a name is an image of the store (by default
 * nothing is).
 */
export function parseRunArgs(argv: readonly string[], hostEnv: NodeJS.ProcessEnv = process.env, isImage: (name: string) => boolean = () => false): RunOptions {
  const o: RunOptions = {
    lowers: [],
    keep: false,
    env: [],
    readOnly: false,
    volumes: [],
    net: 'none',
    userns: false,
    interactive: false,
    tty: false,
    stopTimeout: 10,
    cleanupOnly: false,
    help: false,
    command: [],
    capAdd: [],
    capDrop: [],
    privileged: false,
    seccomp: 'default',
    envFiles: [],
    tmpfs: [],
    devices: [],
    detach: false,
    rm: false,
  };
  let lower: string | undefined;
  const cliEnv: string[] = [];
  let usernsMode: string | undefined;
  const uidmap: IdRange[] = [];
  const gidmap: IdRange[] = [];
  let subuidname: string | undefined;
  let subgidname: string | undefined;
  const caps = (v: string, opt: string): string[] =>
    v.split(',').map((c) => {
      const n = capName(c);
      if (n === null) throw new RunError(`${opt} '${c}': unknown capability (names as docker spells them, e.g. NET_ADMIN or CAP_NET_ADMIN, or ALL)`);
      return n;
    });
  const subidName = (v: string, opt: string): string => {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(v)) throw new RunError(`bad ${opt} '${v}': expected a user or group name`);
    return v;
  };
  const set = (key: string, v: string, opt: string): void => {
    switch (key) {
      case 'lower':
        if (lower !== undefined) throw new RunError('--lower given twice (list every layer in one, A:B:C)');
        lower = v;
        break;
      case 'upper':
        o.upper = v;
        break;
      case 'work':
        o.work = v;
        break;
      case 'rootfs':
        o.rootfs = v;
        break;
      case 'env': {
        const e = parseEnv(v, hostEnv);
        if (e !== null) cliEnv.push(e);
        break;
      }
      case 'envfile':
        if (v === '') throw new RunError('--env-file needs a file name');
        o.envFiles.push(v);
        break;
      case 'entrypoint':
        if (v.includes('\0')) throw new RunError('--entrypoint contains a NUL byte');
        o.entrypoint = v;
        break;
      case 'tmpfs':
        o.tmpfs.push(parseTmpfs(v));
        break;
      case 'device':
        o.devices.push(parseDevice(v));
        break;
      case 'name':
        if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(v)) throw new RunError(`bad --name '${v}': only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at most 128 characters`);
        o.name = v;
        break;
      case 'restart':
        o.restart = parseRestart(v);
        break;
      case 'workdir':
        o.workdir = containerPath(v, '--workdir');
        break;
      case 'user':
        o.user = parseUser(v);
        break;
      case 'hostname':
        if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(v)) throw new RunError(`bad hostname '${v}'`);
        o.hostname = v;
        break;
      case 'volume':
        o.volumes.push(parseVolume(v));
        break;
      case 'memory': {
        const b = parseBytes(v);
        if (b === null) throw new RunError(`bad memory limit '${v}': expected a positive number of bytes, e.g. 64m`);
        if (b < 4 * 1024 * 1024) throw new RunError(`memory limit '${v}' is too small (at least 4m)`);
        o.memory = b;
        break;
      }
      case 'pids': {
        const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
        if (!Number.isSafeInteger(n) || n < 1) throw new RunError(`bad pids limit '${v}': expected a positive integer`);
        o.pidsLimit = n;
        break;
      }
      case 'cpus': {
        const n = /^[0-9]*\.?[0-9]+$/.test(v) ? Number(v) : NaN;
        const max = os.cpus().length;
        if (!(n >= 0.01 && n <= max)) throw new RunError(`bad cpu limit '${v}': expected a number from 0.01 to ${max}`);
        o.cpus = n;
        break;
      }
      case 'net':
        if (v !== 'none' && v !== 'host') throw new RunError(`bad network '${v}': expected 'none' or 'host'`);
        o.net = v;
        break;
      case 'stop': {
        const n = /^[0-9]+(\.[0-9]+)?$/.test(v) ? Number(v) : NaN;
        if (!(n >= 0)) throw new RunError(`bad stop timeout '${v}': expected seconds`);
        o.stopTimeout = n;
        break;
      }
      case 'capadd':
        o.capAdd.push(...caps(v, opt));
        break;
      case 'capdrop':
        o.capDrop.push(...caps(v, opt));
        break;
      case 'secopt':
        parseSecurityOpt(o, v);
        break;
      case 'userns':
        usernsMode = v;
        break;
      case 'uidmap':
        uidmap.push(parseIdRange(v, opt));
        break;
      case 'gidmap':
        gidmap.push(parseIdRange(v, opt));
        break;
      case 'subuidname':
        subuidname = subidName(v, opt);
        break;
      case 'subgidname':
        subgidname = subidName(v, opt);
        break;
      default:
        throw new RunError(`internal: unknown option key ${key} (${opt})`);
    }
  };
  const flag = (key: string): void => {
    if (key === 'keep') o.keep = true;
    else if (key === 'readonly') o.readOnly = true;
    else if (key === 'privileged') o.privileged = true;
    else if (key === 'interactive') o.interactive = true;
    else if (key === 'tty') o.tty = true;
    else if (key === 'cleanup') o.cleanupOnly = true;
    else if (key === 'help') o.help = true;
    else if (key === 'detach') o.detach = true;
    else if (key === 'rm') o.rm = true;
  };

  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break; // the command
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (name === '--userns') {
      // --userns alone is --userns=auto; a value only with '=' (what follows is the command).
      set('userns', eq > 0 ? a.slice(eq + 1) : 'auto', name);
      continue;
    }
    if (FLAG_OPTS.has(name)) {
      if (eq > 0) throw new RunError(`option '${name}' takes no value`);
      flag(FLAG_OPTS.get(name)!);
      continue;
    }
    if (VALUE_OPTS.has(name)) {
      let v: string | undefined;
      if (eq > 0) v = a.slice(eq + 1);
      else {
        v = argv[++i];
        if (v === undefined) throw new RunError(`option '${name}' needs a value`);
      }
      set(VALUE_OPTS.get(name)!, v, name);
      continue;
    }
    // Short options glued together (-it) or to their value (-eK=V, -v/a:/b).
    if (/^-[a-zA-Z]/.test(a) && !a.startsWith('--')) {
      const first = `-${a[1]}`;
      if (VALUE_OPTS.has(first)) {
        set(VALUE_OPTS.get(first)!, a.slice(2), first);
        continue;
      }
      if ([...a.slice(1)].every((c) => FLAG_OPTS.has(`-${c}`))) {
        for (const c of a.slice(1)) flag(FLAG_OPTS.get(`-${c}`)!);
        continue;
      }
    }
    throw new RunError(`unknown option '${a}' (see 'layerfs run --help')`);
  }
  // Without --lower/--rootfs, a first non-option argument that names an image of the store is
  // the IMAGE; what follows it (after an optional '--') is the command.
  let notImage: string | undefined;
  if (lower === undefined && o.rootfs === undefined && i < argv.length && argv[i - 1] !== '--' && !o.cleanupOnly && !o.help) {
    if (isImage(argv[i])) {
      o.image = argv[i++];
      if (argv[i] === '--') i++;
    } else notImage = argv[i];
  }
  o.command = argv.slice(i);

  if (o.cleanupOnly || o.help) return o;
  // docker's order: the env files' entries (in order), then -e; a later KEY wins (run.ts).
  o.env = [...o.envFiles.flatMap((f) => readEnvFile(f, hostEnv)), ...cliEnv];
  resolveUserns(o, usernsMode, uidmap, gidmap, subuidname, subgidname);
  if (lower !== undefined) {
    o.lowers = splitLowerdirs(lower).filter((l) => l !== '');
    if (o.lowers.length === 0) throw new RunError('--lower needs at least one layer');
  }
  if (o.rootfs !== undefined && (lower !== undefined || o.upper !== undefined || o.work !== undefined)) {
    throw new RunError('--rootfs cannot be combined with --lower/--upper/--work');
  }
  if (o.rootfs === undefined && lower === undefined && o.image === undefined) {
    if (notImage !== undefined) throw new RunError(`missing --lower A:B:C (or --rootfs DIR), and '${notImage}' is not an image in the store (see 'layerfs image ls')`);
    throw new RunError('missing --lower A:B:C (or --rootfs DIR, or an IMAGE)');
  }
  if ((o.upper === undefined) !== (o.work === undefined)) throw new RunError('--upper and --work go together');
  if (o.keep && o.upper !== undefined) throw new RunError('--keep is for the throw-away upper; with --upper the changes stay anyway');
  if (o.rm && o.keep) throw new RunError('--rm and --keep exclude each other');
  if (o.rm && o.restart !== undefined && o.restart.policy !== 'no') throw new RunError('--rm and --restart on-failure exclude each other (as with docker)');
  // Without an image, --entrypoint is the program and the command its arguments (docker's rule
  // for an image with neither Entrypoint nor Cmd). With an IMAGE, applyImage combines them.
  if (o.image === undefined && o.entrypoint !== undefined && o.entrypoint !== '') o.command = [o.entrypoint, ...o.command];
  // With an IMAGE the command may come from its config: checked when the image is resolved.
  if (o.command.length === 0 && o.image === undefined) throw new RunError('missing command: layerfs run [OPTIONS] --lower A:B -- CMD [ARGS...]');
  if (o.command.length > 0 && o.command[0] === '') throw new RunError('the command is an empty string');
  const targets = new Set<string>();
  for (const v of o.volumes) {
    if (targets.has(v.target)) throw new RunError(`two volumes are mounted at '${v.target}'`);
    targets.add(v.target);
  }
  for (const t of [...o.tmpfs, ...o.devices]) {
    if (targets.has(t.target)) throw new RunError(`two of -v, --tmpfs and --device are mounted at '${t.target}'`);
    targets.add(t.target);
  }
  return o;
}

/** --security-opt VALUE (docker's and podman's spellings of what applies here). */
function parseSecurityOpt(o: RunOptions, v: string): void {
  const eq = v.search(/[=:]/);
  const key = eq < 0 ? v : v.slice(0, eq);
  const val = eq < 0 ? '' : v.slice(eq + 1);
  if (key === 'seccomp') {
    if (val === '') throw new RunError(`bad --security-opt '${v}': expected seccomp=unconfined or seccomp=PROFILE.json`);
    o.seccomp = val === 'unconfined' ? 'unconfined' : { file: val };
    return;
  }
  if (key === 'no-new-privileges') {
    // Always set: a setuid program in an image never gains privileges.
    if (val === '' || val === 'true') return;
    throw new RunError(`--security-opt '${v}': layerfs always sets no_new_privs; it cannot be turned off`);
  }
  // No SELinux or AppArmor confinement is applied here: asking for none is what we do anyway.
  if (v === 'label=disable' || v === 'label:disable' || v === 'apparmor=unconfined' || v === 'apparmor:unconfined') return;
  throw new RunError(`unsupported --security-opt '${v}' (supported: seccomp=unconfined, seccomp=FILE.json, no-new-privileges, label=disable, apparmor=unconfined)`);
}

/** --userns / --uidmap / --gidmap / --subuidname / --subgidname into o.userns and o.idmap. */
function resolveUserns(o: RunOptions, mode: string | undefined, uidmap: IdRange[], gidmap: IdRange[], subuid?: string, subgid?: string): void {
  const explicit = uidmap.length > 0 || gidmap.length > 0;
  const named = subuid !== undefined || subgid !== undefined;
  if (explicit && named) throw new RunError('--uidmap/--gidmap and --subuidname/--subgidname exclude each other');
  if (mode !== undefined && (explicit || named)) throw new RunError(`--userns=${mode} cannot be combined with --uidmap/--gidmap/--subuidname/--subgidname`);
  if (explicit) o.idmap = { kind: 'map', uid: uidmap.length > 0 ? uidmap : gidmap, gid: gidmap.length > 0 ? gidmap : uidmap };
  else if (named) o.idmap = { kind: 'subid', user: subuid ?? subgid!, group: subgid ?? subuid! };
  else if (mode !== undefined && mode !== 'host') {
    const m = /^auto(?::size=([0-9]{1,6}))?$/.exec(mode);
    if (!m) throw new RunError(`bad --userns '${mode}': expected auto, auto:size=N or host`);
    const size = m[1] === undefined ? 65536 : Number(m[1]);
    if (size < 1 || size > 65536) throw new RunError(`bad --userns '${mode}': the size must be from 1 to 65536`);
    o.idmap = { kind: 'auto', size };
  }
  o.userns = o.idmap !== undefined;
}
