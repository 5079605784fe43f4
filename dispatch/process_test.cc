// dispatch/process_test.cc: ProcessRunner end to end, on both reactor
// backends.  Every test checks afterwards that no descriptor was left open
// and no child (zombie or not) was left behind; the test process is a child
// subreaper, so descendants of a killed child come back to it and their fate
// can be checked too.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dispatch/process.h"
#include "gtest/gtest.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace spindle::dispatch {
namespace {

std::set<std::string> OpenFds() {
  std::set<std::string> fds;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return fds;
  const int self = dirfd(d);
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || name == std::to_string(self)) continue;
    char target[256] = {};
    const std::string path = "/proc/self/fd/" + name;
    const ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
    fds.insert(name + " -> " + (n > 0 ? std::string(target, n) : "?"));
  }
  closedir(d);
  return fds;
}

// Children of every thread of this process (zombies included).
std::string Children() {
  std::string all;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return all;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/children");
    std::string c;
    std::getline(in, c);
    all += c;
  }
  closedir(d);
  return all;
}

// Waits (up to a minute) until `pid` has died, whoever's child it is now.
// Returns the signal that killed it when it came to us (the subreaper) and
// we reaped it here; 0 when it was not ours to reap (or exited normally); -1
// when it did not die in time.
int AwaitDeath(pid_t pid) {
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH ? 0 : -1;  // gone already
  pollfd p{fd, POLLIN, 0};
  const int ready = poll(&p, 1, 60'000);
  siginfo_t si{};
  int sig = ready == 1 ? 0 : -1;
  if (ready == 1 && waitid(static_cast<idtype_t>(P_PIDFD),
                           static_cast<id_t>(fd), &si, WEXITED | WNOHANG) == 0 &&
      si.si_pid == pid && si.si_code != CLD_EXITED) {
    sig = si.si_status;
  }
  close(fd);
  return sig;
}

std::string TempDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t != nullptr ? t : "/tmp";
}

class ProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    fds_before_ = OpenFds();
    auto r = ProcessRunner::Create({.backend = GetParam(), .launcher = nullptr});
    if (!r.ok() && r.status().code() == absl::StatusCode::kUnavailable) {
      GTEST_SKIP() << GetParam() << " unavailable here: " << r.status();
    }
    ASSERT_TRUE(r.ok()) << r.status();
    runner_ = std::move(*r);
  }
  void TearDown() override {
    runner_.reset();
    // A direct child leads its own process group; anything else here is a
    // descendant orphaned to us (the subreaper) when its parent died.  The
    // runner must have reaped every direct child; orphans must be dying
    // (each test kills what it leaves), and are reaped here.
    std::istringstream children(Children());
    for (pid_t pid; children >> pid;) {
      EXPECT_NE(getpgid(pid), pid) << "child " << pid << " was not reaped";
      waitpid(pid, nullptr, 0);
    }
    EXPECT_EQ(OpenFds(), fds_before_) << "a descriptor was leaked";
  }
  ProcessResult Run(ProcessSpec spec) {
    absl::StatusOr<ProcessResult> r = runner_->Run(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  }
  static ProcessSpec Sh(const std::string& script) {
    ProcessSpec s;
    s.binary = "/bin/sh";
    s.args = {"-c", script};
    return s;
  }

  std::set<std::string> fds_before_;
  std::unique_ptr<ProcessRunner> runner_;
};

TEST_P(ProcessTest, ExitCodes) {
  ProcessResult r = Run(Sh("exit 3"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_FALSE(r.ok());
  ProcessSpec t;
  t.binary = "/bin/true";
  r = Run(t);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.timed_out || r.killed || r.truncated() || r.drain_cut);
  EXPECT_GT(r.duration, absl::ZeroDuration());
}

TEST_P(ProcessTest, SegfaultReportsSignal11) {
  ProcessResult r = Run(Sh("kill -SEGV $$"));
  EXPECT_EQ(r.term_signal, SIGSEGV);
  EXPECT_EQ(r.exit_code, -1);
}

TEST_P(ProcessTest, TenMiBOnStdoutAndStderrAtOnce) {
  ProcessResult r = Run(
      Sh("head -c 10485760 /dev/zero & head -c 10485760 /dev/zero >&2; wait"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data.size(), 10u << 20);
  EXPECT_EQ(r.stderr_data.size(), 10u << 20);
  EXPECT_FALSE(r.truncated());
}

TEST_P(ProcessTest, OutputCapTruncatesWithoutBlockingTheChild) {
  ProcessSpec s = Sh("head -c 1000000 /dev/zero; echo done >&2");
  s.output_cap = 1000;
  ProcessResult r = Run(s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data.size(), 1000u);
  EXPECT_TRUE(r.stdout_truncated);
  EXPECT_FALSE(r.stderr_truncated);
  EXPECT_EQ(r.stderr_data, "done\n");
}

TEST_P(ProcessTest, TimeoutKillsTheGroupAndItsChild) {
  ProcessSpec s = Sh("sleep 100 & echo $!; sleep 100");
  // Long enough for the shell to start its children on a loaded machine.
  s.timeout = absl::Seconds(1);
  ProcessResult r = Run(s);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.term_signal, SIGTERM);
  EXPECT_FALSE(r.killed);  // it died of SIGTERM within the grace period
  const pid_t grandchild = std::atoi(r.stdout_data.c_str());
  ASSERT_GT(grandchild, 0) << r.stdout_data;
  // It got the group's SIGTERM too (and, orphaned to us, the subreaper, is
  // normally ours to reap).
  const int sig = AwaitDeath(grandchild);
  EXPECT_TRUE(sig == SIGTERM || sig == 0) << sig;
}

TEST_P(ProcessTest, GraceOverThenSigkill) {
  // The shell and its sleep both ignore SIGTERM (ignored dispositions are
  // inherited across exec).
  ProcessSpec s = Sh("trap '' TERM; sleep 100");
  s.timeout = absl::Seconds(1);  // the trap is set by then
  s.kill_grace = absl::Milliseconds(100);
  ProcessResult r = Run(s);
  EXPECT_TRUE(r.timed_out);
  EXPECT_TRUE(r.killed);
  EXPECT_EQ(r.term_signal, SIGKILL);
}

TEST_P(ProcessTest, ArgsEnvCwdStdin) {
  ProcessSpec echo;
  echo.binary = "/bin/echo";
  echo.args = {"a", "b c", ""};
  EXPECT_EQ(Run(echo).stdout_data, "a b c \n");

  ProcessSpec env;
  env.binary = "/usr/bin/env";
  env.env_mode = EnvMode::kReplace;
  env.env = {{"FOO", "bar"}, {"EMPTY", ""}};
  EXPECT_EQ(Run(env).stdout_data, "FOO=bar\nEMPTY=\n");

  ASSERT_EQ(setenv("SPINDLE_PROCESS_TEST", "inherited", 1), 0);
  ProcessSpec add = Sh("echo \"$SPINDLE_PROCESS_TEST $SPINDLE_ADDED\"");
  add.binary = "sh";  // looked up in PATH
  EXPECT_EQ(Run(add).stdout_data, "inherited \n");
  add.env_mode = EnvMode::kAdd;
  add.env = {{"SPINDLE_ADDED", "added"}, {"SPINDLE_PROCESS_TEST", "over"}};
  EXPECT_EQ(Run(add).stdout_data, "over added\n");
  unsetenv("SPINDLE_PROCESS_TEST");

  const std::string dir = TempDir() + "/cwd_test";
  mkdir(dir.c_str(), 0755);
  char real[PATH_MAX];
  ASSERT_NE(realpath(dir.c_str(), real), nullptr);
  ProcessSpec pwd;
  pwd.binary = "/bin/pwd";
  pwd.args = {"-P"};
  pwd.working_dir = dir;
  EXPECT_EQ(Run(pwd).stdout_data, std::string(real) + "\n");

  ProcessSpec cat;
  cat.binary = "/bin/cat";
  for (int i = 0; i < (1 << 20); ++i) cat.stdin_data.push_back(char('a' + i % 26));
  ProcessResult r = Run(cat);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.stdout_data == cat.stdin_data) << r.stdout_data.size();

  // A child that never reads its 10 MiB of stdin: no hang, no SIGPIPE.
  ProcessSpec ignore = Sh("exit 0");
  ignore.stdin_data.assign(10 << 20, 'x');
  EXPECT_EQ(Run(ignore).exit_code, 0);
}

TEST_P(ProcessTest, NoDescriptorLeaksIntoTheChild) {
  const int stray = open("/dev/null", O_RDONLY);  // no O_CLOEXEC on purpose
  ASSERT_GE(stray, 0);
  ProcessSpec ls;
  ls.binary = "/bin/ls";
  ls.args = {"/proc/self/fd"};
  // 0, 1, 2 and the directory ls itself opened to list.
  EXPECT_EQ(Run(ls).stdout_data, "0\n1\n2\n3\n");
  close(stray);
}

TEST_P(ProcessTest, StartFailuresNameTheBinaryAndErrno) {
  auto expect = [&](const ProcessSpec& s, absl::StatusCode code,
                    const std::string& errno_name) {
    absl::StatusOr<ProcessHandle> h = runner_->Start(s);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), code) << h.status();
    EXPECT_NE(h.status().message().find("'" + s.binary + "'"),
              std::string::npos)
        << h.status();
    EXPECT_NE(h.status().message().find(errno_name), std::string::npos)
        << h.status();
  };
  ProcessSpec missing;
  missing.binary = "/nonexistent/spindle-binary";
  expect(missing, absl::StatusCode::kNotFound, "ENOENT");
  ProcessSpec not_on_path;
  not_on_path.binary = "spindle-no-such-binary";
  expect(not_on_path, absl::StatusCode::kNotFound, "ENOENT");
  ProcessSpec directory;
  directory.binary = TempDir();
  expect(directory, absl::StatusCode::kPermissionDenied, "EACCES");

  const std::string plain = TempDir() + "/not_executable";
  { std::ofstream(plain) << "#!/bin/sh\necho hi\n"; }
  chmod(plain.c_str(), 0644);
  ProcessSpec not_exec;
  not_exec.binary = plain;
  expect(not_exec, absl::StatusCode::kPermissionDenied, "EACCES");

  const std::string garbage = TempDir() + "/garbage";
  { std::ofstream(garbage) << "\x01\x02\x03 not a program\n"; }
  chmod(garbage.c_str(), 0755);
  ProcessSpec bad_format;
  bad_format.binary = garbage;
  expect(bad_format, absl::StatusCode::kInvalidArgument, "ENOEXEC");

  ProcessSpec bad_dir;
  bad_dir.binary = "/bin/true";
  bad_dir.working_dir = "/nonexistent/dir";
  expect(bad_dir, absl::StatusCode::kNotFound, "ENOENT");
  absl::StatusOr<ProcessHandle> h = runner_->Start(bad_dir);
  EXPECT_NE(h.status().message().find("/nonexistent/dir"), std::string::npos);

  // EMFILE: no descriptor left for the pipes.
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(OpenFds().size());
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  ProcessSpec t;
  t.binary = "/bin/true";
  absl::StatusOr<ProcessHandle> emfile = runner_->Start(t);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  ASSERT_FALSE(emfile.ok());
  EXPECT_EQ(emfile.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(emfile.status().message().find("EMFILE"), std::string::npos)
      << emfile.status();
}

TEST_P(ProcessTest, BadSpecsAreInvalidArgument) {
  ProcessSpec s;
  EXPECT_EQ(runner_->Start(s).status().code(),
            absl::StatusCode::kInvalidArgument);
  s.binary = "/bin/true";
  s.kill_grace = absl::Seconds(-1);
  absl::Status st = runner_->Start(s).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("kill_grace is -1s; valid range [0, 1h]"),
            std::string::npos)
      << st;
  s.kill_grace = absl::Seconds(1);
  s.timeout = absl::ZeroDuration();
  EXPECT_EQ(runner_->Start(s).status().code(),
            absl::StatusCode::kInvalidArgument);
  s.timeout = absl::InfiniteDuration();
  s.env = {{"A=B", "c"}};
  s.env_mode = EnvMode::kAdd;
  EXPECT_EQ(runner_->Start(s).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(ProcessTest, ThousandShortProcessesInFlight) {
  std::vector<ProcessHandle> handles;
  ProcessSpec t;
  t.binary = "/bin/true";
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<ProcessHandle> h = runner_->Start(t);
    ASSERT_TRUE(h.ok()) << i << ": " << h.status();
    handles.push_back(*h);
  }
  for (const ProcessHandle& h : handles) {
    EXPECT_EQ(h.Wait().exit_code, 0);
    EXPECT_TRUE(h.done());
  }
  EXPECT_EQ(runner_->running(), 0u);
}

TEST_P(ProcessTest, DrainIsBoundedWhenADescendantKeepsThePipe) {
  ProcessSpec s = Sh("sleep 100 & echo $!");
  s.drain_bound = absl::Milliseconds(100);
  ProcessResult r = Run(s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.drain_cut);
  const pid_t grandchild = std::atoi(r.stdout_data.c_str());
  ASSERT_GT(grandchild, 0) << r.stdout_data;
  kill(grandchild, SIGKILL);
  EXPECT_NE(AwaitDeath(grandchild), -1);
}

TEST_P(ProcessTest, KillAndShutdownWhileRunning) {
  ProcessSpec sleep;
  sleep.binary = "/bin/sleep";
  sleep.args = {"100"};
  absl::StatusOr<ProcessHandle> one = runner_->Start(sleep);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->WaitFor(absl::Milliseconds(1)), nullptr);
  one->Kill();
  EXPECT_EQ(one->Wait().term_signal, SIGKILL);
  EXPECT_TRUE(one->Wait().killed);
  one->Kill();  // done: a no-op

  std::vector<ProcessHandle> handles;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<ProcessHandle> h = runner_->Start(sleep);
    ASSERT_TRUE(h.ok());
    handles.push_back(*h);
  }
  runner_.reset();  // kills and reaps all of them
  for (const ProcessHandle& h : handles) {
    ASSERT_TRUE(h.done());
    EXPECT_EQ(h.Wait().term_signal, SIGKILL);
    EXPECT_TRUE(h.Wait().killed);
  }
}

// OnDone: a callback registered before the result runs once, on the
// runner's thread, after the result is stored; one registered after runs at
// once on the caller's thread.  TakeResult moves the output out.
TEST_P(ProcessTest, OnDoneCallbacksRunOnceTheResultIsIn) {
  struct Record final : ProcessDoneCallback {
    Record(const ProcessHandle* h, std::atomic<int>* calls,
           std::atomic<bool>* saw_done, std::thread::id* on)
        : h(h), calls(calls), saw_done(saw_done), on(on) {}
    void Done() noexcept override {
      *saw_done = h->done();
      *on = std::this_thread::get_id();
      calls->fetch_add(1);
    }
    const ProcessHandle* h;
    std::atomic<int>* calls;
    std::atomic<bool>* saw_done;
    std::thread::id* on;
  };
  ProcessSpec spec = Sh("read x; echo $x");
  spec.stdin_data = "payload\n";
  absl::StatusOr<ProcessHandle> h = runner_->Start(spec);
  ASSERT_TRUE(h.ok()) << h.status();
  std::atomic<int> before_calls{0}, after_calls{0};
  std::atomic<bool> before_done{false}, after_done{false};
  std::thread::id before_on, after_on;
  h->OnDone(std::make_unique<Record>(&*h, &before_calls, &before_done,
                                     &before_on));
  h->OnDone(nullptr);  // ignored
  h->Wait();
  // Wait returns when the result is stored; the callbacks run right after,
  // outside the lock: wait for the count (bounded; fails only if never).
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (before_calls.load() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  h->OnDone(
      std::make_unique<Record>(&*h, &after_calls, &after_done, &after_on));
  EXPECT_EQ(before_calls.load(), 1);
  EXPECT_TRUE(before_done.load());
  EXPECT_NE(before_on, std::this_thread::get_id());
  EXPECT_EQ(after_calls.load(), 1);
  EXPECT_TRUE(after_done.load());
  EXPECT_EQ(after_on, std::this_thread::get_id());
  ProcessResult r = h->TakeResult();
  EXPECT_EQ(r.stdout_data, "payload\n");
  EXPECT_EQ(r.exit_code, 0);
}

// A callback that destroys its runner would make the runner join its own
// thread: it fails at once, naming the misuse (before, std::system_error
// "Resource deadlock avoided" escaped the destructor).
TEST_P(ProcessTest, DestroyingTheRunnerInADoneCallbackFailsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  struct Destroy final : ProcessDoneCallback {
    explicit Destroy(ProcessRunner* r) : r(r) {}
    void Done() noexcept override { delete r; }
    ProcessRunner* r;
  };
  EXPECT_DEATH(
      {
        ProcessRunner* raw = runner_.release();
        // Registered long before the child ends: Done runs on the runner.
        absl::StatusOr<ProcessHandle> h = raw->Start(Sh("sleep 1"));
        if (!h.ok()) std::abort();
        h->OnDone(std::make_unique<Destroy>(raw));
        for (;;) absl::SleepFor(absl::Seconds(1));  // the runner's thread dies
      },
      "ProcessRunner destroyed on its own thread");
}

INSTANTIATE_TEST_SUITE_P(Backends, ProcessTest,
                         ::testing::Values("io_uring", "epoll"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace spindle::dispatch
