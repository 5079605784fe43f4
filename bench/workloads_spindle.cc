// bench/workloads_spindle.cc: Spindle's side of every benchmark.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/hog_tasks.h"
#include "bench/quiet.h"
#include "bench/workloads.h"
#include "executor/executor.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

using timing::MonotonicClock;
using timing::TscClock;

// The default configuration, except that tier warnings are not logged: a
// VM preempting a poll for milliseconds would print them mid-table.  A
// builder that sets its own Tiers()/NoTiers() overrides this.
absl::StatusOr<std::unique_ptr<LocalExecutor>> Make(ExecutorBuilder& b) {
  return b.Build();
}

Row Wall(const std::string& id, uint64_t t0) {
  return Row{id, static_cast<double>(MonotonicClock::Now() - t0), Unit::kNanos};
}

void AppendPercentiles(const std::string& prefix, std::vector<double>& v,
                       Rows& rows) {
  if (v.empty()) return;
  const auto n = static_cast<int64_t>(v.size());
  rows.push_back(Row{prefix + "_p50", Quantile(v, 0.50), Unit::kNanos, n});
  rows.push_back(Row{prefix + "_p90", Quantile(v, 0.90), Unit::kNanos, n});
  rows.push_back(Row{prefix + "_p99", Quantile(v, 0.99), Unit::kNanos, n});
  rows.push_back(Row{prefix + "_p999", Quantile(v, 0.999), Unit::kNanos, n});
}

// ---- 1A / 1B ----------------------------------------------------------------

Task<void> Bump(std::atomic<uint64_t>* counter) {
  // relaxed: one thread; read after Run() returns.
  counter->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

Task<void> Yielder(int64_t k, uint64_t* counter) {
  for (int64_t i = 0; i < k; ++i) {
    ++*counter;
    co_await YieldNow();
  }
  co_return;
}

// ---- 1C / uring_nop ---------------------------------------------------------

Task<void> Sleeper(double* out) {
  for (int i = 0; i < kSleepsPerTask; ++i) {
    const uint64_t t0 = MonotonicClock::Now();
    co_await SleepFor(std::chrono::nanoseconds(kSleepNs));
    out[i] = static_cast<double>(MonotonicClock::Now() - t0);
  }
  co_return;
}

Task<void> NopLoop(int64_t n, int64_t* errors) {
  for (int64_t i = 0; i < n; ++i) {
    if (co_await Nop() != 0) ++*errors;
  }
  co_return;
}

// ---- launch -----------------------------------------------------------------

Task<void> LaunchChild(uint64_t t0, double* out) {
  *out = static_cast<double>(TscClock::Now() - t0);
  co_return;
}

Task<void> LaunchParent(int64_t n, double* out) {
  LocalExecutor* ex = CurrentExecutor();
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t t0 = TscClock::Now();
    ex->SpawnDetached(LaunchChild(t0, &out[i]));
    co_await YieldNow();  // FIFO: the child runs next
  }
  co_return;
}

// ---- fairness ---------------------------------------------------------------

// The `stop` flags below are std::atomic only to be shared by pointer; every
// load and the store (Stopper) run on the executor's one thread, so relaxed
// is enough (they pair with Stopper's store by program order).

Task<void> CpuBound(const std::atomic<bool>* stop) {
  while (!stop->load(std::memory_order_relaxed)) {
    SpinFor(50'000);
    co_await YieldNow();
  }
  co_return;
}

}  // namespace

// Stopper and the hog tasks are shared with workloads_mt.cc (hog_mt), whose
// readers run on other workers: relaxed still suffices there (the flag
// publishes nothing else; a worker sees the store within its next polls).
void AppendLatenessRows(const std::string& id,
                        const std::vector<std::vector<double>>& late,
                        Rows& rows) {
  std::vector<double> all;
  for (const auto& l : late) all.insert(all.end(), l.begin(), l.end());
  const auto n = static_cast<int64_t>(all.size());
  rows.push_back(Row{id + "_p50", Quantile(all, 0.5), Unit::kNanos, n});
  rows.push_back(Row{id + "_p99", Quantile(all, 0.99), Unit::kNanos, n});
}

Task<void> Stopper(uint64_t ms, std::atomic<bool>* stop) {
  co_await SleepFor(std::chrono::milliseconds(ms));
  // relaxed: see above.
  stop->store(true, std::memory_order_relaxed);
  co_return;
}

// ---- hog --------------------------------------------------------------------

// Sleeps 1 ms at a time and records how late it woke.
Task<void> Sensitive(const std::atomic<bool>* stop, std::vector<double>* late) {
  while (!stop->load(std::memory_order_relaxed)) {
    const uint64_t deadline = MonotonicClock::Now() + 1'000'000;
    co_await SleepUntil(deadline);
    late->push_back(static_cast<double>(MonotonicClock::Now() - deadline));
  }
  co_return;
}

// Never yields voluntarily: spins in small steps and calls YieldMaybe.
Task<void> MaybeSpinner(const std::atomic<bool>* stop) {
  while (!stop->load(std::memory_order_relaxed)) {
    SpinFor(2'000);
    co_await YieldMaybe();
  }
  co_return;
}

// Overruns its polls: 3 ms of CPU between yields.
Task<void> Overrunner(const std::atomic<bool>* stop) {
  while (!stop->load(std::memory_order_relaxed)) {
    SpinFor(3'000'000);
    co_await YieldNow();
  }
  co_return;
}

namespace {

// ---- tail_latency -----------------------------------------------------------

struct TailRecord {
  bool fat = false;
  bool done = false;
  double start_delay = 0;
  double total = 0;
};

Task<void> TailWorker(uint64_t arrival, TailRecord* rec) {
  rec->start_delay = static_cast<double>(MonotonicClock::Now() - arrival);
  const int steps = rec->fat ? 10 : 2;
  const uint64_t spin = rec->fat ? 500'000 : 20'000;
  for (int i = 0; i < steps; ++i) {
    SpinFor(spin);
    co_await SleepFor(std::chrono::microseconds(100));
  }
  rec->total = static_cast<double>(MonotonicClock::Now() - arrival);
  rec->done = true;
  co_return;
}

Task<void> TailGenerator(int64_t rate, int64_t ms, TailMode mode,
                         std::vector<TailRecord>* records) {
  LocalExecutor* ex = CurrentExecutor();
  std::mt19937_64 rng(42);
  std::exponential_distribution<double> gap(static_cast<double>(rate) / 1e9);
  std::uniform_real_distribution<double> coin(0, 1);
  const uint64_t start = MonotonicClock::Now();
  const uint64_t end = start + static_cast<uint64_t>(ms) * 1'000'000;
  uint64_t t = start;
  for (;;) {
    t += static_cast<uint64_t>(gap(rng));
    if (t >= end) break;
    const bool fat = coin(rng) < 0.01;
    if (fat && mode == TailMode::kThinAlone) continue;
    if (records->size() == records->capacity()) break;  // keep pointers valid
    co_await SleepUntil(t);
    records->push_back(TailRecord{fat});
    const QueueId q = (mode == TailMode::kEevdf && fat) ? 2 : 1;
    ex->SpawnDetached(q, TailWorker(t, &records->back()));
  }
  co_return;
}

}  // namespace

absl::StatusOr<Rows> SpindleSpawn(const std::string& id, int64_t n) {
  ExecutorBuilder b = QuietExecutor();
  auto ex = Make(b);
  if (!ex.ok()) return ex.status();
  std::atomic<uint64_t> counter{0};
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < n; ++i) (*ex)->SpawnDetached(Bump(&counter));
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  if (counter.load() != static_cast<uint64_t>(n)) {
    return absl::InternalError("1A: not every task ran");
  }
  return rows;
}

absl::StatusOr<Rows> SpindleYield(const std::string& id, int64_t tasks,
                                  int64_t yields, int queues,
                                  bool task_timing) {
  ExecutorBuilder b = QuietExecutor();
  b.TaskTiming(task_timing);
  for (int q = 0; q < queues; ++q) b.WithQueue(static_cast<QueueId>(q + 1), 1);
  auto ex = Make(b);
  if (!ex.ok()) return ex.status();
  uint64_t counter = 0;
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < tasks; ++i) {
    (*ex)->SpawnDetached(static_cast<QueueId>(i % queues + 1),
                         Yielder(yields, &counter));
  }
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  if (counter != static_cast<uint64_t>(tasks * yields)) {
    return absl::InternalError("1B: yield count mismatch");
  }
  return rows;
}

absl::StatusOr<Rows> SpindleSleep(const std::string& id, int64_t tasks,
                                  SpindleBackend backend) {
  reactor::ReactorOptions o;
  o.backend = backend == SpindleBackend::kIoUring
                  ? reactor::BackendChoice::kIoUring
                  : reactor::BackendChoice::kEpoll;
  ExecutorBuilder b = QuietExecutor();
  b.Reactor(o);
  auto ex = Make(b);
  if (!ex.ok()) return ex.status();
  std::vector<double> actual(static_cast<size_t>(tasks) * kSleepsPerTask);
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < tasks; ++i) {
    (*ex)->SpawnDetached(
        Sleeper(&actual[static_cast<size_t>(i) * kSleepsPerTask]));
  }
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  AppendSleepRows(id, actual, rows);
  return rows;
}

absl::StatusOr<Rows> SpindleNop(const std::string& id, int64_t ops) {
  reactor::ReactorOptions o;
  o.backend = reactor::BackendChoice::kIoUring;
  ExecutorBuilder b = QuietExecutor();
  b.Reactor(o);
  auto ex = Make(b);
  if (!ex.ok()) return ex.status();
  int64_t errors = 0;
  const int64_t per_task = std::max<int64_t>(1, ops / kNopTasks);
  const uint64_t t0 = MonotonicClock::Now();
  for (int i = 0; i < kNopTasks; ++i) {
    (*ex)->SpawnDetached(NopLoop(per_task, &errors));
  }
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  if (errors != 0) return absl::InternalError("uring_nop: a NOP failed");
  return rows;
}

void AppendLaunchTicks(const std::string& id, const std::vector<double>& ticks,
                       Rows& rows) {
  const auto n = static_cast<int64_t>(ticks.size());
  rows.push_back(Row{id + "_ticks_p50", Quantile(ticks, 0.5), Unit::kTicks, n});
  rows.push_back(
      Row{id + "_ticks_p99", Quantile(ticks, 0.99), Unit::kTicks, n});
}

absl::StatusOr<Rows> SpindleLaunch(const std::string& id, int64_t launches) {
  ExecutorBuilder b = QuietExecutor();
  auto ex = Make(b);
  if (!ex.ok()) return ex.status();
  std::vector<double> ticks(static_cast<size_t>(launches));
  const uint64_t t0 = MonotonicClock::Now();
  (*ex)->SpawnDetached(LaunchParent(launches, ticks.data()));
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  AppendLaunchTicks(id, ticks, rows);
  return rows;
}

absl::StatusOr<Rows> SpindleFairness(const std::string& id, int queues,
                                     int64_t ms) {
  const std::vector<uint32_t> shares = queues == 2
                                           ? std::vector<uint32_t>{3, 1}
                                           : std::vector<uint32_t>{1, 1, 2};
  ExecutorBuilder b = QuietExecutor();
  for (size_t q = 0; q < shares.size(); ++q) {
    b.WithQueue(static_cast<QueueId>(q + 1), shares[q]);
  }
  b.NoTiers();
  auto ex = Make(b);
  if (!ex.ok()) return ex.status();
  std::atomic<bool> stop{false};
  const uint64_t t0 = MonotonicClock::Now();
  for (size_t q = 0; q < shares.size(); ++q) {
    for (int t = 0; t < 2; ++t) {
      (*ex)->SpawnDetached(static_cast<QueueId>(q + 1), CpuBound(&stop));
    }
  }
  (*ex)->SpawnDetached(1, Stopper(static_cast<uint64_t>(ms), &stop));
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  ExecutorStats s = (*ex)->Stats();
  double total = 0, share_sum = 0;
  std::vector<double> service(shares.size(), 0);
  for (const QueueStatsSnapshot& q : s.queues) {
    if (q.sched.id >= 1 && q.sched.id <= shares.size()) {
      service[q.sched.id - 1] = static_cast<double>(q.sched.service_ticks);
      total += service[q.sched.id - 1];
    }
  }
  for (uint32_t sh : shares) share_sum += sh;
  double worst = 0;
  for (size_t q = 0; q < shares.size(); ++q) {
    const double expect = shares[q] / share_sum;
    const double got = total > 0 ? service[q] / total : 0;
    worst = std::max(worst, std::abs(got / expect - 1.0));
  }
  rows.push_back(Row{id + "_error_ppm", worst * 1e6, Unit::kPpm});
  return rows;
}

absl::StatusOr<Rows> SpindleHog(const std::string& id, int64_t sensitive,
                                int64_t ms, HogMode mode) {
  ExecutorBuilder b = QuietExecutor();
  if (mode == HogMode::kTiersOff) b.NoTiers();
  auto ex = Make(b);
  if (!ex.ok()) return ex.status();
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> late(static_cast<size_t>(sensitive));
  for (auto& l : late) l.reserve(static_cast<size_t>(ms) + 16);
  const uint64_t t0 = MonotonicClock::Now();
  for (auto& l : late) (*ex)->SpawnDetached(Sensitive(&stop, &l));
  if (mode != HogMode::kAlone) {
    (*ex)->SpawnDetached(MaybeSpinner(&stop));
    (*ex)->SpawnDetached(Overrunner(&stop));
  }
  (*ex)->SpawnDetached(Stopper(static_cast<uint64_t>(ms), &stop));
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  AppendLatenessRows(id, late, rows);
  return rows;
}

absl::StatusOr<Rows> SpindleTail(const std::string& id, int64_t rate,
                                 int64_t ms, TailMode mode) {
  ExecutorBuilder b = QuietExecutor();
  if (mode == TailMode::kEevdf) {
    b.WithQueue(1, 8).WithQueue(2, 1);
  } else {
    b.WithQueue(1, 1);
  }
  auto ex = Make(b);
  if (!ex.ok()) return ex.status();
  std::vector<TailRecord> records;
  // Reserve so that pointers into it stay valid (arrivals ~ rate * ms).
  records.reserve(static_cast<size_t>(rate * ms / 1000 * 2 + 1000));
  const size_t cap = records.capacity();
  const uint64_t t0 = MonotonicClock::Now();
  (*ex)->SpawnDetached(1, TailGenerator(rate, ms, mode, &records));
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  if (records.capacity() != cap) {
    return absl::InternalError("tail_latency: record buffer reallocated");
  }
  std::vector<double> v[2][2];  // [fat][start, total]
  for (const TailRecord& r : records) {
    if (!r.done) continue;
    v[r.fat][0].push_back(r.start_delay);
    v[r.fat][1].push_back(r.total);
  }
  AppendPercentiles("tail_thin_start", v[0][0], rows);
  AppendPercentiles("tail_thin_total", v[0][1], rows);
  AppendPercentiles("tail_fat_start", v[1][0], rows);
  AppendPercentiles("tail_fat_total", v[1][1], rows);
  return rows;
}

}  // namespace spindle::bench
