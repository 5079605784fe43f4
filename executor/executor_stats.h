// executor/executor_stats.h: what LocalExecutor::Stats() and the poll
// monitor report (ExecutorStats, QueueStatsSnapshot, MonitorReport).
// Included by executor/local_executor.h; include either.

#ifndef SPINDLE_EXECUTOR_EXECUTOR_STATS_H_
#define SPINDLE_EXECUTOR_EXECUTOR_STATS_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "budget/tier.h"
#include "sched/queue_set.h"

namespace spindle {

// Statistics of one queue.
struct QueueStatsSnapshot {
  sched::QueueStats sched;  // service, polls, picks, lag, slices, overruns
  // Queue delay (push to pick) in log2 buckets of TSC ticks: bucket b
  // counts delays in [2^(b-1), 2^b) ticks (ExecutorStats::ns_per_tick
  // converts); bucket 0 counts zero.  Sampled: one delay per slice (the
  // run loop's run of polls of one queue between two clock reads), that of
  // the slice's first task, measured to the slice's start; the totals over
  // all queues equal ExecutorStats::slices.  A task queued while the
  // executor was not running (spawned or woken before a Run, or between
  // Runs) counts from the Run's start, the earliest it could be picked.
  std::array<uint64_t, 65> delay_histogram{};
  // Poll duration, in the same buckets: a poll timed on its own enters at
  // its length, the n polls of a longer slice at the slice's mean.  The
  // total equals sched.polls.  Both histograms stay empty with
  // CollectStats(false).
  std::array<uint64_t, 65> poll_histogram{};
  // Polls of this queue that ended with the queue set asking for a switch
  // (ShouldPreempt: a wake-up into a queue that should run first);
  // sched.preemptions counts the wake-ups that asked.
  uint64_t preemptions = 0;
};

// Statistics of one executor.  Taken on the executor's thread (or while it is
// not running).
struct ExecutorStats {
  uint64_t polls = 0;
  // Slices: runs of polls of one queue with one clock read at the end (see
  // docs/guides/single_thread.md, "The run loop"); polls / slices is the
  // mean slice.  One loop iteration per slice, per park, and one to end.
  uint64_t slices = 0;
  // Tasks a sync primitive woke inside a poll that ran next in the same
  // slice, from the hand-off slot (docs/guides/single_thread.md, "The run
  // loop"), without a trip through their queue.
  uint64_t handoffs = 0;
  uint64_t loop_iterations = 0;
  uint64_t driver_yields = 0;  // driver polls while tasks were runnable
  uint64_t max_ns_without_driver_yield = 0;
  uint64_t busy_ns = 0;  // time inside task polls
  uint64_t idle_ns = 0;  // time parked in the driver
  uint64_t parks = 0;    // waits in the driver with nothing runnable
  // Reads of the thread's CPU time and context switches (two system calls)
  // for the preemption discount of slow polls: at most about one per
  // millisecond of running, plus one per slow poll and per park of 50 us or
  // more (docs/guides/single_thread.md, "Tasks that hog the thread").
  uint64_t cpu_time_reads = 0;
  // Every spawned task is counted once when it ends: spawns + moved_in ==
  // completions + failed + cancellations + moved_out + live_tasks at any
  // time (moved_in / moved_out: started tasks a Runtime worker took over
  // from another worker / handed to another; 0 on a LocalExecutor).
  uint64_t spawns = 0;
  uint64_t moved_in = 0;
  uint64_t moved_out = 0;
  uint64_t completions = 0;    // returned a value
  uint64_t failed = 0;         // ended by an exception
  uint64_t cancellations = 0;  // aborted, stopped or dropped at shutdown
  // Of `failed`: tasks nobody holds a handle to (detached), so nobody will
  // see the exception.  The first one is logged on stderr.
  uint64_t unhandled_exceptions = 0;
  uint64_t stops = 0;  // RequestStop()s acted on
  // Joined tasks that ran inside their joiner's poll (inline joins: a task
  // that had not started, joined by a task of the same executor, or on a
  // Runtime worker the newest of its deque); each is counted as a spawn and
  // by its outcome when it ends, on the executor that ends it.
  uint64_t joins_inlined = 0;
  // Polls the monitor saw run past the tiers' threshold / the stuck
  // threshold while they ran (0 with NoMonitor()).
  uint64_t monitor_slow_polls = 0;
  uint64_t monitor_stuck_polls = 0;
  uint64_t tier_warnings = 0;
  uint64_t tier_yields = 0;
  uint64_t tier_isolations = 0;
  uint64_t tier_restores = 0;  // tasks moved back from the isolation lane
  // Slow polls whose wall time was cut by time the OS preempted the thread
  // before the tiers judged them.
  uint64_t preempted_polls = 0;
  uint64_t live_tasks = 0;
  std::string_view driver;
  double ns_per_tick = 0;  // for the tick-based histograms
  // Queue weights inside the queue set are the user shares times this
  // (queues[i].sched.share reports the user's share; the isolation lane's
  // is its internal weight, in user units divided by share_scale).
  uint32_t share_scale = 1;
  std::vector<QueueStatsSnapshot> queues;
  budget::TierMetrics tiers;
};

// What the process's poll monitor saw (ExecutorBuilder::OnMonitorReport).
// The monitor thread samples running executors and reports, while the
// poll is still running: a poll longer than the tiers' violation threshold
// (kSlowPoll) and a poll longer than the stuck threshold (kStuck; also
// logged on stderr).  Each poll is reported at most once per kind.
struct MonitorReport {
  enum class Kind : uint8_t { kSlowPoll, kStuck };
  Kind kind = Kind::kSlowPoll;
  uint64_t task_id = 0;
  std::string name;         // SpawnOptions::name, or "unnamed"
  uint64_t running_ns = 0;  // how long the poll had run (at least)
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_EXECUTOR_STATS_H_
