// Reading /dev/fuse, two ways (per session), and the end of a session.
//
//  thread: loop_main, a session thread, polls /dev/fuse and a wake-up eventfd, reads and
//    processes with fuse_session_receive_buf/fuse_session_process_buf (the op callbacks in
//    ops.cc queue Recs; push wakes the JS thread through uv_async).
//  inline: on_poll, on the JS thread when its event loop sees /dev/fuse readable (uv_poll),
//    reads a bounded batch the same way and delivers it (deliver.cc) at once, then may spin.
//
// teardown_fuse answers whatever is left ENOTCONN, unmounts and frees libfuse's session.

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <chrono>

#include "internal.h"

namespace lfuse {

// fuse_session_receive_buf with a pooled buffer when one fits (see pool_take).
static int receive(Session *s) {
  if (!s->rbuf.mem && s->blockSize) s->rbuf.mem = pool_take(s->blockSize);
  int res = fuse_session_receive_buf(s->se, &s->rbuf);
  if (!s->blockSize && s->rbuf.mem) s->blockSize = malloc_usable_size(s->rbuf.mem);
  return res;
}

// ------------------------------------------------------------------------------------------
// Session thread

void *loop_main(void *arg) {
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

void stop_thread(Session *s) {
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
size_t teardown_fuse(Session *s) {
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

// ------------------------------------------------------------------------------------------
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
void on_poll(uv_poll_t *h, int status, int events) {
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

}  // namespace lfuse
