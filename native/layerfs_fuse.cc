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
//
// Files (native/fuse/; each opens with what it holds):
//   wire.h        the op codes and record layouts shared with src/fuse/lowlevel.ts (wire.cc
//                 reports them to JS; test/fuse/wire.test.ts checks that both sides agree)
//   internal.h    Rec, Session, push, and what one file calls in another
//   napi.h        N-API helpers (header-only: inlined on every path)
//   ops.cc        the libfuse op callbacks: copy, queue, return; ll_init
//   session.cc    reading /dev/fuse (session thread, inline poll and spinning), teardown
//   deliver.cc    handing queued records to the JS dispatcher
//   mount.cc      mount/stop/drain/destroy/stats, process exit and environment teardown
//   replies.cc    reply*(): record decoding, fuse_reply_*, reads by splice (replyFd), recycle
//   passthrough.cc  FUSE passthrough on libfuse 3.14 (custom IO), backingOpen/backingClose
//   notify.cc     cache invalidation notifications
//   records.cc    the receive-buffer pool and the write payloads handed to JS
// This file: the module (the JS functions it exports).

#include "fuse/internal.h"

using namespace lfuse;

static napi_value init_module(napi_env env, napi_value exports) {
  static const ExportedFunction fns[] = {
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
      {"wire", js_wire},
  };
  if (!export_functions(env, exports, fns)) return nullptr;
  napi_set_named_property(env, exports, "FUSE_VERSION", make_u32(env, fuse_version()));
  napi_add_env_cleanup_hook(env, env_cleanup, env);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
