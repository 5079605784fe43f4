// One priority model on a real executor: SpawnOptions::priority orders the
// tasks of every default FIFO queue (high, normal, low; FIFO within one) and
// sets the tiers' budget; a scheduler the user picks may ignore it.

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "budget/tier.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "reactor/reactor.h"
#include "sched/scheduler.h"

namespace spindle {
namespace {

using namespace executor_testing;  // NOLINT: test helpers

static_assert(std::is_same_v<Priority, sched::Priority>);
static_assert(std::is_same_v<IoPriority, reactor::IoPriority>);

// Records `id`, yields once, records `id` again.
Task<void> TwoSteps(std::vector<int>* order, int id) {
  order->push_back(id);
  co_await YieldNow();
  order->push_back(id);
}

SpawnOptions WithPriority(Priority p) {
  SpawnOptions o;
  o.priority = p;
  return o;
}

constexpr Priority kMixed[] = {Priority::kLow,    Priority::kNormal,
                               Priority::kHigh,   Priority::kNormal,
                               Priority::kLow,    Priority::kHigh};
// kMixed's indices in run order; each task's yield puts it at the back of
// its own priority, still ahead of every lower one.
const std::vector<int> kMixedOrder = {2, 5, 2, 5, 1, 3, 1, 3, 0, 4, 0, 4};

TEST(PriorityTest, DefaultQueueRunsHighThenNormalThenLowFifoWithinOne) {
  auto ex = MakeExecutor(ExecutorBuilder().NoTiers().NoReactor());
  ASSERT_NE(ex, nullptr);
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) {
    ex->SpawnDetached(TwoSteps(&order, i), WithPriority(kMixed[i]));
  }
  ex->Run();
  EXPECT_EQ(order, kMixedOrder);
  ExpectAccounted(*ex);
}

TEST(PriorityTest, TasksFromASpawnerAreOrderedTheSameWay) {
  auto ex = MakeExecutor(ExecutorBuilder().NoTiers().NoReactor());
  ASSERT_NE(ex, nullptr);
  Spawner spawner = ex->GetSpawner();
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) {
    spawner.SpawnDetached(TwoSteps(&order, i), WithPriority(kMixed[i]));
  }
  ex->Run();
  EXPECT_EQ(order, kMixedOrder);
}

TEST(PriorityTest, EveryFifoQueueOrdersItsOwnTasksByPriority) {
  // Two FIFO queues (one default-made, one given explicitly): EEVDF
  // interleaves the queues; within each, the priority order holds.
  auto ex = MakeExecutor(
      ExecutorBuilder()
          .WithQueue(1, 1)
          .WithQueue(2, 1, std::make_unique<sched::FifoScheduler>())
          .NoTiers()
          .NoReactor());
  ASSERT_NE(ex, nullptr);
  std::vector<int> order[2];
  for (int q = 0; q < 2; ++q) {
    for (int i = 0; i < 6; ++i) {
      SpawnOptions o = WithPriority(kMixed[i]);
      o.queue = static_cast<QueueId>(q + 1);
      ex->SpawnDetached(TwoSteps(&order[q], i), o);
    }
  }
  ex->Run();
  EXPECT_EQ(order[0], kMixedOrder);
  EXPECT_EQ(order[1], kMixedOrder);
}

TEST(PriorityTest, AHighTaskSpawnedByARunningTaskOvertakesQueuedNormalOnes) {
  auto ex = MakeExecutor(ExecutorBuilder().NoTiers().NoReactor());
  ASSERT_NE(ex, nullptr);
  std::vector<int> order;
  auto first = [&]() -> Task<void> {
    order.push_back(0);
    CurrentExecutor()->SpawnDetached(TwoSteps(&order, 9),
                                     WithPriority(Priority::kHigh));
    co_await YieldNow();
    order.push_back(0);
  };
  ex->SpawnDetached(first());
  ex->SpawnDetached(TwoSteps(&order, 1));
  ex->SpawnDetached(TwoSteps(&order, 2));
  ex->Run();
  // A plain FIFO would run 0, 1, 2, 9, ...
  EXPECT_EQ(order, (std::vector<int>{0, 9, 9, 1, 2, 0, 1, 2}));
}

TEST(PriorityTest, PrioritySetsTheTiersBudget) {
  // One Priority for the scheduler and the tiers: a high task's poll budget
  // is the tiers' high column, a low task's the low column.
  auto ex = MakeExecutor(
      ExecutorBuilder().Tiers(budget::TierConfig::Balanced()).NoReactor());
  ASSERT_NE(ex, nullptr);
  ASSERT_NE(ex->tier_manager(), nullptr);
  const budget::TierPolicy& policy = ex->tier_manager()->policy();
  struct Seen {
    budget::TaskPriority priority = budget::TaskPriority::kCritical;
    uint32_t budget = 0;
  };
  Seen seen[3];
  auto probe = [](Seen* out) -> Task<void> {
    const budget::TaskContext* ctx = CurrentTaskContext();
    out->priority = ctx->priority;
    out->budget = ctx->budget.Remaining();
    co_return;
  };
  const Priority prios[] = {Priority::kHigh, Priority::kNormal,
                            Priority::kLow};
  for (int i = 0; i < 3; ++i) {
    ex->SpawnDetached(probe(&seen[i]), WithPriority(prios[i]));
  }
  ex->Run();
  const budget::TaskPriority want[] = {budget::TaskPriority::kHigh,
                                       budget::TaskPriority::kNormal,
                                       budget::TaskPriority::kLow};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(seen[i].priority, want[i]) << i;
    const auto column = static_cast<size_t>(want[i]);
    EXPECT_EQ(seen[i].budget, policy.budget[0][column]) << i;
  }
  EXPECT_GT(seen[0].budget, seen[1].budget);
  EXPECT_GT(seen[1].budget, seen[2].budget);
}

// A user-defined policy that ignores priority: arrival order.
class ArrivalOrderScheduler final : public sched::TaskScheduler {
 public:
  void Push(sched::TaskNode* t) noexcept override {
    t->queued = true;
    tasks_.push_back(t);
  }
  sched::TaskNode* Pop() noexcept override {
    if (tasks_.empty()) return nullptr;
    sched::TaskNode* t = tasks_.front();
    tasks_.pop_front();
    t->queued = false;
    return t;
  }
  bool Remove(sched::TaskNode* t) noexcept override {
    for (auto it = tasks_.begin(); it != tasks_.end(); ++it) {
      if (*it != t) continue;
      tasks_.erase(it);
      t->queued = false;
      return true;
    }
    return false;
  }
  size_t Size() const noexcept override { return tasks_.size(); }
  std::string_view Name() const noexcept override { return "arrival"; }

 private:
  std::deque<sched::TaskNode*> tasks_;
};

std::vector<int> RunMixed(std::unique_ptr<sched::TaskScheduler> scheduler) {
  auto ex = MakeExecutor(ExecutorBuilder()
                             .WithQueue(3, 1, std::move(scheduler))
                             .NoTiers()
                             .NoReactor());
  if (ex == nullptr) return {};
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) {
    ex->SpawnDetached(TwoSteps(&order, i), WithPriority(kMixed[i]));
  }
  ex->Run();
  return order;
}

TEST(PriorityTest, AUserSchedulerMayIgnorePriority) {
  const std::vector<int> arrival = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5};
  EXPECT_EQ(RunMixed(std::make_unique<ArrivalOrderScheduler>()), arrival);
  // The built-in choice for a queue that should ignore priority.
  EXPECT_EQ(RunMixed(std::make_unique<sched::LifoScheduler>(1)), arrival);
}

}  // namespace
}  // namespace spindle
