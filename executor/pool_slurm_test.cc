// executor/pool_slurm_test.cc: a Pool and RunProcess with a process launcher
// (dispatch/launcher.h): a launcher's verdict resolves the handle, and, on a
// Slurm cluster (dispatch/slurm_testing.h), 100 specs through 8 slots run
// as job steps with never more than 8 in Slurm.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dispatch/launcher.h"
#include "dispatch/slurm.h"
#include "dispatch/slurm_testing.h"
#include "executor/executor.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using dispatch::ProcessResult;
using dispatch::ProcessSpec;

ProcessSpec Echo(const std::string& word) {
  ProcessSpec s;
  s.binary = "/bin/echo";
  s.args = {word};
  return s;
}

// Runs specs here; every result is Unavailable, as a Slurm step whose node
// failed is.
class NodeFailsLauncher final : public dispatch::ProcessLauncher {
 public:
  absl::StatusOr<Prepared> Prepare(const ProcessSpec& spec) override {
    struct Failing final : dispatch::LaunchedProcess {
      absl::Duration Stop(int) noexcept override {
        return absl::ZeroDuration();
      }
      absl::Status Finish(ProcessResult&) noexcept override {
        return absl::UnavailableError("node n9 failed under the step");
      }
    };
    return Prepared{spec, std::make_unique<Failing>()};
  }
};

TEST(PoolLauncherTest, AVerdictResolvesTheHandleOnThreadsAndOnARuntime) {
  auto rt = RuntimeBuilder().Workers(2).Build().value();
  for (bool on_runtime : {false, true}) {
    SCOPED_TRACE(on_runtime ? "on a Runtime" : "on threads");
    PoolBuilder b;
    b.Workers(2).Launcher(std::make_shared<NodeFailsLauncher>());
    if (on_runtime) b.OnRuntime(*rt);
    auto pool = b.Build().value();
    auto h = pool->Submit(Echo("x"));
    ASSERT_TRUE(h.ok()) << h.status();
    const absl::StatusOr<ProcessResult>& r = h->Wait();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(r.status().message(), "node n9 failed under the step");
  }
}

Task<absl::Status> AwaitWith(dispatch::ProcessRunner* runner) {
  ProcessSpec spec = Echo("y");
  absl::StatusOr<ProcessResult> r = co_await RunProcess(*runner, spec);
  co_return r.status();
}

TEST(PoolLauncherTest, RunProcessReturnsTheVerdict) {
  auto runner = dispatch::ProcessRunner::Create(
                    {.backend = "auto",
                     .launcher = std::make_shared<NodeFailsLauncher>()})
                    .value();
  auto ex = ExecutorBuilder().Build().value();
  absl::Status s = ex->BlockOn(AwaitWith(runner.get()));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
}

TEST(PoolSlurmTest, HundredSpecsThroughEightSlotsQueueInTheHandsOfThePool) {
  SPINDLE_SLURM_OR_SKIP(slurm, 2);
  auto pool = PoolBuilder()
                  .Workers(8)
                  .MaxQueueSize(100)
                  .Launcher(slurm)
                  .Build()
                  .value();
  // Watches how many steps Slurm has of ours while the pool runs.
  std::atomic<bool> done{false};
  std::atomic<size_t> most{0};
  std::thread watcher([&] {
    while (!done.load(std::memory_order_acquire)) {
      size_t n = slurm->steps_running();
      size_t m = most.load(std::memory_order_relaxed);
      while (n > m && !most.compare_exchange_weak(m, n)) {
      }
      // Samples (steps last ~100 ms); spinning would take a core from srun.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::vector<PoolHandle<ProcessResult>> hs;
  for (int i = 0; i < 100; ++i) {
    ProcessSpec s;
    s.binary = "/bin/sh";
    s.args = {"-c", "sleep 0.05; echo \"$0\"", absl::StrCat("task-", i)};
    auto h = pool->Submit(s, i % 3 == 0 ? Priority::kHigh : Priority::kLow);
    ASSERT_TRUE(h.ok()) << "submission " << i << ": " << h.status();
    hs.push_back(*h);
  }
  for (int i = 0; i < 100; ++i) {
    const absl::StatusOr<ProcessResult>* r = hs[i].WaitFor(absl::Seconds(120));
    ASSERT_NE(r, nullptr) << "task " << i << " never ended";
    ASSERT_TRUE(r->ok()) << "task " << i << ": " << r->status();
    EXPECT_EQ((*r)->exit_code, 0);
    EXPECT_EQ((*r)->stdout_data, absl::StrCat("task-", i, "\n"));
  }
  done.store(true, std::memory_order_release);
  watcher.join();
  EXPECT_LE(most.load(), 8u) << "more steps in Slurm than pool slots";
  EXPECT_GE(most.load(), 2u) << "the slots never ran together";
  EXPECT_EQ(slurm->steps_running(), 0u);
}

// Aborting a task that awaits a step cancels the step in Slurm.
TEST(PoolSlurmTest, AbortingTheAwaitingTaskCancelsItsStep) {
  SPINDLE_SLURM_OR_SKIP(slurm, 1);
  auto runner =
      dispatch::ProcessRunner::Create({.backend = "auto", .launcher = slurm})
          .value();
  auto ex = ExecutorBuilder().Build().value();
  auto h = ex->Spawn([](dispatch::ProcessRunner* runner) -> Task<int> {
    ProcessSpec s;
    s.binary = "/bin/sh";
    s.args = {"-c", "trap '' TERM; sleep 100"};
    absl::StatusOr<ProcessResult> r = co_await RunProcess(*runner, s);
    co_return r.ok() ? r->exit_code : -1;
  }(runner.get()));
  auto aborter = ex->Spawn([](dispatch::SlurmLauncher* slurm,
                              JoinHandle<int>* h) -> Task<void> {
    while (slurm->steps_running() == 0) co_await YieldNow();  // srun runs
    h->Abort();
  }(slurm.get(), &h));
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  // A bound, not a guess: the step is cancelled within a second or two.
  const absl::Time end = absl::Now() + absl::Seconds(20);
  for (;;) {
    absl::StatusOr<std::string> steps = dispatch_testing::SlurmCommand(
        "squeue", {"-h", "-s", "-j", absl::StrCat(slurm->job_id())});
    ASSERT_TRUE(steps.ok()) << steps.status();
    if (runner->running() == 0 && steps->empty()) break;
    ASSERT_LT(absl::Now(), end) << "the step outlived its task: " << *steps;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(slurm->steps_running(), 0u);
}

}  // namespace
}  // namespace spindle
