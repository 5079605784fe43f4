// Fibers in the fair scheduler: CPU shares between a coroutine queue and a
// fiber queue, and the tiers acting on a fiber that hogs its polls.
// Timing-sensitive, like executor_timing_test.

#include <cstdint>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle {
namespace {

using executor_testing::MakeExecutor;
using executor_testing::Spin;

// Queue 1 (share 3) runs coroutines, queue 2 (share 1) fibers: the CPU
// splits 3:1 as it does between two coroutine queues.
TEST(FiberTimingTest, FairnessThreeToOneBetweenCoroutinesAndFibers) {
  auto ex = MakeExecutor(
      ExecutorBuilder().WithQueue(1, 3).WithQueue(2, 1).NoTiers());
  ASSERT_NE(ex, nullptr);
  const uint64_t end =
      timing::TscClock::Now() + timing::TscClock::FromNanos(1'000'000'000);
  auto coroutine = [](uint64_t until) -> Task<void> {
    while (timing::TscClock::Now() < until) {
      Spin(20'000);
      co_await YieldNow();
    }
  };
  SpawnOptions on_fibers;
  on_fibers.queue = 2;
  for (int i = 0; i < 4; ++i) {
    ex->SpawnDetached(1, coroutine(end));
    ex->SpawnFiberDetached(
        [end] {
          while (timing::TscClock::Now() < end) {
            Spin(20'000);
            this_fiber::Yield();
          }
        },
        FiberOptions{}, on_fibers);
  }
  ex->Run();
  ExecutorStats s = ex->Stats();
  const double a = static_cast<double>(s.queues[0].sched.service_ticks);
  const double b = static_cast<double>(s.queues[1].sched.service_ticks);
  EXPECT_NEAR(a / (a + b), 0.75, 0.03) << "a=" << a << " b=" << b;
}

// A fiber that spins 5 ms per poll climbs the tiers like a coroutine would,
// and a coroutine in another queue keeps running between its polls.
TEST(FiberTimingTest, TiersActOnAHoggingFiber) {
  budget::TierConfig tc = budget::TierConfig::Aggressive();
  tc.cpu_threshold_ns = 2'000'000;
  tc.promotion_violations = {1, 1, 1};
  tc.promotion_hysteresis_ns = 1'000'000;
  tc.log_warnings = false;
  ASSERT_TRUE(tc.Validate().ok()) << tc.Validate();
  auto ex = MakeExecutor(
      ExecutorBuilder().WithQueue(1, 1).WithQueue(2, 1).Tiers(tc));
  ASSERT_NE(ex, nullptr);
  bool stop = false;
  budget::Tier reached = budget::Tier::kMonitor;
  SpawnOptions hog_queue;
  hog_queue.queue = 1;
  JoinHandle<void> hog = ex->SpawnFiber(
      [&] {
        for (int i = 0; i < 200 && !stop; ++i) {
          Spin(5'000'000);
          this_fiber::Yield();
          const budget::Tier t = CurrentTaskContext()->tier();
          if (t > reached) reached = t;
          if (t == budget::Tier::kIsolate) break;
        }
        stop = true;
      },
      FiberOptions{}, hog_queue);
  int other_polls = 0;
  auto other = [](bool* s, int* polls) -> Task<void> {
    while (!*s) {
      ++*polls;
      co_await YieldNow();
    }
  };
  ex->SpawnDetached(2, other(&stop, &other_polls));
  ex->Run();
  EXPECT_EQ(hog.status(), JoinStatus::kCompleted);
  EXPECT_EQ(reached, budget::Tier::kIsolate);
  const ExecutorStats s = ex->Stats();
  EXPECT_GE(s.tier_isolations, 1u);
  EXPECT_GT(other_polls, 1);
}

}  // namespace
}  // namespace spindle
