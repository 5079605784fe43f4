// I/O under CPU load: a completion is found at the end of the poll it
// arrives in (io_uring: HasPendingWork, loads only; epoll: a poll ends after
// kIoIntervalNs while operations are in flight), not after the poll's
// budget or deadline, so a task that calls YieldMaybe() often never keeps
// an I/O task waiting.  A due timer likewise.  Both backends.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <utility>

#include "budget/tier.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle {
namespace {

using namespace executor_testing;  // NOLINT: test helpers

class IoLatencyTest : public ReactorBackendTest {
 protected:
  // The timer tests need the timer still pending when their spinner starts;
  // on a loaded machine (CI) the thread can lose the CPU past the deadline
  // first.  Runs `attempt(ex)` on fresh executors (one queue, polls that
  // only events end, no monitor) until one counts, at most 20 times; an
  // attempt returns false, having asserted nothing, when its spinner
  // started after the timer was due.
  template <typename Attempt>
  void UntilAnAttemptCounts(Attempt attempt);
};

// Tiers whose budget and deadline never end a poll in these tests: only a
// pending event (I/O, a due timer) can.
budget::TierConfig LongPolls() {
  budget::TierConfig tc = budget::TierConfig::Balanced();
  tc.poll_budget = 1'000'000;
  tc.cpu_threshold_ns = 10'000'000'000ull;  // deadline 5 s
  tc.demotion_cpu_threshold_ns = 5'000'000'000ull;
  tc.log_warnings = false;
  return tc;
}

template <typename Attempt>
void IoLatencyTest::UntilAnAttemptCounts(Attempt attempt) {
  constexpr int kAttempts = 20;
  for (int i = 0; i < kAttempts; ++i) {
    ExecutorBuilder b;
    b.Tiers(LongPolls()).NoMonitor();  // one queue: the FIFO order decides
    SPINDLE_MAKE_OR_SKIP(ex, std::move(b));
    if (attempt(*ex)) return;
  }
  ADD_FAILURE() << "every attempt's spinner started after the timer was "
                   "due ("
                << kAttempts << " attempts)";
}

ExecutorBuilder NothingEndsAPollButIo() {
  ExecutorBuilder b;
  b.Tiers(LongPolls()).WithQueue(1, 8).WithQueue(2, 1).NoMonitor();
  return b;
}

void SpinNs(uint64_t ns) {
  const uint64_t end =
      timing::TscClock::Now() + timing::TscClock::FromNanos(ns);
  while (timing::TscClock::Now() < end) {
  }
}

TEST_P(IoLatencyTest, ACompletionEndsABusyPollThatCallsYieldMaybe) {
  SPINDLE_MAKE_OR_SKIP(ex, NothingEndsAPollButIo());
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::atomic<bool> receiving{false};
  std::atomic<bool> done{false};
  std::atomic<bool> written{false};  // set by the peer after its write
  // relaxed everywhere: flags between tasks of one thread, and a peer
  // thread that only waits for `receiving` before it writes.
  // Its first poll would run 1,000,000 iterations (about 1 s) if nothing
  // but the budget ended it.  A new poll resets the budget, which bumps its
  // generation: that is how the task sees where its first poll ends.
  // After that it only yields until the reader is done.
  uint64_t first_poll_iterations = 0;
  uint64_t iterations_after_write = 0;  // iterations that began after it
  auto cpu = [&]() -> Task<void> {
    const budget::TaskBudget& b = CurrentTaskContext()->budget;
    const uint8_t generation = b.generation();
    while (b.generation() == generation) {
      if (written.load(std::memory_order_relaxed)) ++iterations_after_write;
      SpinNs(1'000);
      ++first_poll_iterations;
      co_await YieldMaybe();  // goes on at once unless it yielded
    }
    while (!done.load(std::memory_order_relaxed)) co_await YieldNow();
  };
  auto reader = [&]() -> Task<void> {
    char byte = 0;
    // The CPU task starts after this Recv is in flight.
    CurrentExecutor()->SpawnDetached(2, cpu());
    receiving.store(true, std::memory_order_relaxed);
    EXPECT_EQ(co_await Recv(sv[0], &byte, 1), 1);
    done.store(true, std::memory_order_relaxed);
  };
  ex->SpawnDetached(1, reader());
  std::thread peer([&] {
    while (!receiving.load(std::memory_order_relaxed)) {
      std::this_thread::yield();
    }
    // The reader's Recv is in flight (or about to be): give the CPU task
    // time to be deep inside one poll, then write.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    char byte = 'x';
    EXPECT_EQ(write(sv[1], &byte, 1), 1);
    written.store(true, std::memory_order_relaxed);
  });
  ex->Run();
  peer.join();
  close(sv[0]);
  close(sv[1]);
  EXPECT_TRUE(done.load());
  // Without the check the CPU task's first poll runs to its budget:
  // 1,000,000 iterations.  With it, the poll ends within a few iterations
  // of the byte's arrival (io_uring) or after ~50 us of iterations while
  // the Recv is in flight (epoll).  Only iterations after the write count
  // (the peer may wait long for the CPU on a loaded machine); 20 ms of
  // them are allowed for.
  EXPECT_GT(first_poll_iterations, 0u);
  EXPECT_LT(iterations_after_write, 20'000u)
      << first_poll_iterations << " iterations in the first poll";
}

// A timer due while a task of the same queue spins through YieldMaybe():
// the first YieldMaybe after the deadline reaps it and yields, and the
// sleeper (queued by the reap, ahead of the yielding task) runs next.
//
// The scenario needs the timer still pending when the spinner starts (its
// one poll then lasts until the timer is due: a pending timer alone ends no
// poll, APendingTimerAloneDoesNotEndAPollBeforeItIsDue).  On a loaded
// machine (CI) the thread can lose the CPU for longer than the 2 ms between
// arming the timer and the spinner's first poll; the loop then reaps the
// timer first, the sleeper is queued behind the spinner, and no YieldMaybe
// has a reason to yield (a queued task of the same queue is not one: the
// budget decides).  Such an attempt is not counted (UntilAnAttemptCounts).
TEST_P(IoLatencyTest, ADueTimerEndsABusyPollAndItsTaskRunsNext) {
  UntilAnAttemptCounts([](LocalExecutor& ex) {
    // Tasks of one thread: plain variables.
    bool woke = false;
    bool late_start = false;  // the deadline had passed at the first step
    uint64_t deadline = 0;
    uint64_t steps_after_due = 0;
    uint64_t steps = 0;
    auto spinner = [&]() -> Task<void> {
      // Monotonic time only moves on: not due now means not reaped yet.
      if (timing::MonotonicClock::Now() >= deadline) {
        late_start = true;
        co_return;
      }
      while (!woke) {
        SpinNs(1'000);
        ++steps;
        if (timing::MonotonicClock::Now() >= deadline) ++steps_after_due;
        co_await YieldMaybe();
      }
    };
    auto sleeper = [&]() -> Task<void> {
      deadline = timing::MonotonicClock::Now() + 2'000'000;  // 2 ms
      CurrentExecutor()->SpawnDetached(spinner());
      co_await SleepUntil(deadline);
      woke = true;
    };
    ex.SpawnDetached(sleeper());
    ex.Run();
    EXPECT_TRUE(woke);
    if (late_start) return false;
    EXPECT_GT(steps, 0u);
    // Without the check the spinner's poll runs to its budget (1,000,000
    // steps, about 1 s) before the timer fires; with it the sleeper runs at
    // the first YieldMaybe that sees the timer due (the TSC and the
    // monotonic clock may disagree by a step or two).
    EXPECT_LE(steps_after_due, 3u);
    EXPECT_GE(ex.Stats().driver_yields, 1u);
    return true;
  });
}

// A pending timer is not I/O in the kernel: its deadline is known, so a
// poll that calls YieldMaybe() is not ended before the timer is due, on
// epoll either (which ends a poll every kIoIntervalNs, 50 us, only while
// operations wait on the kernel).  Each such end counts a driver yield.
TEST_P(IoLatencyTest, APendingTimerAloneDoesNotEndAPollBeforeItIsDue) {
  UntilAnAttemptCounts([](LocalExecutor& ex) {
    // Tasks of one thread: plain variables.
    uint64_t deadline = 0;
    bool late_start = false;
    uint64_t spun_ns = 0;
    uint64_t yields_while_pending = 0;
    auto spinner = [&]() -> Task<void> {
      const uint64_t start = timing::MonotonicClock::Now();
      if (start >= deadline) {
        late_start = true;
        co_return;
      }
      const uint64_t yields = ex.Stats().driver_yields;
      // 20 ms of 1 us steps, stopping early if the timer comes due (a
      // preemption): every step but the last sees the timer pending.
      uint64_t now = start;
      while (now < start + 20'000'000 && now < deadline) {
        SpinNs(1'000);
        co_await YieldMaybe();
        now = timing::MonotonicClock::Now();
      }
      spun_ns = now - start;
      yields_while_pending = ex.Stats().driver_yields - yields;
    };
    auto sleeper = [&]() -> Task<void> {
      deadline = timing::MonotonicClock::Now() + 100'000'000;  // 100 ms
      CurrentExecutor()->SpawnDetached(spinner());
      co_await SleepUntil(deadline);
    };
    ex.SpawnDetached(sleeper());
    ex.Run();
    if (late_start) return false;
    EXPECT_GT(spun_ns, 0u);
    // Ending the poll every 50 us would be hundreds over 20 ms; one is
    // allowed for the step that finds the timer due after a preemption.
    EXPECT_LE(yields_while_pending, 1u) << "spun " << spun_ns << " ns";
    return true;
  });
}

INSTANTIATE_TEST_SUITE_P(
    Backends, IoLatencyTest,
    ::testing::Values(reactor::BackendChoice::kIoUring,
                      reactor::BackendChoice::kEpoll),
    executor_testing::BackendTestName);

}  // namespace
}  // namespace spindle
