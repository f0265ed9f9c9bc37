// Seccomp profiles (src/launcher/seccomp.ts) and the filters libseccomp builds from them
// (native/layerfs_seccomp.cc).
//
// Parsing and compiling run in the test process. Loading a filter never does (it cannot be
// undone): each load happens in a child Node process (under tsx, as stage 2 can run) that loads
// the filter and then execve()s a program, which inherits it. The programs: ordinary tools, Node
// itself, and a static C probe built here that makes one syscall per line with harmless arguments
// and prints the errno it got. The probe also runs without a filter, to show that what the filter
// refuses would otherwise not fail with EPERM (the tests run as root).

import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { TSX_ARGS } from '../../src/root.ts';
import {
  compileProfile,
  defaultProfile,
  DEFAULT_PROFILE_PATH,
  loadSeccomp,
  MAX_NAMES_PER_ENTRY,
  MAX_PROFILE_BYTES,
  MAX_SYSCALL_ENTRIES,
  parseProfile,
  resolveSyscall,
  SeccompError,
  specFromWire,
  specToWire,
  type Profile,
  type Spec,
} from '../../src/launcher/seccomp.ts';
import { makeTmp, removeTmp, repoRoot } from '../helpers/mounts.ts';

/** docker's (and layerfs run's) default capability set. */
const DEFAULT_CAPS = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT'].map(
  (c) => `CAP_${c}`,
);

const FILE = '/etc/layerfs/custom.json';

function parse(obj: unknown): Profile {
  return parseProfile(typeof obj === 'string' ? obj : JSON.stringify(obj), FILE);
}

/** The one-line SeccompError that parsing `text` gives. */
function parseError(t: ExecutionContext, text: string, source = FILE): string {
  const e = t.throws(() => parseProfile(text, source), { instanceOf: SeccompError });
  t.false(e!.message.includes('\n'), e!.message);
  t.true(e!.message.startsWith(`seccomp profile ${source.replace(/\n/g, '\\x0a')}: `), e!.message);
  return e!.message;
}

const minimal = (syscalls: unknown[], extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO', syscalls, ...extra });

// ---------------------------------------------------------------------------
// Parsing

test('parse: a docker-style profile, every field', (t) => {
  const p = parse(`{
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "listenerPath": "",
    "syscalls": [
      {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "io", "includes": {}, "excludes": {}},
      {"name": "personality", "action": "SCMP_ACT_ALLOW",
       "args": [{"index": 0, "value": 18446744073709551615, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
      {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
       "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
       "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
      {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
      {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
      {"names": ["uname"], "action": "SCMP_ACT_KILL"},
      {"names": ["kill"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
      {"names": ["tkill"], "action": "SCMP_ACT_LOG", "args": null, "errnoRet": null}
    ]
  }`);
  t.deepEqual(p.defaultAction, { kind: 'errno', errno: 38 });
  t.deepEqual(p.architectures, []);
  t.deepEqual(p.archMap, [
    { architecture: 'x86_64', subArchitectures: ['x86', 'x32'] },
    { architecture: 'aarch64', subArchitectures: ['arm'] },
  ]);
  t.true(p.log);
  t.false(p.specAllow);
  t.is(p.syscalls.length, 8);
  t.deepEqual(p.syscalls[0].names, ['read', 'write']);
  t.is(p.syscalls[0].comment, 'io');
  t.deepEqual(p.syscalls[1].names, ['personality']);
  // exact: JSON.parse would have made this 18446744073709552000
  t.deepEqual(p.syscalls[1].args, [{ index: 0, op: 'eq', value: 18446744073709551615n, valueTwo: 0n }]);
  t.deepEqual(p.syscalls[2].args, [{ index: 0, op: 'masked_eq', value: 0x7e020000n, valueTwo: 0n }]);
  t.deepEqual(p.syscalls[2].excludes, { caps: ['CAP_SYS_ADMIN'], arches: ['s390', 's390x'], minKernel: null });
  t.deepEqual(p.syscalls[3].includes.minKernel, { major: 4, minor: 8 });
  t.deepEqual(p.syscalls[4].action, { kind: 'errno', errno: 1 }, 'SCMP_ACT_ERRNO without errnoRet is EPERM');
  t.deepEqual(p.syscalls[5].action, { kind: 'kill_thread' });
  t.deepEqual(p.syscalls[6].action, { kind: 'trace', errno: 7 });
  t.deepEqual(p.syscalls[7].action, { kind: 'log' });
  t.deepEqual(p.syscalls[7].args, []);

  const q = parse({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] });
  t.deepEqual(q.defaultAction, { kind: 'allow' });
  t.deepEqual(q.architectures, ['x86_64', 'x86']);
  t.deepEqual(q.syscalls, []);
  for (const a of ['SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP']) {
    t.truthy(parse({ defaultAction: a }).defaultAction.kind);
  }
});

test('parse: the default profile', (t) => {
  const p = defaultProfile();
  t.is(p.source, DEFAULT_PROFILE_PATH);
  t.deepEqual(p.defaultAction, { kind: 'errno', errno: 1 });
  t.true(p.syscalls.length > 20);
  // every name is one libseccomp or a newer kernel knows; spot checks on both sides
  const allowedToAll = new Set(p.syscalls.filter((e) => e.action.kind === 'allow' && !e.args.length && !e.includes.caps.length && !e.includes.minKernel).flatMap((e) => e.names));
  for (const n of ['read', 'openat', 'execve', 'futex', 'rt_sigreturn', 'mmap2', 'socketcall', 'statx', 'sethostname']) t.true(allowedToAll.has(n), n);
  for (const n of ['mount', 'keyctl', 'bpf', 'userfaultfd', 'clone', 'clone3', 'unshare', 'socket', 'personality', 'io_uring_setup', 'open_by_handle_at']) {
    t.false(allowedToAll.has(n), n);
  }
  // a copy each time: a caller's change does not leak into the next
  p.syscalls.length = 0;
  t.true(defaultProfile().syscalls.length > 20);
});

test('parse: each kind of mistake is one line naming the file and the place', (t) => {
  const cases: [string, RegExp][] = [
    ['{"defaultAction": "SCMP_ACT_ERRNO",', /: not valid JSON: unexpected end of text at line 1, column 36$/],
    ['{"defaultAction": "SCMP_ACT_ERRNO"}\n  x', /: not valid JSON: unexpected "x" at line 2, column 3$/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "defaultAction": "SCMP_ACT_ALLOW"}', /: not valid JSON: duplicate key "defaultAction" at line 1, column 37$/],
    ['[' .repeat(100) + ']'.repeat(100), /: not valid JSON: nested deeper than 32 levels/],
    ['[]', /^seccomp profile \S+: expected an object, not an array$/],
    ['{}', /: no "defaultAction"$/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "syscals": []}', /: unknown key "syscals" \(known: /],
    ['{"defaultAction": "SCMP_ACT_EPERM"}', /: defaultAction: unknown action "SCMP_ACT_EPERM" \(expected one of SCMP_ACT_ALLOW, /],
    ['{"defaultAction": "SCMP_ACT_NOTIFY"}', /: defaultAction: SCMP_ACT_NOTIFY is not supported/],
    ['{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}', /: defaultErrnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errno, not SCMP_ACT_ALLOW$/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}', /: defaultErrnoRet: 5000 is out of range \(0\.\.4095\)$/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1.5}', /: defaultErrnoRet: expected an integer, not 1\.5$/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "1"}', /: defaultErrnoRet: expected a number, not "1"$/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_VAX"]}', /: architectures\[0\]: unknown architecture "SCMP_ARCH_VAX"/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x86_64"]}', /: architectures\[0\]: unknown architecture "x86_64"/],
    [
      '{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}',
      /: both "architectures" and "archMap": use one$/,
    ],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"subArchitectures": []}]}', /: archMap\[0\]: no "architecture"$/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}', /: flags\[0\]: unsupported flag "SECCOMP_FILTER_FLAG_NEW_LISTENER"/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/x.sock"}', /: listenerPath: seccomp notification listeners \(SCMP_ACT_NOTIFY\) are not supported$/],
    ['{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {}}', /: syscalls: expected an array, not an object$/],
    [minimal([{ action: 'SCMP_ACT_ALLOW' }]), /: syscalls\[0\]: no "names"$/],
    [minimal([{ names: [], action: 'SCMP_ACT_ALLOW' }]), /: syscalls\[0\]\.names: is empty$/],
    [minimal([{ name: 'read', names: ['write'], action: 'SCMP_ACT_ALLOW' }]), /: syscalls\[0\]: both "name" and "names": use one$/],
    [minimal([{ names: ['read'] }]), /: syscalls\[0\]: no "action"$/],
    [minimal([{ names: ['read', 'Write'], action: 'SCMP_ACT_ALLOW' }]), /: syscalls\[0\]\.names\[1\]: "Write" is not a syscall name/],
    [minimal([{ names: ['x'.repeat(65)], action: 'SCMP_ACT_ALLOW' }]), /: syscalls\[0\]\.names\[0\]: "x{64}…" is not a syscall name/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW' }, { names: ['mount'], action: 'SCMP_ACT_NOTIFY' }]), /: syscalls\[1\]\.action: SCMP_ACT_NOTIFY is not supported/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_KILL', errnoRet: 1 }]), /: syscalls\[0\]\.errnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errno, not SCMP_ACT_KILL$/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', what: 1 }]), /: syscalls\[0\]: unknown key "what"/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 6, value: 0, op: 'SCMP_CMP_EQ' }] }]), /: syscalls\[0\]\.args\[0\]\.index: 6 is out of range \(0\.\.5\)$/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ value: 0, op: 'SCMP_CMP_EQ' }] }]), /: syscalls\[0\]\.args\[0\]: no "index"$/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_BETWEEN' }] }]), /: syscalls\[0\]\.args\[0\]\.op: unknown comparison "SCMP_CMP_BETWEEN"/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: -1, op: 'SCMP_CMP_EQ' }] }]), /: syscalls\[0\]\.args\[0\]\.value: -1 is out of range \(0\.\.18446744073709551615\)$/],
    [
      '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551616,"op":"SCMP_CMP_EQ"}]}]}',
      /: syscalls\[0\]\.args\[0\]\.value: 18446744073709551616 is out of range/,
    ],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0.5, op: 'SCMP_CMP_EQ' }] }]), /: syscalls\[0\]\.args\[0\]\.value: expected an integer, not 0\.5$/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, valueTwo: 1, op: 'SCMP_CMP_EQ' }] }]), /: syscalls\[0\]\.args\[0\]\.valueTwo: only SCMP_CMP_MASKED_EQ uses valueTwo/],
    [
      minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'SCMP_CMP_GT' }, { index: 0, value: 9, op: 'SCMP_CMP_LT' }] }]),
      /: syscalls\[0\]\.args\[1\]: a second comparison of argument 0/,
    ],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMN'] } }]), /: syscalls\[0\]\.includes\.caps\[0\]: unknown capability "CAP_SYS_ADMN"$/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', excludes: { arches: ['vax'] } }]), /: syscalls\[0\]\.excludes\.arches\[0\]: unknown architecture "vax"/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4' } }]), /: syscalls\[0\]\.includes\.minKernel: expected a kernel version MAJOR\.MINOR like "4\.8", not "4"$/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', includes: { kernel: '4.8' } }]), /: syscalls\[0\]\.includes: unknown key "kernel"/],
    [minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', comment: 5 }]), /: syscalls\[0\]\.comment: expected a string, not 5$/],
    // control characters in what is quoted stay escaped: still one line
    [minimal([{ names: ['re\nad'], action: 'SCMP_ACT_ALLOW' }]), /: syscalls\[0\]\.names\[0\]: "re\\nad" is not a syscall name/],
  ];
  for (const [text, re] of cases) {
    const msg = parseError(t, text);
    t.regex(msg, re, `for ${text.slice(0, 120)}`);
  }
  // the file's name is in the message (one line even for a name with a newline)
  t.regex(parseError(t, '{}', '/tmp/we\nird.json'), /^seccomp profile \/tmp\/we\\x0aird\.json: no "defaultAction"$/);
});

test('parse: bounds', (t) => {
  // the text
  const big = minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', comment: 'x'.repeat(MAX_PROFILE_BYTES) }]);
  t.regex(parseError(t, big), /: larger than 1048576 bytes$/);
  // entries
  const entry = { names: ['read'], action: 'SCMP_ACT_ALLOW' };
  t.is(parse(minimal(Array(MAX_SYSCALL_ENTRIES).fill(entry))).syscalls.length, MAX_SYSCALL_ENTRIES);
  t.regex(parseError(t, minimal(Array(MAX_SYSCALL_ENTRIES + 1).fill(entry))), /: syscalls: more than 4096 elements \(4097\)$/);
  // names per entry
  const names = (n: number): string[] => Array.from({ length: n }, (_, i) => `n${i}`);
  t.is(parse(minimal([{ names: names(MAX_NAMES_PER_ENTRY), action: 'SCMP_ACT_ALLOW' }])).syscalls[0].names.length, MAX_NAMES_PER_ENTRY);
  t.regex(parseError(t, minimal([{ names: names(MAX_NAMES_PER_ENTRY + 1), action: 'SCMP_ACT_ALLOW' }])), /: syscalls\[0\]\.names: more than 1024 elements \(1025\)$/);
  // argument comparisons
  const arg = (i: number): unknown => ({ index: i, value: 0, op: 'SCMP_CMP_EQ' });
  t.regex(parseError(t, minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [0, 1, 2, 3, 4, 5, 0].map(arg) }])), /: syscalls\[0\]\.args: more than 6 elements \(7\)$/);
  // the largest uint64 and the mask forms
  t.is(parse(minimal([{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 5, value: 0, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] }])).syscalls[0].args[0].index, 5);
});

// ---------------------------------------------------------------------------
// Compiling

const CONDITIONAL = {
  defaultAction: 'SCMP_ACT_ERRNO',
  archMap: [
    { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
    { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
  ],
  syscalls: [
    { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
    { names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
    { names: ['both'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN', 'CAP_SYS_BOOT'] } },
    { names: ['unless_any'], action: 'SCMP_ACT_ALLOW', excludes: { caps: ['CAP_SYS_ADMIN', 'CAP_BPF'] } },
    { names: ['on_amd64'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32'] } },
    { names: ['on_arm64'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm64'] } },
    { names: ['not_x86_64'], action: 'SCMP_ACT_ALLOW', excludes: { arches: ['SCMP_ARCH_X86_64'] } },
    { names: ['new_kernel'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '5.10' } },
    { names: ['old_kernel'], action: 'SCMP_ACT_ALLOW', excludes: { minKernel: '5.10' } },
    {
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    },
  ],
};

const ruleNames = (s: Spec): string[] => s.rules.map((r) => r.name);

test('compile: includes and excludes, by capability, architecture and kernel', (t) => {
  const p = parse(CONDITIONAL);
  const none = compileProfile(p, { caps: new Set(), arch: 'x64', kernel: '6.1.0-13-amd64' });
  t.deepEqual(none.arches, ['x86_64', 'x86', 'x32']);
  t.deepEqual(ruleNames(none), ['read', 'write', 'unless_any', 'on_amd64', 'new_kernel', 'clone']);
  t.deepEqual(none.rules[5], { name: 'clone', action: { kind: 'allow' }, args: [{ index: 0, op: 'masked_eq', value: 0x7e020000n, valueTwo: 0n }] });
  t.deepEqual(none.defaultAction, { kind: 'errno', errno: 1 });

  // includes.caps: all of them; excludes.caps: any of them
  const admin = compileProfile(p, { caps: new Set(['CAP_SYS_ADMIN']), arch: 'x64', kernel: '6.1.0' });
  t.deepEqual(ruleNames(admin), ['read', 'write', 'mount', 'on_amd64', 'new_kernel']);
  const both = compileProfile(p, { caps: new Set(['CAP_SYS_ADMIN', 'CAP_SYS_BOOT']), arch: 'x64', kernel: '6.1.0' });
  t.deepEqual(ruleNames(both), ['read', 'write', 'mount', 'both', 'on_amd64', 'new_kernel']);
  const bpf = compileProfile(p, { caps: new Set(['CAP_BPF']), arch: 'x64', kernel: '6.1.0' });
  t.false(ruleNames(bpf).includes('unless_any'));

  // the native architecture decides the arches and the arch conditions
  const arm = compileProfile(p, { caps: new Set(), arch: 'arm64', kernel: '4.19.0' });
  t.deepEqual(arm.arches, ['aarch64', 'arm']);
  t.deepEqual(ruleNames(arm), ['read', 'write', 'unless_any', 'on_arm64', 'not_x86_64', 'old_kernel', 'clone']);
  const riscv = compileProfile(p, { caps: new Set(), arch: 'riscv64', kernel: '5.10.0' });
  t.deepEqual(riscv.arches, [], 'no archMap entry: the native architecture alone');
  t.deepEqual(ruleNames(riscv), ['read', 'write', 'unless_any', 'not_x86_64', 'new_kernel', 'clone']);

  // architectures (instead of an archMap) are taken as they are
  const listed = compileProfile(parse({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] }), { caps: new Set(), arch: 'arm64' });
  t.deepEqual(listed.arches, ['x86_64', 'x86']);

  const e1 = t.throws(() => compileProfile(p, { caps: new Set(), arch: 'vax' }), { instanceOf: SeccompError });
  t.is(e1!.message, `seccomp profile ${FILE}: no seccomp architecture for this machine (vax)`);
  const e2 = t.throws(() => compileProfile(p, { caps: new Set(), arch: 'x64', kernel: 'weird' }), { instanceOf: SeccompError });
  t.regex(e2!.message, /^seccomp profile \S+: cannot tell the kernel version from "weird"/);
});

test('compile: the default profile, with and without CAP_SYS_ADMIN', (t) => {
  const plain = compileProfile(defaultProfile(), { caps: new Set(DEFAULT_CAPS), arch: 'x64', kernel: '6.1.0' });
  const rulesOf = (s: Spec, name: string) => s.rules.filter((r) => r.name === name);
  t.deepEqual(plain.arches, ['x86_64', 'x86', 'x32']);
  t.deepEqual(rulesOf(plain, 'clone'), [{ name: 'clone', action: { kind: 'allow' }, args: [{ index: 0, op: 'masked_eq', value: 0x7e020000n, valueTwo: 0n }] }]);
  t.deepEqual(rulesOf(plain, 'unshare'), [{ name: 'unshare', action: { kind: 'allow' }, args: [{ index: 0, op: 'masked_eq', value: 0x7e020080n, valueTwo: 0n }] }]);
  t.deepEqual(rulesOf(plain, 'clone3'), [{ name: 'clone3', action: { kind: 'errno', errno: 38 }, args: [] }]);
  t.deepEqual(rulesOf(plain, 'mount'), []);
  t.deepEqual(rulesOf(plain, 'bpf'), []);
  t.is(rulesOf(plain, 'personality').length, 5);
  t.true(rulesOf(plain, 'personality').every((r) => r.args.length === 1 && r.args[0].op === 'eq'));
  t.is(rulesOf(plain, 'socket').length, 5);
  t.is(rulesOf(plain, 'ptrace').length, 1, 'ptrace on a kernel >= 4.8');
  t.deepEqual(rulesOf(plain, 'ptrace')[0].args, []);
  t.deepEqual(rulesOf(compileProfile(defaultProfile(), { caps: new Set(DEFAULT_CAPS), arch: 'x64', kernel: '4.4.0' }), 'ptrace'), []);
  t.is(rulesOf(compileProfile(defaultProfile(), { caps: new Set([...DEFAULT_CAPS, 'CAP_SYS_PTRACE']), arch: 'x64', kernel: '4.4.0' }), 'ptrace').length, 1);

  const admin = compileProfile(defaultProfile(), { caps: new Set([...DEFAULT_CAPS, 'CAP_SYS_ADMIN']), arch: 'x64', kernel: '6.1.0' });
  t.deepEqual(rulesOf(admin, 'clone'), [{ name: 'clone', action: { kind: 'allow' }, args: [] }]);
  t.deepEqual(rulesOf(admin, 'unshare'), [{ name: 'unshare', action: { kind: 'allow' }, args: [] }]);
  t.deepEqual(rulesOf(admin, 'clone3'), [{ name: 'clone3', action: { kind: 'allow' }, args: [] }]);
  t.is(rulesOf(admin, 'mount').length, 1);
  t.is(rulesOf(admin, 'bpf').length, 1, 'CAP_BPF entry excluded with CAP_SYS_ADMIN: no duplicate');
  t.deepEqual(rulesOf(admin, 'keyctl'), [{ name: 'keyctl', action: { kind: 'errno', errno: 1 }, args: [] }], 'only the documenting entry (the default action)');

  const bpf = compileProfile(defaultProfile(), { caps: new Set([...DEFAULT_CAPS, 'CAP_BPF', 'CAP_PERFMON']), arch: 'x64', kernel: '6.1.0' });
  t.is(rulesOf(bpf, 'bpf').length, 1);
  t.is(rulesOf(bpf, 'perf_event_open').length, 1);
  t.deepEqual(rulesOf(bpf, 'mount'), []);
});

test('wire: a Spec survives JSON, compactly', (t) => {
  const spec = compileProfile(defaultProfile(), { caps: new Set(DEFAULT_CAPS) });
  const wire = specToWire(spec);
  const text = JSON.stringify(wire);
  t.true(text.length < 16 * 1024, `${text.length} bytes`);
  t.true(wire.rules.length < 60);
  t.deepEqual(specFromWire(JSON.parse(text)), spec);
  const big: Spec = { defaultAction: { kind: 'allow' }, arches: [], rules: [{ name: 'read', action: { kind: 'trap' }, args: [{ index: 2, op: 'gt', value: (1n << 64n) - 1n, valueTwo: 0n }] }] };
  t.deepEqual(specFromWire(JSON.parse(JSON.stringify(specToWire(big)))), { ...big, log: false, specAllow: false });
  t.throws(() => specFromWire({ ...JSON.parse(text), rules: [{ names: ['read'], action: { kind: 'explode' }, args: [] }] }), { message: /malformed filter from the launcher: rules\[0\]: action/ });
  t.throws(() => specFromWire({ ...JSON.parse(text), rules: [{ names: ['read'], action: { kind: 'allow' }, args: [{ index: 0, op: 'eq', value: '18446744073709551616', valueTwo: '0' }] }] }), {
    message: /rules\[0\]\.args\[0\]\.value/,
  });
  t.throws(() => specFromWire(null), { message: /not an object/ });
});

test('resolve: syscall numbers of the native architecture', (t) => {
  if (process.arch !== 'x64') return t.pass('x86_64 numbers');
  t.is(resolveSyscall('read'), 0);
  t.is(resolveSyscall('getpid'), 39);
  t.is(resolveSyscall('clone3'), 435);
  t.is(resolveSyscall('stime'), -1, 'i386 only');
  t.is(resolveSyscall('layerfs_no_such_syscall'), -1);
});

// ---------------------------------------------------------------------------
// Loading, for real, in child processes

const PROBE_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// One line per call: NAME=ok or NAME=ERRNO (the symbolic errno).
static void report(const char *name, long rc, int err) {
  if (rc < 0) printf("%s=%s\n", name, strerrorname_np(err));
  else printf("%s=ok\n", name);
}
#define TRY(name, expr) do { errno = 0; long rc_ = (long)(expr); report(name, rc_, errno); \
    if (rc_ > 2 && strncmp(name, "socket", 6) == 0) close((int)rc_); } while (0)
static void *thread_main(void *a) { return a; }

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  TRY("getpid", syscall(SYS_getpid));
  { int fd = open("/proc/self/status", O_RDONLY); char b[64]; long n = fd < 0 ? -1 : read(fd, b, sizeof b);
    report("open_read", n, errno); if (fd >= 0) close(fd); }
  { pthread_t t; int e = pthread_create(&t, NULL, thread_main, NULL); if (!e) pthread_join(t, NULL);
    report("pthread", e ? -1 : 0, e); }
  { pid_t p = fork(); if (p == 0) _exit(7); int st = 0; if (p > 0) waitpid(p, &st, 0);
    report("fork", p > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : -1, p < 0 ? errno : EIO); }
  TRY("clone3", syscall(SYS_clone3, NULL, 0));
  TRY("unshare_files", syscall(SYS_unshare, CLONE_FILES));
  TRY("unshare_newns", syscall(SYS_unshare, CLONE_NEWNS));
  TRY("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session keyring */, 0));
  TRY("add_key", syscall(SYS_add_key, "layerfs_no_such_type", "d", NULL, 0, -2));
  TRY("request_key", syscall(SYS_request_key, "layerfs_no_such_type", "d", NULL, 0));
  TRY("bpf", syscall(SYS_bpf, 0x7fffffff, NULL, 0));
  TRY("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
  TRY("userfaultfd", syscall(SYS_userfaultfd, 0x7fffffff));
  TRY("mount", mount("none", "/nonexistent/layerfs-probe", "tmpfs", 0, NULL));
  TRY("umount2", umount2("/nonexistent/layerfs-probe", 0));
  TRY("pivot_root", syscall(SYS_pivot_root, "/nonexistent/layerfs-a", "/nonexistent/layerfs-b"));
  TRY("fsopen", syscall(SYS_fsopen, "layerfs_no_such_fs", 0));
  TRY("setns", syscall(SYS_setns, -1, 0));
  TRY("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
  TRY("delete_module", syscall(SYS_delete_module, "layerfs_no_such_module", O_NONBLOCK));
  { struct timespec ts = {0, 0}; TRY("clock_settime", syscall(SYS_clock_settime, CLOCK_MONOTONIC, &ts)); }
  TRY("settimeofday", syscall(SYS_settimeofday, NULL, NULL));
  TRY("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
  TRY("swapoff", syscall(SYS_swapoff, "/nonexistent/layerfs-probe"));
  TRY("acct", syscall(SYS_acct, "/nonexistent/layerfs-probe"));
  TRY("syslog", syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0));
  TRY("io_uring_setup", syscall(SYS_io_uring_setup, 0, NULL));
  TRY("mbind", syscall(SYS_mbind, NULL, 0, 0, NULL, 0, 0));
  TRY("socket_inet", syscall(SYS_socket, AF_INET, SOCK_STREAM, 0));
  TRY("socket_unix", syscall(SYS_socket, AF_UNIX, SOCK_DGRAM, 0));
  TRY("socket_vsock", syscall(SYS_socket, 40 /* AF_VSOCK */, SOCK_STREAM, 0));
  TRY("socket_vsock_hi", syscall(SYS_socket, 0x100000028L /* AF_VSOCK, and a bit the kernel drops */, SOCK_STREAM, 0));
  TRY("socket_46", syscall(SYS_socket, 46, SOCK_STREAM, 0));
  TRY("personality_query", syscall(SYS_personality, 0xffffffffUL));
  TRY("personality_norandom", syscall(SYS_personality, 0x0040000UL /* ADDR_NO_RANDOMIZE */));
  syscall(SYS_personality, 0UL);
  TRY("sethostname_long", syscall(SYS_sethostname, NULL, 100000));
  TRY("ptrace", syscall(SYS_ptrace, 0x7fff, 0, 0, 0));
  TRY("kcmp", syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0));
  TRY("chroot_missing", syscall(SYS_chroot, "/nonexistent/layerfs-probe"));
  printf("done\n");
  return 0;
}
`;

/** Refused to the default capability set: EPERM under the filter, anything else without it. */
const DENIED = [
  'unshare_newns', 'keyctl', 'add_key', 'request_key', 'bpf', 'perf_event_open', 'userfaultfd', 'mount', 'umount2', 'pivot_root', 'fsopen',
  'setns', 'reboot', 'delete_module', 'clock_settime', 'settimeofday', 'open_by_handle_at', 'swapoff', 'acct', 'syslog', 'io_uring_setup',
  'mbind', 'socket_vsock', 'socket_vsock_hi', 'personality_norandom',
];
/** Allowed: the same answer as without a filter. */
const ALLOWED = [
  'getpid', 'open_read', 'pthread', 'fork', 'unshare_files', 'socket_inet', 'socket_unix', 'socket_46', 'personality_query', 'sethostname_long',
  'ptrace', 'kcmp', 'chroot_missing',
];
/** Allowed with CAP_SYS_ADMIN (the rest of DENIED stays denied). */
const SYS_ADMIN_ALLOWS = ['unshare_newns', 'bpf', 'perf_event_open', 'mount', 'umount2', 'pivot_root', 'fsopen', 'setns', 'swapoff'];

// The child: loads a filter, then execve()s argv. Configured by LAYERFS_SECCOMP_CHILD (JSON):
// { profile: 'default' | profile text, caps: string[], argv: string[] }.
const CHILD_JS = (root: string): string => `
import * as seccomp from ${JSON.stringify(pathToFileURL(path.join(root, 'src/launcher/seccomp.ts')).href)};
import * as sys from ${JSON.stringify(pathToFileURL(path.join(root, 'src/sys/index.ts')).href)};
const cfg = JSON.parse(process.env.LAYERFS_SECCOMP_CHILD);
try {
  const profile = cfg.profile === 'default' ? seccomp.defaultProfile() : seccomp.parseProfile(cfg.profile, 'custom.json');
  const spec = seccomp.compileProfile(profile, { caps: new Set(cfg.caps) });
  // the way the launcher hands it to stage 2
  seccomp.loadSeccomp(seccomp.specFromWire(JSON.parse(JSON.stringify(seccomp.specToWire(spec)))));
} catch (e) {
  process.stderr.write('LOAD-ERROR ' + e.message + '\\n');
  process.exit(3);
}
// Node makes its stdio close-on-exec and may make it non-blocking; its signal dispositions would be inherited too.
for (const fd of [0, 1, 2]) {
  sys.setCloexec(fd, false);
  sys.setBlocking(fd);
}
sys.resetSignals();
const env = Object.entries(process.env).filter(([k]) => k !== 'LAYERFS_SECCOMP_CHILD').map(([k, v]) => k + '=' + v);
sys.execve(cfg.argv[0], cfg.argv, env);
`;

let work = '';
let probe = '';
let childScript = '';
let baseline = new Map<string, string>();

function probeOutput(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

test.before(() => {
  work = makeTmp(undefined, 'layerfs-test-seccomp-');
  fs.writeFileSync(path.join(work, 'probe.c'), PROBE_C);
  probe = path.join(work, 'probe');
  execFileSync('gcc', ['-static', '-O1', '-o', probe, path.join(work, 'probe.c'), '-pthread'], { stdio: ['ignore', 'ignore', 'inherit'] });
  childScript = path.join(work, 'child.mjs');
  fs.writeFileSync(childScript, CHILD_JS(repoRoot));
  const out = execFileSync(probe, { encoding: 'utf8' });
  if (!out.includes('done')) throw new Error(`the probe did not finish without a filter:\n${out}`);
  baseline = probeOutput(out);
});

test.after.always(async () => {
  if (work) await removeTmp(work);
});

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Start the child with a filter from `profile` for `caps`; it runs argv. Killed at teardown if still running. */
function underFilter(t: ExecutionContext, profile: 'default' | string, caps: readonly string[], argv: readonly string[]): Promise<Result> {
  const child: ChildProcess = spawn(process.execPath, [...TSX_ARGS, childScript], {
    env: { ...process.env, LC_ALL: 'C', LAYERFS_SECCOMP_CHILD: JSON.stringify({ profile, caps, argv }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

test('load: the default profile refuses what the default capabilities do not cover', async (t) => {
  const r = await underFilter(t, 'default', DEFAULT_CAPS, [probe]);
  t.is(r.code, 0, r.stderr);
  t.true(r.stdout.includes('done'), r.stdout);
  const got = probeOutput(r.stdout);
  for (const name of DENIED) {
    t.not(baseline.get(name), 'EPERM', `${name} without a filter`);
    t.is(got.get(name), 'EPERM', `${name} under the filter`);
  }
  for (const name of ALLOWED) t.is(got.get(name), baseline.get(name), name);
  t.is(baseline.get('clone3'), 'EINVAL');
  t.is(got.get('clone3'), 'ENOSYS', 'clone3 answers ENOSYS (glibc falls back to clone)');
  t.is(got.get('pthread'), 'ok');
  t.is(got.get('socket_vsock_hi'), 'EPERM', 'AF_VSOCK with high bits set is refused too');
  t.is(baseline.get('socket_vsock_hi'), baseline.get('socket_vsock'), 'the kernel drops the high bits');
});

test('load: with CAP_SYS_ADMIN, namespaces and mounts are the kernel\'s business again', async (t) => {
  const r = await underFilter(t, 'default', [...DEFAULT_CAPS, 'CAP_SYS_ADMIN'], [probe]);
  t.is(r.code, 0, r.stderr);
  const got = probeOutput(r.stdout);
  for (const name of SYS_ADMIN_ALLOWS) t.is(got.get(name), baseline.get(name), name);
  t.is(got.get('clone3'), baseline.get('clone3'));
  for (const name of DENIED.filter((n) => !SYS_ADMIN_ALLOWS.includes(n))) t.is(got.get(name), 'EPERM', name);
});

test('load: unshare -m fails with EPERM; with CAP_SYS_ADMIN it works', async (t) => {
  const denied = await underFilter(t, 'default', DEFAULT_CAPS, ['/usr/bin/unshare', '-m', 'true']);
  t.is(denied.code, 1);
  t.regex(denied.stderr, /unshare failed: Operation not permitted/);
  const allowed = await underFilter(t, 'default', [...DEFAULT_CAPS, 'CAP_SYS_ADMIN'], ['/usr/bin/unshare', '-m', 'true']);
  t.is(allowed.code, 0, allowed.stderr);
});

test('load: the program runs in filter mode, and threads, fork and exec keep working', async (t) => {
  const status = await underFilter(t, 'default', DEFAULT_CAPS, ['/bin/grep', '^Seccomp:', '/proc/self/status']);
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, /^Seccomp:\s+2$/m);
  const sh = await underFilter(t, 'default', DEFAULT_CAPS, ['/bin/sh', '-c', 'true && /bin/echo sh-ok']);
  t.is(sh.code, 0, sh.stderr);
  t.is(sh.stdout.trim(), 'sh-ok');
  // Node: a worker thread (pthread_create: clone3, then clone) and a child process
  const js =
    "const { Worker } = require('node:worker_threads');" +
    "new Worker('require(\"node:worker_threads\").parentPort.postMessage(6 * 7)', { eval: true })" +
    ".on('message', (m) => console.log('worker', m, require('node:child_process').execFileSync('/bin/echo', ['child']).toString().trim()));";
  const node = await underFilter(t, 'default', DEFAULT_CAPS, [process.execPath, '-e', js]);
  t.is(node.code, 0, node.stderr);
  t.is(node.stdout.trim(), 'worker 42 child');
});

test('load: a custom profile (allow by default, refuse a few)', async (t) => {
  const dir = makeTmp(t, 'layerfs-test-seccomp-custom-');
  const profile = JSON.stringify({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [
      { names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, comment: 'EACCES' },
      { names: ['uname'], action: 'SCMP_ACT_KILL_PROCESS' },
      { names: ['layerfs_no_such_syscall'], action: 'SCMP_ACT_ERRNO', comment: 'unknown names are skipped' },
      { names: ['getpid'], action: 'SCMP_ACT_ALLOW', comment: 'the default action: skipped' },
    ],
  });
  const script = `/bin/mkdir ${dir}/made; echo mkdir=$?; : > ${dir}/file && echo write=ok; /bin/uname; echo uname=$?`;
  const r = await underFilter(t, profile, [], ['/bin/sh', '-c', script]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /mkdir: cannot create directory .*: Permission denied/);
  t.regex(r.stdout, /^mkdir=1$/m);
  t.regex(r.stdout, /^write=ok$/m);
  t.regex(r.stdout, /^uname=159$/m, 'killed by SIGSYS (128 + 31)');
  t.false(fs.existsSync(path.join(dir, 'made')));
  t.true(fs.existsSync(path.join(dir, 'file')));
});

test('load: a filter libseccomp refuses fails before anything is loaded, with the rule named', async (t) => {
  const profile = JSON.stringify({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [
      { names: ['getpid'], action: 'SCMP_ACT_ERRNO', errnoRet: 5, args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }] },
      { names: ['getpid'], action: 'SCMP_ACT_TRAP', args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }] },
    ],
  });
  const r = await underFilter(t, profile, [], ['/bin/true']);
  t.is(r.code, 3);
  t.regex(r.stderr, /^LOAD-ERROR seccomp: cannot add rule 1 \(getpid, trap, 1 argument comparison\(s\)\): conflicts with an earlier rule for the same syscall with another action$/m);
});

test('load: the addon checks the spec it is given', (t) => {
  // In this process: load() throws on a malformed spec before it creates a filter.
  const filters = (): string => /^Seccomp_filters:\s*(\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '?';
  const before = filters();
  const bad = (spec: unknown): void => loadSeccomp(spec as Spec);
  t.throws(() => bad({ defaultAction: { kind: 'nope' }, arches: [], rules: [] }), { instanceOf: TypeError, message: /defaultAction: unknown action kind 'nope'/ });
  t.throws(() => bad({ defaultAction: { kind: 'errno' }, arches: [], rules: [] }), { instanceOf: TypeError, message: /action 'errno' needs an errno/ });
  t.throws(() => bad({ defaultAction: { kind: 'allow' }, arches: [], rules: [{ name: 'read', action: { kind: 'allow' }, args: [{ index: 0, op: 'eq', value: 1, valueTwo: 0n }] }] }), {
    instanceOf: TypeError,
    message: /rules\[0\] \(read\)\.args\[0\]\.value must be a BigInt/,
  });
  t.throws(() => bad({ defaultAction: { kind: 'allow' }, arches: [], rules: [{ name: 'read', action: { kind: 'allow' }, args: [{ index: 6, op: 'eq', value: 1n, valueTwo: 0n }] }] }), {
    instanceOf: TypeError,
    message: /index must be 0\.\.5/,
  });
  t.throws(() => bad({ defaultAction: { kind: 'allow' }, arches: ['vax'], rules: [] }), { message: /^seccomp: unknown architecture 'vax'$/ });
  t.is(filters(), before, 'nothing was loaded here');
});
