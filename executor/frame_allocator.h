// executor/frame_allocator.h: the recycling allocator for task frames.
//
// Every coroutine frame of a Spindle task (with its TaskHeader in front of
// it) comes from here.  Sizes are rounded up to 64-byte classes up to
// kMaxPooledSize; each thread keeps a free list per class, so steady-state
// spawning never calls malloc.  Larger frames go to ::operator new.
//
// Thread safety: Allocate and Free may be called on any thread, and a block
// may be freed on a thread other than the one that allocated it (a frame of
// a task spawned through a Spawner, or one that moved between shards): the
// block simply joins the freeing thread's list.  A thread caches at most
// kMaxCachedBytes of free frames (all classes together); beyond that blocks
// go back to the system, so a burst of a million tasks does not pin its
// memory for the life of the thread.  A thread's lists are released when the
// thread exits.

#ifndef SPINDLE_EXECUTOR_FRAME_ALLOCATOR_H_
#define SPINDLE_EXECUTOR_FRAME_ALLOCATOR_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <cstddef>
#include <cstdint>

namespace spindle::executor_internal {

inline constexpr size_t kFrameGranule = 64;
inline constexpr size_t kMaxPooledSize = 4096;
inline constexpr size_t kNumFrameClasses = kMaxPooledSize / kFrameGranule;
inline constexpr size_t kMaxCachedBytes = size_t{64} << 20;  // 64 MiB

// Returns a block of at least `size` bytes, aligned to
// __STDCPP_DEFAULT_NEW_ALIGNMENT__.  Throws std::bad_alloc only when the
// system is out of memory (coroutine frame allocation may throw).
void* AllocateFrame(size_t size);

// Returns a block to the calling thread's free list.  `size` must be the
// size passed to AllocateFrame.
void FreeFrame(void* block, size_t size) noexcept;

// Per-thread counters, for tests and stats.
struct FrameAllocatorStats {
  uint64_t pooled_allocs = 0;  // served from a free list
  uint64_t system_allocs = 0;  // went to ::operator new
  uint64_t cached_blocks = 0;  // currently on this thread's lists
  uint64_t cached_bytes = 0;
};
FrameAllocatorStats ThreadFrameStats() noexcept;

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_FRAME_ALLOCATOR_H_
