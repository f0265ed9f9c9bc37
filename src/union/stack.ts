import { fromText, lstatSync } from './bytes.ts';
import { CopyUp, type CopyUpEvent } from './copyup.ts';
import { fsErr } from './errors.ts';
import type { TraceSink } from './events.ts';
import { ProtFlags } from './fileattr.ts';
import { OpenFiles } from './handles.ts';
import { InodeMapper } from './inode.ts';
import { Layer } from './layer.ts';
import { Resolver, type Entry } from './lookup.ts';
import { WhiteoutFormat } from './whiteout.ts';
import { WORK_SUBDIR, WorkDir } from './workdir.ts';

export interface UnionOptions {
  /** Top-most first. */
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  readonly?: boolean;
  /** user.overlay.* instead of trusted.overlay.* (kernel option `userxattr`). */
  userxattr?: boolean;
  /** Skip fsync to the upper (kernel option `volatile`). */
  volatile?: boolean;
  lookupCacheSize?: number;
  /**
   * How often (ms) the index of a lower directory is checked against the directory, so that a
   * lower changed underneath the mount shows (default 1000; 0: at every lookup).
   */
  lowerRecheckMs?: number;
}

/** Told of every copy-up, once the upper's copy serves the path (see Stack.onCopyUp). */
export type CopyUpListener = (ev: CopyUpEvent) => void;

/**
 * One union's shared state, as the kernel's `struct ovl_fs` holds it for a mount: the layers
 * (0 the top-most, the upper when there is one), the work directory, the whiteout format, the
 * Resolver (lookup and its cache), the inode numbers, the protection flags, the copy-up engine,
 * the open handles, the trace and the copy-up listeners. The operations live in the files named
 * after their rules (lookup.ts, readdir.ts, copyup.ts, dir.ts, handles.ts, inode.ts) and take
 * the stack as their first argument; UnionFs (./unionfs.ts) is their one-object face.
 *
 * Nothing here changes after construction but the resolver's cache, the handles, the trace and
 * the listeners. Every operation runs on the one JS thread: state changes only across an await,
 * and each rule file's header says which of its calls await and what may change meanwhile.
 */
export class Stack {
  readonly layers: Layer[];
  readonly upper?: Layer;
  readonly readonly: boolean;
  readonly volatile: boolean;
  readonly wf: WhiteoutFormat;
  readonly resolver: Resolver;
  /** Append-only and immutable as overlayfs keeps them (./fileattr.ts); enforced by the rules. */
  readonly prot: ProtFlags;
  readonly inodes: InodeMapper;
  /** Only with an upper layer. */
  readonly work?: WorkDir;
  /** Only with an upper layer. */
  readonly copyup?: CopyUp;
  readonly files = new OpenFiles();
  /** Set while someone traces the union (setTrace, ./events.ts); every hook checks it first. */
  trace?: TraceSink;
  private readonly listeners = new Set<CopyUpListener>();

  constructor(opts: UnionOptions) {
    if (opts.lowerdirs.length === 0) throw new Error('at least one lower layer is needed');
    const layers: Layer[] = [];
    if (opts.upperdir) {
      if (!opts.workdir) throw new Error('upperdir needs workdir');
      layers.push(new Layer(opts.upperdir, 0, true));
    }
    for (const d of opts.lowerdirs) layers.push(new Layer(d, layers.length, false));
    this.layers = layers;
    this.upper = opts.upperdir ? layers[0] : undefined;
    this.readonly = !!opts.readonly || !this.upper;
    this.volatile = !!opts.volatile;
    this.wf = new WhiteoutFormat(!!opts.userxattr);
    this.resolver = new Resolver(layers, this.wf, opts.lookupCacheSize, opts.lowerRecheckMs);
    this.prot = new ProtFlags(layers, this.wf);
    this.inodes = new InodeMapper(layers.map((l) => lstatSync(l.root, { bigint: true }).dev));
    if (this.upper && opts.workdir) {
      this.work = new WorkDir(fromText(opts.workdir) + '/' + WORK_SUBDIR);
      this.copyup = new CopyUp(layers, this.upper, this.resolver, this.wf, this.work);
      this.copyup.copyExtra = (e, tmp) => this.prot.copyUp(e, tmp);
    }
  }

  /**
   * Start (a function) or stop (undefined) reporting the union's decisions: lookups, copy-ups,
   * whiteouts, opaque directories, EXDEV renames (./events.ts). Costs nothing while stopped.
   */
  setTrace(sink: TraceSink | undefined): void {
    this.trace = sink;
    this.resolver.trace = sink;
    this.wire();
  }

  /**
   * Be told of every copy-up from now on (the FUSE adapter drops what the kernel caches of the
   * copied objects), until the returned function is called. A listener is called synchronously,
   * once the upper's copy serves the path (the resolver already answers with it), in the middle
   * of the operation that needed the copy: it must not call back into the union.
   */
  onCopyUp(listener: CopyUpListener): () => void {
    this.listeners.add(listener);
    this.wire();
    return () => {
      this.listeners.delete(listener);
      this.wire();
    };
  }

  /** Connect the copy-up engine's outlet while someone listens; no event is built otherwise. */
  private wire(): void {
    if (!this.copyup) return;
    const sink = this.trace;
    const ls = this.listeners;
    this.copyup.onCopyUp = !sink && ls.size === 0 ? undefined : (c) => {
      if (sink) sink({ ev: 'copyup', ...c });
      for (const l of ls) l(c);
    };
  }

  /** EROFS unless the union can change. */
  writable(): void {
    if (this.readonly) throw fsErr('EROFS');
  }

  /** The real path of a union path in the upper (there must be one). */
  upperPath(path: string): string {
    return this.upper!.path(path);
  }

  /** Make sure the object at path is in the upper (copy-up); its entry. Awaits (./copyup.ts). */
  async copyUp(path: string): Promise<Entry> {
    this.writable();
    return this.copyup!.ensure(path);
  }
}
