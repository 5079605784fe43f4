// TierConfig::FromEnv: every variable, good and bad values.
#include <cstdlib>
#include <string>

#include "budget/tier.h"
#include "gtest/gtest.h"

namespace spindle::budget {
namespace {

constexpr const char* kVars[] = {"SPINDLE_BUDGET", "SPINDLE_CPU_THRESHOLD_NS",
                                 "SPINDLE_TIER_ESCALATION",
                                 "SPINDLE_TIER_PRESET"};

class ConfigEnvTest : public ::testing::Test {
 protected:
  void SetUp() override { ClearAll(); }
  void TearDown() override { ClearAll(); }
  static void ClearAll() {
    for (const char* v : kVars) unsetenv(v);
  }
};

TEST_F(ConfigEnvTest, UnsetGivesBalanced) {
  auto c = TierConfig::FromEnv();
  ASSERT_TRUE(c.ok()) << c.status();
  const TierConfig b = TierConfig::Balanced();
  EXPECT_EQ(c->poll_budget, b.poll_budget);
  EXPECT_EQ(c->cpu_threshold_ns, b.cpu_threshold_ns);
  EXPECT_EQ(c->promotion_violations, b.promotion_violations);
  EXPECT_TRUE(c->escalation_enabled);
}

TEST_F(ConfigEnvTest, EmptyValuesAreUnset) {
  for (const char* v : kVars) setenv(v, "", 1);
  auto c = TierConfig::FromEnv();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->poll_budget, 2000u);
}

TEST_F(ConfigEnvTest, PresetsByNameInAnyCase) {
  setenv("SPINDLE_TIER_PRESET", "Aggressive", 1);
  auto a = TierConfig::FromEnv();
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->cpu_threshold_ns, TierConfig::Aggressive().cpu_threshold_ns);
  setenv("SPINDLE_TIER_PRESET", "permissive", 1);
  auto p = TierConfig::FromEnv();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->poll_budget, TierConfig::Permissive().poll_budget);
  setenv("SPINDLE_TIER_PRESET", "BALANCED", 1);
  auto b = TierConfig::FromEnv();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->poll_budget, 2000u);
}

TEST_F(ConfigEnvTest, OverridesApplyOnTopOfThePreset) {
  setenv("SPINDLE_TIER_PRESET", "permissive", 1);
  setenv("SPINDLE_BUDGET", "1", 1);
  setenv("SPINDLE_CPU_THRESHOLD_NS", "200000", 1);
  setenv("SPINDLE_TIER_ESCALATION", "FALSE", 1);
  auto c = TierConfig::FromEnv();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->poll_budget, 1u);
  EXPECT_EQ(c->cpu_threshold_ns, 200'000u);
  // The permissive ratio (2.5 ms / 5 ms) is kept.
  EXPECT_EQ(c->demotion_cpu_threshold_ns, 100'000u);
  EXPECT_FALSE(c->escalation_enabled);
  EXPECT_EQ(c->promotion_violations, TierConfig::Permissive().promotion_violations);
  EXPECT_TRUE(c->Validate().ok());
}

TEST_F(ConfigEnvTest, BoundaryValuesAreAccepted) {
  for (const char* v : {"1", "1000000"}) {
    setenv("SPINDLE_BUDGET", v, 1);
    EXPECT_TRUE(TierConfig::FromEnv().ok()) << v;
  }
  unsetenv("SPINDLE_BUDGET");
  for (const char* v : {"1000", "10000000000"}) {
    setenv("SPINDLE_CPU_THRESHOLD_NS", v, 1);
    EXPECT_TRUE(TierConfig::FromEnv().ok()) << v;
  }
  unsetenv("SPINDLE_CPU_THRESHOLD_NS");
  for (const char* v : {"true", "1", "True", "0", "false"}) {
    setenv("SPINDLE_TIER_ESCALATION", v, 1);
    auto c = TierConfig::FromEnv();
    ASSERT_TRUE(c.ok()) << v;
    EXPECT_EQ(c->escalation_enabled,
              std::string(v) == "true" || std::string(v) == "1" ||
                  std::string(v) == "True");
  }
}

struct BadEnv {
  const char* var;
  const char* value;
  const char* range;  // expected in the message
};

TEST_F(ConfigEnvTest, EveryBadValueIsAnInvalidArgumentNamingIt) {
  const BadEnv cases[] = {
      {"SPINDLE_BUDGET", "0", "[1, 1000000]"},
      {"SPINDLE_BUDGET", "1000001", "[1, 1000000]"},
      {"SPINDLE_BUDGET", "-5", "[1, 1000000]"},
      {"SPINDLE_BUDGET", "+5", "[1, 1000000]"},
      {"SPINDLE_BUDGET", "abc", "[1, 1000000]"},
      {"SPINDLE_BUDGET", "12abc", "[1, 1000000]"},
      {"SPINDLE_BUDGET", " 12", "[1, 1000000]"},
      {"SPINDLE_BUDGET", "12 ", "[1, 1000000]"},
      {"SPINDLE_BUDGET", "1.5", "[1, 1000000]"},
      {"SPINDLE_BUDGET", "0x10", "[1, 1000000]"},
      {"SPINDLE_BUDGET", "99999999999999999999999", "[1, 1000000]"},
      {"SPINDLE_CPU_THRESHOLD_NS", "999", "[1000, 10000000000]"},
      {"SPINDLE_CPU_THRESHOLD_NS", "0", "[1000, 10000000000]"},
      {"SPINDLE_CPU_THRESHOLD_NS", "10000000001", "[1000, 10000000000]"},
      {"SPINDLE_CPU_THRESHOLD_NS", "1ms", "[1000, 10000000000]"},
      {"SPINDLE_CPU_THRESHOLD_NS", "18446744073709551616",
       "[1000, 10000000000]"},
      {"SPINDLE_TIER_ESCALATION", "yes", "true, false, 1, 0"},
      {"SPINDLE_TIER_ESCALATION", "2", "true, false, 1, 0"},
      {"SPINDLE_TIER_ESCALATION", "tru", "true, false, 1, 0"},
      {"SPINDLE_TIER_ESCALATION", " true", "true, false, 1, 0"},
      {"SPINDLE_TIER_PRESET", "fast", "aggressive, balanced, permissive"},
      {"SPINDLE_TIER_PRESET", "balanced ", "aggressive, balanced, permissive"},
      {"SPINDLE_TIER_PRESET", "0", "aggressive, balanced, permissive"},
  };
  for (const BadEnv& b : cases) {
    ClearAll();
    setenv(b.var, b.value, 1);
    auto c = TierConfig::FromEnv();
    ASSERT_FALSE(c.ok()) << b.var << "=" << b.value;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string msg(c.status().message());
    EXPECT_NE(msg.find(b.var), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string("'") + b.value + "'"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find(b.range), std::string::npos) << msg;
  }
}

TEST_F(ConfigEnvTest, FirstBadVariableWinsAndGoodOnesDoNotMaskIt) {
  setenv("SPINDLE_BUDGET", "100", 1);
  setenv("SPINDLE_TIER_ESCALATION", "maybe", 1);
  auto c = TierConfig::FromEnv();
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("SPINDLE_TIER_ESCALATION"),
            std::string::npos);
}

}  // namespace
}  // namespace spindle::budget
