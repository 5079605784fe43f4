// The frame allocator's depot: frames freed on one thread reach a thread
// that allocates (the way back of a Runtime worker whose tasks are stolen),
// and the depot stays bounded.  Counts come from the allocator's own
// per-thread stats, so this runs under every sanitizer.
#include "executor/frame_allocator.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace spindle::executor_internal {
namespace {

// 4 KiB frames: the class whose bound is the fewest blocks.
constexpr size_t kFrameSize = kMaxPooledSize;
constexpr size_t kClassBlocks = MaxClassBlocks(kMaxPooledSize);

// Round r: a producer thread allocates `n` frames; this thread frees them.
// Returns the producer's system allocations in each round.
std::vector<uint64_t> ProducerConsumerRounds(int rounds, size_t n,
                                             size_t size) {
  std::vector<void*> blocks(n);
  std::vector<uint64_t> system_allocs(rounds);
  // Rounds handed back and forth (release / acquire: the blocks go with
  // them).  Plain atomics, so that ThreadSanitizer sees the hand-over.
  std::atomic<int> allocated{0};
  std::atomic<int> freed{0};
  std::thread producer([&] {
    for (int r = 0; r < rounds; ++r) {
      const uint64_t before = ThreadFrameStats().system_allocs;
      for (size_t i = 0; i < n; ++i) blocks[i] = AllocateFrame(size);
      system_allocs[r] = ThreadFrameStats().system_allocs - before;
      allocated.store(r + 1, std::memory_order_release);
      while (freed.load(std::memory_order_acquire) <= r) {
        std::this_thread::yield();
      }
    }
  });
  for (int r = 0; r < rounds; ++r) {
    while (allocated.load(std::memory_order_acquire) <= r) {
      std::this_thread::yield();
    }
    for (void* b : blocks) FreeFrame(b, size);
    freed.store(r + 1, std::memory_order_release);
  }
  producer.join();
  return system_allocs;
}

TEST(FrameAllocatorTest, FramesFreedOnAnotherThreadComeBackThroughTheDepot) {
  constexpr size_t kN = 2 * kClassBlocks;
  const FrameAllocatorStats before = ThreadFrameStats();
  const std::vector<uint64_t> allocs =
      ProducerConsumerRounds(4, kN, kFrameSize);
  // Round 0 has nothing to reuse.  From round 2 on every frame comes back
  // from this thread's frees (it kept a full list after round 0, and hands
  // on the rest).
  EXPECT_EQ(allocs[0], kN);
  for (size_t r = 2; r < allocs.size(); ++r) {
    EXPECT_EQ(allocs[r], 0u) << "round " << r
                             << ": frames freed here never came back";
  }
  const FrameAllocatorStats after = ThreadFrameStats();
  // Kept: a full list and a partial outgoing batch.
  EXPECT_LE(after.cached_blocks - before.cached_blocks,
            kClassBlocks + kDepotBatch);
  EXPECT_GE(after.depot_spills - before.depot_spills,
            (kN - kClassBlocks + 2 * kN) / kDepotBatch);
}

TEST(FrameAllocatorTest, TheDepotIsBoundedAndSpillsPastItGoToTheSystem) {
  // More 4 KiB frames than this thread and the depot may keep, all freed
  // on this thread.
  const size_t n =
      kClassBlocks + kMaxDepotBytes / kMaxPooledSize + 4 * kDepotBatch;
  const uint64_t cached_before = ThreadFrameStats().cached_blocks;
  std::vector<void*> blocks(n);
  for (void*& b : blocks) b = AllocateFrame(kMaxPooledSize);
  for (void* b : blocks) FreeFrame(b, kMaxPooledSize);
  EXPECT_LE(FrameDepotBytes(), kMaxDepotBytes);
  EXPECT_GT(FrameDepotBytes(), kMaxDepotBytes / 2);
  // This thread keeps at most a full list and a partial outgoing batch.
  EXPECT_LE(ThreadFrameStats().cached_blocks,
            cached_before + kClassBlocks + kDepotBatch);
  // Taking them back takes the depot's batches of that class.
  const size_t depot_before = FrameDepotBytes();
  for (void*& b : blocks) b = AllocateFrame(kMaxPooledSize);
  EXPECT_LT(FrameDepotBytes(), depot_before);
  for (void* b : blocks) FreeFrame(b, kMaxPooledSize);
}

// The bound over all classes (kMaxCachedBytes) holds when each class stays
// under its own bound, and the lists take frees again once emptied.
TEST(FrameAllocatorTest, AThreadCachesAtMostMaxCachedBytesOverAllClasses) {
  std::thread([] {
    // Five classes, each filled to its own bound: 80 MiB in all.
    constexpr size_t kClasses = 5;
    auto size_of = [](size_t k) { return kMaxPooledSize - k * kFrameGranule; };
    std::vector<std::vector<void*>> blocks(kClasses);
    size_t total_bytes = 0;
    for (size_t k = 0; k < kClasses; ++k) {
      const size_t size = size_of(k);
      blocks[k].resize(MaxClassBlocks(size));
      for (void*& b : blocks[k]) b = AllocateFrame(size);
      total_bytes += blocks[k].size() * size;
    }
    ASSERT_GT(total_bytes, kMaxCachedBytes);
    ASSERT_EQ(ThreadFrameStats().cached_bytes, 0u);
    const size_t depot_before = FrameDepotBytes();  // other tests' batches
    for (size_t k = 0; k < kClasses; ++k) {
      for (void* b : blocks[k]) FreeFrame(b, size_of(k));
    }
    const FrameAllocatorStats full = ThreadFrameStats();
    EXPECT_LE(full.cached_bytes, kMaxCachedBytes);
    EXPECT_GT(full.cached_bytes, kMaxCachedBytes - kMaxPooledSize);
    EXPECT_EQ(FrameDepotBytes(), depot_before)
        << "no class passed its own bound";
    // Take everything cached back: pooled, and the lists end empty.
    const uint64_t pooled_before = full.pooled_allocs;
    for (size_t k = 0; k < kClasses; ++k) {
      for (void*& b : blocks[k]) b = AllocateFrame(size_of(k));
    }
    const FrameAllocatorStats drained = ThreadFrameStats();
    EXPECT_EQ(drained.pooled_allocs - pooled_before, full.cached_blocks);
    EXPECT_EQ(drained.cached_bytes, 0u);
    // Emptied, the lists take frees again (up to the bound).
    for (size_t k = 0; k < kClasses; ++k) {
      for (void* b : blocks[k]) FreeFrame(b, size_of(k));
    }
    EXPECT_EQ(ThreadFrameStats().cached_bytes, full.cached_bytes);
  }).join();
}

// Threads that allocate and free each other's frames at once: every block
// is handed out to one owner at a time (the sanitizers check the rest).
TEST(FrameAllocatorTest, ConcurrentCrossThreadFreesStress) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kRounds = 20;
#else
  constexpr int kRounds = 200;
#endif
  constexpr int kThreads = 4;
  constexpr size_t kPer = kClassBlocks + 4 * kDepotBatch;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        // Allocate and stamp; a block handed out twice at once would carry
        // another owner's stamp when checked.
        std::vector<uint64_t*> mine(kPer);
        for (size_t i = 0; i < kPer; ++i) {
          mine[i] = static_cast<uint64_t*>(AllocateFrame(kFrameSize));
          mine[i][1] = (uint64_t{static_cast<uint32_t>(t)} << 32) | i;
        }
        for (size_t i = 0; i < kPer; ++i) {
          ASSERT_EQ(mine[i][1], (uint64_t{static_cast<uint32_t>(t)} << 32) | i)
              << "a block was handed out twice";
        }
        // Free on a fresh thread: every block crosses threads.
        std::thread freer([&] {
          for (uint64_t* b : mine) FreeFrame(b, kFrameSize);
        });
        freer.join();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(FrameDepotBytes(), kMaxDepotBytes);
}

}  // namespace
}  // namespace spindle::executor_internal
