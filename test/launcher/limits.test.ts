// Resource limits through cgroups (v1 here; v2 where it is the mounted hierarchy), proven from
// inside the container; the cgroup is removed afterwards (asserted by the sandbox teardown).

import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hierarchies } from '../../src/launcher/cgroup.ts';
import { launch, sandbox, waitFor } from '../helpers/launcher.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { isRoot, sh } from './_helpers.ts';

const t0 = isRoot() ? test.serial : test.skip; // serial: each test starts real containers

t0('--pids-limit contains a fork bomb; everything it forked dies with the container', async (t) => {
  const sb = sandbox(t);
  const limit = 12;
  // A bounded bomb: keeps forking long-lived children until fork fails (at most 200 tries).
  const bomb = 'i=0; while [ $i -lt 200 ]; do sleep 300 & i=$((i+1)); echo $i > /tmp/n; done';
  const started = Date.now();
  const r = await sh(sb, `sh -c '${bomb}' 2>/dev/null; read n < /tmp/n; echo "forked $n"`, ['--pids-limit', String(limit)], { timeoutMs: 90_000 });
  t.is(r.code, 0, r.stderr);
  const n = Number(/forked (\d+)/.exec(r.stdout)?.[1]);
  // The outer shell and the bomb's shell take two of the pids; the sleeps got the rest.
  t.true(n >= limit - 3 && n <= limit - 2, `forked ${n} with pids.max ${limit}`);
  t.true(Date.now() - started < 60_000, 'the 300 s sleeps died with PID 1');
});

t0('--memory: a hog is OOM-killed and the launcher says so', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'a=0123456789abcdef; while :; do a=$a$a; done', ['--memory', '32m'], { timeoutMs: 90_000 });
  t.is(r.code, 137);
  t.is(r.stderr, 'layerfs run: the container ran out of memory (limit 33554432 bytes): the kernel OOM-killed CMD\n');
});

t0('--memory: a child killed by the OOM killer is reported even when CMD survives', async (t) => {
  const sb = sandbox(t);
  const r = await sh(sb, 'sh -c \'a=0123456789abcdef; while :; do a=$a$a; done\'; echo "child $?"', ['--memory', '24m'], { timeoutMs: 90_000 });
  t.is(r.code, 0);
  t.is(r.stdout, 'child 137\n');
  t.regex(r.stderr, /^(Killed\n)?layerfs run: the container hit its memory limit \(25165824 bytes\): the kernel OOM-killed 1 process\n$/);
});

t0('--cpus: a busy loop gets the CPU share asked for', async (t) => {
  const sb = sandbox(t);
  // busybox time: user+sys over ~2 s of wall time; 0.25 CPU gives at most ~0.5 s.
  const r = await sh(sb, 'time timeout 2 sh -c "while :; do :; done"', ['--cpus', '0.25'], { timeoutMs: 90_000 });
  const user = Number(/user\s+0m\s*([\d.]+)s/.exec(r.stderr)?.[1]);
  const sys = Number(/sys\s+0m\s*([\d.]+)s/.exec(r.stderr)?.[1]);
  t.false(Number.isNaN(user + sys), r.stderr);
  t.true(user + sys <= 0.75, `used ${user + sys} s of CPU in 2 s with --cpus 0.25`);
  t.true(user + sys > 0.05, 'it did run');
});

t0('the limits are in the container\'s cgroup while it runs, and the cgroup goes away', async (t) => {
  const sb = sandbox(t);
  const vol = path.join(sb.dir, 'vol');
  fs.mkdirSync(vol);
  const l = launch(sb, ['--lower', rootfs().lower, '--memory', '64m', '--pids-limit', '50', '--cpus', '1.5', '-v', `${vol}:/v`, '--', '/bin/sh', '-c', 'touch /v/ready; sleep 300']);
  await waitFor(() => fs.existsSync(path.join(vol, 'ready')), 60_000, 'the container');
  const hs = hierarchies();
  const read = (ctl: string, file: string): string => {
    const h = hs.find((x) => x.controllers.includes(ctl))!;
    return fs.readFileSync(path.join(h.own, `layerfs-${l.id}`, file), 'utf8').trim();
  };
  if (hs[0].version === 1) {
    t.is(read('memory', 'memory.limit_in_bytes'), String(64 * 1024 * 1024));
    t.is(read('pids', 'pids.max'), '50');
    t.is(read('cpu', 'cpu.cfs_quota_us'), '150000');
    t.is(read('cpu', 'cpu.cfs_period_us'), '100000');
    const procs = read('pids', 'cgroup.procs').split('\n');
    t.is(procs.length, 1, 'sleep (sh executed it in its place)');
  } else {
    t.is(read('memory', 'memory.max'), String(64 * 1024 * 1024));
    t.is(read('pids', 'pids.max'), '50');
    t.is(read('cpu', 'cpu.max'), '150000 100000');
  }
  l.child.kill('SIGTERM');
  const r = await l.result;
  t.is(r.code, 137, 'sh as PID 1 ignores SIGTERM: SIGKILL after --stop-timeout');
});
