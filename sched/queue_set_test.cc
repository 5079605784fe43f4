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

struct FairnessResult {
  double max_rel_error = 0;  // |received - fair| / fair, worst queue.
  int64_t max_lag = 0;       // Most positive lag (owed) seen.
  int64_t min_lag = 0;       // Most negative lag (overdrawn) seen.
  uint64_t max_slice = 0;
};

// Every queue always runnable (two tasks each, re-pushed after each poll);
// random service per poll; `picks` picks.
FairnessResult RunFairness(const std::vector<uint32_t>& shares, uint64_t seed,
                           int picks) {
  QueueSet qs(TestConfig());
  std::vector<TaskNode> nodes(2 * shares.size());
  for (size_t i = 0; i < shares.size(); ++i) {
    auto index = qs.AddQueue(static_cast<QueueId>(1000 + i), shares[i]);
    EXPECT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(*index, i);
    qs.Push(*index, &nodes[2 * i]);
    qs.Push(*index, &nodes[2 * i + 1]);
  }
  std::mt19937_64 rng(seed);
  FairnessResult r;
  r.max_slice = MaxSlice(qs);
  const int check_every = shares.size() > 16 ? 50 : 1;
  for (int p = 0; p < picks; ++p) {
    TaskNode* t = qs.Pick();
    EXPECT_NE(t, nullptr);
    if (t == nullptr) break;
    qs.Charge(t, kMinPoll + rng() % (kMaxPoll - kMinPoll + 1));
    qs.Push(t->queue_index, t);
    if (p % check_every == 0) {
      for (size_t i = 0; i < shares.size(); ++i) {
        const int64_t lag = qs.LagTicks(static_cast<uint16_t>(i));
        r.max_lag = std::max(r.max_lag, lag);
        r.min_lag = std::min(r.min_lag, lag);
      }
    }
  }
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  uint64_t total = 0;
  uint64_t share_sum = 0;
  for (size_t i = 0; i < shares.size(); ++i) {
    total += qs.Stats(static_cast<uint16_t>(i)).service_ticks;
    share_sum += shares[i];
  }
  for (size_t i = 0; i < shares.size(); ++i) {
    const double fair = static_cast<double>(total) * shares[i] / share_sum;
    const double got = qs.Stats(static_cast<uint16_t>(i)).service_ticks;
    r.max_rel_error = std::max(r.max_rel_error, std::abs(got - fair) / fair);
  }
  return r;
}

void ExpectFair(const std::vector<uint32_t>& shares, const char* name) {
  for (uint64_t seed : {1, 2}) {
    const FairnessResult r = RunFairness(shares, seed, 100'000);
    std::printf("fairness %s seed %d: max relative error %.4f%%, lag in "
                "[%lld, %lld] ticks (max slice %llu, max poll %llu)\n",
                name, static_cast<int>(seed), 100 * r.max_rel_error,
                static_cast<long long>(r.min_lag),
                static_cast<long long>(r.max_lag),
                static_cast<unsigned long long>(r.max_slice),
                static_cast<unsigned long long>(kMaxPoll));
    EXPECT_LT(r.max_rel_error, 0.01) << name << " seed " << seed;
    // EEVDF with request = slice: a queue is owed at most about one request
    // and overdrawn at most one request, each plus one poll of
    // discretisation.
    const auto bound = static_cast<int64_t>(r.max_slice + kMaxPoll);
    EXPECT_LE(r.max_lag, bound) << name << " seed " << seed;
    EXPECT_GE(r.min_lag, -bound) << name << " seed " << seed;
  }
}

TEST(QueueSetFairnessTest, Shares1To1) { ExpectFair({1, 1}, "1:1"); }
TEST(QueueSetFairnessTest, Shares3To1) { ExpectFair({3, 1}, "3:1"); }
TEST(QueueSetFairnessTest, Shares1To2To5) { ExpectFair({1, 2, 5}, "1:2:5"); }
TEST(QueueSetFairnessTest, LargeSharesKeepPrecision) {
  ExpectFair({10000, 3000, 17}, "10000:3000:17");
}
TEST(QueueSetFairnessTest, HundredQueuesWithRandomShares) {
  std::mt19937_64 rng(42);
  std::vector<uint32_t> shares(100);
  for (auto& s : shares) s = static_cast<uint32_t>(100 + rng() % 901);
  ExpectFair(shares, "100 queues, shares 100..1000");
}

TEST(QueueSetTest, DefaultConfigIsTwoMillisecondsAndHundredMicroseconds) {
  const QueueSetConfig c = QueueSetConfig::Default();
  EXPECT_TRUE(c.Validate().ok());
  EXPECT_GT(c.sched_latency_ticks, c.min_slice_ticks);
  const double ratio = static_cast<double>(c.sched_latency_ticks) /
                       static_cast<double>(c.min_slice_ticks);
  EXPECT_NEAR(ratio, 20.0, 0.1);
}

TEST(QueueSetTest, EmptySetPicksNothing) {
  QueueSet qs(TestConfig());
  EXPECT_EQ(qs.Pick(), nullptr);
  ASSERT_TRUE(qs.AddQueue(1, 1).ok());
  EXPECT_EQ(qs.Pick(), nullptr);
  EXPECT_TRUE(qs.Empty());
  EXPECT_EQ(qs.current(), QueueSet::kNoQueue);
}

TEST(QueueSetTest, SingleQueueFastPathIsFifoAndCountsStats) {
  QueueSet qs(TestConfig());
  const uint16_t q = *qs.AddQueue(5, 10);
  std::vector<TaskNode> nodes(3);
  for (auto& n : nodes) qs.Push(q, &n);
  EXPECT_EQ(qs.Size(), 3u);
  for (auto& n : nodes) {
    TaskNode* t = qs.Pick();
    EXPECT_EQ(t, &n);
    qs.Charge(t, 250);  // Over the 100-tick slice... (2000 * 10/10 here)
  }
  const QueueStats s = qs.Stats(q);
  EXPECT_EQ(s.id, 5u);
  EXPECT_EQ(s.share, 10u);
  EXPECT_EQ(s.service_ticks, 750u);
  EXPECT_EQ(s.polls, 3u);
  EXPECT_EQ(s.picks, 3u);
  EXPECT_EQ(s.slice_ticks, 2000u);  // The only queue: the whole latency.
  EXPECT_EQ(s.overruns, 0u);
  EXPECT_EQ(s.lag_ticks, 0);  // Alone: always at V.
  EXPECT_EQ(nodes[0].attained_service, 250u);
  EXPECT_EQ(qs.Pick(), nullptr);
  EXPECT_FALSE(qs.Stats(q).runnable);
}

TEST(QueueSetTest, SliceExhaustionsAndOverrunsAreCounted) {
  QueueSet qs(TestConfig());
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t b = *qs.AddQueue(2, 1);
  TaskNode ta, tb;
  qs.Push(a, &ta);
  qs.Push(b, &tb);
  // Slices: 2000 * 1/2 = 1000 ticks each.
  EXPECT_EQ(qs.Stats(a).slice_ticks, 1000u);
  TaskNode* t = qs.Pick();
  const uint16_t first = t->queue_index;
  qs.Charge(t, 999);  // Within the request: the slice goes on.
  qs.Push(first, t);
  EXPECT_EQ(qs.Stats(first).slice_exhaustions, 0u);
  t = qs.Pick();
  EXPECT_EQ(t->queue_index, first);
  qs.Charge(t, 5000);  // Past the request, and longer than a whole slice.
  qs.Push(first, t);
  QueueStats s = qs.Stats(first);
  EXPECT_EQ(s.overruns, 1u);
  EXPECT_EQ(s.slice_exhaustions, 1u);
  EXPECT_EQ(s.polls, 2u);
  EXPECT_EQ(s.picks, 2u);
  // The other queue is owed ~3000 ticks now: EEVDF switches.
  t = qs.Pick();
  EXPECT_NE(t->queue_index, first);
  EXPECT_GT(qs.LagTicks(t->queue_index), 2000);
  qs.Charge(t, 10);
  qs.Push(t->queue_index, t);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
}

TEST(QueueSetTest, PickChargeRepushKeepsTheQueueRunnable) {
  QueueSet qs(TestConfig());
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t b = *qs.AddQueue(2, 3);
  TaskNode ta, tb;
  qs.Push(a, &ta);
  qs.Push(b, &tb);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 10000; ++i) {
    TaskNode* t = qs.Pick();
    ASSERT_NE(t, nullptr);
    // Its queue is empty now but stays runnable through Charge and Push.
    ASSERT_EQ(qs.num_runnable(), 2u);
    qs.Charge(t, kMinPoll + rng() % 100);
    ASSERT_EQ(qs.num_runnable(), 2u);
    qs.Push(t->queue_index, t);
    ASSERT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  }
  // No idle transitions happened: lags are bounded and shares 1:3 hold.
  const double sa = qs.Stats(a).service_ticks;
  const double sb = qs.Stats(b).service_ticks;
  EXPECT_NEAR(sb / (sa + sb), 0.75, 0.005);
  // Now a task that is not pushed back: its queue goes idle at the next Pick.
  TaskNode* t = qs.Pick();
  const uint16_t q = t->queue_index;
  qs.Charge(t, 100);
  EXPECT_EQ(qs.num_runnable(), 2u);
  TaskNode* next = qs.Pick();
  EXPECT_NE(next->queue_index, q);
  EXPECT_EQ(qs.num_runnable(), 1u);
  EXPECT_FALSE(qs.Stats(q).runnable);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
}

TEST(QueueSetTest, TaskMovedToAnotherQueueIsChargedToItsOwnQueue) {
  QueueSet qs(TestConfig());
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t iso = *qs.AddQueue(2, 1);  // An isolation lane.
  TaskNode t1;
  qs.Push(a, &t1);
  TaskNode* t = qs.Pick();
  qs.Charge(t, 400);
  qs.Push(iso, t);  // Moved.
  EXPECT_EQ(t->queue_index, iso);
  EXPECT_EQ(qs.Pick(), &t1);
  EXPECT_EQ(qs.current(), iso);
  EXPECT_FALSE(qs.Stats(a).runnable);
  EXPECT_EQ(qs.Stats(a).service_ticks, 400u);
  qs.Charge(t, 30);
  EXPECT_EQ(qs.Stats(iso).service_ticks, 30u);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
}

TEST(QueueSetTest, SleeperDoesNotGetABurstBeyondItsLag) {
  QueueSet qs(TestConfig());
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t b = *qs.AddQueue(2, 1);
  TaskNode ta, tb;
  qs.Push(a, &ta);
  qs.Push(b, &tb);
  std::mt19937_64 rng(11);
  auto poll = [&] { return kMinPoll + rng() % (kMaxPoll - kMinPoll + 1); };
  for (int i = 0; i < 10000; ++i) {
    TaskNode* t = qs.Pick();
    qs.Charge(t, poll());
    qs.Push(t->queue_index, t);
  }
  // A sleeps: its task is cancelled while queued.
  if (ta.queued) {
    ASSERT_TRUE(qs.Remove(&ta));
  } else {
    // A's task is running: let it finish without being re-pushed.
    ASSERT_EQ(qs.Pick(), &ta);
    qs.Charge(&ta, poll());
  }
  for (int i = 0; i < 10000; ++i) {
    TaskNode* t = qs.Pick();
    ASSERT_EQ(t, &tb);
    qs.Charge(t, poll());
    qs.Push(b, t);
  }
  const QueueStats asleep = qs.Stats(a);
  EXPECT_FALSE(asleep.runnable);
  const uint64_t slice = asleep.slice_ticks;
  EXPECT_LE(std::abs(asleep.lag_ticks), static_cast<int64_t>(slice));
  // A returns.  Over the next window it gets its half plus at most its kept
  // lag (and one request and one poll of discretisation), not the 10000
  // polls it slept through.
  const uint64_t a0 = qs.Stats(a).service_ticks;
  const uint64_t b0 = qs.Stats(b).service_ticks;
  qs.Push(a, &ta);
  EXPECT_LE(std::abs(qs.LagTicks(a) - asleep.lag_ticks), 2);
  for (int i = 0; i < 2000; ++i) {
    TaskNode* t = qs.Pick();
    qs.Charge(t, poll());
    qs.Push(t->queue_index, t);
    const int64_t da = qs.Stats(a).service_ticks - a0;
    const int64_t db = qs.Stats(b).service_ticks - b0;
    const int64_t excess = (da - db) / 2;  // A's service beyond half.
    ASSERT_LE(excess, std::max<int64_t>(asleep.lag_ticks, 0) +
                          static_cast<int64_t>(slice + kMaxPoll))
        << "pick " << i;
  }
  const double da = qs.Stats(a).service_ticks - a0;
  const double db = qs.Stats(b).service_ticks - b0;
  EXPECT_NEAR(da / (da + db), 0.5, 0.02);
}

TEST(QueueSetTest, KeptLagIsClampedAndRestoredOnReturn) {
  QueueSet qs(TestConfig());
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t b = *qs.AddQueue(2, 1);
  TaskNode ta, tb;
  qs.Push(a, &ta);
  qs.Push(b, &tb);
  // Run B for one long poll so A is owed a lot, then cancel A's task.
  TaskNode* t;
  while ((t = qs.Pick()) != &tb) {
    qs.Charge(t, qs.Stats(a).slice_ticks);  // A's whole request.
    qs.Push(a, t);
  }
  qs.Charge(t, 20000);
  qs.Push(b, t);
  EXPECT_GT(qs.LagTicks(a), 5000);  // Owed ~10000.
  ASSERT_TRUE(qs.Remove(&ta));
  const QueueStats s = qs.Stats(a);
  EXPECT_EQ(s.lag_ticks, static_cast<int64_t>(s.slice_ticks));  // Clamped.
  for (int i = 0; i < 100; ++i) {
    t = qs.Pick();
    qs.Charge(t, 100);
    qs.Push(b, t);
  }
  qs.Push(a, &ta);
  EXPECT_NEAR(qs.LagTicks(a), s.lag_ticks, 2);
  EXPECT_EQ(qs.Pick(), &ta);  // Owed, so eligible with the earlier deadline.
}

TEST(QueueSetTest, WakeupThatWouldBePickedFirstSetsShouldPreempt) {
  const QueueSetConfig c = PreemptionConfig();
  QueueSet qs(c);
  // Requests: A (share 1) 500 ticks = 500 virtual per weight; B (share 9)
  // 900 ticks = 100 per weight: B's deadline is nearer.
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t b = *qs.AddQueue(2, 9);
  TaskNode ta, tb;
  qs.Push(a, &ta);
  TaskNode* t = qs.Pick();
  ASSERT_EQ(t, &ta);
  EXPECT_FALSE(qs.ShouldPreempt());
  qs.Push(b, &tb);  // Wakes while A runs.
  EXPECT_TRUE(qs.ShouldPreempt());
  EXPECT_EQ(qs.Stats(a).preemptions, 1u);
  qs.Charge(t, 10);
  qs.Push(a, t);
  EXPECT_EQ(qs.Pick(), &tb);  // EEVDF agrees.
  EXPECT_FALSE(qs.ShouldPreempt());  // Pick clears it.
  qs.Charge(&tb, 10);

  // The other way round: the woken queue's deadline is later: no preemption.
  QueueSet qs2(c);
  const uint16_t a2 = *qs2.AddQueue(1, 9);
  const uint16_t b2 = *qs2.AddQueue(2, 1);
  qs2.Push(a2, &ta);
  ASSERT_EQ(qs2.Pick(), &ta);
  qs2.Push(b2, &tb);
  EXPECT_FALSE(qs2.ShouldPreempt());
  qs2.ClearPreempt();
  EXPECT_EQ(qs2.Stats(a2).preemptions, 0u);
}

TEST(QueueSetTest, WakeupPreemptsAfterTheCurrentQueueWasCharged) {
  // A newcomer with no kept lag is placed at V itself; V computed with a
  // rounding-down reciprocal came out one unit below its key once the
  // current queue had been charged, so the wake-up neither set
  // ShouldPreempt nor was eligible at the next Pick.
  QueueSetConfig c;
  c.sched_latency_ticks = 1'000'000;
  c.min_slice_ticks = 100'000;
  // (A charge leaving queue a less of its request than b's whole request,
  // ~100 ticks, rightly does not preempt: a's deadline is then nearer.)
  for (uint64_t charge : {1u, 7u, 1000u, 12345u, 50'000u}) {
    QueueSet qs(c);
    const uint16_t a = *qs.AddQueue(1, 1);
    const uint16_t b = *qs.AddQueue(2, 10000);
    TaskNode ta1, ta2, tb;
    qs.Push(a, &ta1);
    qs.Push(a, &ta2);
    TaskNode* t = qs.Pick();
    ASSERT_EQ(t, &ta1);
    qs.Charge(t, charge);
    t = qs.Pick();
    ASSERT_EQ(t, &ta2);
    qs.Push(b, &tb);  // wakes while queue a's request lasts
    EXPECT_TRUE(qs.ShouldPreempt()) << "charge " << charge;
    qs.Charge(t, 10);
    EXPECT_EQ(qs.Pick(), &tb) << "charge " << charge;
    ASSERT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  }
}

TEST(QueueSetTest, RemoveOfAQueuedTask) {
  QueueSet qs(TestConfig());
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t b = *qs.AddQueue(2, 1, std::make_unique<LasScheduler>(4));
  std::vector<TaskNode> nodes(4);
  qs.Push(a, &nodes[0]);
  qs.Push(a, &nodes[1]);
  qs.Push(b, &nodes[2]);
  EXPECT_EQ(qs.Size(), 3u);
  EXPECT_TRUE(qs.Remove(&nodes[0]));
  EXPECT_FALSE(qs.Remove(&nodes[0]));
  EXPECT_FALSE(qs.Remove(&nodes[3]));  // Never queued.
  EXPECT_EQ(qs.Size(), 2u);
  EXPECT_TRUE(qs.Remove(&nodes[2]));  // B's only task: B goes idle.
  EXPECT_EQ(qs.num_runnable(), 1u);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  EXPECT_EQ(qs.Pick(), &nodes[1]);
  EXPECT_EQ(qs.Pick(), nullptr);
  EXPECT_TRUE(qs.Empty());
}

TEST(QueueSetTest, TwoHundredFiftySixQueues) {
  QueueSet qs(TestConfig());
  std::vector<TaskNode> nodes(QueueSet::kMaxQueues);
  for (size_t i = 0; i < QueueSet::kMaxQueues; ++i) {
    auto index = qs.AddQueue(static_cast<QueueId>(i * 7), 1 + (i % 10));
    ASSERT_TRUE(index.ok()) << index.status();
    qs.Push(*index, &nodes[i]);
  }
  EXPECT_EQ(qs.num_queues(), 256u);
  auto extra = qs.AddQueue(99999, 1);
  ASSERT_FALSE(extra.ok());
  EXPECT_EQ(extra.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(extra.status().message()).find("256"),
            std::string::npos)
      << extra.status();
  EXPECT_EQ(qs.IndexOf(7 * 255), 255);
  EXPECT_FALSE(qs.IndexOf(99999).has_value());
  std::vector<int> picked(256);
  for (int p = 0; p < 20000; ++p) {
    TaskNode* t = qs.Pick();
    ASSERT_NE(t, nullptr);
    ++picked[t->queue_index];
    qs.Charge(t, 100);
    qs.Push(t->queue_index, t);
  }
  ASSERT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  // Equal polls: picks follow shares (1..10, sum 1400 over 256 queues).
  for (size_t i = 0; i < 256; ++i) {
    const double fair = 20000.0 * (1 + i % 10) / 1400;
    EXPECT_NEAR(picked[i], fair, 0.1 * fair + 2) << "queue " << i;
  }
}

TEST(QueueSetConfigTest, BadSharesDuplicateIdsAndConfigsAreInvalidArgument) {
  QueueSet qs(TestConfig());
  auto zero = qs.AddQueue(3, 0);
  ASSERT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(zero.status().message()).find("share 0"),
            std::string::npos);
  EXPECT_NE(std::string(zero.status().message()).find("1..10000"),
            std::string::npos);
  auto big = qs.AddQueue(3, 10001);
  ASSERT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(big.status().message()).find("10001"),
            std::string::npos);
  ASSERT_TRUE(qs.AddQueue(3, 10000).ok());
  auto dup = qs.AddQueue(3, 5);
  ASSERT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(dup.status().message()).find("queue id 3"),
            std::string::npos);
  EXPECT_EQ(qs.num_queues(), 1u);
  EXPECT_EQ(qs.SetShare(0, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(qs.SetShare(1, 5).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(qs.SetShare(0, 5).ok());
  EXPECT_EQ(qs.Stats(0).share, 5u);

  QueueSetConfig c;
  c.sched_latency_ticks = 0;
  c.min_slice_ticks = 1;
  absl::Status s = c.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("sched_latency_ticks is 0"),
            std::string::npos);
  c.sched_latency_ticks = 100;
  c.min_slice_ticks = 200;
  s = c.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("min_slice_ticks is 200"),
            std::string::npos);
  EXPECT_FALSE(QueueSet::Create(c).ok());
  c.min_slice_ticks = 0;
  EXPECT_FALSE(c.Validate().ok());
  c.sched_latency_ticks = QueueSetConfig::kMaxLatencyTicks + 1;
  c.min_slice_ticks = 1;
  EXPECT_FALSE(c.Validate().ok());
  c.sched_latency_ticks = 100;
  EXPECT_TRUE(QueueSet::Create(c).ok());

  auto busy = std::make_unique<FifoScheduler>();
  TaskNode stray;
  busy->Push(&stray);
  auto nonempty = qs.AddQueue(77, 5, std::move(busy));
  ASSERT_EQ(nonempty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(nonempty.status().message()).find("holds 1 tasks"),
            std::string::npos)
      << nonempty.status();
  EXPECT_EQ(qs.Stats(200).share, 0u);  // Out of range: zeroed.
}

TEST(QueueSetTest, DefaultQueueRunsByPriorityFifoWithinOne) {
  // AddQueue without a scheduler: FifoScheduler, which QueueSet drives
  // without virtual calls; the order must be the priority order still.
  QueueSet qs(TestConfig());
  const uint16_t q = *qs.AddQueue(1, 1);
  EXPECT_EQ(qs.scheduler(q).Name(), "fifo");
  std::vector<TaskNode> nodes(6);
  const Priority prios[] = {Priority::kLow,  Priority::kNormal,
                            Priority::kHigh, Priority::kNormal,
                            Priority::kLow,  Priority::kHigh};
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].priority = prios[i];
    qs.Push(q, &nodes[i]);
  }
  std::vector<size_t> order;
  while (TaskNode* t = qs.Pick()) {
    order.push_back(static_cast<size_t>(t - nodes.data()));
    qs.Charge(t, 100);
  }
  EXPECT_EQ(order, (std::vector<size_t>{2, 5, 1, 3, 0, 4}));
  EXPECT_TRUE(qs.Empty());
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
}

TEST(QueueSetTest, SetShareOnARunnableQueueChangesItsRate) {
  QueueSet qs(TestConfig());
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t b = *qs.AddQueue(2, 1);
  TaskNode ta, tb;
  qs.Push(a, &ta);
  qs.Push(b, &tb);
  auto run = [&](int n) {
    for (int i = 0; i < n; ++i) {
      TaskNode* t = qs.Pick();
      qs.Charge(t, 100);
      qs.Push(t->queue_index, t);
    }
  };
  run(1000);
  ASSERT_TRUE(qs.SetShare(a, 4).ok());
  ASSERT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  const double a0 = qs.Stats(a).service_ticks;
  const double b0 = qs.Stats(b).service_ticks;
  run(10000);
  const double da = qs.Stats(a).service_ticks - a0;
  const double db = qs.Stats(b).service_ticks - b0;
  EXPECT_NEAR(da / (da + db), 0.8, 0.01);
}

// Random operation sequences with fixed seeds; every invariant after every
// step.
// Parameters: seed, number of queues (20: the scan choice; 40: the trees).
}  // namespace
}  // namespace spindle::sched
