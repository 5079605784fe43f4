// ProcessRunner with a launcher (dispatch/launcher.h): what it spawns, when
// it tells the launcher about signals, and how the verdict reaches handles.
#include "dispatch/launcher.h"

#include <signal.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dispatch/process.h"
#include "gtest/gtest.h"

namespace spindle::dispatch {
namespace {

// Runs each spec through `/bin/sh -c 'exec "$0" "$@"'`, records Stop
// signals, tags stdout and fails specs whose binary is "fail-me".
class ShellLauncher final : public ProcessLauncher {
 public:
  struct Log {
    std::mutex mu;
    std::vector<int> signals;
    int finished = 0;
    absl::Duration kill_wait;  // what Stop returns
  };
  std::shared_ptr<Log> log = std::make_shared<Log>();

  absl::StatusOr<Prepared> Prepare(const ProcessSpec& spec) override {
    if (spec.binary == "refuse-me") {
      return absl::ResourceExhaustedError("no room for refuse-me");
    }
    Prepared p;
    p.command = spec;
    p.command.binary = "/bin/sh";
    p.command.args = {"-c", "exec \"$0\" \"$@\"",
                      spec.binary == "fail-me" ? "true" : spec.binary};
    p.command.args.insert(p.command.args.end(), spec.args.begin(),
                          spec.args.end());
    p.process = std::make_unique<Process>(log, spec.binary == "fail-me");
    return p;
  }

 private:
  class Process final : public LaunchedProcess {
   public:
    Process(std::shared_ptr<Log> log, bool fail)
        : log_(std::move(log)), fail_(fail) {}
    absl::Duration Stop(int sig) noexcept override {
      std::lock_guard<std::mutex> l(log_->mu);
      log_->signals.push_back(sig);
      return log_->kill_wait;
    }
    absl::Status Finish(ProcessResult& r) noexcept override {
      {
        std::lock_guard<std::mutex> l(log_->mu);
        ++log_->finished;
      }
      r.stdout_data = "[launched] " + r.stdout_data;
      if (fail_) return absl::UnavailableError("the remote node failed");
      return absl::OkStatus();
    }

   private:
    std::shared_ptr<Log> log_;
    bool fail_;
  };
};

struct Fixture {
  std::shared_ptr<ShellLauncher> launcher = std::make_shared<ShellLauncher>();
  std::unique_ptr<ProcessRunner> runner =
      ProcessRunner::Create({.backend = "auto", .launcher = launcher}).value();
};

TEST(LauncherTest, RunsWhatPrepareReturnsAndFinishRewritesTheResult) {
  Fixture f;
  ProcessSpec s;
  s.binary = "/bin/echo";
  s.args = {"hi"};
  absl::StatusOr<ProcessResult> r = f.runner->Run(s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, "[launched] hi\n");
  std::lock_guard<std::mutex> l(f.launcher->log->mu);
  EXPECT_EQ(f.launcher->log->finished, 1);
  EXPECT_TRUE(f.launcher->log->signals.empty());
}

TEST(LauncherTest, AVerdictReachesTheHandleAndRun) {
  Fixture f;
  ProcessSpec s;
  s.binary = "fail-me";
  absl::StatusOr<ProcessHandle> h = f.runner->Start(s);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(h->Wait().stdout_data, "[launched] ");  // what is known
  absl::StatusOr<ProcessResult> r = f.runner->Run(s);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "the remote node failed");
}

TEST(LauncherTest, APrepareErrorFailsStart) {
  Fixture f;
  ProcessSpec s;
  s.binary = "refuse-me";
  absl::StatusOr<ProcessHandle> h = f.runner->Start(s);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(f.runner->running(), 0u);
}

TEST(LauncherTest, StopIsToldOfTheTimeoutThenTheKill) {
  Fixture f;
  ProcessSpec s;
  s.binary = "/bin/sh";
  s.args = {"-c", "trap '' TERM; sleep 100"};
  // Long enough for the shell to have set its trap on a loaded machine
  // (two execs): a TERM before that would end it, and no KILL would come.
  s.timeout = absl::Seconds(1);
  s.kill_grace = absl::Milliseconds(100);
  absl::StatusOr<ProcessResult> r = f.runner->Run(s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_TRUE(r->killed);
  std::lock_guard<std::mutex> l(f.launcher->log->mu);
  EXPECT_EQ(f.launcher->log->signals, (std::vector<int>{SIGTERM, SIGKILL}));
}

TEST(LauncherTest, KillAndShutdownTellStop) {
  auto f = std::make_unique<Fixture>();
  std::shared_ptr<ShellLauncher::Log> log = f->launcher->log;
  ProcessSpec s;
  s.binary = "/bin/sleep";
  s.args = {"100"};
  absl::StatusOr<ProcessHandle> a = f->runner->Start(s);
  absl::StatusOr<ProcessHandle> b = f->runner->Start(s);
  ASSERT_TRUE(a.ok() && b.ok());
  a->Kill();
  EXPECT_EQ(a->Wait().term_signal, SIGKILL);
  {
    std::lock_guard<std::mutex> l(log->mu);
    EXPECT_EQ(log->signals, (std::vector<int>{SIGKILL}));
  }
  // The runner holds the launcher until it is destroyed.
  std::weak_ptr<ShellLauncher> weak = f->launcher;
  f->launcher.reset();
  EXPECT_FALSE(weak.expired());
  f.reset();  // shutdown kills b
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(b->Wait().term_signal, SIGKILL);
  std::lock_guard<std::mutex> l(log->mu);
  EXPECT_EQ(log->signals, (std::vector<int>{SIGKILL, SIGKILL}));
  EXPECT_EQ(log->finished, 2);
}

TEST(LauncherTest, ADeferredKillWaitsThenKills) {
  Fixture f;
  f.launcher->log->kill_wait = absl::Seconds(1);
  ProcessSpec s;
  s.binary = "/bin/sleep";
  s.args = {"100"};
  absl::StatusOr<ProcessHandle> h = f.runner->Start(s);
  ASSERT_TRUE(h.ok()) << h.status();
  h->Kill();
  // The launcher asked for a second: nothing kills it before.
  EXPECT_EQ(h->WaitFor(absl::Milliseconds(200)), nullptr);
  const ProcessResult* r = h->WaitFor(absl::Seconds(30));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->term_signal, SIGKILL);
  EXPECT_TRUE(r->killed);
}

TEST(LauncherTest, ADeferredKillIsDroppedWhenTheCommandEnds) {
  auto f = std::make_unique<Fixture>();
  f->launcher->log->kill_wait = absl::Hours(1);
  ProcessSpec s;
  s.binary = "/bin/sh";
  s.args = {"-c", "sleep 0.3; exit 7"};
  absl::StatusOr<ProcessHandle> h = f->runner->Start(s);
  ASSERT_TRUE(h.ok()) << h.status();
  h->Kill();
  // An hour's wait is cancelled when the command exits on its own.
  const ProcessResult* r = h->WaitFor(absl::Seconds(30));
  ASSERT_NE(r, nullptr) << "the deferred kill held the result";
  EXPECT_EQ(r->exit_code, 7);
  EXPECT_FALSE(r->killed);
  f.reset();  // and the runner shuts down without waiting for it
}

}  // namespace
}  // namespace spindle::dispatch
