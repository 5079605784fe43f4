// Runtime::Stats() from a plain thread takes each worker's executor
// snapshot through a task pinned there, and waits 1 s at most: a worker
// held in one poll is named in busy_workers instead of holding the call
// until its poll ends (it held it for as long as the poll lasted).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/runtime.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using runtime_testing::MakeRuntime;

TEST(RuntimeStatsTest, AWorkerHeldInOnePollIsNamedBusy) {
  RuntimeBuilder b;
  b.Workers(2).NoTiers();
  std::unique_ptr<Runtime> rt = MakeRuntime(b);
  ASSERT_NE(rt, nullptr);
  std::atomic<bool> held{false};
  std::atomic<bool> release{false};
  RuntimeSpawnOptions on1;
  on1.placement = Placement::Pinned(1);
  // Let go after a minute whatever happens, so that a Stats() that waits
  // for the poll fails the test (as a timeout) instead of hanging it.
  JoinHandle<void> holder = rt->Spawn(
      [](std::atomic<bool>* held, std::atomic<bool>* release) -> Task<void> {
        held->store(true);
        const auto give_up =
            std::chrono::steady_clock::now() + std::chrono::minutes(1);
        while (!release->load() && std::chrono::steady_clock::now() < give_up) {
          std::this_thread::yield();
        }
        co_return;
      }(&held, &release),
      on1);
  while (!held.load()) std::this_thread::yield();
  const RuntimeStats during = rt->Stats();
  const bool released_by_stats = !release.load();
  release.store(true);
  holder.Join();
  EXPECT_TRUE(released_by_stats);
  ASSERT_EQ(during.workers.size(), 2u);
  EXPECT_EQ(during.busy_workers, std::vector<size_t>{1});
  EXPECT_EQ(during.workers[1].polls, 0u);  // left empty
  // Once the poll has ended every worker answers; the holder was polled.
  const RuntimeStats after = rt->Stats();
  EXPECT_TRUE(after.busy_workers.empty());
  ASSERT_EQ(after.workers.size(), 2u);
  EXPECT_GE(after.workers[1].polls, 1u);
  EXPECT_EQ(after.workers[1].live_tasks, 0u);
}

}  // namespace
}  // namespace spindle
