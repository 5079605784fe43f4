// Regression tests for the I/O defects found by probing the single-thread
// core, on both reactor backends: results of operations that complete while
// their task is being aborted, aborts that meet a suspension, stops, timer
// deadlines, and thousands of idle operations.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle {
namespace {

using namespace executor_testing;  // NOLINT: test helpers
using namespace std::chrono_literals;

using IoHardeningTest = ReactorBackendTest;
#define MAKE_OR_SKIP SPINDLE_MAKE_OR_SKIP

// A loopback listener; port in `addr`.
int Listen(sockaddr_in* addr, int backlog = 64) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  *addr = {};
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(addr), sizeof(*addr)) != 0) {
    return -1;
  }
  if (listen(fd, backlog) != 0) return -1;
  socklen_t len = sizeof(*addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(addr), &len);
  return fd;
}

// Yields until the executor's reactor has run one more completion callback
// than `base`: the completion that the caller caused is then reaped.
Task<void> UntilCompleted(uint64_t base) {
  reactor::Reactor* r = CurrentExecutor()->driver().reactor();
  while (r->Stats().completed <= base) co_await YieldNow();
}

// ---- Item 4: a result that arrives while the task is being aborted.

TEST_P(IoHardeningTest, AbortAfterAcceptCompletedDeliversTheDescriptor) {
  MAKE_OR_SKIP(ex);
  sockaddr_in addr;
  const int listener = Listen(&addr);
  ASSERT_GE(listener, 0);
  int accepted = -100;
  bool continued_past_next_suspension = false;
  auto acceptor = [&]() -> Task<void> {
    accepted = co_await Accept(listener);
    if (accepted >= 0) close(accepted);  // the task owns it: no leak
    co_await YieldNow();                 // the abort takes effect here
    continued_past_next_suspension = true;
  };
  JoinHandle<void> h = ex->Spawn(acceptor());
  int client = -1;
  auto aborter = [&]() -> Task<void> {
    co_await YieldNow();  // the accept is started
    const uint64_t base =
        CurrentExecutor()->driver().reactor()->Stats().completed;
    client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
              0);
    co_await UntilCompleted(base);  // the accept's result is in
    h.Abort();
  };
  ex->SpawnDetached(aborter());
  ex->Run();
  EXPECT_GE(accepted, 0) << "the accepted descriptor was dropped";
  EXPECT_FALSE(continued_past_next_suspension);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  ExpectAccounted(*ex);
  close(client);
  close(listener);
}

TEST_P(IoHardeningTest, AbortAfterRecvCompletedDeliversTheBytes) {
  MAKE_OR_SKIP(ex);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::string got;
  auto reader = [&]() -> Task<void> {
    char buf[64];
    const int n = co_await Recv(sv[0], buf, sizeof(buf));
    if (n > 0) got.assign(buf, n);
    co_await YieldNow();
  };
  JoinHandle<void> h = ex->Spawn(reader());
  auto aborter = [&]() -> Task<void> {
    co_await YieldNow();
    const uint64_t base =
        CurrentExecutor()->driver().reactor()->Stats().completed;
    EXPECT_EQ(write(sv[1], "hello", 5), 5);
    co_await UntilCompleted(base);
    h.Abort();
  };
  ex->SpawnDetached(aborter());
  ex->Run();
  EXPECT_EQ(got, "hello") << "received bytes vanished";
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  close(sv[0]);
  close(sv[1]);
}

// An I/O completion on the task's own thread requeues it without the
// notified bit (WakeSole); the poll must still reset what the suspension
// left (wait_kind kIo, its operation), or a later abort of the task, queued
// after a yield, takes the finished operation for a result still to deliver
// and lets the task run once more.
TEST_P(IoHardeningTest, AbortAfterAYieldThatFollowedIoCancelsAtOnce) {
  MAKE_OR_SKIP(ex);
  bool yielded = false;
  bool ran_after_abort = false;
  auto worker = [&]() -> Task<void> {
    EXPECT_EQ(co_await Nop(), 0);
    yielded = true;
    co_await YieldNow();  // queued behind the aborter, which aborts it
    ran_after_abort = true;
  };
  JoinHandle<void> h = ex->Spawn(worker());
  auto aborter = [&]() -> Task<void> {
    while (!yielded) co_await YieldNow();
    h.Abort();
  };
  ex->SpawnDetached(aborter());
  ex->Run();
  EXPECT_FALSE(ran_after_abort);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

// ---- Item 9: an abort pending when the task suspends on I/O.

TEST_P(IoHardeningTest, SelfAbortThenRecvOnAnIdleSocketIsCancelled) {
  MAKE_OR_SKIP(ex);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  JoinHandle<int> h;
  auto body = [&]() -> Task<int> {
    co_await YieldNow();
    h.Abort();
    char c;
    co_return co_await Recv(sv[0], &c, 1);  // nobody writes
  };
  h = ex->Spawn(body());
  ex->Run();  // returns
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  ExpectAccounted(*ex);
  close(sv[0]);
  close(sv[1]);
}

TEST_P(IoHardeningTest, AbortFromAnotherThreadDuringAPollMeetsTheNextRecv) {
  MAKE_OR_SKIP(ex);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::atomic<bool> in_poll{false}, aborted{false};
  JoinHandle<int> h;
  auto body = [&]() -> Task<int> {
    in_poll.store(true, std::memory_order_release);
    while (!aborted.load(std::memory_order_acquire)) std::this_thread::yield();
    char c;
    co_return co_await Recv(sv[0], &c, 1);
  };
  h = ex->Spawn(body());
  std::thread aborter([&] {
    while (!in_poll.load(std::memory_order_acquire)) std::this_thread::yield();
    h.Abort();
    aborted.store(true, std::memory_order_release);
  });
  ex->Run();
  aborter.join();
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  close(sv[0]);
  close(sv[1]);
}

// ---- Item 14: SleepFor counts from the co_await.

TEST_P(IoHardeningTest, SleepForDeadlineIsSetWhenAwaited) {
  MAKE_OR_SKIP(ex);
  uint64_t slept_ns = 0;
  auto body = [&]() -> Task<void> {
    auto sleep = SleepFor(20ms);
    Spin(30'000'000);  // longer than the sleep, before awaiting it
    const uint64_t t0 = timing::MonotonicClock::Now();
    co_await sleep;
    slept_ns = timing::MonotonicClock::Now() - t0;
  };
  ex->BlockOn(body());
  EXPECT_GE(slept_ns, 20'000'000u);
}

// ---- RequestStop with tasks in the kernel.

TEST_P(IoHardeningTest, RequestStopCancelsTasksWaitingOnSocketsAndTimers) {
  MAKE_OR_SKIP(ex);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::vector<JoinHandle<int>> hs;
  for (int i = 0; i < 20; ++i) {
    hs.push_back(ex->Spawn([](int fd) -> Task<int> {
      char c;
      co_return co_await Recv(fd, &c, 1);
    }(sv[0])));
    hs.push_back(ex->Spawn([]() -> Task<int> {
      co_return co_await SleepFor(60s);
    }()));
  }
  std::atomic<bool> started{false};
  ex->SpawnDetached([](std::atomic<bool>* s) -> Task<void> {
    s->store(true, std::memory_order_release);
    co_return;
  }(&started));
  std::thread stopper([&] {
    while (!started.load(std::memory_order_acquire)) std::this_thread::yield();
    ex->RequestStop();
  });
  const uint64_t t0 = timing::MonotonicClock::Now();
  ex->Run();
  stopper.join();
  EXPECT_LT(timing::MonotonicClock::Now() - t0, 30'000'000'000u);
  for (auto& h : hs) EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(ex->driver().reactor()->inflight(), 0u);
  ExpectAccounted(*ex);
  close(sv[0]);
  close(sv[1]);
}

// ---- Item 6: built on one thread, run on a second, destroyed on the first.

TEST_P(IoHardeningTest, BuiltHereRunThereDestroyedHereIsQuickAndClean) {
  MAKE_OR_SKIP(ex);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  // Suspended on an idle socket when the run ends: the destructor on this
  // thread must cancel it without the ring (owned by the runner).
  JoinHandle<int> idle = ex->Spawn([](int fd) -> Task<int> {
    char c;
    co_return co_await Recv(fd, &c, 1);
  }(sv[0]));
  int slept = -1;
  std::thread runner([&] {
    slept = ex->BlockOn([]() -> Task<int> {
      co_return co_await SleepFor(1ms);
    }());
  });
  runner.join();
  EXPECT_EQ(slept, 0);
  idle.Abort();  // pending in the inbox when the executor goes
  const uint64_t t0 = timing::MonotonicClock::Now();
  ex.reset();
  EXPECT_LT(timing::MonotonicClock::Now() - t0, 2'000'000'000u)
      << "the destructor spun";
  EXPECT_EQ(idle.status(), JoinStatus::kCancelled);
  close(sv[0]);
  close(sv[1]);
}

void RunOnTwoThreads(reactor::BackendChoice backend) {
  reactor::ReactorOptions o;
  o.backend = backend;
  auto ex = ExecutorBuilder().Reactor(o).Build();
  if (!ex.ok()) std::abort();
  auto nap = []() -> Task<int> { co_return co_await SleepFor(1ms); };
  // The first runner stays alive, so the second is a different thread
  // (an exited thread's id may be reused).
  std::latch ran(1), release(1);
  std::thread first([&] {
    (*ex)->BlockOn(nap());
    ran.count_down();
    release.wait();
  });
  ran.wait();
  std::thread([&] { (*ex)->BlockOn(nap()); }).join();  // another thread
  release.count_down();
  first.join();
}

TEST_P(IoHardeningTest, RunningOnASecondThreadFailsAtOnceWithAMessage) {
  MAKE_OR_SKIP(ex);
  ex.reset();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(RunOnTwoThreads(GetParam()), "belongs to thread");
}

// ---- Item 1: thousands of operations waiting on idle peers.

void RaiseFdLimit(rlim_t want) {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur >= want) return;
  rl.rlim_cur = std::min(want, rl.rlim_max);
  setrlimit(RLIMIT_NOFILE, &rl);
}

TEST_P(IoHardeningTest, ThousandsOfIdleReceivesLeaveIoAndAbortsWorking) {
  constexpr int kIdle = 2000;
  RaiseFdLimit(4 * kIdle + 64);
  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 2 * kIdle + 64) GTEST_SKIP() << "RLIMIT_NOFILE too low";
  MAKE_OR_SKIP(ex);
  std::vector<int> fds;
  std::vector<JoinHandle<int>> idle;
  for (int i = 0; i < kIdle; ++i) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fds.push_back(sv[0]);
    fds.push_back(sv[1]);
    idle.push_back(ex->Spawn([](int fd) -> Task<int> {
      char c;
      co_return co_await Recv(fd, &c, 1);
    }(sv[0])));
  }
  // With every idle receive in the kernel, an active exchange still runs,
  // and the idle ones can still be aborted and time out.
  int pair[4];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair + 2), 0);
  int echoed = 0;
  auto active = [&]() -> Task<void> {
    co_await YieldNow();
    for (int i = 0; i < 50; ++i) {
      char out = static_cast<char>('a' + i % 26), in = 0;
      if (co_await Send(pair[0], &out, 1) != 1) break;
      if (co_await Recv(pair[1], &in, 1) != 1) break;
      if (in == out) ++echoed;
    }
    char c;
    int r = co_await Timeout(Recv(pair[2], &c, 1), 5ms);
    EXPECT_EQ(r, -ECANCELED);  // a timeout among thousands of idle ops
    for (auto& h : idle) h.Abort();
  };
  ex->SpawnDetached(active());
  const uint64_t t0 = timing::MonotonicClock::Now();
  ex->Run();
  EXPECT_LT(timing::MonotonicClock::Now() - t0, 60'000'000'000u);
  EXPECT_EQ(echoed, 50);
  for (auto& h : idle) EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  ExpectAccounted(*ex);
  for (int fd : fds) close(fd);
  for (int fd : pair) close(fd);
}

INSTANTIATE_TEST_SUITE_P(
    Backends, IoHardeningTest,
    ::testing::Values(reactor::BackendChoice::kIoUring,
                      reactor::BackendChoice::kEpoll),
    [](const ::testing::TestParamInfo<reactor::BackendChoice>& info) {
      return info.param == reactor::BackendChoice::kIoUring ? "IoUring"
                                                            : "Epoll";
    });

}  // namespace
}  // namespace spindle
