// executor/pool_test.cc: Pool's limits, priorities, results and shutdown.
#include "executor/pool.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "dispatch/dispatch_testing.h"
#include "executor/executor.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using dispatch_testing::Event;

// Occupies a worker of `pool` until `gate`; returns once the item runs (and
// so no longer counts as queued).
PoolHandle<PoolDone> Block(Pool& pool, Event& gate) {
  auto started = std::make_shared<Event>();
  auto h = pool.Submit([started, &gate] {
    started->Notify();
    gate.WaitForNotification();
  });
  EXPECT_TRUE(h.ok());
  started->WaitForNotification();
  return *h;
}

std::unique_ptr<Pool> MakePool(int workers, size_t queue) {
  auto p = PoolBuilder().Workers(workers).MaxQueueSize(queue).Build();
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(p).value();
}

TEST(PoolTest, BuildRejectsBadValues) {
  auto p = PoolBuilder().Workers(0).Build();
  ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("Workers(0); valid range [1, 1024]"),
            std::string::npos)
      << p.status();
  p = PoolBuilder().MaxQueueSize(0).Build();
  ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("MaxQueueSize(0)"), std::string::npos);
}

TEST(PoolTest, CallablesResolveWithTheirResult) {
  auto pool = MakePool(2, 16);
  auto v = pool->Submit([] { return 6 * 7; });
  std::atomic<int> hits{0};
  auto done = pool->Submit([&] { hits.fetch_add(1); }, Priority::kLow);
  auto thrown = pool->Submit([]() -> int { throw std::runtime_error("x"); });
  ASSERT_TRUE(v.ok() && done.ok() && thrown.ok());
  EXPECT_EQ(v->Wait().value(), 42);
  EXPECT_TRUE(done->Wait().ok());
  EXPECT_EQ(hits.load(), 1);
  EXPECT_EQ(thrown->Wait().status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(thrown->Wait().status().message().find(
                "the submitted callable threw: x"),
            std::string::npos)
      << thrown->Wait().status();
}

TEST(PoolTest, HighestPriorityFirstFifoWithin) {
  auto pool = MakePool(1, 64);
  Event gate;
  auto blocker = Block(*pool, gate);
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

Task<int> SleepThenReturn(int v) {
  co_await SleepFor(std::chrono::milliseconds(1));  // the thread's reactor
  co_return v;
}

Task<int> Throws() {
  co_await YieldNow();
  throw std::runtime_error("boom");
}

Task<void> Bump(std::atomic<int>* n) {
  n->fetch_add(1);
  co_return;
}

// A Task runs on the pool thread's own executor; its value, its exception
// and an empty Task.
TEST(PoolTest, TasksRunOnThePoolThreadsExecutor) {
  auto pool = MakePool(2, 64);
  std::vector<PoolHandle<int>> hs;
  for (int i = 0; i < 10; ++i) {
    auto h = pool->Submit(SleepThenReturn(i));
    ASSERT_TRUE(h.ok()) << h.status();
    hs.push_back(*h);
  }
  std::atomic<int> n{0};
  auto v = pool->Submit(Bump(&n), Priority::kHigh);
  ASSERT_TRUE(v.ok());
  auto thrown = pool->Submit(Throws());
  ASSERT_TRUE(thrown.ok());
  EXPECT_EQ(pool->Submit(Task<int>()).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(hs[i].Wait().value(), i);
  EXPECT_TRUE(v->Wait().ok());
  EXPECT_EQ(n.load(), 1);
  const absl::Status st = thrown->Wait().status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_NE(st.message().find("the submitted task threw: boom"),
            std::string::npos)
      << st;
}

TEST(PoolTest, QueueFullNamesTheCapacity) {
  auto pool = MakePool(1, 3);
  Event gate;
  auto blocker = Block(*pool, gate);
  std::vector<PoolHandle<int>> handles;
  for (int i = 0; i < 3; ++i) {
    auto h = pool->Submit([i] { return i; });
    ASSERT_TRUE(h.ok()) << h.status();
    handles.push_back(*h);
  }
  auto full = pool->Submit([] { return -1; });
  ASSERT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.status().message().find("MaxQueueSize 3"), std::string::npos)
      << full.status();
  EXPECT_EQ(pool->PendingTasks(), 4u);
  gate.Notify();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(handles[i].Wait().value(), i);
  EXPECT_TRUE(pool->Submit([] { return 0; }).ok());  // room again
}

TEST(PoolTest, ProcessSpecs) {
  auto pool = MakePool(2, 16);
  dispatch::ProcessSpec echo;
  echo.binary = "/bin/echo";
  echo.args = {"hi"};
  auto h = pool->Submit(echo, Priority::kHigh);
  dispatch::ProcessSpec missing;
  missing.binary = "/nonexistent/tool";
  auto m = pool->Submit(missing);
  ASSERT_TRUE(h.ok() && m.ok());
  EXPECT_EQ(h->Wait().value().stdout_data, "hi\n");
  EXPECT_EQ(m->Wait().status().code(), absl::StatusCode::kNotFound);
  dispatch::ProcessSpec bad;
  EXPECT_EQ(pool->Submit(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PoolTest, ShutdownDrainRunsEverything) {
  auto pool = MakePool(1, 100);
  std::vector<PoolHandle<int>> handles;
  for (int i = 0; i < 50; ++i) handles.push_back(*pool->Submit([i] { return i; }));
  pool->Shutdown(ShutdownMode::kDrain);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(handles[i].done());
    EXPECT_EQ(handles[i].Wait().value(), i);
  }
  EXPECT_EQ(pool->Submit([] { return 0; }).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(PoolTest, ShutdownCancelKillsRunningAndCancelsQueued) {
  auto pool = MakePool(2, 100);
  dispatch::ProcessSpec sleep;
  sleep.binary = "/bin/sleep";
  sleep.args = {"100"};
  std::vector<PoolHandle<dispatch::ProcessResult>> handles;
  for (int i = 0; i < 8; ++i) handles.push_back(*pool->Submit(sleep));
  pool->Shutdown(ShutdownMode::kCancel);  // returns without 100 s of sleep
  for (auto& h : handles) {
    ASSERT_TRUE(h.done());
    const absl::StatusOr<dispatch::ProcessResult>& r = h.Wait();
    if (r.ok()) {
      EXPECT_EQ(r->term_signal, SIGKILL);
    } else {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
    }
  }
}

// Shutdown (drain or cancel) from one of the pool's own workers would wait
// for the item that calls it, and join its thread: it fails at once,
// naming the misuse (it hung before).
TEST(PoolDeathTest, ShutdownFromOneOfItsOwnWorkersFailsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (ShutdownMode mode : {ShutdownMode::kDrain, ShutdownMode::kCancel}) {
    EXPECT_DEATH(
        {
          auto pool = MakePool(2, 16);
          Pool* raw = pool.get();
          auto h = raw->Submit([raw, mode] {
            raw->Shutdown(mode);
            return 1;
          });
          (void)h->Wait();
        },
        "Pool::Shutdown \\(or ~Pool\\) on one of the pool's own workers");
  }
}

}  // namespace
}  // namespace spindle
