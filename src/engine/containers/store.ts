// Container records: $LAYERFS_STORE/containers/ID/ (the image store's directory, default
// /var/lib/layerfs), one directory per container:
//
//   config.json   what it runs: the `run` arguments as resolved when it was created (immutable)
//   state.json    where it is: created, running, exited; pid, exit code, times, restarts
//   log.json      its output, one JSON object per line (./logs.ts); log.json.1 the older half
//   upper/ work/  its upper and work dirs (kept across stop/start; removed with the container)
//
// Every record is written whole to a temporary file, fsynced and renamed over the old one, so a
// crash leaves the old record or the new one, never half of one. Names are unique: a name is
// claimed by creating containers/names/NAME (a symlink to the ID) with O_EXCL semantics
// (symlink(2) fails when it exists), so two creations cannot both get it.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export type Status = 'created' | 'running' | 'exited' | 'removing';

export interface RestartPolicy {
  policy: 'no' | 'on-failure';
  /** on-failure:N: at most N restarts; 0 is no limit. */
  maxRetries: number;
}

export interface ContainerConfig {
  id: string;
  name: string;
  created: string;
  /** The `layerfs run` arguments (after the run word), as given. */
  args: string[];
  /**
   * The run options they parse to (src/launcher/options.ts RunOptions), resolved when it was
   * created: host paths absolute, -e KEY and --env-file read with the client's environment.
   */
  options: unknown;
  /** The image, when run from one (name and config digest). */
  image?: string;
  imageId?: string;
  /** What runs: the resolved command line. */
  command: string[];
  restart: RestartPolicy;
  autoRemove: boolean;
  /**
   * A foreground `layerfs run`: that command supervises it (its output and signals are the
   * command's), and it is listed while it runs; the engine only signals it (stop, kill, rm -f).
   */
  attached?: { pid: number; start: string };
}

export interface ContainerState {
  status: Status;
  /** The host pid of its PID 1 while running. */
  pid: number;
  exitCode: number | null;
  startedAt: string | null;
  finishedAt: string | null;
  restartCount: number;
  oomKilled: boolean;
  /** Why it did not start, or what went wrong at its end. */
  error: string;
  /** The mount point of its root while running. */
  mountpoint: string | null;
}

export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** Write `file` whole, or not at all (temporary file, fsync, rename, fsync of the directory). */
export function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dfd = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
}

/** A failure about containers, for the user: one line (and the API's HTTP status). */
export class ContainerError extends Error {
  constructor(
    message: string,
    readonly http = 409,
  ) {
    super(message);
  }
}

export class ContainerStore {
  readonly dir: string;
  private readonly names: string;

  constructor(storeRoot: string) {
    this.dir = path.join(storeRoot, 'containers');
    this.names = path.join(this.dir, 'names');
  }

  /** The directories, made at the first container (an engine that only mounts never needs them). */
  private ensure(): void {
    fs.mkdirSync(this.names, { recursive: true, mode: 0o700 });
  }

  pathOf(id: string, ...rest: string[]): string {
    return path.join(this.dir, id, ...rest);
  }

  /** A new container's directory and records; the name claimed first (refused when taken). */
  create(c: Omit<ContainerConfig, 'id' | 'name' | 'created'> & { name?: string }): ContainerConfig {
    this.ensure();
    const id = randomBytes(32).toString('hex');
    let name = c.name;
    if (name !== undefined) {
      if (!NAME_RE.test(name)) throw new ContainerError(`invalid container name '${name}': [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters`, 400);
      this.claim(name, id);
    } else {
      for (let i = 0; ; i++) {
        name = randomName(i > 20);
        try {
          this.claim(name, id);
          break;
        } catch (e) {
          if (i > 50) throw e;
        }
      }
    }
    const cfg: ContainerConfig = { ...c, id, name: name!, created: new Date().toISOString() };
    try {
      fs.mkdirSync(this.pathOf(id), { mode: 0o700 });
      fs.mkdirSync(this.pathOf(id, 'upper'), { mode: 0o755 });
      fs.mkdirSync(this.pathOf(id, 'work'), { mode: 0o700 });
      writeAtomic(this.pathOf(id, 'config.json'), JSON.stringify(cfg, null, 1) + '\n');
      this.saveState(id, {
        status: 'created', pid: 0, exitCode: null, startedAt: null, finishedAt: null, restartCount: 0, oomKilled: false, error: '', mountpoint: null,
      });
    } catch (e) {
      fs.rmSync(this.pathOf(id), { recursive: true, force: true });
      fs.rmSync(path.join(this.names, name!), { force: true });
      throw e;
    }
    return cfg;
  }

  private claim(name: string, id: string): void {
    try {
      fs.symlinkSync(id, path.join(this.names, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let other = '';
      try {
        other = fs.readlinkSync(path.join(this.names, name));
      } catch {
        /* raced away */
      }
      throw new ContainerError(`the container name "${name}" is already in use by container ${other.slice(0, 12) || '?'}: remove it or choose another name`);
    }
  }

  ids(): string[] {
    if (!fs.existsSync(this.dir)) return [];
    return fs.readdirSync(this.dir).filter((n) => /^[0-9a-f]{64}$/.test(n) && fs.existsSync(this.pathOf(n, 'config.json')));
  }

  config(id: string): ContainerConfig {
    return JSON.parse(fs.readFileSync(this.pathOf(id, 'config.json'), 'utf8')) as ContainerConfig;
  }

  state(id: string): ContainerState {
    return JSON.parse(fs.readFileSync(this.pathOf(id, 'state.json'), 'utf8')) as ContainerState;
  }

  saveState(id: string, s: ContainerState): void {
    writeAtomic(this.pathOf(id, 'state.json'), JSON.stringify(s) + '\n');
  }

  update(id: string, f: (s: ContainerState) => void): ContainerState {
    const s = this.state(id);
    f(s);
    this.saveState(id, s);
    return s;
  }

  /**
   * The container `ref` names, as docker resolves it: a full ID, a name, or an unambiguous
   * prefix of an ID. Throws "No such container" (404) otherwise.
   */
  resolve(ref: string): string {
    if (/^[0-9a-f]{64}$/.test(ref) && fs.existsSync(this.pathOf(ref, 'config.json'))) return ref;
    if (NAME_RE.test(ref)) {
      try {
        const id = fs.readlinkSync(path.join(this.names, ref));
        if (fs.existsSync(this.pathOf(id, 'config.json'))) return id;
      } catch {
        /* not a name */
      }
    }
    if (/^[0-9a-f]{1,63}$/.test(ref)) {
      const hits = this.ids().filter((id) => id.startsWith(ref));
      if (hits.length === 1) return hits[0]!;
      if (hits.length > 1) throw new ContainerError(`multiple containers match '${ref}': give more of the ID`, 409);
    }
    throw new ContainerError(`no such container: ${ref}`, 404);
  }

  /** Remove the records, the upper and the name (the container must not run). */
  remove(id: string): void {
    const name = this.config(id).name;
    // The directory first (renamed out of the way, so that a crash leaves no half container).
    const gone = this.pathOf(`.removing-${id}`);
    fs.renameSync(this.pathOf(id), gone);
    const link = path.join(this.names, name);
    try {
      if (fs.readlinkSync(link) === id) fs.rmSync(link);
    } catch {
      /* no name */
    }
    fs.rmSync(gone, { recursive: true, force: true });
  }

  /** Leftovers of removals a crash interrupted. */
  sweep(): void {
    if (!fs.existsSync(this.names)) return;
    for (const n of fs.readdirSync(this.dir)) if (n.startsWith('.removing-')) fs.rmSync(path.join(this.dir, n), { recursive: true, force: true });
    for (const n of fs.readdirSync(this.names)) {
      try {
        if (!fs.existsSync(this.pathOf(fs.readlinkSync(path.join(this.names, n)), 'config.json'))) fs.rmSync(path.join(this.names, n));
      } catch {
        /* not a link */
      }
    }
  }
}

/** How long ago `iso` was, as docker's ps words it: "5 seconds", "3 minutes", "2 hours", "4 days". */
export function elapsed(iso: string | null): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'}`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? '' : 's'}`;
  const d = Math.round(h / 24);
  return `${d} day${d === 1 ? '' : 's'}`;
}

// Our own word lists for names like docker's (adjective_noun): nothing to do with docker's.
const ADJECTIVES = [
  'amber', 'brave', 'calm', 'crisp', 'dapper', 'eager', 'fair', 'gentle', 'hardy', 'jolly', 'keen', 'lucid', 'merry',
  'nimble', 'plucky', 'quiet', 'rapid', 'sober', 'spry', 'steady', 'sunny', 'tidy', 'vivid', 'wise', 'witty', 'zesty',
];
const NOUNS = [
  'badger', 'beacon', 'cedar', 'comet', 'delta', 'ember', 'falcon', 'fjord', 'glacier', 'harbor', 'heron', 'island',
  'juniper', 'lantern', 'maple', 'meadow', 'nebula', 'orchid', 'otter', 'pebble', 'quartz', 'raven', 'summit', 'tundra',
  'willow', 'yarrow',
];

function randomName(withNumber: boolean): string {
  const b = randomBytes(3);
  const n = `${ADJECTIVES[b[0]! % ADJECTIVES.length]}_${NOUNS[b[1]! % NOUNS.length]}`;
  return withNumber ? `${n}${b[2]! % 10}` : n;
}
