// The queue set under random operation sequences: every invariant is
// checked after every step.
#include "sched/queue_set.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "sched/queue_set_testing.h"
#include "sched/scheduler.h"

namespace spindle::sched {
namespace {

using namespace queue_set_testing;  // NOLINT: test helpers

class QueueSetRandomTest
    : public ::testing::TestWithParam<std::tuple<uint64_t, int>> {};

TEST_P(QueueSetRandomTest, InvariantsHoldAfterEveryStep) {
  const uint64_t seed = std::get<0>(GetParam());
  const int kQueues = std::get<1>(GetParam());
  std::mt19937_64 rng(seed);
  QueueSet qs(TestConfig());
  for (int i = 0; i < kQueues; ++i) {
    std::unique_ptr<TaskScheduler> s;
    switch (i % 4) {
      case 0:
        break;  // FIFO.
      case 1:
        s = std::make_unique<LifoScheduler>(3);
        break;
      case 2:
        s = std::make_unique<PriorityScheduler>(5);
        break;
      case 3:
        s = std::make_unique<LasScheduler>(8);
        break;
    }
    ASSERT_TRUE(
        qs.AddQueue(i, 1 + static_cast<uint32_t>(rng() % 2000), std::move(s))
            .ok());
  }
  std::vector<TaskNode> nodes(200);
  std::vector<int> where(nodes.size(), -1);  // Model: queue of each task.
  size_t model_size = 0;
  TaskNode* running = nullptr;
  int64_t worst_lag = 0;
  constexpr uint64_t kOverrunPoll = 5000;
  uint64_t max_slice = MaxSlice(qs);
  const int steps = 50'000 / kScale;
  for (int step = 0; step < steps; ++step) {
    const uint64_t op = rng() % 100;
    if (op < 30) {  // Wake an idle task.
      const size_t k = rng() % nodes.size();
      if (where[k] < 0 && &nodes[k] != running) {
        nodes[k].priority = static_cast<Priority>(rng() % 3);
        const int q = static_cast<int>(rng() % kQueues);
        qs.Push(static_cast<uint16_t>(q), &nodes[k]);
        where[k] = q;
        ++model_size;
      }
    } else if (op < 85) {  // One executor iteration.
      TaskNode* t = qs.Pick();
      if (model_size == 0) {
        ASSERT_EQ(t, nullptr);
        continue;
      }
      ASSERT_NE(t, nullptr);
      const size_t k = t - nodes.data();
      ASSERT_LT(k, nodes.size());
      ASSERT_EQ(where[k], t->queue_index);
      ASSERT_FALSE(t->queued);
      where[k] = -1;
      --model_size;
      running = t;
      ASSERT_TRUE(qs.CheckInvariants().ok()) << "step " << step << ": "
                                             << qs.CheckInvariants();
      qs.Charge(t, kMinPoll + rng() % (kMaxPoll - kMinPoll + 1));
      const uint64_t next = rng() % 10;
      if (next < 6) {  // Still runnable, same queue.
        qs.Push(t->queue_index, t);
        where[k] = t->queue_index;
        ++model_size;
      } else if (next < 8) {  // Moved to another queue.
        const int q = static_cast<int>(rng() % kQueues);
        qs.Push(static_cast<uint16_t>(q), t);
        where[k] = q;
        ++model_size;
      }
      running = nullptr;
    } else if (op < 97) {  // Cancel.
      const size_t k = rng() % nodes.size();
      ASSERT_EQ(qs.Remove(&nodes[k]), where[k] >= 0) << "step " << step;
      if (where[k] >= 0) {
        where[k] = -1;
        --model_size;
      }
    } else if (op < 98) {
      ASSERT_TRUE(qs.SetShare(static_cast<uint16_t>(rng() % kQueues),
                              1 + static_cast<uint32_t>(rng() % 2000))
                      .ok());
      max_slice = std::max(max_slice, MaxSlice(qs));
    } else {  // Overrunning poll.
      TaskNode* t = qs.Pick();
      if (t == nullptr) continue;
      const size_t k = t - nodes.data();
      where[k] = -1;
      --model_size;
      qs.Charge(t, kOverrunPoll);
    }
    ASSERT_TRUE(qs.CheckInvariants().ok())
        << "step " << step << ": " << qs.CheckInvariants();
    ASSERT_EQ(qs.Size(), model_size) << "step " << step;
    ASSERT_EQ(qs.Empty(), model_size == 0);
    for (int q = 0; q < kQueues; ++q) {
      const QueueStats s = qs.Stats(static_cast<uint16_t>(q));
      worst_lag = std::max<int64_t>(worst_lag, std::abs(s.lag_ticks));
      // Joins, leaves, reweights and 5000-tick overruns: a looser bound than
      // the steady state's (one request / one poll), checked as a
      // regression guard.
      ASSERT_LE(std::abs(s.lag_ticks),
                2 * static_cast<int64_t>(max_slice + kOverrunPoll))
          << "step " << step << " queue " << q;
      if (!s.runnable) {
        ASSERT_LE(std::abs(s.lag_ticks), static_cast<int64_t>(s.slice_ticks))
            << "step " << step << " queue " << q;
      }
    }
  }
  std::printf("seed %llu, %d queues: worst |lag| %lld ticks over %d steps\n",
              static_cast<unsigned long long>(seed), kQueues,
              static_cast<long long>(worst_lag), steps);
}

INSTANTIATE_TEST_SUITE_P(
    Seeds, QueueSetRandomTest,
    ::testing::Combine(::testing::Values<uint64_t>(1, 2, 3, 20261122),
                       ::testing::Values(20, 40)));

}  // namespace
}  // namespace spindle::sched
