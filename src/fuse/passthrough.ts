import { constants as osc } from 'node:os';
import type { UnionFs } from '../union/index.ts';
import type { Node } from './inodes.ts';
import type { LowLevelSession } from './lowlevel.ts';

const { EPERM, EOPNOTSUPP, ENOTTY } = osc.errno;

/** Where the session is found once the mount serves (the adapter). */
export interface SessionHolder {
  readonly session?: LowLevelSession;
}

/**
 * The passthrough policy and the open handles of each node: which opens the kernel serves from
 * a backing file itself (FUSE passthrough, no read or write request reaches us), and which go
 * through the daemon (the kernel then caches their data). Callers: the adapter's open, create
 * and release.
 */
export class Passthrough {
  /** The node each handle the kernel holds was opened on. */
  private readonly fhNode = new Map<number, Node>();
  /** Handles opened with passthrough (the rest count in their node's cachedOpens). */
  private readonly fhPass = new Set<number>();
  /** Passthrough turned out unavailable (not negotiated, or not permitted): stop trying. */
  private off = false;

  constructor(
    private readonly fs: UnionFs,
    private readonly host: SessionHolder,
    private readonly log: (msg: string) => void,
  ) {}

  /** A handle the kernel took; `backing`: the id its open was answered with (0: none). */
  opened(n: Node, fh: number, backing = 0): void {
    (n.fhs ??= new Set()).add(fh);
    this.fhNode.set(fh, n);
    if (backing) this.fhPass.add(fh);
    else n.cachedOpens = (n.cachedOpens ?? 0) + 1;
  }

  /** The kernel released handle `fh` (the caller releases the union's handle). */
  released(fh: number): void {
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
  backingFor(n: Node, fh: number): number {
    const s = this.host.session;
    if (this.off || !s?.conn?.passthrough || n.cachedOpens) return 0;
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
        this.off = true;
        this.log(`passthrough unavailable (${id}): files are served through the daemon`);
      }
      return 0;
    }
    n.pt = { id, users: 1 };
    return id;
  }

  /** One user of the node's backing id less; the last one closes it. */
  dropBacking(n: Node): void {
    const pt = n.pt;
    if (!pt || --pt.users > 0) return;
    n.pt = undefined;
    this.host.session?.backingClose(pt.id);
  }
}
