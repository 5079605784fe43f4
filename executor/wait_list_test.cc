// The wake order of the sync primitives' waiter lists
// (executor/internal/wait_list.h): a blocked thread is notified while the
// primitive's lock is still held, so that a thread returning from its wait
// may destroy the primitive at once.  (The notify used to come after the
// unlock: a waiter woken spuriously, or by another notify, in between could
// return and destroy the primitive, and the late notify_all then touched a
// destroyed condition variable.)
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/internal/wait_list.h"
#include "gtest/gtest.h"

namespace spindle::executor_internal {
namespace {

// Waits up to `limit` for `flag`; true if it was set.
bool WaitFor(const std::atomic<bool>& flag, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!flag.load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(WaitListTest, ABlockedThreadIsNotifiedBeforeTheLockIsReleased) {
  SyncMutex mu;
  SyncCondVar cv;
  WaitList list;
  SyncWaiter node;
  node.thread = true;
  std::atomic<bool> linked{false}, returned{false};
  std::thread waiter([&] {
    std::unique_lock<SyncMutex> lock(mu);
    list.PushBack(&node);
    linked.store(true, std::memory_order_release);
    cv.wait(lock, [&] { return !node.linked; });
    returned.store(true, std::memory_order_release);
  });
  ASSERT_TRUE(WaitFor(linked, std::chrono::seconds(10)));
  WakeSet wakes(&cv);
  {
    std::lock_guard<SyncMutex> lock(mu);  // the waiter is inside cv.wait
    wakes.Take(list, &node, WaitOutcome::kGranted);
  }
  // Nothing after the unlock is needed to end the thread's wait: it
  // returns before Wake() (which only wakes tasks of other threads).
  const bool before_wake = WaitFor(returned, std::chrono::seconds(10));
  wakes.Wake();
  if (!before_wake) {
    cv.notify_all();  // lets the thread go, so the failure is reported
  }
  waiter.join();
  EXPECT_TRUE(before_wake);
  EXPECT_EQ(node.outcome, WaitOutcome::kGranted);
}

// The user's pattern: a primitive on the stack, destroyed as soon as the
// blocking wait returns, while tasks on the workers release it.
TEST(WaitListTest, APrimitiveCanGoAsSoonAsABlockingWaitReturns) {
  auto rt = RuntimeBuilder().Workers(2).Build();
  ASSERT_TRUE(rt.ok()) << rt.status();
  for (int round = 0; round < 500; ++round) {
    auto wg = std::make_unique<WaitGroup>();
    wg->Add(2);
    auto done = [](WaitGroup* g) -> Task<> {
      g->Done();
      co_return;
    };
    auto a = (*rt)->Spawn(done(wg.get()));
    auto b = (*rt)->Spawn(done(wg.get()));
    wg->WaitBlocking();
    EXPECT_EQ(wg->count(), 0u);
    wg.reset();  // ASan: nothing touches it afterwards
  }
}

}  // namespace
}  // namespace spindle::executor_internal
