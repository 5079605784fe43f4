// executor/executor_builder.cc: ExecutorBuilder, the validated
// configuration of a LocalExecutor.

#include <algorithm>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "executor/internal/inbox.h"
#include "executor/internal/preemption.h"
#include "executor/io.h"
#include "executor/local_executor.h"
#include "timing/clock.h"

namespace spindle {

using executor_internal::Inbox;


ExecutorBuilder::ExecutorBuilder() = default;

ExecutorBuilder& ExecutorBuilder::WithQueue(QueueId id, uint32_t share) {
  return WithQueue(id, share, nullptr);
}

ExecutorBuilder& ExecutorBuilder::WithQueue(
    QueueId id, uint32_t share, std::unique_ptr<sched::TaskScheduler> s) {
  queues_.push_back(QueueSpec{id, share, std::move(s)});
  return *this;
}

namespace {
void CheckDuration(std::vector<absl::Status>& errors, const char* name,
                   std::chrono::nanoseconds d) {
  if (d.count() <= 0) {
    errors.push_back(absl::InvalidArgumentError(
        absl::StrCat("ExecutorBuilder::", name, "(", d.count(),
                     "ns): must be positive (valid range: 1ns .. 1h)")));
  } else if (d > std::chrono::hours(1)) {
    errors.push_back(absl::InvalidArgumentError(
        absl::StrCat("ExecutorBuilder::", name, "(", d.count(),
                     "ns): too long (valid range: 1ns .. 1h)")));
  }
}
}  // namespace

ExecutorBuilder& ExecutorBuilder::SchedLatency(std::chrono::nanoseconds d) {
  CheckDuration(errors_, "SchedLatency", d);
  sched_latency_ = d;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::MinSlice(std::chrono::nanoseconds d) {
  CheckDuration(errors_, "MinSlice", d);
  min_slice_ = d;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::DriverYield(std::chrono::nanoseconds d) {
  CheckDuration(errors_, "DriverYield", d);
  driver_yield_ = d;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::MaxPollsPerYield(uint32_t polls) {
  if (polls == 0 || polls > 1'000'000) {
    errors_.push_back(absl::InvalidArgumentError(
        absl::StrCat("ExecutorBuilder::MaxPollsPerYield(", polls,
                     "): valid range is 1..1000000")));
  }
  max_polls_per_yield_ = polls;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::Tiers(budget::TierConfig config) {
  tiers_ = std::move(config);
  tiers_off_ = false;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::NoTiers() {
  tiers_off_ = true;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::Hooks(
    std::shared_ptr<budget::HookRegistry> hooks) {
  hooks_ = std::move(hooks);
  return *this;
}
ExecutorBuilder& ExecutorBuilder::IsolationShare(uint32_t share) {
  isolation_share_ = share;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::CollectStats(bool enabled) {
  stats_ = enabled;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::TaskTiming(bool enabled) {
  task_timing_ = enabled;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::StuckThreshold(std::chrono::nanoseconds d) {
  CheckDuration(errors_, "StuckThreshold", d);
  stuck_threshold_ = d;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::NoMonitor() {
  no_monitor_ = true;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::OnMonitorReport(
    std::function<void(const MonitorReport&)> hook) {
  monitor_hook_ = std::move(hook);
  return *this;
}
ExecutorBuilder& ExecutorBuilder::Reactor(reactor::ReactorOptions options) {
  reactor_options_ = options;
  no_reactor_ = false;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::NoReactor() {
  no_reactor_ = true;
  return *this;
}
ExecutorBuilder& ExecutorBuilder::WithDriver(std::unique_ptr<Driver> driver) {
  driver_ = std::move(driver);
  return *this;
}

absl::StatusOr<std::unique_ptr<LocalExecutor>> ExecutorBuilder::Build() {
  if (!errors_.empty()) return errors_.front();
  if (min_slice_ > sched_latency_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ExecutorBuilder: MinSlice (", min_slice_.count(),
        "ns) must not exceed SchedLatency (", sched_latency_.count(), "ns)"));
  }
  if (auto s = timing::TscClock::InitFromEnv(); !s.ok()) return s;
  // The queue set keeps its latency in TSC ticks (at most 2^32); say what
  // that is in the unit the user gave.
  const uint64_t max_latency_ns =
      timing::TscClock::ToNanos(sched::QueueSetConfig::kMaxLatencyTicks);
  if (static_cast<uint64_t>(sched_latency_.count()) > max_latency_ns) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ExecutorBuilder::SchedLatency(", sched_latency_.count(),
        "ns): too long for this machine's clock (valid range: 1ns .. ",
        max_latency_ns, "ns)"));
  }

  uint64_t stuck_ns = 100'000'000;
  if (stuck_threshold_.has_value()) {
    stuck_ns = static_cast<uint64_t>(stuck_threshold_->count());
  } else if (const char* env = std::getenv("SPINDLE_STUCK_THRESHOLD_MS");
             env != nullptr && *env != '\0') {
    int64_t ms = 0;
    if (!absl::SimpleAtoi(env, &ms) || ms < 1 || ms > 3'600'000) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SPINDLE_STUCK_THRESHOLD_MS='", env,
          "' is not a valid threshold; valid range: integer 1..3600000 "
          "(milliseconds)"));
    }
    stuck_ns = static_cast<uint64_t>(ms) * 1'000'000u;
  }

  std::unique_ptr<budget::TierManager> tiers;
  uint32_t untiered_budget = 0;
  if (tiers_off_) {
    // No tiers, but the budget still sets how often YieldMaybe yields:
    // SPINDLE_BUDGET applies (and a bad SPINDLE_* value is still an error).
    absl::StatusOr<budget::TierConfig> env = budget::TierConfig::FromEnv();
    if (!env.ok()) return env.status();
    untiered_budget = env->poll_budget;
  } else {
    budget::TierConfig config;
    if (tiers_.has_value()) {
      config = *tiers_;
    } else {
      absl::StatusOr<budget::TierConfig> env = budget::TierConfig::FromEnv();
      if (!env.ok()) return env.status();
      config = *env;
    }
    absl::StatusOr<std::unique_ptr<budget::TierManager>> tm =
        budget::TierManager::Create(config);
    if (!tm.ok()) return tm.status();
    tiers = std::move(*tm);
  }

  const size_t max_user_queues =
      sched::QueueSet::kMaxQueues - (tiers != nullptr ? 1 : 0);
  if (queues_.size() > max_user_queues) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ExecutorBuilder: ", queues_.size(),
        " queues given; valid range is 1..", max_user_queues,
        tiers != nullptr ? " (the isolation lane of the tiers takes one of "
                           "the 256; use NoTiers() for 256)"
                         : ""));
  }

  sched::QueueSetConfig qc;
  qc.sched_latency_ticks = timing::TscClock::FromNanos(
      static_cast<uint64_t>(sched_latency_.count()));
  qc.min_slice_ticks =
      timing::TscClock::FromNanos(static_cast<uint64_t>(min_slice_.count()));
  if (auto s = qc.Validate(); !s.ok()) return s;

  std::unique_ptr<LocalExecutor> ex(new LocalExecutor());
  // driver_ stays null until the end: a half-built executor's destructor
  // does nothing.
  ex->queue_set_ = std::make_unique<sched::QueueSet>(qc);
  ex->inbox_ = std::make_shared<Inbox>();
  ex->inbox_->owner = ex.get();
  // Retired by the destructor (even a half-built executor's): the anchor's
  // reference to the inbox goes with the last handle after that.
  ex->inbox_->handle_anchor.Arm(ex.get(), ex->inbox_);
  // Without WithQueue: one default queue (id 0).
  if (queues_.empty())
    queues_.push_back(QueueSpec{0, kDefaultQueueShare, nullptr});
  // With tiers on, user shares are scaled up inside the queue set so that
  // the isolation lane can be a small fraction of any of them: with shares
  // 3:1, a lane of share 1 would get as much as the second queue.
  uint32_t scale = 1;
  if (tiers != nullptr) {
    uint32_t max_share = 1;
    for (const QueueSpec& q : queues_) max_share = std::max(max_share, q.share);
    if (max_share <= sched::QueueSet::kMaxShare) {
      scale = std::max<uint32_t>(1, sched::QueueSet::kMaxShare / max_share);
    }
  }
  ex->share_scale_ = scale;
  uint64_t scaled_sum = 0;
  for (QueueSpec& q : queues_) {
    if (q.id == kIsolationQueueId && tiers != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("ExecutorBuilder::WithQueue(", q.id,
                       "): this id is reserved for the isolation lane; valid "
                       "ids are 0..",
                       kIsolationQueueId - 1));
    }
    if (q.share == 0 || q.share > sched::QueueSet::kMaxShare) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ExecutorBuilder::WithQueue(", q.id, ", share ", q.share,
          "): valid shares are 1..", sched::QueueSet::kMaxShare));
    }
    absl::StatusOr<uint16_t> idx = ex->queue_set_->AddQueue(
        q.id, q.share * scale, std::move(q.scheduler));
    if (!idx.ok()) return idx.status();
    scaled_sum += uint64_t{q.share} * scale;
    ex->inbox_->queue_index.emplace(q.id, *idx);
  }
  ex->inbox_->default_queue = ex->inbox_->queue_index.at(queues_.front().id);
  if (tiers != nullptr) {
    // Default: about 1% of what the user queues share together.
    uint64_t lane = isolation_share_.has_value()
                        ? uint64_t{*isolation_share_} * scale
                        : std::max<uint64_t>(1, scaled_sum / 100);
    lane = std::min<uint64_t>(lane, sched::QueueSet::kMaxShare);
    if (isolation_share_.has_value() &&
        (*isolation_share_ == 0 ||
         *isolation_share_ > sched::QueueSet::kMaxShare)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ExecutorBuilder::IsolationShare(", *isolation_share_,
          "): valid range is 1..", sched::QueueSet::kMaxShare));
    }
    absl::StatusOr<uint16_t> idx = ex->queue_set_->AddQueue(
        kIsolationQueueId, static_cast<uint32_t>(std::max<uint64_t>(1, lane)));
    if (!idx.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ExecutorBuilder::IsolationShare: ",
                       std::string(idx.status().message())));
    }
    ex->isolation_index_ = *idx;
    ex->min_violation_ticks_ =
        *std::min_element(tiers->policy().violation_ticks.begin(),
                          tiers->policy().violation_ticks.end());
    ex->default_budget_ =
        tiers->policy()
            .budget[0][static_cast<size_t>(budget::TaskPriority::kNormal)];
  }
  if (tiers == nullptr) ex->default_budget_ = untiered_budget;
  ex->tiers_ = std::move(tiers);
  ex->hooks_ = std::move(hooks_);
  if (driver_ == nullptr && !no_reactor_) {
    reactor::ReactorOptions options;
    if (reactor_options_.has_value()) {
      options = *reactor_options_;
    } else {
      absl::StatusOr<reactor::ReactorOptions> env =
          reactor::ReactorOptions::FromEnv();
      if (!env.ok()) return env.status();
      options = *env;
    }
    absl::StatusOr<std::unique_ptr<ReactorDriver>> rd =
        ReactorDriver::Create(options);
    if (!rd.ok()) return rd.status();
    driver_ = std::move(*rd);
  }
  ex->driver_ = driver_ != nullptr ? std::move(driver_)
                                   : std::make_unique<ParkingDriver>();
  ex->inbox_->driver = ex->driver_.get();
  ex->io_ = ex->driver_->reactor();
  if (ex->io_ != nullptr) {
    ex->io_peeks_ = ex->io_->PeeksCompletions();
    ex->io_interval_ticks_ =
        timing::TscClock::FromNanos(LocalExecutor::kIoIntervalNs);
  }
  ex->max_polls_per_yield_ = static_cast<uint32_t>(max_polls_per_yield_);
  ex->driver_yield_ticks_ =
      timing::TscClock::FromNanos(static_cast<uint64_t>(driver_yield_.count()));
  ex->collect_stats_ = stats_;
  ex->task_timing_ = task_timing_;
  if (!no_monitor_) {
    ex->beacon_.slow_ns =
        ex->tiers_ != nullptr
            ? timing::TscClock::ToNanos(ex->min_violation_ticks_)
            : 0;
    ex->beacon_.stuck_ns = stuck_ns;
    ex->beacon_.hook = std::move(monitor_hook_);
    executor_internal::Monitor::Get().Register(&ex->beacon_);
    ex->monitored_ = true;
  }
  ex->cpu_mark_refresh_ticks_ =
      timing::TscClock::FromNanos(executor_internal::kCpuMarkRefreshNs);
  ex->park_mark_ticks_ =
      timing::TscClock::FromNanos(executor_internal::kParkMarkNs);
  ex->delay_histograms_.assign(ex->queue_set_->num_queues(), {});
  ex->poll_histograms_.assign(ex->queue_set_->num_queues(), {});
  ex->preemptions_.assign(ex->queue_set_->num_queues(), 0);
  ex->slice_quota_.assign(ex->queue_set_->num_queues(), {});
  for (size_t i = 0; i < ex->slice_quota_.size(); ++i) {
    // Per-poll timing where something needs each poll's time: a scheduler
    // that observes service, hooks (after_poll gets the poll's length),
    // task timing.
    if (ex->queue_set_->IsFifo(static_cast<uint16_t>(i)) &&
        ex->hooks_ == nullptr && !ex->task_timing_) {
      ex->slice_quota_[i].max_quota = LocalExecutor::kMaxQuota;
    }
  }
  for (int p = 0; p < budget::kNumPriorities; ++p) {
    if (ex->tiers_ != nullptr) {
      ex->fast_budget_[p].budget = ex->tiers_->policy().budget[0][p];
      ex->fast_budget_[p].deadline_ticks =
          ex->tiers_->policy().deadline_ticks[0][p];
    } else {
      ex->fast_budget_[p].budget = ex->default_budget_;
    }
  }
  ex->slice_target_ticks_ =
      timing::TscClock::FromNanos(LocalExecutor::kSliceTargetNs);
  ex->busy_deadline_ticks_ =
      timing::TscClock::FromNanos(LocalExecutor::kBusyDeadlineNs);
  ex->stats_.driver = ex->driver_->Name();
  return ex;
}

}  // namespace spindle
