// What crosses between this addon and src/fuse/lowlevel.ts besides plain arguments: the op
// codes requests are delivered under, and the byte layout of the records JS writes for the
// addon to decode (stat, entry, packed dirents) and of the open flags.
//
// The C++ side of one source of truth: the op codes come from LAYERFS_OPS, the offsets from
// offsetof/sizeof on the structs below. The addon's wire() (wire.cc) reports all of it as a
// JS object, and test/fuse/wire.test.ts compares that with lowlevel.ts' `Op`, `StatRec`,
// `EntryRec`, `DirentRec` and `OpenFlag`, and decodes records written by lowlevel.ts' own
// encoders with these offsets: a change on one side only fails there, naming each mismatch.
// The struct field names are lowlevel.ts' keys.
#pragma once

#include <stddef.h>
#include <stdint.h>

// Operation codes, numbered from 1 in this order (OP_INIT = 1, ..., OP_IOCTL = 36).
#define LAYERFS_OPS(X)                                                                         \
  X(INIT) X(EXIT) X(LOOKUP) X(FORGET) X(GETATTR) X(SETATTR) X(READLINK) X(MKNOD) X(MKDIR)    \
  X(UNLINK) X(RMDIR) X(SYMLINK) X(RENAME) X(LINK) X(OPEN) X(READ) X(WRITE) X(FLUSH)          \
  X(RELEASE) X(FSYNC) X(OPENDIR) X(READDIR) X(RELEASEDIR) X(FSYNCDIR) X(STATFS) X(SETXATTR)  \
  X(GETXATTR) X(LISTXATTR) X(REMOVEXATTR) X(ACCESS) X(CREATE) X(FALLOCATE) X(READDIRPLUS)    \
  X(COPY_FILE_RANGE) X(LSEEK) X(IOCTL)

enum Op : int {
  OP_NONE = 0,
#define LAYERFS_OP_ENUM(name) OP_##name,
  LAYERFS_OPS(LAYERFS_OP_ENUM)
#undef LAYERFS_OP_ENUM
  OP_MAX
};
// Session::opsMask has one bit per op code.
static_assert(OP_MAX <= 64, "op codes must fit a 64-bit mask");

// Stat record (little-endian, 88 bytes), written by lowlevel.ts (putStat), decoded by
// decode_stat (replies.cc). Times: seconds and nanoseconds.
struct StatRec {
  uint64_t ino, size, blocks;
  int64_t atimeSec, mtimeSec, ctimeSec;
  uint32_t atimeNsec, mtimeNsec, ctimeNsec, mode, nlink, uid, gid, blksize;
  uint64_t rdev;
};
static_assert(sizeof(StatRec) == 88, "StatRec has no padding");

// Entry record (120 bytes): a fuse_entry_param.
struct EntryRec {
  uint64_t nodeid, generation;
  double entryTimeout, attrTimeout;  // seconds
  StatRec attr;
};
static_assert(sizeof(EntryRec) == 120, "EntryRec has no padding");

// One packed dirent of replyDirents: this header, then the name's bytes (namelen, no NUL),
// padded to 8. Plain readdir uses the entry's stat ino and mode only.
struct DirentRec {
  uint32_t namelen;
  uint32_t pad;
  uint64_t off;  // the offset of the next entry
  EntryRec entry;
};
static_assert(sizeof(DirentRec) == 136, "DirentRec has no padding");
const size_t DIRENT_NAME = sizeof(DirentRec);  // where the name starts

// Open flags of replyOpen/replyCreate (decode_open, replies.cc).
enum OpenFlag : uint32_t {
  OPEN_DIRECT_IO = 1,
  OPEN_KEEP_CACHE = 2,
  OPEN_NONSEEKABLE = 4,
  OPEN_CACHE_READDIR = 8,
  OPEN_NOFLUSH = 16,
};
