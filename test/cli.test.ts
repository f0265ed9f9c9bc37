// The command layer (src/cli/): --help on every command and subcommand, unknown commands, one
// line and exit status 2 for every usage error, and the mount forms podman and mount(8) use
// still routed to a mount (real mounts: test/fuse/cli.test.ts). Runs bin/layerfs as a process;
// nothing here mounts.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from './helpers/exec.ts';
import { layerfsBin } from './helpers/mounts.ts';
import { parseCommandArgs, UsageError } from '../src/cli/args.ts';
import { COMMANDS, type Command } from '../src/cli/commands.ts';
import { route } from '../src/cli/main.ts';
import { mountWantsHelp } from '../src/cli/mount.ts';
import { ConfigError, parseMountArgs } from '../src/config.ts';

// Usage errors happen before the store is touched; a store that does not exist makes sure.
const env = { LAYERFS_STORE: path.join(os.tmpdir(), 'layerfs-cli-test-no-store') };

async function layerfs(args: string[]) {
  const r = await run(layerfsBin, args, { env, timeoutMs: 30_000 });
  return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
}

/** Every visible command and subcommand, as its words: ['mount'], ['image', 'ls'], … */
function commandWords(): { words: string[]; cmd: Command }[] {
  const out: { words: string[]; cmd: Command }[] = [];
  for (const c of COMMANDS) {
    if (c.hidden) continue;
    out.push({ words: [c.name], cmd: c });
    if (c.kind === 'group') for (const s of c.subcommands) if (!s.hidden) out.push({ words: [c.name, s.name], cmd: s });
  }
  return out;
}

// ------------------------------------------------------------------------------- --help

test('layerfs --help, -h and help list every command of the table on stdout, exit 0', async (t) => {
  for (const args of [['--help'], ['-h'], ['help']]) {
    const r = await layerfs(args);
    t.is(r.code, 0, args.join(' '));
    t.is(r.stderr, '');
    t.true(r.stdout.startsWith('usage: layerfs COMMAND [ARGS...]\n'), r.stdout);
    for (const c of COMMANDS) {
      if (c.hidden) t.false(r.stdout.includes(c.name), c.name);
      else t.regex(r.stdout, new RegExp(`^  ${c.name} +${c.summary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    }
  }
});

test('layerfs alone: the usage on stderr, exit 2', async (t) => {
  const r = await layerfs([]);
  t.is(r.code, 2);
  t.is(r.stdout, '');
  t.true(r.stderr.startsWith('usage: layerfs COMMAND'));
});

for (const { words, cmd } of commandWords()) {
  test(`layerfs ${words.join(' ')} --help / -h / help: its usage on stdout, exit 0`, async (t) => {
    const forms = [[...words, '--help'], [...words, '-h'], ['help', ...words]];
    if (cmd.name === 'run') forms.splice(1, 1); // run's -h is --hostname, as docker's
    if (words.length === 2) forms.push([words[0]!, 'help', words[1]!]);
    const texts = new Set<string>();
    for (const args of forms) {
      const r = await layerfs(args);
      t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      t.is(r.stderr, '', args.join(' '));
      t.true(r.stdout.startsWith(`usage: layerfs ${words.join(' ')}`), `${args.join(' ')}: ${r.stdout}`);
      texts.add(r.stdout);
    }
    t.is(texts.size, 1, 'the same text every way');
  });
}

test('--help wins over other arguments and over mistakes (not after --, not as a value)', async (t) => {
  for (const args of [
    ['diff', '/nowhere', '--help'],
    ['image', 'import', '--frob', '--help'],
    ['commit', '-h', '--name', 'Bad Name'],
    ['umount', 'a', 'b', '--help'],
    ['mount', '-o', 'lowerdir=/nowhere', '--help', '/m'],
    ['-o', 'lowerdir=/nowhere', '/m', '-h'],
  ]) {
    const r = await layerfs(args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stdout, /^usage: layerfs /, args.join(' '));
  }
  // After `--` or as an option's value it is an argument.
  const r = await layerfs(['explain', '/nowhere', '--', '--help']);
  t.is(r.code, 3, r.stderr);
  t.regex(r.stderr, /^layerfs explain: '\/nowhere' is not a layerfs mount/);
  const m = await layerfs(['commit', '/nowhere', '-m', '--help']);
  t.is(m.code, 1, m.stderr);
  t.regex(m.stderr, /^layerfs commit: upper '\/nowhere' does not exist$/m);
  t.true(mountWantsHelp(['-o', 'lowerdir=/a', '--help', '/m']));
  t.false(mountWantsHelp(['-o', '--help', '/m']));
  t.false(mountWantsHelp(['--trace', '-h', '-o', 'lowerdir=/a', '/m']));
  t.false(mountWantsHelp(['-o', 'lowerdir=/a', '--', '--help']));
});

test('--version, -V and version print the version', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const args of [['--version'], ['-V'], ['version']]) {
    const r = await layerfs(args);
    t.is(r.code, 0);
    t.is(r.stdout, `layerfs ${pkg.version}\n`);
  }
});

// ------------------------------------------------------------------------------- unknown commands

test('an unknown command: one line, exit 2 (with a hint when a command is close)', async (t) => {
  const cases: [string[], string][] = [
    [['frobnicate'], "layerfs: 'frobnicate' is not a layerfs command (see layerfs --help)"],
    [['build', '.'], "layerfs: 'build' is not a layerfs command (see layerfs --help)"],
    [['imgae', 'ls'], "layerfs: 'imgae' is not a layerfs command (see layerfs --help); did you mean 'image'?"],
    [['comit', 'u'], "layerfs: 'comit' is not a layerfs command (see layerfs --help); did you mean 'commit'?"],
    [['ls'], "layerfs: 'ls' is not a layerfs command (see layerfs --help); did you mean 'image ls'?"],
    [['help', 'frobnicate'], "layerfs: 'frobnicate' is not a layerfs command (see layerfs --help)"],
  ];
  for (const [args, line] of cases) {
    const r = await layerfs(args);
    t.is(r.code, 2, args.join(' '));
    t.is(r.stderr, line + '\n', args.join(' '));
    t.is(r.stdout, '');
  }
});

// ------------------------------------------------------------------------------- usage errors

test('a usage error of each command: one line `layerfs CMD: …` on stderr, exit 2', async (t) => {
  const cases: [string[], string][] = [
    [['umount'], 'layerfs umount: needs exactly one MOUNTPOINT'],
    [['umount', 'a', 'b'], 'layerfs umount: needs exactly one MOUNTPOINT'],
    [['unmount', '-x', '/m'], "layerfs umount: unknown option '-x'"],
    [['explain', '/m'], 'layerfs explain: needs MOUNTPOINT and PATH'],
    [['explain', '--yaml', '/m', '/x'], "layerfs explain: unknown option '--yaml'"],
    [['trace'], 'layerfs trace: needs one MOUNTPOINT or trace FILE'],
    [['trace', '--json=1', '/m'], "layerfs trace: option '--json' takes no value"],
    [['image'], 'layerfs image: needs a subcommand: import, ls, rm, export (see layerfs image --help)'],
    [['images', 'pull', 'x'], "layerfs image: unknown subcommand 'pull' (import, ls, rm, export)"],
    [['image', 'lss'], "layerfs image: unknown subcommand 'lss' (import, ls, rm, export); did you mean 'ls'?"],
    [['image', '-q'], "layerfs image: unknown option '-q'"],
    [['image', 'import'], 'layerfs image import: needs exactly one SOURCE (oci:DIR[:TAG] or docker-archive:FILE)'],
    [['image', 'import', 'oci:x', '--name'], "layerfs image import: option '--name' needs a value"],
    [['image', 'ls', 'x'], 'layerfs image ls: takes no arguments'],
    [['image', 'list', '-qx'], "layerfs image ls: unknown option '-x'"],
    [['image', 'rm'], 'layerfs image rm: needs at least one image NAME'],
    [['image', 'export', 'a'], 'layerfs image export: needs NAME and DIR'],
    [['diff'], 'layerfs diff: needs exactly one UPPER directory'],
    [['diff', 'u', '--from', 'a', '--lower', 'b'], 'layerfs diff: --from and --lower exclude each other'],
    [['diff', 'u', '--userxattr=yes'], "layerfs diff: option '--userxattr' takes no value"],
    [['diff', 'u', '--lower', ':'], 'layerfs diff: --lower needs at least one layer'],
    [['commit'], 'layerfs commit: needs exactly one UPPER directory'],
    [['commit', 'u', '--name', 'a', '--name=b'], "layerfs commit: option '--name' given twice"],
    [['commit', 'u', '--m', 'x'], "layerfs commit: unknown option '--m'"],
    [['version', 'x'], 'layerfs version: takes no arguments'],
    [['help', 'diff', 'x'], "layerfs help: 'diff' has no subcommands"],
    // The mount forms keep their messages (`layerfs: …`, also 2): podman and mount(8) show them.
    [['mount'], 'layerfs: expected a mountpoint'],
    [['mount', '-x', '-o', 'lowerdir=/a', '/m'], "layerfs: unknown flag '-x'"],
    [['-o', 'upperdir=/u', '/m'], 'layerfs: missing lowerdir= option'],
  ];
  for (const [args, line] of cases) {
    const r = await layerfs(args);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.is(r.stderr, line + '\n', args.join(' '));
    t.is(r.stdout, '', args.join(' '));
  }
});

test('run keeps docker\'s exit status 125 for its usage errors', async (t) => {
  for (const [args, re] of [
    [['run'], /^layerfs run: missing --lower A:B:C/],
    [['run', '--lower', '/a', '-x', 'true'], /^layerfs run: unknown option '-x'/],
    [['run', '-h'], /^layerfs run: option '-h' needs a value$/],
  ] as [string[], RegExp][]) {
    const r = await layerfs(args);
    t.is(r.code, 125, args.join(' '));
    t.is(r.stderr.split('\n').length, 2, r.stderr);
    t.regex(r.stderr.trimEnd(), re);
  }
});

// ------------------------------------------------------------------------------- the mount forms

/** The arguments `argv` hands to parseMountArgs, or null when it names no mount. */
function mountArgv(argv: string[]): string[] | null {
  const r = route(argv);
  return r.kind === 'command' && r.cmd.name === 'mount' ? r.argv : null;
}

test('routes: podman\'s form, the mount subcommand, mount.fuse3\'s form with any SOURCE', (t) => {
  t.deepEqual(mountArgv(['-o', 'lowerdir=/a,upperdir=/u,workdir=/w,,volatile', '/m']), ['-o', 'lowerdir=/a,upperdir=/u,workdir=/w,,volatile', '/m']);
  t.deepEqual(mountArgv(['-f', '-d', '-o', 'lowerdir=/a', '/m']), ['-f', '-d', '-o', 'lowerdir=/a', '/m']);
  t.deepEqual(mountArgv(['-olowerdir=/a', '/m']), ['-olowerdir=/a', '/m']);
  t.deepEqual(mountArgv(['mount', '-o', 'lowerdir=/a', '/m']), ['-o', 'lowerdir=/a', '/m']);
  t.is(parseMountArgs(mountArgv(['mount', 'src', '/m', '-o', 'lowerdir=/a'])!).source, 'src');
  t.is(parseMountArgs(mountArgv(['mount', '/m', '-o', 'lowerdir=/a'])!).source, undefined);
  // SOURCE MOUNTPOINT -o OPTS, as mount.fuse3 runs it: SOURCE may be any word, a command's too.
  const words = ['demo-src', 'top', ...COMMANDS.flatMap((c) => [c.name, ...(c.aliases ?? [])]).filter((w) => w !== 'mount')];
  for (const w of words) {
    const argv = mountArgv([w, '/m', '-o', 'rw,lowerdir=/a:/b,dev,suid']);
    t.truthy(argv, w);
    const req = parseMountArgs(argv!);
    t.is(req.source, w);
    t.deepEqual(req.lowerdirs, ['/a', '/b']);
    t.is(req.mountpoint, '/m');
  }
  // Not only the exact shape: other arguments with lowerdir= (a subcommand never takes it).
  t.truthy(mountArgv(['image', '/m', '-f', '-o', 'lowerdir=/a']));
  t.truthy(mountArgv(['explain', '-o', 'lowerdir=/a', '/m']));
  // An unknown word with -o is a mount too (its errors are the mount's).
  t.truthy(mountArgv(['top', '/m', '-o', 'rw']));
  t.throws(() => parseMountArgs(mountArgv(['top', '/m', '-o', 'rw'])!), { instanceOf: ConfigError, message: 'layerfs: missing lowerdir= option' });
});

test('routes: a subcommand stays one when it is not a mount form', (t) => {
  const cmd = (argv: string[]) => {
    const r = route(argv);
    return r.kind === 'command' ? `${r.cmd.name} ${r.argv.join(' ')}`.trim() : r.kind;
  };
  t.is(cmd(['top']), 'unknown');
  t.is(cmd(['ps', '-a']), 'ps -a');
  t.is(cmd(['build', '.']), 'unknown');
  t.is(cmd(['image', 'ls']), 'image ls');
  t.is(cmd(['images', 'ls']), 'image ls');
  t.is(cmd(['unmount', '/m']), 'umount /m');
  t.is(cmd(['diff', 'u', '--lower', '/a:/b']), 'diff u --lower /a:/b');
  // run's CMD may carry -o lowerdir=…: it is the container's, not a mount of ours.
  t.is(cmd(['run', '--lower', '/a', '--', 'mount', '-t', 'overlay', '-o', 'lowerdir=/x', 'none', '/m']), 'run --lower /a -- mount -t overlay -o lowerdir=/x none /m');
  t.is(cmd(['run', 'busy:a', 'sh', '-c', 'echo lowerdir=/x']), 'run busy:a sh -c echo lowerdir=/x');
  t.is(cmd(['--help']), 'help');
  t.is(cmd(['--version']), 'version');
  t.is(cmd([]), 'bare');
});

test('mount forms through the process: a bad layer is the mount\'s one-line error, exit 2, for any SOURCE', async (t) => {
  const gone = path.join(os.tmpdir(), 'layerfs-cli-test-no-such-layer');
  const mnt = os.tmpdir();
  for (const args of [
    ['-o', `lowerdir=${gone}`, mnt],
    ['mount', '-o', `lowerdir=${gone}`, mnt],
    ['image', mnt, '-o', `rw,lowerdir=${gone},dev,suid`],
    ['run', mnt, '-o', `lowerdir=${gone}`],
    ['ps', mnt, '-o', `lowerdir=${gone}`],
  ]) {
    const r = await layerfs(args);
    t.is(r.code, 2, args.join(' '));
    t.is(r.stderr, `layerfs: lowerdir '${gone}' does not exist\n`, args.join(' '));
  }
});

// ------------------------------------------------------------------------------- the parser

test('parseCommandArgs: util.parseArgs, checked token by token', (t) => {
  const spec = { name: { type: 'string' }, quiet: { type: 'boolean', short: 'q' }, message: { type: 'string', short: 'm' }, env: { type: 'string', short: 'e', multiple: true } } as const;
  const ok = (argv: string[]) => {
    const r = parseCommandArgs('x', argv, spec);
    if (r.help) throw new Error('help');
    return r.args;
  };
  const a = ok(['p1', '--name=n', '-q', '-mhello', '-e', 'A=1', '--env', 'B=2', '--', '--name', '-q']);
  t.is(a.str('name'), 'n');
  t.true(a.flag('quiet'));
  t.is(a.str('message'), 'hello');
  t.deepEqual(a.list('env'), ['A=1', 'B=2']);
  t.deepEqual(a.positionals, ['p1', '--name', '-q']);
  t.is(ok(['-m', '-x']).str('message'), '-x', 'a value may start with a dash');
  t.is(ok(['-']).positionals[0], '-');
  t.deepEqual(parseCommandArgs('x', ['--bogus', '-h'], spec), { help: true });
  const bad: [string[], string][] = [
    [['--bogus'], "layerfs x: unknown option '--bogus'"],
    [['--q'], "layerfs x: unknown option '--q'"],
    [['-qz'], "layerfs x: unknown option '-z'"],
    [['--name'], "layerfs x: option '--name' needs a value"],
    [['--quiet=1'], "layerfs x: option '--quiet' takes no value"],
    [['-m', 'a', '--message', 'b'], "layerfs x: option '--message' given twice"],
    [['--help=1'], "layerfs x: option '--help' takes no value"],
    [['--toString'], "layerfs x: unknown option '--toString'"],
  ];
  for (const [argv, message] of bad) t.throws(() => parseCommandArgs('x', argv, spec), { instanceOf: UsageError, message }, argv.join(' '));
});
