// The command table: every layerfs command with its one-line summary, its usage text (what
// `layerfs CMD --help` prints), its options (a util.parseArgs spec, see args.ts) and its
// handler. Handlers load their modules when they run, so that a start-up (podman runs layerfs
// for every container; mount.fuse3 for every fstab mount) loads only this table, args.ts,
// mount.ts (which imports only config.ts) and containers.ts (the container commands' table; it
// loads what their handlers need when they run). `layerfs --help` lists the table.

import { splitLowerdirs } from '../config.ts';
import type { Route } from './main.ts';
import { UsageError, closest, type Args, type OptionSpec } from './args.ts';
import { mountWantsHelp } from './mount.ts';
import { CONTAINER_COMMANDS, wantsHelp as containerWantsHelp } from './containers.ts';

interface Base {
  name: string;
  /** Other words for the command (`unmount`, `images`, `list`). */
  aliases?: readonly string[];
  /** One line for the command list of `--help`. */
  summary: string;
  /** Left out of the command list (internal). */
  hidden?: boolean;
}

/** A command whose options the layer parses with util.parseArgs. */
export interface ParsedCommand extends Base {
  kind: 'parsed';
  usage: string;
  options: OptionSpec;
  /** Bounds on the positional arguments, and the one line (after `layerfs CMD: `) when outside. */
  args: { min: number; max: number; error: string };
  /** Further checks of the arguments alone: the one line (after `layerfs CMD: `) of a mistake. */
  check?(a: Args): string | undefined;
  run(a: Args, ctx: CommandContext): Promise<number>;
}

/**
 * A command that parses its own arguments: `mount` (the fuse-overlayfs syntax podman and
 * mount(8) use) and `run` (docker's syntax; its usage errors exit 125, as docker's do).
 */
export interface RawCommand extends Base {
  kind: 'raw';
  /** Loaded for `run`: its text lives beside its parser. */
  usage: string | (() => Promise<string>);
  /** The layer answers --help itself when this says so; otherwise the handler does. */
  wantsHelp?(argv: readonly string[]): boolean;
  run(argv: readonly string[], ctx: CommandContext): Promise<number>;
}

/** A command with subcommands (`image`). */
export interface GroupCommand extends Base {
  kind: 'group';
  /** Printed above the generated list of subcommands. */
  synopsis: string;
  /** Printed below it. */
  footer?: string;
  subcommands: readonly Command[];
}

export type Command = ParsedCommand | RawCommand | GroupCommand;

/**
 * What the command layer hands every handler: its router, for the handlers that run command
 * lines of their own (the engine runs forwarded ones). Handed, not imported: a handler's module
 * importing the table it is part of would close an import cycle.
 */
export interface CommandContext {
  route(argv: readonly string[]): Route;
}

const STORE_NOTE = 'The store is $LAYERFS_STORE (default /var/lib/layerfs).';

const image = () => import('../image/cli.ts');

// ------------------------------------------------------------------------------- mount

const MOUNT_USAGE = `usage: layerfs mount [-f] [-d] [--trace FILE] -o lowerdir=A:B[,upperdir=U,workdir=W][,OPTIONS] MOUNTPOINT
       layerfs [-f] [-d] -o OPTIONS MOUNTPOINT   (fuse-overlayfs' form, as podman runs it)
       layerfs SOURCE MOUNTPOINT -o OPTIONS      (mount -t fuse.layerfs and fstab; SOURCE names the mount)
Mounts the layers as one union at MOUNTPOINT and returns once it serves: the engine serves it
(started when none runs; see layerfs engine --help). A is the top-most lower (explain and trace call it lower1). Without upperdir and
workdir the mount is read-only. OPTIONS: fuse-overlayfs' and the kernel overlayfs' (ro, volatile,
userxattr, redirect_dir=, timeout=N, passthrough=, spin=N, uidmapping=, gidmapping=,
squash_to_uid=, xattr_permissions=, backend=, trace=FILE, the standard mount flags; see README).
  -o OPTIONS        comma-separated mount options; may be given more than once
  -f, --foreground  serve it from this process instead, in the foreground, logging to stderr,
                    until unmounted
  -d, --debug       as -f, with libfuse's debug output
  --trace FILE      append the union's decisions to FILE as JSON lines (the same as -o trace=FILE)
Escape ':' and ',' in layer paths as '\\:' and '\\,'.`;

// ------------------------------------------------------------------------------- engine

const engine = () => import('./engine.ts');

const ENGINE_NOTE = `The engine's directory: $LAYERFS_ENGINE_DIR, else /run/layerfs as root, else
$XDG_RUNTIME_DIR/layerfs; its API socket is engine.sock there (docs/engine.md).`;

const engineCommands: readonly Command[] = [
  {
    kind: 'parsed',
    name: 'run',
    summary: 'run the engine in the foreground (what the systemd unit runs)',
    usage: `usage: layerfs engine run [--log-stderr]
Runs the engine in this process until it is stopped (layerfs engine stop, SIGTERM).
  --log-stderr     log to stderr instead of engine.log
${ENGINE_NOTE}`,
    options: { 'log-stderr': { type: 'boolean' }, 'notify-fd': { type: 'string' } },
    args: { min: 0, max: 0, error: 'takes no arguments' },
    run: async (a, ctx) => (await engine()).engineRun(a, ctx),
  },
  {
    kind: 'parsed',
    name: 'start',
    summary: 'start the engine in the background unless it runs',
    usage: `usage: layerfs engine start
Starts the engine in the background unless one runs (commands that need it start it anyway).
${ENGINE_NOTE}`,
    options: {},
    args: { min: 0, max: 0, error: 'takes no arguments' },
    run: async () => (await engine()).engineStart(),
  },
  {
    kind: 'parsed',
    name: 'stop',
    summary: 'stop the engine, unmounting its mounts (refused while one is busy)',
    usage: `usage: layerfs engine stop [--force]
Stops the engine: its mounts are unmounted first. While a mount is busy (a file open in it, a
process inside) it refuses, naming the mounts.
  --force   stop anyway: busy mounts are detached (their users then get ENOTCONN)
${ENGINE_NOTE}`,
    options: { force: { type: 'boolean' } },
    args: { min: 0, max: 0, error: 'takes no arguments' },
    run: async (a) => (await engine()).engineStop(a),
  },
  {
    kind: 'parsed',
    name: 'status',
    summary: "whether the engine runs: its pid, version and mounts",
    usage: `usage: layerfs engine status [--json]
Prints whether the engine runs, its pid and version, and the mounts it serves; exit status 3
when no engine runs.
  --json   the engine's answers as JSON
${ENGINE_NOTE}`,
    options: { json: { type: 'boolean' } },
    args: { min: 0, max: 0, error: 'takes no arguments' },
    run: async (a) => (await engine()).engineStatus(a),
  },
];

// ------------------------------------------------------------------------------- image

const imageCommands: readonly Command[] = [
  {
    kind: 'parsed',
    name: 'import',
    summary: 'bring an image into the store: oci:DIR[:TAG] or docker-archive:FILE[:REF]',
    usage: `usage: layerfs image import SOURCE [--name NAME]
Imports an image into the store, checking every digest. SOURCE:
  oci:DIR[:TAG]              an OCI image layout (as skopeo and umoci write it)
  docker-archive:FILE[:REF]  a docker save archive
  --name NAME   store it as NAME ([REGISTRY/]REPO[:TAG], lowercase); default: from its tag
${STORE_NOTE}`,
    options: { name: { type: 'string' } },
    args: { min: 1, max: 1, error: 'needs exactly one SOURCE (oci:DIR[:TAG] or docker-archive:FILE)' },
    run: async (a) => (await image()).imageImport(a),
  },
  {
    kind: 'parsed',
    name: 'ls',
    aliases: ['list'],
    summary: 'list the images of the store',
    usage: `usage: layerfs image ls [-q]
Lists the images of the store: NAME, ID, LAYERS, SIZE, CREATED. ('list' is the same command.)
  -q, --quiet   names only, one a line
${STORE_NOTE}`,
    options: { quiet: { type: 'boolean', short: 'q' } },
    args: { min: 0, max: 0, error: 'takes no arguments' },
    run: async (a) => (await image()).imageLs(a),
  },
  {
    kind: 'parsed',
    name: 'rm',
    aliases: ['remove'],
    summary: 'remove images, and the layers no other image uses',
    usage: `usage: layerfs image rm NAME...
Removes the images NAME..., and every layer of theirs no other image uses. An image a running
container uses is refused; an unknown NAME removes nothing. ('remove' is the same command.)
${STORE_NOTE}`,
    options: {},
    args: { min: 1, max: Infinity, error: 'needs at least one image NAME' },
    run: async (a) => (await image()).imageRm(a),
  },
  {
    kind: 'parsed',
    name: 'export',
    summary: 'write an image as an OCI image layout',
    usage: `usage: layerfs image export NAME DIR
Writes the image NAME as an OCI image layout into DIR (which must not exist, or be empty),
tagged with NAME's tag: skopeo and umoci read it (oci:DIR:TAG).
${STORE_NOTE}`,
    options: {},
    args: { min: 2, max: 2, error: 'needs NAME and DIR' },
    run: async (a) => (await image()).imageExport(a),
  },
];

// ------------------------------------------------------------------------------- the table

export const COMMANDS: readonly Command[] = [
  {
    kind: 'raw',
    name: 'mount',
    summary: 'mount layers as one union (kernel overlayfs semantics) at a mountpoint',
    usage: MOUNT_USAGE,
    wantsHelp: mountWantsHelp,
    run: async (argv) => (await import('./mount.ts')).cmdMount(argv),
  },
  {
    kind: 'parsed',
    name: 'umount',
    aliases: ['unmount'],
    summary: 'unmount a layerfs mount (also one whose daemon died)',
    usage: `usage: layerfs umount [-l] MOUNTPOINT
Unmounts the layerfs mount at MOUNTPOINT, also one whose daemon died (ENOTCONN), and waits until
the engine (or the mount -f daemon) has let it go. A busy mount is refused. ('unmount' is the same command.)
  -l, --lazy   detach it anyway; it goes away once nothing uses it`,
    options: { lazy: { type: 'boolean', short: 'l' } },
    args: { min: 1, max: 1, error: 'needs exactly one MOUNTPOINT' },
    run: async (a) => (await engine()).cmdUmount(a),
  },
  {
    kind: 'parsed',
    name: 'explain',
    summary: 'which layer serves a path, what it shadows, what hides it',
    usage: `usage: layerfs explain [--json] MOUNTPOINT PATH
Which layer of the layerfs mount at MOUNTPOINT serves PATH, what it shadows and what hides it,
through the union's own lookup. PATH is a path in the mount, or one relative to its root
(/etc/x and etc/x are the same).
  --json   a stable JSON shape (version 1) instead of plain words
Exit status: 0 PATH exists, 1 PATH does not exist, 2 bad arguments, 3 MOUNTPOINT is not a
layerfs mount, 4 the layers could not be inspected.`,
    options: { json: { type: 'boolean' } },
    args: { min: 2, max: 2, error: 'needs MOUNTPOINT and PATH' },
    run: async (a) => (await import('../explain.ts')).cmdExplain(a.flag('json'), a.positionals[0]!, a.positionals[1]!),
  },
  {
    kind: 'parsed',
    name: 'trace',
    summary: "the union's decisions as they happen (lookups, copy-ups, whiteouts)",
    usage: `usage: layerfs trace [--json] MOUNTPOINT
       layerfs trace [--json] FILE
The union's decisions (lookups, copy-ups, whiteouts, opaque directories) in the layerfs mount at
MOUNTPOINT as they happen, until Ctrl-C or the unmount; or those recorded in FILE (written by
'layerfs mount --trace FILE' or -o trace=FILE).
  --json   the JSON lines as they are
Exit status: 0; 2 bad arguments; 3 not a layerfs mount, or its daemon has no trace socket.`,
    options: { json: { type: 'boolean' } },
    args: { min: 1, max: 1, error: 'needs one MOUNTPOINT or trace FILE' },
    run: async (a) => (await import('../trace.ts')).cmdTrace(a.flag('json'), a.positionals[0]!),
  },
  {
    kind: 'raw',
    name: 'run',
    summary: 'run a command in a container on layers, or on an image of the store',
    usage: async () => (await import('../launcher/options.ts')).USAGE,
    // No wantsHelp: only run's parser knows where CMD starts (`run IMAGE ls --help` is CMD's
    // --help), and -h is --hostname there, as in docker. It prints the same usage for --help.
    run: async (argv) => (await import('../launcher/run.ts')).cmdRun([...argv]),
  },
  {
    kind: 'group',
    name: 'image',
    aliases: ['images'],
    summary: 'the image store: import, ls, rm, export',
    synopsis: `usage: layerfs image COMMAND [ARGS...]
The store of OCI images that 'layerfs run IMAGE', diff and commit use.`,
    footer: `'layerfs image COMMAND --help' describes one. ${STORE_NOTE}`,
    subcommands: imageCommands,
  },
  ...CONTAINER_COMMANDS.map(
    (c): Command => ({
      kind: 'raw',
      name: c.name,
      summary: c.summary,
      usage: c.usage,
      wantsHelp: containerWantsHelp,
      run: async (argv) => (await import('./containers.ts')).containerCommand(c.name, argv),
    }),
  ),
  {
    kind: 'raw',
    name: 'exec',
    summary: 'run a command in a running container',
    usage: async () => (await import('./exec.ts')).EXEC_USAGE,
    run: async (argv) => (await import('./exec.ts')).cmdExec(argv),
  },
  {
    kind: 'group',
    name: 'engine',
    summary: 'the engine: the daemon that serves mounts (run, start, stop, status)',
    synopsis: `usage: layerfs engine COMMAND
The engine serves every layerfs mount of its user from one process, with an HTTP+JSON API on a
unix socket (docs/engine.md). Commands that need it start it.`,
    footer: ENGINE_NOTE,
    subcommands: engineCommands,
  },
  {
    kind: 'parsed',
    name: 'diff',
    summary: 'the changes an upper holds, as A/C/D lines (like docker diff)',
    usage: `usage: layerfs diff UPPER [--from IMAGE | --lower A:B:C] [--userxattr]
The changes the upper directory UPPER holds, one a line, sorted: A added, C changed, D deleted
(as docker diff prints them). Exact with the lowers; from the upper alone, added and changed
cannot be told apart (both print A).
  --from IMAGE    the lowers are IMAGE's layers (an image of the store)
  --lower A:B:C   the lowers, top-most first
  --userxattr     the upper's markers are user.overlay.* (a mount with -o userxattr)
${STORE_NOTE}`,
    options: { from: { type: 'string' }, lower: { type: 'string' }, userxattr: { type: 'boolean' } },
    args: { min: 1, max: 1, error: 'needs exactly one UPPER directory' },
    check: (a) => {
      const lower = a.str('lower');
      if (a.str('from') !== undefined && lower !== undefined) return '--from and --lower exclude each other';
      if (lower !== undefined && splitLowerdirs(lower).every((l) => l === '')) return '--lower needs at least one layer';
      return undefined;
    },
    run: async (a) => (await image()).cmdDiff(a),
  },
  {
    kind: 'parsed',
    name: 'commit',
    summary: 'store an upper as a new image layer',
    usage: `usage: layerfs commit UPPER [--name NEW] [--from IMAGE] [--userxattr] [-m MESSAGE]
Packs the upper directory UPPER as a gzip OCI layer and stores a new image: IMAGE's layers and
config plus this layer, or the layer alone.
  --name NEW             the new image's name (default commit-ID:latest)
  --from IMAGE           the image the upper was made on
  -m, --message MESSAGE  the comment of the new history entry
  --userxattr            the upper's markers are user.overlay.* (a mount with -o userxattr)
${STORE_NOTE}`,
    options: {
      name: { type: 'string' },
      from: { type: 'string' },
      message: { type: 'string', short: 'm' },
      userxattr: { type: 'boolean' },
    },
    args: { min: 1, max: 1, error: 'needs exactly one UPPER directory' },
    run: async (a) => (await image()).cmdCommit(a),
  },
  {
    kind: 'raw',
    name: 'help',
    summary: 'describe layerfs, or one command',
    usage: `usage: layerfs help [COMMAND [SUBCOMMAND]]
Prints what 'layerfs --help' prints, or what 'layerfs COMMAND [SUBCOMMAND] --help' does.`,
    wantsHelp: (argv) => argv[0] === '-h' || argv[0] === '--help',
    run: async (argv) => {
      process.stdout.write((await usageOf(resolve(argv))) + '\n');
      return 0;
    },
  },
  {
    kind: 'parsed',
    name: 'version',
    summary: 'print the version',
    usage: `usage: layerfs version
       layerfs --version | -V
Prints 'layerfs VERSION'.`,
    options: {},
    args: { min: 0, max: 0, error: 'takes no arguments' },
    run: async () => {
      process.stdout.write(`layerfs ${(await import('../root.ts')).packageVersion()}\n`);
      return 0;
    },
  },
];

// ------------------------------------------------------------------------------- lookup and help

/** Visible names and aliases of `cmds`. */
function wordsOf(cmds: readonly Command[]): string[] {
  return cmds.filter((c) => !c.hidden).flatMap((c) => [c.name, ...(c.aliases ?? [])]);
}

/** The command `word` names in `cmds` (its name or an alias), hidden ones included. */
export function findCommand(cmds: readonly Command[], word: string): Command | undefined {
  return cmds.find((c) => c.name === word || c.aliases?.includes(word));
}

/** The one line for a first word that is no command (and whose arguments are no mount). */
export function unknownCommand(word: string): UsageError {
  // `layerfs ls`: an image subcommand's name is the likeliest meaning of such a word.
  const sub = findCommand(imageCommands, word);
  const hint = sub ? `image ${sub.name}` : closest(word, wordsOf(COMMANDS));
  return new UsageError(`layerfs: '${word}' is not a layerfs command (see layerfs --help)${hint ? `; did you mean '${hint}'?` : ''}`);
}

/** The one line for a word after a group (`layerfs image pull`). */
export function unknownSubcommand(group: GroupCommand, word: string): UsageError {
  const names = group.subcommands.filter((c) => !c.hidden).map((c) => c.name);
  if (word.startsWith('-')) return new UsageError(`layerfs ${group.name}: unknown option '${word}'`);
  const hint = closest(word, wordsOf(group.subcommands));
  return new UsageError(`layerfs ${group.name}: unknown subcommand '${word}' (${names.join(', ')})${hint ? `; did you mean '${hint}'?` : ''}`);
}

/** `help [COMMAND [SUBCOMMAND]]`: the command the words name (none: layerfs itself). */
function resolve(argv: readonly string[]): Command | undefined {
  if (argv.length === 0) return undefined;
  const cmd = findCommand(COMMANDS, argv[0]!);
  if (!cmd) throw unknownCommand(argv[0]!);
  if (argv.length === 1) return cmd;
  if (cmd.kind !== 'group') throw new UsageError(`layerfs help: '${cmd.name}' has no subcommands`);
  const sub = findCommand(cmd.subcommands, argv[1]!);
  if (!sub) throw unknownSubcommand(cmd, argv[1]!);
  if (argv.length > 2) throw new UsageError(`layerfs help: too many arguments: ${argv.slice(2).join(' ')}`);
  return sub;
}

/** The command list of a group's or layerfs' help: `  name   summary`. */
function list(cmds: readonly Command[]): string {
  const shown = cmds.filter((c) => !c.hidden);
  const width = Math.max(...shown.map((c) => c.name.length)) + 3;
  return shown.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join('\n');
}

const TOP_USAGE_HEAD = `usage: layerfs COMMAND [ARGS...]
       layerfs [-f] [-d] -o OPTIONS MOUNTPOINT   mount (fuse-overlayfs' form, as podman runs it)
       layerfs SOURCE MOUNTPOINT -o OPTIONS      mount (mount -t fuse.layerfs and fstab)
       layerfs --help | --version`;

/** What `layerfs --help` prints: the forms, and the commands of the table. */
export function topUsage(): string {
  return `${TOP_USAGE_HEAD}
commands:
${list(COMMANDS)}
'layerfs COMMAND --help' (or 'layerfs help COMMAND') describes one.
Layers: in lowerdir=A:B:C (and --lower A:B:C) A is the top-most.
${STORE_NOTE}`;
}

/** The usage text of `cmd` (undefined: layerfs itself). */
export async function usageOf(cmd: Command | undefined): Promise<string> {
  if (!cmd) return topUsage();
  if (cmd.kind === 'group') {
    return `${cmd.synopsis}
commands:
${list(cmd.subcommands)}${cmd.footer ? `\n${cmd.footer}` : ''}`;
  }
  return typeof cmd.usage === 'string' ? cmd.usage : cmd.usage();
}
