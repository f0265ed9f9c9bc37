// Delivery to JS (JS thread): inside ONE callback scope per batch, the JS dispatcher is
// called once per Rec, with the op code, a fresh request id (the fuse_req_t goes into the
// in-flight table under it), the node id, the caller's credentials and the op's own arguments
// (deliver_one; src/fuse/session.ts's dispatch takes them apart). Promise jobs (replies of async
// handlers) run when the batch's callback scope closes.

#include <errno.h>
#include <stdio.h>

#include "internal.h"

namespace lfuse {

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

size_t deliver_queue(Session *s) {
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
void deliver_in_scope(Session *s) {
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

void on_async(uv_async_t *h) {
  Session *s = (Session *)h->data;
  if (s->destroyed) return;
  deliver_in_scope(s);
}

}  // namespace lfuse
