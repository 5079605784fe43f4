// LocalExecutor::RunFor: a bounded run (polls, timeout, until idle), for
// programs that drive the executor from a loop of their own.

#include <chrono>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::Gate;
using executor_testing::MakeExecutor;
using RunLimits = LocalExecutor::RunLimits;
using RunStatus = LocalExecutor::RunStatus;

Task<void> Yielder(int n, int* polls) {
  for (int i = 0; i < n; ++i) {
    ++*polls;
    co_await YieldNow();
  }
  ++*polls;
}

TEST(RunForTest, StopsAfterExactlyMaxPolls) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  int polls = 0;
  for (int i = 0; i < 4; ++i) ex->SpawnDetached(Yielder(99, &polls));
  RunLimits l;
  l.max_polls = 37;
  EXPECT_EQ(ex->RunFor(l), RunStatus::kPollLimit);
  EXPECT_EQ(polls, 37);
  EXPECT_EQ(ex->RunFor(l), RunStatus::kPollLimit);
  EXPECT_EQ(polls, 74);
  // The rest: 400 polls in all.
  EXPECT_EQ(ex->RunFor(RunLimits{}), RunStatus::kDone);
  EXPECT_EQ(polls, 400);
}

TEST(RunForTest, TimeoutWhileTasksSleep) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  bool woke = false;
  auto sleeper = [](bool* w) -> Task<void> {
    co_await SleepFor(std::chrono::milliseconds(300));
    *w = true;
  };
  ex->SpawnDetached(sleeper(&woke));
  RunLimits l;
  l.timeout = std::chrono::milliseconds(20);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ex->RunFor(l), RunStatus::kTimeout);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(20));
  EXPECT_LT(took, std::chrono::milliseconds(290));
  EXPECT_FALSE(woke);
  EXPECT_EQ(ex->RunFor(RunLimits{}), RunStatus::kDone);
  EXPECT_TRUE(woke);
}

TEST(RunForTest, TimeoutZeroNeverBlocks) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Gate gate;
  ex->SpawnDetached(executor_testing::WaitOn(&gate));
  RunLimits l;
  l.timeout = std::chrono::nanoseconds(0);
  EXPECT_EQ(ex->RunFor(l), RunStatus::kTimeout);
  gate.Release();  // not on the executor: wakes it for the next run
  EXPECT_EQ(ex->RunFor(RunLimits{}), RunStatus::kDone);
}

TEST(RunForTest, UntilIdleReturnsWhenNothingIsRunnable) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Gate gate;
  int polls = 0;
  ex->SpawnDetached(Yielder(5, &polls));
  ex->SpawnDetached(executor_testing::WaitOn(&gate));
  RunLimits l;
  l.until_idle = true;
  EXPECT_EQ(ex->RunFor(l), RunStatus::kIdle);
  EXPECT_EQ(polls, 6);  // the yielder ran to its end; the waiter waits
  EXPECT_EQ(ex->Stats().live_tasks, 1u);
  gate.Release();
  EXPECT_EQ(ex->RunFor(l), RunStatus::kDone);
}

// A completion that is ready when nothing is runnable is reaped by the
// idle probe's driver poll.
TEST(RunForTest, UntilIdleReapsReadyCompletions) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  auto nop = []() -> Task<int> { co_return co_await Nop(); };
  JoinHandle<int> h = ex->Spawn(nop());
  RunLimits l;
  l.until_idle = true;
  // A NOP completes at once: the probe's driver poll reaps it, the task
  // finishes, and nothing is left.
  EXPECT_EQ(ex->RunFor(l), RunStatus::kDone);
  EXPECT_EQ(h.Join(), 0);
}

}  // namespace
}  // namespace spindle
