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
#include <thread>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"
#include "steal/steal_policy.h"

namespace spindle {
namespace {

using runtime_testing::Event;
using runtime_testing::MakeRuntime;

constexpr int kRounds = 2000;
using Clock = std::chrono::steady_clock;

// Runs of CountRun's tasks: all, and those on worker 1.
struct Runs {
  std::atomic<int> all{0};
  std::atomic<int> on_1{0};
};

Task<void> CountRun(Runs* runs) {
  if (CurrentWorker() == std::optional<size_t>(1)) {
    runs->on_1.fetch_add(1, std::memory_order_relaxed);
  }
  runs->all.fetch_add(1, std::memory_order_release);
  co_return;
}

// Spins (inside a task: its worker stays held) until `done()` or
// `deadline`; returns done().
template <typename Done>
bool SpinUntil(Done done, Clock::time_point deadline) {
  while (!done() && Clock::now() < deadline) {
  }
  return done();
}

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
    Runs runs;
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
      for (int i = 0; i < kTasks; ++i) rt->SpawnDetached(CountRun(&runs));
      const bool all_ran = SpinUntil(
          [&] { return runs.all.load(std::memory_order_acquire) == kTasks; },
          Clock::now() + std::chrono::seconds(10));
      const RuntimeStats after = rt->Stats();
      wakes = after.wakes_sent - before.wakes_sent;
      parks = after.parks - before.parks;
      co_return all_ran;
    };
    RuntimeSpawnOptions on0;
    on0.placement = Placement::Pinned(0);
    ASSERT_TRUE(rt->Spawn(root(), on0).Join())
        << "worker 1 did not take the tasks queued on worker 0";
    EXPECT_EQ(runs.on_1.load(), kTasks);
    if (parks != 0) continue;
    EXPECT_EQ(wakes, 0u) << "a spinning worker was woken for work";
    checked = true;
  }
  if (!checked) GTEST_SKIP() << "worker 1 parked in every try (a busy host)";
}

// A worker woken from a park spins in its next idle spell too.  The wake
// leaves a submission on its ring, and the spin used to end at its first
// look (the driver "had work") and park again at once.  Worker 1 parks,
// is woken for a task, runs it and goes idle; up to 0.8 ms after the task
// ran (its spin lasts 1 ms from the task's end) it has not parked again.
// A try whose check came later than that (a busy host) says nothing and
// is run again, up to five times.
TEST(RuntimeParkTest, AWorkerWokenFromAParkSpinsBeforeItParksAgain) {
  int conclusive = 0;
  for (int attempt = 0; attempt < 5 && conclusive == 0; ++attempt) {
    RuntimeBuilder b;
    b.Workers(2).NoTiers().SpinBeforePark(std::chrono::milliseconds(1));
    std::unique_ptr<Runtime> rt = MakeRuntime(b);
    ASSERT_NE(rt, nullptr);
    // From a task, Stats() reads the counters only; worker 0 runs the
    // root without a break, so a park counted meanwhile is worker 1's.
    // 0: inconclusive, 1: no park, 2: parked again.
    auto root = [&]() -> Task<int> {
      const uint64_t start = rt->Stats().parks;
      const auto give_up = Clock::now() + std::chrono::seconds(10);
      while (rt->Stats().parks == start && Clock::now() < give_up) {
      }
      const uint64_t parked = rt->Stats().parks;
      if (parked == start) co_return 0;  // it never parked
      std::atomic<int64_t> ran_at{0};
      RuntimeSpawnOptions on1;
      on1.placement = Placement::Pinned(1);
      rt->SpawnDetached(
          [](std::atomic<int64_t>* ran_at) -> Task<void> {
            ran_at->store(Clock::now().time_since_epoch().count());
            co_return;
          }(&ran_at),
          on1);
      while (ran_at.load() == 0 && Clock::now() < give_up) {
      }
      if (ran_at.load() == 0) co_return 0;
      executor_testing::Spin(50'000);
      const uint64_t now_parks = rt->Stats().parks;
      const Clock::duration since(Clock::now().time_since_epoch().count() -
                                  ran_at.load());
      if (since > std::chrono::microseconds(800)) co_return 0;
      co_return now_parks == parked ? 1 : 2;
    };
    RuntimeSpawnOptions on0;
    on0.placement = Placement::Pinned(0);
    conclusive = rt->Spawn(root(), on0).Join();
  }
  if (conclusive == 0) GTEST_SKIP() << "every try was checked too late";
  EXPECT_EQ(conclusive, 1) << "worker 1 parked again at once after its wake";
}

// Two workers without tiers whose thieves leave a deque of kMargin tasks
// or fewer alone; the monitor reports a poll stuck after 20 ms, or is off.
constexpr uint32_t kMargin = 4;
std::unique_ptr<Runtime> MarginRuntime(bool monitor) {
  steal::StealOptions so;
  so.locality_margin = kMargin;
  RuntimeBuilder b;
  b.Workers(2).NoTiers().Steal(so);
  if (monitor) {
    b.StuckThreshold(std::chrono::milliseconds(20));
  } else {
    b.NoMonitor();
  }
  return MakeRuntime(b);
}

// Waits on the test's thread until `n` runs are counted (5 s at most).
int AwaitRuns(const Runs& runs, int n) {
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (runs.all.load(std::memory_order_acquire) < n &&
         Clock::now() < give_up) {
    std::this_thread::yield();
  }
  return runs.all.load(std::memory_order_acquire);
}

// With StealOptions::locality_margin, a worker's deque of that many tasks
// or fewer is not stolen from.  A searcher used to count such tasks as
// work it could take (I2): while they waited behind a long poll of their
// owner, it left the idle list and looked again, over and over, and never
// parked.  And a push that takes the deque past the margin must wake a
// parked worker (N0), since from then on there is work for it.  Worker 1
// runs a task until worker 0's root has queued kMargin / 2 tasks, then goes
// idle: it must park.  The root then queues more, past the margin: worker
// 1 must wake and take some while the root still holds worker 0.
TEST(RuntimeParkTest, TasksWithinTheLocalityMarginLetASearcherPark) {
  std::unique_ptr<Runtime> rt = MarginRuntime(/*monitor=*/false);
  ASSERT_NE(rt, nullptr);
  Runs runs;
  std::atomic<bool> release_1{false};
  RuntimeSpawnOptions on1;
  on1.placement = Placement::Pinned(1);
  JoinHandle<void> holder = rt->Spawn(
      [](std::atomic<bool>* release) -> Task<void> {
        while (!release->load(std::memory_order_acquire)) {
        }
        co_return;
      }(&release_1),
      on1);
  bool parked = false;
  bool taken_past_margin = false;
  auto root = [&]() -> Task<void> {
    for (uint32_t i = 0; i < kMargin / 2; ++i) {
      rt->SpawnDetached(CountRun(&runs));
    }
    // From a task, Stats() reads the counters only; worker 0 runs this
    // root without a break, so a park counted from here is worker 1's.
    const uint64_t start = rt->Stats().parks;
    release_1.store(true, std::memory_order_release);
    const auto give_up = Clock::now() + std::chrono::seconds(5);
    parked = SpinUntil([&] { return rt->Stats().parks != start; }, give_up);
    for (uint32_t i = 0; i < 2 * kMargin; ++i) {
      rt->SpawnDetached(CountRun(&runs));
    }
    taken_past_margin = SpinUntil(
        [&] { return runs.on_1.load(std::memory_order_relaxed) != 0; },
        give_up);
    co_return;
  };
  RuntimeSpawnOptions on0;
  on0.placement = Placement::Pinned(0);
  EXPECT_EQ(rt->Spawn(root(), on0).Wait(), JoinStatus::kCompleted);
  EXPECT_EQ(holder.Wait(), JoinStatus::kCompleted);
  EXPECT_TRUE(parked) << "worker 1 never parked beside " << kMargin / 2
                      << " tasks it may not steal";
  EXPECT_TRUE(taken_past_margin)
      << "worker 1 was not woken for a deque past the margin";
  // Every task runs once: the rest on worker 0 after the root.
  const int n = static_cast<int>(kMargin / 2 + 2 * kMargin);
  EXPECT_EQ(AwaitRuns(runs, n), n);
}

// The stuck-worker hand-off takes the tasks queued behind a stuck poll
// whatever the locality margin: a worker held in one poll keeps nothing
// for locality.  Worker 0's root queues kMargin / 2 tasks (within the
// margin) and holds its worker; the monitor reports it stuck after 20 ms,
// and worker 1 must take and run one of them while the root still holds
// worker 0.  They used to wait for the root's end.
TEST(RuntimeParkTest, AStuckWorkersTasksWithinTheMarginAreHandedOff) {
  std::unique_ptr<Runtime> rt = MarginRuntime(/*monitor=*/true);
  ASSERT_NE(rt, nullptr);
  Runs runs;
  auto root = [&]() -> Task<bool> {
    for (uint32_t i = 0; i < kMargin / 2; ++i) {
      rt->SpawnDetached(CountRun(&runs));
    }
    co_return SpinUntil(
        [&] { return runs.on_1.load(std::memory_order_relaxed) != 0; },
        Clock::now() + std::chrono::seconds(5));
  };
  RuntimeSpawnOptions on0;
  on0.placement = Placement::Pinned(0);
  EXPECT_TRUE(rt->Spawn(root(), on0).Join())
      << "no task queued behind the stuck poll ran on worker 1";
  EXPECT_GE(rt->Stats().stuck_reports, 1u);
  const int n = static_cast<int>(kMargin / 2);
  EXPECT_EQ(AwaitRuns(runs, n), n);
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
