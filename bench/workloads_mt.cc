// bench/workloads_mt.cc: the multi-threaded Runtime's rows (mt_fib,
// mt_spawn, skewed); their oneTBB peers are in workloads_tbb.cc.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "bench/hog_tasks.h"
#include "bench/hold.h"
#include "bench/quiet.h"
#include "bench/workloads.h"
#include "executor/executor.h"
#include "executor/notify.h"
#include "timing/clock.h"

// Every Spindle row runs its workload once untimed on the same runtime
// first: worker threads start with empty frame caches and malloc arenas,
// which a long-lived runtime has warmed (oneTBB's threads persist between
// rows, and its peers get the same warm-up).
namespace spindle::bench {
namespace {

using timing::MonotonicClock;

absl::StatusOr<std::unique_ptr<Runtime>> MakeRuntime(int64_t workers) {
  return QuietRuntime(workers).Build();
}

Row Wall(const std::string& id, uint64_t t0) {
  return Row{id, static_cast<double>(MonotonicClock::Now() - t0), Unit::kNanos};
}

// fib(n): every call with n >= 2 spawns one child (n - 1) and awaits it,
// computing n - 2 inline.
Task<uint64_t> RtFib(int n) {
  if (n < 2) co_return static_cast<uint64_t>(n);
  JoinHandle<uint64_t> a = Runtime::Current()->Spawn(RtFib(n - 1));
  const uint64_t b = co_await RtFib(n - 2);
  co_return co_await a + b;
}

Task<uint64_t> LocalFib(int n) {
  if (n < 2) co_return static_cast<uint64_t>(n);
  JoinHandle<uint64_t> a = CurrentExecutor()->Spawn(LocalFib(n - 1));
  const uint64_t b = co_await LocalFib(n - 2);
  co_return co_await a + b;
}

// The task that bumps the counter to n ends the root's wait: the root
// waits as oneTBB's task_group::wait does, instead of the calling thread
// spinning on the counter (which took a core from the workers).
Task<void> Bump(std::atomic<uint64_t>* counter, uint64_t n, WaitGroup* all) {
  if (counter->fetch_add(1, std::memory_order_relaxed) + 1 == n) all->Done();
  co_return;
}

Task<void> SpawnMany(int64_t n, std::atomic<uint64_t>* counter) {
  Runtime* rt = Runtime::Current();
  WaitGroup all;
  all.Add(1);
  for (int64_t i = 0; i < n; ++i) {
    rt->SpawnDetached(Bump(counter, static_cast<uint64_t>(n), &all));
  }
  co_await all.Wait();
}

Task<uint64_t> SerialFibTask(int n) { co_return SerialFib(n); }

// Everything is spawned by the root, on one worker: it walks fib(n)'s tree
// down to the cutoff and spawns one serial task per leaf.  The handles go
// to a deque (a vector's regrowth to ~18k handles cost page faults and an
// munmap on the root's worker, serial time that no second worker can take)
// and each is dropped once joined, while the other worker still runs.
Task<uint64_t> SkewedRoot(int n, int cutoff) {
  std::deque<JoinHandle<uint64_t>> leaves;
  std::vector<int> stack{n};
  uint64_t inline_sum = 0;
  while (!stack.empty()) {
    const int k = stack.back();
    stack.pop_back();
    if (k < cutoff) {
      if (k < 2) {
        inline_sum += static_cast<uint64_t>(k);
      } else {
        leaves.push_back(Runtime::Current()->Spawn(SerialFibTask(k)));
      }
      continue;
    }
    stack.push_back(k - 1);
    stack.push_back(k - 2);
  }
  uint64_t sum = inline_sum;
  for (auto& h : leaves) {
    sum += co_await h;
    h = JoinHandle<uint64_t>();
  }
  co_return sum;
}

}  // namespace

uint64_t SerialFib(int n) noexcept {
  return n < 2 ? static_cast<uint64_t>(n) : SerialFib(n - 1) + SerialFib(n - 2);
}

absl::StatusOr<Rows> SpindleMtFib(const std::string& id, int64_t workers,
                                  int n) {
  auto rt = MakeRuntime(workers);
  if (!rt.ok()) return rt.status();
  (void)(*rt)->BlockOn(RtFib(n));  // warm-up
  const uint64_t t0 = MonotonicClock::Now();
  const uint64_t v = (*rt)->BlockOn(RtFib(n));
  Rows rows{Wall(id, t0)};
  if (v != SerialFib(n)) return absl::InternalError("mt_fib: wrong value");
  return rows;
}

namespace {

// mt_ramp: how fast the workers join in.  Each worker's slot holds the
// time (ns after the run began, + 1; 0: none yet) its first task of the
// run started.  One slot per cache line: a worker writes its own once and
// then only reads it.
struct RampProbe {
  struct alignas(64) Slot {
    std::atomic<uint64_t> first{0};
  };
  explicit RampProbe(size_t workers) : slots(workers) {}
  void Note() noexcept {
    const std::optional<size_t> w = CurrentWorker();
    if (!w || *w >= slots.size()) return;  // the isolation thread
    std::atomic<uint64_t>& f = slots[*w].first;
    if (f.load(std::memory_order_relaxed) == 0) {
      f.store(MonotonicClock::Now() - t0 + 1, std::memory_order_relaxed);
    }
  }
  uint64_t t0 = 0;
  std::vector<Slot> slots;
};

// RtFib, each call noting its worker's first task.
Task<uint64_t> RampFib(int n, RampProbe* p) {
  p->Note();
  if (n < 2) co_return static_cast<uint64_t>(n);
  JoinHandle<uint64_t> a = Runtime::Current()->Spawn(RampFib(n - 1, p));
  const uint64_t b = co_await RampFib(n - 2, p);
  co_return co_await a + b;
}

}  // namespace

absl::StatusOr<Rows> SpindleMtRamp(const std::string& id, int64_t workers,
                                   int n, RampMode mode) {
  RuntimeBuilder b = QuietRuntime(workers);
  if (mode == RampMode::kSpin) {
    b.SpinBeforePark(std::chrono::milliseconds(1));  // the range's top
  } else if (mode == RampMode::kOneByOne) {
    b.WakeFanout(1);
  }
  auto rt = b.Build();
  if (!rt.ok()) return rt.status();
  const size_t w = static_cast<size_t>(workers);
  RampProbe warm(w), probe(w);
  warm.t0 = MonotonicClock::Now();
  (void)(*rt)->BlockOn(RampFib(n, &warm));  // warm-up, as for mt_fib
  const uint64_t t0 = MonotonicClock::Now();
  probe.t0 = t0;
  const uint64_t v = (*rt)->BlockOn(RampFib(n, &probe));
  const uint64_t wall = MonotonicClock::Now() - t0;
  if (v != SerialFib(n)) return absl::InternalError("mt_ramp: wrong value");
  // A worker that never ran a task of the run counts as joining at its end.
  std::vector<uint64_t> first;
  for (const RampProbe::Slot& s : probe.slots) {
    const uint64_t f = s.first.load(std::memory_order_relaxed);
    first.push_back(f == 0 ? wall : f - 1);
  }
  std::sort(first.begin(), first.end());
  const auto ns = [](uint64_t x) { return static_cast<double>(x); };
  return Rows{{id, ns(wall), Unit::kNanos},
              {id + "_half", ns(first[(w - 1) / 2]), Unit::kNanos},
              {id + "_all", ns(first.back()), Unit::kNanos}};
}

absl::StatusOr<Rows> SpindleLocalFib(const std::string& id, int64_t workers,
                                     int n) {
  if (workers != 1) {
    return absl::UnavailableError("spindle_local is single-threaded");
  }
  auto ex = QuietExecutor().Build();
  if (!ex.ok()) return ex.status();
  (void)(*ex)->BlockOn(LocalFib(n));  // warm-up, as for the Runtime
  const uint64_t t0 = MonotonicClock::Now();
  const uint64_t v = (*ex)->BlockOn(LocalFib(n));
  Rows rows{Wall(id, t0)};
  if (v != SerialFib(n)) return absl::InternalError("mt_fib: wrong value");
  return rows;
}

absl::StatusOr<Rows> SpindleMtSpawn(const std::string& id, int64_t workers,
                                    int64_t n) {
  auto rt = MakeRuntime(workers);
  if (!rt.ok()) return rt.status();
  std::atomic<uint64_t> counter{0};
  (*rt)->BlockOn(SpawnMany(n, &counter));  // warm-up
  counter.store(0);
  const uint64_t t0 = MonotonicClock::Now();
  (*rt)->BlockOn(SpawnMany(n, &counter));
  Rows rows{Wall(id, t0)};
  if (counter.load() != static_cast<uint64_t>(n)) {
    return absl::InternalError("mt_spawn: not every task ran");
  }
  return rows;
}

absl::StatusOr<Rows> SpindleSkewed(const std::string& id, int64_t workers,
                                   int n, int cutoff) {
  auto rt = MakeRuntime(workers);
  if (!rt.ok()) return rt.status();
  RuntimeSpawnOptions o;
  o.placement = Placement::Pinned(0);
  (void)(*rt)->Spawn(SkewedRoot(n, cutoff), o).Join();  // warm-up
  const uint64_t t0 = MonotonicClock::Now();
  JoinHandle<uint64_t> h = (*rt)->Spawn(SkewedRoot(n, cutoff), o);
  const uint64_t v = h.Join();
  Rows rows{Wall(id, t0)};
  if (v != SerialFib(n)) return absl::InternalError("skewed: wrong value");
  return rows;
}

namespace {

// rebalance: one task's rounds of a 100 us sleep (an operation on the ring
// of the worker it runs on) and 50 us of computing.
Task<void> SleepCompute(int rounds, std::atomic<int>* started) {
  started->fetch_add(1, std::memory_order_relaxed);
  for (int i = 0; i < rounds; ++i) {
    co_await SleepFor(std::chrono::microseconds(100));
    SpinFor(50'000);
  }
}

// Holds its worker (counted in the gate's `held`) until the gate's tasks
// have started (at most 1 s).
Task<void> HoldUntilStarted(StartGate* gate) {
  gate->held.fetch_add(1, std::memory_order_relaxed);
  const uint64_t end = MonotonicClock::Now() + 1'000'000'000;
  while (gate->started.load(std::memory_order_relaxed) < gate->want &&
         MonotonicClock::Now() < end) {
    SpinFor(10'000);
  }
  co_return;
}

}  // namespace

void HoldOtherWorkers(Runtime& rt, size_t except, StartGate* gate,
                      std::vector<JoinHandle<void>>* holds) {
  const int want = static_cast<int>(rt.worker_count()) - 1;
  for (size_t w = 0; w < rt.worker_count(); ++w) {
    if (w == except) continue;
    RuntimeSpawnOptions o;
    o.placement = Placement::Pinned(w);
    holds->push_back(rt.Spawn(HoldUntilStarted(gate), o));
  }
  // Each hold has begun before the workload is spawned: a worker not yet
  // held would take its tasks.
  const uint64_t end = MonotonicClock::Now() + 1'000'000'000;
  while (gate->held.load(std::memory_order_relaxed) < want &&
         MonotonicClock::Now() < end) {
    SpinFor(1'000);
  }
}

namespace {

// One run of `rebalance`: kTasks tasks queued for worker 0 while the
// others are held (so all start there), or pinned round robin (`spread`).
absl::Status RebalanceRun(Runtime& rt, bool spread) {
  constexpr int kTasks = 16, kRounds = 100;
  const size_t n = rt.worker_count();
  StartGate gate;
  gate.want = kTasks;
  std::vector<JoinHandle<void>> hs;
  if (!spread) HoldOtherWorkers(rt, 0, &gate, &hs);
  for (int i = 0; i < kTasks; ++i) {
    RuntimeSpawnOptions o;
    o.placement = spread ? Placement::Pinned(static_cast<size_t>(i) % n)
                         : Placement::StealablePreferred(0);
    hs.push_back(rt.Spawn(SleepCompute(kRounds, &gate.started), o));
  }
  for (auto& h : hs) {
    if (h.Wait() != JoinStatus::kCompleted) {
      return absl::InternalError("rebalance: a task did not complete");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Rows> SpindleRebalance(const std::string& id, int64_t workers,
                                      bool spread) {
  auto rt = MakeRuntime(workers);
  if (!rt.ok()) return rt.status();
  if (absl::Status s = RebalanceRun(**rt, spread); !s.ok())
    return s;  // warm-up
  const uint64_t t0 = MonotonicClock::Now();
  if (absl::Status s = RebalanceRun(**rt, spread); !s.ok()) return s;
  return Rows{Wall(id, t0)};
}

absl::StatusOr<Rows> SpindleHogMt(const std::string& id, int64_t workers,
                                  int64_t sensitive, int64_t ms, HogMode mode) {
  RuntimeBuilder b = QuietRuntime(workers);
  if (mode == HogMode::kTiersOff) b.NoTiers();  // the last call wins
  auto rt = b.Build();
  if (!rt.ok()) return rt.status();
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> late(static_cast<size_t>(sensitive));
  for (auto& l : late) l.reserve(static_cast<size_t>(ms) + 16);
  std::vector<JoinHandle<void>> hs;
  const uint64_t t0 = MonotonicClock::Now();
  // The sleepers are spread over the workers; the hogs are stealable and
  // land wherever a worker takes them.
  RuntimeSpawnOptions spread;
  spread.placement = Placement::RoundRobin();
  for (auto& l : late) hs.push_back((*rt)->Spawn(Sensitive(&stop, &l), spread));
  if (mode != HogMode::kAlone) {
    hs.push_back((*rt)->Spawn(MaybeSpinner(&stop)));
    hs.push_back((*rt)->Spawn(Overrunner(&stop)));
  }
  hs.push_back((*rt)->Spawn(Stopper(static_cast<uint64_t>(ms), &stop)));
  for (auto& h : hs) {
    if (h.Wait() != JoinStatus::kCompleted) {
      return absl::InternalError("hog_mt: a task did not complete");
    }
  }
  Rows rows{Wall(id, t0)};
  AppendLatenessRows(id, late, rows);
  return rows;
}

}  // namespace spindle::bench
