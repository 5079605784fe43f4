// Reactor lifecycle on both backends: wake-ups from other threads and
// rings, use from a thread other than the creator, shutdown, descriptor
// leaks, and a tiny ring with many operations.

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
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
using testing::kMs;
using testing::Listener;
using testing::TestOp;
using timing::MonotonicClock;

// The shared fixture: `reactor_` of the parameter's backend, Make(), RunUntil().
class ReactorTest : public testing::BackendTest {};
using testing::kSanitizerScale;


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

INSTANTIATE_TEST_SUITE_P(Backends, ReactorTest,
                         ::testing::Values(Backend::kIoUring, Backend::kEpoll),
                         BackendParamName);

}  // namespace
}  // namespace spindle::reactor
