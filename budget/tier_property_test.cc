// Randomized property test: long random sequences of poll durations, gaps,
// priorities and outcomes over many tasks, checked after every poll against
// the invariants of budget/tier.h and against a small reference model
// written from the documented rules.

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "budget/tier.h"
#include "gtest/gtest.h"

namespace spindle::budget {
namespace {

// The documented rules, written independently of TierManager.
struct Model {
  int tier = 0;
  uint32_t count = 0;
  uint32_t streak = 0;
  uint64_t entered = 0;
  bool has_promo = false;
  uint64_t last_promo = 0;
  bool has_violation = false;
  uint64_t last_violation = 0;
};

class TierPropertyTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(TierPropertyTest, RandomPollSequencesKeepTheInvariants) {
  std::mt19937_64 rng(GetParam());
  // A random but valid config (ticks are ns).
  TierConfig c;
  c.cpu_threshold_ns = 1'000'000;
  c.demotion_cpu_threshold_ns = 200'000 + rng() % 800'001;
  c.promotion_violations = {static_cast<uint32_t>(1 + rng() % 4),
                            static_cast<uint32_t>(1 + rng() % 5),
                            static_cast<uint32_t>(1 + rng() % 6)};
  c.demotion_good_polls = static_cast<uint32_t>(1 + rng() % 20);
  c.demotion_min_time_ns = rng() % 50'000'000;
  c.promotion_hysteresis_ns = rng() % 20'000'000;
  c.demotion_hysteresis_ns = rng() % 30'000'000;
  c.violation_cooldown_ns = 30'000'000 + rng() % 50'000'000;
  c.escalation_enabled = (rng() % 4) != 0;
  c.log_warnings = false;
  ASSERT_TRUE(c.Validate().ok()) << c.Validate();
  auto policy = TierPolicy::FromConfig(c, 1.0);
  ASSERT_TRUE(policy.ok());
  auto tm = TierManager::Create(*policy);
  const TierPolicy& pol = tm->policy();
  const int max_tier = c.escalation_enabled ? 3 : 1;

  constexpr int kTasks = 8;
  std::vector<TaskContext> ctx(kTasks);
  std::vector<Model> model(kTasks);
  for (int i = 0; i < kTasks; ++i) {
    ctx[i].task_id = static_cast<uint64_t>(i);
    ctx[i].priority = static_cast<TaskPriority>(rng() % 4);
    tm->OnSpawn(ctx[i]);
  }

  uint64_t now = 1'000'000'000;
  uint64_t promotions = 0, demotions = 0;
  // Phases bias the durations so tasks both climb and descend.
  double p_slow = 0.5;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kPolls = 40'000;
#else
  constexpr int kPolls = 400'000;
#endif
  for (int n = 0; n < kPolls; ++n) {
    if (n % 5000 == 0) p_slow = std::uniform_real_distribution<>(0, 0.6)(rng);
    const int i = static_cast<int>(rng() % kTasks);
    TaskContext& t = ctx[i];
    Model& m = model[i];
    const unsigned pr = static_cast<unsigned>(t.priority);
    uint64_t elapsed;
    const double u = std::uniform_real_distribution<>(0, 1)(rng);
    if (u < p_slow) {
      elapsed = pol.violation_ticks[pr] + 1 + rng() % 3'000'000;
    } else if (u < p_slow + 0.05) {  // around the thresholds
      elapsed = pol.good_poll_ticks[pr] - 2 + rng() % 5;
    } else {
      elapsed = rng() % (pol.good_poll_ticks[pr] + 1);
    }
    const bool ready = rng() % 200 == 0;
    now += rng() % 1'000'000;  // gap between polls

    const int before = static_cast<int>(t.tier());
    tm->BeforePoll(t, now);
    ASSERT_EQ(t.budget.Remaining(), pol.budget[before][pr]);
    const Action a = tm->AfterPoll(
        t, ready ? PollOutcome::kReady : PollOutcome::kPending, elapsed);
    const uint64_t end = now + elapsed;
    now = end;
    const int after = static_cast<int>(t.tier());

    // Invariants.
    ASSERT_GE(after, 0);
    ASSERT_LE(after, max_tier) << "never leaves [monitor, max tier]";
    ASSERT_LE(after - before, 1) << "never skips a level up";
    ASSERT_LE(before - after, 1) << "never skips a level down";
    const bool slow = elapsed > pol.violation_ticks[pr];
    const bool good = elapsed <= pol.good_poll_ticks[pr];
    if (after > before) {
      ASSERT_TRUE(slow && !ready) << "promotion only on a violation";
      promotions++;
    }
    if (after < before) {
      ASSERT_TRUE(good && !ready) << "demotion only after a good poll";
      ASSERT_GE(t.tier_state().tier_entered_tick, end);
      ASSERT_GE(m.streak + 1, c.demotion_good_polls);
      ASSERT_GE(end - m.entered, pol.min_ticks_at_tier);
      ASSERT_TRUE(!m.has_violation ||
                  end - m.last_violation >= pol.demotion_hysteresis_ticks);
      demotions++;
    }
    if (ready || !slow) {
      ASSERT_EQ(a, Action::kNone);
    } else {
      ASSERT_EQ(static_cast<int>(a), after) << "action names the tier";
    }

    // Reference model.
    if (!ready) {
      if (slow) {
        if (m.count > 0 && m.has_violation &&
            end - m.last_violation > pol.cooldown_ticks) {
          m.count = 0;
        }
        ++m.count;
        m.last_violation = end;
        m.has_violation = true;
        m.streak = 0;
        if (m.tier < max_tier &&
            m.count >= c.promotion_violations[m.tier] &&
            (!m.has_promo ||
             end - m.last_promo >= pol.promotion_hysteresis_ticks)) {
          ++m.tier;
          m.count = 0;
          m.entered = end;
          m.last_promo = end;
          m.has_promo = true;
        }
      } else if (m.tier > 0) {
        if (good) {
          ++m.streak;
          if (m.streak >= c.demotion_good_polls &&
              end - m.entered >= pol.min_ticks_at_tier &&
              (!m.has_violation ||
               end - m.last_violation >= pol.demotion_hysteresis_ticks)) {
            --m.tier;
            m.count = 0;
            m.streak = 0;
            m.entered = end;
          }
        } else {
          m.streak = 0;
        }
      }
    }
    ASSERT_EQ(after, m.tier) << "poll " << n << " task " << i;
    ASSERT_EQ(t.tier_state().good_polls, m.streak) << "poll " << n;

    if (ready) {  // the task finished; a new one takes its slot
      tm->OnComplete(t);
      t = TaskContext{};
      t.task_id = static_cast<uint64_t>(1000 + n);
      t.priority = static_cast<TaskPriority>(rng() % 4);
      tm->OnSpawn(t);
      m = Model{};
    }
  }

  const TierMetrics met = tm->Metrics();
  EXPECT_EQ(met.promotions, promotions);
  EXPECT_EQ(met.demotions, demotions);
  int64_t live = 0;
  std::vector<int64_t> per_tier(4, 0);
  for (const TaskContext& t : ctx) per_tier[static_cast<int>(t.tier())]++;
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(met.tasks_per_tier[k], per_tier[k]) << "tier " << k;
    live += met.tasks_per_tier[k];
  }
  EXPECT_EQ(live, kTasks);
  // The sequence must have exercised both directions.
  EXPECT_GT(promotions, 0u);
  if (c.escalation_enabled) {
    EXPECT_GT(demotions, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, TierPropertyTest,
                         ::testing::Values(1u, 2u, 3u, 42u, 1234u, 98765u));

}  // namespace
}  // namespace spindle::budget
