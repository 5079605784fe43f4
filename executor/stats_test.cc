// ExecutorStats, field by field: scenarios whose counts are known, each
// field checked against them (exactly where the scenario fixes it, within
// the measured wall time where it is a duration).

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "budget/tier.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle {
namespace {

using namespace executor_testing;  // NOLINT: test helpers
using namespace std::chrono_literals;

// A driver the test scripts: it counts its polls; a blocking poll spins
// `idle_ns` (standing in for a sleep in the kernel) and then runs
// `on_block` (which wakes a task), so the idle time is known without a
// second thread.
class ScriptedDriver final : public Driver {
 public:
  int Poll(uint64_t timeout_ns) noexcept override {
    if (timeout_ns == 0) {
      nonblocking++;
      return 0;
    }
    blocking++;
    Spin(idle_ns);
    if (on_block) on_block();
    return 1;
  }
  void Wake() noexcept override {}
  void Shutdown() noexcept override {}
  std::string_view Name() const noexcept override { return "scripted"; }

  uint64_t idle_ns = 0;
  uint64_t nonblocking = 0;
  uint64_t blocking = 0;
  std::function<void()> on_block;
};


uint64_t Total(const std::array<uint64_t, 65>& histogram) {
  return std::accumulate(histogram.begin(), histogram.end(), uint64_t{0});
}

int Bucket(uint64_t ticks) {
  return ticks == 0 ? 0 : 64 - __builtin_clzll(ticks);
}

// Polls in buckets that start at or above `ticks`' bucket.
uint64_t AtLeast(const std::array<uint64_t, 65>& histogram, uint64_t ticks) {
  return std::accumulate(histogram.begin() + Bucket(ticks), histogram.end(),
                         uint64_t{0});
}

uint64_t NowNs() { return timing::TscClock::ToNanos(timing::TscClock::Now()); }

TEST(StatsTest, EveryFieldOfAScriptedScenario) {
  constexpr uint64_t kSpinNs = 1'000'000;
  constexpr uint64_t kIdleNs = 5'000'000;
  auto driver = std::make_unique<ScriptedDriver>();
  ScriptedDriver* d = driver.get();
  d->idle_ns = kIdleNs;
  // Queue 2 is so heavy that a task spawned into it preempts queue 1.
  auto ex = MakeExecutor(ExecutorBuilder()
                             .WithQueue(1, 1)
                             .WithQueue(2, 10000)
                             .MinSlice(1ms)
                             .SchedLatency(10ms)
                             .MaxPollsPerYield(4)
                             .DriverYield(1h)
                             .NoTiers()
                             .WithDriver(std::move(driver)));
  ASSERT_NE(ex, nullptr);
  const uint64_t wall0 = NowNs();

  // Run 1: failures, an abort, cross-queue preemption and one park.
  Gate gate;
  d->on_block = [&] { gate.Release(); };
  uint64_t live_when_woken = 0;
  auto waiter = [&]() -> Task<void> {
    co_await gate.Wait();  // parks the executor: nothing else is left
    live_when_woken = CurrentExecutor()->Stats().live_tasks;
  };
  std::string order;
  auto urgent = [&]() -> Task<void> {
    order += 'b';
    co_return;
  };
  auto background = [&]() -> Task<void> {
    for (int i = 0; i < 3; ++i) {
      CurrentExecutor()->SpawnDetached(2, urgent());
      order += 'a';
      co_await YieldMaybe();  // queue 2 should run first: yields
    }
  };
  auto fail = []() -> Task<int> {
    throw std::runtime_error("expected by the test");
    co_return 0;
  };
  // `background` is the executor's first poll (the exact counts below
  // assume this order; wake-ups after a charge preempt too since V is
  // rounded up, QueueSetTest.WakeupPreemptsAfterTheCurrentQueueWasCharged).
  ex->SpawnDetached(1, background());
  ex->SpawnDetached(1, waiter());
  ex->SpawnDetached(1, fail());  // detached: an unhandled exception
  JoinHandle<int> failing = ex->Spawn(1, fail());
  JoinHandle<int> aborted = ex->Spawn(1, Constant(1));
  JoinHandle<int> plain = ex->Spawn(1, Constant(2));
  aborted.Abort();  // from outside the run: acted on when Run starts
  EXPECT_EQ(ex->Stats().live_tasks, 6u);
  ex->Run();
  EXPECT_EQ(order, "ababab");
  EXPECT_EQ(live_when_woken, 1u);
  EXPECT_THROW(failing.Join(), std::runtime_error);
  EXPECT_EQ(aborted.status(), JoinStatus::kCancelled);
  EXPECT_EQ(plain.Join(), 2);
  EXPECT_EQ(d->blocking, 1u);

  // Run 2: one task, 8 polls of >= 1 ms, a driver yield after every 4
  // polls: 4 of them lie between two driver yields.
  auto spinner = []() -> Task<void> {
    for (int i = 0; i < 7; ++i) {
      Spin(kSpinNs);
      co_await YieldNow();
    }
    Spin(kSpinNs);
  };
  ex->SpawnDetached(spinner());
  ex->Run();

  // Run 3: stopped before it starts.
  Gate never;
  JoinHandle<void> stopped = ex->Spawn(1, WaitOn(&never));
  ex->RequestStop();
  ex->Run();
  EXPECT_EQ(stopped.status(), JoinStatus::kCancelled);
  const uint64_t wall_ns = NowNs() - wall0;

  const ExecutorStats s = ex->Stats();
  // Polls: spinner 8; waiter 2, background 4, urgent 3 x 1, the two
  // failures, `plain`; none for the aborted and stopped tasks.
  EXPECT_EQ(s.polls, 8u + 2 + 4 + 3 + 2 + 1);
  // One iteration per slice, per park, and the last of each of 3 runs; a
  // slice holds at least one poll.
  EXPECT_EQ(s.loop_iterations, s.slices + d->blocking + 3);
  EXPECT_GE(s.slices, 1u);
  EXPECT_LE(s.slices, s.polls);
  // Every 4 polls: run 1 after its 4th and 8th (its park, after the 11th,
  // starts a new count; 1 poll follows), run 2 after its 3rd and 7th.
  EXPECT_EQ(s.driver_yields, 4u);
  EXPECT_EQ(s.driver_yields, d->nonblocking);
  EXPECT_GE(s.max_ns_without_driver_yield, 4 * kSpinNs);
  EXPECT_LE(s.max_ns_without_driver_yield, wall_ns);
  EXPECT_GE(s.busy_ns, 8 * kSpinNs);
  EXPECT_GE(s.idle_ns, kIdleNs);
  EXPECT_LE(s.busy_ns + s.idle_ns, wall_ns);
  // Spawned: 1 + 6 + 3 urgent + 1 stopped; each ended exactly one way.
  EXPECT_EQ(s.spawns, 11u);
  EXPECT_EQ(s.completions, 7u);  // spinner, waiter, background, 3 urgent,
                                 // plain
  EXPECT_EQ(s.failed, 2u);
  EXPECT_EQ(s.unhandled_exceptions, 1u);
  EXPECT_EQ(s.cancellations, 2u);  // aborted, stopped
  EXPECT_EQ(s.stops, 1u);
  EXPECT_EQ(s.live_tasks, 0u);
  // No tiers (no slow threshold) and no poll near the 100 ms stuck
  // threshold: the monitor reported nothing (monitor_test covers reports).
  EXPECT_EQ(s.monitor_slow_polls, 0u);
  EXPECT_EQ(s.monitor_stuck_polls, 0u);
  ExpectAccounted(*ex);
  // Tiers are off: nothing judged, nothing discounted.
  EXPECT_EQ(s.tier_warnings, 0u);
  EXPECT_EQ(s.tier_yields, 0u);
  EXPECT_EQ(s.tier_isolations, 0u);
  EXPECT_EQ(s.tier_restores, 0u);
  EXPECT_EQ(s.preempted_polls, 0u);
  EXPECT_EQ(s.tiers.promotions + s.tiers.demotions + s.tiers.violations +
                s.tiers.slow_polls + s.tiers.cooldowns + s.tiers.warnings +
                s.tiers.log_lines + s.tiers.yields,
            0u);
  for (int64_t n : s.tiers.tasks_per_tier) EXPECT_EQ(n, 0);
  EXPECT_EQ(s.driver, "scripted");
  // ns_per_tick is what the clock converts with.
  EXPECT_GT(s.ns_per_tick, 0);
  EXPECT_NEAR(
      s.ns_per_tick * 1e9,
      static_cast<double>(timing::TscClock::ToNanos(1'000'000'000)),
      1e-3 * static_cast<double>(timing::TscClock::ToNanos(1'000'000'000)));
  EXPECT_EQ(s.share_scale, 1u);  // no isolation lane to make room for

  ASSERT_EQ(s.queues.size(), 2u);
  const QueueStatsSnapshot& q1 = s.queues[0];
  const QueueStatsSnapshot& q2 = s.queues[1];
  EXPECT_EQ(q1.sched.id, 1u);
  EXPECT_EQ(q1.sched.share, 1u);
  EXPECT_EQ(q2.sched.id, 2u);
  EXPECT_EQ(q2.sched.share, 10000u);
  EXPECT_EQ(q1.sched.polls, s.polls - 3);
  EXPECT_EQ(q2.sched.polls, 3u);
  EXPECT_EQ(q1.sched.picks, q1.sched.polls);
  EXPECT_EQ(q2.sched.picks, q2.sched.polls);
  EXPECT_EQ(q1.sched.queued + q2.sched.queued, 0u);
  EXPECT_EQ(timing::TscClock::ToNanos(q1.sched.service_ticks +
                                      q2.sched.service_ticks),
            s.busy_ns);
  // Queue delays are sampled once per slice; poll lengths count every poll.
  uint64_t delay_samples = 0;
  for (const QueueStatsSnapshot& q : s.queues) {
    delay_samples += Total(q.delay_histogram);
    EXPECT_LE(Total(q.delay_histogram), q.sched.polls);
    EXPECT_EQ(Total(q.poll_histogram), q.sched.polls);
  }
  EXPECT_EQ(delay_samples, s.slices);
  // The spinner's 8 polls took >= 1 ms each; urgent's took far less.
  EXPECT_GE(AtLeast(q1.poll_histogram, timing::TscClock::FromNanos(kSpinNs)),
            8u);
  // Each spawn into queue 2 asked queue 1 to give way once, right after
  // the poll that spawned it.
  EXPECT_EQ(q1.sched.preemptions, 3u);
  EXPECT_EQ(q1.preemptions, 3u);
  EXPECT_EQ(q2.sched.preemptions, 0u);
  EXPECT_EQ(q2.preemptions, 0u);
}

// A task spawned (or woken) while the executor is not running waits in
// its queue from the Run's start on, the earliest it could be picked: the
// time before the Run is not queue delay.  (Those spawns read no clock.)
TEST(StatsTest, QueueDelayBeforeARunCountsFromTheRunsStart) {
  auto ex = MakeExecutor(ExecutorBuilder().NoReactor());
  ASSERT_NE(ex, nullptr);
  for (int i = 0; i < 4; ++i) ex->SpawnDetached(YieldThenReturn(1, i));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ex->Run();
  const ExecutorStats s = ex->Stats();
  ASSERT_GT(s.ns_per_tick, 0.0);
  uint64_t samples = 0;
  for (const QueueStatsSnapshot& q : s.queues) {
    samples += Total(q.delay_histogram);
    for (size_t b = 1; b < q.delay_histogram.size(); ++b) {
      if (q.delay_histogram[b] == 0) continue;
      // Bucket b holds delays of at least 2^(b-1) ticks: none near the
      // 200 ms before the Run (a loaded machine may add milliseconds).
      const double low_ns = static_cast<double>(uint64_t{1} << (b - 1)) *
                            s.ns_per_tick;
      EXPECT_LT(low_ns, 50e6) << "bucket " << b;
    }
  }
  EXPECT_EQ(samples, s.slices);
}

TEST(StatsTest, NoHistogramsWithCollectStatsOff) {
  auto ex = MakeExecutor(ExecutorBuilder().CollectStats(false).NoReactor());
  ASSERT_NE(ex, nullptr);
  for (int i = 0; i < 4; ++i) ex->SpawnDetached(YieldThenReturn(2, i));
  ex->Run();
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.polls, 12u);  // counters are still kept
  for (const QueueStatsSnapshot& q : s.queues) {
    EXPECT_EQ(Total(q.delay_histogram), 0u);
    EXPECT_EQ(Total(q.poll_histogram), 0u);
  }
}

TEST(StatsTest, TierCountersFollowAHogThroughEveryTierAndBack) {
  budget::TierConfig tc;
  tc.cpu_threshold_ns = 200'000;  // 0.2 ms polls are violations
  tc.demotion_cpu_threshold_ns = 100'000;
  tc.promotion_violations = {1, 1, 1};
  tc.promotion_hysteresis_ns = 0;
  tc.violation_cooldown_ns = 10'000'000'000;
  tc.demotion_good_polls = 3;
  tc.demotion_min_time_ns = 0;
  tc.demotion_hysteresis_ns = 0;
  tc.log_warnings = false;
  ASSERT_TRUE(tc.Validate().ok()) << tc.Validate();
  auto ex =
      MakeExecutor(ExecutorBuilder().Tiers(tc).WithQueue(1, 1).NoReactor());
  ASSERT_NE(ex, nullptr);
  ASSERT_TRUE(ex->isolation_queue().has_value());
  int64_t isolated_gauge = -1;
  budget::Tier final_tier = budget::Tier::kIsolate;
  int yields = 0;
  auto hog = [&]() -> Task<void> {
    // 5 ms polls: one violation per tier climbs monitor -> isolate (three
    // of them, unless the OS's preemption discount forgives one: bounded).
    const uint64_t give_up =
        timing::TscClock::Now() + timing::TscClock::FromNanos(10'000'000'000);
    while (CurrentTaskContext()->tier() != budget::Tier::kIsolate &&
           timing::TscClock::Now() < give_up) {
      Spin(5'000'000);
      co_await YieldNow();
      ++yields;
    }
    isolated_gauge = CurrentExecutor()->Stats().tiers.tasks_per_tier[3];
    // Then short polls, until it is back at monitor (good polls on a loaded
    // machine can be preempted into slow ones: a bounded retry).
    while (CurrentTaskContext()->tier() != budget::Tier::kMonitor &&
           timing::TscClock::Now() < give_up) {
      co_await YieldNow();
      ++yields;
    }
    final_tier = CurrentTaskContext()->tier();
  };
  ex->SpawnDetached(1, hog());
  ex->Run();
  EXPECT_EQ(isolated_gauge, 1);
  EXPECT_EQ(final_tier, budget::Tier::kMonitor);

  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.polls, static_cast<uint64_t>(yields) + 1);
  EXPECT_GE(s.tier_warnings, 1u);
  EXPECT_GE(s.tier_yields, 1u);
  EXPECT_GE(s.tier_isolations, 1u);
  EXPECT_GE(s.tier_restores, 1u);
  EXPECT_LE(s.tier_restores, s.tier_isolations);
  EXPECT_GE(s.tiers.promotions, 3u);
  EXPECT_GE(s.tiers.demotions, 3u);
  EXPECT_GE(s.tiers.violations, 3u);
  EXPECT_GE(s.tiers.slow_polls, s.tiers.violations);
  EXPECT_GE(s.tiers.warnings, 1u);
  EXPECT_EQ(s.tiers.log_lines, 0u);  // log_warnings off
  EXPECT_EQ(s.tiers.yields, static_cast<uint64_t>(yields));
  for (int64_t n : s.tiers.tasks_per_tier) EXPECT_EQ(n, 0);
  // Slow polls the OS preempted are a subset of the slow polls (the
  // executor timing test makes the OS preempt; here it may or may not).
  EXPECT_LE(s.preempted_polls, s.polls);
  // One user queue of share 1: user shares are scaled so that the lane can
  // be ~1% of it; shares are reported in user units.
  EXPECT_EQ(s.share_scale, 10000u);
  ASSERT_EQ(s.queues.size(), 2u);
  EXPECT_EQ(s.queues[0].sched.share, 1u);
  const QueueStatsSnapshot& lane = s.queues[*ex->isolation_queue()];
  EXPECT_EQ(lane.sched.share, 100u);  // internal weight: 1% of 10000
  EXPECT_GT(lane.sched.polls, 0u);
  uint64_t polls = 0;
  for (const QueueStatsSnapshot& q : s.queues) {
    EXPECT_EQ(Total(q.delay_histogram), q.sched.polls);
    EXPECT_EQ(Total(q.poll_histogram), q.sched.polls);
    polls += q.sched.polls;
  }
  EXPECT_EQ(polls, s.polls);
  EXPECT_EQ(s.completions, 1u);
  ExpectAccounted(*ex);
}

}  // namespace
}  // namespace spindle
