// A worker whose deque is full spills its older half as an overflow batch
// (executor/internal/overflow.h): every spilled task runs exactly once,
// on any worker, also once the worker's pool of batches is spent (then
// the tasks are linked on the shared injector), and a runtime destroyed
// with batches queued cancels and frees their tasks.

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/runtime.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using runtime_testing::LiveCounter;
using runtime_testing::MakeRuntime;

class RuntimeOverflowTest : public ::testing::TestWithParam<size_t> {};

Task<void> Mark(std::atomic<uint8_t>* ran) {
  ran->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

// More tasks than 1024 batches of 129 hold, spawned by one task while
// every other worker is held in a poll: the spawning worker's pool runs
// out (its batches wait until the others are let go), and the rest of its
// spills are linked on the shared injector.  Every task runs once.
TEST_P(RuntimeOverflowTest, EveryTaskRunsOnceWithThePoolSpent) {
  const size_t workers = GetParam();
  constexpr size_t kTasks = 140'000;
  auto rt = MakeRuntime(workers);
  ASSERT_NE(rt, nullptr);
  std::vector<std::atomic<uint8_t>> ran(kTasks);
  std::atomic<bool> go{false};
  std::atomic<size_t> held{0};
  std::vector<JoinHandle<void>> holders;
  for (size_t w = 1; w < workers; ++w) {
    RuntimeSpawnOptions on;
    on.placement = Placement::Pinned(w);
    holders.push_back(rt->Spawn(
        [](std::atomic<bool>* go, std::atomic<size_t>* held) -> Task<void> {
          held->fetch_add(1);
          while (!go->load(std::memory_order_acquire)) {
            std::this_thread::yield();
          }
          co_return;
        }(&go, &held),
        on));
  }
  while (held.load() < workers - 1) std::this_thread::yield();
  RuntimeSpawnOptions on0;
  on0.placement = Placement::Pinned(0);
  rt->Spawn(
        [](Runtime* rt, std::vector<std::atomic<uint8_t>>* ran,
           std::atomic<bool>* go) -> Task<void> {
          for (auto& r : *ran) rt->SpawnDetached(Mark(&r));
          go->store(true, std::memory_order_release);
          co_return;
        }(rt.get(), &ran, &go),
        on0)
      .Join();
  for (auto& h : holders) h.Join();
  // Each task bumps its own flag; wait until the last one has.
  for (size_t i = 0; i < kTasks; ++i) {
    while (ran[i].load(std::memory_order_relaxed) == 0) {
      std::this_thread::yield();
    }
  }
  const RuntimeStats after = rt->Stats();
  rt.reset();  // every worker joined: nothing runs any more
  for (size_t i = 0; i < kTasks; ++i) ASSERT_EQ(ran[i].load(), 1) << i;
  if (workers > 1) {
    // All but the deque's last ring went out in spills.
    EXPECT_GT(after.overflowed, kTasks - 256);
  }
}

// Spilled batches still queued when the runtime is destroyed: their tasks
// are cancelled and their frames freed (under ASan a batch or a frame
// left behind is a leak).  The workers' queues are kept busy by tasks that
// yield forever, so the spills are taken one batch at a time.
TEST_P(RuntimeOverflowTest, QueuedBatchesAreCancelledAtShutdown) {
  const size_t workers = GetParam();
  std::atomic<int> live{0};
  std::atomic<bool> stop{false};
  std::vector<JoinHandle<void>> spawned;
  uint64_t overflowed = 0;
  {
    auto rt = MakeRuntime(workers);
    ASSERT_NE(rt, nullptr);
    for (size_t w = 0; w < workers; ++w) {
      RuntimeSpawnOptions on;
      on.placement = Placement::Pinned(w);
      rt->SpawnDetached(
          [](std::atomic<bool>* stop) -> Task<void> {
            while (!stop->load(std::memory_order_relaxed)) co_await YieldNow();
          }(&stop),
          on);
    }
    RuntimeSpawnOptions on0;
    on0.placement = Placement::Pinned(0);
    rt->Spawn(
          [](Runtime* rt, std::vector<JoinHandle<void>>* out,
             std::atomic<int>* live, uint64_t* overflowed) -> Task<void> {
            for (int i = 0; i < 20'000; ++i) {
              out->push_back(rt->Spawn([](std::atomic<int>* live) -> Task<void> {
                LiveCounter c(live);
                co_return;
              }(live)));
            }
            // From a task, Stats() reads the counters only (no waiting).
            *overflowed = rt->Stats().overflowed;
            co_return;
          }(rt.get(), &spawned, &live, &overflowed),
          on0)
        .Join();
  }
  stop.store(true);
  size_t cancelled = 0;
  for (auto& h : spawned) {
    const JoinStatus s = h.status();
    EXPECT_NE(s, JoinStatus::kPending);
    cancelled += s == JoinStatus::kCancelled;
  }
  EXPECT_EQ(live.load(), 0);  // every frame destroyed
  if (workers > 1) {
    EXPECT_GT(overflowed, 0u);
    std::printf("%zu of %zu spawned tasks cancelled at shutdown\n", cancelled,
                spawned.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeOverflowTest,
                         ::testing::Values(size_t{1}, size_t{2}, size_t{4}),
                         runtime_testing::WorkersName);

}  // namespace
}  // namespace spindle
