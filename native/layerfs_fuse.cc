// layerfs_fuse: a Node-API binding to libfuse3's low-level API, written for layerfs.
//
// Requests are read without blocking anyone and handed to the JS thread in batches; JS
// answers later with fuse_reply_* (thread-safe in libfuse). Two ways to read (per session):
//
//  inline (default in lowlevel.ts): the JS thread's event loop watches /dev/fuse (uv_poll,
//    O_NONBLOCK). When it is readable, on_poll reads every request there is (up to a bound)
//    with fuse_session_receive_buf/fuse_session_process_buf; each op callback copies its
//    arguments into a Rec and queues it WITHOUT replying; then the batch is dispatched.
//    One thread wake-up per batch: the kernel wakes the JS thread directly.
//
//  thread: a session thread polls /dev/fuse and a wake-up eventfd, reads and processes the
//    same way, and the push that makes the queue non-empty calls uv_async_send; on_async on
//    the JS thread swaps the whole queue out (one lock) and dispatches it.
//
// Dispatch (deliver_queue, JS thread): inside ONE callback scope per batch, the JS
// dispatcher is called once per Rec; a request's fuse_req_t goes into the in-flight table
// under a fresh id. JS answers with reply*(session, id, ...): the id is looked up, removed,
// and the reply written to /dev/fuse. Promise jobs (replies of async handlers) run when the
// batch's callback scope closes.
//
// Every fuse_req_t is answered exactly once: replies for unknown ids (double replies) are
// refused; whatever is still in flight or queued when the session is destroyed is answered
// ENOTCONN. FORGETs are answered (reply_none) at once and passed to JS as notifications.
// Argument validation happens before the in-flight entry is taken, so a reply call with bad
// arguments throws a TypeError and leaves the request answerable (the JS layer answers EIO).
//
// Names: file names reach JS as byte strings (latin1, one char per byte: the kernel's bytes,
// valid UTF-8 or not) and come back the same way (dirents, notifications, readlink); xattr
// names are text (UTF-8), and one that is not valid UTF-8 is refused.
//
// Buffers: read replies are written from the JS Buffer the data was read into. A write's
// payload is not copied: the receive buffer it sits in is taken over (libfuse allocates a new
// one, as it does whenever buf.mem is NULL) and JS gets a Uint8Array over the payload in
// place, backed by an external ArrayBuffer; recycle() detaches it once consumed (every view
// becomes empty) and the block returns to a pool the next receive buffer is taken from.

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>

#include <node_api.h>
#include "napi_util.h"
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

// ------------------------------------------------------------------------------------------
// N-API helpers

#define NAPI_CALL(env, call)                                             \
  do {                                                                   \
    napi_status status_ = (call);                                        \
    if (status_ != napi_ok) {                                            \
      bool pending_ = false;                                             \
      napi_is_exception_pending((env), &pending_);                       \
      if (!pending_) napi_throw_error((env), nullptr, "N-API call failed: " #call); \
      return nullptr;                                                    \
    }                                                                    \
  } while (0)

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, nullptr, msg);
  return nullptr;
}

static napi_value make_int(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

static napi_value make_double(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static napi_value make_u32(napi_env env, uint32_t v) {
  napi_value r;
  napi_create_uint32(env, v, &r);
  return r;
}

static napi_value make_bool(napi_env env, bool v) {
  napi_value r;
  napi_get_boolean(env, v, &r);
  return r;
}

static napi_value make_null(napi_env env) {
  napi_value r;
  napi_get_null(env, &r);
  return r;
}

static napi_value make_undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

static napi_value make_bigint_i64(napi_env env, int64_t v) {
  napi_value r;
  napi_create_bigint_int64(env, v, &r);
  return r;
}

static napi_value make_bigint_u64(napi_env env, uint64_t v) {
  napi_value r;
  napi_create_bigint_uint64(env, v, &r);
  return r;
}

static napi_value make_string(napi_env env, const std::string &s) {
  napi_value r;
  napi_create_string_utf8(env, s.data(), s.size(), &r);
  return r;
}

// File names are bytes: they reach JS as byte strings (latin1, one char per byte), so names
// that are not valid UTF-8 survive the trip (see src/union/bytes.ts).
static napi_value make_bytes_string(napi_env env, const std::string &s) {
  napi_value r;
  napi_create_string_latin1(env, s.data(), s.size(), &r);
  return r;
}

static const double MAX_SAFE = 9007199254740991.0;  // 2^53 - 1

// A non-negative integer from a Number (exact up to 2^53) or a BigInt.
static bool get_u64(napi_env env, napi_value v, uint64_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_number) {
    double d;
    napi_get_value_double(env, v, &d);
    if (!(d >= 0 && d <= MAX_SAFE) || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
  }
  if (t == napi_bigint) {
    bool lossless;
    if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok) return false;
    return lossless;
  }
  return false;
}

// A signed integer from a Number (exact up to 2^53) or a BigInt.
static bool get_i64(napi_env env, napi_value v, int64_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_number) {
    double d;
    napi_get_value_double(env, v, &d);
    if (!(d >= -MAX_SAFE && d <= MAX_SAFE) || d != (double)(int64_t)d) return false;
    *out = (int64_t)d;
    return true;
  }
  if (t == napi_bigint) {
    bool lossless;
    if (napi_get_value_bigint_int64(env, v, out, &lossless) != napi_ok) return false;
    return lossless;
  }
  return false;
}

static bool get_u32(napi_env env, napi_value v, uint32_t *out) {
  uint64_t x;
  if (!get_u64(env, v, &x) || x > 0xffffffffull) return false;
  *out = (uint32_t)x;
  return true;
}

static bool get_number(napi_env env, napi_value v, double *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return false;
  napi_get_value_double(env, v, out);
  return true;
}

// Bytes of a Buffer / TypedArray / DataView / ArrayBuffer; null/undefined = empty.
static bool get_bytes(napi_env env, napi_value v, const char **data, size_t *len) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_null || t == napi_undefined) {
    *data = nullptr;
    *len = 0;
    return true;
  }
  bool is;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type tt;
    size_t n;
    void *p;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, v, &tt, &n, &p, &ab, &off) != napi_ok) return false;
    size_t elem = 1;
    switch (tt) {
      case napi_int16_array: case napi_uint16_array: elem = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
      default: elem = 1;
    }
    *data = (const char *)p;
    *len = n * elem;
    return true;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    size_t n;
    void *p;
    napi_value ab;
    size_t off;
    if (napi_get_dataview_info(env, v, &n, &p, &ab, &off) != napi_ok) return false;
    *data = (const char *)p;
    *len = n;
    return true;
  }
  if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
    void *p;
    size_t n;
    if (napi_get_arraybuffer_info(env, v, &p, &n) != napi_ok) return false;
    *data = (const char *)p;
    *len = n;
    return true;
  }
  return false;
}

// The bytes of a byte string (latin1). Node-API would truncate a char above 0xff to its low
// byte; the JS side (lowlevel.ts) refuses such strings before they get here.
static bool get_bytes_string(napi_env env, napi_value v, std::string *out) {
  size_t n;
  if (napi_get_value_string_latin1(env, v, nullptr, 0, &n) != napi_ok) return false;
  out->resize(n + 1);
  size_t got;
  if (napi_get_value_string_latin1(env, v, &(*out)[0], n + 1, &got) != napi_ok) return false;
  out->resize(got);
  return true;
}

static bool valid_utf8(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    unsigned min;
    if ((c & 0xe0) == 0xc0) { len = 2; min = 0x80; c &= 0x1f; }
    else if ((c & 0xf0) == 0xe0) { len = 3; min = 0x800; c &= 0x0f; }
    else if ((c & 0xf8) == 0xf0) { len = 4; min = 0x10000; c &= 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      c = (c << 6) | (p[i + k] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

// ------------------------------------------------------------------------------------------
// Request records and sessions

// Operation codes shared with src/fuse/lowlevel.ts (keep in sync).
enum Op : int {
  OP_INIT = 1, OP_EXIT, OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD,
  OP_MKDIR, OP_UNLINK, OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE,
  OP_FLUSH, OP_RELEASE, OP_FSYNC, OP_OPENDIR, OP_READDIR, OP_RELEASEDIR, OP_FSYNCDIR, OP_STATFS,
  OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_ACCESS, OP_CREATE, OP_FALLOCATE,
  OP_READDIRPLUS, OP_COPY_FILE_RANGE, OP_LSEEK, OP_IOCTL,
  OP_MAX
};

struct Rec {
  Rec *next = nullptr;
  int op = 0;
  fuse_req_t req = nullptr;  // null for notifications (INIT, EXIT, FORGET)
  uint64_t ino = 0;
  uint32_t uid = 0, gid = 0, pid = 0, umask = 0;
  bool hasFh = false;
  uint64_t fh = 0;
  int64_t v[12] = {0};  // op-specific integers (see deliver_one)
  std::string name, name2;
  char *data = nullptr;  // payload (write data, xattr value, symlink target)
  size_t dataLen = 0;
  // Whose memory data is: when set, data points into this malloc'd block (a receive buffer
  // taken over from libfuse), which is what gets freed; else data itself was malloc'd.
  char *dataBlock = nullptr;
};

static void free_rec(Rec *r) {
  free(r->dataBlock ? r->dataBlock : r->data);
  delete r;
}

struct Session {
  napi_env env = nullptr;
  napi_ref selfRef = nullptr;      // strong while the session lives (keeps the External alive)
  napi_ref dispatchRef = nullptr;  // the JS dispatcher
  napi_async_context asyncCtx = nullptr;

  struct fuse_session *se = nullptr;
  bool mounted = false;
  std::string mountpoint;

  pthread_t thread{};
  bool threadStarted = false;
  bool threadJoined = false;
  int wakefd = -1;
  std::atomic<bool> stopFlag{false};

  uv_async_t async{};
  bool asyncOpen = false;

  // Inline mode: no session thread; the JS thread watches /dev/fuse itself.
  bool threaded = true;
  uv_poll_t poll{};
  bool pollOpen = false;
  bool pollActive = false;
  struct fuse_buf rbuf{};
  size_t blockSize = 0;  // usable size of the first receive buffer libfuse allocated
  int openHandles = 0;  // libuv handles still to be closed before the napi refs go

  std::mutex qlock;
  Rec *head = nullptr, *tail = nullptr;
  size_t queued = 0;

  // Reads being answered on libuv's thread pool (replyFd): they use se and its device fd, so
  // teardown waits for them before it closes either.
  std::mutex asyncLock;
  std::condition_variable asyncDone;
  int asyncPending = 0;

  // JS-thread only.
  std::unordered_map<uint64_t, fuse_req_t> inflight;
  uint64_t nextId = 0;
  bool destroyed = false;
  bool inCleanup = false;

  // Configuration (set before the thread starts).
  uint64_t opsMask = 0;  // bit (1 << op) for each op JS implements
  bool writeback = false;
  bool passthrough = false;  // asked for (config.passthrough); see "Passthrough" below

  // Passthrough state (see io_read / io_writev).
  std::atomic<bool> initSeen{false};     // the INIT request was read
  std::atomic<bool> initReplied{false};  // its reply was written
  bool ptOffered = false;                // the kernel's INIT offered FUSE_PASSTHROUGH
  bool ptNegotiated = false;             // ... and we took it
  unsigned maxWrite = 1 << 20;
  unsigned maxReadahead = 0;  // 0 = the kernel's
  unsigned maxRead = 0;       // the max_read= mount option libfuse was given (0: none)
  unsigned maxBackground = 64;
  int64_t spinNs = 0;  // inline mode: keep reading this long after a batch (see on_poll)
  unsigned congestion = 48;

  // Statistics (JS thread).
  uint64_t nRequests = 0, nWakeups = 0, maxBatch = 0, nForgets = 0, nSpinHits = 0;
  uint64_t perOp[OP_MAX] = {0};  // requests handed to JS, by op code
  std::atomic<uint64_t> nReceived{0};
};

// Live sessions, so that process exit and environment teardown can unmount them.
static std::mutex g_live_lock;
static std::vector<Session *> g_live;
static bool g_atexit_registered = false;

static void live_add(Session *s) {
  std::lock_guard<std::mutex> g(g_live_lock);
  g_live.push_back(s);
}

static void live_remove(Session *s) {
  std::lock_guard<std::mutex> g(g_live_lock);
  for (size_t i = 0; i < g_live.size(); i++) {
    if (g_live[i] == s) {
      g_live.erase(g_live.begin() + i);
      return;
    }
  }
}

static bool has(Session *s, int op) {
  return op > 0 && op < 64 && ((s->opsMask >> op) & 1u);
}

static void push(Session *s, Rec *r) {
  bool wake;
  {
    std::lock_guard<std::mutex> g(s->qlock);
    wake = s->head == nullptr;
    if (s->tail) s->tail->next = r;
    else s->head = r;
    s->tail = r;
    s->queued++;
  }
  s->nReceived.fetch_add(1, std::memory_order_relaxed);
  if (wake && s->threaded) uv_async_send(&s->async);
}

static Session *sess(fuse_req_t req) {
  return (Session *)fuse_req_userdata(req);
}

static Rec *new_rec(fuse_req_t req, int op, fuse_ino_t ino) {
  Rec *r = new Rec();
  r->op = op;
  r->req = req;
  r->ino = ino;
  const struct fuse_ctx *c = fuse_req_ctx(req);
  if (c) {
    r->uid = c->uid;
    r->gid = c->gid;
    r->pid = (uint32_t)c->pid;
    r->umask = c->umask;
  }
  return r;
}

// Writes at least this big take the receive buffer over instead of copying the payload
// (below it, a copy is cheaper than a fresh 1 MiB receive buffer).
static const size_t STEAL_MIN = 64 * 1024;

// Receive buffers given back by JS (recycle) once a write payload was consumed. libfuse reads
// a whole request (its bufsize) into buf.mem and allocates one itself only when buf.mem is
// NULL; a session takes a pooled block only if it is at least as large as the first buffer
// libfuse allocated for that session (so it holds that session's bufsize, which only shrinks).
static std::mutex g_pool_lock;
static std::vector<char *> g_pool;
static const size_t POOL_MAX = 8;
static std::atomic<uint64_t> g_poolHits{0};  // receive buffers taken from the pool

static void pool_put(char *block) {
  {
    std::lock_guard<std::mutex> g(g_pool_lock);
    if (g_pool.size() < POOL_MAX) {
      g_pool.push_back(block);
      return;
    }
  }
  free(block);
}

static char *pool_take(size_t minUsable) {
  std::lock_guard<std::mutex> g(g_pool_lock);
  while (!g_pool.empty()) {
    char *b = g_pool.back();
    g_pool.pop_back();
    if (malloc_usable_size(b) >= minUsable) {
      g_poolHits.fetch_add(1, std::memory_order_relaxed);
      return b;
    }
    free(b);
  }
  return nullptr;
}

// fuse_session_receive_buf with a pooled buffer when one fits (see pool_take).
static int receive(Session *s) {
  if (!s->rbuf.mem && s->blockSize) s->rbuf.mem = pool_take(s->blockSize);
  int res = fuse_session_receive_buf(s->se, &s->rbuf);
  if (!s->blockSize && s->rbuf.mem) s->blockSize = malloc_usable_size(s->rbuf.mem);
  return res;
}

// Write payloads handed to JS and not finalized yet (data pointer -> block); JS thread only.
static std::unordered_map<void *, char *> g_payloads;

static void set_fi(Rec *r, struct fuse_file_info *fi) {
  if (fi) {
    r->hasFh = true;
    r->fh = fi->fh;
  }
}

// Xattr names reach JS as text (UTF-8): one that is not valid UTF-8 is refused here. (File
// names are bytes and go through as they are.)
static bool check_xattr_name(fuse_req_t req, const char *name, int err) {
  if (valid_utf8(name, strlen(name))) return true;
  fuse_reply_err(req, err);
  return false;
}

static char *copy_bytes(const char *p, size_t n) {
  char *d = (char *)malloc(n ? n : 1);
  if (d && n) memcpy(d, p, n);
  return d;
}

// Offsets reach JS as Numbers: refuse those a double cannot hold exactly.
static bool off_ok(int64_t off) {
  return off >= 0 && (double)off <= MAX_SAFE;
}

// ------------------------------------------------------------------------------------------
// Passthrough (Linux >= 6.9): the kernel reads and writes an open file's backing file itself,
// without a request per read or write. libfuse 3.14 predates it, so the session's device IO
// goes through io_read/io_writev (fuse_session_custom_io) and the few protocol bits are set
// on the wire here:
//  - io_read notices whether the kernel's INIT offers FUSE_PASSTHROUGH;
//  - io_writev adds FUSE_PASSTHROUGH (and max_stack_depth 1: backing files must sit on a
//    filesystem that stacks on nothing, and a layerfs mount can still be an overlayfs lower)
//    to the INIT reply when it was offered and asked for;
//  - replyOpen/replyCreate with a backing id (from backingOpen, the FUSE_DEV_IOC_BACKING_OPEN
//    ioctl) set t_backing; io_writev puts FOPEN_PASSTHROUGH and the id into that reply's
//    fuse_open_out.
// Which opens may pass through (the kernel refuses mixed modes on one inode, and two backing
// files for one inode) is the JS adapter's decision (src/fuse/ll-adapter.ts).

namespace wire {
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
}  // namespace wire

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
  if (n > 0 && !s->initSeen.load(std::memory_order_relaxed) && (size_t)n >= wire::IN_HEADER + wire::INIT_IN_FLAGS2 + 4 &&
      rd32((const char *)buf + 4) == wire::OPCODE_INIT) {
    const char *in = (const char *)buf + wire::IN_HEADER;
    s->ptOffered = (rd32(in + wire::INIT_IN_FLAGS) & wire::INIT_EXT) &&
                   (rd32(in + wire::INIT_IN_FLAGS2) & wire::FLAGS2_PASSTHROUGH);
    s->initSeen.store(true);
  }
  return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata) {
  Session *s = (Session *)userdata;
  if (count >= 2) {
    if (t_backing > 0 && iov[1].iov_len >= wire::OPEN_OUT) {
      char *out = (char *)iov[1].iov_base + iov[1].iov_len - wire::OPEN_OUT;
      wr32(out + 8, rd32(out + 8) | wire::FOPEN_PASSTHROUGH);
      wr32(out + 12, (uint32_t)t_backing);
    } else if (!s->initReplied.load(std::memory_order_relaxed) && s->initSeen.load()) {
      // The first reply with a payload after the INIT request is the INIT reply.
      s->initReplied.store(true);
      if (s->ptNegotiated && iov[1].iov_len >= wire::INIT_OUT_MIN) {
        char *out = (char *)iov[1].iov_base;
        wr32(out + wire::INIT_OUT_FLAGS, rd32(out + wire::INIT_OUT_FLAGS) | wire::INIT_EXT);
        wr32(out + wire::INIT_OUT_FLAGS2, rd32(out + wire::INIT_OUT_FLAGS2) | wire::FLAGS2_PASSTHROUGH);
        wr32(out + wire::INIT_OUT_STACK, 1);
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

// ------------------------------------------------------------------------------------------
// Low-level operations (session thread): copy, queue, return.

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  Session *s = (Session *)userdata;
  unsigned cap = conn->capable;
  unsigned want = conn->want;
  // Things we do not do (or do not want the kernel to expect from us).
  want &= ~(FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS |
            FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_MOVE |
            FUSE_CAP_EXPORT_SUPPORT | FUSE_CAP_DONT_MASK | FUSE_CAP_POSIX_ACL |
            FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_EXPLICIT_INVAL_DATA);
  // SPLICE_WRITE: replyFd splices file data to the kernel (a libfuse-side choice; the kernel
  // takes any write to /dev/fuse).
  want |= cap & (FUSE_CAP_ASYNC_READ | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_PARALLEL_DIROPS |
                 FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_ASYNC_DIO | FUSE_CAP_CACHE_SYMLINKS);
  want |= cap & FUSE_CAP_SPLICE_WRITE;
  // Directories get ioctls (lsattr -d, chattr on a directory) only with IOCTL_DIR: libfuse
  // answers them ENOTTY itself without it.
  if (has(s, OP_IOCTL)) want |= cap & FUSE_CAP_IOCTL_DIR;
  else want &= ~FUSE_CAP_IOCTL_DIR;
  if (has(s, OP_READDIRPLUS)) want |= cap & (FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
  else want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
  if (s->writeback) want |= cap & FUSE_CAP_WRITEBACK_CACHE;
  conn->want = want;
  // The kernel takes passthrough only without the writeback cache.
  s->ptNegotiated = s->passthrough && s->ptOffered && !(want & FUSE_CAP_WRITEBACK_CACHE);
  if (s->maxWrite && s->maxWrite < conn->max_write) conn->max_write = s->maxWrite;
  if (s->maxReadahead && s->maxReadahead < conn->max_readahead) conn->max_readahead = s->maxReadahead;
  // libfuse checks that init() agrees with the max_read= mount option.
  conn->max_read = s->maxRead;
  if (s->maxBackground) conn->max_background = s->maxBackground;
  if (s->congestion) conn->congestion_threshold = s->congestion;
  conn->time_gran = 1;

  Rec *r = new Rec();
  r->op = OP_INIT;
  r->v[0] = conn->proto_major;
  r->v[1] = conn->proto_minor;
  r->v[2] = conn->capable;
  r->v[3] = conn->want;
  r->v[4] = conn->max_write;
  r->v[5] = conn->max_readahead;
  r->v[6] = conn->max_background;
  r->v[7] = conn->congestion_threshold;
  r->v[8] = s->ptNegotiated;
  push(s, r);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  Rec *r = new_rec(req, OP_LOOKUP, parent);
  r->name = name;
  push(sess(req), r);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Session *s = sess(req);
  fuse_reply_none(req);
  Rec *r = new Rec();
  r->op = OP_FORGET;
  r->ino = ino;
  r->v[0] = (int64_t)nlookup;
  push(s, r);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  Session *s = sess(req);
  // Copy first: the array lives in the request buffer.
  std::vector<Rec *> recs;
  recs.reserve(count);
  for (size_t i = 0; i < count; i++) {
    Rec *r = new Rec();
    r->op = OP_FORGET;
    r->ino = forgets[i].ino;
    r->v[0] = (int64_t)forgets[i].nlookup;
    recs.push_back(r);
  }
  fuse_reply_none(req);
  for (Rec *r : recs) push(s, r);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_GETATTR, ino);
  set_fi(r, fi);
  push(sess(req), r);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_SETATTR, ino);
  set_fi(r, fi);
  r->v[0] = to_set;
  r->v[1] = attr->st_mode;
  r->v[2] = attr->st_uid;
  r->v[3] = attr->st_gid;
  r->v[4] = attr->st_size;
  r->v[5] = attr->st_atim.tv_sec;
  r->v[6] = attr->st_atim.tv_nsec;
  r->v[7] = attr->st_mtim.tv_sec;
  r->v[8] = attr->st_mtim.tv_nsec;
  r->v[9] = attr->st_ctim.tv_sec;
  r->v[10] = attr->st_ctim.tv_nsec;
  push(sess(req), r);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  push(sess(req), new_rec(req, OP_READLINK, ino));
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  Rec *r = new_rec(req, OP_MKNOD, parent);
  r->name = name;
  r->v[0] = mode;
  r->v[1] = (int64_t)rdev;
  push(sess(req), r);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  Rec *r = new_rec(req, OP_MKDIR, parent);
  r->name = name;
  r->v[0] = mode;
  push(sess(req), r);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  Rec *r = new_rec(req, OP_UNLINK, parent);
  r->name = name;
  push(sess(req), r);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  Rec *r = new_rec(req, OP_RMDIR, parent);
  r->name = name;
  push(sess(req), r);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  Rec *r = new_rec(req, OP_SYMLINK, parent);
  r->name = name;
  r->dataLen = strlen(link);
  r->data = copy_bytes(link, r->dataLen);
  push(sess(req), r);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  Rec *r = new_rec(req, OP_RENAME, parent);
  r->name = name;
  r->name2 = newname;
  r->v[0] = (int64_t)newparent;
  r->v[1] = flags;
  push(sess(req), r);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  Rec *r = new_rec(req, OP_LINK, ino);
  r->name = newname;
  r->v[0] = (int64_t)newparent;
  push(sess(req), r);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_OPEN, ino);
  r->v[0] = fi->flags;
  push(sess(req), r);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  if (!off_ok(off)) {
    fuse_reply_buf(req, nullptr, 0);  // beyond any file a Number offset can address: EOF
    return;
  }
  Rec *r = new_rec(req, OP_READ, ino);
  set_fi(r, fi);
  r->v[0] = (int64_t)size;
  r->v[1] = off;
  r->v[2] = fi->flags;
  push(sess(req), r);
}

// The write payload sits in the receive buffer libfuse just read the request into. Zero
// copy: the Rec takes that buffer over (libfuse allocates a fresh one for the next request,
// as it does whenever buf.mem is NULL) and JS gets a Buffer over the payload in place. The
// session's buffer is only touched by the thread reading requests, which is the one calling
// this; a payload not inside it (cannot happen without splice) is copied.
static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  Session *s = sess(req);
  if (!off_ok(off) || !off_ok(off + (int64_t)size)) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  Rec *r = new_rec(req, OP_WRITE, ino);
  char *base = (char *)s->rbuf.mem;
  if (base && size >= STEAL_MIN && buf >= base && buf + size <= base + s->rbuf.size) {
    r->dataBlock = base;
    r->data = (char *)buf;
    s->rbuf.mem = nullptr;
  } else {
    r->data = copy_bytes(buf, size);
    if (!r->data) {
      delete r;
      fuse_reply_err(req, ENOMEM);
      return;
    }
  }
  set_fi(r, fi);
  r->dataLen = size;
  r->v[0] = off;
  r->v[1] = fi->writepage;
  r->v[2] = fi->flags;
  push(s, r);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_FLUSH, ino);
  set_fi(r, fi);
  r->v[0] = (int64_t)fi->lock_owner;
  push(sess(req), r);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_RELEASE, ino);
  set_fi(r, fi);
  r->v[0] = fi->flags;
  push(sess(req), r);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_FSYNC, ino);
  set_fi(r, fi);
  r->v[0] = datasync;
  push(sess(req), r);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_OPENDIR, ino);
  r->v[0] = fi->flags;
  push(sess(req), r);
}

static void ll_readdir_common(int op, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                              struct fuse_file_info *fi) {
  if (!off_ok(off)) {
    fuse_reply_buf(req, nullptr, 0);
    return;
  }
  Rec *r = new_rec(req, op, ino);
  set_fi(r, fi);
  r->v[0] = (int64_t)size;
  r->v[1] = off;
  push(sess(req), r);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_common(OP_READDIR, req, ino, size, off, fi);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_common(OP_READDIRPLUS, req, ino, size, off, fi);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_RELEASEDIR, ino);
  set_fi(r, fi);
  push(sess(req), r);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_FSYNCDIR, ino);
  set_fi(r, fi);
  r->v[0] = datasync;
  push(sess(req), r);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  push(sess(req), new_rec(req, OP_STATFS, ino));
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags) {
  if (!check_xattr_name(req, name, EOPNOTSUPP)) return;
  char *data = copy_bytes(value, size);
  if (!data) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  Rec *r = new_rec(req, OP_SETXATTR, ino);
  r->name = name;
  r->data = data;
  r->dataLen = size;
  r->v[0] = flags;
  push(sess(req), r);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  if (!check_xattr_name(req, name, ENODATA)) return;
  Rec *r = new_rec(req, OP_GETXATTR, ino);
  r->name = name;
  r->v[0] = (int64_t)size;
  push(sess(req), r);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Rec *r = new_rec(req, OP_LISTXATTR, ino);
  r->v[0] = (int64_t)size;
  push(sess(req), r);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  if (!check_xattr_name(req, name, ENODATA)) return;
  Rec *r = new_rec(req, OP_REMOVEXATTR, ino);
  r->name = name;
  push(sess(req), r);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  Rec *r = new_rec(req, OP_ACCESS, ino);
  r->v[0] = mask;
  push(sess(req), r);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  Rec *r = new_rec(req, OP_CREATE, parent);
  r->name = name;
  r->v[0] = mode;
  r->v[1] = fi->flags;
  push(sess(req), r);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi) {
  if (!off_ok(offset) || !off_ok(length) || !off_ok(offset + length)) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  Rec *r = new_rec(req, OP_FALLOCATE, ino);
  set_fi(r, fi);
  r->v[0] = mode;
  r->v[1] = offset;
  r->v[2] = length;
  push(sess(req), r);
}

static void ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                               struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                               struct fuse_file_info *fi_out, size_t len, int flags) {
  if (!off_ok(off_in) || !off_ok(off_out) || (double)len > MAX_SAFE) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  Rec *r = new_rec(req, OP_COPY_FILE_RANGE, ino_in);
  set_fi(r, fi_in);
  r->v[0] = off_in;
  r->v[1] = (int64_t)ino_out;
  r->v[2] = (int64_t)(fi_out ? fi_out->fh : 0);
  r->v[3] = off_out;
  r->v[4] = (int64_t)len;
  r->v[5] = flags;
  push(sess(req), r);
}

static void ll_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
  if (!off_ok(off)) {
    fuse_reply_err(req, ENXIO);
    return;
  }
  Rec *r = new_rec(req, OP_LSEEK, ino);
  set_fi(r, fi);
  r->v[0] = off;
  r->v[1] = whence;
  push(sess(req), r);
}

// Restricted ioctls only (what the kernel sends for a FUSE file: the inode-flags ioctls it
// makes for lsattr/chattr, and the well-formed ioctls of processes, with their in/out sizes
// taken from the command). An unrestricted one (CUSE only) is refused; `arg` (a pointer in the
// caller's address space) is of no use and not passed on.
static void ll_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg, struct fuse_file_info *fi,
                     unsigned flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz) {
  if (flags & FUSE_IOCTL_UNRESTRICTED) {
    fuse_reply_err(req, ENOTTY);
    return;
  }
  char *data = copy_bytes((const char *)in_buf, in_buf ? in_bufsz : 0);
  if (!data) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  Rec *r = new_rec(req, OP_IOCTL, ino);
  set_fi(r, fi);
  r->data = data;
  r->dataLen = in_buf ? in_bufsz : 0;
  r->v[0] = cmd;
  r->v[1] = flags;
  r->v[2] = (int64_t)out_bufsz;
  push(sess(req), r);
}

// ------------------------------------------------------------------------------------------
// Session thread

static void *loop_main(void *arg) {
  Session *s = (Session *)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals are the JS thread's business

  struct fuse_buf &buf = s->rbuf;
  struct pollfd pfd[2];
  pfd[0].fd = fuse_session_fd(s->se);
  pfd[0].events = POLLIN;
  pfd[1].fd = s->wakefd;
  pfd[1].events = POLLIN;
  int reason = 0;
  bool ended = false;  // the kernel ended the session (unmount, abort) or an error did
  while (!s->stopFlag.load(std::memory_order_acquire)) {
    int pr = poll(pfd, 2, -1);
    if (pr < 0) {
      if (errno == EINTR) continue;
      reason = -errno;
      ended = true;
      break;
    }
    if (pfd[1].revents) break;  // stop requested
    // Read everything that is there, then poll again.
    for (;;) {
      if (s->stopFlag.load(std::memory_order_acquire)) break;
      int res = receive(s);
      if (res == -EAGAIN) break;
      if (res == -EINTR) continue;
      if (res <= 0) {
        reason = res;  // 0: unmounted / connection aborted
        ended = true;
        goto out;
      }
      fuse_session_process_buf(s->se, &buf);
      if (fuse_session_exited(s->se)) {
        reason = -EPROTO;
        ended = true;
        goto out;
      }
    }
  }
out:
  // buf (s->rbuf) is freed by teardown_fuse, after the join.
  if (ended && !s->stopFlag.load(std::memory_order_acquire)) {
    Rec *r = new Rec();
    r->op = OP_EXIT;
    r->v[0] = reason;
    push(s, r);
  }
  return nullptr;
}

static void stop_thread(Session *s) {
  if (!s->threaded) {
    s->stopFlag.store(true, std::memory_order_release);
    if (s->pollActive && !s->inCleanup) uv_poll_stop(&s->poll);
    s->pollActive = false;
    return;
  }
  if (!s->threadStarted || s->threadJoined) return;
  s->stopFlag.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t w = write(s->wakefd, &one, sizeof(one));
  (void)w;
  pthread_join(s->thread, nullptr);
  s->threadJoined = true;
}

// Answer everything still queued or in flight, unmount, free libfuse's session.
// JS thread (or process exit, where no JS runs).
static size_t teardown_fuse(Session *s) {
  stop_thread(s);
  size_t answered = 0;
  Rec *list;
  {
    std::lock_guard<std::mutex> g(s->qlock);
    list = s->head;
    s->head = s->tail = nullptr;
    s->queued = 0;
  }
  while (list) {
    Rec *n = list->next;
    if (list->req) {
      fuse_reply_err(list->req, ENOTCONN);
      answered++;
    }
    free_rec(list);
    list = n;
  }
  for (auto &kv : s->inflight) {
    fuse_reply_err(kv.second, ENOTCONN);
    answered++;
  }
  s->inflight.clear();
  bool workersDone;
  {
    std::unique_lock<std::mutex> g(s->asyncLock);
    workersDone = s->asyncDone.wait_for(g, std::chrono::seconds(10), [s] { return s->asyncPending == 0; });
  }
  if (!workersDone) {
    // A read stuck in its file (a hung network filesystem): closing the device now could let it
    // write its answer into whatever reuses the descriptor. Leave the session to process exit.
    fprintf(stderr, "layerfs: a read is still being answered after 10 s; the FUSE session is left to process exit\n");
    s->se = nullptr;
    s->mounted = false;
  }
  if (s->se) {
    if (s->mounted) fuse_session_unmount(s->se);  // closes /dev/fuse (aborting the connection), lazy umount
    s->mounted = false;
    fuse_session_destroy(s->se);
    s->se = nullptr;
  }
  if (s->wakefd >= 0) {
    close(s->wakefd);
    s->wakefd = -1;
  }
  free(s->rbuf.mem);
  s->rbuf.mem = nullptr;
  // The receive buffer (1 MiB) went back to a malloc arena; give arenas' free memory back to
  // the system so that mount/unmount cycles do not ratchet RSS up.
  if (!s->inCleanup) malloc_trim(0);
  return answered;
}

// Process exit (atexit) with sessions still mounted: stop their threads and unmount, so no
// dead mount ("Transport endpoint is not connected") is left behind. No JS, no libuv here.
static void at_process_exit() {
  std::vector<Session *> live;
  {
    std::lock_guard<std::mutex> g(g_live_lock);
    live = g_live;
    g_live.clear();
  }
  for (Session *s : live) {
    s->inCleanup = true;
    teardown_fuse(s);
    s->destroyed = true;
  }
}

// ------------------------------------------------------------------------------------------
// Delivery to JS (JS thread)

static void reply_eio_if_inflight(Session *s, uint64_t id) {
  auto it = s->inflight.find(id);
  if (it == s->inflight.end()) return;
  fuse_req_t req = it->second;
  s->inflight.erase(it);
  fuse_reply_err(req, EIO);
}

static void free_external(napi_env, void *data, void *hint) {
  free(hint ? hint : data);
}

// Finalizer of a write payload: its block goes back to the pool (or is freed).
static void release_payload(napi_env, void *data, void *hint) {
  g_payloads.erase(data);
  char *block = (char *)hint;
  if (block) pool_put(block);
  else free(data);
}

static napi_value fh_value(napi_env env, Rec *r) {
  return r->hasFh ? make_double(env, (double)r->fh) : make_null(env);
}

static void deliver_one(Session *s, napi_value fn, napi_value recv, Rec *r) {
  napi_env env = s->env;
  uint64_t id = 0;
  if (r->req) {
    id = ++s->nextId;
    s->inflight.emplace(id, r->req);
    r->req = nullptr;  // owned by the in-flight table now
    s->nRequests++;
  }
  if (r->op == OP_FORGET) s->nForgets++;
  if (r->op > 0 && r->op < OP_MAX) s->perOp[r->op]++;

  napi_value argv[20];
  size_t argc = 7;
  argv[0] = make_u32(env, (uint32_t)r->op);
  argv[1] = make_double(env, (double)id);
  argv[2] = make_double(env, (double)r->ino);
  argv[3] = make_u32(env, r->uid);
  argv[4] = make_u32(env, r->gid);
  argv[5] = make_u32(env, r->pid);
  argv[6] = make_u32(env, r->umask);
  auto add = [&](napi_value v) { argv[argc++] = v; };
  auto name = [&]() { return make_bytes_string(env, r->name); };   // a file name: bytes
  auto xname = [&]() { return make_string(env, r->name); };        // an xattr name: text
  auto data_buffer = [&]() -> napi_value {
    napi_value b;
    if (r->dataLen == 0) {
      void *p;
      napi_create_buffer(env, 0, &p, &b);
      return b;
    }
    // The Buffer owns the memory from here on (its finalizer frees the block, or the data).
    char *owned = r->dataBlock ? r->dataBlock : r->data;
    if (napi_create_external_buffer(env, r->dataLen, r->data, free_external, owned, &b) == napi_ok) {
      r->data = nullptr;
      r->dataBlock = nullptr;
      return b;
    }
    void *p;
    napi_create_buffer_copy(env, r->dataLen, r->data, &p, &b);
    return b;
  };

  // A write payload: a Uint8Array over an external ArrayBuffer (detachable, so recycle() can
  // take the memory back while JS references cannot outlive it).
  //
  // A small payload (copied out of the receive buffer already) is handed over as a plain
  // Buffer copy instead: an external ArrayBuffer's finalizer reaches Node through a
  // thread-safe immediate (an eventfd write and one more event-loop turn per write), which
  // costs more than copying a few KiB.
  auto payload = [&]() -> napi_value {
    napi_value ab, u8;
    if (r->dataLen > 0 && r->dataLen < STEAL_MIN) {
      void *p;
      if (napi_create_buffer_copy(env, r->dataLen, r->data, &p, &u8) == napi_ok) {
        if (r->dataBlock) pool_put(r->dataBlock);
        else free(r->data);
        r->data = nullptr;
        r->dataBlock = nullptr;
        return u8;
      }
    }
    if (r->dataLen > 0 &&
        napi_create_external_arraybuffer(env, r->data, r->dataLen, release_payload, r->dataBlock, &ab) == napi_ok &&
        napi_create_typedarray(env, napi_uint8_array, r->dataLen, ab, 0, &u8) == napi_ok) {
      g_payloads[r->data] = r->dataBlock;
      r->data = nullptr;
      r->dataBlock = nullptr;
      return u8;
    }
    return data_buffer();
  };

  switch (r->op) {
    case OP_INIT: {
      napi_value o;
      napi_create_object(env, &o);
      const char *keys[] = {"protoMajor", "protoMinor", "capable", "want", "maxWrite",
                            "maxReadahead", "maxBackground", "congestionThreshold"};
      for (int i = 0; i < 8; i++) napi_set_named_property(env, o, keys[i], make_double(env, (double)r->v[i]));
      napi_set_named_property(env, o, "passthrough", make_bool(env, r->v[8] != 0));
      add(o);
      break;
    }
    case OP_EXIT: add(make_int(env, r->v[0])); break;
    case OP_LOOKUP: case OP_UNLINK: case OP_RMDIR: add(name()); break;
    case OP_REMOVEXATTR: add(xname()); break;
    case OP_FORGET: add(make_double(env, (double)r->v[0])); break;
    case OP_GETATTR: add(fh_value(env, r)); break;
    case OP_SETATTR:
      add(make_u32(env, (uint32_t)r->v[0]));    // toSet
      add(fh_value(env, r));                    // fh | null
      add(make_u32(env, (uint32_t)r->v[1]));    // mode
      add(make_u32(env, (uint32_t)r->v[2]));    // uid
      add(make_u32(env, (uint32_t)r->v[3]));    // gid
      add(make_double(env, (double)r->v[4]));   // size
      add(make_bigint_i64(env, r->v[5]));       // atime sec
      add(make_u32(env, (uint32_t)r->v[6]));    // atime nsec
      add(make_bigint_i64(env, r->v[7]));       // mtime sec
      add(make_u32(env, (uint32_t)r->v[8]));    // mtime nsec
      add(make_bigint_i64(env, r->v[9]));       // ctime sec
      add(make_u32(env, (uint32_t)r->v[10]));   // ctime nsec
      break;
    case OP_READLINK: case OP_STATFS: break;
    case OP_MKNOD: add(name()); add(make_u32(env, (uint32_t)r->v[0])); add(make_double(env, (double)(uint64_t)r->v[1])); break;
    case OP_MKDIR: add(name()); add(make_u32(env, (uint32_t)r->v[0])); break;
    case OP_SYMLINK: add(name()); add(data_buffer()); break;
    case OP_RENAME:
      add(name());
      add(make_double(env, (double)(uint64_t)r->v[0]));
      add(make_bytes_string(env, r->name2));
      add(make_u32(env, (uint32_t)r->v[1]));
      break;
    case OP_LINK: add(make_double(env, (double)(uint64_t)r->v[0])); add(name()); break;
    case OP_OPEN: case OP_OPENDIR: add(make_int(env, r->v[0])); break;
    case OP_READ:
      add(fh_value(env, r));
      add(make_double(env, (double)r->v[0]));
      add(make_double(env, (double)r->v[1]));
      add(make_int(env, r->v[2]));
      break;
    case OP_WRITE:
      add(fh_value(env, r));
      add(payload());
      add(make_double(env, (double)r->v[0]));
      add(make_bool(env, r->v[1] != 0));
      add(make_int(env, r->v[2]));
      break;
    case OP_FLUSH: add(fh_value(env, r)); add(make_bigint_u64(env, (uint64_t)r->v[0])); break;
    case OP_RELEASE: add(fh_value(env, r)); add(make_int(env, r->v[0])); break;
    case OP_FSYNC: case OP_FSYNCDIR: add(fh_value(env, r)); add(make_bool(env, r->v[0] != 0)); break;
    case OP_READDIR: case OP_READDIRPLUS:
      add(fh_value(env, r));
      add(make_double(env, (double)r->v[0]));
      add(make_double(env, (double)r->v[1]));
      break;
    case OP_RELEASEDIR: add(fh_value(env, r)); break;
    case OP_SETXATTR: add(xname()); add(data_buffer()); add(make_int(env, r->v[0])); break;
    case OP_GETXATTR: add(xname()); add(make_double(env, (double)r->v[0])); break;
    case OP_LISTXATTR: add(make_double(env, (double)r->v[0])); break;
    case OP_ACCESS: add(make_int(env, r->v[0])); break;
    case OP_CREATE: add(name()); add(make_u32(env, (uint32_t)r->v[0])); add(make_int(env, r->v[1])); break;
    case OP_FALLOCATE:
      add(fh_value(env, r));
      add(make_int(env, r->v[0]));
      add(make_double(env, (double)r->v[1]));
      add(make_double(env, (double)r->v[2]));
      break;
    case OP_COPY_FILE_RANGE:
      add(fh_value(env, r));
      add(make_double(env, (double)r->v[0]));
      add(make_double(env, (double)(uint64_t)r->v[1]));
      add(make_double(env, (double)(uint64_t)r->v[2]));
      add(make_double(env, (double)r->v[3]));
      add(make_double(env, (double)r->v[4]));
      add(make_int(env, r->v[5]));
      break;
    case OP_LSEEK: add(fh_value(env, r)); add(make_double(env, (double)r->v[0])); add(make_int(env, r->v[1])); break;
    case OP_IOCTL:
      add(make_u32(env, (uint32_t)r->v[0]));    // cmd
      add(fh_value(env, r));
      add(make_u32(env, (uint32_t)r->v[1]));    // FUSE_IOCTL_* flags
      add(data_buffer());                       // in data
      add(make_double(env, (double)r->v[2]));   // out size
      break;
    default: break;
  }

  napi_value result;
  napi_status st = napi_call_function(env, recv, fn, argc, argv, &result);
  if (st != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_value str;
      std::string msg = "(unprintable)";
      if (napi_coerce_to_string(env, exc, &str) == napi_ok) get_string(env, str, &msg);
      fprintf(stderr, "layerfs_fuse: dispatcher threw for op %d: %s\n", r->op, msg.c_str());
    }
    if (id) reply_eio_if_inflight(s, id);
  }
}

static size_t deliver_queue(Session *s) {
  Rec *list;
  {
    std::lock_guard<std::mutex> g(s->qlock);
    list = s->head;
    s->head = s->tail = nullptr;
    s->queued = 0;
  }
  if (!list) return 0;
  napi_env env = s->env;
  napi_value fn, recv;
  napi_get_reference_value(env, s->dispatchRef, &fn);
  napi_get_undefined(env, &recv);
  size_t n = 0;
  while (list) {
    Rec *next = list->next;
    napi_handle_scope hs;
    napi_open_handle_scope(env, &hs);
    deliver_one(s, fn, recv, list);
    napi_close_handle_scope(env, hs);
    if (list->req) fuse_reply_err(list->req, EIO);  // not handed over (cannot happen)
    free_rec(list);
    list = next;
    n++;
  }
  s->nWakeups++;
  if (n > s->maxBatch) s->maxBatch = n;
  return n;
}

// Hand the queue to JS inside one callback scope: promise jobs (the replies of async
// handlers) run when it closes, after the whole batch was handed over.
static void deliver_in_scope(Session *s) {
  napi_env env = s->env;
  napi_handle_scope hs;
  napi_open_handle_scope(env, &hs);
  napi_value resource;
  napi_get_reference_value(env, s->selfRef, &resource);
  napi_callback_scope cs;
  if (napi_open_callback_scope(env, resource, s->asyncCtx, &cs) == napi_ok) {
    deliver_queue(s);
    napi_close_callback_scope(env, cs);
  } else {
    deliver_queue(s);
  }
  napi_close_handle_scope(env, hs);
}

static void on_async(uv_async_t *h) {
  Session *s = (Session *)h->data;
  if (s->destroyed) return;
  deliver_in_scope(s);
}

// Inline mode: /dev/fuse is readable. Read everything there is (bounded, so that a flood
// cannot starve the rest of the event loop; the watcher is level-triggered), then hand the
// batch to JS.
static const int INLINE_BATCH = 256;

static const int64_t SPIN_TURN_NS = 2000000;

static int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Read what there is (bounded): false once the session ended (*reason says why).
static bool read_batch(Session *s, int status, int *reason, int *got) {
  *got = 0;
  // libuv reports EPOLLERR (the connection is gone) as UV_EBADF: reading tells why (ENODEV
  // after an unmount gives 0 here).
  for (int i = 0; i < INLINE_BATCH; i++) {
    int res = receive(s);
    if (res == -EAGAIN) {
      if (status < 0) {
        *reason = status;
        return false;
      }
      return true;
    }
    if (res == -EINTR) continue;
    if (res <= 0) {
      *reason = res;
      return false;
    }
    fuse_session_process_buf(s->se, &s->rbuf);
    ++*got;
    if (fuse_session_exited(s->se)) {
      *reason = -EPROTO;
      return false;
    }
  }
  return true;
}

static void session_ended(Session *s, int reason) {
  uv_poll_stop(&s->poll);
  s->pollActive = false;
  Rec *r = new Rec();
  r->op = OP_EXIT;
  r->v[0] = reason;
  push(s, r);
}

// Spinning (spinNs > 0): after a batch is answered, keep reading for a moment before going
// back to the event loop's epoll. A client that sends its next request at once (stat after
// stat, create after create) then finds the daemon awake: on a VM, waking a vCPU that went
// idle costs tens of microseconds, more than the request itself. Only while nothing is in
// flight (a handler waiting for libuv's thread pool needs the event loop), and at most
// spinNs after the last request: an idle mount costs nothing.
static void on_poll(uv_poll_t *h, int status, int events) {
  (void)events;
  Session *s = (Session *)h->data;
  if (s->destroyed || s->stopFlag.load(std::memory_order_acquire)) return;
  int reason = 0, got = 0;
  bool alive = read_batch(s, status, &reason, &got);
  if (!alive) session_ended(s, reason);
  deliver_in_scope(s);
  if (!alive || s->spinNs <= 0) return;
  int64_t start = now_ns(), until = start + s->spinNs;
  // The rest of the event loop (timers, signals, the trace socket) gets its turn at least
  // every SPIN_TURN_NS under a steady stream of requests.
  while (!s->destroyed && !s->stopFlag.load(std::memory_order_acquire) && s->pollActive && s->inflight.empty() &&
         now_ns() - start < SPIN_TURN_NS) {
    alive = read_batch(s, 0, &reason, &got);
    if (!alive) {
      session_ended(s, reason);
      deliver_in_scope(s);
      return;
    }
    if (got > 0) {
      s->nSpinHits++;
      deliver_in_scope(s);
      until = now_ns() + s->spinNs;
      continue;
    }
    if (now_ns() >= until) break;
    // Should the client be waiting for this very CPU, it gets it.
    sched_yield();
  }
}

// ------------------------------------------------------------------------------------------
// JS API

static Session *unwrap(napi_env env, napi_value v) {
  void *p = nullptr;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return nullptr;
  if (napi_get_value_external(env, v, &p) != napi_ok) return nullptr;
  return (Session *)p;
}

static void finalize_session(napi_env, void *data, void *) {
  Session *s = (Session *)data;
  // Only reached once the session released its own reference (after destroy).
  delete s;
}

static void on_handle_closed(uv_handle_t *h) {
  Session *s = (Session *)h->data;
  if (h == (uv_handle_t *)&s->async) s->asyncOpen = false;
  else s->pollOpen = false;
  if (--s->openHandles > 0) return;
  if (s->inCleanup) return;  // environment teardown: leave napi alone
  napi_env env = s->env;
  if (s->asyncCtx) {
    napi_async_destroy(env, s->asyncCtx);
    s->asyncCtx = nullptr;
  }
  if (s->dispatchRef) {
    napi_delete_reference(env, s->dispatchRef);
    s->dispatchRef = nullptr;
  }
  if (s->selfRef) {
    napi_delete_reference(env, s->selfRef);  // the External may now be collected
    s->selfRef = nullptr;
  }
}

static void close_handles(Session *s) {
  if (s->pollOpen && !uv_is_closing((uv_handle_t *)&s->poll)) uv_close((uv_handle_t *)&s->poll, on_handle_closed);
  if (s->asyncOpen && !uv_is_closing((uv_handle_t *)&s->async)) uv_close((uv_handle_t *)&s->async, on_handle_closed);
}

// Environment teardown (a worker ending, or the main loop ending with sessions still
// mounted): the same as process exit for this environment's sessions, and their libuv
// handles are closed so that the loop can close.
static void env_cleanup(void *arg) {
  napi_env env = (napi_env)arg;
  std::vector<Session *> mine;
  {
    std::lock_guard<std::mutex> g(g_live_lock);
    for (size_t i = 0; i < g_live.size();) {
      if (g_live[i]->env == env) {
        mine.push_back(g_live[i]);
        g_live.erase(g_live.begin() + i);
      } else {
        i++;
      }
    }
  }
  for (Session *s : mine) {
    s->inCleanup = true;
    teardown_fuse(s);
    s->destroyed = true;
    close_handles(s);
  }
}

static bool read_opt_u32(napi_env env, napi_value obj, const char *key, unsigned *out) {
  bool hasIt = false;
  if (napi_has_named_property(env, obj, key, &hasIt) != napi_ok || !hasIt) return true;
  napi_value v;
  napi_get_named_property(env, obj, key, &v);
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined) return true;
  uint32_t x;
  if (!get_u32(env, v, &x)) return false;
  *out = x;
  return true;
}

static bool read_opt_bool(napi_env env, napi_value obj, const char *key, bool *out) {
  bool hasIt = false;
  if (napi_has_named_property(env, obj, key, &hasIt) != napi_ok || !hasIt) return true;
  napi_value v;
  napi_get_named_property(env, obj, key, &v);
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined) return true;
  if (t != napi_boolean) return false;
  napi_get_value_bool(env, v, out);
  return true;
}

// mount(mountpoint: string, args: string[], config: object, dispatch: Function) -> External
// Creates the libfuse session, mounts, starts the session thread. Throws on failure.
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 4) return throw_type(env, "mount(mountpoint, args, config, dispatch)");
  std::string mountpoint;
  if (!get_string(env, argv[0], &mountpoint)) return throw_type(env, "mountpoint must be a string");
  bool isArray = false;
  napi_is_array(env, argv[1], &isArray);
  if (!isArray) return throw_type(env, "args must be an array of strings");
  uint32_t nargs;
  napi_get_array_length(env, argv[1], &nargs);
  std::vector<std::string> args;
  args.push_back("layerfs");
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value e;
    napi_get_element(env, argv[1], i, &e);
    std::string a;
    if (!get_string(env, e, &a)) return throw_type(env, "args must be an array of strings");
    args.push_back(a);
  }
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t != napi_object) return throw_type(env, "config must be an object");
  napi_typeof(env, argv[3], &t);
  if (t != napi_function) return throw_type(env, "dispatch must be a function");

  Session *s = new Session();
  s->env = env;
  // config.ops: the op codes JS has handlers for.
  {
    napi_value list;
    bool isArr = false;
    if (napi_get_named_property(env, argv[2], "ops", &list) != napi_ok ||
        napi_is_array(env, list, &isArr) != napi_ok || !isArr) {
      delete s;
      return throw_type(env, "config.ops must be an array of op codes");
    }
    uint32_t n;
    napi_get_array_length(env, list, &n);
    for (uint32_t i = 0; i < n; i++) {
      napi_value e;
      uint32_t op;
      napi_get_element(env, list, i, &e);
      if (!get_u32(env, e, &op) || op == 0 || op >= OP_MAX) {
        delete s;
        return throw_type(env, "bad op code in config.ops");
      }
      s->opsMask |= 1ull << op;
    }
  }
  unsigned spinUs = 0;
  if (!read_opt_bool(env, argv[2], "writebackCache", &s->writeback) ||
      !read_opt_bool(env, argv[2], "passthrough", &s->passthrough) ||
      !read_opt_bool(env, argv[2], "threaded", &s->threaded) ||
      !read_opt_u32(env, argv[2], "maxWrite", &s->maxWrite) ||
      !read_opt_u32(env, argv[2], "maxReadahead", &s->maxReadahead) ||
      !read_opt_u32(env, argv[2], "maxRead", &s->maxRead) ||
      !read_opt_u32(env, argv[2], "maxBackground", &s->maxBackground) ||
      !read_opt_u32(env, argv[2], "congestionThreshold", &s->congestion) ||
      !read_opt_u32(env, argv[2], "spinUs", &spinUs)) {
    delete s;
    return throw_type(env, "bad config value");
  }
  s->spinNs = (int64_t)spinUs * 1000;

  struct fuse_lowlevel_ops ops;
  memset(&ops, 0, sizeof(ops));
  ops.init = ll_init;
  auto want = [&](int op) { return has(s, op); };
  if (want(OP_LOOKUP)) ops.lookup = ll_lookup;
  // FORGET must always be answered (reply_none); registered whether or not JS listens.
  ops.forget = ll_forget;
  ops.forget_multi = ll_forget_multi;
  if (want(OP_GETATTR)) ops.getattr = ll_getattr;
  if (want(OP_SETATTR)) ops.setattr = ll_setattr;
  if (want(OP_READLINK)) ops.readlink = ll_readlink;
  if (want(OP_MKNOD)) ops.mknod = ll_mknod;
  if (want(OP_MKDIR)) ops.mkdir = ll_mkdir;
  if (want(OP_UNLINK)) ops.unlink = ll_unlink;
  if (want(OP_RMDIR)) ops.rmdir = ll_rmdir;
  if (want(OP_SYMLINK)) ops.symlink = ll_symlink;
  if (want(OP_RENAME)) ops.rename = ll_rename;
  if (want(OP_LINK)) ops.link = ll_link;
  if (want(OP_OPEN)) ops.open = ll_open;
  if (want(OP_READ)) ops.read = ll_read;
  if (want(OP_WRITE)) ops.write = ll_write;
  if (want(OP_FLUSH)) ops.flush = ll_flush;
  if (want(OP_RELEASE)) ops.release = ll_release;
  if (want(OP_FSYNC)) ops.fsync = ll_fsync;
  if (want(OP_OPENDIR)) ops.opendir = ll_opendir;
  if (want(OP_READDIR)) ops.readdir = ll_readdir;
  if (want(OP_READDIRPLUS)) ops.readdirplus = ll_readdirplus;
  if (want(OP_RELEASEDIR)) ops.releasedir = ll_releasedir;
  if (want(OP_FSYNCDIR)) ops.fsyncdir = ll_fsyncdir;
  if (want(OP_STATFS)) ops.statfs = ll_statfs;
  if (want(OP_SETXATTR)) ops.setxattr = ll_setxattr;
  if (want(OP_GETXATTR)) ops.getxattr = ll_getxattr;
  if (want(OP_LISTXATTR)) ops.listxattr = ll_listxattr;
  if (want(OP_REMOVEXATTR)) ops.removexattr = ll_removexattr;
  if (want(OP_ACCESS)) ops.access = ll_access;
  if (want(OP_CREATE)) ops.create = ll_create;
  if (want(OP_FALLOCATE)) ops.fallocate = ll_fallocate;
  if (want(OP_COPY_FILE_RANGE)) ops.copy_file_range = ll_copy_file_range;
  if (want(OP_LSEEK)) ops.lseek = ll_lseek;
  if (want(OP_IOCTL)) ops.ioctl = ll_ioctl;

  std::vector<char *> cargv;
  for (auto &a : args) cargv.push_back(&a[0]);
  struct fuse_args fargs = FUSE_ARGS_INIT((int)cargv.size(), cargv.data());
  s->se = fuse_session_new(&fargs, &ops, sizeof(ops), s);
  fuse_opt_free_args(&fargs);
  if (!s->se) {
    delete s;
    napi_throw_error(env, "EINVAL", "fuse_session_new failed (bad mount options? libfuse printed why)");
    return nullptr;
  }
  if (fuse_session_mount(s->se, mountpoint.c_str()) != 0) {
    fuse_session_destroy(s->se);
    delete s;
    napi_throw_error(env, "EMOUNT", "fuse_session_mount failed (libfuse printed why)");
    return nullptr;
  }
  s->mounted = true;
  s->mountpoint = mountpoint;
  int fd = fuse_session_fd(s->se);
  // Passthrough needs to see and set protocol bits libfuse 3.14 does not know (see above).
  if (s->passthrough && fuse_session_custom_io(s->se, &g_io, fd) != 0) s->passthrough = false;
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

  napi_value ext;
  uv_loop_t *loop = nullptr;
  napi_value resName;
  if (s->wakefd < 0 ||
      napi_create_external(env, s, finalize_session, nullptr, &ext) != napi_ok) {
    teardown_fuse(s);
    delete s;
    napi_throw_error(env, nullptr, "cannot set up the session");
    return nullptr;
  }
  // From here on the External owns s (its finalizer deletes it).
  napi_create_reference(env, ext, 1, &s->selfRef);
  napi_create_reference(env, argv[3], 1, &s->dispatchRef);
  napi_create_string_utf8(env, "layerfs_fuse", NAPI_AUTO_LENGTH, &resName);
  napi_async_init(env, ext, resName, &s->asyncCtx);
  napi_get_uv_event_loop(env, &loop);
  uv_async_init(loop, &s->async, on_async);
  s->async.data = s;
  s->asyncOpen = true;
  s->openHandles = 1;

  live_add(s);
  if (!g_atexit_registered) {
    g_atexit_registered = true;
    atexit(at_process_exit);
  }
  if (!s->threaded) {
    uv_poll_init(loop, &s->poll, fd);
    s->poll.data = s;
    s->pollOpen = true;
    s->openHandles++;
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
    s->pollActive = true;
    return ext;
  }
  if (pthread_create(&s->thread, nullptr, loop_main, s) != 0) {
    live_remove(s);
    teardown_fuse(s);
    s->destroyed = true;
    close_handles(s);
    napi_throw_error(env, nullptr, "cannot start the session thread");
    return nullptr;
  }
  s->threadStarted = true;
  return ext;
}

// stop(session): no more requests are read; the session thread is joined. Idempotent.
static napi_value js_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc ? unwrap(env, argv[0]) : nullptr;
  if (!s) return throw_type(env, "not a session");
  if (!s->destroyed) stop_thread(s);
  return make_undefined(env);
}

// drain(session): hand everything queued to JS now (synchronously). Returns how many.
static napi_value js_drain(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc ? unwrap(env, argv[0]) : nullptr;
  if (!s) return throw_type(env, "not a session");
  if (s->destroyed) return make_u32(env, 0);
  return make_u32(env, (uint32_t)deliver_queue(s));
}

// destroy(session): answer what is left with ENOTCONN, unmount (if still mounted), free.
// Returns the number of requests answered that way. Idempotent.
static napi_value js_destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc ? unwrap(env, argv[0]) : nullptr;
  if (!s) return throw_type(env, "not a session");
  if (s->destroyed) return make_u32(env, 0);
  live_remove(s);
  size_t n = teardown_fuse(s);
  s->destroyed = true;
  close_handles(s);
  return make_u32(env, (uint32_t)n);
}

// stats(session) -> { inflight, queued, requests, wakeups, maxBatch, forgets, received }
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc ? unwrap(env, argv[0]) : nullptr;
  if (!s) return throw_type(env, "not a session");
  size_t queued;
  {
    std::lock_guard<std::mutex> g(s->qlock);
    queued = s->queued;
  }
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "inflight", make_double(env, (double)s->inflight.size()));
  napi_set_named_property(env, o, "queued", make_double(env, (double)queued));
  napi_set_named_property(env, o, "requests", make_double(env, (double)s->nRequests));
  napi_set_named_property(env, o, "received", make_double(env, (double)s->nReceived.load()));
  napi_set_named_property(env, o, "wakeups", make_double(env, (double)s->nWakeups));
  napi_set_named_property(env, o, "maxBatch", make_double(env, (double)s->maxBatch));
  napi_set_named_property(env, o, "forgets", make_double(env, (double)s->nForgets));
  napi_set_named_property(env, o, "destroyed", make_bool(env, s->destroyed));
  napi_set_named_property(env, o, "spinHits", make_double(env, (double)s->nSpinHits));
  {
    napi_value ops;
    napi_create_object(env, &ops);
    for (int i = 1; i < OP_MAX; i++)
      if (s->perOp[i]) napi_set_element(env, ops, i, make_double(env, (double)s->perOp[i]));
    napi_set_named_property(env, o, "byOp", ops);
  }
  size_t pooled;
  {
    std::lock_guard<std::mutex> g(g_pool_lock);
    pooled = g_pool.size();
  }
  napi_set_named_property(env, o, "payloadsLive", make_double(env, (double)g_payloads.size()));
  napi_set_named_property(env, o, "buffersPooled", make_double(env, (double)pooled));
  napi_set_named_property(env, o, "poolHits", make_double(env, (double)g_poolHits.load()));
  return o;
}

// ---- replies

// Parses (session, id, ...) and the rest of the arguments; `take` removes the request from the
// in-flight table only after the caller validated everything else.
struct ReplyCtx {
  napi_env env;
  Session *s = nullptr;
  uint64_t id = 0;
  napi_value argv[16];
  size_t argc = 16;
};

static bool reply_args(napi_env env, napi_callback_info info, ReplyCtx *c, size_t need) {
  c->env = env;
  if (napi_get_cb_info(env, info, &c->argc, c->argv, nullptr, nullptr) != napi_ok) return false;
  if (c->argc < need) {
    throw_type(env, "missing arguments");
    return false;
  }
  c->s = unwrap(env, c->argv[0]);
  if (!c->s) {
    throw_type(env, "not a session");
    return false;
  }
  if (!get_u64(env, c->argv[1], &c->id)) {
    throw_type(env, "bad request id");
    return false;
  }
  return true;
}

// An optional backing id (argument idx): undefined/0 = none; otherwise a positive int32.
static bool get_backing(napi_env env, ReplyCtx *c, size_t idx, int32_t *out) {
  *out = 0;
  if (c->argc <= idx) return true;
  napi_valuetype t;
  if (napi_typeof(env, c->argv[idx], &t) != napi_ok) return false;
  if (t == napi_undefined || t == napi_null) return true;
  uint32_t v;
  if (!get_u32(env, c->argv[idx], &v) || v > 0x7fffffffu) return false;
  if (v && !c->s->ptNegotiated) return false;
  *out = (int32_t)v;
  return true;
}

// backingOpen(session, fd) -> backing id (> 0) | -errno: registers an open file as a
// passthrough backing file (FUSE_DEV_IOC_BACKING_OPEN; needs CAP_SYS_ADMIN).
static napi_value js_backing_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc >= 2 ? unwrap(env, argv[0]) : nullptr;
  uint32_t fd;
  if (!s || !get_u32(env, argv[1], &fd)) return throw_type(env, "backingOpen(session, fd)");
  if (s->destroyed || !s->se) return make_int(env, -ENOTCONN);
  if (!s->ptNegotiated) return make_int(env, -EOPNOTSUPP);
  wire::backing_map m = {(int32_t)fd, 0, 0};
  int id = ioctl(fuse_session_fd(s->se), wire::IOC_BACKING_OPEN, &m);
  return make_int(env, id < 0 ? -errno : id);
}

// backingClose(session, id) -> 0 | -errno
static napi_value js_backing_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc >= 2 ? unwrap(env, argv[0]) : nullptr;
  uint32_t id;
  if (!s || !get_u32(env, argv[1], &id)) return throw_type(env, "backingClose(session, id)");
  if (s->destroyed || !s->se) return make_int(env, -ENOTCONN);
  return make_int(env, ioctl(fuse_session_fd(s->se), wire::IOC_BACKING_CLOSE, &id) < 0 ? -errno : 0);
}

// null when the id is not (or no longer) in flight: a double reply, or after destroy.
static fuse_req_t take(ReplyCtx *c) {
  auto it = c->s->inflight.find(c->id);
  if (it == c->s->inflight.end()) return nullptr;
  fuse_req_t r = it->second;
  c->s->inflight.erase(it);
  return r;
}

static napi_value result(napi_env env, int res) {
  return make_int(env, res);
}

// Stat record layout (little-endian, 88 bytes), written by lowlevel.ts:
//   0 ino u64 | 8 size u64 | 16 blocks u64 | 24 atime s64 | 32 mtime s64 | 40 ctime s64
//  48 atime_ns u32 | 52 mtime_ns u32 | 56 ctime_ns u32 | 60 mode u32 | 64 nlink u32
//  68 uid u32 | 72 gid u32 | 76 blksize u32 | 80 rdev u64
// Entry record (120 bytes): 0 nodeid u64 | 8 generation u64 | 16 entry_timeout f64
//  | 24 attr_timeout f64 | 32 stat
static const size_t STAT_REC = 88;
static const size_t ENTRY_REC = 120;

template <typename T>
static T rd(const char *p, size_t off) {
  T v;
  memcpy(&v, p + off, sizeof(T));
  return v;
}

static void decode_stat(const char *p, struct stat *st) {
  memset(st, 0, sizeof(*st));
  st->st_ino = rd<uint64_t>(p, 0);
  st->st_size = (off_t)rd<uint64_t>(p, 8);
  st->st_blocks = (blkcnt_t)rd<uint64_t>(p, 16);
  st->st_atim.tv_sec = rd<int64_t>(p, 24);
  st->st_mtim.tv_sec = rd<int64_t>(p, 32);
  st->st_ctim.tv_sec = rd<int64_t>(p, 40);
  st->st_atim.tv_nsec = rd<uint32_t>(p, 48);
  st->st_mtim.tv_nsec = rd<uint32_t>(p, 52);
  st->st_ctim.tv_nsec = rd<uint32_t>(p, 56);
  st->st_mode = rd<uint32_t>(p, 60);
  st->st_nlink = rd<uint32_t>(p, 64);
  st->st_uid = rd<uint32_t>(p, 68);
  st->st_gid = rd<uint32_t>(p, 72);
  st->st_blksize = rd<uint32_t>(p, 76);
  st->st_rdev = rd<uint64_t>(p, 80);
}

static void decode_entry(const char *p, struct fuse_entry_param *e) {
  memset(e, 0, sizeof(*e));
  e->ino = rd<uint64_t>(p, 0);
  e->generation = rd<uint64_t>(p, 8);
  e->entry_timeout = rd<double>(p, 16);
  e->attr_timeout = rd<double>(p, 24);
  decode_stat(p + 32, &e->attr);
}

// Open flags (bit set from lowlevel.ts): 1 direct_io, 2 keep_cache, 4 nonseekable,
// 8 cache_readdir, 16 noflush.
static void decode_open(uint64_t fh, uint32_t flags, struct fuse_file_info *fi) {
  memset(fi, 0, sizeof(*fi));
  fi->fh = fh;
  fi->direct_io = (flags & 1) != 0;
  fi->keep_cache = (flags & 2) != 0;
  fi->nonseekable = (flags & 4) != 0;
  fi->cache_readdir = (flags & 8) != 0;
  fi->noflush = (flags & 16) != 0;
}

// replyErr(s, id, errno) — errno 0 is success for ops that answer with a plain status.
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  int64_t e;
  if (!get_i64(env, c.argv[2], &e)) return throw_type(env, "errno must be an integer");
  if (e < 0) e = -e;
  if (e >= 4096) return throw_type(env, "errno out of range");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_err(req, (int)e));
}

static napi_value js_reply_none(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 2)) return nullptr;
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  fuse_reply_none(req);
  return result(env, 0);
}

// replyEntry(s, id, entryRecord)
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  const char *p;
  size_t n;
  if (!get_bytes(env, c.argv[2], &p, &n) || n < ENTRY_REC) return throw_type(env, "bad entry record");
  struct fuse_entry_param e;
  decode_entry(p, &e);
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_entry(req, &e));
}

// replyCreate(s, id, entryRecord, fh, openFlags)
static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 5)) return nullptr;
  const char *p;
  size_t n;
  uint64_t fh;
  uint32_t fl;
  if (!get_bytes(env, c.argv[2], &p, &n) || n < ENTRY_REC) return throw_type(env, "bad entry record");
  if (!get_u64(env, c.argv[3], &fh)) return throw_type(env, "bad fh");
  if (!get_u32(env, c.argv[4], &fl)) return throw_type(env, "bad open flags");
  struct fuse_entry_param e;
  decode_entry(p, &e);
  struct fuse_file_info fi;
  decode_open(fh, fl, &fi);
  int32_t backing = 0;
  if (!get_backing(env, &c, 5, &backing)) return throw_type(env, "bad backing id");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  t_backing = backing;
  int rc = fuse_reply_create(req, &e, &fi);
  t_backing = 0;
  return result(env, rc);
}

// replyAttr(s, id, statRecord, timeout)
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 4)) return nullptr;
  const char *p;
  size_t n;
  double timeout;
  if (!get_bytes(env, c.argv[2], &p, &n) || n < STAT_REC) return throw_type(env, "bad stat record");
  if (!get_number(env, c.argv[3], &timeout)) return throw_type(env, "bad timeout");
  struct stat st;
  decode_stat(p, &st);
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_attr(req, &st, timeout));
}

// replyOpen(s, id, fh, openFlags[, backingId])
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 4)) return nullptr;
  uint64_t fh;
  uint32_t fl;
  if (!get_u64(env, c.argv[2], &fh)) return throw_type(env, "bad fh");
  if (!get_u32(env, c.argv[3], &fl)) return throw_type(env, "bad open flags");
  struct fuse_file_info fi;
  decode_open(fh, fl, &fi);
  int32_t backing = 0;
  if (!get_backing(env, &c, 4, &backing)) return throw_type(env, "bad backing id");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  t_backing = backing;
  int rc = fuse_reply_open(req, &fi);
  t_backing = 0;
  return result(env, rc);
}

// replyBuf(s, id, bytes[, length]) — the bytes go to the kernel straight from JS memory.
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  const char *p;
  size_t n;
  if (!get_bytes(env, c.argv[2], &p, &n)) return throw_type(env, "bad buffer");
  if (c.argc > 3) {
    napi_valuetype t;
    napi_typeof(env, c.argv[3], &t);
    if (t != napi_undefined) {
      uint64_t len;
      if (!get_u64(env, c.argv[3], &len) || len > n) return throw_type(env, "bad length");
      n = (size_t)len;
    }
  }
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_buf(req, p, n));
}

// replyFd(s, id, fd, size, offset) — a read answered from a file descriptor, on libuv's thread
// pool (the JS thread does not wait for the file's pages). libfuse (FUSE_CAP_SPLICE_WRITE)
// splices the bytes from the file through a pipe into /dev/fuse, so they never pass through
// our memory; it falls back to pread + writev where splicing cannot be done (a small read, a
// pipe that cannot grow as large as the read). A short read at the end of the file is a short
// answer, an error of the file an error answer. The worker reads from its own duplicate of
// fd: the handle may move to another descriptor (copy-up) or close meanwhile.
struct FdReply {
  Session *s;
  fuse_req_t req;
  int fd;
  size_t size;
  off_t off;
  napi_async_work work = nullptr;
};

// One pool read fewer for teardown to wait for.
static void async_reply_done(Session *s) {
  std::lock_guard<std::mutex> g(s->asyncLock);
  if (--s->asyncPending == 0) s->asyncDone.notify_all();
}

static void fd_reply_execute(napi_env, void *data) {
  FdReply *w = (FdReply *)data;
  struct fuse_bufvec bv = FUSE_BUFVEC_INIT(w->size);
  bv.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  bv.buf[0].fd = w->fd;
  bv.buf[0].pos = w->off;
  fuse_reply_data(w->req, &bv, (enum fuse_buf_copy_flags)0);
  close(w->fd);
  async_reply_done(w->s);
}

static void fd_reply_complete(napi_env env, napi_status, void *data) {
  FdReply *w = (FdReply *)data;
  napi_delete_async_work(env, w->work);
  delete w;
}

static napi_value js_reply_fd(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 5)) return nullptr;
  uint32_t fd;
  uint64_t size;
  int64_t off;
  if (!get_u32(env, c.argv[2], &fd) || fd > 0x7fffffffu) return throw_type(env, "bad fd");
  if (!get_u64(env, c.argv[3], &size) || size > (1u << 30)) return throw_type(env, "bad size");
  if (!get_i64(env, c.argv[4], &off) || off < 0) return throw_type(env, "bad offset");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  int dfd = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
  if (dfd < 0) return result(env, fuse_reply_err(req, errno));
  FdReply *w = new FdReply{c.s, req, dfd, (size_t)size, (off_t)off};
  napi_value name;
  napi_create_string_utf8(env, "layerfs.read", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, nullptr, name, fd_reply_execute, fd_reply_complete, w, &w->work) != napi_ok) {
    close(dfd);
    delete w;
    return result(env, fuse_reply_err(req, EIO));
  }
  {
    std::lock_guard<std::mutex> g(c.s->asyncLock);
    c.s->asyncPending++;
  }
  if (napi_queue_async_work(env, w->work) != napi_ok) {
    async_reply_done(c.s);
    napi_delete_async_work(env, w->work);
    close(dfd);
    delete w;
    return result(env, fuse_reply_err(req, EIO));
  }
  return make_int(env, 0);
}

// replyReadlink(s, id, bytes|byte string)
static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  std::string target;
  napi_valuetype t;
  napi_typeof(env, c.argv[2], &t);
  if (t == napi_string) {
    if (!get_bytes_string(env, c.argv[2], &target)) return throw_type(env, "bad target");
  } else {
    const char *p;
    size_t n;
    if (!get_bytes(env, c.argv[2], &p, &n) || !p) return throw_type(env, "bad target");
    target.assign(p, n);
  }
  if (target.find('\0') != std::string::npos) return throw_type(env, "target contains NUL");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_readlink(req, target.c_str()));
}

// replyWrite(s, id, count)
static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  uint64_t count;
  if (!get_u64(env, c.argv[2], &count)) return throw_type(env, "bad count");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_write(req, (size_t)count));
}

// replyXattr(s, id, size) — answer to a size query (size 0 in the request)
static napi_value js_reply_xattr(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  uint64_t count;
  if (!get_u64(env, c.argv[2], &count)) return throw_type(env, "bad size");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_xattr(req, (size_t)count));
}

// replyLseek(s, id, off)
static napi_value js_reply_lseek(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  int64_t off;
  if (!get_i64(env, c.argv[2], &off) || off < 0) return throw_type(env, "bad offset");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_lseek(req, (off_t)off));
}

// replyIoctl(s, id, result, bytes|null) — a finished restricted ioctl: its result (>= 0) and
// the out data (at most the out size the request asked for; the kernel takes no more).
static napi_value js_reply_ioctl(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 4)) return nullptr;
  int64_t res;
  const char *p;
  size_t n;
  if (!get_i64(env, c.argv[2], &res) || res < 0 || res > 0x7fffffff) return throw_type(env, "bad ioctl result");
  if (!get_bytes(env, c.argv[3], &p, &n)) return throw_type(env, "bad ioctl data");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_ioctl(req, (int)res, n ? p : nullptr, n));
}

// replyStatfs(s, id, [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, fsid, flag, namemax])
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 13)) return nullptr;
  uint64_t v[11];
  for (int i = 0; i < 11; i++) {
    if (!get_u64(env, c.argv[2 + i], &v[i])) return throw_type(env, "bad statfs value");
  }
  struct statvfs sv;
  memset(&sv, 0, sizeof(sv));
  sv.f_bsize = v[0];
  sv.f_frsize = v[1];
  sv.f_blocks = v[2];
  sv.f_bfree = v[3];
  sv.f_bavail = v[4];
  sv.f_files = v[5];
  sv.f_ffree = v[6];
  sv.f_favail = v[7];
  sv.f_fsid = v[8];
  sv.f_flag = v[9];
  sv.f_namemax = v[10];
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_statfs(req, &sv));
}

// replyDirents(s, id, packed, plus, size) -> entries added (>= 0) or a negative errno.
// Packed entry: 0 namelen u32 | 4 pad | 8 off u64 | 16 entry record (120) | 136 name, padded
// to 8. Plain readdir uses the entry's stat ino and mode only.
static napi_value js_reply_dirents(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 5)) return nullptr;
  const char *p;
  size_t n;
  bool plus;
  uint64_t size;
  if (!get_bytes(env, c.argv[2], &p, &n)) return throw_type(env, "bad packed entries");
  if (napi_get_value_bool(env, c.argv[3], &plus) != napi_ok) return throw_type(env, "plus must be a boolean");
  if (!get_u64(env, c.argv[4], &size) || size > (64u << 20)) return throw_type(env, "bad size");
  // Validate the whole packed list before taking the request.
  size_t pos = 0;
  while (pos < n) {
    if (pos + 136 > n) return throw_type(env, "truncated dirent record");
    uint32_t nl = rd<uint32_t>(p, pos);
    size_t recLen = 136 + ((nl + 7) & ~(size_t)7);
    if (nl == 0 || pos + 136 + nl > n) return throw_type(env, "bad dirent name");
    if (memchr(p + pos + 136, 0, nl) || memchr(p + pos + 136, '/', nl)) return throw_type(env, "bad dirent name");
    pos += recLen;
  }
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  std::vector<char> out((size_t)size);
  size_t used = 0;
  int count = 0;
  std::string name;
  pos = 0;
  while (pos < n) {
    uint32_t nl = rd<uint32_t>(p, pos);
    uint64_t off = rd<uint64_t>(p, pos + 8);
    name.assign(p + pos + 136, nl);
    struct fuse_entry_param e;
    decode_entry(p + pos + 16, &e);
    size_t rem = out.size() - used;
    size_t need;
    if (plus) need = fuse_add_direntry_plus(req, out.data() + used, rem, name.c_str(), &e, (off_t)off);
    else need = fuse_add_direntry(req, out.data() + used, rem, name.c_str(), &e.attr, (off_t)off);
    if (need > rem) break;
    used += need;
    count++;
    pos += 136 + ((nl + 7) & ~(size_t)7);
  }
  int res = fuse_reply_buf(req, out.data(), used);
  return make_int(env, res < 0 ? res : count);
}

// recycle(payload): the handler is done with a write payload. Its ArrayBuffer is detached
// (every view of it becomes empty) and its memory returns to the receive-buffer pool.
// Returns false for anything that is not a live payload of this binding.
static napi_value js_recycle(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 1) return make_bool(env, false);
  bool isTa = false;
  napi_is_typedarray(env, argv[0], &isTa);
  if (!isTa) return make_bool(env, false);
  napi_typedarray_type tt;
  size_t len, off;
  void *p;
  napi_value ab;
  if (napi_get_typedarray_info(env, argv[0], &tt, &len, &p, &ab, &off) != napi_ok) return make_bool(env, false);
  void *abData;
  size_t abLen;
  if (napi_get_arraybuffer_info(env, ab, &abData, &abLen) != napi_ok) return make_bool(env, false);
  if (!abData || g_payloads.find(abData) == g_payloads.end()) return make_bool(env, false);
  bool detached = false;
  napi_is_detached_arraybuffer(env, ab, &detached);
  if (detached) return make_bool(env, false);
  return make_bool(env, napi_detach_arraybuffer(env, ab) == napi_ok);
}

// ---- notifications (see the deadlock warnings in lowlevel.ts)

static napi_value js_notify_inval_inode(napi_env env, napi_callback_info info) {
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

static napi_value js_notify_inval_entry(napi_env env, napi_callback_info info) {
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

static napi_value js_notify_delete(napi_env env, napi_callback_info info) {
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

// ------------------------------------------------------------------------------------------
// Module

static napi_value init_module(napi_env env, napi_value exports) {
  struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"mount", js_mount},
      {"stop", js_stop},
      {"drain", js_drain},
      {"destroy", js_destroy},
      {"stats", js_stats},
      {"replyErr", js_reply_err},
      {"replyNone", js_reply_none},
      {"replyEntry", js_reply_entry},
      {"replyCreate", js_reply_create},
      {"replyAttr", js_reply_attr},
      {"replyOpen", js_reply_open},
      {"backingOpen", js_backing_open},
      {"backingClose", js_backing_close},
      {"replyBuf", js_reply_buf},
      {"replyFd", js_reply_fd},
      {"replyReadlink", js_reply_readlink},
      {"replyWrite", js_reply_write},
      {"replyXattr", js_reply_xattr},
      {"replyLseek", js_reply_lseek},
      {"replyStatfs", js_reply_statfs},
      {"replyIoctl", js_reply_ioctl},
      {"replyDirents", js_reply_dirents},
      {"notifyInvalInode", js_notify_inval_inode},
      {"notifyInvalEntry", js_notify_inval_entry},
      {"notifyDelete", js_notify_delete},
      {"recycle", js_recycle},
  };
  for (auto &f : fns) {
    napi_value v;
    NAPI_CALL(env, napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &v));
    NAPI_CALL(env, napi_set_named_property(env, exports, f.name, v));
  }
  napi_set_named_property(env, exports, "FUSE_VERSION", make_u32(env, fuse_version()));
  napi_add_env_cleanup_hook(env, env_cleanup, env);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
