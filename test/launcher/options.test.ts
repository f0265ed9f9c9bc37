// `layerfs run` argument parsing (pure: no mounts, no processes).

import test from 'ava';
import { containerPath, parseBytes, parseRunArgs, parseVolume, RunError } from '../../src/launcher/options.ts';

const L = ['--lower', '/a:/b'];

test('a full command line', (t) => {
  const o = parseRunArgs(
    ['--lower', '/l1:/l2\\:x', '--upper', '/u', '--work', '/w', '-e', 'A=1', '--env=B=2', '-w', '/srv', '-u', '1000:100', '--hostname', 'box', '--read-only', '-v', '/h:/c:ro', '--volume=/h2:/c2', '--memory', '64m', '--pids-limit', '20', '--cpus', '0.5', '--net', 'host', '--userns', '-it', '--stop-timeout', '3', '--', 'sh', '-c', 'x'],
    {},
  );
  t.deepEqual(o.lowers, ['/l1', '/l2:x']);
  t.is(o.upper, '/u');
  t.is(o.work, '/w');
  t.deepEqual(o.env, ['A=1', 'B=2']);
  t.is(o.workdir, '/srv');
  t.deepEqual(o.user, { uid: 1000, gid: 100 });
  t.is(o.hostname, 'box');
  t.true(o.readOnly);
  t.deepEqual(o.volumes, [
    { host: '/h', target: '/c', readonly: true },
    { host: '/h2', target: '/c2', readonly: false },
  ]);
  t.is(o.memory, 64 * 1024 * 1024);
  t.is(o.pidsLimit, 20);
  t.is(o.cpus, 0.5);
  t.is(o.net, 'host');
  t.true(o.userns && o.interactive && o.tty);
  t.deepEqual(o.idmap, { kind: 'auto', size: 65536 });
  t.is(o.stopTimeout, 3);
  t.deepEqual(o.command, ['sh', '-c', 'x']);
});

test('the command starts at the first non-option, -- is optional, options after it belong to CMD', (t) => {
  t.deepEqual(parseRunArgs([...L, 'ls', '-l', '--lower'], {}).command, ['ls', '-l', '--lower']);
  t.deepEqual(parseRunArgs([...L, '--', '-weird'], {}).command, ['-weird']);
  t.deepEqual(parseRunArgs([...L, '--', 'ls', '--help'], {}).command, ['ls', '--help']);
  t.false(parseRunArgs([...L, '--', 'ls', '--help'], {}).help);
});

test('defaults: network none, no user namespace for root, 10 s stop timeout', (t) => {
  const o = parseRunArgs([...L, 'true'], {});
  t.is(o.net, 'none');
  t.false(o.userns);
  t.is(o.stopTimeout, 10);
  t.false(o.keep);
  t.deepEqual(o.volumes, []);
});

test('-e KEY takes the launcher\'s value, or nothing when it has none', (t) => {
  t.deepEqual(parseRunArgs([...L, '-e', 'X', '-e', 'Y', 'true'], { X: 'from host' }).env, ['X=from host']);
  t.throws(() => parseRunArgs([...L, '-e', '1X=2', 'true'], {}), { instanceOf: RunError, message: "layerfs run: bad environment variable '1X=2': expected KEY=VALUE" });
});

test('sizes', (t) => {
  t.is(parseBytes('1048576'), 1048576);
  t.is(parseBytes('512k'), 512 * 1024);
  t.is(parseBytes('64m'), 64 * 1024 ** 2);
  t.is(parseBytes('1G'), 1024 ** 3);
  t.is(parseBytes('1.5g'), 1.5 * 1024 ** 3);
  t.is(parseBytes('64MiB'), 64 * 1024 ** 2);
  for (const bad of ['', 'lots', '-1', '0', '1x', '64 m b']) t.is(parseBytes(bad), null, bad);
});

test('volumes and container paths', (t) => {
  t.deepEqual(parseVolume('/h:/c/'), { host: '/h', target: '/c', readonly: false });
  t.deepEqual(parseVolume('/h:/c//d/./e:rw'), { host: '/h', target: '/c/d/e', readonly: false });
  const bad: [string, RegExp][] = [
    ['/h', /expected HOST:CONTAINER/],
    ['/h:', /expected HOST:CONTAINER/],
    [':/c', /expected HOST:CONTAINER/],
    ['/h:/c:ro:x', /expected HOST:CONTAINER/],
    ['/h:/c:rx', /mode must be 'ro' or 'rw'/],
    ['h:/c', /the host path must be absolute/],
    ['/h:c', /must be an absolute path inside the container/],
    ['/h:/../etc', /outside the container's root/],
    ['/h:/a/../../etc', /outside the container's root/],
    ['/h:/', /cannot mount over the container's root/],
  ];
  for (const [spec, re] of bad) t.throws(() => parseVolume(spec), { instanceOf: RunError, message: re }, spec);
  t.is(containerPath('/a/b/', 'x'), '/a/b');
});

test('bad input is one RunError line, status 125', (t) => {
  const bad: [string[], RegExp][] = [
    [[...L], /missing command/],
    [['true'], /missing --lower/],
    [['--lower', '', 'true'], /needs at least one layer/],
    [[...L, '--lower', '/c', 'true'], /--lower given twice/],
    [[...L, '--upper', '/u', 'true'], /--upper and --work go together/],
    [[...L, '--upper', '/u', '--work', '/w', '--keep', 'true'], /--keep is for the throw-away upper/],
    [['--rootfs', '/r', ...L, 'true'], /cannot be combined/],
    [[...L, '-m', '1k', 'true'], /too small/],
    [[...L, '--pids-limit', '0', 'true'], /bad pids limit/],
    [[...L, '--cpus', '0', 'true'], /bad cpu limit/],
    [[...L, '--cpus', 'x', 'true'], /bad cpu limit/],
    [[...L, '-u', '1000:x y', 'true'], /bad user/],
    [[...L, '--hostname', 'a b', 'true'], /bad hostname/],
    [[...L, '--net', 'bridge', 'true'], /bad network/],
    [[...L, '-v', '/a:/x', '-v', '/b:/x', 'true'], /two volumes are mounted at '\/x'/],
    [[...L, '--keep=1', 'true'], /takes no value/],
    [[...L, '--memory'], /needs a value/],
    [[...L, '-x', 'true'], /unknown option '-x'/],
    [[...L, '--', ''], /empty string/],
  ];
  for (const [argv, re] of bad) {
    const e = t.throws(() => parseRunArgs(argv, {}), { instanceOf: RunError }, argv.join(' '));
    t.regex(e!.message, /^layerfs run: [^\n]+$/);
    t.regex(e!.message, re, argv.join(' '));
    t.is((e as RunError).status, 125);
  }
});

test('--cleanup and --help need nothing else', (t) => {
  t.true(parseRunArgs(['--cleanup'], {}).cleanupOnly);
  t.true(parseRunArgs(['--help'], {}).help);
});

test('security options: capabilities, --privileged, --security-opt', (t) => {
  const o = parseRunArgs([...L, '--cap-add', 'net_admin', '--cap-add=CAP_SYS_TIME,MKNOD', '--cap-drop', 'ALL', '--privileged', '--security-opt', 'seccomp=/p.json', 'true'], {});
  t.deepEqual(o.capAdd, ['NET_ADMIN', 'SYS_TIME', 'MKNOD']);
  t.deepEqual(o.capDrop, ['ALL']);
  t.true(o.privileged);
  t.deepEqual(o.seccomp, { file: '/p.json' });
  t.is(parseRunArgs([...L, '--security-opt', 'seccomp=unconfined', 'true'], {}).seccomp, 'unconfined');
  t.is(parseRunArgs([...L, 'true'], {}).seccomp, 'default');
  t.false(parseRunArgs([...L, 'true'], {}).privileged);
  t.throws(() => parseRunArgs([...L, '--cap-add', 'SUPERPOWER', 'true'], {}), { instanceOf: RunError, message: /--cap-add 'SUPERPOWER': unknown capability/ });
  t.throws(() => parseRunArgs([...L, '--security-opt', 'no-new-privileges=false', 'true'], {}), { message: /cannot be turned off/ });
  t.throws(() => parseRunArgs([...L, '--security-opt', 'seccomp', 'true'], {}), { message: /expected seccomp=unconfined or seccomp=PROFILE.json/ });
  t.throws(() => parseRunArgs([...L, '--security-opt', 'systempaths=unconfined', 'true'], {}), { message: /unsupported --security-opt/ });
});

test('capability sets as docker computes them', async (t) => {
  const { capabilitySet, DEFAULT_CAP_NAMES, CAPS } = await import('../../src/launcher/security.ts');
  t.deepEqual(capabilitySet([], [], false), [...DEFAULT_CAP_NAMES].sort((a, b) => CAPS[a] - CAPS[b]));
  t.false(capabilitySet([], [], false).includes('MKNOD'), 'podman drops MKNOD');
  t.false(capabilitySet([], [], false).includes('NET_RAW'));
  t.deepEqual(capabilitySet(['CHOWN'], ['ALL'], false), ['CHOWN']);
  t.deepEqual(capabilitySet([], ['KILL', 'CHOWN'], false).length, DEFAULT_CAP_NAMES.length - 2);
  t.is(capabilitySet(['ALL'], ['SYS_ADMIN'], false).length, Object.keys(CAPS).length - 1);
  t.is(capabilitySet([], [], true).length, Object.keys(CAPS).length);
  t.true(capabilitySet(['MKNOD'], [], false).includes('MKNOD'));
});

test('user namespace options: auto, explicit maps, subordinate id names', (t) => {
  t.false(parseRunArgs([...L, 'true'], {}).userns);
  t.deepEqual(parseRunArgs([...L, '--userns=auto:size=1024', 'true'], {}).idmap, { kind: 'auto', size: 1024 });
  const host = parseRunArgs([...L, '--userns=host', 'true'], {});
  t.false(host.userns);
  const m = parseRunArgs([...L, '--uidmap', '0:100000:1000', '--uidmap', '1000:5000:1', 'true'], {});
  t.true(m.userns);
  t.deepEqual(m.idmap, {
    kind: 'map',
    uid: [{ container: 0, host: 100000, size: 1000 }, { container: 1000, host: 5000, size: 1 }],
    gid: [{ container: 0, host: 100000, size: 1000 }, { container: 1000, host: 5000, size: 1 }],
  });
  t.deepEqual(parseRunArgs([...L, '--subuidname', 'alice', 'true'], {}).idmap, { kind: 'subid', user: 'alice', group: 'alice' });
  t.throws(() => parseRunArgs([...L, '--uidmap', '0:100000', 'true'], {}), { message: /expected CONTAINER_ID:HOST_ID:COUNT/ });
  t.throws(() => parseRunArgs([...L, '--userns=keep-id', 'true'], {}), { message: /bad --userns 'keep-id'/ });
  t.throws(() => parseRunArgs([...L, '--userns=auto', '--uidmap', '0:1:1', 'true'], {}), { message: /cannot be combined/ });
  t.throws(() => parseRunArgs([...L, '--userns=auto:size=70000', 'true'], {}), { message: /size must be from 1 to 65536/ });
});

test('id ranges: overlaps, host root and an unmapped container root are refused', async (t) => {
  const { checkRanges, subidRanges } = await import('../../src/launcher/userns.ts');
  t.notThrows(() => checkRanges([{ container: 0, host: 100000, size: 65536 }], 'm'));
  t.throws(() => checkRanges([{ container: 0, host: 0, size: 1 }], 'm'), { message: /host id 0/ });
  t.throws(() => checkRanges([{ container: 1, host: 100000, size: 1 }], 'm'), { message: /container id 0 is not mapped/ });
  t.throws(() => checkRanges([{ container: 0, host: 100000, size: 10 }, { container: 5, host: 200000, size: 10 }], 'm'), { message: /container ranges overlap/ });
  t.throws(() => checkRanges([{ container: 0, host: 100000, size: 10 }, { container: 10, host: 100005, size: 10 }], 'm'), { message: /host ranges overlap/ });
  const os = await import('node:os');
  const fs = await import('node:fs');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-subid-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'subuid');
  fs.writeFileSync(f, 'bob:100000:65536\nalice:165536:1000\n1001:300000:10\nalice:400000:5\n# junk\n');
  t.deepEqual(subidRanges(f, 'alice'), [{ container: 0, host: 165536, size: 1000 }, { container: 1000, host: 400000, size: 5 }]);
  t.deepEqual(subidRanges(f, 'carol', 1001), [{ container: 0, host: 300000, size: 10 }]);
  t.deepEqual(subidRanges(f, 'nobody'), []);
});
