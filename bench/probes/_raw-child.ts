// Transport floor: a LowLevelSession whose getattr answers a constant at once (no union, no
// adapter). Serves MNT until SIGTERM. Used by hand: npx tsx bench/probes/_raw-child.ts MNT
import { LowLevelSession, type Stat } from '../../src/fuse/lowlevel.ts';
const mnt = process.argv[2]!;
const T = 1_000_000_000_000_000_000n;
const dir: Stat = { ino: 1n, mode: 0o40755, nlink: 2, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, blksize: 4096, atimeNs: T, mtimeNs: T, ctimeNs: T };
const s = await LowLevelSession.mount(
  { getattr: (r) => void r.attr(dir, 0) },
  { mountpoint: mnt, fsname: 'raw', allowOther: true, dispatch: (process.env.DISPATCH as 'inline' | 'thread') ?? 'inline', spinUs: Number(process.env.SPIN ?? 0) },
);
process.stdout.write('ready\n');
process.on('SIGTERM', () => void s.unmount().then(() => process.exit(0)));
