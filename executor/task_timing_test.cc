// Per-task timing (ExecutorBuilder::TaskTiming): the timeline of coroutine
// and fiber tasks, read from the JoinHandle and from inside the task.

#include <chrono>
#include <optional>
#include <thread>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle {
namespace {

using executor_testing::Gate;
using executor_testing::MakeExecutor;
using executor_testing::Spin;
using timing::TscClock;

std::unique_ptr<LocalExecutor> Timed() {
  ExecutorBuilder b;
  b.TaskTiming();
  return MakeExecutor(b);
}

// The timeline of a task that spins 2 ms in its first poll, sleeps 10 ms,
// and finishes: in order, with the run time counting the spin and not the
// sleep.
void ExpectSpinSleepTimeline(const TaskTiming& t) {
  EXPECT_GT(t.spawned, 0u);
  EXPECT_GE(t.first_run, t.spawned);
  EXPECT_GT(t.last_suspended, t.first_run);
  EXPECT_GE(t.last_resumed, t.last_suspended);
  EXPECT_GE(t.completed, t.last_resumed);
  EXPECT_GE(t.run_ticks, TscClock::FromNanos(2'000'000));
  EXPECT_GE(t.completed - t.first_run,
            TscClock::FromNanos(12'000'000) - TscClock::FromNanos(100'000));
  // Sleeping is not running.
  EXPECT_LT(t.run_ticks, t.completed - t.first_run - TscClock::FromNanos(
                                                         5'000'000));
}

TEST(TaskTimingTest, CoroutineTimelineInOrder) {
  auto ex = Timed();
  ASSERT_NE(ex, nullptr);
  auto body = []() -> Task<int> {
    Spin(2'000'000);
    std::optional<TaskTiming> now = CurrentTaskTiming();
    const bool first_poll = now && now->first_run == now->last_resumed &&
                            now->last_suspended == 0;
    co_await SleepFor(std::chrono::milliseconds(10));
    co_return first_poll ? 1 : 0;
  };
  JoinHandle<int> h = ex->Spawn(body());
  EXPECT_FALSE(h.Timing().has_value());  // still running
  ex->Run();
  EXPECT_EQ(h.Join(), 1);
  std::optional<TaskTiming> t = h.Timing();
  ASSERT_TRUE(t.has_value());
  ExpectSpinSleepTimeline(*t);
}

// With TaskTiming, a spawn before the Run is stamped when it happens (the
// executor's own queue-delay statistics count from the Run's start).
TEST(TaskTimingTest, SpawnBeforeTheRunIsStampedThen) {
  auto ex = Timed();
  ASSERT_NE(ex, nullptr);
  JoinHandle<int> h = ex->Spawn(executor_testing::Constant(3));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ex->Run();
  EXPECT_EQ(h.Join(), 3);
  std::optional<TaskTiming> t = h.Timing();
  ASSERT_TRUE(t.has_value());
  EXPECT_GT(t->spawned, 0u);
  EXPECT_GE(t->first_run - t->spawned, TscClock::FromNanos(20'000'000));
}

TEST(TaskTimingTest, FiberTimelineInOrder) {
  auto ex = Timed();
  ASSERT_NE(ex, nullptr);
  JoinHandle<void> h = ex->SpawnFiber([] {
    Spin(2'000'000);
    this_fiber::SleepFor(std::chrono::milliseconds(10));
  });
  ex->Run();
  std::optional<TaskTiming> t = h.Timing();
  ASSERT_TRUE(t.has_value());
  ExpectSpinSleepTimeline(*t);
}

TEST(TaskTimingTest, OffByDefault) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  bool inside = true;
  auto body = [](bool* seen) -> Task<void> {
    *seen = CurrentTaskTiming().has_value();
    co_return;
  };
  JoinHandle<void> h = ex->Spawn(body(&inside));
  ex->Run();
  EXPECT_FALSE(inside);
  EXPECT_FALSE(h.Timing().has_value());
  EXPECT_FALSE(CurrentTaskTiming().has_value());  // outside a task
}

TEST(TaskTimingTest, CancelledTasksHaveTheirEnd) {
  auto ex = Timed();
  ASSERT_NE(ex, nullptr);
  Gate gate;
  JoinHandle<void> never_ran = ex->Spawn(executor_testing::WaitOn(&gate));
  never_ran.Abort();
  JoinHandle<void> waiting = ex->Spawn(executor_testing::WaitOn(&gate));
  auto abort_later = [](JoinHandle<void>* w) -> Task<void> {
    co_await YieldNow();
    w->Abort();
  };
  ex->SpawnDetached(abort_later(&waiting));
  ex->Run();
  ASSERT_EQ(never_ran.status(), JoinStatus::kCancelled);
  std::optional<TaskTiming> a = never_ran.Timing();
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->first_run, 0u);
  EXPECT_GE(a->completed, a->spawned);
  ASSERT_EQ(waiting.status(), JoinStatus::kCancelled);
  std::optional<TaskTiming> b = waiting.Timing();
  ASSERT_TRUE(b.has_value());
  EXPECT_GT(b->first_run, 0u);
  EXPECT_GE(b->completed, b->last_suspended);
}

TEST(TaskTimingTest, RuntimeWorkersRecordIt) {
  RuntimeBuilder b;
  b.Workers(2).TaskTiming();
  auto rt = runtime_testing::MakeRuntime(b);
  ASSERT_NE(rt, nullptr);
  auto body = []() -> Task<int> {
    Spin(1'000'000);
    co_await YieldNow();
    co_return 3;
  };
  JoinHandle<int> h = rt->Spawn(body());
  JoinHandle<int> f = rt->SpawnFiber([] {
    Spin(1'000'000);
    this_fiber::Yield();
    return 4;
  });
  EXPECT_EQ(h.Join(), 3);
  EXPECT_EQ(f.Join(), 4);
  for (const JoinHandle<int>* j : {&h, &f}) {
    std::optional<TaskTiming> t = j->Timing();
    ASSERT_TRUE(t.has_value());
    EXPECT_GT(t->spawned, 0u);
    EXPECT_GE(t->first_run, t->spawned);
    EXPECT_GE(t->run_ticks, TscClock::FromNanos(1'000'000));
    EXPECT_GE(t->completed, t->first_run);
  }
}

}  // namespace
}  // namespace spindle
