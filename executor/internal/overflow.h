// executor/internal/overflow.h: the batches a full deque hands to the
// other workers.
//
// A worker whose deque is full (or past StealOptions::
// stealable_queue_capacity) moves its older half and the new task out in
// one batch.  Linked task by task on the shared injector, a batch cost its
// taker a miss per task, one after the other: the injector's links run
// through the tasks' headers, built on the spawning worker (`skewed`'s
// workers spent ~3% of their time there).  An `OverflowBatch` holds the
// task pointers in an array instead: its taker reads a few lines and
// prefetches the tasks together.
//
// Protocol.
//   O1. The spawning worker takes a batch from its own pool (`OverflowPool`:
//       its free list, refilled from the batches other workers gave back,
//       grown by `new` up to kOverflowPoolSize batches), fills it and pushes
//       it on RuntimeShared::overflow (an Injector: the push publishes the
//       array).  With the pool spent it links the tasks on the shared
//       injector as before: nothing waits for a batch.
//   O2. A worker that takes a batch (PopOverflow, worker_loop.cc) moves as
//       many of its tasks as its deque has room for (stealable there, as
//       any task of its deque), runs the first, and pushes the rest of the
//       batch back on `overflow`, or, when none is left, gives the batch
//       back to its home worker's `returned` injector.
//   O3. Only the thread holding a batch (between its pop and its push)
//       reads or writes it; the injectors' release and acquire hand it on.
//   Shutdown (S4): the tasks of the batches left on `overflow` are
//   cancelled with the other unbound tasks, and their batches given back;
//   each pool deletes its batches when its worker is destroyed, after every
//   thread is joined.
//
// Thread safety: OverflowPool::Get is for its worker's thread only;
// GiveBack may be called from any thread.

#ifndef SPINDLE_EXECUTOR_INTERNAL_OVERFLOW_H_
#define SPINDLE_EXECUTOR_INTERNAL_OVERFLOW_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>

#include "executor/task.h"
#include "steal/injector.h"
#include "steal/work_deque.h"

namespace spindle::executor_internal {

struct OverflowPool;

// Tasks one spill moves: half a full ring and the task being spawned.
inline constexpr size_t kOverflowBatchCapacity =
    steal::WorkDeque<TaskHeader>::kMaxBatch + 1;
// Batches a worker may have out at once (~1 KiB each, made as bursts
// need them and kept: ~1 MiB for 131k queued tasks, which take 40 MiB
// themselves); past them its spills are linked on the shared injector.
// 64 were too few: `skewed`'s root spills 138 batches in 0.8 ms, and the
// linked half cost most of the gain.
inline constexpr uint32_t kOverflowPoolSize = 1024;

struct OverflowBatch : steal::InjectorNode {
  OverflowPool* home = nullptr;  // whose pool it goes back to
  uint32_t size = 0;             // items[0, size) were spilled
  uint32_t next = 0;             // items[next, size) are still queued
  std::array<TaskHeader*, kOverflowBatchCapacity> items;
  OverflowBatch* next_free = nullptr;  // on its pool's free list
};

struct OverflowPool {
  OverflowPool() = default;
  OverflowPool(const OverflowPool&) = delete;
  OverflowPool& operator=(const OverflowPool&) = delete;
  ~OverflowPool() {
    Reclaim();
    while (free != nullptr) {
      OverflowBatch* b = free;
      free = b->next_free;
      delete b;
    }
  }

  // The worker's thread.  An empty batch, or null with the pool spent.
  OverflowBatch* Get() noexcept {
    if (free == nullptr) Reclaim();
    if (free == nullptr) {
      if (allocated == kOverflowPoolSize) return nullptr;
      OverflowBatch* b = new (std::nothrow) OverflowBatch;
      if (b == nullptr) return nullptr;
      b->home = this;
      allocated++;
      return b;
    }
    OverflowBatch* b = free;
    free = b->next_free;
    return b;
  }

  // Any thread: `b` (of this pool) is empty and no longer used.
  void GiveBack(OverflowBatch* b) noexcept { returned.Push(b); }

 private:
  // The batches other threads gave back join the free list.
  void Reclaim() noexcept {
    std::array<OverflowBatch*, 16> got;
    size_t n = 0;
    while ((n = returned.PopBatch(got.data(), got.size())) != 0) {
      for (size_t i = 0; i < n; ++i) {
        got[i]->next_free = free;
        free = got[i];
      }
    }
  }

  OverflowBatch* free = nullptr;  // the worker's thread only
  uint32_t allocated = 0;         // the worker's thread only
  steal::Injector<OverflowBatch> returned;
};

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_OVERFLOW_H_
