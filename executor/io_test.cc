// The executor with its reactor: timers, sockets, files, cancellation,
// cross-thread wake-ups and shutdown, on both backends.
#include "executor/io.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "budget/tier.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "timing/clock.h"

namespace spindle {
namespace {

using namespace executor_testing;  // NOLINT: test helpers

using namespace std::chrono_literals;

int CountOpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

using IoTest = ReactorBackendTest;
#define MAKE_OR_SKIP SPINDLE_MAKE_OR_SKIP

TEST_P(IoTest, DriverNameIsTheBackend) {
  MAKE_OR_SKIP(ex);
  const std::string name(ex->Stats().driver);
  EXPECT_EQ(name, GetParam() == reactor::BackendChoice::kEpoll ? "epoll"
                                                               : "io_uring");
}

TEST_P(IoTest, SleepForWaitsAtLeastTheDuration) {
  MAKE_OR_SKIP(ex);
  auto body = []() -> Task<int64_t> {
    const uint64_t t0 = timing::MonotonicClock::Now();
    int r = co_await SleepFor(2ms);
    EXPECT_EQ(r, 0);
    co_return static_cast<int64_t>(timing::MonotonicClock::Now() - t0);
  };
  const int64_t took = ex->BlockOn(body());
  EXPECT_GE(took, 2'000'000);
  EXPECT_LT(took, 500'000'000);  // generous: a loaded machine
}

TEST_P(IoTest, TenThousandConcurrentSleepsAllComplete) {
  MAKE_OR_SKIP(ex);
  int done = 0;
  auto sleeper = [](int* d, int i) -> Task<void> {
    int r = co_await SleepFor(std::chrono::microseconds(100 + i % 500));
    if (r == 0) ++*d;
  };
  for (int i = 0; i < 10'000; ++i) ex->SpawnDetached(sleeper(&done, i));
  ex->Run();
  EXPECT_EQ(done, 10'000);
}

TEST_P(IoTest, TimeoutFiresAndDoesNotFire) {
  MAKE_OR_SKIP(ex);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto body = [&]() -> Task<void> {
    char buf[8];
    // Nothing to read: the timeout fires.
    int r = co_await Timeout(Read(fds[0], buf, sizeof(buf)), 5ms);
    EXPECT_EQ(r, -ECANCELED);
    // Data is there: the read wins.
    EXPECT_EQ(write(fds[1], "x", 1), 1);
    r = co_await Timeout(Read(fds[0], buf, sizeof(buf)), 1s);
    EXPECT_EQ(r, 1);
  };
  ex->BlockOn(body());
  close(fds[0]);
  close(fds[1]);
}

TEST_P(IoTest, FileWriteThenReadBack) {
  MAKE_OR_SKIP(ex);
  char path[] = "/tmp/spindle_io_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  auto body = [fd]() -> Task<std::string> {
    const std::string text = "spindle writes at offsets";
    int w = co_await Write(fd, text.data(), text.size(), 0);
    EXPECT_EQ(w, static_cast<int>(text.size()));
    EXPECT_EQ(co_await Fsync(fd), 0);
    char buf[64] = {};
    int r = co_await Read(fd, buf, sizeof(buf), 8);
    EXPECT_EQ(r, static_cast<int>(text.size()) - 8);
    co_return std::string(buf, r > 0 ? r : 0);
  };
  EXPECT_EQ(ex->BlockOn(body()), "writes at offsets");
  close(fd);
}

TEST_P(IoTest, TcpEchoRoundTrips) {
  MAKE_OR_SKIP(ex);
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
            0);
  ASSERT_EQ(listen(listener, 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);

  constexpr int kRounds = 100;
  auto server = [listener]() -> Task<int> {
    int conn = co_await Accept(listener);
    if (conn < 0) co_return conn;
    char buf[256];
    int echoed = 0;
    for (;;) {
      int n = co_await Recv(conn, buf, sizeof(buf));
      if (n <= 0) break;
      int off = 0;
      while (off < n) {
        int w = co_await Send(conn, buf + off, n - off);
        if (w <= 0) break;
        off += w;
      }
      echoed += n;
    }
    co_await Close(conn);
    co_return echoed;
  };
  auto client = [&addr]() -> Task<int> {
    const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r = co_await Connect(s, reinterpret_cast<const sockaddr*>(&addr),
                             sizeof(addr));
    EXPECT_EQ(r, 0);
    int ok = 0;
    for (int i = 0; i < kRounds; ++i) {
      const std::string msg = "ping " + std::to_string(i);
      EXPECT_EQ(co_await Send(s, msg.data(), msg.size()),
                static_cast<int>(msg.size()));
      char buf[64];
      int got = 0;
      while (got < static_cast<int>(msg.size())) {
        int n = co_await Recv(s, buf + got, sizeof(buf) - got);
        if (n <= 0) break;
        got += n;
      }
      if (std::string(buf, got) == msg) ++ok;
    }
    co_await Close(s);
    co_return ok;
  };
  JoinHandle<int> srv = ex->Spawn(server());
  JoinHandle<int> cli = ex->Spawn(client());
  ex->Run();
  EXPECT_EQ(cli.Join(), kRounds);
  EXPECT_GT(srv.Join(), 0);
  close(listener);
}

TEST_P(IoTest, AbortCancelsAPendingAccept) {
  MAKE_OR_SKIP(ex);
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
            0);
  ASSERT_EQ(listen(listener, 4), 0);
  bool resumed = false;
  auto acceptor = [&]() -> Task<int> {
    int fd = co_await Accept(listener);
    resumed = true;
    co_return fd;
  };
  JoinHandle<int> h = ex->Spawn(acceptor());
  auto aborter = [&]() -> Task<void> {
    co_await SleepFor(1ms);  // the accept is pending by now
    h.Abort();
  };
  ex->SpawnDetached(aborter());
  ex->Run();
  EXPECT_FALSE(resumed);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  close(listener);
}

TEST_P(IoTest, AbortFromAnotherThreadCancelsALongSleep) {
  MAKE_OR_SKIP(ex);
  auto sleeper = []() -> Task<int> { co_return co_await SleepFor(60s); };
  JoinHandle<int> h = ex->Spawn(sleeper());
  std::atomic<bool> started{false};
  auto marker = [&]() -> Task<void> {
    started.store(true, std::memory_order_release);
    co_return;
  };
  ex->SpawnDetached(marker());
  std::thread aborter([&] {
    while (!started.load(std::memory_order_acquire)) std::this_thread::yield();
    h.Abort();
  });
  const uint64_t t0 = timing::MonotonicClock::Now();
  ex->Run();
  aborter.join();
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_LT(timing::MonotonicClock::Now() - t0, 30'000'000'000u);
}

TEST_P(IoTest, SpawnerWakesAnExecutorSleepingInTheReactor) {
  MAKE_OR_SKIP(ex);
  Spawner spawner = ex->GetSpawner();
  std::atomic<bool> release{false};
  auto holder = [&]() -> Task<void> {
    // Sleeps in the reactor in 50 ms steps until released from afar.
    while (!release.load(std::memory_order_acquire)) co_await SleepFor(50ms);
  };
  ex->SpawnDetached(holder());
  std::thread producer([&] {
    for (int i = 0; i < 20; ++i) {
      JoinHandle<int> h =
          spawner.Spawn([](int v) -> Task<int> { co_return v; }(i));
      EXPECT_EQ(h.Join(), i);
    }
    release.store(true, std::memory_order_release);
  });
  ex->Run();
  producer.join();
}

TEST_P(IoTest, TasksOnTwoExecutorsJoinEachOther) {
  // Executor A's task spawns work onto executor B (another thread) through
  // B's Spawner and awaits the handle: B's completion wakes A's task from
  // B's thread (IORING_OP_MSG_RING from B's ring to A's on io_uring, the
  // eventfd on epoll).  Both executors sleep in their reactors meanwhile.
  MAKE_OR_SKIP(a);
  std::unique_ptr<LocalExecutor> b;
  std::atomic<bool> b_ready{false};
  std::atomic<bool> stop_b{false};
  std::optional<Spawner> b_spawner;
  std::thread b_thread([&] {
    b = Make();
    if (b == nullptr) {
      b_ready.store(true, std::memory_order_release);
      return;
    }
    b_spawner = b->GetSpawner();
    b_ready.store(true, std::memory_order_release);
    auto keeper = [&]() -> Task<void> {
      while (!stop_b.load(std::memory_order_acquire)) {
        co_await SleepFor(20ms);
      }
    };
    b->BlockOn(keeper());
    b.reset();  // destroyed on its own thread
  });
  while (!b_ready.load(std::memory_order_acquire)) std::this_thread::yield();
  ASSERT_TRUE(b_spawner.has_value()) << skip_reason_;
  auto remote = [](int v) -> Task<int> {
    co_await SleepFor(1ms);
    co_return v * 2;
  };
  auto local = [&]() -> Task<int> {
    int sum = 0;
    for (int i = 0; i < 20; ++i) {
      JoinHandle<int> h = b_spawner->Spawn(remote(i));
      sum += co_await h;
    }
    co_return sum;
  };
  EXPECT_EQ(a->BlockOn(local()), 380);
  stop_b.store(true, std::memory_order_release);
  b_thread.join();
}

TEST_P(IoTest, DestroyingAnExecutorWhoseTaskAwaitsAnotherExecutorsTask) {
  // A's task awaits a slow task of executor B; A is destroyed while it
  // waits.  B's later completion must not touch A's freed task or inbox
  // (AddressSanitizer checks), and A's handle-holding task is cancelled.
  auto a = Make();
  if (a == nullptr) GTEST_SKIP() << "no reactor: " << skip_reason_;
  std::unique_ptr<LocalExecutor> b;
  std::atomic<bool> b_ready{false};
  std::atomic<bool> slow_finished{false};
  std::optional<Spawner> b_spawner;
  std::thread b_thread([&] {
    b = Make();
    if (b != nullptr) b_spawner = b->GetSpawner();
    b_ready.store(true, std::memory_order_release);
    if (b == nullptr) return;
    // Keeps B running until its slow task has completed (set in its last
    // poll, which completes it before the keeper can look again).
    auto keeper = [&]() -> Task<void> {
      while (!slow_finished.load(std::memory_order_acquire)) {
        co_await SleepFor(5ms);
      }
    };
    b->BlockOn(keeper());
    b.reset();
  });
  while (!b_ready.load(std::memory_order_acquire)) std::this_thread::yield();
  ASSERT_TRUE(b_spawner.has_value()) << skip_reason_;
  auto slow = [&]() -> Task<int> {
    co_await SleepFor(300ms);
    slow_finished.store(true, std::memory_order_release);
    co_return 7;
  };
  auto waiter = [&]() -> Task<int> {
    JoinHandle<int> h = b_spawner->Spawn(slow());
    co_return co_await h;
  };
  JoinHandle<int> w = a->Spawn(waiter());
  auto kick = []() -> Task<void> { co_await SleepFor(2ms); };
  a->BlockOn(kick());
  EXPECT_EQ(w.status(), JoinStatus::kPending);
  a.reset();  // the waiter is still registered on B's task
  EXPECT_EQ(w.status(), JoinStatus::kCancelled);
  // A's destruction took its registration back instead of waiting for B.
  EXPECT_FALSE(slow_finished.load(std::memory_order_acquire));
  // B's task completes (and must find no waiter); then B stops.
  b_thread.join();
  EXPECT_TRUE(slow_finished.load());
}

TEST_P(IoTest, ShutdownCancelsInFlightOperationsAndLeaksNoFd) {
  const int before = CountOpenFds();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  JoinHandle<int> reader, sleeper;
  {
    MAKE_OR_SKIP(ex);
    auto read_forever = [&]() -> Task<int> {
      char buf[4];
      co_return co_await Read(fds[0], buf, sizeof(buf));
    };
    auto sleep_long = []() -> Task<int> { co_return co_await SleepFor(60s); };
    reader = ex->Spawn(read_forever());
    sleeper = ex->Spawn(sleep_long());
    auto kick = []() -> Task<void> { co_await SleepFor(1ms); };
    ex->BlockOn(kick());
    EXPECT_EQ(reader.status(), JoinStatus::kPending);
  }
  EXPECT_EQ(reader.status(), JoinStatus::kCancelled);
  EXPECT_EQ(sleeper.status(), JoinStatus::kCancelled);
  close(fds[0]);
  close(fds[1]);
  EXPECT_EQ(CountOpenFds(), before);
}

TEST_P(IoTest, NopSuspendsAndResumes) {
  MAKE_OR_SKIP(ex);
  auto body = []() -> Task<int> {
    int sum = 0;
    for (int i = 0; i < 1000; ++i) sum += (co_await Nop()) == 0 ? 1 : 0;
    co_return sum;
  };
  EXPECT_EQ(ex->BlockOn(body()), 1000);
}

TEST_P(IoTest, ShortParksDoNotReadTheThreadCpuTime) {
  // Regression: with tiers on, every park read the thread's CPU time and
  // context switches (getrusage and clock_gettime: two system calls),
  // tripling the system calls of a task that parks for each completion.
  // A park reads them now only when it was long (it slept) or the last
  // read is over a millisecond old.
  budget::TierConfig tc = budget::TierConfig::Balanced();
  tc.log_warnings = false;
  ExecutorBuilder b;
  b.Tiers(tc);
  MAKE_OR_SKIP(ex, std::move(b));
  constexpr int kNops = 2000;
  auto body = []() -> Task<int> {
    int sum = 0;
    for (int i = 0; i < kNops; ++i) sum += (co_await Nop()) == 0 ? 1 : 0;
    co_return sum;
  };
  EXPECT_EQ(ex->BlockOn(body()), kNops);
  const ExecutorStats s = ex->Stats();
  if (s.parks < kNops / 2) {
    GTEST_SKIP() << "this backend completed NOPs without parking: "
                 << s.parks << " parks";
  }
  EXPECT_LT(s.cpu_time_reads * 4, s.parks)
      << s.cpu_time_reads << " CPU time reads for " << s.parks << " parks";
}

TEST_P(IoTest, BusyTasksDoNotStarveIo) {
  // A CPU-bound task that only yields must not delay a timer by more than a
  // driver-yield interval (1 ms by default) plus one of its polls.
  MAKE_OR_SKIP(ex);
  bool stop = false;
  auto busy = [&]() -> Task<void> {
    while (!stop) co_await YieldNow();
  };
  // The second-worst of 20 sleeps: a starved timer is late every time; one
  // preemption of the thread by a loaded machine makes one sleep late.
  auto timer = [&]() -> Task<int64_t> {
    int64_t worst = 0;
    int64_t second = 0;
    for (int i = 0; i < 20; ++i) {
      const uint64_t t0 = timing::MonotonicClock::Now();
      co_await SleepFor(1ms);
      const int64_t late =
          static_cast<int64_t>(timing::MonotonicClock::Now() - t0) - 1'000'000;
      second = std::max(second, std::min(worst, late));
      worst = std::max(worst, late);
    }
    stop = true;
    co_return second;
  };
  ex->SpawnDetached(busy());
  JoinHandle<int64_t> h = ex->Spawn(timer());
  ex->Run();
  const int64_t second_worst = h.Join();
  EXPECT_LT(second_worst, 50'000'000) << "timer starved by a yielding task";
}

TEST(IoNoReactorTest, OperationsReturnEnotsup) {
  auto ex = ExecutorBuilder().NoReactor().Build().value();
  auto body = []() -> Task<int> { co_return co_await SleepFor(1ms); };
  EXPECT_EQ(ex->BlockOn(body()), -ENOTSUP);
}

TEST(IoEnvTest, UnknownReactorValueIsAStartupError) {
  setenv("SPINDLE_REACTOR", "kqueue", 1);
  absl::StatusOr<std::unique_ptr<LocalExecutor>> ex = ExecutorBuilder().Build();
  unsetenv("SPINDLE_REACTOR");
  ASSERT_FALSE(ex.ok());
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(ex.status().message()).find("kqueue"),
            std::string::npos)
      << ex.status();
}

INSTANTIATE_TEST_SUITE_P(
    Backends, IoTest,
    ::testing::Values(reactor::BackendChoice::kIoUring,
                      reactor::BackendChoice::kEpoll),
    executor_testing::BackendTestName);

}  // namespace
}  // namespace spindle
