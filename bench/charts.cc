// bench/charts.cc: the suite's SVG charts, drawn by gnuplot.
//
// What a chart shows, and why:
// - One chart per benchmark and unit (chart_<id>_<unit>.svg), never two
//   units on one axis: time per operation (ns), latencies (ns), TSC ticks,
//   share error (ppm).
// - A row that is a total (an iteration's wall time) is divided by the
//   operations the iteration performs (Benchmark::ops): ns per spawn, per
//   yield, per NOP.  A wall time fixed by design (Benchmark::fixed_duration)
//   is left out: it would only show the configured duration.
// - A percentile pXX is drawn only where at least kMinBeyond samples lie
//   beyond it in every iteration (Row::samples): the p99 of 10 samples is
//   their maximum, not a p99.
// - Each variant has one colour in every chart (VariantColour).
// - A bar is the median of the iterations, the whisker their min-max, and
//   the label above it the ratio of the median to the baseline's.
// - The title names the machine, the date, the commit and the iteration
//   count; the y axis says what the unit is and that lower is better (true
//   of every row the suite has).  The axis is logarithmic only when the
//   values span more than kLogSpan.
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench.h"

extern char** environ;

namespace spindle::bench {
namespace {

// A percentile pXX is drawn when n * (1 - XX/100) >= kMinBeyond.
constexpr double kMinBeyond = 5;
// Logarithmic y axis when max / min of a chart exceeds this.
constexpr double kLogSpan = 30;

bool OnPath(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    if (access((dir + "/" + tool).c_str(), X_OK) == 0) return true;
  }
  return false;
}

std::string Quote(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}

// Runs a command, returns its first line of output ("" on failure).
std::string FirstLine(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char buf[256] = {0};
  std::string line;
  if (fgets(buf, sizeof(buf), p) != nullptr) line = buf;
  const int rc = pclose(p);
  if (rc != 0) return "";
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
    line.pop_back();
  }
  return line;
}

// Fixed colours: floor grey, Spindle's variants blues and purples, peers warm.
std::string VariantColour(const std::string& v) {
  static const std::map<std::string, std::string> kKnown = {
      {"floor", "#7f7f7f"},
      {"spindle", "#1f77b4"},
      {"spindle_eevdf2", "#17becf"},
      {"spindle_epoll", "#9467bd"},
      {"spindle_alone", "#bcbd22"},
      {"spindle_tiers", "#e377c2"},
      {"spindle_notiers", "#d62728"},
      {"spindle_thin_alone", "#8c564b"},
      {"spindle_fifo", "#aec7e8"},
      {"spindle_eevdf", "#393b79"},
      {"asio", "#ff7f0e"},
      {"tbb", "#2ca02c"},
  };
  auto it = kKnown.find(v);
  if (it != kKnown.end()) return it->second;
  // A variant added later: a stable colour from its name.
  static constexpr std::array<const char*, 6> kSpare = {
      "#637939", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354"};
  return kSpare[std::hash<std::string>{}(v) % kSpare.size()];
}

// The q of a percentile row ("tail_thin_start_p999" -> 0.999), or -1.
double PercentileOf(const std::string& row) {
  const size_t p = row.rfind("_p");
  if (p == std::string::npos || p + 2 >= row.size()) return -1;
  const std::string digits = row.substr(p + 2);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stod(digits) / std::pow(10.0, static_cast<double>(digits.size()));
}

// The values of one (row, param), per variant, already per operation.
struct Series {
  std::map<std::string, std::vector<double>> values;
  std::map<std::string, int64_t> min_samples;
};

absl::Status RunGnuplot(const std::string& script) {
  pid_t pid = 0;
  std::string arg1 = script;
  char arg0[] = "gnuplot";
  char* argv[] = {arg0, arg1.data(), nullptr};
  const int rc = posix_spawnp(&pid, "gnuplot", nullptr, nullptr, argv, environ);
  int wstatus = 0;
  if (rc == 0) waitpid(pid, &wstatus, 0);
  if (rc != 0 || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("gnuplot failed on ", script, rc != 0 ? ": " : "",
                     rc != 0 ? std::strerror(rc) : ""));
  }
  return absl::OkStatus();
}

// Writes the data and script of one chart; returns the script's path.
std::string WriteScript(const Benchmark& b, const ChartPlan& c,
                        const ChartInfo& info, const std::string& tmp,
                        const std::string& svg) {
  // Variants in the benchmark's order, those with at least one bar.
  std::vector<std::string> variants;
  for (const Variant& v : b.variants) {
    for (const ChartCluster& cl : c.clusters) {
      if (cl.bars.count(v.name) != 0) {
        variants.push_back(v.name);
        break;
      }
    }
  }
  double lo = 0, hi = 0;
  bool first = true;
  for (const ChartCluster& cl : c.clusters) {
    for (const auto& [v, bar] : cl.bars) {
      const double m = std::max(bar.min, 1e-9);
      lo = first ? m : std::min(lo, m);
      hi = first ? bar.max : std::max(hi, bar.max);
      first = false;
    }
  }
  const bool log = hi / std::max(lo, 1e-9) > kLogSpan;
  // Nanosecond charts are drawn in the unit that keeps the numbers short.
  double scale = 1;
  std::string unit_name;
  if (c.in_ns) {
    if (hi >= 1e6) {
      scale = 1e6, unit_name = "ms";
    } else if (hi >= 1e4) {
      scale = 1e3, unit_name = "us";
    } else {
      unit_name = "ns";
    }
  }
  lo /= scale;
  hi /= scale;
  const size_t width = variants.size() + 1;  // bars and a gap per cluster
  // A chart of one variant has nothing to compare: no ratio labels.
  const bool ratios = variants.size() > 1;
  const std::string base = tmp + "/" + b.id + "_" + c.kind;
  {
    std::ofstream d(base + ".dat");
    // One block per variant: x median min max label-y "ratio".
    for (size_t vi = 0; vi < variants.size(); ++vi) {
      d << "# " << variants[vi] << "\n";
      for (size_t ci = 0; ci < c.clusters.size(); ++ci) {
        auto it = c.clusters[ci].bars.find(variants[vi]);
        if (it == c.clusters[ci].bars.end()) continue;
        const ChartBar& bar = it->second;
        const double top = bar.max / scale;
        const double label_y = log ? top * 1.25 : top + hi * 0.03;
        d << absl::StrFormat("%d %.6g %.6g %.6g %.6g %s\n", ci * width + vi,
                             bar.median / scale, bar.min / scale,
                             bar.max / scale, label_y, Quote(bar.ratio));
      }
      d << "\n\n";
    }
  }
  std::ofstream s(base + ".gp");
  const double bars_w = std::max<double>(
      640, 110.0 * static_cast<double>(c.clusters.size() * width));
  s << absl::StrFormat(
           "set terminal svg size %.0f,560 dynamic font 'sans,11' "
           "background rgb 'white'\n",
           std::min(bars_w + 260, 2000.0))
    << "set output " << Quote(svg)
    << "\n"
    // Two title lines: gnuplot turns "\n" into a line break.
    << "set title " << Quote(c.title) << ".\"\\n\"." << Quote(b.what)
    << ".\"\\n\"."
    << Quote(absl::StrCat(info.machine, " | ", info.date, " | commit ",
                          info.commit, " | ", info.iterations, " iterations"))
    << " noenhanced\n"
    << "set ylabel "
    << Quote(absl::StrCat(unit_name, c.ylabel, log ? ", log scale" : ""))
    << " noenhanced\n"
    << "set xlabel "
    << Quote(absl::StrCat(
           "bar: median of the iterations; whisker: min-max",
           ratios ? absl::StrCat("; label: ratio to ", b.baseline) : ""))
    << " noenhanced\n"
    << "set style fill solid 0.85 border rgb 'black'\n"
    << "set boxwidth 0.9\n"
    << "set key outside right top noenhanced\n"
    << "set grid ytics\n"
    << "set format y '%g'\n"
    << "set xtics scale 0 noenhanced rotate by -30 left\n"
    << "set bmargin 8\n"
    << "set xrange [-1:" << c.clusters.size() * width - 1 << "]\n";
  if (log) {
    s << "set logscale y\n"
      << absl::StrFormat("set yrange [%.6g:%.6g]\n", lo / 2, hi * 2.5);
  } else {
    s << absl::StrFormat("set yrange [0:%.6g]\n", hi * 1.12);
  }
  s << "set xtics (";
  for (size_t ci = 0; ci < c.clusters.size(); ++ci) {
    const double center = static_cast<double>(ci * width) +
                          (static_cast<double>(variants.size()) - 1) / 2;
    s << (ci ? ", " : "") << Quote(c.clusters[ci].label) << " " << center;
  }
  s << ")\nplot ";
  const std::string dat = Quote(base + ".dat");
  for (size_t vi = 0; vi < variants.size(); ++vi) {
    s << (vi ? ", \\\n     " : "") << dat << " index " << vi
      << " using 1:2 with boxes fc rgb " << Quote(VariantColour(variants[vi]))
      << " title " << Quote(variants[vi]) << ", \\\n     " << dat << " index "
      << vi
      << " using 1:3:(0):($4-$3) with vectors heads size 0.15,90 "
         "lc rgb 'black' notitle";
    if (ratios) {
      s << ", \\\n     " << dat << " index " << vi
        << " using 1:5:6 with labels font ',9' notitle";
    }
  }
  s << "\n";
  return base + ".gp";
}

}  // namespace

std::vector<ChartPlan> PlanCharts(const Benchmark& b,
                                  const std::vector<Result>& results) {
  const std::string family = b.id == "tail_latency" ? "tail_" : b.id + "_";
  // (kind, row, param) in order of appearance.
  std::vector<std::tuple<std::string, std::string, int64_t>> order;
  std::map<std::tuple<std::string, std::string, int64_t>, Series> series;
  for (const Result& r : results) {
    const bool main = r.benchmark == b.id;
    if (!main && r.benchmark.rfind(family, 0) != 0) continue;
    std::string kind;
    double value = r.value;
    if (main) {
      if (b.fixed_duration) continue;
      if (b.ops) {
        const double ops = b.ops(r.param);
        if (ops <= 0) continue;
        value /= ops;
        kind = "per_" + b.op;
      } else {
        kind = "wall";
      }
    } else {
      switch (r.unit) {
        case Unit::kTicks:
          kind = "ticks";
          break;
        case Unit::kPpm:
          kind = "share_error";
          break;
        case Unit::kNanos:
          kind = "latency";
          break;
      }
    }
    const auto key = std::make_tuple(kind, r.benchmark, r.param);
    auto it = series.find(key);
    if (it == series.end()) {
      order.push_back(key);
      it = series.emplace(key, Series{}).first;
    }
    it->second.values[r.variant].push_back(value);
    auto [ms, fresh] = it->second.min_samples.emplace(r.variant, r.samples);
    if (!fresh) ms->second = std::min(ms->second, r.samples);
  }

  std::set<int64_t> params(b.params.begin(), b.params.end());
  std::vector<ChartPlan> charts;
  auto chart_for = [&](const std::string& kind) -> ChartPlan& {
    for (ChartPlan& c : charts) {
      if (c.kind == kind) return c;
    }
    ChartPlan c;
    c.kind = kind;
    if (kind == "ticks") {
      c.title = b.id + ": TSC ticks";
      c.ylabel = "TSC ticks (lower is better)";
      c.in_ns = false;
    } else if (kind == "share_error") {
      c.title = b.id + ": CPU share error, worst queue";
      c.ylabel = "parts per million off the shares (lower is better)";
      c.in_ns = false;
    } else if (kind == "latency") {
      c.title = b.id + ": latencies";
      c.ylabel = " (lower is better)";
    } else if (kind == "wall") {
      c.title = b.id + ": wall time per iteration";
      c.ylabel = " per iteration (lower is better)";
    } else {
      c.title = absl::StrCat(b.id, ": time per ", b.op);
      c.ylabel = absl::StrCat(" per ", b.op, " (lower is better)");
    }
    charts.push_back(std::move(c));
    return charts.back();
  };
  for (const auto& key : order) {
    const auto& [kind, row, param] = key;
    const Series& s = series[key];
    const double q = PercentileOf(row);
    ChartCluster cl;
    std::string short_row =
        row == b.id ? ""
                    : row.substr(row.rfind(family, 0) == 0 ? family.size() : 0);
    cl.label = short_row;
    if (params.size() > 1 || short_row.empty()) {
      cl.label += absl::StrCat(short_row.empty() ? "" : " ", "param ", param);
    }
    double base = 0;
    if (auto it = s.values.find(b.baseline); it != s.values.end()) {
      base = Median(it->second);
    }
    for (const auto& [variant, v] : s.values) {
      // A percentile with too few samples beyond it is not drawn.
      if (q > 0 && q < 1 &&
          static_cast<double>(s.min_samples.at(variant)) * (1 - q) <
              kMinBeyond) {
        continue;
      }
      ChartBar bar;
      bar.median = Median(v);
      bar.min = *std::min_element(v.begin(), v.end());
      bar.max = *std::max_element(v.begin(), v.end());
      if (base > 0) bar.ratio = absl::StrFormat("%.2fx", bar.median / base);
      cl.bars[variant] = bar;
    }
    if (!cl.bars.empty()) chart_for(kind).clusters.push_back(std::move(cl));
  }
  return charts;
}

ChartInfo CurrentChartInfo(int iterations) {
  ChartInfo info;
  info.iterations = iterations;
  std::string model = "unknown CPU";
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
  info.machine =
      absl::StrCat(model, ", ", std::thread::hardware_concurrency(), " cores");
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char date[32];
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", &tm);
  info.date = date;
  info.commit = "unknown";
  const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  if (ws != nullptr && *ws != '\0' && OnPath("git")) {
    const std::string git = absl::StrCat("git -C ", Quote(ws), " ");
    const std::string head =
        FirstLine(git + "rev-parse --short=12 HEAD 2>/dev/null");
    if (!head.empty()) {
      const std::string dirty = FirstLine(
          git + "status --porcelain --untracked-files=no 2>/dev/null");
      info.commit = head + (dirty.empty() ? "" : "+dirty");
    }
  }
  return info;
}

absl::StatusOr<std::vector<std::string>> WriteCharts(
    const std::vector<Benchmark>& benchmarks,
    const std::vector<Result>& results, const std::string& dir,
    const ChartInfo& info) {
  if (!OnPath("gnuplot")) {
    return absl::FailedPreconditionError(
        "gnuplot is not on PATH (install Debian's gnuplot-nox; ./bazelw "
        "installs it for `run` of //bench targets)");
  }
  char tmpl[] = "/tmp/spindle_bench_charts.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  const std::string tmp = tmpl;
  std::vector<std::string> written;
  for (const Benchmark& b : benchmarks) {
    for (const ChartPlan& c : PlanCharts(b, results)) {
      const std::string svg = dir + "/chart_" + b.id + "_" + c.kind + ".svg";
      absl::Status s = RunGnuplot(WriteScript(b, c, info, tmp, svg));
      if (!s.ok()) return s;  // The scripts stay in `tmp` for a look.
      written.push_back(svg);
    }
  }
  std::filesystem::remove_all(tmp);
  return written;
}

}  // namespace spindle::bench
