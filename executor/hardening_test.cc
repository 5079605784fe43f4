// Regression tests for defects found by probing the single-thread core
// (the executor side; I/O ones are in io_hardening_test.cc).  Each test
// names the defect it guards against.

#include <cstdlib>
#include <latch>
#include <memory>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "budget/hooks.h"
#include "executor/executor.h"
#include "executor/frame_allocator.h"
#include "executor/internal/preemption.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle {
namespace {

using namespace executor_testing;  // NOLINT: test helpers
using namespace std::chrono_literals;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kStressRounds = 200;
#else
constexpr int kStressRounds = 2000;
#endif


// Runs `ex` until every task spawned so far has suspended or finished.
void Settle(LocalExecutor& ex) {
  auto nothing = []() -> Task<void> { co_return; };
  ex.BlockOn(nothing());
}

// ---- Item 2: Abort from another thread while the executor is destroyed.

std::latch* g_in_window = nullptr;
std::binary_semaphore* g_destroyed = nullptr;

TEST(HardeningTest, AbortRacingExecutorDestructionDoesNotTouchAFreedInbox) {
  // The aborting thread is held between taking the message's reference and
  // submitting it while the executor is destroyed (asan reported a
  // heap-use-after-free of the inbox here).
  std::latch in_window(1);
  std::binary_semaphore destroyed(0);
  g_in_window = &in_window;
  g_destroyed = &destroyed;
  auto ex = MakeExecutor();
  // Queued, never run: nothing but the executor holds its inbox (a task
  // suspended on a Waker would keep it alive through the Waker).
  JoinHandle<int> h = ex->Spawn(Constant(1));
  executor_internal::SetAbortWindowHookForTesting([] {
    g_in_window->count_down();
    g_destroyed->acquire();
  });
  std::thread aborter([&] { h.Abort(); });
  in_window.wait();
  ex.reset();
  destroyed.release();
  aborter.join();
  executor_internal::SetAbortWindowHookForTesting(nullptr);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

TEST(HardeningTest, AbortVersusDestroyStress) {
  for (int round = 0; round < kStressRounds; ++round) {
    auto ex = MakeExecutor();
    JoinHandle<int> h = ex->Spawn(Constant(1));
    std::latch go(2);
    std::thread aborter([&] {
      go.arrive_and_wait();
      h.Abort();
    });
    go.arrive_and_wait();
    ex.reset();
    aborter.join();
    ASSERT_EQ(h.status(), JoinStatus::kCancelled);
  }
}

// ---- Item 5: thread-exit order of the frame cache.

struct LateExecutorHolder {
  std::unique_ptr<LocalExecutor> ex;
  uint64_t cached_after_destroy = UINT64_MAX;
  uint64_t* out = nullptr;
  ~LateExecutorHolder() {
    ex.reset();  // frees frames after the thread's cache was flushed
    if (out != nullptr) {
      *out = executor_internal::ThreadFrameStats().cached_blocks;
    }
  }
};

TEST(HardeningTest, ExecutorInThreadLocalStorageFreesFramesAtThreadExit) {
  uint64_t cached = UINT64_MAX;
  std::thread t([&] {
    // Constructed before this thread's first frame allocation, so it is
    // destroyed after the frame cache's own thread-exit cleanup.
    thread_local LateExecutorHolder holder;
    holder.out = &cached;
    holder.ex = MakeExecutor();
    Gate gate;  // never opened: the tasks stay suspended
    for (int i = 0; i < 100; ++i) holder.ex->SpawnDetached(WaitOn(&gate));
    Settle(*holder.ex);
    gate.waiter = Waker();
  });
  t.join();
  // The frames went back to the system, not into a cache nobody frees (LSan
  // reported 100 leaked frames).
  EXPECT_EQ(cached, 0u);
}

// ---- Item 8: joins that could never finish.

TEST(HardeningTest, TwoTasksAwaitingOneHandleFailAtOnce) {
  auto ex = MakeExecutor();
  Gate gate;
  JoinHandle<void> target = ex->Spawn(WaitOn(&gate));
  int first_resumed = 0;
  std::string second_error;
  auto first = [&]() -> Task<void> {
    co_await target;
    first_resumed++;
  };
  auto second = [&]() -> Task<void> {
    try {
      co_await target;
    } catch (const TaskMisuseError& e) {
      second_error = e.what();
    }
    gate.Release();
  };
  ex->SpawnDetached(first());
  ex->SpawnDetached(second());
  ex->Run();  // returned: nothing hangs
  EXPECT_EQ(first_resumed, 1);
  EXPECT_NE(second_error.find("already awaiting"), std::string::npos)
      << second_error;
  ExpectAccounted(*ex);
}

TEST(HardeningTest, JoinFromInsideTheSameExecutorFailsAtOnce) {
  auto ex = MakeExecutor();
  Gate gate;
  JoinHandle<void> target = ex->Spawn(WaitOn(&gate));
  std::string join_error, wait_error;
  auto joiner = [&]() -> Task<void> {
    try {
      target.Join();
    } catch (const TaskMisuseError& e) {
      join_error = e.what();
    }
    try {
      (void)target.Wait();
    } catch (const TaskMisuseError& e) {
      wait_error = e.what();
    }
    gate.Release();
    co_return;
  };
  ex->SpawnDetached(joiner());
  ex->Run();
  EXPECT_NE(join_error.find("block it forever"), std::string::npos);
  EXPECT_NE(wait_error.find("block it forever"), std::string::npos);
  EXPECT_EQ(target.status(), JoinStatus::kCompleted);
}

TEST(HardeningTest, ATaskAwaitingItsOwnHandleFailsAtOnce) {
  auto ex = MakeExecutor();
  JoinHandle<int> self;
  std::string error;
  auto body = [&]() -> Task<int> {
    co_await YieldNow();  // `self` is assigned by now
    try {
      co_return co_await self;
    } catch (const TaskMisuseError& e) {
      error = e.what();
    }
    co_return -1;
  };
  self = ex->Spawn(body());
  ex->Run();
  EXPECT_NE(error.find("its own"), std::string::npos) << error;
  EXPECT_EQ(self.Join(), -1);
}

// ---- Item 9: a task that aborts itself and then suspends.

TEST(HardeningTest, SelfAbortThenSuspendOnAWakerIsCancelled) {
  auto ex = MakeExecutor();
  Gate gate;  // never opened
  JoinHandle<void> h;
  bool after = false;
  auto body = [&]() -> Task<void> {
    co_await YieldNow();
    h.Abort();
    co_await gate.Wait();
    after = true;
  };
  h = ex->Spawn(body());
  ex->Run();  // returns: the task is cancelled at its suspension
  EXPECT_FALSE(after);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  ExpectAccounted(*ex);
}

TEST(HardeningTest, SelfAbortThenAwaitAJoinIsCancelled) {
  auto ex = MakeExecutor();
  Gate gate;
  JoinHandle<void> target = ex->Spawn(WaitOn(&gate));
  JoinHandle<void> h;
  auto body = [&]() -> Task<void> {
    co_await YieldNow();
    h.Abort();
    co_await target;
  };
  h = ex->Spawn(body());
  auto opener = [&]() -> Task<void> {
    for (int i = 0; i < 3; ++i) co_await YieldNow();
    gate.Release();
  };
  ex->SpawnDetached(opener());
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(target.status(), JoinStatus::kCompleted);
  ExpectAccounted(*ex);
}

TEST(HardeningTest, AbortFromABeforePollHookThenSuspendIsCancelled) {
  auto hooks = std::make_shared<budget::HookRegistry>();
  JoinHandle<void> target;
  std::atomic<uint64_t> target_id{0};
  budget::PollHooks h;
  h.before_poll = [&](const budget::TaskContext& ctx) {
    if (ctx.task_id == target_id.load()) target.Abort();
  };
  hooks->Install(std::move(h));
  auto ex = MakeExecutor(ExecutorBuilder().Hooks(hooks));
  Gate gate;  // never opened
  target = ex->Spawn(WaitOn(&gate));
  target_id.store(target.id());
  ex->Run();  // returns: cancelled where it suspended
  EXPECT_EQ(target.status(), JoinStatus::kCancelled);
  ExpectAccounted(*ex);
}

// ---- Item 10: cross-queue preemption is not cancelled by the executor.

TEST(HardeningTest, AWakeIntoAQueueThatShouldRunFirstSwitchesQueues) {
  auto ex = MakeExecutor(ExecutorBuilder()
                             .WithQueue(1, 1)
                             .WithQueue(2, 10000)
                             .MinSlice(std::chrono::milliseconds(1))
                             .SchedLatency(std::chrono::milliseconds(10))
                             .NoTiers());
  std::vector<char> order;
  auto urgent = [&]() -> Task<void> {
    order.push_back('b');
    co_return;
  };
  auto background = [&]() -> Task<void> {
    for (int i = 0; i < 5; ++i) {
      ex->SpawnDetached(2, urgent());  // queue 2 becomes runnable
      order.push_back('a');
      co_await YieldMaybe();  // yields: queue 2 should run first
    }
  };
  ex->SpawnDetached(1, background());
  ex->Run();
  // Each spawn into the heavy queue runs before the background task's next
  // step (the preemption was honoured by the next Pick).
  EXPECT_EQ(std::string(order.begin(), order.end()), "ababababab");
  EXPECT_GE(ex->Stats().queues[0].preemptions, 5u);
}

// ---- Item 11: the isolation lane's share follows the user shares.

TEST(HardeningTest, IsolationLaneIsSmallBesideEveryUserQueue) {
  auto ex = MakeExecutor(ExecutorBuilder().WithQueue(1, 3).WithQueue(2, 1));
  ASSERT_TRUE(ex->isolation_queue().has_value());
  const ExecutorStats s = ex->Stats();
  const uint32_t lane = s.queues[*ex->isolation_queue()].sched.share;
  EXPECT_EQ(s.queues[0].sched.share, 3u);  // reported in user units
  EXPECT_EQ(s.queues[1].sched.share, 1u);
  // Internal weights: the lane is at most ~1% of the smallest user queue's
  // neighbourhood (here: 4% of queue 2, 1% of the total).
  const double q2_weight = 1.0 * s.share_scale;
  EXPECT_LE(lane, q2_weight / 10) << "lane " << lane << " scale "
                                  << s.share_scale;
  EXPECT_GE(lane, 1u);
}

TEST(HardeningTest, AnIsolatedTaskRunsInTheIsolationLane) {
  budget::TierConfig tc;
  tc.cpu_threshold_ns = 200'000;  // 0.2 ms polls are violations
  tc.demotion_cpu_threshold_ns = 100'000;
  tc.promotion_violations = {1, 1, 1};
  tc.promotion_hysteresis_ns = 0;
  tc.violation_cooldown_ns = 10'000'000'000;
  tc.log_warnings = false;
  auto ex = MakeExecutor(ExecutorBuilder().Tiers(tc).WithQueue(1, 1));
  ASSERT_NE(ex, nullptr);
  auto hog = []() -> Task<void> {
    for (int i = 0; i < 12; ++i) {
      Spin(2'000'000);  // 2 ms per poll
      co_await YieldNow();
    }
  };
  ex->SpawnDetached(hog());
  ex->Run();
  const ExecutorStats s = ex->Stats();
  EXPECT_GE(s.tier_isolations, 1u);
  EXPECT_GT(s.queues[*ex->isolation_queue()].sched.polls, 0u)
      << "an isolated task must be polled from the isolation lane";
}

// ---- Item 12: the preemption discount is the poll's own share.

TEST(HardeningTest, PreemptionDiscountIsProportionalToThePoll) {
  using executor_internal::JudgedPollNs;
  // A 20 ms poll in a 1 s window that had 500 ms of CPU: the old rule took
  // all 500 ms of off-CPU time off the poll and judged a real hog 0 ns.
  EXPECT_EQ(JudgedPollNs(20'000'000, 1'000'000'000, 500'000'000), 10'000'000u);
  // Fully on CPU: no discount.
  EXPECT_EQ(JudgedPollNs(20'000'000, 30'000'000, 30'000'000), 20'000'000u);
  // The poll is the whole window and was preempted half of it.
  EXPECT_EQ(JudgedPollNs(10'000'000, 10'000'000, 5'000'000), 5'000'000u);
  // A short window: a polite 50 us poll preempted for 5 ms is charged its
  // own time, not the preemption.
  EXPECT_EQ(JudgedPollNs(5'050'000, 5'500'000, 500'000), 50'000u);
  // Never more than the wall time; no overflow on huge values.
  EXPECT_LE(JudgedPollNs(UINT64_MAX / 2, UINT64_MAX / 2, 1), UINT64_MAX / 2);
}

// ---- Item 13: ids, the queue set, spawning from the wrong thread.

TEST(HardeningTest, IdsOfSpawnerHandlesAreFinalBeforeTheTaskIsAdopted) {
  auto ex = MakeExecutor();
  Spawner sp = ex->GetSpawner();
  constexpr int kN = 2000;
  std::vector<uint64_t> remote_ids(kN);
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (int i = 0; i < kN; ++i) {
      JoinHandle<int> h = sp.Spawn(Constant(i));
      remote_ids[i] = h.id();  // raced with Adopt on the executor thread
    }
    done.store(true, std::memory_order_release);
  });
  auto keeper = [&]() -> Task<void> {
    while (!done.load(std::memory_order_acquire)) co_await YieldNow();
  };
  std::vector<uint64_t> local_ids;
  for (int i = 0; i < 10; ++i) local_ids.push_back(ex->Spawn(Constant(i)).id());
  ex->SpawnDetached(keeper());
  ex->Run();
  producer.join();
  std::vector<uint64_t> all = remote_ids;
  all.insert(all.end(), local_ids.begin(), local_ids.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end())
      << "task ids must be unique";
  EXPECT_EQ(std::count(all.begin(), all.end(), 0u), 0);
}

TEST(HardeningTest, QueueSetIsReadOnlyAfterBuild) {
  auto ex = MakeExecutor();
  static_assert(std::is_const_v<
                std::remove_reference_t<decltype(ex->queue_set())>>);
  EXPECT_EQ(ex->queue_set().num_queues(), 2u);  // default + isolation lane
}

void SpawnFromAForeignThreadWhileRunning() {
  auto ex = MakeExecutor();
  std::atomic<bool> stop{false};
  std::atomic<bool> running{false};
  auto spin = [&]() -> Task<void> {
    running = true;
    while (!stop.load()) co_await YieldNow();
  };
  ex->SpawnDetached(spin());
  std::thread runner([&] { ex->Run(); });
  while (!running.load()) std::this_thread::yield();
  ex->SpawnDetached(Constant(1));  // not the running thread
  stop = true;
  runner.join();
}

TEST(HardeningDeathTest, SpawningThroughTheExecutorFromAnotherThreadFails) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(SpawnFromAForeignThreadWhileRunning(), "use GetSpawner");
}

// ---- Item 14: empty handles and tasks, values taken twice, failures.

TEST(HardeningDeathTest, EmptyHandlesAndTasksFailWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        JoinHandle<int> h;
        (void)h.status();
      },
      "empty handle");
  EXPECT_DEATH(
      {
        auto ex = MakeExecutor();
        Task<int> t;
        ex->SpawnDetached(std::move(t));
      },
      "empty Task");
  EXPECT_DEATH(
      {
        auto ex = MakeExecutor();
        auto twice = []() -> Task<int> {
          Task<int> c = Constant(1);
          int a = co_await c;
          int b = co_await c;
          co_return a + b;
        };
        (void)ex->BlockOn(twice());
      },
      "awaited twice");
}

// A join whose target completes on another thread while the waiter's
// executor is destroyed.  The completer consumes the waiter's registration
// on its own thread (Inbox::join_waits_remote) and the destructor waits for
// it before it frees the waiter; or the destructor takes the registration
// back first.  Clean under ASan and TSan either way; the waiter ends with
// the target's value (the target was done at its poll) or cancelled.
Task<int> AwaitElsewhere(JoinHandle<int> target) { co_return co_await target; }

TEST(HardeningTest, JoinCompletedOnAnotherThreadVersusWaiterDestroyStress) {
  auto far = MakeExecutor();
  Spawner far_spawner = far->GetSpawner();
  Gate hold;  // keeps `far` running until RequestStop
  far->SpawnDetached(WaitOn(&hold));
  std::thread far_thread([&] { far->Run(); });
  int completed = 0;
  int cancelled = 0;
  for (int round = 0; round < kStressRounds; ++round) {
    auto ex = MakeExecutor();
    JoinHandle<int> waiter = ex->Spawn(
        AwaitElsewhere(far_spawner.Spawn(YieldThenReturn(round % 4, round))));
    // One poll: the waiter registers its join, or finds the target done.
    LocalExecutor::RunLimits one;
    one.max_polls = 1;
    (void)ex->RunFor(one);
    ex.reset();  // races the target's completion on far_thread
    const JoinStatus s = waiter.status();
    if (s == JoinStatus::kCompleted) {
      ASSERT_EQ(waiter.Join(), round);
      ++completed;
    } else {
      ASSERT_EQ(s, JoinStatus::kCancelled);
      ++cancelled;
    }
  }
  far->RequestStop();
  far_thread.join();
  EXPECT_EQ(completed + cancelled, kStressRounds);
}

TEST(HardeningTest, EmptyHandleJoinThrowsAndAbortIsANoOp) {
  JoinHandle<int> h;
  h.Abort();
  EXPECT_THROW(h.Join(), TaskMisuseError);
  auto ex = MakeExecutor();
  JoinHandle<int> a = ex->Spawn(Constant(2));
  JoinHandle<int> b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT: testing the moved-from state
  EXPECT_THROW((void)a.Wait(), TaskMisuseError);
  ex->Run();
  EXPECT_EQ(b.Join(), 2);
}

TEST(HardeningTest, ASecondJoinDoesNotReturnAMovedFromValue) {
  auto ex = MakeExecutor();
  auto make = []() -> Task<std::string> { co_return std::string(100, 'x'); };
  JoinHandle<std::string> h = ex->Spawn(make());
  ex->Run();
  EXPECT_EQ(h.Join(), std::string(100, 'x'));
  EXPECT_THROW(h.Join(), TaskMisuseError);
}

TEST(HardeningTest, DetachedFailuresAreCountedApartFromCompletions) {
  auto ex = MakeExecutor();
  auto thrower = []() -> Task<void> {
    throw std::runtime_error("boom");
    co_return;
  };
  for (int i = 0; i < 3; ++i) ex->SpawnDetached(thrower());
  for (int i = 0; i < 2; ++i) ex->SpawnDetached(Constant(i));
  ex->Run();
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.failed, 3u);
  EXPECT_EQ(s.unhandled_exceptions, 3u);
  EXPECT_EQ(s.completions, 2u);
  ExpectAccounted(*ex);
}

TEST(HardeningTest, SpindleBudgetAppliesWithoutTiers) {
  ASSERT_EQ(setenv("SPINDLE_BUDGET", "4", 1), 0);
  auto ex = MakeExecutor(ExecutorBuilder().NoTiers().NoReactor());
  unsetenv("SPINDLE_BUDGET");
  ASSERT_NE(ex, nullptr);
  int yields = 0;
  auto body = [&]() -> Task<void> {
    for (int i = 0; i < 40; ++i) co_await YieldMaybe();
    co_return;
  };
  JoinHandle<void> h = ex->Spawn(body());
  ex->Run();
  yields = static_cast<int>(ex->Stats().polls);
  // 40 YieldMaybe with a budget of 4 per poll: about 10 polls, not 1.
  EXPECT_GE(yields, 8);
  ASSERT_EQ(setenv("SPINDLE_BUDGET", "0", 1), 0);
  auto bad = ExecutorBuilder().NoTiers().Build();
  unsetenv("SPINDLE_BUDGET");
  EXPECT_FALSE(bad.ok());
}

TEST(HardeningTest, SchedLatencyTooLongNamesTheSettingInNanoseconds) {
  auto ex = ExecutorBuilder().SchedLatency(std::chrono::minutes(30)).Build();
  ASSERT_FALSE(ex.ok());
  const std::string msg(ex.status().message());
  EXPECT_NE(msg.find("SchedLatency(1800000000000ns)"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("valid range"), std::string::npos) << msg;
}

}  // namespace
}  // namespace spindle
