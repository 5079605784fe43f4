// bench/workloads_floor.cc: the floors (the least code that does the job)
// and the helpers shared by every workload.
//
// Coroutine floors reuse executor_testing.h's FloorLoop (free-list frames,
// a ring of handles).  The I/O floors are raw liburing with nothing around
// it: NOPs in batches of 32, and IORING_OP_TIMEOUT for sleeps.
#include <liburing.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/raw_ring.h"
#include "bench/workloads.h"
#include "executor/executor_testing.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

using executor_testing::FloorBump;
using executor_testing::FloorLoop;
using executor_testing::FloorTask;
using executor_testing::FloorYield;
using executor_testing::FloorYielder;
using executor_testing::g_floor_loop;
using timing::MonotonicClock;
using timing::TscClock;

FloorTask FloorLaunchChild(uint64_t t0, double* out) {
  *out = static_cast<double>(TscClock::Now() - t0);
  co_return;
}

FloorTask FloorLaunchParent(int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t t0 = TscClock::Now();
    g_floor_loop->Push(FloorLaunchChild(t0, &out[i]).handle);
    co_await FloorYield{};
  }
  co_return;
}

// An io_uring ring that is torn down on every path.
using Ring = RawRing;

Row Wall(const std::string& id, uint64_t t0) {
  return Row{id, static_cast<double>(MonotonicClock::Now() - t0), Unit::kNanos};
}

}  // namespace

void SpinFor(uint64_t ns) noexcept {
  const uint64_t end = TscClock::Now() + TscClock::FromNanos(ns);
  while (TscClock::Now() < end) {
  }
}

void AppendSleepRows(const std::string& id, std::vector<double>& actual_ns,
                     Rows& rows) {
  double sum = 0;
  for (double v : actual_ns) sum += v;
  const double mean = actual_ns.empty() ? 0 : sum / actual_ns.size();
  const auto n = static_cast<int64_t>(actual_ns.size());
  rows.push_back(Row{id + "_actual_mean", mean, Unit::kNanos, n});
  rows.push_back(
      Row{id + "_actual_p50", Quantile(actual_ns, 0.5), Unit::kNanos, n});
  rows.push_back(
      Row{id + "_actual_p99", Quantile(actual_ns, 0.99), Unit::kNanos, n});
}

absl::StatusOr<Rows> FloorSpawn(const std::string& id, int64_t n) {
  FloorLoop loop(static_cast<size_t>(n));
  g_floor_loop = &loop;
  std::atomic<uint64_t> counter{0};
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < n; ++i) loop.Push(FloorBump(&counter).handle);
  loop.Run();
  Rows rows{Wall(id, t0)};
  g_floor_loop = nullptr;
  if (counter.load() != static_cast<uint64_t>(n)) {
    return absl::InternalError("floor 1A: not every task ran");
  }
  return rows;
}

absl::StatusOr<Rows> FloorYieldLoop(const std::string& id, int64_t tasks,
                                    int64_t yields) {
  FloorLoop loop(static_cast<size_t>(tasks) * 2);
  g_floor_loop = &loop;
  uint64_t counter = 0;
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < tasks; ++i) {
    loop.Push(FloorYielder(yields, &counter).handle);
  }
  loop.Run();
  Rows rows{Wall(id, t0)};
  g_floor_loop = nullptr;
  if (counter != static_cast<uint64_t>(tasks * yields)) {
    return absl::InternalError("floor 1B: yield count mismatch");
  }
  return rows;
}

absl::StatusOr<Rows> FloorLaunch(const std::string& id, int64_t launches) {
  FloorLoop loop(4);
  g_floor_loop = &loop;
  std::vector<double> ticks(static_cast<size_t>(launches));
  const uint64_t t0 = MonotonicClock::Now();
  loop.Push(FloorLaunchParent(launches, ticks.data()).handle);
  loop.Run();
  Rows rows{Wall(id, t0)};
  g_floor_loop = nullptr;
  AppendLaunchTicks(id, ticks, rows);
  return rows;
}

absl::StatusOr<Rows> FloorNop(const std::string& id, int64_t ops) {
  Ring ring;
  if (absl::Status s = ring.Init(kNopBatch * 2); !s.ok()) return s;
  io_uring* r = ring.get();
  const int64_t batches = std::max<int64_t>(1, ops / kNopBatch);
  int64_t errors = 0;
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t b = 0; b < batches; ++b) {
    for (int i = 0; i < kNopBatch; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(r);
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(i));
    }
    int rc = io_uring_submit_and_wait(r, kNopBatch);
    if (rc < 0) return absl::InternalError("io_uring_submit_and_wait failed");
    int seen = 0;
    while (seen < kNopBatch) {
      io_uring_cqe* cqe = nullptr;
      unsigned head = 0;
      unsigned n = 0;
      io_uring_for_each_cqe(r, head, cqe) {
        if (cqe->res != 0) ++errors;
        ++n;
      }
      io_uring_cq_advance(r, n);
      seen += static_cast<int>(n);
      if (seen < kNopBatch && io_uring_wait_cqe(r, &cqe) < 0) {
        return absl::InternalError("io_uring_wait_cqe failed");
      }
    }
  }
  Rows rows{Wall(id, t0)};
  if (errors != 0) return absl::InternalError("floor uring_nop: a NOP failed");
  return rows;
}

absl::StatusOr<Rows> FloorSleep(const std::string& id, int64_t tasks) {
  Ring ring;
  unsigned entries = 2;
  while (entries < static_cast<unsigned>(tasks) && entries < 4096)
    entries <<= 1;
  if (absl::Status s = ring.Init(entries); !s.ok()) return s;
  io_uring* r = ring.get();
  __kernel_timespec ts{0, kSleepNs};
  std::vector<uint64_t> started(static_cast<size_t>(tasks));
  std::vector<int> done(static_cast<size_t>(tasks), 0);
  std::vector<double> actual;
  actual.reserve(static_cast<size_t>(tasks) * kSleepsPerTask);
  auto arm = [&](uint64_t task) {
    io_uring_sqe* sqe = io_uring_get_sqe(r);
    if (sqe == nullptr) {
      io_uring_submit(r);
      sqe = io_uring_get_sqe(r);
    }
    io_uring_prep_timeout(sqe, &ts, 0, 0);
    io_uring_sqe_set_data64(sqe, task);
    started[task] = MonotonicClock::Now();
  };
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < tasks; ++i) arm(static_cast<uint64_t>(i));
  int64_t remaining = tasks * kSleepsPerTask;
  std::vector<uint64_t> rearm;
  rearm.reserve(static_cast<size_t>(tasks));
  while (remaining > 0) {
    if (io_uring_submit_and_wait(r, 1) < 0) {
      return absl::InternalError("io_uring_submit_and_wait failed");
    }
    io_uring_cqe* cqe = nullptr;
    unsigned head = 0;
    unsigned n = 0;
    rearm.clear();
    io_uring_for_each_cqe(r, head, cqe) {
      ++n;
      const uint64_t task = io_uring_cqe_get_data64(cqe);
      const uint64_t now = MonotonicClock::Now();
      if (cqe->res != -ETIME) {
        io_uring_cq_advance(r, n);
        return absl::InternalError(
            absl::StrCat("floor 1C: timeout completed with ", cqe->res));
      }
      actual.push_back(static_cast<double>(now - started[task]));
      --remaining;
      if (++done[task] < kSleepsPerTask) rearm.push_back(task);
    }
    io_uring_cq_advance(r, n);
    for (uint64_t task : rearm) arm(task);
  }
  Rows rows{Wall(id, t0)};
  AppendSleepRows(id, actual, rows);
  return rows;
}

namespace {

// skewed's floor: `workers` plain threads that block on a condition
// variable between runs (as the Runtime's workers park) and, once woken,
// take the leaves, 8 at a time, through one atomic index: balance within
// 8 leaves, no spawns, no scheduler.
class LeafCrew {
 public:
  LeafCrew(size_t workers, std::vector<int> leaves)
      : leaves_(std::move(leaves)) {
    for (size_t i = 0; i < workers; ++i)
      threads_.emplace_back([this] { Loop(); });
  }
  ~LeafCrew() {
    {
      std::lock_guard<std::mutex> l(mu_);
      quit_ = true;
    }
    start_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  // One run over every leaf; returns the sum of their SerialFib.
  uint64_t Run() {
    {
      std::lock_guard<std::mutex> l(mu_);
      next_.store(0, std::memory_order_relaxed);
      sum_ = 0;
      running_ = threads_.size();
      ++generation_;
    }
    start_.notify_all();
    std::unique_lock<std::mutex> l(mu_);
    done_.wait(l, [this] { return running_ == 0; });
    return sum_;
  }

 private:
  void Loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> l(mu_);
        start_.wait(l, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
      }
      uint64_t mine = 0;
      for (;;) {
        const size_t i = next_.fetch_add(kChunk, std::memory_order_relaxed);
        if (i >= leaves_.size()) break;
        const size_t end = std::min(i + kChunk, leaves_.size());
        for (size_t j = i; j < end; ++j) mine += SerialFib(leaves_[j]);
      }
      std::lock_guard<std::mutex> l(mu_);
      sum_ += mine;
      if (--running_ == 0) done_.notify_one();
    }
  }

  // Leaves taken at a time: ~10 us of work (a leaf is fib(14) or
  // fib(15)), so that the shared index is not a hot line.
  static constexpr size_t kChunk = 8;
  const std::vector<int> leaves_;
  std::atomic<size_t> next_{0};
  std::mutex mu_;
  std::condition_variable start_, done_;
  uint64_t generation_ = 0;  // guarded by mu_, as are the three below
  uint64_t sum_ = 0;
  size_t running_ = 0;
  bool quit_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

absl::StatusOr<Rows> FloorThreadsSkewed(const std::string& id, int64_t workers,
                                        int n, int cutoff) {
  // The walk of the Runtime's root (SkewedRoot), before the timer.
  std::vector<int> leaves, stack{n};
  uint64_t inline_sum = 0;
  while (!stack.empty()) {
    const int k = stack.back();
    stack.pop_back();
    if (k >= cutoff) {
      stack.push_back(k - 1);
      stack.push_back(k - 2);
    } else if (k < 2) {
      inline_sum += static_cast<uint64_t>(k);
    } else {
      leaves.push_back(k);
    }
  }
  LeafCrew crew(static_cast<size_t>(workers), std::move(leaves));
  (void)crew.Run();  // warm-up, as the Runtime's
  const uint64_t t0 = MonotonicClock::Now();
  const uint64_t v = crew.Run() + inline_sum;
  Rows rows{Wall(id, t0)};
  if (v != SerialFib(n))
    return absl::InternalError("floor skewed: wrong value");
  return rows;
}

}  // namespace spindle::bench
