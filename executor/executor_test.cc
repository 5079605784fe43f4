#include "executor/executor.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "sched/scheduler.h"
#include "timing/clock.h"


namespace spindle {
namespace {

using namespace executor_testing;  // NOLINT: test helpers

// The layer's VERSION file, read at test time from the runfiles (the
// test's `data`), so kVersion cannot drift from it.
std::string VersionFile() {
  const char* dir = std::getenv("TEST_SRCDIR");
  if (dir == nullptr) return "(TEST_SRCDIR is not set)";
  std::ifstream in(std::string(dir) + "/spindle/executor/VERSION");
  std::string version;
  std::getline(in, version);
  return version;
}

TEST(ExecutorTest, VersionMatchesVersionFile) {
  EXPECT_EQ(executor::kVersion, VersionFile());
}

TEST(ExecutorTest, BlockOnReturnsTheValue) {
  auto ex = MakeExecutor();
  EXPECT_EQ(ex->BlockOn(Constant(7)), 7);
}

TEST(ExecutorTest, JoinAfterRunYieldsValue) {
  auto ex = MakeExecutor();
  JoinHandle<int> h = ex->Spawn(YieldThenReturn(3, 11));
  EXPECT_EQ(h.status(), JoinStatus::kPending);
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kCompleted);
  EXPECT_EQ(h.Join(), 11);
}

TEST(ExecutorTest, FifoSpawnOrder) {
  auto ex = MakeExecutor();
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) ex->SpawnDetached(Record(&order, i));
  ex->Run();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(ExecutorTest, LifoSpawnOrderRunsNewestFirst) {
  auto ex = MakeExecutor(ExecutorBuilder().WithQueue(
      1, 1, std::make_unique<sched::LifoScheduler>(1000)));
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) ex->SpawnDetached(Record(&order, i));
  ex->Run();
  EXPECT_EQ(order, (std::vector<int>{4, 3, 2, 1, 0}));
}

TEST(ExecutorTest, PrioritySpawnOrder) {
  auto ex = MakeExecutor(ExecutorBuilder().WithQueue(
      1, 1, std::make_unique<sched::PriorityScheduler>()));
  std::vector<int> order;
  const Priority prios[] = {
      Priority::kLow, Priority::kNormal, Priority::kHigh,
      Priority::kLow, Priority::kHigh};
  for (int i = 0; i < 5; ++i) {
    SpawnOptions o;
    o.priority = prios[i];
    ex->SpawnDetached(Record(&order, i), o);
  }
  ex->Run();
  EXPECT_EQ(order, (std::vector<int>{2, 4, 1, 0, 3}));
}

TEST(ExecutorTest, NestedAwaitsReturnValues) {
  auto ex = MakeExecutor();
  auto outer = []() -> Task<int> {
    int a = co_await Constant(2);
    int b = co_await YieldThenReturn(2, 3);
    co_return a* b;
  };
  EXPECT_EQ(ex->BlockOn(outer()), 6);
}

Task<int> Depth(int n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await Depth(n - 1);
}

TEST(ExecutorTest, TenThousandNestedAwaitsDoNotGrowTheStack) {
  auto ex = MakeExecutor();
  EXPECT_EQ(ex->BlockOn(Depth(10'000)), 10'000);
}

TEST(ExecutorTest, ExceptionReachesJoinerAndExecutorKeepsRunning) {
  auto ex = MakeExecutor();
  auto thrower = []() -> Task<int> {
    co_await YieldNow();
    throw std::runtime_error("boom");
  };
  JoinHandle<int> bad = ex->Spawn(thrower());
  JoinHandle<int> good = ex->Spawn(YieldThenReturn(5, 9));
  ex->Run();
  EXPECT_EQ(bad.status(), JoinStatus::kFailed);
  EXPECT_THROW(
      {
        try {
          bad.Join();
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "boom");
          throw;
        }
      },
      std::runtime_error);
  EXPECT_EQ(good.Join(), 9);
}

TEST(ExecutorTest, ExceptionReachesAwaitingTask) {
  auto ex = MakeExecutor();
  auto thrower = []() -> Task<int> {
    throw std::logic_error("inner");
    co_return 0;
  };
  auto outer = [&]() -> Task<std::string> {
    JoinHandle<int> h = CurrentExecutor()->Spawn(thrower());
    try {
      co_await h;
    } catch (const std::logic_error& e) {
      co_return std::string(e.what());
    }
    co_return std::string("no exception");
  };
  EXPECT_EQ(ex->BlockOn(outer()), "inner");
}

TEST(ExecutorTest, TaskAwaitsJoinHandleOfAnotherTask) {
  auto ex = MakeExecutor();
  auto outer = []() -> Task<int> {
    JoinHandle<int> h = CurrentExecutor()->Spawn(YieldThenReturn(10, 5));
    int v = co_await h;
    co_return v + 1;
  };
  EXPECT_EQ(ex->BlockOn(outer()), 6);
}

TEST(ExecutorTest, AbortWhileQueued) {
  auto ex = MakeExecutor();
  bool ran = false;
  auto body = [](bool* r) -> Task<int> {
    *r = true;
    co_return 1;
  };
  JoinHandle<int> h = ex->Spawn(body(&ran));
  h.Abort();
  ex->Run();
  EXPECT_FALSE(ran);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_THROW(h.Join(), TaskCancelledError);
  EXPECT_EQ(ex->Stats().cancellations, 1u);
}


// A joiner suspended on a target that waits on `gate`: `after_join` is set
// once the joiner runs past the join (a cancelled joiner never does).
struct GatedJoin {
  static Task<int> Target(Gate* gate, bool* done) {
    co_await gate->Wait();
    *done = true;
    co_return 1;
  }
  static Task<int> Joiner(JoinHandle<int> target, int* after_join) {
    int v = co_await target;
    *after_join = 1;
    co_return v;
  }
  // Runs `aborter` beside the two, to the end.
  template <typename F>
  void Run(F aborter) {
    joiner = ex->Spawn(Joiner(ex->Spawn(Target(&gate, &target_done)),
                              &after_join));
    ex->SpawnDetached(aborter());
    ex->Run();
  }

  decltype(MakeExecutor()) ex = MakeExecutor();
  Gate gate;
  bool target_done = false;
  int after_join = 0;
  JoinHandle<int> joiner;
};

TEST(ExecutorTest, AbortWhileSuspendedOnJoin) {
  GatedJoin g;
  g.Run([&]() -> Task<void> {
    for (int i = 0; i < 5; ++i) co_await YieldNow();
    g.joiner.Abort();  // the joiner is suspended on the join by now
    g.gate.Release();
  });
  EXPECT_EQ(g.joiner.status(), JoinStatus::kCancelled);
  EXPECT_EQ(g.after_join, 0);
}

// The target's completion requeues the joiner in place (WakeSole, no
// notified bit); an abort that reaches the joiner while it is queued must
// still cancel it before it runs past the join.
TEST(ExecutorTest, AbortOfAJoinerQueuedByItsTargetsCompletionCancelsIt) {
  GatedJoin g;
  bool queued_at_abort = false;
  g.Run([&]() -> Task<void> {
    for (int i = 0; i < 5; ++i) co_await YieldNow();
    g.gate.Release();     // the target is queued, behind this task
    co_await YieldNow();  // it runs and completes: the joiner is queued
    queued_at_abort = g.target_done && g.after_join == 0;
    g.joiner.Abort();
  });
  EXPECT_TRUE(queued_at_abort);
  EXPECT_EQ(g.joiner.status(), JoinStatus::kCancelled);
  EXPECT_EQ(g.after_join, 0);
}

TEST(ExecutorTest, AbortWhileSuspendedOnAWakerCancelsAtOnce) {
  auto ex = MakeExecutor();
  Gate gate;
  bool resumed = false;
  auto blocked = [&]() -> Task<int> {
    co_await gate.Wait();
    resumed = true;
    co_return 1;
  };
  JoinHandle<int> h = ex->Spawn(blocked());
  JoinStatus right_after_abort = JoinStatus::kPending;
  auto aborter = [&]() -> Task<void> {
    co_await YieldNow();
    h.Abort();
    right_after_abort = h.status();
    gate.Release();  // the waker's Wake() is a no-op now
    co_return;
  };
  ex->SpawnDetached(aborter());
  ex->Run();
  EXPECT_FALSE(resumed);
  EXPECT_EQ(right_after_abort, JoinStatus::kCancelled);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  ExpectAccounted(*ex);
}

TEST(ExecutorTest, AbortAfterCompletionKeepsTheResult) {
  auto ex = MakeExecutor();
  JoinHandle<int> h = ex->Spawn(Constant(3));
  ex->Run();
  h.Abort();
  EXPECT_EQ(h.status(), JoinStatus::kCompleted);
  EXPECT_EQ(h.Join(), 3);
}

TEST(ExecutorTest, SelfAbortCancelsAtNextYield) {
  auto ex = MakeExecutor();
  JoinHandle<int> h;
  int steps = 0;
  auto body = [&]() -> Task<int> {
    steps++;
    h.Abort();
    co_await YieldNow();
    steps++;
    co_return 1;
  };
  h = ex->Spawn(body());
  ex->Run();
  EXPECT_EQ(steps, 1);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

TEST(ExecutorTest, ShutdownCancelsEveryUnfinishedTask) {
  Gate gate;
  JoinHandle<int> queued, suspended;
  {
    auto ex = MakeExecutor();
    auto blocked = [&]() -> Task<int> {
      co_await gate.Wait();
      co_return 1;
    };
    suspended = ex->Spawn(blocked());
    // Run until the blocked task has suspended (nothing else is runnable).
    auto starter = []() -> Task<void> { co_return; };
    ex->BlockOn(starter());
    queued = ex->Spawn(Constant(5));
    EXPECT_EQ(ex->Stats().live_tasks, 2u);
  }
  EXPECT_EQ(queued.status(), JoinStatus::kCancelled);
  EXPECT_EQ(suspended.status(), JoinStatus::kCancelled);
  gate.Release();  // the executor is gone: a no-op, safe
}

TEST(ExecutorTest, SpawnFromTwoThreadsAtOnce) {
  auto ex = MakeExecutor();
  constexpr int kPerThread = kSanitized ? 2'000 : 20'000;
  std::atomic<int> ran{0};
  auto body = [](std::atomic<int>* r) -> Task<int> {
    r->fetch_add(1, std::memory_order_relaxed);
    co_return 1;
  };
  Spawner spawner = ex->GetSpawner();
  // A task that keeps the executor alive until both threads are done.
  std::atomic<int> producers_done{0};
  auto keeper = [&]() -> Task<void> {
    while (producers_done.load(std::memory_order_acquire) < 2) {
      co_await YieldNow();
    }
    co_return;
  };
  ex->SpawnDetached(keeper());
  std::vector<JoinHandle<int>> handles[2];
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (i % 2 == 0) {
          handles[t].push_back(spawner.Spawn(body(&ran)));
        } else {
          spawner.SpawnDetached(body(&ran));
        }
      }
      producers_done.fetch_add(1, std::memory_order_release);
    });
  }
  ex->Run();
  for (auto& th : threads) th.join();
  EXPECT_EQ(ran.load(), 2 * kPerThread);
  for (auto& hs : handles) {
    for (auto& h : hs) EXPECT_EQ(h.Join(), 1);
  }
}

TEST(ExecutorTest, AbortFromAnotherThreadRacesWithSpawnAndRun) {
  auto ex = MakeExecutor();
  constexpr int kTasks = kSanitized ? 500 : 5'000;
  Spawner spawner = ex->GetSpawner();
  std::atomic<bool> producer_done{false};
  auto keeper = [&]() -> Task<void> {
    while (!producer_done.load(std::memory_order_acquire)) co_await YieldNow();
  };
  ex->SpawnDetached(keeper());
  std::vector<JoinHandle<int>> handles;
  handles.reserve(kTasks);
  std::thread producer([&] {
    for (int i = 0; i < kTasks; ++i) {
      handles.push_back(spawner.Spawn(YieldThenReturn(i % 3, i)));
      if (i % 2 == 0)
        handles.back().Abort();  // may land before or after adoption
    }
    producer_done.store(true, std::memory_order_release);
  });
  ex->Run();
  producer.join();
  int completed = 0, cancelled = 0;
  for (int i = 0; i < kTasks; ++i) {
    const JoinStatus s = handles[i].status();
    if (s == JoinStatus::kCompleted) {
      EXPECT_EQ(handles[i].Join(), i);
      ++completed;
    } else {
      EXPECT_EQ(s, JoinStatus::kCancelled) << i;
      EXPECT_EQ(i % 2, 0) << "only aborted tasks may be cancelled";
      ++cancelled;
    }
  }
  EXPECT_EQ(completed + cancelled, kTasks);
  EXPECT_GE(completed, kTasks / 2);
}

TEST(ExecutorTest, SpawnerWakesASleepingExecutorAndJoinFromThread) {
  auto ex = MakeExecutor();
  Spawner spawner = ex->GetSpawner();
  Gate gate;  // keeps the executor alive, parked
  auto holder = [&]() -> Task<void> {
    co_await gate.Wait();
    co_return;
  };
  ex->SpawnDetached(holder());
  std::thread producer([&] {
    JoinHandle<int> h = spawner.Spawn(Constant(41));
    EXPECT_EQ(h.Join(), 41);  // blocks this thread until the executor ran it
    // Release the holder from its own executor thread.
    spawner.SpawnDetached([](Gate* g) -> Task<void> {
      g->Release();
      co_return;
    }(&gate));
  });
  ex->Run();
  producer.join();
}

TEST(ExecutorTest, SpawnAfterShutdownIsCancelled) {
  std::optional<Spawner> spawner;
  {
    auto ex = MakeExecutor();
    spawner = ex->GetSpawner();
  }
  JoinHandle<int> h = spawner->Spawn(Constant(1));
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

TEST(ExecutorTest, OneMillionTasks) {
  auto ex = MakeExecutor();
  const int n = kSanitized ? 100'000 : 1'000'000;
  int64_t sum = 0;
  auto body = [](int64_t* s, int v) -> Task<void> {
    *s += v;
    co_return;
  };
  for (int i = 0; i < n; ++i) ex->SpawnDetached(body(&sum, 1));
  ex->Run();
  EXPECT_EQ(sum, n);
  EXPECT_EQ(ex->Stats().completions, static_cast<uint64_t>(n));
}

TEST(ExecutorTest, YieldMaybeYieldsWhenTheBudgetIsSpent) {
  budget::TierConfig tc;
  tc.poll_budget = 10;
  tc.escalation_enabled = false;
  auto ex = MakeExecutor(ExecutorBuilder().Tiers(tc));
  auto body = []() -> Task<void> {
    for (int i = 0; i < 100; ++i) co_await YieldMaybe();
    co_return;
  };
  ex->SpawnDetached(body());
  ex->Run();
  // 100 YieldMaybe calls with a budget of 10 per poll: ~10 polls, not 100
  // (YieldNow would give 101) and not 1 (never yielding).
  const uint64_t polls = ex->Stats().polls;
  EXPECT_GE(polls, 9u);
  EXPECT_LE(polls, 12u);
}

TEST(ExecutorTest, StatsAreFilled) {
  auto ex = MakeExecutor(ExecutorBuilder().MaxPollsPerYield(4).NoReactor());
  for (int i = 0; i < 10; ++i) ex->SpawnDetached(YieldThenReturn(3, i));
  ex->Run();
  ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.spawns, 10u);
  EXPECT_EQ(s.completions, 10u);
  EXPECT_EQ(s.polls, 40u);
  EXPECT_GE(s.driver_yields, 10u);
  EXPECT_GT(s.busy_ns, 0u);
  EXPECT_EQ(s.live_tasks, 0u);
  ASSERT_GE(s.queues.size(), 1u);
  EXPECT_EQ(s.queues[0].sched.polls, 40u);
  // One queue-delay sample per slice; a slice never crosses
  // MaxPollsPerYield (4), so 40 polls take at least 10 slices.
  uint64_t hist = 0;
  for (uint64_t c : s.queues[0].delay_histogram) hist += c;
  EXPECT_EQ(hist, s.slices);
  EXPECT_GE(s.slices, 10u);
  EXPECT_LE(s.slices, 40u);
  EXPECT_EQ(s.driver, "parking");
}

TEST(ExecutorTest, CurrentExecutorInsideAndOutside) {
  auto ex = MakeExecutor();
  EXPECT_EQ(CurrentExecutor(), nullptr);
  LocalExecutor* seen = nullptr;
  auto body = [&]() -> Task<void> {
    seen = CurrentExecutor();
    co_return;
  };
  ex->BlockOn(body());
  EXPECT_EQ(seen, ex.get());
}

void ExpectInvalid(ExecutorBuilder& b, const std::string& needle) {
  absl::StatusOr<std::unique_ptr<LocalExecutor>> ex = b.Build();
  ASSERT_FALSE(ex.ok()) << needle;
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(ex.status().message()).find(needle), std::string::npos)
      << ex.status();
}

TEST(ExecutorBuilderTest, BadValuesAreInvalidArgumentNamingTheValue) {
  ExpectInvalid(ExecutorBuilder().WithQueue(1, 1).WithQueue(1, 2), "1");
  ExpectInvalid(ExecutorBuilder().WithQueue(1, 0), "0");
  ExpectInvalid(ExecutorBuilder().WithQueue(1, 10001), "10001");
  ExpectInvalid(ExecutorBuilder().SchedLatency(std::chrono::nanoseconds(0)),
                "SchedLatency(0ns)");
  ExpectInvalid(ExecutorBuilder().MinSlice(std::chrono::nanoseconds(-5)),
                "MinSlice(-5ns)");
  ExpectInvalid(ExecutorBuilder().DriverYield(std::chrono::nanoseconds(0)),
                "DriverYield(0ns)");
  ExpectInvalid(ExecutorBuilder().MaxPollsPerYield(0), "MaxPollsPerYield(0)");
  ExpectInvalid(ExecutorBuilder()
                    .SchedLatency(std::chrono::microseconds(100))
                    .MinSlice(std::chrono::milliseconds(1)),
                "MinSlice");
  ExpectInvalid(ExecutorBuilder().IsolationShare(0), "0");
  budget::TierConfig bad;
  bad.poll_budget = 0;
  ExpectInvalid(ExecutorBuilder().Tiers(bad), "poll_budget");
  setenv("SPINDLE_BUDGET", "lots", 1);
  ExecutorBuilder from_env;
  ExpectInvalid(from_env, "SPINDLE_BUDGET");
  unsetenv("SPINDLE_BUDGET");
  ExecutorBuilder many;
  for (uint32_t i = 0; i < 256; ++i) many.WithQueue(i, 1);
  ExpectInvalid(many, "256");
  ExecutorBuilder too_many;
  for (uint32_t i = 0; i < 257; ++i) too_many.WithQueue(i, 1);
  ExpectInvalid(too_many.NoTiers(), "257");
}

TEST(ExecutorBuilderTest, TwoHundredFiftySixQueuesWithoutTiers) {
  ExecutorBuilder b;
  for (uint32_t i = 0; i < 256; ++i) b.WithQueue(i, 1 + i);
  auto ex = MakeExecutor(b.NoTiers());
  ASSERT_NE(ex, nullptr);
  EXPECT_EQ(ex->BlockOn(Constant(1)), 1);
}

}  // namespace
}  // namespace spindle
