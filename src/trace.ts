// `layerfs trace MOUNTPOINT`, the client of a daemon's trace socket (the daemon's side and the
// record format: src/engine/trace.ts).

import * as fs from 'node:fs';
import * as net from 'node:net';
import { formatRecord, type TraceRecord } from './engine/trace.ts';

/**
 * `layerfs trace [--json] MOUNTPOINT`: print the union's decisions as they happen, one line
 * each (or the raw JSON lines), until Ctrl-C or until the mount goes away (exit 0). A regular
 * FILE (written by `mount -o trace=FILE`) is printed the same way. Exit status: 0; 2 bad
 * arguments; 3 not a layerfs mount, or its daemon has no trace socket. The arguments are parsed
 * by the command table (src/cli/commands.ts, which also holds the usage text).
 */
export async function cmdTrace(json: boolean, arg: string): Promise<number> {
  const { UserError } = await import('./engine/mount.ts');
  const { fail, mountState } = await import('./explain.ts');
  const print = (line: string): void => {
    if (!line) return;
    if (json) {
      process.stdout.write(line + '\n');
      return;
    }
    let rec: TraceRecord;
    try {
      rec = JSON.parse(line) as TraceRecord;
    } catch {
      return;
    }
    process.stdout.write(formatRecord(rec) + '\n');
  };

  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(arg);
  } catch {
    st = undefined; // a dead mount (ENOTCONN): let mountState say what it is
  }
  if (st?.isFile()) {
    for (const line of fs.readFileSync(arg, 'utf8').split('\n')) print(line);
    return 0;
  }
  const { mnt, state } = mountState('trace', arg);
  if (!state.socket || !fs.existsSync(state.socket)) fail(`layerfs trace: the daemon of '${mnt}' has no trace socket (its daemon could not create one, or predates layerfs trace)`, 3);
  const sock = net.createConnection(state.socket!);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', (e) => reject(new UserError(`layerfs trace: cannot connect to the daemon of '${mnt}': ${e.message}`, 3)));
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => sock.destroy());
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      print(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  let stopped = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => (stopped = true));
  await new Promise<void>((resolve) => {
    sock.on('close', () => resolve());
    sock.on('error', () => {});
  });
  print(buf);
  if (!stopped) process.stderr.write(`layerfs trace: ${mnt} is no longer served (unmounted)\n`);
  return 0;
}
