// executor/frame_allocator.h: the recycling allocator for task frames.
//
// Every coroutine frame of a Spindle task (with its TaskHeader in front of
// it) comes from here.  Sizes are rounded up to 32-byte classes up to
// kMaxPooledSize; each thread keeps a free list per class, so steady-state
// spawning never calls malloc.  Larger frames go to ::operator new.
//
// Thread safety: Allocate and Free may be called on any thread, and a block
// may be freed on a thread other than the one that allocated it (a frame of
// a task spawned through a Spawner, or stolen by another Runtime worker):
// the block joins the freeing thread's list.  A thread caches at most
// kMaxCachedBytes of free frames (all classes together); beyond that blocks
// go back to the system, so a burst of a million tasks does not pin its
// memory for the life of the thread.  A thread's lists are released when the
// thread exits.
//
// The way back (the depot).  When a thread spawns and another completes
// (a Runtime worker whose tasks are stolen), the freeing thread's list of a
// size class grows while the spawning thread's is empty.  So once a list
// holds kMaxClassBytes, further frees of that class gather in batches of
// kDepotBatch that go to a process-wide depot (one lock per batch), and a
// thread whose list is empty takes a batch from the depot before it calls
// ::operator new.  The bound is high on purpose: a thread reuses its own
// frames first (warm in its cache; a block from another core's cache costs
// a transfer per line), so only a lasting imbalance goes through the depot.
// The depot holds at most kMaxDepotBytes; beyond that a spilled batch goes
// back to the system.

#ifndef SPINDLE_EXECUTOR_FRAME_ALLOCATOR_H_
#define SPINDLE_EXECUTOR_FRAME_ALLOCATOR_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace spindle::executor_internal {

// 32, not a cache line: a header and a small coroutine frame come to
// ~290 bytes, and a burst of 100k spawns writes 32 MB in 320-byte blocks
// but 29 MB in 288-byte ones, which settle in the cache at once on this
// project's VMs (`mt_spawn` on 1 worker: 0.98-1.00x -> 0.88-0.94x oneTBB;
// bench/history.md).
inline constexpr size_t kFrameGranule = 32;
inline constexpr size_t kCacheLine = 64;  // PopFrameBlock's prefetch step
inline constexpr size_t kMaxPooledSize = 4096;
inline constexpr size_t kNumFrameClasses = kMaxPooledSize / kFrameGranule;
inline constexpr size_t kMaxCachedBytes = size_t{64} << 20;  // 64 MiB
inline constexpr size_t kDepotBatch = 64;  // blocks per depot batch
// Lines of the next block that an allocation prefetches (PopFrameBlock),
// when more than kPrefetchMinBlocks blocks are on its list.
inline constexpr size_t kPrefetchLines = 8;
inline constexpr uint32_t kPrefetchMinBlocks = 256;
// Per thread and size class; the bound is the same for every class.
inline constexpr size_t kMaxClassBytes = size_t{16} << 20;  // 16 MiB
inline constexpr size_t kMaxDepotBytes = size_t{64} << 20;  // 64 MiB

// The blocks of `block_size` (a multiple of kFrameGranule) a thread keeps
// on its list of that class before it hands batches to the depot: a
// multiple of kDepotBatch.
constexpr size_t MaxClassBlocks(size_t block_size) {
  return kMaxClassBytes / block_size / kDepotBatch * kDepotBatch;
}

// The hot half of a thread's cache, in the header so that AllocateFrame
// and FreeFrame inline their common cases (a list has a block; a list has
// room): a spawn allocates and frees one frame, and the call, the checks
// and the stats of an out-of-line allocator were ~80 of its ~600
// instructions.  Everything else (the first use, a list that is empty or
// full, the depot, thread exit) is out of line (frame_allocator.cc).
struct FrameBlock {
  FrameBlock* next;        // the next block of the list (or of the batch)
  FrameBlock* next_batch;  // in the depot, on a batch's first block
};
static_assert(sizeof(FrameBlock) <= kFrameGranule);

// Only its own thread touches it.  Constant-initialised (all zero) and
// trivially destructible: usable at any point of the thread's life.
struct FrameLists {
  FrameBlock* heads[kNumFrameClasses];
  uint32_t counts[kNumFrameClasses];  // blocks on each list
  // Bytes the thread may still cache: kMaxCachedBytes less what it holds.
  // 0 until the first out-of-line call arms the cache, and again once the
  // thread has exited (so both take the out-of-line path).  Signed: a
  // batch from the depot may take it below 0 for a while.
  int64_t room;
  uint64_t pooled_allocs;  // FrameAllocatorStats::pooled_allocs
  // Allocations still to prefetch whole blocks for after a refill (the
  // refilled blocks were freed long ago, or on another thread); see
  // PopFrameBlock.
  uint32_t cold_pops;
};
inline constinit thread_local FrameLists tl_frame_lists{};

// MaxClassBlocks of each class, so that a free does not divide.
struct FrameClassBounds {
  uint32_t blocks[kNumFrameClasses];
  constexpr FrameClassBounds() : blocks{} {
    for (size_t c = 0; c < kNumFrameClasses; ++c) {
      blocks[c] =
          static_cast<uint32_t>(MaxClassBlocks((c + 1) * kFrameGranule));
    }
  }
};
inline constexpr FrameClassBounds kFrameClassBounds;

// A list's front block, for a non-empty list of class c.
[[gnu::always_inline]] inline FrameBlock* PopFrameBlock(FrameLists& l,
                                                        size_t c) noexcept {
  FrameBlock* b = l.heads[c];
  l.heads[c] = b->next;
  // The next block is the next spawn's (it may come from another
  // thread's cache, through the depot): start fetching it for writing now,
  // while this frame is built.  From a long list, every line of it (up to
  // kPrefetchLines), not only the first: a burst of spawns writes whole
  // blocks, and a long list holds blocks freed long ago, past the cache,
  // where each line is a miss (1A and fiber_spawn at N = 100k: the spawn
  // loop went from ~24.5 to ~20.5 ns a task).  A short list's blocks were
  // freed recently and are still cached: there the extra prefetches only
  // cost (`mt_fib`, a spawn and a join at a time: +3-4% with them; its
  // lists hold 8-64 blocks).  Blocks a refill brought (from the depot, or
  // this thread's spilled batch) are cold however short the list: the
  // refill's batch is prefetched so too (cold_pops).
  const char* n = reinterpret_cast<const char*>(b->next);
  __builtin_prefetch(n, 1);
  if (l.counts[c] > kPrefetchMinBlocks || l.cold_pops != 0) {
    l.cold_pops -= l.cold_pops != 0;
    const size_t bytes = std::min((c + 1) * kFrameGranule,
                                  kPrefetchLines * kCacheLine);
    for (size_t off = kCacheLine; off < bytes; off += kCacheLine) {
      __builtin_prefetch(n + off, 1);
    }
  }
  l.counts[c]--;
  l.room += static_cast<int64_t>((c + 1) * kFrameGranule);
  l.pooled_allocs++;
  return b;
}
// Puts `block` on the list of class c (the caller checked room and bound).
[[gnu::always_inline]] inline void PushFrameBlock(FrameLists& l, size_t c,
                                                  void* block) noexcept {
  auto* b = static_cast<FrameBlock*>(block);
  b->next = l.heads[c];
  l.heads[c] = b;
  l.counts[c]++;
  l.room -= static_cast<int64_t>((c + 1) * kFrameGranule);
}

void* AllocateFrameSlow(size_t size);
void FreeFrameSlow(void* block, size_t size) noexcept;

// Returns a block of at least `size` bytes, aligned to
// __STDCPP_DEFAULT_NEW_ALIGNMENT__.  Throws std::bad_alloc only when the
// system is out of memory (coroutine frame allocation may throw).
inline void* AllocateFrame(size_t size) {
  if (size - 1 < kMaxPooledSize) [[likely]] {  // 1..kMaxPooledSize
    const size_t c = (size - 1) / kFrameGranule;
    FrameLists& l = tl_frame_lists;
    if (l.heads[c] != nullptr) [[likely]] return PopFrameBlock(l, c);
  }
  return AllocateFrameSlow(size);
}

// Returns a block to the calling thread's free list.  `size` must be the
// size passed to AllocateFrame.
inline void FreeFrame(void* block, size_t size) noexcept {
  if (size - 1 < kMaxPooledSize) [[likely]] {
    const size_t c = (size - 1) / kFrameGranule;
    const int64_t block_size = static_cast<int64_t>((c + 1) * kFrameGranule);
    FrameLists& l = tl_frame_lists;
    if (l.room >= block_size && l.counts[c] < kFrameClassBounds.blocks[c])
        [[likely]] {
      PushFrameBlock(l, c, block);
      return;
    }
  }
  FreeFrameSlow(block, size);
}

// Per-thread counters, for tests and stats.
struct FrameAllocatorStats {
  uint64_t pooled_allocs = 0;  // served from a free list
  uint64_t system_allocs = 0;  // went to ::operator new
  uint64_t cached_blocks = 0;  // currently on this thread's lists
  uint64_t cached_bytes = 0;
  uint64_t depot_refills = 0;  // batches this thread took from the depot
  uint64_t depot_spills = 0;   // batches this thread gave to the depot
};
FrameAllocatorStats ThreadFrameStats() noexcept;

// Bytes of free frames in the depot now (any thread).
size_t FrameDepotBytes() noexcept;

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_FRAME_ALLOCATOR_H_
