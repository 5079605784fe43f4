// Reading srun's exit and messages (dispatch/internal/srun_result.h), from
// the lines Slurm 22.05 prints; no cluster needed.
#include "dispatch/internal/srun_result.h"

#include <signal.h>

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace spindle::dispatch_internal {
namespace {

using dispatch::ProcessResult;

SrunStep Step() {
  SrunStep s;
  s.name = "spindle-1-7-3";
  s.job = 7;
  s.node = "n2";
  s.binary = "/bin/work";
  return s;
}

ProcessResult Srun(int rc, std::string err, std::string out = "") {
  ProcessResult r;
  r.exit_code = rc;
  r.stdout_data = std::move(out);
  r.stderr_data = std::move(err);
  return r;
}

TEST(SrunResultTest, ExitCodeAndStreamsKeepTheTasksBytes) {
  ProcessResult r = Srun(
      3, "task err 1\nsrun: error: n2: task 0: Exited with exit code 3\n"
         "task err 2 no newline",
      "task out\n");
  SrunVerdict v = InterpretSrun(Step(), r);
  EXPECT_TRUE(v.status.ok()) << v.status;
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_EQ(r.stdout_data, "task out\n");
  EXPECT_EQ(r.stderr_data, "task err 1\ntask err 2 no newline");
  EXPECT_TRUE(v.failed_node.empty());
  EXPECT_FALSE(v.allocation_gone);
}

TEST(SrunResultTest, ASignalIsTheTermSignalNotAnExitCode) {
  ProcessResult r = Srun(128 + SIGSEGV,
                         "srun: error: n2: task 0: Segmentation fault\n");
  SrunVerdict v = InterpretSrun(Step(), r);
  EXPECT_TRUE(v.status.ok()) << v.status;
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.term_signal, SIGSEGV);
  EXPECT_EQ(r.stderr_data, "");
}

TEST(SrunResultTest, AnExitCodeAbove128IsStillAnExitCode) {
  ProcessResult r =
      Srun(130, "srun: error: n2: task 0: Exited with exit code 130\n");
  EXPECT_TRUE(InterpretSrun(Step(), r).status.ok());
  EXPECT_EQ(r.exit_code, 130);
  EXPECT_EQ(r.term_signal, 0);
}

TEST(SrunResultTest, NodeFailureIsUnavailableNamingStepJobAndNode) {
  ProcessResult r = Srun(0, "srun: error: Node failure on n2\n");
  SrunVerdict v = InterpretSrun(Step(), r);
  EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(v.status.message().find("spindle-1-7-3"), std::string::npos);
  EXPECT_NE(v.status.message().find("job 7"), std::string::npos);
  EXPECT_NE(v.status.message().find("node n2"), std::string::npos);
  EXPECT_EQ(v.failed_node, "n2");
}

TEST(SrunResultTest, ALaunchOnADeadNodeDropsTheNode) {
  ProcessResult r = Srun(233,
                         "srun: error: Task launch for StepId=7.4 failed on "
                         "node n2: Communication connection failure\n"
                         "srun: error: Application launch failed: "
                         "Communication connection failure\n");
  SrunVerdict v = InterpretSrun(Step(), r);
  EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(v.status.message().find("StepId=7.4"), std::string::npos);
  EXPECT_EQ(v.failed_node, "n2");
  EXPECT_FALSE(v.allocation_gone);
}

TEST(SrunResultTest, MissingBinaryIsNotFoundAndDeniedIsPermissionDenied) {
  ProcessResult r = Srun(
      2,
      "slurmstepd-n2: error: execve(): /bin/work: No such file or directory\n"
      "srun: error: n2: task 0: Exited with exit code 2\n");
  SrunVerdict v = InterpretSrun(Step(), r);
  EXPECT_EQ(v.status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(v.status.message().find("/bin/work"), std::string::npos);
  EXPECT_EQ(r.stderr_data, "");

  r = Srun(13,
           "slurmstepd-n2: error: execve(): /bin/work: Permission denied\n"
           "srun: error: n2: task 0: Exited with exit code 13\n");
  EXPECT_EQ(InterpretSrun(Step(), r).status.code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(SrunResultTest, MissingWorkingDirectoryIsFailedPrecondition) {
  ProcessResult r = Srun(
      0,
      "slurmstepd-n2: error: couldn't chdir to `/nope': No such file or "
      "directory: going to /tmp instead\n",
      "/tmp\n");
  SrunVerdict v = InterpretSrun(Step(), r);
  EXPECT_EQ(v.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(v.status.message().find("/nope"), std::string::npos);
}

TEST(SrunResultTest, AStepThatCannotStartSaysWhetherTheNodeOrJobIsGone) {
  ProcessResult r = Srun(1,
                         "srun: error: Unable to create step for job 7: "
                         "Requested node configuration is not available\n");
  SrunVerdict v = InterpretSrun(Step(), r);
  EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(v.failed_node, "n2");
  EXPECT_FALSE(v.allocation_gone);

  r = Srun(1,
           "srun: error: Unable to create step for job 7: Job/step already "
           "completing or completed\n");
  v = InterpretSrun(Step(), r);
  EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(v.allocation_gone);
  EXPECT_TRUE(v.failed_node.empty());
}

TEST(SrunResultTest, CancelledByUsIsAResultCancelledByOthersIsUnavailable) {
  const std::string err =
      "slurmstepd-n2: error: *** STEP 7.3 ON n2 CANCELLED AT 2026-12-02 ***\n"
      "srun: error: n2: task 0: Killed\n";
  SrunStep mine = Step();
  mine.cancelled = true;
  ProcessResult r = Srun(137, err);
  EXPECT_TRUE(InterpretSrun(mine, r).status.ok());
  EXPECT_EQ(r.term_signal, SIGKILL);

  r = Srun(137, err);
  SrunVerdict v = InterpretSrun(Step(), r);
  EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(v.status.message().find("outside Spindle"), std::string::npos);
}

TEST(SrunResultTest, SrunFailingWithoutATaskIsUnavailableWithItsMessage) {
  ProcessResult r = Srun(
      1, "srun: error: Unable to confirm allocation for job 7: Invalid job "
         "id specified\n");
  SrunVerdict v = InterpretSrun(Step(), r);
  EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(v.allocation_gone);

  r = Srun(1, "srun: error: something new\n");
  v = InterpretSrun(Step(), r);
  EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(v.status.message().find("something new"), std::string::npos);
}

TEST(SrunResultTest, SrunKilledLocallyKeepsItsSignal) {
  SrunStep s = Step();
  s.cancelled = true;
  ProcessResult r = Srun(-1, "");
  r.term_signal = SIGKILL;
  r.killed = true;
  EXPECT_TRUE(InterpretSrun(s, r).status.ok());
  EXPECT_EQ(r.term_signal, SIGKILL);
  EXPECT_EQ(r.exit_code, -1);
}

TEST(SrunResultTest, DescribeNamesAJobOfItsOwn) {
  SrunStep s = Step();
  s.job = 0;
  s.node.clear();
  EXPECT_EQ(DescribeStep(s), "Slurm job 'spindle-1-7-3'");
  EXPECT_EQ(DescribeStep(Step()),
            "Slurm job step 'spindle-1-7-3' of job 7 on node n2");
}

}  // namespace
}  // namespace spindle::dispatch_internal
