// Started tasks that move between a Runtime's threads (executor/
// task_move.cc): tasks at tier isolate are gathered on the isolation
// thread, and leave it when their tier comes back down; pinned tasks stay;
// an abort reaches a task wherever it moved.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::Spin;
using runtime_testing::MakeRuntime;

// Every poll of 2 ms is a violation; one violation per tier climbs, so a
// hog reaches isolate after a few polls and stays there.
budget::TierConfig FastTiers() {
  budget::TierConfig tc;
  tc.cpu_threshold_ns = 200'000;
  tc.demotion_cpu_threshold_ns = 100'000;
  tc.promotion_violations = {1, 1, 1};
  tc.promotion_hysteresis_ns = 0;
  tc.violation_cooldown_ns = 10'000'000'000;
  tc.log_warnings = false;
  return tc;
}

std::unique_ptr<Runtime> TieredRuntime(size_t workers) {
  RuntimeBuilder b;
  b.Workers(workers).Tiers(FastTiers());
  return MakeRuntime(b);
}

struct Trace {
  std::vector<std::pair<budget::Tier, size_t>> polls;  // tier, worker
};

bool IsolatedNow() {
  const budget::TaskContext* ctx = CurrentTaskContext();
  return ctx != nullptr && ctx->tier() == budget::Tier::kIsolate;
}

// Spins 2 ms per poll, `polls` times, recording where each poll ran.
Task<Trace> Hog(int polls, std::atomic<bool>* started) {
  Trace tr;
  for (int i = 0; i < polls; ++i) {
    tr.polls.emplace_back(CurrentTaskContext()->tier(),
                          CurrentWorker().value());
    started->store(true, std::memory_order_release);
    Spin(2'000'000);
    co_await YieldNow();
  }
  co_return tr;
}

class RuntimeMoveTest : public ::testing::TestWithParam<size_t> {};

// Every executor's counters balance; moves out and in, over the workers
// and the isolation thread, are equal.  Returns the moves in.
uint64_t CheckMoveCounts(const RuntimeStats& s) {
  std::vector<ExecutorStats> all = s.workers;
  if (s.isolation.has_value()) all.push_back(*s.isolation);
  uint64_t out = 0, in = 0;
  for (const ExecutorStats& w : all) {
    out += w.moved_out;
    in += w.moved_in;
    EXPECT_EQ(w.spawns + w.moved_in,
              w.completions + w.failed + w.cancellations + w.moved_out +
                  w.live_tasks);
  }
  EXPECT_EQ(out, in);
  return in;
}

TEST_P(RuntimeMoveTest, IsolatedTasksGatherOnTheIsolationThread) {
  const size_t n = GetParam();
  if (n == 1) GTEST_SKIP() << "one worker: no isolation thread";
  auto rt = TieredRuntime(n);
  ASSERT_NE(rt, nullptr);
  std::atomic<bool> started{false};
  const Trace tr = rt->Spawn(Hog(12, &started)).Join();
  ASSERT_EQ(tr.polls.size(), 12u);
  // The isolation thread takes no stealable task: the hog starts on a
  // worker.  CurrentWorker() there is n.
  EXPECT_LT(tr.polls.front().second, n) << "started on the isolation thread";
  bool isolated = false;
  for (const auto& [tier, worker] : tr.polls) {
    // A poll that begins at tier isolate was queued by a yield at that
    // tier, after which the task moved to the isolation thread.
    if (tier == budget::Tier::kIsolate) isolated = true;
    if (isolated) {
      EXPECT_EQ(worker, n);
    }
  }
  EXPECT_TRUE(isolated) << "the hog never reached tier isolate";
  const RuntimeStats s = rt->Stats();
  ASSERT_TRUE(s.isolation.has_value());
  EXPECT_EQ(s.workers.size(), n);
  EXPECT_EQ(CheckMoveCounts(s), 1u);
  EXPECT_EQ(s.isolation->moved_in, 1u);
  EXPECT_EQ(s.isolation->live_tasks, 0u);
}

// Goes to the isolation thread and back `cycles` times (hogs until it is
// isolated, then polls briefly until its tier comes down); the number of
// round trips made, within 20 s.
Task<int> Commute(size_t n, int cycles) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int trips = 0;
  bool away = false;
  while (trips < cycles && std::chrono::steady_clock::now() < deadline) {
    const bool on_isolation = CurrentWorker().value() == n;
    if (on_isolation) away = true;
    if (away && !on_isolation) {
      away = false;
      if (++trips == cycles) break;  // back on a worker for good
    }
    if (!away) Spin(1'000'000);
    co_await YieldNow();
  }
  co_return trips;
}

// Tiers that isolate a task within three 1 ms polls and bring it back down
// after `good_polls` short ones.
std::unique_ptr<Runtime> DemotingRuntime(size_t workers, uint32_t good_polls) {
  budget::TierConfig tc = FastTiers();
  tc.demotion_good_polls = good_polls;
  tc.demotion_min_time_ns = 0;
  tc.demotion_hysteresis_ns = 0;
  RuntimeBuilder b;
  b.Workers(workers).Tiers(tc);
  return MakeRuntime(b);
}

TEST_P(RuntimeMoveTest, ATaskWhoseTierComesDownLeavesTheIsolationThread) {
  const size_t n = GetParam();
  if (n == 1) GTEST_SKIP() << "one worker: no isolation thread";
  auto rt = DemotingRuntime(n, 3);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->Spawn(Commute(n, 1)).Join(), 1);
  const RuntimeStats s = rt->Stats();
  ASSERT_TRUE(s.isolation.has_value());
  EXPECT_EQ(s.isolation->moved_in, 1u);
  EXPECT_EQ(s.isolation->moved_out, 1u);
  EXPECT_EQ(CheckMoveCounts(s), 2u);
}

TEST_P(RuntimeMoveTest, PinnedIsolatedTasksStay) {
  const size_t n = GetParam();
  auto rt = TieredRuntime(n);
  ASSERT_NE(rt, nullptr);
  RuntimeSpawnOptions on_first;
  on_first.placement = Placement::Pinned(0);
  std::atomic<bool> started{false};
  const Trace tr = rt->Spawn(Hog(10, &started), on_first).Join();
  bool isolated = false;
  for (const auto& [tier, worker] : tr.polls) {
    isolated |= tier == budget::Tier::kIsolate;
    EXPECT_EQ(worker, 0u);
  }
  EXPECT_TRUE(isolated);
  const RuntimeStats s = rt->Stats();
  for (const ExecutorStats& w : s.workers) {
    EXPECT_EQ(w.moved_out, 0u);
  }
  if (s.isolation.has_value()) {
    EXPECT_EQ(s.isolation->moved_in, 0u);
  }
}

// Aborts sent while the task moves (to its old worker's inbox, forwarded)
// or after (to the new one): it is cancelled either way, and nothing leaks
// (AddressSanitizer).
Task<void> HogUntilAborted(std::atomic<bool>* isolated) {
  for (;;) {
    if (IsolatedNow()) isolated->store(true, std::memory_order_release);
    Spin(500'000);
    co_await YieldNow();
  }
}

// Waits (up to 20 s) until `flag` is set; its last value.
bool WaitFor(const std::atomic<bool>& flag) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!flag.load(std::memory_order_acquire) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  return flag.load(std::memory_order_acquire);
}

TEST_P(RuntimeMoveTest, AnAbortFindsAMovedTask) {
  const size_t n = GetParam();
  auto rt = TieredRuntime(n);
  ASSERT_NE(rt, nullptr);
  for (int round = 0; round < 8; ++round) {
    std::atomic<bool> isolated{false};
    auto h = rt->Spawn(HogUntilAborted(&isolated));
    ASSERT_TRUE(WaitFor(isolated));
    h.Abort();
    EXPECT_EQ(h.Wait(), JoinStatus::kCancelled);
  }
}

// Destroying the runtime while a task runs on the isolation thread: it is
// cancelled there (S3), its frame freed (AddressSanitizer), and the thread
// joined.
TEST_P(RuntimeMoveTest, ShutdownCancelsATaskOnTheIsolationThread) {
  const size_t n = GetParam();
  if (n == 1) GTEST_SKIP() << "one worker: no isolation thread";
  auto rt = TieredRuntime(n);
  ASSERT_NE(rt, nullptr);
  std::atomic<bool> isolated{false};
  auto h = rt->Spawn(HogUntilAborted(&isolated));
  ASSERT_TRUE(WaitFor(isolated));
  rt.reset();
  EXPECT_EQ(h.Wait(), JoinStatus::kCancelled);
}

// Tasks commute between the workers and the isolation thread while some
// are aborted at once and others after a while: each ends completed (every
// round trip made) or cancelled, and nothing leaks or races (the sanitizer
// configs run this too).
TEST_P(RuntimeMoveTest, CommutingTasksUnderAbortsStress) {
  const size_t n = GetParam();
  if (n == 1) GTEST_SKIP() << "one worker: no isolation thread";
  auto rt = DemotingRuntime(n, 2);
  ASSERT_NE(rt, nullptr);
  constexpr int kTasks = 8;
  constexpr int kCycles = 3;
  std::vector<JoinHandle<int>> hs;
  for (int i = 0; i < kTasks; ++i) hs.push_back(rt->Spawn(Commute(n, kCycles)));
  // A quarter aborted at once, a quarter once they have had time to move.
  for (int i = 0; i < kTasks; i += 4) hs[static_cast<size_t>(i)].Abort();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (int i = 1; i < kTasks; i += 4) hs[static_cast<size_t>(i)].Abort();
  int completed = 0;
  for (int i = 0; i < kTasks; ++i) {
    auto& h = hs[static_cast<size_t>(i)];
    const JoinStatus st = h.Wait();
    if (i % 4 >= 2) {
      ASSERT_EQ(st, JoinStatus::kCompleted) << "task " << i;
    }
    if (st == JoinStatus::kCompleted) {
      EXPECT_EQ(h.Join(), kCycles) << "task " << i;
      ++completed;
    } else {
      EXPECT_EQ(st, JoinStatus::kCancelled) << "task " << i;
    }
  }
  EXPECT_GE(completed, kTasks / 2);
  const RuntimeStats s = rt->Stats();
  ASSERT_TRUE(s.isolation.has_value());
  EXPECT_GE(s.isolation->moved_in, static_cast<uint64_t>(kCycles));
  CheckMoveCounts(s);
}

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeMoveTest,
                         ::testing::Values(size_t{1}, size_t{2}, size_t{4}),
                         [](const auto& info) {
                           return std::to_string(info.param) + "_workers";
                         });

}  // namespace
}  // namespace spindle
