/**
 * The binding: the typed surface over layerfs' own libfuse3 low-level addon (native/layerfs_fuse.cc
 * and native/fuse/, built to build/Release/layerfs_fuse.node by node-gyp). This file is its
 * public face; behind it ./addon.ts (loading, the addon's functions, op codes and flags),
 * ./types.ts, ./wire.ts (the records replies are written in), ./request.ts (the reply API)
 * and ./session.ts (mounting, dispatch, notifications, the end of a session).
 *
 * Model: requests are read from /dev/fuse without blocking anyone and handed to the JS thread
 * in batches; the JS thread calls the handler of each with a {@link Request}. Two ways to
 * read ('dispatch'): 'inline' (default) — the JS thread's event loop watches /dev/fuse
 * (uv_poll) and reads everything there is, then dispatches the batch; 'thread' — a session
 * thread reads, queues, and wakes the JS thread (uv_async), which drains the whole queue.
 * No thread ever waits for JS. A handler answers through its Request, synchronously or later
 * (after awaiting), exactly once. Every request is answered:
 *
 *  - a handler that throws (synchronously, or by rejecting its promise) before answering gets
 *    EIO, and the error is logged;
 *  - a handler that returns (or whose promise resolves) without answering gets EIO, logged;
 *  - a second answer is ignored and logged (it returns {@link REPLY_IGNORED});
 *  - a reply with arguments of the wrong type throws a TypeError before anything is sent,
 *    so the request stays answerable (and the rules above then answer EIO);
 *  - whatever is still unanswered when the session ends is answered ENOTCONN.
 *
 * Nothing a handler does can take the mount down.
 *
 * Names: file names (lookup, create, rename, dirents, notifications...) are byte strings, one
 * char per byte (latin1), exactly the bytes the kernel passes, whether or not they are valid
 * UTF-8 (src/union/bytes.ts). Xattr names are text (UTF-8; one that is not valid UTF-8 is
 * refused by the addon).
 *
 * Numbers: node ids, file handles, sizes and offsets are Numbers (the addon refuses offsets
 * beyond 2^53: reads there give EOF, writes EFBIG). Inode numbers, device numbers and statfs
 * counts are 64-bit (bigint accepted everywhere a Number may not be exact). Times are
 * nanoseconds (bigint) in replies and {sec: bigint, nsec} in setattr.
 */

export {
  ADDON_PATH, Cap, DEFAULT_DISPATCH, EIO, ENOENT, ENOSYS, ERANGE, IoctlFlags, Op, REPLY_IGNORED, SetAttr, loadAddon,
  type AddonWire,
} from './addon.ts';
export type {
  ConnInfo, Dirent, EntryParam, ExitInfo, LowLevelOps, OpenOptions, SessionOptions, SessionStats, SetattrArgs, Stat,
  StatfsReply, U64,
} from './types.ts';
export { DirentRec, EntryRec, OpenFlag, StatRec, direntSize } from './wire.ts';
export { Request } from './request.ts';
export { LowLevelSession, mountLowLevelSession } from './session.ts';
