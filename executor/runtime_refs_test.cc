// A task's references share its state word with the completion bits
// (executor/task.h): a completion publishes its bits and drops the frame's
// reference in one RMW, and whoever drops the last reference frees the
// cell.  These tests race that RMW, on the workers, against every other
// holder of a reference: a handle dropped or joined by a plain thread, a
// join from a task on another worker, an abort.  Each task's frame counts
// its destructions (a frame destroyed twice or never shows here); the
// sanitizer configs catch a cell freed twice, leaked, or used after its
// free.  Parameterised over 2, 4 and 8 workers (1 worker runs the same
// protocol, with no race); runtime_refs_epoll_test runs it again on epoll.

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle {
namespace {

using executor_testing::kSanitized;
using runtime_testing::MakeRuntime;

class RuntimeRefsTest : public ::testing::TestWithParam<size_t> {
 protected:
  size_t workers() const { return GetParam(); }
};

// Counts the frames destroyed: a parameter of every task below, so that a
// frame destroyed before its first poll (an abort) counts too.  Only the
// copy that the frame holds counts (a moved-from one does not).
struct Counted {
  explicit Counted(std::atomic<int64_t>* d) : destroyed(d) {}
  Counted(Counted&& o) noexcept : destroyed(o.destroyed) {
    o.destroyed = nullptr;
  }
  Counted(const Counted&) = delete;
  ~Counted() {
    if (destroyed != nullptr) {
      destroyed->fetch_add(1, std::memory_order_release);
    }
  }
  std::atomic<int64_t>* destroyed;
};

Task<int64_t> Value(int64_t v, Counted c) { co_return v; }

// Waits (yielding, bounded) until `n` frames are gone; false on timeout.
bool AwaitDestroyed(const std::atomic<int64_t>& destroyed, int64_t n) {
  const uint64_t deadline = timing::MonotonicClock::Now() + 60'000'000'000;
  while (destroyed.load(std::memory_order_acquire) < n) {
    if (timing::MonotonicClock::Now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

constexpr int64_t kTasks = kSanitized ? 20'000 : 200'000;

TEST_P(RuntimeRefsTest, HandlesDroppedWhileTheirTasksCompleteFreeEachOnce) {
  std::atomic<int64_t> destroyed{0};
  {
    auto rt = MakeRuntime(workers());
    ASSERT_NE(rt, nullptr);
    for (int64_t i = 0; i < kTasks; ++i) {
      // The handle goes at once: before, during or after the completion.
      (void)rt->Spawn(Value(i, Counted(&destroyed)));
    }
    ASSERT_TRUE(AwaitDestroyed(destroyed, kTasks));
  }
  EXPECT_EQ(destroyed.load(), kTasks);
}

TEST_P(RuntimeRefsTest, ThreadJoinsRacingTheCompletionSeeEveryValue) {
  std::atomic<int64_t> destroyed{0};
  constexpr int64_t kJoins = kTasks / 10;
  int64_t wrong = 0;
  {
    auto rt = MakeRuntime(workers());
    ASSERT_NE(rt, nullptr);
    for (int64_t i = 0; i < kJoins; ++i) {
      // Join blocks on the state word (kStateThreadWaiter) if it gets
      // there first: the completer then keeps the frame's reference until
      // its notify is out.
      if (rt->Spawn(Value(i, Counted(&destroyed))).Join() != i) ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(destroyed.load(), kJoins);
}

// Joins every child from worker 0 while the children run elsewhere: each
// join either finds its child done or registers (kStateJoinWaiter) and is
// woken by the completer, whose reference is already gone then.
Task<int64_t> JoinAll(int64_t n, size_t workers,
                      std::atomic<int64_t>* destroyed) {
  Runtime* rt = Runtime::Current();
  RuntimeSpawnOptions o;
  int64_t sum = 0;
  std::vector<JoinHandle<int64_t>> batch;
  for (int64_t i = 0; i < n; i += 64) {
    for (int64_t j = i; j < i + 64 && j < n; ++j) {
      o.placement = Placement::Pinned(1 + static_cast<size_t>(j) %
                                              (workers - 1));
      batch.push_back(rt->Spawn(Value(j, Counted(destroyed)), o));
    }
    for (auto& h : batch) sum += co_await h;
    batch.clear();
  }
  co_return sum;
}

TEST_P(RuntimeRefsTest, JoinsFromAnotherWorkerRacingTheCompletion) {
  std::atomic<int64_t> destroyed{0};
  const int64_t n = kTasks / 4;
  int64_t sum = 0;
  {
    auto rt = MakeRuntime(workers());
    ASSERT_NE(rt, nullptr);
    RuntimeSpawnOptions o;
    o.placement = Placement::Pinned(0);
    sum = rt->Spawn(JoinAll(n, workers(), &destroyed), o).Join();
  }
  EXPECT_EQ(sum, n * (n - 1) / 2);
  EXPECT_EQ(destroyed.load(), n);
}

Task<int64_t> Spin(int64_t v, Counted c) {
  for (int i = 0; i < 4; ++i) co_await YieldNow();
  co_return v;
}

TEST_P(RuntimeRefsTest, AbortsRacingTheCompletionEndEachTaskOnce) {
  std::atomic<int64_t> destroyed{0};
  constexpr int64_t kAborts = kTasks / 10;
  int64_t finished = 0;
  {
    auto rt = MakeRuntime(workers());
    ASSERT_NE(rt, nullptr);
    std::vector<JoinHandle<int64_t>> hs;
    hs.reserve(kAborts);
    for (int64_t i = 0; i < kAborts; ++i) {
      hs.push_back(rt->Spawn(Spin(i, Counted(&destroyed))));
      // An abort in flight holds a reference of its own.
      if (i % 2 == 0) hs.back().Abort();
    }
    for (int64_t i = 0; i < kAborts; ++i) {
      const JoinStatus s = hs[i].Wait();
      if (s == JoinStatus::kCompleted || s == JoinStatus::kCancelled) {
        ++finished;
      }
      if (i % 2 == 1) {
        EXPECT_EQ(s, JoinStatus::kCompleted) << i;
      }
    }
  }
  EXPECT_EQ(finished, kAborts);
  EXPECT_EQ(destroyed.load(), kAborts);
}

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeRefsTest,
                         ::testing::Values(size_t{2}, size_t{4}, size_t{8}),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::to_string(info.param) + "Workers";
                         });

}  // namespace
}  // namespace spindle
