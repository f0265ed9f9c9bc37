// The cgroup v2 device controller (src/launcher/devices-bpf.ts → cgroupDeviceFilter in the own
// addon): an eBPF program attached to a cgroup2 directory, proven from a process inside it.
// On a hybrid host (v1 controllers, cgroup2 at /sys/fs/cgroup/unified) the program is enforced
// too: the kernel runs the programs of the task's default-hierarchy cgroup on every device open
// and mknod. Root only.

import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { applyDeviceFilterV2, toDevRules } from '../../src/launcher/devices-bpf.ts';
import type { DeviceRule } from '../../src/launcher/security.ts';
import { cgroupDeviceFilter, statfs, type DeviceFilterError } from '../../src/sys/index.ts';
import { makeTmp, repoRoot } from '../helpers/mounts.ts';

const CGROUP2_SUPER_MAGIC = 0x63677270n;

/** Where cgroup2 is mounted: /sys/fs/cgroup/unified (hybrid) or /sys/fs/cgroup (unified). */
function cgroup2Root(): string | null {
  for (const p of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
    try {
      if (statfs(p).type === CGROUP2_SUPER_MAGIC) return p;
    } catch {
      // not there
    }
  }
  return null;
}

const ROOT2 = process.getuid?.() === 0 ? cgroup2Root() : null;
const t0 = ROOT2 ? test : test.skip;

interface Cg {
  dir: string;
  /** The processes this test started (moved into the cgroup). */
  children: ChildProcess[];
}

/**
 * A new cgroup2 directory for the test. Teardown (also when the test failed): SIGKILL the
 * test's children still alive, by pid, wait until they are gone, then remove the directory
 * (which detaches and frees the program).
 */
function cgroupFor(t: ExecutionContext): Cg {
  const dir = path.join(ROOT2!, `layerfs-test-devbpf-${process.pid}-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(dir);
  const cg: Cg = { dir, children: [] };
  t.teardown(async () => {
    for (const c of cg.children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const gone = new Promise((resolve) => c.once('exit', resolve));
      try {
        process.kill(c.pid!, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
      await gone;
    }
    for (let i = 0; ; i++) {
      try {
        fs.rmdirSync(dir);
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY' || i >= 50) throw e; // EBUSY: the exited task not yet off the cgroup
        await sleep(100);
      }
    }
  });
  return cg;
}

type Op =
  | { op: 'open'; path: string; flags: 'r' | 'r+' }
  | { op: 'mknod'; path: string; type: 'c' | 'b'; major: number; minor: number };

/**
 * Node, in the cgroup: it writes its own pid to cgroup.procs before anything else (so every op
 * runs inside, deterministically), then runs `ops` and answers one result each: 'ok' or the
 * error's message (Node's and src/sys's both start with the code).
 */
const CHILD = `
import fs from 'node:fs';
const [cg, sysUrl, opsJson] = process.argv.slice(2);
const sys = await import(sysUrl);
fs.writeFileSync(cg + '/cgroup.procs', String(process.pid));
const out = { cgroup: fs.readFileSync('/proc/self/cgroup', 'utf8'), results: [] };
for (const op of JSON.parse(opsJson)) {
  try {
    if (op.op === 'open') fs.closeSync(fs.openSync(op.path, op.flags));
    else sys.mknod(op.path, (op.type === 'c' ? fs.constants.S_IFCHR : fs.constants.S_IFBLK) | 0o600, sys.makedev(op.major, op.minor));
    out.results.push('ok');
  } catch (e) {
    out.results.push(e.message); // "EPERM: operation not permitted, open '/dev/full'"
  }
}
process.stdout.write(JSON.stringify(out));
`;

async function runInside(t: ExecutionContext, cg: Cg, ops: readonly Op[]): Promise<string[]> {
  const tmp = makeTmp(t, 'layerfs-test-devbpf-');
  const script = path.join(tmp, 'child.mjs');
  fs.writeFileSync(script, CHILD);
  const sysUrl = pathToFileURL(path.join(repoRoot, 'src', 'sys', 'index.ts')).href;
  const child = spawn(process.execPath, ['--import=tsx', script, cg.dir, sysUrl, JSON.stringify(ops)], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cg.children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearTimeout(timer);
  t.is(code, 0, stderr);
  const out = JSON.parse(stdout) as { cgroup: string; results: string[] };
  // Really in the test's cgroup (the default hierarchy's line, "0::/...").
  t.true(out.cgroup.split('\n').includes(`0::/${path.basename(cg.dir)}`), out.cgroup);
  return out.results;
}

const EPERM = /^EPERM: operation not permitted, /;

const NULL_AND_ZERO: readonly DeviceRule[] = [
  { type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
];

t0('only the allowed devices open: null and zero do, full and urandom get EPERM', async (t) => {
  const cg = cgroupFor(t);
  applyDeviceFilterV2(cg.dir, NULL_AND_ZERO);
  const r = await runInside(t, cg, [
    { op: 'open', path: '/dev/null', flags: 'r+' },
    { op: 'open', path: '/dev/zero', flags: 'r' },
    { op: 'open', path: '/dev/full', flags: 'r+' },
    { op: 'open', path: '/dev/full', flags: 'r' },
    { op: 'open', path: '/dev/urandom', flags: 'r' },
  ]);
  t.is(r[0], 'ok');
  t.is(r[1], 'ok');
  t.regex(r[2]!, EPERM);
  t.regex(r[3]!, EPERM);
  t.regex(r[4]!, EPERM);
  // Only the cgroup's tasks: this process (elsewhere) still opens them.
  fs.closeSync(fs.openSync('/dev/full', 'r+'));
  fs.closeSync(fs.openSync('/dev/urandom', 'r'));
});

t0('mknod needs m: refused for a device without a rule, allowed (and usable) where m is granted', async (t) => {
  const cg = cgroupFor(t);
  applyDeviceFilterV2(cg.dir, NULL_AND_ZERO);
  const tmp = makeTmp(t, 'layerfs-test-devbpf-nodes-');
  const r = await runInside(t, cg, [
    { op: 'mknod', path: `${tmp}/full`, type: 'c', major: 1, minor: 7 },
    { op: 'mknod', path: `${tmp}/null`, type: 'c', major: 1, minor: 3 },
    { op: 'open', path: `${tmp}/null`, flags: 'r+' },
  ]);
  t.regex(r[0]!, /^EPERM: operation not permitted, mknod /);
  t.false(fs.existsSync(`${tmp}/full`));
  t.is(r[1], 'ok');
  t.is(r[2], 'ok');
});

t0('access bits: m without rw makes a node that cannot be opened; rw without m cannot be made', async (t) => {
  const cg = cgroupFor(t);
  applyDeviceFilterV2(cg.dir, [
    { type: 'c', major: 1, minor: 3, access: 'rwm' },
    { type: 'c', major: 1, minor: 5, access: 'rw' },
    { type: 'c', major: 1, minor: 7, access: 'm' },
    { type: 'b', major: null, minor: null, access: 'm' },
  ]);
  const tmp = makeTmp(t, 'layerfs-test-devbpf-nodes-');
  const r = await runInside(t, cg, [
    { op: 'mknod', path: `${tmp}/full`, type: 'c', major: 1, minor: 7 },
    { op: 'open', path: `${tmp}/full`, flags: 'r' },
    { op: 'open', path: `${tmp}/full`, flags: 'r+' },
    { op: 'open', path: '/dev/zero', flags: 'r+' },
    { op: 'mknod', path: `${tmp}/zero`, type: 'c', major: 1, minor: 5 },
    { op: 'mknod', path: `${tmp}/urandom`, type: 'c', major: 1, minor: 9 },
    { op: 'mknod', path: `${tmp}/loop0`, type: 'b', major: 7, minor: 0 },
    { op: 'open', path: `${tmp}/loop0`, flags: 'r' },
  ]);
  t.is(r[0], 'ok');
  t.regex(r[1]!, EPERM);
  t.regex(r[2]!, EPERM);
  t.is(r[3], 'ok');
  t.regex(r[4]!, /^EPERM: operation not permitted, mknod /);
  t.regex(r[5]!, /^EPERM: operation not permitted, mknod /);
  t.is(r[6], 'ok'); // b *:* m
  t.regex(r[7]!, EPERM);
});

t0('null is any: c 1:* rw opens every mem device and nothing else; no rules deny everything', async (t) => {
  const wild = cgroupFor(t);
  applyDeviceFilterV2(wild.dir, [{ type: 'c', major: 1, minor: null, access: 'rw' }]);
  const tmp = makeTmp(t, 'layerfs-test-devbpf-nodes-');
  const r = await runInside(t, wild, [
    { op: 'open', path: '/dev/full', flags: 'r+' },
    { op: 'open', path: '/dev/urandom', flags: 'r' },
    { op: 'open', path: '/dev/tty', flags: 'r' }, // c 5:0
    { op: 'mknod', path: `${tmp}/null`, type: 'c', major: 1, minor: 3 },
  ]);
  t.is(r[0], 'ok');
  t.is(r[1], 'ok');
  t.regex(r[2]!, EPERM);
  t.regex(r[3]!, /^EPERM: operation not permitted, mknod /);

  const none = cgroupFor(t);
  applyDeviceFilterV2(none.dir, []);
  const n = await runInside(t, none, [{ op: 'open', path: '/dev/null', flags: 'r' }]);
  t.regex(n[0]!, EPERM);
});

t0('a bad rule list is refused before anything is loaded, with a clear message', (t) => {
  const cg = cgroupFor(t);
  const many: DeviceRule[] = Array.from({ length: 65 }, (_, i) => ({ type: 'c', major: 1, minor: i, access: 'rw' }));
  t.throws(() => applyDeviceFilterV2(cg.dir, many), {
    instanceOf: RangeError,
    message: 'too many device rules: 65 (the cgroup v2 device filter takes at most 64)',
  });
  t.throws(() => cgroupDeviceFilter(cg.dir, toDevRules(many.slice(0, 64)).concat(toDevRules(many.slice(0, 1)))), {
    instanceOf: RangeError,
    message: 'cgroupDeviceFilter: 65 device rules, at most 64 are supported',
  });
  t.throws(() => applyDeviceFilterV2(cg.dir, [{ type: 'c', major: -2, minor: 0, access: 'rw' }]), {
    instanceOf: RangeError,
    message: 'device rule "c -2:0 rw": major must be null or an integer 0..2147483647',
  });
  t.throws(() => applyDeviceFilterV2(cg.dir, [{ type: 'c', major: 1, minor: 3, access: 'x' as 'rw' }]), {
    instanceOf: RangeError,
    message: 'device rule "c 1:3 x": access must be a subset of \'rwm\', in that order (\'rwm\', \'rw\', \'r\', \'m\'...)',
  });
  // 64 is fine.
  t.notThrows(() => applyDeviceFilterV2(cg.dir, many.slice(0, 64)));
});

t0('a directory that is not there: ENOENT from the open, as a SysError', (t) => {
  const missing = path.join(ROOT2!, `layerfs-test-devbpf-missing-${randomBytes(4).toString('hex')}`);
  const err = t.throws(() => applyDeviceFilterV2(missing, NULL_AND_ZERO)) as DeviceFilterError;
  t.is(err.code, 'ENOENT');
  t.is(err.errno, -2);
  t.is(err.syscall, 'open');
  t.is(err.path, missing);
  t.is(err.message, `ENOENT: no such file or directory, open '${missing}'`);
  t.is(err.verifierLog, undefined);
});
