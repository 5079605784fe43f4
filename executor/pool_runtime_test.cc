// executor/pool_runtime_test.cc: a Pool whose work runs on a Runtime's
// workers (PoolBuilder::OnRuntime): results, priorities, processes awaited
// without blocking the worker, shutdown, a Runtime that goes first, misuse.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dispatch/dispatch_testing.h"
#include "executor/executor.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using dispatch::ProcessResult;
using dispatch::ProcessSpec;
using dispatch_testing::Event;

ProcessSpec Sh(const std::string& script) {
  ProcessSpec s;
  s.binary = "/bin/sh";
  s.args = {"-c", script};
  return s;
}

// A fifo in the test's temporary directory.  A child that writes to it (or
// reads from it) blocks until the test opens the other end: the test knows
// for sure when the child runs, and holds it there.
std::string MakeFifo(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  ::unlink(path.c_str());
  EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
  return path;
}

// Blocks until a child has written a line to `fifo`.
void AwaitLine(const std::string& fifo) {
  FILE* f = std::fopen(fifo.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[64];
  EXPECT_NE(std::fgets(buf, sizeof(buf), f), nullptr);
  std::fclose(f);
}

std::unique_ptr<Runtime> MakeRuntime(int workers) {
  auto rt = RuntimeBuilder().Workers(workers).Build();
  EXPECT_TRUE(rt.ok()) << rt.status();
  return std::move(rt).value();
}

std::unique_ptr<Pool> MakePool(Runtime& rt, std::optional<int> workers,
                               size_t queue = 64) {
  PoolBuilder b;
  b.OnRuntime(rt).MaxQueueSize(queue);
  if (workers) b.Workers(*workers);
  auto p = b.Build();
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(p).value();
}

TEST(PoolRuntimeTest, BuildChecksTheWorkerCountAgainstTheRuntime) {
  auto rt = MakeRuntime(2);
  auto p = PoolBuilder().OnRuntime(*rt).Workers(3).Build();
  ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find(
                "Workers(3) on a Runtime of 2 workers; valid range [1, 2]"),
            std::string::npos)
      << p.status();
}

// Callables run on the runtime's workers, on every one by default.
TEST(PoolRuntimeTest, CallablesRunOnTheRuntimesWorkers) {
  auto rt = MakeRuntime(2);
  auto pool = MakePool(*rt, std::nullopt, 256);
  std::vector<PoolHandle<int>> hs;
  for (int i = 0; i < 200; ++i) {
    auto h = pool->Submit([] {
      const std::optional<size_t> w = CurrentWorker();
      return w ? static_cast<int>(*w) : -1;
    });
    ASSERT_TRUE(h.ok()) << h.status();
    hs.push_back(*h);
  }
  auto thrown = pool->Submit([]() -> int { throw std::runtime_error("x"); });
  ASSERT_TRUE(thrown.ok());
  std::set<int> seen;
  for (auto& h : hs) {
    ASSERT_TRUE(h.Wait().ok()) << h.Wait().status();
    seen.insert(h.Wait().value());
  }
  EXPECT_TRUE(seen.count(-1) == 0) << "ran off the runtime";
  for (int w : seen) EXPECT_TRUE(w == 0 || w == 1) << w;
  EXPECT_EQ(thrown->Wait().status().code(), absl::StatusCode::kInternal);
  pool->Shutdown(ShutdownMode::kDrain);
}

TEST(PoolRuntimeTest, HighestPriorityFirstFifoWithin) {
  auto rt = MakeRuntime(2);
  auto pool = MakePool(*rt, 1);  // one driver, on worker 0
  Event gate, started;
  auto blocker = pool->Submit([&] {
    started.Notify();
    gate.WaitForNotification();  // blocks worker 0 (the test's choice)
  });
  ASSERT_TRUE(blocker.ok());
  started.WaitForNotification();
  std::mutex mu;
  std::vector<int> order;
  std::vector<PoolHandle<PoolDone>> handles;
  for (int i = 0; i < 20; ++i) {
    const auto p = static_cast<Priority>((i * 7) % 3);
    auto h = pool->Submit(
        [&, i] {
          std::lock_guard<std::mutex> l(mu);
          order.push_back(i);
        },
        p);
    ASSERT_TRUE(h.ok());
    handles.push_back(*h);
  }
  gate.Notify();
  for (auto& h : handles) ASSERT_TRUE(h.Wait().ok());
  ASSERT_EQ(order.size(), 20u);
  for (size_t k = 1; k < order.size(); ++k) {
    const int a = (order[k - 1] * 7) % 3, b = (order[k] * 7) % 3;
    EXPECT_TRUE(a < b || (a == b && order[k - 1] < order[k]))
        << order[k - 1] << " before " << order[k];
  }
}

// A process is awaited by the driver: the worker it runs on keeps running
// its other tasks meanwhile (a pinned task completes while the child lives).
TEST(PoolRuntimeTest, ProcessesDoNotBlockTheWorker) {
  auto rt = MakeRuntime(2);
  auto pool = MakePool(*rt, 1);  // the driver is pinned to worker 0
  // The child blocks opening the fifo until the test writes to it, last.
  const std::string fifo = MakeFifo("pool_runtime_hold");
  auto proc = pool->Submit(Sh("cat '" + fifo + "'"));
  ASSERT_TRUE(proc.ok()) << proc.status();
  // A task pinned to worker 0 runs to completion while the child waits on
  // the fifo; only then does the test let the child finish.
  RuntimeSpawnOptions on0;
  on0.placement = Placement::Pinned(0);
  auto side = rt->Spawn(
      []() -> Task<size_t> { co_return CurrentWorker().value_or(99); }(), on0);
  EXPECT_EQ(side.Join(), 0u);
  EXPECT_FALSE(proc->done());
  {
    FILE* f = std::fopen(fifo.c_str(), "w");  // opens once the child reads
    ASSERT_NE(f, nullptr);
    std::fputs("released\n", f);
    std::fclose(f);
  }
  const absl::StatusOr<ProcessResult>& r = proc->Wait();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "released\n");
  ::unlink(fifo.c_str());
}

TEST(PoolRuntimeTest, ATaskAwaitsARuntimePoolHandle) {
  auto rt = MakeRuntime(2);
  auto pool = MakePool(*rt, 2);
  Pool* p = pool.get();
  const int v = rt->BlockOn([](Pool* p) -> Task<int> {
    auto h = p->Submit([] { return 40; });
    auto e = p->Submit(Sh("exit 2"));
    if (!h.ok() || !e.ok()) co_return -1;
    const int a = (co_await *h).value();
    const absl::StatusOr<ProcessResult>& r = co_await *e;
    co_return a + (r.ok() ? r->exit_code : -100);
  }(p));
  EXPECT_EQ(v, 42);
}

TEST(PoolRuntimeTest, ShutdownDrainsOrCancels) {
  auto rt = MakeRuntime(2);
  {
    auto pool = MakePool(*rt, 1);
    std::vector<PoolHandle<int>> hs;
    for (int i = 0; i < 50; ++i) {
      auto h = pool->Submit([i] { return i; }, Priority::kLow);
      ASSERT_TRUE(h.ok());
      hs.push_back(*h);
    }
    pool->Shutdown(ShutdownMode::kDrain);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(hs[i].Wait().value(), i);
    EXPECT_EQ(pool->Submit([] { return 0; }).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  {
    auto pool = MakePool(*rt, 1);
    const std::string fifo = MakeFifo("pool_runtime_cancel");
    auto running =
        pool->Submit(Sh("echo up > '" + fifo + "'; exec sleep 100"));
    ASSERT_TRUE(running.ok());
    auto queued = pool->Submit([] { return 1; });
    ASSERT_TRUE(queued.ok());
    AwaitLine(fifo);  // the child runs (its driver awaits it)
    pool->Shutdown(ShutdownMode::kCancel);
    const absl::StatusOr<ProcessResult>& r = running->Wait();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->killed);
    EXPECT_EQ(r->term_signal, 9);
    // Queued behind the child on the only driver: cancelled, never run.
    EXPECT_EQ(queued->Wait().status().code(), absl::StatusCode::kCancelled);
  }
}

// The Runtime destroyed first: the child a driver awaited is killed and its
// handle, and the queued ones, resolve Cancelled; Submit refuses; the
// pool's shutdown returns.
TEST(PoolRuntimeTest, ARuntimeDestroyedFirstCancelsWhatItRan) {
  auto rt = MakeRuntime(1);
  auto pool = MakePool(*rt, 1);
  const std::string fifo = MakeFifo("pool_runtime_first");
  auto running = pool->Submit(Sh("echo up > '" + fifo + "'; exec sleep 100"));
  ASSERT_TRUE(running.ok());
  auto queued = pool->Submit([] { return 1; }, Priority::kLow);
  ASSERT_TRUE(queued.ok());
  AwaitLine(fifo);  // the child runs; the driver awaits it
  rt.reset();
  EXPECT_EQ(running->Wait().status().code(), absl::StatusCode::kCancelled)
      << running->Wait().status();
  EXPECT_EQ(pool->Submit([] { return 2; }).status().code(),
            absl::StatusCode::kFailedPrecondition);
  pool->Shutdown(ShutdownMode::kDrain);
  EXPECT_EQ(queued->Wait().status().code(), absl::StatusCode::kCancelled);
}

Task<int> Twice(int v) {
  co_await YieldNow();
  co_return 2 * v;
}

Task<int> Throws() {
  co_await YieldNow();
  throw std::runtime_error("boom");
}

Task<int> SleepLong(Event* started) {
  started->Notify();
  co_await SleepFor(std::chrono::seconds(100));
  co_return 0;
}

// A Task is awaited by a driver; its exception resolves Internal; a Runtime
// destroyed under it cancels it.
TEST(PoolRuntimeTest, TasksAreAwaitedByTheDrivers) {
  auto rt = MakeRuntime(2);
  auto pool = MakePool(*rt, 2);
  std::vector<PoolHandle<int>> hs;
  for (int i = 0; i < 20; ++i) {
    auto h = pool->Submit(Twice(i));
    ASSERT_TRUE(h.ok()) << h.status();
    hs.push_back(*h);
  }
  auto thrown = pool->Submit(Throws());
  ASSERT_TRUE(thrown.ok());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(hs[i].Wait().value(), 2 * i);
  EXPECT_NE(thrown->Wait().status().message().find(
                "the submitted task threw: boom"),
            std::string::npos)
      << thrown->Wait().status();
  Event started;
  auto sleeping = pool->Submit(SleepLong(&started));
  ASSERT_TRUE(sleeping.ok());
  started.WaitForNotification();
  rt.reset();
  EXPECT_EQ(sleeping->Wait().status().code(), absl::StatusCode::kCancelled);
}

// The Runtime destroyed right after the pool is built, before (or as) its
// drivers first run: a driver cancelled before its body ran still detaches
// its worker and counts itself gone, so Submit refuses, Shutdown returns
// and the handle resolves.  (Before, a driver that never ran left its
// worker attached: Shutdown's Quit waited for it forever.)
TEST(PoolRuntimeTest, ARuntimeDestroyedRightAfterThePoolIsBuilt) {
  for (int i = 0; i < 20; ++i) {
    auto rt = MakeRuntime(2);
    auto pool = MakePool(*rt, 2);
    auto h = pool->Submit([] { return 1; });
    ASSERT_TRUE(h.ok()) << h.status();
    rt.reset();
    EXPECT_EQ(pool->Submit([] { return 2; }).status().code(),
              absl::StatusCode::kFailedPrecondition);
    pool->Shutdown(ShutdownMode::kDrain);
    const absl::StatusOr<int>& r = h->Wait();
    EXPECT_TRUE(r.ok() ? *r == 1 : r.status().code() == absl::StatusCode::kCancelled)
        << r.status();
  }
}

TEST(PoolRuntimeDeathTest, ShutdownFromATaskFailsWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto rt = MakeRuntime(1);
        auto pool = MakePool(*rt, 1);
        Pool* p = pool.get();
        rt->BlockOn([](Pool* p) -> Task<void> {
          p->Shutdown(ShutdownMode::kDrain);
          co_return;
        }(p));
      },
      "shut the pool down from a plain thread");
}

}  // namespace
}  // namespace spindle
