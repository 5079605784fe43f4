// SQPOLL rings (ReactorOptions::sqpoll): a kernel thread consumes the SQ and
// sleeps after sq_thread_idle (100 ms) without work.  Shutdown must not
// stall whether that thread is awake or asleep.

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/reactor.h"
#include "reactor/reactor_testing.h"
#include "timing/clock.h"

namespace spindle::reactor {
namespace {

using testing::IdlePairs;
using testing::kMs;
using testing::TestOp;
using timing::MonotonicClock;

std::unique_ptr<Reactor> MakeSqpoll(std::string* why,
                                    uint32_t ring_entries = 256) {
  ReactorOptions o;
  o.backend = BackendChoice::kIoUring;
  o.sqpoll = true;
  o.ring_entries = ring_entries;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  if (!r.ok()) {
    *why = std::string(r.status().message());
    return nullptr;
  }
  return std::move(*r);
}

TEST(SqpollShutdownTest, DestroyingWithPendingOperationsNeverStalls) {
  constexpr int kRounds = 8;
  constexpr int kIdle = 16;
  for (int round = 0; round < kRounds; ++round) {
    // Odd rounds let the SQ thread fall asleep first.
    const bool asleep = round % 2 == 1;
    SCOPED_TRACE(::testing::Message()
                 << "round " << round
                 << (asleep ? " (SQ thread asleep)" : " (SQ thread awake)"));
    std::string why;
    std::unique_ptr<Reactor> r = MakeSqpoll(&why);
    if (r == nullptr) GTEST_SKIP() << "SQPOLL ring refused: " << why;
    IdlePairs pairs;
    ASSERT_TRUE(pairs.Open(kIdle));
    std::vector<TestOp> idle(kIdle);
    std::vector<char> bufs(kIdle);
    TestOp nop, sleep, late;
    testing::DestroyFirst guard{r};
    for (int i = 0; i < kIdle; ++i) {
      r->Recv(&idle[i], pairs.reader(i), &bufs[i], 1, 0);
    }
    r->Nop(&nop);
    r->SleepFor(&sleep, 60'000 * kMs);
    const uint64_t give_up = MonotonicClock::Now() + 5'000 * kMs;
    while (!nop.done() && MonotonicClock::Now() < give_up) r->Poll(kMs);
    ASSERT_TRUE(nop.done());
    if (asleep) {
      // Block in the reactor past sq_thread_idle: nothing completes, so the
      // SQ thread goes to sleep meanwhile.
      r->Poll(250 * kMs);
    }
    // One more operation left in the SQ, unsubmitted, at destruction.
    r->Recv(&late, pairs.reader(0), &bufs[0], 1, 0);
    const uint64_t start = MonotonicClock::Now();
    r.reset();
    const uint64_t took = MonotonicClock::Now() - start;
    EXPECT_LT(took, 2'000 * kMs) << "SQPOLL shutdown stalled";
    for (int i = 0; i < kIdle; ++i) {
      ASSERT_EQ(idle[i].calls, 1) << i;
      ASSERT_EQ(idle[i].seen, -ECANCELED) << i;
    }
    EXPECT_EQ(sleep.seen, -ECANCELED);
    EXPECT_EQ(late.calls, 1);
  }
}

TEST(ShutdownTest, DestroyingWithAFullSqStillCancelsEverything) {
  // The destructor's cancel request needs an SQE.  Here the 2-entry SQ is
  // full (the ring was never polled, so nothing was submitted); with SQPOLL
  // the same happens while the kernel thread has not consumed the SQ yet
  // (io_uring_submit does not wait for it).  The cancel must still go out.
  for (const bool sqpoll : {false, true}) {
    SCOPED_TRACE(sqpoll ? "SQPOLL" : "plain");
    ReactorOptions o;
    o.backend = BackendChoice::kIoUring;
    o.sqpoll = sqpoll;
    o.ring_entries = 2;
    absl::StatusOr<std::unique_ptr<Reactor>> created = Reactor::Create(o);
    if (!created.ok()) {
      GTEST_SKIP() << "io_uring ring refused: " << created.status();
    }
    std::unique_ptr<Reactor> r = std::move(*created);
    IdlePairs pairs;
    ASSERT_TRUE(pairs.Open(4));
    TestOp idle[4];
    char bufs[4];
    testing::DestroyFirst guard{r};
    for (int i = 0; i < 4; ++i) {
      r->Recv(&idle[i], pairs.reader(i), &bufs[i], 1, 0);
    }
    const uint64_t start = MonotonicClock::Now();
    r.reset();
    EXPECT_LT(MonotonicClock::Now() - start, 2'000 * kMs)
        << "shutdown stalled: the cancel request found no SQE";
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(idle[i].calls, 1) << i;
      EXPECT_EQ(idle[i].seen, -ECANCELED) << i;
    }
  }
}

TEST(SqpollShutdownTest, DestroyingRightAfterABurstThatFillsTheSqNeverStalls) {
  // With a 2-entry SQ the kernel thread is still consuming the burst when
  // the destructor needs an SQE for its cancel request.
  constexpr int kRounds = 8;
  constexpr int kIdle = 32;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(::testing::Message() << "round " << round);
    std::string why;
    std::unique_ptr<Reactor> r = MakeSqpoll(&why, /*ring_entries=*/2);
    if (r == nullptr) GTEST_SKIP() << "SQPOLL ring refused: " << why;
    IdlePairs pairs;
    ASSERT_TRUE(pairs.Open(kIdle));
    std::vector<TestOp> idle(kIdle);
    std::vector<char> bufs(kIdle);
    testing::DestroyFirst guard{r};
    r->Poll(0);
    for (int i = 0; i < kIdle; ++i) {
      r->Recv(&idle[i], pairs.reader(i), &bufs[i], 1, 0);
    }
    const uint64_t start = MonotonicClock::Now();
    r.reset();
    EXPECT_LT(MonotonicClock::Now() - start, 2'000 * kMs)
        << "SQPOLL shutdown stalled";
    for (int i = 0; i < kIdle; ++i) {
      ASSERT_EQ(idle[i].calls, 1) << i;
      ASSERT_EQ(idle[i].seen, -ECANCELED) << i;
    }
  }
}

}  // namespace
}  // namespace spindle::reactor
