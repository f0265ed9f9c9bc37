/**
 * Seccomp filters for `layerfs run`: docker's (and podman's) JSON profile format, read and
 * checked here, compiled by libseccomp in the project's own addon (native/layerfs_seccomp.cc,
 * build/Release/layerfs_seccomp.node).
 *
 *   parseProfile(text, file)   -> Profile   the JSON, every field checked; SeccompError otherwise
 *   compileProfile(profile, {caps})  -> Spec   includes/excludes applied for one container
 *   specToWire / specFromWire  Spec <-> plain JSON (BigInts as decimal strings), for stage 2
 *   loadSeccomp(spec)          the filter, into the calling process (and every thread of it)
 *
 * The launcher parses and compiles (so a bad profile is an error before anything starts); stage
 * 2 only loads, right before it execve()s the command. Stage 2 pivots into the container's root
 * after importing its modules, so this module loads the addon and reads the default profile when
 * it is imported. Loading the addon installs nothing: only loadSeccomp() does. The FUSE daemon
 * never imports this module.
 */
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import os from 'node:os';
import * as path from 'node:path';
import { ROOT } from '../root.ts';
import { CAPS } from './security.ts';

// ---------------------------------------------------------------------------
// Types

/** What a rule (or the default) does. `errno`: the errno for 'errno', the message for 'trace'. */
export type ActionKind = 'allow' | 'errno' | 'kill_thread' | 'kill_process' | 'trap' | 'log' | 'trace';

export interface Action {
  kind: ActionKind;
  /** 'errno': 0..4095 (the errno the syscall fails with); 'trace': 0..65535; absent otherwise. */
  errno?: number;
}

/** libseccomp's comparisons (SCMP_CMP_*). masked_eq: (arg & value) == valueTwo. */
export type CompareOp = 'ne' | 'lt' | 'le' | 'eq' | 'ge' | 'gt' | 'masked_eq';

export interface ArgCompare {
  /** The syscall argument, 0..5. */
  index: number;
  op: CompareOp;
  /** 0 ..= 2^64-1 */
  value: bigint;
  /** 0 ..= 2^64-1; only masked_eq uses it. */
  valueTwo: bigint;
}

export interface KernelVersion {
  major: number;
  minor: number;
}

/** A syscalls[] entry's `includes` or `excludes`. Empty lists and null: no condition. */
export interface Condition {
  /** Capability names ('CAP_SYS_ADMIN'). includes: all granted; excludes: any granted. */
  caps: string[];
  /** Architecture names as in docker's profiles (Go's 'amd64', 'arm64', ... or 'x86_64', 'SCMP_ARCH_X86_64'). */
  arches: string[];
  /** includes: the kernel is at least this; excludes: the kernel is at least this. */
  minKernel: KernelVersion | null;
}

export interface SyscallEntry {
  names: string[];
  action: Action;
  /** All of them must hold (AND); at most one per argument index (libseccomp's rule). */
  args: ArgCompare[];
  includes: Condition;
  excludes: Condition;
  comment: string;
}

export interface ArchMapEntry {
  /** libseccomp's name ('x86_64'). */
  architecture: string;
  subArchitectures: string[];
}

/** A checked profile. Architecture names are libseccomp's ('x86_64', 'x86', 'x32', 'aarch64', ...). */
export interface Profile {
  /** The file it came from (for messages). */
  source: string;
  defaultAction: Action;
  architectures: string[];
  archMap: ArchMapEntry[];
  syscalls: SyscallEntry[];
  /** flags: SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW (TSYNC is always on). */
  log: boolean;
  specAllow: boolean;
}

/** One libseccomp rule: the syscall (by name, resolved by libseccomp), the action, the AND of comparisons. */
export interface SpecRule {
  name: string;
  action: Action;
  args: ArgCompare[];
}

/** A filter for one container, what the addon's load() takes. */
export interface Spec {
  defaultAction: Action;
  /** libseccomp names of the architectures besides the native one (which is always in). */
  arches: string[];
  rules: SpecRule[];
  /** Log what the filter refuses (SCMP_FLTATR_CTL_LOG). */
  log?: boolean;
  /** Leave speculative store bypass unmitigated (SCMP_FLTATR_CTL_SSB). */
  specAllow?: boolean;
}

/** A Spec as plain JSON (stage 2's configuration travels as JSON): consecutive rules with the same action and comparisons share one entry; BigInts are decimal strings. */
export interface SeccompWire {
  defaultAction: Action;
  arches: string[];
  rules: { names: string[]; action: Action; args: { index: number; op: CompareOp; value: string; valueTwo: string }[] }[];
  log: boolean;
  specAllow: boolean;
}

export interface CompileOptions {
  /** The capabilities the container keeps, by name ('CAP_SYS_ADMIN'). */
  caps: ReadonlySet<string>;
  /** Node's name of the native architecture (process.arch, the default). */
  arch?: string;
  /** The kernel release (os.release(), the default), for minKernel. */
  kernel?: string;
}

/** A profile that cannot be used. The message is one line: `seccomp profile FILE: what, where`. */
export class SeccompError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SeccompError';
  }
}

// ---------------------------------------------------------------------------
// Limits and names

/** Largest profile text (UTF-8 bytes). */
export const MAX_PROFILE_BYTES = 1024 * 1024;
export const MAX_SYSCALL_ENTRIES = 4096;
export const MAX_NAMES_PER_ENTRY = 1024;
const MAX_DEPTH = 32;
const MAX_SMALL_LIST = 64; // architectures, archMap, subArchitectures, caps, arches, flags
const NAME_RE = /^[a-z0-9_]{1,64}$/;
const U64_MAX = (1n << 64n) - 1n;
const MAX_ERRNO = 4095; // the kernel caps SECCOMP_RET_ERRNO's data at MAX_ERRNO

/** Capability names by number, as profiles spell them ('CAP_SYS_ADMIN'). */
const CAPABILITIES: readonly string[] = Object.entries(CAPS)
  .sort((a, b) => a[1] - b[1])
  .map(([name]) => `CAP_${name}`);
const CAP_SET = new Set(CAPABILITIES);

/** libseccomp 2.5's architectures, by the SCMP_ARCH_* suffix in lower case (= libseccomp's name). */
const SECCOMP_ARCHES = [
  'x86', 'x86_64', 'x32', 'arm', 'aarch64', 'mips', 'mips64', 'mips64n32', 'mipsel', 'mipsel64', 'mipsel64n32',
  'ppc', 'ppc64', 'ppc64le', 's390', 's390x', 'parisc', 'parisc64', 'riscv64',
];

/** The names an architecture goes by in includes/excludes.arches: libseccomp's, SCMP_ARCH_*, Go's (docker's). */
const ARCH_ALIASES: Record<string, readonly string[]> = {
  x86_64: ['amd64'],
  x86: ['386', 'i386', 'ia32'],
  aarch64: ['arm64'],
  mipsel: ['mipsle'],
  mipsel64: ['mips64le'],
  mipsel64n32: ['mips64le32'],
};
const ARCH_BY_ALIAS = new Map<string, string>();
for (const a of SECCOMP_ARCHES) {
  ARCH_BY_ALIAS.set(a, a);
  ARCH_BY_ALIAS.set(`SCMP_ARCH_${a.toUpperCase()}`, a);
  for (const alias of ARCH_ALIASES[a] ?? []) ARCH_BY_ALIAS.set(alias, a);
}

/** process.arch -> libseccomp's name of the native architecture. */
function nativeArch(nodeArch: string): string | undefined {
  switch (nodeArch) {
    case 'x64': return 'x86_64';
    case 'ia32': return 'x86';
    case 'arm64': return 'aarch64';
    case 'arm': return 'arm';
    case 'ppc64': return os.endianness() === 'LE' ? 'ppc64le' : 'ppc64';
    case 'ppc': return 'ppc';
    case 's390x': return 's390x';
    case 's390': return 's390';
    case 'riscv64': return 'riscv64';
    case 'mips': return 'mips';
    case 'mipsel': return 'mipsel';
    default: return undefined;
  }
}

const ACTIONS: Record<string, ActionKind> = {
  SCMP_ACT_ALLOW: 'allow',
  SCMP_ACT_ERRNO: 'errno',
  SCMP_ACT_KILL: 'kill_thread',
  SCMP_ACT_KILL_THREAD: 'kill_thread',
  SCMP_ACT_KILL_PROCESS: 'kill_process',
  SCMP_ACT_TRAP: 'trap',
  SCMP_ACT_LOG: 'log',
  SCMP_ACT_TRACE: 'trace',
};

const OPS: Record<string, CompareOp> = {
  SCMP_CMP_NE: 'ne',
  SCMP_CMP_LT: 'lt',
  SCMP_CMP_LE: 'le',
  SCMP_CMP_EQ: 'eq',
  SCMP_CMP_GE: 'ge',
  SCMP_CMP_GT: 'gt',
  SCMP_CMP_MASKED_EQ: 'masked_eq',
};

const FLAGS = ['SECCOMP_FILTER_FLAG_TSYNC', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW'];

const EPERM = 1;

// ---------------------------------------------------------------------------
// JSON with exact integers
//
// JSON.parse turns 18446744073709551615 into 18446744073709552000; argument values are uint64,
// so integer literals are read as BigInt here (other numbers as Number). Also: duplicate keys
// are errors, nesting is bounded, and a syntax error says where (line and column).

type Json = null | boolean | string | bigint | number | Json[] | JsonObject;
interface JsonObject {
  [key: string]: Json;
}

const STRING_RE = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

function parseJson(text: string, fail: (what: string) => never): Json {
  let i = 0;
  const at = (pos: number): string => {
    let line = 1;
    let col = 1;
    for (let k = 0; k < pos && k < text.length; k++) {
      if (text.charCodeAt(k) === 10) {
        line++;
        col = 1;
      } else col++;
    }
    return `line ${line}, column ${col}`;
  };
  const syntax = (what: string, pos = i): never => fail(`not valid JSON: ${what} at ${at(pos)}`);
  const ws = (): void => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else return;
    }
  };
  const unexpected = (): never =>
    i >= text.length ? syntax('unexpected end of text') : syntax(`unexpected ${JSON.stringify(text.slice(i, i + 1))}`);
  const str = (): string => {
    STRING_RE.lastIndex = i;
    const m = STRING_RE.exec(text);
    if (!m) return syntax('bad string');
    i += m[0].length;
    return JSON.parse(m[0]) as string;
  };
  const value = (depth: number): Json => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (depth >= MAX_DEPTH) return syntax(`nested deeper than ${MAX_DEPTH} levels`);
      i++;
      ws();
      if (c === '[') {
        const arr: Json[] = [];
        if (text[i] === ']') {
          i++;
          return arr;
        }
        for (;;) {
          arr.push(value(depth + 1));
          ws();
          if (text[i] === ',') i++;
          else if (text[i] === ']') {
            i++;
            return arr;
          } else return unexpected();
        }
      }
      const obj = Object.create(null) as JsonObject;
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') return unexpected();
        const keyAt = i;
        const key = str();
        if (Object.prototype.hasOwnProperty.call(obj, key)) return syntax(`duplicate key ${JSON.stringify(key)}`, keyAt);
        ws();
        if (text[i] !== ':') return unexpected();
        i++;
        obj[key] = value(depth + 1);
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return obj;
        } else return unexpected();
      }
    }
    if (c === '"') return str();
    if (text.startsWith('true', i)) return (i += 4), true;
    if (text.startsWith('false', i)) return (i += 5), false;
    if (text.startsWith('null', i)) return (i += 4), null;
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER_RE.lastIndex = i;
      const m = NUMBER_RE.exec(text);
      if (!m) return syntax('bad number');
      i += m[0].length;
      return m[1] === undefined && m[2] === undefined ? BigInt(m[0]) : Number(m[0]);
    }
    return unexpected();
  };
  if (text.charCodeAt(0) === 0xfeff) i = 1; // a byte-order mark
  const v = value(0);
  ws();
  if (i < text.length) unexpected();
  return v;
}

// ---------------------------------------------------------------------------
// Checking

/** Control characters as \xNN: every message stays one line. */
function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A JSON value, short, for a message. */
function show(v: Json): string {
  let s: string;
  if (typeof v === 'bigint') s = v.toString();
  else if (typeof v === 'string') s = JSON.stringify(v.length > 64 ? v.slice(0, 64) + '…' : v);
  else if (Array.isArray(v)) s = 'an array';
  else if (v !== null && typeof v === 'object') s = 'an object';
  else s = String(v);
  return oneLine(s);
}

class Checker {
  constructor(readonly source: string) {}

  fail(where: string, what: string): never {
    throw new SeccompError(`seccomp profile ${oneLine(this.source)}: ${where ? `${where}: ` : ''}${what}`);
  }

  object(v: Json, where: string, known: readonly string[]): JsonObject {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(where, `expected an object, not ${show(v)}`);
    for (const k of Object.keys(v)) {
      if (!known.includes(k)) this.fail(where, `unknown key ${show(k)} (known: ${known.join(', ')})`);
    }
    return v;
  }

  /** An optional field: undefined and null are "absent" (Go reads null as the zero value). */
  has(o: JsonObject, key: string): boolean {
    return o[key] !== undefined && o[key] !== null;
  }

  array(v: Json, where: string, max: number): Json[] {
    if (!Array.isArray(v)) this.fail(where, `expected an array, not ${show(v)}`);
    if (v.length > max) this.fail(where, `more than ${max} elements (${v.length})`);
    return v;
  }

  string(v: Json, where: string): string {
    if (typeof v !== 'string') this.fail(where, `expected a string, not ${show(v)}`);
    return v;
  }

  integer(v: Json, where: string, min: bigint, max: bigint): bigint {
    if (typeof v === 'number') this.fail(where, `expected an integer, not ${show(v)}`);
    if (typeof v !== 'bigint') this.fail(where, `expected a number, not ${show(v)}`);
    if (v < min || v > max) this.fail(where, `${show(v)} is out of range (${min}..${max})`);
    return v;
  }

  strings(o: JsonObject, key: string, where: string, max: number, check: (s: string, where: string) => string): string[] {
    if (!this.has(o, key)) return [];
    return this.array(o[key], where, max).map((x, i) => check(this.string(x, `${where}[${i}]`), `${where}[${i}]`));
  }

  arch(s: string, where: string): string {
    const m = /^SCMP_ARCH_([A-Z0-9_]+)$/.exec(s);
    const a = m ? m[1].toLowerCase() : undefined;
    if (!a || !SECCOMP_ARCHES.includes(a)) {
      this.fail(where, `unknown architecture ${show(s)} (expected SCMP_ARCH_ and one of ${SECCOMP_ARCHES.map((x) => x.toUpperCase()).join(', ')})`);
    }
    return a;
  }

  action(name: Json, errnoRet: Json | undefined, where: string, errnoWhere: string): Action {
    const s = this.string(name, where);
    if (s === 'SCMP_ACT_NOTIFY') {
      this.fail(where, 'SCMP_ACT_NOTIFY is not supported (layerfs has no seccomp notification listener)');
    }
    const kind = ACTIONS[s];
    if (!kind) this.fail(where, `unknown action ${show(s)} (expected one of ${Object.keys(ACTIONS).join(', ')}; SCMP_ACT_NOTIFY is not supported)`);
    const given = errnoRet !== undefined && errnoRet !== null;
    if (kind === 'errno') {
      return { kind, errno: given ? Number(this.integer(errnoRet, errnoWhere, 0n, BigInt(MAX_ERRNO))) : EPERM };
    }
    if (kind === 'trace') {
      return { kind, errno: given ? Number(this.integer(errnoRet, errnoWhere, 0n, 65535n)) : EPERM };
    }
    if (given) this.fail(errnoWhere, `only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errno, not ${s}`);
    return { kind };
  }

  condition(v: Json, where: string): Condition {
    const out: Condition = { caps: [], arches: [], minKernel: null };
    if (v === null) return out;
    const o = this.object(v, where, ['caps', 'arches', 'minKernel']);
    out.caps = this.strings(o, 'caps', `${where}.caps`, MAX_SMALL_LIST, (s, w) => {
      if (!CAP_SET.has(s)) this.fail(w, `unknown capability ${show(s)}`);
      return s;
    });
    out.arches = this.strings(o, 'arches', `${where}.arches`, MAX_SMALL_LIST, (s, w) => {
      if (!ARCH_BY_ALIAS.has(s)) {
        this.fail(w, `unknown architecture ${show(s)} (expected a name like amd64, arm64, x86_64 or SCMP_ARCH_X86_64)`);
      }
      return s;
    });
    if (this.has(o, 'minKernel')) {
      const s = this.string(o.minKernel, `${where}.minKernel`);
      const m = /^([0-9]{1,4})\.([0-9]{1,4})$/.exec(s);
      if (!m) this.fail(`${where}.minKernel`, `expected a kernel version MAJOR.MINOR like "4.8", not ${show(s)}`);
      out.minKernel = { major: Number(m[1]), minor: Number(m[2]) };
    }
    return out;
  }

  arg(v: Json, where: string): ArgCompare {
    const o = this.object(v, where, ['index', 'value', 'valueTwo', 'op']);
    if (!this.has(o, 'index')) this.fail(where, 'no "index"');
    if (!this.has(o, 'op')) this.fail(where, 'no "op"');
    const index = Number(this.integer(o.index, `${where}.index`, 0n, 5n));
    const opName = this.string(o.op, `${where}.op`);
    const op = OPS[opName];
    if (!op) this.fail(`${where}.op`, `unknown comparison ${show(opName)} (expected one of ${Object.keys(OPS).join(', ')})`);
    const value = this.has(o, 'value') ? this.integer(o.value, `${where}.value`, 0n, U64_MAX) : 0n;
    const valueTwo = this.has(o, 'valueTwo') ? this.integer(o.valueTwo, `${where}.valueTwo`, 0n, U64_MAX) : 0n;
    if (valueTwo !== 0n && op !== 'masked_eq') {
      this.fail(`${where}.valueTwo`, `only SCMP_CMP_MASKED_EQ uses valueTwo (op is ${opName})`);
    }
    return { index, op, value, valueTwo };
  }

  entry(v: Json, where: string): SyscallEntry {
    const o = this.object(v, where, ['name', 'names', 'action', 'errnoRet', 'args', 'includes', 'excludes', 'comment']);
    const nameCheck = (s: string, w: string): string => {
      if (!NAME_RE.test(s)) this.fail(w, `${show(s)} is not a syscall name (a-z, 0-9 and _, at most 64)`);
      return s;
    };
    let names: string[];
    if (this.has(o, 'name') && this.has(o, 'names')) this.fail(where, 'both "name" and "names": use one');
    if (this.has(o, 'name')) names = [nameCheck(this.string(o.name, `${where}.name`), `${where}.name`)];
    else if (this.has(o, 'names')) {
      names = this.strings(o, 'names', `${where}.names`, MAX_NAMES_PER_ENTRY, nameCheck);
      if (names.length === 0) this.fail(`${where}.names`, 'is empty');
    } else this.fail(where, 'no "names"');
    if (!this.has(o, 'action')) this.fail(where, 'no "action"');
    const action = this.action(o.action, o.errnoRet, `${where}.action`, `${where}.errnoRet`);
    const args = this.has(o, 'args') ? this.array(o.args, `${where}.args`, 6).map((a, i) => this.arg(a, `${where}.args[${i}]`)) : [];
    const seen = new Set<number>();
    args.forEach((a, i) => {
      if (seen.has(a.index)) {
        this.fail(`${where}.args[${i}]`, `a second comparison of argument ${a.index}: libseccomp compares an argument once per rule (write another syscalls entry)`);
      }
      seen.add(a.index);
    });
    const comment = this.has(o, 'comment') ? this.string(o.comment, `${where}.comment`) : '';
    return {
      names,
      action,
      args,
      includes: this.condition(o.includes ?? null, `${where}.includes`),
      excludes: this.condition(o.excludes ?? null, `${where}.excludes`),
      comment,
    };
  }
}

/**
 * Read a profile in docker's JSON format (also podman's): defaultAction, defaultErrnoRet,
 * architectures or archMap, syscalls (names or name, action, errnoRet, args, includes,
 * excludes, comment), flags. Everything is checked; unknown keys are errors (a misspelt key
 * would otherwise be a rule silently missing). `source` names the file in messages.
 * @throws SeccompError
 */
export function parseProfile(text: string, source: string): Profile {
  const c = new Checker(source);
  if (Buffer.byteLength(text, 'utf8') > MAX_PROFILE_BYTES) c.fail('', `larger than ${MAX_PROFILE_BYTES} bytes`);
  const root = c.object(
    parseJson(text, (what) => c.fail('', what)),
    '',
    ['defaultAction', 'defaultErrnoRet', 'architectures', 'archMap', 'syscalls', 'flags', 'listenerPath', 'listenerMetadata', 'comment'],
  );
  if (!c.has(root, 'defaultAction')) c.fail('', 'no "defaultAction"');
  const defaultAction = c.action(root.defaultAction, root.defaultErrnoRet, 'defaultAction', 'defaultErrnoRet');
  if (c.has(root, 'listenerPath') && c.string(root.listenerPath, 'listenerPath') !== '') {
    c.fail('listenerPath', 'seccomp notification listeners (SCMP_ACT_NOTIFY) are not supported');
  }
  if (c.has(root, 'listenerMetadata')) c.string(root.listenerMetadata, 'listenerMetadata');
  if (c.has(root, 'comment')) c.string(root.comment, 'comment');
  const architectures = c.strings(root, 'architectures', 'architectures', MAX_SMALL_LIST, (s, w) => c.arch(s, w));
  const archMap: ArchMapEntry[] = c.has(root, 'archMap')
    ? c.array(root.archMap, 'archMap', MAX_SMALL_LIST).map((v, i) => {
        const w = `archMap[${i}]`;
        const o = c.object(v, w, ['architecture', 'subArchitectures']);
        if (!c.has(o, 'architecture')) c.fail(w, 'no "architecture"');
        return {
          architecture: c.arch(c.string(o.architecture, `${w}.architecture`), `${w}.architecture`),
          subArchitectures: c.strings(o, 'subArchitectures', `${w}.subArchitectures`, MAX_SMALL_LIST, (s, ww) => c.arch(s, ww)),
        };
      })
    : [];
  if (architectures.length > 0 && archMap.length > 0) c.fail('', 'both "architectures" and "archMap": use one');
  const flags = c.strings(root, 'flags', 'flags', MAX_SMALL_LIST, (s, w) => {
    if (!FLAGS.includes(s)) c.fail(w, `unsupported flag ${show(s)} (supported: ${FLAGS.join(', ')})`);
    return s;
  });
  const syscalls = c.has(root, 'syscalls')
    ? c.array(root.syscalls, 'syscalls', MAX_SYSCALL_ENTRIES).map((v, i) => c.entry(v, `syscalls[${i}]`))
    : [];
  return {
    source,
    defaultAction,
    architectures,
    archMap,
    syscalls,
    log: flags.includes('SECCOMP_FILTER_FLAG_LOG'),
    specAllow: flags.includes('SECCOMP_FILTER_FLAG_SPEC_ALLOW'),
  };
}

// ---------------------------------------------------------------------------
// Compiling for one container

function kernelVersion(release: string): KernelVersion | null {
  const m = /^([0-9]+)\.([0-9]+)/.exec(release);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null;
}

function atLeast(k: KernelVersion, min: KernelVersion): boolean {
  return k.major > min.major || (k.major === min.major && k.minor >= min.minor);
}

/**
 * The filter a container gets from `profile`, the way docker builds it: an entry applies when
 * all of its includes.caps are granted and none of its excludes.caps; when the native
 * architecture is among includes.arches (if any) and not among excludes.arches; when the kernel
 * is at least includes.minKernel and older than excludes.minKernel. Architectures: the
 * profile's `architectures`, or the archMap entry of the native one with its
 * sub-architectures.
 * @throws SeccompError (a machine libseccomp has no architecture for, an unreadable kernel version)
 */
export function compileProfile(profile: Profile, opts: CompileOptions): Spec {
  const fail = (what: string): never => {
    throw new SeccompError(`seccomp profile ${oneLine(profile.source)}: ${what}`);
  };
  const nodeArch = opts.arch ?? process.arch;
  const native = nativeArch(nodeArch);
  if (!native) return fail(`no seccomp architecture for this machine (${nodeArch})`);
  const release = opts.kernel ?? os.release();
  let kernel: KernelVersion | null | undefined;
  const kernelAtLeast = (min: KernelVersion): boolean => {
    if (kernel === undefined) kernel = kernelVersion(release);
    if (!kernel) return fail(`cannot tell the kernel version from ${JSON.stringify(release)} (for minKernel)`);
    return atLeast(kernel, min);
  };
  const isNative = (names: string[]): boolean => names.some((a) => ARCH_BY_ALIAS.get(a) === native);

  const arches: string[] = [...profile.architectures];
  for (const m of profile.archMap) {
    if (m.architecture === native) arches.push(m.architecture, ...m.subArchitectures);
  }
  const rules: SpecRule[] = [];
  for (const e of profile.syscalls) {
    const { includes: inc, excludes: exc } = e;
    if (inc.caps.some((c) => !opts.caps.has(c))) continue;
    if (exc.caps.some((c) => opts.caps.has(c))) continue;
    if (inc.arches.length > 0 && !isNative(inc.arches)) continue;
    if (exc.arches.length > 0 && isNative(exc.arches)) continue;
    if (inc.minKernel && !kernelAtLeast(inc.minKernel)) continue;
    if (exc.minKernel && kernelAtLeast(exc.minKernel)) continue;
    for (const name of e.names) rules.push({ name, action: { ...e.action }, args: e.args.map((a) => ({ ...a })) });
  }
  return {
    defaultAction: { ...profile.defaultAction },
    arches: [...new Set(arches)],
    rules,
    log: profile.log,
    specAllow: profile.specAllow,
  };
}

// ---------------------------------------------------------------------------
// Over the wire (the launcher's JSON configuration of stage 2)

const sameAction = (a: Action, b: Action): boolean => a.kind === b.kind && a.errno === b.errno;
const sameArgs = (a: ArgCompare[], b: ArgCompare[]): boolean =>
  a.length === b.length &&
  a.every((x, i) => x.index === b[i].index && x.op === b[i].op && x.value === b[i].value && x.valueTwo === b[i].valueTwo);

/** A Spec as plain JSON (see SeccompWire). */
export function specToWire(spec: Spec): SeccompWire {
  const rules: SeccompWire['rules'] = [];
  let prev: SpecRule | undefined;
  for (const r of spec.rules) {
    if (prev && sameAction(prev.action, r.action) && sameArgs(prev.args, r.args)) {
      rules[rules.length - 1].names.push(r.name);
    } else {
      rules.push({
        names: [r.name],
        action: { ...r.action },
        args: r.args.map((a) => ({ index: a.index, op: a.op, value: a.value.toString(), valueTwo: a.valueTwo.toString() })),
      });
    }
    prev = r;
  }
  return { defaultAction: { ...spec.defaultAction }, arches: [...spec.arches], rules, log: !!spec.log, specAllow: !!spec.specAllow };
}

const ACTION_KINDS = new Set<string>(Object.values(ACTIONS));
const OP_NAMES = new Set<string>(Object.values(OPS));

/** The Spec back from specToWire()'s JSON. @throws Error on anything else */
export function specFromWire(w: unknown): Spec {
  const bad = (what: string): never => {
    throw new Error(`seccomp: malformed filter from the launcher: ${what}`);
  };
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const action = (v: unknown, where: string): Action => {
    if (!isObj(v) || typeof v.kind !== 'string' || !ACTION_KINDS.has(v.kind)) return bad(`${where}: action`);
    if (v.errno !== undefined && (typeof v.errno !== 'number' || !Number.isInteger(v.errno) || v.errno < 0 || v.errno > 65535)) {
      return bad(`${where}: errno`);
    }
    return v.errno === undefined ? { kind: v.kind as ActionKind } : { kind: v.kind as ActionKind, errno: v.errno };
  };
  const u64 = (v: unknown, where: string): bigint => {
    if (typeof v !== 'string' || !/^[0-9]{1,20}$/.test(v)) return bad(where);
    const b = BigInt(v);
    return b > U64_MAX ? bad(where) : b;
  };
  if (!isObj(w)) return bad('not an object');
  if (!Array.isArray(w.arches) || !w.arches.every((a) => typeof a === 'string')) return bad('arches');
  if (!Array.isArray(w.rules)) return bad('rules');
  const rules: SpecRule[] = [];
  w.rules.forEach((r: unknown, i: number) => {
    const where = `rules[${i}]`;
    if (!isObj(r) || !Array.isArray(r.names) || !Array.isArray(r.args)) return bad(where);
    const act = action(r.action, where);
    const args = r.args.map((a: unknown, j: number): ArgCompare => {
      const aw = `${where}.args[${j}]`;
      if (!isObj(a) || typeof a.index !== 'number' || !Number.isInteger(a.index) || a.index < 0 || a.index > 5) return bad(aw);
      if (typeof a.op !== 'string' || !OP_NAMES.has(a.op)) return bad(`${aw}.op`);
      return { index: a.index, op: a.op as CompareOp, value: u64(a.value, `${aw}.value`), valueTwo: u64(a.valueTwo, `${aw}.valueTwo`) };
    });
    for (const n of r.names) {
      if (typeof n !== 'string' || !NAME_RE.test(n)) return bad(`${where}.names`);
      rules.push({ name: n, action: { ...act }, args: args.map((a) => ({ ...a })) });
    }
  });
  return {
    defaultAction: action(w.defaultAction, 'defaultAction'),
    arches: [...(w.arches as string[])],
    rules,
    log: w.log === true,
    specAllow: w.specAllow === true,
  };
}

// ---------------------------------------------------------------------------
// The addon

interface Addon {
  load(spec: Spec): void;
  resolve(name: string): number;
}

export const SECCOMP_ADDON_PATH = path.join(ROOT, 'build', 'Release', 'layerfs_seccomp.node');

let addon: Addon | null = null;
let addonError: Error | null = null;
// Now, while the host's files are reachable (stage 2 pivots into the container's root later).
try {
  addon = createRequire(import.meta.url)(SECCOMP_ADDON_PATH) as Addon;
} catch (e) {
  addonError = e as Error;
}

function theAddon(): Addon {
  if (addon) return addon;
  throw new Error(`seccomp: the addon ${SECCOMP_ADDON_PATH} cannot be loaded (built by \`npm run install\`): ${addonError?.message.split('\n')[0]}`);
}

/**
 * Install the filter into this process, every thread of it (TSYNC); children and execve()d
 * programs inherit it, and it cannot be removed. Sets no_new_privs (libseccomp's default).
 * @throws Error naming the step that failed (a rule: its position, syscall and action)
 */
export function loadSeccomp(spec: Spec): void {
  theAddon().load(spec);
}

/** The native architecture's number of a syscall, or -1 when it has none (or libseccomp does not know it). */
export function resolveSyscall(name: string): number {
  return theAddon().resolve(name);
}

// ---------------------------------------------------------------------------
// The default profile

export const DEFAULT_PROFILE_PATH = path.join(ROOT, 'src', 'launcher', 'seccomp', 'default.json');

let defaultText: string | null = null;
let defaultReadError: Error | null = null;
try {
  defaultText = fs.readFileSync(DEFAULT_PROFILE_PATH, 'utf8');
} catch (e) {
  defaultReadError = e as Error;
}
let defaultParsed: Profile | undefined;

/** The default profile (src/launcher/seccomp/default.json, read when this module was imported). @throws SeccompError */
export function defaultProfile(): Profile {
  if (defaultText === null) {
    throw new SeccompError(`seccomp profile ${DEFAULT_PROFILE_PATH}: cannot read it: ${oneLine(defaultReadError?.message ?? '')}`);
  }
  defaultParsed ??= parseProfile(defaultText, DEFAULT_PROFILE_PATH);
  return structuredClone(defaultParsed); // callers may change their copy
}
