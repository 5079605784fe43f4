// bench/workloads_process.cc: the `process_pool` rows, N runs of /bin/true.
// spindle: 2 client threads, each submitting one run at a time to a
// WorkDispatcher with 2 worker threads whose items run the spec through a
// ProcessRunner; floor: 2 threads each looping posix_spawn + waitpid.
// Rows: the wall time, and process_pool_p50 / _p99 of each run's
// submit-to-result time (floor: spawn to reaped).
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/workloads.h"
#include "dispatch/dispatch.h"
#include "timing/clock.h"

extern char** environ;

namespace spindle::bench {
namespace {

using timing::MonotonicClock;

constexpr int kThreads = 2;
constexpr const char* kTrue = "/bin/true";

// The wall time, then the p50 and p99 of every thread's latencies.
Rows PoolRows(const std::string& id, uint64_t wall_ns,
              const std::vector<std::vector<double>>& per_thread) {
  std::vector<double> lat;
  for (const auto& v : per_thread) lat.insert(lat.end(), v.begin(), v.end());
  const auto n = static_cast<int64_t>(lat.size());
  return Rows{{id, static_cast<double>(wall_ns)},
              {id + "_p50", Quantile(lat, 0.5), Unit::kNanos, n},
              {id + "_p99", Quantile(lat, 0.99), Unit::kNanos, n}};
}

// One run submitted by a client: the worker runs it, the client waits.
struct RunItem : dispatch::WorkItem {
  RunItem() : WorkItem(&RunItem::Run) {}
  static void Run(WorkItem* w, bool ran) noexcept {
    auto* self = static_cast<RunItem*>(w);
    if (ran) {
      absl::StatusOr<dispatch::ProcessResult> r = self->runner->Run(*self->spec);
      self->ok = r.ok() && r->exit_code == 0;
    }
    // Release: pairs with the client's acquire wait.
    self->done.store(true, std::memory_order_release);
    self->done.notify_one();
  }
  dispatch::ProcessRunner* runner = nullptr;
  const dispatch::ProcessSpec* spec = nullptr;
  std::atomic<bool> done{false};
  bool ok = false;
};

absl::StatusOr<Rows> SpindleProcessPool(const std::string& id, int64_t n) {
  auto runner = dispatch::ProcessRunner::Create({});
  if (!runner.ok()) return runner.status();
  auto d = dispatch::WorkDispatcher::Create({});
  if (!d.ok()) return d.status();
  dispatch::ProcessSpec spec;
  spec.binary = kTrue;
  std::vector<std::unique_ptr<dispatch::Worker>> workers;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    workers.push_back((*d)->Attach());
    threads.emplace_back([w = workers.back().get()] { w->Run(); });
  }
  std::vector<std::vector<double>> lat(kThreads);
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  const uint64_t t0 = MonotonicClock::Now();
  std::vector<std::thread> clients;
  for (int c = 0; c < kThreads; ++c) {
    clients.emplace_back([&, c] {
      // Relaxed: a counter that hands out run numbers.
      while (next.fetch_add(1, std::memory_order_relaxed) < n) {
        RunItem item;
        item.runner = runner->get();
        item.spec = &spec;
        const uint64_t s = MonotonicClock::Now();
        (*d)->Submit(&item);
        while (!item.done.load(std::memory_order_acquire)) item.done.wait(false);
        lat[c].push_back(static_cast<double>(MonotonicClock::Now() - s));
        if (!item.ok) failed = true;
      }
    });
  }
  for (auto& t : clients) t.join();
  const uint64_t t1 = MonotonicClock::Now();
  const absl::Status quit = (*d)->Quit(kThreads, absl::Minutes(1));
  for (auto& t : threads) t.join();
  if (!quit.ok()) return quit;
  if (failed) return absl::InternalError("process_pool: a run of /bin/true failed");
  return PoolRows(id, t1 - t0, lat);
}

absl::StatusOr<Rows> FloorProcessPool(const std::string& id, int64_t n) {
  std::vector<std::vector<double>> lat(kThreads);
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  const uint64_t t0 = MonotonicClock::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < kThreads; ++c) {
    threads.emplace_back([&, c] {
      char* argv[] = {const_cast<char*>(kTrue), nullptr};
      while (next.fetch_add(1, std::memory_order_relaxed) < n) {  // as above
        const uint64_t s = MonotonicClock::Now();
        pid_t pid;
        int status = 0;
        if (posix_spawn(&pid, kTrue, nullptr, nullptr, argv, environ) != 0 ||
            waitpid(pid, &status, 0) != pid || status != 0) {
          failed = true;
        }
        lat[c].push_back(static_cast<double>(MonotonicClock::Now() - s));
      }
    });
  }
  for (auto& t : threads) t.join();
  const uint64_t t1 = MonotonicClock::Now();
  if (failed) return absl::InternalError("process_pool floor: a run failed");
  return PoolRows(id, t1 - t0, lat);
}

}  // namespace

void AddProcessBenchmarks(const Config& c, std::vector<Benchmark>& all) {
  const std::string id = "process_pool";
  Benchmark b{id,
              "N runs of /bin/true, 2 at a time on 2 workers; wall time; "
              "process_pool_p50/_p99: submit-to-result (floor: 2 threads of "
              "posix_spawn + waitpid)",
              "floor",
              {c.n_tasks.value_or(2000)},
              {}};
  b.variants.push_back(
      {"spindle", [id](int64_t n) { return SpindleProcessPool(id, n); }});
  b.variants.push_back(
      {"floor", [id](int64_t n) { return FloorProcessPool(id, n); }});
  b.ops = [](int64_t n) { return static_cast<double>(n); };
  b.op = "run";
  all.push_back(std::move(b));
}

}  // namespace spindle::bench
