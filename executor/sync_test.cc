// executor/sync_test.cc: Semaphore, Mutex, Notify and WaitGroup: order,
// cancellation in every state, plain threads, and workers of a Runtime.
#include "executor/sync.h"

#include <atomic>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::MakeExecutor;
using executor_testing::Settle;

Task<> AcquireAndLog(Semaphore* s, size_t n, int id, std::vector<int>* log) {
  co_await s->Acquire(n);
  log->push_back(id);
}

TEST(SemaphoreTest, WaitersAreServedInArrivalOrderWithoutOvertaking) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    Semaphore sem(0);
    std::vector<int> log;
    auto a = ex->Spawn(AcquireAndLog(&sem, 2, 1, &log));
    co_await Settle();
    auto b = ex->Spawn(AcquireAndLog(&sem, 1, 2, &log));
    co_await Settle();
    EXPECT_EQ(sem.waiters(), 2u);
    EXPECT_FALSE(sem.TryAcquire(0 + 1));  // waiters come first
    sem.Release(1);
    co_await Settle();
    // One permit would fit b, but a (first, wants 2) is not overtaken.
    EXPECT_TRUE(log.empty());
    sem.Release(1);
    co_await Settle();
    EXPECT_EQ(log, std::vector<int>({1}));
    sem.Release(1);
    co_await a;
    co_await b;
    EXPECT_EQ(log, std::vector<int>({1, 2}));
    EXPECT_EQ(sem.available(), 0u);
  }(ex.get()));
}

TEST(SemaphoreTest, ACancelledWaiterLeavesTheQueueAndUnblocksThoseBehind) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    Semaphore sem(1);
    std::vector<int> log;
    auto big = ex->Spawn(AcquireAndLog(&sem, 2, 1, &log));
    co_await Settle();
    auto small = ex->Spawn(AcquireAndLog(&sem, 1, 2, &log));
    co_await Settle();
    EXPECT_TRUE(log.empty());  // small waits behind big
    big.Abort();               // cancelled while waiting
    co_await small;
    EXPECT_EQ(log, std::vector<int>({2}));
    EXPECT_EQ(big.status(), JoinStatus::kCancelled);
    EXPECT_EQ(sem.waiters(), 0u);
    EXPECT_EQ(sem.available(), 0u);
  }(ex.get()));
}

TEST(SemaphoreTest, AWaiterCancelledAfterItsGrantGivesThePermitsBack) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    Semaphore sem(0);
    std::vector<int> log;
    auto first = ex->Spawn(AcquireAndLog(&sem, 1, 1, &log));
    co_await Settle();
    auto second = ex->Spawn(AcquireAndLog(&sem, 1, 2, &log));
    co_await Settle();
    sem.Release(1);  // granted to `first`, which is queued, not yet resumed
    first.Abort();   // ... and cancelled before it ran
    co_await second;
    EXPECT_EQ(first.status(), JoinStatus::kCancelled);
    EXPECT_EQ(log, std::vector<int>({2}));  // the permit went on
    sem.Release(1);
    EXPECT_EQ(sem.available(), 1u);  // and none was lost or made up
  }(ex.get()));
}

TEST(SemaphoreTest, GuardReleasesAndAcquireZeroDoesNotWait) {
  auto ex = MakeExecutor();
  ex->BlockOn([]() -> Task<> {
    Semaphore sem(3);
    co_await sem.Acquire(0);
    {
      SemaphoreGuard g = co_await sem.AcquireGuard(2);
      EXPECT_TRUE(g.owns());
      EXPECT_EQ(sem.available(), 1u);
    }
    EXPECT_EQ(sem.available(), 3u);
  }());
}

TEST(SemaphoreTest, BlockingFormsServeThreadsAndRefuseExecutorThreads) {
  Semaphore sem(0);
  std::atomic<bool> got{false};
  std::thread t([&] {
    sem.AcquireBlocking(2);
    got.store(true);
  });
  while (sem.waiters() == 0) std::this_thread::yield();
  sem.Release(1);
  EXPECT_FALSE(got.load());
  sem.Release(1);
  t.join();
  EXPECT_TRUE(got.load());

  auto ex = MakeExecutor();
  EXPECT_THROW(ex->BlockOn([](Semaphore* s) -> Task<> {
    s->AcquireBlocking(1);
    co_return;
  }(&sem)),
               TaskMisuseError);
}

Task<> CountUnderLock(Mutex* mu, int* counter, int rounds,
                      std::atomic<int>* inside) {
  for (int i = 0; i < rounds; ++i) {
    MutexGuard g = co_await mu->Lock();
    EXPECT_EQ(inside->fetch_add(1), 0);
    const int seen = *counter;
    co_await YieldNow();  // held across an await
    *counter = seen + 1;
    inside->fetch_sub(1);
  }
}

TEST(MutexTest, HeldAcrossAwaitsOnSeveralWorkersNoUpdateIsLost) {
  for (size_t workers : {1, 2, 4}) {
    auto rt = runtime_testing::MakeRuntime(workers);
    Mutex mu;
    int counter = 0;
    std::atomic<int> inside{0};
    constexpr int kTasks = 6;
    constexpr int kRounds = 300;
    std::vector<JoinHandle<>> hs;
    for (int i = 0; i < kTasks; ++i) {
      hs.push_back(rt->Spawn(CountUnderLock(&mu, &counter, kRounds, &inside)));
    }
    for (auto& h : hs) h.Join();
    EXPECT_EQ(counter, kTasks * kRounds) << workers << " workers";
    EXPECT_FALSE(mu.is_locked());
  }
}

TEST(MutexTest, TryLockFailsWhileHeldAndGuardsMove) {
  Mutex mu;
  MutexGuard a = mu.TryLock();
  ASSERT_TRUE(a);
  EXPECT_FALSE(mu.TryLock());
  MutexGuard b = std::move(a);
  EXPECT_FALSE(a.owns_lock());
  b.unlock();
  EXPECT_FALSE(mu.is_locked());
  MutexGuard c = mu.LockBlocking();
  EXPECT_TRUE(mu.is_locked());
}

Task<> WaitNotified(Notify* n, int id, std::vector<int>* log) {
  co_await n->Notified();
  log->push_back(id);
}

TEST(NotifyTest, NotifyOneIsRememberedOnceAndWakesInOrder) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    Notify n;
    std::vector<int> log;
    n.NotifyOne();
    n.NotifyOne();          // still one stored permit
    co_await n.Notified();  // consumed at once
    auto a = ex->Spawn(WaitNotified(&n, 1, &log));
    co_await Settle();
    auto b = ex->Spawn(WaitNotified(&n, 2, &log));
    co_await Settle();
    EXPECT_TRUE(log.empty());  // the second NotifyOne was not stored
    n.NotifyOne();
    co_await a;
    EXPECT_EQ(log, std::vector<int>({1}));
    n.NotifyAll();
    co_await b;
    EXPECT_EQ(log, std::vector<int>({1, 2}));
    n.NotifyAll();  // nobody waits: nothing stored
    auto c = ex->Spawn(WaitNotified(&n, 3, &log));
    co_await Settle();
    EXPECT_EQ(n.waiters(), 1u);
    c.Abort();
  }(ex.get()));
}

TEST(NotifyTest, ANotifiedWaiterCancelledBeforeResumingPassesItOn) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    Notify n;
    std::vector<int> log;
    auto a = ex->Spawn(WaitNotified(&n, 1, &log));
    co_await Settle();
    auto b = ex->Spawn(WaitNotified(&n, 2, &log));
    co_await Settle();
    n.NotifyOne();  // chooses a
    a.Abort();      // a never resumes: b gets the notification
    co_await b;
    EXPECT_EQ(log, std::vector<int>({2}));
    // And with nobody behind, it is stored, not dropped.
    auto c = ex->Spawn(WaitNotified(&n, 3, &log));
    co_await Settle();
    n.NotifyOne();
    c.Abort();
    co_await n.Notified();  // the stored permit
    EXPECT_EQ(log, std::vector<int>({2}));
  }(ex.get()));
}

TEST(NotifyTest, AThreadWaitsAndExecutorThreadsAreRefused) {
  Notify n;
  std::thread t([&] { n.WaitBlocking(); });
  while (n.waiters() == 0) std::this_thread::yield();
  n.NotifyOne();
  t.join();
  auto ex = MakeExecutor();
  EXPECT_THROW(ex->BlockOn([](Notify* n) -> Task<> {
    n->WaitBlocking();
    co_return;
  }(&n)),
               TaskMisuseError);
}

Task<> DoneAfterYield(WaitGroup* wg, std::atomic<int>* done) {
  co_await YieldNow();
  done->fetch_add(1);
  wg->Done();
}

TEST(WaitGroupTest, WaitReturnsWhenEveryUnitIsDoneAcrossWorkers) {
  auto rt = runtime_testing::MakeRuntime(2);
  rt->BlockOn([](Runtime* rt) -> Task<> {
    WaitGroup wg;
    co_await wg.Wait();  // zero: at once
    std::atomic<int> done{0};
    constexpr int kUnits = 50;
    wg.Add(kUnits);
    for (int i = 0; i < kUnits; ++i) {
      rt->SpawnDetached(DoneAfterYield(&wg, &done));
    }
    co_await wg.Wait();
    EXPECT_EQ(done.load(), kUnits);
    EXPECT_EQ(wg.count(), 0u);
  }(rt.get()));
}

TEST(WaitGroupTest, DoneBelowZeroAbortsWithAMessage) {
  EXPECT_DEATH(
      {
        WaitGroup wg;
        wg.Done();
      },
      "Done\\(\\) called more times than Add\\(\\)");
}

// Stress: a semaphore of 3 permits bounds how many of many tasks are
// inside at once, on 1, 2 and 4 workers.
Task<> Bounded(Semaphore* s, std::atomic<int>* inside, std::atomic<int>* peak,
               int rounds) {
  for (int i = 0; i < rounds; ++i) {
    SemaphoreGuard g = co_await s->AcquireGuard();
    const int now = inside->fetch_add(1) + 1;
    int p = peak->load();
    while (now > p && !peak->compare_exchange_weak(p, now)) {
    }
    co_await YieldNow();
    inside->fetch_sub(1);
  }
}

TEST(SemaphoreStressTest, NeverMoreInsideThanPermits) {
  for (size_t workers : {1, 2, 4}) {
    auto rt = runtime_testing::MakeRuntime(workers);
    Semaphore sem(3);
    std::atomic<int> inside{0}, peak{0};
    std::vector<JoinHandle<>> hs;
    for (int i = 0; i < 16; ++i) {
      hs.push_back(rt->Spawn(Bounded(&sem, &inside, &peak, 200)));
    }
    for (auto& h : hs) h.Join();
    EXPECT_LE(peak.load(), 3);
    EXPECT_GE(peak.load(), 1);
    EXPECT_EQ(sem.available(), 3u) << workers << " workers";
  }
}

}  // namespace
}  // namespace spindle
