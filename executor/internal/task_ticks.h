// executor/internal/task_ticks.h: the per-task timing of
// ExecutorBuilder::TaskTiming(), kept beside a task's header (task.h).

#ifndef SPINDLE_EXECUTOR_INTERNAL_TASK_TICKS_H_
#define SPINDLE_EXECUTOR_INTERNAL_TASK_TICKS_H_

#include <cstdint>
#include <memory>
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

// Frees a header's TaskTicks (frame-allocator memory, on whichever thread
// frees the cell).
struct FreeTaskTicks {
  void operator()(TaskTicks* k) const noexcept {
    FreeFrame(k, sizeof(TaskTicks));  // trivially destructible
  }
};
using TaskTicksPtr = std::unique_ptr<TaskTicks, FreeTaskTicks>;

// Gives `ticks` its record, the spawn tick set (kept if it has one); false
// when out of memory (the task is then not timed).
inline bool AttachTicks(TaskTicksPtr& ticks, uint64_t spawned) noexcept {
  if (ticks != nullptr) return true;
  try {
    ticks.reset(::new (AllocateFrame(sizeof(TaskTicks))) TaskTicks());
  } catch (...) {
    return false;
  }
  ticks->spawned = spawned;
  return true;
}

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_TASK_TICKS_H_
