// Fibers on a Runtime (1, 2 and 4 workers: placement, cross-thread Abort,
// exceptions, fibers spawning fibers) and on a LocalExecutor with hooks and
// a priority queue, as coroutine tasks are tested.

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "budget/hooks.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"
#include "sched/scheduler.h"

namespace spindle {
namespace {

using executor_testing::MakeExecutor;
using runtime_testing::MakeRuntime;

class FiberRuntimeTest : public ::testing::TestWithParam<size_t> {};

// Producer fibers on every worker hand 20,000 numbers to consumer fibers
// through one channel: nothing lost, nothing twice.
TEST_P(FiberRuntimeTest, FibersExchangeThroughAChannelAcrossWorkers) {
  auto rt = MakeRuntime(GetParam());
  ASSERT_NE(rt, nullptr);
  auto ch = executor_testing::MakeChannel<int>(16);
  ASSERT_NE(ch, nullptr);
  constexpr int kProducers = 4;
  constexpr int kPer = 5000;
  std::vector<JoinHandle<void>> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.push_back(rt->SpawnFiber([ch, p] {
      for (int i = 0; i < kPer; ++i) {
        if (!this_fiber::Await(ch->Send(p * kPer + i))) return;
        if (i % 64 == 0) this_fiber::Yield();
      }
    }));
  }
  std::vector<JoinHandle<std::vector<int>>> consumers;
  for (int c = 0; c < 2; ++c) {
    consumers.push_back(rt->SpawnFiber([ch] {
      std::vector<int> got;
      while (std::optional<int> v = this_fiber::Await(ch->Recv())) {
        got.push_back(*v);
      }
      return got;
    }));
  }
  for (JoinHandle<void>& p : producers) p.Join();
  ch->Close();
  std::vector<int> seen(kProducers * kPer, 0);
  for (JoinHandle<std::vector<int>>& c : consumers) {
    for (int v : c.Join()) {
      ASSERT_GE(v, 0);
      ASSERT_LT(v, kProducers * kPer);
      seen[v]++;
    }
  }
  for (int v = 0; v < kProducers * kPer; ++v) {
    ASSERT_EQ(seen[v], 1) << "value " << v;
  }
}

// A fiber pinned to the last worker runs there, across its suspensions.
TEST_P(FiberRuntimeTest, PinnedFiberStaysOnItsWorker) {
  auto rt = MakeRuntime(GetParam());
  ASSERT_NE(rt, nullptr);
  const size_t last = GetParam() - 1;
  RuntimeSpawnOptions o;
  o.placement = Placement::Pinned(last);
  JoinHandle<int> h = rt->SpawnFiber(
      [last] {
        int off = 0;
        for (int i = 0; i < 50; ++i) {
          if (CurrentWorker() != last) ++off;
          this_fiber::SleepFor(std::chrono::microseconds(50));
        }
        return off;
      },
      FiberOptions{}, o);
  EXPECT_EQ(h.Join(), 0);
}

// Abort from this (non-worker) thread of fibers suspended on workers; an
// exception thrown on a worker reaches Join here; a fiber spawns fibers.
TEST_P(FiberRuntimeTest, AbortExceptionsAndNestedSpawns) {
  auto rt = MakeRuntime(GetParam());
  ASSERT_NE(rt, nullptr);
  static std::atomic<int> live{0};
  live = 0;
  struct Live {
    Live() { live++; }
    ~Live() { live--; }
  };
  std::vector<JoinHandle<int>> waiting;
  for (int i = 0; i < 8; ++i) {
    waiting.push_back(rt->SpawnFiber([] {
      Live l;
      this_fiber::SleepFor(std::chrono::hours(1));
      return 0;
    }));
  }
  while (live.load() < 8) std::this_thread::yield();
  for (JoinHandle<int>& h : waiting) h.Abort();
  for (JoinHandle<int>& h : waiting) {
    EXPECT_EQ(h.Wait(), JoinStatus::kCancelled);
  }
  EXPECT_EQ(live.load(), 0);

  JoinHandle<int> thrower = rt->SpawnFiber([]() -> int {
    this_fiber::Yield();
    throw std::invalid_argument("from a worker");
  });
  EXPECT_THROW((void)thrower.Join(), std::invalid_argument);

  JoinHandle<int> parent = rt->SpawnFiber([] {
    std::vector<JoinHandle<int>> kids;
    for (int i = 1; i <= 10; ++i) {
      kids.push_back(Runtime::Current()->SpawnFiber([i] {
        this_fiber::Yield();
        return i;
      }));
    }
    int sum = 0;
    for (JoinHandle<int>& k : kids) sum += this_fiber::Await(k);
    return sum;
  });
  EXPECT_EQ(parent.Join(), 55);
}

INSTANTIATE_TEST_SUITE_P(Workers, FiberRuntimeTest,
                         ::testing::Values(size_t{1}, size_t{2}, size_t{4}),
                         runtime_testing::WorkersName);

// Hooks see a fiber's polls as they see a coroutine's: before and after
// each poll, on_yield, on_complete.
TEST(FiberHooksTest, HooksSeeFiberPolls) {
  auto hooks = std::make_shared<budget::HookRegistry>();
  int before = 0, after = 0, yields = 0, completes = 0;
  budget::PollHooks h;
  h.before_poll = [&](const budget::TaskContext&) { ++before; };
  h.after_poll = [&](const budget::TaskContext&, budget::PollOutcome,
                     uint64_t) { ++after; };
  h.on_yield = [&](const budget::TaskContext&) { ++yields; };
  h.on_complete = [&](const budget::TaskContext&) { ++completes; };
  hooks->Install(std::move(h));
  auto ex = MakeExecutor(ExecutorBuilder().Hooks(hooks));
  ASSERT_NE(ex, nullptr);
  JoinHandle<int> f = ex->SpawnFiber([] {
    for (int i = 0; i < 3; ++i) this_fiber::Yield();
    return 7;
  });
  ex->Run();
  EXPECT_EQ(f.Join(), 7);
  EXPECT_EQ(before, 4);  // three yields and the final poll
  EXPECT_EQ(after, 4);
  EXPECT_EQ(yields, 3);
  EXPECT_EQ(completes, 1);
}

// A priority queue orders fibers (and coroutines) by CPU priority.
TEST(FiberPriorityTest, PriorityQueueOrdersFibers) {
  auto ex = MakeExecutor(ExecutorBuilder().WithQueue(
      1, 1, std::make_unique<sched::PriorityScheduler>()));
  ASSERT_NE(ex, nullptr);
  std::vector<int> order;
  const Priority prios[] = {Priority::kLow, Priority::kNormal,
                            Priority::kHigh, Priority::kLow,
                            Priority::kHigh};
  for (int i = 0; i < 5; ++i) {
    SpawnOptions o;
    o.queue = 1;
    o.priority = prios[i];
    if (i % 2 == 0) {
      ex->SpawnFiberDetached([&order, i] { order.push_back(i); },
                             FiberOptions{}, o);
    } else {
      ex->SpawnDetached(executor_testing::Record(&order, i), o);
    }
  }
  ex->Run();
  EXPECT_EQ(order, (std::vector<int>{2, 4, 1, 0, 3}));
}

}  // namespace
}  // namespace spindle
