// executor/cancel_order_test.cc: a finished or cancelled task's frame is
// destroyed (the destructors of its locals, parameters and captures run)
// before anyone can see it done through its JoinHandle: on completion, on
// Abort of a suspended coroutine or fiber (on a LocalExecutor and on a
// Runtime) and at executor shutdown.  A thread blocked in Wait() must not
// return while the task's destructors still run on a worker.

#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::Gate;
using executor_testing::MakeExecutor;

// Records, when destroyed, whether the task's handle already said it was
// finished.  `seen` outlives the task; `handle` is set once spawned.
struct Probe {
  struct Slot {
    const JoinHandle<int>* handle = nullptr;
    int destroyed = 0;
    int finished_at_destruction = 0;
  };
  Slot* slot;
  explicit Probe(Slot* s) : slot(s) {}
  Probe(Probe&& o) noexcept : slot(std::exchange(o.slot, nullptr)) {}
  Probe& operator=(Probe&&) = delete;
  ~Probe() {
    if (slot == nullptr) return;
    slot->destroyed++;
    if (slot->handle != nullptr && slot->handle->is_finished()) {
      slot->finished_at_destruction++;
    }
  }
};

Task<int> WaitWithLocal(Probe::Slot* slot, Gate* gate) {
  Probe local(slot);
  co_await gate->Wait();
  co_return 1;
}

Task<int> NeverRuns(Probe param) {
  (void)param;
  co_return 1;
}

Task<void> AbortLater(JoinHandle<int>* h) {
  co_await YieldNow();
  h->Abort();
}

TEST(CancelOrderTest, AbortedCoroutineDestroysItsLocalsBeforeItIsDone) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Probe::Slot slot;
  Gate gate;
  JoinHandle<int> h = ex->Spawn(WaitWithLocal(&slot, &gate));
  slot.handle = &h;
  ex->SpawnDetached(AbortLater(&h));
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(slot.destroyed, 1);
  EXPECT_EQ(slot.finished_at_destruction, 0);
}

TEST(CancelOrderTest, AbortedFiberUnwindsItsStackBeforeItIsDone) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Probe::Slot slot;
  Gate gate;
  JoinHandle<int> h = ex->SpawnFiber([&slot, &gate] {
    Probe local(&slot);
    this_fiber::Await(gate.Wait());
    return 1;
  });
  slot.handle = &h;
  ex->SpawnDetached(AbortLater(&h));
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(slot.destroyed, 1);
  EXPECT_EQ(slot.finished_at_destruction, 0);
}

TEST(CancelOrderTest, AbortBeforeTheFirstPollDestroysParametersFirst) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Probe::Slot slot;
  JoinHandle<int> h = ex->Spawn(NeverRuns(Probe(&slot)));
  slot.handle = &h;
  h.Abort();
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(slot.destroyed, 1);
  EXPECT_EQ(slot.finished_at_destruction, 0);
}

Task<int> ReturnsWithParameter(Probe param) {
  (void)param;
  co_await YieldNow();
  co_return 7;
}

// The same order for a task that finishes: a coroutine's parameters live in
// its frame until the frame is destroyed, after its body returned.
TEST(CancelOrderTest, FinishedCoroutineDestroysItsParametersBeforeItIsDone) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Probe::Slot slot;
  JoinHandle<int> h = ex->Spawn(ReturnsWithParameter(Probe(&slot)));
  slot.handle = &h;
  ex->Run();
  EXPECT_EQ(h.Join(), 7);
  EXPECT_EQ(slot.destroyed, 1);
  EXPECT_EQ(slot.finished_at_destruction, 0);
}

TEST(CancelOrderTest, ShutdownDestroysSuspendedTasksBeforeTheyAreDone) {
  Probe::Slot coro_slot;
  Probe::Slot fiber_slot;
  Gate gate;
  JoinHandle<int> coro;
  JoinHandle<int> fiber;
  {
    auto ex = MakeExecutor();
    ASSERT_NE(ex, nullptr);
    coro = ex->Spawn(WaitWithLocal(&coro_slot, &gate));
    fiber = ex->SpawnFiber([&fiber_slot, &gate] {
      Probe local(&fiber_slot);
      this_fiber::Await(gate.Wait());
      return 1;
    });
    coro_slot.handle = &coro;
    fiber_slot.handle = &fiber;
    LocalExecutor::RunLimits idle;
    idle.until_idle = true;
    EXPECT_EQ(ex->RunFor(idle), LocalExecutor::RunStatus::kIdle);
    EXPECT_EQ(coro_slot.destroyed, 0);
  }
  EXPECT_EQ(coro.status(), JoinStatus::kCancelled);
  EXPECT_EQ(fiber.status(), JoinStatus::kCancelled);
  EXPECT_EQ(coro_slot.destroyed, 1);
  EXPECT_EQ(fiber_slot.destroyed, 1);
  EXPECT_EQ(coro_slot.finished_at_destruction, 0);
  EXPECT_EQ(fiber_slot.finished_at_destruction, 0);
}

TEST(CancelOrderTest, RuntimeAbortDestroysTheFrameBeforeWaitReturns) {
  auto rt = runtime_testing::MakeRuntime(2);
  ASSERT_NE(rt, nullptr);
  for (int round = 0; round < 50; ++round) {
    Probe::Slot slot;
    std::atomic<bool> started{false};
    JoinHandle<int> h = rt->SpawnFiber([&slot, &started] {
      Probe local(&slot);
      started.store(true, std::memory_order_release);
      this_fiber::SleepFor(std::chrono::hours(1));
      return 1;
    });
    // The handle is read by the probe on a worker: publish it before the
    // task can be destroyed (it cannot be, until the Abort below).
    slot.handle = &h;
    while (!started.load(std::memory_order_acquire)) std::this_thread::yield();
    h.Abort();
    EXPECT_EQ(h.Wait(), JoinStatus::kCancelled);
    // Wait returned: the worker is done with the task's stack.
    EXPECT_EQ(slot.destroyed, 1) << "round " << round;
    EXPECT_EQ(slot.finished_at_destruction, 0) << "round " << round;
  }
}

}  // namespace
}  // namespace spindle
