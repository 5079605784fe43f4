#include "executor/frame_allocator.h"

#include <new>

namespace spindle::executor_internal {
namespace {

struct FreeBlock {
  FreeBlock* next;
};

// One thread's cache.  Only its own thread touches it.  Trivially
// destructible and constant-initialised, so it is usable at any point of
// the thread's life, including from destructors of other thread_local
// objects that run after the cache was flushed (an executor or a handle in
// thread-local storage created before the thread's first frame).
struct ThreadCache {
  FreeBlock* heads[kNumFrameClasses];
  FrameAllocatorStats stats;
  bool registered;  // the flusher below is armed
  bool closed;      // flushed at thread exit: frees go to the system
};

constinit thread_local ThreadCache tl_cache{};

void Flush(ThreadCache& cache) noexcept {
  for (size_t c = 0; c < kNumFrameClasses; ++c) {
    FreeBlock* b = cache.heads[c];
    while (b != nullptr) {
      FreeBlock* next = b->next;
      ::operator delete(static_cast<void*>(b), (c + 1) * kFrameGranule);
      b = next;
    }
    cache.heads[c] = nullptr;
  }
  cache.stats.cached_blocks = 0;
  cache.stats.cached_bytes = 0;
}

// Flushes the cache when the thread exits and closes it for good.
struct CacheFlusher {
  ~CacheFlusher() {
    Flush(tl_cache);
    tl_cache.closed = true;
  }
};

ThreadCache& Cache() noexcept {
  ThreadCache& cache = tl_cache;
  if (!cache.registered) [[unlikely]] {
    // First use on this thread: arm the flusher (its constructor runs now,
    // so it is destroyed before any thread_local built earlier).
    cache.registered = true;
    thread_local CacheFlusher flusher;
    (void)flusher;
  }
  return cache;
}

inline size_t ClassOf(size_t size) noexcept {
  return (size + kFrameGranule - 1) / kFrameGranule - 1;
}

}  // namespace

void* AllocateFrame(size_t size) {
  if (size == 0) size = 1;
  if (size > kMaxPooledSize) {
    Cache().stats.system_allocs++;
    return ::operator new(size);
  }
  ThreadCache& cache = Cache();
  const size_t c = ClassOf(size);
  if (FreeBlock* b = cache.heads[c]; b != nullptr) {
    cache.heads[c] = b->next;
    cache.stats.pooled_allocs++;
    cache.stats.cached_blocks--;
    cache.stats.cached_bytes -= (c + 1) * kFrameGranule;
    return b;
  }
  cache.stats.system_allocs++;
  return ::operator new((c + 1) * kFrameGranule);
}

void FreeFrame(void* block, size_t size) noexcept {
  if (size == 0) size = 1;
  if (size > kMaxPooledSize) {
    ::operator delete(block, size);
    return;
  }
  ThreadCache& cache = Cache();
  const size_t c = ClassOf(size);
  const size_t block_size = (c + 1) * kFrameGranule;
  if (cache.closed ||
      cache.stats.cached_bytes + block_size > kMaxCachedBytes) {
    ::operator delete(block, block_size);
    return;
  }
  auto* b = static_cast<FreeBlock*>(block);
  b->next = cache.heads[c];
  cache.heads[c] = b;
  cache.stats.cached_blocks++;
  cache.stats.cached_bytes += block_size;
}

FrameAllocatorStats ThreadFrameStats() noexcept { return Cache().stats; }

}  // namespace spindle::executor_internal
