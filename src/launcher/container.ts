// Containers of the engine (`layerfs run -d`, `start`, `stop`, `ps`, …): each is a `layerfs run`
// whose records live in the store (src/engine/containers/store.ts), whose output goes to its
// log, and whose supervisor is the engine process: Launch (./run.ts) with the engine's hooks.
// A container keeps its upper across stop and start; `rm` removes it.
//
// The engine holds this object (src/cli/engine.ts hands it over: the engine itself knows no
// launcher). If the engine dies, its containers die with it (their launcher is the engine: the
// parent-death signal takes unshare and with it the PID namespace); the next engine finds them
// marked running, reaps what they left (./state.ts reapDead) and records them exited with 137.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MountConfig } from '../config.ts';
import { ContainerError, ContainerStore, elapsed, type ContainerConfig, type ContainerState } from '../engine/containers/store.ts';
import { LogWriter, readLog, type LogRecord } from '../engine/containers/logs.ts';
import { log } from '../log.ts';
import { applyImage, isStoredImage } from './image.ts';
import { parseRunArgs, RunError, type RunOptions } from './options.ts';
import { Launch, type RuntimeInfo } from './run.ts';
import { inDir } from './detached.ts';
import { parentPid, processStart, reapDead } from './state.ts';

const SIGNALS = new Set(['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGKILL', 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGSTOP', 'SIGCONT', 'SIGWINCH', 'SIGALRM', 'SIGPIPE']);

interface Live {
  launch: Launch;
  done: Promise<number>;
  log: LogWriter;
  /** Set by stop/kill/rm: the exit is wanted (no restart). */
  stopping: boolean;
  runtime?: RuntimeInfo;
}

export interface ContainerSummary {
  Id: string;
  Names: string;
  Image: string;
  Command: string;
  CreatedAt: string;
  State: string;
  Status: string;
  ExitCode: number | null;
}

/** An absolute path for `p`, given relative to the client's `cwd`. */
function abs(cwd: string, p: string): string {
  return path.resolve(cwd, p);
}

/** The run options with every host path made absolute (the engine's cwd is /, not the client's). */
function absolutize(o: RunOptions, cwd: string): RunOptions {
  return {
    ...o,
    lowers: o.lowers.map((l) => abs(cwd, l)),
    ...(o.upper !== undefined ? { upper: abs(cwd, o.upper) } : {}),
    ...(o.work !== undefined ? { work: abs(cwd, o.work) } : {}),
    ...(o.rootfs !== undefined ? { rootfs: abs(cwd, o.rootfs) } : {}),
    volumes: o.volumes.map((v) => ({ ...v, host: abs(cwd, v.host) })),
    devices: o.devices.map((d) => ({ ...d, host: abs(cwd, d.host) })),
    seccomp: typeof o.seccomp === 'object' ? { file: abs(cwd, o.seccomp.file) } : o.seccomp,
  };
}

/** Whether `pid` descends from `ancestor` (strictly), following parent pids. */
function descendantOf(pid: number, ancestor: number): boolean {
  let p: number | null = pid;
  for (let i = 0; i < 32 && p !== null && p > 1; i++) {
    p = parentPid(p);
    if (p === ancestor) return true;
  }
  return false;
}

export class Containers {
  readonly store: ContainerStore;
  private readonly live = new Map<string, Live>();
  private readonly waiters = new Map<string, Set<(code: number) => void>>();

  constructor(
    private readonly deps: {
      storeRoot: string;
      env: NodeJS.ProcessEnv;
      mount(cfg: MountConfig, options: string): Promise<void>;
    },
  ) {
    this.store = new ContainerStore(deps.storeRoot);
  }

  /** At the engine's start: containers a dead engine left "running" are exited (137) now. */
  async recover(): Promise<string[]> {
    this.store.sweep();
    const found: string[] = [];
    for (const id of this.store.ids()) {
      if (this.store.config(id).attached) {
        this.stillAttached(id); // its own command supervises it: gone only when that command is
        continue;
      }
      const s = this.store.state(id);
      if (s.status !== 'running' && s.status !== 'removing') continue;
      this.store.update(id, (x) => {
        x.status = 'exited';
        x.exitCode = 137;
        x.pid = 0;
        x.mountpoint = null;
        x.finishedAt = new Date().toISOString();
        x.error = 'its engine died';
      });
      found.push(id);
    }
    if (found.length > 0) {
      try {
        for (const p of (await reapDead()).problems) log(`reaping after a dead engine: ${p} (tried again at the next start)`);
      } catch (e) {
        log(`reaping after a dead engine: ${(e as Error).message}`);
      }
    }
    return found;
  }

  /**
   * `run -d`: a container from `layerfs run` arguments (the client's cwd and environment).
   * `attached`: the pid of a foreground `layerfs run` that supervises it itself (see attach()).
   */
  create(args: string[], cwd: string, env: NodeJS.ProcessEnv, attached?: number, image?: string): ContainerConfig {
    if (!cwd.startsWith('/')) throw new ContainerError('the working directory must be absolute', 400);
    let opts: RunOptions;
    try {
      // A foreground run's image is in its command's store, which need not be the engine's.
      const isImage = (name: string): boolean => (attached !== undefined && name === image) || isStoredImage(name, this.deps.env);
      opts = inDir(cwd, () => parseRunArgs(args, env, isImage));
    } catch (e) {
      if (e instanceof RunError) throw new ContainerError(e.message.replace(/^layerfs run: /, ''), 400);
      throw e;
    }
    if (opts.help || opts.cleanupOnly) throw new ContainerError('--help and --cleanup are not containers', 400);
    let supervisor: { pid: number; start: string } | undefined;
    if (attached !== undefined) {
      const start = processStart(attached);
      if (start === null) throw new ContainerError(`no process ${attached} to supervise the container`, 400);
      supervisor = { pid: attached, start };
    } else {
      if (opts.tty) throw new ContainerError('-t with -d is not supported yet (no attach): run it in the foreground, or without -t', 400);
      if (opts.interactive) throw new ContainerError('-i with -d is not supported yet (no attach)', 400);
      if (opts.keep) throw new ContainerError('--keep is for a throw-away upper; a container keeps its upper until rm', 400);
    }
    opts = absolutize({ ...opts, detach: attached === undefined }, cwd);
    let command = opts.command;
    let imageId: string | undefined;
    if (opts.image !== undefined && supervisor === undefined) {
      const probe = structuredClone(opts);
      for (const fd of this.applyImage(probe)) fs.closeSync(fd);
      command = probe.command;
      imageId = probe.lowers[0] ? path.basename(probe.lowers[0]) : undefined;
    }
    const rec = this.store.create({
      name: opts.name,
      args,
      options: opts,
      image: opts.image,
      imageId,
      command,
      restart: opts.restart ?? { policy: 'no', maxRetries: 0 },
      // A foreground run keeps nothing after it ends, as before (its command removes it).
      autoRemove: opts.rm || supervisor !== undefined,
      ...(supervisor ? { attached: supervisor } : {}),
    });
    return rec;
  }

  private applyImage(opts: RunOptions): number[] {
    try {
      return applyImage(opts, this.deps.env);
    } catch (e) {
      if (e instanceof RunError) throw new ContainerError(e.message.replace(/^layerfs run: /, ''), 404);
      throw e;
    }
  }

  /** Start a created or exited container; resolves once its command runs. */
  async start(ref: string): Promise<void> {
    const id = this.store.resolve(ref);
    if (this.live.has(id)) return; // docker: starting a running container is no error
    if (this.store.config(id).attached) throw new ContainerError(`container ${this.store.config(id).name} is a foreground run's: its command supervises it`, 409);
    const cfg = this.store.config(id);
    const opts = structuredClone(cfg.options as RunOptions);
    const fds = opts.image !== undefined ? this.applyImage(opts) : [];
    if (opts.rootfs === undefined && opts.upper === undefined) {
      opts.upper = this.store.pathOf(id, 'upper');
      opts.work = this.store.pathOf(id, 'work');
    }
    // docker's host name: the short ID. The run's own id (its cgroups, its run record) is new
    // at each start: what a killed engine left of the previous run may still be reaped.
    opts.hostname ??= id.slice(0, 12);
    const logw = new LogWriter(this.store.pathOf(id, 'log.json'));
    const launch = new Launch(opts, {
      mount: this.deps.mount,
      output: (stream, chunk) => logw.write(stream, chunk),
      say: (line) => {
        logw.write('stderr', Buffer.from(line + '\n'));
        log(`container ${id.slice(0, 12)}: ${line}`);
      },
      forwardSignals: false,
      id: `${id.slice(0, 12)}-${randomBytes(3).toString('hex')}`,
    });
    const done = launch.run();
    const live: Live = { launch, done, log: logw, stopping: false };
    this.live.set(id, live);
    // Its end recorded (and, with --rm, the container removed), also when it failed to start.
    const ended = done
      .then(
        (code) => code,
        (e: Error) => {
          const status = e instanceof RunError ? e.status : 125;
          logw.write('stderr', Buffer.from(`${e.message}\n`));
          this.store.update(id, (s) => (s.error = e.message));
          return status;
        },
      )
      .then((code) => this.exited(id, live, code, fds));
    try {
      live.runtime = await launch.started;
    } catch (e) {
      await ended;
      throw new ContainerError((e as Error).message.replace(/^layerfs run: /, ''), 500);
    }
    this.store.update(id, (s) => {
      s.status = 'running';
      s.pid = live.runtime!.pid;
      s.exitCode = null;
      s.error = '';
      s.startedAt = new Date().toISOString();
      s.finishedAt = null;
      s.oomKilled = false;
      s.mountpoint = live.runtime!.root;
    });
    fs.writeFileSync(this.store.pathOf(id, 'runtime.json'), JSON.stringify({ ...live.runtime, startTime: processStart(live.runtime.pid) }) + '\n', { mode: 0o600 });
  }

  private async exited(id: string, live: Live, code: number, fds: number[]): Promise<void> {
    for (const fd of fds) fs.closeSync(fd);
    live.log.close();
    this.live.delete(id);
    fs.rmSync(this.store.pathOf(id, 'runtime.json'), { force: true });
    let cfg: ContainerConfig;
    let s: ContainerState;
    try {
      cfg = this.store.config(id);
      s = this.store.update(id, (x) => {
        x.status = 'exited';
        x.exitCode = code;
        x.pid = 0;
        x.mountpoint = null;
        x.finishedAt = new Date().toISOString();
      });
    } catch {
      return; // removed meanwhile
    }
    for (const w of this.waiters.get(id) ?? []) w(code);
    this.waiters.delete(id);
    log(`container ${id.slice(0, 12)} (${cfg.name}) exited with ${code}`);
    if (cfg.autoRemove) {
      this.store.remove(id);
      return;
    }
    const r = cfg.restart;
    if (r.policy === 'on-failure' && code !== 0 && !live.stopping && (!r.maxRetries || s.restartCount < r.maxRetries)) {
      this.store.update(id, (x) => x.restartCount++);
      const delay = Math.min(100 * 2 ** s.restartCount, 10_000); // docker doubles its delay too
      setTimeout(() => {
        void this.start(id).catch((e: Error) => log(`container ${id.slice(0, 12)}: restart failed: ${e.message}`));
      }, delay);
    }
  }

  /** A foreground run's container started: its PID 1 and what exec needs. */
  attach(ref: string, runtime: RuntimeInfo): void {
    const id = this.store.resolve(ref);
    const c = this.store.config(id);
    if (!c.attached) throw new ContainerError(`container ${c.name} is not a foreground run's`, 409);
    if (!Number.isInteger(runtime?.pid) || processStart(runtime.pid) === null) throw new ContainerError(`no process ${String(runtime?.pid)} in container ${c.name}`, 400);
    // Only a descendant of the supervising command: stop and kill signal this pid.
    if (!descendantOf(runtime.pid, c.attached.pid)) throw new ContainerError(`process ${runtime.pid} is not one of the supervising command's (${c.attached.pid})`, 400);
    fs.writeFileSync(this.store.pathOf(id, 'runtime.json'), JSON.stringify({ ...runtime, startTime: processStart(runtime.pid) }) + '\n', { mode: 0o600 });
    this.store.update(id, (s) => {
      s.status = 'running';
      s.pid = runtime.pid;
      s.startedAt = new Date().toISOString();
      s.mountpoint = runtime.root;
    });
  }

  /**
   * A foreground run's container whose command is gone without removing it (killed): removed
   * now. Returns whether `id` still stands.
   */
  private stillAttached(id: string): boolean {
    let c: ContainerConfig;
    try {
      c = this.store.config(id);
    } catch {
      return false;
    }
    if (!c.attached || processStart(c.attached.pid) === c.attached.start) return true;
    try {
      this.store.remove(id);
    } catch {
      /* raced with its command's own rm */
    }
    return false;
  }

  /** The host pid of a running foreground container's PID 1 (checked against pid reuse), or null. */
  private attachedPid(id: string): number | null {
    if (!this.stillAttached(id)) return null;
    const s = this.store.state(id);
    if (s.status !== 'running' || !s.pid) return null;
    try {
      const rt = JSON.parse(fs.readFileSync(this.store.pathOf(id, 'runtime.json'), 'utf8')) as { startTime?: string };
      return processStart(s.pid) === rt.startTime ? s.pid : null;
    } catch {
      return null;
    }
  }

  /** Wait until a foreground container's command has removed it (or died); false on timeout. */
  private async attachedGone(id: string, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (this.stillAttached(id) && this.attachedPid(id) !== null) {
      if (Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  /** stop: SIGTERM (the image's STOPSIGNAL is not kept yet), SIGKILL after `timeout` seconds. */
  async stop(ref: string, timeout = 10): Promise<void> {
    const id = this.store.resolve(ref);
    const live = this.live.get(id);
    const pid = live ? null : this.attachedPid(id);
    if (pid !== null) {
      process.kill(pid, 'SIGTERM');
      if (!(await this.attachedGone(id, timeout * 1000))) {
        const again = this.attachedPid(id);
        if (again !== null) process.kill(again, 'SIGKILL');
        await this.attachedGone(id, 10_000);
      }
      return;
    }
    if (!live) return; // docker: stopping a stopped container is no error
    live.stopping = true;
    live.launch.signal('SIGTERM');
    const timer = setTimeout(() => live.launch.signal('SIGKILL'), timeout * 1000);
    await live.done.catch(() => undefined);
    clearTimeout(timer);
    await this.settled(id);
  }

  /** Resolves once the container's end is recorded. */
  private settled(id: string): Promise<void> {
    if (!this.live.has(id)) return Promise.resolve();
    return new Promise((resolve) => {
      const set = this.waiters.get(id) ?? new Set();
      set.add(() => resolve());
      this.waiters.set(id, set);
    });
  }

  async kill(ref: string, signal = 'SIGKILL'): Promise<void> {
    const id = this.store.resolve(ref);
    const sig = /^\d+$/.test(signal) ? signal : signal.toUpperCase().replace(/^(?!SIG)/, 'SIG');
    const name = /^\d+$/.test(sig) ? Object.entries((await import('node:os')).constants.signals).find(([, n]) => String(n) === sig)?.[0] : sig;
    if (!name || !SIGNALS.has(name)) throw new ContainerError(`invalid signal: ${signal}`, 400);
    const live = this.live.get(id);
    const pid = live ? null : this.attachedPid(id);
    if (pid !== null) {
      process.kill(pid, name as NodeJS.Signals);
      return;
    }
    if (!live) throw new ContainerError(`container ${this.store.config(id).name} is not running`);
    if (name === 'SIGKILL' || name === 'SIGTERM' || name === 'SIGINT' || name === 'SIGQUIT') live.stopping = true;
    live.launch.signal(name as NodeJS.Signals);
  }

  async restart(ref: string, timeout = 10): Promise<void> {
    if (this.store.config(this.store.resolve(ref)).attached) throw new ContainerError('a foreground run cannot be restarted: its command supervises it', 409);
    await this.stop(ref, timeout);
    await this.start(ref);
  }

  /** Resolves with the exit status once the container is not running. */
  async wait(ref: string): Promise<number> {
    const id = this.store.resolve(ref);
    if (this.store.config(id).attached) throw new ContainerError('wait on a foreground run: its own command reports its exit status', 409);
    if (!this.live.has(id)) return this.store.state(id).exitCode ?? 0;
    return new Promise((resolve) => {
      const set = this.waiters.get(id) ?? new Set();
      set.add(resolve);
      this.waiters.set(id, set);
    });
  }

  async remove(ref: string, force = false): Promise<string> {
    const id = this.store.resolve(ref);
    const attached = this.store.config(id).attached;
    if (attached) {
      // Its own command removes it when it ends; rm -f kills it first (the command then finds it gone).
      const pid = this.attachedPid(id);
      if (pid !== null) {
        if (!force) throw new ContainerError(`cannot remove container ${this.store.config(id).name}: it is running (stop it first, or rm -f)`);
        process.kill(pid, 'SIGKILL');
        await this.attachedGone(id, 10_000);
      }
      try {
        this.store.remove(id);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      return id;
    }
    const live = this.live.get(id);
    if (live && !force) {
      throw new ContainerError(`cannot remove container ${this.store.config(id).name}: it is running (stop it first, or rm -f)`);
    }
    if (live) {
      live.stopping = true;
      live.launch.signal('SIGKILL');
      await live.done.catch(() => undefined);
      await this.settled(id);
    }
    try {
      this.store.remove(id);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // --rm took it meanwhile
    }
    return id;
  }

  list(all: boolean): ContainerSummary[] {
    const out: ContainerSummary[] = [];
    for (const id of this.store.ids()) {
      if (!this.stillAttached(id)) continue;
      let c: ContainerConfig;
      let s: ContainerState;
      try {
        c = this.store.config(id);
        s = this.store.state(id);
      } catch {
        continue; // being removed
      }
      if (!all && s.status !== 'running') continue;
      const status =
        s.status === 'running' ? `Up ${elapsed(s.startedAt)}` : s.status === 'exited' ? `Exited (${s.exitCode}) ${elapsed(s.finishedAt)} ago` : 'Created';
      out.push({
        Id: id, Names: c.name, Image: c.image ?? `--lower ${(c.options as RunOptions).lowers.join(':')}`,
        Command: c.command.join(' '), CreatedAt: c.created, State: s.status, Status: status, ExitCode: s.exitCode,
      });
    }
    return out.sort((a, b) => (a.CreatedAt < b.CreatedAt ? 1 : -1));
  }

  inspect(ref: string): Record<string, unknown> {
    const id = this.store.resolve(ref);
    const c = this.store.config(id);
    const s = this.store.state(id);
    const o = c.options as RunOptions;
    const upper = o.rootfs !== undefined ? null : (o.upper ?? this.store.pathOf(id, 'upper'));
    return {
      Id: id,
      Name: c.name,
      Created: c.created,
      Args: c.args,
      Image: c.image ?? null,
      Command: c.command,
      State: {
        Status: s.status, Running: s.status === 'running', Pid: s.pid, ExitCode: s.exitCode, Error: s.error,
        StartedAt: s.startedAt, FinishedAt: s.finishedAt, RestartCount: s.restartCount, OOMKilled: s.oomKilled,
      },
      HostConfig: { RestartPolicy: c.restart, AutoRemove: c.autoRemove, Privileged: o.privileged, ReadonlyRootfs: o.readOnly, NetworkMode: o.net },
      Mounts: o.volumes.map((v) => ({ Type: 'bind', Source: v.host, Destination: v.target, RW: !v.readonly })),
      GraphDriver: { Name: 'layerfs', Data: { LowerDir: o.lowers.join(':') || null, UpperDir: upper, WorkDir: o.rootfs !== undefined ? null : (o.work ?? this.store.pathOf(id, 'work')), MergedDir: s.mountpoint, RootFs: o.rootfs ?? null } },
      LogPath: this.store.pathOf(id, 'log.json'),
    };
  }

  /** What `exec` needs to join the running container `ref`. */
  runtime(ref: string): RuntimeInfo & { id: string; name: string } {
    const id = this.store.resolve(ref);
    if (this.attachedPid(id) !== null) {
      const rt = JSON.parse(fs.readFileSync(this.store.pathOf(id, 'runtime.json'), 'utf8')) as RuntimeInfo;
      return { ...rt, id, name: this.store.config(id).name };
    }
    const live = this.live.get(id);
    if (!live?.runtime) throw new ContainerError(`container ${this.store.config(id).name} is not running`);
    return { ...live.runtime, id, name: this.store.config(id).name };
  }

  /** The log's records (`tail`: the last N); `follow`: and then each new one until the end. */
  logs(ref: string, tail: number | undefined, follow: ((r: LogRecord) => void) | null): { records: LogRecord[]; ended: Promise<void>; stop(): void } {
    const id = this.store.resolve(ref);
    const records = readLog(this.store.pathOf(id, 'log.json'), tail);
    const live = this.live.get(id);
    if (!follow || !live) return { records, ended: Promise.resolve(), stop: () => undefined };
    const unsubscribe = live.log.onRecord(follow);
    const ended = live.done.then(
      () => undefined,
      () => undefined,
    );
    void ended.then(unsubscribe);
    return { records, ended, stop: unsubscribe };
  }

  running(): number {
    return this.live.size;
  }

  /** The engine is stopping: every container is killed (it would die with the engine anyway). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.live.keys()].map((id) => this.stop(id, 10)));
  }
}
