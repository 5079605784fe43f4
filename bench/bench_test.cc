// bench/bench_test.cc: the framework's statistics, filter, environment
// parsing, CSV writer and chart planning.
#include "bench/bench.h"

#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace spindle::bench {
namespace {

// The layer's VERSION file, read at test time from the runfiles (the
// test's `data`), so kVersion cannot drift from it.
std::string VersionFile() {
  const char* dir = std::getenv("TEST_SRCDIR");
  if (dir == nullptr) return "(TEST_SRCDIR is not set)";
  std::ifstream in(std::string(dir) + "/spindle/bench/VERSION");
  std::string version;
  std::getline(in, version);
  return version;
}

TEST(BenchVersionTest, MatchesVersionFile) {
  EXPECT_EQ(kVersion, VersionFile());
}

TEST(StatsTest, MedianOddEvenEmpty) {
  EXPECT_EQ(Median({3, 1, 2}), 2);
  EXPECT_EQ(Median({4, 1, 3, 2}), 2.5);
  EXPECT_EQ(Median({}), 0);
}

TEST(StatsTest, QuantileNearestRank) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(Quantile(v, 0.5), 50);
  EXPECT_EQ(Quantile(v, 0.99), 99);
  EXPECT_EQ(Quantile(v, 0.999), 100);
  EXPECT_EQ(Quantile(v, 0), 1);
  EXPECT_EQ(Quantile({}, 0.5), 0);
}

TEST(FilterTest, TermsAndAnchors) {
  EXPECT_TRUE(FilterMatches("", "1A_spawn"));
  EXPECT_TRUE(FilterMatches("spawn", "1A_spawn"));
  EXPECT_TRUE(FilterMatches("^1A", "1A_spawn"));
  EXPECT_FALSE(FilterMatches("^spawn", "1A_spawn"));
  EXPECT_TRUE(FilterMatches("^1B,hog", "hog"));
  EXPECT_FALSE(FilterMatches("^1B,hog", "1C_sleep"));
}

class EnvTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const char* v :
         {"ITERATIONS", "N_TASKS", "YIELDS_PER_TASK", "EXECUTOR", "HOG_MS",
          "FIB_N"}) {
      unsetenv(v);
    }
  }
};

TEST_F(EnvTest, Defaults) {
  absl::StatusOr<Config> c = ConfigFromEnv();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->iterations, 5);
  EXPECT_FALSE(c->n_tasks.has_value());
  EXPECT_TRUE(c->executor.empty());
}

TEST_F(EnvTest, ValidValues) {
  setenv("ITERATIONS", "7", 1);
  setenv("N_TASKS", "123", 1);
  setenv("EXECUTOR", "asio", 1);
  absl::StatusOr<Config> c = ConfigFromEnv();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->iterations, 7);
  EXPECT_EQ(*c->n_tasks, 123);
  EXPECT_EQ(c->executor, "asio");
}

// Regression: FIB_N reused ITERATIONS' value when it was unset, so
// ITERATIONS=7 ran mt_fib as fib(7) and skewed as fib(17).
TEST_F(EnvTest, IterationsDoNotLeakIntoFibN) {
  setenv("ITERATIONS", "7", 1);
  absl::StatusOr<Config> c = ConfigFromEnv();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fib_n, 25);
  setenv("FIB_N", "20", 1);
  c = ConfigFromEnv();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fib_n, 20);
  EXPECT_EQ(c->iterations, 7);
}

TEST_F(EnvTest, BadValuesNameVariableValueAndRange) {
  setenv("N_TASKS", "12x", 1);
  absl::StatusOr<Config> c = ConfigFromEnv();
  ASSERT_FALSE(c.ok());
  const std::string m(c.status().message());
  EXPECT_NE(m.find("N_TASKS='12x'"), std::string::npos) << m;
  EXPECT_NE(m.find("[1, 10000000]"), std::string::npos) << m;
  unsetenv("N_TASKS");
  setenv("YIELDS_PER_TASK", "0", 1);
  EXPECT_FALSE(ConfigFromEnv().ok());
  unsetenv("YIELDS_PER_TASK");
  setenv("HOG_MS", "5", 1);
  EXPECT_FALSE(ConfigFromEnv().ok());
  unsetenv("HOG_MS");
  setenv("EXECUTOR", "boost", 1);
  c = ConfigFromEnv();
  ASSERT_FALSE(c.ok());
  EXPECT_NE(
      std::string(c.status().message()).find("spindle, asio, tbb or floor"),
      std::string::npos);
}

TEST(SelectTest, ExecutorKeepsItsVariantsAndFilterItsBenchmarks) {
  auto ok = [](int64_t) -> absl::StatusOr<Rows> { return Rows{}; };
  std::vector<Benchmark> all = {
      {"1B_yield",
       "",
       "floor",
       {10},
       {{"spindle", ok}, {"spindle_eevdf2", ok}, {"asio", ok}, {"floor", ok}}},
      {"hog", "", "spindle_alone", {10}, {{"spindle_alone", ok}}},
  };
  Config c;
  c.executor = "spindle";
  std::vector<Benchmark> s = Select(all, c);
  ASSERT_EQ(s.size(), 2u);
  ASSERT_EQ(s[0].variants.size(), 2u);
  EXPECT_EQ(s[0].variants[1].name, "spindle_eevdf2");
  c.executor = "asio";
  c.filter = "^1B";
  s = Select(all, c);
  ASSERT_EQ(s.size(), 1u);
  ASSERT_EQ(s[0].variants.size(), 1u);
  EXPECT_EQ(s[0].variants[0].name, "asio");
}

TEST(RunnerTest, InterleavesAfterWarmupAndSkipsFailingVariants) {
  std::vector<std::string> calls;
  auto make = [&calls](std::string name, bool fail) {
    return Variant{name,
                   [&calls, name, fail](int64_t p) -> absl::StatusOr<Rows> {
                     calls.push_back(name);
                     if (fail) return absl::UnavailableError("no ring");
                     return Rows{{"x", static_cast<double>(p)}};
                   }};
  };
  std::vector<Benchmark> b = {
      {"x",
       "",
       "b",
       {3},
       {make("a", false), make("b", false), make("c", true)}}};
  Config c;
  c.iterations = 2;
  std::ostringstream log;
  RunOutput out = RunBenchmarks(b, c, log);
  // Warm-up a b c, then a b, a b (c skipped after its warm-up failed).
  EXPECT_EQ(calls,
            (std::vector<std::string>{"a", "b", "c", "a", "b", "a", "b"}));
  ASSERT_EQ(out.results.size(), 4u);
  EXPECT_EQ(out.results[0].variant, "a");
  EXPECT_EQ(out.results[1].variant, "b");
  EXPECT_EQ(out.results[2].iteration, 1);
  ASSERT_EQ(out.skipped.size(), 1u);
  EXPECT_NE(out.skipped[0].find("x/c/3: no ring"), std::string::npos);
}

TEST(CsvTest, ExactHeaderAndOneRowPerResult) {
  const std::string path = std::string(getenv("TEST_TMPDIR")) + "/r.csv";
  ASSERT_TRUE(WriteCsv(path, {{"1A_spawn", "spindle", 1000, 0, 1234.4},
                              {"1A_spawn", "floor", 1000, 0, 99}})
                  .ok());
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(ss.str(),
            "benchmark,variant,parameter,iteration,duration_ns\n"
            "1A_spawn,spindle,1000,0,1234\n"
            "1A_spawn,floor,1000,0,99\n");
}

// A benchmark as the registry makes them, for the chart planner.
Benchmark ChartBench(bool fixed) {
  Benchmark b{"x", "what", "floor", {10, 20}, {}};
  b.variants = {{"spindle", nullptr}, {"floor", nullptr}};
  if (fixed) {
    b.fixed_duration = true;
  } else {
    b.ops = [](int64_t p) { return static_cast<double>(p); };
    b.op = "spawn";
  }
  return b;
}

const ChartPlan* Find(const std::vector<ChartPlan>& plans,
                      const std::string& kind) {
  for (const ChartPlan& p : plans) {
    if (p.kind == kind) return &p;
  }
  return nullptr;
}

TEST(ChartTest, TotalsPerOperationWithRatioToBaseline) {
  std::vector<Result> r = {{"x", "spindle", 10, 0, 1000},
                           {"x", "floor", 10, 0, 500},
                           {"x", "spindle", 20, 0, 4000},
                           {"x", "floor", 20, 0, 1000}};
  std::vector<ChartPlan> plans = PlanCharts(ChartBench(false), r);
  ASSERT_EQ(plans.size(), 1u);
  EXPECT_EQ(plans[0].kind, "per_spawn");
  EXPECT_NE(plans[0].ylabel.find("per spawn (lower is better)"),
            std::string::npos);
  ASSERT_EQ(plans[0].clusters.size(), 2u);
  EXPECT_EQ(plans[0].clusters[0].bars.at("spindle").median, 100);
  EXPECT_EQ(plans[0].clusters[0].bars.at("spindle").ratio, "2.00x");
  EXPECT_EQ(plans[0].clusters[1].bars.at("spindle").median, 200);
  EXPECT_EQ(plans[0].clusters[1].bars.at("spindle").ratio, "4.00x");
  EXPECT_EQ(plans[0].clusters[1].bars.at("floor").ratio, "1.00x");
}

TEST(ChartTest, OneChartPerUnitAndFixedWallTimeLeftOut) {
  std::vector<Result> r = {
      {"x", "spindle", 10, 0, 1e9},  // wall time fixed by design
      {"x_ticks_p50", "spindle", 10, 0, 80, Unit::kTicks, 1000},
      {"x_error_ppm", "spindle", 10, 0, 400, Unit::kPpm, 0},
      {"x_actual_mean", "spindle", 10, 0, 5e5, Unit::kNanos, 1000}};
  std::vector<ChartPlan> plans = PlanCharts(ChartBench(true), r);
  ASSERT_EQ(plans.size(), 3u);
  ASSERT_NE(Find(plans, "ticks"), nullptr);
  EXPECT_FALSE(Find(plans, "ticks")->in_ns);
  ASSERT_NE(Find(plans, "share_error"), nullptr);
  ASSERT_NE(Find(plans, "latency"), nullptr);
  EXPECT_TRUE(Find(plans, "latency")->in_ns);
  EXPECT_EQ(Find(plans, "latency")->clusters[0].label, "actual_mean param 10");
}

TEST(ChartTest, PercentilesNeedSamplesBeyondThem) {
  // 10 samples: a p50 has 5 beyond it (drawn), a p90 or p99 does not.
  // 1000 samples: a p99 has 10 beyond it (drawn), a p999 has 1 (not).
  std::vector<Result> r = {
      {"x_fat_p50", "spindle", 10, 0, 1, Unit::kNanos, 10},
      {"x_fat_p90", "spindle", 10, 0, 2, Unit::kNanos, 10},
      {"x_fat_p99", "spindle", 10, 0, 3, Unit::kNanos, 10},
      {"x_thin_p99", "spindle", 10, 0, 4, Unit::kNanos, 1000},
      {"x_thin_p99", "spindle", 10, 1, 4, Unit::kNanos, 1000},
      {"x_thin_p999", "spindle", 10, 0, 5, Unit::kNanos, 1000},
      // One iteration short of samples is enough to leave the bar out.
      {"x_thin_p90", "spindle", 10, 0, 6, Unit::kNanos, 1000},
      {"x_thin_p90", "spindle", 10, 1, 6, Unit::kNanos, 20}};
  std::vector<ChartPlan> plans = PlanCharts(ChartBench(true), r);
  ASSERT_EQ(plans.size(), 1u);
  std::vector<std::string> labels;
  for (const ChartCluster& c : plans[0].clusters) labels.push_back(c.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"fat_p50 param 10",
                                              "thin_p99 param 10"}));
}

}  // namespace
}  // namespace spindle::bench
