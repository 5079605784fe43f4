#include "reactor/reactor.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/internal/uring_driver.h"
#include "timing/clock.h"

namespace spindle::reactor {
namespace {

using timing::MonotonicClock;

constexpr uint64_t kMs = 1'000'000;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kSanitizerScale = 4;
#else
constexpr int kSanitizerScale = 1;
#endif

// An Operation that records how its callback ran.
struct TestOp : Operation {
  int calls = 0;
  int32_t seen = 0;
  uint64_t done_ns = 0;
  std::vector<IoPriority>* order = nullptr;
  std::function<void(TestOp*)> then;  // Runs inside the callback.

  TestOp() { on_complete = &OnDone; }
  bool done() const { return calls > 0; }

  static void OnDone(Operation* op) noexcept {
    auto* t = static_cast<TestOp*>(op);
    ++t->calls;
    t->seen = op->result;
    t->done_ns = MonotonicClock::Now();
    if (t->order != nullptr) t->order->push_back(op->priority);
    if (t->then) t->then(t);
  }
};

int CountOpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // The DIR's own descriptor.
}

// A listening TCP socket on 127.0.0.1 with an ephemeral port.
struct Listener {
  int fd = -1;
  sockaddr_in addr{};
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd, 64), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  }
  ~Listener() { close(fd); }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&addr); }
};

std::string BackendParamName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kIoUring ? "IoUring" : "Epoll";
}

class ReactorTest : public ::testing::TestWithParam<Backend> {
 protected:
  // Creates a reactor of the parameter's backend; sets skip_ when io_uring
  // is refused here.
  std::unique_ptr<Reactor> Make(uint32_t ring_entries = 256) {
    ReactorOptions o;
    o.backend = GetParam() == Backend::kIoUring ? BackendChoice::kIoUring
                                                : BackendChoice::kEpoll;
    o.ring_entries = ring_entries;
    absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
    if (!r.ok()) {
      skip_ = std::string(r.status().message());
      return nullptr;
    }
    return std::move(*r);
  }

  void SetUp() override {
    reactor_ = Make();
    if (reactor_ == nullptr) {
      GTEST_SKIP() << "io_uring unavailable here: " << skip_;
    }
    ASSERT_EQ(reactor_->backend(), GetParam());
  }

  // Polls until `pred` holds; false after `limit_ns`.
  bool RunUntil(const std::function<bool()>& pred, Reactor* r = nullptr,
                uint64_t limit_ns = 10'000 * kMs) {
    if (r == nullptr) r = reactor_.get();
    const uint64_t give_up = MonotonicClock::Now() + limit_ns;
    while (!pred()) {
      if (MonotonicClock::Now() > give_up) return false;
      r->Poll(kMs);
    }
    return true;
  }

  std::string skip_;
  std::unique_ptr<Reactor> reactor_;
};

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

TEST_P(ReactorTest, WakeFromAnotherThreadEndsABlockingPoll) {
  std::atomic<bool> polling{false};
  std::thread waker([&] {
    // Pairs with the release store below; no sleeping: the eventfd keeps a
    // wake that arrives before the Poll blocks.
    while (!polling.load(std::memory_order_acquire)) {
    }
    reactor_->Wake();
  });
  const ReactorStats before = reactor_->Stats();
  polling.store(true, std::memory_order_release);
  while (reactor_->Stats().wakes_received == before.wakes_received) {
    reactor_->Poll(UINT64_MAX);
  }
  waker.join();
  EXPECT_EQ(reactor_->Stats().wakes, before.wakes + 1);
}

TEST_P(ReactorTest, ManyThreadsWakeWhileTheOwnerPolls) {
  constexpr int kThreads = 4;
  const int kWakes = 2000 / kSanitizerScale;
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kWakes; ++i) reactor_->Wake();
      // Release: pairs with the acquire load in the polling loop.
      finished.fetch_add(1, std::memory_order_release);
      reactor_->Wake();
    });
  }
  // Meanwhile the owner keeps timers and NOPs going.
  TestOp nop, sleep;
  int nops = 0;
  bool stop = false;
  nop.then = [&](TestOp* t) {
    ++nops;
    if (!stop) reactor_->Nop(t);
  };
  reactor_->Nop(&nop);
  reactor_->SleepFor(&sleep, 60'000 * kMs);
  while (finished.load(std::memory_order_acquire) < kThreads || nops < 10) {
    reactor_->Poll(UINT64_MAX);
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(reactor_->Stats().wakes,
            static_cast<uint64_t>(kThreads) * (kWakes + 1));
  EXPECT_GT(nops, 0);
  stop = true;
  reactor_->Cancel(&sleep);
  ASSERT_TRUE(RunUntil([&] { return reactor_->inflight() == 0; }));
  EXPECT_EQ(sleep.seen, -ECANCELED);
}

TEST_P(ReactorTest, WakeFromUsesMsgRingBetweenRings) {
  std::unique_ptr<Reactor> source = Make();
  ASSERT_NE(source, nullptr);
  reactor_->Poll(0);  // The target's first use enables its ring.
  source->Poll(0);    // The source's too: this thread owns both.
  const bool via_msg_ring = reactor_->WakeFrom(*source);
  if (GetParam() == Backend::kEpoll) {
    EXPECT_FALSE(via_msg_ring);  // Falls back to the eventfd.
  } else if (reactor_->Stats().features.find("msg_ring") !=
             std::string::npos) {
    EXPECT_TRUE(via_msg_ring) << reactor_->Stats().features;
  }
  const uint64_t before = reactor_->Stats().wakes_received;
  while (reactor_->Stats().wakes_received == before) {
    reactor_->Poll(UINT64_MAX);
  }
  EXPECT_EQ(reactor_->Stats().wakes, 1u);
}

TEST_P(ReactorTest, ReactorCreatedOnOneThreadRunsOnAnother) {
  // With SINGLE_ISSUER the ring binds to the first thread that uses it.
  std::unique_ptr<Reactor> r = Make();
  ASSERT_NE(r, nullptr);
  int32_t result = 1;
  std::thread owner([&] {
    TestOp op;
    r->SleepFor(&op, kMs);
    TestOp nop;
    r->Nop(&nop);
    while (!(op.done() && nop.done())) r->Poll(UINT64_MAX);
    result = nop.seen;
    r.reset();  // Destroyed on the thread that used it.
  });
  owner.join();
  EXPECT_EQ(result, 0);
}

TEST_P(ReactorTest, ShutdownCancelsAndReapsEveryPendingOperation) {
  Listener l;
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[8];
  TestOp acc, recv, sleep, nop, chained;
  chained.result = 77;
  {
    std::unique_ptr<Reactor> r = Make();
    ASSERT_NE(r, nullptr);
    Reactor* raw = r.get();
    r->Accept(&acc, l.fd, nullptr, nullptr);
    r->Recv(&recv, sv[0], buf, sizeof(buf), 0);
    r->SleepFor(&sleep, 60'000 * kMs);
    // A callback that starts new work during shutdown gets -ECANCELED.
    sleep.then = [&chained, raw](TestOp*) { raw->Nop(&chained); };
    r->Poll(0);
    r->Nop(&nop);
    EXPECT_EQ(r->inflight(), 4u);
  }
  EXPECT_EQ(acc.calls, 1);
  EXPECT_EQ(acc.seen, -ECANCELED);
  EXPECT_EQ(recv.calls, 1);
  EXPECT_EQ(recv.seen, -ECANCELED);
  EXPECT_EQ(sleep.calls, 1);
  EXPECT_EQ(sleep.seen, -ECANCELED);
  EXPECT_EQ(nop.calls, 1);
  EXPECT_EQ(nop.seen, 0);
  EXPECT_EQ(chained.calls, 1);
  EXPECT_EQ(chained.seen, -ECANCELED);
  close(sv[0]);
  close(sv[1]);
}

TEST_P(ReactorTest, NoFileDescriptorLeaks) {
  reactor_.reset();
  const int before = CountOpenFds();
  ASSERT_GT(before, 0);
  for (int round = 0; round < 3; ++round) {
    std::unique_ptr<Reactor> r = Make();
    ASSERT_NE(r, nullptr);
    Listener l;
    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    TestOp acc, conn, pending_recv, sleep;
    r->Accept(&acc, l.fd, nullptr, nullptr);
    r->Connect(&conn, client, l.sa(), sizeof(l.addr));
    ASSERT_TRUE(
        RunUntil([&] { return acc.done() && conn.done(); }, r.get()));
    ASSERT_GE(acc.seen, 0);
    char c;
    r->Recv(&pending_recv, client, &c, 1, 0);  // Never satisfied.
    r->SleepFor(&sleep, 60'000 * kMs);
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    TestOp cl;
    r->Close(&cl, p[0]);
    ASSERT_TRUE(RunUntil([&] { return cl.done(); }, r.get()));
    EXPECT_EQ(cl.seen, 0);
    r.reset();  // Cancels the recv and the sleep.
    EXPECT_EQ(pending_recv.seen, -ECANCELED);
    close(p[1]);
    close(acc.seen);
    close(client);
  }
  EXPECT_EQ(CountOpenFds(), before);
}

TEST_P(ReactorTest, TinyRingRunsAThousandConcurrentOperations) {
  // A kernel without IORING_FEAT_NODROP (before 5.5) caps the requests in
  // the ring at the CQ size and parks the rest; emulate one so that the
  // resumption queue's priority order is tested here too.
  reactor_internal::SetUringQuirksForTesting(reactor_internal::kQuirkNoNoDrop);
  reactor_ = Make(/*ring_entries=*/2);
  reactor_internal::SetUringQuirksForTesting(0);
  ASSERT_NE(reactor_, nullptr);
  constexpr int kN = 1000;
  std::vector<TestOp> nops(kN), sleeps(kN);
  std::vector<IoPriority> order;
  order.reserve(kN);
  const IoPriority cycle[3] = {IoPriority::kLow, IoPriority::kNormal,
                               IoPriority::kHigh};
  for (int i = 0; i < kN; ++i) {
    nops[i].priority = cycle[i % 3];
    nops[i].order = &order;
    reactor_->Nop(&nops[i]);
    reactor_->SleepFor(&sleeps[i], static_cast<uint64_t>(i % 10) * kMs);
  }
  EXPECT_EQ(reactor_->inflight(), 2u * kN);
  ASSERT_TRUE(RunUntil([&] { return reactor_->inflight() == 0; }));
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(nops[i].calls, 1);
    ASSERT_EQ(nops[i].seen, 0);
    ASSERT_EQ(sleeps[i].calls, 1);
    ASSERT_EQ(sleeps[i].seen, 0);
  }
  const ReactorStats stats = reactor_->Stats();
  if (GetParam() == Backend::kIoUring) {
    EXPECT_EQ(stats.ring_entries, 2u);
    EXPECT_GT(stats.sq_full_waits, 0u);
    // The first few went straight to the ring; every parked one was
    // submitted in priority order, high first.
    const size_t direct = stats.cq_entries;
    ASSERT_GT(order.size(), direct);
    EXPECT_TRUE(std::is_sorted(order.begin() + direct, order.end()))
        << "parked operations must resume highest priority first";
  }
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
  // The real-time class needs CAP_SYS_NICE or CAP_SYS_ADMIN.
  EXPECT_TRUE(high.seen == 3 || high.seen == -EPERM) << high.seen;
  close(p[0]);
  close(p[1]);
}

INSTANTIATE_TEST_SUITE_P(Backends, ReactorTest,
                         ::testing::Values(Backend::kIoUring, Backend::kEpoll),
                         BackendParamName);

TEST(IoPriorityTest, SqeIoprioUsesRealTimeAndIdleClasses) {
  // IOPRIO_PRIO_VALUE(class, level): RT is class 1, IDLE class 3.
  EXPECT_EQ(reactor_internal::IoprioFor(IoPriority::kHigh), 1u << 13);
  EXPECT_EQ(reactor_internal::IoprioFor(IoPriority::kNormal), 0u);
  EXPECT_EQ(reactor_internal::IoprioFor(IoPriority::kLow), 3u << 13);
}

TEST(SqpollTest, SqpollRingRunsOperations) {
  ReactorOptions o;
  o.backend = BackendChoice::kIoUring;
  o.sqpoll = true;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  if (!r.ok()) GTEST_SKIP() << "SQPOLL ring refused: " << r.status();
  EXPECT_NE((*r)->Stats().features.find("SQPOLL"), std::string::npos);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  char buf[4];
  TestOp nop, rd;
  (*r)->Nop(&nop);
  (*r)->Read(&rd, p[0], buf, sizeof(buf), -1);
  ASSERT_EQ(write(p[1], "abcd", 4), 4);
  const uint64_t give_up = MonotonicClock::Now() + 10'000 * kMs;
  while (!(nop.done() && rd.done()) && MonotonicClock::Now() < give_up) {
    (*r)->Poll(kMs);
  }
  EXPECT_EQ(nop.seen, 0);
  EXPECT_EQ(rd.seen, 4);
  close(p[0]);
  close(p[1]);
}

// ---- Options and backend selection ------------------------------------------

class SelectionTest : public ::testing::Test {
 protected:
  void TearDown() override {
    SetIoUringSetupFailureForTesting(0);
    unsetenv("SPINDLE_REACTOR");
  }
};

TEST_F(SelectionTest, RingEntriesMustBeAPowerOfTwoInRange) {
  for (uint32_t bad : {0u, 1u, 3u, 100u, 65536u}) {
    ReactorOptions o;
    o.backend = BackendChoice::kEpoll;
    o.ring_entries = bad;
    absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string msg(r.status().message());
    EXPECT_NE(msg.find("ring_entries = " + std::to_string(bad)),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("[2, 32768]"), std::string::npos) << msg;
  }
}

TEST_F(SelectionTest, FromEnvParsesTheBackend) {
  unsetenv("SPINDLE_REACTOR");
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kAuto);
  setenv("SPINDLE_REACTOR", "epoll", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kEpoll);
  setenv("SPINDLE_REACTOR", "io_uring", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kIoUring);
  setenv("SPINDLE_REACTOR", "auto", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kAuto);
}

TEST_F(SelectionTest, UnknownBackendNamesTheValidValues) {
  setenv("SPINDLE_REACTOR", "kqueue", 1);
  absl::StatusOr<ReactorOptions> o = ReactorOptions::FromEnv();
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(o.status().message());
  EXPECT_NE(msg.find("kqueue"), std::string::npos) << msg;
  EXPECT_NE(msg.find("auto, io_uring, epoll"), std::string::npos) << msg;
}

TEST_F(SelectionTest, AutoFallsBackToEpollWhenIoUringIsRefused) {
  SetIoUringSetupFailureForTesting(EPERM);
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create({});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->backend(), Backend::kEpoll);
  const std::string reason((*r)->fallback_reason());
  EXPECT_NE(reason.find("EPERM"), std::string::npos) << reason;
  EXPECT_EQ((*r)->Stats().fallback_reason, reason);
  // The fallback reactor works.
  TestOp op;
  (*r)->Nop(&op);
  while (!op.done()) (*r)->Poll(UINT64_MAX);
  EXPECT_EQ(op.seen, 0);
}

TEST_F(SelectionTest, AutoFallsBackForENOSYSAndENOMEM) {
  for (int err : {ENOSYS, ENOMEM}) {
    SetIoUringSetupFailureForTesting(err);
    absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create({});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->backend(), Backend::kEpoll);
  }
}

TEST_F(SelectionTest, AutoDoesNotHideOtherSetupErrors) {
  SetIoUringSetupFailureForTesting(EINVAL);
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create({});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("EINVAL"),
            std::string::npos);
}

TEST_F(SelectionTest, ForcedIoUringFailsClearlyWhenRefused) {
  SetIoUringSetupFailureForTesting(EPERM);
  ReactorOptions o;
  o.backend = BackendChoice::kIoUring;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  const std::string msg(r.status().message());
  EXPECT_NE(msg.find("EPERM"), std::string::npos) << msg;
  EXPECT_NE(msg.find("io_uring"), std::string::npos) << msg;
}

TEST_F(SelectionTest, EpollNeverAttemptsIoUring) {
  const int before = IoUringSetupAttemptsForTesting();
  ReactorOptions o;
  o.backend = BackendChoice::kEpoll;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->backend(), Backend::kEpoll);
  EXPECT_TRUE((*r)->fallback_reason().empty());
  EXPECT_EQ(IoUringSetupAttemptsForTesting(), before);
}

TEST_F(SelectionTest, AutoPrefersIoUringWhenTheKernelAllowsIt) {
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create({});
  ASSERT_TRUE(r.ok()) << r.status();
  if ((*r)->backend() != Backend::kIoUring) {
    GTEST_SKIP() << "io_uring refused here: " << (*r)->fallback_reason();
  }
  EXPECT_TRUE((*r)->fallback_reason().empty());
  const std::string features = (*r)->Stats().features;
  EXPECT_NE(features.find("setup="), std::string::npos);
  RecordProperty("io_uring_features", features);
  std::printf("io_uring features: %s\n", features.c_str());
}

}  // namespace
}  // namespace spindle::reactor
