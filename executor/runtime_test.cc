// Runtime: exactly-once execution, joins and wakes across workers,
// placement, load spreading, and the builder's errors.  Parameterised over
// 1, 2, 4 and 8 workers; runtime_epoll_test runs it again on epoll.

#include "executor/runtime.h"

#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::kSanitized;
using runtime_testing::Event;
using runtime_testing::MakeRuntime;

class RuntimeTest : public ::testing::TestWithParam<size_t> {
 protected:
  size_t workers() const { return GetParam(); }
};

std::atomic<size_t> g_marked{0};

Task<void> Mark(std::atomic<uint8_t>* slot) {
  slot->fetch_add(1, std::memory_order_relaxed);
  g_marked.fetch_add(1, std::memory_order_release);
  co_return;
}

// Spawns tasks [begin, end) from inside the runtime, as a tree (every task
// spawns up to two halves), so that every worker spawns.
Task<void> SpawnRange(std::atomic<uint8_t>* slots, size_t begin, size_t end) {
  Runtime* rt = Runtime::Current();
  while (end - begin > 64) {
    const size_t mid = begin + (end - begin) / 2;
    rt->SpawnDetached(SpawnRange(slots, mid, end));
    end = mid;
  }
  for (size_t i = begin; i < end; ++i) rt->SpawnDetached(Mark(&slots[i]));
  co_return;
}

TEST_P(RuntimeTest, EveryTaskRunsExactlyOnceFromInsideAndOutside) {
  const size_t n = kSanitized ? 100'000 : 1'000'000;
  auto slots = std::make_unique<std::atomic<uint8_t>[]>(2 * n);
  g_marked.store(0);
  {
    auto rt = MakeRuntime(workers());
    ASSERT_NE(rt, nullptr);
    // Outside: half from this thread and a second one at once.
    RuntimeSpawner sp = rt->GetSpawner();
    std::thread other([&] {
      for (size_t i = n / 2; i < n; ++i) sp.SpawnDetached(Mark(&slots[i]));
    });
    for (size_t i = 0; i < n / 2; ++i) rt->SpawnDetached(Mark(&slots[i]));
    other.join();
    // Inside: a tree of spawns from the workers.
    rt->BlockOn(SpawnRange(slots.get(), n, 2 * n));
    // Detached tasks: wait until 2n of them have run.
    while (g_marked.load(std::memory_order_acquire) < 2 * n) {
      std::this_thread::yield();
    }
    RuntimeStats s = rt->Stats();
    EXPECT_EQ(s.worker_count, workers());
    ASSERT_EQ(s.workers.size(), workers());
    uint64_t spawns = 0;
    for (const ExecutorStats& w : s.workers) spawns += w.spawns;
    // Every task started on exactly one worker (plus the root, the tree's
    // inner tasks and the stats tasks, which are not counted here).
    EXPECT_GE(spawns, 2 * n);
    EXPECT_LE(s.steal_success_rate(), 1.0);
  }
  for (size_t i = 0; i < 2 * n; ++i) {
    ASSERT_EQ(slots[i].load(), 1) << "task " << i;
  }
}

Task<uint64_t> Fib(int n) {
  if (n < 2) co_return static_cast<uint64_t>(n);
  JoinHandle<uint64_t> a = Runtime::Current()->Spawn(Fib(n - 1));
  const uint64_t b = co_await Fib(n - 2);
  co_return co_await a + b;
}

TEST_P(RuntimeTest, ForkJoinComputesTheRightValue) {
  auto rt = MakeRuntime(workers());
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->BlockOn(Fib(kSanitized ? 16 : 22)),
            kSanitized ? 987u : 17711u);
}

// Spawns `n` short stealable tasks (into this worker's deque) and joins
// them all.
Task<int> Burst(int n) {
  std::vector<JoinHandle<int>> hs;
  hs.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    hs.push_back(Runtime::Current()->Spawn(executor_testing::Constant(i)));
  }
  int sum = 0;
  for (JoinHandle<int>& h : hs) sum += co_await h;
  co_return sum;
}

// A worker's slice goes on with the tasks of its own deque when its queue
// runs empty (LocalExecutor::RefillSlice): a burst of short spawned tasks
// takes far fewer slices than polls.  Before, every task taken from the
// deque had a slice (and a clock read, a quota update) of its own.
TEST(RuntimeSliceTest, ABurstOfSpawnedTasksSharesSlices) {
  auto rt = MakeRuntime(1);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->BlockOn(Burst(1000)), 999 * 1000 / 2);
  const RuntimeStats s = rt->Stats();
  ASSERT_EQ(s.workers.size(), 1u);
  EXPECT_GE(s.workers[0].polls, 1000u);
  EXPECT_LT(2 * s.workers[0].slices, s.workers[0].polls)
      << "slices " << s.workers[0].slices << ", polls "
      << s.workers[0].polls;
}

Task<int> OnWorker(size_t* where, int v) {
  *where = *CurrentWorker();
  co_return v;
}

Task<int> JoinOther(Runtime* rt, size_t target, size_t* where) {
  RuntimeSpawnOptions o;
  o.placement = Placement::Pinned(target);
  JoinHandle<int> h = rt->Spawn(OnWorker(where, 7), o);
  co_return co_await h + 1;
}

TEST_P(RuntimeTest, JoinsAcrossWorkers) {
  auto rt = MakeRuntime(workers());
  ASSERT_NE(rt, nullptr);
  const size_t n = workers();
  std::vector<size_t> where(n * n, SIZE_MAX);
  std::vector<JoinHandle<int>> hs;
  for (size_t from = 0; from < n; ++from) {
    for (size_t to = 0; to < n; ++to) {
      RuntimeSpawnOptions o;
      o.placement = Placement::Pinned(from);
      hs.push_back(rt->Spawn(JoinOther(rt.get(), to, &where[from * n + to]),
                             o));
    }
  }
  for (auto& h : hs) EXPECT_EQ(h.Join(), 8);  // from this plain thread
  for (size_t i = 0; i < n * n; ++i) EXPECT_EQ(where[i], i % n);
}

Task<void> PingSide(Event* mine, Event* theirs, int rounds, bool first) {
  for (int i = 0; i < rounds; ++i) {
    if (first) theirs->Set();
    co_await mine->Wait();
    mine->Reset();
    if (!first) theirs->Set();
  }
}

TEST_P(RuntimeTest, CrossWorkerWakesAreNeverLost) {
  const int rounds = kSanitized ? 10'000 : 100'000;
  auto rt = MakeRuntime(workers());
  ASSERT_NE(rt, nullptr);
  Event a, b;
  RuntimeSpawnOptions oa, ob;
  oa.placement = Placement::Pinned(0);
  ob.placement = Placement::Pinned(workers() - 1);
  JoinHandle<void> ha = rt->Spawn(PingSide(&a, &b, rounds, true), oa);
  JoinHandle<void> hb = rt->Spawn(PingSide(&b, &a, rounds, false), ob);
  EXPECT_EQ(ha.Wait(), JoinStatus::kCompleted);
  EXPECT_EQ(hb.Wait(), JoinStatus::kCompleted);
  if (workers() > 1) {
    EXPECT_GT(rt->Stats().parks, 0u);
  }
}

Task<int> Three() { co_return 3; }

// The per-worker snapshots do not count the tasks that take them.
TEST_P(RuntimeTest, StatsOfAnIdleRuntimeShowNoLiveTask) {
  auto rt = MakeRuntime(workers());
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->Spawn(Three()).Join(), 3);
  for (int round = 0; round < 2; ++round) {
    RuntimeStats s = rt->Stats();
    ASSERT_EQ(s.workers.size(), workers());
    uint64_t live = 0;
    uint64_t spawns = 0;
    uint64_t ended = 0;
    for (const ExecutorStats& w : s.workers) {
      live += w.live_tasks;
      spawns += w.spawns;
      ended += w.completions + w.failed + w.cancellations;
    }
    EXPECT_EQ(live, 0u) << "round " << round;
    EXPECT_EQ(spawns, ended) << "round " << round;
  }
}

Task<void> StayPut(size_t expected, std::atomic<int>* wrong) {
  for (int i = 0; i < 20; ++i) {
    if (CurrentWorker() != expected) wrong->fetch_add(1);
    co_await YieldNow();
  }
}

TEST_P(RuntimeTest, PinnedStickyAndRoundRobinTasksStayOnTheirWorker) {
  auto rt = MakeRuntime(workers());
  ASSERT_NE(rt, nullptr);
  const size_t n = workers();
  std::atomic<int> wrong{0};
  std::vector<JoinHandle<void>> hs;
  for (size_t i = 0; i < 4 * n; ++i) {
    RuntimeSpawnOptions o;
    o.placement = Placement::Pinned(i % n);
    hs.push_back(rt->Spawn(StayPut(i % n, &wrong), o));
  }
  // Sticky: the same key lands on the same worker every time.
  std::vector<size_t> where(16, SIZE_MAX);
  for (int round = 0; round < 2; ++round) {
    std::vector<size_t> now(16, SIZE_MAX);
    std::vector<JoinHandle<int>> sticky;
    for (size_t k = 0; k < 16; ++k) {
      RuntimeSpawnOptions o;
      o.placement = Placement::Sticky(k * 7919);
      sticky.push_back(rt->Spawn(OnWorker(&now[k], 0), o));
    }
    for (auto& h : sticky) (void)h.Join();
    if (round == 0) where = now;
    EXPECT_EQ(now, where);
  }
  // Round robin: n consecutive spawns cover every worker.
  std::vector<size_t> rr(n, SIZE_MAX);
  std::vector<JoinHandle<int>> rrh;
  for (size_t i = 0; i < n; ++i) {
    RuntimeSpawnOptions o;
    o.placement = Placement::RoundRobin();
    rrh.push_back(rt->Spawn(OnWorker(&rr[i], 0), o));
  }
  for (auto& h : rrh) (void)h.Join();
  std::vector<bool> seen(n, false);
  for (size_t w : rr) seen.at(w) = true;
  for (size_t w = 0; w < n; ++w) EXPECT_TRUE(seen[w]) << "worker " << w;
  for (auto& h : hs) EXPECT_EQ(h.Wait(), JoinStatus::kCompleted);
  EXPECT_EQ(wrong.load(), 0);
}

struct Spread {
  explicit Spread(size_t n) : per_worker(n) {}
  std::vector<std::atomic<uint64_t>> per_worker;
  std::atomic<size_t> distinct{0};
};

// Each task blocks its worker until every worker has started one of them
// (or 30 s have passed, which fails the test instead of hanging it): the
// tasks queued behind a blocked worker can only finish by being stolen, so
// every worker must take some.
Task<void> Busy(Spread* s) {
  const size_t w = *CurrentWorker();
  if (s->per_worker[w].fetch_add(1) == 0) s->distinct.fetch_add(1);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (s->distinct.load() < s->per_worker.size() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  co_return;
}

Task<void> SpawnAllHere(int n, Spread* s) {
  std::vector<JoinHandle<void>> hs;
  hs.reserve(n);
  for (int i = 0; i < n; ++i) {
    hs.push_back(Runtime::Current()->Spawn(Busy(s)));
  }
  for (auto& h : hs) co_await h;
}

TEST_P(RuntimeTest, SkewedLoadSpreadsToEveryWorker) {
  auto rt = MakeRuntime(workers());
  ASSERT_NE(rt, nullptr);
  Spread spread(workers());
  RuntimeSpawnOptions o;
  o.placement = Placement::Pinned(0);
  JoinHandle<void> h = rt->Spawn(SpawnAllHere(4000, &spread), o);
  EXPECT_EQ(h.Wait(), JoinStatus::kCompleted);
  uint64_t total = 0;
  for (size_t w = 0; w < workers(); ++w) {
    EXPECT_GT(spread.per_worker[w].load(), 0u)
        << "worker " << w << " ran nothing";
    total += spread.per_worker[w].load();
  }
  EXPECT_EQ(total, 4000u);
  if (workers() > 1) {
    // Taken from worker 0: stolen from its deque, or from the injector its
    // full deque overflowed into.
    const steal::StealStats st = rt->Stats().steal;
    EXPECT_GT(st.tasks_stolen + st.injected_tasks, 0u);
  }
}

Task<void> Short(std::atomic<int>* done) {
  done->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

// Bursts of tiny stealable tasks, each burst joined before the next: the
// other workers run dry between bursts and search again at each one.
Task<void> Bursts(int bursts, int width, std::atomic<int>* done) {
  std::vector<JoinHandle<void>> hs;
  hs.reserve(width);
  for (int b = 0; b < bursts; ++b) {
    hs.clear();
    for (int i = 0; i < width; ++i) {
      hs.push_back(Runtime::Current()->Spawn(Short(done)));
    }
    for (auto& h : hs) co_await h;
  }
}

// A burst far past the stealable queue's knob, spawned in one poll: every
// task runs once.  With 2+ workers the surplus goes to the injector (in
// batches, with the deque's older half); a single worker queues its own
// spawns in its executor at once, so nothing overflows.
TEST_P(RuntimeTest, ABurstPastTheStealableQueueCapacityRunsEveryTaskOnce) {
  steal::StealOptions so;
  so.stealable_queue_capacity = 8;
  RuntimeBuilder b;
  b.Workers(workers()).Steal(so);
  auto rt = MakeRuntime(b);
  ASSERT_NE(rt, nullptr);
  const int n = kSanitized ? 1000 : 5000;
  std::atomic<int> done{0};
  RuntimeSpawnOptions o;
  o.placement = Placement::Pinned(0);
  EXPECT_EQ(rt->Spawn(Bursts(1, n, &done), o).Wait(), JoinStatus::kCompleted);
  EXPECT_EQ(done.load(), n);
  const RuntimeStats st = rt->Stats();
  if (workers() == 1) {
    EXPECT_EQ(st.overflowed, 0u);
    EXPECT_GE(st.steal.local_tasks, static_cast<uint64_t>(n));
  } else {
    EXPECT_GT(st.overflowed, 0u);
  }
}

// At most half the workers (rounded up) search for work at once, however
// often they run dry; every task still runs exactly once.
TEST_P(RuntimeTest, AtMostHalfTheWorkersSearchAtOnce) {
  auto rt = MakeRuntime(workers());
  ASSERT_NE(rt, nullptr);
  const int bursts = kSanitized ? 100 : 1000;
  const int width = 32;
  std::atomic<int> done{0};
  // Two roots, so that two workers spawn bursts at once.
  JoinHandle<void> a = rt->Spawn(Bursts(bursts, width, &done));
  JoinHandle<void> b = rt->Spawn(Bursts(bursts, width, &done));
  EXPECT_EQ(a.Wait(), JoinStatus::kCompleted);
  EXPECT_EQ(b.Wait(), JoinStatus::kCompleted);
  EXPECT_EQ(done.load(), 2 * bursts * width);
  const RuntimeStats st = rt->Stats();
  EXPECT_LE(st.max_searching, (workers() + 1) / 2)
      << "searches refused: " << st.searches_refused;
  if (workers() > 1) {
    EXPECT_GE(st.max_searching, 1u);
  }
}

// Queues 1000 short tasks behind itself, then blocks its worker for at
// least 300 ms (the monitor's stuck report), and on until they have all run
// (at most 30 s: the other workers may get little CPU on a loaded machine):
// the others take them meanwhile, since this worker never returns to its
// loop before the count is read.
Task<int> BlockWorker(std::atomic<int>* done) {
  for (int i = 0; i < 1000; ++i) Runtime::Current()->SpawnDetached(Short(done));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 3000 && done->load(std::memory_order_relaxed) < 1000;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  co_return done->load(std::memory_order_relaxed);
}

TEST_P(RuntimeTest, TasksQueuedBehindABlockedWorkerRunElsewhere) {
  if (workers() < 2) GTEST_SKIP() << "needs a second worker";
  auto rt = MakeRuntime(workers());
  ASSERT_NE(rt, nullptr);
  std::atomic<int> done{0};
  EXPECT_EQ(rt->BlockOn(BlockWorker(&done)), 1000);
  // The monitor saw the 300 ms poll (stuck threshold: 100 ms by default).
  EXPECT_GE(rt->Stats().stuck_reports, 1u);
}

Task<int> SendAll(int fd, int messages) {
  int sent = 0;
  for (int i = 0; i < messages; ++i) {
    const uint32_t v = static_cast<uint32_t>(i);
    if (co_await Send(fd, &v, sizeof(v)) != sizeof(v)) co_return -1;
    ++sent;
    co_await SleepFor(std::chrono::microseconds(10));
  }
  co_return sent;
}

Task<int> ReceiveAll(int fd, int messages) {
  uint32_t expect = 0;
  uint32_t v = 0;
  size_t have = 0;
  while (expect < static_cast<uint32_t>(messages)) {
    const int n = co_await Recv(fd, reinterpret_cast<char*>(&v) + have,
                                sizeof(v) - have);
    if (n <= 0) co_return -1;
    have += static_cast<size_t>(n);
    if (have < sizeof(v)) continue;
    if (v != expect) co_return -2;
    ++expect;
    have = 0;
  }
  co_return static_cast<int>(expect);
}

// Socket I/O and timers on two different workers, each on its own ring.
TEST_P(RuntimeTest, IoAndTimersWorkOnEveryWorker) {
  auto rt = MakeRuntime(workers());
  ASSERT_NE(rt, nullptr);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const int messages = kSanitized ? 200 : 1000;
  RuntimeSpawnOptions first, last;
  first.placement = Placement::Pinned(0);
  last.placement = Placement::Pinned(workers() - 1);
  JoinHandle<int> r = rt->Spawn(ReceiveAll(sv[1], messages), last);
  JoinHandle<int> w = rt->Spawn(SendAll(sv[0], messages), first);
  EXPECT_EQ(w.Join(), messages);
  EXPECT_EQ(r.Join(), messages);
  close(sv[0]);
  close(sv[1]);
}

INSTANTIATE_TEST_SUITE_P(Workers, RuntimeTest,
                         ::testing::Values(size_t{1}, size_t{2}, size_t{4},
                                           size_t{8}),
                         runtime_testing::WorkersName);

Task<int> Throws() {
  throw std::runtime_error("boom");
  co_return 0;
}

Task<int> BlockOnInside(Runtime* rt) {
  try {
    (void)rt->BlockOn(executor_testing::Constant(1));
  } catch (const TaskMisuseError&) {
    co_return 1;
  }
  co_return 0;
}

TEST(RuntimeMisuseTest, ExceptionsAndBlockingCallsInsideTasks) {
  auto rt = MakeRuntime(2);
  ASSERT_NE(rt, nullptr);
  EXPECT_THROW(rt->BlockOn(Throws()), std::runtime_error);
  EXPECT_EQ(rt->BlockOn(BlockOnInside(rt.get())), 1);
  EXPECT_EQ(Runtime::Current(), nullptr);
  EXPECT_EQ(CurrentWorker(), std::nullopt);
}

TEST(RuntimeBuilderTest, BadValuesNameTheValueAndTheRange) {
  auto zero = RuntimeBuilder().Workers(0).Build();
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(zero.status().message().find("Workers(0)"), std::string::npos);
  EXPECT_NE(zero.status().message().find("[1, 1024]"), std::string::npos);
  auto cpu = RuntimeBuilder().ThreadAffinity({-1}).Build();
  ASSERT_FALSE(cpu.ok());
  EXPECT_NE(cpu.status().message().find("CPU -1"), std::string::npos);
  steal::StealOptions bad;
  bad.batch_size = 0;
  auto st = RuntimeBuilder().Steal(bad).Build();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("batch_size"), std::string::npos);
  auto q = RuntimeBuilder().Workers(2).WithQueue(1, 0).Build();
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("worker 0"), std::string::npos);
}

Task<int> WhichCpu() { co_return sched_getcpu(); }

TEST(RuntimeBuilderTest, ThreadAffinityPinsTheWorkers) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  int cpu = 0;
  while (!CPU_ISSET(cpu, &set)) ++cpu;
  auto rt = RuntimeBuilder().Workers(2).ThreadAffinity({cpu}).Build();
  ASSERT_TRUE(rt.ok()) << rt.status();
  for (size_t w = 0; w < 2; ++w) {
    RuntimeSpawnOptions o;
    o.placement = Placement::Pinned(w);
    EXPECT_EQ((*rt)->Spawn(WhichCpu(), o).Join(), cpu) << "worker " << w;
  }
}

TEST(RuntimeBuilderTest, DefaultsToTheCpusTheProcessMayUse) {
  auto rt = RuntimeBuilder().Build();
  ASSERT_TRUE(rt.ok()) << rt.status();
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ((*rt)->worker_count(), static_cast<size_t>(CPU_COUNT(&set)));
}

}  // namespace
}  // namespace spindle
