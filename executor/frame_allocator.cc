#include "executor/frame_allocator.h"

#include <atomic>
#include <mutex>
#include <new>

namespace spindle::executor_internal {
namespace {

struct FreeBlock {
  FreeBlock* next;        // the next block of the list (or of the batch)
  FreeBlock* next_batch;  // in the depot, on a batch's first block
};
static_assert(sizeof(FreeBlock) <= kFrameGranule);

constexpr size_t BlockSize(size_t c) noexcept {
  return (c + 1) * kFrameGranule;
}

// MaxClassBlocks per class, so that a free does not divide.
struct ClassBounds {
  uint32_t blocks[kNumFrameClasses];
  constexpr ClassBounds() : blocks{} {
    for (size_t c = 0; c < kNumFrameClasses; ++c) {
      blocks[c] = static_cast<uint32_t>(MaxClassBlocks(BlockSize(c)));
    }
  }
};
constexpr ClassBounds kClassBounds;

// One thread's cache.  Only its own thread touches it.  Trivially
// destructible and constant-initialised, so it is usable at any point of
// the thread's life, including from destructors of other thread_local
// objects that run after the cache was flushed (an executor or a handle in
// thread-local storage created before the thread's first frame).
struct ThreadCache {
  FreeBlock* heads[kNumFrameClasses];
  uint32_t counts[kNumFrameClasses];  // blocks on each list
  // Frees past MaxClassBlocks gather here, kDepotBatch at a time, and go
  // to the depot as one batch (no walk of the list).
  FreeBlock* outgoing[kNumFrameClasses];
  uint32_t outgoing_counts[kNumFrameClasses];
  FrameAllocatorStats stats;
  bool registered;  // the flusher below is armed
  bool closed;      // flushed at thread exit: frees go to the system
};

constinit thread_local ThreadCache tl_cache{};

// The process-wide depot: per class, a stack of batches of kDepotBatch
// blocks, under a lock taken once per batch.
struct DepotClass {
  std::mutex mu;
  FreeBlock* batches = nullptr;  // guarded by mu
  // Relaxed: lets a thread skip the lock when the class has nothing.
  std::atomic<size_t> num_batches{0};
};

struct Depot {
  DepotClass classes[kNumFrameClasses];
  // Reserved before a batch goes in (so never above kMaxDepotBytes),
  // released after one comes out.
  std::atomic<size_t> bytes{0};
};

// Never destroyed: threads may free frames after main returns.
Depot& GetDepot() noexcept {
  static Depot* const depot = new Depot;
  return *depot;
}

void FreeList(FreeBlock* b, size_t c) noexcept {
  while (b != nullptr) {
    FreeBlock* next = b->next;
    ::operator delete(static_cast<void*>(b), BlockSize(c));
    b = next;
  }
}

void Flush(ThreadCache& cache) noexcept {
  for (size_t c = 0; c < kNumFrameClasses; ++c) {
    FreeList(cache.heads[c], c);
    FreeList(cache.outgoing[c], c);
    cache.heads[c] = nullptr;
    cache.counts[c] = 0;
    cache.outgoing[c] = nullptr;
    cache.outgoing_counts[c] = 0;
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

// The class-c list is empty: takes the outgoing blocks back, or a batch
// from the depot if it has one.
[[gnu::noinline]] bool Refill(ThreadCache& cache, size_t c) noexcept {
  if (cache.outgoing[c] != nullptr) {
    cache.heads[c] = cache.outgoing[c];
    cache.counts[c] = cache.outgoing_counts[c];
    cache.outgoing[c] = nullptr;
    cache.outgoing_counts[c] = 0;
    return true;
  }
  DepotClass& d = GetDepot().classes[c];
  if (d.num_batches.load(std::memory_order_relaxed) == 0) return false;
  FreeBlock* batch;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    batch = d.batches;
    if (batch == nullptr) return false;
    d.batches = batch->next_batch;
    d.num_batches.store(d.num_batches.load(std::memory_order_relaxed) - 1,
                        std::memory_order_relaxed);
  }
  GetDepot().bytes.fetch_sub(kDepotBatch * BlockSize(c),
                             std::memory_order_relaxed);
  cache.heads[c] = batch;
  cache.counts[c] = kDepotBatch;
  cache.stats.depot_refills++;
  cache.stats.cached_blocks += kDepotBatch;
  cache.stats.cached_bytes += kDepotBatch * BlockSize(c);
  return true;
}

// The class-c list is full (kMaxClassBytes): `b` joins the outgoing
// blocks; a whole batch of them goes to the depot (or to the system when
// the depot is full).
[[gnu::noinline]] void Spill(ThreadCache& cache, size_t c,
                             FreeBlock* b) noexcept {
  b->next = cache.outgoing[c];
  cache.outgoing[c] = b;
  if (++cache.outgoing_counts[c] < kDepotBatch) return;
  FreeBlock* batch = cache.outgoing[c];
  cache.outgoing[c] = nullptr;
  cache.outgoing_counts[c] = 0;
  const size_t bytes = kDepotBatch * BlockSize(c);
  cache.stats.cached_blocks -= kDepotBatch;
  cache.stats.cached_bytes -= bytes;
  Depot& depot = GetDepot();
  // Reserve the room first: the depot never holds more than its bound.
  if (depot.bytes.fetch_add(bytes, std::memory_order_relaxed) + bytes >
      kMaxDepotBytes) {
    depot.bytes.fetch_sub(bytes, std::memory_order_relaxed);
    FreeList(batch, c);
    return;
  }
  DepotClass& d = depot.classes[c];
  {
    std::lock_guard<std::mutex> lock(d.mu);
    batch->next_batch = d.batches;
    d.batches = batch;
    d.num_batches.store(d.num_batches.load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
  }
  cache.stats.depot_spills++;
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
  if (cache.heads[c] != nullptr || (!cache.closed && Refill(cache, c)))
      [[likely]] {
    FreeBlock* b = cache.heads[c];
    cache.heads[c] = b->next;
    // The next block may come from another thread's cache (the depot):
    // start fetching it for writing now, while this frame is built.
    __builtin_prefetch(b->next, 1);
    cache.counts[c]--;
    cache.stats.pooled_allocs++;
    cache.stats.cached_blocks--;
    cache.stats.cached_bytes -= BlockSize(c);
    return b;
  }
  cache.stats.system_allocs++;
  return ::operator new(BlockSize(c));
}

void FreeFrame(void* block, size_t size) noexcept {
  if (size == 0) size = 1;
  if (size > kMaxPooledSize) {
    ::operator delete(block, size);
    return;
  }
  ThreadCache& cache = Cache();
  const size_t c = ClassOf(size);
  const size_t block_size = BlockSize(c);
  if (cache.closed ||
      cache.stats.cached_bytes + block_size > kMaxCachedBytes) {
    ::operator delete(block, block_size);
    return;
  }
  auto* b = static_cast<FreeBlock*>(block);
  cache.stats.cached_blocks++;
  cache.stats.cached_bytes += block_size;
  if (cache.counts[c] >= kClassBounds.blocks[c]) [[unlikely]] {
    Spill(cache, c, b);
    return;
  }
  b->next = cache.heads[c];
  cache.heads[c] = b;
  cache.counts[c]++;
}

FrameAllocatorStats ThreadFrameStats() noexcept { return Cache().stats; }

size_t FrameDepotBytes() noexcept {
  return GetDepot().bytes.load(std::memory_order_relaxed);
}

}  // namespace spindle::executor_internal
