// bench/bench.h: the benchmark suite's framework (registry, runner, output).
//
// A Benchmark is an id from docs/measuring.md's table, the parameters that
// size it and its variants (`spindle...`, a peer such as `asio` or `tbb`, or
// `floor`).  RunBenchmarks interleaves the variants (A B A B ...) after one
// unmeasured warm-up per variant and parameter; each measured iteration
// yields one or more Rows (the main row, named by the benchmark id, is the
// iteration's wall time; others carry a statistic such as a percentile).
// The results go to a CSV file, a table of medians and ratios, and SVG
// charts (one per benchmark and unit) drawn by gnuplot.  SuiteMain is the
// `main` of //bench:suite and of the focused targets (//bench:overhead, ...).
//
// Thread safety: everything here runs on the calling thread.

#ifndef SPINDLE_BENCH_BENCH_H_
#define SPINDLE_BENCH_BENCH_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spindle::bench {

inline constexpr std::string_view kVersion = "0.1.0";

// What a Row's value is.  The CSV column is `duration_ns` whatever the
// unit; the table and bench/README.md say which rows are not durations.
enum class Unit : uint8_t {
  kNanos,  // nanoseconds
  kTicks,  // TSC ticks
  kPpm,    // parts per million (fairness error)
};

// One value measured by one iteration of one variant.
struct Row {
  std::string benchmark;  // the id in the CSV's `benchmark` column
  double value = 0;
  Unit unit = Unit::kNanos;
  // For a statistic (mean, percentile): how many values it summarises.  The
  // charts draw a percentile only where enough samples lie beyond it.  Not
  // in the CSV.
  int64_t samples = 0;
};
using Rows = std::vector<Row>;

// A variant runs one iteration for a parameter and returns its rows, the
// first being the iteration's wall time under the benchmark's id.  An error
// (e.g. io_uring unavailable) skips the variant for that parameter.
struct Variant {
  std::string name;
  std::function<absl::StatusOr<Rows>(int64_t param)> run;
};

struct Benchmark {
  std::string id;
  std::string what;      // one line: what the parameter and rows mean
  std::string baseline;  // the variant ratios are taken against ("floor")
  std::vector<int64_t> params;
  std::vector<Variant> variants;
  // For the charts.  `ops(param)`: the operations one iteration performs, so
  // that the main row (a total) is drawn per operation, named `op` ("spawn");
  // unset: drawn per iteration.  `fixed_duration`: the main row's wall time
  // is set by design (the benchmark runs for a given time), so it is left
  // out of the charts (it stays in the CSV and the table).
  std::function<double(int64_t param)> ops{};
  std::string op{};
  bool fixed_duration = false;
};

// The run's settings, from the environment (see ConfigFromEnv).
struct Config {
  int iterations = 5;
  std::optional<int64_t> n_tasks;          // N_TASKS
  std::optional<int64_t> yields_per_task;  // YIELDS_PER_TASK
  std::optional<int64_t> workers;          // WORKERS (mt_*, skewed)
  int64_t fib_n = 25;                      // FIB_N: mt_fib; skewed: +10
  std::string executor;                    // EXECUTOR; empty: every variant
  std::string filter;                      // BENCH_FILTER (see FilterMatches)
  int64_t fairness_ms = 1000;              // FAIRNESS_MS
  int64_t hog_ms = 300;                    // HOG_MS
  int64_t tail_ms = 1000;                  // TAIL_MS
  int64_t nop_ops = 32000;                 // NOP_OPS
  int64_t slurm_steps = 100;               // SLURM_STEPS
  std::string out_dir;                     // --out, else the caller's cwd
};

// Reads ITERATIONS [1, 1000], N_TASKS [1, 10000000], YIELDS_PER_TASK
// [1, 1000000], WORKERS [1, 1024], FIB_N [2, 30], EXECUTOR (spindle|asio|tbb|floor), BENCH_FILTER (see
// FilterMatches), FAIRNESS_MS, HOG_MS, TAIL_MS [10, 60000],
// NOP_OPS [32, 10000000], SLURM_STEPS [1, 100000].  InvalidArgument names the variable, the value and
// the valid range or values.  `defaults` supplies per-target defaults.
absl::StatusOr<Config> ConfigFromEnv(const Config& defaults = {});

// Every benchmark of docs/measuring.md's table that the landed layers support,
// sized by `config` (N_TASKS and YIELDS_PER_TASK replace the default
// parameters).
std::vector<Benchmark> AllBenchmarks(const Config& config);

// One measured value.
struct Result {
  std::string benchmark;
  std::string variant;
  int64_t param = 0;
  int iteration = 0;
  double value = 0;
  Unit unit = Unit::kNanos;
  int64_t samples = 0;  // Row::samples
};

struct RunOutput {
  std::vector<Result> results;
  std::vector<std::string> skipped;  // "benchmark/variant/param: reason"
};

// BENCH_FILTER: comma-separated terms; an id matches when it contains a
// term, or starts with it when the term begins with '^'.  Empty: all.
bool FilterMatches(const std::string& filter, const std::string& id);

// Keeps the benchmarks whose id matches config.filter and the variants that
// config.executor selects (`spindle` selects spindle and spindle_*).
std::vector<Benchmark> Select(std::vector<Benchmark> all, const Config& config);

// Runs each benchmark: per parameter, one warm-up per variant, then
// config.iterations rounds of every variant in turn.  Progress to `log`.
RunOutput RunBenchmarks(const std::vector<Benchmark>& benchmarks,
                        const Config& config, std::ostream& log);

// The machine: CPU model, cores, kernel, TSC frequency, reactor backend.
void PrintMachine(std::ostream& out);

// A table of medians with min-max and the ratios to the baseline and peers.
void PrintTable(const std::vector<Benchmark>& benchmarks, const RunOutput& run,
                std::ostream& out);

// Writes `benchmark,variant,parameter,iteration,duration_ns` and one row per
// result.
absl::Status WriteCsv(const std::string& path,
                      const std::vector<Result>& results);

// What WriteCharts draws, planned from the results (see bench/charts.cc).
struct ChartBar {
  double median = 0, min = 0, max = 0;
  std::string ratio;  // "1.63x" to the baseline's median; "" without one
};
struct ChartCluster {  // one row id and parameter
  std::string label;
  std::map<std::string, ChartBar> bars;  // by variant
};
struct ChartPlan {     // one SVG
  std::string kind;    // file name part: per_<op>, latency, ticks, ...
  std::string title;   // first title line
  std::string ylabel;  // after the unit: what per, and "lower is better"
  bool in_ns = true;   // nanoseconds: drawn in ns, us or ms
  std::vector<ChartCluster> clusters;
};
// The charts of one benchmark: one per unit; the main row per operation
// (Benchmark::ops) unless fixed by design; percentile rows only where every
// iteration had at least 5 samples beyond the percentile.
std::vector<ChartPlan> PlanCharts(const Benchmark& b,
                                  const std::vector<Result>& results);

// What a chart's title says about the run.
struct ChartInfo {
  std::string machine;  // CPU model and cores
  std::string date;     // UTC
  std::string commit;   // short hash, "+dirty" with local changes
  int iterations = 0;
};
// The machine, the date now and the commit of the checkout `bazel run`
// started from (BUILD_WORKSPACE_DIRECTORY; "unknown" outside one).
ChartInfo CurrentChartInfo(int iterations);

// Draws charts into `dir` by running gnuplot on generated scripts: per
// benchmark, one SVG per unit (chart_<id>_<unit>.svg: time per operation,
// latency, ticks, share error), bars in a fixed colour per variant, each
// labelled with its ratio to the baseline (see bench/charts.cc).  Returns
// the files written; FailedPrecondition when gnuplot is missing or fails
// (the message says why).
absl::StatusOr<std::vector<std::string>> WriteCharts(
    const std::vector<Benchmark>& benchmarks,
    const std::vector<Result>& results, const std::string& dir,
    const ChartInfo& info);

// Median of `v` (mean of the middle two for an even count); 0 when empty.
double Median(std::vector<double> v);
// The q-quantile (0..1) of `v` by nearest rank; 0 when empty.
double Quantile(std::vector<double> v, double q);

// main() of the suite and of the focused targets: parses --out/--help,
// reads the environment (exit 2 on a bad value), runs the benchmarks whose
// ids are in `only` (all when empty), prints the machine and the table,
// writes the CSV and charts.  `name` is the target's name for messages.
int SuiteMain(int argc, char** argv, std::string_view name,
              const std::vector<std::string>& only, const Config& defaults);

}  // namespace spindle::bench

#endif  // SPINDLE_BENCH_BENCH_H_
