// bench/workloads_tbb.cc: the oneTBB 2021.8 peers: task spawning (1A:
// task_group::run of N tasks that each bump an atomic, then wait(); oneTBB
// uses every core, its default arena, while Spindle's 1A is single-threaded),
// and the multi-threaded rows (mt_fib, mt_spawn, skewed) in an arena of as
// many threads as the Runtime has workers.
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <deque>
#include <vector>

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

namespace {

// fib(n) as mt_fib runs it: every call with n >= 2 runs one child (n - 1)
// in a task_group and waits for it, computing n - 2 inline.
uint64_t TbbFibRec(int n) {
  if (n < 2) return static_cast<uint64_t>(n);
  uint64_t a = 0;
  oneapi::tbb::task_group g;
  g.run([&a, n] { a = TbbFibRec(n - 1); });
  const uint64_t b = TbbFibRec(n - 2);
  g.wait();
  return a + b;
}

}  // namespace

// mt_fib / mt_spawn peers: an arena of `workers` threads (the caller's
// thread is one of them, as Spindle's BlockOn root is one worker's task).
absl::StatusOr<Rows> TbbMtFib(const std::string& id, int64_t workers, int n) {
  oneapi::tbb::task_arena arena(static_cast<int>(workers));
  uint64_t v = 0;
  arena.execute([&] { v = TbbFibRec(n); });  // warm-up, as Spindle's
  const uint64_t t0 = timing::MonotonicClock::Now();
  arena.execute([&] { v = TbbFibRec(n); });
  Rows rows{Row{id, static_cast<double>(timing::MonotonicClock::Now() - t0),
                Unit::kNanos}};
  if (v != SerialFib(n)) return absl::InternalError("tbb mt_fib: wrong value");
  return rows;
}

absl::StatusOr<Rows> TbbMtSpawn(const std::string& id, int64_t workers,
                                int64_t n) {
  oneapi::tbb::task_arena arena(static_cast<int>(workers));
  std::atomic<uint64_t> counter{0};
  auto run = [&] {
    oneapi::tbb::task_group group;
    for (int64_t i = 0; i < n; ++i) {
      group.run(
          [&counter] { counter.fetch_add(1, std::memory_order_relaxed); });
    }
    group.wait();
  };
  arena.execute(run);  // warm-up, as Spindle's
  counter.store(0);
  const uint64_t t0 = timing::MonotonicClock::Now();
  arena.execute(run);
  Rows rows{Row{id, static_cast<double>(timing::MonotonicClock::Now() - t0),
                Unit::kNanos}};
  if (counter.load() != static_cast<uint64_t>(n)) {
    return absl::InternalError("tbb mt_spawn: not every task ran");
  }
  return rows;
}

// skewed's peer: the same walk on the arena's first thread, one
// task_group task per leaf (its result in a deque slot), then one wait.
absl::StatusOr<Rows> TbbSkewed(const std::string& id, int64_t workers, int n,
                               int cutoff) {
  oneapi::tbb::task_arena arena(static_cast<int>(workers));
  auto root = [n, cutoff] {
    std::deque<uint64_t> slots;
    std::vector<int> stack{n};
    uint64_t sum = 0;
    oneapi::tbb::task_group group;
    while (!stack.empty()) {
      const int k = stack.back();
      stack.pop_back();
      if (k < cutoff) {
        if (k < 2) {
          sum += static_cast<uint64_t>(k);
        } else {
          uint64_t* slot = &slots.emplace_back(0);
          group.run([slot, k] { *slot = SerialFib(k); });
        }
        continue;
      }
      stack.push_back(k - 1);
      stack.push_back(k - 2);
    }
    group.wait();
    for (const uint64_t v : slots) sum += v;
    return sum;
  };
  uint64_t v = 0;
  arena.execute([&] { v = root(); });  // warm-up, as Spindle's
  const uint64_t t0 = timing::MonotonicClock::Now();
  arena.execute([&] { v = root(); });
  Rows rows{Row{id, static_cast<double>(timing::MonotonicClock::Now() - t0),
                Unit::kNanos}};
  if (v != SerialFib(n)) return absl::InternalError("tbb skewed: wrong value");
  return rows;
}

}  // namespace spindle::bench
