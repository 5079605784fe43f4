// dispatch/slurm_testing.h: the Slurm cluster that tests run steps on.
//
// Tests of the Slurm backend need a cluster: $SLURM_CONF, or the private one
// dispatch/slurm/local_cluster.sh starts (its default state directory).
// Without one they skip, saying what is missing; with
// SPINDLE_SLURM_REQUIRED=1 (as .ci/run sets, after starting the local
// cluster) they fail instead, so that CI never passes them vacuously.

#ifndef SPINDLE_DISPATCH_SLURM_TESTING_H_
#define SPINDLE_DISPATCH_SLURM_TESTING_H_

#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dispatch/process.h"
#include "dispatch/slurm.h"

namespace spindle::dispatch_testing {

// $SLURM_CONF, else the local cluster's when it exists, else empty.
inline std::string SlurmConf() {
  if (const char* c = std::getenv("SLURM_CONF"); c != nullptr && *c != 0) {
    return c;
  }
  return dispatch::SlurmOptions::LocalClusterConf();
}

inline bool SlurmRequired() {
  const char* r = std::getenv("SPINDLE_SLURM_REQUIRED");
  return r != nullptr && std::string(r) == "1";
}

// Runs Slurm's `name` here against the test cluster; its stdout, or why
// not.
inline absl::StatusOr<std::string> SlurmCommand(
    const std::string& name, std::vector<std::string> args) {
  static dispatch::ProcessRunner* runner =
      dispatch::ProcessRunner::Create({}).value().release();
  dispatch::ProcessSpec spec;
  spec.binary = name;
  spec.args = std::move(args);
  spec.env_mode = dispatch::EnvMode::kAdd;
  spec.env = {{"SLURM_CONF", SlurmConf()}};
  spec.timeout = absl::Seconds(30);
  absl::StatusOr<dispatch::ProcessResult> r = runner->Run(spec);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat(name, " failed: ", r->stderr_data));
  }
  return r->stdout_data;
}

// The local cluster's nodes that Slurm has marked down or drained are
// resumed, and up to a minute is given for `nodes` of them to be usable.
// On a machine loaded by a build a slurmd can answer later than the local
// cluster's SlurmdTimeout (5 s) and be marked down; an salloc would then
// wait its 30 s for a node that nothing brings back.  Only the cluster of
// dispatch/slurm/local_cluster.sh is touched: another cluster's nodes are
// its administrator's.  Errors are left to the salloc that follows.
inline void ReviveLocalNodes(int nodes) {
  const absl::Time end = absl::Now() + absl::Minutes(1);
  for (;;) {
    absl::StatusOr<std::string> listing =
        SlurmCommand("sinfo", {"-h", "-N", "-o", "%N %t"});
    if (!listing.ok()) return;
    int usable = 0;
    std::vector<std::string> stopped;
    for (absl::string_view line :
         absl::StrSplit(*listing, '\n', absl::SkipWhitespace())) {
      std::vector<std::string> f =
          absl::StrSplit(line, ' ', absl::SkipWhitespace());
      if (f.size() != 2) continue;
      const std::string& state = f[1];
      if (state == "idle" || state == "mix" || state == "alloc" ||
          state == "comp") {
        ++usable;
      } else if (absl::StartsWith(state, "down") ||
                 absl::StartsWith(state, "drain") ||
                 absl::StartsWith(state, "drng")) {
        stopped.push_back(f[0]);
      }
    }
    if (usable >= nodes || absl::Now() > end) return;
    for (const std::string& n : stopped) {
      (void)SlurmCommand("scontrol",
                         {"update", absl::StrCat("nodename=", n),
                          "state=resume"});
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
}

// A launcher holding `nodes` nodes of the test cluster, or why not.
inline absl::StatusOr<std::shared_ptr<dispatch::SlurmLauncher>> TestSlurm(
    int nodes, int cpus_per_node = 1) {
  const std::string conf = SlurmConf();
  if (conf.empty()) {
    return absl::FailedPreconditionError(
        "no Slurm cluster: SLURM_CONF is unset and "
        "/tmp/spindle-slurm/slurm.conf does not exist (start one with "
        "dispatch/slurm/local_cluster.sh up)");
  }
  if (conf == dispatch::SlurmOptions::LocalClusterConf()) {
    ReviveLocalNodes(nodes);
  }
  dispatch::SlurmOptions o;
  o.nodes = nodes;
  o.cpus_per_node = cpus_per_node;
  o.conf = conf;
  o.time_limit = absl::Minutes(30);
  o.allocation_wait = absl::Seconds(30);
  absl::StatusOr<std::shared_ptr<dispatch::SlurmLauncher>> l =
      dispatch::SlurmLauncher::Create(o);
  if (!l.ok()) {
    return absl::Status(l.status().code(),
                        absl::StrCat("no allocation on the Slurm cluster of ",
                                     conf, ": ", l.status().message()));
  }
  return l;
}

}  // namespace spindle::dispatch_testing

// Declares `var`, a std::shared_ptr<SlurmLauncher> holding `nodes` nodes;
// without a cluster, skips the test saying why (fails it when
// SPINDLE_SLURM_REQUIRED=1).
#define SPINDLE_SLURM_OR_SKIP(var, nodes)                                  \
  auto var##_or = ::spindle::dispatch_testing::TestSlurm(nodes);           \
  if (!var##_or.ok()) {                                                    \
    if (::spindle::dispatch_testing::SlurmRequired()) {                    \
      FAIL() << "SPINDLE_SLURM_REQUIRED=1 and " << var##_or.status();      \
    }                                                                      \
    GTEST_SKIP() << var##_or.status();                                     \
  }                                                                        \
  std::shared_ptr<::spindle::dispatch::SlurmLauncher> var = *var##_or

#endif  // SPINDLE_DISPATCH_SLURM_TESTING_H_
