// wire(): what wire.h defines, as a JS object, so that test/fuse/wire.test.ts can hold
// src/fuse/lowlevel.ts to it: the op codes by name, each record's size and its fields'
// offsets, sizes and types (from offsetof/sizeof/decltype), the open flags, where the kernel's
// dirents put the name (what lowlevel.ts' direntSize assumes), and the libfuse constants
// lowlevel.ts mirrors (Cap, SetAttr, IoctlFlags) as this libfuse's headers define them.
// Built when called; nothing on a request's path uses it.

#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

namespace lfuse {

namespace {

napi_value new_object(napi_env env) {
  napi_value o;
  napi_create_object(env, &o);
  return o;
}

void set(napi_env env, napi_value o, const char *key, napi_value v) {
  napi_set_named_property(env, o, key, v);
}

template <typename T> const char *type_of();
template <> const char *type_of<uint32_t>() { return "u32"; }
template <> const char *type_of<uint64_t>() { return "u64"; }
template <> const char *type_of<int64_t>() { return "i64"; }
template <> const char *type_of<double>() { return "f64"; }
template <> const char *type_of<StatRec>() { return "stat"; }
template <> const char *type_of<EntryRec>() { return "entry"; }

napi_value field(napi_env env, size_t offset, size_t size, const char *type) {
  napi_value f = new_object(env);
  set(env, f, "offset", make_u32(env, (uint32_t)offset));
  set(env, f, "size", make_u32(env, (uint32_t)size));
  set(env, f, "type", make_string(env, type));
  return f;
}

napi_value record(napi_env env, size_t bytes, napi_value fields) {
  napi_value r = new_object(env);
  set(env, r, "bytes", make_u32(env, (uint32_t)bytes));
  set(env, r, "fields", fields);
  return r;
}

}  // namespace

#define WIRE_FIELD(obj, Rec, f) \
  set(env, obj, #f, field(env, offsetof(Rec, f), sizeof(Rec::f), type_of<decltype(Rec::f)>()))

napi_value js_wire(napi_env env, napi_callback_info) {
  napi_value out = new_object(env);

  napi_value ops = new_object(env);
#define WIRE_OP(name) set(env, ops, #name, make_u32(env, OP_##name));
  LAYERFS_OPS(WIRE_OP)
#undef WIRE_OP
  set(env, out, "ops", ops);

  napi_value records = new_object(env);
  napi_value st = new_object(env);
  WIRE_FIELD(st, StatRec, ino);
  WIRE_FIELD(st, StatRec, size);
  WIRE_FIELD(st, StatRec, blocks);
  WIRE_FIELD(st, StatRec, atimeSec);
  WIRE_FIELD(st, StatRec, mtimeSec);
  WIRE_FIELD(st, StatRec, ctimeSec);
  WIRE_FIELD(st, StatRec, atimeNsec);
  WIRE_FIELD(st, StatRec, mtimeNsec);
  WIRE_FIELD(st, StatRec, ctimeNsec);
  WIRE_FIELD(st, StatRec, mode);
  WIRE_FIELD(st, StatRec, nlink);
  WIRE_FIELD(st, StatRec, uid);
  WIRE_FIELD(st, StatRec, gid);
  WIRE_FIELD(st, StatRec, blksize);
  WIRE_FIELD(st, StatRec, rdev);
  set(env, records, "stat", record(env, sizeof(StatRec), st));
  napi_value en = new_object(env);
  WIRE_FIELD(en, EntryRec, nodeid);
  WIRE_FIELD(en, EntryRec, generation);
  WIRE_FIELD(en, EntryRec, entryTimeout);
  WIRE_FIELD(en, EntryRec, attrTimeout);
  WIRE_FIELD(en, EntryRec, attr);
  set(env, records, "entry", record(env, sizeof(EntryRec), en));
  napi_value de = new_object(env);
  WIRE_FIELD(de, DirentRec, namelen);
  WIRE_FIELD(de, DirentRec, off);
  WIRE_FIELD(de, DirentRec, entry);
  set(env, de, "name", field(env, DIRENT_NAME, 0, "bytes"));  // namelen bytes, padded to 8
  set(env, records, "dirent", record(env, DIRENT_NAME, de));
  set(env, out, "records", records);

  napi_value open = new_object(env);
  set(env, open, "DIRECT_IO", make_u32(env, OPEN_DIRECT_IO));
  set(env, open, "KEEP_CACHE", make_u32(env, OPEN_KEEP_CACHE));
  set(env, open, "NONSEEKABLE", make_u32(env, OPEN_NONSEEKABLE));
  set(env, open, "CACHE_READDIR", make_u32(env, OPEN_CACHE_READDIR));
  set(env, open, "NOFLUSH", make_u32(env, OPEN_NOFLUSH));
  set(env, out, "openFlags", open);

  // The size of an entry with an empty name: where the name starts (already a multiple of 8).
  // With no room given, fuse_add_direntry(_plus) writes nothing and returns the size.
  napi_value kd = new_object(env);
  char none[1];
  struct stat stz;
  memset(&stz, 0, sizeof(stz));
  struct fuse_entry_param ez;
  memset(&ez, 0, sizeof(ez));
  set(env, kd, "name", make_u32(env, (uint32_t)fuse_add_direntry(nullptr, none, 0, "", &stz, 0)));
  set(env, kd, "plusName", make_u32(env, (uint32_t)fuse_add_direntry_plus(nullptr, none, 0, "", &ez, 0)));
  set(env, out, "kernelDirent", kd);

  napi_value lib = new_object(env);
  napi_value cap = new_object(env);
#define WIRE_CAP(name) set(env, cap, #name, make_u32(env, FUSE_CAP_##name));
  WIRE_CAP(ASYNC_READ) WIRE_CAP(POSIX_LOCKS) WIRE_CAP(ATOMIC_O_TRUNC) WIRE_CAP(EXPORT_SUPPORT)
  WIRE_CAP(DONT_MASK) WIRE_CAP(SPLICE_WRITE) WIRE_CAP(SPLICE_MOVE) WIRE_CAP(SPLICE_READ)
  WIRE_CAP(FLOCK_LOCKS) WIRE_CAP(IOCTL_DIR) WIRE_CAP(AUTO_INVAL_DATA) WIRE_CAP(READDIRPLUS)
  WIRE_CAP(READDIRPLUS_AUTO) WIRE_CAP(ASYNC_DIO) WIRE_CAP(WRITEBACK_CACHE) WIRE_CAP(NO_OPEN_SUPPORT)
  WIRE_CAP(PARALLEL_DIROPS) WIRE_CAP(POSIX_ACL) WIRE_CAP(HANDLE_KILLPRIV) WIRE_CAP(CACHE_SYMLINKS)
  WIRE_CAP(NO_OPENDIR_SUPPORT) WIRE_CAP(EXPLICIT_INVAL_DATA) WIRE_CAP(EXPIRE_ONLY)
#undef WIRE_CAP
  set(env, lib, "Cap", cap);
  napi_value sa = new_object(env);
#define WIRE_SETATTR(name) set(env, sa, #name, make_u32(env, FUSE_SET_ATTR_##name));
  WIRE_SETATTR(MODE) WIRE_SETATTR(UID) WIRE_SETATTR(GID) WIRE_SETATTR(SIZE) WIRE_SETATTR(ATIME)
  WIRE_SETATTR(MTIME) WIRE_SETATTR(ATIME_NOW) WIRE_SETATTR(MTIME_NOW) WIRE_SETATTR(FORCE)
  WIRE_SETATTR(CTIME) WIRE_SETATTR(KILL_SUID) WIRE_SETATTR(KILL_SGID) WIRE_SETATTR(FILE)
  WIRE_SETATTR(KILL_PRIV) WIRE_SETATTR(OPEN) WIRE_SETATTR(TIMES_SET) WIRE_SETATTR(TOUCH)
#undef WIRE_SETATTR
  set(env, lib, "SetAttr", sa);
  napi_value io = new_object(env);
#define WIRE_IOCTL(name) set(env, io, #name, make_u32(env, FUSE_IOCTL_##name));
  WIRE_IOCTL(COMPAT) WIRE_IOCTL(UNRESTRICTED) WIRE_IOCTL(RETRY) WIRE_IOCTL(DIR)
#undef WIRE_IOCTL
  set(env, lib, "IoctlFlags", io);
  set(env, out, "libfuse", lib);
  return out;
}

}  // namespace lfuse
