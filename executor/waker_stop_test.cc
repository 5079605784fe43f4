// Waker (the public way to write an awaitable) across threads, and
// RequestStop from other threads, from tasks and before Run.

#include <cstdlib>
#include <latch>
#include <memory>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle {
namespace {

using namespace executor_testing;  // NOLINT: test helpers
using namespace std::chrono_literals;




// ---- Also delivered: Waker from another thread, RequestStop.

// Hands a Waker to another thread through an atomic slot.
struct Mailbox {
  std::atomic<Waker*> slot{nullptr};
  struct Awaiter {
    Mailbox* box;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept {
      // release: the Waker is complete before the other thread takes it.
      box->slot.store(new Waker(Waker::SuspendCurrent(h)),
                      std::memory_order_release);
    }
    void await_resume() const noexcept {}
  };
  Awaiter Wait() { return Awaiter{this}; }
};

TEST(HardeningTest, WakerFromAnotherThreadResumesTheTask) {
  auto ex = MakeExecutor();
  constexpr int kRounds = 500;
  Mailbox box;
  int resumed = 0;
  auto body = [&]() -> Task<void> {
    for (int i = 0; i < kRounds; ++i) {
      co_await box.Wait();
      resumed++;
    }
  };
  ex->SpawnDetached(body());
  std::thread waker([&] {
    for (int i = 0; i < kRounds; ++i) {
      Waker* w = nullptr;
      // acquire: pairs with the release store in await_suspend.
      while ((w = box.slot.exchange(nullptr, std::memory_order_acquire)) ==
             nullptr) {
        std::this_thread::yield();
      }
      w->Wake();
      w->Wake();  // a second Wake is a no-op
      delete w;
    }
  });
  ex->Run();
  waker.join();
  EXPECT_EQ(resumed, kRounds);
  ExpectAccounted(*ex);
}

TEST(HardeningTest, RequestStopFromAnotherThreadCancelsWhatIsLeft) {
  auto ex = MakeExecutor();
  Gate gate;  // never opened
  std::vector<JoinHandle<void>> hs;
  for (int i = 0; i < 10; ++i) hs.push_back(ex->Spawn(WaitOn(&gate)));
  std::atomic<bool> spinning{false};
  auto spinner = [&]() -> Task<void> {
    for (;;) {
      spinning.store(true, std::memory_order_release);
      co_await YieldNow();
    }
  };
  JoinHandle<void> spin = ex->Spawn(spinner());
  std::thread stopper([&] {
    while (!spinning.load(std::memory_order_acquire)) std::this_thread::yield();
    ex->RequestStop();
  });
  ex->Run();  // returns
  stopper.join();
  for (auto& h : hs) EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(spin.status(), JoinStatus::kCancelled);
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.stops, 1u);
  EXPECT_EQ(s.live_tasks, 0u);
  ExpectAccounted(*ex);
  // Still usable.
  EXPECT_EQ(ex->BlockOn(Constant(9)), 9);
}

TEST(HardeningTest, RequestStopFromATaskAndBeforeRun) {
  auto ex = MakeExecutor();
  Gate gate;
  JoinHandle<void> waiting = ex->Spawn(WaitOn(&gate));
  auto stopper = [&]() -> Task<void> {
    co_await YieldNow();
    CurrentExecutor()->RequestStop();
    co_await YieldNow();  // cancelled here
    ADD_FAILURE() << "ran after the stop";
  };
  JoinHandle<void> s = ex->Spawn(stopper());
  ex->Run();
  EXPECT_EQ(waiting.status(), JoinStatus::kCancelled);
  EXPECT_EQ(s.status(), JoinStatus::kCancelled);
  ex->RequestStop();  // before Run: the next Run stops
  JoinHandle<void> later = ex->Spawn(WaitOn(&gate));
  ex->Run();
  EXPECT_EQ(later.status(), JoinStatus::kCancelled);
  ExpectAccounted(*ex);
}

}  // namespace
}  // namespace spindle
