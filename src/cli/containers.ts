// The container commands as docker spells them: ps, logs, stop, start, restart, kill, wait, rm,
// inspect (and run -d). The engine runs them for a forwarded command line (src/cli/remote.ts
// calls runContainerCommand with its containers), so that the native client answers them
// without a Node start-up; the Node CLI forwards them (forwardContainerCommand). `logs -f` and
// `start -a` stream, which one forwarded answer cannot: the Node CLI does those itself, over the
// API. `exec` is src/cli/exec.ts.

import type { ContainerApi } from '../engine/containers/routes.ts';
import type { LogRecord } from '../engine/containers/logs.ts';
import { UsageError, parseCommandArgs, type Args, type OptionSpec } from './args.ts';

export interface ContainerCommand {
  name: string;
  summary: string;
  usage: string;
  options: OptionSpec;
  /** Fewest container arguments. */
  min: number;
  max: number;
}

const c = (name: string, summary: string, usage: string, options: OptionSpec, min = 1, max = Infinity): ContainerCommand => ({ name, summary, usage, options, min, max });

export const CONTAINER_COMMANDS: readonly ContainerCommand[] = [
  c('ps', 'list containers (running ones; -a: all)', `usage: layerfs ps [-a] [-q] [--format json] [--no-trunc]
Lists the engine's containers, the newest first: running ones, or with -a all of them.
  -a, --all          all containers, not only running ones
  -q, --quiet        only their IDs
  --format json      one JSON object per container and line
  --no-trunc         full IDs and commands`, { all: { type: 'boolean', short: 'a' }, quiet: { type: 'boolean', short: 'q' }, format: { type: 'string' }, 'no-trunc': { type: 'boolean' } }, 0, 0),
  c('logs', "a container's output (stdout and stderr)", `usage: layerfs logs [-f] [-n N|--tail N] [-t] CONTAINER
Prints what the container wrote, stdout to stdout and stderr to stderr (the engine keeps the
last 8-16 MiB of it).
  -f, --follow        then keep printing until the container exits
  -n, --tail N        only the last N lines
  -t, --timestamps    each line after its time`, { follow: { type: 'boolean', short: 'f' }, tail: { type: 'string', short: 'n' }, timestamps: { type: 'boolean', short: 't' } }, 1, 1),
  c('stop', 'stop containers: SIGTERM, then SIGKILL', `usage: layerfs stop [-t SECONDS] CONTAINER...
Sends SIGTERM to each container's command, then SIGKILL after SECONDS (default 10), and waits
until it exited. Its upper stays: start runs it again.
  -t, --time SECONDS   how long to wait before SIGKILL`, { time: { type: 'string', short: 't' } }),
  c('start', 'start stopped containers again (on their kept upper)', `usage: layerfs start [-a] CONTAINER...
Starts each container again, on the upper it kept.
  -a, --attach   print its output until it exits, and exit with its status (one container)`, { attach: { type: 'boolean', short: 'a' } }),
  c('restart', 'stop and start containers', `usage: layerfs restart [-t SECONDS] CONTAINER...
Stops (as stop does) and starts each container.
  -t, --time SECONDS   how long stop waits before SIGKILL (default 10)`, { time: { type: 'string', short: 't' } }),
  c('kill', 'send a signal to containers (default SIGKILL)', `usage: layerfs kill [-s SIGNAL] CONTAINER...
Sends SIGNAL (a name, with or without SIG, or a number; default KILL) to each container's command.
  -s, --signal SIGNAL`, { signal: { type: 'string', short: 's' } }),
  c('wait', 'wait until containers exit; print their exit statuses', `usage: layerfs wait CONTAINER...
Waits until each container is not running and prints its exit status.`, {}),
  c('rm', 'remove containers and their uppers', `usage: layerfs rm [-f] CONTAINER...
Removes each container: its records, its log and its upper. A running one is refused unless -f.
  -f, --force   kill it first (SIGKILL)`, { force: { type: 'boolean', short: 'f' } }),
  c('inspect', "containers' configuration and state as JSON", `usage: layerfs inspect CONTAINER...
Prints a JSON array: each container's configuration, state (status, pid, exit code, times,
restarts), mounts and upper directory.`, {}),
];

export const CONTAINER_WORDS: ReadonlySet<string> = new Set(CONTAINER_COMMANDS.map((x) => x.name));

export interface Answer {
  status: number;
  stdout: string;
  stderr: string;
}

/** -h/--help among the arguments (before any `--`). */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '-h' || a === '--help') return true;
  }
  return false;
}

function parse(cmd: ContainerCommand, argv: readonly string[]): Args {
  const p = parseCommandArgs(cmd.name, argv, cmd.options);
  if (p.help) throw new UsageError(cmd.usage);
  const n = p.args.positionals.length;
  if (n < cmd.min || n > cmd.max) {
    throw new UsageError(`layerfs ${cmd.name}: ${cmd.max === 0 ? 'takes no arguments' : cmd.max === 1 ? 'needs exactly one CONTAINER' : 'needs at least one CONTAINER'}`);
  }
  return p.args;
}

function seconds(a: Args, cmd: string): number | undefined {
  const v = a.str('time');
  if (v === undefined) return undefined;
  if (!/^[0-9]{1,4}$/.test(v)) throw new UsageError(`layerfs ${cmd}: bad --time '${v}': whole seconds, 0 to 9999`);
  return Number(v);
}

function tailOf(a: Args): number | undefined {
  const v = a.str('tail');
  if (v === undefined || v === 'all') return undefined;
  if (!/^[0-9]{1,9}$/.test(v)) throw new UsageError(`layerfs logs: bad --tail '${v}': a number of lines, or all`);
  return Number(v);
}

const short = (id: string): string => id.slice(0, 12);


interface Summary {
  Id: string;
  Names: string;
  Image: string;
  Command: string;
  CreatedAt: string;
  Status: string;
}

function table(rows: Summary[], noTrunc: boolean, elapsed: (iso: string) => string): string {
  const cut = (s: string, n: number): string => (noTrunc || s.length <= n ? s : `${s.slice(0, n - 1)}…`);
  const cols = ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'NAMES'];
  const data = rows.map((r) => [noTrunc ? r.Id : short(r.Id), cut(r.Image, 30), `"${cut(r.Command, 20)}"`, `${elapsed(r.CreatedAt)} ago`, r.Status, r.Names]);
  const width = cols.map((h, i) => Math.max(h.length, ...data.map((d) => d[i]!.length)));
  const line = (cells: string[]): string => cells.map((x, i) => (i === cells.length - 1 ? x : x.padEnd(width[i]! + 3))).join('') + '\n';
  return line(cols) + data.map(line).join('');
}

export function formatLog(records: readonly LogRecord[], timestamps: boolean): { stdout: string; stderr: string } {
  let stdout = '';
  let stderr = '';
  for (const r of records) {
    const text = timestamps ? `${r.time} ${r.log}` : r.log;
    if (r.stream === 'stderr') stderr += text;
    else stdout += text;
  }
  return { stdout, stderr };
}

/** A container command run in the engine; null: the Node CLI must run it (it streams). */
export async function runContainerCommand(name: string, argv: readonly string[], api: ContainerApi): Promise<Answer | null> {
  const cmd = CONTAINER_COMMANDS.find((x) => x.name === name);
  if (!cmd || wantsHelp(argv)) return null;
  // Here, not at the top: commands.ts imports this file's table at every start-up.
  const { ContainerError, elapsed } = await import('../engine/containers/store.ts');
  let out = '';
  let err = '';
  let status = 0;
  let a: Args;
  try {
    a = parse(cmd, argv);
  } catch (e) {
    if (e instanceof UsageError) return { status: 2, stdout: '', stderr: e.message + '\n' };
    throw e;
  }
  // Each container in turn, as docker: a failure is reported and the others are still done.
  const each = async (f: (ref: string) => Promise<string | undefined>): Promise<void> => {
    for (const ref of a.positionals) {
      try {
        const line = await f(ref);
        if (line !== undefined) out += line + '\n';
      } catch (e) {
        if (!(e instanceof ContainerError)) throw e;
        err += `layerfs ${name}: ${e.message}\n`;
        status = 1;
      }
    }
  };
  switch (name) {
    case 'ps': {
      const rows = api.list(a.flag('all')) as Summary[];
      const format = a.str('format');
      if (format !== undefined && format !== 'json' && format !== 'table') return { status: 2, stdout: '', stderr: `layerfs ps: --format '${format}': json or table\n` };
      if (a.flag('quiet')) out = rows.map((r) => (a.flag('no-trunc') ? r.Id : short(r.Id)) + '\n').join('');
      else if (format === 'json') out = rows.map((r) => JSON.stringify(r) + '\n').join('');
      else out = table(rows, a.flag('no-trunc'), elapsed);
      break;
    }
    case 'logs': {
      if (a.flag('follow')) return null;
      const tail = tailOf(a);
      try {
        const l = api.logs(a.positionals[0]!, tail, null);
        const f = formatLog(l.records, a.flag('timestamps'));
        out = f.stdout;
        err = f.stderr;
      } catch (e) {
        if (!(e instanceof ContainerError)) throw e;
        return { status: 1, stdout: '', stderr: `layerfs logs: ${e.message}\n` };
      }
      break;
    }
    case 'stop':
    case 'restart': {
      const t = seconds(a, name);
      await each(async (ref) => {
        await (name === 'stop' ? api.stop(ref, t) : api.restart(ref, t));
        return ref;
      });
      break;
    }
    case 'start':
      if (a.flag('attach')) return null;
      await each(async (ref) => {
        await api.start(ref);
        return ref;
      });
      break;
    case 'kill':
      await each(async (ref) => {
        await api.kill(ref, a.str('signal') ?? 'SIGKILL');
        return ref;
      });
      break;
    case 'wait':
      await each(async (ref) => String(await api.wait(ref)));
      break;
    case 'rm':
      await each(async (ref) => {
        await api.remove(ref, a.flag('force'));
        return ref;
      });
      break;
    case 'inspect': {
      const found: unknown[] = [];
      await each(async (ref) => {
        found.push(api.inspect(ref));
        return undefined;
      });
      out = JSON.stringify(found, null, 4) + '\n';
      break;
    }
  }
  return { status, stdout: out, stderr: err };
}

/** The Node CLI's side: forwarded to the engine, except what streams (logs -f, start -a). */
export async function containerCommand(name: string, argv: readonly string[]): Promise<number> {
  const cmd = CONTAINER_COMMANDS.find((x) => x.name === name)!;
  if (wantsHelp(argv)) {
    process.stdout.write(cmd.usage + '\n');
    return 0;
  }
  const a = parse(cmd, argv);
  const client = await import('../engine/client.ts');
  if ((name === 'logs' && a.flag('follow')) || (name === 'start' && a.flag('attach'))) {
    await client.ensureEngine();
    const ref = a.positionals[0]!;
    if (name === 'start') {
      if (a.positionals.length !== 1) throw new UsageError('layerfs start: -a attaches to one CONTAINER');
      // Follow first (nothing the container writes is missed), then start.
      const follow = client.streamLogs(ref, { tail: 0, follow: true }, false);
      const s = await client.call('POST', `/v1/containers/${encodeURIComponent(ref)}/start`);
      if (s.http !== 204) {
        follow.cancel();
        process.stderr.write(`layerfs start: ${String(s.body?.message ?? `HTTP ${s.http}`).replace(/^layerfs: /, '')}\n`);
        return 1;
      }
      await follow.done;
      const w = await client.call('POST', `/v1/containers/${encodeURIComponent(ref)}/wait`);
      return typeof w.body?.StatusCode === 'number' ? w.body.StatusCode : 1;
    }
    const s = client.streamLogs(ref, { tail: tailOf(a), follow: true }, a.flag('timestamps'));
    return (await s.done) ? 0 : 1;
  }
  return client.forward([name, ...argv]);
}
