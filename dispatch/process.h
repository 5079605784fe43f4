// dispatch/process.h: process tasks that never hang.
//
// Reach for `ProcessRunner`: `Start(spec)` spawns a `ProcessSpec` and returns
// a `ProcessHandle` that any thread can wait on for the `ProcessResult`;
// `Run(spec)` does both.  A runner owns one thread that watches every child
// it started on a reactor (reactor/reactor.h): stdout and stderr are read
// concurrently as they come, stdin is fed, the exit is seen through a pidfd,
// and the timeout is a reactor timer.
//
// How a child is run:
//   - posix_spawn (glibc: clone(CLONE_VM | CLONE_VFORK), so a large parent
//     costs nothing extra), in its own process group, signal dispositions
//     and mask reset, every descriptor above 2 closed in the child and every
//     descriptor of ours opened close-on-exec.  A failure to start (ENOENT,
//     EACCES, ENOEXEC, EMFILE, ...) is returned by Start as an absl::Status
//     naming the binary and the errno (glibc's posix_spawn hands the exec
//     errno back from the child through memory it shares with the parent
//     until the exec), never as exit code 127.
//   - On timeout: SIGTERM to the whole group, SIGKILL after `kill_grace`.
//   - The child is always reaped (waitid on its pidfd).  After it exits, the
//     pipes are read until EOF for at most `drain_bound`: a descendant that
//     keeps them open (CPython bpo-31933) cannot hang the result.
//   - Output past `output_cap` per stream is read and discarded (the child
//     never blocks on a full pipe) and the result says it was truncated.

#ifndef SPINDLE_DISPATCH_PROCESS_H_
#define SPINDLE_DISPATCH_PROCESS_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace spindle::dispatch_internal {
struct ProcessShared;
class RunnerCore;
}  // namespace spindle::dispatch_internal

namespace spindle::dispatch {

// What the child's environment is.
enum class EnvMode : uint8_t {
  kInherit,  // the parent's environment; `env` is ignored
  kReplace,  // exactly `env`
  kAdd,      // the parent's, with `env` added (replacing same-named entries)
};

// ProcessSpec: what to run and within which limits.
struct ProcessSpec {
  // A path (containing '/') is executed as is; a bare name is looked up in
  // the parent's PATH.
  std::string binary;
  std::vector<std::string> args;  // argv[1..]; argv[0] is `binary`
  EnvMode env_mode = EnvMode::kInherit;
  std::vector<std::pair<std::string, std::string>> env;
  std::string working_dir;  // empty: the parent's
  // Fed to the child's stdin (a Unix stream socket then), followed by EOF;
  // empty: stdin is /dev/null.
  std::string stdin_data;
  // From start to SIGTERM of the group.  > 0; InfiniteDuration: none.
  absl::Duration timeout = absl::InfiniteDuration();
  // From SIGTERM to SIGKILL.  [0, 1 hour].
  absl::Duration kill_grace = absl::Seconds(2);
  // Bytes kept per stream.  [0, 1 GiB].
  size_t output_cap = size_t{64} << 20;
  // After the child exits, how long its pipes are still read.  [0, 1 hour].
  absl::Duration drain_bound = absl::Seconds(1);
  // CPUs the process needs, in [1, 4096].  A local runner does not enforce
  // it; a cluster launcher (dispatch/slurm/slurm.h) requests them.
  int cpus = 1;

  // InvalidArgument naming the field, its value and the valid range.
  absl::Status Validate() const;
};

// ProcessResult: how a child ended.
struct ProcessResult {
  int exit_code = -1;    // when it exited; -1 when killed by a signal
  int term_signal = 0;   // the signal that killed it; 0 when it exited
  std::string stdout_data;
  std::string stderr_data;
  absl::Duration duration;  // from spawn to reaped and drained
  bool timed_out = false;   // the timeout fired (SIGTERM was sent)
  bool killed = false;      // SIGKILL was sent (grace over, Kill, shutdown)
  bool stdout_truncated = false;  // more than output_cap bytes came
  bool stderr_truncated = false;
  // A descendant held a pipe open past drain_bound: output may be missing.
  bool drain_cut = false;

  bool truncated() const { return stdout_truncated || stderr_truncated; }
  bool ok() const { return exit_code == 0 && !timed_out; }
};

// ProcessDoneCallback: told once that a handle's result is in (see
// ProcessHandle::OnDone).  An awaitable in a task implements it with a Waker.
class ProcessDoneCallback {
 public:
  virtual ~ProcessDoneCallback() = default;
  // Called once, then the callback is destroyed.  Runs on the runner's
  // thread (or in OnDone, when the result is already in): it must not block
  // and must not destroy the runner (on the runner's thread that aborts at
  // once with a message).
  virtual void Done() noexcept = 0;
};

// ProcessHandle: a started process.
//
// Guarantees: the result arrives exactly once (also when the runner shuts
// down: the child is then killed and reaped first).
// Thread safety: every member is safe from any thread; copies share the
// process.
class ProcessHandle {
 public:
  ProcessHandle() = default;

  pid_t pid() const;
  // True once the result is in.
  bool done() const;
  // Blocks until the child is reaped and its output drained.
  const ProcessResult& Wait() const;
  // Waits as Wait(), then: OK, or why the result is not the spec's (a
  // launcher's error, dispatch/launcher.h: Unavailable when the Slurm node
  // running the step failed).  Always OK for a local process.
  absl::Status status() const;
  // Like Wait, for at most `timeout`; nullptr if not done by then.
  const ProcessResult* WaitFor(absl::Duration timeout) const;
  // Waits as Wait(), then moves the result out (no copy of the output):
  // for a handle only the caller waits on; other copies then see a
  // moved-from result.
  ProcessResult TakeResult() const;
  // SIGKILL to the child's process group (no-op once reaped).
  void Kill() const;
  // Calls `cb->Done()` once the result is in: at once, on this thread, when
  // it already is; otherwise on the runner's thread right after the result
  // is stored (so Wait() then returns at once).  Any number of callbacks
  // may be registered.  A null `cb` is ignored.
  void OnDone(std::unique_ptr<ProcessDoneCallback> cb) const;

 private:
  friend class ProcessRunner;
  explicit ProcessHandle(std::shared_ptr<dispatch_internal::ProcessShared> s)
      : shared_(std::move(s)) {}
  std::shared_ptr<dispatch_internal::ProcessShared> shared_;
};

class ProcessLauncher;  // dispatch/launcher.h

struct ProcessRunnerOptions {
  // Reactor backend: "auto", "io_uring" or "epoll" (as SPINDLE_REACTOR).
  std::string backend = "auto";
  // Null: processes run on this machine.  Else each spec runs as the
  // launcher prepares it (dispatch/launcher.h; a Slurm job step with
  // dispatch/slurm/slurm.h).  The runner holds it until destroyed.
  std::shared_ptr<ProcessLauncher> launcher;
};

// ProcessRunner: spawns processes and watches them on its own thread.
//
// Requires: nothing else in the process reaps children it did not start
// (waitpid(-1), SIGCHLD set to SIG_IGN).
// Guarantees: see the file comment.  Destruction kills (SIGKILL) the group
// of every child still running, reaps it, and resolves every handle.
// Thread safety: Start, Run and the handles may be used from any thread.
//
// Example:
//   auto runner = dispatch::ProcessRunner::Create({}).value();
//   dispatch::ProcessSpec spec;
//   spec.binary = "/bin/echo";
//   spec.args = {"hi"};
//   absl::StatusOr<dispatch::ProcessResult> r = runner->Run(spec);
class ProcessRunner {
 public:
  // Unavailable when no reactor can be made; InvalidArgument for a bad
  // backend name.
  static absl::StatusOr<std::unique_ptr<ProcessRunner>> Create(
      const ProcessRunnerOptions& options);
  ~ProcessRunner();
  ProcessRunner(const ProcessRunner&) = delete;
  ProcessRunner& operator=(const ProcessRunner&) = delete;

  // Spawns the child (on the calling thread) and hands it to the runner's
  // thread.  A failure to start returns the error and leaves nothing behind.
  absl::StatusOr<ProcessHandle> Start(const ProcessSpec& spec);
  // Start, then Wait; a non-OK ProcessHandle::status() is returned.
  absl::StatusOr<ProcessResult> Run(const ProcessSpec& spec);

  // Children started and not yet resolved.
  size_t running() const;

 private:
  explicit ProcessRunner(std::unique_ptr<dispatch_internal::RunnerCore> core);
  std::unique_ptr<dispatch_internal::RunnerCore> core_;
};

}  // namespace spindle::dispatch

#endif  // SPINDLE_DISPATCH_PROCESS_H_
