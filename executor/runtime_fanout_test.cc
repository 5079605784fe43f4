// A worker whose steal took a batch wakes more parked workers (step F4 of
// the idle protocol, executor/internal/runtime_shared.h; RuntimeBuilder::
// WakeFanout): with the default each such thief wakes one more besides
// the one the last searcher wakes, so that the workers awake double per
// wake-up; with WakeFanout(1) none does, as before.  Either way every
// task runs once and at most half the workers search at once.  And
// BlockOn from a plain thread wakes WakeFanout - 1 parked workers besides
// the one its spawn wakes (step B1).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "executor/executor.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using runtime_testing::MakeRuntime;
using Clock = std::chrono::steady_clock;

constexpr int kChildren = 16;

Task<void> Count(std::atomic<int>* ran) {
  ran->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

// Pinned to worker 0 while the others are parked: spawns kChildren
// stealable tasks onto its deque (the first push wakes a searcher, which
// takes half of them in one steal), then holds its worker until they have
// all run elsewhere (at most 10 s), so that only thieves run them.  It
// holds the worker asleep, not spinning: on 2 CPUs a spinning worker 0 left
// the thieves one CPU to share, where the worker a thief woke (F3) often
// ran before the thief's own fan-out (F4) and woke the last parked worker
// first.
Task<bool> Root(std::atomic<int>* ran) {
  Runtime* rt = Runtime::Current();
  for (int i = 0; i < kChildren; ++i) rt->SpawnDetached(Count(ran));
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (ran->load(std::memory_order_relaxed) < kChildren &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  co_return ran->load(std::memory_order_relaxed) == kChildren;
}

struct Round {
  bool all_ran = false;
  RuntimeStats stats;
};

// One round on a fresh runtime whose workers park at once (no spin: a
// parked worker is one a wake must reach).
Round RunRound(size_t workers, std::optional<uint32_t> fanout) {
  RuntimeBuilder b;
  b.Workers(workers).NoTiers().SpinBeforePark(std::chrono::nanoseconds(0));
  if (fanout.has_value()) b.WakeFanout(*fanout);
  std::unique_ptr<Runtime> rt = MakeRuntime(b);
  Round r;
  if (rt == nullptr) return r;
  std::atomic<int> ran{0};
  RuntimeSpawnOptions on0;
  on0.placement = Placement::Pinned(0);
  r.all_ran = rt->Spawn(Root(&ran), on0).Join();
  r.stats = rt->Stats();
  return r;
}

class RuntimeFanoutTest : public ::testing::TestWithParam<size_t> {
 protected:
  size_t workers() const { return GetParam(); }
};

// Fails with the fan-out taken out (EndSearching without FanOut): no
// round's thief woke anyone besides the last searcher's wake.  Rounds until
// one does (up to 2000 rounds or 20 s; the first almost always does on an
// idle machine): a thief preempted between its steal and its fan-out may
// find that the worker the last searcher woke has already woken the last
// parked one, or, on a loaded machine, the other workers not parked yet.
// 50 rounds were once not enough under ubsan in CI (4 workers, 0 of 50 in
// 0.2 s).
TEST_P(RuntimeFanoutTest, AThiefThatTookABatchWakesAnotherParkedWorker) {
  uint64_t fanout_wakes = 0;
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  for (int round = 0;
       round < 2000 && fanout_wakes == 0 && Clock::now() < give_up;
       ++round) {
    const Round r = RunRound(workers(), std::nullopt);
    ASSERT_TRUE(r.all_ran) << "round " << round;
    EXPECT_LE(r.stats.max_searching, workers() / 2) << "round " << round;
    fanout_wakes = r.stats.fanout_wakes;
  }
  EXPECT_GE(fanout_wakes, 1u)
      << "no thief that took a batch woke a second parked worker";
}

TEST_P(RuntimeFanoutTest, AFanoutOfOneWakesOneWorkerAtATime) {
  for (int round = 0; round < 10; ++round) {
    const Round r = RunRound(workers(), 1);
    ASSERT_TRUE(r.all_ran) << "round " << round;
    EXPECT_EQ(r.stats.fanout_wakes, 0u) << "round " << round;
    EXPECT_LE(r.stats.max_searching, workers() / 2) << "round " << round;
  }
}

TEST_P(RuntimeFanoutTest, AWideFanoutKeepsTheSearchersBound) {
  for (int round = 0; round < 10; ++round) {
    const Round r = RunRound(workers(), 4);
    ASSERT_TRUE(r.all_ran) << "round " << round;
    EXPECT_LE(r.stats.max_searching, workers() / 2) << "round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeFanoutTest, ::testing::Values(4, 8),
                         [](const auto& info) {
                           return std::to_string(info.param) + "workers";
                         });

// Two workers: the victim is awake, so nobody is parked to wake.
TEST(RuntimeFanoutTwoWorkersTest, TwoWorkersSendNoFanoutWake) {
  for (int round = 0; round < 10; ++round) {
    const Round r = RunRound(2, 4);
    ASSERT_TRUE(r.all_ran) << "round " << round;
    EXPECT_EQ(r.stats.fanout_wakes, 0u) << "round " << round;
  }
}

// B1: BlockOn from a plain thread wakes WakeFanout - 1 parked workers
// besides the one its spawn wakes.  A fork-join root: its children run
// wherever the workers take them.
Task<int> Value(int v) { co_return v; }

Task<int> ForkJoin(int children) {
  std::vector<JoinHandle<int>> hs;
  for (int i = 0; i < children; ++i) {
    hs.push_back(Runtime::Current()->Spawn(Value(i)));
  }
  int sum = 0;
  for (auto& h : hs) sum += co_await h;
  co_return sum;
}

constexpr int kForkChildren = 8;
constexpr int kForkSum = kForkChildren * (kForkChildren - 1) / 2;

// Runs BlockOn until it has woken a helper (or `calls` times); returns the
// calls made and the stats after them.  Workers park at once (no spin), so
// most calls find them parked.
std::pair<int, RuntimeStats> BlockOnUntilHelperWake(Runtime& rt, int calls) {
  RuntimeStats st;
  int made = 0;
  while (made < calls) {
    EXPECT_EQ(rt.BlockOn(ForkJoin(kForkChildren)), kForkSum);
    ++made;
    if (made % 10 == 0) {
      st = rt.Stats();
      if (st.block_on_wakes != 0) return {made, st};
    }
  }
  return {made, rt.Stats()};
}

// Fails with WakeForBlockOn's body taken out (checked).
TEST(RuntimeBlockOnWakeTest, BlockOnWakesAParkedHelper) {
  for (const uint32_t fanout : {2u, 4u}) {
    RuntimeBuilder b;
    b.Workers(4).NoTiers().SpinBeforePark(std::chrono::nanoseconds(0));
    b.WakeFanout(fanout);
    std::unique_ptr<Runtime> rt = MakeRuntime(b);
    ASSERT_NE(rt, nullptr);
    const auto [calls, st] = BlockOnUntilHelperWake(*rt, 1000);
    EXPECT_GE(st.block_on_wakes, 1u)
        << "fanout " << fanout << ": no BlockOn "
        << "woke a parked helper in " << calls << " calls";
    // At most WakeFanout - 1 a call, and never past the bound.
    EXPECT_LE(st.block_on_wakes, static_cast<uint64_t>(calls) * (fanout - 1));
    EXPECT_LE(st.max_searching, 2u);
  }
}

TEST(RuntimeBlockOnWakeTest, NoHelperWithAFanoutOfOneOrOneWorker) {
  for (const size_t workers : {size_t{1}, size_t{4}}) {
    RuntimeBuilder b;
    b.Workers(workers).NoTiers().SpinBeforePark(std::chrono::nanoseconds(0));
    if (workers > 1) b.WakeFanout(1);
    std::unique_ptr<Runtime> rt = MakeRuntime(b);
    ASSERT_NE(rt, nullptr);
    const auto [calls, st] = BlockOnUntilHelperWake(*rt, 100);
    EXPECT_EQ(calls, 100);
    EXPECT_EQ(st.block_on_wakes, 0u) << workers << " workers";
  }
}

TEST(RuntimeFanoutErrorTest, AFanoutOutOfRangeIsAnError) {
  for (const uint32_t bad : {0u, 5u}) {
    auto rt = RuntimeBuilder().Workers(2).WakeFanout(bad).Build();
    ASSERT_FALSE(rt.ok());
    EXPECT_EQ(rt.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string m(rt.status().message());
    EXPECT_NE(m.find("WakeFanout(" + std::to_string(bad) + ")"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("[1, 4]"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace spindle
