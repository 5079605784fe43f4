#include "executor/frame_allocator.h"

#include <atomic>
#include <mutex>
#include <new>

namespace spindle::executor_internal {
namespace {

using FreeBlock = FrameBlock;

constexpr size_t BlockSize(size_t c) noexcept {
  return (c + 1) * kFrameGranule;
}

// The cold half of one thread's cache (the hot half is tl_frame_lists,
// in the header).  Only its own thread touches it.  Trivially destructible
// and constant-initialised, so it is usable at any point of the thread's
// life, including from destructors of other thread_local objects that run
// after the cache was flushed (an executor or a handle in thread-local
// storage created before the thread's first frame).
struct ThreadCache {
  // Frees past MaxClassBlocks gather here, kDepotBatch at a time, and go
  // to the depot as one batch (no walk of the list).
  FreeBlock* outgoing[kNumFrameClasses];
  uint32_t outgoing_counts[kNumFrameClasses];
  uint64_t system_allocs;
  uint64_t depot_refills;
  uint64_t depot_spills;
  bool registered;  // the flusher below is armed (and room set)
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
  FrameLists& l = tl_frame_lists;
  for (size_t c = 0; c < kNumFrameClasses; ++c) {
    FreeList(l.heads[c], c);
    FreeList(cache.outgoing[c], c);
    l.heads[c] = nullptr;
    l.counts[c] = 0;
    cache.outgoing[c] = nullptr;
    cache.outgoing_counts[c] = 0;
  }
  l.room = 0;  // closed: every free takes the out-of-line path
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
    // so it is destroyed before any thread_local built earlier), and open
    // the lists to frees.
    cache.registered = true;
    thread_local CacheFlusher flusher;
    (void)flusher;
    tl_frame_lists.room = static_cast<int64_t>(kMaxCachedBytes);
  }
  return cache;
}

inline size_t ClassOf(size_t size) noexcept {
  return (size + kFrameGranule - 1) / kFrameGranule - 1;
}

// The class-c list is empty: takes the outgoing blocks back, or a batch
// from the depot if it has one.
[[gnu::noinline]] bool Refill(ThreadCache& cache, size_t c) noexcept {
  FrameLists& l = tl_frame_lists;
  if (cache.outgoing[c] != nullptr) {
    // Already counted against room.
    l.heads[c] = cache.outgoing[c];
    l.counts[c] = cache.outgoing_counts[c];
    l.cold_pops = l.counts[c];
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
  l.heads[c] = batch;
  l.counts[c] = kDepotBatch;
  l.cold_pops = kDepotBatch;
  l.room -= static_cast<int64_t>(kDepotBatch * BlockSize(c));
  cache.depot_refills++;
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
  tl_frame_lists.room += static_cast<int64_t>(bytes);
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
  cache.depot_spills++;
}

}  // namespace

void* AllocateFrameSlow(size_t size) {
  if (size == 0) size = 1;
  ThreadCache& cache = Cache();
  if (size > kMaxPooledSize) {
    cache.system_allocs++;
    return ::operator new(size);
  }
  const size_t c = ClassOf(size);
  FrameLists& l = tl_frame_lists;
  if (l.heads[c] != nullptr || (!cache.closed && Refill(cache, c))) {
    return PopFrameBlock(l, c);
  }
  cache.system_allocs++;
  return ::operator new(BlockSize(c));
}

void FreeFrameSlow(void* block, size_t size) noexcept {
  if (size == 0) size = 1;
  if (size > kMaxPooledSize) {
    ::operator delete(block, size);
    return;
  }
  ThreadCache& cache = Cache();
  const size_t c = ClassOf(size);
  const size_t block_size = BlockSize(c);
  FrameLists& l = tl_frame_lists;
  if (cache.closed || l.room < static_cast<int64_t>(block_size)) {
    ::operator delete(block, block_size);
    return;
  }
  if (l.counts[c] >= kFrameClassBounds.blocks[c]) {
    l.room -= static_cast<int64_t>(block_size);
    Spill(cache, c, static_cast<FreeBlock*>(block));
    return;
  }
  PushFrameBlock(l, c, block);
}

FrameAllocatorStats ThreadFrameStats() noexcept {
  const ThreadCache& cache = tl_cache;
  const FrameLists& l = tl_frame_lists;
  FrameAllocatorStats s;
  s.pooled_allocs = l.pooled_allocs;
  s.system_allocs = cache.system_allocs;
  s.depot_refills = cache.depot_refills;
  s.depot_spills = cache.depot_spills;
  for (size_t c = 0; c < kNumFrameClasses; ++c) {
    const uint64_t blocks = l.counts[c] + cache.outgoing_counts[c];
    s.cached_blocks += blocks;
    s.cached_bytes += blocks * BlockSize(c);
  }
  return s;
}

size_t FrameDepotBytes() noexcept {
  return GetDepot().bytes.load(std::memory_order_relaxed);
}

}  // namespace spindle::executor_internal
