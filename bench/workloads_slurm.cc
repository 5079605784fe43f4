// bench/workloads_slurm.cc: the `slurm_steps` rows, 100 runs of /bin/true
// (SLURM_STEPS) as Slurm job steps, 8 in flight.
//
// Both variants use one allocation of 2 nodes (dispatch::SlurmLauncher,
// created at the first use and held for the run).  `spindle`: 8 threads,
// each running one spec at a time through a ProcessRunner with the launcher
// (the step's srun watched, its output read, its result interpreted).
// `floor`: the same count of `srun --jobid=J --overlap /bin/true` from a
// shell loop (`xargs -P 8`), the raw job-step path.  Rows: the wall time;
// slurm_steps_p50 (spindle only): each run's start-to-result time.
// Without a cluster both variants fail, and the suite skips the row for
// them, saying why.  The cluster is SLURM_CONF's (or SPINDLE_SLURM_CONF's),
// else dispatch/slurm/local_cluster.sh's when it is up.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/workloads.h"
#include "dispatch/dispatch.h"
#include "dispatch/slurm.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

using timing::MonotonicClock;

constexpr int kInFlight = 8;

// The allocation both variants share: made at the first use, released
// when the row's variants are destroyed (the end of the run), not at exit.
struct Cluster {
  std::shared_ptr<dispatch::SlurmLauncher> launcher;
  std::string conf;  // empty: the environment's SLURM_CONF
};
class SharedCluster {
 public:
  absl::StatusOr<Cluster> Get() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!held_.ok()) held_ = Allocate();
    return held_;
  }

 private:
  static absl::StatusOr<Cluster> Allocate() {
    absl::StatusOr<dispatch::SlurmOptions> o =
        dispatch::SlurmOptions::FromEnv();
    if (!o.ok()) return o.status();
    const char* env_conf = std::getenv("SLURM_CONF");
    if (o->conf.empty() && (env_conf == nullptr || *env_conf == 0)) {
      o->conf = dispatch::SlurmOptions::LocalClusterConf();
      if (o->conf.empty()) {
        return absl::FailedPreconditionError(
            "no Slurm cluster: SLURM_CONF is unset and the local cluster's "
            "slurm.conf does not exist (dispatch/slurm/local_cluster.sh up "
            "starts one)");
      }
    }
    o->nodes = 2;
    o->allocation_wait = absl::Seconds(10);
    absl::StatusOr<std::shared_ptr<dispatch::SlurmLauncher>> l =
        dispatch::SlurmLauncher::Create(*o);
    if (!l.ok()) return l.status();
    return Cluster{*std::move(l), o->conf};
  }
  std::mutex mu_;
  absl::StatusOr<Cluster> held_ = absl::UnknownError("not allocated yet");
};

absl::StatusOr<Rows> SpindleSteps(SharedCluster& shared,
                                  const std::string& id, int64_t n) {
  absl::StatusOr<Cluster> cluster = shared.Get();
  if (!cluster.ok()) return cluster.status();
  auto runner = dispatch::ProcessRunner::Create(
      {.backend = "auto", .launcher = cluster->launcher});
  if (!runner.ok()) return runner.status();
  dispatch::ProcessSpec spec;
  spec.binary = "/bin/true";
  std::vector<std::vector<double>> lat(kInFlight);
  std::atomic<int64_t> next{0};
  std::mutex failed_mu;
  absl::Status failed;  // the first step that did not exit 0
  const uint64_t t0 = MonotonicClock::Now();
  std::vector<std::thread> clients;
  for (int c = 0; c < kInFlight; ++c) {
    clients.emplace_back([&, c] {
      // Relaxed: a counter that hands out run numbers.
      while (next.fetch_add(1, std::memory_order_relaxed) < n) {
        const uint64_t s = MonotonicClock::Now();
        absl::StatusOr<dispatch::ProcessResult> r = (*runner)->Run(spec);
        lat[c].push_back(static_cast<double>(MonotonicClock::Now() - s));
        if (!r.ok() || r->exit_code != 0) {
          std::lock_guard<std::mutex> lock(failed_mu);
          if (failed.ok()) {
            failed = absl::InternalError(absl::StrCat(
                "slurm_steps: a step failed: ",
                r.ok() ? absl::StrCat("exit ", r->exit_code, ": ",
                                      r->stderr_data)
                       : r.status().ToString()));
          }
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  const uint64_t t1 = MonotonicClock::Now();
  if (!failed.ok()) return failed;
  std::vector<double> all;
  for (const auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  return Rows{{id, static_cast<double>(t1 - t0)},
              {id + "_p50", Quantile(all, 0.5), Unit::kNanos, n}};
}

absl::StatusOr<Rows> FloorSteps(SharedCluster& shared,
                                const std::string& id, int64_t n) {
  absl::StatusOr<Cluster> cluster = shared.Get();
  if (!cluster.ok()) return cluster.status();
  auto runner = dispatch::ProcessRunner::Create({});
  if (!runner.ok()) return runner.status();
  dispatch::ProcessSpec sh;
  sh.binary = "/bin/sh";
  sh.args = {"-c",
             absl::StrCat("seq ", n, " | xargs -P ", kInFlight,
                          " -I{} srun --jobid=", cluster->launcher->job_id(),
                          " --overlap -N1 -n1 --quiet /bin/true")};
  // Same allocation, the shell's own loop, the same slurm.conf.
  if (!cluster->conf.empty()) {
    sh.env_mode = dispatch::EnvMode::kAdd;
    sh.env = {{"SLURM_CONF", cluster->conf}};
  }
  const uint64_t t0 = MonotonicClock::Now();
  absl::StatusOr<dispatch::ProcessResult> r = (*runner)->Run(sh);
  const uint64_t t1 = MonotonicClock::Now();
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("slurm_steps floor: exit ", r->exit_code, ": ",
                     r->stderr_data));
  }
  return Rows{{id, static_cast<double>(t1 - t0)}};
}

}  // namespace

void AddSlurmBenchmarks(const Config& c, std::vector<Benchmark>& all) {
  const std::string id = "slurm_steps";
  Benchmark b{id,
              "param runs of /bin/true as Slurm job steps of one 2-node "
              "allocation, 8 in flight; wall time (floor: srun --jobid "
              "--overlap from xargs -P 8); slurm_steps_p50: start to result; "
              "skipped without a cluster",
              "floor",
              {c.slurm_steps},
              {}};
  auto shared = std::make_shared<SharedCluster>();
  b.variants.push_back({"spindle", [id, shared](int64_t n) {
                          return SpindleSteps(*shared, id, n);
                        }});
  b.variants.push_back({"floor", [id, shared](int64_t n) {
                          return FloorSteps(*shared, id, n);
                        }});
  b.ops = [](int64_t n) { return static_cast<double>(n); };
  b.op = "step";
  all.push_back(std::move(b));
}

}  // namespace spindle::bench
