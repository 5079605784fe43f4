// Work requests (executor/task_move.cc, Q1-Q4): a started stealable task
// that an operation's completion (or a join, a channel) wakes on a busy
// worker, or that yields there, moves to an idle worker that asked for
// work; pinned tasks stay; aborts and shutdown find tasks wherever they
// moved; nothing runs twice or is lost.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>
#include <thread>
#include <vector>

#include "executor/channel.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::Spin;
using runtime_testing::LiveCounter;
using runtime_testing::MakeRuntime;
using Clock = std::chrono::steady_clock;

class RuntimeRequestTest : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override {
    rt_ = MakeRuntime(GetParam());
    ASSERT_NE(rt_, nullptr);
  }
  std::unique_ptr<Runtime> rt_;
};

// Queued for worker 0 (others may take it before it starts).
template <typename T>
JoinHandle<T> ForWorker0(Runtime& rt, Task<T> task) {
  RuntimeSpawnOptions o;
  o.placement = Placement::StealablePreferred(0);
  return rt.Spawn(std::move(task), o);
}

// Holds the thread of the worker it is pinned to (counted in `held`) until
// `started` tasks have begun elsewhere (at most 20 s).
Task<void> HoldWorker(std::atomic<int>* held, std::atomic<int>* started,
                      int want) {
  held->fetch_add(1, std::memory_order_release);
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (started->load(std::memory_order_acquire) < want &&
         Clock::now() < deadline) {
    Spin(10'000);
  }
  co_return;
}

// Holds every worker but 0 until `want` tasks have started, and returns
// once every hold has begun (a worker not yet held would take tasks queued
// for worker 0).
std::vector<JoinHandle<void>> HoldOthers(Runtime& rt, std::atomic<int>* held,
                                         std::atomic<int>* started,
                                         int want) {
  const size_t n = rt.worker_count();
  std::vector<JoinHandle<void>> holds;
  for (size_t w = 1; w < n; ++w) {
    RuntimeSpawnOptions o;
    o.placement = Placement::Pinned(w);
    holds.push_back(rt.Spawn(HoldWorker(held, started, want), o));
  }
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (held->load(std::memory_order_acquire) < static_cast<int>(n) - 1 &&
         Clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(held->load(), static_cast<int>(n) - 1);
  return holds;
}

struct Route {
  size_t first = 0;
  bool moved = false;  // a later step ran on another worker
};

// A child pinned to worker `far`: its completion there wakes its joiner
// through the joiner's inbox when they are on different workers.
Task<int> FarChild(int i) {
  Spin(20'000);
  co_return i;
}

// What a round awaits: a 200 us sleep (an operation: its completion wakes
// the task where it runs), a child pinned to the last worker, or nothing
// (a YieldNow: the task stays runnable and is never woken).
enum class Await { kSleep, kFarJoin, kYield };

// Awaits and computes, in rounds, until some task of the group has moved
// or 20 s have passed (`max_rounds` at most); records whether it ran
// anywhere but where it began.
Task<Route> Rounds(Await what, size_t far, std::atomic<int>* started,
                   std::atomic<bool>* any_moved, int max_rounds) {
  Route r;
  r.first = CurrentWorker().value();
  started->fetch_add(1, std::memory_order_release);
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  for (int round = 0; round < max_rounds &&
                      !any_moved->load(std::memory_order_acquire) &&
                      Clock::now() < deadline;
       ++round) {
    if (what == Await::kSleep) {
      co_await SleepFor(std::chrono::microseconds(200));
    } else if (what == Await::kYield) {
      co_await YieldNow();
    } else {
      RuntimeSpawnOptions o;
      o.placement = Placement::Pinned(far);
      const int v = co_await Runtime::Current()->Spawn(FarChild(round), o);
      EXPECT_EQ(v, round);
    }
    Spin(what == Await::kSleep ? 100'000 : 50'000);
    if (CurrentWorker().value() != r.first) {
      r.moved = true;
      any_moved->store(true, std::memory_order_release);
    }
  }
  co_return r;
}

// Joins the holds, then the tasks (each began on worker 0); how many moved.
int JoinAndCountMoved(std::vector<JoinHandle<void>>& holds,
                      std::vector<JoinHandle<Route>>& hs) {
  for (auto& h : holds) h.Join();
  int moved = 0;
  for (auto& h : hs) {
    const Route r = h.Join();
    EXPECT_EQ(r.first, 0u);
    if (r.moved) ++moved;
  }
  return moved;
}

// 8 such tasks start on worker 0 (every other worker held meanwhile) and
// run until one has moved; how many did (each began on worker 0).
int MovedOfEight(Runtime& rt, Await what) {
  const size_t n = rt.worker_count();
  constexpr int kTasks = 8;
  std::atomic<int> started{0}, held{0};
  std::atomic<bool> any_moved{false};
  std::vector<JoinHandle<void>> holds = HoldOthers(rt, &held, &started,
                                                   kTasks);
  std::vector<JoinHandle<Route>> hs;
  for (int i = 0; i < kTasks; ++i) {
    // One worker: a few rounds show that nothing moves.
    hs.push_back(ForWorker0(rt, Rounds(what, n - 1, &started, &any_moved,
                                       n == 1 ? 20 : 1'000'000)));
  }
  return JoinAndCountMoved(holds, hs);
}

TEST_P(RuntimeRequestTest, AWokenTaskMovesToAWorkerThatAsked) {
  const int moved = MovedOfEight(*rt_, Await::kSleep);
  const RuntimeStats s = rt_->Stats();
  if (GetParam() == 1) {
    EXPECT_EQ(moved, 0);  // nowhere to go
    EXPECT_EQ(s.work_requests, 0u);
    return;
  }
  EXPECT_GE(moved, 1) << "no woken task left worker 0 while others idled";
  EXPECT_GE(s.work_requests, 1u);
  uint64_t in = 0, out = 0;
  for (const ExecutorStats& w : s.workers) {
    in += w.moved_in;
    out += w.moved_out;
  }
  EXPECT_EQ(in, out);
  EXPECT_GE(s.workers[0].moved_out, 1u);
}

// The wake of a join completed on another worker comes through the
// joiner's inbox; drained on a busy worker, it too goes to a worker that
// asked (Q2).
TEST_P(RuntimeRequestTest, AWakeFromAnotherWorkerMovesToAWorkerThatAsked) {
  const int moved = MovedOfEight(*rt_, Await::kFarJoin);
  if (GetParam() == 1) {
    EXPECT_EQ(moved, 0);
  } else {
    EXPECT_GE(moved, 1) << "no remotely woken task left worker 0";
  }
}

// A task that only yields is never woken (Q2 never sees it): it moves at
// a yield, when a worker asked (Q4).  Without tiers, so that no slow poll
// sends a task to the isolation thread instead.
TEST_P(RuntimeRequestTest, AYieldingTaskMovesToAWorkerThatAsked) {
  RuntimeBuilder b;
  b.Workers(GetParam()).NoTiers();
  rt_ = MakeRuntime(b);
  ASSERT_NE(rt_, nullptr);
  const int moved = MovedOfEight(*rt_, Await::kYield);
  if (GetParam() == 1) {
    EXPECT_EQ(moved, 0);
    return;
  }
  EXPECT_GE(moved, 1) << "no yielding task left worker 0";
  EXPECT_GE(rt_->Stats().workers[0].moved_out, 1u);
}

// Yields every microsecond or so, counting its rounds in `rounds`, until
// some task of the group moved (or 20 s); whether it ran elsewhere.
Task<Route> ShortYields(std::atomic<int>* rounds,
                        std::atomic<bool>* any_moved) {
  Route r;
  r.first = CurrentWorker().value();
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!any_moved->load(std::memory_order_acquire) &&
         Clock::now() < deadline) {
    co_await YieldNow();
    Spin(1'000);
    rounds->fetch_add(1, std::memory_order_release);
    if (CurrentWorker().value() != r.first) {
      r.moved = true;
      any_moved->store(true, std::memory_order_release);
    }
  }
  co_return r;
}

// Polls of ~1 us run many to a slice (its quota adapts to the 25 us
// target), where most yields are not judged on their own: Q4 is asked at
// the end of the slice (RunSlice) and at the polls still judged on their
// own (FinishPoll).  The other workers are held until the 8 tasks have done
// 4000 rounds between them, so that worker 0 runs full slices when they
// ask.  Fails without Q4 (none moves in 20 s); not without either of its
// two checks alone, each of which answers the request.
TEST_P(RuntimeRequestTest, ATaskYieldingInShortPollsMovesToAWorkerThatAsked) {
  RuntimeBuilder b;
  b.Workers(GetParam()).NoTiers();
  rt_ = MakeRuntime(b);
  ASSERT_NE(rt_, nullptr);
  if (GetParam() == 1) GTEST_SKIP() << "nowhere to move";
  constexpr int kTasks = 8;
  std::atomic<int> rounds{0}, held{0};
  std::atomic<bool> any_moved{false};
  std::vector<JoinHandle<void>> holds = HoldOthers(*rt_, &held, &rounds,
                                                   4000);
  std::vector<JoinHandle<Route>> hs;
  for (int i = 0; i < kTasks; ++i) {
    hs.push_back(ForWorker0(*rt_, ShortYields(&rounds, &any_moved)));
  }
  EXPECT_GE(JoinAndCountMoved(holds, hs), 1)
      << "no yielding task left worker 0";
  EXPECT_GE(rt_->Stats().workers[0].moved_out, 1u);
}

// ...but only once until it waits: a task that never waits, beside
// sleepers on every worker (each worker has tasks queued at times, and
// asks while the other has the yielder), would otherwise bounce between
// the workers at every yield.
Task<int> YieldAndCountMoves(int rounds) {
  int moves = 0;
  size_t at = CurrentWorker().value();
  for (int i = 0; i < rounds; ++i) {
    Spin(20'000);
    co_await YieldNow();
    if (CurrentWorker().value() != at) {
      ++moves;
      at = CurrentWorker().value();
    }
  }
  co_return moves;
}

Task<void> SleepUntilSet(const std::atomic<bool>* done) {
  while (!done->load(std::memory_order_acquire)) {
    co_await SleepFor(std::chrono::microseconds(200));
  }
}

TEST_P(RuntimeRequestTest, AYieldingTaskMovesAtMostOnceUntilItWaits) {
  RuntimeBuilder b;
  b.Workers(GetParam()).NoTiers();
  rt_ = MakeRuntime(b);
  ASSERT_NE(rt_, nullptr);
  std::atomic<bool> done{false};
  std::vector<JoinHandle<void>> sleepers;
  for (size_t w = 0; w < rt_->worker_count(); ++w) {
    RuntimeSpawnOptions o;
    o.placement = Placement::Pinned(w);
    for (int i = 0; i < 3; ++i) {
      sleepers.push_back(rt_->Spawn(SleepUntilSet(&done), o));
    }
  }
  JoinHandle<int> yielder = ForWorker0(*rt_, YieldAndCountMoves(2000));
  const int moves = yielder.Join();
  done.store(true, std::memory_order_release);
  for (auto& s : sleepers) s.Join();
  EXPECT_LE(moves, 1);
  if (GetParam() == 1) {
    EXPECT_EQ(moves, 0);
  }
}

// Sync primitives' wakes (Q0-Q2 through WakeByWaker): a task waiting for
// a channel's message, granted one on a busy worker, moves to a worker that
// asked like a task whose operation completed.  The sender is a ticker
// pinned to worker 0 (the grant is made on the receiver's own worker:
// RequeueListedLocal hands it to a Waker) or to the last worker (a Waker
// woken on another thread: V's inbox, `waker_wakes`).
// A batch goes out only once the last one was taken, so that the tasks
// find the channel empty and wait (a busy worker 0 would otherwise find
// messages buffered and never suspend).
Task<void> Ticker(Channel<int>* ch, std::atomic<int>* received,
                  std::atomic<int>* finished, int tasks) {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  int sent = 0;
  while (finished->load(std::memory_order_acquire) < tasks &&
         Clock::now() < deadline) {
    co_await SleepFor(std::chrono::microseconds(200));
    if (received->load(std::memory_order_acquire) < sent) continue;
    for (int i = 0; i < tasks; ++i) {
      if (ch->TrySend(i) == ChannelStatus::kOk) ++sent;
    }
  }
  ch->Close();
}

Task<Route> GrantRounds(Channel<int>* ch, std::atomic<int>* started,
                        std::atomic<bool>* any_moved,
                        std::atomic<int>* received,
                        std::atomic<int>* finished, int max_rounds) {
  Route r;
  r.first = CurrentWorker().value();
  started->fetch_add(1, std::memory_order_release);
  for (int round = 0; round < max_rounds &&
                      !any_moved->load(std::memory_order_acquire);
       ++round) {
    if (!(co_await ch->Recv()).has_value()) break;  // closed: 20 s passed
    received->fetch_add(1, std::memory_order_release);
    Spin(100'000);
    if (CurrentWorker().value() != r.first) {
      r.moved = true;
      any_moved->store(true, std::memory_order_release);
    }
  }
  finished->fetch_add(1, std::memory_order_release);
  co_return r;
}

int MovedOfEightByGrants(Runtime& rt, size_t ticker_on) {
  const size_t n = rt.worker_count();
  constexpr int kTasks = 8;
  std::atomic<int> started{0}, held{0}, received{0}, finished{0};
  std::atomic<bool> any_moved{false};
  std::shared_ptr<Channel<int>> ch = Channel<int>::Create(64).value();
  std::vector<JoinHandle<void>> holds = HoldOthers(rt, &held, &started,
                                                   kTasks);
  std::vector<JoinHandle<Route>> hs;
  for (int i = 0; i < kTasks; ++i) {
    hs.push_back(ForWorker0(rt, GrantRounds(ch.get(), &started, &any_moved,
                                            &received, &finished,
                                            n == 1 ? 20 : 1'000'000)));
  }
  RuntimeSpawnOptions o;
  o.placement = Placement::Pinned(ticker_on);
  JoinHandle<void> ticker =
      rt.Spawn(Ticker(ch.get(), &received, &finished, kTasks), o);
  const int moved = JoinAndCountMoved(holds, hs);
  ticker.Join();
  return moved;
}

TEST_P(RuntimeRequestTest, AGrantOnTheTasksOwnWorkerMovesItToAWorkerThatAsked) {
  const int moved = MovedOfEightByGrants(*rt_, 0);
  if (GetParam() == 1) {
    EXPECT_EQ(moved, 0);
    return;
  }
  EXPECT_GE(moved, 1) << "no task woken by a channel left worker 0";
  const RuntimeStats s = rt_->Stats();
  EXPECT_GE(s.workers[0].moved_out, 1u);
}

TEST_P(RuntimeRequestTest, AGrantFromAnotherWorkerMovesToAWorkerThatAsked) {
  const int moved = MovedOfEightByGrants(*rt_, rt_->worker_count() - 1);
  if (GetParam() == 1) {
    EXPECT_EQ(moved, 0);
  } else {
    EXPECT_GE(moved, 1) << "no task woken through worker 0's inbox left it";
  }
}

// Pinned tasks woken on a busy worker stay there, however idle the others.
Task<bool> PinnedSleeper(size_t home, int rounds) {
  bool stayed = true;
  for (int i = 0; i < rounds; ++i) {
    co_await SleepFor(std::chrono::microseconds(100));
    Spin(100'000);
    if (CurrentWorker().value() != home) stayed = false;
  }
  co_return stayed;
}

TEST_P(RuntimeRequestTest, PinnedTasksStay) {
  std::vector<JoinHandle<bool>> hs;
  for (int i = 0; i < 8; ++i) {
    RuntimeSpawnOptions o;
    o.placement = Placement::Pinned(0);
    hs.push_back(rt_->Spawn(PinnedSleeper(0, 40), o));
  }
  for (auto& h : hs) EXPECT_TRUE(h.Join());
  const RuntimeStats s = rt_->Stats();
  for (const ExecutorStats& w : s.workers) EXPECT_EQ(w.moved_in, 0u);
}

// Many tasks of operations and joins over every worker: each runs its
// steps exactly once wherever it moves, and every executor's counters
// balance.
Task<int> Leaf(int i) {
  co_await SleepFor(std::chrono::microseconds(50 + (i % 7) * 20));
  Spin(20'000);
  co_return i;
}

Task<long> Fan(int base, std::atomic<long>* steps) {
  long sum = 0;
  for (int round = 0; round < 4; ++round) {
    JoinHandle<int> a = Runtime::Current()->Spawn(Leaf(base + round));
    co_await SleepFor(std::chrono::microseconds(100));
    Spin(50'000);
    steps->fetch_add(1, std::memory_order_relaxed);
    sum += co_await a;
  }
  co_return sum;
}

TEST_P(RuntimeRequestTest, EveryStepRunsOnceWhereverTasksMove) {
  constexpr int kFans = 64;
  std::atomic<long> steps{0};
  std::vector<JoinHandle<long>> hs;
  for (int i = 0; i < kFans; ++i) {
    hs.push_back(ForWorker0(*rt_, Fan(i * 10, &steps)));
  }
  long total = 0, want = 0;
  for (int i = 0; i < kFans; ++i) {
    total += hs[i].Join();
    for (int r = 0; r < 4; ++r) want += i * 10 + r;
  }
  EXPECT_EQ(total, want);
  EXPECT_EQ(steps.load(), 4L * kFans);
  const RuntimeStats s = rt_->Stats();
  uint64_t in = 0, out = 0;
  for (const ExecutorStats& w : s.workers) {
    in += w.moved_in;
    out += w.moved_out;
    EXPECT_EQ(w.spawns + w.moved_in,
              w.completions + w.failed + w.cancellations + w.moved_out +
                  w.live_tasks);
    EXPECT_EQ(w.live_tasks, 0u);
  }
  EXPECT_EQ(in, out);
}

// Sleeps and works until aborted, holding a counted object in its frame.
Task<void> Forever(std::atomic<int>* live) {
  LiveCounter c(live);
  for (;;) {
    co_await SleepFor(std::chrono::microseconds(100));
    Spin(30'000);
  }
}

// 32 Forever tasks queued for worker 0, all started (at most 20 s).
std::vector<JoinHandle<void>> StartForever(Runtime& rt,
                                           std::atomic<int>* live) {
  std::vector<JoinHandle<void>> hs;
  for (int i = 0; i < 32; ++i) hs.push_back(ForWorker0(rt, Forever(live)));
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (live->load() < 32 && Clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(live->load(), 32);
  return hs;
}

// Aborts from a plain thread reach tasks that move between workers; every
// frame is freed.
TEST_P(RuntimeRequestTest, AbortsReachMovingTasks) {
  std::atomic<int> live{0};
  std::vector<JoinHandle<void>> hs = StartForever(*rt_, &live);
  for (auto& h : hs) {
    Spin(200'000);  // the tasks keep moving meanwhile
    h.Abort();
  }
  for (auto& h : hs) EXPECT_EQ(h.Wait(), JoinStatus::kCancelled);
  EXPECT_EQ(live.load(), 0);
}

// The runtime's destruction finds the moving tasks: every one is cancelled
// and its frame freed.
TEST_P(RuntimeRequestTest, ShutdownCancelsMovingTasks) {
  std::atomic<int> live{0};
  std::vector<JoinHandle<void>> hs = StartForever(*rt_, &live);
  Spin(5'000'000);
  rt_.reset();
  EXPECT_EQ(live.load(), 0);
  for (auto& h : hs) EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeRequestTest,
                         ::testing::Values(1, 2, 4, 8),
                         runtime_testing::WorkersName);

}  // namespace
}  // namespace spindle
