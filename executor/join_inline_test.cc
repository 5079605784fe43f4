// Inline joins (executor/join_inline.cc): a task that awaits the handle of
// its newest stealable spawn, not started yet, runs it inside its own poll.
// What must not change: values, exceptions, cancellation (the inline task's
// destructors run when its joiner is cancelled or the runtime shuts down),
// the task's own id and name inside it, and ExecutorStats' balance.  What
// must not run inline: an older spawn, an aborted one, one of another
// priority, a fiber, one joined by a fiber, and any under task timing.

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include "budget/hooks.h"
#include "executor/executor.h"
#include "executor/fiber.h"
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

struct Seen {
  uint64_t id = 0;
  const char* name = nullptr;
};

Task<int> Record(Seen* seen, int v) {
  const budget::TaskContext* ctx = CurrentTaskContext();
  seen->id = ctx->task_id;
  seen->name = ctx->name;
  co_return v;
}

struct JoinResult {
  uint64_t handle_id = 0;
  uint64_t joiner_before = 0;
  uint64_t joiner_after = 0;
  const char* joiner_name_after = nullptr;
  int value = 0;
  JoinStatus status = JoinStatus::kPending;
};

Task<void> SpawnAndJoin(Seen* child, JoinResult* out, SpawnOptions opts) {
  out->joiner_before = CurrentTaskContext()->task_id;
  RuntimeSpawnOptions o;
  static_cast<SpawnOptions&>(o) = opts;
  JoinHandle<int> h = Runtime::Current()->Spawn(Record(child, 7), o);
  out->handle_id = h.id();
  out->value = co_await h;
  out->status = h.status();
  out->joiner_after = CurrentTaskContext()->task_id;
  out->joiner_name_after = CurrentTaskContext()->name;
}

// spawns + moved_in == completions + failed + cancellations + moved_out +
// live_tasks on every worker (executor/executor_stats.h).
void ExpectBalanced(const RuntimeStats& s) {
  for (size_t w = 0; w < s.workers.size(); ++w) {
    const ExecutorStats& e = s.workers[w];
    EXPECT_EQ(e.spawns + e.moved_in, e.completions + e.failed +
                                         e.cancellations + e.moved_out +
                                         e.live_tasks)
        << "worker " << w;
  }
}

TEST(JoinInlineTest, TheNewestSpawnJoinedAtOnceRunsInsideTheJoinersPoll) {
  auto rt = MakeRuntime(1);
  ASSERT_NE(rt, nullptr);
  Seen child;
  JoinResult r;
  SpawnOptions opts;
  opts.name = "child";
  rt->BlockOn(SpawnAndJoin(&child, &r, opts));
  EXPECT_EQ(r.value, 7);
  EXPECT_EQ(r.status, JoinStatus::kCompleted);
  // Inside, the task saw its own id and name; the joiner has its own back.
  EXPECT_EQ(child.id, r.handle_id);
  EXPECT_EQ(std::string_view(child.name), "child");
  EXPECT_NE(r.joiner_before, r.handle_id);
  EXPECT_EQ(r.joiner_after, r.joiner_before);
  EXPECT_EQ(r.joiner_name_after, nullptr);
  const RuntimeStats s = rt->Stats();
  EXPECT_EQ(s.joins_inlined, 1u);
  ExpectBalanced(s);
}

TEST(JoinInlineTest, ASpawnOfAnotherPriorityIsJoinedTheUsualWay) {
  auto rt = MakeRuntime(1);
  ASSERT_NE(rt, nullptr);
  Seen child;
  JoinResult r;
  SpawnOptions opts;
  opts.priority = Priority::kHigh;
  rt->BlockOn(SpawnAndJoin(&child, &r, opts));
  EXPECT_EQ(r.value, 7);
  EXPECT_EQ(child.id, r.handle_id);
  EXPECT_EQ(rt->Stats().joins_inlined, 0u);
}

Task<int> JoinTheOlder(Seen* a_seen, Seen* b_seen) {
  JoinHandle<int> a = Runtime::Current()->Spawn(Record(a_seen, 1));
  JoinHandle<int> b = Runtime::Current()->Spawn(Record(b_seen, 2));
  const int va = co_await a;  // b is the newest: a waits its turn
  co_return va + co_await b;
}

TEST(JoinInlineTest, AnOlderSpawnIsJoinedTheUsualWay) {
  auto rt = MakeRuntime(1);
  ASSERT_NE(rt, nullptr);
  Seen a, b;
  EXPECT_EQ(rt->BlockOn(JoinTheOlder(&a, &b)), 3);
  EXPECT_NE(a.id, b.id);
  const RuntimeStats s = rt->Stats();
  EXPECT_EQ(s.joins_inlined, 0u);
  ExpectBalanced(s);
}

Task<int> Throws() {
  throw std::runtime_error("inline boom");
  co_return 0;
}

Task<std::string> JoinAThrower(JoinStatus* status) {
  JoinHandle<int> h = Runtime::Current()->Spawn(Throws());
  try {
    (void)co_await h;
  } catch (const std::runtime_error& e) {
    *status = h.status();
    co_return e.what();
  }
  co_return "no exception";
}

TEST(JoinInlineTest, AnExceptionOfAnInlineTaskSurfacesAtTheJoin) {
  auto rt = MakeRuntime(1);
  ASSERT_NE(rt, nullptr);
  JoinStatus status = JoinStatus::kPending;
  EXPECT_EQ(rt->BlockOn(JoinAThrower(&status)), "inline boom");
  EXPECT_EQ(status, JoinStatus::kFailed);
  const RuntimeStats s = rt->Stats();
  EXPECT_EQ(s.joins_inlined, 1u);
  ASSERT_EQ(s.workers.size(), 1u);
  EXPECT_EQ(s.workers[0].failed, 1u);
  EXPECT_EQ(s.workers[0].unhandled_exceptions, 0u);
  ExpectBalanced(s);
}

Task<int> MustNotRun(std::atomic<bool>* ran) {
  ran->store(true);
  co_return 1;
}

Task<bool> AbortThenJoin(std::atomic<bool>* ran) {
  JoinHandle<int> h = Runtime::Current()->Spawn(MustNotRun(ran));
  h.Abort();
  try {
    (void)co_await h;
  } catch (const TaskCancelledError&) {
    co_return true;
  }
  co_return false;
}

TEST(JoinInlineTest, AnAbortedSpawnIsCancelledNotRunInline) {
  auto rt = MakeRuntime(1);
  ASSERT_NE(rt, nullptr);
  std::atomic<bool> ran{false};
  EXPECT_TRUE(rt->BlockOn(AbortThenJoin(&ran)));
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(rt->Stats().joins_inlined, 0u);
}

Task<int> WaitHolding(Event* never, std::atomic<int>* live) {
  LiveCounter c(live);
  co_await never->Wait();
  co_return 1;
}

Task<int> JoinAWaiter(Event* never, std::atomic<int>* live) {
  co_return co_await Runtime::Current()->Spawn(WaitHolding(never, live));
}

// The joiner is cancelled while the task it runs inline waits: the task's
// frame goes with it (its locals' destructors run), and it counts as
// cancelled.
TEST(JoinInlineTest, CancellingTheJoinerDestroysTheInlineTask) {
  auto rt = MakeRuntime(1);
  ASSERT_NE(rt, nullptr);
  Event never;
  std::atomic<int> live{0};
  JoinHandle<int> joiner = rt->Spawn(JoinAWaiter(&never, &live));
  while (live.load() == 0) std::this_thread::yield();
  joiner.Abort();
  EXPECT_EQ(joiner.Wait(), JoinStatus::kCancelled);
  EXPECT_EQ(live.load(), 0);
  const RuntimeStats s = rt->Stats();
  EXPECT_EQ(s.joins_inlined, 1u);
  ASSERT_EQ(s.workers.size(), 1u);
  EXPECT_EQ(s.workers[0].cancellations, 2u);  // the joiner and the task
  ExpectBalanced(s);
}

TEST(JoinInlineTest, ShutdownDestroysAnInlineTaskThatWaits) {
  std::atomic<int> live{0};
  Event never;
  JoinHandle<int> joiner;
  {
    auto rt = MakeRuntime(1);
    ASSERT_NE(rt, nullptr);
    joiner = rt->Spawn(JoinAWaiter(&never, &live));
    while (live.load() == 0) std::this_thread::yield();
    EXPECT_EQ(rt->Stats().joins_inlined, 1u);
  }
  EXPECT_EQ(live.load(), 0);
  EXPECT_EQ(joiner.status(), JoinStatus::kCancelled);
}

// Builds a one-worker runtime from `b` and runs one spawn-and-join on it.
std::unique_ptr<Runtime> JoinOnce(RuntimeBuilder& b) {
  auto rt = MakeRuntime(b.Workers(1));
  if (rt == nullptr) return nullptr;
  Seen child;
  JoinResult r;
  rt->BlockOn(SpawnAndJoin(&child, &r, {}));
  EXPECT_EQ(r.value, 7);
  return rt;
}

TEST(JoinInlineTest, TaskTimingKeepsEveryJoinOnItsOwnTimeline) {
  RuntimeBuilder b;
  b.TaskTiming();
  auto rt = JoinOnce(b);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->Stats().joins_inlined, 0u);
}

// With hooks every task's polls and completion reach them: no inline joins.
TEST(JoinInlineTest, HooksSeeEveryJoinedTaskComplete) {
  auto registry = std::make_shared<budget::HookRegistry>();
  std::atomic<int> completed{0};
  budget::PollHooks hooks;
  hooks.on_complete = [&completed](const budget::TaskContext&) {
    completed.fetch_add(1);
  };
  registry->Install(std::move(hooks));
  RuntimeBuilder b;
  b.Hooks(registry);
  auto rt = JoinOnce(b);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(completed.load(), 2);  // the root and the joined task
  EXPECT_EQ(rt->Stats().joins_inlined, 0u);
}

TEST(JoinInlineTest, FibersJoinAndAreJoinedTheUsualWay) {
  auto rt = MakeRuntime(1);
  ASSERT_NE(rt, nullptr);
  // A fiber joins a coroutine.
  JoinHandle<int> f = rt->SpawnFiber([] {
    Seen seen;
    return this_fiber::Await(Runtime::Current()->Spawn(Record(&seen, 5)));
  });
  EXPECT_EQ(f.Join(), 5);
  // A coroutine joins a fiber.
  auto joins_fiber = []() -> Task<int> {
    co_return co_await Runtime::Current()->SpawnFiber([] { return 6; });
  };
  EXPECT_EQ(rt->BlockOn(joins_fiber()), 6);
  EXPECT_EQ(rt->Stats().joins_inlined, 0u);
}

Task<uint64_t> Fib(int n) {
  if (n < 2) co_return static_cast<uint64_t>(n);
  JoinHandle<uint64_t> a = Runtime::Current()->Spawn(Fib(n - 1));
  const uint64_t b = co_await Fib(n - 2);
  co_return co_await a + b;
}

Task<void> Yielder(std::atomic<bool>* stop, std::atomic<uint64_t>* turns) {
  while (!stop->load()) {
    turns->fetch_add(1);
    co_await YieldNow();
  }
}

Task<uint64_t> CountTurnsAround(Task<uint64_t> work,
                                std::atomic<uint64_t>* turns,
                                uint64_t* during) {
  const uint64_t before = turns->load();
  const uint64_t v = co_await std::move(work);
  *during = turns->load() - before;
  co_return v;
}

// Inline joins consume the joiner's budget (and look at its deadline, due
// I/O and timers) as YieldMaybe does: a fork-join tree gives way to the
// worker's other tasks between polls of a budget's length, instead of
// running as one poll of the whole tree.
TEST(JoinInlineTest, AForkJoinTreeGivesWayWhenItsBudgetIsSpent) {
  auto rt = MakeRuntime(1);
  ASSERT_NE(rt, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> turns{0};
  JoinHandle<void> y = rt->Spawn(Yielder(&stop, &turns));
  while (turns.load() == 0) std::this_thread::yield();
  uint64_t during = 0;
  // fib(20) joins 10,945 times; a poll's budget is 2,000 operations.
  EXPECT_EQ(rt->BlockOn(CountTurnsAround(Fib(20), &turns, &during)), 6765u);
  stop.store(true);
  EXPECT_EQ(y.Wait(), JoinStatus::kCompleted);
  EXPECT_GE(during, 4u);
  EXPECT_GT(rt->Stats().joins_inlined, 0u);
}

// ---- On a LocalExecutor: a task of the same executor, queued by its
// spawn and never polled, runs inside its joiner's poll.

Task<uint64_t> LocalFib(int n) {
  if (n < 2) co_return static_cast<uint64_t>(n);
  JoinHandle<uint64_t> a = CurrentExecutor()->Spawn(LocalFib(n - 1));
  const uint64_t b = co_await LocalFib(n - 2);
  co_return co_await a + b;
}

void RunIdle(LocalExecutor& ex) {
  LocalExecutor::RunLimits l;
  l.until_idle = true;
  const LocalExecutor::RunStatus st = ex.RunFor(l);
  EXPECT_TRUE(st == LocalExecutor::RunStatus::kIdle ||
              st == LocalExecutor::RunStatus::kDone);
}

void ExpectBalanced(const ExecutorStats& e) {
  EXPECT_EQ(e.spawns + e.moved_in, e.completions + e.failed +
                                       e.cancellations + e.moved_out +
                                       e.live_tasks);
}

TEST(JoinInlineLocalTest, ASpawnJoinedBeforeItRanRunsInsideTheJoinersPoll) {
  auto ex = executor_testing::MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Seen child;
  uint64_t handle_id = 0;
  auto joiner = [](Seen* c, uint64_t* id) -> Task<int> {
    JoinHandle<int> h = CurrentExecutor()->Spawn(Record(c, 9));
    *id = h.id();
    co_return co_await h;
  };
  EXPECT_EQ(ex->BlockOn(joiner(&child, &handle_id)), 9);
  EXPECT_EQ(child.id, handle_id);
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.joins_inlined, 1u);
  EXPECT_EQ(s.live_tasks, 0u);
  ExpectBalanced(s);
}

TEST(JoinInlineLocalTest, ForkJoinRunsDepthFirst) {
  auto ex = executor_testing::MakeExecutor();
  ASSERT_NE(ex, nullptr);
  EXPECT_EQ(ex->BlockOn(LocalFib(kSanitized ? 15 : 20)),
            kSanitized ? 610u : 6765u);
  const ExecutorStats s = ex->Stats();
  EXPECT_GT(s.joins_inlined, 0u);
  ExpectBalanced(s);
}

Task<int> YieldsOnce(std::atomic<int>* polls) {
  polls->fetch_add(1);
  co_await YieldNow();
  polls->fetch_add(1);
  co_return 4;
}

// A task that has run once is joined the usual way: it may hold Wakers or
// wait on something, and only a task queued by its spawn is taken back.
TEST(JoinInlineLocalTest, ATaskThatHasRunIsJoinedTheUsualWay) {
  auto ex = executor_testing::MakeExecutor();
  ASSERT_NE(ex, nullptr);
  std::atomic<int> polls{0};
  auto joiner = [](std::atomic<int>* p) -> Task<int> {
    JoinHandle<int> h = CurrentExecutor()->Spawn(YieldsOnce(p));
    co_await YieldNow();  // the task runs once and yields: queued again
    co_return co_await h;
  };
  EXPECT_EQ(ex->BlockOn(joiner(&polls)), 4);
  EXPECT_EQ(polls.load(), 2);
  EXPECT_EQ(ex->Stats().joins_inlined, 0u);
}

TEST(JoinInlineLocalTest, CancellingTheJoinerDestroysTheInlineTask) {
  auto ex = executor_testing::MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Event never;
  std::atomic<int> live{0};
  auto joiner = [](Event* e, std::atomic<int>* l) -> Task<int> {
    co_return co_await CurrentExecutor()->Spawn(WaitHolding(e, l));
  };
  JoinHandle<int> h = ex->Spawn(joiner(&never, &live));
  RunIdle(*ex);
  EXPECT_EQ(live.load(), 1);
  EXPECT_EQ(ex->Stats().joins_inlined, 1u);
  h.Abort();
  RunIdle(*ex);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(live.load(), 0);
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.cancellations, 2u);
  ExpectBalanced(s);
}

TEST(JoinInlineLocalTest, DestroyingTheExecutorDestroysTheInlineTask) {
  Event never;
  std::atomic<int> live{0};
  JoinHandle<int> h;
  {
    auto ex = executor_testing::MakeExecutor();
    ASSERT_NE(ex, nullptr);
    auto joiner = [](Event* e, std::atomic<int>* l) -> Task<int> {
      co_return co_await CurrentExecutor()->Spawn(WaitHolding(e, l));
    };
    h = ex->Spawn(joiner(&never, &live));
    RunIdle(*ex);
    EXPECT_EQ(live.load(), 1);
  }
  EXPECT_EQ(live.load(), 0);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

class JoinInlineWorkersTest : public ::testing::TestWithParam<size_t> {};

// Fork-join on every worker count: inline joins beside stolen children
// (joined the usual way, across workers), the right value, every task
// counted once.
TEST_P(JoinInlineWorkersTest, ForkJoinBalancesOnEveryWorker) {
  auto rt = MakeRuntime(GetParam());
  ASSERT_NE(rt, nullptr);
  const int n = kSanitized ? 15 : 20;
  const uint64_t want = kSanitized ? 610 : 6765;
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(rt->BlockOn(Fib(n)), want);
  }
  const RuntimeStats s = rt->Stats();
  EXPECT_GT(s.joins_inlined, 0u);
  uint64_t spawns = 0;
  for (const ExecutorStats& e : s.workers) spawns += e.spawns;
  EXPECT_GE(spawns, s.joins_inlined);
  ExpectBalanced(s);
}

INSTANTIATE_TEST_SUITE_P(Workers, JoinInlineWorkersTest,
                         ::testing::Values(size_t{1}, size_t{2}, size_t{4},
                                           size_t{8}),
                         runtime_testing::WorkersName);

}  // namespace
}  // namespace spindle
