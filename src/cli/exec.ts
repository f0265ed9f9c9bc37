// `layerfs exec [-i] [-t] [-e K=V]... [-u USER] [-w DIR] CONTAINER CMD [ARG...]`: CMD in a
// running container, joining its namespaces and cgroups under the rules its PID 1 runs under
// (capabilities, no_new_privs, seccomp filter; -u resolved in the container's own /etc/passwd and
// /etc/group). The engine says what those rules are (GET /v1/containers/ID/exec-info); the
// entering is build/Release/layerfs_exec's (native/exec/exec.c), a child of this command, whose
// stdio is ours (or, with -t, a terminal of the container's devpts relayed to ours).

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UsageError } from './args.ts';

export const EXEC_USAGE = `usage: layerfs exec [-i] [-t] [-e KEY=VALUE]... [-u USER[:GROUP]] [-w DIR] CONTAINER CMD [ARG...]
Runs CMD in the running CONTAINER: in all its namespaces and cgroups, with its capabilities,
seccomp filter and no_new_privs, as its user unless -u. Exit status: CMD's, 125-127 as run.
  -i, --interactive        keep stdin open (CMD reads ours)
  -t, --tty                a terminal of the container's own
  -e, --env KEY=VALUE      set a variable (on top of the container's environment)
  -u, --user USER[:GROUP]  a name or id, looked up in the container's /etc/passwd and /etc/group
  -w, --workdir DIR        working directory inside the container (default: the container's)`;

interface ExecOptions {
  interactive: boolean;
  tty: boolean;
  env: string[];
  user?: string;
  workdir?: string;
  container: string;
  command: string[];
}

/** docker's syntax: options until the first word that is not one (the container), then CMD. */
export function parseExecArgs(argv: readonly string[]): ExecOptions | 'help' {
  const o: Partial<ExecOptions> & { env: string[] } = { interactive: false, tty: false, env: [] };
  let i = 0;
  const value = (opt: string, inline: string | undefined): string => {
    if (inline !== undefined) return inline;
    const v = argv[++i];
    if (v === undefined) throw new UsageError(`layerfs exec: ${opt} needs a value`);
    return v;
  };
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const name = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    if (name === '-h' || name === '--help') return 'help';
    if (name === '-i' || name === '--interactive') o.interactive = true;
    else if (name === '-t' || name === '--tty') o.tty = true;
    else if (/^-[it]{2}$/.test(name)) o.interactive = o.tty = true;
    else if (name === '-e' || name === '--env') {
      const kv = value(name, inline);
      if (!/^[A-Za-z_][A-Za-z0-9_]*(=|$)/.test(kv) || kv.includes('\0')) throw new UsageError(`layerfs exec: bad variable '${kv}': KEY=VALUE (or KEY: its value here)`);
      if (kv.includes('=')) o.env.push(kv);
      else if (process.env[kv] !== undefined) o.env.push(`${kv}=${process.env[kv]}`);
    } else if (name === '-u' || name === '--user') o.user = value(name, inline);
    else if (name === '-w' || name === '--workdir') {
      const w = value(name, inline);
      if (!w.startsWith('/')) throw new UsageError(`layerfs exec: -w '${w}': an absolute path inside the container`);
      o.workdir = w;
    } else throw new UsageError(`layerfs exec: unknown option '${a}' (see layerfs exec --help)`);
  }
  const container = argv[i];
  const command = argv.slice(i + 1);
  if (container === undefined || command.length === 0) throw new UsageError('layerfs exec: needs CONTAINER and CMD');
  return { interactive: o.interactive!, tty: o.tty!, env: o.env, user: o.user, workdir: o.workdir, container, command: [...command] };
}

interface ExecInfo {
  pid: number;
  uid: number;
  gid: number;
  groups: number[];
  env: string[];
  workdir: string;
  caps: string[];
  privileged: boolean;
  seccomp: unknown;
  cgroupProcs: string[];
  root: string;
  name: string;
}

function fail(line: string, status: number): number {
  process.stderr.write(`layerfs exec: ${line}\n`);
  return status;
}

export async function cmdExec(argv: readonly string[]): Promise<number> {
  const o = parseExecArgs(argv);
  if (o === 'help') {
    process.stdout.write(EXEC_USAGE + '\n');
    return 0;
  }
  const client = await import('../engine/client.ts');
  await client.ensureEngine();
  const a = await client.call('GET', `/v1/containers/${encodeURIComponent(o.container)}/exec-info`);
  if (a.http !== 200) return fail(String(a.body?.message ?? `the engine answered HTTP ${a.http}`).replace(/^layerfs: /, ''), 1);
  const info = a.body as unknown as ExecInfo;
  const { CAPS } = await import('../launcher/security.ts');
  const { ROOT } = await import('../root.ts');
  // The user: the container's unless -u, resolved in its own account files (through its mount).
  let uid = info.uid;
  let gid = info.gid;
  let groups = info.groups;
  const env = new Map<string, string>();
  for (const kv of info.env) env.set(kv.slice(0, kv.indexOf('=')), kv);
  if (o.user !== undefined) {
    const { parseUser, RunError } = await import('../launcher/options.ts');
    const { resolveUser } = await import('../launcher/image.ts');
    try {
      const u = await resolveUser(info.root, parseUser(o.user));
      ({ uid, gid, groups } = u);
      env.set('HOME', `HOME=${u.home}`);
    } catch (e) {
      if (e instanceof RunError) return fail(e.message.replace(/^layerfs run: /, ''), 125);
      throw e;
    }
  }
  for (const kv of o.env) env.set(kv.slice(0, kv.indexOf('=')), kv);
  let mask = 0n;
  if (info.privileged) {
    const last = Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
    mask = (1n << BigInt(last + 1)) - 1n;
  } else for (const c of info.caps) if (CAPS[c] !== undefined) mask |= 1n << BigInt(CAPS[c]!);
  const args = ['--pid', String(info.pid), '--uid', String(uid), '--gid', String(gid), '--caps', mask.toString(16), '--cwd', o.workdir ?? info.workdir, '--no-new-privs'];
  if (groups.length > 0) args.push('--groups', groups.join(','));
  for (const f of info.cgroupProcs) args.push('--cgroup-procs', f);
  const stdio: (number | 'inherit' | 'ignore' | 'pipe')[] = [o.interactive ? 'inherit' : 'ignore', 'inherit', 'inherit'];
  let bpf: Buffer | null = null;
  if (info.seccomp) {
    const { specFromWire } = await import('../launcher/seccomp-spec.ts');
    const { exportSeccompBpf } = await import('../launcher/seccomp-addon.ts');
    bpf = exportSeccompBpf(specFromWire(info.seccomp));
    args.push('--seccomp-fd', '3');
    stdio[3] = 'pipe';
  }
  let master = -1;
  let slave = -1;
  if (o.tty) {
    const { openPtyMaster } = await import('../launcher/tty.ts');
    const ptsDir = `/proc/${info.pid}/root/dev/pts`;
    try {
      const pty = openPtyMaster(ptsDir);
      master = pty.master;
      slave = fs.openSync(path.join(ptsDir, String(pty.index)), fs.constants.O_RDWR | fs.constants.O_NOCTTY);
      fs.fchownSync(slave, uid, -1);
    } catch (e) {
      if (master >= 0) fs.closeSync(master);
      return fail(`cannot open a terminal in the container: ${(e as Error).message}`, 125);
    }
    stdio[0] = stdio[1] = stdio[2] = slave;
    args.push('--tty');
  }
  args.push('--', ...o.command);
  const helper = path.join(ROOT, 'build', 'Release', 'layerfs_exec');
  const child = spawn(helper, args, { stdio, env: Object.fromEntries([...env.values()].map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) });
  if (slave >= 0) fs.closeSync(slave);
  if (bpf) {
    const w = child.stdio[3] as NodeJS.WritableStream;
    w.on('error', () => undefined);
    w.end(bpf);
  }
  const forward = (sig: NodeJS.Signals): void => {
    child.kill(sig);
  };
  const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;
  for (const s of sigs) process.on(s, forward);
  let tty: { done: Promise<void>; stop: () => void } | undefined;
  if (master >= 0) {
    const { relay } = await import('../launcher/tty.ts');
    tty = relay(master, o.interactive);
  }
  const status = await new Promise<number>((resolve) => {
    child.on('error', (e) => resolve(fail(`cannot start ${helper}: ${e.message}`, 125)));
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 9) : 9)));
  });
  for (const s of sigs) process.off(s, forward);
  if (tty) {
    await Promise.race([tty.done, new Promise((r) => setTimeout(r, 1000))]);
    tty.stop();
  }
  return status;
}
