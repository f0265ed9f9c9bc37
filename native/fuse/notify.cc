// Notifications to the kernel (JS thread): cache invalidation of an inode's attributes or
// data, of a directory entry, and deletion. See the deadlock warnings in lowlevel.ts: the
// kernel takes locks a request waiting for this process may hold.

#include <errno.h>

#include <string>

#include "internal.h"

namespace lfuse {

napi_value js_notify_inval_inode(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc >= 4 ? unwrap(env, argv[0]) : nullptr;
  if (!s) return throw_type(env, "notifyInvalInode(session, ino, off, len)");
  uint64_t ino;
  int64_t off, len;
  if (!get_u64(env, argv[1], &ino) || !get_i64(env, argv[2], &off) || !get_i64(env, argv[3], &len))
    return throw_type(env, "bad arguments");
  if (s->destroyed || !s->se) return make_int(env, -ENOTCONN);
  return make_int(env, fuse_lowlevel_notify_inval_inode(s->se, ino, off, len));
}

napi_value js_notify_inval_entry(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc >= 3 ? unwrap(env, argv[0]) : nullptr;
  if (!s) return throw_type(env, "notifyInvalEntry(session, parent, name)");
  uint64_t parent;
  std::string name;
  if (!get_u64(env, argv[1], &parent) || !get_bytes_string(env, argv[2], &name)) return throw_type(env, "bad arguments");
  if (s->destroyed || !s->se) return make_int(env, -ENOTCONN);
  return make_int(env, fuse_lowlevel_notify_inval_entry(s->se, parent, name.c_str(), name.size()));
}

napi_value js_notify_delete(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc >= 4 ? unwrap(env, argv[0]) : nullptr;
  if (!s) return throw_type(env, "notifyDelete(session, parent, child, name)");
  uint64_t parent, child;
  std::string name;
  if (!get_u64(env, argv[1], &parent) || !get_u64(env, argv[2], &child) || !get_bytes_string(env, argv[3], &name))
    return throw_type(env, "bad arguments");
  if (s->destroyed || !s->se) return make_int(env, -ENOTCONN);
  return make_int(env, fuse_lowlevel_notify_delete(s->se, parent, child, name.c_str(), name.size()));
}

}  // namespace lfuse
