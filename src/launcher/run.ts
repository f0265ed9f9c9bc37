// `layerfs run`: the host side of the launcher.
//
//  1. parse and check everything (one line and exit status 125 on bad input, nothing created);
//  2. reap what killed launchers left behind;
//  3. mount layerfs on <run dir>/<id>/root in the HOST namespace (the daemon stays outside the
//     container), over a throw-away upper unless --upper is given;
//  4. create the cgroup(s) with the limits;
//  5. start `setpriv --pdeathsig KILL unshare --mount --pid --uts --ipc [--net] [--user
//     --map-root-user] --fork --kill-child --propagation private node stage2.ts`: stage 2 sets the
//     container up and execve()s CMD, which becomes PID 1 of the new PID namespace;
//  6. forward SIGINT/SIGTERM/SIGHUP/SIGQUIT to CMD (SIGKILL after --stop-timeout), relay the
//     terminal for -t, wait, map the status (128+N for signal N), report an OOM kill;
//  7. clean up on every path: cgroups, mount, throw-away upper, the run record.
//
// If the launcher itself is SIGKILLed, the kernel still kills the container (parent-death
// signals: launcher -> unshare -> CMD, and the PID namespace dies with its PID 1); the mount,
// cgroups and throw-away upper stay until the next `layerfs run` or `layerfs run --cleanup`.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ConfigError, parseMountArgs, validateMountConfig, type MountConfig } from '../config.ts';
import { applyImage, isStoredImage, resolveUser } from './image.ts';
import { checkDevices } from './devices.ts';
import { TSX_ARGS } from '../root.ts';
import { stage2Bundle, STAGE2_SOURCE } from './bundle.ts';
import { createCgroups, limitsUnsupported, oomKills, type Cgroups } from './cgroup.ts';
import { parseRunArgs, RunError, USAGE, userText, type RunOptions } from './options.ts';
import { CTL_IN_FD, STAGE2_ENV, STDERR_FD, type Stage2Config, type Stage2Volume } from './protocol.ts';
import { compileProfile, defaultProfile, MAX_PROFILE_BYTES, parseProfile, SeccompError, specToWire, type SeccompWire } from './seccomp.ts';
import { CAPS, capabilitySet, containerDevices } from './security.ts';
import { allocateIds, mapsId, mapText, mappingOption, type Allocation, type IdMaps } from './userns.ts';
import { cleanupRun, parentPid, reapDead, RunRecord } from './state.ts';
import { openPtyMaster, relay } from './tty.ts';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

function say(line: string): void {
  process.stderr.write(line + '\n');
}

/** Escape a path for lowerdir=/upperdir= (fuse-overlayfs rules). */
function esc(p: string): string {
  return p.replace(/[\\:,]/g, (c) => `\\${c}`);
}

function realDir(p: string, what: string): string {
  let real: string;
  try {
    real = fs.realpathSync(p);
  } catch {
    throw new RunError(`${what} '${p}' does not exist`);
  }
  if (!fs.statSync(real).isDirectory()) throw new RunError(`${what} '${p}' is not a directory`);
  return real;
}

function checkVolumes(opts: RunOptions): Stage2Volume[] {
  return opts.volumes.map((v) => {
    let host: string;
    try {
      host = fs.realpathSync(v.host);
    } catch {
      throw new RunError(`volume source '${v.host}' does not exist on the host`);
    }
    const st = fs.statSync(host);
    if (!st.isDirectory() && !st.isFile()) throw new RunError(`volume source '${v.host}' is neither a directory nor a file`);
    return { host, target: v.target, readonly: v.readonly, dir: st.isDirectory() };
  });
}

/** CMD's environment: docker's defaults, then -e in order (a later KEY wins). */
function containerEnv(opts: RunOptions, hostname: string): string[] {
  const env = new Map<string, string>();
  const add = (kv: string): void => {
    env.set(kv.slice(0, kv.indexOf('=')), kv);
  };
  add(`PATH=${DEFAULT_PATH}`);
  add(`HOSTNAME=${hostname}`);
  if (opts.tty) add(`TERM=${process.env.TERM || 'xterm'}`);
  for (const e of opts.env) add(e);
  return [...env.values()];
}

/** The pid of unshare's forked child (stage 2, then CMD) as the host sees it. */
function childOf(pid: number): number | null {
  try {
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    if (kids.length > 0) return kids[0];
  } catch {
    /* no such file: fall through */
  }
  for (const d of fs.readdirSync('/proc')) {
    if (/^\d+$/.test(d) && parentPid(Number(d)) === pid) return Number(d);
  }
  return null;
}

/** Write the id maps of the user namespace `pid` creates, once it has created it. */
async function mapIds(pid: number, maps: IdMaps): Promise<void> {
  const own = fs.readlinkSync('/proc/self/ns/user');
  const until = Date.now() + 10_000;
  for (;;) {
    let ns: string;
    try {
      ns = fs.readlinkSync(`/proc/${pid}/ns/user`);
    } catch {
      throw new Error('unshare exited');
    }
    if (ns !== own) break;
    if (Date.now() > until) throw new Error('unshare did not create the user namespace');
    await new Promise((r) => setTimeout(r, 2));
  }
  fs.writeFileSync(`/proc/${pid}/uid_map`, mapText(maps.uid));
  fs.writeFileSync(`/proc/${pid}/gid_map`, mapText(maps.gid));
}

function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? os.constants.signals[signal] : 9);
}


/** Read a profile file: a regular file (no FIFO, device or directory), bounded. */
function readProfile(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    throw new RunError(`seccomp profile ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new RunError(`seccomp profile ${file}: not a regular file`);
    if (st.size > MAX_PROFILE_BYTES) throw new RunError(`seccomp profile ${file}: larger than ${MAX_PROFILE_BYTES} bytes`);
    const buf = Buffer.alloc(MAX_PROFILE_BYTES + 1);
    let n = 0;
    for (let r; n < buf.length && (r = fs.readSync(fd, buf, n, buf.length - n, null)) > 0; ) n += r;
    if (n > MAX_PROFILE_BYTES) throw new RunError(`seccomp profile ${file}: larger than ${MAX_PROFILE_BYTES} bytes`);
    return buf.toString('utf8', 0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/** The filter CMD runs under, compiled for its capabilities: null with none. */
function seccompFor(opts: RunOptions, caps: readonly string[]): SeccompWire | null {
  if (opts.seccomp === 'unconfined' || (opts.privileged && opts.seccomp === 'default')) return null;
  try {
    const profile = opts.seccomp === 'default' ? defaultProfile() : parseProfile(readProfile(opts.seccomp.file), opts.seccomp.file);
    return specToWire(compileProfile(profile, { caps: new Set(caps.map((c) => `CAP_${c}`)) }));
  } catch (e) {
    if (e instanceof SeccompError) throw new RunError(e.message);
    throw e;
  }
}

/**
 * What differs between a container of the command line (`layerfs run` in the foreground: its
 * output is ours, our signals are its) and one of the engine (`run -d`: its output goes to its
 * log, the engine signals it).
 */
export interface LaunchHooks {
  /** Mount the root (validated `cfg`; `options`: its -o string); resolves once it serves. */
  mount(cfg: MountConfig, options: string): Promise<void>;
  /** CMD's stdout and stderr: this process' own (inherit), or handed over chunk by chunk. */
  output: 'inherit' | ((stream: 'stdout' | 'stderr', chunk: Buffer) => void);
  /** A line of the launcher's own (an OOM report, a cleanup problem). */
  say(line: string): void;
  /** Forward this process' SIGINT/SIGTERM/SIGHUP/SIGQUIT to CMD (the foreground run). */
  forwardSignals: boolean;
  /** The run's id (names its cgroups and run record); random when absent. */
  id?: string;
}

/** What exec needs to join a running container under its rules. */
export interface RuntimeInfo {
  pid: number;
  uid: number;
  gid: number;
  groups: number[];
  env: string[];
  workdir: string;
  caps: string[];
  privileged: boolean;
  seccomp: SeccompWire | null;
  cgroupProcs: string[];
  root: string;
}

/** The command line's hooks: output and signals are this process'; the engine serves the mount. */
export const CLI_HOOKS: LaunchHooks = {
  mount: async (cfg, options) => {
    const { mountThroughEngine } = await import('../engine/client.ts');
    await mountThroughEngine({ mountpoint: cfg.mountpoint, options });
  },
  output: 'inherit',
  say,
  forwardSignals: true,
};

export class Launch {
  private child?: ChildProcess;
  private ids?: Allocation;
  private cmdPid: number | null = null;
  private interrupted: NodeJS.Signals | null = null;
  private killTimer?: NodeJS.Timeout;
  private readonly handlers = new Map<NodeJS.Signals, () => void>();

  /** Settles once CMD runs (its host pid and what exec needs), or setting up failed. */
  readonly started: Promise<RuntimeInfo>;
  private resolveStarted!: (r: RuntimeInfo) => void;
  private rejectStarted!: (e: Error) => void;
  private runtime?: Omit<RuntimeInfo, 'pid'>;

  constructor(
    private readonly opts: RunOptions,
    private readonly hooks: LaunchHooks = CLI_HOOKS,
  ) {
    this.started = new Promise((resolve, reject) => {
      this.resolveStarted = resolve;
      this.rejectStarted = reject;
    });
    this.started.catch(() => undefined); // run() reports the failure
  }

  /** Send `sig` to CMD (SIGKILL to the whole set-up while CMD has not started). */
  signal(sig: NodeJS.Signals): void {
    this.kill(sig);
  }

  /** Our signals go to CMD; SIGKILL follows after --stop-timeout (at once on a second one). */
  installSignals(): void {
    for (const sig of FORWARDED) {
      const h = (): void => this.onSignal(sig);
      this.handlers.set(sig, h);
      process.on(sig, h);
    }
  }

  removeSignals(): void {
    for (const [sig, h] of this.handlers) process.off(sig, h);
    this.handlers.clear();
    if (this.killTimer) clearTimeout(this.killTimer);
  }

  private target(): number | null {
    if (this.cmdPid === null && this.child?.pid !== undefined && this.child.exitCode === null) this.cmdPid = childOf(this.child.pid);
    return this.cmdPid;
  }

  private kill(sig: NodeJS.Signals): void {
    const pid = this.target();
    try {
      if (pid !== null) process.kill(pid, sig);
      else if (this.child?.pid !== undefined) process.kill(this.child.pid, 'SIGKILL'); // unshare takes stage 2 along
    } catch {
      /* already gone */
    }
  }

  private onSignal(sig: NodeJS.Signals): void {
    const again = this.interrupted !== null;
    this.interrupted ??= sig;
    if (!this.child) return; // still setting up: checked after each step
    if (again) {
      this.kill('SIGKILL');
      return;
    }
    this.kill(sig);
    this.killTimer ??= setTimeout(() => this.kill('SIGKILL'), this.opts.stopTimeout * 1000);
  }

  private checkInterrupted(): void {
    if (this.interrupted) throw new RunError(`interrupted by ${this.interrupted} while setting up`, exitStatus(null, this.interrupted));
  }

  /** Run the container to its end: CMD's exit status (a setup failure rejects, and so does `started`). */
  async run(): Promise<number> {
    try {
      return await this.runToEnd();
    } catch (e) {
      this.rejectStarted(e as Error);
      throw e;
    }
  }

  private async runToEnd(): Promise<number> {
    const opts = this.opts;
    const rootless = process.getuid?.() !== 0;
    const userns = rootless || opts.userns;
    const limits = { memory: opts.memory, pidsLimit: opts.pidsLimit, cpus: opts.cpus };
    const why = limitsUnsupported(limits);
    if (why) throw new RunError(why);
    const volumes = checkVolumes(opts);
    const devices = checkDevices(opts.devices);
    const rootfs = opts.rootfs !== undefined ? realDir(opts.rootfs, '--rootfs') : undefined;
    if (rootless && rootfs === undefined) {
      try {
        fs.accessSync('/dev/fuse', fs.constants.R_OK | fs.constants.W_OK);
      } catch {
        throw new RunError(
          `without root, mounting layerfs needs read-write access to /dev/fuse, which uid ${process.getuid?.()} lacks here (mode ${(fs.statSync('/dev/fuse').mode & 0o777).toString(8)}; Debian's udev default is 666); or use --rootfs on a mount made by root`,
        );
      }
    }
    if (rootless && opts.user?.uid !== undefined && opts.user.uid !== 0) throw new RunError(`-u ${opts.user.uid}: without root only uid 0 is mapped in the container's user namespace`);
    if (rootless && opts.idmap) throw new RunError('--userns=auto, --uidmap and --subuidname need root; without root the caller is uid 0 of the container\'s user namespace');
    if (opts.idmap && rootfs !== undefined) throw new RunError('--userns/--uidmap need the layers (--lower or an IMAGE): the owners of a --rootfs directory cannot be shifted into the container\'s id range');
    const capNames = capabilitySet(opts.capAdd, opts.capDrop, opts.privileged);
    const seccomp = seccompFor(opts, capNames);

    await reapDead().catch(() => undefined);
    if (this.hooks.forwardSignals) this.installSignals();
    // LAYERFS_RUN_ID names the run (tests use it to find its cgroups and record); random otherwise.
    const wanted = this.hooks.id ?? process.env.LAYERFS_RUN_ID;
    const id = wanted && /^[a-z0-9][a-z0-9-]{0,63}$/.test(wanted) ? wanted : randomBytes(6).toString('hex');
    const rec = new RunRecord(id, opts.keep);
    let cg: Cgroups | null = null;
    let status = 125;
    try {
      // As root with a user namespace: the host ids of the container's (held until mapped).
      if (opts.idmap) this.ids = allocateIds(opts.idmap);
      const maps = this.ids?.maps;
      let root: string;
      if (rootfs !== undefined) root = rootfs;
      else {
        root = path.join(rec.dir, 'root');
        fs.mkdirSync(root);
        let upper = opts.upper;
        let work = opts.work;
        if (upper === undefined) {
          const base = process.env.LAYERFS_TMP || process.env.TMPDIR || '/var/tmp';
          const scratch = path.join(fs.realpathSync(base), `layerfs-run-${id}`);
          rec.update((s) => (s.scratch = scratch));
          fs.mkdirSync(scratch, { mode: 0o700 });
          upper = path.join(scratch, 'upper');
          work = path.join(scratch, 'work');
          fs.mkdirSync(upper, { mode: 0o755 });
          fs.mkdirSync(work);
        }
        const o = [`lowerdir=${opts.lowers.map(esc).join(':')}`, `upperdir=${esc(upper)}`, `workdir=${esc(work!)}`];
        if (rootless) o.push('userxattr');
        if (maps) o.push(`uidmapping=${mappingOption(maps.uid)}`, `gidmapping=${mappingOption(maps.gid)}`);
        let cfg;
        try {
          cfg = await validateMountConfig(parseMountArgs(['-o', o.join(','), root]));
        } catch (e) {
          if (e instanceof ConfigError) throw new RunError(e.message.replace(/^layerfs: /, ''));
          throw e;
        }
        this.checkInterrupted();
        rec.update((s) => (s.mountpoint = root));
        try {
          await this.hooks.mount(cfg, o.join(','));
        } catch (e) {
          if (e instanceof RunError) throw e;
          throw new RunError((e as Error).message.replace(/^layerfs: /, ''));
        }
      }
      this.checkInterrupted();
      // -u, else the image's User, else root: looked up in the container's own /etc/passwd and
      // /etc/group, now that it is mounted (docker's rules: image.ts resolveUser).
      const fromImage = opts.user === undefined && opts.imageUser !== undefined;
      const user = await resolveUser(root, opts.user ?? opts.imageUser, fromImage);
      const who = opts.user !== undefined ? `-u ${userText(opts.user)}` : fromImage ? `user ${opts.imageUser} of the image` : 'root';
      if (rootless && user.uid !== 0) throw new RunError(`${who} (uid ${user.uid}): without root only uid 0 is mapped in the container's user namespace`);
      if (maps && (!mapsId(maps.uid, user.uid) || !mapsId(maps.gid, user.gid))) {
        throw new RunError(`user ${user.uid}:${user.gid} is not mapped in the container's user namespace`);
      }
      const unmapped = maps ? user.groups.find((g) => !mapsId(maps.gid, g)) : undefined;
      if (unmapped !== undefined) throw new RunError(`${who}: group ${unmapped} (/etc/group lists the user in it) is not mapped in the container's user namespace`);
      try {
        cg = createCgroups(id, limits, (d) => rec.update((s) => s.cgroupDirs.push(d)), opts.privileged || rootless ? null : containerDevices(devices.rules));
      } catch (e) {
        throw new RunError(`cannot set up the cgroup: ${(e as Error).message}`);
      }
      if (!cg && (limits.memory ?? limits.pidsLimit ?? limits.cpus) !== undefined) throw new RunError('no usable cgroup hierarchy for the limits');
      if (!cg && !rootless && !opts.privileged) throw new RunError('no usable cgroup hierarchy to keep the container from device nodes (--privileged runs without)');
      this.checkInterrupted();

      const hostname = opts.hostname ?? id;
      const s2: Stage2Config = {
        root,
        readOnly: opts.readOnly,
        volumes,
        hostname,
        net: opts.net,
        userns,
        requestMap: userns && !rootless,
        workdir: opts.workdir ?? '/',
        uid: user.uid,
        gid: user.gid,
        groups: user.groups,
        home: user.home,
        tmpfs: opts.tmpfs.map((t) => ({ target: t.target, readonly: t.readonly, noexec: t.noexec, nosuid: t.nosuid, nodev: t.nodev, data: t.data.join(',') })),
        devices: devices.devices,
        env: containerEnv(opts, hostname),
        command: opts.command,
        tty: opts.tty,
        cgroupProcs: cg?.procs ?? [],
        caps: capNames.map((c) => CAPS[c]),
        privileged: opts.privileged,
        seccomp,
      };
      this.runtime = {
        uid: s2.uid, gid: s2.gid, groups: s2.groups, env: s2.env, workdir: s2.workdir, caps: capNames,
        privileged: opts.privileged, seccomp: s2.seccomp, cgroupProcs: s2.cgroupProcs, root,
      };
      status = await this.start(s2);
      const kills = oomKills(cg);
      if (kills > 0) {
        this.hooks.say(
          status === 137
            ? `layerfs run: the container ran out of memory (limit ${opts.memory} bytes): the kernel OOM-killed CMD`
            : `layerfs run: the container hit its memory limit (${opts.memory} bytes): the kernel OOM-killed ${kills} process${kills > 1 ? 'es' : ''}`,
        );
      }
      return status;
    } finally {
      this.ids?.release();
      this.removeSignals();
      const problems = await cleanupRun(rec.dir, rec.state);
      for (const p of problems) this.hooks.say(`layerfs run: cleanup: ${p}`);
      if (opts.keep && rec.state.scratch) this.hooks.say(`layerfs run: upper kept: ${path.join(rec.state.scratch, 'upper')} (workdir ${path.join(rec.state.scratch, 'work')})`);
    }
  }

  private async start(s2: Stage2Config): Promise<number> {
    const opts = this.opts;
    const unshare = ['unshare', '--mount', '--pid', '--uts', '--ipc'];
    if (s2.net === 'none') unshare.push('--net');
    // Rootless: the caller becomes root inside (unshare writes that one-line map). Root asking
    // for --userns: the allocated unprivileged host range, written by us (util-linux would need
    // newuidmap); a `sh` waits for it so that stage 2 is executed as a mapped root.
    if (s2.userns) unshare.push(...(s2.requestMap ? ['--user', '--keep-caps'] : ['--user', '--map-root-user']));
    unshare.push('--fork', '--kill-child=SIGKILL', '--propagation', 'private', '--');
    if (s2.requestMap) unshare.push('/bin/sh', '-c', `read -r go <&${CTL_IN_FD} && exec "$0" "$@"`);
    const bundle = await stage2Bundle();
    unshare.push(process.execPath, ...(bundle ? [bundle] : [...TSX_ARGS, STAGE2_SOURCE]));
    const handed = this.hooks.output !== 'inherit';
    const stdio: ('ignore' | 'inherit' | 'pipe' | number)[] = opts.tty
      ? ['ignore', 'ignore', 'pipe', 'pipe', 'pipe', 2]
      : handed
        ? ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe']
        : [opts.interactive ? 'inherit' : 'ignore', 'inherit', 'pipe', 'pipe', 'pipe', 2];
    // setpriv: unshare dies with us (and CMD with unshare, --kill-child), even on SIGKILL.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...unshare], {
      stdio,
      env: { ...process.env, [STAGE2_ENV]: JSON.stringify(s2) },
    });
    this.child = child;
    const out = this.hooks.output;
    let outputDone: Promise<unknown> = Promise.resolve();
    if (out !== 'inherit' && !opts.tty) {
      const pipeTo = (fd: number, stream: 'stdout' | 'stderr'): Promise<void> =>
        new Promise((resolve) => {
          const r = child.stdio[fd] as Readable;
          r.on('data', (d: Buffer) => out(stream, d));
          r.on('close', () => resolve());
          r.on('error', () => resolve());
        });
      outputDone = Promise.all([pipeTo(1, 'stdout'), pipeTo(STDERR_FD, 'stderr')]);
    }
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.on('exit', (code, signal) => resolve({ code, signal }));
      child.on('error', (e) => {
        this.hooks.say(`layerfs run: cannot start unshare: ${e.message}`);
        resolve({ code: 125, signal: null });
      });
    });
    if (this.interrupted) this.kill('SIGKILL');
    // unshare's and stage 2's own stderr: passed on, except unshare's word for a SIGKILLed child.
    let sigkilled = false;
    const errDone = new Promise<void>((resolve) => {
      let buf = '';
      const flush = (all: boolean): void => {
        const lines = buf.split('\n');
        buf = all ? '' : lines.pop()!;
        for (const l of all ? lines.filter(Boolean) : lines) {
          if (/^unshare: sigprocmask unblock failed/.test(l)) sigkilled = true;
          else if (out !== 'inherit') out('stderr', Buffer.from(l + '\n'));
          else process.stderr.write(l + '\n');
        }
      };
      const err = child.stdio[2] as Readable;
      err.on('data', (d: Buffer) => {
        buf += d.toString();
        flush(false);
      });
      err.on('close', () => {
        flush(true);
        resolve();
      });
      err.on('error', () => resolve());
    });
    const ctlIn = child.stdio[CTL_IN_FD] as Writable;
    if (s2.requestMap && child.pid !== undefined) {
      try {
        await mapIds(child.pid, this.ids!.maps);
        ctlIn.write('go\n');
      } catch (e) {
        this.hooks.say(`layerfs run: cannot map ids into the user namespace: ${(e as Error).message}`);
        this.kill('SIGKILL');
      } finally {
        this.ids!.release(); // the maps are visible in /proc now: the next launcher sees them taken
      }
    }
    const ctlOut = child.stdio[CTL_IN_FD + 1] as Readable;
    let setupError: { status: number; message: string } | null = null;
    let master = -1;
    const execed = new Promise<void>((resolve) => {
      let buf = '';
      ctlOut.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line === 'exec') {
            const pid = this.target();
            if (pid !== null && this.runtime) this.resolveStarted({ pid, ...this.runtime });
            resolve(); // unshare holds fd 4 too: no end of file before it exits
          }
          else if (line === 'pty') {
            try {
              const pid = this.target();
              if (pid === null) throw new Error('stage 2 not found');
              const pty = openPtyMaster(`/proc/${pid}/root${s2.root}/dev/pts`);
              master = pty.master;
              ctlIn.write(`pty ${pty.index}\n`);
            } catch (e) {
              ctlIn.write(`nopty ${(e as Error).message}\n`);
            }
          } else {
            const m = /^error (\d+) (.*)$/.exec(line);
            if (m) setupError = { status: Number(m[1]), message: m[2] };
          }
        }
      });
      ctlOut.on('close', () => resolve());
      ctlOut.on('error', () => resolve());
    });
    await Promise.race([execed, exited]);
    await execed;
    let tty: ReturnType<typeof relay> | undefined;
    if (master >= 0 && !setupError) tty = relay(master, opts.interactive);
    const { code, signal } = await exited;
    await Promise.race([Promise.all([errDone, outputDone]), new Promise((r) => setTimeout(r, 2000))]);
    ctlIn.destroy();
    if (tty) {
      await Promise.race([tty.done, new Promise((r) => setTimeout(r, 1000))]);
      tty.stop();
    } else if (master >= 0) fs.closeSync(master);
    if (setupError) {
      const e = setupError as { status: number; message: string };
      throw new RunError(e.message, e.status);
    }
    if (this.runtime) this.rejectStarted(new RunError(`the container exited before its command started (${exitStatus(code, signal)})`, exitStatus(code, signal)));
    return sigkilled && code === 1 ? 137 : exitStatus(code, signal);
  }
}

/** `layerfs run ARGS`: returns the exit status (CMD's, or 125 for the launcher's own errors). */
export async function cmdRun(argv: string[]): Promise<number> {
  try {
    const opts = parseRunArgs(argv, process.env, (name) => isStoredImage(name));
    if (opts.help) {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    // -d: a container of the engine, which supervises it (and restarts it: --restart needs -d).
    if (opts.detach) return (await import('./detached.ts')).runDetached(argv);
    if (opts.restart !== undefined && opts.restart.policy !== 'no') throw new RunError('--restart needs -d: the engine restarts a container it supervises');
    if (opts.cleanupOnly) {
      const { reaped, problems } = await reapDead();
      for (const p of problems) say(`layerfs run: cleanup: ${p}`);
      say(`layerfs run: reaped ${reaped.length} leftover run${reaped.length === 1 ? '' : 's'}`);
      return problems.length > 0 ? 1 : 0;
    }
    // IMAGE: its layers and config; the layers stay locked (shared) while the container runs.
    const image = opts.image;
    const held = opts.image !== undefined ? applyImage(opts) : [];
    // A container of the engine while it runs (ps lists it; stop, kill and exec reach it); this
    // command supervises it and removes it at its end, as before.
    const { registerForeground } = await import('./detached.ts');
    let reg: Awaited<ReturnType<typeof registerForeground>>;
    try {
      reg = await registerForeground(argv, image);
    } catch (e) {
      for (const fd of held) fs.closeSync(fd);
      throw e;
    }
    try {
      const hooks = reg ? { ...CLI_HOOKS, id: process.env.LAYERFS_RUN_ID ?? reg.id.slice(0, 12) } : CLI_HOOKS;
      if (reg) opts.hostname ??= reg.id.slice(0, 12); // docker's host name: the short ID
      const launch = new Launch(opts, hooks);
      if (reg) void launch.started.then((rt) => reg.attach(rt), () => undefined);
      return await launch.run();
    } finally {
      await reg?.remove();
      for (const fd of held) fs.closeSync(fd);
    }
  } catch (e) {
    if (e instanceof RunError) {
      say(e.message);
      return e.status;
    }
    say(`layerfs run: ${(e as Error).message.split('\n')[0]}`);
    if (process.env.LAYERFS_DEBUG) say(String((e as Error).stack));
    return 125;
  }
}
