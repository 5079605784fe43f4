// The Slurm backend on a real cluster (dispatch/slurm_testing.h says which;
// .ci/run starts dispatch/slurm/local_cluster.sh's two-node cluster).
#include "dispatch/slurm.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dispatch/process.h"
#include "dispatch/slurm_testing.h"
#include "gtest/gtest.h"

namespace spindle::dispatch {
namespace {

using dispatch_testing::SlurmCommand;

std::unique_ptr<ProcessRunner> RunnerOn(std::shared_ptr<SlurmLauncher> l) {
  return ProcessRunner::Create({.backend = "auto", .launcher = std::move(l)})
      .value();
}

ProcessSpec Sh(std::string script) {
  ProcessSpec s;
  s.binary = "/bin/sh";
  s.args = {"-c", std::move(script)};
  return s;
}

// The names of the job's steps that squeue lists.
std::vector<std::string> Steps(uint64_t job) {
  absl::StatusOr<std::string> out = SlurmCommand(
      "squeue", {"-h", "-s", "-j", absl::StrCat(job), "-o", "%i"});
  EXPECT_TRUE(out.ok()) << out.status();
  return absl::StrSplit(out.value_or(""), '\n', absl::SkipWhitespace());
}

// Waits (at most `limit`) for the job's step list to be empty.
bool NoStepsWithin(uint64_t job, absl::Duration limit) {
  const absl::Time end = absl::Now() + limit;
  while (!Steps(job).empty()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

TEST(SlurmTest, ExitCodeSignalBothStreamsAndStdin) {
  SPINDLE_SLURM_OR_SKIP(slurm, 1);
  auto runner = RunnerOn(slurm);

  absl::StatusOr<ProcessResult> r =
      runner->Run(Sh("echo out; echo err >&2; exit 3"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->term_signal, 0);
  EXPECT_EQ(r->stdout_data, "out\n");
  EXPECT_EQ(r->stderr_data, "err\n");  // srun's own lines taken out

  r = runner->Run(Sh("kill -TERM $$"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_EQ(r->term_signal, SIGTERM);
  EXPECT_EQ(r->stderr_data, "");

  ProcessSpec cat;
  cat.binary = "cat";
  cat.stdin_data = "fed through srun\n";
  r = runner->Run(cat);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, "fed through srun\n");
}

TEST(SlurmTest, EnvironmentAndWorkingDirectory) {
  SPINDLE_SLURM_OR_SKIP(slurm, 1);
  auto runner = RunnerOn(slurm);
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp != nullptr ? tmp : "/tmp";
  char real[PATH_MAX];
  ASSERT_NE(::realpath(dir.c_str(), real), nullptr);

  ProcessSpec s = Sh("echo \"$SPINDLE_T1 $SPINDLE_T2\"; pwd");
  s.env_mode = EnvMode::kAdd;
  s.env = {{"SPINDLE_T1", "one"}, {"SPINDLE_T2", "two words"}};
  s.working_dir = real;
  absl::StatusOr<ProcessResult> r = runner->Run(s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, absl::StrCat("one two words\n", real, "\n"));

  // kReplace: exactly the spec's, plus Slurm's own.
  s = Sh("echo \"${SPINDLE_T1:-unset} ${HOME_IS:-x}\"");
  s.env_mode = EnvMode::kReplace;
  s.env = {{"HOME_IS", "mine"}};
  ::setenv("SPINDLE_T1", "leaked", 1);
  r = runner->Run(s);
  ::unsetenv("SPINDLE_T1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "unset mine\n");
}

TEST(SlurmTest, MissingBinaryAndDirectoryAreErrorsNamingThem) {
  SPINDLE_SLURM_OR_SKIP(slurm, 1);
  auto runner = RunnerOn(slurm);
  ProcessSpec s;
  s.binary = "/nonexistent/spindle-no-such-binary";
  absl::StatusOr<ProcessResult> r = runner->Run(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_NE(r.status().message().find("spindle-no-such-binary"),
            std::string::npos);

  s = Sh("true");
  s.working_dir = "/nonexistent/spindle-no-such-dir";
  r = runner->Run(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
      << r.status();
  EXPECT_NE(r.status().message().find("spindle-no-such-dir"),
            std::string::npos);
}

TEST(SlurmTest, TimeoutCancelsASleep100WithinASecondOfItsDeadline) {
  SPINDLE_SLURM_OR_SKIP(slurm, 1);
  auto runner = RunnerOn(slurm);
  ProcessSpec s;
  s.binary = "sleep";
  s.args = {"100"};
  s.timeout = absl::Seconds(2);
  absl::StatusOr<ProcessResult> r = runner->Run(s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_NE(r->term_signal, 0);
  EXPECT_GE(r->duration, absl::Seconds(2));
  // The cancel takes two commands (squeue, scancel) and round trips through
  // slurmctld and slurmd: about a second here, more on a loaded machine
  // (CI runs the sanitizer builds beside it).  A step left running would
  // take 100 s.
  EXPECT_LT(r->duration, absl::Seconds(12)) << r->duration;
  EXPECT_TRUE(NoStepsWithin(slurm->job_id(), absl::Seconds(5)))
      << "the step still runs in Slurm";
}

// Exit 0 when a process on this machine has `marker` in its command line.
bool ProcessWith(const std::string& marker) {
  absl::StatusOr<ProcessResult> r =
      ProcessRunner::Create({}).value()->Run([&] {
        ProcessSpec s;
        s.binary = "pgrep";
        s.args = {"-f", marker};
        return s;
      }());
  return r.ok() && r->exit_code == 0;
}

TEST(SlurmTest, KillCancelsTheStep) {
  SPINDLE_SLURM_OR_SKIP(slurm, 1);
  auto runner = RunnerOn(slurm);
  const std::string marker = absl::StrCat("spindle-kill-marker-", ::getpid());
  ProcessSpec s = Sh(absl::StrCat("trap '' TERM; sleep 100; : ", marker));
  absl::StatusOr<ProcessHandle> h = runner->Start(s);
  ASSERT_TRUE(h.ok()) << h.status();
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (Steps(slurm->job_id()).empty()) {
    ASSERT_LT(absl::Now(), end) << "the step never appeared in squeue";
    absl::SleepFor(absl::Milliseconds(20));
  }
  h->Kill();
  const ProcessResult* r = h->WaitFor(absl::Seconds(10));
  ASSERT_NE(r, nullptr) << "Kill did not end the step";
  EXPECT_TRUE(r->killed);
  EXPECT_TRUE(h->status().ok()) << h->status();
  // The task is killed at once (scancel), and srun ends by itself, so
  // Slurm drops the step too.  (Had srun been killed first, slurmstepd
  // would wait on its streams, the step listed for many seconds.)
  const absl::Time gone_by = absl::Now() + absl::Seconds(5);
  while (ProcessWith(marker)) {
    ASSERT_LT(absl::Now(), gone_by) << "the task still runs";
    absl::SleepFor(absl::Milliseconds(20));
  }
  // A bound for a loaded machine (the cancel is two commands to slurmctld).
  EXPECT_TRUE(NoStepsWithin(slurm->job_id(), absl::Seconds(20)))
      << "the step still runs in Slurm";
}

// A kill that comes while srun is still creating its step: srun may then
// exit (even with status 0) while slurmctld goes on to create and launch
// the step.  The launcher must still find and cancel every such step.
TEST(SlurmTest, KillsWhileTheStepIsBeingCreatedLeaveNoStepRunning) {
  SPINDLE_SLURM_OR_SKIP(slurm, 1);
  auto runner = RunnerOn(slurm);
  // One at a time, each killed a little later than the last, so that the
  // kills land at different points of step creation (a window tens of
  // milliseconds wide) and the launcher looks for each step at once.  (srun
  // killed that early waits 3 s for its step to finish: few rounds.)
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<ProcessHandle> h =
        runner->Start(Sh("trap '' TERM; sleep 100"));
    ASSERT_TRUE(h.ok()) << h.status();
    absl::SleepFor(absl::Milliseconds(8 * i));
    h->Kill();
    const ProcessResult* r = h->WaitFor(absl::Seconds(30));
    ASSERT_NE(r, nullptr) << "srun outlived its kill by 30 s";
    EXPECT_TRUE(r->killed);
  }
  EXPECT_TRUE(NoStepsWithin(slurm->job_id(), absl::Seconds(30)))
      << "a step killed during its creation still runs in Slurm: "
      << absl::StrJoin(Steps(slurm->job_id()), " ");
}

TEST(SlurmTest, StepsRunOnBothNodes) {
  SPINDLE_SLURM_OR_SKIP(slurm, 2);
  const std::vector<std::string> nodes = slurm->live_nodes();
  ASSERT_EQ(nodes.size(), 2u);
  auto runner = RunnerOn(slurm);
  std::vector<ProcessHandle> hs;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<ProcessHandle> h =
        runner->Start(Sh("sleep 0.3; echo $SLURMD_NODENAME"));
    ASSERT_TRUE(h.ok()) << h.status();
    hs.push_back(*h);
  }
  EXPECT_EQ(slurm->steps_running(), 4u);
  std::set<std::string> seen;
  for (const ProcessHandle& h : hs) {
    ASSERT_TRUE(h.status().ok()) << h.status();
    seen.insert(std::string(absl::StripAsciiWhitespace(h.Wait().stdout_data)));
  }
  EXPECT_EQ(seen, std::set<std::string>(nodes.begin(), nodes.end()));
  EXPECT_EQ(slurm->steps_running(), 0u);
}

// A node of the local cluster that Slurm took out of service (as it does
// to a slurmd that answers late on a loaded machine) is brought back
// before a test's allocation asks for it (dispatch_testing::TestSlurm),
// not waited on for salloc's 30 s.  Drained rather than downed: a step of
// another test still running on n2 is not killed.
TEST(SlurmTest, ANodeOutOfServiceIsResumedBeforeATestAllocates) {
  const std::string conf = dispatch_testing::SlurmConf();
  if (conf.empty() || conf != SlurmOptions::LocalClusterConf()) {
    if (dispatch_testing::SlurmRequired()) {
      FAIL() << "SPINDLE_SLURM_REQUIRED=1 and no local cluster ('" << conf
             << "')";
    }
    GTEST_SKIP() << "needs dispatch/slurm/local_cluster.sh's cluster";
  }
  absl::StatusOr<std::string> drained = SlurmCommand(
      "scontrol",
      {"update", "nodename=n2", "state=drain", "reason=spindle-slurm-test"});
  ASSERT_TRUE(drained.ok()) << drained.status();
  absl::StatusOr<std::string> state =
      SlurmCommand("sinfo", {"-h", "-n", "n2", "-o", "%t"});
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(absl::StartsWith(absl::StripAsciiWhitespace(*state), "dr"))
      << *state;
  const absl::Time start = absl::Now();
  absl::StatusOr<std::shared_ptr<SlurmLauncher>> slurm =
      dispatch_testing::TestSlurm(2);
  ASSERT_TRUE(slurm.ok()) << slurm.status();
  EXPECT_EQ((*slurm)->live_nodes().size(), 2u);
  // salloc's own wait is 30 s: the node came back well before it.
  EXPECT_LT(absl::Now() - start, absl::Seconds(25));
}

TEST(SlurmTest, MoreCpusThanTheAllocationHasRunAsAJobOfItsOwn) {
  SPINDLE_SLURM_OR_SKIP(slurm, 1);
  auto runner = RunnerOn(slurm);
  ProcessSpec s = Sh("echo $SLURM_JOB_ID $SLURM_CPUS_PER_TASK");
  s.cpus = 2;
  absl::StatusOr<ProcessResult> r = runner->Run(s);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> f =
      absl::StrSplit(absl::StripAsciiWhitespace(r->stdout_data), ' ');
  ASSERT_EQ(f.size(), 2u) << r->stdout_data;
  EXPECT_NE(f[0], absl::StrCat(slurm->job_id()));
  EXPECT_EQ(f[1], "2");
}

// Our jobs of their own: "id name" of each job whose name has our prefix.
std::vector<std::string> OwnJobs(uint64_t allocation) {
  const std::string prefix =
      absl::StrCat("spindle-", ::getpid(), "-", allocation, "-");
  absl::StatusOr<std::string> out =
      SlurmCommand("squeue", {"-h", "-o", "%i %j"});
  EXPECT_TRUE(out.ok()) << out.status();
  std::vector<std::string> jobs;
  for (absl::string_view line :
       absl::StrSplit(out.value_or(""), '\n', absl::SkipWhitespace())) {
    if (absl::StrContains(line, prefix)) jobs.emplace_back(line);
  }
  return jobs;
}

TEST(SlurmTest, KillCancelsAJobOfItsOwn) {
  SPINDLE_SLURM_OR_SKIP(slurm, 1);
  auto runner = RunnerOn(slurm);
  ProcessSpec s = Sh("trap '' TERM; sleep 100");
  s.cpus = 2;
  absl::StatusOr<ProcessHandle> h = runner->Start(s);
  ASSERT_TRUE(h.ok()) << h.status();
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (OwnJobs(slurm->job_id()).empty()) {
    ASSERT_LT(absl::Now(), end) << "the job never appeared in squeue";
    absl::SleepFor(absl::Milliseconds(20));
  }
  h->Kill();
  const ProcessResult* r = h->WaitFor(absl::Seconds(15));
  ASSERT_NE(r, nullptr) << "Kill did not end the job's srun";
  EXPECT_TRUE(r->killed);
  const absl::Time gone_by = absl::Now() + absl::Seconds(20);
  while (!OwnJobs(slurm->job_id()).empty()) {
    ASSERT_LT(absl::Now(), gone_by)
        << "the job still runs: "
        << absl::StrJoin(OwnJobs(slurm->job_id()), "; ");
    absl::SleepFor(absl::Milliseconds(50));
  }
}

TEST(SlurmTest, DestroyingTheLauncherReleasesTheAllocation) {
  uint64_t job = 0;
  {
    SPINDLE_SLURM_OR_SKIP(slurm, 2);
    job = slurm->job_id();
    auto runner = RunnerOn(slurm);
    ASSERT_TRUE(runner->Run(Sh("true")).ok());
    // Still held while a runner holds the launcher.
    slurm.reset();
    absl::StatusOr<std::string> q =
        SlurmCommand("squeue", {"-h", "-j", absl::StrCat(job), "-o", "%T"});
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(absl::StripAsciiWhitespace(*q), "RUNNING");
  }
  const absl::Time end = absl::Now() + absl::Seconds(30);
  for (;;) {
    absl::StatusOr<std::string> q =
        SlurmCommand("squeue", {"-h", "-j", absl::StrCat(job), "-o", "%T"});
    // squeue fails for a job id it has forgotten: gone too.
    if (!q.ok() || absl::StripAsciiWhitespace(*q).empty()) break;
    ASSERT_LT(absl::Now(), end) << "job " << job << " is still " << *q;
    absl::SleepFor(absl::Milliseconds(100));
  }
}

// srun missing (salloc and the rest present): Start fails naming it, and
// the step it had placed is not left counted.
TEST(SlurmTest, AStartThatFailsLeavesNoStepCounted) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string bin = absl::StrCat(tmp != nullptr ? tmp : "/tmp",
                                       "/slurm-bin-", ::getpid());
  ASSERT_EQ(::mkdir(bin.c_str(), 0755), 0) << bin;
  for (const char* c : {"salloc", "scancel", "squeue", "scontrol"}) {
    const std::string to = absl::StrCat("/usr/bin/", c);
    ASSERT_EQ(::symlink(to.c_str(), absl::StrCat(bin, "/", c).c_str()), 0);
  }
  absl::StatusOr<std::shared_ptr<SlurmLauncher>> slurm_or = [&] {
    SlurmOptions o;
    o.conf = dispatch_testing::SlurmConf();
    o.commands_dir = bin;
    o.allocation_wait = absl::Seconds(30);
    return o.conf.empty() ? absl::FailedPreconditionError("no cluster")
                          : SlurmLauncher::Create(o);
  }();
  if (!slurm_or.ok()) {
    if (dispatch_testing::SlurmRequired()) FAIL() << slurm_or.status();
    GTEST_SKIP() << slurm_or.status();
  }
  auto runner = RunnerOn(*slurm_or);
  absl::StatusOr<ProcessHandle> h = runner->Start(Sh("true"));
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("srun"), std::string::npos)
      << h.status();
  EXPECT_EQ((*slurm_or)->steps_running(), 0u);
}

TEST(SlurmOptionsTest, BadValuesNameTheFieldAndRange) {
  SlurmOptions o;
  o.nodes = 0;
  absl::Status s = SlurmLauncher::Create(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("nodes is 0; valid range [1, 100000]"),
            std::string::npos)
      << s;
  o = SlurmOptions();
  o.time_limit = absl::Seconds(10);
  EXPECT_NE(o.Validate().message().find("time_limit"), std::string::npos);
  o = SlurmOptions();
  o.partition = "a b";
  EXPECT_NE(o.Validate().message().find("partition"), std::string::npos);

  ::setenv("SPINDLE_SLURM_NODES", "many", 1);
  s = SlurmOptions::FromEnv().status();
  ::unsetenv("SPINDLE_SLURM_NODES");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("SPINDLE_SLURM_NODES='many'"), std::string::npos)
      << s;
  ::setenv("SPINDLE_SLURM_TIME_LIMIT", "90", 1);
  ::setenv("SPINDLE_SLURM_PARTITION", "debug", 1);
  absl::StatusOr<SlurmOptions> env = SlurmOptions::FromEnv();
  ::unsetenv("SPINDLE_SLURM_TIME_LIMIT");
  ::unsetenv("SPINDLE_SLURM_PARTITION");
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->time_limit, absl::Minutes(90));
  EXPECT_EQ(env->partition, "debug");
}

TEST(SlurmOptionsTest, LocalClusterConfIsTheStateDirectorysWhenItExists) {
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/state");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  ::setenv("SPINDLE_SLURM_DIR", dir.c_str(), 1);
  EXPECT_EQ(SlurmOptions::LocalClusterConf(), "");  // no slurm.conf yet
  const std::string conf = dir + "/slurm.conf";
  ::close(::open(conf.c_str(), O_CREAT | O_WRONLY, 0644));
  EXPECT_EQ(SlurmOptions::LocalClusterConf(), conf);
  ::unsetenv("SPINDLE_SLURM_DIR");
}

TEST(SlurmOptionsTest, MissingCommandsAreFailedPrecondition) {
  SlurmOptions o;
  o.commands_dir = "/nonexistent/spindle-slurm-bin";
  absl::Status s = SlurmLauncher::Create(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("salloc"), std::string::npos) << s;
}

}  // namespace
}  // namespace spindle::dispatch
