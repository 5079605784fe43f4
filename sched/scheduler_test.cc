#include "sched/scheduler.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "sched/sched.h"

namespace spindle::sched {
namespace {

std::vector<TaskNode> MakeNodes(size_t n) { return std::vector<TaskNode>(n); }

// The layer's VERSION file, read at test time from the runfiles (the
// test's `data`), so kVersion cannot drift from it.
std::string VersionFile() {
  const char* dir = std::getenv("TEST_SRCDIR");
  if (dir == nullptr) return "(TEST_SRCDIR is not set)";
  std::ifstream in(std::string(dir) + "/spindle/sched/VERSION");
  std::string version;
  std::getline(in, version);
  return version;
}

TEST(SchedTest, VersionMatchesVersionFile) {
  EXPECT_EQ(kVersion, VersionFile());
}

TEST(FifoSchedulerTest, PopOnEmptyReturnsNothing) {
  FifoScheduler fifo;
  EXPECT_EQ(fifo.Pop(), nullptr);
  EXPECT_TRUE(fifo.Empty());
  EXPECT_EQ(fifo.Name(), "fifo");
}

TEST(FifoSchedulerTest, PopsInPushOrder) {
  auto nodes = MakeNodes(5);
  FifoScheduler fifo;
  for (auto& n : nodes) fifo.Push(&n);
  EXPECT_EQ(fifo.Size(), 5u);
  for (auto& n : nodes) {
    EXPECT_TRUE(n.queued);
    TaskNode* t = fifo.Pop();
    EXPECT_EQ(t, &n);
    EXPECT_FALSE(t->queued);
  }
  EXPECT_EQ(fifo.Pop(), nullptr);
}

TEST(FifoSchedulerTest, RemoveUnlinksOnlyThatTask) {
  auto nodes = MakeNodes(4);
  FifoScheduler fifo;
  for (auto& n : nodes) fifo.Push(&n);
  EXPECT_TRUE(fifo.Remove(&nodes[1]));
  EXPECT_FALSE(fifo.Remove(&nodes[1]));  // Already gone.
  EXPECT_FALSE(nodes[1].queued);
  EXPECT_EQ(fifo.Size(), 3u);
  EXPECT_EQ(fifo.Pop(), &nodes[0]);
  EXPECT_EQ(fifo.Pop(), &nodes[2]);
  EXPECT_TRUE(fifo.Remove(&nodes[3]));  // The last one.
  EXPECT_EQ(fifo.Pop(), nullptr);
  fifo.Push(&nodes[1]);  // Reusable after removal.
  EXPECT_EQ(fifo.Pop(), &nodes[1]);
}

TEST(LifoSchedulerTest, NewestFirstAndEveryNthPopTakesTheOldest) {
  auto nodes = MakeNodes(10);
  LifoScheduler lifo(/*skip_interval=*/4);
  for (auto& n : nodes) lifo.Push(&n);
  // Pops 1..3 newest (9, 8, 7), pop 4 the oldest (0), pops 5..7 newest
  // (6, 5, 4), pop 8 the oldest left (1), then 3, 2.
  const int expected[] = {9, 8, 7, 0, 6, 5, 4, 1, 3, 2};
  for (int e : expected) {
    TaskNode* t = lifo.Pop();
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t - nodes.data(), e);
  }
  EXPECT_EQ(lifo.Pop(), nullptr);
}

TEST(LifoSchedulerTest, OldestIsNotStarvedByAStreamOfNewTasks) {
  // One old task and a producer that pushes a new task before every pop:
  // pure LIFO would never run the old one; skip interval 16 runs it by pop 16.
  auto nodes = MakeNodes(64);
  LifoScheduler lifo;  // Default skip interval.
  EXPECT_EQ(lifo.skip_interval(), LifoScheduler::kDefaultSkipInterval);
  lifo.Push(&nodes[0]);
  int popped_at = -1;
  for (int i = 1; i < 64 && popped_at < 0; ++i) {
    lifo.Push(&nodes[i]);
    if (lifo.Pop() == &nodes[0]) popped_at = i;
  }
  EXPECT_EQ(popped_at, static_cast<int>(LifoScheduler::kDefaultSkipInterval));
}

TEST(LifoSchedulerTest, ZeroSkipIsPureLifoAndRemoveWorks) {
  auto nodes = MakeNodes(3);
  LifoScheduler lifo(0);
  for (auto& n : nodes) lifo.Push(&n);
  EXPECT_TRUE(lifo.Remove(&nodes[1]));
  EXPECT_EQ(lifo.Pop(), &nodes[2]);
  EXPECT_EQ(lifo.Pop(), &nodes[0]);
  EXPECT_EQ(lifo.Pop(), nullptr);
}

// Pushes nine tasks of mixed priority into `s` and checks they pop high,
// then normal, then low, in push order within one priority.
void ExpectHighThenNormalThenLowFifoWithinOne(TaskScheduler& s) {
  auto nodes = MakeNodes(9);
  const Priority prios[] = {Priority::kLow,    Priority::kNormal,
                            Priority::kHigh,   Priority::kLow,
                            Priority::kHigh,   Priority::kNormal,
                            Priority::kNormal, Priority::kLow,
                            Priority::kHigh};
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].priority = prios[i];
    s.Push(&nodes[i]);
  }
  EXPECT_EQ(s.Size(), nodes.size());
  const int expected[] = {2, 4, 8, 1, 5, 6, 0, 3, 7};
  for (int e : expected) {
    EXPECT_FALSE(s.Empty());
    TaskNode* t = s.Pop();
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t - nodes.data(), e);
    EXPECT_FALSE(t->queued);
  }
  EXPECT_EQ(s.Pop(), nullptr);
  EXPECT_TRUE(s.Empty());
}

// Random pushes (random priorities, changed now and then while a task is
// queued), pops and removes on `s`, checked against three FIFO lists.
void ExpectMatchesAThreeLevelFifoModel(TaskScheduler& s, uint64_t seed) {
  auto nodes = MakeNodes(64);
  std::vector<TaskNode*> model[kNumPriorities];
  std::mt19937_64 rng(seed);
  auto model_level_of = [&](TaskNode* t) -> std::vector<TaskNode*>* {
    for (auto& level : model) {
      if (std::find(level.begin(), level.end(), t) != level.end()) {
        return &level;
      }
    }
    return nullptr;
  };
  for (int step = 0; step < 20000; ++step) {
    TaskNode* n = &nodes[rng() % nodes.size()];
    switch (rng() % 4) {
      case 0:
      case 1:  // Push, if not queued; else change its priority (no effect
               // on its place: schedulers read it at push).
        n->priority = static_cast<Priority>(rng() % kNumPriorities);
        if (!n->queued) {
          s.Push(n);
          model[static_cast<int>(n->priority)].push_back(n);
        }
        break;
      case 2: {  // Pop.
        TaskNode* want = nullptr;
        for (auto& level : model) {
          if (level.empty()) continue;
          want = level.front();
          level.erase(level.begin());
          break;
        }
        ASSERT_EQ(s.Pop(), want) << "step " << step;
        break;
      }
      case 3: {  // Remove.
        std::vector<TaskNode*>* level = model_level_of(n);
        ASSERT_EQ(s.Remove(n), level != nullptr) << "step " << step;
        if (level != nullptr) std::erase(*level, n);
        break;
      }
    }
    const size_t queued =
        model[0].size() + model[1].size() + model[2].size();
    ASSERT_EQ(s.Empty(), queued == 0) << "step " << step;
  }
}

TEST(FifoSchedulerTest, HighThenNormalThenLowFifoWithinOne) {
  FifoScheduler fifo;
  ExpectHighThenNormalThenLowFifoWithinOne(fifo);
  EXPECT_TRUE(fifo.IsEmpty());
}

TEST(FifoSchedulerTest, AHighTaskPushedLaterOvertakesQueuedNormalOnes) {
  auto nodes = MakeNodes(4);
  FifoScheduler fifo;
  fifo.Push(&nodes[0]);  // Normal.
  fifo.Push(&nodes[1]);
  EXPECT_EQ(fifo.Pop(), &nodes[0]);
  nodes[2].priority = Priority::kHigh;
  fifo.Push(&nodes[2]);
  nodes[3].priority = Priority::kLow;
  fifo.Push(&nodes[3]);
  EXPECT_EQ(fifo.Pop(), &nodes[2]);
  EXPECT_FALSE(fifo.IsEmpty());
  EXPECT_EQ(fifo.Pop(), &nodes[1]);
  EXPECT_FALSE(fifo.IsEmpty());
  EXPECT_EQ(fifo.Pop(), &nodes[3]);
  EXPECT_TRUE(fifo.IsEmpty());
  EXPECT_EQ(fifo.Pop(), nullptr);
}

TEST(FifoSchedulerTest, RemovingTheLastHighOrLowTaskLeavesItEmpty) {
  auto nodes = MakeNodes(2);
  FifoScheduler fifo;
  nodes[0].priority = Priority::kHigh;
  nodes[1].priority = Priority::kLow;
  fifo.Push(&nodes[0]);
  fifo.Push(&nodes[1]);
  nodes[0].priority = Priority::kLow;  // Changed while queued.
  EXPECT_TRUE(fifo.Remove(&nodes[0]));
  EXPECT_FALSE(fifo.IsEmpty());
  EXPECT_TRUE(fifo.Remove(&nodes[1]));
  EXPECT_TRUE(fifo.IsEmpty());
  EXPECT_EQ(fifo.Size(), 0u);
  EXPECT_EQ(fifo.Pop(), nullptr);
}

TEST(FifoSchedulerTest, APriorityPastLowCountsAsLow) {
  auto nodes = MakeNodes(2);
  FifoScheduler fifo;
  nodes[0].priority = static_cast<Priority>(7);
  nodes[1].priority = Priority::kLow;
  fifo.Push(&nodes[0]);
  fifo.Push(&nodes[1]);
  TaskNode normal;
  fifo.Push(&normal);
  EXPECT_EQ(fifo.Pop(), &normal);
  EXPECT_EQ(fifo.Pop(), &nodes[0]);
  EXPECT_EQ(fifo.Pop(), &nodes[1]);
}

TEST(FifoSchedulerTest, MatchesAThreeLevelFifoModel) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    FifoScheduler fifo;
    ExpectMatchesAThreeLevelFifoModel(fifo, seed);
  }
}

TEST(LifoSchedulerTest, SkipIntervalOneIsArrivalOrderWhateverThePriority) {
  // The scheduler to pick for a queue that should ignore priority.
  auto nodes = MakeNodes(3);
  nodes[0].priority = Priority::kLow;
  nodes[2].priority = Priority::kHigh;
  LifoScheduler arrival(1);
  for (auto& n : nodes) arrival.Push(&n);
  EXPECT_EQ(arrival.Pop(), &nodes[0]);
  EXPECT_EQ(arrival.Pop(), &nodes[1]);
  EXPECT_EQ(arrival.Pop(), &nodes[2]);
}

TEST(PrioritySchedulerTest, HighThenNormalThenLowFifoWithinLevel) {
  PriorityScheduler ps;
  ExpectHighThenNormalThenLowFifoWithinOne(ps);
  EXPECT_EQ(ps.promotions(), 0u);
}

TEST(PrioritySchedulerTest, WithoutAgingMatchesAThreeLevelFifoModel) {
  PriorityScheduler ps;
  ExpectMatchesAThreeLevelFifoModel(ps, 1);
}

TEST(PrioritySchedulerTest, WithoutAgingLowStarvesUnderSteadyHighLoad) {
  auto nodes = MakeNodes(3);
  PriorityScheduler ps;
  nodes[0].priority = Priority::kLow;
  ps.Push(&nodes[0]);
  nodes[1].priority = nodes[2].priority = Priority::kHigh;
  ps.Push(&nodes[1]);
  for (int i = 0; i < 1000; ++i) {
    TaskNode* t = ps.Pop();
    ASSERT_NE(t, &nodes[0]);
    ps.Push(t);  // The high task is runnable again.
  }
}

TEST(PrioritySchedulerTest, AgingBoundsTheWaitOfALowTask) {
  // Two high tasks that are always runnable, one normal, one low.  With aging
  // after 8 pops, the low task climbs to normal then high and runs within
  // ~3 x 8 pops plus the line ahead of it.
  auto nodes = MakeNodes(4);
  PriorityScheduler ps(/*aging_pops=*/8);
  nodes[0].priority = nodes[1].priority = Priority::kHigh;
  nodes[2].priority = Priority::kNormal;
  nodes[3].priority = Priority::kLow;
  for (auto& n : nodes) ps.Push(&n);
  int low_at = -1;
  int normal_at = -1;
  for (int i = 0; i < 200 && low_at < 0; ++i) {
    TaskNode* t = ps.Pop();
    ASSERT_NE(t, nullptr);
    if (t == &nodes[3]) {
      low_at = i;
    } else if (t == &nodes[2]) {
      if (normal_at < 0) normal_at = i;
    } else {
      ps.Push(t);
    }
  }
  ASSERT_GE(normal_at, 0);
  ASSERT_GE(low_at, 0);
  EXPECT_LE(normal_at, 8 + 3);
  EXPECT_LE(low_at, 2 * 8 + 4);
  EXPECT_GE(ps.promotions(), 2u);
  // Strict order still holds for tasks that have not waited long.
  nodes[0].priority = Priority::kLow;
  nodes[1].priority = Priority::kHigh;
  while (ps.Pop() != nullptr) {
  }
  ps.Push(&nodes[0]);
  ps.Push(&nodes[1]);
  EXPECT_EQ(ps.Pop(), &nodes[1]);
  EXPECT_EQ(ps.Pop(), &nodes[0]);
}

TEST(PrioritySchedulerTest, RemoveFromAnyLevel) {
  auto nodes = MakeNodes(3);
  PriorityScheduler ps(4);
  nodes[0].priority = Priority::kLow;
  nodes[1].priority = Priority::kNormal;
  nodes[2].priority = Priority::kHigh;
  for (auto& n : nodes) ps.Push(&n);
  EXPECT_TRUE(ps.Remove(&nodes[1]));
  EXPECT_FALSE(ps.Remove(&nodes[1]));
  EXPECT_EQ(ps.Size(), 2u);
  EXPECT_EQ(ps.Pop(), &nodes[2]);
  EXPECT_EQ(ps.Pop(), &nodes[0]);
  EXPECT_TRUE(ps.Empty());
}

TEST(LasSchedulerTest, LeastAttainedServiceFirstTiesInPushOrder) {
  auto nodes = MakeNodes(6);
  const uint64_t service[] = {50, 10, 30, 10, 0, 30};
  LasScheduler las(2);  // Small capacity: exercises growth too.
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].attained_service = service[i];
    las.Push(&nodes[i]);
  }
  EXPECT_GE(las.capacity(), 6u);
  const int expected[] = {4, 1, 3, 2, 5, 0};
  for (int e : expected) {
    TaskNode* t = las.Pop();
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t - nodes.data(), e);
    EXPECT_FALSE(t->queued);
  }
  EXPECT_EQ(las.Pop(), nullptr);
}

TEST(LasSchedulerTest, RandomPushPopRemoveMatchesASortedModel) {
  std::mt19937_64 rng(7);
  auto nodes = MakeNodes(300);
  LasScheduler las(300);
  std::vector<TaskNode*> model;  // Queued, any order.
  uint64_t seq_key[300] = {};
  uint64_t seq = 0;
  std::vector<uint64_t> order(300);
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(rng() % 3);
    if (op == 0) {
      TaskNode* n = &nodes[rng() % nodes.size()];
      if (n->queued) continue;
      n->attained_service = rng() % 50;
      order[n - nodes.data()] = seq++;
      las.Push(n);
      model.push_back(n);
    } else if (op == 1) {
      TaskNode* t = las.Pop();
      if (model.empty()) {
        ASSERT_EQ(t, nullptr);
        continue;
      }
      auto best = std::min_element(
          model.begin(), model.end(), [&](TaskNode* a, TaskNode* b) {
            return a->attained_service < b->attained_service ||
                   (a->attained_service == b->attained_service &&
                    order[a - nodes.data()] < order[b - nodes.data()]);
          });
      ASSERT_EQ(t, *best);
      model.erase(best);
    } else {
      TaskNode* n = &nodes[rng() % nodes.size()];
      const bool was = n->queued;
      ASSERT_EQ(las.Remove(n), was);
      if (was) model.erase(std::find(model.begin(), model.end(), n));
    }
    ASSERT_EQ(las.Size(), model.size());
  }
  (void)seq_key;
}

// A user-defined policy through the same interface: shortest "expected
// service" first, where the owner keeps an estimate in enqueue_tick; built
// on two FIFO lists (short < threshold, long) to stay O(1).
class TwoClassScheduler final : public TaskScheduler {
 public:
  explicit TwoClassScheduler(uint64_t threshold) : threshold_(threshold) {}
  void Push(TaskNode* t) noexcept override {
    (t->enqueue_tick < threshold_ ? short_ : long_).Push(t);
  }
  TaskNode* Pop() noexcept override {
    TaskNode* t = short_.Pop();
    return t != nullptr ? t : long_.Pop();
  }
  bool Remove(TaskNode* t) noexcept override {
    return t->enqueue_tick < threshold_ ? short_.Remove(t) : long_.Remove(t);
  }
  size_t Size() const noexcept override { return short_.Size() + long_.Size(); }
  void Observe(TaskNode* t, uint64_t service) noexcept override {
    ++observed_;
    t->enqueue_tick = service;  // Next estimate: the last poll.
  }
  std::string_view Name() const noexcept override { return "two-class"; }
  int observed() const { return observed_; }

 private:
  uint64_t threshold_;
  FifoScheduler short_;
  FifoScheduler long_;
  int observed_ = 0;
};

TEST(UserSchedulerTest, PlugsIntoAQueueSetAndIsObservedAfterEachPoll) {
  QueueSetConfig config;
  config.sched_latency_ticks = 1000;
  config.min_slice_ticks = 100;
  QueueSet qs(config);
  auto owned = std::make_unique<TwoClassScheduler>(100);
  TwoClassScheduler* mine = owned.get();
  auto index = qs.AddQueue(9, 10, std::move(owned));
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(qs.scheduler(*index).Name(), "two-class");
  auto nodes = MakeNodes(2);
  nodes[0].enqueue_tick = 500;  // Long.
  nodes[1].enqueue_tick = 5;    // Short.
  qs.Push(*index, &nodes[0]);
  qs.Push(*index, &nodes[1]);
  TaskNode* t = qs.Pick();
  EXPECT_EQ(t, &nodes[1]);  // Short first.
  qs.Charge(t, 700);        // It ran long: now classed long.
  qs.Push(*index, t);
  EXPECT_EQ(qs.Pick(), &nodes[0]);
  EXPECT_EQ(mine->observed(), 1);
  EXPECT_EQ(nodes[1].attained_service, 700u);
  EXPECT_TRUE(qs.Remove(&nodes[1]));
  EXPECT_TRUE(qs.Empty());
  EXPECT_TRUE(qs.CheckInvariants().ok());
}

}  // namespace
}  // namespace spindle::sched
