// The `layerfs run` options added for docker compatibility, as parsed: -u NAME[:GROUP],
// --entrypoint, --env-file, --tmpfs, --device, -d/--detach, --name, --restart, --rm. Pure apart
// from the env files the tests write; the last tests go through bin/layerfs for the exit status.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MAX_ENV_FILE_BYTES, readEnvFile } from '../../src/launcher/envfile.ts';
import { parseDevice, parseRestart, parseRunArgs, parseTmpfs, parseUser, RunError } from '../../src/launcher/options.ts';
import { deviceAccess } from '../../src/launcher/security.ts';
import { toDevRules } from '../../src/launcher/devices-bpf.ts';
import { leftovers, runIn, sandbox } from '../helpers/launcher.ts';
import { makeTmp } from '../helpers/mounts.ts';
import { rootfs } from '../helpers/rootfs.ts';
import { isRoot } from './_helpers.ts';

const L = ['--lower', '/a:/b'];

/** parseRunArgs must throw one RunError line, status 125, matching `re`. */
function refuses(t: import('ava').ExecutionContext, argv: string[], re: RegExp, hostEnv: NodeJS.ProcessEnv = {}): void {
  const e = t.throws(() => parseRunArgs(argv, hostEnv), { instanceOf: RunError }, argv.join(' '));
  if (!e) return;
  t.regex(e.message, /^layerfs run: [^\n]+$/, argv.join(' '));
  t.regex(e.message, re, argv.join(' '));
  t.is((e as RunError).status, 125);
}

test('-u: names and numbers, with a group name or number, any mix', (t) => {
  t.deepEqual(parseUser('nobody'), { name: 'nobody' });
  t.deepEqual(parseUser('1000'), { uid: 1000 });
  t.deepEqual(parseUser('web:staff'), { name: 'web', group: 'staff' });
  t.deepEqual(parseUser('1000:staff'), { uid: 1000, group: 'staff' });
  t.deepEqual(parseUser('web:50'), { name: 'web', gid: 50 });
  t.deepEqual(parseUser('0:0'), { uid: 0, gid: 0 });
  t.deepEqual(parseUser('www-data'), { name: 'www-data' });
  t.deepEqual(parseUser('host$'), { name: 'host$' });
  t.deepEqual(parseRunArgs([...L, '-u', 'nobody', 'true'], {}).user, { name: 'nobody' });
  t.deepEqual(parseRunArgs([...L, '--user=web:audio', 'true'], {}).user, { name: 'web', group: 'audio' });
  t.deepEqual(parseRunArgs([...L, '-uweb', 'true'], {}).user, { name: 'web' });
  for (const bad of ['', ':', ':0', '0:', 'a b', 'a:b:c', 'we/b', '4294967296', '99999999999999999999', 'a\nb']) {
    refuses(t, [...L, '-u', bad, 'true'], /bad user '.*': expected NAME or UID, optionally with :GROUP or :GID$/s);
  }
});

test('--entrypoint without an image: the program, the command its arguments', (t) => {
  t.deepEqual(parseRunArgs([...L, '--entrypoint', '/bin/echo', '--', 'a', 'b'], {}).command, ['/bin/echo', 'a', 'b']);
  t.deepEqual(parseRunArgs([...L, '--entrypoint', '/bin/echo', 'a'], {}).command, ['/bin/echo', 'a']);
  t.deepEqual(parseRunArgs([...L, '--entrypoint=/bin/true'], {}).command, ['/bin/true'], 'no command needed');
  const cleared = parseRunArgs([...L, '--entrypoint', '', '--', 'ls', '-l'], {});
  t.deepEqual(cleared.command, ['ls', '-l']);
  t.is(cleared.entrypoint, '');
  refuses(t, [...L, '--entrypoint', ''], /missing command/);
  refuses(t, [...L, '--entrypoint', 'a\0b', 'x'], /--entrypoint contains a NUL byte/);
  // With an image the config decides (image.ts applyImage): nothing is combined here.
  const img = parseRunArgs(['--entrypoint', '/bin/echo', 'img:1', 'x'], {}, (n) => n === 'img:1');
  t.is(img.image, 'img:1');
  t.is(img.entrypoint, '/bin/echo');
  t.deepEqual(img.command, ['x']);
});

test('--env-file: docker\'s format; file entries come before -e whatever the order given', (t) => {
  const dir = makeTmp(t, 'layerfs-test-envfile-');
  const a = path.join(dir, 'a.env');
  fs.writeFileSync(a, '# a comment\n\nA=1\n   B=two words  \nC="quoted"\r\nFROM_HOST\nNOT_ON_HOST\n  # indented comment\nEMPTY=\nD=x=y\n');
  const b = path.join(dir, 'b.env');
  fs.writeFileSync(b, 'A=from b\nE=5');
  t.deepEqual(readEnvFile(a, { FROM_HOST: 'h' }), ['A=1', 'B=two words  ', 'C="quoted"', 'FROM_HOST=h', 'EMPTY=', 'D=x=y']);
  const o = parseRunArgs([...L, '-e', 'A=cli', '--env-file', a, '--env-file=' + b, '-e', 'F=6', 'true'], { FROM_HOST: 'h' });
  t.deepEqual(o.env, ['A=1', 'B=two words  ', 'C="quoted"', 'FROM_HOST=h', 'EMPTY=', 'D=x=y', 'A=from b', 'E=5', 'A=cli', 'F=6']);
  t.deepEqual(o.envFiles, [a, b]);
  t.deepEqual(readEnvFile(b, {}), ['A=from b', 'E=5']);
  fs.writeFileSync(path.join(dir, 'bom.env'), '\ufeffX=1\n');
  t.deepEqual(readEnvFile(path.join(dir, 'bom.env'), {}), ['X=1'], 'a UTF-8 byte order mark is not part of the name');
});

test('--env-file that cannot be used: one line naming the file (and the line), status 125', (t) => {
  const dir = makeTmp(t, 'layerfs-test-envfile-');
  const f = (name: string, content: string | Buffer): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, content);
    return p;
  };
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const cases: [string, RegExp][] = [
    [path.join(dir, 'missing'), /^layerfs run: --env-file .*\/missing: no such file$/],
    [dir, /: not a regular file$/],
    [fifo, /fifo: not a regular file$/], // never waited on
    [f('big', Buffer.alloc(MAX_ENV_FILE_BYTES + 1, 'A')), /big: larger than 1048576 bytes$/],
    [f('utf', Buffer.from([0x41, 0x3d, 0xff, 0x0a])), /utf: not valid UTF-8$/],
    [f('name', 'OK=1\n1BAD=2\n'), /name line 2: bad variable name '1BAD'/],
    [f('blank', 'MY VAR=1\n'), /blank line 1: variable 'MY VAR' contains blanks$/],
    [f('noname', '=1\n'), /noname line 1: no variable name before '='$/],
  ];
  for (const [file, re] of cases) refuses(t, [...L, '--env-file', file, 'true'], re);
  refuses(t, [...L, '--env-file', '', 'true'], /--env-file needs a file name/);
  // Exactly 1 MiB is fine.
  t.is(readEnvFile(f('max', Buffer.alloc(MAX_ENV_FILE_BYTES, '#')), {}).length, 0);
});

test('--tmpfs: docker\'s defaults rw,noexec,nosuid,nodev; the options it accepts', (t) => {
  t.deepEqual(parseTmpfs('/data'), { target: '/data', readonly: false, noexec: true, nosuid: true, nodev: true, data: [] });
  t.deepEqual(parseTmpfs('/run/x/:ro,exec,suid,dev,size=64m,mode=1777,uid=1000,gid=1000,size=1g'), {
    target: '/run/x',
    readonly: true,
    noexec: false,
    nosuid: false,
    nodev: false,
    data: ['size=1g', 'mode=1777', 'uid=1000', 'gid=1000'],
  });
  t.deepEqual(parseTmpfs('/a:rw,noexec,nosuid,nodev,size=50%').data, ['size=50%']);
  t.deepEqual(parseRunArgs([...L, '--tmpfs', '/a', '--tmpfs=/b:size=1k', 'true'], {}).tmpfs.map((m) => [m.target, m.data]), [
    ['/a', []],
    ['/b', ['size=1k']],
  ]);
  const bad: [string, RegExp][] = [
    ['', /bad --tmpfs '': expected PATH\[:OPTIONS\]/],
    [':size=1m', /expected PATH\[:OPTIONS\]/],
    ['data', /must be an absolute path inside the container/],
    ['/', /cannot mount over the container's root/],
    ['/a/../..', /outside the container's root/],
    ['/a:foo', /unsupported option 'foo' \(supported: rw, ro, exec, noexec, suid, nosuid, dev, nodev, size=, mode=, uid=, gid=\)/],
    ['/a:nr_inodes=5', /unsupported option 'nr_inodes=5'/],
    ['/a:size=lots', /size=lots is not a valid size/],
    ['/a:mode=999', /mode=999 is not a valid octal mode/],
    ['/a:uid=-1', /uid=-1 is not a valid uid/],
    ['/a:rw,,ro', /unsupported option ''/],
  ];
  for (const [spec, re] of bad) refuses(t, [...L, '--tmpfs', spec, 'true'], re);
  refuses(t, [...L, '--tmpfs', '/x', '-v', '/h:/x', 'true'], /two of -v, --tmpfs and --device are mounted at '\/x'/);
});

test('--device: HOST[:CONTAINER[:PERMS]] split as docker does; below /dev; permissions a subset of rwm', (t) => {
  t.deepEqual(parseDevice('/dev/net/tun'), { host: '/dev/net/tun', target: '/dev/net/tun', access: 'rwm' });
  t.deepEqual(parseDevice('/dev/net/tun:r'), { host: '/dev/net/tun', target: '/dev/net/tun', access: 'r' }, 'a second field that is PERMS');
  t.deepEqual(parseDevice('/h/tun:/dev/tun0'), { host: '/h/tun', target: '/dev/tun0', access: 'rwm' });
  t.deepEqual(parseDevice('/h/tun:/dev/tun0:mw'), { host: '/h/tun', target: '/dev/tun0', access: 'wm' });
  t.deepEqual(parseRunArgs([...L, '--device', '/dev/fuse', '--device=/dev/kvm:rw', 'true'], {}).devices.map((d) => d.access), ['rwm', 'rw']);
  const bad: [string, RegExp][] = [
    ['/a:/dev/b:rwx', /permissions 'rwx' must be a combination of r, w and m/],
    ['/a:/dev/b:rr', /permissions 'rr'/],
    ['/a:/dev/b:r:x', /expected HOST\[:CONTAINER\[:PERMS\]\]/],
    ['/a::r', /expected HOST\[:CONTAINER\[:PERMS\]\]/],
    ['dev/tun:/dev/tun', /the host path must be absolute/],
    ['/a:dev/b', /must be an absolute path inside the container/],
    ['/h/tun', /the container path '\/h\/tun' must be below \/dev/],
    ['/a:/etc/x', /must be below \/dev/],
    ['/a:/dev/../etc/x', /outside the container's root/],
    ['/a:/dev', /must be below \/dev/],
    ['/a:/dev/null', /'\/dev\/null' is one of the container's own \/dev entries/],
    ['/a:/dev/pts/9', /one of the container's own \/dev entries/],
    ['/a:/dev/shm/x', /one of the container's own \/dev entries/],
  ];
  for (const [spec, re] of bad) refuses(t, [...L, '--device', spec, 'true'], re);
  refuses(t, [...L, '--device', '/a:/dev/x', '--device', '/b:/dev/x', 'true'], /two of -v, --tmpfs and --device are mounted at '\/dev\/x'/);
});

test('device permissions: any subset of rwm, in the cgroup v1 and v2 forms', (t) => {
  t.is(deviceAccess('mwr'), 'rwm');
  t.is(deviceAccess('wr'), 'rw');
  t.is(deviceAccess('m'), 'm');
  for (const bad of ['', 'x', 'rr', 'rwmr', 'R']) t.is(deviceAccess(bad), null, bad);
  // BPF_DEVCG_ACC_MKNOD 1, READ 2, WRITE 4.
  const rules = toDevRules(['r', 'w', 'm', 'rw', 'rm', 'wm', 'rwm'].map((access) => ({ type: 'c' as const, major: 10, minor: 200, access: access as 'r' })));
  t.deepEqual(rules.map((r) => r.access), [2, 4, 1, 6, 3, 5, 7]);
});

test('-d, --name, --restart, --rm: parsed for the engine', (t) => {
  const o = parseRunArgs([...L, '-d', '--name', 'web-1.a_b', '--restart', 'on-failure:3', 'true'], {});
  t.true(o.detach);
  t.is(o.name, 'web-1.a_b');
  t.deepEqual(o.restart, { policy: 'on-failure', maxRetries: 3 });
  t.false(o.rm);
  const d = parseRunArgs([...L, 'true'], {});
  t.false(d.detach);
  t.is(d.name, undefined);
  t.is(d.restart, undefined);
  t.false(d.rm);
  t.true(parseRunArgs([...L, '--detach', 'true'], {}).detach);
  t.true(parseRunArgs([...L, '-dit', 'true'], {}).detach, 'glued to other flags');
  t.true(parseRunArgs([...L, '--rm', 'true'], {}).rm);
  t.deepEqual(parseRestart('no'), { policy: 'no', maxRetries: 0 });
  t.deepEqual(parseRestart('on-failure'), { policy: 'on-failure', maxRetries: 0 });
  t.is(parseRunArgs([...L, '--name', 'x'.repeat(128), 'true'], {}).name?.length, 128);
  const bad: [string[], RegExp][] = [
    [['--name', '-x'], /bad --name '-x': only \[a-zA-Z0-9\]\[a-zA-Z0-9_.-\] are allowed, at most 128 characters/],
    [['--name', '_x'], /bad --name '_x'/],
    [['--name', 'a b'], /bad --name 'a b'/],
    [['--name', 'a/b'], /bad --name 'a\/b'/],
    [['--name', 'x'.repeat(129)], /bad --name/],
    [['--restart', 'always'], /^layerfs run: --restart always: only 'no' and 'on-failure\[:N\]' are supported for now$/],
    [['--restart', 'unless-stopped'], /--restart unless-stopped: only 'no' and 'on-failure\[:N\]' are supported for now/],
    [['--restart', 'sometimes'], /bad --restart 'sometimes': unknown policy 'sometimes'/],
    [['--restart', 'on-failure:x'], /the maximum retry count must be an integer/],
    [['--restart', 'on-failure:-1'], /the maximum retry count cannot be negative/],
    [['--restart', 'no:3'], /a maximum retry count can only be used with 'on-failure'/],
    [['--rm', '--keep'], /--rm and --keep exclude each other/],
    [['--rm', '--restart', 'on-failure'], /--rm and --restart on-failure exclude each other/],
    [['--rm=1'], /option '--rm' takes no value/],
    [['-d=1'], /unknown option '-d=1'/],
  ];
  for (const [args, re] of bad) refuses(t, [...L, ...args, 'true'], re);
});

// Through bin/layerfs: the exit status and the single line, and nothing created.
const t0 = isRoot() ? test.serial : test.skip;

t0('bad new options through `layerfs run`: exit status 125, one line, nothing started or left', async (t) => {
  const sb = sandbox(t);
  const marker = path.join(sb.dir, 'ran');
  const notDevice = path.join(sb.dir, 'plain');
  fs.writeFileSync(notDevice, '');
  const cases: [string[], string][] = [
    [['-d', '-t'], 'layerfs run: -t with -d is not supported yet (no attach): run it in the foreground, or without -t'],
    [['--restart', 'on-failure:2'], 'layerfs run: --restart needs -d: the engine restarts a container it supervises'],
    [['--restart', 'always'], "layerfs run: --restart always: only 'no' and 'on-failure[:N]' are supported for now"],
    [['--name', 'no way'], "layerfs run: bad --name 'no way': only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at most 128 characters"],
    [['-u', 'a:b:c'], "layerfs run: bad user 'a:b:c': expected NAME or UID, optionally with :GROUP or :GID"],
    [['--tmpfs', '/x:nosymfollow'], "layerfs run: bad --tmpfs '/x:nosymfollow': unsupported option 'nosymfollow' (supported: rw, ro, exec, noexec, suid, nosuid, dev, nodev, size=, mode=, uid=, gid=)"],
    [['--device', `${notDevice}:/dev/x`], `layerfs run: --device '${notDevice}': not a device node (only character and block devices can be passed)`],
    [['--device', `${sb.dir}/none:/dev/x`], `layerfs run: --device '${sb.dir}/none': no such file on the host`],
    [['--device', '/dev/null:/etc/null'], "layerfs run: bad --device '/dev/null:/etc/null': the container path '/etc/null' must be below /dev"],
    [['--entrypoint', ''], 'layerfs run: missing command: layerfs run [OPTIONS] --lower A:B -- CMD [ARGS...]'],
  ];
  for (const [opts, line] of cases) {
    const r = await runIn(sb, ['--lower', rootfs().lower, '-v', `${sb.dir}:/host`, ...opts, '--', ...(opts[0] === '--entrypoint' ? [] : ['/bin/sh', '-c', 'touch /host/ran'])]);
    t.is(r.code, 125, opts.join(' '));
    t.is(r.stderr, `${line}\n`, opts.join(' '));
    t.is(r.stdout, '');
    t.false(fs.existsSync(marker), `${opts.join(' ')}: nothing ran`);
  }
  t.deepEqual(leftovers(sb), []);
});

t0('--restart no and --rm are accepted and run in the foreground', async (t) => {
  const sb = sandbox(t);
  const r = await runIn(sb, ['--lower', rootfs().lower, '--restart', 'no', '--rm', '--name', 'fg', '--', '/bin/echo', 'ran']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'ran\n');
  t.is(r.stderr, '');
});
