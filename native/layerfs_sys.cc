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
#include <linux/bpf.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

// The inode-flags ioctls on one object of a layer (what lsattr and chattr use; the union's rule
// for them is src/union/fileattr.ts):
//   fileattr(path, cmd, buf: Buffer) -> 0 | -errno
// cmd: FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (buf: 4 bytes, the flags as an int) or
// FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR (buf: 28 bytes, struct fsxattr); a get writes its answer
// into buf. No other ioctl is made (a TypeError). The object is opened
// O_RDONLY|O_NONBLOCK|O_NOFOLLOW|O_NOCTTY: a symlink is never followed out of its layer (ELOOP);
// anything but a regular file or a directory gets ENOTTY without an ioctl (what overlayfs answers
// for special files; the union never asks for them: a device node in a layer is not the daemon's
// to drive).
napi_value js_fileattr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string path;
  int64_t cmd;
  void *buf = nullptr;
  size_t len = 0;
  bool isBuf = false;
  if (argc < 3 || !get_path(env, argv[0], &path) || !get_int(env, argv[1], &cmd) ||
      napi_is_buffer(env, argv[2], &isBuf) != napi_ok || !isBuf || napi_get_buffer_info(env, argv[2], &buf, &len) != napi_ok)
    return fail_type(env, "fileattr(path, cmd, buf)");
  const unsigned long c = (unsigned long)(uint32_t)cmd;
  const bool flags = c == FS_IOC_GETFLAGS || c == FS_IOC_SETFLAGS;
  const bool xattr = c == FS_IOC_FSGETXATTR || c == FS_IOC_FSSETXATTR;
  if ((uint64_t)cmd > 0xffffffffu || (!flags && !xattr)) return fail_type(env, "fileattr: not an inode-flags ioctl");
  if (len < (flags ? sizeof(int) : sizeof(struct fsxattr))) return fail_type(env, "fileattr: buffer too small");
  int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return num(env, -errno);
  int rc = 0;
  struct stat st;
  if (fstat(fd, &st) < 0) rc = -errno;
  else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) rc = -ENOTTY;
  else if (flags) {
    int v;  // the kernel reads and writes an int, whatever the command's encoded size says
    memcpy(&v, buf, sizeof v);
    if (ioctl(fd, c, &v) < 0) rc = -errno;
    else if (c == FS_IOC_GETFLAGS) memcpy(buf, &v, sizeof v);
  } else {
    struct fsxattr x;
    memcpy(&x, buf, sizeof x);
    if (ioctl(fd, c, &x) < 0) rc = -errno;
    else if (c == FS_IOC_FSGETXATTR) memcpy(buf, &x, sizeof x);
  }
  close(fd);
  return num(env, rc);
}

// ---------------------------------------------------------------------------
// The cgroup v2 device controller: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to
// the cgroup (BPF_CGROUP_DEVICE). The kernel runs it on every open / mknod of a device node by
// a task of that cgroup (or a descendant) with struct bpf_cgroup_dev_ctx in r1:
//   access_type = (BPF_DEVCG_ACC_{MKNOD=1,READ=2,WRITE=4} << 16) | BPF_DEVCG_DEV_{BLOCK=1,CHAR=2}
//   major, minor
// and allows the access when it returns 1 (0: EPERM).
//
//   cgroupDeviceFilter(cgroupDir, rules, info?) -> 0 | -errno
// rules: [{ type: 'c' | 'b' | 'a', major: -1 (any) | 0..2^31-1, minor: likewise, access: 1..7 }]
// (access: the BPF_DEVCG_ACC_* bits the rule grants). The program is an allow-list: the first
// rule whose type, major and minor match and whose access bits cover the request allows it;
// no match denies. On failure, `info` (an object, optional) gets `syscall` (the step that failed)
// and, for a program the verifier refused, `log` (its message).

const size_t DEV_MAX_RULES = 64;

// The few eBPF instruction encodings the program needs (see the kernel's
// Documentation/bpf/standardization/instruction-set.rst; the opcode constants come from
// <linux/bpf_common.h> and <linux/bpf.h>).
bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i;
  memset(&i, 0, sizeof i);
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}
// dst = *(u32 *)(src + off)
bpf_insn ldx_w(uint8_t dst, uint8_t src, int16_t off) { return insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0); }
// dst = (u32)src (the upper half zeroed)
bpf_insn mov32_reg(uint8_t dst, uint8_t src) { return insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0); }
// dst = (u32)imm
bpf_insn mov32_imm(uint8_t dst, int32_t imm) { return insn(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, imm); }
// dst = (u32)(dst & imm)
bpf_insn and32_imm(uint8_t dst, int32_t imm) { return insn(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, imm); }
// dst = (u32)(dst >> imm)
bpf_insn rsh32_imm(uint8_t dst, int32_t imm) { return insn(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, imm); }
// if (dst != imm) goto pc + 1 + off (64-bit compare; imm >= 0 and dst zero-extended, so exact)
bpf_insn jne_imm(uint8_t dst, int32_t imm, int16_t off) { return insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm); }
// return r0
bpf_insn exit_insn() { return insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }

struct DevRule {
  int type;  // BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR, or 0 for any
  int64_t major, minor;  // -1: any
  int access;  // BPF_DEVCG_ACC_* bits granted
};

// Registers: r1 ctx (then scratch), r2 device type, r3 requested access, r4 major, r5 minor.
std::vector<bpf_insn> dev_program(const std::vector<DevRule> &rules) {
  std::vector<bpf_insn> p;
  p.push_back(ldx_w(2, 1, offsetof(bpf_cgroup_dev_ctx, access_type)));
  p.push_back(mov32_reg(3, 2));
  p.push_back(and32_imm(2, 0xffff));  // r2 = type
  p.push_back(rsh32_imm(3, 16));      // r3 = access asked for
  p.push_back(ldx_w(4, 1, offsetof(bpf_cgroup_dev_ctx, major)));
  p.push_back(ldx_w(5, 1, offsetof(bpf_cgroup_dev_ctx, minor)));
  for (const DevRule &r : rules) {
    // Each check jumps past this rule's block when it does not match; the jump offsets are
    // filled in once the block's length is known.
    std::vector<size_t> jumps;
    if (r.type != 0) {
      jumps.push_back(p.size());
      p.push_back(jne_imm(2, r.type, 0));
    }
    if (r.major >= 0) {
      jumps.push_back(p.size());
      p.push_back(jne_imm(4, (int32_t)r.major, 0));
    }
    if (r.minor >= 0) {
      jumps.push_back(p.size());
      p.push_back(jne_imm(5, (int32_t)r.minor, 0));
    }
    const int all = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;
    if ((r.access & all) != all) {
      // (asked & ~granted) == 0
      p.push_back(mov32_reg(1, 3));
      p.push_back(and32_imm(1, ~r.access & all));
      jumps.push_back(p.size());
      p.push_back(jne_imm(1, 0, 0));
    }
    p.push_back(mov32_imm(0, 1));  // allow
    p.push_back(exit_insn());
    for (size_t j : jumps) p[j].off = (int16_t)(p.size() - (j + 1));
    // A rule that matches everything ("a *:* rwm") ends the program: the verifier refuses
    // unreachable instructions.
    if (jumps.empty()) return p;
  }
  p.push_back(mov32_imm(0, 0));  // no rule matched: deny
  p.push_back(exit_insn());
  return p;
}

long sys_bpf(int cmd, union bpf_attr *attr) { return syscall(SYS_bpf, cmd, attr, sizeof *attr); }

void set_info(napi_env env, napi_value info, const char *key, const char *val) {
  if (!info) return;
  napi_value s;
  if (napi_create_string_utf8(env, val, NAPI_AUTO_LENGTH, &s) == napi_ok) napi_set_named_property(env, info, key, s);
}

bool get_prop_int(napi_env env, napi_value obj, const char *key, int64_t *out) {
  napi_value v;
  return napi_get_named_property(env, obj, key, &v) == napi_ok && get_int(env, v, out);
}

napi_value js_cgroup_device_filter(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  const char *usage = "cgroupDeviceFilter(cgroupDir, rules: {type, major, minor, access}[], info?)";
  std::string dir;
  bool isArr = false;
  if (argc < 2 || !get_path(env, argv[0], &dir) || napi_is_array(env, argv[1], &isArr) != napi_ok || !isArr)
    return fail_type(env, usage);
  napi_value out = nullptr;
  if (argc >= 3) {
    napi_valuetype t;
    if (napi_typeof(env, argv[2], &t) == napi_ok && t == napi_object) out = argv[2];
  }
  uint32_t n;
  if (napi_get_array_length(env, argv[1], &n) != napi_ok) return fail_type(env, usage);
  if (n > DEV_MAX_RULES) {
    napi_throw_range_error(env, nullptr, "cgroupDeviceFilter: more than 64 rules");
    return nullptr;
  }
  std::vector<DevRule> rules;
  for (uint32_t i = 0; i < n; i++) {
    napi_value r, tv;
    std::string type;
    DevRule d;
    int64_t access;
    if (napi_get_element(env, argv[1], i, &r) != napi_ok || napi_get_named_property(env, r, "type", &tv) != napi_ok ||
        !get_string(env, tv, &type) || !get_prop_int(env, r, "major", &d.major) ||
        !get_prop_int(env, r, "minor", &d.minor) || !get_prop_int(env, r, "access", &access))
      return fail_type(env, usage);
    if (type == "c") d.type = BPF_DEVCG_DEV_CHAR;
    else if (type == "b") d.type = BPF_DEVCG_DEV_BLOCK;
    else if (type == "a") d.type = 0;
    else return fail_type(env, "cgroupDeviceFilter: rule type must be 'c', 'b' or 'a'");
    if (d.major < -1 || d.major > INT32_MAX || d.minor < -1 || d.minor > INT32_MAX || access < 1 || access > 7) {
      napi_throw_range_error(env, nullptr, "cgroupDeviceFilter: major/minor must be -1..2^31-1, access 1..7");
      return nullptr;
    }
    d.access = (int)access;
    rules.push_back(d);
  }
  std::vector<bpf_insn> prog = dev_program(rules);

  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = (uint64_t)(uintptr_t)prog.data();
  attr.insn_cnt = (uint32_t)prog.size();
  attr.license = (uint64_t)(uintptr_t) "MIT";  // no GPL-only helpers are called
  static const char name[] = "layerfs_devices";  // shown by bpftool prog
  static_assert(sizeof name <= sizeof attr.prog_name, "BPF_OBJ_NAME_LEN");
  memcpy(attr.prog_name, name, sizeof name);
  int pfd = (int)sys_bpf(BPF_PROG_LOAD, &attr);
  if (pfd < 0) {
    int e = errno;
    set_info(env, out, "syscall", "bpf(BPF_PROG_LOAD)");
    // Load again with the verifier's log (as libbpf does: a log on the first try can itself
    // fail with ENOSPC on a long verification) and hand back its message.
    std::vector<char> log(1 << 20);
    attr.log_buf = (uint64_t)(uintptr_t)log.data();
    attr.log_size = (uint32_t)log.size();
    attr.log_level = 1;
    int again = (int)sys_bpf(BPF_PROG_LOAD, &attr);
    if (again >= 0) close(again);  // loaded the second time: no message to give
    else {
      log.back() = 0;
      std::string msg(log.data());
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
      if (!msg.empty()) set_info(env, out, "log", msg.c_str());
    }
    return num(env, -e);
  }
  int cfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cfd < 0) {
    int e = errno;
    close(pfd);
    set_info(env, out, "syscall", "open");
    return num(env, -e);
  }
  memset(&attr, 0, sizeof attr);
  attr.target_fd = (uint32_t)cfd;
  attr.attach_bpf_fd = (uint32_t)pfd;
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  int rc = sys_bpf(BPF_PROG_ATTACH, &attr) < 0 ? -errno : 0;
  if (rc < 0) set_info(env, out, "syscall", "bpf(BPF_PROG_ATTACH)");
  // The attachment holds its own reference to the program: it lives as long as the cgroup.
  close(cfd);
  close(pfd);
  return num(env, rc);
}

napi_value init(napi_env env, napi_value exports) {
  static const ExportedFunction fns[] = {
      {"lgetxattr", js_lgetxattr},       {"llistxattr", js_llistxattr}, {"lsetxattr", js_lsetxattr},
      {"lremovexattr", js_lremovexattr}, {"renameat2", js_renameat2},   {"utimensat", js_utimensat},
      {"copyFile", js_copy_file},        {"cgroupDeviceFilter", js_cgroup_device_filter},
      {"fileattr", js_fileattr},
  };
  if (!export_functions(env, exports, fns)) return nullptr;
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
