// An idle Runtime worker stays awake for RuntimeBuilder::SpinBeforePark
// before it parks in its driver (executor/worker_loop.cc): a wake from
// another worker in that window needs no doorbell and no sleep.  Whatever
// the setting, no wake is lost: tasks passed back and forth between two
// workers all run, with the spin and without it, and with a timer or I/O
// due while a worker spins.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using runtime_testing::Event;
using runtime_testing::MakeRuntime;

constexpr int kRounds = 2000;

// One side of a round trip between two pinned tasks: `serve` posts first.
Task<void> Side(Event* mine, Event* theirs, int rounds, bool serve,
                std::atomic<int>* done) {
  for (int i = 0; i < rounds; ++i) {
    if (serve) theirs->Set();
    co_await mine->Wait();
    mine->Reset();
    if (!serve) theirs->Set();
    done->fetch_add(1, std::memory_order_relaxed);
  }
}

// Runs kRounds round trips between workers 0 and 1; returns the times a
// worker slept in its driver (ExecutorStats::parks, summed).
uint64_t PingPong(std::chrono::nanoseconds spin) {
  RuntimeBuilder b;
  b.Workers(2).NoTiers().SpinBeforePark(spin);
  std::unique_ptr<Runtime> rt = MakeRuntime(b);
  if (rt == nullptr) return 0;
  Event a, c;
  std::atomic<int> done{0};
  RuntimeSpawnOptions on0, on1;
  on0.placement = Placement::Pinned(0);
  on1.placement = Placement::Pinned(1);
  const RuntimeStats before = rt->Stats();
  JoinHandle<void> ha = rt->Spawn(Side(&a, &c, kRounds, true, &done), on0);
  JoinHandle<void> hc = rt->Spawn(Side(&c, &a, kRounds, false, &done), on1);
  EXPECT_EQ(ha.Wait(), JoinStatus::kCompleted);
  EXPECT_EQ(hc.Wait(), JoinStatus::kCompleted);
  EXPECT_EQ(done.load(), 2 * kRounds);
  const RuntimeStats after = rt->Stats();
  uint64_t parks = 0;
  for (size_t i = 0; i < after.workers.size(); ++i) {
    parks += after.workers[i].parks - before.workers[i].parks;
  }
  return parks;
}

TEST(RuntimeParkTest, AnAwakeWorkerTakesWakesWithoutSleeping) {
  // Each round trip wakes each worker once.  Without the spin most of
  // those wakes find the worker asleep in its driver; with it, a worker
  // waits awake for the other's answer (a hop takes microseconds; the
  // spin allows 1 ms, so only a worker kept off its CPU that long
  // sleeps).
  const uint64_t spinning = PingPong(std::chrono::milliseconds(1));
  EXPECT_LT(spinning, static_cast<uint64_t>(kRounds) / 4)
      << "with a 1 ms spin, most wakes should reach an awake worker";
  // Correct (every round runs) without it too; how often the workers
  // slept then depends on the machine, so it is only printed.
  const uint64_t parking = PingPong(std::chrono::nanoseconds(0));
  std::printf("driver sleeps over %d round trips: %llu spinning, %llu not\n",
              kRounds, static_cast<unsigned long long>(spinning),
              static_cast<unsigned long long>(parking));
}

// A worker spinning with nothing queued still fires its timers on time
// and runs tasks that other threads spawn while it spins.
TEST(RuntimeParkTest, TimersAndOutsideSpawnsEndTheSpin) {
  RuntimeBuilder b;
  b.Workers(2).NoTiers().SpinBeforePark(std::chrono::milliseconds(1));
  std::unique_ptr<Runtime> rt = MakeRuntime(b);
  ASSERT_NE(rt, nullptr);
  for (int i = 0; i < 50; ++i) {
    JoinHandle<int> h = rt->Spawn([]() -> Task<int> {
      co_await SleepFor(std::chrono::microseconds(200));
      co_return 7;
    }());
    EXPECT_EQ(h.Join(), 7);
  }
}

// An idle worker spins before it joins the idle list (I0), still counted
// as a searcher: a task pushed onto another worker's deque meanwhile is
// its to take (N2 wakes nobody), and it takes it without a wake.  It used
// to spin on the idle list, so the push woke it (N3: a wake sent, and two
// turns of the idle lock per idle spell).  Worker 1 runs a task and goes
// idle; worker 0, 50 us later (well inside the 1 ms spin), spawns kTasks
// stealable tasks and then keeps its CPU until they have run: only worker
// 1 can run them.  A worker kept off its CPU past the spin parks, and then
// the wake is right: such a try is run again (up to three).  The window
// starts after worker 1's first idle spell, which follows a park (whose
// spin used to end at once, the driver's submission left by the wake).
TEST(RuntimeParkTest, ASpinningWorkerTakesNewWorkWithoutAWake) {
  constexpr int kTasks = 64;
  bool checked = false;
  for (int attempt = 0; attempt < 3 && !checked; ++attempt) {
    RuntimeBuilder b;
    b.Workers(2).NoTiers().SpinBeforePark(std::chrono::milliseconds(1));
    std::unique_ptr<Runtime> rt = MakeRuntime(b);
    ASSERT_NE(rt, nullptr);
    std::atomic<int> ran{0};
    std::atomic<int> ran_on_1{0};
    auto count = [](std::atomic<int>* ran,
                    std::atomic<int>* ran_on_1) -> Task<void> {
      if (CurrentWorker() == std::optional<size_t>(1)) {
        ran_on_1->fetch_add(1, std::memory_order_relaxed);
      }
      ran->fetch_add(1, std::memory_order_release);
      co_return;
    };
    uint64_t wakes = 0;
    uint64_t parks = 0;  // from the root's start to its end
    auto root = [&]() -> Task<bool> {
      RuntimeSpawnOptions on1;
      on1.placement = Placement::Pinned(1);
      // Worker 1 wakes from its park for the first task and goes idle.
      co_await rt->Spawn([]() -> Task<void> { co_return; }(), on1);
      executor_testing::Spin(50'000);
      // From a task, Stats() reads the runtime's counters only.
      const RuntimeStats before = rt->Stats();
      // It takes the second awake, and goes idle again.
      co_await rt->Spawn([]() -> Task<void> { co_return; }(), on1);
      executor_testing::Spin(50'000);
      for (int i = 0; i < kTasks; ++i) {
        rt->SpawnDetached(count(&ran, &ran_on_1));
      }
      const auto give_up =
          std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (ran.load(std::memory_order_acquire) < kTasks &&
             std::chrono::steady_clock::now() < give_up) {
      }
      const RuntimeStats after = rt->Stats();
      wakes = after.wakes_sent - before.wakes_sent;
      parks = after.parks - before.parks;
      co_return ran.load(std::memory_order_acquire) == kTasks;
    };
    RuntimeSpawnOptions on0;
    on0.placement = Placement::Pinned(0);
    ASSERT_TRUE(rt->Spawn(root(), on0).Join())
        << "worker 1 did not take the tasks queued on worker 0";
    EXPECT_EQ(ran_on_1.load(), kTasks);
    if (parks != 0) continue;
    EXPECT_EQ(wakes, 0u) << "a spinning worker was woken for work";
    checked = true;
  }
  if (!checked) GTEST_SKIP() << "worker 1 parked in every try (a busy host)";
}

TEST(RuntimeParkTest, SpinOutOfRangeIsAnError) {
  for (const std::chrono::nanoseconds bad :
       {std::chrono::nanoseconds(-1),
        std::chrono::nanoseconds(std::chrono::milliseconds(2))}) {
    auto rt = RuntimeBuilder().Workers(1).SpinBeforePark(bad).Build();
    ASSERT_FALSE(rt.ok());
    EXPECT_EQ(rt.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string m(rt.status().message());
    EXPECT_NE(m.find("SpinBeforePark(" + std::to_string(bad.count())),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("[0, 1000000] ns"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace spindle
