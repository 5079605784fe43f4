// Poll hooks (budget::HookRegistry) installed on a real executor through
// ExecutorBuilder::Hooks: called around every poll, on yield, on completion
// and on cancellation, and safely replaced while the executor polls.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "budget/hooks.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using budget::HookRegistry;
using budget::PollHooks;
using budget::PollOutcome;
using budget::TaskContext;
using namespace executor_testing;  // NOLINT: test helpers


SpawnOptions Named(const char* name) {
  SpawnOptions o;
  o.name = name;
  return o;
}

std::string NameOf(const TaskContext& c) {
  return c.name != nullptr ? c.name : "?";
}

// Hooks that log every call as "<kind>:<task name>" on the executor thread.
struct EventLog {
  std::vector<std::string> events;
  uint64_t after_ticks = 0;  // sum of after_poll's elapsed_ticks
  int before_without_budget = 0;

  PollHooks Hooks() {
    PollHooks h;
    h.before_poll = [this](const TaskContext& c) {
      // The executor resets the budget and stamps the poll before the hook.
      if (c.budget.Remaining() == 0 || c.poll_start_tick == 0) {
        before_without_budget++;
      }
      events.push_back("B:" + NameOf(c));
    };
    h.after_poll = [this](const TaskContext& c, PollOutcome o, uint64_t e) {
      after_ticks += e;
      events.push_back((o == PollOutcome::kReady ? "R:" : "P:") + NameOf(c));
    };
    h.on_yield = [this](const TaskContext& c) {
      events.push_back("Y:" + NameOf(c));
    };
    h.on_complete = [this](const TaskContext& c) {
      events.push_back("C:" + NameOf(c));
    };
    h.on_cancel = [this](const TaskContext& c) {
      events.push_back("X:" + NameOf(c));
    };
    return h;
  }

  // The kinds of the calls for one task, in order ("BPY" ...).
  std::map<std::string, std::string> ByTask() const {
    std::map<std::string, std::string> m;
    for (const std::string& e : events) m[e.substr(2)] += e[0];
    return m;
  }
  int Count(char kind) const {
    int n = 0;
    for (const std::string& e : events) n += e[0] == kind;
    return n;
  }
};

uint64_t ServiceTicks(const ExecutorStats& s) {
  uint64_t sum = 0;
  for (const QueueStatsSnapshot& q : s.queues) sum += q.sched.service_ticks;
  return sum;
}

TEST(HooksOnExecutorTest, EveryPollIsBracketedAndYieldsAndCompletionsSeen) {
  auto hooks = std::make_shared<HookRegistry>();
  EventLog log;
  hooks->Install(log.Hooks());
  auto ex = MakeExecutor(ExecutorBuilder().Hooks(hooks).NoReactor());
  ASSERT_NE(ex, nullptr);
  JoinHandle<int> y = ex->Spawn(YieldThenReturn(2, 1), Named("y"));
  JoinHandle<int> c = ex->Spawn(Constant(5), Named("c"));
  ex->Run();
  EXPECT_EQ(y.Join(), 1);
  EXPECT_EQ(c.Join(), 5);
  // FIFO: y's first poll, c runs to completion, y's two remaining polls.
  // before_poll opens each poll; after_poll closes it (kPending, or kReady
  // on the last); on_yield follows a yielding poll, on_complete the last.
  const std::vector<std::string> expected = {
      "B:y", "P:y", "Y:y",   // y yields
      "B:c", "R:c", "C:c",   // c completes
      "B:y", "P:y", "Y:y",   // y yields again
      "B:y", "R:y", "C:y"};  // y completes
  EXPECT_EQ(log.events, expected);
  EXPECT_EQ(log.before_without_budget, 0);
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(static_cast<uint64_t>(log.Count('B')), s.polls);
  EXPECT_EQ(static_cast<uint64_t>(log.Count('C')), s.completions);
  // The ticks the hook is told are the ticks charged to the queues.
  EXPECT_EQ(log.after_ticks, ServiceTicks(s));
  ExpectAccounted(*ex);
}

TEST(HooksOnExecutorTest, CancelledTasksGetOnCancelAndNoCompletion) {
  auto hooks = std::make_shared<HookRegistry>();
  EventLog log;
  hooks->Install(log.Hooks());
  auto ex = MakeExecutor(ExecutorBuilder().Hooks(hooks).NoReactor());
  ASSERT_NE(ex, nullptr);
  Gate never;  // never opened

  // Aborted while queued: cancelled without a poll.
  JoinHandle<int> queued = ex->Spawn(Constant(1), Named("queued"));
  queued.Abort();
  // Suspended, then aborted by another task.
  JoinHandle<void> waiting = ex->Spawn(WaitOn(&never), Named("waiting"));
  auto aborter = [&]() -> Task<void> {
    waiting.Abort();
    co_return;
  };
  ex->SpawnDetached(aborter(), Named("aborter"));
  // Ended by an exception: a completion, not a cancellation.
  auto fail = []() -> Task<int> {
    throw std::runtime_error("boom");
    co_return 0;
  };
  JoinHandle<int> failing = ex->Spawn(fail(), Named("failing"));
  ex->Run();
  EXPECT_EQ(queued.status(), JoinStatus::kCancelled);
  EXPECT_EQ(waiting.status(), JoinStatus::kCancelled);
  EXPECT_THROW(failing.Join(), std::runtime_error);

  // Stopped (RequestStop before Run: the next Run stops), never polled.
  JoinHandle<void> stopped = ex->Spawn(WaitOn(&never), Named("stopped"));
  ex->RequestStop();
  ex->Run();
  EXPECT_EQ(stopped.status(), JoinStatus::kCancelled);

  // Dropped at shutdown after one poll.
  JoinHandle<void> dropped = ex->Spawn(WaitOn(&never), Named("dropped"));
  ex->BlockOn(Constant(0));  // polls `dropped` until it suspends
  const ExecutorStats s = ex->Stats();
  EXPECT_EQ(s.cancellations, 3u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.stops, 1u);
  ex.reset();
  EXPECT_EQ(dropped.status(), JoinStatus::kCancelled);

  const std::map<std::string, std::string> by_task = log.ByTask();
  EXPECT_EQ(by_task.at("queued"), "X");
  EXPECT_EQ(by_task.at("waiting"), "BPX");
  EXPECT_EQ(by_task.at("aborter"), "BRC");
  EXPECT_EQ(by_task.at("failing"), "BRC");
  EXPECT_EQ(by_task.at("stopped"), "X");
  EXPECT_EQ(by_task.at("dropped"), "BPX");
  // One call per ended task: on_cancel for each cancellation, on_complete
  // for each completion or failure.
  EXPECT_EQ(log.Count('X'), 4);  // 3 above, and `dropped` at shutdown
  EXPECT_EQ(static_cast<uint64_t>(log.Count('C')), s.completions + s.failed);
}

TEST(HooksOnExecutorTest, ReplacingAndClearingMidRunTakesEffectAtTheNextCall) {
  auto hooks = std::make_shared<HookRegistry>();
  EventLog a, b;
  hooks->Install(a.Hooks());
  auto ex = MakeExecutor(ExecutorBuilder().Hooks(hooks).NoReactor());
  ASSERT_NE(ex, nullptr);
  auto body = [&]() -> Task<void> {
    co_await YieldNow();  // poll 1: all under a
    hooks->Install(b.Hooks());
    co_await YieldNow();  // poll 2: before under a; after, yield under b
    hooks->Clear();
    co_await YieldNow();  // poll 3: before under b; nothing after
    co_return;            // poll 4: no hooks at all
  };
  ex->SpawnDetached(body(), Named("t"));
  ex->Run();
  EXPECT_EQ(ex->Stats().polls, 4u);
  EXPECT_EQ(a.events, (std::vector<std::string>{"B:t", "P:t", "Y:t", "B:t"}));
  EXPECT_EQ(b.events, (std::vector<std::string>{"P:t", "Y:t", "B:t"}));
  EXPECT_TRUE(hooks->empty());
}

TEST(HooksOnExecutorTest, NoCallsWithAnEmptyRegistry) {
  auto hooks = std::make_shared<HookRegistry>();
  auto ex = MakeExecutor(ExecutorBuilder().Hooks(hooks).NoReactor());
  ASSERT_NE(ex, nullptr);
  JoinHandle<int> h = ex->Spawn(YieldThenReturn(3, 7));
  JoinHandle<int> aborted = ex->Spawn(Constant(1));
  aborted.Abort();
  ex->Run();  // nothing installed: nothing to call, nothing breaks
  EXPECT_EQ(h.Join(), 7);
  EXPECT_EQ(aborted.status(), JoinStatus::kCancelled);
  ExpectAccounted(*ex);
}

// One hook set whose calls are counted; a payload it reads on every call
// makes a set freed while in use an asan error, not a silent pass.
struct CountingSet {
  std::atomic<uint64_t> before{0}, after{0}, yield{0}, complete{0}, cancel{0};

  PollHooks Hooks() {
    auto payload = std::make_shared<uint64_t>(1);
    PollHooks h;
    h.before_poll = [this, payload](const TaskContext&) {
      before.fetch_add(*payload, std::memory_order_relaxed);
    };
    h.after_poll = [this, payload](const TaskContext&, PollOutcome, uint64_t) {
      after.fetch_add(*payload, std::memory_order_relaxed);
    };
    h.on_yield = [this, payload](const TaskContext&) {
      yield.fetch_add(*payload, std::memory_order_relaxed);
    };
    h.on_complete = [this, payload](const TaskContext&) {
      complete.fetch_add(*payload, std::memory_order_relaxed);
    };
    h.on_cancel = [this, payload](const TaskContext&) {
      cancel.fetch_add(*payload, std::memory_order_relaxed);
    };
    return h;
  }
};

TEST(HooksOnExecutorTest, SwappingHooksFromAnotherThreadWhileTasksRun) {
  constexpr int kTasks = 8;
  constexpr int kMinYields = 50;
  constexpr uint64_t kMinSwaps = kSanitized ? 500 : 5000;
  auto hooks = std::make_shared<HookRegistry>();
  CountingSet a, b;
  hooks->Install(a.Hooks());  // a set is always installed: no call is lost
  auto ex = MakeExecutor(ExecutorBuilder().Hooks(hooks).NoReactor());
  ASSERT_NE(ex, nullptr);

  std::atomic<uint64_t> swaps{0};
  std::atomic<bool> done{false};
  std::thread swapper([&] {
    for (uint64_t i = 0; !done.load(std::memory_order_relaxed); ++i) {
      hooks->Install(i % 2 == 0 ? b.Hooks() : a.Hooks());
      swaps.fetch_add(1, std::memory_order_relaxed);
    }
  });
  uint64_t total_yields = 0;
  auto body = [&]() -> Task<void> {
    // Keeps polling until the swapper has replaced the set many times and
    // each set has seen polls, so the swaps overlap the polls.
    int n = 0;
    while (n < kMinYields ||
           swaps.load(std::memory_order_relaxed) < kMinSwaps ||
           a.before.load(std::memory_order_relaxed) == 0 ||
           b.before.load(std::memory_order_relaxed) == 0) {
      co_await YieldNow();
      ++n;
    }
    total_yields += static_cast<uint64_t>(n);
  };
  for (int i = 0; i < kTasks; ++i) ex->SpawnDetached(body());
  JoinHandle<void> cancelled = ex->Spawn(body());
  cancelled.Abort();
  ex->Run();
  done.store(true, std::memory_order_relaxed);
  swapper.join();

  // Every call went to exactly one of the sets, whichever was current.
  const ExecutorStats s = ex->Stats();
  EXPECT_GE(swaps.load(), kMinSwaps);
  EXPECT_EQ(a.before + b.before, s.polls);
  EXPECT_EQ(a.after + b.after, s.polls);
  EXPECT_EQ(a.yield + b.yield, total_yields);
  EXPECT_EQ(a.complete + b.complete, static_cast<uint64_t>(kTasks));
  EXPECT_EQ(a.cancel + b.cancel, 1u);
  EXPECT_EQ(s.polls, total_yields + kTasks);
  ExpectAccounted(*ex);
}

}  // namespace
}  // namespace spindle
