// The command layer: which command an argv names (route), how it is run (run), and how a
// failure becomes one line and an exit status (exitStatusOf). Exit statuses: 0 done; 2 bad
// arguments (UsageError, and every ConfigError of the mount forms); a command's own otherwise
// (UserError.status: explain 1/3/4, trace 3, image errors 1; `run` 125 for its usage errors as
// docker, else CMD's status).

import { UsageError, parseCommandArgs } from './args.ts';
import { failureOf } from './failure.ts';
import { COMMANDS, findCommand, topUsage, unknownCommand, unknownSubcommand, usageOf, type Command } from './commands.ts';
import { isFuse3Shape, looksLikeMount, namesLowerdirs } from './mount.ts';

export type Route =
  /** `layerfs` alone: the usage on stderr, exit 2. */
  | { kind: 'bare' }
  /** `layerfs --help`. */
  | { kind: 'help' }
  /** A first word that is no command, with arguments that are no mount. */
  | { kind: 'unknown'; word: string }
  /** `cmd` with `argv` (what follows its name; for the mount forms: the whole argv). */
  | { kind: 'command'; cmd: Command; argv: string[] };

const byName = (name: string): Command => findCommand(COMMANDS, name)!;

/**
 * Which command `argv` (what follows the program name) names. The mount forms win where they
 * are meant: a first argument that is an option (`layerfs -o OPTS MNT`, podman's form), and a
 * first word that is no command, or a command that never takes lowerdir= (every one but mount
 * and run), when lowerdir= is in the arguments (`layerfs SOURCE MNT -o OPTS`, mount.fuse3's
 * form, for any SOURCE; an unknown word also when there is an -o). For `run`, whose CMD may hold
 * anything, only mount.fuse3's exact shape `run MNT -o ...lowerdir=...` is a mount.
 */
export function route(argv: readonly string[]): Route {
  const first = argv[0];
  if (first === undefined) return { kind: 'bare' };
  if (first === '-h' || first === '--help') return { kind: 'help' };
  if (first === '-V' || first === '--version') return { kind: 'command', cmd: byName('version'), argv: [] };
  const mount: Route = { kind: 'command', cmd: byName('mount'), argv: [...argv] };
  if (first.startsWith('-')) return mount;
  const cmd = findCommand(COMMANDS, first);
  const rest = argv.slice(1);
  if (!cmd) return looksLikeMount(argv) ? mount : { kind: 'unknown', word: first };
  if (cmd.name === 'mount') return { kind: 'command', cmd, argv: rest };
  if (isFuse3Shape(argv)) return mount;
  if (cmd.name !== 'run' && namesLowerdirs(rest)) return mount;
  return { kind: 'command', cmd, argv: rest };
}

const CONTEXT = { route };

/** Run `cmd` (named by `words`, e.g. ['image', 'ls']) with its arguments. */
export async function runCommand(cmd: Command, words: readonly string[], argv: readonly string[]): Promise<number> {
  const printUsage = async (): Promise<number> => {
    process.stdout.write((await usageOf(cmd)) + '\n');
    return 0;
  };
  const name = words.join(' ');
  switch (cmd.kind) {
    case 'group': {
      const sub = argv[0];
      if (sub === undefined) {
        const names = cmd.subcommands.filter((c) => !c.hidden).map((c) => c.name);
        throw new UsageError(`layerfs ${name}: needs a subcommand: ${names.join(', ')} (see layerfs ${name} --help)`);
      }
      if (sub === '-h' || sub === '--help') return printUsage();
      if (sub === 'help') {
        if (argv.length === 1) return printUsage();
        const target = findCommand(cmd.subcommands, argv[1]!);
        if (!target) throw unknownSubcommand(cmd, argv[1]!);
        if (argv.length > 2) throw new UsageError(`layerfs ${name} help: too many arguments: ${argv.slice(2).join(' ')}`);
        process.stdout.write((await usageOf(target)) + '\n');
        return 0;
      }
      const found = findCommand(cmd.subcommands, sub);
      if (!found) throw unknownSubcommand(cmd, sub);
      return runCommand(found, [...words, found.name], argv.slice(1));
    }
    case 'raw':
      if (cmd.wantsHelp?.(argv)) return printUsage();
      return cmd.run(argv, CONTEXT);
    case 'parsed': {
      const p = parseCommandArgs(name, argv, cmd.options);
      if (p.help) return printUsage();
      const n = p.args.positionals.length;
      if (n < cmd.args.min || n > cmd.args.max) throw new UsageError(`layerfs ${name}: ${cmd.args.error}`);
      const wrong = cmd.check?.(p.args);
      if (wrong !== undefined) throw new UsageError(`layerfs ${name}: ${wrong}`);
      return cmd.run(p.args, CONTEXT);
    }
  }
}

/** The exit status for `argv`; -1: keep running (a daemon serving its mount). */
export async function main(argv: readonly string[]): Promise<number> {
  const r = route(argv);
  switch (r.kind) {
    case 'bare':
      process.stderr.write(topUsage() + '\n');
      return 2;
    case 'help':
      process.stdout.write(topUsage() + '\n');
      return 0;
    case 'unknown':
      throw unknownCommand(r.word);
    case 'command':
      return runCommand(r.cmd, [r.cmd.name], r.argv);
  }
}

/** Report a failure as one line on stderr; returns the exit status. */
export async function reportFailure(e: unknown): Promise<number> {
  const f = await failureOf(e);
  process.stderr.write(f.text);
  if (f.unexpected && process.env.LAYERFS_DEBUG) process.stderr.write(`${(e as Error)?.stack}\n`);
  return f.status;
}
