// executor/spawn_options.h: what a spawn may say about its task (its queue,
// its CPU and I/O priorities, its name), shared by LocalExecutor, Spawner
// and the Runtime (executor/runtime.h adds a Placement).

#ifndef SPINDLE_EXECUTOR_SPAWN_OPTIONS_H_
#define SPINDLE_EXECUTOR_SPAWN_OPTIONS_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <cstdint>
#include <optional>

#include "executor/executor_builder.h"
#include "reactor/reactor.h"
#include "sched/scheduler.h"

namespace spindle {

// The queue id the executor uses for its isolation lane when tiers are on.
inline constexpr QueueId kIsolationQueueId = 0xFFFFFFFFu;

// The share of the default queue (id 0) when no WithQueue is given.
inline constexpr uint32_t kDefaultQueueShare = 100;

// CPU priority of a task: high, normal (the default) or low.  One value
// drives both places a task's CPU priority matters:
//   - its queue's scheduler: the default FIFO runs a queue's high tasks
//     before its normal ones before its low ones, first in, first out within
//     one (strict: a lower priority waits while a higher one is runnable;
//     sched::PriorityScheduler ages waiting tasks up, and a scheduler that
//     ignores priority, such as sched::LifoScheduler(1) or a user's, may be
//     given to WithQueue).  Priority orders tasks within a queue; between
//     queues the shares decide.
//   - the tiers: a high task gets a larger poll budget and a longer CPU
//     threshold before it is judged slow, a low one smaller (TierConfig's
//     priority_budget_scale / priority_threshold_scale, high / normal / low
//     columns).
using Priority = sched::Priority;

// I/O priority of a task's operations: high, normal (the default) or low.
// On io_uring, the SQE's ioprio: kHigh is the real-time class, which needs
// CAP_SYS_NICE (without it the reactor falls back to normal priority and
// logs that once); kLow is the idle class.  Not applicable on epoll
// (ignored there).
using IoPriority = reactor::IoPriority;

// Per-task spawn settings.  Unset fields take the executor's defaults.
//
// Example:
//   spindle::SpawnOptions o;
//   o.priority = spindle::Priority::kHigh;
//   o.io_priority = spindle::IoPriority::kLow;
//   ex->Spawn(Work(), o);
struct SpawnOptions {
  std::optional<QueueId> queue;          // default: first queue
  Priority priority = Priority::kNormal;  // CPU: scheduler and tiers
  IoPriority io_priority = IoPriority::kNormal;
  const char* name = nullptr;  // for warnings; must outlive the task
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_SPAWN_OPTIONS_H_
