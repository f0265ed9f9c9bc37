import { constants as fsc } from 'node:fs';
import { constants as osc } from 'node:os';
import {
  packFsxattr, toErrno, unpackFsxattr, type Attr, type CopyUpEvent, type DirItem, type Owner, type TimeArg, type UnionFs,
} from '../union/index.ts';
import { FSXATTR_SIZE, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR, FS_IOC_GETFLAGS, FS_IOC_SETFLAGS } from '../sys/index.ts';
import { log } from '../log.ts';
import { OVERRIDE_STAT_XATTR, formatOverrideStat, parseOverrideStat, type IdMap, type OverrideStat } from './idmap.ts';
import {
  EIO, LowLevelSession, SetAttr, direntSize,
  type Dirent, type Entry, type ExitInfo, type LowLevelOps, type Request, type SetattrArgs, type Stat,
} from './lowlevel.ts';

const { EPERM, EOPNOTSUPP, ENOTTY } = osc.errno;

/**
 * The FUSE adapter on layerfs' own libfuse3 low-level binding (./lowlevel.ts): it keeps the
 * inode table (node id → parent, name, lookup count), rebuilds union paths from it, and
 * translates each request into a UnionFs call. Nothing of the union rules lives here.
 *
 * Node ids are the table's own, handed out in increasing order and never reused; the inode
 * numbers the kernel reports (st_ino) are UnionFs' (64-bit). A node whose names were all
 * unlinked or renamed over stays in the table (detached) until the kernel forgets it; a
 * renamed directory carries its subtree along, since children refer to their parent node.
 * The names of an upper hard link share one node (see InodeTable).
 */

export interface LowLevelMountOptions {
  mountpoint: string;
  fsname: string;
  readonly: boolean;
  allowOther: boolean;
  /** Seconds the kernel may cache entries (also negative ones) and attributes. */
  cacheTimeout: number;
  /** Extra mount options (nosuid, nodev, noexec, noatime...). */
  extra: string[];
  debug: boolean;
  /** FUSE_CAP_WRITEBACK_CACHE; off by default. */
  writebackCache?: boolean;
  /**
   * READDIRPLUS: listings that carry each entry's attributes, saving a LOOKUP round trip per
   * name for `ls -l` or `find | xargs stat`, and costing a union lookup per name (an index
   * lookup and the lstat a plain listing makes anyway for d_ino) for listings nobody stats.
   * true (default): every entry whenever the kernel asks for them; 'adaptive': only in a
   * directory whose names were looked up since its previous listing; false: never.
   */
  readdirplus?: boolean | 'adaptive';
  /** How requests reach the JS thread (see lowlevel.ts); default DEFAULT_DISPATCH. */
  dispatch?: 'thread' | 'inline';
  /** Keep the kernel's page cache of files and directory listings across opens (default true). */
  keepCache?: boolean;
  /**
   * FUSE passthrough for files in the upper layer (default true; the kernel must offer it,
   * Linux >= 6.9): the kernel reads and writes them itself, no request per read or write.
   */
  passthrough?: boolean;
  /** Microseconds to keep reading after answering before the daemon sleeps (see lowlevel.ts). */
  spinUs?: number;
  /** Where handler mistakes and EIO causes are reported (default src/log.ts). */
  logger?: (msg: string) => void;
  /**
   * uidmapping=/gidmapping= (./idmap.ts): owners are shown shifted, and the caller's ids (new
   * objects, chown) are shifted back before they reach the layers. Only at the edges, here:
   * the union core sees disk ids only.
   */
  idmap?: IdMap;
  /**
   * xattr_permissions=2: an object's `user.containers.override_stat` xattr, where it has one,
   * gives the owner and permission bits shown (and chmod/chown through the mount update it).
   */
  overrideStat?: boolean;
}

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

// ------------------------------------------------------------------------------------------
// the inode table

export const ROOT_ID = 1;

/** One name of a node: the entry `name` in directory `parent`. */
export interface Link {
  parent: Node;
  name: string;
}

export interface Node {
  readonly id: number;
  /** The primary name's directory; null: the root, or a node whose names are all gone. */
  parent: Node | null;
  name: string;
  /**
   * More names of the same object: the names of an upper hard link. Each is also in its
   * directory's `children`; when the primary name goes, one of these takes its place.
   */
  aliases?: Link[];
  lookups: number;
  children?: Map<string, Node>;
  /** UnionFs handles open on this node (an unlinked file is still reached through them). */
  fhs?: Set<number>;
  /** Passthrough: the backing id the kernel knows this node's file by, and its open handles. */
  pt?: { id: number; users: number };
  /** Handles open on this node without passthrough (the kernel then caches its data). */
  cachedOpens?: number;
  /** st_ino last reported to the kernel (the key of the hard-link index). */
  ino?: bigint;
  /** Names looked up in this directory since its last readdirplus (see readdir()). */
  childLookups?: number;
  /**
   * A directory whose listing we served with cache_readdir since its listing was last
   * invalidated: the kernel may hold it (see dropCopied()).
   */
  listed?: boolean;
}

/**
 * Node id → names. A node is one kernel inode: every name of an object in the upper layer
 * (its hard links) maps to the same node, as the kernel's own overlayfs has one inode for
 * them, so page cache and attributes are shared and coherent. Names of objects in a lower
 * layer get a node each: a lower object never changes (copy-up makes a new object for the
 * name written to, as kernel overlayfs breaks lower hard links), so their caches cannot go
 * stale. Names are strings of bytes (latin1, one char per byte), as they are on disk.
 */
export class InodeTable {
  private readonly nodes = new Map<number, Node>();
  /** st_ino → node, for objects with several names (see alias()). */
  private readonly byIno = new Map<bigint, Node>();
  private nextId = ROOT_ID + 1;
  readonly root: Node;

  constructor() {
    this.root = { id: ROOT_ID, parent: null, name: '', lookups: 1 };
    this.nodes.set(ROOT_ID, this.root);
  }

  get size(): number {
    return this.nodes.size;
  }

  get(id: number): Node | undefined {
    return this.nodes.get(id);
  }

  /**
   * The union path of a node, or null when its names are gone: through its primary name, or
   * through another of its names when the primary one's directory is no longer in the table.
   * A directory has one name; a hard link any of its names (each of which leads to it).
   */
  path(n: Node): string | null {
    if (n === this.root) return '/';
    if (!n.parent) return null;
    const dir = this.path(n.parent); // null for a directory dropped from the table
    if (dir !== null) return joinChild(dir, n.name);
    for (const l of n.aliases ?? []) {
      const d = this.path(l.parent);
      if (d !== null) return joinChild(d, l.name);
    }
    return null;
  }

  child(parent: Node, name: string): Node | undefined {
    return parent.children?.get(name);
  }

  /** The node at a union path, name by name from the root; undefined: the kernel knows none. */
  at(path: string): Node | undefined {
    let n: Node | undefined = this.root;
    for (let i = 1; n && i < path.length; ) {
      const j = path.indexOf('/', i);
      const end = j < 0 ? path.length : j;
      n = n.children?.get(path.slice(i, end));
      i = end + 1;
    }
    return n;
  }

  /** The node at parent/name, created (with no lookups yet) when there is none. */
  ensureChild(parent: Node, name: string): { node: Node; created: boolean } {
    const got = parent.children?.get(name);
    if (got) return { node: got, created: false };
    const node: Node = { id: this.nextId++, parent, name, lookups: 0 };
    (parent.children ??= new Map()).set(name, node);
    this.nodes.set(node.id, node);
    return { node, created: true };
  }

  /** Record the st_ino reported for a node; objects with several names are indexed by it. */
  noteIno(n: Node, ino: bigint, multiName: boolean): void {
    if (n.ino !== undefined && n.ino !== ino && this.byIno.get(n.ino) === n) this.byIno.delete(n.ino);
    n.ino = ino;
    if (multiName) this.byIno.set(ino, n);
  }

  /** A live, named node last reported with this st_ino and several names (a candidate for alias()). */
  byInode(ino: bigint): Node | undefined {
    const n = this.byIno.get(ino);
    return n && this.nodes.get(n.id) === n && n.parent ? n : undefined;
  }

  /** Give node `n` one more name, parent/name (a hard link of the same object). */
  alias(n: Node, parent: Node, name: string): void {
    const there = parent.children?.get(name);
    if (there === n) return;
    if (there) this.unlinkName(parent, name);
    (n.aliases ??= []).push({ parent, name });
    (parent.children ??= new Map()).set(name, n);
  }

  /**
   * Remove a node the kernel does not know (lookup count 0), with all its names. A directory
   * the kernel forgot can still have children here: hard links the kernel holds through another
   * name (it reclaimed this directory's dentries, not the shared inode). Those lose the name
   * in this directory and keep their others.
   */
  dropIfUnused(n: Node): void {
    if (n.lookups > 0 || n === this.root) return;
    this.nodes.delete(n.id);
    if (n.ino !== undefined && this.byIno.get(n.ino) === n) this.byIno.delete(n.ino);
    for (const l of this.links(n)) this.removeEntry(l.parent, l.name, n);
    n.parent = null;
    n.aliases = undefined;
    if (n.children) {
      const kids = n.children;
      n.children = undefined;
      for (const [name, c] of kids) {
        this.dropLink(c, n, name);
        if (c.lookups === 0) this.dropIfUnused(c); // one the kernel never took
      }
    }
  }

  forget(id: number, count: number): void {
    const n = this.nodes.get(id);
    if (!n || n === this.root) return;
    n.lookups -= count;
    if (n.lookups <= 0) {
      n.lookups = 0;
      this.dropIfUnused(n);
    }
  }

  /** The name parent/name is gone (unlink, rmdir, renamed over); its node lives on until forgotten. */
  unlinkName(parent: Node, name: string): Node | undefined {
    const n = parent.children?.get(name);
    if (!n) return undefined;
    this.removeEntry(parent, name, n);
    this.dropLink(n, parent, name);
    return n;
  }

  /** rename(2) of parent/name to newparent/newname, in the table. */
  rename(parent: Node, name: string, newparent: Node, newname: string): void {
    const n = parent.children?.get(name);
    const there = newparent.children?.get(newname);
    // Two names of one object: rename(2) does nothing.
    if (n && there === n) return;
    if (there) this.unlinkName(newparent, newname);
    if (!n) return;
    this.removeEntry(parent, name, n);
    this.relink(n, parent, name, newparent, newname);
    (newparent.children ??= new Map()).set(newname, n);
  }

  /** renameat2(RENAME_EXCHANGE): the two names swap objects. */
  exchange(parent: Node, name: string, newparent: Node, newname: string): void {
    const a = parent.children?.get(name);
    const b = newparent.children?.get(newname);
    if (a === b) return;
    if (a) this.removeEntry(parent, name, a);
    if (b) this.removeEntry(newparent, newname, b);
    if (a) {
      this.relink(a, parent, name, newparent, newname);
      (newparent.children ??= new Map()).set(newname, a);
    }
    if (b) {
      this.relink(b, newparent, newname, parent, name);
      (parent.children ??= new Map()).set(name, b);
    }
  }

  private links(n: Node): Link[] {
    const out: Link[] = n.parent ? [{ parent: n.parent, name: n.name }] : [];
    if (n.aliases) out.push(...n.aliases);
    return out;
  }

  private removeEntry(parent: Node, name: string, n: Node): void {
    if (parent.children?.get(name) !== n) return;
    parent.children.delete(name);
    if (parent.children.size === 0) parent.children = undefined;
  }

  /** Forget that n is called parent/name (the primary name passes to an alias, if any). */
  private dropLink(n: Node, parent: Node, name: string): void {
    if (n.parent === parent && n.name === name) {
      const next = n.aliases?.shift();
      n.parent = next ? next.parent : null;
      if (next) n.name = next.name;
    } else if (n.aliases) {
      const i = n.aliases.findIndex((l) => l.parent === parent && l.name === name);
      if (i >= 0) n.aliases.splice(i, 1);
    }
    if (n.aliases?.length === 0) n.aliases = undefined;
  }

  /** The name parent/name of n becomes newparent/newname (children maps are the caller's). */
  private relink(n: Node, parent: Node, name: string, newparent: Node, newname: string): void {
    if (n.parent === parent && n.name === name) {
      n.parent = newparent;
      n.name = newname;
      return;
    }
    const l = n.aliases?.find((x) => x.parent === parent && x.name === name);
    if (l) {
      l.parent = newparent;
      l.name = newname;
    } else {
      // Not known under that name (cannot happen): take it as its primary name.
      n.parent = newparent;
      n.name = newname;
    }
  }
}

// ------------------------------------------------------------------------------------------
// helpers

const typeMode: Record<string, number> = {
  dir: fsc.S_IFDIR, file: fsc.S_IFREG, symlink: fsc.S_IFLNK, fifo: fsc.S_IFIFO,
  chr: fsc.S_IFCHR, blk: fsc.S_IFBLK, sock: fsc.S_IFSOCK, other: 0,
};

const O_ACCMODE = 3;
const RENAME_EXCHANGE = 2;
const ZERO_ATTR: Stat = {
  ino: 0n, mode: 0, nlink: 0, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, blksize: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n,
};

function fsError(code: string): Error & { code: string } {
  return Object.assign(new Error(code), { code });
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

function joinChild(dir: string, name: string): string {
  return dir === '/' ? '/' + name : dir + '/' + name;
}

interface DirHandle {
  node: Node;
  items: DirItem[] | null;
}

/** A change in progress and the copy-ups the union reported while it ran (see watching()). */
interface Watch {
  /** The nodes whose copy-up concerns this change: its start nodes and their ancestors. */
  chain: Set<Node>;
  copied: Node[] | null;
}

// ------------------------------------------------------------------------------------------
// the adapter

export class LowLevelAdapter {
  readonly table = new InodeTable();
  session?: LowLevelSession;
  private readonly dirs = new Map<number, DirHandle>();
  private readonly fhNode = new Map<number, Node>();
  /** Handles opened with passthrough (the rest count in their node's cachedOpens). */
  private readonly fhPass = new Set<number>();
  /** Passthrough turned out unavailable (not negotiated, or not permitted): stop trying. */
  private ptOff = false;
  private nextDir = 1;
  private readonly t: number;
  private readonly keepCache: boolean;
  private readonly log: (msg: string) => void;
  private readonly idmap?: IdMap;
  /** The changes running now (see watching()). */
  private readonly watches = new Set<Watch>();
  /** Stop hearing of the union's copy-ups. */
  readonly unsubscribe: () => void;

  constructor(private readonly fs: UnionFs, private readonly o: LowLevelMountOptions) {
    this.t = o.cacheTimeout;
    this.keepCache = o.keepCache ?? true;
    this.log = o.logger ?? log;
    this.idmap = o.idmap;
    this.unsubscribe = fs.onCopyUp((ev) => this.copiedUp(ev));
  }

  // ---------------------------------------------------------------- plumbing

  private node(id: number): Node {
    const n = this.table.get(id);
    if (!n) throw fsError('ESTALE');
    return n;
  }

  private pathOf(id: number): string {
    const p = this.table.path(this.node(id));
    if (p === null) throw fsError('ENOENT');
    return p;
  }

  private owner(r: Request): Owner {
    const m = this.idmap;
    return m ? { uid: m.uidToDisk(r.uid), gid: m.gidToDisk(r.gid) } : { uid: r.uid, gid: r.gid };
  }

  /** A handle the kernel took; `backing`: the id its open was answered with (0: none). */
  private opened(n: Node, fh: number, backing = 0): void {
    (n.fhs ??= new Set()).add(fh);
    this.fhNode.set(fh, n);
    if (backing) this.fhPass.add(fh);
    else n.cachedOpens = (n.cachedOpens ?? 0) + 1;
  }

  private released(fh: number): void {
    const n = this.fhNode.get(fh);
    if (!n) return;
    this.fhNode.delete(fh);
    n.fhs?.delete(fh);
    if (n.fhs?.size === 0) n.fhs = undefined;
    if (this.fhPass.delete(fh)) this.dropBacking(n);
    else if (n.cachedOpens) n.cachedOpens--;
  }

  /**
   * The backing id to answer an open of node `n` with handle `fh` (0: no passthrough), one
   * more user of it. The kernel takes one backing file per inode and refuses an inode open in
   * both modes at once, so: a node with handles open without passthrough gets none; a node
   * passing through already shares its id; else the handle's file gets one if it is in the
   * upper layer (a lower file is not the handle's file for good: copy-up moves it).
   */
  private backingFor(n: Node, fh: number): number {
    const s = this.session;
    if (this.ptOff || !s?.conn?.passthrough || n.cachedOpens) return 0;
    const fd = this.fs.upperFd(fh);
    if (fd === null) return 0;
    if (n.pt) {
      n.pt.users++;
      return n.pt.id;
    }
    const id = s.backingOpen(fd);
    if (id <= 0) {
      // ELOOP & co. are about this file; these about the whole session.
      if (id === -EPERM || id === -EOPNOTSUPP || id === -ENOTTY) {
        this.ptOff = true;
        this.log(`passthrough unavailable (${id}): files are served through the daemon`);
      }
      return 0;
    }
    n.pt = { id, users: 1 };
    return id;
  }

  /** One user of the node's backing id less; the last one closes it. */
  private dropBacking(n: Node): void {
    const pt = n.pt;
    if (!pt || --pt.users > 0) return;
    n.pt = undefined;
    this.session?.backingClose(pt.id);
  }

  /** A handle to reach a node by when its name is gone. */
  private anyFh(n: Node, fh: number | null): number | null {
    if (fh !== null) return fh;
    if (n.fhs) for (const h of n.fhs) return h;
    return null;
  }

  private entry(n: Node, attr: Attr): Entry {
    this.table.noteIno(n, attr.ino, multiName(attr));
    return { nodeid: n.id, attr: this.shown(n, attr), entryTimeout: this.t, attrTimeout: this.t };
  }

  private replyAttr(r: Request, n: Node, attr: Attr): void {
    this.table.noteIno(n, attr.ino, multiName(attr));
    r.attr(this.shown(n, attr), this.t);
  }

  /** Attributes as the mount shows them: override_stat, then the id mapping. */
  private shown(n: Node, attr: Attr): Attr {
    let a = attr;
    if (this.o.overrideStat) {
      const o = this.overrideOf(n);
      if (o) a = { ...a, uid: o.uid, gid: o.gid, mode: (a.mode & fsc.S_IFMT) | o.mode };
    }
    return this.idmap ? this.idmap.shown(a) : a;
  }

  private overrideOf(n: Node): OverrideStat | null {
    const p = this.table.path(n);
    if (p === null) return null;
    try {
      return parseOverrideStat(this.fs.getxattr(p, OVERRIDE_STAT_XATTR).toString('latin1'));
    } catch {
      return null; // none (ENODATA), or no user xattrs here (symlinks)
    }
  }

  /**
   * The node for the name parent/name (union path `path`), whose object has `attr`. A name of
   * an upper object with several names gets the node its other names have (one kernel inode),
   * once that node is checked to still reach the same object.
   */
  private nodeFor(parent: Node, name: string, path: string, attr: Attr): { node: Node; created: boolean } {
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
  private run(r: Request, f: () => void | Promise<void>): void | Promise<void> {
    this.session ??= r.session;
    try {
      const p = f();
      if (p) return p.catch((e) => this.fail(r, e));
    } catch (e) {
      this.fail(r, e);
    }
  }

  private fail(r: Request, e: unknown): void {
    const n = -toErrno(e);
    if (r.answered) {
      this.log(`${r.opName}: error after the answer: ${(e as Error)?.stack ?? e}`);
      return;
    }
    if (n === EIO) this.log(`${r.opName}: ${(e as Error)?.stack ?? e}`);
    r.err(n);
  }

  /** Answer an entry; the lookup count goes up only if the kernel took it. */
  private replyEntry(r: Request, parent: Node, name: string, path: string, attr: Attr): void {
    const { node, created } = this.nodeFor(parent, name, path, attr);
    if (r.entry(this.entry(node, attr)) === 0) node.lookups++;
    else if (created) this.table.dropIfUnused(node);
  }

  /**
   * Copy-up changes the inode number (and so the attributes) of an object and of its lower-only
   * ancestors behind the kernel's back; the union reports each copy-up (UnionFs.onCopyUp) as
   * it happens. A change (f) collects those of the nodes from `starts` up, whoever caused them
   * while it ran; after it, their attributes are dropped from the kernel's cache (attr
   * invalidation takes no kernel lock, so it is safe while requests are in flight).
   * `answered`: a node whose fresh attributes go to the kernel in this request's own answer
   * (setattr), so its attributes need no invalidation.
   */
  private async watching<T>(starts: (Node | undefined)[], f: () => Promise<T>, answered?: Node): Promise<T> {
    if (this.fs.readonly) return f();
    const chain = new Set<Node>();
    for (const s of starts) for (let n: Node | null | undefined = s; n && !chain.has(n); n = n.parent) chain.add(n);
    const w: Watch = { chain, copied: null };
    this.watches.add(w);
    let done = false;
    try {
      const v = await f();
      done = true;
      return v;
    } finally {
      this.watches.delete(w);
      this.dropCopied(w.copied, done ? answered : undefined);
    }
  }

  /** The union copied `ev.path` up: the changes running on its node hear of it. */
  private copiedUp(ev: CopyUpEvent): void {
    if (this.watches.size === 0) return;
    const n = this.table.at(ev.path);
    if (!n) return;
    for (const w of this.watches) if (w.chain.has(n)) (w.copied ??= []).push(n);
  }

  private dropCopied(nodes: Node[] | null, answered?: Node): void {
    if (!nodes || !this.session) return;
    const listings = new Set<Node>();
    for (const n of nodes) {
      if (this.table.path(n) === null) continue;
      if (n !== answered) this.session.notifyInvalInode(n.id, -1, 0);
      if (n.parent?.listed) listings.add(n.parent);
    }
    // A listing the kernel keeps (cache_readdir) holds each entry's d_ino, which copy-up just
    // changed: drop the listings of the copied-up objects' directories. A directory's page
    // cache holds nothing but such listings, and the kernel never keeps those pages locked
    // while it waits for us, so this data invalidation cannot block. Only listings we served
    // (`listed`): the invalidation also drops the directory's attributes, which would cost a
    // GETATTR before the next lookup in it.
    for (const d of listings) {
      d.listed = false;
      this.session.notifyInvalInode(d.id, 0, 0);
    }
  }

  // ---------------------------------------------------------------- operations

  ops(): LowLevelOps {
    const fs = this.fs;
    const t = this.table;
    const ops: LowLevelOps = {
      lookup: (r, parent, name) =>
        this.run(r, () => {
          const p = this.node(parent);
          const dir = t.path(p);
          if (dir === null) throw fsError('ENOENT');
          p.childLookups = (p.childLookups ?? 0) + 1;
          const path = joinChild(dir, name);
          const attr = fs.lookupAttr(path);
          if (attr) this.replyEntry(r, p, name, path, attr);
          else if (this.t > 0) r.negative(this.t);
          else throw fsError('ENOENT');
        }),

      forget: (nodeid, nlookup) => t.forget(nodeid, nlookup),

      getattr: (r, ino, fh) =>
        this.run(r, () => {
          const n = this.node(ino);
          const p = t.path(n);
          const h = this.anyFh(n, fh);
          if (p !== null) {
            try {
              this.replyAttr(r, n, fs.getattr(p));
              return;
            } catch (e) {
              if (h === null || (e as { code?: string }).code !== 'ENOENT') throw e;
            }
          }
          // Unlinked but open (fstat after unlink comes without a handle): the handle still knows the file.
          if (h === null) throw fsError('ENOENT');
          this.replyAttr(r, n, fs.fgetattr(h));
        }),

      setattr: (r, ino, a, fh) => this.run(r, () => this.setattr(r, ino, a, fh)),

      readlink: (r, ino) => this.run(r, () => void r.readlink(fs.readlink(this.pathOf(ino)))),

      mknod: (r, parent, name, mode, rdev) =>
        this.run(r, () => this.create(r, parent, name, (p) => fs.mknod(p, mode, rdev, this.owner(r)))),

      mkdir: (r, parent, name, mode) =>
        this.run(r, () => this.create(r, parent, name, (p) => fs.mkdir(p, mode, this.owner(r)))),

      symlink: (r, parent, name, target) =>
        this.run(r, () => this.create(r, parent, name, (p) => fs.symlink(target, p, this.owner(r)))),

      link: (r, ino, newparent, newname) =>
        this.run(r, async () => {
          const src = this.node(ino);
          const np = this.node(newparent);
          const sp = t.path(src);
          const dp = t.path(np);
          if (sp === null || dp === null) throw fsError('ENOENT');
          const dst = joinChild(dp, newname);
          await this.watching([src, np], () => fs.link(sp, dst));
          const attr = fs.getattr(dst);
          // One more name of the source's object (in the upper now): the source's node, so the
          // kernel has one inode for both names.
          t.alias(src, np, newname);
          if (r.entry(this.entry(src, attr)) === 0) src.lookups++;
        }),

      unlink: (r, parent, name) => this.run(r, () => this.remove(r, parent, name, false)),
      rmdir: (r, parent, name) => this.run(r, () => this.remove(r, parent, name, true)),

      rename: (r, parent, name, newparent, newname, flags) =>
        this.run(r, async () => {
          const p = this.node(parent);
          const np = this.node(newparent);
          const sp = t.path(p);
          const dp = t.path(np);
          if (sp === null || dp === null) throw fsError('ENOENT');
          const src = joinChild(sp, name);
          const dst = joinChild(dp, newname);
          // RENAME_EXCHANGE copies the destination up too.
          const starts = flags & RENAME_EXCHANGE ? [t.child(p, name), t.child(np, newname), np] : [t.child(p, name), np];
          await this.watching(starts, () => fs.rename(src, dst, flags));
          if (flags & RENAME_EXCHANGE) t.exchange(p, name, np, newname);
          else t.rename(p, name, np, newname);
          r.ok();
        }),

      open: (r, ino, flags) =>
        this.run(r, async () => {
          const n = this.node(ino);
          const p = t.path(n);
          if (p === null) throw fsError('ENOENT');
          let f = flags;
          // With the writeback cache the kernel may read through a write-only handle.
          if (this.o.writebackCache && (f & O_ACCMODE) === fsc.O_WRONLY) f = (f & ~O_ACCMODE) | fsc.O_RDWR;
          const writing = (f & O_ACCMODE) !== fsc.O_RDONLY || (f & fsc.O_TRUNC) !== 0;
          const fh = writing ? await this.watching([n], () => fs.open(p, f)) : await fs.open(p, f);
          const backing = this.backingFor(n, fh);
          // -ENOENT: the open was interrupted; no release will come for it.
          // (The kernel refuses keep_cache with passthrough: there is no page cache of ours then.)
          if (r.open(fh, { keepCache: this.keepCache && !backing, backing }) === 0) {
            this.opened(n, fh, backing);
          } else {
            if (backing) this.dropBacking(n);
            fs.release(fh);
          }
        }),

      create: (r, parent, name, mode, flags) =>
        this.run(r, async () => {
          const pn = this.node(parent);
          const dir = t.path(pn);
          if (dir === null) throw fsError('ENOENT');
          const path = joinChild(dir, name);
          let f = flags;
          if (this.o.writebackCache && (f & O_ACCMODE) === fsc.O_WRONLY) f = (f & ~O_ACCMODE) | fsc.O_RDWR;
          const fh = await this.watching([pn], () => fs.create(path, mode, f, this.owner(r)));
          let attr: Attr;
          try {
            attr = fs.getattr(path);
          } catch (e) {
            fs.release(fh);
            throw e;
          }
          const { node, created } = this.nodeFor(pn, name, path, attr);
          const backing = this.backingFor(node, fh);
          if (r.create(this.entry(node, attr), fh, { keepCache: this.keepCache && !backing, backing }) === 0) {
            node.lookups++;
            this.opened(node, fh, backing);
          } else {
            if (backing) this.dropBacking(node);
            fs.release(fh);
            if (created) t.dropIfUnused(node);
          }
        }),

      // The bytes go from the file to the kernel by splice, not through JS memory.
      read: (r, _ino, fh, size, off) => this.run(r, () => void r.fd(fs.readFd(fh), size, off)),

      write: (r, _ino, fh, data, off) =>
        this.run(r, async () => {
          try {
            r.write(await fs.write(fh, data, data.length, off));
          } finally {
            r.session.recycle(data); // the next request is read into this memory
          }
        }),

      release: (r, _ino, fh) =>
        this.run(r, () => {
          this.released(fh);
          fs.release(fh);
          r.ok();
        }),

      fsync: (r, _ino, fh, datasync) =>
        this.run(r, async () => {
          await fs.fsync(fh, datasync);
          r.ok();
        }),

      opendir: (r, ino) =>
        this.run(r, () => {
          const n = this.node(ino);
          const p = t.path(n);
          if (p === null) throw fsError('ENOENT');
          const e = fs.lookup(p);
          if (!e) throw fsError('ENOENT');
          if (e.type !== 'dir') throw fsError('ENOTDIR');
          const id = this.nextDir++;
          this.dirs.set(id, { node: n, items: null });
          // The kernel may keep listings: every change to a directory's entries goes through
          // it (and drops the cached listing), as for file data.
          const cache = this.keepCache;
          if (r.open(id, { cacheReaddir: cache, keepCache: cache }) !== 0) this.dirs.delete(id);
        }),

      readdir: (r, _ino, fh, size, off) => this.run(r, () => this.readdir(r, fh, size, off, false)),
      readdirplus: (r, _ino, fh, size, off) => this.run(r, () => this.readdir(r, fh, size, off, true)),

      releasedir: (r, _ino, fh) =>
        this.run(r, () => {
          this.dirs.delete(fh);
          r.ok();
        }),

      fsyncdir: (r) => void r.ok(),

      statfs: (r) =>
        this.run(r, () => {
          const s = fs.statfs();
          r.statfs({
            bsize: s.bsize, frsize: s.frsize || s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
            files: s.files, ffree: s.ffree, favail: s.ffree, fsid: s.fsid, flag: 0, namemax: s.namelen,
          });
        }),

      setxattr: (r, ino, name, value, flags) =>
        this.run(r, async () => {
          const n = this.node(ino);
          const p = t.path(n);
          if (p === null) throw fsError('ENOENT');
          await this.watching([n], () => fs.setxattr(p, name, value, flags));
          r.ok();
        }),

      getxattr: (r, ino, name, size) =>
        this.run(r, () => {
          // The override (xattr_permissions=2) is the storage's own record: it shows as the
          // owner and mode, not as an xattr (so it does not travel into a committed layer).
          if (this.o.overrideStat && name === OVERRIDE_STAT_XATTR) throw fsError('ENODATA');
          r.xattr(fs.getxattr(this.pathOf(ino), name), size);
        }),

      listxattr: (r, ino, size) =>
        this.run(r, () => {
          let names = fs.listxattr(this.pathOf(ino));
          if (this.o.overrideStat) names = names.filter((x) => x !== OVERRIDE_STAT_XATTR);
          r.xattr(Buffer.from(names.map((x) => x + '\0').join(''), 'utf8'), size);
        }),

      removexattr: (r, ino, name) =>
        this.run(r, async () => {
          const n = this.node(ino);
          const p = t.path(n);
          if (p === null) throw fsError('ENOENT');
          await this.watching([n], () => fs.removexattr(p, name));
          r.ok();
        }),

      access: (r, ino, mask) =>
        this.run(r, () => {
          fs.access(this.pathOf(ino), mask);
          r.ok();
        }),

      fallocate: (r, _ino, fh, mode, off, len) =>
        this.run(r, () => {
          fs.fallocate(fh, mode, off, len);
          r.ok();
        }),

      lseek: (r, _ino, fh, off, whence) => this.run(r, () => void r.lseek(fs.lseek(fh, off, whence))),

      copyFileRange: (r, _inoIn, fhIn, offIn, _inoOut, fhOut, offOut, len, flags) =>
        this.run(r, () => void r.write(fs.copyFileRange(fhIn, offIn, fhOut, offOut, len, flags))),

      // lsattr/chattr: the kernel opens the object (a handle of its own, read-only) and sends
      // the inode-flags ioctls; the union answers them by path (src/union/fileattr.ts). Any
      // other command: ENOTTY.
      ioctl: (r, ino, cmd, _fh, _flags, input, outSize) =>
        this.run(r, async () => {
          const get = cmd === FS_IOC_GETFLAGS || cmd === FS_IOC_FSGETXATTR;
          const xattr = cmd === FS_IOC_FSGETXATTR || cmd === FS_IOC_FSSETXATTR;
          if (!get && !xattr && cmd !== FS_IOC_SETFLAGS) throw fsError('ENOTTY');
          const size = xattr ? FSXATTR_SIZE : 4;
          if ((get ? outSize : input.length) < size) throw fsError('EINVAL');
          const n = this.node(ino);
          const p = t.path(n);
          if (p === null) throw fsError('ENOENT');
          if (get) {
            const out = Buffer.alloc(size);
            if (xattr) packFsxattr(fs.getFsxattr(p), out);
            else out.writeInt32LE(fs.getFlags(p) | 0, 0);
            r.ioctl(0, out);
            return;
          }
          await this.watching([n], () => (xattr ? fs.setFsxattr(p, unpackFsxattr(input)) : fs.setFlags(p, input.readInt32LE(0))));
          this.session?.notifyInvalInode(n.id, -1, 0); // its ctime moved
          r.ioctl(0);
        }),
    };

    if (this.o.readdirplus === false) delete ops.readdirplus;

    return ops;
  }

  private async setattr(r: Request, ino: number, a: SetattrArgs, fh: number | null): Promise<void> {
    const fs = this.fs;
    const n = this.node(ino);
    const p = this.table.path(n);
    const set = a.toSet;
    const h = p === null ? this.anyFh(n, fh) : fh;
    await this.watching([n], async () => {
      if (set & SetAttr.SIZE) {
        let done = false;
        if (h !== null) {
          try {
            fs.ftruncate(h, a.size);
            done = true;
          } catch (e) {
            if (p === null || (e as { code?: string }).code !== 'EBADF') throw e;
          }
        }
        if (!done) {
          if (p === null) throw fsError('ENOENT');
          await fs.truncate(p, a.size);
        }
      }
      const rest = SetAttr.UID | SetAttr.GID | SetAttr.MODE | SetAttr.ATIME | SetAttr.MTIME;
      if ((set & rest) && p === null) throw fsError('ENOENT');
      // Owner before mode: chown clears set-id bits, a mode given with it must stick.
      if (set & (SetAttr.UID | SetAttr.GID)) {
        const m = this.idmap;
        const uid = set & SetAttr.UID ? (m ? m.uidToDisk(a.uid) : a.uid) : -1;
        const gid = set & SetAttr.GID ? (m ? m.gidToDisk(a.gid) : a.gid) : -1;
        await fs.chown(p!, uid, gid);
      }
      if (set & SetAttr.MODE) await fs.chmod(p!, a.mode);
      if (this.o.overrideStat && p !== null && (set & (SetAttr.UID | SetAttr.GID | SetAttr.MODE))) {
        const o = this.overrideOf(n);
        if (o) {
          const m = this.idmap;
          if (set & SetAttr.UID) o.uid = m ? m.uidToDisk(a.uid) : a.uid;
          if (set & SetAttr.GID) o.gid = m ? m.gidToDisk(a.gid) : a.gid;
          if (set & SetAttr.MODE) o.mode = a.mode & 0o7777;
          await fs.setxattr(p, OVERRIDE_STAT_XATTR, Buffer.from(formatOverrideStat(o)), 0);
        }
      }
      if (set & (SetAttr.ATIME | SetAttr.MTIME)) {
        const at: TimeArg = set & SetAttr.ATIME ? (set & SetAttr.ATIME_NOW ? 'now' : a.atime) : 'omit';
        const mt: TimeArg = set & SetAttr.MTIME ? (set & SetAttr.MTIME_NOW ? 'now' : a.mtime) : 'omit';
        await fs.utimens(p!, at, mt);
      }
    }, n);
    let attr: Attr;
    try {
      if (p !== null) attr = fs.getattr(p);
      else if (h !== null) attr = fs.fgetattr(h);
      else throw fsError('ENOENT');
    } catch (e) {
      this.session?.notifyInvalInode(n.id, -1, 0); // no attributes in the answer after all
      throw e;
    }
    this.replyAttr(r, n, attr);
  }

  private async create(r: Request, parent: number, name: string, make: (path: string) => Promise<void>): Promise<void> {
    const pn = this.node(parent);
    const dir = this.table.path(pn);
    if (dir === null) throw fsError('ENOENT');
    const path = joinChild(dir, name);
    await this.watching([pn], () => make(path));
    this.replyEntry(r, pn, name, path, this.fs.getattr(path));
  }

  private async remove(r: Request, parent: number, name: string, dir: boolean): Promise<void> {
    const pn = this.node(parent);
    const d = this.table.path(pn);
    if (d === null) throw fsError('ENOENT');
    const path = joinChild(d, name);
    await this.watching([pn], () => (dir ? this.fs.rmdir(path) : this.fs.unlink(path)));
    this.table.unlinkName(pn, name);
    r.ok();
  }

  /**
   * readdir and readdirplus from a listing taken at offset 0 (and kept for the handle, so
   * that offsets stay stable while the directory is read). Offsets: '.' 0, '..' 1, then the
   * listing; each entry carries the offset of the next one. readdirplus entries count as
   * lookups once the kernel took them ('.' and '..' excepted).
   *
   * Attributes in readdirplus cost a union lookup per name (the lower directory index makes
   * that an lstat, which a plain entry's d_ino costs too), far less than the LOOKUP round trip
   * each saves when the names are then stat-ed: a cold `find | xargs stat` over 10k files went
   * from 1,265 to 338 ms. With readdirplus: 'adaptive' they are given only for a directory
   * whose names were looked up since its previous readdirplus, as the kernel's own
   * READDIRPLUS_AUTO advice does; otherwise the entries go without attributes (node id 0: the
   * kernel takes them as plain entries).
   */
  private readdir(r: Request, fh: number, size: number, off: number, askedPlus: boolean): void {
    const fs = this.fs;
    const t = this.table;
    const dh = this.dirs.get(fh);
    if (!dh) throw fsError('EBADF');
    const dir = t.path(dh.node);
    if (dir === null) {
      r.dirents([], askedPlus, size); // removed while open: nothing left to list
      return;
    }
    const plus = askedPlus && (this.o.readdirplus !== 'adaptive' || (dh.node.childLookups ?? 0) > 0);
    if (this.keepCache) dh.node.listed = true; // opendir asked the kernel to keep it
    if (askedPlus) dh.node.childLookups = 0;
    if (off === 0 || !dh.items) dh.items = fs.readdir(dir);
    const items = dh.items;
    const total = items.length + 2;
    const list: Dirent[] = [];
    const nodes: (Node | null)[] = [];
    const created: Node[] = [];
    let used = 0;
    for (let i = off; i < total; i++) {
      let name: string;
      let entry: Entry;
      let node: Node | null = null;
      if (i < 2) {
        name = i === 0 ? '.' : '..';
        const target = i === 0 || dir === '/' ? dir : dir.slice(0, dir.lastIndexOf('/')) || '/';
        let ino: bigint = 1n;
        try {
          ino = fs.getattr(target).ino;
        } catch {
          // keep 1
        }
        entry = { nodeid: 0, attr: { ...ZERO_ATTR, ino, mode: fsc.S_IFDIR }, entryTimeout: 0, attrTimeout: 0 };
      } else {
        const it = items[i - 2]!;
        name = it.name;
        if (plus) {
          let attr: Attr | null = null;
          try {
            attr = fs.getattr(joinChild(dir, name));
          } catch {
            attr = null; // gone since the listing: a plain entry
          }
          if (attr) {
            const got = this.nodeFor(dh.node, name, joinChild(dir, name), attr);
            node = got.node;
            if (got.created) created.push(node);
            entry = this.entry(node, attr);
          } else {
            entry = { nodeid: 0, attr: { ...ZERO_ATTR, ino: fs.direntIno(dir, it) || 1n, mode: typeMode[it.type] ?? 0 }, entryTimeout: 0, attrTimeout: 0 };
          }
        } else {
          // readdir(3) skips entries whose d_ino is 0.
          const ino = fs.direntIno(dir, it) || 1n;
          entry = { nodeid: 0, attr: { ...ZERO_ATTR, ino, mode: typeMode[it.type] ?? 0 }, entryTimeout: 0, attrTimeout: 0 };
        }
      }
      const sz = direntSize(name.length, askedPlus); // a byte string: one char per byte
      if (used + sz > size) {
        if (node && created.at(-1) === node) {
          created.pop();
          t.dropIfUnused(node);
        }
        break;
      }
      used += sz;
      list.push({ name, off: i + 1, entry });
      nodes.push(node);
    }
    const sent = r.dirents(list, askedPlus, size);
    if (plus && sent > 0) {
      for (let k = 0; k < sent; k++) {
        const n = nodes[k];
        if (n) n.lookups++;
      }
    }
    for (const n of created) t.dropIfUnused(n);
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

