// executor/pool_slurm_failure_test.cc: a Slurm node fails under a Pool's
// steps.  Needs the local cluster of dispatch/slurm/local_cluster.sh, and
// runs alone (tag exclusive): it stops that cluster's slurmd for node n2
// (SIGSTOP: to Slurm, a node that no longer answers, as a killed slurmd
// is), then lets the same daemon go on (SIGCONT).  It does not kill and
// restart it: a daemon started from inside a Bazel test is killed when the
// test ends, which would leave n2 down for every later test.
//
// Expected (dispatch/slurm.h): the steps running on n2 resolve Unavailable
// naming the step and the node; the node is dropped, so the queued specs
// run on n1 and succeed; nothing hangs.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dispatch/slurm.h"
#include "dispatch/slurm_testing.h"
#include "executor/executor.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using dispatch::ProcessResult;
using dispatch::ProcessSpec;

std::string Dir(const std::string& path) {
  return path.substr(0, path.rfind('/'));
}

// Lets the stopped slurmd go on when it goes out of scope, however the
// test ends, and waits (at most a minute) for Slurm to take n2 back.
struct ResumeNode {
  pid_t slurmd;
  ~ResumeNode() {
    ::kill(slurmd, SIGCONT);
    const absl::Time end = absl::Now() + absl::Minutes(1);
    for (;;) {
      absl::StatusOr<std::string> st = dispatch_testing::SlurmCommand(
          "sinfo", {"-h", "-n", "n2", "-o", "%t"});
      const std::string state =
          st.ok() ? std::string(absl::StripAsciiWhitespace(*st)) : "";
      if (state == "idle" || state == "mix" || state == "alloc") return;
      if (absl::Now() > end) {
        ADD_FAILURE() << "n2 did not come back: '" << state << "'";
        return;
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
  }
};

TEST(PoolSlurmFailureTest, StepsOnAFailedNodeFailUnavailableTheRestRun) {
  SPINDLE_SLURM_OR_SKIP(slurm, 2);
  const std::string dir = Dir(dispatch_testing::SlurmConf());
  std::ifstream pidfile(dir + "/slurmd-n2.pid");
  pid_t slurmd = 0;
  if (!(pidfile >> slurmd) || slurmd <= 0) {
    if (dispatch_testing::SlurmRequired()) {
      FAIL() << "no " << dir << "/slurmd-n2.pid: not local_cluster.sh's";
    }
    GTEST_SKIP() << "the cluster of " << dir
                 << " is not dispatch/slurm/local_cluster.sh's (no "
                    "slurmd-n2.pid)";
  }

  auto pool = PoolBuilder()
                  .Workers(4)
                  .MaxQueueSize(64)
                  .Launcher(slurm)
                  .Build()
                  .value();
  std::vector<PoolHandle<ProcessResult>> hs;
  for (int i = 0; i < 12; ++i) {
    ProcessSpec s;
    s.binary = "/bin/sh";
    s.args = {"-c", "sleep 3; echo $SLURMD_NODENAME"};
    hs.push_back(pool->Submit(s).value());
  }
  // Four steps run: two per node (the least loaded node gets each).
  const absl::Time started_by = absl::Now() + absl::Seconds(30);
  while (slurm->steps_running() < 4) {
    ASSERT_LT(absl::Now(), started_by) << "the first steps never started";
    absl::SleepFor(absl::Milliseconds(10));
  }
  ResumeNode resume{slurmd};  // first thing undone at the end, or at a failure
  ASSERT_EQ(::kill(slurmd, SIGSTOP), 0);

  // A step counts as running once its srun starts; if n2's slurmd launched
  // it before the stop, its slurmstepd runs it to the end (a loaded
  // machine notices the four srun processes late): at most the two
  // running there may so finish on n2.
  int unavailable = 0, on_n1 = 0, finished_on_n2 = 0;
  for (size_t i = 0; i < hs.size(); ++i) {
    // Slurm notices a silent slurmd after SlurmdTimeout (5 s in the local
    // cluster) and a few pings: well within two minutes.
    const absl::StatusOr<ProcessResult>* r = hs[i].WaitFor(absl::Minutes(2));
    ASSERT_NE(r, nullptr) << "task " << i << " hangs";
    if (r->ok()) {
      EXPECT_EQ((*r)->exit_code, 0) << i;
      const absl::string_view node =
          absl::StripAsciiWhitespace((*r)->stdout_data);
      if (node == "n2" && i < 4) {
        ++finished_on_n2;
        continue;
      }
      EXPECT_EQ(node, "n1") << i;
      ++on_n1;
    } else {
      EXPECT_EQ(r->status().code(), absl::StatusCode::kUnavailable)
          << i << ": " << r->status();
      EXPECT_NE(r->status().message().find("node n2"), std::string::npos)
          << r->status();
      EXPECT_NE(r->status().message().find("step"), std::string::npos)
          << r->status();
      ++unavailable;
    }
  }
  // The two running on n2 failed (or finished there, see above); every
  // queued one ran, on n1 (or failed fast on n2 before the node was
  // dropped): at least one step failed with the node, which dropped it.
  EXPECT_LE(finished_on_n2, 2);
  EXPECT_GE(unavailable + finished_on_n2, 2);
  EXPECT_GE(unavailable, 1);
  EXPECT_GE(on_n1, 2);
  EXPECT_EQ(unavailable + on_n1 + finished_on_n2, 12);
  EXPECT_EQ(slurm->live_nodes(), std::vector<std::string>{"n1"});
}

}  // namespace
}  // namespace spindle
