// Reactor operations on both backends: NOPs, timers, files, pipes, TCP,
// cancellation and Timeout.  Lifecycle (wake-ups, threads, shutdown) is in
// reactor_lifecycle_test.cc, backend selection in reactor_selection_test.cc.

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/reactor.h"
#include "reactor/reactor_testing.h"
#include "timing/clock.h"

namespace spindle::reactor {
namespace {

using testing::BackendParamName;
using testing::kMs;
using testing::Listener;
using testing::TestOp;
using timing::MonotonicClock;

// The shared fixture: `reactor_` of the parameter's backend, Make(), RunUntil().
class ReactorTest : public testing::BackendTest {};

TEST_P(ReactorTest, NopCompletesWithZeroFromPoll) {
  TestOp op;
  op.result = 123;
  reactor_->Nop(&op);
  EXPECT_EQ(op.calls, 0) << "callback must not run inside the start call";
  EXPECT_TRUE(op.pending());
  EXPECT_EQ(reactor_->inflight(), 1u);
  ASSERT_TRUE(RunUntil([&] { return op.done(); }));
  EXPECT_EQ(op.calls, 1);
  EXPECT_EQ(op.seen, 0);
  EXPECT_FALSE(op.pending());
  EXPECT_EQ(reactor_->inflight(), 0u);
}

TEST_P(ReactorTest, CallbackMayRestartTheSameOperation) {
  TestOp op;
  int rounds = 0;
  op.then = [&](TestOp* t) {
    if (++rounds < 100) reactor_->Nop(t);
  };
  reactor_->Nop(&op);
  ASSERT_TRUE(RunUntil([&] { return rounds == 100; }));
  EXPECT_EQ(op.calls, 100);
  EXPECT_EQ(reactor_->inflight(), 0u);
}

TEST_P(ReactorTest, SleepForWaitsAtLeastTheDuration) {
  TestOp op;
  const uint64_t start = MonotonicClock::Now();
  reactor_->SleepFor(&op, 3 * kMs);
  ASSERT_TRUE(RunUntil([&] { return op.done(); }));
  EXPECT_EQ(op.seen, 0);
  EXPECT_GE(op.done_ns - start, 3 * kMs);
  EXPECT_LT(op.done_ns - start, 1000 * kMs);
}

TEST_P(ReactorTest, BlockingPollWakesForTheEarliestTimer) {
  TestOp op;
  const uint64_t deadline = MonotonicClock::Now() + 5 * kMs;
  reactor_->SleepUntil(&op, deadline);
  // UINT64_MAX: the wait must still end at the timer's deadline.
  while (!op.done()) reactor_->Poll(UINT64_MAX);
  EXPECT_GE(op.done_ns, deadline);
  EXPECT_LT(op.done_ns - deadline, 500 * kMs);
}

TEST_P(ReactorTest, TenThousandConcurrentSleepsFireInDeadlineOrder) {
  constexpr int kN = 10'000;
  std::vector<TestOp> ops(kN);
  std::vector<int> fired;
  fired.reserve(kN);
  const uint64_t base = MonotonicClock::Now();
  std::vector<uint64_t> deadlines(kN);
  for (int i = 0; i < kN; ++i) {
    deadlines[i] = base + static_cast<uint64_t>((i * 7919) % 20) * kMs;
    ops[i].user = reinterpret_cast<void*>(static_cast<intptr_t>(i));
    ops[i].then = [&fired](TestOp* t) {
      fired.push_back(static_cast<int>(reinterpret_cast<intptr_t>(t->user)));
    };
    reactor_->SleepUntil(&ops[i], deadlines[i]);
  }
  EXPECT_EQ(reactor_->Stats().timers_pending, static_cast<size_t>(kN));
  ASSERT_TRUE(RunUntil([&] { return fired.size() == kN; }));
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(ops[i].calls, 1);
    ASSERT_EQ(ops[i].seen, 0);
    ASSERT_GE(ops[i].done_ns, deadlines[i]);
  }
  for (size_t k = 1; k < fired.size(); ++k) {
    ASSERT_LE(deadlines[fired[k - 1]], deadlines[fired[k]]) << "at " << k;
  }
  EXPECT_EQ(reactor_->Stats().timers_pending, 0u);
}

TEST_P(ReactorTest, NextTimerDeadlineIsTheEarliestPendingTimer) {
  EXPECT_EQ(reactor_->NextTimerDeadline(), UINT64_MAX);
  const uint64_t base = MonotonicClock::Now();
  TestOp late, early, nop;
  reactor_->SleepUntil(&late, base + 60'000 * kMs);
  EXPECT_EQ(reactor_->NextTimerDeadline(), base + 60'000 * kMs);
  reactor_->SleepUntil(&early, base + 1 * kMs);
  EXPECT_EQ(reactor_->NextTimerDeadline(), base + 1 * kMs);
  reactor_->Nop(&nop);  // not a timer
  EXPECT_EQ(reactor_->NextTimerDeadline(), base + 1 * kMs);
  ASSERT_TRUE(RunUntil([&] { return early.done() && nop.done(); }));
  EXPECT_EQ(reactor_->NextTimerDeadline(), base + 60'000 * kMs);
  reactor_->Cancel(&late);
  ASSERT_TRUE(RunUntil([&] { return late.done(); }));
  EXPECT_EQ(late.seen, -ECANCELED);
  EXPECT_EQ(reactor_->NextTimerDeadline(), UINT64_MAX);
}

TEST_P(ReactorTest, CancelledSleepCompletesWithECanceled) {
  TestOp op;
  reactor_->SleepFor(&op, 60'000 * kMs);
  reactor_->Poll(0);
  reactor_->Cancel(&op);
  ASSERT_TRUE(RunUntil([&] { return op.done(); }));
  EXPECT_EQ(op.seen, -ECANCELED);
  EXPECT_EQ(reactor_->Stats().cancelled, 1u);
}

TEST_P(ReactorTest, CancelAfterCompletionKeepsTheRealResult) {
  TestOp op;
  reactor_->Nop(&op);
  reactor_->Cancel(&op);  // Races with the NOP; the NOP wins.
  ASSERT_TRUE(RunUntil([&] { return op.done(); }));
  EXPECT_EQ(op.calls, 1);
  EXPECT_EQ(op.seen, 0);
  reactor_->Cancel(&op);  // Not pending: ignored.
  reactor_->Poll(0);
  EXPECT_EQ(op.calls, 1);
}

TEST_P(ReactorTest, FileWriteThenReadBack) {
  std::string path = std::string(std::getenv("TEST_TMPDIR") != nullptr
                                     ? std::getenv("TEST_TMPDIR")
                                     : "/tmp") +
                     "/reactor_file_XXXXXX";
  int fd = mkstemp(path.data());
  ASSERT_GE(fd, 0);
  unlink(path.c_str());

  const char first[] = "hello, ";
  char second_a[] = "spindle";
  char second_b[] = " reactor";
  TestOp w1, w2, sync;
  reactor_->Write(&w1, fd, first, 7, 0);
  iovec wv[2] = {{second_a, 7}, {second_b, 8}};
  reactor_->Writev(&w2, fd, wv, 2, 7);
  ASSERT_TRUE(RunUntil([&] { return w1.done() && w2.done(); }));
  EXPECT_EQ(w1.seen, 7);
  EXPECT_EQ(w2.seen, 15);
  reactor_->Fsync(&sync, fd);
  ASSERT_TRUE(RunUntil([&] { return sync.done(); }));
  EXPECT_EQ(sync.seen, 0);

  char buf[64] = {};
  TestOp r1;
  reactor_->Read(&r1, fd, buf, sizeof(buf), 0);
  ASSERT_TRUE(RunUntil([&] { return r1.done(); }));
  ASSERT_EQ(r1.seen, 22);
  EXPECT_EQ(std::string(buf, 22), "hello, spindle reactor");

  char a[5] = {}, b[9] = {};
  iovec rv[2] = {{a, 5}, {b, 9}};
  TestOp r2;
  reactor_->Readv(&r2, fd, rv, 2, 7);
  ASSERT_TRUE(RunUntil([&] { return r2.done(); }));
  ASSERT_EQ(r2.seen, 14);
  EXPECT_EQ(std::string(a, 5), "spind");
  EXPECT_EQ(std::string(b, 9), "le reacto");

  TestOp cl;
  reactor_->Close(&cl, fd);
  ASSERT_TRUE(RunUntil([&] { return cl.done(); }));
  EXPECT_EQ(cl.seen, 0);
  EXPECT_EQ(fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST_P(ReactorTest, ReadFromAnEmptyPipeWaitsForData) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  char buf[16];
  TestOp rd, readable;
  reactor_->Read(&rd, p[0], buf, sizeof(buf), -1);
  for (int i = 0; i < 5; ++i) reactor_->Poll(0);
  EXPECT_FALSE(rd.done());
  ASSERT_EQ(write(p[1], "ping", 4), 4);
  ASSERT_TRUE(RunUntil([&] { return rd.done(); }));
  ASSERT_EQ(rd.seen, 4);
  EXPECT_EQ(std::string(buf, 4), "ping");

  reactor_->PollReadable(&readable, p[0]);
  for (int i = 0; i < 5; ++i) reactor_->Poll(0);
  EXPECT_FALSE(readable.done());
  ASSERT_EQ(write(p[1], "x", 1), 1);
  ASSERT_TRUE(RunUntil([&] { return readable.done(); }));
  EXPECT_TRUE(readable.seen & POLLIN) << readable.seen;

  TestOp writable;
  reactor_->PollWritable(&writable, p[1]);
  ASSERT_TRUE(RunUntil([&] { return writable.done(); }));
  EXPECT_TRUE(writable.seen & POLLOUT) << writable.seen;
  close(p[0]);
  close(p[1]);
}

TEST_P(ReactorTest, TcpEchoRoundTripsOverLoopback) {
  Listener l;
  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  TestOp acc, conn;
  sockaddr_in peer{};
  socklen_t peer_len = sizeof(peer);
  reactor_->Accept(&acc, l.fd, reinterpret_cast<sockaddr*>(&peer), &peer_len);
  reactor_->Connect(&conn, client, l.sa(), sizeof(l.addr));
  ASSERT_TRUE(RunUntil([&] { return acc.done() && conn.done(); }));
  ASSERT_EQ(conn.seen, 0);
  ASSERT_GE(acc.seen, 0) << strerror(-acc.seen);
  const int server = acc.seen;
  EXPECT_EQ(peer.sin_family, AF_INET);

  constexpr int kRounds = 200;
  for (int i = 0; i < kRounds; ++i) {
    const std::string msg = "message " + std::to_string(i);
    char server_buf[64], client_buf[64];
    TestOp srecv, csend, ssend, crecv;
    reactor_->Recv(&srecv, server, server_buf, sizeof(server_buf), 0);
    reactor_->Send(&csend, client, msg.data(), msg.size(), 0);
    ASSERT_TRUE(RunUntil([&] { return srecv.done() && csend.done(); }));
    ASSERT_EQ(csend.seen, static_cast<int32_t>(msg.size()));
    ASSERT_EQ(srecv.seen, static_cast<int32_t>(msg.size()));
    reactor_->Recv(&crecv, client, client_buf, sizeof(client_buf), 0);
    reactor_->Send(&ssend, server, server_buf, srecv.seen, 0);
    ASSERT_TRUE(RunUntil([&] { return crecv.done() && ssend.done(); }));
    ASSERT_EQ(crecv.seen, static_cast<int32_t>(msg.size()));
    ASSERT_EQ(std::string(client_buf, crecv.seen), msg);
  }
  // Orderly shutdown: the peer's Recv sees 0.
  TestOp eof;
  char c;
  reactor_->Recv(&eof, server, &c, 1, 0);
  shutdown(client, SHUT_WR);
  ASSERT_TRUE(RunUntil([&] { return eof.done(); }));
  EXPECT_EQ(eof.seen, 0);
  close(server);
  close(client);
}

TEST_P(ReactorTest, ConnectToAClosedPortIsRefused) {
  sockaddr_in addr;
  {
    Listener l;
    addr = l.addr;
  }  // Closed: nothing listens on that port now.
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  TestOp conn;
  reactor_->Connect(&conn, s, reinterpret_cast<sockaddr*>(&addr),
                    sizeof(addr));
  ASSERT_TRUE(RunUntil([&] { return conn.done(); }));
  EXPECT_EQ(conn.seen, -ECONNREFUSED);
  close(s);
}

TEST_P(ReactorTest, CancellingAPendingAcceptLeavesTheListenerUsable) {
  Listener l;
  TestOp acc;
  reactor_->Accept(&acc, l.fd, nullptr, nullptr);
  for (int i = 0; i < 5; ++i) reactor_->Poll(0);
  ASSERT_FALSE(acc.done());
  reactor_->Cancel(&acc);
  ASSERT_TRUE(RunUntil([&] { return acc.done(); }));
  EXPECT_EQ(acc.seen, -ECANCELED);
  EXPECT_EQ(acc.calls, 1);

  // The listener still works.
  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(client, l.sa(), sizeof(l.addr)), 0);
  TestOp again;
  reactor_->Accept(&again, l.fd, nullptr, nullptr);
  ASSERT_TRUE(RunUntil([&] { return again.done(); }));
  ASSERT_GE(again.seen, 0);
  close(again.seen);
  close(client);
}

TEST_P(ReactorTest, TimeoutFiresAndCancelsTheOperation) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[8];
  TestOp recv, tmo;
  const uint64_t start = MonotonicClock::Now();
  reactor_->Recv(&recv, sv[0], buf, sizeof(buf), 0);
  reactor_->Timeout(&recv, &tmo, 5 * kMs);
  ASSERT_TRUE(RunUntil([&] { return recv.done() && tmo.done(); }));
  EXPECT_EQ(recv.seen, -ECANCELED);
  EXPECT_EQ(tmo.seen, -ETIME);
  EXPECT_GE(recv.done_ns - start, 5 * kMs);
  EXPECT_EQ(recv.calls, 1);
  EXPECT_EQ(tmo.calls, 1);
  close(sv[0]);
  close(sv[1]);
}

TEST_P(ReactorTest, TimeoutDoesNotFireWhenTheOperationCompletesFirst) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[8];
  TestOp recv, tmo;
  reactor_->Recv(&recv, sv[0], buf, sizeof(buf), 0);
  reactor_->Timeout(&recv, &tmo, 60'000 * kMs);
  ASSERT_EQ(write(sv[1], "abc", 3), 3);
  ASSERT_TRUE(RunUntil([&] { return recv.done() && tmo.done(); }));
  EXPECT_EQ(recv.seen, 3);
  EXPECT_EQ(tmo.seen, -ECANCELED);
  EXPECT_EQ(reactor_->Stats().timers_pending, 0u);
  close(sv[0]);
  close(sv[1]);
}

TEST_P(ReactorTest, TimeoutOnAFinishedOperationCompletesCancelled) {
  TestOp nop, tmo;
  tmo.result = 1;
  reactor_->Timeout(&nop, &tmo, kMs);  // `nop` was never started.
  ASSERT_TRUE(RunUntil([&] { return tmo.done(); }));
  EXPECT_EQ(tmo.seen, -ECANCELED);
  EXPECT_FALSE(nop.done());
}

TEST_P(ReactorTest, PrioritisedReadsSucceed) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  ASSERT_EQ(write(p[1], "abcdef", 6), 6);
  char buf[3];
  TestOp low, high;
  low.priority = IoPriority::kLow;
  high.priority = IoPriority::kHigh;
  reactor_->Read(&low, p[0], buf, 3, -1);
  ASSERT_TRUE(RunUntil([&] { return low.done(); }));
  EXPECT_EQ(low.seen, 3);
  reactor_->Read(&high, p[0], buf, 3, -1);
  ASSERT_TRUE(RunUntil([&] { return high.done(); }));
  // The real-time class needs CAP_SYS_NICE or CAP_SYS_ADMIN; without them
  // the reactor falls back to normal priority (reactor_setup_test drops the
  // capabilities to check that).
  EXPECT_EQ(high.seen, 3);
  close(p[0]);
  close(p[1]);
}

INSTANTIATE_TEST_SUITE_P(Backends, ReactorTest,
                         ::testing::Values(Backend::kIoUring, Backend::kEpoll),
                         BackendParamName);

}  // namespace
}  // namespace spindle::reactor
