// bench/bench.cc: the suite's runner, environment, table and CSV (charts:
// bench/charts.cc).
#include "bench/bench.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "executor/executor.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

absl::Status EnvInt(const char* name, int64_t lo, int64_t hi,
                    std::optional<int64_t>* out) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return absl::OkStatus();
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s='%s' is not valid: it must be an integer in [%d, %d]", name, v, lo,
        hi));
  }
  *out = x;
  return absl::OkStatus();
}

std::string FormatValue(double v, Unit unit) {
  switch (unit) {
    case Unit::kTicks:
      return absl::StrFormat("%.0f ticks", v);
    case Unit::kPpm:
      return absl::StrFormat("%.2f%%", v / 1e4);
    case Unit::kNanos:
      break;
  }
  if (v < 1e3) return absl::StrFormat("%.0f ns", v);
  if (v < 1e6) return absl::StrFormat("%.1f us", v / 1e3);
  if (v < 1e9) return absl::StrFormat("%.2f ms", v / 1e6);
  return absl::StrFormat("%.2f s", v / 1e9);
}

struct Key {
  std::string row;
  int64_t param;
  bool operator<(const Key& o) const {
    return row != o.row ? row < o.row : param < o.param;
  }
};

struct Stat {
  double median = 0, min = 0, max = 0;
  Unit unit = Unit::kNanos;
};

// Per (row, param): per variant: the statistic, in the order rows appeared.
struct Grouped {
  std::vector<Key> order;
  std::map<Key, std::map<std::string, Stat>> stats;
};

Grouped Group(const std::vector<Result>& results, const std::string& bench_id,
              const std::set<std::string>& row_ids) {
  Grouped g;
  std::map<Key, std::map<std::string, std::vector<double>>> values;
  std::map<std::string, Unit> units;
  for (const Result& r : results) {
    if (row_ids.count(r.benchmark) == 0) continue;
    Key k{r.benchmark, r.param};
    if (values.count(k) == 0) g.order.push_back(k);
    values[k][r.variant].push_back(r.value);
    units[r.benchmark] = r.unit;
  }
  (void)bench_id;
  for (auto& [k, per_variant] : values) {
    for (auto& [variant, v] : per_variant) {
      Stat s;
      s.unit = units[k.row];
      s.min = *std::min_element(v.begin(), v.end());
      s.max = *std::max_element(v.begin(), v.end());
      s.median = Median(v);
      g.stats[k][variant] = s;
    }
  }
  // Main row first, then the others in order of appearance, by parameter.
  std::stable_sort(
      g.order.begin(), g.order.end(),
      [](const Key& a, const Key& b) { return a.param < b.param; });
  return g;
}

// The row ids that belong to a benchmark: its id and ids that start with it
// or share its family prefix (1C_sleep_actual_*, tail_*, launch_*, ...).
std::set<std::string> RowIds(const Benchmark& b,
                             const std::vector<Result>& results) {
  std::set<std::string> ids;
  for (const Result& r : results) {
    if (r.benchmark == b.id) ids.insert(r.benchmark);
  }
  // Variants of the benchmark produced these rows: collect by variant name
  // and benchmark membership recorded by the runner (prefix match).
  const std::string family = b.id == "tail_latency" ? "tail_" : b.id + "_";
  for (const Result& r : results) {
    if (r.benchmark.rfind(family, 0) == 0) ids.insert(r.benchmark);
  }
  return ids;
}

}  // namespace

bool FilterMatches(const std::string& filter, const std::string& id) {
  if (filter.empty()) return true;
  std::stringstream ss(filter);
  std::string term;
  while (std::getline(ss, term, ',')) {
    if (term.empty()) continue;
    if (term[0] == '^') {
      if (id.rfind(term.substr(1), 0) == 0) return true;
    } else if (id.find(term) != std::string::npos) {
      return true;
    }
  }
  return false;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank =
      static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  if (rank < 1) rank = 1;
  if (rank > v.size()) rank = v.size();
  return v[rank - 1];
}

absl::StatusOr<Config> ConfigFromEnv(const Config& defaults) {
  Config c = defaults;
  std::optional<int64_t> v;
  if (absl::Status s = EnvInt("ITERATIONS", 1, 1000, &v); !s.ok()) return s;
  if (v) c.iterations = static_cast<int>(*v);
  if (absl::Status s = EnvInt("N_TASKS", 1, 10'000'000, &c.n_tasks); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          EnvInt("YIELDS_PER_TASK", 1, 1'000'000, &c.yields_per_task);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = EnvInt("WORKERS", 1, 1024, &c.workers); !s.ok()) {
    return s;
  }
  // Its own optional: `v` still holds ITERATIONS here.
  std::optional<int64_t> fib_n;
  if (absl::Status s = EnvInt("FIB_N", 2, 30, &fib_n); !s.ok()) return s;
  if (fib_n) c.fib_n = *fib_n;
  struct {
    const char* name;
    int64_t* field;
    int64_t lo, hi;
  } sizes[] = {{"FAIRNESS_MS", &c.fairness_ms, 10, 60'000},
               {"HOG_MS", &c.hog_ms, 10, 60'000},
               {"TAIL_MS", &c.tail_ms, 10, 60'000},
               {"NOP_OPS", &c.nop_ops, 32, 10'000'000},
               {"SLURM_STEPS", &c.slurm_steps, 1, 100'000}};
  for (auto& s : sizes) {
    v.reset();
    if (absl::Status st = EnvInt(s.name, s.lo, s.hi, &v); !st.ok()) return st;
    if (v) *s.field = *v;
  }
  if (const char* e = std::getenv("EXECUTOR"); e != nullptr && *e != '\0') {
    const std::string x = e;
    if (x != "spindle" && x != "asio" && x != "tbb" && x != "floor") {
      return absl::InvalidArgumentError(absl::StrCat(
          "EXECUTOR='", x, "' is not valid: use spindle, asio, tbb or floor"));
    }
    c.executor = x;
  }
  if (const char* f = std::getenv("BENCH_FILTER"); f != nullptr && *f != '\0') {
    c.filter = f;
  }
  return c;
}

std::vector<Benchmark> Select(std::vector<Benchmark> all,
                              const Config& config) {
  std::vector<Benchmark> out;
  for (Benchmark& b : all) {
    if (!FilterMatches(config.filter, b.id)) continue;
    if (!config.executor.empty()) {
      std::vector<Variant> keep;
      for (Variant& v : b.variants) {
        if (v.name == config.executor ||
            v.name.rfind(config.executor + "_", 0) == 0) {
          keep.push_back(std::move(v));
        }
      }
      b.variants = std::move(keep);
    }
    if (!b.variants.empty()) out.push_back(std::move(b));
  }
  return out;
}

RunOutput RunBenchmarks(const std::vector<Benchmark>& benchmarks,
                        const Config& config, std::ostream& log) {
  RunOutput out;
  for (const Benchmark& b : benchmarks) {
    for (int64_t p : b.params) {
      log << absl::StrFormat("  %-14s param %-8d", b.id, p) << std::flush;
      const uint64_t t0 = timing::MonotonicClock::Now();
      // Warm-up: one unmeasured iteration per variant; a failing variant is
      // skipped for this parameter.
      std::vector<const Variant*> live;
      for (const Variant& v : b.variants) {
        absl::StatusOr<Rows> r = v.run(p);
        if (!r.ok()) {
          out.skipped.push_back(
              absl::StrCat(b.id, "/", v.name, "/", p, ": ",
                           std::string(r.status().message())));
          continue;
        }
        live.push_back(&v);
      }
      for (int it = 0; it < config.iterations; ++it) {
        for (const Variant* v : live) {
          absl::StatusOr<Rows> r = v->run(p);
          if (!r.ok()) {
            out.skipped.push_back(
                absl::StrCat(b.id, "/", v->name, "/", p, " iteration ", it,
                             ": ", std::string(r.status().message())));
            continue;
          }
          for (const Row& row : *r) {
            out.results.push_back(
                Result{row.benchmark, v->name, p, it, row.value, row.unit,
                       row.samples});
          }
        }
      }
      log << absl::StrFormat(" %d variants x %d iterations, %.1f s\n",
                             live.size(), config.iterations,
                             (timing::MonotonicClock::Now() - t0) / 1e9);
    }
  }
  return out;
}

void PrintMachine(std::ostream& out) {
  std::string model = "unknown";
  {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("model name", 0) == 0) {
        model = line.substr(line.find(':') + 2);
        break;
      }
    }
  }
  struct utsname u {};
  uname(&u);
  const timing::Calibration& cal = timing::TscClock::Calibrate();
  std::string backend = "none";
  {
    auto ex = ExecutorBuilder().Build();
    if (ex.ok()) backend = std::string((*ex)->Stats().driver);
  }
  out << "machine: " << model << ", " << std::thread::hardware_concurrency()
      << " cores, kernel " << u.release << "\n";
  out << absl::StrFormat(
      "clock:   TSC %.3f GHz (%s)%s\n", cal.ticks_per_second / 1e9,
      cal.source == timing::ClockSource::kTsc ? "rdtsc" : "monotonic fallback",
      timing::TscClock::CounterIsInvariant() ? ", invariant" : "");
  out << "reactor: " << backend
      << " (default backend; SPINDLE_REACTOR overrides)\n";
#if defined(__OPTIMIZE__)
  out << "build:   optimised\n";
#else
  out << "build:   not optimised: these timings say little (build with "
         "-c opt)\n";
#endif
}

void PrintTable(const std::vector<Benchmark>& benchmarks, const RunOutput& run,
                std::ostream& out) {
  for (const Benchmark& b : benchmarks) {
    const std::set<std::string> ids = RowIds(b, run.results);
    if (ids.empty()) continue;
    Grouped g = Group(run.results, b.id, ids);
    std::vector<std::string> peers;
    for (const Variant& v : b.variants) {
      if (v.name == "asio" || v.name == "tbb") peers.push_back(v.name);
    }
    out << "\n== " << b.id << ": " << b.what << "\n";
    std::string header =
        absl::StrFormat("%-26s %8s  %-18s %12s  %-25s %9s", "row", "param",
                        "variant", "median", "min - max", "/" + b.baseline);
    for (const std::string& p : peers)
      header += absl::StrFormat(" %7s", "/" + p);
    out << header << "\n";
    for (const Key& k : g.order) {
      const auto& per = g.stats[k];
      for (const Variant& v : b.variants) {
        auto it = per.find(v.name);
        if (it == per.end()) continue;
        const Stat& s = it->second;
        auto ratio = [&](const std::string& ref) -> std::string {
          auto r = per.find(ref);
          if (r == per.end() || r->second.median == 0) return "-";
          return absl::StrFormat("%.2fx", s.median / r->second.median);
        };
        std::string line = absl::StrFormat(
            "%-26s %8d  %-18s %12s  %-25s %9s", k.row, k.param, v.name,
            FormatValue(s.median, s.unit),
            FormatValue(s.min, s.unit) + " - " + FormatValue(s.max, s.unit),
            ratio(b.baseline));
        for (const std::string& p : peers) {
          line += absl::StrFormat(" %7s", ratio(p));
        }
        out << line << "\n";
      }
    }
  }
  if (!run.skipped.empty()) {
    out << "\nskipped:\n";
    for (const std::string& s : run.skipped) out << "  " << s << "\n";
  }
}

absl::Status WriteCsv(const std::string& path,
                      const std::vector<Result>& results) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  f << "benchmark,variant,parameter,iteration,duration_ns\n";
  for (const Result& r : results) {
    f << r.benchmark << ',' << r.variant << ',' << r.param << ',' << r.iteration
      << ',' << absl::StrFormat("%.0f", r.value) << '\n';
  }
  f.close();
  if (!f) return absl::DataLossError(absl::StrCat("error writing ", path));
  return absl::OkStatus();
}

int SuiteMain(int argc, char** argv, std::string_view name,
              const std::vector<std::string>& only, const Config& defaults) {
  std::string out_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout
          << "usage: " << name << " [--out DIR] [--help]\n\n"
          << "Runs Spindle's benchmarks beside the peers (Asio, oneTBB) and "
             "the "
             "floor,\ninterleaved, and writes benchmark_results.csv and "
             "chart_<id>_<unit>.svg into DIR\n(default: the directory the command was "
             "run from).\n\nEnvironment:\n"
          << "  BENCH_FILTER     comma-separated parts of benchmark ids; a "
             "leading ^\n                   anchors at the start (e.g. "
             "'^1A,^1B,hog')\n"
          << "  ITERATIONS       measured iterations per variant [1, 1000] "
             "(default 5)\n"
          << "  N_TASKS          task count for 1A, 1B, 1C, poll_profile\n"
          << "  YIELDS_PER_TASK  yields per task for 1B and poll_profile\n"
          << "  WORKERS          worker count for mt_fib, mt_spawn, skewed, rebalance, "
             "channel_pingpong "
             "(default: 1 and 2)\n"
          << "  FIB_N            fib(n) of mt_fib [2, 30] (default 25); "
             "skewed runs fib(n + 10)\n"
          << "  EXECUTOR         only variants of spindle|asio|tbb|floor\n"
          << "  FAIRNESS_MS, HOG_MS, TAIL_MS  durations [10, 60000]\n"
          << "  NOP_OPS          NOPs per uring_nop iteration [32, 10000000]\n"
          << "  SLURM_STEPS      job steps per slurm_steps iteration [1, 100000] "
             "(default 100)\n";
      return 0;
    }
    if (a == "--out" && i + 1 < argc) {
      out_dir = argv[++i];
    } else if (a.rfind("--out=", 0) == 0) {
      out_dir = a.substr(6);
    } else {
      std::cerr << name << ": unknown argument '" << a
                << "' (valid: --out DIR, --help)\n";
      return 2;
    }
  }
  absl::StatusOr<Config> config = ConfigFromEnv(defaults);
  if (!config.ok()) {
    std::cerr << name << ": " << config.status().message() << "\n";
    return 2;
  }
  if (out_dir.empty()) {
    const char* bwd = std::getenv("BUILD_WORKING_DIRECTORY");
    out_dir = bwd != nullptr && *bwd != '\0' ? bwd : ".";
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    std::cerr << name << ": cannot create --out directory '" << out_dir
              << "': " << ec.message() << "\n";
    return 2;
  }
  config->out_dir = out_dir;

  std::vector<Benchmark> all = AllBenchmarks(*config);
  if (!only.empty()) {
    std::vector<Benchmark> keep;
    for (Benchmark& b : all) {
      if (std::find(only.begin(), only.end(), b.id) != only.end()) {
        keep.push_back(std::move(b));
      }
    }
    all = std::move(keep);
  }
  std::vector<Benchmark> selected = Select(std::move(all), *config);
  if (selected.empty()) {
    std::string ids;
    for (const Benchmark& b : AllBenchmarks(*config)) {
      if (only.empty() ||
          std::find(only.begin(), only.end(), b.id) != only.end()) {
        ids += (ids.empty() ? "" : ", ") + b.id;
      }
    }
    std::cerr << name << ": BENCH_FILTER='" << config->filter
              << "' with EXECUTOR='" << config->executor
              << "' selects no benchmark; ids here: " << ids << "\n";
    return 2;
  }
  std::cout << "Spindle benchmark suite (" << name << ")\n";
  PrintMachine(std::cout);
  std::cout << "iterations: " << config->iterations
            << " measured per variant, interleaved, after one warm-up\n\n";
  const uint64_t t0 = timing::MonotonicClock::Now();
  RunOutput run = RunBenchmarks(selected, *config, std::cout);
  PrintTable(selected, run, std::cout);
  const std::string csv = out_dir + "/benchmark_results.csv";
  if (absl::Status s = WriteCsv(csv, run.results); !s.ok()) {
    std::cerr << name << ": " << s.message() << "\n";
    return 1;
  }
  std::cout << "\nwrote " << csv << " (" << run.results.size() << " rows)\n";
  absl::StatusOr<std::vector<std::string>> charts =
      WriteCharts(selected, run.results, out_dir,
                  CurrentChartInfo(config->iterations));
  if (charts.ok()) {
    std::cout << "wrote " << charts->size() << " charts: " << out_dir
              << "/chart_<benchmark>_<unit>.svg\n";
  } else {
    std::cout << "no charts: " << charts.status().message() << "\n";
  }
  std::cout << absl::StrFormat("total %.1f s\n",
                               (timing::MonotonicClock::Now() - t0) / 1e9);
  return 0;
}

}  // namespace spindle::bench
