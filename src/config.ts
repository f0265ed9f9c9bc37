// Command-line and mount-option parsing for layerfs, plus validation of the
// resulting configuration against the filesystem.
//
// Two invocation forms are understood (argv is what follows the program name):
//
//   layerfs [-f] [-d] -o lowerdir=L1:L2,upperdir=U,workdir=W MOUNTPOINT
//       (the fuse-overlayfs form; this is how podman's mount_program is run)
//   layerfs SOURCE MOUNTPOINT -o rw,lowerdir=...,dev,suid
//       (the form mount.fuse3 uses when run from mount(8) / fstab)
//
// Option strings follow the fuse-overlayfs escaping rules: a backslash makes
// the next character literal, so "\," does not end an option and "\:" does
// not end a layer path.
//
// parseMountArgs() is pure; validateMountConfig() only reads the filesystem
// (realpath, stat, access, /proc/self/mountinfo) and never changes it.

import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { parseMountinfo, withoutIdmap } from './mountinfo.ts';

/** A user-facing configuration error; the message is one line starting with "layerfs: ". */
export class ConfigError extends Error {
  constructor(message: string) {
    super(oneLine(message));
    this.name = 'ConfigError';
  }
}

export interface MountRequest {
  /** Lower layers as given (unescaped), top-most first. */
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  /** As given on the command line. */
  mountpoint: string;
  /** SOURCE of the mount.fuse form, or the value of fsname= (fsname= wins). */
  source?: string;
  /** -f / --foreground */
  foreground: boolean;
  /** -d / --debug / -o debug */
  debug: boolean;
  /** -o ro */
  readonly: boolean;
  /** -o volatile: skip fsync on the upper layer, as the kernel does. */
  volatile: boolean;
  /** -o userxattr: use user.overlay.* instead of trusted.overlay.* */
  userxattr: boolean;
  /**
   * redirect_dir=. Defaults to 'off', which is what the kernel uses when the
   * option is absent (on kernels built without OVERLAY_FS_REDIRECT_DIR); the
   * kernel treats 'off' as 'follow' when redirect_always_follow is enabled
   * (its default) and as 'nofollow' otherwise.
   */
  redirectDir: 'off' | 'follow' | 'nofollow';
  noatime: boolean;
  nodev: boolean;
  nosuid: boolean;
  noexec: boolean;
  /** timeout=N, a non-negative integer number of seconds (0: the kernel caches nothing). */
  timeoutSeconds?: number;
  /**
   * passthrough=on|off: the kernel reads and writes upper files itself (FUSE passthrough,
   * Linux >= 6.9; backend=lowlevel). Default on; off sends every read and write to the daemon.
   */
  passthrough: boolean;
  /**
   * spin=N: microseconds the daemon keeps reading /dev/fuse after answering, before it sleeps
   * (0..10000, default 50). A client's next request then finds it awake instead of paying a
   * wake-up (tens of microseconds on a VM); the price is up to N µs of CPU after each burst.
   */
  spinUs: number;
  /**
   * backend=: the FUSE binding the daemon serves through. 'lowlevel' (default): layerfs' own
   * libfuse3 low-level addon; 'fuse-native': the fuse-native package on libfuse 2 (known
   * defects, README).
   */
  backend: Backend;
  /** Options that were accepted but have no effect, in the order given. */
  ignored: string[];
  /** uidmapping= / gidmapping= value, format-checked (applied by src/fuse/idmap.ts). */
  uidmapping?: string;
  gidmapping?: string;
  /** trace=FILE (or --trace FILE): append the union's decisions to FILE as JSON lines. */
  trace?: string;
  /**
   * squash_to_uid= / squash_to_gid= (squash_to_root: both 0): every object is shown as owned
   * by this id; what is stored is not changed (podman passes these for a one-id --uidmap).
   */
  squashUid?: number;
  squashGid?: number;
  /**
   * xattr_permissions=2: owners and permission bits are shown from the
   * `user.containers.override_stat` xattr where an object has one (containers/storage's
   * force_mask stores the real ones there and masks the files). 0 and 1: nothing.
   */
  xattrPermissions?: 0 | 1 | 2;
}

export const BACKENDS = ['lowlevel', 'fuse-native'] as const;
export type Backend = (typeof BACKENDS)[number];

export interface MountConfig extends MountRequest {
  /** Absolute, fs.realpath'ed. */
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  mountpoint: string;
  /** True when there is no upperdir, or -o ro was given. */
  readonly: boolean;
  /** source ?? 'layerfs' */
  fsname: string;
}

// ---------------------------------------------------------------------------
// Splitting and unescaping

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

/** Quote a user-supplied string for an error message. */
function q(s: string): string {
  return `'${oneLine(s)}'`;
}

/** Remove backslash escapes: "\x" becomes "x"; a trailing lone backslash is kept. */
function unescape(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) {
      out += s[i + 1];
      i++;
    } else {
      out += c;
    }
  }
  return out;
}

/**
 * Split s on every unescaped occurrence of sep, keeping the escapes in the
 * pieces. Empty pieces are kept.
 */
function splitUnescaped(s: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (c === sep) {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

// SELinux context options carry a value such as
//   context="system_u:object_r:container_file_t:s0:c1,c2"
// (podman formats it that way, quoting because the MCS categories contain a
// comma). Inside the double quotes of these options only, a comma does not
// separate options.
const QUOTED_CONTEXT_START = /^(?:fs|def|root)?context="/;

/**
 * Split an -o string into options on unescaped commas, dropping empty items.
 * Escapes are kept in the items (they are removed later, per value).
 */
export function splitOptions(s: string): string[] {
  const items: string[] = [];
  let cur = '';
  let i = 0;
  while (i < s.length) {
    if (cur === '') {
      const m = QUOTED_CONTEXT_START.exec(s.slice(i));
      if (m) {
        const close = s.indexOf('"', i + m[0].length);
        if (close !== -1) {
          cur = s.slice(i, close + 1);
          i = close + 1;
          continue;
        }
      }
    }
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i += 2;
    } else if (c === ',') {
      if (cur !== '') items.push(cur);
      cur = '';
      i++;
    } else {
      cur += c;
      i++;
    }
  }
  if (cur !== '') items.push(cur);
  return items;
}

/**
 * Split a lowerdir= value on unescaped ':' and unescape each piece. Empty
 * pieces are kept (the caller decides whether they are errors).
 */
export function splitLowerdirs(s: string): string[] {
  return splitUnescaped(s, ':').map(unescape);
}

// ---------------------------------------------------------------------------
// Option table

type ValueCheck = { test: (v: string) => boolean; expected: string };

const ANY: ValueCheck = { test: (v) => v.length > 0, expected: 'a non-empty value' };
const UINT: ValueCheck = { test: (v) => /^\d+$/.test(v), expected: 'a non-negative integer' };
const SECONDS: ValueCheck = {
  test: (v) => /^\d+$/.test(v) && Number.isSafeInteger(Number(v)),
  expected: 'a non-negative integer',
};
function oneOf(...values: string[]): ValueCheck {
  const expected =
    values.length === 1
      ? values[0]
      : `${values.slice(0, -1).join(', ')} or ${values[values.length - 1]}`;
  return { test: (v) => values.includes(v), expected };
}

/**
 * Options without a value that are accepted and have no effect. They are
 * recorded in MountRequest.ignored.
 */
const IGNORED_FLAGS: ReadonlySet<string> = new Set([
  // Standard mount(8) flags that layerfs does not act on. (rw, dev, suid,
  // exec, atime, relatime, strictatime and defaults also cancel an earlier
  // opposite flag; see applyOption.)
  'rw', 'dev', 'suid', 'exec', 'atime', 'relatime', 'strictatime',
  'lazytime', 'nolazytime', 'sync', 'async', 'dirsync', 'diratime', 'nodiratime',
  'mand', 'nomand', 'silent', 'loud', 'defaults', 'auto', 'noauto',
  'user', 'nouser', 'users', '_netdev', 'nofail',
  // fuse-overlayfs / libfuse options.
  'static_nlink', 'noacl',
  'allow_other', 'allow_root', 'default_permissions', 'kernel_cache', 'auto_cache',
]);

/** Options with a value that are accepted (value checked) and have no effect. */
const IGNORED_VALUED: ReadonlyMap<string, ValueCheck> = new Map(Object.entries({
  // mount(8) passes user=NAME to helpers for user mounts.
  user: ANY,
  subtype: ANY,
  // SELinux contexts.
  context: ANY,
  fscontext: ANY,
  defcontext: ANY,
  rootcontext: ANY,
  // fuse-overlayfs specific.
  fsync: oneOf('0', '1'),
  threaded: oneOf('0', '1'),
  fast_ino: oneOf('0', '1'),
  plugins: ANY,
  writeback: oneOf('0', '1'),
  max_idle_threads: UINT,
  // libfuse.
  max_read: UINT,
  // Kernel overlayfs: the uuid only matters for file handles / index, which
  // layerfs does not use.
  uuid: oneOf('on', 'off', 'null', 'auto'),
}));

/**
 * Kernel overlayfs features that layerfs does not implement: the "off"
 * spellings are accepted (and recorded as ignored), the enabling ones are
 * refused as not supported yet.
 */
const FEATURE_OFF_ONLY: ReadonlyMap<string, { accepted: string[]; unsupported: string[] }> = new Map(Object.entries({
  index: { accepted: ['off'], unsupported: ['on'] },
  metacopy: { accepted: ['off'], unsupported: ['on'] },
  xino: { accepted: ['off', 'auto'], unsupported: ['on'] },
  nfs_export: { accepted: ['off'], unsupported: ['on'] },
  verity: { accepted: ['off'], unsupported: ['on', 'require'] },
}));

/** Options that take a value and affect the request (besides the tables above). */
const EFFECTIVE_VALUED: ReadonlySet<string> = new Set([
  'lowerdir', 'upperdir', 'workdir', 'redirect_dir', 'fsname', 'timeout', 'passthrough', 'spin',
  'uidmapping', 'gidmapping', 'backend', 'trace', 'squash_to_uid', 'squash_to_gid',
  'xattr_permissions',
]);

/** Options without a value that affect the request. */
const EFFECTIVE_FLAGS: ReadonlySet<string> = new Set([
  'ro', 'volatile', 'userxattr', 'debug', 'nodev', 'nosuid', 'noexec', 'noatime', 'squash_to_root',
]);

/** Given more than once → error (the others: the last one wins). */
const SINGLE_USE: ReadonlySet<string> = new Set([
  'lowerdir', 'upperdir', 'workdir', 'uidmapping', 'gidmapping',
]);

const MAX_ID = 0xffffffff;

/**
 * spin=: default and bound, in microseconds (see MountRequest.spinUs). On one CPU there is no
 * other CPU to stay awake for: spinning would only keep the client waiting, so it is off.
 */
export const DEFAULT_SPIN_US = os.availableParallelism() > 1 ? 50 : 0;
const MAX_SPIN_US = 10_000;
const SPIN_US: ValueCheck = {
  test: (v) => /^(0|[1-9][0-9]{0,4})$/.test(v) && Number(v) <= MAX_SPIN_US,
  expected: `microseconds, 0 to ${MAX_SPIN_US}`,
};

/** CONTAINER:HOST:SIZE triples joined by ':', optionally with a leading ':'. */
function validMapping(v: string): boolean {
  if (!/^:?\d+:\d+:\d+(?::\d+:\d+:\d+)*$/.test(v)) return false;
  const nums = v.replace(/^:/, '').split(':').map(Number);
  for (let i = 0; i < nums.length; i += 3) {
    const [inside, outside, size] = [nums[i], nums[i + 1], nums[i + 2]];
    if (size < 1 || inside + size - 1 > MAX_ID || outside + size - 1 > MAX_ID) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// parseMountArgs

interface ParseState {
  req: MountRequest;
  seen: Set<string>;
  fsname?: string;
}

function requireValue(name: string, value: string | undefined): string {
  if (value === undefined) throw new ConfigError(`layerfs: mount option ${q(name)} requires a value`);
  return value;
}

function checkValue(name: string, value: string, check: ValueCheck): void {
  if (!check.test(value)) {
    throw new ConfigError(
      `layerfs: invalid value for ${name}: ${q(value)} (expected ${check.expected})`,
    );
  }
}

function parseLowerdir(raw: string): string[] {
  if (raw === '') throw new ConfigError('layerfs: lowerdir= is empty');
  const layers = splitLowerdirs(raw);
  if (layers[0] === '' || layers[layers.length - 1] === '') {
    throw new ConfigError(`layerfs: lowerdir= has an empty layer path: ${q(raw)}`);
  }
  if (layers.some((l) => l === '')) {
    throw new ConfigError(
      "layerfs: data-only lower layers ('::' in lowerdir=) are not supported",
    );
  }
  return layers;
}

function applyOption(st: ParseState, item: string): void {
  const req = st.req;
  const eq = item.indexOf('=');
  const name = eq === -1 ? item : item.slice(0, eq);
  const raw = eq === -1 ? undefined : item.slice(eq + 1);

  const known =
    EFFECTIVE_VALUED.has(name) || EFFECTIVE_FLAGS.has(name) || IGNORED_FLAGS.has(name) ||
    IGNORED_VALUED.has(name) || FEATURE_OFF_ONLY.has(name) || name.startsWith('x-');
  if (!known) throw new ConfigError(`layerfs: unknown mount option ${q(item)}`);

  // userspace-only mount(8) options (x-systemd.*, x-mount.* ...)
  if (name.startsWith('x-')) {
    req.ignored.push(unescape(item));
    return;
  }

  const isFlagOnly =
    (EFFECTIVE_FLAGS.has(name) || IGNORED_FLAGS.has(name)) && !IGNORED_VALUED.has(name);
  if (isFlagOnly && raw !== undefined) {
    throw new ConfigError(`layerfs: mount option ${q(name)} does not take a value`);
  }

  if (SINGLE_USE.has(name)) {
    if (st.seen.has(name)) throw new ConfigError(`layerfs: ${name}= given more than once`);
    st.seen.add(name);
  }

  switch (name) {
    case 'lowerdir':
      req.lowerdirs = parseLowerdir(requireValue(name, raw));
      return;
    case 'upperdir':
    case 'workdir': {
      const v = unescape(requireValue(name, raw));
      if (v === '') throw new ConfigError(`layerfs: ${name}= is empty`);
      req[name] = v;
      return;
    }
    case 'redirect_dir': {
      const v = unescape(requireValue(name, raw));
      if (v === 'on') throw new ConfigError('layerfs: redirect_dir=on is not supported yet');
      if (v !== 'off' && v !== 'follow' && v !== 'nofollow') {
        throw new ConfigError(
          `layerfs: invalid value for redirect_dir: ${q(v)} (expected off, follow or nofollow)`,
        );
      }
      req.redirectDir = v;
      return;
    }
    case 'fsname': {
      const v = unescape(requireValue(name, raw));
      if (v === '') throw new ConfigError('layerfs: fsname= is empty');
      st.fsname = v;
      return;
    }
    case 'timeout': {
      const v = unescape(requireValue(name, raw));
      checkValue(name, v, SECONDS);
      req.timeoutSeconds = Number(v);
      return;
    }
    case 'passthrough': {
      const v = unescape(requireValue(name, raw));
      checkValue(name, v, oneOf('on', 'off'));
      req.passthrough = v === 'on';
      return;
    }
    case 'spin': {
      const v = unescape(requireValue(name, raw));
      checkValue(name, v, SPIN_US);
      req.spinUs = Number(v);
      return;
    }
    case 'trace': {
      const v = unescape(requireValue(name, raw));
      if (v === '') throw new ConfigError('layerfs: trace= is empty');
      req.trace = v;
      return;
    }
    case 'backend': {
      const v = unescape(requireValue(name, raw));
      checkValue(name, v, oneOf(...BACKENDS));
      req.backend = v as Backend;
      return;
    }
    case 'uidmapping':
    case 'gidmapping': {
      const v = unescape(requireValue(name, raw));
      if (!validMapping(v)) {
        const id = name === 'uidmapping' ? 'UID' : 'GID';
        throw new ConfigError(
          `layerfs: invalid ${name} ${q(v)} (expected CONTAINER-${id}:HOST-${id}:SIZE[:CONTAINER-${id}:HOST-${id}:SIZE...])`,
        );
      }
      req[name] = v;
      return;
    }
    case 'squash_to_uid':
    case 'squash_to_gid': {
      const v = unescape(requireValue(name, raw));
      checkValue(name, v, UINT);
      const id = Number(v);
      if (id > MAX_ID - 1) throw new ConfigError(`layerfs: invalid value for ${name}: ${q(v)} (expected an id below 4294967295)`);
      if (name === 'squash_to_uid') req.squashUid = id;
      else req.squashGid = id;
      return;
    }
    case 'squash_to_root': req.squashUid = 0; req.squashGid = 0; return;
    case 'xattr_permissions': {
      const v = unescape(requireValue(name, raw));
      checkValue(name, v, oneOf('0', '1', '2'));
      req.xattrPermissions = Number(v) as 0 | 1 | 2;
      return;
    }
    case 'ro': req.readonly = true; return;
    case 'volatile': req.volatile = true; return;
    case 'userxattr': req.userxattr = true; return;
    case 'debug': req.debug = true; return;
    case 'nodev': req.nodev = true; return;
    case 'nosuid': req.nosuid = true; return;
    case 'noexec': req.noexec = true; return;
    case 'noatime': req.noatime = true; return;
  }

  const feature = FEATURE_OFF_ONLY.get(name);
  if (feature) {
    const v = unescape(requireValue(name, raw));
    if (feature.unsupported.includes(v)) {
      throw new ConfigError(`layerfs: ${name}=${v} is not supported yet`);
    }
    checkValue(name, v, oneOf(...feature.accepted, ...feature.unsupported));
    req.ignored.push(`${name}=${v}`);
    return;
  }

  if (raw !== undefined) {
    const check = IGNORED_VALUED.get(name);
    if (!check) throw new ConfigError(`layerfs: mount option ${q(name)} does not take a value`);
    checkValue(name, unescape(raw), check);
    req.ignored.push(unescape(item));
    return;
  }
  if (!IGNORED_FLAGS.has(name)) {
    // In IGNORED_VALUED only, but given without a value.
    requireValue(name, raw);
  }

  // Ignored flags; the positive mount flags cancel an earlier negative one
  // (mount(8): the last occurrence wins).
  switch (name) {
    case 'rw': req.readonly = false; break;
    case 'dev': req.nodev = false; break;
    case 'suid': req.nosuid = false; break;
    case 'exec': req.noexec = false; break;
    case 'atime':
    case 'relatime':
    case 'strictatime': req.noatime = false; break;
    case 'defaults':
      // defaults = rw,suid,dev,exec,auto,nouser,async
      req.readonly = false;
      req.nosuid = false;
      req.nodev = false;
      req.noexec = false;
      break;
  }
  req.ignored.push(name);
}

/** A request with every option at its default (fresh arrays each time). */
export function defaultMountRequest(): MountRequest {
  return {
    lowerdirs: [],
    mountpoint: '',
    foreground: false,
    debug: false,
    readonly: false,
    volatile: false,
    userxattr: false,
    redirectDir: 'off',
    noatime: false,
    nodev: false,
    nosuid: false,
    noexec: false,
    passthrough: true,
    spinUs: DEFAULT_SPIN_US,
    backend: 'lowlevel',
    ignored: [],
  };
}

/**
 * Parse the command line (the arguments after the program name, and after a
 * leading "mount" subcommand if the caller has one). Throws ConfigError.
 */
export function parseMountArgs(argv: string[]): MountRequest {
  const req = defaultMountRequest();
  const optionStrings: string[] = [];
  const positionals: string[] = [];

  let onlyPositionals = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (onlyPositionals || !arg.startsWith('-') || arg === '') {
      positionals.push(arg);
      continue;
    }
    switch (arg) {
      case '--':
        onlyPositionals = true;
        continue;
      case '-f':
      case '--foreground':
        req.foreground = true;
        continue;
      case '-d':
      case '--debug':
        req.debug = true;
        continue;
      case '-o':
        if (i + 1 >= argv.length) throw new ConfigError("layerfs: option '-o' requires an argument");
        optionStrings.push(argv[++i]);
        continue;
      case '--trace':
        if (i + 1 >= argv.length || argv[i + 1] === '') throw new ConfigError("layerfs: option '--trace' requires a FILE");
        req.trace = argv[++i];
        continue;
    }
    if (arg.startsWith('--trace=')) {
      req.trace = arg.slice('--trace='.length);
      if (req.trace === '') throw new ConfigError("layerfs: option '--trace' requires a FILE");
      continue;
    }
    if (arg.startsWith('-o')) {
      optionStrings.push(arg.slice(2));
      continue;
    }
    throw new ConfigError(`layerfs: unknown flag ${q(arg)}`);
  }

  if (positionals.length === 0) throw new ConfigError('layerfs: expected a mountpoint');
  if (positionals.length > 2) {
    throw new ConfigError(`layerfs: too many arguments: ${positionals.slice(2).join(' ')}`);
  }
  let source: string | undefined;
  if (positionals.length === 2) {
    source = positionals[0];
    if (source === '') throw new ConfigError('layerfs: the mount source is empty');
  }
  req.mountpoint = positionals[positionals.length - 1];
  if (req.mountpoint === '') throw new ConfigError('layerfs: the mountpoint is empty');

  const st: ParseState = { req, seen: new Set() };
  for (const s of optionStrings) {
    for (const item of splitOptions(s)) applyOption(st, item);
  }

  if (!st.seen.has('lowerdir')) throw new ConfigError('layerfs: missing lowerdir= option');
  const fsname = st.fsname ?? source;
  if (fsname !== undefined) req.source = fsname;
  return req;
}

// ---------------------------------------------------------------------------
// validateMountConfig

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

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string'
    ? e.code
    : undefined;
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
