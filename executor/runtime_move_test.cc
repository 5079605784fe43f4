// Started tasks that move between a Runtime's workers (executor/
// task_move.cc): tasks at tier isolate are gathered on the last worker;
// pinned tasks stay; an abort reaches a task wherever it moved.
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

// Sets *holding, then spins on its worker until `flag` is set (so that a
// task spawned meanwhile starts elsewhere), at most 10 s.
Task<bool> HoldUntil(std::atomic<bool>* holding, std::atomic<bool>* flag) {
  holding->store(true, std::memory_order_release);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!flag->load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() > deadline) co_return false;
  }
  co_return true;
}

class RuntimeMoveTest : public ::testing::TestWithParam<size_t> {};

TEST_P(RuntimeMoveTest, IsolatedTasksGatherOnTheLastWorker) {
  const size_t n = GetParam();
  if (n == 1) GTEST_SKIP() << "one worker: nowhere to move";
  auto rt = TieredRuntime(n);
  ASSERT_NE(rt, nullptr);
  const size_t last = n - 1;
  // The last worker is held while the hog starts: it starts elsewhere.
  // The hog is spawned only once the hold runs: before that, the last
  // worker could steal it (seen under asan on a loaded machine).
  RuntimeSpawnOptions on_last;
  on_last.placement = Placement::Pinned(last);
  std::atomic<bool> holding{false}, started{false};
  auto hold = rt->Spawn(HoldUntil(&holding, &started), on_last);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!holding.load(std::memory_order_acquire)) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "hold never ran";
    std::this_thread::yield();
  }
  RuntimeSpawnOptions on_first;
  on_first.placement = Placement::StealablePreferred(0);
  auto hog = rt->Spawn(Hog(12, &started), on_first);
  ASSERT_TRUE(hold.Join());
  const Trace tr = hog.Join();
  ASSERT_EQ(tr.polls.size(), 12u);
  EXPECT_NE(tr.polls.front().second, last) << "started on the held worker";
  bool isolated = false;
  for (const auto& [tier, worker] : tr.polls) {
    // A poll that begins at tier isolate was queued by a yield at that
    // tier, after which the task moved to the last worker.
    if (tier == budget::Tier::kIsolate) isolated = true;
    if (isolated) {
      EXPECT_EQ(worker, last);
    }
  }
  EXPECT_TRUE(isolated) << "the hog never reached tier isolate";
  const RuntimeStats s = rt->Stats();
  uint64_t out = 0, in = 0;
  for (const ExecutorStats& w : s.workers) {
    out += w.moved_out;
    in += w.moved_in;
    EXPECT_EQ(w.spawns + w.moved_in,
              w.completions + w.failed + w.cancellations + w.moved_out +
                  w.live_tasks);
  }
  EXPECT_EQ(out, 1u);
  EXPECT_EQ(in, 1u);
  EXPECT_EQ(s.workers[last].moved_in, 1u);
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
  for (const ExecutorStats& w : rt->Stats().workers) {
    EXPECT_EQ(w.moved_out, 0u);
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

TEST_P(RuntimeMoveTest, AnAbortFindsAMovedTask) {
  const size_t n = GetParam();
  auto rt = TieredRuntime(n);
  ASSERT_NE(rt, nullptr);
  for (int round = 0; round < 8; ++round) {
    std::atomic<bool> isolated{false};
    auto h = rt->Spawn(HogUntilAborted(&isolated));
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!isolated.load(std::memory_order_acquire) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    ASSERT_TRUE(isolated.load());
    h.Abort();
    EXPECT_EQ(h.Wait(), JoinStatus::kCancelled);
  }
}

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeMoveTest,
                         ::testing::Values(size_t{1}, size_t{2}, size_t{4}),
                         [](const auto& info) {
                           return std::to_string(info.param) + "_workers";
                         });

}  // namespace
}  // namespace spindle
