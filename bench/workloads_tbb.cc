// bench/workloads_tbb.cc: the oneTBB 2021.8 peer for task spawning (1A):
// task_group::run of N tasks that each bump an atomic, then wait().  oneTBB
// uses every core (its default arena); Spindle's 1A is single-threaded.
#include <oneapi/tbb/task_group.h>

#include <atomic>

#include "bench/workloads.h"
#include "timing/clock.h"

namespace spindle::bench {

absl::StatusOr<Rows> TbbSpawn(const std::string& id, int64_t n) {
  oneapi::tbb::task_group group;
  std::atomic<uint64_t> counter{0};
  const uint64_t t0 = timing::MonotonicClock::Now();
  for (int64_t i = 0; i < n; ++i) {
    // relaxed: a plain count; group.wait() orders it before the load below.
    group.run([&counter] { counter.fetch_add(1, std::memory_order_relaxed); });
  }
  group.wait();
  Rows rows{Row{id, static_cast<double>(timing::MonotonicClock::Now() - t0),
                Unit::kNanos}};
  if (counter.load() != static_cast<uint64_t>(n)) {
    return absl::InternalError("tbb 1A: not every task ran");
  }
  return rows;
}

}  // namespace spindle::bench
