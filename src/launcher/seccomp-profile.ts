/**
 * Seccomp for `layerfs run`, reading a profile: docker's (and podman's) JSON format, parsed
 * with exact integers (argument values are uint64) and every field checked, into a Profile
 * (./seccomp-spec.ts). parseProfile is re-exported by ./seccomp.ts.
 */
import { CAPS } from './security.ts';
import {
  ACTIONS,
  NAME_RE,
  oneLine,
  OPS,
  SeccompError,
  U64_MAX,
  type Action,
  type ArchMapEntry,
  type ArgCompare,
  type Condition,
  type Profile,
  type SyscallEntry,
} from './seccomp-spec.ts';

// ---------------------------------------------------------------------------
// Limits and names

/** Largest profile text (UTF-8 bytes). */
export const MAX_PROFILE_BYTES = 1024 * 1024;
export const MAX_SYSCALL_ENTRIES = 4096;
export const MAX_NAMES_PER_ENTRY = 1024;
const MAX_DEPTH = 32;
const MAX_SMALL_LIST = 64; // architectures, archMap, subArchitectures, caps, arches, flags
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
export const ARCH_BY_ALIAS = new Map<string, string>();
for (const a of SECCOMP_ARCHES) {
  ARCH_BY_ALIAS.set(a, a);
  ARCH_BY_ALIAS.set(`SCMP_ARCH_${a.toUpperCase()}`, a);
  for (const alias of ARCH_ALIASES[a] ?? []) ARCH_BY_ALIAS.set(alias, a);
}

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
