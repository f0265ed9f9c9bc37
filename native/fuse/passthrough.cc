// FUSE passthrough (Linux >= 6.9): the kernel reads and writes an open file's backing file
// itself, without a request per read or write. libfuse 3.14 predates it, so the session's
// device IO goes through io_read/io_writev (fuse_session_custom_io) and the few protocol bits
// are set on the wire here:
//  - io_read notices whether the kernel's INIT offers FUSE_PASSTHROUGH;
//  - io_writev adds FUSE_PASSTHROUGH (and max_stack_depth 1: backing files must sit on a
//    filesystem that stacks on nothing, and a layerfs mount can still be an overlayfs lower)
//    to the INIT reply when it was offered and asked for (ll_init, ops.cc, decides);
//  - replyOpen/replyCreate with a backing id (from backingOpen, the FUSE_DEV_IOC_BACKING_OPEN
//    ioctl, below) set t_backing (reply_open_backing, reply_create_backing); io_writev puts
//    FOPEN_PASSTHROUGH and the id into that reply's fuse_open_out.
// Which opens may pass through (the kernel refuses mixed modes on one inode, and two backing
// files for one inode) is the JS adapter's decision (src/fuse/ll-adapter.ts).

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

namespace lfuse {

namespace kernel {
const uint32_t OPCODE_INIT = 26;
const uint32_t INIT_EXT = 1u << 30;
const uint32_t FLAGS2_PASSTHROUGH = 1u << 5;  // FUSE_PASSTHROUGH is bit 37 of the flags
const uint32_t FOPEN_PASSTHROUGH = 1u << 7;
// fuse_init_in: major, minor, max_readahead, flags, flags2 (with INIT_EXT), ...
const size_t IN_HEADER = 40, INIT_IN_FLAGS = 12, INIT_IN_FLAGS2 = 16;
// fuse_init_out: ..., flags @12, ..., flags2 @32, max_stack_depth @36 (64 bytes in all)
const size_t INIT_OUT_FLAGS = 12, INIT_OUT_FLAGS2 = 32, INIT_OUT_STACK = 36, INIT_OUT_MIN = 40;
// fuse_open_out: fh u64, open_flags u32, backing_id i32 (the last 16 bytes of an open or
// create reply)
const size_t OPEN_OUT = 16;
struct backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
const unsigned long IOC_BACKING_OPEN = _IOW(229, 1, struct backing_map);
const unsigned long IOC_BACKING_CLOSE = _IOW(229, 2, uint32_t);
}  // namespace kernel

static thread_local int32_t t_backing = 0;

static uint32_t rd32(const char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static void wr32(char *p, uint32_t v) { memcpy(p, &v, 4); }

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata) {
  ssize_t n = read(fd, buf, len);
  Session *s = (Session *)userdata;
  if (n > 0 && !s->initSeen.load(std::memory_order_relaxed) && (size_t)n >= kernel::IN_HEADER + kernel::INIT_IN_FLAGS2 + 4 &&
      rd32((const char *)buf + 4) == kernel::OPCODE_INIT) {
    const char *in = (const char *)buf + kernel::IN_HEADER;
    s->ptOffered = (rd32(in + kernel::INIT_IN_FLAGS) & kernel::INIT_EXT) &&
                   (rd32(in + kernel::INIT_IN_FLAGS2) & kernel::FLAGS2_PASSTHROUGH);
    s->initSeen.store(true);
  }
  return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata) {
  Session *s = (Session *)userdata;
  if (count >= 2) {
    if (t_backing > 0 && iov[1].iov_len >= kernel::OPEN_OUT) {
      char *out = (char *)iov[1].iov_base + iov[1].iov_len - kernel::OPEN_OUT;
      wr32(out + 8, rd32(out + 8) | kernel::FOPEN_PASSTHROUGH);
      wr32(out + 12, (uint32_t)t_backing);
    } else if (!s->initReplied.load(std::memory_order_relaxed) && s->initSeen.load()) {
      // The first reply with a payload after the INIT request is the INIT reply.
      s->initReplied.store(true);
      if (s->ptNegotiated && iov[1].iov_len >= kernel::INIT_OUT_MIN) {
        char *out = (char *)iov[1].iov_base;
        wr32(out + kernel::INIT_OUT_FLAGS, rd32(out + kernel::INIT_OUT_FLAGS) | kernel::INIT_EXT);
        wr32(out + kernel::INIT_OUT_FLAGS2, rd32(out + kernel::INIT_OUT_FLAGS2) | kernel::FLAGS2_PASSTHROUGH);
        wr32(out + kernel::INIT_OUT_STACK, 1);
      }
    }
  }
  return writev(fd, iov, count);
}

// Replies libfuse splices from a pipe (replyFd) need nothing patched; without this hook
// libfuse would not offer splicing at all on a session with custom IO.
static ssize_t io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
                              unsigned int flags, void *) {
  return splice(fdin, offin, fdout, offout, len, flags);
}

static const struct fuse_custom_io g_io = {io_writev, io_read, nullptr, io_splice_send};

int use_custom_io(Session *s, int fd) {
  return fuse_session_custom_io(s->se, &g_io, fd);
}

// An open or create reply; a backing id > 0 makes io_writev turn it into a passthrough open.
int reply_open_backing(fuse_req_t req, const struct fuse_file_info *fi, int32_t backing) {
  t_backing = backing;
  int rc = fuse_reply_open(req, fi);
  t_backing = 0;
  return rc;
}

int reply_create_backing(fuse_req_t req, const struct fuse_entry_param *e, const struct fuse_file_info *fi,
                         int32_t backing) {
  t_backing = backing;
  int rc = fuse_reply_create(req, e, fi);
  t_backing = 0;
  return rc;
}

// backingOpen(session, fd) -> backing id (> 0) | -errno: registers an open file as a
// passthrough backing file (FUSE_DEV_IOC_BACKING_OPEN; needs CAP_SYS_ADMIN).
napi_value js_backing_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc >= 2 ? unwrap(env, argv[0]) : nullptr;
  uint32_t fd;
  if (!s || !get_u32(env, argv[1], &fd)) return throw_type(env, "backingOpen(session, fd)");
  if (s->destroyed || !s->se) return make_int(env, -ENOTCONN);
  if (!s->ptNegotiated) return make_int(env, -EOPNOTSUPP);
  kernel::backing_map m = {(int32_t)fd, 0, 0};
  int id = ioctl(fuse_session_fd(s->se), kernel::IOC_BACKING_OPEN, &m);
  return make_int(env, id < 0 ? -errno : id);
}

// backingClose(session, id) -> 0 | -errno
napi_value js_backing_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc >= 2 ? unwrap(env, argv[0]) : nullptr;
  uint32_t id;
  if (!s || !get_u32(env, argv[1], &id)) return throw_type(env, "backingClose(session, id)");
  if (s->destroyed || !s->se) return make_int(env, -ENOTCONN);
  return make_int(env, ioctl(fuse_session_fd(s->se), kernel::IOC_BACKING_CLOSE, &id) < 0 ? -errno : 0);
}

}  // namespace lfuse
