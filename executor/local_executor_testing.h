// executor/local_executor_testing.h: helpers shared by the executor's
// tests (not for benchmarks: see executor_testing.h for the floor).

#ifndef SPINDLE_EXECUTOR_LOCAL_EXECUTOR_TESTING_H_
#define SPINDLE_EXECUTOR_LOCAL_EXECUTOR_TESTING_H_

#include <coroutine>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "executor/executor.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle::executor_testing {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

inline std::unique_ptr<LocalExecutor> MakeExecutor(ExecutorBuilder& b) {
  absl::StatusOr<std::unique_ptr<LocalExecutor>> ex = b.Build();
  EXPECT_TRUE(ex.ok()) << ex.status();
  return ex.ok() ? std::move(*ex) : nullptr;
}

inline std::unique_ptr<LocalExecutor> MakeExecutor() {
  ExecutorBuilder b;
  return MakeExecutor(b);
}

// Lets every other queued task of this executor run until it suspends.
inline Task<void> Settle(int rounds = 8) {
  for (int i = 0; i < rounds; ++i) co_await YieldNow();
}

// A channel of `capacity`, or a test failure with Create's status.
template <typename T>
std::shared_ptr<Channel<T>> MakeChannel(size_t capacity) {
  auto ch = Channel<T>::Create(capacity);
  EXPECT_TRUE(ch.ok()) << ch.status();
  return ch.ok() ? std::move(*ch) : nullptr;
}

// A channel whose lock is biased towards this thread if `biased` (taken
// 100 times in a row here: Send and Recv then take channel.h's fast paths
// where membarrier is available), else fresh (the general paths).
inline std::shared_ptr<Channel<int>> MakePathChannel(size_t capacity,
                                                     bool biased) {
  auto ch = MakeChannel<int>(capacity);
  for (int i = 0; ch != nullptr && biased && i < 100; ++i) {
    EXPECT_EQ(ch->TrySend(-1), ChannelStatus::kOk);
    EXPECT_EQ(ch->TryRecv(), -1);
  }
  return ch;
}

inline Task<int> Constant(int v) { co_return v; }

inline Task<void> Record(std::vector<int>* out, int v) {
  out->push_back(v);
  co_return;
}

inline Task<int> YieldThenReturn(int yields, int v) {
  for (int i = 0; i < yields; ++i) co_await YieldNow();
  co_return v;
}

// Spins on the TSC for `ns` nanoseconds of wall time.
inline void Spin(uint64_t ns) {
  const uint64_t end =
      timing::TscClock::Now() + timing::TscClock::FromNanos(ns);
  while (timing::TscClock::Now() < end) {
  }
}

// A user-written awaitable on the public Waker: parks the task until
// Release() (tests use it as a user would write one).
struct Gate {
  Waker waiter;
  bool open = false;
  struct Awaiter {
    Gate* gate;
    bool await_ready() const noexcept { return gate->open; }
    void await_suspend(std::coroutine_handle<> h) noexcept {
      gate->waiter = Waker::SuspendCurrent(h);
    }
    void await_resume() const noexcept {}
  };
  Awaiter Wait() { return Awaiter{this}; }
  void Release() {
    open = true;
    waiter.Wake();
  }
};

inline Task<void> WaitOn(Gate* g) { co_await g->Wait(); }

// A test parameterised over the reactor backends: Make() builds an
// executor on GetParam()'s backend, or returns null with the reason in
// skip_reason_ (io_uring refused here); SPINDLE_MAKE_OR_SKIP skips then.
class ReactorBackendTest
    : public ::testing::TestWithParam<reactor::BackendChoice> {
 protected:
  std::unique_ptr<LocalExecutor> Make(ExecutorBuilder b = {}) {
    reactor::ReactorOptions o;
    o.backend = GetParam();
    absl::StatusOr<std::unique_ptr<LocalExecutor>> ex = b.Reactor(o).Build();
    if (!ex.ok()) {
      skip_reason_ = std::string(ex.status().message());
      return nullptr;
    }
    return std::move(*ex);
  }
  std::string skip_reason_;
};

// Test names for suites instantiated over both backends.
inline std::string BackendTestName(
    const ::testing::TestParamInfo<reactor::BackendChoice>& info) {
  return info.param == reactor::BackendChoice::kEpoll ? "epoll" : "io_uring";
}

#define SPINDLE_MAKE_OR_SKIP(ex, ...) \
  auto ex = Make(__VA_ARGS__);        \
  if (ex == nullptr) GTEST_SKIP() << "no reactor: " << skip_reason_

// Every task is accounted for: spawned = completed + failed + cancelled +
// live.
inline void ExpectAccounted(const LocalExecutor& ex) {
  const ExecutorStats s = ex.Stats();
  EXPECT_EQ(s.spawns, s.completions + s.failed + s.cancellations +
                          s.live_tasks)
      << "spawns " << s.spawns << " completions " << s.completions
      << " failed " << s.failed << " cancellations " << s.cancellations
      << " live " << s.live_tasks;
}

}  // namespace spindle::executor_testing

#endif  // SPINDLE_EXECUTOR_LOCAL_EXECUTOR_TESTING_H_
