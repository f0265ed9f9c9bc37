// The libfuse low-level op callbacks (the session thread, or the JS thread in inline mode):
// each copies its arguments into a Rec and queues it for the JS thread WITHOUT replying
// (deliver.cc hands it over, replies.cc answers). FORGETs are answered (reply_none) at once
// and queued as notifications; arguments JS could not take (offsets beyond 2^53, xattr names
// that are not UTF-8) are answered here. ll_init negotiates the connection's capabilities.

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <vector>

#include "internal.h"

namespace lfuse {

static bool has(Session *s, int op) {
  return op > 0 && op < 64 && ((s->opsMask >> op) & 1u);
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

// Register the ops JS has handlers for (config.ops), and those libfuse must always have.
void register_ops(Session *s, struct fuse_lowlevel_ops *ops) {
  memset(ops, 0, sizeof(*ops));
  ops->init = ll_init;
  auto want = [&](int op) { return has(s, op); };
  if (want(OP_LOOKUP)) ops->lookup = ll_lookup;
  // FORGET must always be answered (reply_none); registered whether or not JS listens.
  ops->forget = ll_forget;
  ops->forget_multi = ll_forget_multi;
  if (want(OP_GETATTR)) ops->getattr = ll_getattr;
  if (want(OP_SETATTR)) ops->setattr = ll_setattr;
  if (want(OP_READLINK)) ops->readlink = ll_readlink;
  if (want(OP_MKNOD)) ops->mknod = ll_mknod;
  if (want(OP_MKDIR)) ops->mkdir = ll_mkdir;
  if (want(OP_UNLINK)) ops->unlink = ll_unlink;
  if (want(OP_RMDIR)) ops->rmdir = ll_rmdir;
  if (want(OP_SYMLINK)) ops->symlink = ll_symlink;
  if (want(OP_RENAME)) ops->rename = ll_rename;
  if (want(OP_LINK)) ops->link = ll_link;
  if (want(OP_OPEN)) ops->open = ll_open;
  if (want(OP_READ)) ops->read = ll_read;
  if (want(OP_WRITE)) ops->write = ll_write;
  if (want(OP_FLUSH)) ops->flush = ll_flush;
  if (want(OP_RELEASE)) ops->release = ll_release;
  if (want(OP_FSYNC)) ops->fsync = ll_fsync;
  if (want(OP_OPENDIR)) ops->opendir = ll_opendir;
  if (want(OP_READDIR)) ops->readdir = ll_readdir;
  if (want(OP_READDIRPLUS)) ops->readdirplus = ll_readdirplus;
  if (want(OP_RELEASEDIR)) ops->releasedir = ll_releasedir;
  if (want(OP_FSYNCDIR)) ops->fsyncdir = ll_fsyncdir;
  if (want(OP_STATFS)) ops->statfs = ll_statfs;
  if (want(OP_SETXATTR)) ops->setxattr = ll_setxattr;
  if (want(OP_GETXATTR)) ops->getxattr = ll_getxattr;
  if (want(OP_LISTXATTR)) ops->listxattr = ll_listxattr;
  if (want(OP_REMOVEXATTR)) ops->removexattr = ll_removexattr;
  if (want(OP_ACCESS)) ops->access = ll_access;
  if (want(OP_CREATE)) ops->create = ll_create;
  if (want(OP_FALLOCATE)) ops->fallocate = ll_fallocate;
  if (want(OP_COPY_FILE_RANGE)) ops->copy_file_range = ll_copy_file_range;
  if (want(OP_LSEEK)) ops->lseek = ll_lseek;
  if (want(OP_IOCTL)) ops->ioctl = ll_ioctl;
}

}  // namespace lfuse
