// executor/sync_budget_test.cc: a channel Send or Recv, a Semaphore or
// Mutex acquisition, a Notify or WaitGroup wait that does not wait charges
// the task's operation budget and yields once it is spent, so a task whose
// channel never runs empty (or never fills), or whose permits are always
// free, does not keep its worker; a task cancelled while it yields so
// loses no message and keeps no permit.
#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "executor/executor.h"
#include "executor/fiber.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "executor/notify.h"
#include "executor/semaphore.h"
#include "executor/sync.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::MakeChannel;
using executor_testing::MakePathChannel;
using executor_testing::MakeExecutor;

// Far more operations than any task budget (2000 without tiers, at most
// that with them), so a task that never waits must yield on the way.
constexpr int kMessages = 10'000;

// Fresh: the channel's general paths; Biased: its lock was taken 100 times
// in a row here first, so Send and Recv take the fast paths (channel.h)
// where membarrier is available.
class ChannelBudgetTest : public testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Paths, ChannelBudgetTest, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& i) {
                           return i.param ? "Biased" : "Fresh";
                         });

// A channel of kMessages slots; full of 0..kMessages-1 if `fill`.
std::shared_ptr<Channel<int>> BigChannel(bool biased, bool fill) {
  auto ch = MakePathChannel(kMessages, biased);
  for (int i = 0; fill && i < kMessages; ++i) {
    EXPECT_EQ(ch->TrySend(i), ChannelStatus::kOk);
  }
  return ch;
}

// Whether `got` is 0..kMessages-1.
bool AllInOrder(const std::vector<int>& got) {
  if (got.size() != static_cast<size_t>(kMessages)) return false;
  for (int i = 0; i < kMessages; ++i) {
    if (got[i] != i) return false;
  }
  return true;
}

Task<> RecvAll(Channel<int>* ch, std::vector<int>* got) {
  for (int i = 0; i < kMessages; ++i) {
    std::optional<int> v = co_await ch->Recv();
    if (!v.has_value()) co_return;
    got->push_back(*v);
  }
}

Task<> SendAll(Channel<int>* ch) {
  for (int i = 0; i < kMessages; ++i) EXPECT_TRUE(co_await ch->Send(i));
}

// What the other tasks of the worker saw: `Observe` runs once per turn
// until `done` and counts the turns in which `progress()` was strictly
// between 0 and kMessages (the channel task had started and not ended).
template <typename Progress>
Task<> Observe(const std::atomic<bool>* done, Progress progress,
               int* turns_between) {
  while (!done->load(std::memory_order_acquire)) {
    const size_t p = progress();
    if (p > 0 && p < static_cast<size_t>(kMessages)) ++*turns_between;
    co_await YieldNow();
  }
}

TEST_P(ChannelBudgetTest, AReceiverWhoseChannelNeverRunsEmptyLetsOthersRun) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = BigChannel(biased, /*fill=*/true);
    std::vector<int> got;
    std::atomic<bool> done{false};
    int turns = 0;
    auto r = ex->Spawn(RecvAll(ch.get(), &got));
    auto o = ex->Spawn(
        Observe(&done, [&got] { return got.size(); }, &turns));
    co_await r;
    done.store(true, std::memory_order_release);
    co_await o;
    // The receiver yielded on the way (its budget), at least twice.
    EXPECT_GE(turns, 2);
    EXPECT_TRUE(AllInOrder(got));
  }(ex.get(), GetParam()));
}

TEST_P(ChannelBudgetTest, ASenderWhoseChannelNeverFillsLetsOthersRun) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = BigChannel(biased, /*fill=*/false);
    std::atomic<bool> done{false};
    int turns = 0;
    auto s = ex->Spawn(SendAll(ch.get()));
    auto o = ex->Spawn(
        Observe(&done, [&ch] { return ch->size(); }, &turns));
    co_await s;
    done.store(true, std::memory_order_release);
    co_await o;
    EXPECT_GE(turns, 2);
    EXPECT_EQ(ch->size(), static_cast<size_t>(kMessages));
  }(ex.get(), GetParam()));
}

TEST_P(ChannelBudgetTest, AReceiverCancelledWhileItYieldsGivesTheMessageBack) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = BigChannel(biased, /*fill=*/true);
    std::vector<int> got;
    auto r = ex->Spawn(RecvAll(ch.get(), &got));
    // Queued behind the receiver: this resumes when it yields, holding
    // the message it received last (not yet returned from Recv).
    co_await YieldNow();
    const size_t taken = got.size();
    EXPECT_GT(taken, 0u);
    EXPECT_LT(taken, static_cast<size_t>(kMessages));
    r.Abort();
    EXPECT_EQ(got.size(), taken);
    // Nothing lost: the held message is back at the front.
    EXPECT_EQ(ch->size(), kMessages - taken);
    EXPECT_EQ(ch->TryRecv(), static_cast<int>(taken));
  }(ex.get(), GetParam()));
}

TEST(ChannelBudgetFiberTest, AFiberReceiverYieldsForItsBudgetToo) {
  auto ex = MakeExecutor();
  auto ch = BigChannel(/*biased=*/false, /*fill=*/true);
  std::vector<int> got;
  std::atomic<bool> done{false};
  int turns = 0;
  JoinHandle<void> f = ex->SpawnFiber([&] {
    for (int i = 0; i < kMessages; ++i) {
      std::optional<int> v = this_fiber::Await(ch->Recv());
      got.push_back(v.value_or(-1));
    }
    done.store(true, std::memory_order_release);
  });
  JoinHandle<void> o =
      ex->Spawn(Observe(&done, [&got] { return got.size(); }, &turns));
  ex->BlockOn([](JoinHandle<void>* f, JoinHandle<void>* o) -> Task<> {
    co_await *f;
    co_await *o;
  }(&f, &o));
  EXPECT_GE(turns, 2);
  EXPECT_TRUE(AllInOrder(got));
}

// On a Runtime the same holds on every worker count: a consumer that
// never finds its channel empty shares its worker with a task pinned
// there.
class ChannelBudgetRuntimeTest : public testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(Workers, ChannelBudgetRuntimeTest,
                         testing::Values(1, 2));

TEST_P(ChannelBudgetRuntimeTest, APinnedReceiverSharesItsWorker) {
  std::unique_ptr<Runtime> rt = runtime_testing::MakeRuntime(GetParam());
  ASSERT_NE(rt, nullptr);
  auto ch = BigChannel(/*biased=*/false, /*fill=*/true);
  std::vector<int> got;
  std::atomic<bool> done{false};
  int turns = 0;
  rt->BlockOn([](Runtime* rt, Channel<int>* ch, std::vector<int>* got,
                 std::atomic<bool>* done, int* turns) -> Task<> {
    RuntimeSpawnOptions on0;
    on0.placement = Placement::Pinned(0);
    auto r = rt->Spawn(RecvAll(ch, got), on0);
    auto o = rt->Spawn(
        Observe(done, [got] { return got->size(); }, turns), on0);
    co_await r;
    done->store(true, std::memory_order_release);
    co_await o;
  }(rt.get(), ch.get(), &got, &done, &turns));
  EXPECT_GE(turns, 2);
  EXPECT_TRUE(AllInOrder(got));
}

Task<> SendCounting(Channel<int>* ch, std::atomic<size_t>* sent) {
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_TRUE(co_await ch->Send(i));
    sent->fetch_add(1, std::memory_order_relaxed);
  }
}

// A producer whose consumer on another worker keeps up (its sends are
// hand-offs to a waiting task of another thread, or buffered) shares its
// worker too.
TEST(ChannelBudgetRuntimeTest, ASenderToAnotherWorkerSharesItsWorker) {
  std::unique_ptr<Runtime> rt = runtime_testing::MakeRuntime(2);
  ASSERT_NE(rt, nullptr);
  auto ch = MakeChannel<int>(kMessages);
  std::vector<int> got;
  std::atomic<size_t> sent{0};
  std::atomic<bool> done{false};
  int turns = 0;
  rt->BlockOn([](Runtime* rt, Channel<int>* ch, std::vector<int>* got,
                 std::atomic<size_t>* sent, std::atomic<bool>* done,
                 int* turns) -> Task<> {
    RuntimeSpawnOptions on0, on1;
    on0.placement = Placement::Pinned(0);
    on1.placement = Placement::Pinned(1);
    auto r = rt->Spawn(RecvAll(ch, got), on1);
    auto s = rt->Spawn(SendCounting(ch, sent), on0);
    auto o = rt->Spawn(
        Observe(done, [sent] { return sent->load(std::memory_order_relaxed); },
                turns),
        on0);
    co_await s;
    done->store(true, std::memory_order_release);
    co_await o;
    co_await r;
  }(rt.get(), ch.get(), &got, &sent, &done, &turns));
  EXPECT_GE(turns, 2);
  EXPECT_TRUE(AllInOrder(got));
}

// ---- Semaphore, Mutex, Notify, WaitGroup ----------------------------------

// kMessages turns of `op` (a Task<> factory), counted in `*done_ops`.
template <typename Op>
Task<> Repeat(Op op, std::atomic<size_t>* done_ops) {
  for (int i = 0; i < kMessages; ++i) {
    co_await op();
    done_ops->fetch_add(1, std::memory_order_relaxed);
  }
}

// Runs `op` kMessages times in one task beside an Observe task on one
// executor; returns Observe's turns_between (at least 2 when the task
// yielded on the way).
template <typename Op>
int TurnsBesideRepeated(Op op) {
  auto ex = MakeExecutor();
  int turns = 0;
  std::atomic<size_t> ops{0};
  ex->BlockOn([](LocalExecutor* ex, Op op, std::atomic<size_t>* ops,
                 int* turns) -> Task<> {
    std::atomic<bool> done{false};
    auto r = ex->Spawn(Repeat(op, ops));
    auto o = ex->Spawn(Observe(
        &done, [ops] { return ops->load(std::memory_order_relaxed); },
        turns));
    co_await r;
    done.store(true, std::memory_order_release);
    co_await o;
  }(ex.get(), op, &ops, &turns));
  EXPECT_EQ(ops.load(), static_cast<size_t>(kMessages));
  return turns;
}

TEST(SyncBudgetTest, ASemaphoreWhosePermitsAreFreeLetsOthersRun) {
  Semaphore sem(2);
  EXPECT_GE(TurnsBesideRepeated([&sem]() -> Task<> {
              SemaphoreGuard g = co_await sem.AcquireGuard(2);
            }),
            2);
  EXPECT_EQ(sem.available(), 2u);
}

TEST(SyncBudgetTest, AMutexThatIsFreeLetsOthersRun) {
  Mutex mu;
  EXPECT_GE(TurnsBesideRepeated([&mu]() -> Task<> {
              MutexGuard g = co_await mu.Lock();
            }),
            2);
  EXPECT_FALSE(mu.is_locked());
}

TEST(SyncBudgetTest, ANotifyWithAStoredPermitLetsOthersRun) {
  Notify n;
  EXPECT_GE(TurnsBesideRepeated([&n]() -> Task<> {
              n.NotifyOne();  // no waiter: stored
              co_await n.Notified();
            }),
            2);
  EXPECT_EQ(n.waiters(), 0u);
}

TEST(SyncBudgetTest, AWaitGroupAtZeroLetsOthersRun) {
  WaitGroup wg;
  EXPECT_GE(TurnsBesideRepeated([&wg]() -> Task<> { co_await wg.Wait(); }),
            2);
}

// Queued behind a task that keeps acquiring and releasing all the
// permits, a task resumes when that one yields for its budget: inside
// Acquire, holding them.  Aborted there, it gives them back.
TEST(SyncBudgetTest, ATaskCancelledWhileItYieldsGivesItsPermitsBack) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    Semaphore sem(3);
    std::atomic<size_t> ops{0};
    auto r = ex->Spawn(Repeat(
        [&sem]() -> Task<> { SemaphoreGuard g = co_await sem.AcquireGuard(3); },
        &ops));
    co_await YieldNow();
    const size_t taken = ops.load();
    EXPECT_GT(taken, 0u);
    EXPECT_LT(taken, static_cast<size_t>(kMessages));
    EXPECT_EQ(sem.available(), 0u);  // held by the yielding Acquire
    r.Abort();
    EXPECT_EQ(r.status(), JoinStatus::kCancelled);
    EXPECT_EQ(sem.available(), 3u);
    EXPECT_EQ(ops.load(), taken);
  }(ex.get()));
}

// Likewise a Notify's stored permit, taken by a task that yields: aborted
// there, it passes the permit on (the next Notified returns at once).
TEST(SyncBudgetTest, ATaskCancelledWhileItYieldsPassesTheNotifyPermitOn) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    Notify n;
    std::atomic<size_t> ops{0};
    auto r = ex->Spawn(Repeat(
        [&n]() -> Task<> {
          n.NotifyOne();
          co_await n.Notified();
        },
        &ops));
    co_await YieldNow();
    EXPECT_GT(ops.load(), 0u);
    EXPECT_LT(ops.load(), static_cast<size_t>(kMessages));
    r.Abort();
    EXPECT_EQ(r.status(), JoinStatus::kCancelled);
    bool woke = false;
    auto w = ex->Spawn([](Notify* n, bool* woke) -> Task<> {
      co_await n->Notified();
      *woke = true;
    }(&n, &woke));
    for (int i = 0; i < 3 && !woke; ++i) co_await YieldNow();
    EXPECT_TRUE(woke) << "the permit the cancelled task held was lost";
    if (!woke) n.NotifyOne();  // end the waiter either way
    co_await w;
  }(ex.get()));
}

TEST(SyncBudgetFiberTest, AFiberLockingAFreeMutexYieldsForItsBudgetToo) {
  auto ex = MakeExecutor();
  Mutex mu;
  std::atomic<size_t> ops{0};
  std::atomic<bool> done{false};
  int turns = 0;
  JoinHandle<void> f = ex->SpawnFiber([&] {
    for (int i = 0; i < kMessages; ++i) {
      MutexGuard g = this_fiber::Await(mu.Lock());
      ops.fetch_add(1, std::memory_order_relaxed);
    }
    done.store(true, std::memory_order_release);
  });
  JoinHandle<void> o = ex->Spawn(Observe(
      &done, [&ops] { return ops.load(std::memory_order_relaxed); }, &turns));
  ex->BlockOn([](JoinHandle<void>* f, JoinHandle<void>* o) -> Task<> {
    co_await *f;
    co_await *o;
  }(&f, &o));
  EXPECT_GE(turns, 2);
  EXPECT_FALSE(mu.is_locked());
}

// On a Runtime of 1 and 2 workers: a pinned task that keeps locking a free
// mutex shares its worker with a task pinned there.
TEST_P(ChannelBudgetRuntimeTest, APinnedMutexLockerSharesItsWorker) {
  std::unique_ptr<Runtime> rt = runtime_testing::MakeRuntime(GetParam());
  ASSERT_NE(rt, nullptr);
  Mutex mu;
  std::atomic<size_t> ops{0};
  std::atomic<bool> done{false};
  int turns = 0;
  rt->BlockOn([](Runtime* rt, Mutex* mu, std::atomic<size_t>* ops,
                 std::atomic<bool>* done, int* turns) -> Task<> {
    RuntimeSpawnOptions on0;
    on0.placement = Placement::Pinned(0);
    auto a = rt->Spawn(
        Repeat([mu]() -> Task<> { MutexGuard g = co_await mu->Lock(); }, ops),
        on0);
    auto o = rt->Spawn(
        Observe(done, [ops] { return ops->load(std::memory_order_relaxed); },
                turns),
        on0);
    co_await a;
    done->store(true, std::memory_order_release);
    co_await o;
  }(rt.get(), &mu, &ops, &done, &turns));
  EXPECT_GE(turns, 2);
  EXPECT_FALSE(mu.is_locked());
}

}  // namespace
}  // namespace spindle
