// bench/workloads_c_api.cc: the c_api row.
//
//   c_api (param N): spawn N detached C-function tasks (16 KiB pooled
//     stacks) that bump a counter and run them to completion, after an
//     untimed pass of the same (warm allocator and stack cache), each
//     variant on a fresh thread with a fresh executor (no tiers, the
//     default reactor).  `spindle_c` goes through the C interface
//     (spindle_spawn, spindle_executor_run); `spindle_fiber`, the baseline,
//     is the C++ fiber path it wraps (SpawnFiberDetached, Run) calling the
//     same C function.  The difference is the C interface's cost per task.
// Wall time; the executor is made before the clock starts.

#include <cstdint>
#include <string>

#include "bench/workloads.h"
#include "executor/executor.h"
#include "executor/spindle.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

using timing::MonotonicClock;

constexpr size_t kStack = 16 << 10;

extern "C" int BumpCounter(spindle_task_t* self, void* arg) {
  (void)self;
  ++*static_cast<uint64_t*>(arg);
  return 0;
}

absl::Status CError(const char* what, int rc) {
  return absl::InternalError(
      absl::StrCat("c_api: ", what, " returned ", rc, ": ",
                   spindle_last_error()));
}

absl::StatusOr<Rows> CSpawnsHere(const std::string& id, int64_t n) {
  spindle_executor_attr_t attr;
  spindle_executor_attr_init(&attr);
  attr.tiers = -1;
  spindle_executor_t* ex = nullptr;
  if (int rc = spindle_executor_create(&attr, &ex); rc != 0) {
    return CError("spindle_executor_create", rc);
  }
  spindle_task_attr_t ta;
  spindle_task_attr_init(&ta);
  ta.stack_size = kStack;
  uint64_t counter = 0;
  absl::Status failed;
  uint64_t t0 = 0;
  for (int pass = 0; pass < 2 && failed.ok(); ++pass) {
    counter = 0;
    t0 = MonotonicClock::Now();
    for (int64_t i = 0; i < n; ++i) {
      if (int rc = spindle_spawn(ex, BumpCounter, &counter, &ta, nullptr);
          rc != 0) [[unlikely]] {
        failed = CError("spindle_spawn", rc);
        break;
      }
    }
    if (int rc = spindle_executor_run(ex, 0, -1, 0); rc != SPINDLE_RUN_DONE) {
      failed = CError("spindle_executor_run", rc);
    }
  }
  const uint64_t t1 = MonotonicClock::Now();
  (void)spindle_executor_destroy(ex);
  if (!failed.ok()) return failed;
  if (counter != static_cast<uint64_t>(n)) {
    return absl::InternalError("c_api: not every task ran");
  }
  return Rows{Row{id, static_cast<double>(t1 - t0), Unit::kNanos}};
}

absl::StatusOr<Rows> FiberSpawnsHere(const std::string& id, int64_t n) {
  ExecutorBuilder b;
  b.NoTiers();
  absl::StatusOr<std::unique_ptr<LocalExecutor>> ex = b.Build();
  if (!ex.ok()) return ex.status();
  FiberOptions o;
  o.stack_size = kStack;
  uint64_t counter = 0;
  uint64_t t0 = 0;
  for (int pass = 0; pass < 2; ++pass) {
    counter = 0;
    t0 = MonotonicClock::Now();
    for (int64_t i = 0; i < n; ++i) {
      (*ex)->SpawnFiberDetached(
          [c = &counter] { return BumpCounter(nullptr, c); }, o);
    }
    (*ex)->Run();
  }
  const uint64_t t1 = MonotonicClock::Now();
  if (counter != static_cast<uint64_t>(n)) {
    return absl::InternalError("c_api: not every task ran");
  }
  return Rows{Row{id, static_cast<double>(t1 - t0), Unit::kNanos}};
}

}  // namespace

void AddCApiBenchmarks(const Config& c, std::vector<Benchmark>& all) {
  const std::string id = "c_api";
  Benchmark b{id,
              "spawn N detached C-function tasks (16 KiB pooled stacks) and "
              "run them to completion through the C interface (spindle_c) "
              "and through the C++ fiber path it wraps (spindle_fiber); "
              "wall time",
              "spindle_fiber",
              Or(c.n_tasks, {1000, 10000, 100000}),
              {}};
  b.variants.push_back({"spindle_c", [id](int64_t n) {
                          return OnFreshThread(
                              [&] { return CSpawnsHere(id, n); });
                        }});
  b.variants.push_back({"spindle_fiber", [id](int64_t n) {
                          return OnFreshThread(
                              [&] { return FiberSpawnsHere(id, n); });
                        }});
  b.ops = [](int64_t n) { return static_cast<double>(n); };
  b.op = "task";
  all.push_back(std::move(b));
}

}  // namespace spindle::bench
