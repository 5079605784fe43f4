// Regression tests for the reactor hardening issue (2026-12-01): descriptor
// flags and lengths that both backends must treat alike, Close cancelling
// its descriptor's operations, thousands of idle operations on one ring,
// wake-ups that must never be lost, the owner-thread rule and SQPOLL
// shutdown.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/internal/uring_driver.h"
#include "reactor/reactor.h"
#include "reactor/reactor_testing.h"
#include "timing/clock.h"

namespace spindle::reactor {
namespace {

using testing::BackendParamName;
using testing::BackendTest;
using testing::DestroyFirst;
using testing::IdlePairs;
using testing::kMs;
using testing::PollUntilWoken;
using testing::TestOp;
using timing::MonotonicClock;

class HardeningTest : public BackendTest {};

// ---- MSG_DONTWAIT (item 13) -------------------------------------------------

TEST_P(HardeningTest, RecvWithMsgDontWaitOnAnEmptySocketReturnsEAgain) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[8];
  TestOp recv;
  DestroyFirst guard{reactor_};
  reactor_->Recv(&recv, sv[0], buf, sizeof(buf), MSG_DONTWAIT);
  ASSERT_TRUE(RunUntil([&] { return recv.done(); }, nullptr, 2'000 * kMs))
      << "a MSG_DONTWAIT recv must not wait for data";
  EXPECT_EQ(recv.seen, -EAGAIN);
  close(sv[0]);
  close(sv[1]);
}

TEST_P(HardeningTest, SendWithMsgDontWaitOnAFullSocketReturnsEAgain) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::vector<char> chunk(64 * 1024, 'x');
  while (send(sv[0], chunk.data(), chunk.size(), MSG_DONTWAIT) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  TestOp sendop;
  DestroyFirst guard{reactor_};
  reactor_->Send(&sendop, sv[0], chunk.data(), chunk.size(), MSG_DONTWAIT);
  ASSERT_TRUE(RunUntil([&] { return sendop.done(); }, nullptr, 2'000 * kMs))
      << "a MSG_DONTWAIT send must not wait for buffer space";
  EXPECT_EQ(sendop.seen, -EAGAIN);
  close(sv[0]);
  close(sv[1]);
}

// ---- Lengths (item 14) ------------------------------------------------------

TEST_P(HardeningTest, FourGiBRecvWithEightBytesQueuedReturnsEight) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ASSERT_EQ(write(sv[1], "12345678", 8), 8);
  // Only 8 bytes are queued, so the kernel writes only 8: the length just
  // must not be cut to 32 bits (4 GiB -> 0, which reads as EOF).
  std::vector<char> buf(16);
  TestOp recv;
  DestroyFirst guard{reactor_};
  reactor_->Recv(&recv, sv[0], buf.data(), size_t{1} << 32, 0);
  ASSERT_TRUE(RunUntil([&] { return recv.done(); }));
  EXPECT_EQ(recv.seen, 8);
  close(sv[0]);
  close(sv[1]);
}

TEST_P(HardeningTest, FourGiBReadFromAPipeWithEightBytesReturnsEight) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  ASSERT_EQ(write(p[1], "12345678", 8), 8);
  std::vector<char> buf(16);
  TestOp rd;
  DestroyFirst guard{reactor_};
  reactor_->Read(&rd, p[0], buf.data(), (size_t{1} << 32) + 16, -1);
  ASSERT_TRUE(RunUntil([&] { return rd.done(); }));
  EXPECT_EQ(rd.seen, 8);
  close(p[0]);
  close(p[1]);
}

TEST_P(HardeningTest, LengthsAboveSsizeMaxAreRejectedWithEInval) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[16] = {};
  TestOp send, recv, write_op, read_op;
  DestroyFirst guard{reactor_};
  reactor_->Send(&send, sv[0], buf, SIZE_MAX, 0);
  reactor_->Write(&write_op, sv[0], buf, size_t{SSIZE_MAX} + 1, -1);
  reactor_->Recv(&recv, sv[1], buf, SIZE_MAX, 0);
  reactor_->Read(&read_op, sv[1], buf, SIZE_MAX, -1);
  ASSERT_TRUE(RunUntil(
      [&] {
        return send.done() && recv.done() && write_op.done() && read_op.done();
      },
      nullptr, 2'000 * kMs));
  EXPECT_EQ(send.seen, -EINVAL);
  EXPECT_EQ(write_op.seen, -EINVAL);
  EXPECT_EQ(recv.seen, -EINVAL);
  EXPECT_EQ(read_op.seen, -EINVAL);
  close(sv[0]);
  close(sv[1]);
}

// ---- Close cancels the descriptor's operations (item 7) --------------------

// Runs `body` on the kernel as it is and, on io_uring, emulating one
// without IORING_ASYNC_CANCEL_FD (before 5.19).
template <typename Body>
void ForEachCancelMode(Backend backend, Body body) {
  for (const uint32_t quirks : {0u, reactor_internal::kQuirkNoCancelFd}) {
    if (quirks != 0 && backend != Backend::kIoUring) return;
    SCOPED_TRACE(quirks == 0 ? "kernel as it is"
                             : "emulated without CANCEL_FD");
    reactor_internal::SetUringQuirksForTesting(quirks);
    body();
    reactor_internal::SetUringQuirksForTesting(0);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST_P(HardeningTest, CloseCancelsPendingRecvsAndThePeerSeesEof) {
  ForEachCancelMode(GetParam(), [&] {
    reactor_ = Make();
    ASSERT_NE(reactor_, nullptr);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char buf[8];
    TestOp recv, poll_in, cl;
    DestroyFirst guard{reactor_};
    reactor_->Recv(&recv, sv[0], buf, sizeof(buf), 0);
    reactor_->PollReadable(&poll_in, sv[0]);
    for (int i = 0; i < 3; ++i) reactor_->Poll(0);
    ASSERT_FALSE(recv.done());
    reactor_->Close(&cl, sv[0]);
    ASSERT_TRUE(
        RunUntil([&] { return recv.done() && poll_in.done() && cl.done(); },
                 nullptr, 2'000 * kMs))
        << "Close left the descriptor's operations waiting";
    EXPECT_EQ(recv.seen, -ECANCELED);
    EXPECT_EQ(poll_in.seen, -ECANCELED);
    EXPECT_EQ(cl.seen, 0);
    // The last reference is gone: the peer sees EOF.
    pollfd p{sv[1], POLLIN | POLLRDHUP, 0};
    ASSERT_EQ(poll(&p, 1, 2'000), 1);
    EXPECT_EQ(::recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), 0);
    close(sv[1]);
  });
}

TEST_P(HardeningTest, CloseCancelsAPendingAccept) {
  ForEachCancelMode(GetParam(), [&] {
    reactor_ = Make();
    ASSERT_NE(reactor_, nullptr);
    testing::Listener l;
    TestOp acc, cl;
    DestroyFirst guard{reactor_};
    reactor_->Accept(&acc, l.fd, nullptr, nullptr);
    for (int i = 0; i < 3; ++i) reactor_->Poll(0);
    reactor_->Close(&cl, l.fd);
    l.fd = -1;
    ASSERT_TRUE(
        RunUntil([&] { return acc.done() && cl.done(); }, nullptr, 2'000 * kMs))
        << "Close left the pending Accept waiting";
    EXPECT_EQ(acc.seen, -ECANCELED);
    EXPECT_EQ(cl.seen, 0);
  });
}

// ---- Thousands of idle operations (item 1) ---------------------------------

TEST_P(HardeningTest, FiveThousandIdleRecvsDoNotStopNewOperations) {
  constexpr int kIdle = 5000;
  if (testing::RaiseFdLimit() < 2 * kIdle + 200) {
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit below " << 2 * kIdle + 200;
  }
  IdlePairs pairs;
  ASSERT_TRUE(pairs.Open(kIdle + 1)) << strerror(errno);
  std::vector<TestOp> idle(kIdle);
  std::vector<char> bufs(kIdle);
  TestOp nop, fresh, timed, timeout, cancelled;
  char fresh_buf[8];
  DestroyFirst guard{reactor_};
  for (int i = 0; i < kIdle; ++i) {
    reactor_->Recv(&idle[i], pairs.reader(i), &bufs[i], 1, 0);
    if (i % 512 == 0) reactor_->Poll(0);
  }
  for (int i = 0; i < 5; ++i) reactor_->Poll(0);
  // New work still runs while every idle Recv waits.
  reactor_->Nop(&nop);
  ASSERT_TRUE(RunUntil([&] { return nop.done(); }, nullptr, 2'000 * kMs))
      << "a NOP behind " << kIdle << " idle Recvs never ran";
  EXPECT_EQ(nop.seen, 0);
  reactor_->Recv(&fresh, pairs.reader(kIdle), fresh_buf, sizeof(fresh_buf), 0);
  ASSERT_EQ(write(pairs.writer(kIdle), "hi", 2), 2);
  ASSERT_TRUE(RunUntil([&] { return fresh.done(); }, nullptr, 2'000 * kMs));
  EXPECT_EQ(fresh.seen, 2);
  // An idle one completes when its peer writes.
  ASSERT_EQ(write(pairs.writer(kIdle - 1), "x", 1), 1);
  ASSERT_TRUE(
      RunUntil([&] { return idle[kIdle - 1].done(); }, nullptr, 2'000 * kMs));
  EXPECT_EQ(idle[kIdle - 1].seen, 1);
  // Cancel and Timeout reach idle operations.
  reactor_->Cancel(&idle[0]);
  reactor_->Timeout(&idle[1], &timeout, 5 * kMs);
  ASSERT_TRUE(RunUntil([&] { return idle[0].done() && idle[1].done(); },
                       nullptr, 2'000 * kMs))
      << "Cancel / Timeout of an idle operation never completed";
  EXPECT_EQ(idle[0].seen, -ECANCELED);
  EXPECT_EQ(idle[1].seen, -ECANCELED);
  EXPECT_EQ(timeout.seen, -ETIME);
  EXPECT_EQ(reactor_->inflight(), static_cast<size_t>(kIdle - 3));
  // Shutdown cancels the rest promptly.
  const uint64_t start = MonotonicClock::Now();
  reactor_.reset();
  EXPECT_LT(MonotonicClock::Now() - start, 2'000 * kMs);
  for (int i = 2; i < kIdle - 1; ++i) {
    ASSERT_EQ(idle[i].calls, 1) << i;
    ASSERT_EQ(idle[i].seen, -ECANCELED) << i;
  }
}

// ---- Wake-ups (item 3) ------------------------------------------------------

// Runs `body` once on a kernel as it is and once emulating one without
// IORING_FEAT_NODROP (capped mode: before 5.5).
template <typename Body>
void ForEachSlotMode(Body body) {
  for (const uint32_t quirks : {0u, reactor_internal::kQuirkNoNoDrop}) {
    SCOPED_TRACE(quirks == 0 ? "kernel as it is" : "emulated without NODROP");
    reactor_internal::SetUringQuirksForTesting(quirks);
    body(quirks != 0);
    reactor_internal::SetUringQuirksForTesting(0);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST_P(HardeningTest, WakeFromInsideACallbackNeverDisarmsTheWakeRead) {
  // A completion callback wakes other reactors through WakeFrom (the
  // executor does this when a completion wakes a task owned elsewhere).
  // The source ring is small and full of idle Recvs, with more parked; its
  // wake read completes in the same reap as the NOP, after it.  Before the
  // fix each WakeFrom took a slot, the wake CQE was reaped over the limit
  // and its read was never re-armed: later Wake() calls were lost.
  if (GetParam() != Backend::kIoUring) GTEST_SKIP() << "io_uring only";
  ForEachSlotMode([&](bool capped) {
    std::unique_ptr<Reactor> source = Make(/*ring_entries=*/4);
    reactor_internal::SetUringQuirksForTesting(0);
    std::unique_ptr<Reactor> t1 = Make(), t2 = Make();
    ASSERT_NE(source, nullptr);
    ASSERT_NE(t1, nullptr);
    ASSERT_NE(t2, nullptr);
    t1->Poll(0);
    t2->Poll(0);
    // The old cap was the CQ size (8): the wake read, six Recvs and the NOP
    // fill it.  Capped, the NOP must be among the first operations, or it
    // would wait behind idle ones (which is what capped means).
    constexpr int kIdle = 10;
    const int before_nop = capped ? 1 : 6;
    IdlePairs pairs;
    ASSERT_TRUE(pairs.Open(kIdle));
    std::vector<TestOp> idle(kIdle);
    char bufs[kIdle];
    TestOp nop;
    nop.then = [&](TestOp*) {
      t1->WakeFrom(*source);
      t2->WakeFrom(*source);
    };
    DestroyFirst guard{source};
    source->Poll(0);
    for (int i = 0; i < kIdle; ++i) {
      if (i == before_nop) source->Nop(&nop);
      source->Recv(&idle[i], pairs.reader(i), &bufs[i], 1, 0);
    }
    source->Wake();
    ASSERT_TRUE(
        RunUntil([&] { return nop.done(); }, source.get(), 2'000 * kMs));
    for (int i = 0; i < 3; ++i) source->Poll(0);
    // From now on a plain thread's Wake must still end a blocking Poll.
    for (int round = 0; round < 3; ++round) {
      std::thread waker([&] { source->Wake(); });
      const bool woken = PollUntilWoken(*source, 2'000 * kMs);
      waker.join();
      ASSERT_TRUE(woken) << "Wake() lost in round " << round;
    }
    EXPECT_TRUE(PollUntilWoken(*t1, 2'000 * kMs));
    EXPECT_TRUE(PollUntilWoken(*t2, 2'000 * kMs));
  });
}

TEST_P(HardeningTest, CappedRingCancelsAndTimesOutWhileIdleOpsHoldEverySlot) {
  // Without NODROP the ring is capped; idle operations hold every slot that
  // operations may use, yet cancels and timeouts must still get through.
  if (GetParam() != Backend::kIoUring) GTEST_SKIP() << "io_uring only";
  reactor_internal::SetUringQuirksForTesting(reactor_internal::kQuirkNoNoDrop);
  reactor_ = Make(/*ring_entries=*/2);
  reactor_internal::SetUringQuirksForTesting(0);
  ASSERT_NE(reactor_, nullptr);
  EXPECT_NE(reactor_->Stats().features.find("capped"), std::string::npos);
  constexpr int kIdle = 6;
  IdlePairs pairs;
  ASSERT_TRUE(pairs.Open(kIdle));
  std::vector<TestOp> idle(kIdle);
  char bufs[kIdle];
  TestOp timeout;
  DestroyFirst guard{reactor_};
  for (int i = 0; i < kIdle; ++i) {
    reactor_->Recv(&idle[i], pairs.reader(i), &bufs[i], 1, 0);
  }
  for (int i = 0; i < 3; ++i) reactor_->Poll(0);
  EXPECT_GT(reactor_->Stats().queued, 0u) << "the cap must park some";
  // idle[0] and idle[1] went to the kernel first.
  reactor_->Cancel(&idle[0]);
  reactor_->Timeout(&idle[1], &timeout, 5 * kMs);
  ASSERT_TRUE(RunUntil([&] { return idle[0].done() && idle[1].done(); },
                       nullptr, 2'000 * kMs))
      << "a cancel waited for a slot that idle operations hold";
  EXPECT_EQ(idle[0].seen, -ECANCELED);
  EXPECT_EQ(idle[1].seen, -ECANCELED);
  EXPECT_EQ(timeout.seen, -ETIME);
  // Parked ones took the freed slots and still work.
  ASSERT_EQ(write(pairs.writer(kIdle - 1), "z", 1), 1);
  reactor_->Cancel(&idle[2]);
  reactor_->Cancel(&idle[3]);
  ASSERT_TRUE(
      RunUntil([&] { return idle[kIdle - 1].done(); }, nullptr, 2'000 * kMs));
  EXPECT_EQ(idle[kIdle - 1].seen, 1);
  std::thread waker([&] { reactor_->Wake(); });
  const bool woken = PollUntilWoken(*reactor_, 2'000 * kMs);
  waker.join();
  EXPECT_TRUE(woken);
}

TEST_P(HardeningTest, FailedMsgRingSendFallsBackToTheEventfd) {
  if (GetParam() != Backend::kIoUring) GTEST_SKIP() << "io_uring only";
  reactor_internal::SetUringQuirksForTesting(
      reactor_internal::kQuirkFailMsgRing);
  std::unique_ptr<Reactor> source = Make();
  reactor_internal::SetUringQuirksForTesting(0);
  ASSERT_NE(source, nullptr);
  if (source->Stats().features.find("msg_ring") == std::string::npos) {
    GTEST_SKIP() << "no IORING_OP_MSG_RING (5.18+) here";
  }
  reactor_->Poll(0);
  source->Poll(0);
  ASSERT_TRUE(reactor_->WakeFrom(*source));  // Sent; fails in the kernel.
  source->Poll(0);                           // Reaps the failed send.
  EXPECT_EQ(source->Stats().wake_fallbacks, 1u);
  EXPECT_TRUE(PollUntilWoken(*reactor_, 2'000 * kMs))
      << "a failed MSG_RING send must fall back to the eventfd";
}

TEST_P(HardeningTest, AFailedSendToADestroyedTargetIsDropped) {
  // The source reaps the failed send after the target is gone: the
  // fallback must not touch it (AddressSanitizer checks).
  if (GetParam() != Backend::kIoUring) GTEST_SKIP() << "io_uring only";
  reactor_internal::SetUringQuirksForTesting(
      reactor_internal::kQuirkFailMsgRing);
  std::unique_ptr<Reactor> source = Make();
  reactor_internal::SetUringQuirksForTesting(0);
  ASSERT_NE(source, nullptr);
  if (source->Stats().features.find("msg_ring") == std::string::npos) {
    GTEST_SKIP() << "no IORING_OP_MSG_RING (5.18+) here";
  }
  std::unique_ptr<Reactor> target = Make();
  ASSERT_NE(target, nullptr);
  target->Poll(0);
  source->Poll(0);
  ASSERT_TRUE(target->WakeFrom(*source));
  target.reset();
  source->Poll(0);
  EXPECT_EQ(source->Stats().wake_fallbacks, 1u);
}

TEST_P(HardeningTest, ThousandsOfMsgRingWakesOverflowTheTargetSafely) {
  if (GetParam() != Backend::kIoUring) GTEST_SKIP() << "io_uring only";
  std::unique_ptr<Reactor> source = Make();
  ASSERT_NE(source, nullptr);
  if (source->Stats().features.find("msg_ring") == std::string::npos) {
    GTEST_SKIP() << "no IORING_OP_MSG_RING (5.18+) here";
  }
  const uint32_t kWakes = 3 * reactor_->Stats().cq_entries;
  IdlePairs pairs;
  ASSERT_TRUE(pairs.Open(3));
  TestOp idle[3];
  char bufs[3];
  DestroyFirst guard{reactor_};
  for (int i = 0; i < 3; ++i) {
    reactor_->Recv(&idle[i], pairs.reader(i), &bufs[i], 1, 0);
  }
  reactor_->Poll(0);
  source->Poll(0);
  for (uint32_t i = 0; i < kWakes; ++i) {
    ASSERT_TRUE(reactor_->WakeFrom(*source));
  }
  source->Poll(0);
  EXPECT_EQ(source->inflight(), 0u);
  // Every arrival is counted once the backlog is flushed; nothing is lost.
  const uint64_t give_up = MonotonicClock::Now() + 5'000 * kMs;
  while (reactor_->Stats().wakes_received < kWakes &&
         MonotonicClock::Now() < give_up) {
    reactor_->Poll(10 * kMs);
  }
  EXPECT_EQ(reactor_->Stats().wakes_received, kWakes);
  // The target still works.
  ASSERT_EQ(write(pairs.writer(0), "a", 1), 1);
  reactor_->Cancel(&idle[1]);
  ASSERT_TRUE(RunUntil([&] { return idle[0].done() && idle[1].done(); }));
  EXPECT_EQ(idle[0].seen, 1);
  EXPECT_EQ(idle[1].seen, -ECANCELED);
  std::thread waker([&] { reactor_->Wake(); });
  const bool woken = PollUntilWoken(*reactor_, 2'000 * kMs);
  waker.join();
  EXPECT_TRUE(woken);
}

INSTANTIATE_TEST_SUITE_P(Backends, HardeningTest,
                         ::testing::Values(Backend::kIoUring, Backend::kEpoll),
                         BackendParamName);

}  // namespace
}  // namespace spindle::reactor
