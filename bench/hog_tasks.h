// bench/hog_tasks.h: the hog benchmark's tasks (workloads_spindle.cc),
// shared with hog_mt (workloads_mt.cc).
#ifndef SPINDLE_BENCH_HOG_TASKS_H_
#define SPINDLE_BENCH_HOG_TASKS_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "executor/task.h"

namespace spindle::bench {

// Sleeps `ms`, then sets `stop`.
Task<void> Stopper(uint64_t ms, std::atomic<bool>* stop);
// Sleeps 1 ms at a time and records how late it woke.
Task<void> Sensitive(const std::atomic<bool>* stop, std::vector<double>* late);
// Never yields on its own: spins in small steps and calls YieldMaybe.
Task<void> MaybeSpinner(const std::atomic<bool>* stop);
// Overruns its polls: 3 ms of CPU between yields.
Task<void> Overrunner(const std::atomic<bool>* stop);
// Appends <id>_p50 and <id>_p99 of every sleeper's lateness to `rows`.
void AppendLatenessRows(const std::string& id,
                        const std::vector<std::vector<double>>& late,
                        Rows& rows);

}  // namespace spindle::bench

#endif  // SPINDLE_BENCH_HOG_TASKS_H_
