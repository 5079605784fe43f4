// executor/executor_builder.h: ExecutorBuilder, the validated configuration
// of a LocalExecutor (executor/local_executor.h, which includes this).

#ifndef SPINDLE_EXECUTOR_EXECUTOR_BUILDER_H_
#define SPINDLE_EXECUTOR_EXECUTOR_BUILDER_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "budget/hooks.h"
#include "budget/tier.h"
#include "executor/driver.h"
#include "executor/internal/monitor.h"
#include "reactor/reactor.h"
#include "sched/queue_set.h"
#include "sched/scheduler.h"

namespace spindle {

using QueueId = sched::QueueId;

class LocalExecutor;

// ExecutorBuilder: validated configuration of a LocalExecutor.
//
// Example:
//   auto ex = spindle::ExecutorBuilder()
//                 .WithQueue(1, 3).WithQueue(2, 1)
//                 .Build();
//   if (!ex.ok()) return ex.status();
class ExecutorBuilder {
 public:
  ExecutorBuilder();
  ExecutorBuilder& WithQueue(QueueId id, uint32_t share);
  ExecutorBuilder& WithQueue(QueueId id, uint32_t share,
                             std::unique_ptr<sched::TaskScheduler> scheduler);
  ExecutorBuilder& SchedLatency(std::chrono::nanoseconds latency);  // 2 ms
  ExecutorBuilder& MinSlice(std::chrono::nanoseconds slice);        // 100 us
  ExecutorBuilder& DriverYield(std::chrono::nanoseconds interval);  // 1 ms
  ExecutorBuilder& MaxPollsPerYield(uint32_t polls);                // 61
  ExecutorBuilder& Tiers(budget::TierConfig config);  // default: FromEnv()
  ExecutorBuilder& NoTiers();                         // no tier evaluation
  ExecutorBuilder& Hooks(std::shared_ptr<budget::HookRegistry> hooks);
  // The isolation lane's share, in the same units as the queues' shares
  // (1..10000).  Default: about 1% of the sum of the queues' shares, however
  // small they are (user shares are scaled up internally so that the lane
  // can be a fraction of the smallest; ExecutorStats::share_scale).
  ExecutorBuilder& IsolationShare(uint32_t share);
  ExecutorBuilder& CollectStats(bool enabled);  // default true
  // Records every task's TaskTiming (JoinHandle::Timing(),
  // CurrentTaskTiming()).  Off by default: it times every poll on its own
  // (two clock reads a poll instead of two a slice); the suite's
  // 1B_yield/spindle_timed row measures the cost.
  ExecutorBuilder& TaskTiming(bool enabled = true);
  // The process's poll monitor (one thread for all executors, asleep while
  // none runs) reports polls that run past the tiers' threshold and polls
  // stuck past this threshold (default 100 ms, or SPINDLE_STUCK_THRESHOLD_MS
  // in 1..3600000), naming the task.  NoMonitor(): no extra thread; a stuck
  // poll then goes unreported until it returns (the tiers still judge
  // every poll when it ends).
  ExecutorBuilder& StuckThreshold(std::chrono::nanoseconds threshold);
  ExecutorBuilder& NoMonitor();
  // Called on the monitor's thread for each report; must not block, create
  // or destroy executors.
  ExecutorBuilder& OnMonitorReport(
      std::function<void(const MonitorReport&)> hook);
  // The reactor's options (default: ReactorOptions::FromEnv(), i.e.
  // SPINDLE_REACTOR=auto|io_uring|epoll, auto when unset).
  ExecutorBuilder& Reactor(reactor::ReactorOptions options);
  // No reactor: a futex ParkingDriver; I/O awaitables return -ENOTSUP.
  ExecutorBuilder& NoReactor();
  // Replaces the driver altogether (for tests and embedders).
  ExecutorBuilder& WithDriver(std::unique_ptr<Driver> driver);

  // InvalidArgument naming the value and the valid range for: duplicate
  // queue id, share 0 or > 10000, more than 256 queues (255 with tiers on:
  // the isolation lane takes one), non-positive durations, MaxPollsPerYield
  // 0, min slice above sched latency, a bad TierConfig or SPINDLE_* value.
  absl::StatusOr<std::unique_ptr<LocalExecutor>> Build();

 private:
  struct QueueSpec {
    QueueId id;
    uint32_t share;
    std::unique_ptr<sched::TaskScheduler> scheduler;
  };
  std::vector<QueueSpec> queues_;
  std::chrono::nanoseconds sched_latency_{2'000'000};
  std::chrono::nanoseconds min_slice_{100'000};
  std::chrono::nanoseconds driver_yield_{1'000'000};
  int64_t max_polls_per_yield_ = 61;
  std::optional<budget::TierConfig> tiers_;
  bool tiers_off_ = false;
  std::shared_ptr<budget::HookRegistry> hooks_;
  std::optional<uint32_t> isolation_share_;
  bool stats_ = true;
  bool task_timing_ = false;
  std::optional<std::chrono::nanoseconds> stuck_threshold_;
  bool no_monitor_ = false;
  std::function<void(const MonitorReport&)> monitor_hook_;
  std::unique_ptr<Driver> driver_;
  std::optional<reactor::ReactorOptions> reactor_options_;
  bool no_reactor_ = false;
  std::vector<absl::Status> errors_;
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_EXECUTOR_BUILDER_H_
