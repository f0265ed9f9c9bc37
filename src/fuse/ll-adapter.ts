import { constants as fsc } from 'node:fs';
import { fsErr, toErrno, type Attr, type UnionFs } from '../union/index.ts';
import { log } from '../log.ts';
import { AttrView } from './attrs.ts';
import { InodeTable, type Node } from './inodes.ts';
import { CopyUpInvalidation } from './invalidate.ts';
import { EIO, LowLevelSession, type EntryParam, type ExitInfo, type LowLevelOps, type Request } from './lowlevel.ts';
import { fileOps } from './ops-files.ts';
import { nameOps } from './ops-names.ts';
import type { LowLevelMountOptions } from './options.ts';
import { Passthrough } from './passthrough.ts';
import { dirOps, type DirHandle } from './readdir.ts';

export type { BaseMountOptions, LowLevelMountOptions } from './options.ts';

/**
 * The FUSE adapter on layerfs' own libfuse3 low-level binding (./lowlevel.ts): it translates
 * each request into a UnionFs call, and the result or error back. Nothing of the union rules
 * lives here. Its parts, each in a file of its own:
 *
 *  - ./inodes.ts: the inode table (node id → names, lookup counts; union paths rebuilt from it);
 *  - ./ops-names.ts, ./ops-files.ts, ./readdir.ts: the requests, by kind;
 *  - ./passthrough.ts: which opens the kernel serves from a backing file itself;
 *  - ./attrs.ts: owners and modes at the edge (override_stat, uidmapping=/gidmapping=);
 *  - ./invalidate.ts: what copy-up changed behind the kernel's back, dropped from its caches.
 *
 * This file holds what they share: the node and path of a request, entries and attributes in
 * answers, and errors turned into errnos.
 */

export interface LowLevelMount {
  /** Stop serving, answer what is left, unmount, free. */
  unmount(): Promise<void>;
  /** Resolves once the session ended, whoever ended it (unmount(), umount, fusermount3 -u). */
  exited: Promise<void>;
  /** How it ended. */
  exitInfo: Promise<ExitInfo>;
  session: LowLevelSession;
  /** Nodes the kernel currently knows (root included). */
  nodeCount(): number;
}

/** A non-directory with several names (hard links). */
function multiName(attr: Attr): boolean {
  return attr.nlink > 1 && (attr.mode & fsc.S_IFMT) !== fsc.S_IFDIR;
}

/** Whether the union path still leads to the object with this st_ino. */
function sameIno(fs: UnionFs, path: string, ino: bigint): boolean {
  try {
    return fs.getattr(path).ino === ino;
  } catch {
    return false;
  }
}

/**
 * The adapter's state and shared steps. Its members are the request files' (./ops-*.ts,
 * ./readdir.ts): nothing outside src/fuse/ uses more than {@link mountLowLevel}.
 */
export class LowLevelAdapter {
  readonly table = new InodeTable();
  session?: LowLevelSession;
  /** Open directories by handle (./readdir.ts). */
  readonly dirs = new Map<number, DirHandle>();
  nextDir = 1;
  /** Seconds the kernel may cache entries and attributes. */
  readonly t: number;
  readonly keepCache: boolean;
  readonly log: (msg: string) => void;
  readonly pt: Passthrough;
  readonly attrs: AttrView;
  readonly copyUps: CopyUpInvalidation;

  constructor(readonly fs: UnionFs, readonly o: LowLevelMountOptions) {
    this.t = o.cacheTimeout;
    this.keepCache = o.keepCache ?? true;
    this.log = o.logger ?? log;
    this.pt = new Passthrough(fs, this, this.log);
    this.attrs = new AttrView(fs, this.table, o.idmap, !!o.overrideStat);
    this.copyUps = new CopyUpInvalidation(fs, this.table, this);
  }

  /** Stop hearing of the union's copy-ups. */
  readonly unsubscribe = (): void => this.copyUps.unsubscribe();

  /** The node of a request (ESTALE: the kernel names one it was told to forget). */
  node(id: number): Node {
    const n = this.table.get(id);
    if (!n) throw fsErr('ESTALE');
    return n;
  }

  /** The union path of a request's node (ENOENT: its names are gone). */
  pathOf(id: number): string {
    const p = this.table.path(this.node(id));
    if (p === null) throw fsErr('ENOENT');
    return p;
  }

  /** A handle to reach a node by when its name is gone. */
  anyFh(n: Node, fh: number | null): number | null {
    if (fh !== null) return fh;
    if (n.fhs) for (const h of n.fhs) return h;
    return null;
  }

  entry(n: Node, attr: Attr): EntryParam {
    this.table.noteIno(n, attr.ino, multiName(attr));
    return { nodeid: n.id, attr: this.attrs.shown(n, attr), entryTimeout: this.t, attrTimeout: this.t };
  }

  replyAttr(r: Request, n: Node, attr: Attr): void {
    this.table.noteIno(n, attr.ino, multiName(attr));
    r.attr(this.attrs.shown(n, attr), this.t);
  }

  /**
   * The node for the name parent/name (union path `path`), whose object has `attr`. A name of
   * an upper object with several names gets the node its other names have (one kernel inode),
   * once that node is checked to still reach the same object.
   */
  nodeFor(parent: Node, name: string, path: string, attr: Attr): { node: Node; created: boolean } {
    const t = this.table;
    const got = t.child(parent, name);
    if (got) return { node: got, created: false };
    if (multiName(attr)) {
      const c = t.byInode(attr.ino);
      const cp = c ? t.path(c) : null;
      if (c && cp !== null && this.fs.inUpper(path) && sameIno(this.fs, cp, attr.ino)) {
        t.alias(c, parent, name);
        return { node: c, created: false };
      }
    }
    return t.ensureChild(parent, name);
  }

  /** Run a handler body; a thrown error is answered with its errno (EIO, logged, for unknown ones). */
  run(r: Request, f: () => void | Promise<void>): void | Promise<void> {
    this.session ??= r.session;
    try {
      const p = f();
      if (p) return p.catch((e) => this.fail(r, e));
    } catch (e) {
      this.fail(r, e);
    }
  }

  fail(r: Request, e: unknown): void {
    const n = -toErrno(e);
    if (r.answered) {
      this.log(`${r.opName}: error after the answer: ${(e as Error)?.stack ?? e}`);
      return;
    }
    if (n === EIO) this.log(`${r.opName}: ${(e as Error)?.stack ?? e}`);
    r.err(n);
  }

  /** Answer an entry; the lookup count goes up only if the kernel took it. */
  replyEntry(r: Request, parent: Node, name: string, path: string, attr: Attr): void {
    const { node, created } = this.nodeFor(parent, name, path, attr);
    if (r.entry(this.entry(node, attr)) === 0) node.lookups++;
    else if (created) this.table.dropIfUnused(node);
  }

  // ---------------------------------------------------------------- operations

  ops(): LowLevelOps {
    const ops: LowLevelOps = { ...nameOps(this), ...fileOps(this), ...dirOps(this) };
    if (this.o.readdirplus === false) delete ops.readdirplus;
    return ops;
  }
}

/**
 * Mount a UnionFs through the low-level binding. Resolves once the kernel's FUSE_INIT was
 * processed (the mount serves). Same options as mountNative, plus optional extras.
 */
export async function mountLowLevel(fs: UnionFs, opts: LowLevelMountOptions): Promise<LowLevelMount> {
  const adapter = new LowLevelAdapter(fs, opts);
  const session = await LowLevelSession.mount(adapter.ops(), {
    mountpoint: opts.mountpoint,
    fsname: opts.fsname,
    subtype: 'layerfs',
    allowOther: opts.allowOther,
    defaultPermissions: opts.allowOther,
    readonly: opts.readonly,
    options: opts.extra,
    debug: opts.debug,
    writebackCache: opts.writebackCache,
    passthrough: opts.passthrough ?? true,
    spinUs: opts.spinUs,
    dispatch: opts.dispatch,
    logger: opts.logger,
  });
  adapter.session = session;
  void session.exited.then(adapter.unsubscribe, adapter.unsubscribe);
  return {
    unmount: () => session.unmount(),
    exited: session.exited.then(() => undefined),
    exitInfo: session.exited,
    session,
    nodeCount: () => adapter.table.size,
  };
}

