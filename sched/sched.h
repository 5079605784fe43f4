// sched/sched.h: the sched layer in one include.
//
// Reach for `QueueSet` (sched/queue_set.h) to share a thread between queues by
// EEVDF, and for the schedulers in sched/scheduler.h to order the tasks of one
// queue.  Tasks embed a `TaskNode` (sched/task_node.h).

#ifndef SPINDLE_SCHED_SCHED_H_
#define SPINDLE_SCHED_SCHED_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <string_view>

#include "sched/queue_set.h"
#include "sched/scheduler.h"
#include "sched/task_node.h"

namespace spindle::sched {

// The sched layer's version (see sched/VERSION and sched/CHANGELOG.md).
inline constexpr std::string_view kVersion = "0.1.1";

}  // namespace spindle::sched

#endif  // SPINDLE_SCHED_SCHED_H_
