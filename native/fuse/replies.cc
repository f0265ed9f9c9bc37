// Replies (JS thread): reply*(session, id, ...) validates its arguments, then takes the
// request out of the in-flight table and answers it with fuse_reply_*. A reply for an id not
// in flight (a double reply, or after destroy) answers nothing and returns null; bad arguments
// throw a TypeError before the request is taken, so it stays answerable. Also recycle(), which
// gives a write payload's memory back (records.cc).

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <vector>

#include "internal.h"

namespace lfuse {

namespace {
// Parses (session, id, ...) and the rest of the arguments; `take` removes the request from the
// in-flight table only after the caller validated everything else.
struct ReplyCtx {
  napi_env env;
  Session *s = nullptr;
  uint64_t id = 0;
  napi_value argv[16];
  size_t argc = 16;
};
}  // namespace

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

// The records lowlevel.ts writes (layouts: wire.h). Read field by field: a record may sit at
// any alignment in a JS buffer.
template <typename T>
static T rd(const char *p, size_t off) {
  T v;
  memcpy(&v, p + off, sizeof(T));
  return v;
}
#define RD(Rec, field, base) rd<decltype(Rec::field)>(p, (base) + offsetof(Rec, field))

static void decode_stat(const char *p, struct stat *st) {
  memset(st, 0, sizeof(*st));
  st->st_ino = RD(StatRec, ino, 0);
  st->st_size = (off_t)RD(StatRec, size, 0);
  st->st_blocks = (blkcnt_t)RD(StatRec, blocks, 0);
  st->st_atim.tv_sec = RD(StatRec, atimeSec, 0);
  st->st_mtim.tv_sec = RD(StatRec, mtimeSec, 0);
  st->st_ctim.tv_sec = RD(StatRec, ctimeSec, 0);
  st->st_atim.tv_nsec = RD(StatRec, atimeNsec, 0);
  st->st_mtim.tv_nsec = RD(StatRec, mtimeNsec, 0);
  st->st_ctim.tv_nsec = RD(StatRec, ctimeNsec, 0);
  st->st_mode = RD(StatRec, mode, 0);
  st->st_nlink = RD(StatRec, nlink, 0);
  st->st_uid = RD(StatRec, uid, 0);
  st->st_gid = RD(StatRec, gid, 0);
  st->st_blksize = RD(StatRec, blksize, 0);
  st->st_rdev = RD(StatRec, rdev, 0);
}

static void decode_entry(const char *p, struct fuse_entry_param *e) {
  memset(e, 0, sizeof(*e));
  e->ino = RD(EntryRec, nodeid, 0);
  e->generation = RD(EntryRec, generation, 0);
  e->entry_timeout = RD(EntryRec, entryTimeout, 0);
  e->attr_timeout = RD(EntryRec, attrTimeout, 0);
  decode_stat(p + offsetof(EntryRec, attr), &e->attr);
}

// Open flags (OpenFlag, wire.h).
static void decode_open(uint64_t fh, uint32_t flags, struct fuse_file_info *fi) {
  memset(fi, 0, sizeof(*fi));
  fi->fh = fh;
  fi->direct_io = (flags & OPEN_DIRECT_IO) != 0;
  fi->keep_cache = (flags & OPEN_KEEP_CACHE) != 0;
  fi->nonseekable = (flags & OPEN_NONSEEKABLE) != 0;
  fi->cache_readdir = (flags & OPEN_CACHE_READDIR) != 0;
  fi->noflush = (flags & OPEN_NOFLUSH) != 0;
}

// replyErr(s, id, errno) — errno 0 is success for ops that answer with a plain status.
napi_value js_reply_err(napi_env env, napi_callback_info info) {
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

napi_value js_reply_none(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 2)) return nullptr;
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  fuse_reply_none(req);
  return result(env, 0);
}

// replyEntry(s, id, entryRecord)
napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  const char *p;
  size_t n;
  if (!get_bytes(env, c.argv[2], &p, &n) || n < sizeof(EntryRec)) return throw_type(env, "bad entry record");
  struct fuse_entry_param e;
  decode_entry(p, &e);
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_entry(req, &e));
}

// replyCreate(s, id, entryRecord, fh, openFlags)
napi_value js_reply_create(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 5)) return nullptr;
  const char *p;
  size_t n;
  uint64_t fh;
  uint32_t fl;
  if (!get_bytes(env, c.argv[2], &p, &n) || n < sizeof(EntryRec)) return throw_type(env, "bad entry record");
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
  return result(env, reply_create_backing(req, &e, &fi, backing));
}

// replyAttr(s, id, statRecord, timeout)
napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 4)) return nullptr;
  const char *p;
  size_t n;
  double timeout;
  if (!get_bytes(env, c.argv[2], &p, &n) || n < sizeof(StatRec)) return throw_type(env, "bad stat record");
  if (!get_number(env, c.argv[3], &timeout)) return throw_type(env, "bad timeout");
  struct stat st;
  decode_stat(p, &st);
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_attr(req, &st, timeout));
}

// replyOpen(s, id, fh, openFlags[, backingId])
napi_value js_reply_open(napi_env env, napi_callback_info info) {
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
  return result(env, reply_open_backing(req, &fi, backing));
}

// replyBuf(s, id, bytes[, length]) — the bytes go to the kernel straight from JS memory.
napi_value js_reply_buf(napi_env env, napi_callback_info info) {
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

namespace {
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
}  // namespace

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

napi_value js_reply_fd(napi_env env, napi_callback_info info) {
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
napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
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
napi_value js_reply_write(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  uint64_t count;
  if (!get_u64(env, c.argv[2], &count)) return throw_type(env, "bad count");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_write(req, (size_t)count));
}

// replyXattr(s, id, size) — answer to a size query (size 0 in the request)
napi_value js_reply_xattr(napi_env env, napi_callback_info info) {
  ReplyCtx c;
  if (!reply_args(env, info, &c, 3)) return nullptr;
  uint64_t count;
  if (!get_u64(env, c.argv[2], &count)) return throw_type(env, "bad size");
  fuse_req_t req = take(&c);
  if (!req) return make_null(env);
  return result(env, fuse_reply_xattr(req, (size_t)count));
}

// replyLseek(s, id, off)
napi_value js_reply_lseek(napi_env env, napi_callback_info info) {
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
napi_value js_reply_ioctl(napi_env env, napi_callback_info info) {
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
napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
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
// Packed entries: a DirentRec (wire.h), then the name, padded to 8.
napi_value js_reply_dirents(napi_env env, napi_callback_info info) {
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
    if (pos + DIRENT_NAME > n) return throw_type(env, "truncated dirent record");
    uint32_t nl = RD(DirentRec, namelen, pos);
    size_t recLen = DIRENT_NAME + ((nl + 7) & ~(size_t)7);
    if (nl == 0 || pos + DIRENT_NAME + nl > n) return throw_type(env, "bad dirent name");
    if (memchr(p + pos + DIRENT_NAME, 0, nl) || memchr(p + pos + DIRENT_NAME, '/', nl)) return throw_type(env, "bad dirent name");
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
    uint32_t nl = RD(DirentRec, namelen, pos);
    uint64_t off = RD(DirentRec, off, pos);
    name.assign(p + pos + DIRENT_NAME, nl);
    struct fuse_entry_param e;
    decode_entry(p + pos + offsetof(DirentRec, entry), &e);
    size_t rem = out.size() - used;
    size_t need;
    if (plus) need = fuse_add_direntry_plus(req, out.data() + used, rem, name.c_str(), &e, (off_t)off);
    else need = fuse_add_direntry(req, out.data() + used, rem, name.c_str(), &e.attr, (off_t)off);
    if (need > rem) break;
    used += need;
    count++;
    pos += DIRENT_NAME + ((nl + 7) & ~(size_t)7);
  }
  int res = fuse_reply_buf(req, out.data(), used);
  return make_int(env, res < 0 ? res : count);
}

// recycle(payload): the handler is done with a write payload. Its ArrayBuffer is detached
// (every view of it becomes empty) and its memory returns to the receive-buffer pool.
// Returns false for anything that is not a live payload of this binding.
napi_value js_recycle(napi_env env, napi_callback_info info) {
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

}  // namespace lfuse
