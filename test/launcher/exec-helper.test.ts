// build/Release/layerfs_exec (native/exec/exec.c), the helper `layerfs exec` runs to enter a
// running container, against stand-in containers: util-linux `unshare --fork --pid --mount --uts
// --ipc --net --cgroup --mount-proc` (optionally with --user --map-root-user) running
// `sh -c 'hostname ctr; exec sleep 600'`. Its sleep is the "container's PID 1". unshare keeps the
// host's root, so the commands run inside are the host's /bin/sh and coreutils, and a directory
// made here on the host is there inside too.
//
// No engine and no launcher: the tests give the helper its options as the engine's CLI will.
// Every test kills its target (and removes what it made) in t.teardown. Root only.

import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compileProfile, defaultProfile } from '../../src/launcher/seccomp.ts';
import { exportSeccompBpf } from '../../src/launcher/seccomp-addon.ts';
import { makeTmp, repoRoot } from '../helpers/mounts.ts';

const HELPER = path.join(repoRoot, 'build', 'Release', 'layerfs_exec');
const isRoot = process.getuid?.() === 0;
const rootTest = isRoot && fs.existsSync(HELPER) ? test : test.skip;

/** Capability numbers of docker's (and layerfs run's) default set, and the mask of it. */
const DEFAULT_CAPS: Record<string, number> = {
  CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_FOWNER: 3, CAP_FSETID: 4, CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7,
  CAP_SETPCAP: 8, CAP_NET_BIND_SERVICE: 10, CAP_SYS_CHROOT: 18, CAP_SETFCAP: 31,
};
const CAP_SYS_ADMIN = 21;
const maskOf = (caps: number[]): bigint => caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);
const DEFAULT_MASK = maskOf(Object.values(DEFAULT_CAPS));
const hex = (m: bigint): string => m.toString(16).padStart(16, '0');

/** The environment the helper gets, and so CMD (LC_ALL=C: untranslated messages). */
const BASE_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

// ---------------------------------------------------------------------------
// Targets

interface Target {
  /** The sleep: the container's PID 1, host view. */
  pid: number;
  /** Its /proc/PID/ns/* links, read from the host (name -> 'mnt:[4026...]'). */
  ns: Record<string, string>;
}

function nsLinks(pid: number | 'self'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of fs.readdirSync(`/proc/${pid}/ns`)) out[n] = fs.readlinkSync(`/proc/${pid}/ns/${n}`);
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killQuietly(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/** A stand-in container, killed in teardown. userns: its own user namespace (root mapped to root). */
async function startTarget(t: ExecutionContext, userns = false): Promise<Target> {
  const flags = [...(userns ? ['--user', '--map-root-user'] : []), '--fork', '--kill-child', '--pid', '--mount', '--uts', '--ipc', '--net', '--cgroup', '--mount-proc'];
  const u = spawn('unshare', [...flags, 'sh', '-c', 'hostname ctr && exec sleep 600'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  u.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  let pid: number | undefined;
  t.teardown(() => {
    killQuietly(pid);
    killQuietly(u.pid);
  });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    pid = childrenOf(u.pid!)[0];
    if (pid !== undefined) {
      try {
        if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep') return { pid, ns: nsLinks(pid) };
      } catch {
        /* not yet */
      }
    }
    if (u.exitCode !== null) break;
    await sleep(20);
  }
  throw new Error(`the target did not start: ${stderr}`);
}

// ---------------------------------------------------------------------------
// Running the helper

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface HelperOptions {
  env?: NodeJS.ProcessEnv;
  /** Bytes given on descriptor 3 (a pipe). */
  fd3?: Buffer;
  /** Called once the helper runs. */
  started?: (child: ChildProcess) => void;
}

function runHelper(t: ExecutionContext, args: readonly string[], opts: HelperOptions = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const stdio: ('ignore' | 'pipe')[] = ['ignore', 'pipe', 'pipe'];
    if (opts.fd3) stdio.push('pipe');
    const child = spawn(HELPER, args, { env: opts.env ?? BASE_ENV, stdio });
    t.teardown(() => killQuietly(child.exitCode === null ? child.pid : undefined));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    if (opts.fd3) (child.stdio[3] as NodeJS.WritableStream).end(opts.fd3);
    child.on('error', reject);
    // Its output until the pipes close, or for a second after it exited: a CMD that outlived it
    // (a failure) may hold them.
    const done = (code: number | null, signal: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    };
    child.on('exit', (code, signal) => setTimeout(() => done(code, signal), 1000).unref());
    child.on('close', done);
    opts.started?.(child);
  });
}

/** The options that enter `target` as root with docker's default capabilities, working directory /. */
function enter(target: Target, extra: Record<string, string> = {}): string[] {
  const o: Record<string, string> = { '--pid': String(target.pid), '--uid': '0', '--gid': '0', '--caps': hex(DEFAULT_MASK), '--cwd': '/', ...extra };
  return Object.entries(o).flatMap(([k, v]) => [k, v]);
}

/** Runs `sh -c script` in the target; the exit status must be 0. */
async function shOk(t: ExecutionContext, args: string[], script: string, opts: HelperOptions = {}): Promise<string> {
  const r = await runHelper(t, [...args, '--', 'sh', '-c', script], opts);
  t.is(r.code, 0, `${script}: ${r.stderr}`);
  return r.stdout;
}

/** "Key:\tvalue" lines of /proc/self/status as CMD sees them. */
function statusFields(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s*(.*)$/.exec(line);
    if (m) out[m[1]] = m[2].trim();
  }
  return out;
}

/** The one line a failure prints. */
function oneLine(t: ExecutionContext, r: Result, status: number, re: RegExp): void {
  t.is(r.code, status, r.stderr);
  t.is(r.stdout, '');
  const lines = r.stderr.split('\n');
  t.is(lines.length, 2, r.stderr);
  t.is(lines[1], '');
  t.regex(lines[0], /^layerfs exec: /);
  t.regex(lines[0], re);
}

const NS_SCRIPT = 'for f in /proc/self/ns/*; do echo "${f##*/} $(readlink $f)"; done';

function parseNs(out: string): Record<string, string> {
  const got: Record<string, string> = {};
  for (const line of out.trim().split('\n')) {
    const [k, v] = line.split(' ');
    got[k] = v;
  }
  return got;
}

// ---------------------------------------------------------------------------
// Entering

rootTest('enters every namespace of the container (no user namespace of its own)', async (t) => {
  const target = await startTarget(t);
  const host = nsLinks('self');
  for (const n of ['mnt', 'uts', 'ipc', 'net', 'pid', 'cgroup']) t.not(target.ns[n], host[n], n);
  t.is(target.ns.user, host.user);
  const got = parseNs(await shOk(t, enter(target), NS_SCRIPT));
  t.deepEqual(got, target.ns);
  // Its hostname, its PID namespace (PID 1 is the sleep; CMD has a small pid), its /proc.
  const out = await shOk(t, enter(target), 'hostname; cat /proc/1/comm; echo $$; cat /proc/self/status | grep ^NSpid');
  const [hostname, pid1, inner, nspid] = out.trim().split('\n');
  t.is(hostname, 'ctr');
  t.is(pid1, 'sleep');
  t.true(Number(inner) > 1 && Number(inner) < 100, inner);
  t.regex(nspid, /^NSpid:\s+\d+$/); // one level: the container's PID namespace is the one /proc shows
});

rootTest('enters a user namespace first when the container has one', async (t) => {
  const target = await startTarget(t, true);
  t.not(target.ns.user, nsLinks('self').user);
  const got = parseNs(await shOk(t, enter(target), NS_SCRIPT));
  t.deepEqual(got, target.ns);
  // root in it with the mask (a capability the helper itself lacks on the host included: the user
  // namespace gives every one of them), setgroups denied there (--map-root-user): skipped.
  const all = maskOf([...Array(Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8')) + 1).keys()]);
  const st = statusFields(await shOk(t, enter(target, { '--caps': hex(all), '--groups': '0' }), 'hostname >&2; id -u; cat /proc/self/status'));
  t.is(st.CapEff, hex(all));
  t.is(st.CapBnd, hex(all));
  t.is(st.Uid.split(/\s+/)[0], '0');
  // A working directory the namespace's root may not enter (its owner is not mapped there): tried
  // again as the user, refused again.
  const dir = makeTmp(t, 'layerfs-exec-userns-');
  fs.chmodSync(dir, 0o755);
  const closed = path.join(dir, 'closed');
  fs.mkdirSync(closed, { mode: 0o700 });
  fs.chownSync(closed, 1000, 1000);
  const denied = await runHelper(t, [...enter(target, { '--cwd': closed }), '--', 'true']);
  oneLine(t, denied, 126, new RegExp(`^layerfs exec: working directory ${closed}: Permission denied$`));
  // A uid the namespace does not map.
  const r = await runHelper(t, [...enter(target, { '--uid': '1000' }), '--', 'true']);
  oneLine(t, r, 125, /^layerfs exec: cannot set uid 1000: Invalid argument$/);
});

rootTest('uid, gid and supplementary groups', async (t) => {
  const target = await startTarget(t);
  const ids = async (extra: Record<string, string>): Promise<string[]> =>
    (await shOk(t, enter(target, extra), 'id -u; id -g; id -G; grep ^Groups: /proc/self/status')).split('\n').map((l) => l.trimEnd()).filter(Boolean);
  t.deepEqual(await ids({ '--uid': '1000', '--gid': '1001', '--groups': '10,20' }), ['1000', '1001', '1001 10 20', 'Groups:\t10 20']);
  t.deepEqual(await ids({ '--uid': '1000', '--gid': '1001', '--groups': '' }), ['1000', '1001', '1001', 'Groups:']);
  t.deepEqual(await ids({ '--uid': '1000', '--gid': '1001' }), ['1000', '1001', '1001', 'Groups:']);
  t.deepEqual(await ids({ '--groups': '0,4' }), ['0', '0', '0 4', 'Groups:\t0 4']);
});

rootTest('capabilities: root gets the mask in every set, another uid in its bounding set only (as docker)', async (t) => {
  const target = await startTarget(t);
  const root = statusFields(await shOk(t, enter(target), 'cat /proc/self/status'));
  t.is(root.CapEff, hex(DEFAULT_MASK));
  t.is(root.CapPrm, hex(DEFAULT_MASK));
  t.is(root.CapBnd, hex(DEFAULT_MASK));
  t.is(root.CapInh, hex(0n));
  t.is(root.CapAmb, hex(0n));
  t.is(root.NoNewPrivs, '0');
  t.is(root.Seccomp, '0');
  const user = statusFields(await shOk(t, enter(target, { '--uid': '1000', '--gid': '1000' }), 'cat /proc/self/status'));
  t.is(user.CapBnd, hex(DEFAULT_MASK));
  t.is(user.CapEff, hex(0n));
  t.is(user.CapPrm, hex(0n));
  t.is(user.CapInh, hex(0n));
  t.is(user.CapAmb, hex(0n));
  const none = statusFields(await shOk(t, enter(target, { '--caps': '0' }), 'cat /proc/self/status'));
  t.is(none.CapEff, hex(0n));
  t.is(none.CapBnd, hex(0n));
  // The mask is what the kernel enforces: without CAP_SYS_ADMIN no mount namespace.
  const r = await runHelper(t, [...enter(target), '--', 'unshare', '-m', 'true']);
  t.is(r.code, 1);
  t.regex(r.stderr, /Operation not permitted/);
});

rootTest('--no-new-privs', async (t) => {
  const target = await startTarget(t);
  const st = statusFields(await shOk(t, [...enter(target), '--no-new-privs'], 'cat /proc/self/status'));
  t.is(st.NoNewPrivs, '1');
});

rootTest('--seccomp-fd: the default profile compiled by exportSeccompBpf, loaded last', async (t) => {
  const target = await startTarget(t);
  const withAdmin = hex(DEFAULT_MASK | (1n << BigInt(CAP_SYS_ADMIN)));
  // Compiled for the default capabilities: unshare is CAP_SYS_ADMIN's; the process keeps
  // CAP_SYS_ADMIN, so only the filter can be what refuses it.
  const prog = exportSeccompBpf(compileProfile(defaultProfile(), { caps: new Set(Object.keys(DEFAULT_CAPS)) }));
  t.true(prog.length > 0 && prog.length % 8 === 0);
  const st = statusFields(await shOk(t, enter(target, { '--caps': withAdmin, '--seccomp-fd': '3' }), 'cat /proc/self/status', { fd3: prog }));
  t.is(st.Seccomp, '2');
  t.is(st.NoNewPrivs, '1'); // set for the filter even without --no-new-privs
  const denied = await runHelper(t, [...enter(target, { '--caps': withAdmin, '--seccomp-fd': '3' }), '--', 'unshare', '-m', 'true'], { fd3: prog });
  t.is(denied.code, 1);
  t.regex(denied.stderr, /unshare failed: Operation not permitted/);
  const allowed = await runHelper(t, [...enter(target, { '--caps': withAdmin }), '--', 'unshare', '-m', 'true']);
  t.is(allowed.code, 0, allowed.stderr);
  // Errors after the filter is in place still reach stderr and the exit status.
  const missing = await runHelper(t, [...enter(target, { '--seccomp-fd': '3' }), '--', 'no-such-command'], { fd3: prog });
  oneLine(t, missing, 127, /no-such-command: executable file not found in \$PATH$/);
  // Not a program.
  const bad = await runHelper(t, [...enter(target, { '--seccomp-fd': '3' }), '--', 'true'], { fd3: Buffer.alloc(12) });
  oneLine(t, bad, 125, /seccomp program is 12 bytes/);
  const big = await runHelper(t, [...enter(target, { '--seccomp-fd': '3' }), '--', 'true'], { fd3: Buffer.alloc(8 * 4097) });
  oneLine(t, big, 125, /more than 4096 instructions/);
});

rootTest('--cwd: the working directory inside; a missing one is 126 (docker), a relative one 125', async (t) => {
  const target = await startTarget(t);
  const dir = makeTmp(t, 'layerfs-exec-cwd-');
  t.is((await shOk(t, enter(target, { '--cwd': dir }), 'pwd')).trim(), dir);
  t.is((await shOk(t, enter(target, { '--cwd': '/proc/1' }), 'cat comm')).trim(), 'sleep'); // the container's /proc
  // A directory only its owner may enter: root gets in, so does its owner (runc tries again as the user).
  const own = path.join(dir, 'own');
  fs.mkdirSync(own, { mode: 0o700 });
  fs.chownSync(own, 1000, 1000);
  fs.chmodSync(dir, 0o755);
  t.is((await shOk(t, enter(target, { '--cwd': own, '--uid': '1000', '--gid': '1000' }), 'pwd')).trim(), own);
  const other = await runHelper(t, [...enter(target, { '--cwd': own, '--uid': '1001', '--gid': '1001' }), '--', 'true']);
  t.is(other.code, 0, other.stderr); // root's chdir came first (DAC_OVERRIDE), as runc's
  oneLine(t, await runHelper(t, [...enter(target, { '--cwd': path.join(dir, 'nope') }), '--', 'true']), 126, new RegExp(`^layerfs exec: working directory ${dir}/nope: No such file or directory$`));
  oneLine(t, await runHelper(t, [...enter(target, { '--cwd': 'tmp' }), '--', 'true']), 125, /--cwd: 'tmp' is not an absolute path/);
});

rootTest('the environment is the helper\'s own, and CMD is looked up in its PATH', async (t) => {
  const target = await startTarget(t);
  const env = { PATH: '/usr/bin:/bin', FOO: 'bar baz', EMPTY: '' };
  const r = await runHelper(t, [...enter(target), '--', 'env'], { env });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n').sort(), ['EMPTY=', 'FOO=bar baz', 'PATH=/usr/bin:/bin']);
  const nopath = await runHelper(t, [...enter(target), '--', 'env'], { env: { PATH: '/nonexistent' } });
  oneLine(t, nopath, 127, /^layerfs exec: env: executable file not found in \$PATH$/);
  // No PATH: docker's default.
  const dflt = await runHelper(t, [...enter(target), '--', 'env'], { env: { X: '1' } });
  t.is(dflt.code, 0, dflt.stderr);
  t.is(dflt.stdout, 'X=1\n');
});

rootTest('exit statuses: CMD\'s own, 128+N for a signal, 127 not found, 126 not executable', async (t) => {
  const target = await startTarget(t);
  const dir = makeTmp(t, 'layerfs-exec-status-');
  const plain = path.join(dir, 'plain');
  fs.writeFileSync(plain, '#!/bin/sh\necho hi\n', { mode: 0o644 });
  const run = (cmd: string[]): Promise<Result> => runHelper(t, [...enter(target), '--', ...cmd]);
  t.is((await run(['true'])).code, 0);
  t.is((await run(['sh', '-c', 'exit 3'])).code, 3);
  const killed = await run(['sh', '-c', 'kill -TERM $$']);
  t.is(killed.code, 128 + 15);
  t.is(killed.signal, null);
  oneLine(t, await run(['no-such-command']), 127, /^layerfs exec: no-such-command: executable file not found in \$PATH$/);
  oneLine(t, await run([path.join(dir, 'missing')]), 127, /: No such file or directory$/);
  oneLine(t, await run([plain]), 126, new RegExp(`^layerfs exec: ${plain}: Permission denied$`));
  oneLine(t, await run([dir]), 126, /Permission denied$/);
  fs.chmodSync(plain, 0o755);
  t.is((await run([plain])).stdout, 'hi\n');
});

rootTest('signals sent to the helper reach CMD; CMD dies with the helper', async (t) => {
  const target = await startTarget(t);
  const script = 'trap "echo got-USR1; exit 7" USR1; trap "echo got-INT; exit 8" INT; echo ready; while :; do sleep 0.05; done';
  for (const [sig, want, code] of [['SIGUSR1', 'got-USR1', 7], ['SIGINT', 'got-INT', 8], ['SIGTERM', null, 143]] as const) {
    const r = await runHelper(t, [...enter(target), '--', 'sh', '-c', script], {
      started: (child) => {
        child.stdout!.once('data', () => child.kill(sig)); // "ready": the trap is set
      },
    });
    t.is(r.code, code, `${sig}: ${r.stderr}`);
    if (want) t.is(r.stdout, `ready\n${want}\n`);
  }
  // SIGKILL cannot be passed on: PR_SET_PDEATHSIG takes CMD along (set again after the change of
  // uid, which clears it).
  let cmdPid: number | undefined;
  const r = await runHelper(t, [...enter(target, { '--uid': '1000', '--gid': '1000' }), '--', 'sh', '-c', 'echo ready; exec sleep 600'], {
    started: (child) => {
      child.stdout!.once('data', () => {
        cmdPid = childrenOf(child.pid!)[0];
        child.kill('SIGKILL');
      });
    },
  });
  t.teardown(() => killQuietly(cmdPid));
  t.is(r.signal, 'SIGKILL');
  t.truthy(cmdPid);
  const deadline = Date.now() + 5000;
  while (alive(cmdPid!) && Date.now() < deadline) await sleep(20);
  t.false(alive(cmdPid!), 'CMD outlived the helper');
});

// Prints the pids line of /proc/self/cgroup with builtins only (no child process to count), then waits.
const CGROUP_SCRIPT = 'while read -r l; do case $l in *:pids:*) echo "$l";; esac; done < /proc/self/cgroup; exec sleep 2';

rootTest('--cgroup-procs: CMD is born in the given cgroups', async (t) => {
  const pidsRoot = '/sys/fs/cgroup/pids';
  if (!fs.existsSync(path.join(pidsRoot, 'cgroup.procs'))) return t.pass('no cgroup v1 pids hierarchy');
  const target = await startTarget(t);
  const name = `layerfs-exec-test-${process.pid}-${Date.now()}`;
  const cg = path.join(pidsRoot, name);
  fs.mkdirSync(cg);
  t.teardown(async () => {
    for (let i = 0; i < 100; i++) {
      for (const p of fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) killQuietly(Number(p));
      try {
        fs.rmdirSync(cg);
        return;
      } catch {
        await sleep(50);
      }
    }
  });
  const procs = (): number[] => fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number).sort();
  let seen: number[] = [];
  let helperPid = 0;
  const r = await runHelper(t, [...enter(target, { '--cgroup-procs': path.join(cg, 'cgroup.procs') }), '--', 'sh', '-c', CGROUP_SCRIPT], {
    started: (child) => {
      helperPid = child.pid!;
      child.stdout!.once('data', () => {
        seen = procs();
      });
    },
  });
  t.is(r.code, 0, r.stderr);
  // As the container sees it (its cgroup namespace's root is where unshare ran: the root here).
  t.regex(r.stdout.trim(), new RegExp(`:pids:(/\\.\\.)*/${name}$`));
  t.is(seen.length, 2, `${seen}`); // the helper and CMD
  t.true(seen.includes(helperPid));
  t.deepEqual(procs(), []);
  // Several; a file that is no cgroup.procs is written too (the helper cannot tell): a regular file.
  const dir = makeTmp(t, 'layerfs-exec-cg-');
  const a = path.join(dir, 'a');
  fs.writeFileSync(a, '');
  let pid = 0;
  const r2 = await runHelper(t, [...enter(target), '--cgroup-procs', a, '--cgroup-procs', path.join(cg, 'cgroup.procs'), '--', 'true'], {
    started: (child) => (pid = child.pid!),
  });
  t.is(r2.code, 0, r2.stderr);
  t.is(fs.readFileSync(a, 'utf8'), String(pid));
  oneLine(t, await runHelper(t, [...enter(target), '--cgroup-procs', path.join(dir, 'none'), '--', 'true']), 125, /^layerfs exec: cgroup .*none: No such file or directory$/);
});

rootTest('--tty: the terminal on fds 0-2 becomes CMD\'s controlling terminal', async (t) => {
  const target = await startTarget(t);
  // A pty from python3 (Node has none): the helper gets the slave as fds 0-2.
  const py = [
    'import os, pty, subprocess, sys',
    'm, s = pty.openpty()',
    'p = subprocess.Popen(sys.argv[1:], stdin=s, stdout=s, stderr=s)',
    'os.close(s)',
    'out = b""',
    'while True:',
    '    try: d = os.read(m, 4096)',
    '    except OSError: break',
    '    if not d: break',
    '    out += d',
    'sys.stdout.buffer.write(out)',
    'sys.exit(p.wait())',
  ].join('\n');
  const script = 'tty; read -r pid comm state ppid pgrp sid ttynr tpgid rest < /proc/self/stat; echo "pid=$pid sid=$sid tpgid=$tpgid"';
  const out = execFileSync('python3', ['-c', py, HELPER, ...enter(target), '--tty', '--', 'sh', '-c', script], { env: BASE_ENV }).toString();
  const [tty, ids] = out.replace(/\r/g, '').trim().split('\n');
  t.regex(tty, /^\/dev\/pts\/\d+$/);
  const m = /^pid=(\d+) sid=(\d+) tpgid=(\d+)$/.exec(ids);
  t.truthy(m, ids);
  t.is(m![2], m![1]); // a session of its own
  t.is(m![3], m![1]); // in the foreground of its terminal
  // Without a terminal on fd 0.
  oneLine(t, await runHelper(t, [...enter(target), '--tty', '--', 'true']), 125, /--tty: standard input is not a terminal/);
});

// ---------------------------------------------------------------------------
// Refusals

rootTest('bad options: exit 125, one line, nothing done', async (t) => {
  const target = await startTarget(t);
  const dir = makeTmp(t, 'layerfs-exec-opts-');
  const marker = path.join(dir, 'procs');
  fs.writeFileSync(marker, '');
  const base = (): Record<string, string> => ({ '--cgroup-procs': marker, '--pid': String(target.pid), '--uid': '0', '--gid': '0', '--caps': 'a80425fb', '--cwd': '/' });
  const argv = (o: Record<string, string>, tail: string[] = ['--', 'true']): string[] => [...Object.entries(o).flatMap(([k, v]) => [k, v]), ...tail];
  const without = (k: string): Record<string, string> => {
    const o = base();
    delete o[k];
    return o;
  };
  const cases: [string[], RegExp][] = [
    [['--bogus', ...argv(base())], /unknown option '--bogus'/],
    [[...argv(base(), ['--pid', '1', '--', 'true'])], /--pid given twice/],
    [[...argv(base(), ['--no-new-privs', '--no-new-privs', '--', 'true'])], /--no-new-privs given twice/],
    [[...argv(base(), ['--tty', '--tty', '--', 'true'])], /--tty given twice/],
    [[...argv(base(), ['--seccomp-fd', '3', '--seccomp-fd', '4', '--', 'true'])], /--seccomp-fd given twice/],
    [argv(without('--uid'), ['--uid']), /--uid needs a value/],
    [argv({ ...base(), '--pid': 'abc' }), /--pid: 'abc' is not a process id/],
    [argv({ ...base(), '--pid': '0' }), /--pid: '0' is not a process id/],
    [argv({ ...base(), '--pid': '-1' }), /--pid: '-1' is not a process id/],
    [argv({ ...base(), '--pid': '99999999999' }), /--pid/],
    [argv({ ...base(), '--uid': '-1' }), /--uid: '-1' is not a user id/],
    [argv({ ...base(), '--uid': '4294967295' }), /--uid/],
    [argv({ ...base(), '--gid': '1x' }), /--gid: '1x' is not a group id/],
    [argv({ ...base(), '--groups': '1,,2' }), /--groups: '1,,2' is not a list of group ids/],
    [argv({ ...base(), '--groups': '1,' }), /--groups/],
    [argv({ ...base(), '--groups': ' 1' }), /--groups/],
    [argv({ ...base(), '--caps': 'xyz' }), /--caps: 'xyz' is not a 64-bit hex mask/],
    [argv({ ...base(), '--caps': '12345678901234567' }), /--caps/],
    [argv({ ...base(), '--caps': '' }), /--caps/],
    [argv({ ...base(), '--caps': '8000000000000000' }), /--caps: 8000000000000000 names capabilities above \d+/],
    [argv({ ...base(), '--seccomp-fd': '1' }), /--seccomp-fd: '1' is not a descriptor number of 3 or more/],
    [argv({ ...base(), '--seccomp-fd': '9' }), /cannot read the seccomp program from descriptor 9: Bad file descriptor/],
    [argv({ ...base(), '--cwd': '' }), /--cwd: '' is not an absolute path/],
    [argv(without('--pid')), /--pid is required/],
    [argv(without('--uid')), /--uid is required/],
    [argv(without('--gid')), /--gid is required/],
    [argv(without('--caps')), /--caps is required/],
    [argv(without('--cwd')), /--cwd is required/],
    [argv(base(), ['true']), /unknown option 'true'/],
    [argv(base(), []), /no -- before the command/],
    [argv(base(), ['--']), /no command after --/],
    [[], /--pid is required/],
  ];
  for (const [args, re] of cases) {
    const r = await runHelper(t, args);
    t.is(r.code, 125, `${args.join(' ')}: ${r.stderr}`);
    t.is(r.stdout, '');
    t.regex(r.stderr, /^layerfs exec: [^\n]*\n$/, args.join(' '));
    t.regex(r.stderr, re, args.join(' '));
  }
  t.is(fs.readFileSync(marker, 'utf8'), '', 'a refused command line wrote to a --cgroup-procs file');
  // The same options, well-formed: the file gets the helper's pid (what the refusals did not do).
  const ok = await runHelper(t, argv(base()));
  t.is(ok.code, 0, ok.stderr);
  t.regex(fs.readFileSync(marker, 'utf8'), /^\d+$/);
});

rootTest('a --pid that does not exist (or is gone): exit 125', async (t) => {
  const pidMax = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  const r = await runHelper(t, ['--pid', String(pidMax), '--uid', '0', '--gid', '0', '--caps', '0', '--cwd', '/', '--', 'true']);
  oneLine(t, r, 125, new RegExp(`^layerfs exec: the container's process ${pidMax}: No such file or directory$`));
  // A process that exited (and was reaped).
  const gone = spawn('true');
  await new Promise((res) => gone.on('close', res));
  const r2 = await runHelper(t, ['--pid', String(gone.pid), '--uid', '0', '--gid', '0', '--caps', '0', '--cwd', '/', '--', 'true']);
  t.is(r2.code, 125, r2.stderr);
});
