// The -o options: one table with an entry per option name, saying whether it takes a value,
// whether it may be given only once, and what it does to the request. Options that layerfs
// accepts without acting on them (mount(8)'s, libfuse's, fuse-overlayfs' and kernel overlayfs'
// own) are recorded in MountRequest.ignored; an unknown option is an error.

import { ConfigError, BACKENDS, type Backend, type MountRequest } from './request.ts';
import { q, splitLowerdirs, unescape } from './escape.ts';

/** What the options given so far have built. */
export interface ParseState {
  req: MountRequest;
  seen: Set<string>;
  fsname?: string;
}

// ---------------------------------------------------------------------------
// Values

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

const MAX_ID = 0xffffffff;

/** spin=: the bound, in microseconds (see MountRequest.spinUs and DEFAULT_SPIN_US). */
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

// ---------------------------------------------------------------------------
// Kinds of option

interface Option {
  /** 'required': NAME=VALUE only; 'none': NAME only (a flag); 'optional': either. */
  value: 'required' | 'none' | 'optional';
  /** Given more than once → error (for the others the last one wins). */
  once?: boolean;
  /** `raw`: the value with its escapes (present when `value` is 'required'); `item`: NAME[=VALUE]. */
  apply(st: ParseState, raw: string | undefined, name: string, item: string): void;
}

/** NAME=VALUE that sets part of the request; `set` gets the value unescaped. */
function valued(set: (st: ParseState, v: string, name: string) => void, once = false): Option {
  return { value: 'required', once, apply: (st, raw, name) => set(st, unescape(raw!), name) };
}

/** A flag that sets part of the request. */
function flag(set: (req: MountRequest) => void): Option {
  return { value: 'none', apply: (st) => set(st.req) };
}

/**
 * A flag accepted without effect; `cancel` undoes an earlier opposite flag (the positive mount
 * flags: mount(8) lets the last occurrence win).
 */
function ignoredFlag(cancel?: (req: MountRequest) => void): Option {
  return {
    value: 'none',
    apply: (st, _raw, name) => {
      cancel?.(st.req);
      st.req.ignored.push(name);
    },
  };
}

/** NAME=VALUE accepted without effect once the value passes `check`. */
function ignoredValued(check: ValueCheck): Option {
  return {
    value: 'required',
    apply: (st, raw, name, item) => {
      checkValue(name, unescape(raw!), check);
      st.req.ignored.push(unescape(item));
    },
  };
}

/**
 * A kernel overlayfs feature that layerfs does not implement: the "off" spellings are accepted
 * (and recorded as ignored), the enabling ones are refused as not supported yet.
 */
function featureOffOnly(accepted: string[], unsupported: string[]): Option {
  return valued((st, v, name) => {
    if (unsupported.includes(v)) {
      throw new ConfigError(`layerfs: ${name}=${v} is not supported yet`);
    }
    checkValue(name, v, oneOf(...accepted, ...unsupported));
    st.req.ignored.push(`${name}=${v}`);
  });
}

/** A non-empty path option (upperdir=, workdir=). */
function dirOption(key: 'upperdir' | 'workdir'): Option {
  return valued((st, v, name) => {
    if (v === '') throw new ConfigError(`layerfs: ${name}= is empty`);
    st.req[key] = v;
  }, true);
}

function mappingOption(key: 'uidmapping' | 'gidmapping', id: 'UID' | 'GID'): Option {
  return valued((st, v, name) => {
    if (!validMapping(v)) {
      throw new ConfigError(
        `layerfs: invalid ${name} ${q(v)} (expected CONTAINER-${id}:HOST-${id}:SIZE[:CONTAINER-${id}:HOST-${id}:SIZE...])`,
      );
    }
    st.req[key] = v;
  }, true);
}

function squashOption(key: 'squashUid' | 'squashGid'): Option {
  return valued((st, v, name) => {
    checkValue(name, v, UINT);
    const id = Number(v);
    if (id > MAX_ID - 1) throw new ConfigError(`layerfs: invalid value for ${name}: ${q(v)} (expected an id below 4294967295)`);
    st.req[key] = id;
  });
}

// ---------------------------------------------------------------------------
// The table

const USER_FLAG = ignoredFlag();
const USER_NAME = ignoredValued(ANY);

const OPTIONS: ReadonlyMap<string, Option> = new Map(Object.entries({
  // Options that affect the request.
  lowerdir: { value: 'required', once: true, apply: (st, raw) => { st.req.lowerdirs = parseLowerdir(raw!); } },
  upperdir: dirOption('upperdir'),
  workdir: dirOption('workdir'),
  redirect_dir: valued((st, v) => {
    if (v === 'on') throw new ConfigError('layerfs: redirect_dir=on is not supported yet');
    if (v !== 'off' && v !== 'follow' && v !== 'nofollow') {
      throw new ConfigError(
        `layerfs: invalid value for redirect_dir: ${q(v)} (expected off, follow or nofollow)`,
      );
    }
    st.req.redirectDir = v;
  }),
  fsname: valued((st, v) => {
    if (v === '') throw new ConfigError('layerfs: fsname= is empty');
    st.fsname = v;
  }),
  timeout: valued((st, v, name) => {
    checkValue(name, v, SECONDS);
    st.req.timeoutSeconds = Number(v);
  }),
  passthrough: valued((st, v, name) => {
    checkValue(name, v, oneOf('on', 'off'));
    st.req.passthrough = v === 'on';
  }),
  spin: valued((st, v, name) => {
    checkValue(name, v, SPIN_US);
    st.req.spinUs = Number(v);
  }),
  trace: valued((st, v) => {
    if (v === '') throw new ConfigError('layerfs: trace= is empty');
    st.req.trace = v;
  }),
  backend: valued((st, v, name) => {
    checkValue(name, v, oneOf(...BACKENDS));
    st.req.backend = v as Backend;
  }),
  uidmapping: mappingOption('uidmapping', 'UID'),
  gidmapping: mappingOption('gidmapping', 'GID'),
  squash_to_uid: squashOption('squashUid'),
  squash_to_gid: squashOption('squashGid'),
  xattr_permissions: valued((st, v, name) => {
    checkValue(name, v, oneOf('0', '1', '2'));
    st.req.xattrPermissions = Number(v) as 0 | 1 | 2;
  }),
  squash_to_root: flag((req) => { req.squashUid = 0; req.squashGid = 0; }),
  ro: flag((req) => { req.readonly = true; }),
  volatile: flag((req) => { req.volatile = true; }),
  userxattr: flag((req) => { req.userxattr = true; }),
  debug: flag((req) => { req.debug = true; }),
  nodev: flag((req) => { req.nodev = true; }),
  nosuid: flag((req) => { req.nosuid = true; }),
  noexec: flag((req) => { req.noexec = true; }),
  noatime: flag((req) => { req.noatime = true; }),

  // Standard mount(8) flags that layerfs does not act on; the positive ones cancel an earlier
  // opposite flag.
  rw: ignoredFlag((req) => { req.readonly = false; }),
  dev: ignoredFlag((req) => { req.nodev = false; }),
  suid: ignoredFlag((req) => { req.nosuid = false; }),
  exec: ignoredFlag((req) => { req.noexec = false; }),
  atime: ignoredFlag((req) => { req.noatime = false; }),
  relatime: ignoredFlag((req) => { req.noatime = false; }),
  strictatime: ignoredFlag((req) => { req.noatime = false; }),
  // defaults = rw,suid,dev,exec,auto,nouser,async
  defaults: ignoredFlag((req) => { req.readonly = false; req.nosuid = false; req.nodev = false; req.noexec = false; }),
  ...Object.fromEntries([
    'lazytime', 'nolazytime', 'sync', 'async', 'dirsync', 'diratime', 'nodiratime',
    'mand', 'nomand', 'silent', 'loud', 'auto', 'noauto',
    'nouser', 'users', '_netdev', 'nofail',
    // fuse-overlayfs / libfuse options.
    'static_nlink', 'noacl',
    'allow_other', 'allow_root', 'default_permissions', 'kernel_cache', 'auto_cache',
  ].map((name) => [name, ignoredFlag()])),
  // mount(8) passes `user` alone, or user=NAME to helpers for user mounts.
  user: {
    value: 'optional',
    apply: (st, raw, name, item) => (raw === undefined ? USER_FLAG : USER_NAME).apply(st, raw, name, item),
  },

  // Options with a value that are accepted (value checked) and have no effect.
  subtype: ignoredValued(ANY),
  // SELinux contexts.
  context: ignoredValued(ANY),
  fscontext: ignoredValued(ANY),
  defcontext: ignoredValued(ANY),
  rootcontext: ignoredValued(ANY),
  // fuse-overlayfs specific.
  fsync: ignoredValued(oneOf('0', '1')),
  threaded: ignoredValued(oneOf('0', '1')),
  fast_ino: ignoredValued(oneOf('0', '1')),
  plugins: ignoredValued(ANY),
  writeback: ignoredValued(oneOf('0', '1')),
  max_idle_threads: ignoredValued(UINT),
  // libfuse.
  max_read: ignoredValued(UINT),
  // Kernel overlayfs: the uuid only matters for file handles / index, which layerfs does not use.
  uuid: ignoredValued(oneOf('on', 'off', 'null', 'auto')),

  // Kernel overlayfs features that layerfs does not implement.
  index: featureOffOnly(['off'], ['on']),
  metacopy: featureOffOnly(['off'], ['on']),
  xino: featureOffOnly(['off', 'auto'], ['on']),
  nfs_export: featureOffOnly(['off'], ['on']),
  verity: featureOffOnly(['off'], ['on', 'require']),
} satisfies Record<string, Option>));

/** Userspace-only mount(8) options (x-systemd.*, x-mount.* ...): recorded as given. */
const USERSPACE_OPTION: Option = {
  value: 'optional',
  apply: (st, _raw, _name, item) => { st.req.ignored.push(unescape(item)); },
};

/** Apply one item of an -o string (NAME or NAME=VALUE, escapes kept) to the request. */
export function applyOption(st: ParseState, item: string): void {
  const eq = item.indexOf('=');
  const name = eq === -1 ? item : item.slice(0, eq);
  const raw = eq === -1 ? undefined : item.slice(eq + 1);

  const option = OPTIONS.get(name) ?? (name.startsWith('x-') ? USERSPACE_OPTION : undefined);
  if (!option) throw new ConfigError(`layerfs: unknown mount option ${q(item)}`);
  if (option.value === 'none' && raw !== undefined) {
    throw new ConfigError(`layerfs: mount option ${q(name)} does not take a value`);
  }
  if (option.once) {
    if (st.seen.has(name)) throw new ConfigError(`layerfs: ${name}= given more than once`);
    st.seen.add(name);
  }
  if (option.value === 'required') requireValue(name, raw);
  option.apply(st, raw, name, item);
}
