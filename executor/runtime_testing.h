// executor/runtime_testing.h: helpers shared by the Runtime's tests.

#ifndef SPINDLE_EXECUTOR_RUNTIME_TESTING_H_
#define SPINDLE_EXECUTOR_RUNTIME_TESTING_H_

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <string>

#include "executor/executor.h"
#include "executor/runtime.h"
#include "gtest/gtest.h"

namespace spindle::runtime_testing {

inline std::unique_ptr<Runtime> MakeRuntime(RuntimeBuilder& b) {
  absl::StatusOr<std::unique_ptr<Runtime>> rt = b.Build();
  EXPECT_TRUE(rt.ok()) << rt.status();
  return rt.ok() ? std::move(*rt) : nullptr;
}

inline std::unique_ptr<Runtime> MakeRuntime(size_t workers) {
  RuntimeBuilder b;
  b.Workers(workers);
  return MakeRuntime(b);
}

// A one-shot event between threads: one task waits, any thread sets it.
// Reset() (by the waiter, after it woke) makes it usable again.
struct Event {
  std::atomic<int> state{0};  // 0: clear, 1: a waiter is registered, 2: set
  Waker waker;

  struct Awaiter {
    Event* e;
    bool await_ready() const noexcept {
      return e->state.load(std::memory_order_acquire) == 2;
    }
    void await_suspend(std::coroutine_handle<> h) noexcept {
      e->waker = Waker::SuspendCurrent(h);
      int expected = 0;
      // acq_rel: publishes the waker to the setter; sees an earlier Set.
      if (!e->state.compare_exchange_strong(expected, 1,
                                            std::memory_order_acq_rel)) {
        e->waker.Wake();  // set meanwhile: resume at once
      }
    }
    void await_resume() const noexcept {}
  };
  Awaiter Wait() noexcept { return Awaiter{this}; }

  void Set() noexcept {
    // acq_rel: reads the waker the waiter published.  Moved out before the
    // wake: once woken, the waiter may store its next waker here.
    if (state.exchange(2, std::memory_order_acq_rel) == 1) {
      Waker w = std::move(waker);
      w.Wake();
    }
  }
  void Reset() noexcept { state.store(0, std::memory_order_relaxed); }
};

// Counts live instances (frames destroyed on cancellation drop theirs).
struct LiveCounter {
  explicit LiveCounter(std::atomic<int>* n) : n_(n) { n_->fetch_add(1); }
  ~LiveCounter() { n_->fetch_sub(1); }
  LiveCounter(const LiveCounter&) = delete;
  LiveCounter& operator=(const LiveCounter&) = delete;
  std::atomic<int>* n_;
};

inline std::string WorkersName(const ::testing::TestParamInfo<size_t>& i) {
  return "workers_" + std::to_string(i.param);
}

}  // namespace spindle::runtime_testing

#endif  // SPINDLE_EXECUTOR_RUNTIME_TESTING_H_
