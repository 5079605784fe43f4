// Pluggable per-queue schedulers on a real executor: a LasScheduler queue
// and a user-defined TaskScheduler run real tasks in the order their policy
// promises.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"
#include "sched/scheduler.h"

namespace spindle {
namespace {

using namespace executor_testing;  // NOLINT: test helpers

// One hog whose first poll spins `hog_ns`, then three small tasks that
// yield `yields` times each, all in queue 1; returns who was polled, in
// order ('H' or 'S').
std::string HogThenSmalls(std::unique_ptr<sched::TaskScheduler> scheduler,
                          uint64_t hog_ns, int yields) {
  auto ex = MakeExecutor(
      ExecutorBuilder().WithQueue(1, 1, std::move(scheduler)).NoTiers());
  if (ex == nullptr) return "no executor";
  std::string order;
  auto hog = [&]() -> Task<void> {
    order += 'H';
    Spin(hog_ns);
    co_await YieldNow();
    order += 'H';
  };
  auto small = [&]() -> Task<void> {
    for (int i = 0; i < yields; ++i) {
      order += 'S';
      co_await YieldNow();
    }
    order += 'S';
  };
  ex->SpawnDetached(hog());
  for (int i = 0; i < 3; ++i) ex->SpawnDetached(small());
  ex->Run();
  ExpectAccounted(*ex);
  return order;
}

TEST(SchedulerOnExecutorTest, LasRunsTheLeastAttainedServiceFirst) {
  // Every task starts at zero service: push order, so the hog runs first.
  // Its 100 ms poll puts it behind the small tasks until they have received
  // as much (they finish long before: each poll is microseconds), so the
  // hog's second poll comes last.  A FIFO queue takes it in turn instead.
  constexpr int kYields = 5;
  const std::string las = HogThenSmalls(std::make_unique<sched::LasScheduler>(),
                                        100'000'000, kYields);
  EXPECT_EQ(las, "H" + std::string(3 * (kYields + 1), 'S') + "H");
  const std::string fifo = HogThenSmalls(
      std::make_unique<sched::FifoScheduler>(), 100'000'000, kYields);
  EXPECT_EQ(fifo.substr(0, 5), "HSSSH");
}

// A user-defined policy, the inverse of PriorityScheduler: low, then
// normal, then high; FIFO within a level.  Counts every call the executor
// makes into it.
class LowFirstScheduler final : public sched::TaskScheduler {
 public:
  struct Calls {
    int pushes = 0, pops = 0, removes = 0, observes = 0;
    uint64_t observed_ticks = 0;
  };
  explicit LowFirstScheduler(Calls* calls) : calls_(calls) {}

  void Push(sched::TaskNode* t) noexcept override {
    calls_->pushes++;
    t->queued = true;
    levels_[Level(t)].push_back(t);
  }
  sched::TaskNode* Pop() noexcept override {
    for (int l = sched::kNumPriorities - 1; l >= 0; --l) {
      if (levels_[l].empty()) continue;
      sched::TaskNode* t = levels_[l].front();
      levels_[l].pop_front();
      t->queued = false;
      calls_->pops++;
      return t;
    }
    return nullptr;
  }
  bool Remove(sched::TaskNode* t) noexcept override {
    if (!t->queued) return false;
    std::deque<sched::TaskNode*>& level = levels_[Level(t)];
    for (auto it = level.begin(); it != level.end(); ++it) {
      if (*it != t) continue;
      level.erase(it);
      t->queued = false;
      calls_->removes++;
      return true;
    }
    return false;
  }
  size_t Size() const noexcept override {
    size_t n = 0;
    for (const auto& level : levels_) n += level.size();
    return n;
  }
  void Observe(sched::TaskNode*, uint64_t ticks) noexcept override {
    calls_->observes++;
    calls_->observed_ticks += ticks;
  }
  std::string_view Name() const noexcept override { return "low-first"; }

 private:
  static int Level(const sched::TaskNode* t) noexcept {
    const int l = static_cast<int>(t->priority);
    return l < sched::kNumPriorities ? l : sched::kNumPriorities - 1;
  }
  std::deque<sched::TaskNode*> levels_[sched::kNumPriorities];
  Calls* calls_;
};

TEST(SchedulerOnExecutorTest, UserDefinedSchedulerOrdersTheQueue) {
  LowFirstScheduler::Calls calls;
  auto ex = MakeExecutor(
      ExecutorBuilder()
          .WithQueue(7, 1, std::make_unique<LowFirstScheduler>(&calls))
          .NoTiers()
          .NoReactor());
  ASSERT_NE(ex, nullptr);
  std::string order;
  auto step = [&](char name) -> Task<void> {
    order += name;
    co_await YieldNow();
    order += name;
  };
  auto spawn = [&](char name, Priority p) {
    SpawnOptions o;
    o.queue = 7;
    o.priority = p;
    return ex->Spawn(step(name), o);
  };
  JoinHandle<void> h = spawn('h', Priority::kHigh);
  JoinHandle<void> n = spawn('n', Priority::kNormal);
  JoinHandle<void> l = spawn('l', Priority::kLow);
  JoinHandle<void> x = spawn('x', Priority::kLow);
  x.Abort();  // removed from the scheduler before it runs
  ex->Run();
  // A yielding task is pushed again at its level, so it runs again before
  // any higher level.
  EXPECT_EQ(order, "llnnhh");
  EXPECT_EQ(x.status(), JoinStatus::kCancelled);
  const ExecutorStats s = ex->Stats();
  ASSERT_EQ(s.queues.size(), 1u);
  EXPECT_EQ(s.queues[0].sched.id, 7u);
  EXPECT_EQ(s.polls, 6u);
  EXPECT_EQ(calls.pushes, 4 + 3);  // spawns, then one re-push per yield
  EXPECT_EQ(calls.pops, 6);
  EXPECT_EQ(calls.removes, 1);
  // Observe follows every poll with the ticks charged to the queue.
  EXPECT_EQ(calls.observes, 6);
  EXPECT_EQ(calls.observed_ticks, s.queues[0].sched.service_ticks);
  ExpectAccounted(*ex);
}

}  // namespace
}  // namespace spindle
