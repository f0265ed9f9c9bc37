/**
 * `uidmapping=` / `gidmapping=`: the id shift a container engine asks of its mount program
 * (podman's `--uidmap`). The layers on disk hold the container's own ids (root is 0); the
 * mount shows them as the host ids the container's user namespace maps them from, so that
 * inside the container they read as the container's ids again.
 *
 * A mapping `C:H:N[:C2:H2:N2...]` says container ids C..C+N-1 are host ids H..H+N-1:
 * - shown: an id D stored on disk is reported as H + (D - C) when some range holds D;
 * - stored: a caller's (host) id is written to disk as C + (id - H) when some range holds it;
 * an id no range holds becomes the overflow id 65534 (the kernel's `nobody`), either way.
 * podman writes the mapping with a leading ':' (`uidmapping=:0:100000:65536`); that is
 * accepted here as in the option check (src/config.ts).
 */

/**
 * containers/storage's force_mask: the files of a layer get masked permissions, and their own
 * owner and mode are kept in this xattr as `UID:GID:0MODE` (mode bits 07777 at most).
 */
export const OVERRIDE_STAT_XATTR = 'user.containers.override_stat';

export interface OverrideStat {
  uid: number;
  gid: number;
  mode: number;
}

export function parseOverrideStat(v: string): OverrideStat | null {
  const m = /^(\d+):(\d+):([0-7]{1,7})$/.exec(v.replace(/\0+$/, ''));
  if (!m) return null;
  return { uid: Number(m[1]), gid: Number(m[2]), mode: parseInt(m[3]!, 8) & 0o7777 };
}

export function formatOverrideStat(o: OverrideStat): string {
  return `${o.uid}:${o.gid}:0${o.mode.toString(8)}`;
}

/** The kernel's default overflow uid/gid (/proc/sys/kernel/overflowuid). */
export const OVERFLOW_ID = 65534;

export interface IdRange {
  /** First id inside the container (as stored on disk). */
  container: number;
  /** First id on the host (as shown through the mount). */
  host: number;
  size: number;
}

export class IdMapping {
  constructor(readonly ranges: readonly IdRange[]) {}

  /** Parse `[:]C:H:N[:C:H:N...]`; throws on anything else. */
  static parse(v: string): IdMapping {
    if (!/^:?\d+:\d+:\d+(?::\d+:\d+:\d+)*$/.test(v)) throw new Error(`bad id mapping '${v}'`);
    const n = v.replace(/^:/, '').split(':').map(Number);
    const ranges: IdRange[] = [];
    for (let i = 0; i < n.length; i += 3) ranges.push({ container: n[i]!, host: n[i + 1]!, size: n[i + 2]! });
    return new IdMapping(ranges);
  }

  /** The id an on-disk id is shown as. */
  toHost(id: number): number {
    for (const r of this.ranges) if (id >= r.container && id - r.container < r.size) return r.host + (id - r.container);
    return OVERFLOW_ID;
  }

  /** The id a caller's (host) id is stored as. */
  toDisk(id: number): number {
    for (const r of this.ranges) if (id >= r.host && id - r.host < r.size) return r.container + (id - r.host);
    return OVERFLOW_ID;
  }
}

/**
 * Both mappings of a mount; a missing one leaves those ids as they are. A squash id
 * (squash_to_uid=, squash_to_gid=, squash_to_root) is what every object is shown as owned
 * by; it changes nothing that is stored.
 */
export class IdMap {
  constructor(
    readonly uid?: IdMapping,
    readonly gid?: IdMapping,
    readonly squash: { uid?: number; gid?: number } = {},
  ) {}

  static fromOptions(o: { uidmapping?: string; gidmapping?: string; squashUid?: number; squashGid?: number }): IdMap | undefined {
    if (o.uidmapping === undefined && o.gidmapping === undefined && o.squashUid === undefined && o.squashGid === undefined) {
      return undefined;
    }
    return new IdMap(
      o.uidmapping === undefined ? undefined : IdMapping.parse(o.uidmapping),
      o.gidmapping === undefined ? undefined : IdMapping.parse(o.gidmapping),
      { uid: o.squashUid, gid: o.squashGid },
    );
  }

  uidToHost(id: number): number {
    if (this.squash.uid !== undefined) return this.squash.uid;
    return this.uid ? this.uid.toHost(id) : id;
  }
  gidToHost(id: number): number {
    if (this.squash.gid !== undefined) return this.squash.gid;
    return this.gid ? this.gid.toHost(id) : id;
  }
  /** -1 ("leave unchanged", chown's convention) stays -1. */
  uidToDisk(id: number): number {
    return this.uid && id !== -1 ? this.uid.toDisk(id) : id;
  }
  gidToDisk(id: number): number {
    return this.gid && id !== -1 ? this.gid.toDisk(id) : id;
  }

  /** A stat result as the mount shows it (a copy; the union core's caches keep the disk ids). */
  shown<T extends { uid: number; gid: number }>(attr: T): T {
    return { ...attr, uid: this.uidToHost(attr.uid), gid: this.gidToHost(attr.gid) };
  }
}
