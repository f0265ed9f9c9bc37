import type { CopyUpEvent, UnionFs } from '../union/index.ts';
import type { InodeTable, Node } from './inodes.ts';
import type { SessionHolder } from './passthrough.ts';

/** A change in progress and the copy-ups the union reported while it ran (see watching()). */
interface Watch {
  /** The nodes whose copy-up concerns this change: its start nodes and their ancestors. */
  chain: Set<Node>;
  copied: Node[] | null;
}

/**
 * Kernel-cache invalidation after copy-up. Copy-up changes the inode number (and so the
 * attributes) of an object and of its lower-only ancestors behind the kernel's back; the union
 * reports each copy-up (UnionFs.onCopyUp) as it happens, and what the kernel caches of those
 * nodes is dropped once the change that caused them is over.
 */
export class CopyUpInvalidation {
  /** The changes running now (see watching()). */
  private readonly watches = new Set<Watch>();
  /** Stop hearing of the union's copy-ups. */
  readonly unsubscribe: () => void;

  constructor(
    private readonly fs: UnionFs,
    private readonly table: InodeTable,
    private readonly host: SessionHolder,
  ) {
    this.unsubscribe = fs.onCopyUp((ev) => this.copiedUp(ev));
  }

  /**
   * Run a change (f) and collect the copy-ups of the nodes from `starts` up, whoever caused
   * them while it ran; after it, their attributes are dropped from the kernel's cache (attr
   * invalidation takes no kernel lock, so it is safe while requests are in flight).
   * `answered`: a node whose fresh attributes go to the kernel in this request's own answer
   * (setattr), so its attributes need no invalidation.
   */
  async watching<T>(starts: (Node | undefined)[], f: () => Promise<T>, answered?: Node): Promise<T> {
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
    const session = this.host.session;
    if (!nodes || !session) return;
    const listings = new Set<Node>();
    for (const n of nodes) {
      if (this.table.path(n) === null) continue;
      if (n !== answered) session.notifyInvalInode(n.id, -1, 0);
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
      session.notifyInvalInode(d.id, 0, 0);
    }
  }
}
