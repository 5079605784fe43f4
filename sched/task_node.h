// sched/task_node.h: the intrusive node every Spindle scheduler links.
//
// Reach for `TaskNode` when you write a task type: embed one (the executor's
// `TaskHeader` does) and hand its address to a `TaskScheduler` or a
// `QueueSet`.  No scheduler ever allocates per task: they link the node's own
// `next` / `prev` pointers, or, for heap-ordered schedulers, keep the node's
// slot in `aux`.

#ifndef SPINDLE_SCHED_TASK_NODE_H_
#define SPINDLE_SCHED_TASK_NODE_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <cstdint>
#include <string_view>

namespace spindle::sched {

// CPU priority of a task (monad's three levels).  Lower value runs first:
// FifoScheduler (every queue's default) and PriorityScheduler order by it;
// LifoScheduler and LasScheduler ignore it.  The executor exposes it as
// `spindle::Priority`.
enum class Priority : uint8_t { kHigh = 0, kNormal = 1, kLow = 2 };

inline constexpr int kNumPriorities = 3;

std::string_view PriorityName(Priority priority) noexcept;

// TaskNode: the scheduling part of a task, linked intrusively.
//
// Requires: a node is queued in at most one scheduler at a time, and is not
// moved or destroyed while `queued` is true.
// Guarantees: schedulers touch only `next`, `prev`, `aux` and `queued`
// (QueueSet also writes `queue_index` on Push and adds to `attained_service`
// on Charge); `priority`, `enqueue_tick` and `attained_service` are read, never
// reset, so the owner may keep its own meaning in them.
// Thread safety: none; a node belongs to the thread that owns its scheduler
// while it is queued.
//
// Example:
//   struct MyTask { spindle::sched::TaskNode node; int payload; };
//   MyTask t;
//   t.node.priority = spindle::sched::Priority::kHigh;
//   fifo.Push(&t.node);
struct TaskNode {
  TaskNode* next = nullptr;
  TaskNode* prev = nullptr;
  // Ticks of service so far.  LAS orders by it; QueueSet::Charge adds to it.
  uint64_t attained_service = 0;
  // Set by whoever pushes (for the owner's own aging or accounting); may be 0.
  // No built-in scheduler reads a clock or this field.
  uint64_t enqueue_tick = 0;
  // Scheduler-private: PriorityScheduler keeps the pop count at which the task
  // entered its level here, LasScheduler its heap slot.
  uint32_t aux = 0;
  // The QueueSet queue the task was last pushed to (set by QueueSet::Push).
  uint16_t queue_index = 0;
  Priority priority = Priority::kNormal;
  // True while the node is linked in some scheduler.
  bool queued = false;
};

}  // namespace spindle::sched

#endif  // SPINDLE_SCHED_TASK_NODE_H_
