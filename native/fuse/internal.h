// What the files of the layerfs_fuse addon share: the request record (Rec), the session
// (Session), the queue push every op callback ends with, and the functions one file calls in
// another. Everything else in each file has internal linkage. Not a public interface: the
// addon's only interface is the JS one (layerfs_fuse.cc lists it).
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>

#include <node_api.h>
#include <uv.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "napi.h"
#include "wire.h"

// Nothing of this addon but its module registration leaves the shared object: calls between
// its files are direct (no PLT, no interposition), as they were within one file.
#pragma GCC visibility push(hidden)

namespace lfuse {

// ------------------------------------------------------------------------------------------
// Request records and sessions

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

static inline void free_rec(Rec *r) {
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
  bool passthrough = false;  // asked for (config.passthrough); see passthrough.cc

  // Passthrough state (see io_read / io_writev in passthrough.cc).
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

// Queue a record for the JS thread; in thread mode, the push that makes the queue non-empty
// wakes it.
static inline void push(Session *s, Rec *r) {
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

// The session behind a JS handle (an External), or null.
static inline Session *unwrap(napi_env env, napi_value v) {
  void *p = nullptr;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return nullptr;
  if (napi_get_value_external(env, v, &p) != napi_ok) return nullptr;
  return (Session *)p;
}

// Writes at least this big take the receive buffer over instead of copying the payload
// (below it, a copy is cheaper than a fresh 1 MiB receive buffer).
const size_t STEAL_MIN = 64 * 1024;

// ------------------------------------------------------------------------------------------
// Across files

// records.cc: the receive-buffer pool and the write payloads handed to JS.
extern std::mutex g_pool_lock;
extern std::vector<char *> g_pool;
extern std::atomic<uint64_t> g_poolHits;
extern std::unordered_map<void *, char *> g_payloads;  // JS thread only
void pool_put(char *block);
char *pool_take(size_t minUsable);

// passthrough.cc
int use_custom_io(Session *s, int fd);  // fuse_session_custom_io with io_read/io_writev
int reply_open_backing(fuse_req_t req, const struct fuse_file_info *fi, int32_t backing);
int reply_create_backing(fuse_req_t req, const struct fuse_entry_param *e, const struct fuse_file_info *fi,
                         int32_t backing);

// ops.cc: the libfuse callbacks of the ops JS has handlers for (and the ones always needed).
void register_ops(Session *s, struct fuse_lowlevel_ops *ops);

// session.cc: reading /dev/fuse (session thread, inline poll) and tearing down.
void *loop_main(void *arg);
void on_poll(uv_poll_t *h, int status, int events);
void stop_thread(Session *s);
size_t teardown_fuse(Session *s);

// deliver.cc: handing queued records to JS.
size_t deliver_queue(Session *s);
void deliver_in_scope(Session *s);
void on_async(uv_async_t *h);

// mount.cc
void env_cleanup(void *arg);

// The JS functions (layerfs_fuse.cc exports them).
napi_value js_mount(napi_env env, napi_callback_info info);
napi_value js_stop(napi_env env, napi_callback_info info);
napi_value js_drain(napi_env env, napi_callback_info info);
napi_value js_destroy(napi_env env, napi_callback_info info);
napi_value js_stats(napi_env env, napi_callback_info info);
napi_value js_reply_err(napi_env env, napi_callback_info info);
napi_value js_reply_none(napi_env env, napi_callback_info info);
napi_value js_reply_entry(napi_env env, napi_callback_info info);
napi_value js_reply_create(napi_env env, napi_callback_info info);
napi_value js_reply_attr(napi_env env, napi_callback_info info);
napi_value js_reply_open(napi_env env, napi_callback_info info);
napi_value js_backing_open(napi_env env, napi_callback_info info);
napi_value js_backing_close(napi_env env, napi_callback_info info);
napi_value js_reply_buf(napi_env env, napi_callback_info info);
napi_value js_reply_fd(napi_env env, napi_callback_info info);
napi_value js_reply_readlink(napi_env env, napi_callback_info info);
napi_value js_reply_write(napi_env env, napi_callback_info info);
napi_value js_reply_xattr(napi_env env, napi_callback_info info);
napi_value js_reply_lseek(napi_env env, napi_callback_info info);
napi_value js_reply_statfs(napi_env env, napi_callback_info info);
napi_value js_reply_ioctl(napi_env env, napi_callback_info info);
napi_value js_reply_dirents(napi_env env, napi_callback_info info);
napi_value js_notify_inval_inode(napi_env env, napi_callback_info info);
napi_value js_notify_inval_entry(napi_env env, napi_callback_info info);
napi_value js_notify_delete(napi_env env, napi_callback_info info);
napi_value js_recycle(napi_env env, napi_callback_info info);
napi_value js_wire(napi_env env, napi_callback_info info);

}  // namespace lfuse

#pragma GCC visibility pop
