// layerfs_sys: the few Linux calls Node's fs lacks and the daemon makes per request (xattrs,
// renameat2, utimensat), as plain Node-API functions.
//
// src/sys/index.ts used to reach them through koffi (FFI into glibc). That costs 3-8 µs a
// call in conversions and errno plumbing, and the security.capability getxattr alone comes
// before every write the kernel sends. Here a call is the syscall plus one string copy.
//
// Conventions (the JS wrapper in src/sys/index.ts turns them into Node-style errors):
//  - paths are a string (UTF-8) or a Buffer (raw bytes); the wrapper has refused NUL bytes;
//  - failure returns the negative errno as a Number, success 0 (or the value asked for);
//  - xattr names are strings (UTF-8).
// Values never exceed the kernel's XATTR_SIZE_MAX / XATTR_LIST_MAX (64 KiB), so one call into
// a 64 KiB scratch buffer answers a get or a list (no size query first).

#include <node_api.h>
#include "napi_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

const size_t XMAX = 65536;     // XATTR_SIZE_MAX and XATTR_LIST_MAX
thread_local char g_scratch[XMAX];

napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

napi_value fail_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, nullptr, msg);
  return nullptr;
}

// A path (string or Buffer) into out, NUL-terminated.
bool get_path(napi_env env, napi_value v, std::string *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_string) return get_string(env, v, out);
  bool isBuf = false;
  if (napi_is_buffer(env, v, &isBuf) != napi_ok || !isBuf) return false;
  void *p;
  size_t n;
  if (napi_get_buffer_info(env, v, &p, &n) != napi_ok) return false;
  out->assign((const char *)p, n);
  return true;
}

bool get_int(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

napi_value copy_out(napi_env env, const char *p, size_t n) {
  napi_value b;
  void *d;
  if (napi_create_buffer_copy(env, n, p, &d, &b) != napi_ok) return num(env, -ENOMEM);
  return b;
}

// lgetxattr(path, name) -> Buffer | -errno
napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string path, name;
  if (argc < 2 || !get_path(env, argv[0], &path) || !get_string(env, argv[1], &name))
    return fail_type(env, "lgetxattr(path, name)");
  ssize_t n = lgetxattr(path.c_str(), name.c_str(), g_scratch, XMAX);
  if (n < 0) return num(env, -errno);
  return copy_out(env, g_scratch, (size_t)n);
}

// llistxattr(path) -> Buffer (NUL-separated names) | -errno
napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string path;
  if (argc < 1 || !get_path(env, argv[0], &path)) return fail_type(env, "llistxattr(path)");
  ssize_t n = llistxattr(path.c_str(), g_scratch, XMAX);
  if (n < 0) return num(env, -errno);
  return copy_out(env, g_scratch, (size_t)n);
}

// lsetxattr(path, name, value: Buffer, flags) -> 0 | -errno
napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string path, name;
  int64_t flags;
  void *val = nullptr;
  size_t len = 0;
  bool isBuf = false;
  if (argc < 4 || !get_path(env, argv[0], &path) || !get_string(env, argv[1], &name) ||
      napi_is_buffer(env, argv[2], &isBuf) != napi_ok || !isBuf ||
      napi_get_buffer_info(env, argv[2], &val, &len) != napi_ok || !get_int(env, argv[3], &flags))
    return fail_type(env, "lsetxattr(path, name, value, flags)");
  if (lsetxattr(path.c_str(), name.c_str(), len ? val : "", len, (int)flags) < 0) return num(env, -errno);
  return num(env, 0);
}

// lremovexattr(path, name) -> 0 | -errno
napi_value js_lremovexattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string path, name;
  if (argc < 2 || !get_path(env, argv[0], &path) || !get_string(env, argv[1], &name))
    return fail_type(env, "lremovexattr(path, name)");
  if (lremovexattr(path.c_str(), name.c_str()) < 0) return num(env, -errno);
  return num(env, 0);
}

// renameat2(from, to, flags) -> 0 | -errno (both relative to the cwd)
napi_value js_renameat2(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string from, to;
  int64_t flags;
  if (argc < 3 || !get_path(env, argv[0], &from) || !get_path(env, argv[1], &to) || !get_int(env, argv[2], &flags))
    return fail_type(env, "renameat2(from, to, flags)");
  if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), (unsigned)flags) < 0) return num(env, -errno);
  return num(env, 0);
}

// utimensat(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec, flags) -> 0 | -errno
// (nsec may be UTIME_NOW / UTIME_OMIT; seconds are exact up to 2^53)
napi_value js_utimensat(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string path;
  int64_t as, an, ms, mn, flags;
  if (argc < 6 || !get_path(env, argv[0], &path) || !get_int(env, argv[1], &as) || !get_int(env, argv[2], &an) ||
      !get_int(env, argv[3], &ms) || !get_int(env, argv[4], &mn) || !get_int(env, argv[5], &flags))
    return fail_type(env, "utimensat(path, asec, ansec, msec, mnsec, flags)");
  struct timespec ts[2];
  ts[0].tv_sec = as;
  ts[0].tv_nsec = an;
  ts[1].tv_sec = ms;
  ts[1].tv_nsec = mn;
  if (utimensat(AT_FDCWD, path.c_str(), ts, (int)flags) < 0) return num(env, -errno);
  return num(env, 0);
}

// The copy-up of a small regular file in one call (src/union/copyup.ts): data, then owner
// (where it differs), xattrs (but the two private prefixes), mode and times, all through the
// two descriptors.
//   copyFile(src, dst, skip1, skip2, uid, gid, mode, asec, ansec, msec, mnsec) -> 0 | -errno
// src is opened O_NOFOLLOW (never a symlink planted in its place); dst is created O_EXCL
// (mode 0600 until the end) and left in place on failure, for the caller to remove. Owner
// before xattrs: chown drops security.capability. An xattr the destination filesystem does
// not support (ENOTSUP) is skipped, as copyMetadata does.
int copy_data(int in, int out) {
  for (;;) {
    ssize_t n = copy_file_range(in, nullptr, out, nullptr, 1 << 30, 0);
    if (n > 0) continue;
    if (n == 0) return 0;
    if (errno == EINTR) continue;
    if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS) return -errno;
    break;  // no in-kernel copy between these two: plain reads and writes
  }
  for (;;) {
    ssize_t n = read(in, g_scratch, XMAX);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, g_scratch + off, n - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      off += w;
    }
  }
}

int copy_xattrs(int in, int out, const std::string &skip1, const std::string &skip2) {
  std::vector<char> names(XMAX);
  ssize_t len = flistxattr(in, names.data(), names.size());
  if (len < 0) return (errno == ENOTSUP) ? 0 : -errno;
  for (ssize_t i = 0; i < len;) {
    const char *name = names.data() + i;
    size_t nlen = strlen(name);
    i += nlen + 1;
    if (nlen == 0) continue;
    if ((!skip1.empty() && strncmp(name, skip1.c_str(), skip1.size()) == 0) ||
        (!skip2.empty() && strncmp(name, skip2.c_str(), skip2.size()) == 0))
      continue;
    ssize_t vlen = fgetxattr(in, name, g_scratch, XMAX);
    if (vlen < 0) {
      if (errno == ENODATA) continue;  // removed meanwhile
      return -errno;
    }
    if (fsetxattr(out, name, g_scratch, (size_t)vlen, 0) < 0 && errno != ENOTSUP) return -errno;
  }
  return 0;
}

napi_value js_copy_file(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string src, dst, skip1, skip2;
  int64_t uid, gid, mode, as, an, ms, mn;
  if (argc < 11 || !get_path(env, argv[0], &src) || !get_path(env, argv[1], &dst) || !get_string(env, argv[2], &skip1) ||
      !get_string(env, argv[3], &skip2) || !get_int(env, argv[4], &uid) || !get_int(env, argv[5], &gid) ||
      !get_int(env, argv[6], &mode) || !get_int(env, argv[7], &as) || !get_int(env, argv[8], &an) ||
      !get_int(env, argv[9], &ms) || !get_int(env, argv[10], &mn))
    return fail_type(env, "copyFile(src, dst, skip1, skip2, uid, gid, mode, asec, ansec, msec, mnsec)");
  int in = open(src.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0) return num(env, -errno);
  int out = open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) {
    int e = errno;
    close(in);
    return num(env, -e);
  }
  int rc = copy_data(in, out);
  // The new file is the daemon's (or its directory's group's): change the owner only where
  // that is not the original's already; a chown is a journaled change on most filesystems.
  struct stat ost;
  if (rc == 0 && fstat(out, &ost) < 0) rc = -errno;
  if (rc == 0 && (ost.st_uid != (uid_t)uid || ost.st_gid != (gid_t)gid) && fchown(out, (uid_t)uid, (gid_t)gid) < 0)
    rc = -errno;
  if (rc == 0) rc = copy_xattrs(in, out, skip1, skip2);
  if (rc == 0 && fchmod(out, (mode_t)(mode & 07777)) < 0) rc = -errno;
  if (rc == 0) {
    struct timespec ts[2];
    ts[0].tv_sec = as;
    ts[0].tv_nsec = an;
    ts[1].tv_sec = ms;
    ts[1].tv_nsec = mn;
    if (futimens(out, ts) < 0) rc = -errno;
  }
  close(in);
  if (close(out) < 0 && rc == 0) rc = -errno;
  return num(env, rc);
}

napi_value init(napi_env env, napi_value exports) {
  struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"lgetxattr", js_lgetxattr},       {"llistxattr", js_llistxattr}, {"lsetxattr", js_lsetxattr},
      {"lremovexattr", js_lremovexattr}, {"renameat2", js_renameat2},   {"utimensat", js_utimensat},
      {"copyFile", js_copy_file},
  };
  for (auto &f : fns) {
    napi_value v;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &v) != napi_ok) return nullptr;
    if (napi_set_named_property(env, exports, f.name, v) != napi_ok) return nullptr;
  }
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
