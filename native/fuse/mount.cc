// A session's life from JS: mount (libfuse session, mount, the session thread or the inline
// poll), stop, drain, destroy, stats; and the ends nobody asked for: process exit (atexit)
// and environment teardown (a worker ending) unmount what is still mounted, so no dead mount
// ("Transport endpoint is not connected") is left behind.

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

namespace lfuse {

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
void env_cleanup(void *arg) {
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
napi_value js_mount(napi_env env, napi_callback_info info) {
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
  register_ops(s, &ops);

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
  // Passthrough needs to see and set protocol bits libfuse 3.14 does not know (passthrough.cc).
  if (s->passthrough && use_custom_io(s, fd) != 0) s->passthrough = false;
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
napi_value js_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Session *s = argc ? unwrap(env, argv[0]) : nullptr;
  if (!s) return throw_type(env, "not a session");
  if (!s->destroyed) stop_thread(s);
  return make_undefined(env);
}

// drain(session): hand everything queued to JS now (synchronously). Returns how many.
napi_value js_drain(napi_env env, napi_callback_info info) {
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
napi_value js_destroy(napi_env env, napi_callback_info info) {
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
napi_value js_stats(napi_env env, napi_callback_info info) {
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

}  // namespace lfuse
