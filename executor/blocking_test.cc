// executor/blocking_test.cc: SpawnBlocking and its pool (bounded, growing
// and shrinking, cancellation, shutdown), and Resolve.
#include "executor/blocking.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::MakeExecutor;

std::unique_ptr<BlockingPool> MakePool(
    size_t max_threads,
    std::chrono::nanoseconds keep_alive = std::chrono::seconds(10)) {
  BlockingPoolOptions o;
  o.max_threads = max_threads;
  o.keep_alive = keep_alive;
  auto p = BlockingPool::Create(o);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(p).value();
}

// A gate the blocking jobs wait on, opened by the test.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int inside = 0;
  int peak = 0;
  void Pass() {
    std::unique_lock<std::mutex> lock(mu);
    peak = std::max(peak, ++inside);
    cv.wait(lock, [&] { return open; });
    --inside;
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
  int Inside() {
    std::lock_guard<std::mutex> lock(mu);
    return inside;
  }
};

// Waits (bounded) for a condition another thread makes true.
template <typename F>
bool Eventually(F f) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!f()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(BlockingPoolTest, CreateRejectsOptionsOutOfRangeNamingThem) {
  BlockingPoolOptions o;
  o.max_threads = 0;
  auto p = BlockingPool::Create(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("max_threads 0"), std::string::npos)
      << p.status();
  o.max_threads = 4;
  o.keep_alive = std::chrono::nanoseconds(10);
  p = BlockingPool::Create(o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("[1ms, 1h]"), std::string::npos)
      << p.status();
}

TEST(SpawnBlockingTest, ValuesVoidAndExceptionsReachTheTask) {
  auto ex = MakeExecutor();
  ex->BlockOn([]() -> Task<> {
    EXPECT_EQ(co_await SpawnBlocking([] { return 6 * 7; }), 42);
    std::atomic<bool> ran{false};
    co_await SpawnBlocking([&ran] { ran = true; });
    EXPECT_TRUE(ran.load());
    bool caught = false;
    try {
      co_await SpawnBlocking([]() -> int { throw std::runtime_error("boom"); });
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "boom";
    }
    EXPECT_TRUE(caught);
  }());
}

TEST(SpawnBlockingTest, TheExecutorRunsOtherTasksWhileAJobBlocks) {
  auto ex = MakeExecutor();
  Gate gate;
  ex->BlockOn([](LocalExecutor* ex, Gate* gate) -> Task<> {
    // The opener runs on this same thread: if the job blocked the
    // executor, it could never run.
    ex->SpawnDetached([](Gate* gate) -> Task<> {
      while (gate->Inside() == 0) co_await YieldNow();
      gate->Open();
    }(gate));
    co_await SpawnBlocking([gate] { gate->Pass(); });
  }(ex.get(), &gate));
  EXPECT_EQ(gate.peak, 1);
}

Task<int> RunOn(BlockingPool* pool, Gate* gate, int v) {
  co_return co_await pool->Run([gate, v] {
    gate->Pass();
    return v;
  });
}

TEST(BlockingPoolTest, MoreCallsThanThreadsQueueAndAllFinish) {
  auto rt = runtime_testing::MakeRuntime(2);
  auto pool = MakePool(2);
  Gate gate;
  std::vector<JoinHandle<int>> hs;
  for (int i = 1; i <= 8; ++i)
    hs.push_back(rt->Spawn(RunOn(pool.get(), &gate, i)));
  ASSERT_TRUE(
      Eventually([&] { return gate.Inside() == 2 && pool->queued() == 6; }));
  EXPECT_EQ(pool->threads(), 2u);  // bounded
  gate.Open();
  int sum = 0;
  for (auto& h : hs) sum += h.Join();
  EXPECT_EQ(sum, 36);
  EXPECT_EQ(gate.peak, 2);
}

TEST(BlockingPoolTest, IdleThreadsExitAfterKeepAlive) {
  auto pool = MakePool(4, std::chrono::milliseconds(1));
  auto ex = MakeExecutor();
  ex->BlockOn([](BlockingPool* pool) -> Task<> {
    int a = co_await pool->Run([] { return 1; });
    EXPECT_EQ(a, 1);
  }(pool.get()));
  EXPECT_TRUE(Eventually([&] { return pool->threads() == 0; }));
  // And grows again on demand.
  EXPECT_EQ(ex->BlockOn(pool->Run([] { return 2; })), 2);
}

TEST(BlockingPoolTest, AJobWhoseTaskWasCancelledBeforeItStartedIsSkipped) {
  auto rt = runtime_testing::MakeRuntime(1);
  auto pool = MakePool(1);
  Gate gate;
  std::atomic<int> ran{0};
  auto busy = rt->Spawn(RunOn(pool.get(), &gate, 1));
  ASSERT_TRUE(Eventually([&] { return gate.Inside() == 1; }));
  auto waiting =
      rt->Spawn([](BlockingPool* pool, std::atomic<int>* ran) -> Task<> {
        co_await pool->Run([ran] { ran->fetch_add(1); });
      }(pool.get(), &ran));
  ASSERT_TRUE(Eventually([&] { return pool->queued() == 1; }));
  waiting.Abort();
  EXPECT_EQ(waiting.Wait(), JoinStatus::kCancelled);
  gate.Open();
  EXPECT_EQ(busy.Join(), 1);
  pool.reset();  // runs (skips) what is queued, then joins
  EXPECT_EQ(ran.load(), 0);
}

TEST(BlockingPoolTest, DestructionFinishesWhatWasSubmitted) {
  auto rt = runtime_testing::MakeRuntime(2);
  auto pool = MakePool(1);
  Gate gate;
  auto a = rt->Spawn(RunOn(pool.get(), &gate, 1));
  auto b = rt->Spawn(RunOn(pool.get(), &gate, 2));
  ASSERT_TRUE(
      Eventually([&] { return gate.Inside() == 1 && pool->queued() == 1; }));
  // The destructor waits for the running job (blocked on the gate) and
  // then runs the queued one; it returns only after both.
  std::thread destroyer([&] { pool.reset(); });
  gate.Open();
  destroyer.join();
  EXPECT_EQ(a.Join() + b.Join(), 3);
}

// A pool destroyed by one of its own jobs would wait for that job's thread
// to exit, which never happens while the destructor runs there: it fails
// at once, naming the misuse (it hung before).
TEST(BlockingPoolDeathTest, DestroyedByOneOfItsOwnJobsFailsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto ex = MakeExecutor();
        BlockingPool* raw = MakePool(1).release();
        ex->BlockOn(raw->Run([raw] { delete raw; }));
      },
      "BlockingPool destroyed by one of its own jobs");
}

TEST(ResolveTest, NamesAndNumbersResolveAndFailuresNameTheHost) {
  auto ex = MakeExecutor();
  ex->BlockOn([]() -> Task<> {
    auto lo = co_await Resolve("127.0.0.1", 8080);
    EXPECT_TRUE(lo.ok()) << lo.status();
    if (lo.ok()) {
      EXPECT_EQ((*lo)[0].ToString(), "127.0.0.1:8080");
    }
    auto named = co_await Resolve("localhost", 80);
    EXPECT_TRUE(named.ok()) << named.status();
    auto v6 = co_await Resolve("::1", 443);
    EXPECT_TRUE(v6.ok()) << v6.status();
    if (v6.ok()) {
      EXPECT_EQ((*v6)[0].ToString(), "[::1]:443");
    }
    auto empty = co_await Resolve("", 80);
    EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
    auto bad = co_await Resolve("no-such-host.invalid", 80);
    EXPECT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("no-such-host.invalid"),
              std::string::npos)
        << bad.status();
  }());
}

}  // namespace
}  // namespace spindle
