// Runtime shutdown and cancellation: tasks queued, suspended on I/O and
// running on other workers when the runtime is destroyed; aborts of tasks
// that have not started; spawners that outlive the runtime.

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::kSanitized;
using runtime_testing::Event;
using runtime_testing::LiveCounter;
using runtime_testing::MakeRuntime;

class RuntimeShutdownTest : public ::testing::TestWithParam<size_t> {};

Task<int> ReadForever(int fd, std::atomic<int>* live, std::atomic<int>* in) {
  LiveCounter c(live);
  char buf[8];
  in->fetch_add(1);
  co_return co_await Recv(fd, buf, sizeof(buf));
}

Task<void> YieldForever(std::atomic<int>* live, std::atomic<int>* in) {
  LiveCounter c(live);
  in->fetch_add(1);
  for (;;) co_await YieldNow();
}

Task<void> Queued(std::atomic<int>* live) {
  LiveCounter c(live);
  co_return;
}

Task<void> WaitOnEvent(Event* e, std::atomic<int>* live,
                       std::atomic<int>* in) {
  LiveCounter c(live);
  in->fetch_add(1);
  co_await e->Wait();
}

TEST_P(RuntimeShutdownTest, EveryTaskLeftIsCancelledAndFreed) {
  const size_t n = GetParam();
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::atomic<int> live{0};
  std::atomic<int> in{0};
  Event never;
  std::vector<JoinHandle<int>> readers;
  std::vector<JoinHandle<void>> others;
  {
    auto rt = MakeRuntime(n);
    ASSERT_NE(rt, nullptr);
    int started = 0;
    for (size_t w = 0; w < n; ++w) {
      RuntimeSpawnOptions o;
      o.placement = Placement::Pinned(w);
      readers.push_back(rt->Spawn(ReadForever(sv[0], &live, &in), o));
      others.push_back(rt->Spawn(YieldForever(&live, &in), o));
      started += 2;
    }
    others.push_back(rt->Spawn(WaitOnEvent(&never, &live, &in)));
    ++started;
    // Wait until each has run (suspended on I/O, yielding, or waiting).
    while (in.load() < started) std::this_thread::yield();
    // And some that may never start: queued behind the yielders.
    for (int i = 0; i < 1000; ++i) others.push_back(rt->Spawn(Queued(&live)));
  }
  for (auto& h : readers) EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  for (size_t i = 0; i < n + 1; ++i) {  // the yielders and the waiter
    EXPECT_EQ(others[i].status(), JoinStatus::kCancelled) << i;
  }
  for (auto& h : others) EXPECT_NE(h.status(), JoinStatus::kPending);
  EXPECT_EQ(live.load(), 0);  // every frame destroyed
  close(sv[0]);
  close(sv[1]);
}

TEST_P(RuntimeShutdownTest, ASpawnerUsedAfterShutdownCancelsAtOnce) {
  RuntimeSpawner sp = [&] {
    auto rt = MakeRuntime(GetParam());
    return rt->GetSpawner();
  }();
  std::atomic<int> live{0};
  JoinHandle<void> h = sp.Spawn(Queued(&live));
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  RuntimeSpawnOptions o;
  o.placement = Placement::Pinned(0);
  JoinHandle<void> p = sp.Spawn(Queued(&live), o);
  EXPECT_EQ(p.status(), JoinStatus::kCancelled);
  EXPECT_EQ(live.load(), 0);
}

Task<void> Tick(std::atomic<int>* ran) {
  ran->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

// Aborts race with workers starting the tasks: each task either ran (and
// completed) or was cancelled without running, never both, never neither.
TEST_P(RuntimeShutdownTest, AbortBeforeOrDuringStartIsExactlyOnce) {
  auto rt = MakeRuntime(GetParam());
  ASSERT_NE(rt, nullptr);
  const int n = kSanitized ? 5'000 : 50'000;
  std::vector<std::atomic<int>> ran(n);
  std::vector<JoinHandle<void>> hs;
  hs.reserve(n);
  for (int i = 0; i < n; ++i) {
    hs.push_back(rt->Spawn(Tick(&ran[i])));
    if (i % 2 == 0) hs.back().Abort();
  }
  int cancelled = 0;
  for (int i = 0; i < n; ++i) {
    const JoinStatus s = hs[i].Wait();
    if (s == JoinStatus::kCancelled) {
      ++cancelled;
      EXPECT_EQ(ran[i].load(), 0) << i;
    } else {
      EXPECT_EQ(s, JoinStatus::kCompleted) << i;
      EXPECT_EQ(ran[i].load(), 1) << i;
    }
  }
  EXPECT_LE(cancelled, n / 2);
}

struct Spawned {
  std::mutex mu;
  std::vector<JoinHandle<void>> handles;
  int outside_runtime = 0;
};

Task<void> SpawnWhileCancelled(std::atomic<int>* live, Spawned* out) {
  // The destructor of this object spawns: at shutdown that spawn is
  // cancelled at once instead of being lost or run.
  struct SpawnOnDestroy {
    std::atomic<int>* live;
    Spawned* out;
    ~SpawnOnDestroy() {
      Runtime* rt = Runtime::Current();
      std::lock_guard<std::mutex> lock(out->mu);
      if (rt == nullptr) {
        out->outside_runtime++;
        return;
      }
      out->handles.push_back(rt->Spawn(Queued(live)));
    }
  } guard{live, out};
  Event never;
  co_await never.Wait();
}

TEST_P(RuntimeShutdownTest, SpawnsFromCancelledTasksAreCancelled) {
  std::atomic<int> live{0};
  Spawned out;
  {
    auto rt = MakeRuntime(GetParam());
    ASSERT_NE(rt, nullptr);
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 10; ++i) {
      hs.push_back(rt->Spawn(SpawnWhileCancelled(&live, &out)));
    }
    // Let every one of them start and suspend.
    rt->BlockOn(executor_testing::YieldThenReturn(3, 0));
  }
  // Each guard ran on a worker (tasks that never started never built one)
  // and its spawn was cancelled, not run and not lost.
  EXPECT_EQ(out.outside_runtime, 0);
  for (auto& h : out.handles) EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(live.load(), 0);
}

// A runtime destroyed from one of its own tasks would join the thread it
// runs on: it fails at once, naming the misuse (before, with 2+ workers the
// destructor hung in shutdown step S3; with 1 the join threw
// std::system_error "Resource deadlock avoided" out of the destructor).
TEST_P(RuntimeShutdownTest, DestroyedFromOneOfItsOwnTasksFailsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const size_t workers = GetParam();
  EXPECT_DEATH(
      {
        Runtime* raw = MakeRuntime(workers).release();
        raw->BlockOn([](Runtime* r) -> Task<void> {
          delete r;
          co_return;
        }(raw));
      },
      "Runtime destroyed from one of its own tasks");
}

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeShutdownTest,
                         ::testing::Values(size_t{1}, size_t{2}, size_t{4},
                                           size_t{8}),
                         runtime_testing::WorkersName);

}  // namespace
}  // namespace spindle
