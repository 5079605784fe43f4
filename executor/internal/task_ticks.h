// executor/internal/task_ticks.h: the per-task timing of
// ExecutorBuilder::TaskTiming(), kept beside a task's header (task.h).

#ifndef SPINDLE_EXECUTOR_INTERNAL_TASK_TICKS_H_
#define SPINDLE_EXECUTOR_INTERNAL_TASK_TICKS_H_

#include <cstdint>
#include <new>

#include "executor/frame_allocator.h"

namespace spindle::executor_internal {

// A timed task's ticks (ExecutorBuilder::TaskTiming), TSC, 0: not yet.  Kept
// beside the header, not in it: most executors do not time their tasks, and
// 40 bytes in every header cost a burst of spawns the memory it writes.
struct TaskTicks {
  uint64_t spawned = 0;
  uint64_t first_run = 0;
  uint64_t resumed = 0;
  uint64_t suspended = 0;
  uint64_t done = 0;
};

// Owns a header's TaskTicks (frame-allocator memory, freed with the cell on
// whichever thread frees it).
class TaskTicksPtr {
 public:
  TaskTicksPtr() noexcept = default;
  TaskTicksPtr(const TaskTicksPtr&) = delete;
  TaskTicksPtr& operator=(const TaskTicksPtr&) = delete;
  ~TaskTicksPtr() {
    if (p_ != nullptr) FreeFrame(p_, sizeof(TaskTicks));
  }
  // Allocates the ticks, the spawn tick set; false when out of memory (the
  // task is then not timed).
  bool Attach(uint64_t spawned) noexcept {
    if (p_ != nullptr) return true;
    try {
      p_ = ::new (AllocateFrame(sizeof(TaskTicks))) TaskTicks();
    } catch (...) {
      return false;
    }
    p_->spawned = spawned;
    return true;
  }
  TaskTicks* get() const noexcept { return p_; }
  TaskTicks* operator->() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  TaskTicks* p_ = nullptr;
};

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_TASK_TICKS_H_
