// Tests of the owner-thread rule (reactor/reactor.h, "The owner"): a
// reactor belongs to the first thread that polls it; destroying it on
// another thread must not spin, using it there must fail loudly.

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/reactor.h"
#include "reactor/reactor_testing.h"
#include "timing/clock.h"

namespace spindle::reactor {
namespace {

using testing::BackendParamName;
using testing::BackendTest;
using testing::DestroyFirst;
using testing::kMs;
using testing::PollUntilWoken;
using testing::TestOp;
using timing::MonotonicClock;

class OwnerTest : public BackendTest {};

TEST_P(OwnerTest, DestroyingOffTheOwnerThreadDoesNotSpin) {
  // Built on this thread, run on a second, destroyed here again: with
  // io_uring the ring belongs to the second thread (single issuer).
  for (const bool owner_alive : {false, true}) {
    SCOPED_TRACE(owner_alive ? "owner still running" : "owner exited");
    reactor_ = Make();
    ASSERT_NE(reactor_, nullptr);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char buf[8];
    TestOp recv, sleep, nop;
    std::atomic<bool> ran{false}, release{false};
    std::thread owner([&] {
      reactor_->Recv(&recv, sv[0], buf, sizeof(buf), 0);
      reactor_->SleepFor(&sleep, 60'000 * kMs);
      reactor_->Nop(&nop);
      while (!nop.done()) reactor_->Poll(UINT64_MAX);
      // Release: pairs with the acquire loads below.
      ran.store(true, std::memory_order_release);
      while (owner_alive && !release.load(std::memory_order_acquire)) {
        std::this_thread::yield();
      }
    });
    if (!owner_alive) owner.join();
    while (!ran.load(std::memory_order_acquire)) std::this_thread::yield();
    const uint64_t start = MonotonicClock::Now();
    reactor_.reset();
    const uint64_t took = MonotonicClock::Now() - start;
    release.store(true, std::memory_order_release);
    if (owner_alive) owner.join();
    EXPECT_LT(took, 1'000 * kMs) << "the destructor spun";
    EXPECT_EQ(recv.calls, 1);
    EXPECT_EQ(recv.seen, -ECANCELED);
    EXPECT_EQ(sleep.calls, 1);
    EXPECT_EQ(sleep.seen, -ECANCELED);
    EXPECT_EQ(nop.seen, 0);
    close(sv[0]);
    close(sv[1]);
  }
}

TEST_P(OwnerTest, OperationsStartedBeforeTheFirstPollRunOnThePoller) {
  // More operations than the SQ holds, started on this thread before any
  // Poll: the thread that polls first must own the ring and run them all.
  reactor_ = Make(/*ring_entries=*/2);
  ASSERT_NE(reactor_, nullptr);
  constexpr int kN = 16;
  std::vector<TestOp> nops(kN);
  DestroyFirst guard{reactor_};
  for (TestOp& op : nops) reactor_->Nop(&op);
  bool all = false;
  std::thread poller([&] {
    all = RunUntil(
        [&] {
          for (const TestOp& op : nops) {
            if (!op.done()) return false;
          }
          return true;
        },
        nullptr, 2'000 * kMs);
  });
  poller.join();
  EXPECT_TRUE(all) << "operations started before the first Poll were lost";
  reactor_.reset();  // Off the owner thread.
}

TEST_P(OwnerTest, OwnedByCurrentThreadFollowsTheFirstPoll) {
  bool elsewhere = false;
  EXPECT_TRUE(reactor_->OwnedByCurrentThread());
  EXPECT_EQ(reactor_->owner_thread_id(), 0);
  std::thread([&] { elsewhere = reactor_->OwnedByCurrentThread(); }).join();
  EXPECT_TRUE(elsewhere) << "nobody owns it before the first Poll";
  int owner_tid = 0;
  std::thread([&] {
    reactor_->Poll(0);
    owner_tid = static_cast<int>(gettid());
    elsewhere = reactor_->OwnedByCurrentThread();
  }).join();
  EXPECT_TRUE(elsewhere);
  EXPECT_FALSE(reactor_->OwnedByCurrentThread());
  EXPECT_EQ(reactor_->owner_thread_id(), owner_tid);
}

TEST_P(OwnerTest, WakeFromASourceThisThreadDoesNotOwnUsesTheEventfd) {
  std::unique_ptr<Reactor> source = Make();
  ASSERT_NE(source, nullptr);
  std::thread([&] { source->Poll(0); }).join();  // Owned elsewhere now.
  reactor_->Poll(0);
  EXPECT_FALSE(reactor_->WakeFrom(*source));
  EXPECT_TRUE(PollUntilWoken(*reactor_, 2'000 * kMs));
}

TEST_P(OwnerTest, PollFromAThreadOtherThanTheOwnerFailsLoudly) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        reactor_->Poll(0);  // This thread owns it now.
        std::thread other([&] { reactor_->Poll(0); });
        other.join();
      },
      "belongs to thread");
}

INSTANTIATE_TEST_SUITE_P(Backends, OwnerTest,
                         ::testing::Values(Backend::kIoUring, Backend::kEpoll),
                         BackendParamName);

}  // namespace
}  // namespace spindle::reactor
