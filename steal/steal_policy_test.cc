#include "steal/steal_policy.h"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "steal/steal_stats.h"

namespace spindle::steal {
namespace {

using std::chrono::microseconds;
using std::chrono::nanoseconds;

// Simulated victims: queue lengths; a steal takes min(max, half rounded up)
// like WorkDeque::StealBatch, and is logged.
struct Victims {
  explicit Victims(std::vector<size_t> lengths) : len(std::move(lengths)) {}

  std::vector<size_t> len;
  std::vector<size_t> probed;  // in order
  std::vector<size_t> asked;   // `max` of each probe
  std::vector<size_t> size_checked;

  auto SizeOf() {
    return [this](size_t v) {
      size_checked.push_back(v);
      return len[v];
    };
  }
  auto StealFrom() {
    return [this](size_t v, size_t max) {
      probed.push_back(v);
      asked.push_back(max);
      const size_t take = std::min(max, len[v] - len[v] / 2);
      len[v] -= take;
      return take;
    };
  }
};

StealPolicy MakePolicy(const StealOptions& o, uint64_t seed = 1) {
  auto p = StealPolicy::Create(o, seed);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(*p);
}

TEST(StealOptionsTest, DefaultsAreValid) {
  EXPECT_TRUE(StealOptions{}.Validate().ok());
  StealOptions o;
  EXPECT_EQ(o.steal_budget, 64u);
  EXPECT_EQ(o.victim_stride, 1u);
  EXPECT_EQ(o.victim_probe_count, 4u);
  EXPECT_EQ(o.batch_size, 32u);
  EXPECT_EQ(o.locality_margin, 0u);
  EXPECT_EQ(o.fail_cost, 1u);
  EXPECT_EQ(o.backoff_min, microseconds(1));
  EXPECT_EQ(o.backoff_max, microseconds(500));
  EXPECT_EQ(o.stealable_queue_capacity, 256u);
}

TEST(StealOptionsTest, EveryBadValueIsNamedWithItsRange) {
  struct Case {
    void (*mutate)(StealOptions&);
    std::string want;
  };
  const Case cases[] = {
      {[](StealOptions& o) { o.steal_budget = 0; },
       "StealOptions.steal_budget = 0 is out of range [1, 4096]"},
      {[](StealOptions& o) { o.steal_budget = 4097; },
       "StealOptions.steal_budget = 4097 is out of range [1, 4096]"},
      {[](StealOptions& o) { o.victim_stride = 0; },
       "StealOptions.victim_stride = 0 is out of range [1, 1024]"},
      {[](StealOptions& o) { o.victim_probe_count = 0; },
       "StealOptions.victim_probe_count = 0 is out of range [1, 1024]"},
      {[](StealOptions& o) { o.victim_probe_count = 5000; },
       "StealOptions.victim_probe_count = 5000 is out of range [1, 1024]"},
      {[](StealOptions& o) { o.batch_size = 0; },
       "StealOptions.batch_size = 0 is out of range [1, 128]"},
      {[](StealOptions& o) { o.batch_size = 129; },
       "StealOptions.batch_size = 129 is out of range [1, 128]"},
      {[](StealOptions& o) { o.locality_margin = 4097; },
       "StealOptions.locality_margin = 4097 is out of range [0, 4096]"},
      {[](StealOptions& o) { o.fail_cost = 10000; },
       "StealOptions.fail_cost = 10000 is out of range [0, 4096]"},
      {[](StealOptions& o) { o.backoff_min = nanoseconds(-1); },
       "StealOptions.backoff_min = -1 ns is out of range [0 ns, 1000000000 "
       "ns]"},
      {[](StealOptions& o) { o.backoff_min = std::chrono::seconds(2); },
       "StealOptions.backoff_min = 2000000000 ns is out of range [0 ns, "
       "1000000000 ns]"},
      {[](StealOptions& o) { o.backoff_max = nanoseconds(999); },
       "StealOptions.backoff_max = 999 ns is out of range [1000 ns, "
       "1000000000 ns]"},
      {[](StealOptions& o) { o.stealable_queue_capacity = 0; },
       "StealOptions.stealable_queue_capacity = 0 is out of range [1, 65536]"},
      {[](StealOptions& o) { o.stealable_queue_capacity = 65537; },
       "StealOptions.stealable_queue_capacity = 65537 is out of range [1, "
       "65536]"},
  };
  for (const Case& c : cases) {
    StealOptions o;
    c.mutate(o);
    const absl::Status s = o.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.want;
    EXPECT_EQ(s.message(), c.want);
    EXPECT_EQ(StealPolicy::Create(o).status(), s);
  }
}

TEST(StealOptionsTest, BoundaryValuesAreValid) {
  StealOptions o;
  o.steal_budget = 4096;
  o.victim_stride = 1024;
  o.victim_probe_count = 1024;
  o.batch_size = 128;
  o.locality_margin = 4096;
  o.fail_cost = 0;
  o.backoff_min = nanoseconds(0);
  o.backoff_max = nanoseconds(0);
  o.stealable_queue_capacity = 65536;
  EXPECT_TRUE(o.Validate().ok());
}

TEST(StealPolicyTest, VictimWalkCoversEveryOtherWorkerForAnyStride) {
  for (size_t workers = 2; workers <= 9; ++workers) {
    for (size_t stride = 1; stride <= 12; ++stride) {
      for (size_t self = 0; self < workers; ++self) {
        for (size_t start = 0; start < workers - 1; ++start) {
          std::set<size_t> seen;
          for (size_t k = 0; k < workers - 1; ++k) {
            const size_t v =
                StealPolicy::VictimAt(self, workers, stride, start, k);
            EXPECT_NE(v, self);
            EXPECT_LT(v, workers);
            seen.insert(v);
          }
          EXPECT_EQ(seen.size(), workers - 1)
              << workers << " workers, stride " << stride;
        }
      }
    }
  }
}

TEST(StealPolicyTest, StrideSetsTheStepBetweenVictims) {
  // 8 workers, self 0: victims are 1..7 (positions 0..6).
  EXPECT_EQ(StealPolicy::VictimAt(0, 8, 1, 0, 0), 1u);
  EXPECT_EQ(StealPolicy::VictimAt(0, 8, 1, 0, 1), 2u);
  EXPECT_EQ(StealPolicy::VictimAt(0, 8, 3, 0, 1), 4u);
  EXPECT_EQ(StealPolicy::VictimAt(0, 8, 3, 0, 2), 7u);
  EXPECT_EQ(StealPolicy::VictimAt(0, 8, 3, 0, 3), 3u);  // (9 mod 7) + 1
  // 7 workers (6 victims), stride 2: positions 0 2 4, then 1 3 5.
  std::vector<size_t> walk;
  for (size_t k = 0; k < 6; ++k)
    walk.push_back(StealPolicy::VictimAt(6, 7, 2, 0, k));
  EXPECT_EQ(walk, (std::vector<size_t>{0, 2, 4, 1, 3, 5}));
}

TEST(StealPolicyTest, ProbeCountBoundsVictimsPerScan) {
  StealOptions o;
  o.victim_probe_count = 3;
  o.fail_cost = 0;
  StealPolicy p = MakePolicy(o);
  Victims v{std::vector<size_t>(8, 0)};
  std::fill(v.len.begin(), v.len.end(), 1);
  v.len[0] = 0;
  // Every victim holds one task; with budget left, it still stops at 3.
  auto r = p.Scan(0, 8, v.SizeOf(), v.StealFrom());
  EXPECT_EQ(r.probes, 3u);
  EXPECT_EQ(r.stolen, 3u);
  // Capped at workers - 1.
  o.victim_probe_count = 100;
  StealPolicy q = MakePolicy(o);
  Victims w{std::vector<size_t>(4, 10)};
  r = q.Scan(2, 4, w.SizeOf(), w.StealFrom());
  EXPECT_EQ(r.probes, 3u);
  EXPECT_EQ(std::set<size_t>(w.probed.begin(), w.probed.end()),
            (std::set<size_t>{0, 1, 3}));
}

TEST(StealPolicyTest, BatchSizeBoundsEachProbeAndBudgetBoundsTheScan) {
  StealOptions o;
  o.batch_size = 8;
  o.steal_budget = 20;
  o.victim_probe_count = 7;
  StealPolicy p = MakePolicy(o);
  Victims v{std::vector<size_t>(8, 100)};
  auto r = p.Scan(0, 8, v.SizeOf(), v.StealFrom());
  // 8 + 8 + 4: the last probe asks only for what the budget has left.
  EXPECT_EQ(r.stolen, 20u);
  EXPECT_EQ(r.probes, 3u);
  EXPECT_EQ(v.asked, (std::vector<size_t>{8, 8, 4}));
  EXPECT_EQ(r.cooldown, nanoseconds(0));
}

TEST(StealPolicyTest, LocalityMarginSkipsShortQueues) {
  StealOptions o;
  o.locality_margin = 3;
  o.victim_probe_count = 7;
  StealPolicy p = MakePolicy(o);
  Victims v{{0, 3, 4, 1, 9, 3, 0, 2}};
  auto r = p.Scan(0, 8, v.SizeOf(), v.StealFrom());
  EXPECT_EQ(std::set<size_t>(v.probed.begin(), v.probed.end()),
            (std::set<size_t>{2, 4}));
  EXPECT_EQ(r.stolen, 2u + 5u);
  EXPECT_EQ(v.size_checked.size(), 7u);  // looked at all, probed two
}

TEST(StealPolicyTest, AVictimThatWaivesTheMarginIsProbedWhenNotEmpty) {
  StealOptions o;
  o.locality_margin = 3;
  o.victim_probe_count = 7;
  StealPolicy p = MakePolicy(o);
  EXPECT_FALSE(p.MayStealFrom(3));
  EXPECT_TRUE(p.MayStealFrom(4));
  EXPECT_TRUE(p.MayStealFrom(1, /*waive_margin=*/true));
  EXPECT_FALSE(p.MayStealFrom(0, /*waive_margin=*/true));
  // Victims 1 (3 tasks) and 6 (none) keep no locality: 1 is probed beside
  // 2 and 4, past the margin; 6 is not (nothing to take).
  Victims v{{0, 3, 4, 1, 9, 3, 0, 2}};
  auto r = p.Scan(0, 8, v.SizeOf(), v.StealFrom(),
                  [](size_t w) { return w == 1 || w == 6; });
  EXPECT_EQ(std::set<size_t>(v.probed.begin(), v.probed.end()),
            (std::set<size_t>{1, 2, 4}));
  EXPECT_EQ(r.probes, 3u);
}

TEST(StealPolicyTest, FailCostEndsScansOverEmptyVictimsEarly) {
  StealOptions o;
  o.victim_probe_count = 7;
  o.steal_budget = 6;
  o.fail_cost = 3;
  StealPolicy p = MakePolicy(o);
  // Sizes say non-empty but steals fail (another thief got there first).
  Victims v{std::vector<size_t>(8, 5)};
  auto size_of = [](size_t) { return size_t{5}; };
  auto fail = [&](size_t vv, size_t) {
    v.probed.push_back(vv);
    return size_t{0};
  };
  auto r = p.Scan(0, 8, size_of, fail);
  EXPECT_EQ(r.probes, 2u);  // 6 / 3
  o.fail_cost = 0;
  StealPolicy free_fail = MakePolicy(o);
  r = free_fail.Scan(0, 8, size_of, fail);
  EXPECT_EQ(r.probes, 7u);
  o.fail_cost = 4096;
  StealPolicy one_shot = MakePolicy(o);
  r = one_shot.Scan(0, 8, size_of, fail);
  EXPECT_EQ(r.probes, 1u);
}

TEST(StealPolicyTest, BackoffDoublesWithinBoundsAndResetsOnSuccess) {
  StealOptions o;
  o.backoff_min = microseconds(2);
  o.backoff_max = microseconds(20);
  StealPolicy p = MakePolicy(o);
  Victims empty{std::vector<size_t>(4, 0)};
  std::vector<nanoseconds> seen;
  for (int i = 0; i < 6; ++i) {
    seen.push_back(p.Scan(0, 4, empty.SizeOf(), empty.StealFrom()).cooldown);
  }
  EXPECT_EQ(seen, (std::vector<nanoseconds>{
                      microseconds(2), microseconds(4), microseconds(8),
                      microseconds(16), microseconds(20), microseconds(20)}));
  EXPECT_EQ(p.cooldown(), microseconds(20));
  Victims full{std::vector<size_t>(4, 4)};
  EXPECT_EQ(p.Scan(0, 4, full.SizeOf(), full.StealFrom()).cooldown,
            nanoseconds(0));
  EXPECT_EQ(p.Scan(0, 4, empty.SizeOf(), empty.StealFrom()).cooldown,
            microseconds(2));
  p.ResetCooldown();
  EXPECT_EQ(p.cooldown(), nanoseconds(0));
  EXPECT_EQ(p.Scan(0, 4, empty.SizeOf(), empty.StealFrom()).cooldown,
            microseconds(2));
  const StealStats s = p.counters().Snapshot();
  EXPECT_EQ(s.scans, 9u);
  EXPECT_EQ(s.fruitless_scans, 8u);
  EXPECT_EQ(s.backoffs, 8u);
}

TEST(StealPolicyTest, ZeroBackoffMinDisablesCooldown) {
  StealOptions o;
  o.backoff_min = nanoseconds(0);
  o.backoff_max = microseconds(50);
  StealPolicy p = MakePolicy(o);
  Victims empty{std::vector<size_t>(3, 0)};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(p.Scan(1, 3, empty.SizeOf(), empty.StealFrom()).cooldown,
              nanoseconds(0));
  }
  EXPECT_EQ(p.counters().Snapshot().backoffs, 0u);
  EXPECT_EQ(p.counters().Snapshot().fruitless_scans, 4u);
}

TEST(StealPolicyTest, SingleWorkerHasNoVictims) {
  StealPolicy p = MakePolicy(StealOptions{});
  Victims v{{5}};
  auto r = p.Scan(0, 1, v.SizeOf(), v.StealFrom());
  EXPECT_EQ(r.probes, 0u);
  EXPECT_EQ(r.stolen, 0u);
  EXPECT_TRUE(v.size_checked.empty());
}

TEST(StealPolicyTest, StartingVictimRotatesAndIsReproducible) {
  StealOptions o;
  o.victim_probe_count = 1;
  std::vector<size_t> a, b;
  for (uint64_t seed : {1u, 1u}) {
    StealPolicy p = MakePolicy(o, seed);
    Victims v{std::vector<size_t>(8, 1000)};
    for (int i = 0; i < 64; ++i) p.Scan(0, 8, v.SizeOf(), v.StealFrom());
    (a.empty() ? a : b) = v.probed;
  }
  EXPECT_EQ(a, b);
  EXPECT_EQ(std::set<size_t>(a.begin(), a.end()).size(), 7u);
}

TEST(StealPolicyTest, StealableCapacityIsBackpressure) {
  StealOptions o;
  o.stealable_queue_capacity = 3;
  StealPolicy p = MakePolicy(o);
  EXPECT_TRUE(p.AdmitStealable(0));
  EXPECT_TRUE(p.AdmitStealable(2));
  EXPECT_FALSE(p.AdmitStealable(3));
  EXPECT_FALSE(p.AdmitStealable(100));
}

TEST(StealStatsTest, RatiosUseConsistentUnits) {
  StealOptions o;
  o.victim_probe_count = 7;
  o.batch_size = 4;
  o.steal_budget = 100;
  StealPolicy p = MakePolicy(o);
  // One victim with many tasks, the rest empty-but-claiming: steals that
  // take several tasks per probe must not push the success rate past 1.
  Victims v{{0, 40, 0, 0, 0, 0, 0, 0}};
  auto size_of = [](size_t) { return size_t{1}; };
  for (int i = 0; i < 5; ++i) p.Scan(0, 8, size_of, v.StealFrom());
  p.counters().AddLocal(30);
  p.counters().AddInjected(10);
  const StealStats s = p.counters().Snapshot();
  EXPECT_EQ(s.scans, 5u);
  EXPECT_EQ(s.probes, 35u);
  EXPECT_EQ(s.successful_probes, 5u);
  EXPECT_EQ(s.tasks_stolen, 20u);
  EXPECT_DOUBLE_EQ(s.steal_success_rate(), 5.0 / 35.0);
  EXPECT_LE(s.steal_success_rate(), 1.0);
  EXPECT_DOUBLE_EQ(s.stolen_per_scan(), 4.0);
  EXPECT_DOUBLE_EQ(s.stolen_per_success(), 4.0);
  EXPECT_DOUBLE_EQ(s.local_hit_ratio(), 30.0 / 60.0);

  StealStats zero;
  EXPECT_EQ(zero.steal_success_rate(), 0.0);
  EXPECT_EQ(zero.stolen_per_scan(), 0.0);
  EXPECT_EQ(zero.local_hit_ratio(), 0.0);
  StealStats sum = s;
  sum += s;
  EXPECT_EQ(sum.probes, 70u);
  EXPECT_DOUBLE_EQ(sum.steal_success_rate(), s.steal_success_rate());
}

TEST(StealStatsTest, MovedPolicyKeepsItsCounters) {
  StealPolicy p = MakePolicy(StealOptions{});
  Victims v{{0, 10}};
  p.Scan(0, 2, v.SizeOf(), v.StealFrom());
  StealPolicy q = std::move(p);
  EXPECT_EQ(q.counters().Snapshot().tasks_stolen, 5u);
  StealPolicy r = MakePolicy(StealOptions{});
  r = std::move(q);
  EXPECT_EQ(r.counters().Snapshot().tasks_stolen, 5u);
  EXPECT_EQ(r.counters().Snapshot().scans, 1u);
}

}  // namespace
}  // namespace spindle::steal
