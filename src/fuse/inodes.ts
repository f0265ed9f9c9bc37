/**
 * The adapter's inode table: node id → parent, name, lookup count. Node ids are the table's
 * own, handed out in increasing order and never reused; the inode numbers the kernel reports
 * (st_ino) are UnionFs' (64-bit). A node whose names were all unlinked or renamed over stays in
 * the table (detached) until the kernel forgets it; a renamed directory carries its subtree
 * along, since children refer to their parent node. The names of an upper hard link share one
 * node (see InodeTable).
 */

import { joinPath } from '../union/index.ts';

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
    if (dir !== null) return joinPath(dir, n.name);
    for (const l of n.aliases ?? []) {
      const d = this.path(l.parent);
      if (d !== null) return joinPath(d, l.name);
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
