/**
 * Seccomp for `layerfs run`, its data: the types of a checked profile (Profile) and of the
 * filter one container gets (Spec), SeccompError, docker's names of actions and comparisons,
 * and a Spec over the wire (specToWire / specFromWire: the launcher's JSON configuration of
 * stage 2). Stage 2 imports this file and ./seccomp-addon.ts, nothing else of seccomp. The
 * surface of all of it is ./seccomp.ts.
 */

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
// Names and limits the profile reader and the wire share

export const NAME_RE = /^[a-z0-9_]{1,64}$/;
export const U64_MAX = (1n << 64n) - 1n;

export const ACTIONS: Record<string, ActionKind> = {
  SCMP_ACT_ALLOW: 'allow',
  SCMP_ACT_ERRNO: 'errno',
  SCMP_ACT_KILL: 'kill_thread',
  SCMP_ACT_KILL_THREAD: 'kill_thread',
  SCMP_ACT_KILL_PROCESS: 'kill_process',
  SCMP_ACT_TRAP: 'trap',
  SCMP_ACT_LOG: 'log',
  SCMP_ACT_TRACE: 'trace',
};

export const OPS: Record<string, CompareOp> = {
  SCMP_CMP_NE: 'ne',
  SCMP_CMP_LT: 'lt',
  SCMP_CMP_LE: 'le',
  SCMP_CMP_EQ: 'eq',
  SCMP_CMP_GE: 'ge',
  SCMP_CMP_GT: 'gt',
  SCMP_CMP_MASKED_EQ: 'masked_eq',
};

/** Control characters as \xNN: every message stays one line. */
export function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
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
