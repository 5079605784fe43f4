#include "budget/tier.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace spindle::budget {
namespace {

constexpr uint64_t kUs = 1'000;
constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kSec = 1'000'000'000;

// A config with round numbers; ticks are nanoseconds (ticks_per_ns = 1).
TierConfig TestConfig() {
  TierConfig c;
  c.poll_budget = 2000;
  c.cpu_threshold_ns = 1 * kMs;
  c.promotion_violations = {2, 3, 4};
  c.demotion_good_polls = 5;
  c.demotion_cpu_threshold_ns = 500 * kUs;
  c.demotion_min_time_ns = 1 * kSec;
  c.promotion_hysteresis_ns = 100 * kMs;
  c.demotion_hysteresis_ns = 500 * kMs;
  c.violation_cooldown_ns = 1 * kSec;
  c.log_warnings = false;
  return c;
}

// Drives one task with a fake clock: each Poll starts at `now`, lasts
// `elapsed`, and the clock then moves by elapsed + gap.
class Harness {
 public:
  explicit Harness(const TierConfig& config) {
    auto policy = TierPolicy::FromConfig(config, 1.0);
    EXPECT_TRUE(policy.ok()) << policy.status();
    tm = TierManager::Create(*policy);
    ctx.task_id = 7;
    ctx.name = "hog";
    tm->OnSpawn(ctx);
  }

  Action Poll(uint64_t elapsed, uint64_t gap = 0,
              PollOutcome outcome = PollOutcome::kPending) {
    tm->BeforePoll(ctx, now);
    EXPECT_EQ(ctx.poll_start_tick, now);
    const Action a = tm->AfterPoll(ctx, outcome, elapsed);
    now += elapsed + gap;
    return a;
  }
  Action Violate(uint64_t gap = 0) { return Poll(2 * kMs, gap); }
  Action Good(uint64_t gap = 0) { return Poll(100 * kUs, gap); }

  std::unique_ptr<TierManager> tm;
  TaskContext ctx;
  uint64_t now = 5'000 * kSec;  // arbitrary start
};

TEST(TierTest, NamesAreStable) {
  EXPECT_EQ(TierName(Tier::kIsolate), "isolate");
  EXPECT_EQ(ActionName(Action::kYield), "yield");
  EXPECT_EQ(TaskPriorityName(TaskPriority::kLow), "low");
}

TEST(TierTest, WellBehavedTaskStaysAtMonitor) {
  Harness h(TestConfig());
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(h.Good(), Action::kNone);
  EXPECT_EQ(h.ctx.tier(), Tier::kMonitor);
  const TierMetrics m = h.tm->Metrics();
  EXPECT_EQ(m.slow_polls, 0u);
  EXPECT_EQ(m.promotions, 0u);
  EXPECT_EQ(m.tasks_per_tier[0], 1);
}

// Most tasks never have a slow poll: their context holds no bookkeeping
// (no allocation, 8 bytes in the header); the first violation allocates it,
// and a slow poll that ends the task does not.
TEST(TierTest, BookkeepingIsAllocatedAtTheFirstViolation) {
  Harness h(TestConfig());
  for (int i = 0; i < 100; ++i) ASSERT_EQ(h.Good(), Action::kNone);
  EXPECT_EQ(h.ctx.tier_bookkeeping, nullptr);
  EXPECT_EQ(h.ctx.tier_state().total_violations, 0u);
  h.Poll(2 * kMs, 0, PollOutcome::kReady);
  EXPECT_EQ(h.ctx.tier_bookkeeping, nullptr);
  EXPECT_EQ(h.Violate(), Action::kNone);
  ASSERT_NE(h.ctx.tier_bookkeeping, nullptr);
  EXPECT_EQ(h.ctx.tier_state().total_violations, 1u);
  EXPECT_EQ(h.ctx.tier_state().violations, 1u);
  EXPECT_TRUE(h.ctx.tier_state().violated_before);
  // A respawned context starts clean.
  h.tm->OnComplete(h.ctx);
  h.tm->OnSpawn(h.ctx);
  EXPECT_EQ(h.ctx.tier_bookkeeping, nullptr);
  EXPECT_EQ(h.ctx.tier(), Tier::kMonitor);
}

TEST(TierTest, PollAtThresholdIsNotAViolation) {
  Harness h(TestConfig());
  for (int i = 0; i < 10; ++i) ASSERT_EQ(h.Poll(1 * kMs), Action::kNone);
  EXPECT_EQ(h.tm->Metrics().violations, 0u);
  h.Poll(1 * kMs + 1);
  EXPECT_EQ(h.tm->Metrics().violations, 1u);
}

TEST(TierTest, EscalatesOneTierAtATimeToIsolate) {
  Harness h(TestConfig());
  const uint64_t gap = 100 * kMs;  // >= promotion hysteresis, < cooldown
  EXPECT_EQ(h.Violate(gap), Action::kNone);
  EXPECT_EQ(h.ctx.tier(), Tier::kMonitor);
  EXPECT_EQ(h.Violate(gap), Action::kWarn);  // 2 -> warn
  EXPECT_EQ(h.ctx.tier(), Tier::kWarn);
  EXPECT_EQ(h.Violate(gap), Action::kWarn);
  EXPECT_EQ(h.Violate(gap), Action::kWarn);
  EXPECT_EQ(h.Violate(gap), Action::kYield);  // 3 at warn -> yield
  EXPECT_EQ(h.ctx.tier(), Tier::kYield);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.Violate(gap), Action::kYield);
  EXPECT_EQ(h.Violate(gap), Action::kIsolate);  // 4 at yield -> isolate
  EXPECT_EQ(h.ctx.tier(), Tier::kIsolate);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(h.Violate(gap), Action::kIsolate);
    ASSERT_EQ(h.ctx.tier(), Tier::kIsolate) << "never past isolate";
  }
  const TierMetrics m = h.tm->Metrics();
  EXPECT_EQ(m.promotions, 3u);
  EXPECT_EQ(m.violations, 2u + 3 + 4 + 20);
  EXPECT_EQ(m.slow_polls, m.violations);
  EXPECT_EQ(m.tasks_per_tier[3], 1);
  EXPECT_EQ(m.tasks_per_tier[0], 0);
  EXPECT_EQ(h.ctx.tier_state().total_violations, 29u);
}

TEST(TierTest, PromotionHysteresisDefersTheNextPromotion) {
  Harness h(TestConfig());
  h.Violate();
  EXPECT_EQ(h.Violate(), Action::kWarn);
  const uint64_t promoted_at = h.ctx.tier_state().last_promotion_tick;
  // Three quick violations reach the warn->yield count within 100 ms of
  // the promotion: no promotion yet, the count is kept.
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(h.Violate(), Action::kWarn);
    ASSERT_EQ(h.ctx.tier(), Tier::kWarn);
  }
  ASSERT_LT(h.now - promoted_at, 100 * kMs);
  // Just before the hysteresis ends: still warn.
  h.now = promoted_at + 100 * kMs - 2 * kMs - 1;
  EXPECT_EQ(h.Violate(), Action::kWarn);
  EXPECT_EQ(h.ctx.tier(), Tier::kWarn);
  // The first violation ending at or after it promotes.
  h.now = promoted_at + 100 * kMs - 2 * kMs;
  EXPECT_EQ(h.Violate(), Action::kYield);
  EXPECT_EQ(h.ctx.tier(), Tier::kYield);
}

TEST(TierTest, ViolationCooldownRestartsTheCount) {
  Harness h(TestConfig());
  EXPECT_EQ(h.Violate(1 * kSec + 1), Action::kNone);  // quiet gap > 1 s
  EXPECT_EQ(h.Violate(), Action::kNone) << "count restarted: 1 of 2";
  EXPECT_EQ(h.tm->Metrics().cooldowns, 1u);
  EXPECT_EQ(h.ctx.tier(), Tier::kMonitor);
  EXPECT_EQ(h.Violate(), Action::kWarn);
  // Sporadic violations never climb.
  Harness s(TestConfig());
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(s.Violate(2 * kSec), Action::kNone);
  }
  EXPECT_EQ(s.ctx.tier(), Tier::kMonitor);
  EXPECT_EQ(s.tm->Metrics().cooldowns, 49u);
}

// Drives a fresh harness to kWarn; returns the promotion tick.
uint64_t ToWarn(Harness& h) {
  h.Violate();
  EXPECT_EQ(h.Violate(), Action::kWarn);
  return h.ctx.tier_state().last_promotion_tick;
}

TEST(TierTest, DemotionNeedsTheConfiguredNumberOfGoodPolls) {
  TierConfig c = TestConfig();
  c.demotion_min_time_ns = 0;
  c.demotion_hysteresis_ns = 0;
  Harness h(c);
  ToWarn(h);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(h.Good(), Action::kNone);
    ASSERT_EQ(h.ctx.tier(), Tier::kWarn);
  }
  // A poll between the good (500 us) and violation (1 ms) thresholds ends
  // the streak without being a violation.
  EXPECT_EQ(h.Poll(700 * kUs), Action::kNone);
  EXPECT_EQ(h.ctx.tier_state().good_polls, 0u);
  for (int i = 0; i < 4; ++i) {
    h.Good();
    ASSERT_EQ(h.ctx.tier(), Tier::kWarn);
  }
  h.Good();
  EXPECT_EQ(h.ctx.tier(), Tier::kMonitor);
  EXPECT_EQ(h.tm->Metrics().demotions, 1u);
  EXPECT_EQ(h.tm->Metrics().violations, 2u);
}

TEST(TierTest, DemotionWaitsForMinimumTimeAtTier) {
  TierConfig c = TestConfig();
  c.demotion_hysteresis_ns = 0;
  Harness h(c);
  const uint64_t entered = ToWarn(h);
  EXPECT_EQ(h.ctx.tier_state().tier_entered_tick, entered);
  // Good polls every 10 ms: the streak is long enough after 5, but the task
  // must stay 1 s at the tier.
  while (true) {
    const uint64_t poll_end = h.now + 100 * kUs;
    h.Good(10 * kMs);
    if (poll_end - entered < 1 * kSec) {
      ASSERT_EQ(h.ctx.tier(), Tier::kWarn) << (poll_end - entered);
    } else {
      EXPECT_EQ(h.ctx.tier(), Tier::kMonitor);
      EXPECT_LT(poll_end - entered, 1 * kSec + 11 * kMs);
      break;
    }
  }
}

TEST(TierTest, DemotionHysteresisCountsFromTheLastViolation) {
  TierConfig c = TestConfig();
  c.demotion_min_time_ns = 0;
  Harness h(c);
  ToWarn(h);
  h.Violate();  // 1 of 3 at warn: no promotion, but resets the quiet time
  const uint64_t last_violation = h.ctx.tier_state().last_violation_tick;
  while (true) {
    const uint64_t poll_end = h.now + 100 * kUs;
    h.Good(20 * kMs);
    if (poll_end - last_violation < 500 * kMs) {
      ASSERT_EQ(h.ctx.tier(), Tier::kWarn);
    } else {
      EXPECT_EQ(h.ctx.tier(), Tier::kMonitor);
      EXPECT_LT(poll_end - last_violation, 521 * kMs);
      break;
    }
  }
}

TEST(TierTest, DescendsOneTierAtATimeFromIsolate) {
  TierConfig c = TestConfig();
  c.promotion_hysteresis_ns = 0;
  Harness h(c);
  while (h.ctx.tier() != Tier::kIsolate) h.Violate();
  std::vector<Tier> seen;
  Tier last = h.ctx.tier();
  for (int i = 0; i < 10'000 && h.ctx.tier() != Tier::kMonitor; ++i) {
    ASSERT_EQ(h.Good(10 * kMs), Action::kNone);
    if (h.ctx.tier() != last) {
      ASSERT_EQ(static_cast<int>(h.ctx.tier()), static_cast<int>(last) - 1);
      last = h.ctx.tier();
      seen.push_back(last);
    }
  }
  EXPECT_EQ(seen, (std::vector<Tier>{Tier::kYield, Tier::kWarn,
                                     Tier::kMonitor}));
  EXPECT_EQ(h.tm->Metrics().demotions, 3u);
}

TEST(TierTest, BudgetAndDeadlineFollowTierAndPriority) {
  TierConfig c = TestConfig();
  c.yield_budget_fraction = 0.25;
  c.isolate_budget_fraction = 0.125;
  c.priority_budget_scale = {2.0, 1.5, 1.0, 0.5};
  c.priority_threshold_scale = {4.0, 2.0, 1.0, 0.5};
  auto policy = TierPolicy::FromConfig(c, 1.0);
  ASSERT_TRUE(policy.ok());
  auto tm = TierManager::Create(*policy);
  const uint32_t base[4] = {4000, 3000, 2000, 1000};
  const uint64_t thr[4] = {4 * kMs, 2 * kMs, 1 * kMs, 500 * kUs};
  const double frac[4] = {1, 1, 0.25, 0.125};
  for (int p = 0; p < 4; ++p) {
    for (int t = 0; t < 4; ++t) {
      TaskContext ctx;
      ctx.priority = static_cast<TaskPriority>(p);
      tm->OnSpawn(ctx);
      ctx.budget.set_tier(static_cast<uint8_t>(t));
      tm->BeforePoll(ctx, 1000);
      EXPECT_EQ(ctx.budget.Remaining(),
                static_cast<uint32_t>(base[p] * frac[t]))
          << "p=" << p << " t=" << t;
      // The deadline is half the violation threshold: polite code that
      // honours it never becomes a violation.
      EXPECT_EQ(ctx.budget.deadline(),
                1000 + static_cast<uint64_t>(thr[p] * frac[t] / 2))
          << "p=" << p << " t=" << t;
      EXPECT_LT(ctx.budget.deadline() - 1000,
                static_cast<uint64_t>(thr[p] * frac[t]));
    }
  }
}

TEST(TierTest, PriorityScalesTheViolationThreshold) {
  TierConfig c = TestConfig();
  c.priority_threshold_scale = {2.0, 1.5, 1.0, 0.5};
  // 1.2 ms polls: a violation for normal and low, not for high/critical.
  for (int p = 0; p < 4; ++p) {
    Harness h(c);
    h.ctx.priority = static_cast<TaskPriority>(p);
    for (int i = 0; i < 5; ++i) h.Poll(1200 * kUs);
    const bool expect_violation = p >= 2;
    EXPECT_EQ(h.tm->Metrics().violations, expect_violation ? 5u : 0u)
        << TaskPriorityName(h.ctx.priority);
    EXPECT_EQ(h.ctx.tier() != Tier::kMonitor, expect_violation);
  }
  // Low priority also has a stricter good-poll bound (250 us): 300 us polls
  // do not demote a low task but do demote a normal one.
  for (TaskPriority prio : {TaskPriority::kNormal, TaskPriority::kLow}) {
    TierConfig d = c;
    d.demotion_min_time_ns = 0;
    d.demotion_hysteresis_ns = 0;
    Harness h(d);
    h.ctx.priority = prio;
    ToWarn(h);
    for (int i = 0; i < 10; ++i) h.Poll(300 * kUs);
    EXPECT_EQ(h.ctx.tier(), prio == TaskPriority::kLow ? Tier::kWarn
                                                       : Tier::kMonitor)
        << TaskPriorityName(prio);
  }
}

TEST(TierTest, EscalationDisabledStopsAtWarn) {
  TierConfig c = TestConfig();
  c.escalation_enabled = false;
  Harness h(c);
  for (int i = 0; i < 100; ++i) {
    const Action a = h.Violate(100 * kMs);
    ASSERT_TRUE(a == Action::kNone || a == Action::kWarn) << ActionName(a);
  }
  EXPECT_EQ(h.ctx.tier(), Tier::kWarn);
  EXPECT_EQ(h.tm->policy().max_tier, Tier::kWarn);
  EXPECT_EQ(h.tm->Metrics().promotions, 1u);
}

TEST(TierTest, WarningsReachTheCallbackAndLogOncePerTaskPerTier) {
  TierConfig c = TestConfig();
  c.log_warnings = true;
  c.promotion_hysteresis_ns = 0;
  Harness h(c);
  std::vector<WarningEvent> events;
  h.tm->SetWarningCallback(
      [&](const WarningEvent& e) { events.push_back(e); });
  h.Violate();
  EXPECT_TRUE(events.empty()) << "monitor-tier violations are not warnings";
  h.Violate();  // -> warn
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].task_id, 7u);
  EXPECT_STREQ(events[0].name, "hog");
  EXPECT_EQ(events[0].tier, Tier::kWarn);
  EXPECT_EQ(events[0].poll_ns, 2 * kMs);
  for (int i = 0; i < 20; ++i) h.Violate();  // warn, yield, isolate, ...
  EXPECT_EQ(events.size(), 21u);
  EXPECT_EQ(events.back().tier, Tier::kIsolate);
  const TierMetrics m = h.tm->Metrics();
  EXPECT_EQ(m.warnings, 21u);
  EXPECT_EQ(m.log_lines, 3u) << "one line per tier: warn, yield, isolate";
  // A second task gets its own lines.
  TaskContext other;
  other.task_id = 8;
  h.tm->OnSpawn(other);
  for (int i = 0; i < 3; ++i) {
    h.tm->BeforePoll(other, h.now);
    h.tm->AfterPoll(other, PollOutcome::kPending, 2 * kMs);
    h.now += 2 * kMs;
  }
  EXPECT_EQ(other.tier(), Tier::kWarn);
  EXPECT_EQ(h.tm->Metrics().log_lines, 4u);
  EXPECT_EQ(events.back().task_id, 8u);
  EXPECT_EQ(events.back().name, nullptr);
}

TEST(TierTest, FinishingPollIsCountedButChangesNoTier) {
  Harness h(TestConfig());
  h.Violate();
  EXPECT_EQ(h.Poll(5 * kMs, 0, PollOutcome::kReady), Action::kNone);
  EXPECT_EQ(h.ctx.tier(), Tier::kMonitor);
  const TierMetrics m = h.tm->Metrics();
  EXPECT_EQ(m.slow_polls, 2u);
  EXPECT_EQ(m.violations, 1u);
}

TEST(TierTest, GaugesFollowSpawnPromotionAndCompletion) {
  Harness h(TestConfig());
  TaskContext a, b;
  h.tm->OnSpawn(a);
  h.tm->OnSpawn(b);
  EXPECT_EQ(h.tm->Metrics().tasks_per_tier[0], 3);
  ToWarn(h);
  TierMetrics m = h.tm->Metrics();
  EXPECT_EQ(m.tasks_per_tier[0], 2);
  EXPECT_EQ(m.tasks_per_tier[1], 1);
  h.tm->OnComplete(h.ctx);
  h.tm->OnComplete(a);
  h.tm->OnYield(b);
  m = h.tm->Metrics();
  EXPECT_EQ(m.tasks_per_tier[0], 1);
  EXPECT_EQ(m.tasks_per_tier[1], 0);
  EXPECT_EQ(m.yields, 1u);
}

TEST(TierTest, SpawnResetsReusedContext) {
  Harness h(TestConfig());
  ToWarn(h);
  h.tm->OnComplete(h.ctx);
  h.tm->OnSpawn(h.ctx);
  EXPECT_EQ(h.ctx.tier(), Tier::kMonitor);
  EXPECT_EQ(h.ctx.tier_state().violations, 0u);
  EXPECT_FALSE(h.ctx.tier_state().promoted_before);
}

TEST(TierTest, RealClockBeforePollStampsAndSetsDeadline) {
  auto tm = TierManager::Create(TierConfig::Balanced());
  ASSERT_TRUE(tm.ok()) << tm.status();
  TaskContext ctx;
  (*tm)->OnSpawn(ctx);
  const uint64_t t0 = timing::TscClock::Now();
  (*tm)->BeforePoll(ctx);
  const uint64_t t1 = timing::TscClock::Now();
  EXPECT_GE(ctx.poll_start_tick, t0);
  EXPECT_LE(ctx.poll_start_tick, t1);
  EXPECT_EQ(ctx.budget.Remaining(), 2000u);
  const uint64_t ns = timing::TscClock::ToNanos(ctx.budget.deadline() -
                                                ctx.poll_start_tick);
  EXPECT_NEAR(static_cast<double>(ns), 0.5e6, 1e4);  // half the threshold
  EXPECT_EQ((*tm)->AfterPoll(ctx, PollOutcome::kPending,
                             timing::TscClock::Now() - ctx.poll_start_tick),
            Action::kNone);
}

// ---- Config ---------------------------------------------------------------

TEST(TierConfigTest, PresetsAreValidAndOrdered) {
  const TierConfig a = TierConfig::Aggressive();
  const TierConfig b = TierConfig::Balanced();
  const TierConfig p = TierConfig::Permissive();
  EXPECT_TRUE(a.Validate().ok()) << a.Validate();
  EXPECT_TRUE(b.Validate().ok()) << b.Validate();
  EXPECT_TRUE(p.Validate().ok()) << p.Validate();
  EXPECT_EQ(b.poll_budget, 2000u);
  EXPECT_EQ(b.cpu_threshold_ns, 1'000'000u);
  EXPECT_EQ(b.promotion_hysteresis_ns, 100'000'000u);
  EXPECT_EQ(b.demotion_hysteresis_ns, 500'000'000u);
  EXPECT_TRUE(b.escalation_enabled);
  EXPECT_LT(a.cpu_threshold_ns, b.cpu_threshold_ns);
  EXPECT_LT(b.cpu_threshold_ns, p.cpu_threshold_ns);
  EXPECT_LT(a.poll_budget, b.poll_budget);
  EXPECT_LT(b.poll_budget, p.poll_budget);
  for (int i = 0; i < 3; ++i) {
    EXPECT_LT(a.promotion_violations[i], b.promotion_violations[i]);
    EXPECT_LT(b.promotion_violations[i], p.promotion_violations[i]);
  }
}

struct BadField {
  const char* name;       // expected in the message
  void (*mutate)(TierConfig&);
  const char* value;      // expected in the message
  const char* range;      // expected in the message
};

TEST(TierConfigTest, ValidateNamesFieldValueAndRange) {
  const BadField cases[] = {
      {"poll_budget", [](TierConfig& c) { c.poll_budget = 0; }, "0",
       "[1, 1000000]"},
      {"poll_budget", [](TierConfig& c) { c.poll_budget = 1'000'001; },
       "1000001", "[1, 1000000]"},
      {"cpu_threshold_ns", [](TierConfig& c) { c.cpu_threshold_ns = 999; },
       "999", "[1000, 10000000000]"},
      {"promotion_violations[1]",
       [](TierConfig& c) { c.promotion_violations[1] = 0; }, "0",
       "[1, 1000000]"},
      {"demotion_good_polls",
       [](TierConfig& c) { c.demotion_good_polls = 0; }, "0",
       "[1, 10000000]"},
      {"demotion_cpu_threshold_ns",
       [](TierConfig& c) { c.demotion_cpu_threshold_ns = 2'000'000; },
       "2000000", "[1, 1000000]"},
      {"demotion_min_time_ns",
       [](TierConfig& c) { c.demotion_min_time_ns = 3'600'000'000'001; },
       "3600000000001", "[0, 3600000000000]"},
      {"promotion_hysteresis_ns",
       [](TierConfig& c) { c.promotion_hysteresis_ns = ~uint64_t{0}; },
       "18446744073709551615", "[0, 3600000000000]"},
      {"demotion_hysteresis_ns",
       [](TierConfig& c) { c.demotion_hysteresis_ns = 4'000'000'000'000; },
       "4000000000000", "[0, 3600000000000]"},
      {"violation_cooldown_ns",
       [](TierConfig& c) { c.violation_cooldown_ns = 0; }, "0",
       "[1, 3600000000000]"},
      {"yield_budget_fraction",
       [](TierConfig& c) { c.yield_budget_fraction = 0; }, "0", "(0, 1]"},
      {"isolate_budget_fraction",
       [](TierConfig& c) { c.isolate_budget_fraction = 1.5; }, "1.5",
       "(0, 1]"},
      {"isolate_budget_fraction",
       [](TierConfig& c) { c.isolate_budget_fraction = 0.0 / 0.0; }, "nan",
       "(0, 1]"},
      {"priority_budget_scale[critical]",
       [](TierConfig& c) { c.priority_budget_scale[0] = 0.001; }, "0.001",
       "[0.01, 100]"},
      {"priority_threshold_scale[low]",
       [](TierConfig& c) { c.priority_threshold_scale[3] = 101; }, "101",
       "[0.01, 100]"},
  };
  for (const BadField& bf : cases) {
    TierConfig c;
    bf.mutate(c);
    const absl::Status s = c.Validate();
    ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bf.name;
    const std::string msg(s.message());
    EXPECT_NE(msg.find(bf.name), std::string::npos) << msg;
    EXPECT_NE(msg.find(bf.value), std::string::npos) << msg;
    EXPECT_NE(msg.find(bf.range), std::string::npos) << msg;
    // Create refuses it too.
    EXPECT_FALSE(TierManager::Create(c).ok()) << bf.name;
  }
}

TEST(TierConfigTest, PolicyRejectsBadTickRate) {
  EXPECT_EQ(TierPolicy::FromConfig(TierConfig{}, 0.0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(TierPolicy::FromConfig(TierConfig{}, 3.0).ok());
}

TEST(TierConfigTest, PolicyConvertsToTicks) {
  auto p = TierPolicy::FromConfig(TierConfig::Balanced(), 2.0);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->violation_ticks[2], 2'000'000u);
  EXPECT_EQ(p->good_poll_ticks[2], 1'000'000u);
  EXPECT_EQ(p->promotion_hysteresis_ticks, 200'000'000u);
  EXPECT_EQ(p->demotion_hysteresis_ticks, 1'000'000'000u);
  EXPECT_EQ(p->cooldown_ticks, 2'000'000'000u);
  EXPECT_EQ(p->min_ticks_at_tier, 2'000'000'000u);
  EXPECT_EQ(p->TicksToNanos(2'000'000), 1'000'000u);
  EXPECT_EQ(p->budget[0][2], 2000u);
  EXPECT_EQ(p->budget[2][2], 500u);
  EXPECT_EQ(p->budget[3][3], 125u);
}

}  // namespace
}  // namespace spindle::budget
