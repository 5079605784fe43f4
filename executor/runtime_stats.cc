// executor/runtime_stats.cc: Runtime::Stats, the runtime's counters and,
// from a plain thread, each worker's executor snapshot (taken by a task
// pinned to that worker).

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "executor/internal/runtime_shared.h"
#include "executor/internal/task_protocol.h"
#include "executor/runtime.h"

namespace spindle {

using executor_internal::RuntimeShared;

namespace {
// How long Stats() from a plain thread waits for the workers' snapshots.
constexpr std::chrono::seconds kSnapshotWait{1};

// The snapshots Stats() waits for.  Shared with the snapshot tasks: one on
// a thread busy in a poll past the wait answers later, into a Snapshots
// that nobody reads any more.
struct Snapshots {
  std::mutex mu;
  std::condition_variable cv;
  size_t left = 0;                                  // guarded by mu
  std::vector<std::optional<ExecutorStats>> taken;  // guarded by mu
};

// A worker's counters without the snapshot task itself (spawned and live
// while it reads them): an idle runtime reports no live task, and every
// spawn counted has ended.  Earlier snapshots count as spawns that ended.
Task<void> SnapshotWorker(std::shared_ptr<Snapshots> into, size_t slot) {
  ExecutorStats s = CurrentExecutor()->Stats();
  s.spawns -= 1;
  s.live_tasks -= 1;
  const std::lock_guard<std::mutex> lock(into->mu);
  into->taken[slot] = s;
  if (--into->left == 0) into->cv.notify_all();
  co_return;
}
}  // namespace

RuntimeStats Runtime::Stats() const {
  RuntimeShared& rt = *rt_;
  RuntimeStats s;
  s.worker_count = rt.workers.size();
  for (const auto& w : rt.workers) {
    s.steal += w->policy->counters().Snapshot();
    s.parks += w->parks.load(std::memory_order_relaxed);
    s.wakes_skipped += w->wakes_skipped.load(std::memory_order_relaxed);
    s.overflowed += w->overflowed.load(std::memory_order_relaxed);
    s.joins_inlined += w->joins_inlined.load(std::memory_order_relaxed);
    s.work_requests += w->work_requests.load(std::memory_order_relaxed);
    s.spin_yields += w->spin_yields.load(std::memory_order_relaxed);
    s.started_per_worker.push_back(w->started.load(std::memory_order_relaxed));
  }
  s.wakes_sent = rt.wakes_sent.load(std::memory_order_relaxed);
  s.wakes_skipped += rt.wakes_skipped.load(std::memory_order_relaxed);
  s.injected = rt.injected.load(std::memory_order_relaxed);
  s.stuck_reports = rt.stuck_reports.load(std::memory_order_relaxed);
  s.fanout_wakes = rt.fanout_wakes.load(std::memory_order_relaxed);
  s.block_on_wakes = rt.block_on_wakes.load(std::memory_order_relaxed);
  s.max_searching = rt.max_searching.load(std::memory_order_relaxed);
  s.searches_refused = rt.searches_refused.load(std::memory_order_relaxed);
  if (executor_internal::tl_executor != nullptr) return s;
  // From a plain thread: a pinned task on each worker (and the isolation
  // thread) takes its snapshot.  It waits kSnapshotWait at most: a thread
  // held in one poll (a stuck task, the moment one wants stats) is named
  // in busy_workers instead of holding this call until the poll ends.
  const size_t n = rt.workers.size();
  const size_t threads = rt.thread_count();
  auto snapshots = std::make_shared<Snapshots>();
  snapshots->taken.resize(threads);
  snapshots->left = threads;
  RuntimeSpawner spawner = spawner_;
  for (size_t i = 0; i < n; ++i) {
    RuntimeSpawnOptions o;
    o.placement = Placement::Pinned(i);
    spawner.SpawnDetached(SnapshotWorker(snapshots, i), o);
  }
  if (rt.isolation != nullptr) {
    spawner.SpawnDetachedOn(rt.isolation.get(), SnapshotWorker(snapshots, n));
  }
  std::unique_lock<std::mutex> lock(snapshots->mu);
  snapshots->cv.wait_for(lock, kSnapshotWait,
                         [&] { return snapshots->left == 0; });
  for (size_t i = 0; i < threads; ++i) {
    const std::optional<ExecutorStats>& taken = snapshots->taken[i];
    if (!taken.has_value()) s.busy_workers.push_back(i);
    if (i < n) {
      s.workers.push_back(taken.value_or(ExecutorStats{}));
    } else {
      s.isolation = taken;
    }
  }
  return s;
}

}  // namespace spindle
