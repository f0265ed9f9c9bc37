// Memory that outlives a request: the pool of receive buffers and the registry of write
// payloads handed to JS.
//
// A large write's payload is not copied: ll_write (ops.cc) takes over the receive buffer it
// sits in (libfuse allocates a new one, as it does whenever buf.mem is NULL), deliver_one
// (deliver.cc) hands JS a Uint8Array over the payload in place, backed by an external
// ArrayBuffer, and recycle() (replies.cc) detaches it once consumed; the block then returns
// here, and the next receive buffer is taken from here (receive, session.cc).

#include <malloc.h>

#include "internal.h"

namespace lfuse {

// Receive buffers given back by JS (recycle) once a write payload was consumed. libfuse reads
// a whole request (its bufsize) into buf.mem and allocates one itself only when buf.mem is
// NULL; a session takes a pooled block only if it is at least as large as the first buffer
// libfuse allocated for that session (so it holds that session's bufsize, which only shrinks).
std::mutex g_pool_lock;
std::vector<char *> g_pool;
static const size_t POOL_MAX = 8;
std::atomic<uint64_t> g_poolHits{0};  // receive buffers taken from the pool

void pool_put(char *block) {
  {
    std::lock_guard<std::mutex> g(g_pool_lock);
    if (g_pool.size() < POOL_MAX) {
      g_pool.push_back(block);
      return;
    }
  }
  free(block);
}

char *pool_take(size_t minUsable) {
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

// Write payloads handed to JS and not finalized yet (data pointer -> block); JS thread only.
std::unordered_map<void *, char *> g_payloads;

}  // namespace lfuse
