// bench/workloads_fiber.cc: the fiber rows.
//
//   fiber_switch (param switches): N_TASKS (1000) fibers yield through the
//     scheduler, `switches` yields in all (ns per switch: out and back in;
//     N_TASKS x YIELDS_PER_TASK when YIELDS_PER_TASK is set, as in 1B);
//     the floor: a raw Boost.Context round trip (jump into a fiber and back)
//     per switch, no scheduler.  Compare with 1B_yield's spindle per yield.
//   fiber_spawn (param N): spawn N fibers (pooled 16 KiB stacks) that bump
//     a counter and run them to completion, after an untimed pass of the
//     same (warm allocator and stack cache), each variant on a fresh
//     thread; `spindle` does the same with coroutine tasks.
//   fiber_nop (param NOPs): 32 fibers suspend on io_uring NOPs, `NOPs` in
//     all; `spindle` is uring_nop's coroutine workload, `floor` its raw
//     batches of 32.
// Wall time; the executor is made before the clock starts.

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/quiet.h"
#include "bench/workloads.h"
#include "boost/context/detail/fcontext.hpp"
#include "executor/executor.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

namespace bc = boost::context::detail;
using timing::MonotonicClock;

absl::StatusOr<std::unique_ptr<LocalExecutor>> MakeQuiet(
    reactor::BackendChoice backend = reactor::BackendChoice::kAuto) {
  ExecutorBuilder b = QuietExecutor();
  reactor::ReactorOptions o;
  o.backend = backend;
  b.Reactor(o);
  return b.Build();
}

Row Wall(const std::string& id, uint64_t t0) {
  return Row{id, static_cast<double>(MonotonicClock::Now() - t0), Unit::kNanos};
}

absl::StatusOr<Rows> SpindleFiberSwitch(const std::string& id, int64_t fibers,
                                        int64_t switches) {
  auto ex = MakeQuiet();
  if (!ex.ok()) return ex.status();
  const int64_t per_fiber = std::max<int64_t>(1, switches / fibers);
  int64_t done = 0;
  FiberOptions o;
  o.stack_size = 16 << 10;
  // Warm-up: the stacks are mapped, faulted in and cached.
  for (int64_t i = 0; i < fibers; ++i) {
    (*ex)->SpawnFiberDetached([] { this_fiber::Yield(); }, o);
  }
  (*ex)->Run();
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < fibers; ++i) {
    (*ex)->SpawnFiberDetached(
        [per_fiber, &done] {
          for (int64_t k = 0; k < per_fiber; ++k) this_fiber::Yield();
          done += per_fiber;
        },
        o);
  }
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  if (done != per_fiber * fibers) {
    return absl::InternalError("fiber_switch: yield count mismatch");
  }
  return rows;
}

// The floor's fiber: jumps back to its caller forever.
void FloorFiberEntry(bc::transfer_t t) {
  for (;;) t = bc::jump_fcontext(t.fctx, nullptr);
}

absl::StatusOr<Rows> FloorFiberSwitch(const std::string& id, int64_t switches) {
  constexpr size_t kStack = 64 << 10;
  std::unique_ptr<char[]> stack(new char[kStack]);
  bc::fcontext_t f =
      bc::make_fcontext(stack.get() + kStack, kStack, &FloorFiberEntry);
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < switches; ++i) f = bc::jump_fcontext(f, nullptr).fctx;
  return Rows{Wall(id, t0)};
}

// Both fiber_spawn variants spawn N tasks once untimed, then N timed: the
// timed pass finds the frame allocator (and, for fibers, the stack cache)
// warm, as a long-running program does.  Spawning is one burst, then Run.
template <typename SpawnOne>
absl::StatusOr<Rows> TimedSpawnsHere(const std::string& id, int64_t n,
                                     SpawnOne spawn_one) {
  auto ex = MakeQuiet();
  if (!ex.ok()) return ex.status();
  uint64_t counter = 0;
  for (int64_t i = 0; i < n; ++i) spawn_one(**ex, &counter);
  (*ex)->Run();
  counter = 0;
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < n; ++i) spawn_one(**ex, &counter);
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  if (counter != static_cast<uint64_t>(n)) {
    return absl::InternalError("fiber_spawn: not every task ran");
  }
  return rows;
}

// On a thread of its own (OnFreshThread).
template <typename SpawnOne>
absl::StatusOr<Rows> TimedSpawns(const std::string& id, int64_t n,
                                 SpawnOne spawn_one) {
  return OnFreshThread([&] { return TimedSpawnsHere(id, n, spawn_one); });
}

Task<void> BumpTask(uint64_t* counter) {
  ++*counter;
  co_return;
}

absl::StatusOr<Rows> SpindleFiberSpawn(const std::string& id, int64_t n) {
  FiberOptions o;
  o.stack_size = 16 << 10;
  return TimedSpawns(id, n, [o](LocalExecutor& ex, uint64_t* counter) {
    ex.SpawnFiberDetached([counter] { ++*counter; }, o);
  });
}

absl::StatusOr<Rows> SpindleCoroutineSpawn(const std::string& id, int64_t n) {
  return TimedSpawns(id, n, [](LocalExecutor& ex, uint64_t* counter) {
    ex.SpawnDetached(BumpTask(counter));
  });
}

}  // namespace

absl::StatusOr<Rows> SpindleSpawnRounds(const std::string& id, int64_t n,
                                        int64_t rounds, bool fibers) {
  auto ex = MakeQuiet();
  if (!ex.ok()) return ex.status();
  FiberOptions o;
  o.stack_size = 16 << 10;
  uint64_t counter = 0;
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t r = 0; r < rounds; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      if (fibers) {
        (*ex)->SpawnFiberDetached([&counter] { ++counter; }, o);
      } else {
        (*ex)->SpawnDetached(BumpTask(&counter));
      }
    }
    (*ex)->Run();
  }
  Rows rows{Wall(id, t0)};
  if (counter != static_cast<uint64_t>(n * rounds)) {
    return absl::InternalError(absl::StrCat(id, ": not every task ran"));
  }
  return rows;
}

namespace {

absl::StatusOr<Rows> SpindleFiberNop(const std::string& id, int64_t ops) {
  auto ex = MakeQuiet(reactor::BackendChoice::kIoUring);
  if (!ex.ok()) return ex.status();
  int64_t errors = 0;
  const int64_t per_fiber = std::max<int64_t>(1, ops / kNopTasks);
  FiberOptions o;
  o.stack_size = 16 << 10;
  const uint64_t t0 = MonotonicClock::Now();
  for (int i = 0; i < kNopTasks; ++i) {
    (*ex)->SpawnFiberDetached(
        [per_fiber, &errors] {
          for (int64_t k = 0; k < per_fiber; ++k) {
            if (this_fiber::Await(Nop()) != 0) ++errors;
          }
        },
        o);
  }
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  if (errors != 0) return absl::InternalError("fiber_nop: a NOP failed");
  return rows;
}

// launch/spindle_fiber: a coroutine spawns N fibers, one at a time, and
// each records the TSC ticks from its spawn to its first instruction (the
// stack comes from the cache after the first).
Task<void> FiberLaunchParent(int64_t n, double* out) {
  LocalExecutor* ex = CurrentExecutor();
  FiberOptions o;
  o.stack_size = 16 << 10;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t t0 = timing::TscClock::Now();
    double* slot = &out[i];
    ex->SpawnFiberDetached(
        [t0, slot] {
          *slot = static_cast<double>(timing::TscClock::Now() - t0);
        },
        o);
    co_await YieldNow();  // FIFO: the fiber runs next
  }
}

}  // namespace

absl::StatusOr<Rows> SpindleFiberLaunch(const std::string& id,
                                        int64_t launches) {
  auto ex = MakeQuiet();
  if (!ex.ok()) return ex.status();
  std::vector<double> ticks(static_cast<size_t>(launches));
  const uint64_t t0 = MonotonicClock::Now();
  (*ex)->SpawnDetached(FiberLaunchParent(launches, ticks.data()));
  (*ex)->Run();
  Rows rows{Wall(id, t0)};
  AppendLaunchTicks(id, ticks, rows);
  return rows;
}

void AddFiberBenchmarks(const Config& c, std::vector<Benchmark>& all) {
  {
    const std::string id = "fiber_switch";
    const int64_t fibers = c.n_tasks.value_or(1000);
    Benchmark b{id,
                "N_TASKS (1000) fibers yield through the scheduler, param "
                "switches in all (N_TASKS x YIELDS_PER_TASK when that is "
                "set); wall time (floor: raw Boost.Context round trips)",
                "floor",
                c.yields_per_task
                    ? std::vector<int64_t>{fibers * *c.yields_per_task}
                    : std::vector<int64_t>{100'000, 1'000'000},
                {}};
    b.variants.push_back({"spindle", [id, fibers](int64_t n) {
                            return SpindleFiberSwitch(id, fibers, n);
                          }});
    b.variants.push_back(
        {"floor", [id](int64_t n) { return FloorFiberSwitch(id, n); }});
    b.ops = [](int64_t n) { return static_cast<double>(n); };
    b.op = "switch";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "fiber_spawn";
    Benchmark b{id,
                "spawn N fibers (16 KiB pooled stacks) that bump a counter; "
                "wall time to all done (spindle: coroutine tasks, as 1A)",
                "spindle",
                Or(c.n_tasks, {1000, 10000, 100000}),
                {}};
    b.variants.push_back({"spindle_fiber", [id](int64_t n) {
                            return SpindleFiberSpawn(id, n);
                          }});
    b.variants.push_back(
        {"spindle", [id](int64_t n) { return SpindleCoroutineSpawn(id, n); }});
    b.ops = [](int64_t n) { return static_cast<double>(n); };
    b.op = "spawn";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "fiber_nop";
    Benchmark b{id,
                "N io_uring NOPs: 32 fibers suspend on each (spindle: 32 "
                "coroutine tasks, as uring_nop; floor: raw batches of 32); "
                "wall time",
                "floor",
                {c.nop_ops},
                {}};
    b.variants.push_back(
        {"spindle_fiber", [id](int64_t n) { return SpindleFiberNop(id, n); }});
    b.variants.push_back(
        {"spindle", [id](int64_t n) { return SpindleNop(id, n); }});
    b.variants.push_back(
        {"floor", [id](int64_t n) { return FloorNop(id, n); }});
    b.ops = [](int64_t n) { return static_cast<double>(n); };
    b.op = "NOP";
    all.push_back(std::move(b));
  }
}

}  // namespace spindle::bench
